# Sourced by run-memory.sh and run-offload.sh (which set bin, out and
# options, NAME:FLAGS entries, the first one "none:"), after they wrote
# $out/model.mlir (or $model) and $out/tokens.bin.
# train LAYOUT_NAME "LAYOUT_FLAGS" RANKS: for each option, compile, train 3
# steps and export OUT/<layout>.<option>.*; for each option but "none", also
# 2 steps saved and a 3rd resumed (OUT/<layout>.<option>_resumed.*).
train() {
  local layout=$1 flags=$2 ranks=$3
  for entry in "${options[@]}"; do
    local name=${entry%%:*} option=${entry#*:}
    local run="$out/$layout.$name"
    # shellcheck disable=SC2086
    "$bin/mtc" compile "${model:-$out/model.mlir}" $flags $option \
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
