# shellcheck shell=bash disable=SC2154 # the caller sets dir; gpu_start the rest
# Shared by the GPU benchmark scripts (bench/gpu-dp.sh, bench/gpu-mesh.sh,
# bench/gpu-memory.sh; bench/gpu-train.sh takes require_peer alone);
# sourced, never run. The functions share these variables (gpu_start sets all but dir):
#   dir     the prepared folder (plans/, tokens.bin, googletest/ if carried)
#   build   the runtime-only CUDA build folder
#   out     files that come back ($OUT)       work  files that stay
#   log     the build log                     rows  one JSON line per run
#   budget  seconds the whole call may take (bash's $SECONDS counts them)

# require_peer SCRIPT PEER [WHAT]: --prepare's check that the PyTorch peer
# script PEER exists unless MT_BENCH_PEERS=0; the error names SCRIPT's usage
# and what MT_BENCH_PEERS=0 does instead (WHAT, default "to skip the peer").
# Returns 1 after the error.
require_peer() {
  local script=$1 peer=$2 what=${3:-to skip the peer}
  [[ "${MT_BENCH_PEERS:-1}" != 1 || -f "$peer" ]] && return 0
  echo "error: give the PyTorch peer script: $script --prepare DIR PEER" \
       "(or MT_PEER_SCRIPT=PEER), or MT_BENCH_PEERS=0 $what${peer:+ ($peer: no such file)}" >&2
  return 1
}

# gpu_start DEFAULT_BUILD BUDGET: sets build (MT_GPU_BUILD_DIR or DEFAULT_BUILD),
# out ($OUT or $build/out), work, log, rows (emptied) and budget, makes the
# folders and prints the GPUs.
gpu_start() {
  build=${MT_GPU_BUILD_DIR:-$1} budget=$2
  out=${OUT:-$build/out} work=$build/work
  log=$out/build.log rows=$out/rows.jsonl
  mkdir -p "$build" "$out" "$work"
  : > "$rows"
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
}

# Whether $1 more seconds fit in the budget; if not, says that $2 is skipped.
fits() { (( SECONDS + $1 <= budget )) || { echo "skipped (time budget): $2"; return 1; }; }

# gpu_build [-DVAR=value...] TARGET...: configures $build without MLIR, with
# CUDA, and builds the targets; GoogleTest is built from $dir/googletest where
# the machine has none and the tests are on. Prints the build log's errors
# and returns 1 on failure.
gpu_build() {
  local args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMT_BUILD_COMPILER=OFF -DMT_BUILD_CUDA=ON)
  while [[ "${1:-}" == -D* ]]; do args+=("$1"); shift; done
  command -v ninja > /dev/null && args+=(-G Ninja)
  [[ -x /usr/local/cuda/bin/nvcc ]] && args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  if [[ " ${args[*]} " != *" -DMT_BUILD_TESTS=OFF "* ]] &&
     ! compgen -G "/usr/lib*/cmake/GTest/GTestConfig.cmake" > /dev/null &&
     ! compgen -G "/usr/lib/*/cmake/GTest/GTestConfig.cmake" > /dev/null; then
    cmake -S "$dir/googletest" -B "$build/gtest" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
      -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCMAKE_INSTALL_PREFIX="$build/gtest-install" \
      >> "$log" 2>&1 && cmake --build "$build/gtest" -j "$(nproc)" >> "$log" 2>&1 &&
      cmake --install "$build/gtest" >> "$log" 2>&1
    args+=(-DCMAKE_PREFIX_PATH="$build/gtest-install")
  fi
  if ! { cmake "${args[@]}" >> "$log" 2>&1 &&
         cmake --build "$build" -j "$(nproc)" --target "$@" >> "$log" 2>&1; }; then
    grep -E "error|Error" -A5 "$log" | head -60
    return 1
  fi
  grep "NCCL:" "$log" | tail -1
  echo "built in $SECONDS s"
}

