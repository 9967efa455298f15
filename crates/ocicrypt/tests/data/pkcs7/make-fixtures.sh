#!/bin/sh
# Regenerates the Go-made PKCS#7 vectors in this directory (see README.md).
# Needs: openssl, umoci, skopeo (Debian 12: skopeo 1.9.3 / ocicrypt 1.0.3), python3.
# Keys and certificates are test-only.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$here"

if [ "${1:-}" = "--new-keys" ] || [ ! -f key.pem ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 36500 \
    -subj "/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-"
  openssl req -x509 -newkey rsa:4096 -nodes -keyout key2.pem -out cert2.pem -days 36500 \
    -subj "/C=NL/O=layercrypt test/CN=second recipient"
fi

# A one-layer OCI image with one small file.
mkdir "$work/rootfs"
echo "hello from layercrypt pkcs7 vectors" > "$work/rootfs/hello.txt"
umoci init --layout "$work/src"
umoci new --image "$work/src:t"
umoci insert --image "$work/src:t" "$work/rootfs/hello.txt" /hello.txt

annotation() { # $1 = OCI layout dir; prints the pkcs7 annotation of layer 0
  python3 - "$1" <<'PY'
import json, sys
d = sys.argv[1]
ix = json.load(open(d + "/index.json"))
m = json.load(open(d + "/blobs/sha256/" + ix["manifests"][0]["digest"][7:]))
print(m["layers"][0]["annotations"]["org.opencontainers.image.enc.keys.pkcs7"], end="")
PY
}

skopeo copy --encryption-key "pkcs7:$here/cert.pem" "oci:$work/src:t" "oci:$work/enc1:t"
annotation "$work/enc1" > single.b64
skopeo copy --encryption-key "pkcs7:$here/cert2.pem" --encryption-key "pkcs7:$here/cert.pem" \
  "oci:$work/src:t" "oci:$work/enc2:t"
annotation "$work/enc2" > two.b64
skopeo --version > skopeo-version.txt
echo "wrote single.b64 two.b64"
