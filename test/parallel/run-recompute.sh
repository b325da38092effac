#!/usr/bin/env bash
# Trains a dense and a mixture-of-experts model for 3 steps on five layouts,
# without activation recompute and with each recompute option, same seed and
# global batch: OUT/<model>/<layout>.<option>.{jsonl,hf/,plan/}. The runs of
# one layout must be bit-identical (RecomputeEquivalenceTest.cpp).
# Usage: run-recompute.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
selective="--recompute-granularity selective"
options=("none:"
         "full_uniform1:--recompute-granularity full --recompute-method uniform --recompute-num-layers 1"
         "full_uniform2:--recompute-granularity full --recompute-method uniform --recompute-num-layers 2"
         "full_block1:--recompute-granularity full --recompute-method block --recompute-num-layers 1"
         "core_attn:$selective"
         "mlp:$selective --recompute-modules mlp"
         "layernorm:$selective --recompute-modules layernorm"
         "selective_all:$selective --recompute-modules core_attn,mlp,layernorm")
moe_options=("none:"
             "full_uniform1:--recompute-granularity full --recompute-method uniform --recompute-num-layers 1"
             "moe_layer_recompute:--moe-layer-recompute"
             "moe_all:$selective --recompute-modules moe,moe_act,mlp,layernorm")
rm -rf "$out" && mkdir -p "$out"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000

# train MODEL LAYOUT_NAME "LAYOUT_FLAGS" RANKS OPTION_ENTRY...
train() {
  local model=$1 layout=$2 flags=$3 ranks=$4
  shift 4
  for entry in "$@"; do
    [[ -z $entry ]] && continue
    local name=${entry%%:*} recompute=${entry#*:}
    local run="$out/$model/$layout.$name"
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$out/$model/model.mlir" $flags $recompute --global-batch 8 --lr 1e-3 \
      --warmup-steps 1 --train-steps 3 --weight-decay 0.1 -o "$run.plan"
    "$bin/mtrun" "$run.plan" --nproc "$ranks" --data "$out/tokens.bin" --steps 3 \
      --comm-timeout 60 --metrics "$run.jsonl" --export-hf "$run.hf" > /dev/null
  done
}

mkdir -p "$out/llama" "$out/moe"
"$bin/mtc" import-hf "$here/configs/llama-4l-tied.json" --seq 16 --micro-batch 2 \
  -o "$out/llama/model.mlir"
train llama single "" 1 "${options[@]}"
train llama tp2_dp2 "--tp 2 --dp 2" 4 "${options[@]}"
train llama pp2_dp2 "--pp 2 --dp 2" 4 "${options[@]}"
# Sequence parallelism (norms before an all-gather), virtual chunks of one layer.
train llama tp2_sp_dp2 "--tp 2 --sp --dp 2" 4 "${options[@]}"
# (chunks of one layer: units of 2 layers are refused.)
train llama pp2_vpp2 "--pp 2 --vpp 2" 2 "${options[@]/full_uniform2:*/}"
# Layers 0 and 2 are MoE, layer 1 dense; expert layers take no --tp yet.
"$bin/mtc" import-hf "$here/../hf/configs/tiny-qwen3-moe.json" --seq 16 --micro-batch 2 \
  -o "$out/moe/model.mlir"
train moe single "" 1 "${moe_options[@]}"
train moe pp2_dp2 "--pp 2 --pp-layout 1,2 --dp 2" 4 "${moe_options[@]}"
