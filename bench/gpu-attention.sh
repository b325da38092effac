#!/usr/bin/env bash
# Attention on one GPU, in one device call: builds the runtime-only CUDA
# tree (MtAttentionBench, the gpu1 kernel tests and mtrun), runs the gpu1
# attention tests of both backends (MtCudaKernelTests '*Attention*', against
# the CPU reference), then times causal GQA attention (bf16) at issue 17's
# four shapes: ours on the mtc kernels and ours through cuDNN, with its
# deterministic backward and with its atomic dQ (MtAttentionBench), and PyTorch's SDPA on its flash and cuDNN backends
# (torch.nn.attention.sdpa_kernel), all median of 20 after 3 warm-ups with
# CUDA events, ms and TFLOP/s of the causal FLOPs (forward 4*b*h*s^2*d/2,
# backward 2.5 times that); and ring attention's blocks at cp2 on each rank
# against the whole sequence on one GPU (llama3.2-1b's heads, 32768 tokens).
#
#   bench/gpu-attention.sh [DIR]   GPU machine; DIR/googletest (or
#                                  ./build-gtest-src, made by
#                                  tools/gpu-check.sh --prepare) is built
#                                  where the machine has no GoogleTest
# MT_ATTN_TESTS=0 skips the tests (and their build). With MT_GPU_DATA (the
# carried build-gpu-data of tools/gpu-check.sh --prepare), the gpu1 training
# comparisons (MtCudaTrainingTests, attention on its default backend, auto)
# run after the benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh

dir=${1:-}
if [[ -z "$dir" ]]; then
  dir=$(mktemp -d)
  [[ -d build-gtest-src ]] && ln -s "$PWD/build-gtest-src" "$dir/googletest"
fi
gpu_start /tmp/mt-gpu-build 600
tests=${MT_ATTN_TESTS:-1}
targets=(MtAttentionBench mtrun)
(( tests )) && targets+=(MtCudaKernelTests)
[[ -n "${MT_GPU_DATA:-}" ]] && targets+=(MtCudaTrainingTests)
gpu_build "${targets[@]}" || exit 1
grep "cuDNN:" "$log" | tail -1

status=0
if (( tests )); then
  "$build/bin/MtCudaKernelTests" --gtest_filter='*Attention*' > "$out/attention-tests.log" 2>&1 ||
    status=1
  grep -E "^\[  (PASSED|FAILED) |tests ran|^mtc: " "$out/attention-tests.log" | sort -u | head -40
fi

echo "== causal GQA attention, bf16 (ms, TFLOP/s of causal FLOPs) =="
"$build/bin/MtAttentionBench" 2>&1 | tee "$out/attention-bench.txt" || status=1
python3 bench/sdpa-peer.py 4x2048x32x8x64 4x2048x16x8x128 1x8192x32x8x64 1x32768x16x8x128 \
  2>&1 | tee -a "$out/attention-bench.txt"
echo "== sorted by shape =="
grep -E "^(mtc|sdpa)-" "$out/attention-bench.txt" | sort -s -b -k2,4
if [[ -n "${MT_GPU_DATA:-}" ]]; then
  "$build/bin/MtCudaTrainingTests" > "$out/training-tests.log" 2>&1 || status=1
  grep -E "^\[  (PASSED|FAILED) |tests ran|^mtc: " "$out/training-tests.log" | sort -u | head -30
fi
exit $status
