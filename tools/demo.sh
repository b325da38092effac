#!/usr/bin/env bash
# Installs, builds, and runs the main job: the built-in demo model (a byte-level
# Llama of 6.4M parameters) imported from its Hugging Face config, compiled
# into a training plan, and trained on the demo corpus (mtrun --backend auto:
# on the GPU where this build has the CUDA backend and a GPU is visible,
# else on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tools it runs, not the tests (tools/test.sh builds those).
MT_SETUP_TARGETS="mtc mtrun mt-tokenize" tools/setup.sh
bin=${MT_BUILD_DIR:-build}/bin
out=${MT_DEMO_DIR:-out/demo}
steps=${MT_DEMO_STEPS:-300}
mkdir -p "$out"

echo "== mtc import-hf models/hf/demo-tiny.json"
"$bin/mtc" import-hf models/hf/demo-tiny.json --seq 128 --micro-batch 4 -o "$out/model.mlir"
"$bin/mtc" stats "$out/model.mlir"
echo "== mtc compile (a tp 2 x pp 2 layout, explained)"
"$bin/mtc" compile "$out/model.mlir" --tp 2 --pp 2 --sp --global-batch 32 --explain
echo "== mtc compile -o $out/plan (one rank)"
"$bin/mtc" compile "$out/model.mlir" --global-batch 8 --lr 2e-3 --min-lr 2e-4 \
  --warmup-steps 20 --train-steps "$steps" --weight-decay 0.1 --adam-beta2 0.95 \
  -o "$out/plan"
"$bin/mt-tokenize" models/data/demo-corpus.txt -o "$out/corpus.bin"
echo "== mtrun $out/plan"
"$bin/mtrun" "$out/plan" --data "$out/corpus.bin" --metrics "$out/metrics.jsonl" \
  --save "$out/checkpoint" --export-hf "$out/hf"
python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
first, last = rows[0]["loss"], [r["loss"] for r in rows[-20:]]
mean = sum(last) / len(last)
print(f"loss curve: step 1 {first:.4f} -> mean of the last {len(last)} steps {mean:.4f} "
      f"({100 * mean / first:.0f}% of the first); metrics in {sys.argv[1]}")
sys.exit(0 if mean <= 0.6 * first else 1)
PY
