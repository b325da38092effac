#!/usr/bin/env bash
# Builds bench/gemm-candidates.cu (nvcc, cuBLASLt; no other part of mtc) and
# runs it: each of cuBLASLt's candidate algorithms for every GEMM of the
# training step, timed in a burst and at the power cap's steady clock, on
# random operands. Arguments go to the program (its header lists them; the
# default is llama3.2-1b at 8192 tokens). On the GPU machine, in one call:
#   bench/gpu-gemm-candidates.sh [--tokens 8192 ...]
# The full table is written to $OUT/gemm-candidates.txt (or /tmp); the
# per-product summary lines and the step's total are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=nvcc
[[ -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
out=${OUT:-/tmp}
bin=$(mktemp -d)/gemm-candidates
"$nvcc" -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a bench/gemm-candidates.cu \
  -o "$bin" -lcublasLt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
"$bin" "$@" > "$out/gemm-candidates.txt"
grep -E "^=>|^the step" "$out/gemm-candidates.txt"
