#!/bin/bash
# The durability-mode table of docs/benchmarks.md: for each of three rounds, one run per mode
# (a temporary 4-node u=r=1 cluster each), 32 clients, puts of SIZE bytes, 10 s.
# Usage: bench/durability-modes.sh 4096
set -u
size=${1:-4096}
cd "$(dirname "$0")/.."
for round in 1 2 3; do
  for mode in none sync batch parallel; do
    echo "size=$size round=$round $(npx bulwark bench --spawn --durability "$mode" --size "$size" --read-ratio 0 --clients 32 --duration 10 2>/dev/null | grep '^bench:')"
  done
done
