#!/usr/bin/env bash
# On the GPU machine (torch + transformers, no MLIR), in one call:
#  1. makes the HF fidelity fixtures of test/hf/ (tar in $OUT/fixtures.tar),
#  2. builds mtrun without the compiler,
#  3. fine-tunes each fixture for a few steps with the plans compiled here
#     by test/hf/compile-plans.sh (carried in .hfplans/), exports it, and
#     checks that transformers loads
#     the export and computes the loss mtrun computed from it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/hf-check}
models=(tiny-llama tiny-qwen2 tiny-qwen3)
fx=/tmp/hf-fixtures ex=/tmp/hf-exports
rm -rf "$fx" "$ex" && mkdir -p "$out" "$ex"
PYTHONUNBUFFERED=1 python3 test/hf/make_fixtures.py --out "$fx"
tar -C "$fx" -cf "$out/fixtures.tar" .
cmake -S . -B /tmp/mt-build -DMT_BUILD_COMPILER=OFF -DMT_BUILD_TESTS=OFF > /tmp/configure.log
cmake --build /tmp/mt-build -j "$(nproc)" --target mtrun > /tmp/build.log || { tail -50 /tmp/build.log; exit 1; }
for m in "${models[@]}"; do
  /tmp/mt-build/bin/mtrun ".hfplans/$m" --load "$fx/$m" --data "$fx/$m/tokens.bin" \
    --steps 5 --export-hf "$ex/$m" > /dev/null
  /tmp/mt-build/bin/mtrun ".hfplans/$m" --load "$ex/$m" --data "$fx/$m/tokens.bin" \
    --steps 1 --metrics "$ex/$m.jsonl" --dump-logits "$ex/$m.logits.safetensors" > /dev/null
done
python3 test/hf/check_export.py "$fx" "$ex" "${models[@]}" | tee "$out/check_export.txt"
