#!/usr/bin/env bash
# The mixture-of-experts benchmark on one GPU, in one device call: builds
# mtrun (runtime-only CUDA build), then times our whole training step
# (`mtrun --backend cuda`) on qwen3-30b-a3b-4l (every dimension of
# Qwen3-30B-A3B, 4 of its 48 layers) and mixtral-8x7b-2l (2 of 32 layers),
# micro-batch 1 x 4096, beside the PyTorch peer (torch_moe.py: experts as
# torch._grouped_mm, eager and compile) in the same call. Prints tokens/s,
# TFLOP/s and MFU with docs/FLOPS.md's MoE count (f -> topk * f_expert, plus
# the router's 2*h*E), GPU memory, our ratio to each peer, and our step's
# profile per instruction class. Where the machine has 2 GPUs, also expert
# parallelism: ep2 (the experts split over both GPUs, dp2 for the dense
# layers, micro-batch 1 x 4096 per GPU): tokens/s per GPU against our one-GPU
# figure and, from mtrun --profile-comm on rank 0, the all-to-all and other
# communication time compute did not hide.
#
#   bench/gpu-moe.sh --prepare DIR   development machine: compiles the plans,
#                                    writes the tokens, copies the peer script
#                                    (MT_SHARED_DIR, default ../shared) and,
#                                    for machines without it, GoogleTest's source
#   bench/gpu-moe.sh DIR             GPU machine (DIR carried)
# MT_MOE_BUILD=0 / MT_MOE_PEERS=0 / MT_MOE_EP=0 / MT_MOE_PROFILES=0 skip a stage;
# MT_MOE_BUDGET (s, default 570) skips the later stages that would not fit;
# MT_MOE_PEER_MODES (default "eager compile") narrows the peer's modes.
# Our rows run 30 steps, the median after 10: the experts' GEMM plans (one
# per bucket of 64 rows, runtime/cuda/Gemm.h) and the router's balance
# settle over the first steps (measured on an H200: qwen3-30b-a3b-4l rises
# from 43k to 49k tokens/s between steps 4 and 12); the peer's script keeps
# its own 12 steps, the median after 4.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh
# name:HF config:layers kept; the shapes of torch_moe.py's CONFIGS.
models="qwen3-30b-a3b-4l:qwen3-30b-a3b:4 mixtral-8x7b-2l:mixtral-8x7b:2"

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin shared=${MT_SHARED_DIR:-../shared}
  rm -rf "$dir" && mkdir -p "$dir/plans" "$dir/mlir" "$dir/peer"
  for m in $models; do
    IFS=: read -r name hf layers <<< "$m"
    python3 -c 'import json, sys
c = json.load(open(sys.argv[1])); c["num_hidden_layers"] = int(sys.argv[2])
c.pop("layer_types", None)
json.dump(c, open(sys.argv[3], "w"), indent=1)' "models/hf/$hf.json" "$layers" "$dir/mlir/$name.json"
    "$bin/mtc" import-hf "$dir/mlir/$name.json" --seq 4096 --micro-batch 1 -o "$dir/mlir/$name.mlir"
    "$bin/mtc" compile "$dir/mlir/$name.mlir" --global-batch 1 --lr 1e-4 --train-steps 100 \
      -o "$dir/plans/$name"
    "$bin/mtc" compile "$dir/mlir/$name.mlir" --ep 2 --global-batch 2 --lr 1e-4 \
      --train-steps 100 -o "$dir/plans/$name-ep2"
  done
  rm -rf "$dir/mlir"
  # Uniform random ids below the smaller vocabulary (32000), as the peer
  # draws its batch; header as runtime/io/TokenFile.h.
  python3 tools/random-tokens.py "$dir/tokens.bin" 32000 $((1 << 20))
  cp "$shared/bench/torch_moe.py" "$dir/peer/torch_moe.py"
  [[ -d /usr/src/googletest ]] && cp -r /usr/src/googletest "$dir/googletest"
  exit 0
fi

dir=$1
gpu_start /tmp/mt-moe-build "${MT_MOE_BUDGET:-570}"
if [[ "${MT_MOE_BUILD:-1}" == 1 ]]; then
  gpu_build -DMT_BUILD_TESTS=OFF mtrun || exit 1