# mtc_row PLAN GPUS NAME [VAR=value...]: one mtrun job of MT_ROW_STEPS steps
# (default 10) on the CUDA backend over $row_data (default $dir/tokens.bin)
# with the plan $dir/plans/PLAN (MT_RUN_TIMEOUT seconds at most, default
# 150); appends its row to $rows: tokens/s per GPU (the median after
# MT_ROW_WARMUP warm-up steps, default 4), the device
# memory mtrun's log reports in use at the end (arenas are allocated once, so
# it is the peak) and the last loss.
mtc_row() {
  local plan=$1 gpus=$2 name=$3
  shift 3
  env "$@" timeout "${MT_RUN_TIMEOUT:-150}" "$build/bin/mtrun" "$dir/plans/$plan" --nproc "$gpus" \
    --backend cuda --data "${row_data:-$dir/tokens.bin}" --steps "${MT_ROW_STEPS:-10}" \
    --metrics "$work/$name.jsonl" \
    > "$work/$name.log" 2>&1 ||
    { echo "mtrun $name failed:"; tail -5 "$work/$name.log"; return; }
  python3 - "$work/$name.jsonl" "$gpus" "$work/$name.log" "$name" "${MT_ROW_WARMUP:-4}" >> "$rows" <<'PY'
import json, re, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
rates = sorted(s["tokens_per_s"] for s in steps[int(sys.argv[5]):])
gpus = int(sys.argv[2])
mem = re.search(r"device in use ([0-9.]+) GiB", open(sys.argv[3]).read())
print(json.dumps(dict(peer=sys.argv[4], gpus=gpus, tokens_per_s=rates[len(rates) // 2] / gpus,
                      peak_mem_gib=float(mem.group(1)) if mem else None, loss=steps[-1]["loss"])))
PY
}

# gpu_profile_comm PLAN GPUS LOG [VAR=value...]: 6 steps under --profile-comm
# (CUDA events on the streams, graphs replaying), the whole output kept in
# LOG; prints the table, "exposed communication per step" and, for
# pipelines, the measured bubble beside the schedule's prediction. Where the
# run fails, it says so and tries again without graphs (MT_CUDA_GRAPHS=0).
gpu_profile_comm() {
  local plan=$1 gpus=$2 profileLog=$3
  shift 3
  local attempt
  for attempt in "" MT_CUDA_GRAPHS=0; do
    if env "$@" $attempt timeout "${MT_RUN_TIMEOUT:-100}" "$build/bin/mtrun" "$dir/plans/$plan" \
         --nproc "$gpus" --backend cuda --data "$dir/tokens.bin" --steps 6 --profile-comm \
         > "$profileLog" 2>&1; then
      [[ -n "$attempt" ]] && echo "(measured with $attempt)"
      sed -n '/^communication profile/,/^exposed communication per step/p' "$profileLog"
      grep '^pipeline bubble' "$profileLog"
      return 0
    fi
    echo "--profile-comm ${attempt:+with $attempt }failed:"
    tail -5 "$profileLog"
  done
}

# gpu_profile PLAN GPUS LOG [VAR=value...]: 3 steps under --profile (CUDA
# events per instruction class on rank 0; profiling never replays graphs),
# the whole output kept in LOG, the profile table printed.
gpu_profile() {
  local plan=$1 gpus=$2 profileLog=$3
  shift 3
  env "$@" timeout "${MT_RUN_TIMEOUT:-100}" "$build/bin/mtrun" "$dir/plans/$plan" --nproc "$gpus" \
    --backend cuda --data "$dir/tokens.bin" --steps 3 --profile > "$profileLog" 2>&1
  sed -n '/^profile/,/wall (programs)/p' "$profileLog"
}

# clocks_start: samples GPU 0's SM clock and power every 100 ms in the
# background (nvidia-smi) until clocks_stop. clocks_stop NAME FILE appends to
# FILE one line for NAME: the median SM clock and power over the busy
# samples (power above half the limit) and how many of them the power cap
# throttled (the step runs at the 700 W cap on an H200, its clock then
# below boost: ratios between calls move with it). Silent, and never
# failing, where nvidia-smi is missing.
clocks_start() {
  clocks_samples=$(mktemp) clocks_pid=
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi -i 0 --query-gpu=clocks.sm,power.draw,power.limit,clocks_throttle_reasons.active \
      --format=csv,noheader,nounits -lms 100 > "$clocks_samples" 2> /dev/null &
    clocks_pid=$!
  fi
}
clocks_stop() {
  if [[ -n "${clocks_pid:-}" ]]; then
    kill "$clocks_pid" 2> /dev/null || true
    wait "$clocks_pid" 2> /dev/null || true
    python3 - "$clocks_samples" "$1" >> "$2" <<'PY' || true
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    f = [x.strip() for x in line.split(",")]
    try:
        rows.append((float(f[0]), float(f[1]), float(f[2]), int(f[3], 16)))
    except (ValueError, IndexError):
        pass  # a header or a field the driver does not report
busy = [r for r in rows if r[1] > r[2] / 2]
if busy:
    capped = sum(1 for r in busy if r[3] & 0x4)  # SW power cap
    print(f"{sys.argv[2]}: SM {statistics.median(r[0] for r in busy):.0f} MHz, "
          f"{statistics.median(r[1] for r in busy):.0f} W (limit {busy[0][2]:.0f} W), "
          f"power-capped in {capped} of {len(busy)} busy samples")
else:
    print(f"{sys.argv[2]}: no sample above half the power limit ({len(rows)} samples)")
PY
  fi
  rm -f "$clocks_samples"
}
