#!/usr/bin/env bash
# Body of `make demo`: installs the toolchain, builds the provider, starts the demo AWS emulator, serves
# the provider to Terraform from a local filesystem mirror and applies examples/quickstart against it.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TC="${DATAVAULT_TOOLCHAIN_DIR:-$ROOT/.toolchain}"
TF="${TF_ACC_TERRAFORM_PATH:-$TC/bin/terraform}"
EXAMPLE=examples/quickstart
[[ -d "$EXAMPLE" ]] || { echo "demo: $EXAMPLE not found" >&2; exit 1; }

scripts/toolchain.sh

echo "demo: cargo build"
cargo build --bin terraform-provider-datavault
BIN="${CARGO_TARGET_DIR:-target}/debug/terraform-provider-datavault"

# A (re)started emulator has none of the old resources, so the old state would only confuse Terraform.
if ! scripts/emulator.sh status >/dev/null; then
    scripts/emulator.sh start
    rm -f "$EXAMPLE"/terraform.tfstate*
else
    scripts/emulator.sh status
fi
eval "$(scripts/emulator.sh env)"

VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64 | arm64) ARCH=arm64 ;; *) ARCH="$(uname -m)" ;; esac
MIRROR="$TC/mirror"
DEST="$MIRROR/registry.terraform.io/datavault/datavault/$VERSION/linux_$ARCH"
rm -rf "$MIRROR"
mkdir -p "$DEST"
cp "$BIN" "$DEST/terraform-provider-datavault_v$VERSION"
echo "demo: provider $VERSION mirrored in $DEST"

cat >"$TC/demo.tfrc" <<TFRC
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
export TF_CLI_CONFIG_FILE="$TC/demo.tfrc"

# The binary changes between builds while its version does not, so drop the recorded checksums.
rm -rf "$EXAMPLE/.terraform/providers" "$EXAMPLE/.terraform.lock.hcl"
"$TF" -chdir="$EXAMPLE" init -input=false -upgrade
# Apply prints the stack's outputs at the end.
"$TF" -chdir="$EXAMPLE" apply -input=false -auto-approve

cat <<EOF2

demo: done. To look around:
  eval "\$(make -s demo-env)"
  $TF -chdir=$EXAMPLE show
Stop the emulator with: make emulator-stop
EOF2
