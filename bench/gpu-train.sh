#!/usr/bin/env bash
# The training-step benchmark on one GPU: our whole step (forward, backward,
# AdamW; `mtrun --backend cuda`) at the llama3.2-1b and qwen3-0.6b shapes
# (micro-batch 4 x seq 2048, and llama3.2-1b at 1 x 8192), beside a PyTorch
# peer (eager and torch.compile) in the same call, in one table: tokens/s,
# TFLOP/s and MFU with the FLOPs of docs/FLOPS.md, GPU memory, and our ratio
# to each peer, and the SM clock and power each ran at (lib-gpu.sh
# clocks_start); then where one step's time goes (mtrun --profile), a
# roofline line per kernel class (achieved rate against the H200's peak), and
# each class's kernel time beside torch.compile's (bench/peer-classes.py).
#
#   bench/gpu-train.sh --prepare DIR [PEER]   development machine: compiles
#                                      the plans, writes random tokens, copies
#                                      the peer script PEER into DIR
#   bench/gpu-train.sh DIR [MTRUN]     GPU machine (MTRUN: a CUDA build's)
#
# The peer is not part of mtc: PEER (or $MT_PEER_SCRIPT) is a Python script
# that trains the same shapes in PyTorch, takes arguments MODEL:BATCH:SEQ:MODE
# (MODE eager or compile) and prints one JSON line per argument with "peer",
# "model", "micro_batch", "seq", "tokens_per_s" and "peak_mem_gib" (or
# "error"); the project's peer is torch_llama.py of the benchmark workspace.
# MT_BENCH_PEERS=0 skips the PyTorch runs (then no PEER is needed);
# MT_BENCH_SHAPES narrows the shapes (e.g. "llama3.2-1b:4:2048");
# MT_BENCH_PROFILE_SHAPES names the shapes profiled, ours and the peer's
# (default the two 4 x 2048 ones; "none" profiles none);
# MT_COMPILE_FLAGS adds flags to --prepare's mtc compile (e.g. "--no-fuse all").
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh
shapes=${MT_BENCH_SHAPES:-"llama3.2-1b:4:2048 qwen3-0.6b:4:2048 llama3.2-1b:1:8192"}

if [[ "${1:-}" == "--prepare" ]]; then
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin peer=${3:-${MT_PEER_SCRIPT:-}}
  require_peer bench/gpu-train.sh "$peer" "to time mtc alone" || exit 1
  mkdir -p "$dir/plans" "$dir/mlir" "$dir/peer"
  read -r -a extra <<< "${MT_COMPILE_FLAGS:-}"
  for shape in $shapes; do
    IFS=: read -r model batch seq <<< "$shape"
    name=bench-$model-${batch}x$seq
    "$bin/mtc" import-hf "models/hf/$model.json" --seq "$seq" --micro-batch "$batch" \
      -o "$dir/mlir/$name.mlir"
    "$bin/mtc" compile "$dir/mlir/$name.mlir" "${extra[@]}" --global-batch "$batch" --lr 1e-4 \
      --train-steps 100 -o "$dir/plans/$name"
  done
  # Uniform random ids below the smaller vocabulary (128256), as the peer
  # draws its batch; header as runtime/io/TokenFile.h.
  python3 tools/random-tokens.py "$dir/bench-tokens.bin" 128256 $((1 << 21))
  if [[ -n "$peer" ]]; then cp "$peer" "$dir/peer/torch_llama.py"; fi
  exit 0
fi

dir=$1 mtrun=${2:-${MT_GPU_BUILD_DIR:-/tmp/mt-gpu-build}/bin/mtrun}
out=${OUT:-/tmp}/gpu-train
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
rows=$out/rows.jsonl clocks=$out/clocks.txt
: > "$rows"
: > "$clocks"
for shape in $shapes; do
  IFS=: read -r model batch seq <<< "$shape"
  name=bench-$model-${batch}x$seq
  log=$out/$name.log
  clocks_start
  ok=0
  "$mtrun" "$dir/plans/$name" --backend cuda --data "$dir/bench-tokens.bin" --steps 12 \
    --metrics "$out/$name.jsonl" > "$log" 2>&1 || ok=$?
  clocks_stop "mtc $model $batch x $seq" "$clocks"
  if [[ $ok == 0 ]]; then
    python3 - "$out/$name.jsonl" "$log" "$model" "$batch" "$seq" >> "$rows" <<'PY'
