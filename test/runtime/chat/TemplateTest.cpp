// Chat templates against the models' own Jinja chat templates, rendered by
// @huggingface/jinja into Inputs/jinja-references.json (render-references.mjs,
// checked by the chat-jinja-references test), and against the encodings
// LLaMA-Factory's tests/data/test_template.py expects.
#include "runtime/chat/Template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace mt::chat {
namespace {

using json = nlohmann::json;

json readJson(const std::string &path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  return json::parse(in);
}

struct Conversation {
  std::string name, system;
  std::vector<Message> messages;
};

std::vector<Conversation> conversations() {
  std::vector<Conversation> out;
  for (const json &c : readJson(MT_CHAT_INPUTS "/conversations.json")) {
    Conversation conv{c["name"], c.value("system", ""), {}};
    for (const json &m : c["messages"])
      conv.messages.push_back({m["role"] == "user" ? Role::User : Role::Assistant, m["content"]});
    out.push_back(conv);
  }
  return out;
}

/// Turn k rendered as LLaMA-Factory's encode_oneturn renders the
/// conversation that ends with it (history thoughts removed, an empty
/// thought for the last turn only): the text before the response, and the
/// response.
std::pair<std::string, std::string> oneTurn(const Template &t, const Conversation &c, size_t k,
                                            bool enableThinking) {
  ByteTextEncoder e = byteEncoderFor(t.name);
  SpecialTokens special = specialTokens(t, e.bosToken(), e.eosToken(), e.padToken());
  std::vector<Message> upTo(c.messages.begin(), c.messages.begin() + 2 * k + 2);
  auto turns = renderTurns(t, special, upTo, c.system, {enableThinking, true});
  EXPECT_TRUE(turns) << turns.message();
  std::string prompt;
  for (size_t j = 0; j < k; ++j)
    prompt += joinPieces((*turns)[j].first) + joinPieces((*turns)[j].second);
  return {prompt + joinPieces((*turns)[k].first), joinPieces((*turns)[k].second)};
}

const Template &get(const std::string &name) {
  auto t = findTemplate(name);
  EXPECT_TRUE(t) << t.message();
  return **t;
}

/// Compares every turn of every conversation with the reference case.
/// `expected` maps the reference (prompt, whole) to what the template should
/// render, for templates whose difference from the model's is documented.
void checkAgainst(const std::string &refCase, const std::string &templateName,
                  bool enableThinking, const std::vector<std::string> &skip = {}) {
  json refs = readJson(MT_CHAT_INPUTS "/jinja-references.json")[refCase];
  const Template &t = get(templateName);
  int compared = 0;
  for (const Conversation &c : conversations()) {
    if (std::find(skip.begin(), skip.end(), c.name) != skip.end())
      continue;
    for (size_t k = 0; 2 * k < c.messages.size(); ++k) {
      std::string prompt = refs[c.name][k]["prompt"], whole = refs[c.name][k]["whole"];
      auto [ourPrompt, ourResponse] = oneTurn(t, c, k, enableThinking);
      if (templateName == "llama3") {
        // This tokenizer_config's template appends the generation header
        // even without add_generation_prompt.
        const std::string header = "<|start_header_id|>assistant<|end_header_id|>\n\n";
        ASSERT_EQ(whole.substr(whole.size() - header.size()), header);
        whole.resize(whole.size() - header.size());
      }
      if (templateName == "qwen3_nothink") {
        // qwen3_nothink serves Qwen3's Instruct-2507 models, whose template
        // has no thoughts; the hybrid Qwen3 template with enable_thinking
        // false puts an empty thought after the generation prompt.
        ourPrompt += "<think>\n\n</think>\n\n";
      }
      if (templateName == "mistral" && !c.system.empty() && k > 0)
        continue; // the system placement differs: see MistralFusesSystem
      EXPECT_EQ(ourPrompt, prompt) << refCase << " / " << c.name << " turn " << k;
      EXPECT_EQ(ourPrompt + ourResponse, whole) << refCase << " / " << c.name << " turn " << k;
      ++compared;
    }
  }
  EXPECT_GE(compared, 5) << refCase;
}

TEST(Template, Qwen3MatchesItsJinja) { checkAgainst("qwen3", "qwen3", true); }

TEST(Template, Qwen3WithoutThinkingMatchesEnableThinkingFalse) {
  // LLaMA-Factory removes every thought under enable_thinking false, where
  // the Jinja template keeps the last one: conversations with thoughts differ.
  checkAgainst("qwen3/enable_thinking=false", "qwen3", false, {"thought"});
}

TEST(Template, Qwen3NothinkIsEnableThinkingFalseWithoutTheEmptyThought) {
  // A plain template: thoughts in the data stay text (the Jinja template
  // strips history thoughts), so only conversations without thoughts.
  checkAgainst("qwen3/enable_thinking=false", "qwen3_nothink", true, {"thought"});
}

TEST(Template, QwenMatchesQwen25) { checkAgainst("qwen", "qwen", true); }
TEST(Template, Llama3MatchesItsJinja) { checkAgainst("llama3", "llama3", true); }
TEST(Template, MistralMatchesV3Format) { checkAgainst("mistral", "mistral", true); }
TEST(Template, DefaultMatchesFactoryJinja) { checkAgainst("default", "default", true); }
TEST(Template, EmptyMatchesFactoryJinja) { checkAgainst("empty", "empty", true); }

std::vector<std::pair<std::string, std::string>> multiturn(const std::string &name,
                                                           const Conversation &c,
                                                           TemplateOptions options = {}) {
  const Template &t = get(name);
  ByteTextEncoder e = byteEncoderFor(name);
  auto turns = renderTurns(t, specialTokens(t, e.bosToken(), e.eosToken(), e.padToken()),
                           c.messages, c.system, options);
  EXPECT_TRUE(turns) << turns.message();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto &[p, r] : *turns)
    out.emplace_back(joinPieces(p), joinPieces(r));
  return out;
}

