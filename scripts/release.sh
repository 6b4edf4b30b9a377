#!/usr/bin/env bash
# Body of `make release`: builds the provider in release mode and writes into $DIST_DIR (default dist/) the
# files a Terraform provider registry serves, named as the public registry expects them:
#   terraform-provider-datavault_VERSION_OS_ARCH.zip     the binary terraform-provider-datavault_vVERSION[.exe]
#   terraform-provider-datavault_VERSION_manifest.json   a copy of terraform-registry-manifest.json
#   terraform-provider-datavault_VERSION_SHA256SUMS      sha256sum lines for every zip and the manifest
#   terraform-provider-datavault_VERSION_SHA256SUMS.sig  detached binary GPG signature of SHA256SUMS
#   signing-key.asc                                      ASCII-armored public key that made the signature
#
# Environment:
#   VERSION          version to release; must equal [package] version in Cargo.toml (the default)
#   DIST_DIR         output directory (default <repo>/dist); only this script's own files are replaced there
#   RELEASE_TARGETS  platforms to build, space or comma separated (default linux_amd64); see TARGETS below
#   RELEASE_BINARY   package this already-built linux_amd64 binary instead of running cargo (CI jobs that
#                    built it in an earlier step, and the registry acceptance test)
#   GPG_PRIVATE_KEY  ASCII-armored secret key to sign with (imported into a temporary keyring), as release
#                    pipelines pass it; GPG_PASSPHRASE unlocks it if it has a passphrase
#   GPG_FINGERPRINT  key to sign with: picks the key out of GPG_PRIVATE_KEY, or (alone) names a key already
#                    in the caller's keyring
#   neither          a throwaway key is generated in a temporary GNUPGHOME: fine for tests and local
#                    registries, never for a published release (the public registry pins the project key)
#   SOURCE_DATE_EPOCH  timestamp stored in the zips (default: the last commit's time), so that the same
#                    binary always gives the same zip, byte for byte
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
NAME=terraform-provider-datavault

die() { echo "release: $*" >&2; exit 1; }
say() { echo "release: $*"; }

# Terraform platform -> Rust target triples to try, best first. linux_amd64 prefers a static musl binary
# (runs on any Linux); the glibc build is the fallback. Add a platform here and to README "Releasing".
declare -A TARGETS=(
    [linux_amd64]="x86_64-unknown-linux-musl x86_64-unknown-linux-gnu"
    [linux_arm64]="aarch64-unknown-linux-musl aarch64-unknown-linux-gnu"
    [darwin_amd64]="x86_64-apple-darwin"
    [darwin_arm64]="aarch64-apple-darwin"
    [windows_amd64]="x86_64-pc-windows-gnu x86_64-pc-windows-msvc"
)

for tool in cargo gpg python3 sha256sum; do
    command -v "$tool" >/dev/null || die "'$tool' is required but not on PATH"
done

CARGO_VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
[[ -n "$CARGO_VERSION" ]] || die "no [package] version found in Cargo.toml"
VERSION="${VERSION:-$CARGO_VERSION}"
VERSION="${VERSION#v}"
if [[ "$VERSION" != "$CARGO_VERSION" ]]; then
    die "VERSION=$VERSION differs from the version in Cargo.toml ($CARGO_VERSION). Bump [package] version in
         Cargo.toml (and CHANGELOG.md) first, so the binary reports the version it is released as."
fi
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
    die "VERSION=$VERSION is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE])"

DIST="${DIST_DIR:-$ROOT/dist}"
mkdir -p "$DIST"
DIST="$(cd "$DIST" && pwd)"
PLATFORMS="$(echo "${RELEASE_TARGETS:-linux_amd64}" | tr ',' ' ')"
HOST="$(rustc -vV | sed -n 's/^host: //p')"
# Without rustup (a distribution's Rust) only the host target is there.
INSTALLED=" $({ rustup target list --installed 2>/dev/null || true; } | tr '\n' ' ') $HOST "
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LOCKED=()
[[ -f Cargo.lock ]] && LOCKED=(--locked)
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}"

