#!/bin/sh
# Go interop, layercrypt → Go direction (see README.md):
#   1. skopeo encrypts a tiny image for cert.pem (PKCS#7);
#   2. layercrypt's Pkcs7KeyWrapper unwraps the layer's private options with key.pem+cert.pem
#      and re-wraps them (its own `wrap`) for one or two recipients;
#   3. the annotation in the manifest is replaced (manifest blob, digest and size in index.json);
#   4. skopeo decrypts with each recipient's key and certificate, and the decrypted layer must
#      equal the original one; a key that is not a recipient must be refused;
#   5. case two-minus-cert2: the two-recipient value of step 2 with cert2.pem's recipient
#      removed by layercrypt (no key needed): cert.pem+key.pem must still decrypt, cert2's not.
# Needs: openssl, umoci, skopeo, python3, cargo. Exit status 0 = all checks passed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/rootfs"
echo "hello from layercrypt go-interop" > "$work/rootfs/hello.txt"
umoci init --layout "$work/src" >/dev/null
umoci new --image "$work/src:t" >/dev/null
umoci insert --image "$work/src:t" "$work/rootfs/hello.txt" /hello.txt >/dev/null
skopeo copy -q --encryption-key "pkcs7:$here/cert.pem" "oci:$work/src:t" "oci:$work/enc:t"

# Build the helper once (quietly), then run it per case.
(cd "$root" && cargo test -q -p layercrypt-ocicrypt --lib --no-run 2>/dev/null)

layer_digest() { # $1 = layout; prints layer 0 digest
  python3 - "$1" <<'PY'
import json, sys
d = sys.argv[1]
ix = json.load(open(d + "/index.json"))
m = json.load(open(d + "/blobs/sha256/" + ix["manifests"][0]["digest"][7:]))
print(m["layers"][0]["digest"])
PY
}

replace_annotation() { # $1 = layout, $2 = file with the new annotation value
  python3 - "$1" "$2" <<'PY'
import hashlib, json, os, sys
d, value_file = sys.argv[1], sys.argv[2]
key = "org.opencontainers.image.enc.keys.pkcs7"
ix = json.load(open(d + "/index.json"))
old = ix["manifests"][0]["digest"][7:]
raw = open(d + "/blobs/sha256/" + old, "rb").read()
m = json.loads(raw)
m["layers"][0]["annotations"][key] = open(value_file).read().strip()
new = json.dumps(m, separators=(",", ":")).encode()
dig = hashlib.sha256(new).hexdigest()
open(d + "/blobs/sha256/" + dig, "wb").write(new)
os.remove(d + "/blobs/sha256/" + old)
ix["manifests"][0]["digest"] = "sha256:" + dig
ix["manifests"][0]["size"] = len(new)
json.dump(ix, open(d + "/index.json", "w"), separators=(",", ":"))
PY
}

python3 - "$work/enc" > "$work/annotation.txt" <<'PY'
import json, sys
d = sys.argv[1]
ix = json.load(open(d + "/index.json"))
m = json.load(open(d + "/blobs/sha256/" + ix["manifests"][0]["digest"][7:]))
print(m["layers"][0]["annotations"]["org.opencontainers.image.enc.keys.pkcs7"], end="")
PY

want=$(layer_digest "$work/src")
fail=0

rewrap() { # $1 = case name, $2 = comma-separated recipient cert files
  rm -rf "$work/$1"
  cp -r "$work/enc" "$work/$1"
  (cd "$root" && PKCS7_IN="$work/annotation.txt" PKCS7_KEY="$here/key.pem" PKCS7_CERT="$here/cert.pem" \
    PKCS7_RECIPIENTS="$2" PKCS7_OUT="$work/$1.b64" \
    cargo test -q -p layercrypt-ocicrypt --lib keywrap::pkcs7::tests::go_interop_rewrap_helper \
      -- --ignored --exact >/dev/null 2>&1)
  if cmp -s "$work/annotation.txt" "$work/$1.b64"; then
    echo "FAIL $1: the re-wrapped annotation equals skopeo's"; exit 1
  fi
  replace_annotation "$work/$1" "$work/$1.b64"
}

decrypt() { # $1 = case, $2 = key, $3 = cert, $4 = expect ok|fail
  rm -rf "$work/out"
  if skopeo copy -q --decryption-key "$here/$2" --decryption-key "$here/$3" \
      "oci:$work/$1:t" "oci:$work/out:t" 2>"$work/err.txt"; then
    got=$(layer_digest "$work/out")
    if [ "$4" = ok ] && [ "$got" = "$want" ]; then
      echo "PASS $1: skopeo decrypted with $2 + $3, layer $got matches the original"
    else
      echo "FAIL $1: skopeo with $2 + $3: expected $4, got success (layer $got)"; fail=1
    fi
  else
    if [ "$4" = fail ]; then
      echo "PASS $1: skopeo refused $2 + $3 ($(tail -c 150 "$work/err.txt" | tr '\n' ' '))"
    else
      echo "FAIL $1: skopeo with $2 + $3 failed: $(cat "$work/err.txt")"; fail=1
    fi
  fi
}

rewrap single "$here/cert.pem"
decrypt single key.pem cert.pem ok
decrypt single key2.pem cert2.pem fail

rewrap two "$here/cert.pem,$here/cert2.pem"
decrypt two key.pem cert.pem ok
decrypt two key2.pem cert2.pem ok

# Case two-minus-cert2: layercrypt wraps for cert.pem + cert2.pem (as in case two), then
# removes cert2.pem's RecipientInfo without any key (Pkcs7KeyWrapper::remove_recipients).
rm -rf "$work/two-minus-cert2"
cp -r "$work/enc" "$work/two-minus-cert2"
(cd "$root" && PKCS7_IN="$work/two.b64" PKCS7_REMOVE="$here/cert2.pem" PKCS7_OUT="$work/two-minus-cert2.b64" \
  cargo test -q -p layercrypt-ocicrypt --lib keywrap::pkcs7::tests::go_interop_remove_helper \
    -- --ignored --exact >/dev/null 2>&1) || { echo "FAIL two-minus-cert2: removal helper failed"; exit 1; }
replace_annotation "$work/two-minus-cert2" "$work/two-minus-cert2.b64"
decrypt two-minus-cert2 key.pem cert.pem ok
decrypt two-minus-cert2 key2.pem cert2.pem fail

exit $fail
