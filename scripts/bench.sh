#!/usr/bin/env bash
# bench.sh — layercrypt vs skopeo (Go ocicrypt) vs the OpenSSL ceiling, in one run.
#
# What it measures (all in one run, because this shared 2-vCPU machine is noisy: compare
# the figures of one run with each other, quote ratios, not absolute numbers):
#   1. `openssl speed -evp aes-256-ctr` and `openssl speed -hmac sha256` (16 KiB blocks,
#      3 s, pinned to core 0). The ocicrypt layer cipher does both over every byte, so one
#      core cannot beat  ceiling = 1 / (1/aes + 1/hmac).
#   2. One OCI image with a single uncompressed-tar layer of random data (BENCH_SIZE_MIB,
#      default 1024 MiB), then, each BENCH_RUNS times (default 3, median reported), timed
#      with `/usr/bin/time -f '%e %M'` (wall seconds, peak RSS):
#        skopeo encrypt     skopeo copy --dest-oci-accept-uncompressed-layers \
#                             --encryption-key jwe:rsa.pub.pem oci:SRC:t oci:ENC:t
#        skopeo decrypt     skopeo copy --dest-oci-accept-uncompressed-layers \
#                             --decryption-key rsa.pem oci:ENC:t oci:DEC:t
#        layercrypt encrypt $LAYERCRYPT encrypt --quiet --recipient jwe:rsa.pub.pem oci:SRC:t oci:ENC2:t
#        layercrypt decrypt $LAYERCRYPT decrypt --quiet --key rsa.pem oci:ENC2:t oci:DEC2:t
#      once on one core (`taskset -c 0`) and once on both cores (no taskset). Output
#      directories are deleted before every run (not timed). Each decrypt result is checked
#      against the source manifest, so a broken run cannot pass for a fast one.
#   Throughput = layer blob size in MiB / wall seconds (MiB/s); the openssl figures are
#   converted to MiB/s too so that the ratios compare like with like.
#
# Output: a Markdown table on stdout (progress on stderr). Typical use:
#   cargo build --release && scripts/bench.sh | tee bench.md
#
# Environment:
#   LAYERCRYPT       layercrypt binary (default target/release/layercrypt); the script stops
#                    at once if it is missing or not executable.
#   BENCH_DIR        scratch directory (default /tmp/layercrypt-bench); needs ~4x the layer
#                    size free. The source image and keys are kept there and reused.
#   BENCH_SIZE_MIB   layer size in MiB (default 1024; use 64 while developing).
#   BENCH_RUNS       runs per measurement (default 3; the median is reported).
#   BENCH_SKIP_LAYERCRYPT=1  development only: skip the layercrypt rows (shown as n/a).
#
# Needs: openssl, skopeo, python3, taskset (util-linux), GNU time at /usr/bin/time.
set -euo pipefail

LAYERCRYPT="${LAYERCRYPT:-target/release/layercrypt}"
BENCH_DIR="${BENCH_DIR:-/tmp/layercrypt-bench}"
BENCH_SIZE_MIB="${BENCH_SIZE_MIB:-1024}"
BENCH_RUNS="${BENCH_RUNS:-3}"
BENCH_SKIP_LAYERCRYPT="${BENCH_SKIP_LAYERCRYPT:-0}"

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { printf '[bench] %s\n' "$*" >&2; }

