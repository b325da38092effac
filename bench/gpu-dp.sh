#!/usr/bin/env bash
# Data parallelism on two GPUs, in one device call on nvidia-h200-x2: builds
# mtrun and the gpu2 tests (runtime-only CUDA build), runs the gpu2 tests
# (the NCCL communicator; demo dp2 vs one GPU, 20 steps) and the one-GPU
# demo training test (gpu1, a regression check), then measures our
# llama3.2-1b step (micro-batch 4 x 2048 per GPU) on one GPU and with dp2,
# beside PyTorch DDP (torchrun --nproc_per_node 2, eager and compile), and
# prints tokens/s per GPU and dp2's efficiency against our one-GPU figure.
#
#   bench/gpu-dp.sh --prepare DIR   development machine: compiles the plans
#                                   (no MLIR on the GPU machine), writes the
#                                   tokens, copies the peer script and, for
#                                   machines without it, GoogleTest's source
#                                   (MT_SHARED_DIR: the shared folder, default ../shared)
#   bench/gpu-dp.sh DIR             GPU machine (DIR carried)
# MT_DP_PEERS=0 skips PyTorch; MT_DP_BENCH=0 skips the measurement.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin
  rm -rf "$dir" && mkdir -p "$dir/plans" "$dir/mlir" "$dir/peer"
  "$bin/mt-tokenize" models/data/demo-corpus.txt -o "$dir/corpus.bin" > /dev/null
  # The demo plans as tools/gpu-check.sh compiles them: one GPU (2 micro-
  # batches of 4) and dp2 (1 of 4 per rank): the same global batch of 8.
  "$bin/mtc" import-hf models/hf/demo-tiny.json --seq 128 --micro-batch 4 -o "$dir/mlir/demo.mlir"
  for layout in "demo:" "demo-dp2:--dp 2" "demo-tp2:--tp 2"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/demo.mlir" ${layout#*:} --global-batch 8 --lr 2e-3 \
      --warmup-steps 5 --train-steps 20 -o "$dir/plans/${layout%%:*}"
  done
  "$bin/mtc" import-hf models/hf/llama3.2-1b.json --seq 2048 --micro-batch 4 -o "$dir/mlir/llama.mlir"
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --global-batch 4 --lr 1e-4 --train-steps 100 \
    -o "$dir/plans/llama-1gpu"
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --dp 2 --global-batch 8 --lr 1e-4 \
    --train-steps 100 -o "$dir/plans/llama-dp2"
  rm -rf "$dir/mlir"
  # Uniform random ids below llama's vocabulary, as the peer draws its
  # batch; header as runtime/io/TokenFile.h.
  python3 - "$dir/tokens.bin" <<'PY'
import random, struct, sys
n, vocab = 1 << 20, 128256
rng = random.Random(0)
with open(sys.argv[1], "wb") as f:
    f.write(b"MTTOKENS" + struct.pack("<IIQQ", 1, 4, vocab, n) + bytes(32))
    f.write(struct.pack(f"<{n}I", *(rng.randrange(vocab) for _ in range(n))))
PY
  cp "${MT_SHARED_DIR:-../shared}/bench/torch_llama.py" "$dir/peer/"
  cp -r /usr/src/googletest "$dir/googletest"
  du -sh "$dir"
  exit 0
fi

dir=$(cd "$1" && pwd)
build=${MT_GPU_BUILD_DIR:-/tmp/mt-dp-build}
out=${OUT:-$build/out} work=$build/work # $OUT: the few files that come back
mkdir -p "$build" "$out" "$work"
log=$out/build.log
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
echo "NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE-unset}"

# --- build: mtrun and the tests, GoogleTest from the carried source if none.
start=$(date +%s)
args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMT_BUILD_COMPILER=OFF -DMT_BUILD_CUDA=ON)
command -v ninja > /dev/null && args+=(-G Ninja)
[[ -x /usr/local/cuda/bin/nvcc ]] && args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
if ! compgen -G "/usr/lib*/cmake/GTest/GTestConfig.cmake" > /dev/null &&
   ! compgen -G "/usr/lib/*/cmake/GTest/GTestConfig.cmake" > /dev/null; then
  cmake -S "$dir/googletest" -B "$build/gtest" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_INSTALL_PREFIX="$build/gtest-install" >> "$log" 2>&1 &&
    cmake --build "$build/gtest" -j "$(nproc)" >> "$log" 2>&1 &&
    cmake --install "$build/gtest" >> "$log" 2>&1
  args+=(-DCMAKE_PREFIX_PATH="$build/gtest-install")
fi
if ! { cmake "${args[@]}" >> "$log" 2>&1 &&
       cmake --build "$build" -j "$(nproc)" --target mtrun MtCudaGpu2Tests MtCudaTrainingTests \
         >> "$log" 2>&1; }; then
  grep -E "error|Error|NCCL" -A5 "$log" | head -60
  exit 1
