#!/usr/bin/env bash
# Trains a dense Llama, a Qwen2 (q/k/v biases) and a Qwen3 (per-head q/k
# norms) for 3 steps on the CPU backend on four layouts, with mt-fuse's
# fusions (the default), with its norm fusions only (`--no-fuse
# linear-fc1,linear-qkv`) and with `--no-fuse all`, same seed and global
# batch: OUT/<model>/<layout>.<fused|norms|unfused>.{jsonl,hf/,plan/}. The
# norms and unfused runs of a layout must be bit-identical, the fused one
# equal within tolerances, and bit-identical to the one that stores the
# MLP activation instead (`--no-fuse swiglu-recompute`: .stored)
# (FusionEquivalenceTest.cpp).
# Usage: run-fusion.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000

# train MODEL LAYOUT_NAME "LAYOUT_FLAGS" RANKS
train() {
  local model=$1 layout=$2 flags=$3 ranks=$4
  for variant in fused norms unfused stored; do
    local run="$out/$model/$layout.$variant" nofuse=()
    [[ $variant == norms ]] && nofuse=(--no-fuse linear-fc1,linear-qkv)
    [[ $variant == unfused ]] && nofuse=(--no-fuse all)
    [[ $variant == stored ]] && nofuse=(--no-fuse swiglu-recompute)
    # --adam-eps 1e-4 as run-layouts.sh: the fused run sums in another order,
    # and AdamW's default eps would turn a gradient of fp32 noise (the k_proj
    # bias's) into updates of lr with random signs.
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$out/$model/model.mlir" $flags "${nofuse[@]}" --global-batch 8 \
      --lr 1e-3 --warmup-steps 1 --train-steps 3 --weight-decay 0.1 --adam-eps 1e-4 \
      -o "$run.plan"
    "$bin/mtrun" "$run.plan" --nproc "$ranks" --data "$out/tokens.bin" --steps 3 \
      --comm-timeout 60 --metrics "$run.jsonl" --export-hf "$run.hf" > /dev/null
  done
}

for model in llama qwen2 qwen3; do
  mkdir -p "$out/$model"
  config=$here/configs/llama-4l-tied.json
  [[ $model == qwen2 ]] && config=$here/configs/qwen2-4l-untied.json
  [[ $model == qwen3 ]] && config=$here/configs/qwen3-4l-vocab95.json
  "$bin/mtc" import-hf "$config" --seq 16 --micro-batch 2 -o "$out/$model/model.mlir"
  train "$model" single "" 1
  # Stage boundaries between a layer's residual add and the next layer's norm.
  train "$model" pp2_vpp2 "--pp 2 --vpp 2" 2
  # Norms on sequence-split activations.
  train "$model" tp2_sp "--tp 2 --sp" 2
  # Recomputed norms: their clones read the forward's residual sums; the
  # MLP's clones are fused apart from its forward.
  train "$model" recompute_norms \
    "--recompute-granularity selective --recompute-modules layernorm,mlp" 1
done
