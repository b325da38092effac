#!/usr/bin/env node
// Times Hugging Face `tokenizers` (@anush008/tokenizers) encoding a text
// file without special tokens, MODE "whole" (one string) or "lines" (each
// line, one batch); prints JSON {"tokens": N, "cpu_s": the best run's
// process CPU seconds (all threads), "wall_s": its wall time}.
// Usage: node tokenizer-reference.js NPM_DIR TOKENIZER_JSON TEXT MODE [REPEATS]
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [npmDir, tokenizerJson, textFile, mode, repeats = '3'] = process.argv.slice(2);
  const {Tokenizer} = require(path.resolve(npmDir, 'node_modules/@anush008/tokenizers'));
  const tok = Tokenizer.fromFile(tokenizerJson);
  const text = fs.readFileSync(textFile, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const options = {addSpecialTokens: false};
  const encode = async () => {
    if (mode === 'whole') return (await tok.encode(text, null, options)).getIds().length;
    let n = 0;
    for (const e of await tok.encodeBatch(lines, options)) n += e.getIds().length;
    return n;
  };
  await tok.encode('warm up', null, {addSpecialTokens: false});
  let best = null;
  for (let r = 0; r < Number(repeats); ++r) {
    const cpu = process.cpuUsage();
    const wall = process.hrtime.bigint();
    const tokens = await encode();
    const used = process.cpuUsage(cpu);
    const run = {tokens, cpu_s: (used.user + used.system) / 1e6,
                 wall_s: Number(process.hrtime.bigint() - wall) / 1e9};
    if (!best || run.cpu_s < best.cpu_s) best = run;
  }
  console.log(JSON.stringify(best));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
