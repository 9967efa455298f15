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
mkdir -p "$DIR"/{lists/partial,cache/archives/partial,etc,debs,root}
echo "deb http://deb.debian.org/debian trixie main" >"$DIR/etc/sources.list"
: >"$DIR/etc/status"
APT=(-o "Dir::Etc::sourcelist=$DIR/etc/sources.list" -o "Dir::Etc::sourceparts=-"
     -o "Dir::State::Lists=$DIR/lists" -o "Dir::State::status=$DIR/etc/status"
     -o "Dir::Cache=$DIR/cache" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
apt-get "${APT[@]}" update -qq >"$DIR/apt-update.log" 2>&1 \
  || { cat "$DIR/apt-update.log" >&2; exit 1; }
(cd "$DIR/debs" && apt-get "${APT[@]}" download -qq containerd >"$DIR/apt-download.log" 2>&1) \
  || { cat "$DIR/apt-download.log" >&2; exit 1; }
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
"$BIN/containerd" --version >&2
echo "$BIN"
