#!/usr/bin/env bash
# Two GPUs, in one device call on nvidia-h200-x2: builds
# mtrun and the gpu2 tests (runtime-only CUDA build), runs the gpu2 tests
# (the NCCL communicator; demo dp2, pp2 and pp2 x vpp2, tied-embedding
# tiny-llama pp2, tiny-llama cp2 (p2p and all_gather) and tiny-qwen3 cp2 (a2a),
# tiny-qwen3 cp2 on packed documents (p2p, all_gather and a2a),
# and the tiny Qwen3-MoE and Mixtral ep2 (alltoall and allgather dispatchers)
# and etp2 vs one GPU, 20
# steps) and the one-GPU demo training test
# (gpu1, a regression check), then measures our
# llama3.2-1b step (micro-batch 4 x 2048) on one GPU, dp2, tp2+sp and pp2
# (8 micro-batches), beside PyTorch DDP (torchrun --nproc_per_node 2, eager
# and compile), prints tokens/s per GPU and each layout's efficiency against
# our one-GPU figure (dp2 also with grad_reduce_in_fp32 = false), and
# profiles each layout on rank 0 with mtrun --profile-comm: the exposed
# communication per step and, for pp2, the measured bubble beside the
# schedule's prediction.
#
#   bench/gpu-dp.sh --prepare DIR   development machine: compiles the plans
#                                   (no MLIR on the GPU machine), writes the
#                                   tokens, copies the peer script and, for
#                                   machines without it, GoogleTest's source
#                                   (MT_SHARED_DIR: the shared folder, default ../shared)
#   bench/gpu-dp.sh DIR             GPU machine (DIR carried)
# MT_DP_BUILD=0 / MT_DP_TESTS=0 / MT_DP_BENCH=0 / MT_DP_PEERS=0 skip a stage;
# MT_DP_TESTS_REGEX runs only the gpu2 tests it matches (ctest -R, e.g.
# ExpertParallel); MT_DP_BUDGET (s, default 570) skips the later stages that
# would not fit.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin
  rm -rf "$dir" && mkdir -p "$dir/plans" "$dir/mlir" "$dir/peer"
  "$bin/mt-tokenize" models/data/demo-corpus.txt -o "$dir/corpus.bin" > /dev/null
  # The test plans compare runs bit for bit (overlapped or not, graphs or
  # not, resumed or not): every kernel deterministic (deterministic_mode).
  det=--deterministic-mode
  # The demo plans as tools/gpu-check.sh compiles them: one GPU (2 micro-
  # batches of 4) and dp2 (1 of 4 per rank): the same global batch of 8.
  "$bin/mtc" import-hf models/hf/demo-tiny.json --seq 128 --micro-batch 4 -o "$dir/mlir/demo.mlir"
  for layout in "demo:" "demo-dp2:--dp 2" "demo-tp2:--tp 2" "demo-tp2-sp:--tp 2 --sp" \
                "demo-tp2-sp-ln:--tp 2 --sp --recompute-granularity selective --recompute-modules layernorm" \
                "demo-pp2:--pp 2" "demo-dp2-do:--dp 2 --use-distributed-optimizer" \
                "demo-dp2-bf16:--dp 2 --grad-reduce-in-bf16" \
                "demo-dp2-pt:--dp 2 --calculate-per-token-loss" \
                "demo-dp2-do-bf16:--dp 2 --use-distributed-optimizer --grad-reduce-in-bf16" \
                "demo-dp2-do-opg:--dp 2 --use-distributed-optimizer --overlap-param-gather"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/demo.mlir" ${layout#*:} --global-batch 8 --lr 2e-3 \
      --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  # Pipelines (test/runtime/cuda/PipelineParallelTest.cpp): 4 micro-batches
  # of 2 per step on one GPU, pp2 (1F1B) and pp2 x vpp2 (interleaved); and
  # tiny-llama-hd64 (tied embeddings) on one GPU and pp2. And dp2 with two
  # micro-batches per rank (DataParallelTest: the sparse embedding gradient
  # after a dense one).
  "$bin/mtc" import-hf models/hf/demo-tiny.json --seq 128 --micro-batch 2 \
    -o "$dir/mlir/demo-mb2.mlir"
  for layout in "demo-mb2:" "demo-mb2-pp2:--pp 2" "demo-mb2-pp2-vpp2:--pp 2 --vpp 2" \
                "demo-mb2-dp2:--dp 2"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/demo-mb2.mlir" ${layout#*:} --global-batch 8 --lr 2e-3 \
      --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  "$bin/mtc" import-hf test/runtime/cuda/configs/tiny-llama-hd64.json --seq 64 \
    --micro-batch 2 -o "$dir/mlir/tiny-llama.mlir"
  for layout in "tiny-llama:" "tiny-llama-pp2:--pp 2"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/tiny-llama.mlir" ${layout#*:} --global-batch 8 --lr 1e-3 \
      --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  # Context parallelism (test/runtime/cuda/ContextParallelTest.cpp): tiny-
  # llama-hd64 at 132 tokens (chunks of 33: tiles straddle them) on one GPU,
  # and cp2 with ring attention (p2p) and with gathered keys (all_gather);
  # the tiny Qwen3 (4 query and 2 kv heads: a2a needs both divisible by cp)
  # at 132 tokens on one GPU and cp2 with heads exchanged all-to-all (a2a).
  "$bin/mtc" import-hf test/runtime/cuda/configs/tiny-llama-hd64.json --seq 132 \
    --micro-batch 2 -o "$dir/mlir/tiny-llama-s132.mlir"
  for layout in "tiny-llama-s132:" "tiny-llama-s132-cp2-p2p:--cp 2 --cp-comm-type p2p" \
                "tiny-llama-s132-cp2-all-gather:--cp 2 --cp-comm-type all_gather"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/tiny-llama-s132.mlir" ${layout#*:} --global-batch 4 \
      --lr 1e-3 --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  "$bin/mtc" import-hf test/runtime/cuda/configs/tiny-qwen3-hd64.json --seq 132 --micro-batch 2 \
    -o "$dir/mlir/tiny-qwen3-s132.mlir"
  for layout in "tiny-qwen3-s132:" "tiny-qwen3-s132-cp2-a2a:--cp 2 --cp-comm-type a2a"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/tiny-qwen3-s132.mlir" ${layout#*:} --global-batch 4 \
      --lr 1e-3 --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  # Packed documents under cp (ContextParallelTest's Cp2PackedDocuments): the
  # SFT demos packed into rows of 132 tokens with position ids (neat_packing;
  # the byte-level stand-in tokenizer, vocab 320, as tools/gpu-check.sh), and
  # the tiny Qwen3 that takes them on one GPU and cp2 with each cp_comm_type.
  "$bin/mt-prepare-sft" --dataset-dir models/data --dataset demo_alpaca,demo_sharegpt \
    --template qwen3_nothink --cutoff-len 132 --neat-packing -o "$dir/neat-s132.sft" > /dev/null
  "$bin/mtc" import-hf test/runtime/cuda/Inputs/tiny-qwen3-hd64-vocab320.json --seq 132 \
    --micro-batch 2 --neat-packing -o "$dir/mlir/tiny-qwen3-s132-neat.mlir"
  for layout in "tiny-qwen3-s132-neat:" "tiny-qwen3-s132-neat-cp2-p2p:--cp 2 --cp-comm-type p2p" \
                "tiny-qwen3-s132-neat-cp2-all-gather:--cp 2 --cp-comm-type all_gather" \
                "tiny-qwen3-s132-neat-cp2-a2a:--cp 2 --cp-comm-type a2a"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/tiny-qwen3-s132-neat.mlir" ${layout#*:} --global-batch 4 \
      --lr 1e-3 --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  # A tiny Qwen3 as tools/gpu-check.sh compiles it, on one GPU, tp2 (+sp) and dp2
  # (tied embeddings: DataParallelTest's sparse embedding gradient).
  "$bin/mtc" import-hf test/runtime/cuda/configs/tiny-qwen3-hd64.json --seq 64 --micro-batch 2 \
    -o "$dir/mlir/tiny-qwen3-hd64.mlir"
  for layout in "tiny-qwen3-hd64:" "tiny-qwen3-hd64-tp2:--tp 2" "tiny-qwen3-hd64-tp2-sp:--tp 2 --sp" \
                "tiny-qwen3-hd64-dp2:--dp 2"; do
    # shellcheck disable=SC2086
    "$bin/mtc" compile "$dir/mlir/tiny-qwen3-hd64.mlir" ${layout#*:} --global-batch 4 --lr 1e-3 \
      --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/${layout%%:*}"
  done
  # Expert parallelism (test/runtime/cuda/ExpertParallelTest.cpp): the tiny
  # Qwen3-MoE and Mixtral on one GPU (2 micro-batches of 2 per step) and ep2
  # (dp 2 for the dense layers, 1 micro-batch per rank), also with the
  # distributed optimizer, with the allgather dispatcher, and etp2 (each
  # expert's ffn columns split over the 2 GPUs, dp 2); lr as
  # tools/gpu-check.sh (the tiny Qwen3-MoE's gradient norm spikes at 1e-3).
  for entry in tiny-moe-hd64:3e-4 tiny-mixtral-hd64:1e-3; do
    IFS=: read -r model lr <<< "$entry"
    "$bin/mtc" import-hf "test/runtime/cuda/configs/$model.json" --seq 64 --micro-batch 2 \
      -o "$dir/mlir/$model.mlir"
    for layout in ":" "-ep2:--ep 2" "-ep2-do:--ep 2 --use-distributed-optimizer" \
                  "-ep2-ag:--ep 2 --moe-token-dispatcher-type allgather" "-etp2:--etp 2"; do
      # shellcheck disable=SC2086
      "$bin/mtc" compile "$dir/mlir/$model.mlir" ${layout#*:} --global-batch 4 --lr "$lr" \
        --warmup-steps 5 --train-steps 20 "$det" -o "$dir/plans/$model${layout%%:*}"
    done
  done
  "$bin/mtc" import-hf models/hf/llama3.2-1b.json --seq 2048 --micro-batch 4 -o "$dir/mlir/llama.mlir"
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --global-batch 4 --lr 1e-4 --train-steps 100 \
    -o "$dir/plans/llama-1gpu"
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --dp 2 --global-batch 8 --lr 1e-4 \
    --train-steps 100 -o "$dir/plans/llama-dp2"
  # Megatron's grad_reduce_in_fp32 = false: the dp reduction in bf16.
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --dp 2 --global-batch 8 --lr 1e-4 \
    --grad-reduce-in-bf16 --train-steps 100 -o "$dir/plans/llama-dp2-bf16"
  # tp2 with sequence parallelism: one micro-batch of 4 x 2048 over both
  # GPUs; pp2 (1F1B): 8 micro-batches of 4 per step, a bubble of 1/9 by the
  # schedule ((pp - 1) / (m + pp - 1)).
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --tp 2 --sp --global-batch 4 --lr 1e-4 \
    --train-steps 100 -o "$dir/plans/llama-tp2-sp"
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --pp 2 --global-batch 32 --lr 1e-4 \
    --train-steps 100 -o "$dir/plans/llama-pp2"
  # pp2 with 10 + 6 layers: the last stage also runs the output layer and the
  # loss (128256 x 2048, about 4 layers' FLOPs), which the even split leaves
  # the first stage waiting for (Megatron balances the same way with
  # decoder_last_pipeline_num_layers).
  "$bin/mtc" compile "$dir/mlir/llama.mlir" --pp 2 --pp-layout 10,6 --global-batch 32 \
    --lr 1e-4 --train-steps 100 -o "$dir/plans/llama-pp2-10-6"
  rm -rf "$dir/mlir"
  # Uniform random ids below llama's vocabulary, as the peer draws its
  # batch; header as runtime/io/TokenFile.h.
  python3 tools/random-tokens.py "$dir/tokens.bin" 128256 $((1 << 20))
  cp "${MT_SHARED_DIR:-../shared}/bench/torch_llama.py" "$dir/peer/"
  cp -r /usr/src/googletest "$dir/googletest"
  du -sh "$dir"
  exit 0
fi

dir=$(cd "$1" && pwd)
gpu_start /tmp/mt-dp-build "${MT_DP_BUDGET:-570}" # seconds: later stages are skipped past it
echo "NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE-unset}"
if [[ "${MT_DP_BUILD:-1}" == 1 ]]; then
  # --- build: mtrun and the tests, GoogleTest from the carried source if none.
  gpu_build mtrun MtCudaGpu2Tests MtCudaTrainingTests || exit 1
fi

# --- tests: gpu2, then the one-GPU demo training (gpu1) as a regression check.
export MT_GPU_DATA=$dir
gpu2=0 gpu1=0
if [[ "${MT_DP_TESTS:-1}" == 1 ]]; then
  # The gpu2 tests run one at a time (they share the two GPUs: RESOURCE_LOCK
  # two_gpus) and all of them take longer than one call: the stage gets
  # what the budget leaves after 200 s for the measurements, and says so
  # when that cut it short.
  tests_s=$(( budget - SECONDS - 200 > 60 ? budget - SECONDS - 200 : 60 ))
  timeout "$tests_s" ctest --test-dir "$build" -L gpu2 ${MT_DP_TESTS_REGEX:+-R "$MT_DP_TESTS_REGEX"} \
    --timeout 280 --output-on-failure -V > "$out/gpu2.log" 2>&1
  gpu2=$?
  (( gpu2 == 124 )) && echo "gpu2 tests stopped after $tests_s s (the budget): narrow them" \
    "with MT_DP_TESTS_REGEX, or MT_DP_TESTS=0 to measure only"
  grep -E "^[0-9]+: \[ +(OK|FAILED|SKIPPED) +\]|worst relative|tests passed|Failure|Expected|Which is|actual|error:" \
    "$out/gpu2.log" | head -40
fi

# --- measurement: tokens/s per GPU, median after 4 warm-up steps (mtc_row).
if [[ "${MT_DP_BENCH:-1}" == 1 ]]; then
  # Runs: MT_DP_RUNS="name:plan:gpus:VAR=value,VAR=value;..." (e.g.
  # NCCL_MAX_CTAS=8 or MT_CUDA_BUCKET_ELEMENTS=10000000 as variants).
  runs="mtc:llama-1gpu:1:;mtc-dp2:llama-dp2:2:;mtc-dp2-bf16:llama-dp2-bf16:2:"
  runs+=";mtc-tp2-sp:llama-tp2-sp:2:;mtc-pp2:llama-pp2:2:;mtc-pp2-10-6:llama-pp2-10-6:2:"
  IFS=';' read -ra runs <<< "${MT_DP_RUNS:-$runs}"
  for run in "${runs[@]}"; do
    IFS=: read -r name plan gpus vars <<< "$run"
    IFS=, read -ra vars <<< "$vars"
    fits 70 "$name" && mtc_row "$plan" "$gpus" "$name" "${vars[@]}"
  done
  # The communication compute did not hide, on rank 0 (mtrun --profile-comm:
  # CUDA events on the streams, graphs replaying as in the rows above):
  # MT_DP_PROFILES="plan:gpus:VAR=value,...;..." (empty: none). With
  # MT_DP_PROFILE_FLAG=--profile, where each instruction class's time goes
  # instead (no graphs).
  IFS=';' read -ra profiles <<< \
    "${MT_DP_PROFILES-llama-dp2:2:;llama-dp2-bf16:2:;llama-tp2-sp:2:;llama-pp2:2:;llama-pp2-10-6:2:}"
  for profile in "${profiles[@]}"; do
    IFS=: read -r plan gpus vars <<< "$profile"
    IFS=, read -ra vars <<< "$vars"
    fits 60 "profile $profile" || continue
    echo "== profile: $profile"
    if [[ "${MT_DP_PROFILE_FLAG:---profile-comm}" == --profile ]]; then
      gpu_profile "$plan" "$gpus" "$work/profile-$plan.log" "${vars[@]}"
    else
      gpu_profile_comm "$plan" "$gpus" "$work/profile-comm-$plan.log" "${vars[@]}"
    fi
  done
fi
if [[ "${MT_DP_TESTS:-1}" == 1 ]] && fits 60 "gpu1 demo regression"; then
  timeout 100 "$build/bin/MtCudaTrainingTests" \
    --gtest_filter='Models/TrainingStepTest.LossesAndGradientNormsMatchTheCpuBackend/demo:CudaBackendTest.ResumeContinuesTheSameRun' \
    > "$out/gpu1.log" 2>&1
  gpu1=$?
  # A filter that names no test passes with none run: both must have run.
  grep -q "PASSED.* 2 tests" "$out/gpu1.log" || { echo "gpu1 regression: not both tests ran"; gpu1=1; }
  grep -E "^\[ +(OK|FAILED|PASSED) +\]|cuda loss" "$out/gpu1.log" | head -10
fi
if [[ "${MT_DP_PEERS:-1}" == 1 ]]; then
  for mode in eager compile; do
    fits 150 "PyTorch DDP $mode" || continue
    timeout 170 torchrun --standalone --nproc_per_node 2 "$dir/peer/torch_llama.py" \
      "llama3.2-1b:4:2048:$mode" 2> "$work/peer-$mode.err" | grep '^{' >> "$rows" ||
      { echo "peer $mode failed:"; tail -3 "$work/peer-$mode.err"; }
  done
fi
python3 - "$rows" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
one = next((r["tokens_per_s"] for r in rows if r.get("peer") == "mtc"), None)
dp2 = next((r["tokens_per_s"] for r in rows if r.get("peer") == "mtc-dp2"), None)
print(f"{'llama3.2-1b, 4 x 2048 per GPU':30} {'GPUs':>4} {'tokens/s/GPU':>12} {'job tokens/s':>12} "
      f"{'/ our 1 GPU':>11} {'mtc dp2 / this':>14} {'GPU GiB':>8}")
for r in rows:
    if "tokens_per_s" not in r:
        print(f"{r.get('peer', r.get('mode', '?')):30} error: {str(r.get('error', ''))[:80]}")
        continue
    g, t = r.get("gpus", 1), r["tokens_per_s"]
    eff = f"{t / one:.1%}" if one and r["peer"].startswith("mtc") else ""
    ratio = f"{dp2 / t:.3f}x" if dp2 and g == 2 and r["peer"] != "mtc-dp2" else ""
    print(f"{r['peer']:30} {g:>4} {t:>12,.0f} {t * g:>12,.0f} {eff:>11} {ratio:>14} "
          f"{str(r.get('peak_mem_gib', '-')):>8}")
PY
# Rank 0's exposed communication per step (and pp's bubble), by plan.
for profileLog in "$work"/profile-comm-*.log; do
  [[ -f "$profileLog" ]] || continue
  plan=$(basename "$profileLog" .log)
  grep -E '^(exposed communication per step|pipeline bubble)' "$profileLog" |
    sed "s/^/${plan#profile-comm-}: /"
done
echo "gpu2 tests exit $gpu2, gpu1 demo tests exit $gpu1; $SECONDS s"
(( gpu2 == 0 && gpu1 == 0 ))
