#!/usr/bin/env bash
# Trains each model of test/parallel/configs for 3 steps on every layout
# (the single rank first), with the same seed and global batch, writing each
# run's metrics and gathered HF export: OUT/<model>/<layout>.jsonl and
# OUT/<model>/<layout>.hf/, and two runs resumed on another layout than the
# one that saved them. Usage: run-layouts.sh BIN_DIR OUT_DIR
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
layouts=("single:" "tp2:--tp 2" "tp2_sp:--tp 2 --sp" "dp2:--dp 2" "tp2_dp2:--tp 2 --dp 2"
         "tp2_sp_dp2:--tp 2 --sp --dp 2" "pp2:--pp 2" "pp4:--pp 4" "pp2_vpp2:--pp 2 --vpp 2"
         "tp2_pp2:--tp 2 --pp 2" "tp2_pp2_dp2:--tp 2 --pp 2 --dp 2"
         "tp2_sp_pp2_dp2:--tp 2 --sp --pp 2 --dp 2"
         "tp2_sp_pp2_vpp2:--tp 2 --sp --pp 2 --vpp 2" "pp2_uneven:--pp 2 --pp-layout 1,3"
         "dp2_do:--dp 2 --use-distributed-optimizer" "dp4_do:--dp 4 --use-distributed-optimizer"
         "tp2_dp2_do:--tp 2 --dp 2 --use-distributed-optimizer"
         "pp2_dp2_do:--pp 2 --dp 2 --use-distributed-optimizer")
# Plans whose schedule decays over 4 steps, so that the 3rd step's learning
# rate is not 0: a resumed 3rd step then reads the AdamW state the
# checkpoint restored (the distributed optimizer's shards, resharded).
t4_layouts=("single_t4:" "dp4_do_t4:--dp 4 --use-distributed-optimizer"
            "dp2_do_t4:--dp 2 --use-distributed-optimizer" "dp2_t4:--dp 2")
rm -rf "$out" && mkdir -p "$out"
# Ids below every model's vocabulary (95).
python3 "$here/../../tools/random-tokens.py" "$out/tokens.bin" 95 4000
for config in "$here"/configs/*.json; do
  model=$(basename "$config" .json)
  mkdir -p "$out/$model"
  "$bin/mtc" import-hf "$config" --seq 16 --micro-batch 2 -o "$out/$model/model.mlir"
  for entry in "${layouts[@]}" "${t4_layouts[@]}"; do
    name=${entry%%:*} flags=${entry#*:}
    steps=3
    [[ $name == *_t4 ]] && steps=4
    ranks=1
    [[ $flags == *"--tp 2"* ]] && ranks=$((ranks * 2))
    [[ $flags == *"--dp 2"* ]] && ranks=$((ranks * 2))
    [[ $flags == *"--dp 4"* ]] && ranks=$((ranks * 4))
    [[ $flags == *"--pp 2"* ]] && ranks=$((ranks * 2))
    [[ $flags == *"--pp 4"* ]] && ranks=$((ranks * 4))
    # --adam-eps 1e-4: AdamW moves a weight by lr m / (sqrt(v) + eps), which
    # is lr * sign(g) wherever |g| >> eps. With the default eps (1e-8), a
    # gradient element that is fp32 noise (|g| ~ 1e-8) takes a random sign
    # in each layout's summation order (measured, llama tp2 vs single:
    # weights 9e-6 apart, 0.009 lr). Above eps the update is continuous in g
    # (at most lr dg / eps apart; measured 6e-8): Tolerances.h, kParallelWeightRel.
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$out/$model/model.mlir" $flags --global-batch 8 --lr 1e-3 \
      --warmup-steps 1 --train-steps $steps --weight-decay 0.1 --adam-eps 1e-4 \
      -o "$out/$model/$name.plan"
    [[ $name == *_t4 && $name != single_t4 ]] && continue # resumed below
    "$bin/mtrun" "$out/$model/$name.plan" --nproc "$ranks" --data "$out/tokens.bin" \
      --steps 3 --comm-timeout 60 --metrics "$out/$model/$name.jsonl" \
      --export-hf "$out/$model/$name.hf" > /dev/null
  done
  # Resharding resumes: 2 steps on one layout, saved, the 3rd resumed on
  # another; OUT/<model>/resumed_<from>_as_<to>.jsonl holds all 3 steps.
  for entry in "tp2_pp2:4:single:1" "single:1:tp2_sp_pp2_vpp2:4" "dp4_do_t4:4:dp2_do_t4:2" \
               "dp4_do_t4:4:dp2_t4:2" "single_t4:1:dp2_do_t4:2"; do
    IFS=: read -r from fromRanks to toRanks <<< "$entry"
    name=resumed_${from}_as_${to}
    "$bin/mtrun" "$out/$model/$from.plan" --nproc "$fromRanks" --data "$out/tokens.bin" \
      --steps 2 --comm-timeout 60 --metrics "$out/$model/$name.jsonl" \
      --save "$out/$model/$name.ckpt" > /dev/null
    "$bin/mtrun" "$out/$model/$to.plan" --nproc "$toRanks" --data "$out/tokens.bin" \
      --resume "$out/$model/$name.ckpt" --steps 3 --comm-timeout 60 \
      --metrics "$out/$model/$name.3.jsonl" \
      --export-hf "$out/$model/$name.hf" > /dev/null
    cat "$out/$model/$name.3.jsonl" >> "$out/$model/$name.jsonl"
  done
done
