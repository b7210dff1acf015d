/*
 * Family dns: name lookups. glibc's resolver waits with its internal poll, and NSS
 * modules may do anything, so a lookup cannot be made cooperative from outside: it runs
 * on the threadpool while the calling greenlet waits and the others run, as gevent's
 * default resolver does. The pool has COOP_THREADPOOL_SIZE threads (default 10).
 *
 * A lookup that glibc answers from its arguments alone, without NSS or the network (a numeric
 * address or none, and a port number or none), runs on the caller: on the pool it would
 * queue behind slow lookups for nothing, as a server's getaddrinfo(NULL, "8080") or a
 * proxy's of the numeric address a client gave would. What glibc may still read for it
 * (gai.conf, the interfaces' addresses over netlink, nscd's socket) is local and quick.
 *
 * What the caller sees is what the real call gave: the result, the error code, errno,
 * and h_errno, which lives in each OS thread's TLS and so is carried back from the pool
 * thread, as errno is.
 *
 * gethostbyname, gethostbyname2 and gethostbyaddr return static storage, one buffer for
 * the whole process in glibc. Here each greenlet has its own (a pthread key, so it goes
 * when the greenlet ends): concurrent lookups neither wait for one another nor overwrite
 * each other's answer. The answer stays valid until the same thread's next call, which
 * is all POSIX promises.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

/* A lookup, packed so a pool thread can make it. */
struct lookup {
    void (*op)(struct lookup *l);
    const char *name, *service;
    const struct addrinfo *hints;
    struct addrinfo **res;
    const void *addr;
    socklen_t addrlen;
    char *host, *serv;
    socklen_t hostlen, servlen;
    int af, flags;
    struct hostent *ret_he, **result;
    char *buf;
    size_t buflen;
    int *h_errnop;
    int ret, err, herr;
};

static void run(void *p)
{
    struct lookup *l = p;
    errno = l->err;
    h_errno = l->herr;
    l->op(l);
    l->err = errno;
    l->herr = h_errno;
}

/* Runs the lookup on the pool, or here when it is `local` (see above) or the caller may
 * block its OS thread. */
static void lookup(struct lookup *l, bool local)
{
    if (local || shim_cooperative(FAM_dns) == NULL) {
        l->op(l);
        return;
    }
    l->err = errno;
    l->herr = h_errno;
    coop_offload(run, l);
    errno = l->err;
    h_errno = l->herr;
}

/* --- getaddrinfo, getnameinfo --- */
static bool numeric_host(const char *node, int flags)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return node == NULL || (flags & AI_NUMERICHOST) || inet_pton(AF_INET, node, addr) == 1
           || inet_pton(AF_INET6, node, addr) == 1;
}

static bool numeric_service(const char *service, int flags)
{
    return service == NULL || (flags & AI_NUMERICSERV)
           || (service[0] != '\0' && service[strspn(service, "0123456789")] == '\0');
}

static void op_getaddrinfo(struct lookup *l) { l->ret = REAL(getaddrinfo)(l->name, l->service, l->hints, l->res); }

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    struct lookup l = { .op = op_getaddrinfo, .name = node, .service = service, .hints = hints, .res = res };
    int flags = hints != NULL ? hints->ai_flags : 0;
    lookup(&l, numeric_host(node, flags) && numeric_service(service, flags));
    return l.ret;
}

static void op_getnameinfo(struct lookup *l)
{
    l->ret = REAL(getnameinfo)(l->addr, l->addrlen, l->host, l->hostlen, l->serv, l->servlen, l->flags);
}

EXPORT int getnameinfo(const struct sockaddr *addr, socklen_t addrlen, char *host, socklen_t hostlen,
                       char *serv, socklen_t servlen, int flags)
{
    struct lookup l = { .op = op_getnameinfo, .addr = addr, .addrlen = addrlen, .host = host,
                        .hostlen = hostlen, .serv = serv, .servlen = servlen, .flags = flags };
    lookup(&l, (host == NULL || hostlen == 0 || (flags & NI_NUMERICHOST))
                   && (serv == NULL || servlen == 0 || (flags & NI_NUMERICSERV)));
    return l.ret;
}

/* --- the reentrant gethostby* --- */
static void op_byname_r(struct lookup *l)
{
    l->ret = REAL(gethostbyname_r)(l->name, l->ret_he, l->buf, l->buflen, l->result, l->h_errnop);
}