import json, re, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
rates = sorted(s["tokens_per_s"] for s in steps[4:])  # after 4 warm-up steps
# What mtrun allocates (its arenas and kernel workspaces), as the peer's
# torch.cuda.max_memory_allocated counts its tensors; and the device's
# memory in use (cudaMemGetInfo: the CUDA context and libraries too).
memory = re.search(r"plan arenas ([0-9.]+) GiB, workspaces ([0-9.]+) GiB; device in use "
                   r"([0-9.]+) GiB", open(sys.argv[2]).read())
print(json.dumps(dict(peer="mtc", model=sys.argv[3], micro_batch=int(sys.argv[4]),
                      seq=int(sys.argv[5]), tokens_per_s=rates[len(rates) // 2],
                      peak_mem_gib=round(float(memory.group(1)) + float(memory.group(2)), 2)
                      if memory else None,
                      in_use_gib=float(memory.group(3)) if memory else None,
                      loss=steps[-1]["loss"])))
PY
  else
    echo "mtrun failed at $shape:"; tail -5 "$log"
    echo "{\"peer\": \"mtc\", \"model\": \"$model\", \"micro_batch\": $batch, \"seq\": $seq, \"error\": \"mtrun failed\"}" >> "$rows"
  fi
done
if [[ "${MT_BENCH_PEERS:-1}" == 1 ]]; then
  [[ -f "$dir/peer/torch_llama.py" ]] || {
    echo "error: $dir/peer/torch_llama.py: no peer script; prepare with a PEER, or MT_BENCH_PEERS=0" >&2
    exit 1; }
  specs=()
  for shape in $shapes; do specs+=("$shape:eager" "$shape:compile"); done
  clocks_start
  python3 "$dir/peer/torch_llama.py" "${specs[@]}" 2> "$out/peer.err" |
    grep '^{' >> "$rows" || { echo "peer failed:"; tail -5 "$out/peer.err"; }
  clocks_stop "PyTorch peer (every shape, eager and compile)" "$clocks"
fi

python3 - "$rows" <<'PY'
import json, sys
# FLOPs per token as docs/FLOPS.md defines them.
shapes = {"llama3.2-1b": dict(V=128256, h=2048, L=16, nq=32, nkv=8, d=64, f=8192),
          "qwen3-0.6b": dict(V=151936, h=1024, L=28, nq=16, nkv=8, d=128, f=3072)}
def flops(model, s):
    c = shapes[model]; q, kv = c["nq"] * c["d"], c["nkv"] * c["d"]
    layer = 2 * c["h"] * (q + 2 * kv) + 2 * q * c["h"] + 6 * c["h"] * c["f"] + 2 * s * q
    return 3 * (c["L"] * layer + 2 * c["h"] * c["V"])
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r.get("model"), r.get("micro_batch"), r.get("seq"))
ours = {key(r): r for r in rows if r.get("peer") == "mtc" and "tokens_per_s" in r}
print(f"{'model':12} {'batch x seq':>11} {'runner':17} {'tokens/s':>9} {'TFLOP/s':>8} "
      f"{'MFU':>6} {'GPU GiB':>8} {'mtc / this':>10} {'in use':>7}")
for r in rows:
    if "tokens_per_s" not in r:
        print(f"{r.get('model', '?'):12} {'':>11} {r.get('peer', r.get('mode', '?')):17} "
              f"error: {r.get('error', '')[:80]}")
        continue
    tf = r["tokens_per_s"] * flops(r["model"], r["seq"]) / 1e12
    mine = ours.get(key(r))
    ratio = f"{mine['tokens_per_s'] / r['tokens_per_s']:.2f}x" if mine and r is not mine else ""
    mem = r.get("peak_mem_gib")
    print(f"{r['model']:12} {str(r['micro_batch']) + ' x ' + str(r['seq']):>11} "
          f"{r['peer']:17} {r['tokens_per_s']:>9,.0f} {tf:>8.1f} {tf / 989.4:>6.1%} "
          f"{mem if mem is not None else '-':>8} {ratio:>10} {r.get('in_use_gib') or '':>7}")
print("GPU GiB: the peak of what each allocates for the step: mtc = its plan arenas and kernel "
      "workspaces (not cuBLAS's 32 MiB workspace), PyTorch = torch.cuda.max_memory_allocated; "
      "in use: mtc's device memory in use (cudaMemGetInfo: the CUDA context and libraries too)")
PY
if [[ -s "$clocks" ]]; then
  echo "clocks while each ran (nvidia-smi every 100 ms; medians over the samples above half the power limit):"
  sed 's/^/  /' "$clocks"
