#!/usr/bin/env bash
# On the GPU machine (torch + transformers, no MLIR), in one call:
#  1. makes the HF fidelity fixtures of test/hf/ (tar in $OUT/fixtures.tar),
#  2. builds mtrun without the compiler (the CPU backend),
#  3. fine-tunes each fixture for a few steps with the plans compiled here
#     by test/hf/compile-plans.sh (carried in .hfplans/), exports it, and
#     checks that transformers loads the export and computes the loss mtrun
#     computed from it. For tiny-qwen3 the export is the checkpoint-5/
#     folder that --hf-output (mtc train's outputs) writes: sharded
#     safetensors with their index, loaded with no merge step.
#  4. where .hfrun/ was carried (tools/hf-prepare-run.sh wrote it here), runs
#     that `mtc train --prepare-only` run with this machine's mtrun and
#     checks that transformers loads its last checkpoint-N (and its
#     tokenizer) and computes the logits mtrun computes from it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/hf-check}
models=(tiny-llama tiny-qwen2 tiny-qwen3)
fx=/tmp/hf-fixtures ex=/tmp/hf-exports
rm -rf "$fx" "$ex" && mkdir -p "$out" "$ex"
PYTHONUNBUFFERED=1 python3 test/hf/make_fixtures.py --out "$fx"
tar -C "$fx" -cf "$out/fixtures.tar" .
# The CPU backend: the check compares fp32 runs with transformers (and
# --backend auto would put the tiny models, head_dim 16, on a GPU's kernels,
# which take 64 or 128).
cmake -S . -B /tmp/mt-build -DMT_BUILD_COMPILER=OFF -DMT_BUILD_TESTS=OFF -DMT_BUILD_CUDA=OFF \
  > /tmp/configure.log
cmake --build /tmp/mt-build -j "$(nproc)" --target mtrun > /tmp/build.log || { tail -50 /tmp/build.log; exit 1; }
for m in "${models[@]}"; do
  if [[ "$m" == tiny-qwen3 ]]; then
    /tmp/mt-build/bin/mtrun ".hfplans/$m" --load "$fx/$m" --data "$fx/$m/tokens.bin" \
      --steps 5 --hf-output "$ex/$m-run" --save-steps 5 --max-shard-size 300000 > /dev/null
    ln -s "$m-run/checkpoint-5" "$ex/$m"
  else
    /tmp/mt-build/bin/mtrun ".hfplans/$m" --load "$fx/$m" --data "$fx/$m/tokens.bin" \
      --steps 5 --export-hf "$ex/$m" > /dev/null
  fi
  files=("$ex/$m"/model*.safetensors)
  echo "$m: ${#files[@]} safetensors file(s) in $(readlink -f "$ex/$m")"
  /tmp/mt-build/bin/mtrun ".hfplans/$m" --load "$ex/$m" --data "$fx/$m/tokens.bin" \
    --steps 1 --metrics "$ex/$m.jsonl" --dump-logits "$ex/$m.logits.safetensors" > /dev/null
done
python3 test/hf/check_export.py "$fx" "$ex" "${models[@]}" | tee "$out/check_export.txt"
if [[ -d .hfrun/run ]]; then
  rm -rf .hfrun/out
  MTRUN=/tmp/mt-build/bin/mtrun sh .hfrun/run/train.sh > "$out/hfrun-train.log"
  tail -1 "$out/hfrun-train.log"
  last=$(ls -d .hfrun/out/checkpoint-* | sort -t- -k2 -n | tail -1)
  /tmp/mt-build/bin/mtrun .hfrun/run/plan --load "$last" --data .hfrun/run/data.sft --steps 1 \
    --backend cpu --dump-logits "$ex/hfrun.logits.safetensors" > /dev/null
  python3 test/hf/check_run.py "$last" "$ex/hfrun.logits.safetensors" | tee -a "$out/check_export.txt"
fi
