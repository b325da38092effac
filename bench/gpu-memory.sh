#!/usr/bin/env bash
# The memory options on one GPU, measured beside what `mtc compile --explain`
# predicts: llama3.2-1b (4 x 2048) with no recompute, selective (core_attn)
# and full recompute, and llama3.1-8b (1 x 4096) full fine-tuning with
# optimizer_offload; for each, tokens/s, TFLOP/s and MFU (docs/FLOPS.md's
# model FLOPs: recomputed work is not counted), the cost against no
# recompute, and GPU memory: the plan arenas mtrun allocated and the device
# memory in use (cudaMemGetInfo) beside --explain's arenas and its estimate
# with the CUDA context. The PyTorch peer (llama3.2-1b 4 x 2048, compile) runs
# in the same call for scale.
#
#   bench/gpu-memory.sh --prepare DIR [PEER]   development machine: imports,
#                               compiles the plans, keeps each --explain,
#                               writes random tokens, copies the peer script
#   bench/gpu-memory.sh DIR     GPU machine: builds mtrun, runs every row
#
# MT_MEMORY_RUNS narrows the rows (names as in `runs` below); MT_BENCH_PEERS=0
# skips the peer. A row whose plan needs more pinned host memory than the
# machine has is skipped with the two figures.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh
# name model micro-batch seq [mtc compile flags]
runs=(
  "1b-none llama3.2-1b 4 2048"
  "1b-selective llama3.2-1b 4 2048 --recompute-granularity selective --recompute-modules core_attn"
  "1b-full llama3.2-1b 4 2048 --recompute-granularity full --recompute-method uniform --recompute-num-layers 1"
  "8b-offload llama3.1-8b 1 4096 --optimizer-offload"
)
selected() { [[ -z "${MT_MEMORY_RUNS:-}" || " $MT_MEMORY_RUNS " == *" $1 "* ]]; }

if [[ "${1:-}" == "--prepare" ]]; then
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin peer=${3:-${MT_PEER_SCRIPT:-}}
  require_peer bench/gpu-memory.sh "$peer" || exit 1
  rm -rf "$dir" && mkdir -p "$dir/plans" "$dir/mlir" "$dir/explain" "$dir/peer"
  for run in "${runs[@]}"; do
    read -r name model batch seq flags <<< "$run"
    selected "$name" || continue
    mlir=$dir/mlir/$model-${batch}x$seq.mlir
    [[ -f "$mlir" ]] || "$bin/mtc" import-hf "models/hf/$model.json" --seq "$seq" \
      --micro-batch "$batch" -o "$mlir"
    # shellcheck disable=SC2086 # the flags are words
    "$bin/mtc" compile "$mlir" --global-batch "$batch" --lr 1e-5 --train-steps 100 $flags \
      -o "$dir/plans/$name"
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$mlir" --global-batch "$batch" $flags --explain > "$dir/explain/$name.txt"
    echo "$model $batch $seq" > "$dir/explain/$name.shape"
  done
  # Uniform random ids below the vocabulary (128256 for both models).
  python3 tools/random-tokens.py "$dir/tokens.bin" 128256 $((1 << 21))
  if [[ -n "$peer" ]]; then cp "$peer" "$dir/peer/torch_llama.py"; fi
  exit 0
fi

dir=$1
gpu_start /tmp/mt-memory-build 560
gpu_build -DMT_BUILD_TESTS=OFF mtrun || exit 1
host_gib=$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
echo "host memory: $host_gib GiB"
for run in "${runs[@]}"; do
  read -r name _ <<< "$run"
  [[ -f "$dir/plans/$name/plan.pb" ]] || continue
  # The pinned host memory the plan needs (--explain's CUDA host total).
  need=$(python3 bench/explain-memory.py "$dir/explain/$name.txt" host)
  if awk -v need="$need" -v have="$host_gib" 'BEGIN { exit !(need > 0.9 * have) }'; then
    echo "skipped $name: its plan pins $need GiB of host memory; this machine has $host_gib GiB"
    continue
  fi
  fits "${MT_RUN_TIMEOUT:-240}" "$name" || continue
  MT_RUN_TIMEOUT=${MT_RUN_TIMEOUT:-240} mtc_row "$name" 1 "$name"
done
if [[ "${MT_BENCH_PEERS:-1}" == 1 ]] && fits 120 "the PyTorch peer"; then
  python3 "$dir/peer/torch_llama.py" llama3.2-1b:4:2048:compile 2> "$out/peer.err" |
    grep '^{' >> "$rows" || { echo "peer failed:"; tail -5 "$out/peer.err"; }
fi
python3 bench/explain-memory.py --table "$rows" "$dir/explain" "$work"
