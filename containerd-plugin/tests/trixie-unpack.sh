#!/usr/bin/env bash
# Downloads Debian 13 (trixie) packages on a Debian 12 machine WITHOUT installing them or
# changing the system's apt sources, and unpacks them into DIR/root: a private apt state in
# DIR, `apt-get download`, `dpkg-deb -x`. Used by skopeo-trixie.sh and containerd-trixie.sh.
#
#   trixie-unpack.sh DIR PACKAGE...
set -euo pipefail
DIR="$1"
shift
mkdir -p "$DIR"/{lists/partial,cache/archives/partial,etc,debs,root}
# The mirror is the machine's own (its apt configuration), never one named here: the first
# Debian archive URI (not -security/-updates/-backports) in sources.list.d/*.sources or
# sources.list.
mirror=$(
  { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n'
    sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | grep -E '^https?://' | grep -v -E 'security|updates|backports' | head -1
) || true
[ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list{,.d}" >&2; exit 1; }
echo "deb ${mirror%/} trixie main" >"$DIR/etc/sources.list"
: >"$DIR/etc/status"
APT=(-o "Dir::Etc::sourcelist=$DIR/etc/sources.list" -o "Dir::Etc::sourceparts=-"
     -o "Dir::State::Lists=$DIR/lists" -o "Dir::State::status=$DIR/etc/status"
     -o "Dir::Cache=$DIR/cache" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
apt-get "${APT[@]}" update -qq >"$DIR/apt-update.log" 2>&1 \
  || { cat "$DIR/apt-update.log" >&2; exit 1; }
(cd "$DIR/debs" && apt-get "${APT[@]}" download -qq "$@" >"$DIR/apt-download.log" 2>&1) \
  || { cat "$DIR/apt-download.log" >&2; exit 1; }
for deb in "$DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DIR/root"; done
