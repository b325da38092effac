#!/usr/bin/env bash
# Trains a model for 3 steps with the distributed optimizer on three
# layouts, without and with each memory option that must not change a bit
# (overlap_param_gather), same seed and global batch:
# OUT/<layout>.<option>.{jsonl,hf/}; and the option's run saved after 2
# steps and resumed for the 3rd (OUT/<layout>.<option>_resumed.*): the
# checkpoint must hold the gathered weights. The schedule decays over 4
# steps, so that the 3rd step's update is not 0 and the export must hold
# its gathered weights too. MemoryEquivalenceTest.cpp compares them.
# Usage: run-memory.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
options=("none:" "overlap_param_gather:--overlap-param-gather")
rm -rf "$out" && mkdir -p "$out"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000
"$bin/mtc" import-hf "$here/configs/llama-4l-tied.json" --seq 16 --micro-batch 2 \
  -o "$out/model.mlir"

# shellcheck source=test/parallel/train-options.sh
source "$here/train-options.sh"

distopt=--use-distributed-optimizer
train dp2 "--dp 2 $distopt" 2
train tp2_dp2 "--tp 2 --dp 2 $distopt" 4
train pp2_dp2 "--pp 2 --dp 2 $distopt" 4
