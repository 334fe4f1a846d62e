#pragma once
// Configuration errors: every problem names where it is (file:line, or the --set option that
// introduced it), the key path, and what is wrong. Loading collects them all before failing.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
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

// Size limits of the files a scenario reads, checked before a byte is read (README, "Security and
// limits"): every input is loaded into memory whole.
inline constexpr std::uintmax_t kMaxScenarioFileBytes = 16ULL << 20;  ///< scenario YAML, catalog cards, domain corpus
inline constexpr std::uintmax_t kMaxInputFileBytes = 1ULL << 30;      ///< a dataset, a trace file, a gate-log folder

/// Empty when `path` is a regular file (or a folder whose files together) of at most `max_bytes`;
/// else what is wrong, naming the limit: "is 1099511627776 bytes, more than the limit of 1 GiB
/// (1073741824 bytes) for datasets and traces", or "is not a regular file" (a FIFO or a device
/// such as /dev/zero would be read without end). `what` names the kind of input. Missing paths
/// pass: their readers report them.
/// A folder is accepted (its files counted together) only where `folder_allowed` (gate-log
/// folders); elsewhere a folder in place of the file is the problem reported.
[[nodiscard]] std::string input_file_problem(const std::filesystem::path& path, std::uintmax_t max_bytes, const std::string& what,
                                             bool folder_allowed = false);

/// Where `text` first stops being valid UTF-8 (overlong forms, surrogates and code points past
/// U+10FFFF are invalid too): 1-based line and byte column; nullopt when it is all valid.
[[nodiscard]] std::optional<std::pair<int, int>> first_invalid_utf8(std::string_view text);
/// The message for such a place: "invalid UTF-8 at line L, byte B of the line (...)".
[[nodiscard]] std::string invalid_utf8_message(std::pair<int, int> where);

/// Closest candidate by edit distance, or "" when none is close enough to suggest.
[[nodiscard]] std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
[[nodiscard]] std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

}  // namespace moesim
