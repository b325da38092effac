#!/usr/bin/env bash
# Trains a model for 3 steps on ten layouts (the last with a MoE model)
# without and with optimizer_offload (the master weights and AdamW state in host arenas,
# AdamW on the host), grad_offload (the main gradients in a host arena,
# staged on the device around each program's uses; with the distributed
# optimizer the reduced shards there too), both, param_offload (the weights
# in a host arena, staged on the device for each run of a program's uses:
# each pipeline stage's programs stage their own layers' weights, the
# distributed optimizer all-gathers into a staged bucket copied to the
# host; refused with overlap_param_gather) and all three, same seed
# and global batch: OUT/<layout>.<option>.*;
# and the offloaded run saved after 2 steps and resumed for the 3rd
# (OUT/<layout>.<option>_resumed.*): the resumed run must refill
# its host master weights from the checkpoint's. The schedule decays over 4
# steps, so that the 3rd step's update is not 0. OffloadEquivalenceTest.cpp
# compares them.
# Usage: run-offload.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
all_options=("none:" "optimizer_offload:--optimizer-offload" "grad_offload:--grad-offload"
             "grad_optimizer_offload:--grad-offload --optimizer-offload"
             "param_offload:--param-offload"
             "all_offload:--param-offload --grad-offload --optimizer-offload")
rm -rf "$out" && mkdir -p "$out"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000
"$bin/mtc" import-hf "$here/configs/llama-4l-tied.json" --seq 16 --micro-batch 2 \
  -o "$out/model.mlir"

# shellcheck source=test/parallel/train-options.sh
source "$here/train-options.sh"

options=("${all_options[@]}")
train one "" 1
train dp2 "--dp 2" 2
train tp2_dp2 "--tp 2 --dp 2" 4
train pp2 "--pp 2" 2
train pp2_vpp2 "--pp 2 --vpp 2" 2
train pp2_dp2 "--pp 2 --dp 2" 4
train dp2_distopt "--dp 2 --use-distributed-optimizer" 2
options=("${all_options[@]:0:4}") # param_offload is refused with overlap_param_gather
train tp2_dp2_distopt "--tp 2 --dp 2 --use-distributed-optimizer --overlap-param-gather" 4
options=("${all_options[@]}")
train pp2_dp2_distopt "--pp 2 --dp 2 --use-distributed-optimizer" 4
# Experts' gradients in the buckets (edp), the grouped MLP writing two
# members of one bucket at once.
"$bin/mtc" import-hf "$here/../compiler/Inputs/tiny-moe.json" --seq 16 --micro-batch 2 \
  -o "$out/moe.mlir"
model=$out/moe.mlir train ep2_dp2_distopt "--ep 2 --dp 2 --use-distributed-optimizer" 2
