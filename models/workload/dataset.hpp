#pragma once
// Request sources read from files.
//
// Domain corpus (datasets/domain_queries.json):
//   {"format": "moesim-domain-queries-v1", "domains": {"programming": ["...", ...], ...}}
// Dataset (JSON Lines, one request per line, as written by `moesim gen-datasets`):
//   {"prompt": "...", "domain": "cooking", "prompt_tokens": 41, "output_tokens": 256, "arrival_s": 0.5}
//   prompt_tokens and output_tokens are required (>= 1), domain is required when a corpus is given
//   and must name one of its domains, arrival_s (>= 0, non-decreasing) is optional, prompt is
//   optional text. Every problem is reported with file, line and field; nothing is skipped.
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/common/input_error.hpp"

namespace moesim {

struct DomainCorpus {
  std::vector<std::string> names;                 ///< in file order
  std::vector<std::vector<std::string>> queries;  ///< per domain

  [[nodiscard]] int index_of(const std::string& name) const;
  /// Loads and checks the corpus; throws InputError.
  static DomainCorpus load(const std::filesystem::path& file);
};

struct DatasetRecord {
  std::string prompt;            ///< set by the generator; a loaded dataset keeps only its digest
  std::uint64_t prompt_digest = 0;  ///< fnv1a64 of the prompt text (0 without one)
  int domain = -1;
  int prompt_tokens = 0;
  int output_tokens = 0;
  std::optional<double> arrival_s;
  std::int64_t prefix_id = -1;  ///< lines with the same prefix id share their first prefix_tokens tokens
  int prefix_tokens = 0;
};

/// A dataset line's limits: its length, and how deep objects and lists nest in it (the JSON
/// parser's memory grows with both; a record is one flat object).
inline constexpr std::size_t kMaxDatasetLineBytes = std::size_t{16} << 20;
inline constexpr int kMaxDatasetLineDepth = 16;
/// The deepest nesting of objects and lists in a JSON text (brackets inside strings not counted).
[[nodiscard]] int json_nesting_depth(std::string_view text);

/// Reads a JSONL dataset; `corpus` resolves domain names. Throws InputError listing the problems
/// (at most kMaxIssuesPerFile, then a count of the rest).
[[nodiscard]] std::vector<DatasetRecord> load_dataset(const std::filesystem::path& file, const DomainCorpus& corpus);
/// The same from a stream; `name` stands for the file in messages.
[[nodiscard]] std::vector<DatasetRecord> load_dataset(std::istream& in, const std::string& name, const DomainCorpus& corpus);

/// Token count estimate of a prompt text when no tokenizer is at hand: about 4 characters per
/// token for English text (the rule of thumb OpenAI and others document for BPE tokenizers).
[[nodiscard]] int estimate_prompt_tokens(const std::string& text);

}  // namespace moesim
