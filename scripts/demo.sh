#!/usr/bin/env bash
# A self-contained demo of layercrypt's main job on this machine, on embedded defaults:
# build, make a small image, encrypt it for a JWE key and an X.509 certificate, inspect it,
# decrypt it with each key, and check the result is the original image, byte for byte.
# Then the group chain through the key broker in development mode (`layercrypt-broker serve
# --dev`: loopback only, throw-away store, built-in token issuer): create a group, grant an
# entitlement, encrypt for the group, decrypt as a member, be refused as a non-member.
# Everything happens in a temporary directory; nothing leaves the machine.
# Usage: scripts/demo.sh   (installs libssl-dev, pkg-config, openssl and curl if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

missing=()
for p in libssl-dev pkg-config openssl curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build (release; the first build takes several minutes, cargo shows its progress)"
cargo build --release -p layercrypt-cli -p layercrypt-broker
lc="$root/target/release/layercrypt"
lb="$root/target/release/layercrypt-broker"

work=$(mktemp -d)
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
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

step "the key broker in development mode (loopback only, throw-away store, built-in token issuer)"
# A free loopback port: the broker names its URL in every group payload, so port 0 will not do.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
       || shuf -i 20000-60000 -n 1)
broker="http://127.0.0.1:$port"
"$lb" serve --dev --listen "127.0.0.1:$port" >broker.out 2>broker.err &
broker_pid=$!
for _ in $(seq 100); do
  grep -q '^bootstrap admin token: ' broker.out 2>/dev/null && curl -fsS "$broker/healthz" >/dev/null 2>&1 && break
  kill -0 "$broker_pid" 2>/dev/null || { echo "FAIL: the broker did not start:"; cat broker.err; exit 1; }
  sleep 0.1
done
# Created 0600 from the start (umask), never readable by others even for a moment.
(umask 077; sed -n 's/^bootstrap admin token: //p' broker.out > admin.token)
[ -s admin.token ] || { echo "FAIL: no admin token printed"; cat broker.out broker.err; exit 1; }
echo "broker $broker (pid $broker_pid), admin token in admin.token"
# The demo's own config directory: no tokens or broker settings of yours are read or written.
export XDG_CONFIG_HOME="$work/config" LAYERCRYPT_BROKER="$broker"

step "an admin creates group vo.demo.org and grants every role of the VO"
vo="urn:mace:egi.eu:group:vo.demo.org:"
"$lc" group create vo.demo.org --admin-token-file admin.token
"$lc" group grant vo.demo.org --entitlement "$vo" --prefix --admin-token-file admin.token

step "encrypt for the group (needs only the group's public key from the broker)"
"$lc" encrypt --recipient group:vo.demo.org oci:img:v1 oci:enc-group:v1
"$lc" inspect oci:enc-group:v1

step "tokens from the broker's development issuer (stands in for EGI Check-in)"
dev_token() { # SUB [ENTITLEMENT]
  local body="{\"sub\":\"$1\"${2:+,\"entitlements\":[\"$2\"]}}"
  curl -fsS -X POST -H 'Content-Type: application/json' -d "$body" "$broker/dev/token" \
    | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
dev_token carol "${vo}role=member#aai.egi.eu" > carol.token
dev_token dave > dave.token
[ -s carol.token ] && [ -s dave.token ] || { echo "FAIL: no token from /dev/token"; exit 1; }
echo "carol: member of vo.demo.org; dave: no entitlements"

step "decrypt as carol, a member"
"$lc" decrypt --token-file carol.token oci:enc-group:v1 oci:dec-carol:v1
m=$(grep -o '"digest":"sha256:[0-9a-f]*"' dec-carol/index.json | head -1 | cut -d: -f3 | tr -d '"')
cmp "dec-carol/blobs/sha256/$m" manifest.json
echo "dec-carol: manifest byte-identical to the original (sha256:$m)"

step "dave, not a member, is refused (exit code 3) and the broker audits it"
set +e
"$lc" decrypt --token-file dave.token oci:enc-group:v1 oci:dec-dave:v1
code=$?
set -e
[ "$code" = 3 ] || { echo "FAIL: expected exit code 3, got $code"; exit 1; }
[ ! -e dec-dave ] || { echo "FAIL: dec-dave written"; exit 1; }
echo "ok: refused (exit code 3), no dec-dave written"
"$lc" audit --admin-token-file admin.token --limit 3

step "stop the broker"
kill "$broker_pid" && wait "$broker_pid" 2>/dev/null || true
broker_pid=""
echo "stopped (its --dev store is deleted)"

printf '\n\033[1mDemo finished: encrypted per layer, inspected, decrypted by two different recipients, refused for a third; encrypted for a group, decrypted by a member through the broker, refused for a non-member.\033[0m\n'
