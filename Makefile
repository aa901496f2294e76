# Everyday verbs over CMake. `make run` and `make test` set up what is missing first.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
CONF ?= conf/gateway.lua
JOBS ?= $(shell nproc)

.PHONY: all setup build run test layers unit spec integration asan test-asan fuzz bench clean

all: build

setup:
	@scripts/setup.sh build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: setup build
	$(BUILD)/aigw run $(CONF)

# The whole suite: C unit tests, busted specs, then integration tests against the real binary;
# in CI (CI=true) the same suite runs again under ASan + UBSan.
test:
	@scripts/setup.sh test
	@scripts/test.sh

# core/ includes keep to its layers (core/ARCHITECTURE.md)
layers:
	@python3 scripts/check-layers.py

unit: build
	@cd $(BUILD) && ctest --output-on-failure

# busted specs inside the runtime: make spec, or make spec SPEC_ARGS="--filter=key spec/plugins/key_auth_spec.lua"
spec: build
	@$(BUILD)/aigw test $(SPEC_ARGS)

integration: build
	@AIGW_BIN=$(BUILD)/aigw scripts/integration.sh

asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DAIGW_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

test-asan:
	@scripts/setup.sh test
	@AIGW_SANITIZE=1 scripts/test.sh

# libFuzzer targets (tests/fuzz, clang, ASan + UBSan): each runs FUZZ_SECONDS on its
# seed corpus; make fuzz FUZZ_TARGETS="json_scan stream", or make fuzz-json_scan.
fuzz:
	@scripts/setup.sh fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(FUZZ_TARGETS)

fuzz-%:
	@scripts/setup.sh fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $*

bench:
	@scripts/setup.sh bench
	@$(MAKE) build
	@tests/bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
