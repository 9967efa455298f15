#!/usr/bin/env bash
# Recreate tests/data/vectors/ from scratch: test keys, deterministic plaintext OCI images,
# and the same images encrypted by Go ocicrypt (through skopeo), each checked by decrypting
# it back with skopeo. See tests/data/README.md for what each vector is for.
#
# Needs: bash, openssl, python3 (standard library only), zstd, skopeo (made with 1.9.3 /
# ocicrypt 1.0.3). Run from anywhere: ./tests/data/make-vectors.sh
#
# The plaintext layout is byte-for-byte reproducible (same digests on every run, given the
# same zlib and zstd); keys and ciphertexts are random, so they change on every run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/vectors"
keys="$out/keys"
plain="$out/images/plain"
enc="$out/images/skopeo-enc"

# sha256 of images/plain/index.json as built with Python 3.11 / zlib 1.2.13 / zstd 1.5.4.
# A different value means the plaintext blobs changed (e.g. another zlib): not an error,
# but tests that hard-code digests would have to follow.
PLAIN_INDEX_SHA256=5f01d38454caa36f7b0f55dedb793b9aa39997662b3707466ed1f7c587c67b11

for tool in openssl python3 zstd skopeo; do
    command -v "$tool" >/dev/null || { echo "make-vectors: $tool not found" >&2; exit 1; }
done

scratch="$(mktemp -d "${TMPDIR:-/tmp}/layercrypt-vectors.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

log() { printf '==> %s\n' "$*" >&2; }

rm -rf "$out"
mkdir -p "$keys" "$out/images"

# ---------------------------------------------------------------------------------------
log "keys (TEST ONLY)"
rsa_key() { openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }
rsa_key "$keys/rsa.pem"
openssl pkey -in "$keys/rsa.pem" -pubout -out "$keys/rsa.pub.pem"
rsa_key "$keys/rsa2.pem"
openssl pkey -in "$keys/rsa2.pem" -pubout -out "$keys/rsa2.pub.pem"
# genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"); ocicrypt ignores SEC1 "EC PRIVATE KEY" PEM.
openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -pkeyopt ec_param_enc:named_curve -out "$keys/ec.pem"
openssl pkey -in "$keys/ec.pem" -pubout -out "$keys/ec.pub.pem"

