#!/usr/bin/env bash
# Compiles the plans of the HF fidelity fixtures with the training settings
# that test/hf/make_fixtures.py used for the reference step.
# Usage: test/hf/compile-plans.sh MTC OUT_DIR
set -euo pipefail
mtc=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
# Each model twice: from its config as written in transformers 4's spelling
# (configs/) and from the config.json transformers 5 saved beside the
# fixture (fixtures/NAME/config.json, rope_parameters and dtype).
for config in "$here"/configs/*.json; do
  model=$(basename "$config" .json)
  for entry in "$model:$config" "$model-transformers5:$here/fixtures/$model/config.json"; do
    name=${entry%%:*} source=${entry#*:}
    "$mtc" import-hf "$source" --seq 16 --micro-batch 2 -o "$out/$name.mlir"
    "$mtc" compile "$out/$name.mlir" --global-batch 2 --lr 1e-3 --lr-decay-style constant \
      --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --adam-eps 1e-8 --clip-grad 1.0 \
      --train-steps 10 -o "$out/$name"
    # make_fixtures.py --steps: 3 accumulated micro-batches, warmup + cosine,
    # active clipping, an eps that keeps AdamW's update continuous.
    "$mtc" compile "$out/$name.mlir" --global-batch 6 --lr 1e-2 --min-lr 1e-3 \
      --warmup-steps 2 --lr-decay-style cosine --train-steps 4 --weight-decay 0.1 \
      --adam-beta1 0.9 --adam-beta2 0.95 --adam-eps 1e-2 --clip-grad 0.05 -o "$out/$name-steps"
  done
done
# tiny-qwen3-moe with Megatron-Core's router z-loss (moe_z_loss_coeff 0.01,
# HfFidelityTest's kZLossCoeff): the fixture's step, z_loss reported apart.
"$mtc" import-hf "$here/configs/tiny-qwen3-moe.json" --seq 16 --micro-batch 2 \
  --moe-z-loss-coeff 0.01 -o "$out/tiny-qwen3-moe-z.mlir"
"$mtc" compile "$out/tiny-qwen3-moe-z.mlir" --global-batch 2 --lr 1e-3 --lr-decay-style constant \
  --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --adam-eps 1e-8 --clip-grad 1.0 \
  --train-steps 10 -o "$out/tiny-qwen3-moe-z"
