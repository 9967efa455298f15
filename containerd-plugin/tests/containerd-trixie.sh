#!/usr/bin/env bash
# Fetches Debian 13 (trixie)'s containerd 1.7 on a Debian 12 machine WITHOUT installing it or
# changing the system's apt sources (as skopeo-trixie.sh does for skopeo): a private apt state
# in DIR, `apt-get download containerd`, `dpkg-deb -x` into DIR/root. Its binaries (containerd,
# ctr, containerd-shim-runc-v2) need only libc, which Debian 12's satisfies, so they run as
# they are. The end-to-end test runs the same cases against it as against Debian 12's 1.6.
#
#   containerd-plugin/tests/containerd-trixie.sh [DIR]   # default: target/containerd-trixie
#
# Prints the directory holding the binaries on the last line. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="$(realpath -m "${1:-target/containerd-trixie}")"
BIN="$DIR/root/usr/bin"
if [ -x "$BIN/containerd" ] && "$BIN/containerd" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi
bash containerd-plugin/tests/trixie-unpack.sh "$DIR" containerd
"$BIN/containerd" --version >&2
echo "$BIN"
