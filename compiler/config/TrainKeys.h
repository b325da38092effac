// The table of every key the training front-end knows: what mtc does with
// it (honours it, always does it, or cannot do it yet and why).
#ifndef MT_COMPILER_CONFIG_TRAINKEYS_H
#define MT_COMPILER_CONFIG_TRAINKEYS_H

#include "compiler/config/TrainConfig.h"

#include <functional>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace mt::trainkeys {

enum class Kind {
  Honoured,   // mapped onto mtc's options (`meaning` says onto what)
  AlwaysDone, // names what mtc always does (a fusion, HF weights in and out)
  Refused,    // only `accepted` (its default) is allowed: others wait on `issue`
};

/// Where a key's name comes from. Documentation only: `mtc compile
/// --config` tells the two vocabularies apart by the keys each reader
/// actually takes (ConfigVocabulary.h), not by this.
enum class Origin { LlamaFactory, Megatron, Trinity };

/// A value and where it was given ("file:line:col: " or "command line: ").
struct Given {
  const YAML::Node &node;
  const std::string &where;
  /// A bare `--key` of the command line, read as true (HfArgumentParser's
  /// boolean flag): a key that takes another type refuses it.
  bool bare = false;
  /// A command-line value as typed: a key that takes a string takes it
  /// literally (HfArgumentParser), not as YAML would read it ('a #b' is no
  /// comment, 'x: y' no mapping), but for a spelled null (null, ~).
  const std::string *literal = nullptr;
  /// Why the command-line value is no YAML (its node is then the text).
  const std::string *yamlError = nullptr;
};

struct Key {
  const char *name;
  Kind kind;
  Origin origin;
  /// Honoured: what it sets. AlwaysDone: why there is nothing to do.
  /// Refused: what is missing.
  const char *meaning;
  /// Refused: the values accepted, as canonical text ("false", "null",
  /// "1", "full"); the key is also accepted when given one of them.
  std::vector<std::string> accepted = {};
  /// Refused: the issue that brings it ("" when none plans it yet).
  const char *issue = "";
  /// Honoured: reads and stores the value; AlwaysDone: checks its type
  /// (null: none to check). Errors name the key and where.
  std::function<Status(TrainConfig &, const Given &)> set = nullptr;
  /// Honoured: values (canonical text) refused all the same, and why: what
  /// mtc does not do, as a Refused key's other values are.
  std::vector<std::string> refusedValues = {};
  const char *refusedWhy = "";
};

/// Every key, in the order `mtc train --help-keys` would list them.
const std::vector<Key> &keys();

/// The key named `name`, or null.
const Key *find(const std::string &name);

/// The key whose setting `name` sets: per_device_train_batch_size for its
/// Megatron name micro_batch_size; `name` itself for a key with one name.
std::string settingOf(const std::string &name);

/// A value's canonical text for comparison with Key::accepted: "true" /
/// "false" for a boolean spelling, "null", or the scalar as written;
/// "a mapping"/"a list" otherwise.
std::string canonical(const YAML::Node &node);

} // namespace mt::trainkeys

#endif // MT_COMPILER_CONFIG_TRAINKEYS_H
