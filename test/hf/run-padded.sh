#!/usr/bin/env bash
# The padded-vocabulary round trip of test/hf (PaddedVocabularyTest): the
# tiny Qwen2 with a 95-token vocabulary, whose embedding and output layer tp2
# pads to 96 rows, trains 2 steps on 2 ranks from FIXTURE's weights (from
# mtrun's own initialisation where FIXTURE has none), is exported with
# --export-hf, and trains 2 more steps on 2 ranks from the export (--load:
# a fresh optimizer). The settings are make_fixtures.py's PAD_* and CLIP.
# Usage: test/hf/run-padded.sh BIN_DIR OUT_DIR FIXTURE_DIR
set -euo pipefail
bin=$1 out=$2 fixture=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out" && mkdir -p "$out"
cp "$fixture/tokens.bin" "$out/tokens.bin"
load=()
[[ -f $fixture/model.safetensors ]] && load=(--load "$fixture")
"$bin/mtc" import-hf "$here/configs/tiny-qwen2-vocab95.json" --seq 16 --micro-batch 2 \
  -o "$out/model.mlir"
"$bin/mtc" compile "$out/model.mlir" --tp 2 --global-batch 2 --lr 1e-2 --lr-decay-style constant \
  --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --adam-eps 1e-2 --clip-grad 1.0 \
  --train-steps 2 -o "$out/tp2.plan"
"$bin/mtrun" "$out/tp2.plan" --nproc 2 "${load[@]}" --data "$out/tokens.bin" --comm-timeout 60 \
  --metrics "$out/trained.jsonl" --export-hf "$out/export" > /dev/null
"$bin/mtrun" "$out/tp2.plan" --nproc 2 --load "$out/export" --data "$out/tokens.bin" \
  --comm-timeout 60 --metrics "$out/reloaded.jsonl" > /dev/null
