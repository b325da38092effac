// Chat templates by name, as LLaMA-Factory defines them
// (src/llamafactory/data/template.py, register_template): how a conversation
// becomes (prompt, response) token pairs, one pair per turn.
#ifndef MT_RUNTIME_CHAT_TEMPLATE_H
#define MT_RUNTIME_CHAT_TEMPLATE_H

#include "runtime/chat/TextEncoder.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mt::chat {

/// One element of a formatter's slots: literal text in which "{{content}}"
/// stands for the message, or the tokenizer's BOS / EOS token (LLaMA-Factory's
/// {"bos_token"} / {"eos_token"} sets).
struct Slot {
  enum class Kind { Text, Bos, Eos };
  Kind kind = Kind::Text;
  std::string text;
};
using Slots = std::vector<Slot>;

/// LLaMA-Factory's template classes: Template, Llama2Template (the system
/// text is fused into the first user message) and ReasoningTemplate (empty
/// thoughts added to responses that have none).
enum class TemplateClass { Plain, Llama2, Reasoning };

struct Template {
  std::string name;
  Slots formatUser, formatAssistant, formatSystem, formatObservation, formatPrefix;
  std::string defaultSystem;
  std::vector<std::string> stopWords;
  std::string thoughtOpen = "<think>\n", thoughtClose = "\n</think>\n\n";
  /// The assistant slots carry no EOS; it is appended once at the end of the
  /// sample, and labels the first prompt token of every later turn.
  bool efficientEos = false;
  /// stopWords[0] replaces the tokenizer's EOS token.
  bool replaceEos = false;
  TemplateClass templateClass = TemplateClass::Plain;
};

/// The names findTemplate knows, sorted.
std::vector<std::string> templateNames();

/// The template registered as `name`; the error lists the known names.
Expected<const Template *> findTemplate(const std::string &name);

enum class Role { User, Assistant, Observation, Function };
/// "user", "assistant", "observation", "function".
const char *roleName(Role role);

struct Message {
  Role role = Role::User;
  std::string content;
};

/// LLaMA-Factory's data arguments that change how a template encodes.
struct TemplateOptions {
  /// `enable_thinking` (reasoning templates only): true puts the empty
  /// thought of a response without one into the response (trained on); false
  /// removes thoughts from responses and puts the empty thought at the end
  /// of the prompt.
  bool enableThinking = true;
  /// `mask_history` with preserve_thinking off: thoughts of all turns but the
  /// last are removed, and only the last turn gets an empty thought.
  bool discardHistoryThought = false;
};

/// A rendered element: text to encode, or a special token given by its
/// spelling (BOS/EOS) that is converted to its id directly.
struct Piece {
  std::string text;
  bool specialToken = false;
};

/// The tokens a template's special slots stand for: BOS ("" when none), EOS
/// (stopWords[0] under replaceEos, else the tokenizer's, else
/// "<|endoftext|>") and the padding token (the tokenizer's, else EOS), as
/// LLaMA-Factory's fix_special_tokens chooses them.
struct SpecialTokens {
  std::string bos, eos, pad;
};
SpecialTokens specialTokens(const Template &t, const std::string &tokenizerBos,
                            const std::string &tokenizerEos, const std::string &tokenizerPad);

/// One (prompt, response) pair per turn, in pieces, as encode_multiturn
/// builds them: turn 0's prompt holds the prefix and the system text
/// (`system`, or the template's default when empty). `messages` alternate
/// user/observation and assistant and end with an assistant message; a
/// function turn (tool calls) is refused.
Expected<std::vector<std::pair<std::vector<Piece>, std::vector<Piece>>>>
renderTurns(const Template &t, const SpecialTokens &special, const std::vector<Message> &messages,
            const std::string &system, const TemplateOptions &options);

/// The text of `pieces`.
std::string joinPieces(const std::vector<Piece> &pieces);

/// Encodes pieces: text through encoder.encode, special tokens by tokenId
/// (an error names a token the vocabulary lacks).
Expected<std::vector<uint32_t>> encodePieces(const std::vector<Piece> &pieces,
                                             const TextEncoder &encoder);

/// LLaMA-Factory's remove_thought: every "<think>\n...\n</think>\n\n" span
/// (shortest match) is deleted, then leading newlines.
std::string removeThought(const Template &t, const std::string &content);

} // namespace mt::chat

#endif // MT_RUNTIME_CHAT_TEMPLATE_H
