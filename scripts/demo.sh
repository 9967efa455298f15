#!/usr/bin/env bash
# A self-contained demo of layercrypt's main job on this machine, on embedded defaults:
# build, make a small image, encrypt it for a JWE key and an X.509 certificate, inspect it,
# decrypt it with each key, and check the result is the original image, byte for byte.
# Everything happens in a temporary directory; nothing leaves the machine.
# Usage: scripts/demo.sh            (installs libssl-dev and pkg-config if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

missing=()
for p in libssl-dev pkg-config openssl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
cargo build --quiet --release -p layercrypt-cli
lc="$root/target/release/layercrypt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

step "a small OCI image with two layers (one holds a 'licensed' binary)"
mkdir -p rootfs1/etc rootfs2/opt/app
echo "hello from a public layer" > rootfs1/etc/motd
head -c 200000 /dev/urandom > rootfs2/opt/app/licensed-solver
echo "API_TOKEN=do-not-publish" > rootfs2/opt/app/.env
mkdir -p img/blobs/sha256
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "img/blobs/sha256/$d"; echo "$d"; }
tar --sort=name --mtime=@0 --owner=0 --group=0 -C rootfs1 -cf l1.tar . && gzip -n -k l1.tar
tar --sort=name --mtime=@0 --owner=0 --group=0 -C rootfs2 -cf l2.tar . && gzip -n -k l2.tar
d1=$(blob l1.tar.gz); d2=$(blob l2.tar.gz)
diff1=$(sha256sum l1.tar | cut -d' ' -f1); diff2=$(sha256sum l2.tar | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s","sha256:%s"]}}' "$diff1" "$diff2" > config.json
dc=$(blob config.json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$dc" "$(stat -c%s config.json)" "$d1" "$(stat -c%s l1.tar.gz)" "$d2" "$(stat -c%s l2.tar.gz)" > manifest.json
dm=$(blob manifest.json)
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$dm" "$(stat -c%s manifest.json)" > img/index.json
echo '{"imageLayoutVersion":"1.0.0"}' > img/oci-layout
echo "image oci:img:v1, manifest sha256:$dm"

step "keys: a JWE key pair (layercrypt keygen) and an X.509 user certificate (openssl)"
"$lc" keygen --type ec --out alice
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout bob.key.pem -out bob.pem \
  -subj "/DC=eu/DC=rcauth/DC=rcauth-clients/O=Demo Lab/CN=Bob Example" 2>/dev/null
echo "certificate: $(openssl x509 -in bob.pem -noout -subject)"

step "encrypt every layer for both recipients"
"$lc" encrypt --recipient jwe:alice.pub.pem --recipient x509:bob.pem oci:img:v1 oci:enc:v1

step "inspect: who can decrypt each layer"
"$lc" inspect --cert bob.pem oci:enc:v1

step "the secret no longer appears in any blob"
if grep -rq "do-not-publish" enc/blobs; then echo "FAIL: plaintext found"; exit 1; fi
for f in enc/blobs/sha256/*; do (zcat "$f" 2>/dev/null | grep -q do-not-publish) && { echo "FAIL"; exit 1; }; done
echo "ok: no blob contains the secret, compressed or not"

step "decrypt as alice (JWE key) and as bob (certificate + key)"
"$lc" decrypt --key alice.pem oci:enc:v1 oci:dec-alice:v1
"$lc" decrypt --key bob.key.pem --key bob.pem oci:enc:v1 oci:dec-bob:v1

step "compare with the original"
for d in dec-alice dec-bob; do
  m=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$d/index.json" | head -1 | cut -d: -f3 | tr -d '"')
  cmp "$d/blobs/sha256/$m" manifest.json
  echo "$d: manifest byte-identical to the original (sha256:$m)"
done

step "somebody else's key is refused, and nothing is written"
"$lc" keygen --type ec --out mallory >/dev/null 2>&1
if "$lc" decrypt --key mallory.pem oci:enc:v1 oci:dec-mallory:v1; then echo "FAIL: decrypted with the wrong key"; exit 1; fi
[ ! -e dec-mallory ] && echo "ok: refused (exit code 3), no dec-mallory written"

printf '\n\033[1mDemo finished: encrypted per layer, inspected, decrypted by two different recipients, refused for a third.\033[0m\n'
