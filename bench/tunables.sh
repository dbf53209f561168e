#!/usr/bin/env bash
# Benchmarks a warm local cluster with chosen tunables; used for the A/B figures in
# docs/benchmarks.md where a setting has no `bulwark bench --spawn` flag.
#
#   bench/tunables.sh [key=value ...]
#
# Each key=value replaces that line under `tunables:` of a fresh `bulwark init` cluster file
# (e.g. pipelineMax=2). Environment: MODE (durability, default parallel), SIZE (value bytes,
# default 0), CLIENTS (default 32), RUNS (measured runs, default 2), DUR (seconds per run,
# default 8), LABEL (prefix of each printed line). Environment variables the nodes read
# (BULWARK_NODE_ARGS, BULWARK_LAZY_HOLD_MS) pass through to them.
#
# Steps: init a cluster in a temporary directory, apply the tunables, `bulwark up`, one 3 s
# warm-up run (the first seconds after start are slower: the nodes are still compiling), RUNS
# measured runs, `bulwark down`. Prints each run's `bench:` line.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/bulwark-tunables-XXXXXX)
trap 'npx bulwark down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
npx bulwark init --dir "$dir" >/dev/null
sed -i "s/^durability:.*/durability: ${MODE:-parallel}/" "$dir/cluster.yaml"
for kv in "$@"; do
  k=${kv%%=*}
  v=${kv#*=}
  grep -q "^  $k:" "$dir/cluster.yaml" || { echo "unknown tunable: $k" >&2; exit 2; }
  sed -i "s/^\(  $k:\).*/\1 $v/" "$dir/cluster.yaml"
done
npx bulwark up --dir "$dir" >/dev/null
bench() { npx bulwark bench --dir "$dir" --clients "${CLIENTS:-32}" --size "${SIZE:-0}" --duration "$1" 2>/dev/null; }
bench 3 >/dev/null
for _ in $(seq "${RUNS:-2}"); do
  bench "${DUR:-8}" | tail -1 | sed "s|^|${LABEL:-${MODE:-parallel} $*} |"
done