static void op_byname2_r(struct lookup *l)
{
    l->ret = REAL(gethostbyname2_r)(l->name, l->af, l->ret_he, l->buf, l->buflen, l->result, l->h_errnop);
}

static void op_byaddr_r(struct lookup *l)
{
    l->ret = REAL(gethostbyaddr_r)(l->addr, l->addrlen, l->af, l->ret_he, l->buf, l->buflen, l->result,
                                   l->h_errnop);
}

EXPORT int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                           struct hostent **result, int *h_errnop)
{
    struct lookup l = { .op = op_byname_r, .name = name, .ret_he = ret, .buf = buf, .buflen = buflen,
                        .result = result, .h_errnop = h_errnop };
    lookup(&l, false);
    return l.ret;
}

EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                            struct hostent **result, int *h_errnop)
{
    struct lookup l = { .op = op_byname2_r, .name = name, .af = af, .ret_he = ret, .buf = buf,
                        .buflen = buflen, .result = result, .h_errnop = h_errnop };
    lookup(&l, false);
    return l.ret;
}

EXPORT int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf,
                           size_t buflen, struct hostent **result, int *h_errnop)
{
    struct lookup l = { .op = op_byaddr_r, .addr = addr, .addrlen = len, .af = type, .ret_he = ret,
                        .buf = buf, .buflen = buflen, .result = result, .h_errnop = h_errnop };
    lookup(&l, false);
    return l.ret;
}

/* --- gethostbyname, gethostbyname2, gethostbyaddr: the _r forms into per-greenlet storage --- */
struct host_store {
    struct hostent he;
    char *buf;
    size_t len;
};

static pthread_key_t store_key;
static pthread_once_t store_once = PTHREAD_ONCE_INIT;

static void store_free(void *p)
{
    struct host_store *s = p;
    free(s->buf);
    free(s);
}

static void store_init(void) { pthread_key_create(&store_key, store_free); }

static struct host_store *store(void)
{
    pthread_once(&store_once, store_init);
    struct host_store *s = pthread_getspecific(store_key);
    if (s == NULL && (s = calloc(1, sizeof *s)) != NULL)
        pthread_setspecific(store_key, s);
    return s;
}

/* glibc's own loop (nss/getXXbyYY.c): a 1 KiB buffer, doubled while the lookup says
 * ERANGE with NETDB_INTERNAL; h_errno set from the lookup's when it is not 0; errno
 * as the lookup left it, or ENOMEM. */
static struct hostent *static_lookup(struct lookup *l)
{
    struct host_store *s = store();
    struct hostent *result = NULL;
    int herr = 0;
    if (s == NULL) {
        errno = ENOMEM;
        h_errno = NETDB_INTERNAL;
        return NULL;
    }
    l->ret_he = &s->he;
    l->result = &result;
    l->h_errnop = &herr;
    for (;;) {
        if (s->buf == NULL) {
            s->len = 1024;
            if ((s->buf = malloc(s->len)) == NULL) {
                errno = ENOMEM;
                break;
            }
        }
        l->buf = s->buf;
        l->buflen = s->len;
        lookup(l, false);
        if (l->ret != ERANGE || herr != NETDB_INTERNAL)
            break;
        char *bigger = realloc(s->buf, s->len * 2);
        if (bigger == NULL) {
            free(s->buf);
            s->buf = NULL;
            errno = ENOMEM;
            break;
        }
        s->buf = bigger;
        s->len *= 2;
    }
    if (herr != 0)
        h_errno = herr;
    return result;
}

EXPORT struct hostent *gethostbyname(const char *name)
{
    if (shim_cooperative(FAM_dns) == NULL)
        return REAL(gethostbyname)(name);
    struct lookup l = { .op = op_byname_r, .name = name };
    return static_lookup(&l);
}

EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
    if (shim_cooperative(FAM_dns) == NULL)
        return REAL(gethostbyname2)(name, af);
    struct lookup l = { .op = op_byname2_r, .name = name, .af = af };
    return static_lookup(&l);
}

EXPORT struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
    if (shim_cooperative(FAM_dns) == NULL)
        return REAL(gethostbyaddr)(addr, len, type);
    struct lookup l = { .op = op_byaddr_r, .addr = addr, .addrlen = len, .af = type };
    return static_lookup(&l);
}
