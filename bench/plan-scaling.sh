#!/usr/bin/env bash
# Programs scale with stages, not ranks: compile a Llama-3-70B-shaped model
# (models/hf/llama3-70b.json, seq 4096) with tp 8 and sp for dp 1, 8 and 512
# (up to 4,096 ranks) and print compile time and plan size. Runs on the CPU.
# Usage: bench/plan-scaling.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build}/bin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin/mtc" import-hf models/hf/llama3-70b.json --seq 4096 --micro-batch 1 -o "$out/model.mlir"
"$bin/mtc" stats "$out/model.mlir" | head -1
printf '%-28s %8s %10s %14s %12s\n' layout ranks "compile s" "plan.pb bytes" "instructions"
for dp in 1 8 512; do
  start=$(date +%s.%N)
  "$bin/mtc" compile "$out/model.mlir" --tp 8 --sp --dp "$dp" --global-batch $((dp * 8)) \
    -o "$out/plan-$dp"
  end=$(date +%s.%N)
  instructions=$(grep -cE '^ +[0-9]+  ' "$out/plan-$dp/plan.txt")
  printf '%-28s %8d %10.2f %14d %12d\n' "tp 8, sp, dp $dp" $((8 * dp)) \
    "$(echo "$end - $start" | bc)" "$(stat -c %s "$out/plan-$dp/plan.pb")" "$instructions"
done
# Pipeline plans are not emitted yet: a 65,536-rank layout is validated,
# explained and scheduled only (80 layers: vpp 5 gives one layer per chunk;
# vpp 2 would need 80 divisible by 32).
start=$(date +%s.%N)
"$bin/mtc" compile "$out/model.mlir" --tp 8 --pp 16 --vpp 5 --dp 512 --global-batch 16384 \
  --explain --schedule-svg "$out/schedule.svg" > "$out/explain.txt"
end=$(date +%s.%N)
printf "%-28s %8d %10.2f %14s %12s\n" "tp 8, pp 16, vpp 5, dp 512" 65536 \
  "$(echo "$end - $start" | bc)" "(explain only)" "-"
grep "pipeline schedule" "$out/explain.txt"
