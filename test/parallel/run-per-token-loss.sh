#!/usr/bin/env bash
# calculate_per_token_loss on SFT data whose loss masks differ between
# micro-batches (the shipped alpaca and sharegpt demos, prompts masked, one
# sample per row of 64 tokens): 3 steps of a tiny Qwen3-shaped model, global
# batch 8, with the same seed, writing OUT/<name>.jsonl and OUT/<name>.hf/:
#   whole      one micro-batch of 8 rows, Megatron's default loss: its mean
#              over the batch's loss tokens is the per-token loss, computed
#              without any per-token machinery (the reference);
#   mean       4 micro-batches of 2, the default (mean of the micro-batches'
#              means: another value on this data);
#   mean_cp2   the same at cp 2, where the ranks' halves of a micro-batch
#              hold different numbers of loss tokens (each rank's loss is
#              its share of the micro-batch's, mt-partition-cp);
#   pt_<layout> 4 micro-batches of 2 per step, per token, on each layout.
# and for the tiny Qwen3-MoE model (test/hf/fixtures, vocabulary 320, with a
# z-loss), whose routers' aux losses mt-per-token-loss scales by their
# tokens (Megatron-Core's router under calculate_per_token_loss):
#   moe_pt_<layout> the same SFT steps per token on one rank, dp 2, ep 2
#              (folded over dp 2), ep 2 with the distributed optimizer, pp 2
#              (its 3 layers as 2 + 1) and tp 2 with sequence parallelism;
#   moe_lm_mean, moe_lm_pt  4 micro-batches of 2 of plain tokens (every
#              token a loss token, so each micro-batch's loss tokens are
#              its B·S = 128 router tokens): the default and per token;
#   moe_lm_noaux  moe_lm_mean with both aux coefficients 0 (its loss is the
#              language-model loss alone).
# Usage: run-per-token-loss.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
config=$here/../runtime/chat/Inputs/tiny-qwen3-vocab320.json
rm -rf "$out" && mkdir -p "$out"
"$bin/mt-prepare-sft" --dataset-dir "$here/../../models/data" \
  --dataset demo_alpaca,demo_sharegpt --template qwen3_nothink --cutoff-len 64 \
  -o "$out/sft.bin" > /dev/null
"$bin/mtc" import-hf "$config" --seq 64 --micro-batch 8 -o "$out/mb8.mlir"
"$bin/mtc" import-hf "$config" --seq 64 --micro-batch 2 -o "$out/mb2.mlir"
# name:model:ranks:flags
runs=("whole:mb8:1:" "mean:mb2:1:" "mean_cp2:mb2:2:--cp 2"
      "pt_single:mb2:1:--calculate-per-token-loss"
      "pt_dp2:mb2:2:--calculate-per-token-loss --dp 2"
      "pt_pp2:mb2:2:--calculate-per-token-loss --pp 2"
      "pt_tp2_dp2:mb2:4:--calculate-per-token-loss --tp 2 --dp 2"
      "pt_cp2_dp2:mb2:4:--calculate-per-token-loss --cp 2 --dp 2"
      "pt_dp2_do:mb2:2:--calculate-per-token-loss --dp 2 --use-distributed-optimizer")
python3 - "$here/../hf/fixtures/tiny-qwen3-moe/config.json" "$out/moe.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config.update(vocab_size=320, max_position_embeddings=256)
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
"$bin/mtc" import-hf "$out/moe.json" --seq 64 --micro-batch 2 --moe-z-loss-coeff 0.01 \
  -o "$out/moe.mlir"
"$bin/mtc" import-hf "$out/moe.json" --seq 64 --micro-batch 2 --moe-aux-loss-coeff 0 \
  -o "$out/moe_noaux.mlir"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 320 6000
runs+=("moe_pt_single:moe:1:--calculate-per-token-loss"
       "moe_pt_dp2:moe:2:--calculate-per-token-loss --dp 2"
       "moe_pt_ep2:moe:2:--calculate-per-token-loss --ep 2"
       "moe_pt_ep2_do:moe:2:--calculate-per-token-loss --ep 2 --use-distributed-optimizer"
       "moe_pt_pp2:moe:2:--calculate-per-token-loss --pp 2 --pp-layout 2,1"
       "moe_pt_tp2_sp:moe:2:--calculate-per-token-loss --tp 2 --etp 1 --sp"
       "moe_lm_mean:moe:1:" "moe_lm_pt:moe:1:--calculate-per-token-loss"
       "moe_lm_noaux:moe_noaux:1:")
for entry in "${runs[@]}"; do
  IFS=: read -r name model ranks flags <<< "$entry"
  data=$out/sft.bin
  [[ $name == moe_lm_* ]] && data=$out/tokens.bin
  # Flags as in run-layouts.sh (--adam-eps 1e-4: see there).
  # shellcheck disable=SC2086
  "$bin/mtc" compile "$out/$model.mlir" $flags --global-batch 8 --lr 1e-3 --warmup-steps 1 \
    --train-steps 3 --weight-decay 0.1 --adam-eps 1e-4 -o "$out/$name.plan"
  "$bin/mtrun" "$out/$name.plan" --nproc "$ranks" --data "$data" --steps 3 \
    --comm-timeout 60 --metrics "$out/$name.jsonl" --export-hf "$out/$name.hf" > /dev/null
done
