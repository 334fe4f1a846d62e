#pragma once
// Text of a JSON value read from an input file, for error messages.
#include <nlohmann/json.hpp>

#include <string>

namespace moesim {

/// Scalars as written (long ones cut short); lists and objects by their kind only: dumping them
/// whole recurses as deep as the input nests, and a line of a million '[' overflows the stack.
inline std::string json_value_text(const nlohmann::json& v) {
  if (v.is_array()) return "a list";
  if (v.is_object()) return "an object";
  constexpr std::size_t kMaxChars = 80;
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > kMaxChars) s = s.substr(0, kMaxChars) + "...";
  return s;
}

}  // namespace moesim
