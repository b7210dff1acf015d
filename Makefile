# coop: make builds build/libcoop.so, cooprun's library, and every test program.
# make test installs what is missing (as root, with apt-get) and runs every test.

PREFIX ?= /usr/local
DESTDIR ?=
BUILD := build
VERSION := 0.1.0

CC := gcc
CXX := g++
RUSTC := rustc
HARDEN := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fcf-protection
WARN := -Wall -Wextra -Werror
CFLAGS := -std=gnu11 -O2 -g $(WARN) $(HARDEN)
CXXFLAGS = -std=c++20 -O2 -g $(WARN) $(SAN_FLAGS)
# make test-asan: the core under AddressSanitizer and UndefinedBehaviorSanitizer.
ifeq ($(SAN),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS += $(SAN_FLAGS)
# A thread's pthread_exit or cancellation unwinds through the library's wrappers and lands
# with glibc's own longjmp, which ASan does not see: redzones of the library's frames would
# stay poisoned below the landing. Its stack variables go without redzones.
LIB_SAN_FLAGS := --param asan-stack=0
endif

DEPS_PKGS := libuv1 libunwind check
# The real programs of tests/realworld/ come from Debian too, and tests/stress.sh's CPU hogs;
# liburing-dev for the io_uring sample (tests/samples/uring_wait.c).
APT_PKGS := libuv1-dev libunwind-dev check pkg-config liburing-dev python3 curl clang \
            memcached iperf pigz xz-utils zstd redis-server haproxy mosquitto mosquitto-clients git nodejs \
            ruby default-jre-headless unbound bind9-dnsutils perl chromium stress-ng strace
# The page test_trace_browser.sh opens: speedscope's built web page, from npm, in build/web
# (whichever BUILD: make test-asan's tests use it too).
SPEEDSCOPE := speedscope@1.25.0
SPEEDSCOPE_PAGE := build/web/node_modules/speedscope/dist/release/index.html

# The library: shim (interposed libc names) over core (greenlets, hubs, waits) over a
# private copy of libuv whose libc references are renamed to reach the real functions.
CORE_SRC := $(wildcard core/*.c)
CORE_ASM := $(wildcard core/*.S)
SHIM_SRC := $(wildcard shim/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o) $(CORE_ASM:%.S=$(BUILD)/obj/%.o)
SHIM_OBJ := $(SHIM_SRC:%.c=$(BUILD)/obj/%.o)
# Thread-locals in the static TLS block: a preloaded library may, and a lookup through
# __tls_get_addr would cost every wrapper a call (and recurse through ASan's interceptor).
LIB_CFLAGS = $(CFLAGS) $(LIB_SAN_FLAGS) -D_GNU_SOURCE -fPIC -fvisibility=hidden -ftls-model=initial-exec -pthread \
             $(shell pkg-config --cflags libuv 2>/dev/null)
# The wrappers define read, recv, poll...: FORTIFY's inline versions of those must stay out.
$(BUILD)/obj/shim/%.o: LIB_CFLAGS += -U_FORTIFY_SOURCE
# A sigwait's record ends in a cleanup, which the unwinding of an exception or of
# cancellation runs only in frames built with exception tables.
$(BUILD)/obj/shim/signal.o: LIB_CFLAGS += -fexceptions
LIBUV_A := $(shell pkg-config --variable=libdir libuv 2>/dev/null)/libuv_a.a
LIB_LDFLAGS = $(SAN_FLAGS) -shared -Wl,-z,relro,-z,now,-z,noexecstack,-z,defs -Wl,--version-script=$(BUILD)/exports.map
# libunwind is loaded when a report first needs it (core/unwind.c), not at start-up.
LIB_LIBS := -ldl -lpthread

SAMPLE_C := $(wildcard tests/samples/*.c)
SAMPLE_CC := $(wildcard tests/samples/*.cc)
SAMPLE_RS := $(wildcard tests/samples/*.rs)
BENCH_C := $(wildcard tests/bench/*.c)
BENCH_CC := $(wildcard tests/bench/*.cc)
SAMPLES := $(SAMPLE_C:tests/samples/%.c=$(BUILD)/samples/%) \
           $(SAMPLE_CC:tests/samples/%.cc=$(BUILD)/samples/%) \
           $(SAMPLE_RS:tests/samples/%.rs=$(BUILD)/samples/%)
BENCHES := $(BENCH_C:tests/bench/%.c=$(BUILD)/bench/%) $(BENCH_CC:tests/bench/%.cc=$(BUILD)/bench/%)
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_PROGRAM_SRC := $(wildcard tests/unit/program/*.c tests/unit/program/*.S)

.PHONY: all build deps test test-asan unit integration demo bench install clean fuzz

# Dependencies first, then a fresh make that can ask pkg-config about them.
all: deps
	@$(MAKE) --no-print-directory build

build: $(BUILD)/libcoop.so $(SAMPLES) $(BENCHES) $(BUILD)/unit_tests

deps:
	@scripts/deps.sh $(APT_PKGS)

# --- the library ---
$(BUILD)/obj/%.o: %.c $(wildcard core/*.h shim/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.S core/context.h
	@mkdir -p $(dir $@)
	@echo "  AS      $<"
	@$(CC) -fPIC -c $< -o $@

SURFACE_NAMES = sed -n 's/^COOP_FN([a-z]*, *\([A-Za-z0-9_]*\),.*/\1/p' shim/surface.h

# libuv's archive is built as position-independent executable code: calls are fine in a
# shared object, but its three references to libc data are not, so they are renamed too
# and defined in shim/real.c. Its getenv is renamed as well: core/offload.c answers
# UV_THREADPOOL_SIZE without touching the program's environment. Its one destructor, uv_library_shutdown, is dropped: it
# joins the threadpool's threads, which a forked child does not have (it would crash
# there), and which exit() ends anyway.

# Exported: the interposed names and the coop_ API, nothing else (no libuv, no internals).
$(BUILD)/exports.map: shim/surface.h
	@mkdir -p $(BUILD)
	{ echo '{ global:'; $(SURFACE_NAMES) | sed 's/.*/  &;/'; echo '  coop_version; coop_active;'; echo 'local: *; };'; } > $@

$(BUILD)/libuv_private.a: $(LIBUV_A) shim/surface.h Makefile
	@mkdir -p $(BUILD)
	{ $(SURFACE_NAMES); echo environ; echo stderr; echo in6addr_any; echo getenv; } | sed 's/.*/& coop_uv_&/' > $(BUILD)/libuv.rename
	objcopy --redefine-syms=$(BUILD)/libuv.rename --remove-section=.fini_array \
	    --remove-section=.rela.fini_array $(LIBUV_A) $@

$(BUILD)/libcoop.so: $(CORE_OBJ) $(SHIM_OBJ) $(BUILD)/libuv_private.a $(BUILD)/exports.map
	@echo "  LD      $@"
	@$(CC) $(LIB_LDFLAGS) -o $@ $(CORE_OBJ) $(SHIM_OBJ) $(BUILD)/libuv_private.a $(LIB_LIBS)

# --- programs that know nothing of coop ---
$(BUILD)/samples/uring_wait: SAMPLE_LIBS := -luring
$(BUILD)/samples/%: tests/samples/%.c $(wildcard tests/samples/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -pthread -o $@ $< -lm $(SAMPLE_LIBS)

# Libraries of the samples (tests/samples/libs/NAME.c makes libNAME.so).
$(BUILD)/samples/lib%.so: tests/samples/libs/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $<

# early_locks is linked against libearly_locks.so, whose constructor uses the objects first.
$(BUILD)/samples/early_locks: $(BUILD)/samples/libearly_locks.so
$(BUILD)/samples/early_locks: SAMPLE_LIBS = -L$(BUILD)/samples -learly_locks -Wl,-rpath,'$$ORIGIN'

# tls_modules is linked against the first (found beside it through its run path) and loads
# the others from its own directory with dlopen.
$(BUILD)/samples/tls_modules: $(addprefix $(BUILD)/samples/,libtls_linked.so libtls_loaded.so libtls_loaded_static.so)
$(BUILD)/samples/tls_modules: SAMPLE_LIBS = -L$(BUILD)/samples -ltls_linked -ldl -Wl,-rpath,'$$ORIGIN'

# loader_waits loads copies of libwaiting_constructor.so, whose constructor calls it back.
$(BUILD)/samples/loader_waits: $(BUILD)/samples/libwaiting_constructor.so
$(BUILD)/samples/loader_waits: SAMPLE_LIBS = -rdynamic -ldl

$(BUILD)/samples/%: tests/samples/%.cc $(wildcard tests/samples/*.hh)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -pthread -o $@ $<

$(BUILD)/samples/%: tests/samples/%.rs
	@mkdir -p $(dir $@)
	$(RUSTC) -O --edition 2021 -o $@ $<

$(BUILD)/bench/%: tests/bench/%.c $(wildcard tests/bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -pthread -o $@ $< -lm

$(BUILD)/bench/%: tests/bench/%.cc $(wildcard tests/bench/*.h) tests/samples/common.h
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -pthread -o $@ $<

# --- unit tests: the core linked directly, with Check ---
# The code the preemption tests preempt is a program's, in a library of its own: the core
# counts every frame of the executable it is linked into as its own (core/preempt.c).
$(BUILD)/libunit_program.so: $(UNIT_PROGRAM_SRC) tests/unit/program/program.h
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $(UNIT_PROGRAM_SRC)

$(BUILD)/unit_tests: $(UNIT_SRC) $(CORE_OBJ) $(BUILD)/libuv_private.a $(BUILD)/obj/shim/real.o $(BUILD)/libunit_program.so
	$(CC) $(CFLAGS) -D_GNU_SOURCE -pthread -o $@ $(UNIT_SRC) $(CORE_OBJ) $(BUILD)/obj/shim/real.o \
	    $(BUILD)/libuv_private.a $(shell pkg-config --libs check 2>/dev/null) -ldl -lunwind \
	    -L$(BUILD) -lunit_program -Wl,-rpath,'$$ORIGIN'

# --- running ---
# speedscope's page for the browser check; without npm or the registry the check skips.
# npm comes with nodesource's nodejs, and separately with Debian's.
$(SPEEDSCOPE_PAGE):
	@mkdir -p build/web
	@command -v npm >/dev/null || scripts/deps.sh npm || true
	-npm install --silent --no-audit --no-fund --prefix build/web $(SPEEDSCOPE)

# The unit tests on one hub and on two (whatever the CPUs), and on two hubs with each
# thread-pointer mechanism (the default: fsgsbase where the machine has it; and syscall);
# the integration suite on one hub and on the default (one per CPU).
test: all $(SPEEDSCOPE_PAGE)
	@scripts/check-exports.sh $(BUILD)/libcoop.so
	COOP_HUBS=1 $(BUILD)/unit_tests
	COOP_HUBS=2 $(BUILD)/unit_tests
	COOP_HUBS=2 COOP_TLS=syscall $(BUILD)/unit_tests
	COOP_HUBS=1 tests/run-integration.sh
	tests/run-integration.sh
	tests/realworld/run.sh

# Everything again with ASan and UBSan in build/asan, and the whole suite on it: greenlet
# stacks are announced to ASan at every switch (core/sanitizer.h), and cooprun preloads
# ASan's runtime right behind the library (verify_asan_link_order=0: coop comes first, see
# scripts/cooprun). Leak checking stays off: at exit, parked greenlets' stacks still hold
# pointers that LSan does not scan. ASan leaves SIGSEGV alone, so that a program killed by it
# and coop's stack overflow report look as they do without ASan.
ASAN_ENV := ASAN_OPTIONS=detect_leaks=0:handle_segv=0:verify_asan_link_order=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-asan: deps $(SPEEDSCOPE_PAGE)
	@$(MAKE) --no-print-directory SAN=1 BUILD=build/asan build
	@scripts/check-exports.sh build/asan/libcoop.so
	$(ASAN_ENV) COOP_HUBS=1 build/asan/unit_tests
	$(ASAN_ENV) COOP_HUBS=2 COOP_TLS=syscall build/asan/unit_tests
	$(ASAN_ENV) BUILD=$(CURDIR)/build/asan tests/run-integration.sh
	$(ASAN_ENV) BUILD=$(CURDIR)/build/asan tests/realworld/run.sh

unit: all

	$(BUILD)/unit_tests

integration: all
	tests/run-integration.sh

demo: all
	tests/demo.sh

bench: all
	tests/bench/run.sh

install: $(BUILD)/libcoop.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/coop $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 scripts/cooprun $(DESTDIR)$(PREFIX)/bin/cooprun
	install -m 755 $(BUILD)/libcoop.so $(DESTDIR)$(PREFIX)/lib/coop/libcoop.so
	install -m 644 scripts/cooprun.1 $(DESTDIR)$(PREFIX)/share/man/man1/cooprun.1

clean:
	rm -rf $(BUILD)

# --- fuzzing (libFuzzer, clang): the settings parser and cooprun's options ---
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
$(BUILD)/fuzz/fuzz_settings: tests/fuzz/fuzz_settings.c shim/settings.c shim/shim.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_settings.c shim/settings.c

$(BUILD)/fuzz/fuzz_cooprun: tests/fuzz/fuzz_cooprun.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ $<

fuzz: $(BUILD)/fuzz/fuzz_settings $(BUILD)/fuzz/fuzz_cooprun
