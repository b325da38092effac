// How mtc's messages word what they say: counts with the noun's number, and
// the "did you mean" suggestion for a misspelt name (flags, YAML keys).
#ifndef MT_RUNTIME_SUPPORT_WORDING_H
#define MT_RUNTIME_SUPPORT_WORDING_H

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mt {

/// "1 rank", "2 ranks": `n` and `noun`, plus "s" unless n is 1 (or
/// `pluralNoun` for irregular plurals).
inline std::string countOf(int64_t n, std::string_view noun, std::string_view pluralNoun = {}) {
  std::string out = std::to_string(n) + " ";
  if (n == 1)
    return out.append(noun);
  if (!pluralNoun.empty())
    return out.append(pluralNoun);
  return out.append(noun).append("s");
}

/// Levenshtein distance (insertions, deletions, substitutions) of a and b.
inline size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

/// The name of `known` closest to `typed` within 3 edits and at most half
/// its length (a typo, not another name: 'foo' is no 'bf16'), ties going to
/// the first; "" when none is that close.
inline std::string closestName(std::string_view typed, const std::vector<std::string> &known) {
  std::string best;
  size_t bestDistance = 4;
  for (const std::string &name : known)
    if (size_t d = editDistance(typed, name); d < bestDistance && 2 * d <= typed.size())
      bestDistance = d, best = name;
  return best;
}

/// Whether `name` holds `typed` as it is, or its '_'-separated words in
/// order (vLLM's tensor_parallel_size in tensor_model_parallel_size).
inline bool shortens(std::string_view typed, std::string_view name) {
  if (name.find(typed) != std::string_view::npos)
    return true;
  size_t at = 0; // where the next word of `name` starts
  for (size_t begin = 0; begin <= typed.size();) {
    size_t end = std::min(typed.find('_', begin), typed.size());
    std::string_view want = typed.substr(begin, end - begin);
    bool found = false;
    while (!found && at <= name.size()) {
      size_t stop = std::min(name.find('_', at), name.size());
      found = name.substr(at, stop - at) == want;
      at = stop + 1;
    }
    if (!found)
      return false;
    begin = end + 1;
  }
  return true;
}

/// closestName, or else, for a name of 6 or more letters, the name of
/// `known` that it shortens (shortens()) with the fewest edits, ties going
/// to the first: tensor_parallel_size means tensor_model_parallel_size,
/// not expert_tensor_parallel_size.
inline std::string meantName(std::string_view typed, const std::vector<std::string> &known) {
  std::string best = closestName(typed, known);
  if (!best.empty() || typed.size() < 6)
    return best;
  size_t fewest = SIZE_MAX;
  for (const std::string &name : known)
    if (size_t d = editDistance(typed, name); d < fewest && shortens(typed, name))
      fewest = d, best = name;
  return best;
}

} // namespace mt

#endif // MT_RUNTIME_SUPPORT_WORDING_H
