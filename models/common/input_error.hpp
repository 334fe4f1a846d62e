#pragma once
// Problems found in an input file (dataset, trace, corpus): where, which field, what is wrong.
// sim/ turns them into the same diagnostics as scenario errors.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {

/// Problems kept per input file: past this many, a reader counts the rest in one closing issue,
/// so that a file of junk gives a readable report in bounded memory.
inline constexpr std::size_t kMaxIssuesPerFile = 20;

struct InputIssue {
  std::string file;
  int line = 0;  ///< 1-based; 0 when not line-oriented
  std::string field;
  std::string message;
};

class InputError : public std::runtime_error {
 public:
  explicit InputError(std::vector<InputIssue> issues)
      : std::runtime_error(issues.empty() ? "input error" : format(issues.front())), issues_(std::move(issues)) {}
  [[nodiscard]] const std::vector<InputIssue>& issues() const { return issues_; }

  static std::string format(const InputIssue& i) {
    std::string out = i.file;
    if (i.line > 0) {
      out += ':';
      out += std::to_string(i.line);
    }
    out += ": ";
    if (!i.field.empty()) {
      out += i.field;
      out += ": ";
    }
    out += i.message;
    return out;
  }

 private:
  std::vector<InputIssue> issues_;
};

}  // namespace moesim
