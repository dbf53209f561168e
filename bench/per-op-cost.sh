#!/bin/bash
# What one operation costs the cluster: node CPU (user and system), write and read system calls
# and context switches per operation, read from /proc/<pid>/{stat,io,status} of every node
# process around one `bulwark bench` run. Linux only.
#
# Usage: bench/per-op-cost.sh [REPO ...]
#   Each REPO (default: this checkout) is a bulwark checkout with node_modules; with several, the
#   runs interleave, ROUNDS times, so a busy minute on a shared machine hits every checkout once
#   (an A/B: `git worktree add /tmp/base <commit>` and link its node_modules).
# Environment: U, R (default 1 1), SIZE (bytes, 0), CLIENTS (32), DUR (seconds, 10), ROUNDS (3),
#   MODE (durability, parallel).
# Each run: a fresh cluster (`bulwark init` + `bulwark up` in a temporary directory), a 3 s bench
# to warm it up, then the measured bench; one line per run. `machine_busy` is the share of all
# CPUs busy (user, system, interrupts; /proc/stat) over the measured bench, its start-up included:
# near 100% the cluster is CPU-bound; well below, it waits (for the disk, or on timers).
set -u
repos=("$@")
[ ${#repos[@]} -eq 0 ] && repos=("$(cd "$(dirname "$0")/.." && pwd)")
U=${U:-1} R=${R:-1} SIZE=${SIZE:-0} CLIENTS=${CLIENTS:-32} DUR=${DUR:-10} ROUNDS=${ROUNDS:-3} MODE=${MODE:-parallel}

snap() { # pid utime stime syscr syscw ctxsw, one line per node
  for p in $1; do
    local s
    s=($(cut -d' ' -f14,15 "/proc/$p/stat"))
    echo "$p ${s[0]} ${s[1]} $(awk '/^syscr/ {r=$2} /^syscw/ {w=$2} END {print r, w}' "/proc/$p/io") $(awk '/ctxt_switches/ {c+=$2} END {print c}' "/proc/$p/status")"
  done
}

one() {
  local repo=$1 dir pids line ops
  dir=$(mktemp -d /tmp/bulwark-cost-XXXXXX)
  (cd "$repo" && node bin/bulwark.js init --dir "$dir" --u "$U" --r "$R" >/dev/null)
  sed -i "s/^durability:.*/durability: $MODE/" "$dir/cluster.yaml"
  (cd "$repo" && node bin/bulwark.js up --dir "$dir" >/dev/null)
  pids=$(pgrep -f "bulwark.js node --config $dir" | tr '\n' ' ')
  (cd "$repo" && node bin/bulwark.js bench --dir "$dir" --clients "$CLIENTS" --size "$SIZE" --duration 3 >/dev/null 2>&1)
  snap "$pids" >"$dir/before"
  local m0 m1 busy
  m0=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
  line=$(cd "$repo" && node bin/bulwark.js bench --dir "$dir" --clients "$CLIENTS" --size "$SIZE" --duration "$DUR" 2>/dev/null | grep '^bench:')
  snap "$pids" >"$dir/after"
  m1=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat)
  busy=$(echo "$m0 $m1" | awk '{printf "%.0f", ($3 - $1) * 100 / ($4 - $2)}')
  ops=$(echo "$line" | sed 's/.*ops_per_s=\([0-9.]*\).*/\1/')
  paste "$dir/before" "$dir/after" | awk -v ops="$ops" -v dur="$DUR" -v hz="$(getconf CLK_TCK)" -v repo="$repo" -v line="$line" -v busy="$busy" '
    { n = ops * dur; u += $8 - $2; s += $9 - $3; r += $10 - $4; w += $11 - $5; c += $12 - $6 }
    END { printf "%s %s | per op: cpu_us=%.0f user_us=%.0f sys_us=%.0f syscr=%.1f syscw=%.1f ctxsw=%.1f machine_busy=%s%%\n", repo, line, (u + s) * 1e6 / hz / n, u * 1e6 / hz / n, s * 1e6 / hz / n, r / n, w / n, c / n, busy }'
  (cd "$repo" && node bin/bulwark.js down --dir "$dir" >/dev/null 2>&1)
  rm -rf "$dir"
}

for ((i = 1; i <= ROUNDS; i++)); do
  for repo in "${repos[@]}"; do one "$repo"; done
done
