#include "sim/config/diagnostics.hpp"

#include <algorithm>
#include <numeric>

namespace moesim {

namespace {
std::string size_text(std::uintmax_t bytes) {
  if (bytes >= (1ULL << 30) && bytes % (1ULL << 30) == 0) return std::to_string(bytes >> 30) + " GiB";
  if (bytes >= (1ULL << 20) && bytes % (1ULL << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}
}  // namespace

std::string input_file_problem(const std::filesystem::path& path, std::uintmax_t max_bytes, const std::string& what,
                               bool folder_allowed) {
  std::error_code ec;
  std::uintmax_t bytes = 0;
  if (std::filesystem::is_directory(path, ec)) {
    if (!folder_allowed) return "is a folder; " + what + " are files";
    for (auto it = std::filesystem::directory_iterator(path, ec); !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      if (it->is_regular_file(ec))
        if (const auto n = it->file_size(ec); !ec) bytes += n;
  } else {
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) return {};
    if (!std::filesystem::is_regular_file(status)) return "is not a regular file; " + what + " are read from regular files";
    bytes = std::filesystem::file_size(path, ec);
    if (ec) return {};
  }
  if (bytes <= max_bytes) return {};
  return "is " + std::to_string(bytes) + " bytes, more than the limit of " + size_text(max_bytes) + " (" +
         std::to_string(max_bytes) + " bytes) for " + what + "; nothing was read";
}

std::string Diagnostic::format() const {
  std::string out = origin;
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  if (!key_path.empty()) {
    out += key_path;
    out += ": ";
  }
  out += message;
  return out;
}

namespace {
std::string format_all(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) {
    if (!out.empty()) out += "\n";
    out += d.format();
  }
  return out;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(format_all(diagnostics)), diagnostics_(std::move(diagnostics)) {}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::optional<std::pair<int, int>> first_invalid_utf8(std::string_view text) {
  int line = 1;
  std::size_t line_start = 0;
  const auto at = [&](std::size_t i) { return std::make_pair(line, static_cast<int>(i - line_start) + 1); };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '\n') {
        ++line;
        line_start = i + 1;
      }
      ++i;
      continue;
    }
    // Lead byte: the sequence length and the smallest code point it may encode (no overlongs).
    int n = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return at(i);
    if (i + static_cast<std::size_t>(n) > text.size()) return at(i);
    for (int k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]);
      if ((cc & 0xC0) != 0x80) return at(i);
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return at(i);
    i += static_cast<std::size_t>(n);
  }
  return std::nullopt;
}

std::string invalid_utf8_message(std::pair<int, int> where) {
  return "invalid UTF-8 at line " + std::to_string(where.first) + ", byte " + std::to_string(where.second) +
         " of the line (scenarios, cards and --set values must be UTF-8 text)";
}

}  // namespace moesim
