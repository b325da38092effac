#!/usr/bin/env node
// Reference ids from Hugging Face `tokenizers` (@anush008/tokenizers, its
// Rust core as a Node addon) for the tokenizer test corpus, written as JSON:
//   lines:       ids of each line (split on "\n" only), no special tokens
//   whole:       ids of the whole corpus text as one string
//   withSpecial: ids of the first 200 lines with add_special_tokens
//   decoded:     decode(lines[i]) for every line, and
//   decodedSkip: decode(lines[i], skip_special_tokens) for every line.
// Usage: node reference-ids.js NPM_DIR TOKENIZER_JSON CORPUS OUT.json
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [npmDir, tokenizerJson, corpus, out] = process.argv.slice(2);
  if (!out) {
    console.error('usage: node reference-ids.js NPM_DIR TOKENIZER_JSON CORPUS OUT.json');
    process.exit(2);
  }
  const {Tokenizer} = require(path.resolve(npmDir, 'node_modules/@anush008/tokenizers'));
  const tok = Tokenizer.fromFile(tokenizerJson);
  const text = fs.readFileSync(corpus, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const noSpecial = {addSpecialTokens: false};
  const encoded = await tok.encodeBatch(lines, noSpecial);
  const result = {lines: encoded.map((e) => Array.from(e.getIds()))};
  result.whole = Array.from((await tok.encode(text, null, noSpecial)).getIds());
  const firsts = await tok.encodeBatch(lines.slice(0, 200), {addSpecialTokens: true});
  result.withSpecial = firsts.map((e) => Array.from(e.getIds()));
  result.decoded = await tok.decodeBatch(result.lines, false);
  result.decodedSkip = await tok.decodeBatch(result.lines, true);
  fs.writeFileSync(out, JSON.stringify(result));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