WORK="$(mktemp -d)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# Everything is written to OUT first and moved into DIST only once it is all there, so a failed build or
# signature leaves the previous release in DIST untouched.
OUT="$WORK/out"
mkdir -p "$OUT"

# zip_one ZIP FILE: a zip holding FILE alone, mode 0755, stamped with SOURCE_DATE_EPOCH and no extra fields,
# so equal inputs give equal bytes on any machine (the zip CLI would record local time and uid/gid fields).
zip_one() {
    python3 - "$1" "$2" <<'PY'
import os, sys, time, zipfile
out, path = sys.argv[1], sys.argv[2]
stamp = time.gmtime(max(int(os.environ["SOURCE_DATE_EPOCH"]), 315532800))[:6]
info = zipfile.ZipInfo(os.path.basename(path), date_time=stamp)
info.compress_type = zipfile.ZIP_DEFLATED
info.create_system = 3  # Unix, so the mode below is honoured on extraction
info.external_attr = (0o100755 & 0xFFFF) << 16
with open(path, "rb") as f, zipfile.ZipFile(out, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
}

# build PLATFORM: prints the path of the built binary, or nothing when no usable Rust target is installed.
build() {
    local platform="$1" triple out
    if [[ "$platform" == linux_amd64 && -n "${RELEASE_BINARY:-}" ]]; then
        [[ -x "$RELEASE_BINARY" ]] || die "RELEASE_BINARY=$RELEASE_BINARY is not an executable file"
        say "linux_amd64: packaging the prebuilt RELEASE_BINARY=$RELEASE_BINARY (no cargo build)" >&2
        echo "$RELEASE_BINARY"
        return
    fi
    for triple in ${TARGETS[$platform]}; do
        [[ "$INSTALLED" == *" $triple "* ]] || continue
        local exe="$NAME"
        [[ "$platform" == windows_* ]] && exe="$NAME.exe"
        if [[ "$triple" == "$HOST" ]]; then
            say "$platform: cargo build --release (host target $triple)" >&2
            cargo build --release "${LOCKED[@]}" --bin "$NAME" >&2 || die "cargo build --release failed"
            out="$TARGET_DIR/release/$exe"
        else
            say "$platform: cargo build --release --target $triple" >&2
            if ! cargo build --release "${LOCKED[@]}" --bin "$NAME" --target "$triple" >&2; then
                say "WARNING: $platform: the $triple build failed; trying the next target" >&2
                continue
            fi
            out="$TARGET_DIR/$triple/release/$exe"
        fi
        case "$triple" in
        *-linux-musl) say "$platform: statically linked musl binary ($triple)" >&2 ;;
        *-linux-gnu)
            local glibc=""
            command -v objdump >/dev/null &&
                glibc="$(objdump -T "$out" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1 || true)"
            say "$platform: glibc build ($triple), dynamically linked; needs ${glibc:-a recent glibc} on the target machine." >&2
            [[ "$platform" == linux_amd64 ]] &&
                say "$platform: for a static binary: rustup target add x86_64-unknown-linux-musl (and a musl C toolchain)" >&2
            ;;
        esac
        echo "$out"
        return
    done
    say "WARNING: skipping $platform: none of its Rust targets (${TARGETS[$platform]}) is installed;" \
        "see README \"Releasing\" for adding it" >&2
}

