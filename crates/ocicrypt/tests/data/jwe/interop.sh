#!/usr/bin/env bash
# Go <-> Rust interop check for the JWE key wrapper (see README.md in this directory).
#
# 1. builds a one-layer OCI image with umoci,
# 2. encrypts it with skopeo (Go ocicrypt) for: RSA, EC P-256, RSA + EC, RSA only (re-wrapped
#    by us for EC + RSA), P-384, P-521 + RSA,
# 3. takes the org.opencontainers.image.enc.keys.jwe annotation, unwraps it with our code and
#    wraps the private options again with our code (the ignored unit test `rewrap_for_go`),
# 4. puts our annotation into a copy of the image (new manifest blob, index.json fixed),
# 5. decrypts that copy with skopeo and checks the result equals the original image, and that a
#    wrong key is refused; in the remove-* cases our item has a recipient removed (by thumbprint,
#    the ignored unit test `remove_for_go`) before skopeo decrypts it, and the removed key must
#    be refused.
#
# Usage: crates/ocicrypt/tests/data/jwe/interop.sh   (from anywhere; needs skopeo, umoci, jq,
# python3, cargo). Exit status 0 = all cases passed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
crate="$(cd "$here/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

ann=org.opencontainers.image.enc.keys.jwe

manifest_of() { # layout dir -> path of its manifest blob
    local d
    d="$(jq -r '.manifests[0].digest' "$1/index.json")"
    echo "$1/blobs/${d%%:*}/${d#*:}"
}

# 1. source image
umoci init --layout src
umoci new --image src:t
umoci unpack --rootless --image src:t bundle >/dev/null 2>&1
echo "hello from layercrypt jwe interop" >bundle/rootfs/hello.txt
umoci repack --image src:t bundle
rm -rf bundle

cp "$here/rsa.pem" "$here/rsa.pub.pem" "$here/ec.pem" "$here/ec.pub.pem" .
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out wrong.pem 2>/dev/null
for c in P-384 P-521; do # fresh PKCS#8 keys (Go ocicrypt ignores SEC1 "EC PRIVATE KEY" PEM)
    openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$c" -out "$c.pem" 2>/dev/null
    openssl pkey -in "$c.pem" -pubout -out "$c.pub.pem"
done

# (build the test binary once, quietly)
(cd "$crate" && cargo test -q -p layercrypt-ocicrypt --lib --no-run 2>/dev/null)