Conversation named(const std::string &name) {
  for (const Conversation &c : conversations())
    if (c.name == name)
      return c;
  ADD_FAILURE() << name;
  return {};
}

TEST(Template, MistralFusesSystemIntoFirstUserMessage) {
  // Llama2Template: the system text leads the first user message, where
  // Mistral's v3 format puts it in the last one.
  auto turns = multiturn("mistral", named("multi-system"));
  ASSERT_EQ(turns.size(), 3u);
  EXPECT_EQ(turns[0].first, "<s>[INST] Answer in one line.\n\n2 + 2?[/INST]");
  EXPECT_EQ(turns[0].second, " 4</s>");
  EXPECT_EQ(turns[1].first, "[INST] And times 3?[/INST]");
}

TEST(Template, Qwen3MultiturnThoughtsAsLlamaFactory) {
  // tests/data/test_template.py::test_reasoning_encode_multiturn: every
  // turn without a thought gets the empty one, in the response (trained on)
  // with enable_thinking, at the end of the prompt without.
  const std::string empty = "<think>\n\n</think>\n\n";
  auto on = multiturn("qwen3", named("multi"));
  ASSERT_EQ(on.size(), 2u);
  EXPECT_EQ(on[0].first, "<|im_start|>user\nHow are you<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(on[0].second, empty + "I am fine!<|im_end|>\n");
  EXPECT_EQ(on[1].second, empty + "很高兴认识你！<|im_end|>\n");
  auto off = multiturn("qwen3", named("thought"), {false, false});
  EXPECT_EQ(off[0].first,
            "<|im_start|>user\nHow are you<|im_end|>\n<|im_start|>assistant\n" + empty);
  EXPECT_EQ(off[0].second, "I am fine!<|im_end|>\n");
  EXPECT_EQ(off[1].first, "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n" + empty);
  auto kept = multiturn("qwen3", named("thought"));
  EXPECT_EQ(kept[0].second, "<think>\nModel thought here\n</think>\n\nI am fine!<|im_end|>\n");
  // mask_history (discarding_history_cot): history thoughts removed, no
  // empty thought added to the history.
  auto discard = multiturn("qwen3", named("thought"), {true, true});
  EXPECT_EQ(discard[0].second, "I am fine!<|im_end|>\n");
  EXPECT_EQ(discard[1].second, "<think>\n模型思考内容\n</think>\n\n很高兴认识你！<|im_end|>\n");
}

TEST(Template, RemoveThoughtAsRegexSub) {
  const Template &t = get("qwen3");
  EXPECT_EQ(removeThought(t, "<think>\na\n</think>\n\nX<think>\nb\n</think>\n\nY"), "XY");
  EXPECT_EQ(removeThought(t, "\n\nno thought"), "no thought");
  EXPECT_EQ(removeThought(t, "<think>\nunclosed"), "<think>\nunclosed");
}

TEST(Template, UnknownNameListsKnownOnes) {
  auto t = findTemplate("qwen3_nothnk");
  ASSERT_FALSE(t);
  EXPECT_NE(t.message().find("did you mean 'qwen3_nothink'"), std::string::npos) << t.message();
  EXPECT_NE(t.message().find("default, empty, llama3, mistral, qwen, qwen3, qwen3_nothink"),
            std::string::npos)
      << t.message();
}

TEST(Template, RolesOutOfOrderAreErrors) {
  const Template &t = get("qwen");
  SpecialTokens s = specialTokens(t, "", "<|im_end|>", "");
  auto r = renderTurns(t, s, {{Role::Assistant, "a"}, {Role::User, "b"}}, "", {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("message 0 is assistant, expected user or observation"),
            std::string::npos)
      << r.message();
  auto f = renderTurns(t, s, {{Role::User, "a"}, {Role::Function, "{}"}}, "", {});
  ASSERT_FALSE(f);
  EXPECT_NE(f.message().find("tool calls are not supported yet"), std::string::npos);
}

TEST(Template, SpecialTokensFollowReplaceEos) {
  // replace_eos: the first stop word is EOS; the padding token falls back
  // to EOS (fix_special_tokens).
  SpecialTokens q = specialTokens(get("qwen3"), "", "<|endoftext|>", "");
  EXPECT_EQ(q.eos, "<|im_end|>");
  EXPECT_EQ(q.pad, "<|im_end|>");
  SpecialTokens m = specialTokens(get("mistral"), "<s>", "</s>", "");
  EXPECT_EQ(m.eos, "</s>");
  EXPECT_EQ(specialTokens(get("empty"), "", "", "").eos, "<|endoftext|>");
}

} // namespace
} // namespace mt::chat