fi
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
ep=$(( gpus >= 2 && ${MT_MOE_EP:-1} == 1 ))
export MT_ROW_STEPS=30 MT_ROW_WARMUP=10
for m in $models; do
  IFS=: read -r name _ _ <<< "$m"
  fits 90 "mtc $name" && MT_RUN_TIMEOUT=120 mtc_row "$name" 1 "$name"
  (( ep )) && fits 90 "mtc $name-ep2" && MT_RUN_TIMEOUT=120 mtc_row "$name-ep2" 2 "$name-ep2"
done
if [[ "${MT_MOE_PEERS:-1}" == 1 ]] && fits 200 "PyTorch peers"; then
  specs=()
  for m in $models; do
    for mode in ${MT_MOE_PEER_MODES:-eager compile}; do specs+=("${m%%:*}:1:4096:$mode"); done
  done
  python3 "$dir/peer/torch_moe.py" "${specs[@]}" 2> "$work/peer.err" | grep '^{' >> "$rows" ||
    { echo "peer failed:"; tail -5 "$work/peer.err"; }
fi

python3 - "$rows" <<'PY'
import json, sys
# FLOPs per token as docs/FLOPS.md counts MoE (torch_moe.py's CONFIGS).
shapes = {"qwen3-30b-a3b-4l": dict(V=151936, h=2048, L=4, nq=32, nkv=4, d=128, E=128, k=8, fe=768),
          "mixtral-8x7b-2l": dict(V=32000, h=4096, L=2, nq=32, nkv=8, d=128, E=8, k=2, fe=14336)}
def flops(model, s):
    c = shapes[model]; q, kv = c["nq"] * c["d"], c["nkv"] * c["d"]
    layer = (2 * c["h"] * (q + 2 * kv) + 2 * q * c["h"] + 6 * c["h"] * c["k"] * c["fe"]
             + 2 * c["h"] * c["E"] + 2 * s * q)
    return 3 * (c["L"] * layer + 2 * c["h"] * c["V"])
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:  # mtc rows are named by model (+ -ep2); the peer's carry "model"
    name = r.get("peer", "")
    if name.removesuffix("-ep2") in shapes:
        r["model"], r["peer"] = name.removesuffix("-ep2"), "mtc" if name in shapes else "mtc ep2/GPU"
ours = {r["model"]: r for r in rows if r.get("peer") == "mtc" and "tokens_per_s" in r}
print(f"{'model (1 x 4096)':18} {'runner':16} {'tokens/s':>9} {'TFLOP/s':>8} {'MFU':>6} "
      f"{'GPU GiB':>8} {'mtc / this':>10}")
for r in rows:
    name = r.get("peer") or f"torch {r.get('mode', '?')}"
    if "tokens_per_s" not in r or r.get("model") not in shapes:
        print(f"{str(r.get('model', '?')):18} {name:16} error: {str(r.get('error', ''))[:80]}")
        continue
    tf = r["tokens_per_s"] * flops(r["model"], 4096) / 1e12
    mine = ours.get(r["model"])
    ratio = f"{mine['tokens_per_s'] / r['tokens_per_s']:.2f}x" if mine and r is not mine else ""
    if r.get("peer") == "mtc ep2/GPU":  # efficiency per GPU against our one-GPU row
        ratio = f"{r['tokens_per_s'] / mine['tokens_per_s']:.1%} of 1" if mine else ""
    mem = r.get("peak_mem_gib")
    print(f"{r['model']:18} {name:16} {r['tokens_per_s']:>9,.0f} {tf:>8.1f} {tf / 989.4:>6.1%} "
          f"{mem if mem is not None else '-':>8} {ratio:>10}")
print("GPU GiB: mtc = device memory in use (cudaMemGetInfo, rank 0); PyTorch = its peak "
      "allocated; ep2 rows: tokens/s per GPU, the last column its share of our one-GPU figure")
PY
[[ "${MT_MOE_PROFILES:-1}" == 1 ]] || exit 0
for m in $models; do
  IFS=: read -r name _ _ <<< "$m"
  fits 60 "profile $name" && { echo "== profile: $name"; gpu_profile "$name" 1 "$work/$name.profile"; }
done
if (( ep )); then
  for m in $models; do
    name=${m%%:*}-ep2
    fits 60 "profile $name" &&
      { echo "== profile: $name"; gpu_profile_comm "$name" 2 "$work/$name.profile"; }
  done
fi
