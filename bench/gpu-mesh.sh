#!/usr/bin/env bash
# Several GPUs in one device call (issue 13, "4 and 8 GPUs"): builds mtrun
# (runtime-only CUDA build, as bench/gpu-dp.sh), counts the GPUs, runs every
# prepared layout that fits that count (the others are skipped with a line
# saying so), profiles each on rank 0, and prints one table: tokens/s per GPU
# and for the job, TFLOP/s and MFU per GPU, the measured GPU memory beside
# `mtc compile --explain`'s estimate, and the communication and pipeline-
# transfer time per step that compute did not hide.
#
#   llama3.2-1b, micro-batch 4 x 2048: tp2+sp, pp2, pp2xvpp2 (2 GPUs);
#     tp2xpp2, pp4 (4 GPUs); tp2xpp2xdp2 (8 GPUs)
#   llama3.1-8b, micro-batch 1 x 4096: tp2xpp2xdp2, tp4xpp2, tp8 (8 GPUs);
#     dp2 with the distributed optimizer and overlap (2 GPUs)
#   llama3.2-1b, one sequence of 32768 tokens: one GPU and cp2 (p2p)
# Pipelines run 4 micro-batches per stage (8 for pp2, 16 for pp4), tp8
# accumulates 8 micro-batches; every tp layout has --sp.
#
#   bench/gpu-mesh.sh --prepare DIR   development machine: compiles the plans
#                                     (no MLIR on the GPU machine), keeps each
#                                     plan's --explain beside it, the models'
#                                     configs and the tokens
#   bench/gpu-mesh.sh DIR             GPU machine (DIR carried)
#   bench/gpu-mesh.sh --table DIR ROWS  prints the table again from a rows file
#
# From a session (the run tool sends /work/main's checkout; DIR under it, ignored):
#   here:  bench/gpu-mesh.sh --prepare .hx/mesh
#   run:   kind nvidia-h200-x8 (or -x4: the 8-GPU layouts are skipped; or -x2:
#          the three 2-GPU layouts only), carry [".hx/mesh"], timeout_s 600,
#          command "bench/gpu-mesh.sh .hx/mesh"
#   Throughput runs come first, then the profiles; where the budget skips
#   some, a second call on the still-warm machine finishes them without
#   rebuilding: "MT_MESH_BUILD=0 MT_MESH_LAYOUTS='8b' bench/gpu-mesh.sh .hx/mesh".
# MT_MESH_BUILD=0 skips the build, MT_MESH_PROFILES=0 the profiles,
# MT_MESH_LAYOUTS (a regular expression over the names below) picks layouts;
# MT_MESH_BUDGET (s, default 570) skips the later runs that would not fit.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh

# Layouts: "name model micro-batch seq mtc-compile-flags...".
layouts=(
  "llama3.2-1b-tp2-sp llama3.2-1b 4 2048 --tp 2 --sp --global-batch 4"
  "llama3.2-1b-pp2 llama3.2-1b 4 2048 --pp 2 --global-batch 32"
  "llama3.2-1b-tp2-pp2 llama3.2-1b 4 2048 --tp 2 --sp --pp 2 --global-batch 32"
  "llama3.2-1b-pp4 llama3.2-1b 4 2048 --pp 4 --global-batch 64"
  "llama3.2-1b-pp2-vpp2 llama3.2-1b 4 2048 --pp 2 --vpp 2 --global-batch 32"
  "llama3.2-1b-tp2-pp2-dp2 llama3.2-1b 4 2048 --tp 2 --sp --pp 2 --dp 2 --global-batch 64"
  "llama3.1-8b-tp2-pp2-dp2 llama3.1-8b 1 4096 --tp 2 --sp --pp 2 --dp 2 --global-batch 16"
  "llama3.1-8b-tp4-pp2 llama3.1-8b 1 4096 --tp 4 --sp --pp 2 --global-batch 8"
  "llama3.1-8b-tp8 llama3.1-8b 1 4096 --tp 8 --sp --global-batch 8"
  # Context parallelism (issue 18): one sequence of 32768 tokens on one GPU
  # and split over two (ring attention, Megatron's load-balanced chunks).
  "llama3.2-1b-s32k llama3.2-1b 1 32768 --global-batch 1"
  "llama3.2-1b-s32k-cp2 llama3.2-1b 1 32768 --cp 2 --cp-comm-type p2p --global-batch 1"
  # The distributed optimizer with overlap, dp2 (issue 16).
  "llama3.1-8b-dp2-do llama3.1-8b 1 4096 --dp 2 --use-distributed-optimizer --overlap-param-gather --global-batch 2"
)

