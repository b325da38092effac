# shellcheck shell=bash disable=SC2154 # bin and layouts are the caller's
# Sourced by run-expert-layouts.sh and run-context-parallel.sh (which set
# bin): trains a MoE model's layouts for 3 steps each.
# train_moe_layouts CONFIG MLIR DIR TOKENS [COMPILE_FLAGS...]: for each
# NAME:RANKS:FLAGS entry of the array `layouts`, compiles MLIR (with FLAGS
# and COMPILE_FLAGS; an odd layer count of CONFIG under --pp 2 gives the
# first stage the extra layer), trains 3 steps on TOKENS and writes
# DIR/NAME.plan, DIR/NAME.jsonl and DIR/NAME.hf.
train_moe_layouts() {
  local config=$1 mlir=$2 dir=$3 tokens=$4
  shift 4
  local layers entry name ranks flags
  layers=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['num_hidden_layers'])" \
    "$config")
  for entry in "${layouts[@]}"; do
    IFS=: read -r name ranks flags <<< "$entry"
    [[ $flags == *"--pp 2"* && $((layers % 2)) == 1 ]] &&
      flags="$flags --pp-layout $((layers / 2 + 1)),$((layers / 2))"
    # --adam-eps 1e-4: as run-layouts.sh (AdamW's update is continuous in
    # the gradient above eps, so fp32 summation order stays within tolerance).
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$mlir" $flags "$@" --global-batch 8 --lr 1e-3 --warmup-steps 1 \
      --train-steps 3 --weight-decay 0.1 --adam-eps 1e-4 -o "$dir/$name.plan"
    "$bin/mtrun" "$dir/$name.plan" --nproc "$ranks" --data "$tokens" --steps 3 \
      --comm-timeout 60 --metrics "$dir/$name.jsonl" --export-hf "$dir/$name.hf" > /dev/null
  done
}
