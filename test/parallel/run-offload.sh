#!/usr/bin/env bash
# Trains a model for 3 steps on five layouts without and with
# optimizer_offload (the master weights and AdamW state in host arenas,
# AdamW on the host), same seed and global batch: OUT/<layout>.<option>.*;
# and the offloaded run saved after 2 steps and resumed for the 3rd
# (OUT/<layout>.optimizer_offload_resumed.*): the resumed run must refill
# its host master weights from the checkpoint's. The schedule decays over 4
# steps, so that the 3rd step's update is not 0. OffloadEquivalenceTest.cpp
# compares them.
# Usage: run-offload.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
options=("none:" "optimizer_offload:--optimizer-offload")
rm -rf "$out" && mkdir -p "$out"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000
"$bin/mtc" import-hf "$here/configs/llama-4l-tied.json" --seq 16 --micro-batch 2 \
  -o "$out/model.mlir"

# train LAYOUT_NAME "LAYOUT_FLAGS" RANKS
train() {
  local layout=$1 flags=$2 ranks=$3
  for entry in "${options[@]}"; do
    local name=${entry%%:*} option=${entry#*:}
    local run="$out/$layout.$name"
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$out/model.mlir" $flags $option \
      --global-batch 8 --lr 1e-3 --warmup-steps 1 --train-steps 4 --weight-decay 0.1 \
      -o "$run.plan"
    "$bin/mtrun" "$run.plan" --nproc "$ranks" --data "$out/tokens.bin" --steps 3 \
      --comm-timeout 60 --metrics "$run.jsonl" --export-hf "$run.hf" > /dev/null
    [[ $name == none ]] && continue
    "$bin/mtrun" "$run.plan" --nproc "$ranks" --data "$out/tokens.bin" --steps 2 \
      --comm-timeout 60 --metrics "${run}_resumed.jsonl" --save "${run}_resumed.ckpt" > /dev/null
    "$bin/mtrun" "$run.plan" --nproc "$ranks" --data "$out/tokens.bin" --steps 3 \
      --resume "${run}_resumed.ckpt" --comm-timeout 60 --metrics "${run}_resumed.3.jsonl" \
      --export-hf "${run}_resumed.hf" > /dev/null
    cat "${run}_resumed.3.jsonl" >> "${run}_resumed.jsonl"
  done
}

train one "" 1
train dp2 "--dp 2" 2
train tp2_dp2 "--tp 2 --dp 2" 4
train dp2_distopt "--dp 2 --use-distributed-optimizer" 2
train tp2_dp2_distopt "--tp 2 --dp 2 --use-distributed-optimizer --overlap-param-gather" 4
train pp2_dp2 "--pp 2 --dp 2" 4
