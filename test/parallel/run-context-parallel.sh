#!/usr/bin/env bash
# Trains each model of test/parallel/configs for 3 steps with context
# parallelism on several layouts, each with cp_comm_type p2p, all_gather
# and, where the heads divide over cp, a2a (OUT/<model>/<layout>_<type>),
# and on the single rank, with the same seed and global batch, writing
# OUT/<model>/<name>.jsonl and OUT/<model>/<name>.hf/. a2a needs the query
# and key/value heads of a tp rank divisible by cp: the test models' 2 kv
# heads allow it at cp 2 without tp, and llama-4l-kv4 (llama-4l-tied with 8
# query and 4 kv heads, made here) runs a2a on every layout. Sequences of 24
# tokens: chunks of 6 tokens at cp 2 and of 3 at cp 4, no multiple of any
# attention block size. Packed documents (neat_packing; OUT/qwen3-neat/):
# the SFT demos' 32 samples packed into 17 rows of 256 tokens with position
# ids (documents cross the chunks), on the single rank, at cp 2 with p2p,
# all_gather and a2a, and at cp 4 with p2p and all_gather.
# Mixture-of-experts models (OUT/<moe model>/, the tiny MoE models of
# test/hf/fixtures, sequences of 16 tokens): each cp rank routes the whole
# sequence and runs the experts on its own tokens, at cp 2 and 4, with tp +
# sp, pp, dp, the distributed optimizer and expert parallelism folded over
# the cp ranks (ep2 at cp 2 alone, ep2 x dp2); tiny-qwen3-moe also with
# seq_aux_loss and a z-loss (OUT/tiny-qwen3-moe-seqaux/) and with
# calculate_per_token_loss.
# Usage: run-context-parallel.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=test/parallel/moe-layouts.sh
source "$here/moe-layouts.sh"
# name:ranks:flags:cp_comm_types (of the test models)
layouts=("single:1::-" "cp2:2:--cp 2:p2p all_gather a2a" "cp4:4:--cp 4:p2p all_gather"
         "cp2_tp2_sp:4:--cp 2 --tp 2 --sp:p2p all_gather"
         "cp2_pp2:4:--cp 2 --pp 2:p2p all_gather a2a" "cp2_dp2:4:--cp 2 --dp 2:p2p all_gather a2a"
         "cp2_dp2_do:4:--cp 2 --dp 2 --use-distributed-optimizer:p2p all_gather a2a"
         "cp2_do:2:--cp 2 --use-distributed-optimizer:p2p")
rm -rf "$out" && mkdir -p "$out"
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000
python3 - "$here/configs/llama-4l-tied.json" "$out/llama-4l-kv4.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config.update(num_attention_heads=8, num_key_value_heads=4)
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
for config in "$here"/configs/*.json "$out/llama-4l-kv4.json"; do
  model=$(basename "$config" .json)
  mkdir -p "$out/$model"
  "$bin/mtc" import-hf "$config" --seq 24 --micro-batch 2 -o "$out/$model/model.mlir"
  for entry in "${layouts[@]}"; do
    IFS=: read -r layout ranks flags types <<< "$entry"
    if [[ $model == llama-4l-kv4 && $layout != single ]]; then types=a2a; fi
    for type in $types; do
      name=${layout}_$type
      if [[ $layout == single ]]; then name=single; fi
      # Flags as in run-layouts.sh (--adam-eps 1e-4: see there).
      # shellcheck disable=SC2086
      "$bin/mtc" compile "$out/$model/model.mlir" $flags ${flags:+--cp-comm-type $type} \
        --global-batch 8 --lr 1e-3 --warmup-steps 1 --train-steps 3 --weight-decay 0.1 \
        --adam-eps 1e-4 -o "$out/$model/$name.plan"
      "$bin/mtrun" "$out/$model/$name.plan" --nproc "$ranks" --data "$out/tokens.bin" \
        --steps 3 --comm-timeout 60 --metrics "$out/$model/$name.jsonl" \
        --export-hf "$out/$model/$name.hf" > /dev/null
    done
  done
done
neat=$out/qwen3-neat
mkdir -p "$neat"
"$bin/mt-prepare-sft" --dataset-dir "$here/../../models/data" --dataset demo_alpaca,demo_sharegpt \
  --template qwen3_nothink --cutoff-len 256 --neat-packing -o "$neat/sft.bin" > /dev/null
"$bin/mtc" import-hf "$here/../runtime/chat/Inputs/tiny-qwen3-vocab320.json" --seq 256 \
  --micro-batch 2 --neat-packing -o "$neat/model.mlir"
# name:ranks:flags
for entry in "single:1:" "cp2_p2p:2:--cp 2 --cp-comm-type p2p" \
             "cp2_all_gather:2:--cp 2 --cp-comm-type all_gather" \
             "cp2_a2a:2:--cp 2 --cp-comm-type a2a" "cp4_p2p:4:--cp 4 --cp-comm-type p2p" \
             "cp4_all_gather:4:--cp 4 --cp-comm-type all_gather"; do
  IFS=: read -r name ranks flags <<< "$entry"
  # shellcheck disable=SC2086
  "$bin/mtc" compile "$neat/model.mlir" $flags \
    --global-batch 8 --lr 1e-3 --warmup-steps 1 --train-steps 3 --weight-decay 0.1 \
    --adam-eps 1e-4 -o "$neat/$name.plan"
  "$bin/mtrun" "$neat/$name.plan" --nproc "$ranks" --data "$neat/sft.bin" --steps 3 \
    --comm-timeout 60 --metrics "$neat/$name.jsonl" --export-hf "$neat/$name.hf" > /dev/null
done

# name:ranks:flags (MoE; each layout with p2p, and cp2 with all_gather too)
layouts=("single:1:" "cp2_p2p:2:--cp 2" "cp2_all_gather:2:--cp 2 --cp-comm-type all_gather"
         "cp4_p2p:4:--cp 4" "cp2_tp2_sp:4:--cp 2 --tp 2 --etp 1 --sp"
         "cp2_pp2:4:--cp 2 --pp 2" "cp2_dp2:4:--cp 2 --dp 2"
         "cp2_dp2_do:4:--cp 2 --dp 2 --use-distributed-optimizer" "cp2_ep2:2:--cp 2 --ep 2"
         "cp2_dp2_ep2:4:--cp 2 --dp 2 --ep 2"
         "cp2_ep2_ag:2:--cp 2 --ep 2 --moe-token-dispatcher-type allgather")
python3 "$here/../../tools/random-tokens.py" "$out/moe-tokens.bin" 96 4000
fixtures=$here/../hf/fixtures
for model in tiny-qwen3-moe tiny-mixtral tiny-qwen2-moe tiny-qwen3-moe-seqaux \
             tiny-qwen3-moe-per-token; do
  mkdir -p "$out/$model"
  import=() config=$fixtures/$model/config.json compile=()
  case $model in
    tiny-qwen3-moe-seqaux)
      config=$fixtures/tiny-qwen3-moe/config.json
      import=(--moe-router-load-balancing-type seq_aux_loss --moe-z-loss-coeff 1e-2) ;;
    tiny-qwen3-moe-per-token)
      config=$fixtures/tiny-qwen3-moe/config.json compile=(--calculate-per-token-loss) ;;
  esac
  "$bin/mtc" import-hf "$config" --seq 16 --micro-batch 2 "${import[@]}" -o "$out/$model/model.mlir"
  train_moe_layouts "$config" "$out/$model/model.mlir" "$out/$model" "$out/moe-tokens.bin" \
    "${compile[@]}"
done
