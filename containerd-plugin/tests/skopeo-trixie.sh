#!/usr/bin/env bash
# Fetches Debian 13 (trixie)'s skopeo 1.18 (ocicrypt 1.1+: key providers) on a Debian 12
# machine WITHOUT installing it or changing the system's apt sources: a private apt state in
# DIR, `apt-get download` of skopeo and the libraries it needs, `dpkg-deb -x` into DIR/root,
# and a wrapper DIR/skopeo that runs it through trixie's own dynamic loader.
#
#   containerd-plugin/tests/skopeo-trixie.sh [DIR]     # default: target/skopeo-trixie
#   DIR/skopeo --version                               # skopeo version 1.18.0
#
# Prints the wrapper's path on the last line. Idempotent: does nothing if DIR/skopeo works.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="$(realpath -m "${1:-target/skopeo-trixie}")"
WRAPPER="$DIR/skopeo"
if [ -x "$WRAPPER" ] && "$WRAPPER" --version >/dev/null 2>&1; then
  echo "$WRAPPER"
  exit 0
fi
# skopeo's run-time libraries (ldd through trixie's loader): libc6, libgpgme11t64 (+ libassuan9,
# libgpg-error0), libsqlite3-0; golang-github-containers-common for /etc/containers/policy.json.
PKGS=(skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0 golang-github-containers-common)
bash containerd-plugin/tests/trixie-unpack.sh "$DIR" "${PKGS[@]}"
LIB="$DIR/root/usr/lib/x86_64-linux-gnu"
cat >"$WRAPPER" <<EOF
#!/bin/sh
# Debian 13's skopeo, unpacked by skopeo-trixie.sh, run through trixie's dynamic loader.
exec "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$DIR/root/usr/bin/skopeo" "\$@"
EOF
chmod 755 "$WRAPPER"
"$WRAPPER" --version >&2
echo "$WRAPPER"