t0="$(date +%s)"
zips=()
for platform in $PLATFORMS; do
    [[ -n "${TARGETS[$platform]:-}" ]] || die "unknown platform '$platform' in RELEASE_TARGETS (known: ${!TARGETS[*]})"
    bin="$(build "$platform")"
    [[ -n "$bin" ]] || continue
    [[ -f "$bin" ]] || die "$platform: expected binary $bin is missing"
    exe="${NAME}_v$VERSION"
    [[ "$platform" == windows_* ]] && exe="$exe.exe"
    mkdir -p "$WORK/$platform"
    cp "$bin" "$WORK/$platform/$exe"
    chmod 0755 "$WORK/$platform/$exe"
    zip="${NAME}_${VERSION}_${platform}.zip"
    zip_one "$OUT/$zip" "$WORK/$platform/$exe"
    zips+=("$zip")
    say "wrote $zip"
done
[[ ${#zips[@]} -gt 0 ]] || die "nothing was built (RELEASE_TARGETS=$PLATFORMS)"

manifest="${NAME}_${VERSION}_manifest.json"
cp terraform-registry-manifest.json "$OUT/$manifest"
sums="${NAME}_${VERSION}_SHA256SUMS"
(cd "$OUT" && sha256sum "${zips[@]}" "$manifest" | LC_ALL=C sort -k2 >"$sums")
say "wrote $sums"

# Signing. A temporary GNUPGHOME keeps imported or generated keys out of the caller's keyring.
gpg_args=(--batch --yes --no-tty --trust-model always)
if [[ -n "${GPG_PRIVATE_KEY:-}" || -z "${GPG_FINGERPRINT:-}" ]]; then
    export GNUPGHOME="$WORK/gnupg"
    mkdir -m 700 "$GNUPGHOME"
fi
if [[ -n "${GPG_PRIVATE_KEY:-}" ]]; then
    printf '%s\n' "$GPG_PRIVATE_KEY" | gpg "${gpg_args[@]}" --import 2>/dev/null ||
        die "GPG_PRIVATE_KEY could not be imported"
    fpr="${GPG_FINGERPRINT:-$(gpg "${gpg_args[@]}" --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')}"
    say "signing with the key from GPG_PRIVATE_KEY ($fpr)"
elif [[ -n "${GPG_FINGERPRINT:-}" ]]; then
    fpr="$GPG_FINGERPRINT"
    say "signing with key $fpr from the keyring in ${GNUPGHOME:-~/.gnupg}"
else
    gpg "${gpg_args[@]}" --passphrase '' --quick-gen-key \
        "$NAME throwaway release key (not for publishing) <release@localhost>" rsa3072 sign never 2>/dev/null ||
        die "could not generate a throwaway signing key"
    fpr="$(gpg "${gpg_args[@]}" --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')"
    say "WARNING: no GPG_FINGERPRINT / GPG_PRIVATE_KEY: signed with a THROWAWAY key $fpr."
    say "WARNING: fine for tests and private mirrors; a published release must be signed with the project key."
fi
[[ -n "$fpr" ]] || die "no signing key found"
sign_args=("${gpg_args[@]}" --local-user "$fpr" --detach-sign --output "$OUT/$sums.sig")
if [[ -n "${GPG_PASSPHRASE:-}" ]]; then
    gpg "${sign_args[@]}" --pinentry-mode loopback --passphrase-fd 0 "$OUT/$sums" <<<"$GPG_PASSPHRASE"
else
    gpg "${sign_args[@]}" "$OUT/$sums"
fi
gpg "${gpg_args[@]}" --armor --export "$fpr" >"$OUT/signing-key.asc"
[[ -s "$OUT/signing-key.asc" ]] || die "could not export the public key $fpr"
say "wrote $sums.sig and signing-key.asc (key $fpr)"

# Only this script's own files are replaced, so DIST_DIR may be a directory that holds other things.
rm -f "$DIST/${NAME}_${VERSION}_"* "$DIST/signing-key.asc"
mv "$OUT"/* "$DIST"/

say "release $VERSION in $DIST ($(($(date +%s) - t0))s):"
for f in "$DIST/${NAME}_${VERSION}_"* "$DIST/signing-key.asc"; do
    printf '  %12s  %s\n' "$(stat -c %s "$f")" "$(basename "$f")"
done
