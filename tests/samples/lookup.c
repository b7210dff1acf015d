/*
 * lookup: name lookups from threads.
 *
 *   lookup names NAME...  every lookup function on each NAME, from a thread while another
 *                         thread exists: getaddrinfo, gethostbyname, gethostbyname2 (AF_INET6),
 *                         gethostbyname_r, gethostbyaddr and getnameinfo on the first address
 *                         found; prints every answer, error code and h_errno
 *   lookup slow N DOMAIN RESPONDER
 *                         N threads each resolve hI.DOMAIN (getaddrinfo for even I,
 *                         gethostbyname_r for odd I, gethostbyname for I = 1) at the same
 *                         time while an echo server thread answers a client thread; the DNS
 *                         server at RESPONDER (tests/samples/dns_responder.py) holds every
 *                         answer until the echo client has made ECHOES round trips with
 *                         all N lookups started and none ended, and a numeric getaddrinfo
 *                         and getnameinfo answered, and then says "go": the lookups end
 *                         only if the echo went on while they waited. Prints what was
 *                         resolved (the round trips' times go to stderr)
 *
 * The output of "names" depends only on the resolver's configuration, so it is the same
 * natively and under any runtime that makes the real calls.
 */
#define _GNU_SOURCE
#include "common.h"

#include <netdb.h>
#include <pthread.h>

static char *out;           /* each thread writes its report here */
static size_t out_len, out_cap;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&out_lock);
    if (out_len + (size_t)n + 1 > out_cap) {
        out_cap = (out_cap + (size_t)n + 1) * 2;
        out = realloc(out, out_cap);
    }
    memcpy(out + out_len, line, (size_t)n + 1);
    out_len += (size_t)n;
    pthread_mutex_unlock(&out_lock);
}

static const char *addr_text(int af, const void *addr, char *buf, size_t len)
{
    return inet_ntop(af, addr, buf, (socklen_t)len) ? buf : "?";
}

static void report_hostent(const char *what, const struct hostent *h, int herr)
{
    if (h == NULL) {
        report("  %s: NULL, h_errno %d (%s)\n", what, herr, hstrerror(herr));
        return;
    }
    report("  %s: name %s type %d len %d", what, h->h_name, h->h_addrtype, h->h_length);
    for (char **a = h->h_aliases; *a != NULL; a++)
        report(" alias %s", *a);
    for (char **a = h->h_addr_list; *a != NULL; a++) {
        char buf[64];
        report(" addr %s", addr_text(h->h_addrtype, *a, buf, sizeof buf));
    }
    report("\n");
}

static void *look_up_name(void *arg)
{
    const char *name = arg;
    report("%s\n", name);

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_CANONNAME };
    struct addrinfo *res = NULL;
    int err = getaddrinfo(name, "80", &hints, &res);
    if (err != 0) {
        report("  getaddrinfo: %d (%s)\n", err, gai_strerror(err));
    } else {
        report("  getaddrinfo: canonname %s", res->ai_canonname ? res->ai_canonname : "-");
        for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
            char host[NI_MAXHOST], serv[NI_MAXSERV];
            getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, serv, sizeof serv,
                        NI_NUMERICHOST | NI_NUMERICSERV);
            report(" [%d %s %s]", ai->ai_family, host, serv);
        }
        report("\n");
    }

    h_errno = 0;
    struct hostent *h = gethostbyname(name);
    report_hostent("gethostbyname", h, h_errno);
    struct in_addr first4 = { 0 };
    bool have4 = h != NULL && h->h_addrtype == AF_INET;
    if (have4)
        memcpy(&first4, h->h_addr_list[0], sizeof first4);

    h_errno = 0;
    report_hostent("gethostbyname2 AF_INET6", gethostbyname2(name, AF_INET6), h_errno);

    struct hostent he, *result = NULL;
    char buf[2048];
    int herr = 0;
    err = gethostbyname_r(name, &he, buf, sizeof buf, &result, &herr);
    report("  gethostbyname_r: %d\n", err);
    report_hostent("gethostbyname_r", result, herr);

    /* A buffer too small: ERANGE, as glibc says it. */
    char tiny[8];
    err = gethostbyname_r(name, &he, tiny, sizeof tiny, &result, &herr);
    report("  gethostbyname_r tiny buffer: %d h_errno %d\n", err, herr);

    if (have4) {
        h_errno = 0;
        report_hostent("gethostbyaddr", gethostbyaddr(&first4, sizeof first4, AF_INET), h_errno);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = first4, .sin_port = htons(22) };
        char host[NI_MAXHOST], serv[NI_MAXSERV];
        err = getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, serv, sizeof serv, NI_NAMEREQD);
        if (err == 0)
            report("  getnameinfo: %s %s\n", host, serv);
        else
            report("  getnameinfo: %d (%s)\n", err, gai_strerror(err));
    }
    return NULL;
}