CA_DN='/DC=eu/DC=rcauth/O=Certification Authorities/CN=Research and Collaboration Authentication Pilot G1 CA'
USER_DN='/DC=eu/DC=rcauth/DC=rcauth-clients/O=EGI Foundation/CN=Jane Doe 7ewsApjEZsBcCLz-'
DAYS=7300 # 20 years
cnf="$scratch/openssl.cnf"
cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[user_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment,dataEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
EOF
rsa_key "$keys/ca.key.pem"
openssl req -config "$cnf" -x509 -new -sha256 -key "$keys/ca.key.pem" -subj "$CA_DN" \
    -set_serial 1 -days "$DAYS" -extensions ca_ext -out "$keys/ca.pem"
user_cert() { # name serial
    rsa_key "$keys/$1.key.pem"
    openssl req -config "$cnf" -new -sha256 -key "$keys/$1.key.pem" -subj "$USER_DN" \
        -out "$scratch/$1.csr"
    openssl x509 -req -in "$scratch/$1.csr" -sha256 -CA "$keys/ca.pem" -CAkey "$keys/ca.key.pem" \
        -set_serial "$2" -days "$DAYS" -extfile "$cnf" -extensions user_ext \
        -out "$keys/$1.pem" 2>/dev/null
    openssl verify -CAfile "$keys/ca.pem" "$keys/$1.pem" >/dev/null
}
user_cert user 0x1001
user_cert user2 0x1002 # same DN, new key, new serial: the "re-issued certificate"

# ---------------------------------------------------------------------------------------
log "plaintext images"
python3 "$here/build-plain.py" "$plain"
got="$(sha256sum "$plain/index.json" | cut -d' ' -f1)"
if [[ "$got" != "$PLAIN_INDEX_SHA256" ]]; then
    echo "make-vectors: WARNING: plain index.json is $got, expected $PLAIN_INDEX_SHA256" >&2
fi
for tag in gzip tar zstd three; do
    skopeo inspect "oci:$plain:$tag" >/dev/null
    # --preserve-digests works for plain copies only (skopeo 1.9.3 refuses it as soon as
    # layers are encrypted or decrypted: "copy needs an updated manifest but that was known
    # to be forbidden"). Without it, tar layers would be gzip-compressed on the way.
    skopeo copy -q --preserve-digests "oci:$plain:$tag" "oci:$scratch/plain-copy:$tag"
    cmp -s <(skopeo inspect --raw "oci:$plain:$tag") <(skopeo inspect --raw "oci:$scratch/plain-copy:$tag") ||
        { echo "make-vectors: skopeo copy of plain:$tag changed its manifest" >&2; exit 1; }
done

# ---------------------------------------------------------------------------------------
# encrypt ENC_TAG SRC_TAG SKOPEO_ARGS...  (paths inside SKOPEO_ARGS are relative to $keys)
meta="$scratch/meta.tsv"
: >"$meta"
encrypt() {
    local tag="$1" src="$2"
    shift 2
    log "encrypt $src -> $tag: skopeo copy $*"
    (cd "$keys" && skopeo copy -q "$@" "oci:$plain:$src" "oci:$enc:$tag")
    printf '%s\t%s\t%s\n' "$tag" "$src" "$*" >>"$meta"
}
encrypt jwe-rsa gzip --encryption-key jwe:rsa.pub.pem
encrypt jwe-ec gzip --encryption-key jwe:ec.pub.pem
encrypt pkcs7 gzip --encryption-key pkcs7:user.pem
encrypt two-jwe gzip --encryption-key jwe:rsa.pub.pem --encryption-key jwe:ec.pub.pem
encrypt mixed gzip --encryption-key jwe:rsa.pub.pem --encryption-key pkcs7:user.pem
encrypt partial three --encryption-key jwe:rsa.pub.pem --encrypt-layer 0 --encrypt-layer -1
encrypt tar tar --dest-oci-accept-uncompressed-layers --encryption-key jwe:rsa.pub.pem
encrypt zstd zstd --encryption-key jwe:rsa.pub.pem

# ---------------------------------------------------------------------------------------
# decrypt ENC_TAG KEYFILE...: decrypt with skopeo and compare the manifest with the plaintext one.
checks="$scratch/checks.tsv"
: >"$checks"
n=0
decrypt() {
    local tag="$1" src
    shift
    src="$(awk -F'\t' -v t="$tag" '$1 == t { print $2 }' "$meta")"
    local args=()
    for k in "$@"; do args+=(--decryption-key "$k"); done
    [[ "$tag" == tar ]] && args+=(--dest-oci-accept-uncompressed-layers)
    n=$((n + 1))
    local dst="$scratch/dec$n"
    log "decrypt $tag with $*"
    (cd "$keys" && skopeo copy -q "${args[@]}" "oci:$enc:$tag" "oci:$dst:$tag")
    local same=false
    if cmp -s <(skopeo inspect --raw "oci:$plain:$src") <(skopeo inspect --raw "oci:$dst:$tag"); then
        same=true
    else
        echo "make-vectors: NOTE: decrypted $tag (keys $*) differs from plain:$src" >&2
        diff <(skopeo inspect --raw "oci:$plain:$src" | python3 -m json.tool) \
            <(skopeo inspect --raw "oci:$dst:$tag" | python3 -m json.tool) >&2 || true
    fi
    printf '%s\t%s\t%s\n' "$tag" "$*" "$same" >>"$checks"
}
# must_not_decrypt ENC_TAG KEYFILE...: a key that is not a recipient must be refused.
must_not_decrypt() {
    local tag="$1"
    shift
    local args=()
    for k in "$@"; do args+=(--decryption-key "$k"); done
    log "decrypt $tag with $* (must fail)"
    if (cd "$keys" && skopeo copy -q "${args[@]}" "oci:$enc:$tag" "oci:$scratch/neg:$tag" 2>"$scratch/neg.err"); then
        echo "make-vectors: $tag decrypted with non-recipient key $*" >&2
        exit 1
    fi
    printf '%s\t%s\tnot-a-recipient\n' "$tag" "$*" >>"$checks"
}
decrypt jwe-rsa rsa.pem
must_not_decrypt jwe-rsa rsa2.pem
decrypt jwe-ec ec.pem
decrypt pkcs7 user.key.pem user.pem
must_not_decrypt pkcs7 user2.key.pem user2.pem
decrypt two-jwe rsa.pem
decrypt two-jwe ec.pem
decrypt mixed rsa.pem
decrypt mixed user.key.pem user.pem
decrypt partial rsa.pem
decrypt tar rsa.pem
decrypt zstd rsa.pem

# ---------------------------------------------------------------------------------------
log "expected.json"
python3 - "$out" "$meta" "$checks" <<'EOF'
import hashlib, json, sys
out, meta, checks = sys.argv[1:]

def index(layout):
    with open(f"{out}/images/{layout}/index.json") as f:
        return {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in json.load(f)["manifests"]}

def manifest(layout, digest):
    with open(f"{out}/images/{layout}/blobs/sha256/{digest.split(':')[1]}", "rb") as f:
        raw = f.read()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    return json.loads(raw)

plain, enc = index("plain"), index("skopeo-enc")
want_layers = {"partial": [0, 2]}
vectors = {}
for line in open(meta):
    tag, src, args = line.rstrip("\n").split("\t")
    pm = manifest("plain", plain[src]["digest"])
    em = manifest("skopeo-enc", enc[tag]["digest"])
    layers = [i for i, l in enumerate(em["layers"]) if l["mediaType"].endswith("+encrypted")]
    expect = want_layers.get(tag, list(range(len(pm["layers"]))))
    assert layers == expect, (tag, layers, expect)
    assert em["config"] == pm["config"], tag
    for i, (p, e) in enumerate(zip(pm["layers"], em["layers"])):
        assert e["size"] == p["size"], (tag, i)
        if i in layers:
            assert e["mediaType"] == p["mediaType"] + "+encrypted", (tag, i)
        else:
            assert e == p, (tag, i)
    vectors[tag] = {
        "plain_tag": src,
        "plain_manifest_digest": plain[src]["digest"],
        "encrypted_manifest_digest": enc[tag]["digest"],
        "encrypted_layers": layers,
        "plain_layer_digests": [l["digest"] for l in pm["layers"]],
        "skopeo_args": args.split(" "),
        "decrypts_with": [],
        "does_not_decrypt_with": [],
    }
for line in open(checks):
    tag, ks, result = line.rstrip("\n").split("\t")
    if result == "not-a-recipient":
        vectors[tag]["does_not_decrypt_with"].append(ks.split(" "))
    else:
        vectors[tag]["decrypts_with"].append(ks.split(" "))
        vectors[tag]["skopeo_decrypt_manifest_identical"] = vectors[tag].get(
            "skopeo_decrypt_manifest_identical", True) and result == "true"
doc = {
    "generator": "tests/data/make-vectors.sh",
    "note": "key paths are relative to vectors/keys; layer indexes are 0-based",
    "vectors": vectors,
}
with open(f"{out}/expected.json", "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
EOF

skopeo --version >"$out/skopeo-version.txt"
log "done: $(du -sh "$out" | cut -f1) in $out"
