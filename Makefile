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
  python3 python3-numpy python3-pandas python3-matplotlib python3-pytest parallel

.PHONY: deps build run test bench study test-browser clean

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
	cd $(BUILD_DIR) && ctest -j $(JOBS) --output-on-failure

bench: build
	tests/perf/quickstart_bench.sh $(BUILD_DIR)/moesim 5
	$(BUILD_DIR)/tests/moesim_routing_bench

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

clean:
	rm -rf $(BUILD_DIR)