for tool in openssl skopeo python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x /usr/bin/time ]] || die "GNU time not found at /usr/bin/time (apt-get install time)"
[[ "$BENCH_SIZE_MIB" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB must be a positive integer"
[[ "$BENCH_RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

if [[ "$BENCH_SKIP_LAYERCRYPT" == 1 ]]; then
    log "BENCH_SKIP_LAYERCRYPT=1: layercrypt rows skipped"
else
    if [[ ! -e "$LAYERCRYPT" ]] && ! command -v "$LAYERCRYPT" >/dev/null; then
        die "layercrypt binary not found: LAYERCRYPT=$LAYERCRYPT
  build it first (cargo build --release -p layercrypt-cli), or point LAYERCRYPT at it.
  (To test only the openssl and skopeo parts: BENCH_SKIP_LAYERCRYPT=1.)"
    fi
    if [[ -e "$LAYERCRYPT" ]]; then
        [[ -x "$LAYERCRYPT" ]] || die "LAYERCRYPT=$LAYERCRYPT is not executable"
        LAYERCRYPT="$(cd "$(dirname "$LAYERCRYPT")" && pwd)/$(basename "$LAYERCRYPT")"
    fi
fi

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
src="$BENCH_DIR/src"
keys="$BENCH_DIR/keys"

# ---------------------------------------------------------------------------------------
# 1. openssl ceiling
speed() { # openssl speed args... -> MB/s (10^6 B/s), from the "1000s of bytes" figure
    taskset -c 0 openssl speed "$@" -bytes 16384 -seconds 3 2>/dev/null |
        awk 'END { v = $NF; sub(/k$/, "", v); printf "%.1f", v / 1000 }'
}
log "openssl speed aes-256-ctr (3 s)"
aes_mb="$(speed -evp aes-256-ctr)"
log "openssl speed hmac sha256 (3 s)"
hmac_mb="$(speed -hmac sha256)"
[[ "$aes_mb" != 0.0 && "$hmac_mb" != 0.0 ]] || die "could not parse openssl speed output"
mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v * 1e6 / 1048576 }'; }
aes_mib="$(mib "$aes_mb")"
hmac_mib="$(mib "$hmac_mb")"
ceil_mb="$(awk -v a="$aes_mb" -v h="$hmac_mb" 'BEGIN { printf "%.1f", 1 / (1 / a + 1 / h) }')"
ceil_mib="$(mib "$ceil_mb")"

# ---------------------------------------------------------------------------------------
# 2. source image and keys (reused if already there with the same size)
if [[ ! -f "$keys/rsa.pem" ]]; then
    mkdir -p "$keys"
    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rsa.pem"
    openssl pkey -in "$keys/rsa.pem" -pubout -out "$keys/rsa.pub.pem"
fi
if [[ "$(cat "$src/.size-mib" 2>/dev/null || true)" != "$BENCH_SIZE_MIB" ]]; then
    log "building a ${BENCH_SIZE_MIB} MiB uncompressed-tar layer image in $src"
    rm -rf "$src"
    python3 - "$src" "$BENCH_SIZE_MIB" <<'EOF'
import hashlib, json, os, sys, tarfile
root, mib = sys.argv[1], int(sys.argv[2])
blobs = os.path.join(root, "blobs", "sha256")
os.makedirs(blobs)
def dumps(o): return json.dumps(o, separators=(",", ":")).encode()
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f: f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
tmp = os.path.join(root, "layer.tar")
with open("/dev/urandom", "rb") as rnd, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
    ti = tarfile.TarInfo("data/random.bin")
    ti.size, ti.mode, ti.mtime = mib << 20, 0o644, 1704067200
    tf.addfile(ti, rnd)
h = hashlib.sha256()
with open(tmp, "rb") as f:
    while chunk := f.read(1 << 20): h.update(chunk)
layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar",
         "digest": "sha256:" + h.hexdigest(), "size": os.path.getsize(tmp)}
os.rename(tmp, os.path.join(blobs, h.hexdigest()))
config = {"architecture": "amd64", "os": "linux", "config": {},
          "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(dumps(config))},
            "layers": [layer]}
md = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(dumps(manifest)),
      "annotations": {"org.opencontainers.image.ref.name": "t"}}
with open(os.path.join(root, "index.json"), "wb") as f: f.write(dumps({"schemaVersion": 2, "manifests": [md]}))
with open(os.path.join(root, "oci-layout"), "wb") as f: f.write(dumps({"imageLayoutVersion": "1.0.0"}))
EOF
    echo "$BENCH_SIZE_MIB" >"$src/.size-mib"
fi
src_manifest="$(skopeo inspect --raw "oci:$src:t")"
layer_bytes="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["size"])' <<<"$src_manifest")"
layer_mib="$(awk -v b="$layer_bytes" 'BEGIN { printf "%.3f", b / 1048576 }')"

# ---------------------------------------------------------------------------------------
# timed runs
declare -A TPUT RSS
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# check_decrypted DIR: the decrypted image must have the source layer back.
check_decrypted() {
    local got
    got="$(skopeo inspect --raw "oci:$1:t")"
    python3 - "$src_manifest" "$got" <<'EOF' || die "decrypted image in $1 does not match the source"
import json, sys
a, b = (json.loads(x) for x in sys.argv[1:])
sys.exit(0 if [l["digest"] for l in a["layers"]] == [l["digest"] for l in b["layers"]]
         and a["config"]["digest"] == b["config"]["digest"] else 1)
EOF
}
check_encrypted() {
    skopeo inspect --raw "oci:$1:t" | grep -q '+encrypted' || die "no encrypted layer in $1"
}

# measure NAME CORES OUTDIR CHECK cmd...   (CORES: 1 = taskset -c 0, 2 = no pinning)
measure() {
    local name="$1" cores="$2" outdir="$3" check="$4"
    shift 4
    local pin=()
    [[ "$cores" == 1 ]] && pin=(taskset -c 0)
    local secs=() kib=() i
    for ((i = 1; i <= BENCH_RUNS; i++)); do
        rm -rf "$outdir"
        sync
        if ! (cd "$keys" && /usr/bin/time -f '%e %M' -o "$BENCH_DIR/time.out" "${pin[@]}" "$@" \
            >"$BENCH_DIR/cmd.out" 2>"$BENCH_DIR/cmd.err"); then
            cat "$BENCH_DIR/cmd.err" >&2
            die "$name (cores=$cores) failed: $*"
        fi
        "$check" "$outdir"
        read -r s k <"$BENCH_DIR/time.out"
        secs+=("$s")
        kib+=("$k")
        log "$name cores=$cores run $i: ${s} s, $((k / 1024)) MiB RSS"
    done
    local s k
    s="$(printf '%s\n' "${secs[@]}" | median)"
    k="$(printf '%s\n' "${kib[@]}" | median)"
    TPUT["$name/$cores"]="$(awk -v m="$layer_mib" -v s="$s" 'BEGIN { printf "%.1f", (s > 0) ? m / s : 0 }')"
    RSS["$name/$cores"]="$(awk -v k="$k" 'BEGIN { printf "%.1f", k / 1024 }')"
}

enc1="$BENCH_DIR/enc-skopeo" dec1="$BENCH_DIR/dec-skopeo"
enc2="$BENCH_DIR/enc-layercrypt" dec2="$BENCH_DIR/dec-layercrypt"
for cores in 1 2; do
    measure "skopeo encrypt" "$cores" "$enc1" check_encrypted \
        skopeo copy -q --dest-oci-accept-uncompressed-layers --encryption-key jwe:rsa.pub.pem \
        "oci:$src:t" "oci:$enc1:t"
    measure "skopeo decrypt" "$cores" "$dec1" check_decrypted \
        skopeo copy -q --dest-oci-accept-uncompressed-layers --decryption-key rsa.pem \
        "oci:$enc1:t" "oci:$dec1:t"
    if [[ "$BENCH_SKIP_LAYERCRYPT" != 1 ]]; then
        measure "layercrypt encrypt" "$cores" "$enc2" check_encrypted \
            "$LAYERCRYPT" encrypt --quiet --recipient jwe:rsa.pub.pem "oci:$src:t" "oci:$enc2:t"
        measure "layercrypt decrypt" "$cores" "$dec2" check_decrypted \
            "$LAYERCRYPT" decrypt --quiet --key rsa.pem "oci:$enc2:t" "oci:$dec2:t"
    fi
done
rm -rf "$enc1" "$dec1" "$enc2" "$dec2" "$BENCH_DIR/time.out" "$BENCH_DIR/cmd.out" "$BENCH_DIR/cmd.err"

# ---------------------------------------------------------------------------------------
# report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
lc_version="n/a"
[[ "$BENCH_SKIP_LAYERCRYPT" != 1 ]] && lc_version="$("$LAYERCRYPT" --version 2>/dev/null | head -1 || echo '?')"

cat <<EOF
## layercrypt benchmark — $(date -u +%Y-%m-%dT%H:%MZ)

- CPU: $(lscpu | awk -F': +' '/^Model name/ { print $2; exit }'), $(nproc) cores; layer: ${layer_mib} MiB uncompressed tar (random data), median of ${BENCH_RUNS} runs
- $(skopeo --version); $(openssl version); layercrypt: ${lc_version}
- MiB/s = layer MiB / wall seconds; RSS = peak resident set (GNU time %M); 1 core = \`taskset -c 0\`
- ceiling = 1/(1/AES-256-CTR + 1/HMAC-SHA256), one core, openssl speed 16 KiB blocks

| measurement | cores | MiB/s | MB/s | peak RSS MiB | layercrypt / skopeo | / ceiling |
|---|---|---:|---:|---:|---:|---:|
| openssl AES-256-CTR | 1 | ${aes_mib} | ${aes_mb} | | | |
| openssl HMAC-SHA256 | 1 | ${hmac_mib} | ${hmac_mb} | | | |
| ceiling CTR+HMAC | 1 | ${ceil_mib} | ${ceil_mb} | | | 1.00 |
EOF
for cores in 1 2; do
    for op in encrypt decrypt; do
        for tool in skopeo layercrypt; do
            t="${TPUT["$tool $op/$cores"]:-}"
            r="${RSS["$tool $op/$cores"]:-}"
            if [[ -z "$t" ]]; then
                echo "| $tool $op | $cores | n/a | n/a | n/a | | |"
                continue
            fi
            mb="$(awk -v m="$t" 'BEGIN { printf "%.1f", m * 1048576 / 1e6 }')"
            vs=""
            [[ "$tool" == layercrypt ]] && vs="$(ratio "$t" "${TPUT["skopeo $op/$cores"]:-}")"
            echo "| $tool $op | $cores | $t | $mb | $r | $vs | $(ratio "$t" "$ceil_mib") |"
        done
    done
done
