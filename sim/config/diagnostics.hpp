#pragma once
// Configuration errors: every problem names where it is (file:line, or the --set option that
// introduced it), the key path, and what is wrong. Loading collects them all before failing.
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {

struct Diagnostic {
  std::string origin;  ///< file path, or "--set key=value"
  int line = 0;        ///< 1-based; 0 when unknown
  std::string key_path;
  std::string message;

  [[nodiscard]] std::string format() const;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  [[nodiscard]] const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

/// Closest candidate by edit distance, or "" when none is close enough to suggest.
[[nodiscard]] std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
[[nodiscard]] std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

}  // namespace moesim