# ranks LAYOUT: its ranks (GPUs), from the mesh line of its --explain.
ranks() { sed -n 's/^mesh .*: \([0-9]*\) ranks\?,.*/\1/p' "$dir/plans/$1.explain.txt"; }

# The table: rows of mtc_row ({"peer": layout, ...}) and of profile_row
# ({"profile": layout, ...}); the model's shape from DIR/models/MODEL.json,
# the sequence length and memory estimate from DIR/plans/LAYOUT.explain.txt.
table() { # DIR ROWS
  python3 - "$1" "$2" <<'PY'
import json, re, sys

PEAK_TFLOPS = 989.4  # dense bf16, H100 SXM and H200 datasheet


def training_flops_per_token(config, seq):
    """Model FLOPs of one trained token (forward + backward = 3 x forward),
    as docs/FLOPS.md and ../shared/bench/FLOPS.md count them (torch_llama.py's
    formula): per layer the QKV and output projections, SwiGLU's three GEMMs
    and causal attention's QK^T and PV (half of s^2), plus the logits;
    recomputation, norms, embeddings and the optimizer are not counted."""
    h, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    n_q, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    d = config.get("head_dim") or h // n_q
    q, kv, f = n_q * d, n_kv * d, config["intermediate_size"]
    per_layer = 2 * h * (q + 2 * kv) + 2 * q * h + 2 * 3 * h * f + 2 * 2 * seq * q / 2
    return 3 * (layers * per_layer + 2 * h * vocab)


def explain(plan_dir, name):
    text = open(f"{plan_dir}/plans/{name}.explain.txt").read()
    seq = int(re.search(r"micro-batch \d+ x seq (\d+)", text).group(1))
    # The memory table's columns: CPU (fp32), CUDA (bf16), CUDA host.
    total = re.search(r"^\s*total \(the peak\).*?[0-9.]+ (?:B|KiB|MiB|GiB)\s+([0-9.]+) (B|KiB|MiB|GiB)",
                      text, re.M)
    scale = {"B": 2.0**-30, "KiB": 2.0**-20, "MiB": 2.0**-10, "GiB": 1.0}
    bubble = re.search(r"predicted bubble ([0-9.]+%)", text)
    return seq, float(total.group(1)) * scale[total.group(2)], bubble.group(1) if bubble else "-"


plan_dir, rows = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])]
profiles = {r["profile"]: r for r in rows if "profile" in r}
print(f"{'layout':26} {'GPUs':>4} {'tok/s/GPU':>10} {'job tok/s':>10} {'TFLOP/s':>7} "
      f"{'MFU':>6} {'GiB used':>8} {'explain':>7} {'ratio':>6} {'comm ms':>8} "
      f"{'pp ms':>7} {'wall ms':>8} {'bubble':>6}")
measured = {r["peer"] for r in rows if "peer" in r}
for name in profiles.keys() - measured:
    print(f"{name:26} not measured (its run failed or was skipped)")
for r in rows:
    if "peer" not in r:
        continue
    name, gpus, rate = r["peer"], r["gpus"], r["tokens_per_s"]
    model = re.match(r"(.+?)-(tp\d|pp\d|dp\d|cp\d|s\d+k)", name).group(1)
    seq, estimate, bubble = explain(plan_dir, name)
    config = json.load(open(f"{plan_dir}/models/{model}.json"))
    tflops = training_flops_per_token(config, seq) * rate / 1e12
    used = r.get("peak_mem_gib")
    p = profiles.get(name, {})
    ms = lambda key: f"{p[key]:.1f}" if key in p else "-"
    print(f"{name:26} {gpus:>4} {rate:>10,.0f} {rate * gpus:>10,.0f} {tflops:>7.0f} "
          f"{tflops / PEAK_TFLOPS:>6.1%} {used if used is not None else '-':>8} {estimate:>7.1f} "
          f"{used / estimate if used else float('nan'):>6.2f} {ms('comm_ms'):>8} "
          f"{ms('pp_ms'):>7} {ms('wall_ms'):>8} {bubble:>6}")
print("GiB used: rank 0's device memory in use (CUDA context and workspaces, about 0.5 GiB, "
      "included); explain: mtc compile --explain's CUDA peak per rank (its arenas); comm / pp ms: "
      "NCCL collectives / pipeline send+recv (recv includes the wait) per step on rank 0's "
      "compute stream under --profile (each instruction timed alone), the time compute did "
      "not hide; bubble: the schedule's "
      "prediction")
PY
}

