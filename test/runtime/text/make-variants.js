#!/usr/bin/env node
// Writes variants of Qwen3's tokenizer.json that take the paths the real
// files do not, so that the reference test checks them against Hugging Face
// `tokenizers` too:
//   OUT_DIR/qwen3-flags/tokenizer.json  added tokens with every matching
//       option (lstrip, rstrip, single_word, normalized, special) and a
//       TemplateProcessing post-processor;
//   OUT_DIR/qwen3-gpt2/tokenizer.json   GPT-2's pre-tokenizer: ByteLevel
//       alone, with add_prefix_space and its own regex (use_regex).
// Usage: node make-variants.js QWEN3_TOKENIZER_JSON OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const [source, outDir] = process.argv.slice(2);
const original = fs.readFileSync(source, 'utf8');
const write = (name, tokenizer) => {
  fs.mkdirSync(path.join(outDir, name), {recursive: true});
  fs.writeFileSync(path.join(outDir, name, 'tokenizer.json'), JSON.stringify(tokenizer));
};

const gpt2 = JSON.parse(original);
gpt2.pre_tokenizer = {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true};
write('qwen3-gpt2', gpt2);

const tok = JSON.parse(original);
// Ids as tokenizers assigns them: the vocabulary's id for a token the model
// has ("word"), else the next new one.
let next = 1 + Math.max(...tok.added_tokens.map((t) => t.id));
const add = (content, flags) => {
  const id = content in tok.model.vocab ? tok.model.vocab[content] : next++;
  tok.added_tokens.push(Object.assign({id, content, single_word: false, lstrip: false,
                                       rstrip: false, normalized: false, special: false}, flags));
};
add('<mask>', {lstrip: true, special: true});
add('[SEP]', {rstrip: true, special: true});
add('<both>', {lstrip: true, rstrip: true});
add('word', {single_word: true});
add('café', {normalized: true}); // text with "cafe\u0301" matches after NFC
add('fox jumps', {normalized: true, single_word: true});
tok.post_processor = {
  type: 'Sequence',
  processors: [
    {type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false},
    {type: 'TemplateProcessing',
     single: [{SpecialToken: {id: '<|im_start|>', type_id: 0}}, {Sequence: {id: 'A', type_id: 0}},
              {SpecialToken: {id: '<|im_end|>', type_id: 0}}],
     pair: [{Sequence: {id: 'A', type_id: 0}}, {Sequence: {id: 'B', type_id: 1}}],
     special_tokens: {
       '<|im_start|>': {id: '<|im_start|>', ids: [151644], tokens: ['<|im_start|>']},
       '<|im_end|>': {id: '<|im_end|>', ids: [151645], tokens: ['<|im_end|>']},
     }},
  ],
};
write('qwen3-flags', tok);
