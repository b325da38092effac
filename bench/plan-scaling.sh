#!/usr/bin/env bash
# Programs scale with stages, not ranks: compile a Llama-3-70B-shaped model
# (models/hf/llama3-70b.json, seq 4096) with tp 8 and sp for dp 1, 8 and 512
# (up to 4,096 ranks), then with pp 16 x vpp 5 (80 layers: one per chunk;
# vpp 2 would need 80 divisible by 32) and dp 512 (65,536 ranks), and print
# compile time and plan size. Runs on the CPU.
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
# The pipeline layout of 65,536 ranks: one program per virtual stage.
start=$(date +%s.%N)
"$bin/mtc" compile "$out/model.mlir" --tp 8 --sp --pp 16 --vpp 5 --dp 512 --global-batch 16384 \
  -o "$out/plan-pp" --schedule-svg "$out/schedule.svg"
end=$(date +%s.%N)
instructions=$(grep -cE '^ +[0-9]+  ' "$out/plan-pp/plan.txt")
printf '%-28s %8d %10.2f %14d %12d\n' "tp 8, sp, pp 16, vpp 5, dp 512" 65536 \
  "$(echo "$end - $start" | bc)" "$(stat -c %s "$out/plan-pp/plan.pb")" "$instructions"