fi

# The profile, then a roofline line per kernel class: the achieved rate of
# the profile (model FLOPs, or the bytes each instruction moves at least;
# runtime/plan/Roofline.h) against the GPU's peak, and the time the class
# would take at that peak. Peaks of the H200 (dense bf16, HBM3e) unless
# MT_PEAK_TFLOPS / MT_PEAK_GBPS say otherwise. Then, unless
# MT_BENCH_PEERS=0, each class beside torch.compile's kernel time
# (bench/peer-classes.py: CUPTI's, over 4 of its steps); ours is the
# profile's, events between the instructions of the replayed CUDA graphs.
profiled=${MT_BENCH_PROFILE_SHAPES:-llama3.2-1b:4:2048 qwen3-0.6b:4:2048}
[[ "$profiled" == none ]] && profiled=
for shape in $profiled; do
  IFS=: read -r model batch seq <<< "$shape"
  name=bench-$model-${batch}x$seq
  profile=$out/$name.profile peer=$out/$name.peer-classes.json
  echo "== profile: $name"
  if ! "$mtrun" "$dir/plans/$name" --backend cuda --data "$dir/bench-tokens.bin" --steps 3 \
       --profile > "$profile" 2>&1; then
    echo "mtrun --profile failed at $shape:"; tail -5 "$profile"; continue
  fi
  sed -n '/^GPU memory/,$p' "$profile"
  rm -f "$peer"
  if [[ "${MT_BENCH_PEERS:-1}" == 1 ]] &&
     ! python3 bench/peer-classes.py "$dir/peer/torch_llama.py" "$shape:compile" \
         > "$peer" 2> "$out/$name.peer-classes.err"; then
    echo "peer-classes.py failed at $shape:"; tail -3 "$out/$name.peer-classes.err"
  fi
  python3 - "$profile" "${MT_PEAK_TFLOPS:-989.4}" "${MT_PEAK_GBPS:-4800}" "$peer" <<'PY' || true
import json, os, re, sys
peak_tf, peak_gbs = float(sys.argv[2]), float(sys.argv[3])
row = re.compile(r"^  (.+?)\s{2,}([0-9.]+)\s+[0-9.]+%\s+\d+\s+([0-9.]+)\s+([0-9.]+)$")
print(f"roofline against {peak_tf:g} TFLOP/s and {peak_gbs:g} GB/s "
      "(matrix classes by FLOPs, the others by bytes moved at least):")
ours = {}  # ms per step; element-wise, norms, loss and the rest are "other"
for line in open(sys.argv[1]):
    m = row.match(line.rstrip("\n"))
    if not m:
        continue
    name, ms, tflops, gbs = m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4))
    if tflops > 0:
        rate, share = f"{tflops:7.1f} TFLOP/s", tflops / peak_tf
    else:
        rate, share = f"{gbs:7.0f} GB/s   ", gbs / peak_gbs
    print(f"  {name[:46]:46} {rate} {share:6.1%} of peak  {ms:7.2f} ms/step,"
          f" {ms * share:7.2f} at peak")
    label = next((c for c in ("GEMM", "attention", "optimizer") if name.startswith(c)), "other")
    ours[label] = ours.get(label, 0.0) + ms
if not ours:
    sys.exit("no class rows in the profile")
if not os.path.exists(sys.argv[4]):
    sys.exit(0)
lines = open(sys.argv[4]).read().strip().splitlines()
peer = json.loads(lines[-1]) if lines else {"error": "no output"}
if "classes" not in peer:
    sys.exit(f"peer-classes.py: {peer.get('error', 'no classes')}")
print("beside pytorch-compile, kernel ms per step by class (the peer's from torch.profiler):")
print(f"  {'class':10} {'mtc':>8} {'compile':>8} {'compile - mtc':>14}")
labels = ["GEMM", "attention", "optimizer", "other"]
for label in labels + ["all"]:
    a = sum(ours.get(l, 0.0) for l in labels) if label == "all" else ours.get(label, 0.0)
    b = sum(peer["classes"].get(l, 0.0) for l in labels) if label == "all" \
        else peer["classes"].get(label, 0.0)
    print(f"  {label:10} {a:8.2f} {b:8.2f} {b - a:+14.2f}")
print("  the peer's longest kernels (ms per step, launches):")
for name, label, ms, count in peer["top"][:6]:
    print(f"    {ms:7.2f} {count:4d}  {label:9} {name}")
PY
done
