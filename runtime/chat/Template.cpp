// The registered templates and the encode_multiturn rendering of
// LLaMA-Factory (src/llamafactory/data/template.py), written for mtc.
#include "runtime/chat/Template.h"

#include "runtime/support/Wording.h"

#include <algorithm>
#include <map>

namespace mt::chat {
namespace {

Slot text(std::string s) { return {Slot::Kind::Text, std::move(s)}; }
Slot bos() { return {Slot::Kind::Bos, ""}; }
Slot eos() { return {Slot::Kind::Eos, ""}; }

const std::string kChatUser = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const std::string kChatSystem = "<|im_start|>system\n{{content}}<|im_end|>\n";
const std::string kChatObservation =
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n";

/// register_template's defaults: user and system "{{content}}", assistant
/// "{{content}}" + EOS (no EOS under efficient_eos), observation as user.
Template withDefaults(Template t) {
  if (t.formatUser.empty())
    t.formatUser = {text("{{content}}")};
  if (t.formatSystem.empty())
    t.formatSystem = {text("{{content}}")};
  if (t.formatAssistant.empty()) {
    t.formatAssistant = {text("{{content}}")};
    if (!t.efficientEos)
      t.formatAssistant.push_back(eos());
  }
  if (t.formatObservation.empty())
    t.formatObservation = t.formatUser;
  return t;
}

Template chatml(std::string name, TemplateClass cls, std::string defaultSystem) {
  Template t;
  t.name = std::move(name);
  t.formatUser = {text(kChatUser)};
  t.formatAssistant = {text("{{content}}<|im_end|>\n")};
  t.formatSystem = {text(kChatSystem)};
  t.formatObservation = {text(kChatObservation)};
  t.defaultSystem = std::move(defaultSystem);
  t.stopWords = {"<|im_end|>"};
  t.replaceEos = true;
  t.templateClass = cls;
  return t;
}

std::map<std::string, Template> buildRegistry() {
  std::vector<Template> all;
  Template d;
  d.name = "default";
  d.formatUser = {text("Human: {{content}}"), eos(), text("\nAssistant:")};
  d.formatAssistant = {text("{{content}}"), eos(), text("\n")};
  d.formatSystem = {text("System: {{content}}"), eos(), text("\n")};
  all.push_back(d);
  Template e;
  e.name = "empty";
  e.formatAssistant = {text("{{content}}")};
  all.push_back(e);
  Template l;
  l.name = "llama3";
  l.formatUser = {text("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n")};
  l.formatAssistant = {text("{{content}}<|eot_id|>")};
  l.formatSystem = {text("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>")};
  l.formatObservation = {text("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\n")};
  l.formatPrefix = {bos()};
  l.stopWords = {"<|eot_id|>", "<|eom_id|>"};
  l.replaceEos = true;
  all.push_back(l);
  Template m;
  m.name = "mistral";
  m.formatUser = {text("[INST] {{content}}[/INST]")};
  m.formatAssistant = {text(" {{content}}"), eos()};
  m.formatSystem = {text("{{content}}\n\n")};
  m.formatObservation = {text("[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]")};
  m.formatPrefix = {bos()};
  m.templateClass = TemplateClass::Llama2;
  all.push_back(m);
  all.push_back(chatml("qwen", TemplateClass::Plain,
                       "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."));
  all.push_back(chatml("qwen3", TemplateClass::Reasoning, ""));
  all.push_back(chatml("qwen3_nothink", TemplateClass::Plain, ""));
  std::map<std::string, Template> registry;
  for (Template &t : all) {
    std::string name = t.name; // withDefaults takes t by value
    registry.emplace(std::move(name), withDefaults(std::move(t)));
  }
  return registry;
}

const std::map<std::string, Template> &registry() {
  static const std::map<std::string, Template> r = buildRegistry();
  return r;
}

/// Formatter.apply: each slot with "{{content}}" replaced (every occurrence,
/// as str.replace does).
std::vector<Piece> apply(const Slots &slots, const SpecialTokens &special,
                         const std::string &content) {
  std::vector<Piece> out;
  for (const Slot &s : slots) {
    if (s.kind == Slot::Kind::Bos) {
      if (!special.bos.empty())
        out.push_back({special.bos, true});
      continue;
    }
    if (s.kind == Slot::Kind::Eos) {
      out.push_back({special.eos, true});
      continue;
    }
    std::string t = s.text;
    const std::string key = "{{content}}";
    for (size_t at = t.find(key); at != std::string::npos; at = t.find(key, at + content.size())) {
      t.replace(at, key.size(), content);
    }
    if (!t.empty()) // _convert_elements_to_ids skips empty strings
      out.push_back({std::move(t), false});
  }
  return out;
}

void append(std::vector<Piece> &to, std::vector<Piece> more) {
  to.insert(to.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
}

bool hasThought(const Template &t, const std::string &content) {
  auto strip = [](std::string s) {
    const char *ws = " \t\n\r\f\v";
    s.erase(0, s.find_first_not_of(ws));
    s.erase(s.find_last_not_of(ws) + 1);
    return s;
  };
  return content.find(strip(t.thoughtOpen)) != std::string::npos ||
         content.find(strip(t.thoughtClose)) != std::string::npos;
}

} // namespace

std::vector<std::string> templateNames() {
  std::vector<std::string> names;
  for (const auto &[name, t] : registry())
    names.push_back(name);
  return names;
}

Expected<const Template *> findTemplate(const std::string &name) {
  auto it = registry().find(name);
  if (it != registry().end())
    return &it->second;
  std::vector<std::string> names = templateNames();
  std::string message = "unknown template '" + name + "'";
  if (std::string close = closestName(name, names); !close.empty())
    message += " (did you mean '" + close + "'?)";
  std::string list;
  for (const std::string &n : names)
    list += (list.empty() ? "" : ", ") + n;
  return Status::error(message + "; known templates: " + list);
}

const char *roleName(Role role) {
  switch (role) {
  case Role::User: return "user";
  case Role::Assistant: return "assistant";
  case Role::Observation: return "observation";
  case Role::Function: return "function";
  }
  return "?";
}

SpecialTokens specialTokens(const Template &t, const std::string &tokenizerBos,
                            const std::string &tokenizerEos, const std::string &tokenizerPad) {
  SpecialTokens s;
  s.bos = tokenizerBos;
  s.eos = t.replaceEos && !t.stopWords.empty() ? t.stopWords[0] : tokenizerEos;
  if (s.eos.empty())
    s.eos = "<|endoftext|>";
  s.pad = tokenizerPad.empty() ? s.eos : tokenizerPad;
  return s;
}

std::string removeThought(const Template &t, const std::string &content) {
  std::string out;
  size_t at = 0;
  for (;;) {
    size_t open = content.find(t.thoughtOpen, at);
    size_t close = open == std::string::npos
                       ? std::string::npos
                       : content.find(t.thoughtClose, open + t.thoughtOpen.size());
    if (close == std::string::npos) {
      out += content.substr(at);
      break;
    }
    out += content.substr(at, open - at);
    at = close + t.thoughtClose.size();
  }
  out.erase(0, out.find_first_not_of('\n'));
  return out;
}

Expected<std::vector<std::pair<std::vector<Piece>, std::vector<Piece>>>>
renderTurns(const Template &t, const SpecialTokens &special, const std::vector<Message> &input,
            const std::string &systemArg, const TemplateOptions &options) {
  if (input.empty() || input.size() % 2 != 0)
    return Status::error("template " + t.name + ": a conversation needs prompt/response pairs, got " +
                         countOf(int64_t(input.size()), "message"));
  std::vector<Message> messages = input;
  for (size_t i = 0; i < messages.size(); ++i) {
    Role r = messages[i].role;
    bool prompt = r == Role::User || r == Role::Observation;
    if (r == Role::Function)
      return Status::error("template " + t.name + ": message " + std::to_string(i) +
                           " is a function call; tool calls are not supported yet");
    if (prompt != (i % 2 == 0))
      return Status::error("template " + t.name + ": message " + std::to_string(i) + " is " +
                           roleName(r) + ", expected " +
                           (i % 2 == 0 ? "user or observation" : "assistant"));
  }
  bool reasoning = t.templateClass == TemplateClass::Reasoning;
  if (reasoning)
    for (size_t i = 1; i < messages.size(); i += 2)
      if (!options.enableThinking || (options.discardHistoryThought && i + 2 < messages.size()))
        messages[i].content = removeThought(t, messages[i].content);
  const std::string &system = systemArg.empty() ? t.defaultSystem : systemArg;
  std::vector<std::vector<Piece>> encoded;
  for (size_t i = 0; i < messages.size(); ++i) {
    std::vector<Piece> pieces;
    std::string content = messages[i].content;
    if (i == 0) {
      append(pieces, apply(t.formatPrefix, special, ""));
      if (!system.empty()) {
        std::vector<Piece> sys = apply(t.formatSystem, special, system);
        if (t.templateClass == TemplateClass::Llama2) // fused into the first user message
          content = (sys.empty() ? "" : sys[0].text) + content;
        else
          append(pieces, std::move(sys));
      }
    }
    Role r = messages[i].role;
    const Slots &slots = r == Role::User        ? t.formatUser
                         : r == Role::Assistant ? t.formatAssistant
                                                : t.formatObservation;
    append(pieces, apply(slots, special, content));
    encoded.push_back(std::move(pieces));
  }
  if (reasoning) {
    Piece thought{t.thoughtOpen + t.thoughtClose, false};
    for (size_t i = options.discardHistoryThought ? messages.size() - 2 : 0; i < messages.size();
         i += 2) {
      if (hasThought(t, messages[i + 1].content))
        continue;
      if (!options.enableThinking)
        encoded[i].push_back(thought); // in the prompt: not trained on
      else
        encoded[i + 1].insert(encoded[i + 1].begin(), thought);
    }
  }
  std::vector<std::pair<std::vector<Piece>, std::vector<Piece>>> turns;
  for (size_t i = 0; i < encoded.size(); i += 2)
    turns.emplace_back(std::move(encoded[i]), std::move(encoded[i + 1]));
  return turns;
}

std::string joinPieces(const std::vector<Piece> &pieces) {
  std::string s;
  for (const Piece &p : pieces)
    s += p.text;
  return s;
}

Expected<std::vector<uint32_t>> encodePieces(const std::vector<Piece> &pieces,
                                             const TextEncoder &encoder) {
  std::vector<uint32_t> ids;
  for (const Piece &p : pieces) {
    if (p.specialToken) {
      std::optional<uint32_t> id = encoder.tokenId(p.text);
      if (!id)
        return Status::error("the tokenizer has no token '" + p.text +
                             "' that the template needs (its BOS/EOS token)");
      ids.push_back(*id);
      continue;
    }
    auto part = encoder.encode(p.text);
    if (!part)
      return part.status();
    ids.insert(ids.end(), part->begin(), part->end());
  }
  return ids;
}

} // namespace mt::chat