/* Another thread, so that the lookups are not the process's only one. */
static _Atomic bool quit;

static void *idle(void *arg)
{
    (void)arg;
    while (!quit)
        sleep_ms(5);
    return NULL;
}

static int names(int argc, char **argv)
{
    pthread_t t, other;
    pthread_create(&other, NULL, idle, NULL);
    for (int i = 0; i < argc; i++) {
        pthread_create(&t, NULL, look_up_name, argv[i]);
        pthread_join(t, NULL);
    }
    quit = true;
    pthread_join(other, NULL);
    fputs(out != NULL ? out : "", stdout);
    return 0;
}

/* --- many slow lookups and an echo --- */
enum { ECHOES = 10 };
static int echo_port;
static _Atomic int pending;
static _Atomic bool all_started;
static int expected_lookups;
static _Atomic uint64_t worst_rtt_during;
static _Atomic long echoes_during;
static struct sockaddr_in responder;

/* A datagram of control to the DNS server ("hold", "go"; see dns_responder.py). */
static void tell_responder(const char *what)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, what, strlen(what), 0, (struct sockaddr *)&responder, sizeof responder) < 0)
        die_errno("sendto the DNS server");
    close(fd);
}

static void *echo_server(void *arg)
{
    int listener = (int)(intptr_t)arg, fd = accept(listener, NULL, NULL);
    char buf[64];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n)
            break;
    close(fd);
    return NULL;
}

/* Lookups glibc answers without NSS or the network (a numeric address and port), made
 * while every slow one is pending and the pool's threads are all theirs: coop makes these
 * on the caller, so they end before "go". */
static bool numeric_lookups_answer(void)
{
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo("127.0.0.1", "8080", &hints, &res) != 0)
        return false;
    char host[64], serv[16];
    int err = getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, serv, sizeof serv,
                          NI_NUMERICHOST | NI_NUMERICSERV);
    freeaddrinfo(res);
    return err == 0 && strcmp(host, "127.0.0.1") == 0 && strcmp(serv, "8080") == 0;
}

static bool numeric_answered;

static void *echo_client(void *arg)
{
    (void)arg;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)echo_port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die_errno("connect");
    char buf[8];
    while (!quit) {
        uint64_t t0 = now_ns();
        if (write(fd, "ping", 4) != 4 || read(fd, buf, sizeof buf) != 4)
            die("echo failed");
        uint64_t rtt = now_ns() - t0;
        if (all_started && echoes_during < ECHOES && pending == expected_lookups) {
            if (rtt > worst_rtt_during)
                worst_rtt_during = rtt;
            if (++echoes_during == ECHOES) {
                numeric_answered = numeric_lookups_answer();
                tell_responder("go");
            }
        }
        sleep_ms(5);
    }
    close(fd);
    return NULL;
}

struct slow { long i; const char *domain; bool ok; };

