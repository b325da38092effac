#!/usr/bin/env bash
# Compiles single-rank plans of the small test models (dense Llama, Qwen2
# with biases, Qwen3 with q/k norms, an MoE, a Qwen2-MoE with its shared
# expert) for the tests that run whole plan programs on the CPU executor, and
# the two of the neat_packing test.
# Usage: compile-plans.sh MTC OUT_DIR
set -euo pipefail
mtc=$1 out=$2
test_dir=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
for config in "$test_dir"/hf/configs/tiny-llama.json "$test_dir"/hf/configs/tiny-qwen2.json \
              "$test_dir"/hf/configs/tiny-qwen3.json "$test_dir"/compiler/Inputs/tiny-moe.json \
              "$test_dir"/hf/configs/tiny-qwen2-moe.json; do
  name=$(basename "$config" .json)
  "$mtc" import-hf "$config" --seq 16 --micro-batch 2 -o "$out/$name.mlir"
  "$mtc" compile "$out/$name.mlir" --global-batch 4 -o "$out/$name"
done
# neat_packing (PackedDocumentsTest): one packed row, and three rows of one sample.
qwen3="$test_dir"/hf/configs/tiny-qwen3.json
"$mtc" import-hf "$qwen3" --seq 24 --micro-batch 1 --neat-packing -o "$out/tiny-qwen3-neat.mlir"
"$mtc" compile "$out/tiny-qwen3-neat.mlir" --global-batch 1 -o "$out/tiny-qwen3-neat"
"$mtc" import-hf "$qwen3" --seq 24 --micro-batch 3 -o "$out/tiny-qwen3-rows.mlir"
"$mtc" compile "$out/tiny-qwen3-rows.mlir" --global-batch 3 -o "$out/tiny-qwen3-rows"
