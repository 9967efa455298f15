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
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== tools"
skopeo --version
docker-registry --version 2>/dev/null || true
cargo --version

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build (binaries are used by the end-to-end tests)"
cargo build --workspace --bins --locked

echo "== fuzz targets build"
cargo build --manifest-path fuzz/Cargo.toml --bins --locked

echo "== tests"
cargo test --workspace --locked
