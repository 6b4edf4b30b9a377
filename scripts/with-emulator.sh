#!/usr/bin/env bash
# Runs CMD ARGS... against a private AWS emulator that lives only as long as CMD: it has its own state
# directory (so it never touches the demo's emulator), the AWS env from `emulator.sh env` is exported, the
# emulator is stopped on any exit (success, failure, interrupt), and CMD's exit code is returned.
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export DATAVAULT_EMULATOR_RUN_DIR="${DATAVAULT_TOOLCHAIN_DIR:-$ROOT/.toolchain}/run/ci-$$"

cleanup() { "$ROOT/scripts/emulator.sh" stop >/dev/null || true; rm -rf "$DATAVAULT_EMULATOR_RUN_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$ROOT/scripts/emulator.sh" start
eval "$("$ROOT/scripts/emulator.sh" env)"
rc=0
"$@" || rc=$?
exit "$rc"
