// How the YAML readers (the Megatron option file, the training front-end's
// keys) name a place and a value in their messages.
#ifndef MT_COMPILER_CONFIG_YAMLTEXT_H
#define MT_COMPILER_CONFIG_YAMLTEXT_H

#include "runtime/support/FileKind.h"

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace mt::config {

/// "file:line:col: " of a node (1-based), to start a message with.
inline std::string whereOf(const std::string &path, const YAML::Node &n) {
  return path + ":" + std::to_string(n.Mark().line + 1) + ":" +
         std::to_string(n.Mark().column + 1) + ": ";
}

/// What a node holds, for messages: the scalar as written in quotes, null,
/// or its kind ("a list", "a mapping").
inline std::string spellingOf(const YAML::Node &n) {
  if (n.IsScalar())
    return "'" + n.Scalar() + "'";
  if (n.IsNull())
    return "null";
  return n.IsSequence() ? "a list" : "a mapping";
}

/// Why the file at `path` cannot be read as YAML before it is opened ("is a
/// directory, not a YAML file"; a FIFO's open would wait for a writer), or
/// "" (a regular file, or nothing there: the reader's open says so).
inline std::string yamlFileProblem(const std::string &path) {
  const std::string what = notARegularFile(path);
  return what.empty() ? "" : "is " + what + ", not a YAML file";
}

/// The one YAML document of the file at `path`, as Python's yaml.safe_load
/// reads it (yaml-cpp's LoadFile takes the first and drops the rest).
/// Throws what YAML::LoadAllFromFile throws, and YAML::ParserException at
/// the start of a second document.
inline YAML::Node loadOneDocument(const std::string &path) {
  std::vector<YAML::Node> documents = YAML::LoadAllFromFile(path);
  if (documents.size() > 1)
    throw YAML::ParserException(documents[1].Mark(),
                                "a second YAML document: the file must hold one (its keys "
                                "after --- or ... would be ignored)");
  return documents.empty() ? YAML::Node() : documents[0];
}

} // namespace mt::config

#endif // MT_COMPILER_CONFIG_YAMLTEXT_H