fi
grep "NCCL:" "$log" | tail -1
echo "built in $(( $(date +%s) - start )) s"

# --- tests: gpu2, then the one-GPU demo training (gpu1) as a regression check.
export MT_GPU_DATA=$dir
timeout 300 ctest --test-dir "$build" -L gpu2 --timeout 280 --output-on-failure -V \
  > "$out/gpu2.log" 2>&1
gpu2=$?
grep -E "^[0-9]+: \[ +(OK|FAILED|SKIPPED) +\]|demo dp2 vs|tests passed|Failure|error|Expected|Which is|actual" \
  "$out/gpu2.log" | head -40
timeout 200 "$build/bin/MtCudaTrainingTests" \
  --gtest_filter='Models/TrainingStepTest.LossesMatchTheCpuBackend/demo:CudaBackendTest.ResumeContinuesTheSameRun' \
  > "$out/gpu1.log" 2>&1
gpu1=$?
grep -E "^\[ +(OK|FAILED|PASSED) +\]|cuda loss" "$out/gpu1.log" | head -10

# --- measurement: tokens/s per GPU after 4 warm-up steps (median).
if [[ "${MT_DP_BENCH:-1}" == 1 ]]; then
  mtrun=$build/bin/mtrun rows=$out/rows.jsonl
  : > "$rows"
  for run in "llama-1gpu:1" "llama-dp2:2"; do
    plan=${run%%:*} gpus=${run#*:}
    timeout 150 "$mtrun" "$dir/plans/$plan" --nproc "$gpus" --backend cuda \
      --data "$dir/tokens.bin" --steps 12 --metrics "$work/$plan.jsonl" > "$work/$plan.log" 2>&1 ||
      { echo "mtrun $plan failed:"; tail -5 "$work/$plan.log"; continue; }
    python3 - "$work/$plan.jsonl" "$gpus" "$work/$plan.log" >> "$rows" <<'PY'
import json, re, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
rates = sorted(s["tokens_per_s"] for s in steps[4:])
gpus = int(sys.argv[2])
mem = re.search(r"device in use ([0-9.]+) GiB", open(sys.argv[3]).read())
print(json.dumps(dict(peer="mtc" + (f"-dp{gpus}" if gpus > 1 else ""), gpus=gpus,
                      tokens_per_s=rates[len(rates) // 2] / gpus,
                      peak_mem_gib=float(mem.group(1)) if mem else None,
                      loss=steps[-1]["loss"])))
PY
  done
  # Where dp2's step goes (rank 0, CUDA events per instruction class).
  timeout 100 "$mtrun" "$dir/plans/llama-dp2" --nproc 2 --backend cuda --data "$dir/tokens.bin" \
    --steps 4 --profile 2>&1 | sed -n '/^profile/,/wall (programs)/p'
  if [[ "${MT_DP_PEERS:-1}" == 1 ]]; then
    for mode in eager compile; do
      timeout 180 torchrun --standalone --nproc_per_node 2 "$dir/peer/torch_llama.py" \
        "llama3.2-1b:4:2048:$mode" 2> "$work/peer-$mode.err" | grep '^{' >> "$rows" ||
        { echo "peer $mode failed:"; tail -3 "$work/peer-$mode.err"; }
    done
  fi
  python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
one = next((r["tokens_per_s"] for r in rows if r.get("peer") == "mtc"), None)
dp2 = next((r["tokens_per_s"] for r in rows if r.get("peer") == "mtc-dp2"), None)
print(f"{'llama3.2-1b 4 x 2048 per GPU':30} {'GPUs':>4} {'tokens/s/GPU':>12} {'job tokens/s':>12} "
      f"{'vs our 1 GPU':>12} {'mtc dp2 / this':>14} {'GPU GiB':>8}")
for r in rows:
    if "tokens_per_s" not in r:
        print(f"{r.get('peer', r.get('mode', '?')):30} error: {str(r.get('error', ''))[:80]}")
        continue
    g, t = r.get("gpus", 1), r["tokens_per_s"]
    eff = f"{t / one:.1%}" if one and r.get("peer", "").startswith("mtc") else ""
    ratio = f"{dp2 / t:.2f}x" if dp2 and r.get("peer") != "mtc-dp2" and g == 2 else ""
    print(f"{r['peer']:30} {g:>4} {t:>12,.0f} {t * g:>12,.0f} {eff:>12} {ratio:>14} "
          f"{str(r.get('peak_mem_gib', '-')):>8}")
PY
fi
echo "gpu2 tests exit $gpu2, gpu1 demo tests exit $gpu1"
(( gpu2 == 0 && gpu1 == 0 ))
