#!/usr/bin/env bash
# Body of `make docs` / `make docs-check`: generates the registry documentation in docs/ from the provider's
# own schema, the templates in templates/ and the examples in examples/.
#
#   scripts/gen-docs.sh           regenerate docs/ (everything in docs/ is generated: it is replaced)
#   scripts/gen-docs.sh --check   generate into a temporary directory and fail, showing the diff, unless
#                                 docs/ is up to date (the CI check that docs and schema agree)
#
# The schema comes from the real thing: the freshly built provider is installed into Terraform through a
# private filesystem mirror (as scripts/demo.sh does) and `terraform providers schema -json` is fed to the
# generator (tools/gen-docs). No AWS credentials are needed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

CHECK=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK=1 ;;
        -h | --help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "gen-docs: unknown argument '$arg' (only --check)" >&2; exit 2 ;;
    esac
done

TC="${DATAVAULT_TOOLCHAIN_DIR:-$ROOT/.toolchain}"
TF="${TF_ACC_TERRAFORM_PATH:-$TC/bin/terraform}"

scripts/toolchain.sh >&2

# DATAVAULT_PROVIDER_BIN (as for `make acceptance`) uses an already built binary instead of building one.
if [[ -n "${DATAVAULT_PROVIDER_BIN:-}" ]]; then
    BIN="$DATAVAULT_PROVIDER_BIN"
else
    echo "gen-docs: cargo build" >&2
    cargo build --bin terraform-provider-datavault
    BIN="${CARGO_TARGET_DIR:-target}/debug/terraform-provider-datavault"
fi
[[ -x "$BIN" ]] || { echo "gen-docs: $BIN not found after the build" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/datavault-gen-docs.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# The same mirror layout and CLI configuration as scripts/demo.sh, but private to this run so it neither
# disturbs nor depends on the demo's mirror.
VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64 | arm64) ARCH=arm64 ;; *) ARCH="$(uname -m)" ;; esac
MIRROR="$WORK/mirror"
DEST="$MIRROR/registry.terraform.io/datavault/datavault/$VERSION/linux_$ARCH"
mkdir -p "$DEST"
cp "$BIN" "$DEST/terraform-provider-datavault_v$VERSION"

cat >"$WORK/cli.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/datavault/*"]
  }
  direct {
    exclude = ["registry.terraform.io/datavault/*"]
  }
}
TFRC
export TF_CLI_CONFIG_FILE="$WORK/cli.tfrc"
export CHECKPOINT_DISABLE=1
unset TF_PLUGIN_CACHE_DIR TF_DATA_DIR TF_WORKSPACE

mkdir -p "$WORK/config"
cat >"$WORK/config/main.tf" <<'HCL'
terraform {
  required_providers {
    datavault = { source = "datavault/datavault" }
  }
}
HCL

echo "gen-docs: terraform init + providers schema -json ($TF)" >&2
if ! "$TF" -chdir="$WORK/config" init -input=false -no-color >"$WORK/init.log" 2>&1; then
    cat "$WORK/init.log" >&2
    echo "gen-docs: terraform init failed" >&2
    exit 1
fi
"$TF" -chdir="$WORK/config" providers schema -json >"$WORK/schema.json"

# The pages show the examples, so they must be valid: every directory of examples/ with .tf files is copied
# (its *.tf.example files as *.tf, e.g. the bootstrap's backend.tf.example), checked with `terraform fmt`
# and validated against the freshly built provider. Examples that only show a block get the
# required_providers they lack; backends are not initialised.
echo "gen-docs: terraform fmt + validate examples/" >&2
EXAMPLES_OK=1
while IFS= read -r dir; do
    copy="$WORK/$dir"
    mkdir -p "$copy"
    for file in "$dir"/*.tf "$dir"/*.tf.example; do
        if [[ -f "$file" ]]; then cp "$file" "$copy/$(basename "${file%.example}")"; fi
    done
    if ! grep -q 'required_providers' "$copy"/*.tf; then
        printf '%s\n' 'terraform {' '  required_providers {' \
            '    datavault = { source = "datavault/datavault" }' '  }' '}' >"$copy/zz_required_providers.tf"
    fi
    if ! "$TF" -chdir="$copy" init -backend=false -input=false -no-color >"$copy.init.log" 2>&1; then
        echo "gen-docs: terraform init failed in $dir:" >&2
        cat "$copy.init.log" >&2
        EXAMPLES_OK=0
    elif ! "$TF" -chdir="$copy" validate -no-color >"$copy.validate.log" 2>&1; then
        echo "gen-docs: $dir is not valid:" >&2
        cat "$copy.validate.log" >&2
        EXAMPLES_OK=0
    fi
done < <(find examples -name .terraform -prune -o \( -name '*.tf' -o -name '*.tf.example' \) -print | sed 's|/[^/]*$||' | sort -u)
if ! "$TF" -chdir="$WORK" fmt -check -recursive -diff examples >"$WORK/fmt.log" 2>&1; then
    cat "$WORK/fmt.log" >&2
    echo "gen-docs: examples are not formatted; run: terraform fmt -recursive examples (and format *.tf.example)" >&2
    EXAMPLES_OK=0
fi
[[ "$EXAMPLES_OK" == 1 ]] || { echo "gen-docs: fix the examples first" >&2; exit 1; }

cargo run -q -p datavault-gen-docs --bin gen-docs -- --out "$WORK/docs" <"$WORK/schema.json"

if [[ "$CHECK" == 1 ]]; then
    CURRENT=docs
    if [[ ! -d "$CURRENT" ]]; then
        CURRENT="$WORK/no-docs"
        mkdir -p "$CURRENT"
    fi
    if ! diff -ruN "$CURRENT" "$WORK/docs" >"$WORK/docs.diff"; then
        sed -e "s|$WORK/docs|docs (generated)|g" -e "s|$WORK/no-docs|docs|g" "$WORK/docs.diff" >&2
        echo "gen-docs: docs/ does not match the provider schema, templates/ and examples/; run 'make docs'" >&2
        exit 1
    fi
    echo "gen-docs: docs/ is up to date" >&2
else
    rm -rf docs
    cp -R "$WORK/docs" docs
    echo "gen-docs: wrote $(find docs -type f | sort | tr '\n' ' ')" >&2
fi