# profile_row LAYOUT LOG: rank 0's per-step communication, pipeline-transfer
# and program wall times from a --profile log, one JSON line.
profile_row() {
  python3 - "$1" "$2" <<'PY'
import json, re, sys
row = {"profile": sys.argv[1]}
keys = {"communication (NCCL)": "comm_ms", "pipeline transfers": "pp_ms", "wall (programs)": "wall_ms"}
for line in open(sys.argv[2]):
    m = re.match(r"\s+(.+?)\s+([0-9.]+)\s+[0-9.]+%\s+\d+$", line)
    for prefix, key in keys.items():
        if m and m.group(1).startswith(prefix):
            row[key] = float(m.group(2))
print(json.dumps(row))
PY
}

usage="usage: bench/gpu-mesh.sh --prepare DIR | DIR | --table DIR ROWS"
case "${1:-}:$#" in
  --prepare:2 | --table:3 | [^-]*:1) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
if [[ "$1" == "--prepare" ]]; then
  set -e
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin
  rm -rf "$dir" && mkdir -p "$dir/plans" "$dir/mlir" "$dir/models"
  for layout in "${layouts[@]}"; do
    read -r name model micro seq flags <<< "$layout"
    mlir=$dir/mlir/$model-$micro-$seq.mlir
    cp "models/hf/$model.json" "$dir/models/"
    [[ -f "$mlir" ]] ||
      "$bin/mtc" import-hf "models/hf/$model.json" --seq "$seq" --micro-batch "$micro" -o "$mlir"
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$mlir" $flags --lr 1e-4 --train-steps 100 -o "$dir/plans/$name"
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$mlir" $flags --lr 1e-4 --train-steps 100 --explain \
      > "$dir/plans/$name.explain.txt"
    echo "$name: $(ranks "$name") ranks, $(
      grep 'total (the peak)' "$dir/plans/$name.explain.txt" | sed 's/  */ /g')"
  done
  rm -rf "$dir/mlir"
  # Uniform random ids below llama's vocabulary (both models have 128256),
  # as gpu-dp.sh draws them; header as runtime/io/TokenFile.h.
  python3 tools/random-tokens.py "$dir/tokens.bin" 128256 $((1 << 20))
  du -sh "$dir"
  exit 0
fi
if [[ "$1" == "--table" ]]; then
  table "$2" "$3"
  exit
fi

dir=$(cd "$1" && pwd) || exit 2
[[ -f "$dir/tokens.bin" ]] || { echo "$1: not a folder of bench/gpu-mesh.sh --prepare" >&2; exit 2; }
gpu_start /tmp/mt-mesh-build "${MT_MESH_BUDGET:-570}" # seconds: later runs are skipped past it
count=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
echo "$count GPUs; NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE-unset}"
if [[ "${MT_MESH_BUILD:-1}" == 1 ]]; then
  gpu_build -DMT_BUILD_TESTS=OFF mtrun || exit 1
fi

# The layouts of this run: those that fit the GPUs and match MT_MESH_LAYOUTS.
runs=()
for layout in "${layouts[@]}"; do
  read -r name _ <<< "$layout"
  [[ "$name" =~ ${MT_MESH_LAYOUTS:-.} ]] || continue
  gpus=$(ranks "$name")
  if (( gpus > count )); then
    echo "skipped (needs $gpus GPUs, $count here): $name"
  else
    runs+=("$name:$gpus")
  fi
done
# Seconds a job may take: 200 (8B jobs initialise more than gpu-dp.sh's),
# never past the budget, so that a hung job cannot overrun the device call.
limit() { echo $(( budget - SECONDS < 200 ? budget - SECONDS : 200 )); }
for run in "${runs[@]}"; do
  fits 90 "$run" && MT_RUN_TIMEOUT=$(limit) mtc_row "${run%:*}" "${run#*:}" "${run%:*}"
done
if [[ "${MT_MESH_PROFILES:-1}" == 1 ]]; then
  for run in "${runs[@]}"; do
    fits 70 "profile $run" || continue
    echo "== profile: $run"
    MT_RUN_TIMEOUT=$(limit) gpu_profile "${run%:*}" "${run#*:}" "$work/profile-${run%:*}.log"
    profile_row "${run%:*}" "$work/profile-${run%:*}.log" >> "$rows"
  done
  # Context parallelism's key/value exchange overlaps the ring's attention
  # blocks, which --profile (each instruction alone) cannot show: the exposed
  # part from --profile-comm (events on the streams, graphs replaying).
  for run in "${runs[@]}"; do
    [[ "$run" == *-cp[0-9]* ]] && fits 70 "profile-comm $run" || continue
    echo "== profile-comm: $run"
    MT_RUN_TIMEOUT=$(limit) gpu_profile_comm "${run%:*}" "${run#*:}" "$work/comm-${run%:*}.log"
  done
fi
table "$dir" "$rows"
echo "$SECONDS s"
