# moesim: two commands for a fresh Debian machine.
#   make run    installs missing packages, builds, runs scenarios/quickstart.yaml
#   make test   same set-up, then the whole test suite
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
SCENARIO ?= scenarios/quickstart.yaml
OUT ?= results/quickstart

# Debian packages the build, the tests and the analysis scripts use.
DEB_PACKAGES := cmake g++ make pkg-config \
  libsimgrid-dev libeigen3-dev libyaml-cpp-dev nlohmann-json3-dev \
  libgtest-dev libcli11-dev libfmt-dev time bc \
  python3 python3-numpy python3-pandas python3-matplotlib python3-pytest python3-yaml parallel

.PHONY: deps build run test bench bench-trace study test-browser clean property

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "moesim: installing missing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/moesim run $(SCENARIO) --out $(OUT)

test: build
	cd $(BUILD_DIR) && ctest -j $(JOBS) -LE loso --output-on-failure
	@$(MAKE) --no-print-directory test-sanitize-unit

# Benchmarks (tests/perf/REPORT.md): the scenario table into tests/perf/results.csv, then the
# routing micro-benchmark. BENCH_ARGS=--full adds 1M requests and 10 simulated minutes of EP144.
bench: build
	/usr/bin/python3 tests/perf/bench.py $(BUILD_DIR)/moesim $(BENCH_ARGS)
	$(BUILD_DIR)/tests/moesim_routing_bench

# A one-week Azure-format trace (about 230 MB, generated) streamed by trace-info and a day-7 window.
bench-trace: build
	/usr/bin/python3 tests/perf/trace_week.py $(BUILD_DIR)/moesim

# The baseline (TP) vs all2all (EP) study: 100 simulated runs, laid out as the original experiment.
study: build
	rm -rf results/study
	@start=$$(date +%s.%N); \
	$(BUILD_DIR)/moesim sweep scenarios/baseline_vs_all2all.yaml -j $(JOBS) --out results/study/sweep && \
	end=$$(date +%s.%N); \
	/usr/bin/python3 analysis/study.py results/study --simulate-seconds $$(echo "$$end - $$start" | bc -l) \
	  --write-md analysis/STUDY.md > /dev/null && \
	echo "moesim: study in results/study (graphs/ and the *_results_json/ folders); report: analysis/STUDY.md"

# Opens a sweep report in headless Chromium (Debian's chromium; not part of `make test`).
test-browser: build
	@command -v chromium >/dev/null || { if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }
	tests/browser/check_report.sh $(BUILD_DIR)/moesim

# Calibration against published measurements (tests/calibration): builds, runs every calibration
# test (the slow rows too), and writes tests/calibration/REPORT.md from the rows they left in
# $(BUILD_DIR)/calibration/<family>.csv; fails after writing the report if a row that should be
# within tolerance is not.
CALIBRATION_OUT = $(abspath $(BUILD_DIR))/calibration
.PHONY: calibration
calibration: build
	rm -rf $(CALIBRATION_OUT)
	cd $(BUILD_DIR) && MOESIM_CALIBRATION_FULL=1 MOESIM_CALIBRATION_OUT=$(CALIBRATION_OUT) \
	  ctest -j $(JOBS) -L calibration --output-on-failure; status=$$?; cd $(CURDIR) && \
	  /usr/bin/python3 tests/calibration/make_report.py $(CALIBRATION_OUT) --command "make calibration" && exit $$status

# Leave-one-source-out validation (tests/calibration/loso.py, about 15 minutes on 2 cores): fits
# the constants of tests/calibration/fit.yaml without each calibration source in turn, reruns every
# row at each fit, writes tests/calibration/LOSO.md and then REPORT.md with it.
.PHONY: calibration-loso
calibration-loso: build
	/usr/bin/python3 tests/calibration/loso.py $(BUILD_DIR) --jobs $(JOBS)
	@$(MAKE) --no-print-directory calibration

# Property and fault campaigns (tests/property): PROPERTY_COUNT random valid scenarios, larger
# than the suite's, and PROPERTY_FAULTS fault trials, from PROPERTY_SEED (default: a fresh one,
# printed; rerun a failure with the same seed). The scenario files of failures go to
# $(BUILD_DIR)/property-failures.
PROPERTY_COUNT ?= 20000
PROPERTY_FAULTS ?= 500
PROPERTY_SEED ?= $(shell date +%s)
property: build
	$(BUILD_DIR)/tests/moesim_property --count $(PROPERTY_COUNT) --faults $(PROPERTY_FAULTS) --seed $(PROPERTY_SEED) \
	  --jobs $(JOBS) --max-requests 64 --max-output-tokens 512 --max-gpus 64 --timeout 600 --moesim $(BUILD_DIR)/moesim \
	  --scratch $$(test -d /dev/shm && echo /dev/shm || echo /tmp) --keep $(BUILD_DIR)/property-failures

clean:
	rm -rf $(BUILD_DIR)

# Fuzzing and sanitizers (README, "Fuzzing and sanitizers"), each in its own build folder.
#   make fuzz                 clang + libFuzzer harnesses of tests/fuzz, FUZZ_SECONDS each, one at a time
#   make test-sanitize        the whole test suite built with AddressSanitizer and UndefinedBehaviorSanitizer
#   make test-sanitize-unit   the unit tests only, so built (part of `make test`)
# The sanitized build is unoptimised (-O0 -g): it compiles about 3x faster than -O2 with the
# sanitizers, which matters more here than the speed of the tests. Simulations in it run SimGrid
# actors on threads (sim/actors/simulation.cpp). No leak or UB suppressions are needed.
FUZZ_DIR ?= build-fuzz
ASAN_DIR ?= build-asan
FUZZ_SECONDS ?= 60
FUZZ_PACKAGES := clang libclang-rt-dev
SANITIZER_ENV := ASAN_OPTIONS=detect_stack_use_after_return=0:strict_string_checks=1:check_initialization_order=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: fuzz test-sanitize test-sanitize-unit

fuzz: deps
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(FUZZ_PACKAGES)"
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DMOESIM_FUZZ=ON
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_scenario fuzz_dataset fuzz_gate_log fuzz_profiler_csv
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

$(ASAN_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DMOESIM_SANITIZE=ON

test-sanitize: deps $(ASAN_DIR)/CMakeCache.txt
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && $(SANITIZER_ENV) ctest -j $(JOBS) --output-on-failure

test-sanitize-unit: deps $(ASAN_DIR)/CMakeCache.txt
	cmake --build $(ASAN_DIR) -j $(JOBS) --target moesim_unit_tests
	cd $(ASAN_DIR) && $(SANITIZER_ENV) tests/moesim_unit_tests --gtest_brief=1
