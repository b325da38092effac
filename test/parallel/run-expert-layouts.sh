#!/usr/bin/env bash
# Trains the tiny MoE models of test/hf/fixtures (Qwen3-MoE, Mixtral,
# Qwen2-MoE with a shared expert) for 3 steps on each expert-parallel layout
# (the single rank first), with the same seed and global batch, writing each
# run's metrics and gathered HF export: OUT/<model>/<layout>.jsonl and
# OUT/<model>/<layout>.hf/, and runs resumed on another layout than the one
# that saved them. Usage: run-expert-layouts.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/parallel/moe-layouts.sh
source "$here/moe-layouts.sh"
# name:ranks:flags. With ep the world is still pp x dp x cp x tp (MoE
# parallel folding): ep2 is 2 data-parallel ranks that hold 2 experts each;
# ep2_tp2 the 2 ranks of a tp group, each dispatching half of the sequence
# (etp 1), with or without sequence parallelism. *_ag: the allgather
# dispatcher. *etp2: each expert's ffn columns split over 2 ranks (etp,
# Megatron-Core's default tp), which gather each other's rows: over dp
# ranks (etp2: dp 2; ep2_etp2: dp 4) or over the tp group (tp2_etp2;
# ep2_tp2_etp2: dp 2 x tp 2, ep over dp). *_do with etp 2 or tp 2: the
# distributed optimizer shards the experts (split over etp, and ep) over
# edp = tp x dp / (ep x etp) = 2 ranks as it shards the dense parameters
# (split over tp) over dp. tp2_do: dp 1 but edp 2, whole experts sharded
# over edp, the dense parameters whole. *_pp2 with tp, etp or the
# distributed optimizer: each stage's dense and expert gradients are summed
# apart for the norm (two sums of squares in one optimizer program).
layouts=("single:1:" "ep2:2:--ep 2" "ep4:4:--ep 4" "ep2_dp4:4:--ep 2 --dp 4"
         "ep2_pp2:4:--ep 2 --pp 2" "ep2_dp4_pp2:8:--ep 2 --dp 4 --pp 2"
         "ep2_do:2:--ep 2 --use-distributed-optimizer"
         "ep2_dp4_do:4:--ep 2 --dp 4 --use-distributed-optimizer"
         "ep2_tp2:2:--ep 2 --tp 2 --etp 1" "ep2_tp2_sp:2:--ep 2 --tp 2 --etp 1 --sp"
         "tp2_sp:2:--tp 2 --etp 1 --sp" "ep2_tp2_dp2_sp:4:--ep 2 --tp 2 --etp 1 --dp 2 --sp"
         "tp2_sp_dp2_do:4:--tp 2 --etp 1 --sp --dp 2 --use-distributed-optimizer"
         "tp2_do:2:--tp 2 --etp 1 --use-distributed-optimizer"
         "ep2_ag:2:--ep 2 --moe-token-dispatcher-type allgather"
         "ep2_dp4_ag:4:--ep 2 --dp 4 --moe-token-dispatcher-type allgather"
         "ep2_pp2_ag:4:--ep 2 --pp 2 --moe-token-dispatcher-type allgather"
         "ep2_tp2_sp_ag:2:--ep 2 --tp 2 --etp 1 --sp --moe-token-dispatcher-type allgather"
         "etp2:2:--etp 2" "ep2_etp2:4:--ep 2 --etp 2"
         "ep2_etp2_ag:4:--ep 2 --etp 2 --moe-token-dispatcher-type allgather"
         "tp2_etp2:2:--tp 2" "tp2_sp_etp2:2:--tp 2 --sp" "ep2_tp2_etp2:4:--ep 2 --tp 2"
         "ep2_tp2_sp_etp2:4:--ep 2 --tp 2 --sp"
         "etp2_dp4_do:4:--etp 2 --dp 4 --use-distributed-optimizer"
         "ep2_tp2_dp2_sp_do:4:--ep 2 --tp 2 --etp 1 --dp 2 --sp --use-distributed-optimizer"
         "tp2_dp2_etp2_do:4:--tp 2 --dp 2 --use-distributed-optimizer"
         "ep2_tp2_dp4_etp2_do:8:--ep 2 --tp 2 --dp 4 --use-distributed-optimizer"
         "tp2_etp2_pp2:4:--tp 2 --pp 2" "ep2_tp2_pp2:4:--ep 2 --tp 2 --etp 1 --pp 2"
         "ep2_pp2_do:4:--ep 2 --pp 2 --use-distributed-optimizer"
         "ep2_tp2_dp4_etp2_do_ag:8:--ep 2 --tp 2 --dp 4 --use-distributed-optimizer --moe-token-dispatcher-type allgather")
rm -rf "$out" && mkdir -p "$out"
# Ids below every model's vocabulary (96).
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 96 4000
for model in tiny-qwen3-moe tiny-mixtral tiny-qwen2-moe; do
  mkdir -p "$out/$model"
  "$bin/mtc" import-hf "$here/../hf/fixtures/$model/config.json" --seq 16 --micro-batch 2 \
    -o "$out/$model/model.mlir"
  train_moe_layouts "$here/../hf/fixtures/$model/config.json" "$out/$model/model.mlir" \
    "$out/$model" "$out/tokens.bin"
  # Checkpoints hold whole experts: 2 steps on one layout, saved, the 3rd
  # resumed on another; OUT/<model>/resumed_<from>_as_<to>.jsonl holds all 3.
  for entry in "ep2:2:single:1" "single:1:ep4:4" "ep2_dp4_do:4:single:1" "single:1:ep2_dp4_do:4" \
               "etp2_dp4_do:4:single:1" "single:1:etp2_dp4_do:4"; do
    IFS=: read -r from fromRanks to toRanks <<< "$entry"
    name=resumed_${from}_as_${to}
    "$bin/mtrun" "$out/$model/$from.plan" --nproc "$fromRanks" --data "$out/tokens.bin" \
      --steps 2 --comm-timeout 60 --metrics "$out/$model/$name.jsonl" \
      --save "$out/$model/$name.ckpt" > /dev/null
    "$bin/mtrun" "$out/$model/$to.plan" --nproc "$toRanks" --data "$out/tokens.bin" \
      --resume "$out/$model/$name.ckpt" --steps 3 --comm-timeout 60 \
      --metrics "$out/$model/$name.3.jsonl" --export-hf "$out/$model/$name.hf" > /dev/null
    cat "$out/$model/$name.3.jsonl" >> "$out/$model/$name.jsonl"
  done
done
