// The two small notations of an instruction's definition in ODS
// (dialects/mt/MtInstructions.td): its attributes ("tokens in out
// has_bias? eps:f reduce=sum|max") and the element count of each operand
// ("tokens*in; has_bias?out; 1"). Header-only and std-only: tools/mt-tblgen
// checks the ODS records with it, the plan loader reads OpTable.inc with it.
#ifndef MT_RUNTIME_PLAN_OPSPEC_H
#define MT_RUNTIME_PLAN_OPSPEC_H

#include <cctype>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace mt::plan {

enum class AttrKind { Int, Float, String };

/// One attribute of an instruction: `name[:kind][?]` or `name=a|b|c`.
struct AttrSpec {
  std::string name;
  AttrKind kind = AttrKind::Int;
  bool required = true;
  /// The valid values of a string attribute (an absent one takes the first).
  std::vector<std::string> choices;
};

/// The element count of one operand: the product of `factors` (integer
/// attribute names or decimal literals), divided by `divisor` when one is
/// named (`experts/parts`: a rank's share; a zero divisor counts as 1); the
/// operand exists only when the attribute `guard` is non-zero (when a guard
/// is named); `unchecked`: `-`.
struct ElementCount {
  std::string guard;
  std::vector<std::string> factors;
  std::string divisor;
  bool unchecked = false;
};

namespace detail {
inline std::vector<std::string> split(std::string_view text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  for (char c : text) {
    if (c == separator) {
      parts.push_back(part);
      part.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      part += c;
    }
  }
  parts.push_back(part);
  return parts;
}
inline bool isIdentifier(const std::string &s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])))
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      return false;
  return true;
}
inline bool isLiteral(const std::string &s) {
  if (s.empty())
    return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c)))
      return false;
  return true;
}
} // namespace detail

/// Parses a space-separated attribute list; on a malformed one returns
/// false and says why in `error`.
inline bool parseAttributes(std::string_view text, std::vector<AttrSpec> &out,
                            std::string &error) {
  std::istringstream words{std::string(text)};
  for (std::string word; words >> word;) {
    AttrSpec spec;
    if (size_t eq = word.find('='); eq != std::string::npos) {
      spec.name = word.substr(0, eq);
      spec.kind = AttrKind::String;
      spec.required = false;
      spec.choices = detail::split(word.substr(eq + 1), '|');
      for (const std::string &c : spec.choices)
        if (c.empty()) {
          error = "attribute '" + word + "' has an empty choice";
          return false;
        }
    } else {
      if (word.back() == '?') {
        spec.required = false;
        word.pop_back();
      }
      size_t colon = word.find(':');
      spec.name = word.substr(0, colon);
      std::string kind = colon == std::string::npos ? "i" : word.substr(colon + 1);
      if (kind == "i")
        spec.kind = AttrKind::Int;
      else if (kind == "f")
        spec.kind = AttrKind::Float;
      else if (kind == "s")
        spec.kind = AttrKind::String;
      else {
        error = "attribute '" + word + "' has kind '" + kind + "'; valid kinds are i, f, s";
        return false;
      }
    }
    if (!detail::isIdentifier(spec.name)) {
      error = "attribute name '" + spec.name + "' is not an identifier";
      return false;
    }
    for (const AttrSpec &other : out)
      if (other.name == spec.name) {
        error = "attribute '" + spec.name + "' is declared twice";
        return false;
      }
    out.push_back(std::move(spec));
  }
  return true;
}

/// Parses a `;`-separated list of element counts whose names must be
/// integer attributes of `attrs`; empty text: no counts.
inline bool parseElements(std::string_view text, const std::vector<AttrSpec> &attrs,
                          std::vector<ElementCount> &out, std::string &error) {
  if (text.find_first_not_of(" \t\n") == std::string_view::npos)
    return true;
  auto isIntAttr = [&](const std::string &name) {
    for (const AttrSpec &a : attrs)
      if (a.name == name && a.kind == AttrKind::Int)
        return true;
    return false;
  };
  for (std::string item : detail::split(text, ';')) {
    ElementCount count;
    if (item == "-") {
      count.unchecked = true;
      out.push_back(count);
      continue;
    }
    if (size_t q = item.find('?'); q != std::string::npos) {
      count.guard = item.substr(0, q);
      item = item.substr(q + 1);
      if (!isIntAttr(count.guard)) {
        error = "element count '" + count.guard + "?" + item + "': '" + count.guard +
                "' is not an integer attribute of the instruction";
        return false;
      }
    }
    if (size_t slash = item.find('/'); slash != std::string::npos) {
      count.divisor = item.substr(slash + 1);
      item = item.substr(0, slash);
      if (!isIntAttr(count.divisor)) {
        error = "element count '" + item + "/" + count.divisor + "': the divisor '" +
                count.divisor + "' is not an integer attribute of the instruction";
        return false;
      }
    }
    count.factors = detail::split(item, '*');
    for (const std::string &f : count.factors)
      if (!detail::isLiteral(f) && !isIntAttr(f)) {
        error = "element count '" + item + "': '" + f +
                "' is neither a number nor an integer attribute of the instruction";
        return false;
      }
    out.push_back(std::move(count));
  }
  return true;
}

} // namespace mt::plan

#endif // MT_RUNTIME_PLAN_OPSPEC_H
