#!/usr/bin/env bash
# containerd pull + unpack benchmark: one image with a 256 MiB layer, plain vs encrypted (JWE
# key on the node) vs encrypted for a group (key from the real broker), interleaved rounds,
# medians, ratio to plain, load average. Needs root and the e2e setup (see
# docs/worker-node.md §7). Release build, so that the decoder runs at production speed.
#
#   containerd-plugin/bench.sh                     # BENCH_MIB=256 BENCH_ROUNDS=5 BENCH_COMP=gzip
#   BENCH_COMP=tar BENCH_ROUNDS=7 containerd-plugin/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d tests/oidc/node_modules/oidc-provider ] \
  || (cd tests/oidc && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
cargo build --release -p layercrypt-broker
exec cargo test --release -p layercrypt-containerd --test bench -- --ignored --nocapture --test-threads=1