static void *slow_lookup(void *arg)
{
    struct slow *s = arg;
    char name[256], expected[32];
    snprintf(name, sizeof name, "h%ld.%s", s->i, s->domain);
    snprintf(expected, sizeof expected, "10.77.%ld.%ld", s->i / 256, s->i % 256);
    char got[64] = "";
    if (s->i % 2 == 0) {
        struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
        int err = getaddrinfo(name, NULL, &hints, &res);
        if (err == 0) {
            addr_text(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, got, sizeof got);
            freeaddrinfo(res);
        }
    } else if (s->i == 1) {
        /* One thread only: glibc's gethostbyname shares one buffer and one lock among all. */
        struct hostent *h = gethostbyname(name);
        if (h != NULL)
            addr_text(AF_INET, h->h_addr_list[0], got, sizeof got);
    } else {
        struct hostent he, *h = NULL;
        char buf[1024];
        int herr;
        if (gethostbyname_r(name, &he, buf, sizeof buf, &h, &herr) == 0 && h != NULL)
            addr_text(AF_INET, h->h_addr_list[0], got, sizeof got);
    }
    s->ok = strcmp(got, expected) == 0;
    if (!s->ok)
        fprintf(stderr, "lookup: %s gave '%s', expected %s\n", name, got, expected);
    pending--;
    return NULL;
}

static int slow(long n, const char *domain, const char *responder_address)
{
    responder = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(53) };
    if (inet_pton(AF_INET, responder_address, &responder.sin_addr) != 1)
        die("%s: not an IPv4 address", responder_address);
    tell_responder("hold");
    struct server_options o = { .port = 0, .backlog = 16 };
    int listener = listen_loopback(&o, 0);
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    echo_port = ntohs(addr.sin_port);
    pthread_t server, client;
    pthread_create(&server, NULL, echo_server, (void *)(intptr_t)listener);
    pthread_create(&client, NULL, echo_client, NULL);

    struct slow *s = calloc((size_t)n, sizeof *s);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    pending = expected_lookups = (int)n;
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        s[i] = (struct slow){ .i = i + 1, .domain = domain };
        pthread_create(&t[i], NULL, slow_lookup, &s[i]);
    }
    all_started = true;
    int ok = 0;
    for (long i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ok += s[i].ok;
    }
    uint64_t elapsed = now_ns() - t0;

    /* A name the server does not know: the errors the real calls give. */
    struct addrinfo hints = { .ai_family = AF_INET }, *res;
    char missing[256];
    snprintf(missing, sizeof missing, "missing.%s.invalid", domain);
    int err = getaddrinfo(missing, NULL, &hints, &res);
    h_errno = 0;
    struct hostent *h = gethostbyname(missing);
    int herr = h_errno;
    quit = true;
    pthread_join(client, NULL);
    pthread_join(server, NULL);

    printf("%d of %ld slow lookups resolved\n", ok, n);
    printf("missing name: getaddrinfo %s, gethostbyname %s h_errno %s\n", gai_strerror(err),
           h == NULL ? "NULL" : "an answer", hstrerror(herr));
    printf("echo while every lookup was pending: %ld round trips\n", (long)echoes_during);
    printf("numeric getaddrinfo and getnameinfo while every lookup was pending: %s\n",
           numeric_answered ? "answered" : "failed");
    fprintf(stderr, "lookups took %.0f ms; the %ld round trips while all were pending took at most %.2f ms\n",
            elapsed / 1e6, (long)echoes_during, worst_rtt_during / 1e6);
    return ok == n && echoes_during == ECHOES && numeric_answered ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "names") == 0)
        return names(argc - 2, argv + 2);
    if (argc == 5 && strcmp(argv[1], "slow") == 0)
        return slow(parse_long(argv[2], 1, 1000, "N"), argv[3], argv[4]);
    die("usage: lookup names NAME... | lookup slow N DOMAIN RESPONDER");
}