fail=0
run_case() { # name, unwrap key, recipients for skopeo (space-separated pub files), our recipients (comma-separated), decrypt keys...
    local name="$1" key="$2" skopeo_pubs="$3" our_pubs="$4"
    shift 4
    local args=()
    for p in $skopeo_pubs; do args+=(--encryption-key "jwe:$p"); done
    skopeo copy -q "${args[@]}" oci:src:t "oci:enc-$name:t"

    # 3. unwrap Go's item and re-wrap it with our code
    jq -r ".layers[0].annotations[\"$ann\"]" "$(manifest_of "enc-$name")" >"go-$name.b64"
    (cd "$crate" && JWE_REWRAP_ALG="${JWE_REWRAP_ALG:-}" JWE_REWRAP_IN="$work/go-$name.b64" JWE_REWRAP_KEY="$work/$key" \
        JWE_REWRAP_PUBS="$(echo "$our_pubs" | sed "s|\([^,]*\)|$work/\1|g")" \
        JWE_REWRAP_OUT="$work/ours-$name.b64" \
        cargo test -q -p layercrypt-ocicrypt --lib keywrap::jwe::tests::rewrap_for_go -- --ignored --exact >/dev/null 2>&1) ||
        { echo "FAIL $name: our unwrap/rewrap of skopeo's item failed"; fail=1; return; }

    # optional: remove recipients from our item by thumbprint (no key needed)
    if [ -n "${JWE_REMOVE_PUBS:-}" ]; then
        (cd "$crate" && JWE_REMOVE_IN="$work/ours-$name.b64" \
            JWE_REMOVE_PUBS="$(echo "$JWE_REMOVE_PUBS" | sed "s|\([^,]*\)|$work/\1|g")" \
            JWE_REMOVE_OUT="$work/ours-$name.removed.b64" \
            cargo test -q -p layercrypt-ocicrypt --lib keywrap::jwe::tests::remove_for_go -- --ignored --exact >/dev/null 2>&1) ||
            { echo "FAIL $name: removing $JWE_REMOVE_PUBS from our item failed"; fail=1; return; }
        python3 - "ours-$name.b64" "ours-$name.removed.b64" <<'EOF3' || { echo "FAIL $name: removal changed the content or left the wrong recipients"; fail=1; return; }
import base64, json, sys
a, b = (json.loads(base64.b64decode(open(f).read())) for f in sys.argv[1:])
assert all(a[k] == b[k] for k in ("protected", "iv", "ciphertext", "tag"))
assert len(b["recipients"]) == len(a["recipients"]) - 1, b
assert b["encrypted_key"] == b["recipients"][0]["encrypted_key"]
EOF3
        mv "ours-$name.removed.b64" "ours-$name.b64"
        echo "ok   $name: removed $JWE_REMOVE_PUBS by thumbprint; protected, iv, ciphertext, tag unchanged"
    fi

    if [ -n "${JWE_REWRAP_ALG:-}" ]; then
        python3 - "ours-$name.b64" "$JWE_REWRAP_ALG" <<'EOF2' || { echo "FAIL $name: alg override not applied"; fail=1; return; }
import base64, json, sys
jwe = json.loads(base64.b64decode(open(sys.argv[1]).read()))
hdrs = [r["header"] for r in jwe["recipients"]] if "recipients" in jwe else [
    json.loads(base64.urlsafe_b64decode(jwe["protected"] + "==="))]
assert all(h["alg"] == sys.argv[2] for h in hdrs), hdrs
EOF2
    fi

    # 4. image copy with our annotation
    cp -r "enc-$name" "ours-$name"
    python3 - "ours-$name" "ours-$name.b64" "$ann" <<'EOF'
import hashlib, json, os, sys
layout, value_file, ann = sys.argv[1:]
index_path = os.path.join(layout, "index.json")
index = json.load(open(index_path))
desc = index["manifests"][0]
algo, hexd = desc["digest"].split(":")
old_path = os.path.join(layout, "blobs", algo, hexd)
manifest = json.load(open(old_path))
value = open(value_file).read().strip()
assert manifest["layers"][0]["annotations"][ann] != value
manifest["layers"][0]["annotations"][ann] = value
data = json.dumps(manifest, separators=(",", ":")).encode()
digest = hashlib.sha256(data).hexdigest()
open(os.path.join(layout, "blobs", algo, digest), "wb").write(data)
os.remove(old_path)
desc["digest"] = f"sha256:{digest}"
desc["size"] = len(data)
json.dump(index, open(index_path, "w"), separators=(",", ":"))
EOF

    # 5. skopeo decrypts our item; the result must be the original image
    for dkey in "$@"; do
        rm -rf out
        if ! skopeo copy -q --decryption-key "$dkey" "oci:ours-$name:t" oci:out:t; then
            echo "FAIL $name: skopeo could not decrypt our item with $dkey"; fail=1; continue
        fi
        # (compared as JSON: umoci ends its manifest with a newline, Go does not)
        if [ "$(jq -cS . "$(manifest_of src)")" = "$(jq -cS . "$(manifest_of out)")" ]; then
            echo "ok   $name: skopeo decrypted our item with $dkey (manifest, so layer digest, equals the source's)"
        else
            echo "FAIL $name: decrypted manifest differs from the source"; fail=1
        fi
    done
    for wkey in wrong.pem ${JWE_EXPECT_REFUSED:-}; do
        rm -rf out
        if skopeo copy -q --decryption-key "$wkey" "oci:ours-$name:t" oci:out:t 2>/dev/null; then
            echo "FAIL $name: skopeo decrypted with $wkey, which is not a recipient"; fail=1
        else
            echo "ok   $name: skopeo refuses $wkey"
        fi
    done
}

run_case rsa rsa.pem "rsa.pub.pem" "rsa.pub.pem" rsa.pem
run_case ec ec.pem "ec.pub.pem" "ec.pub.pem" ec.pem
run_case two rsa.pem "rsa.pub.pem ec.pub.pem" "rsa.pub.pem,ec.pub.pem" rsa.pem ec.pem
# Go wrote for RSA only; we re-wrap for EC + RSA (EC first, so Go's recipient 0 is EC).
run_case swap rsa.pem "rsa.pub.pem" "ec.pub.pem,rsa.pub.pem" ec.pem rsa.pem
# We wrap for RSA + EC, then remove EC by its thumbprint (kid): RSA still opens, EC no longer.
JWE_REMOVE_PUBS=ec.pub.pem JWE_EXPECT_REFUSED=ec.pem run_case remove-ec rsa.pem "rsa.pub.pem" "rsa.pub.pem,ec.pub.pem" rsa.pem
# ... and the same with EC as recipient 0 (the stray top-level encrypted_key must follow).
JWE_REMOVE_PUBS=ec.pub.pem JWE_EXPECT_REFUSED=ec.pem run_case remove-ec-first rsa.pem "rsa.pub.pem" "ec.pub.pem,rsa.pub.pem" rsa.pem

run_case p384 P-384.pem "P-384.pub.pem" "P-384.pub.pem" P-384.pem
run_case p521-rsa P-521.pem "P-521.pub.pem rsa.pub.pem" "P-521.pub.pem,rsa.pub.pem" P-521.pem rsa.pem

# JWK alg overrides (Go ocicrypt 1.0.3 decrypts whatever go-jose v2.6 supports)
JWE_REWRAP_ALG=RSA-OAEP-256 run_case rsa-oaep-256 rsa.pem "rsa.pub.pem" "rsa.pub.pem" rsa.pem
JWE_REWRAP_ALG=ECDH-ES+A128KW run_case ecdh-a128kw ec.pem "ec.pub.pem" "ec.pub.pem" ec.pem
JWE_REWRAP_ALG=ECDH-ES+A192KW run_case ecdh-a192kw P-521.pem "P-521.pub.pem" "P-521.pub.pem" P-521.pem

if [ "$fail" = 0 ]; then echo "ALL OK"; else echo "SOME CASES FAILED"; fi
exit "$fail"
