#include "models/workload/trace_reader.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "models/common/input_file.hpp"
#include "models/common/json_text.hpp"
#include "models/workload/dataset.hpp"

namespace moesim {
namespace {

enum class Format { azure, mooncake, burstgpt, bailian, splitwise, moesim };

struct FormatSpec {
  Format id;
  std::string_view name;
  std::vector<std::string_view> columns;  ///< CSV header; empty for a JSONL format
  int block_tokens;                       ///< tokens per hash id; 0: no hash ids; -1: the caller's
  std::string_view group_source;          ///< what `group` holds; empty: no group
};

const std::vector<FormatSpec>& format_specs() {
  static const std::vector<FormatSpec> specs = {
      {Format::azure, "azure", {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}, 0, ""},
      {Format::mooncake, "mooncake", {}, 512, ""},
      {Format::burstgpt,
       "burstgpt",
       {"Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"},
       0,
       "Model"},
      {Format::bailian, "bailian", {}, 16, "type"},
      {Format::splitwise,
       "splitwise",
       {"request_id", "request_type", "application_id", "arrival_timestamp", "batch_size", "prompt_size", "token_size"},
       0,
       "application_id"},
      {Format::moesim, "moesim", {}, -1, "domain"},
  };
  return specs;
}

const FormatSpec* find_format(std::string_view name) {
  const auto& specs = format_specs();
  const auto it = std::find_if(specs.begin(), specs.end(), [&](const FormatSpec& s) { return s.name == name; });
  return it == specs.end() ? nullptr : &*it;
}

std::string join(const std::vector<std::string_view>& items, std::string_view sep) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

/// A text from the file for a message: in quotes, cut short past 80 characters.
std::string shown(std::string_view text) {
  constexpr std::size_t kMaxChars = 80;
  std::string out = "\"";
  out += text.substr(0, kMaxChars);
  if (text.size() > kMaxChars) out += "...";
  out += '"';
  return out;
}

std::string_view trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// ---- lines -------------------------------------------------------------------------------------

/// Lines of a file, one at a time, through a fixed buffer: a line longer than
/// kMaxDatasetLineBytes is an error as soon as that many bytes are read, before it is held whole.
class LineSource {
 public:
  LineSource(std::ifstream in, std::string name) : in_(std::move(in)), name_(std::move(name)), buf_(std::size_t{1} << 16) {}

  /// The next line without its end (\n or \r\n); false at the end of the file.
  bool next(std::string& line) {
    line.clear();
    bool any = false;
    while (true) {
      if (pos_ == end_ && !fill()) break;
      any = true;
      const char* begin = buf_.data() + pos_;
      const auto* nl = static_cast<const char*>(std::memchr(begin, '\n', end_ - pos_));
      const std::size_t n = nl != nullptr ? static_cast<std::size_t>(nl - begin) : end_ - pos_;
      if (line.size() + n > kMaxDatasetLineBytes)
        throw InputError({{name_, lineno_ + 1, "",
                           "longer than " + std::to_string(kMaxDatasetLineBytes) + " bytes (a line is one request)"}});
      line.append(begin, n);
      pos_ += n;
      if (nl != nullptr) {
        ++pos_;
        break;
      }
    }
    if (!any) return false;
    ++lineno_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (lineno_ == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // UTF-8 byte order mark
    return true;
  }
  [[nodiscard]] int lineno() const { return lineno_; }

 private:
  bool fill() {
    if (!in_) return false;
    in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    pos_ = 0;
    end_ = static_cast<std::size_t>(in_.gcount());
    if (in_.bad()) throw InputError({{name_, lineno_ + 1, "", "read error"}});
    return end_ > 0;
  }

  std::ifstream in_;
  std::string name_;
  std::vector<char> buf_;
  std::size_t pos_ = 0, end_ = 0;
  int lineno_ = 0;
};

/// Splits a CSV line into `fields` (RFC 4180: a field in double quotes may hold commas, and ""
/// stands for a quote). Returns the number of fields, or -1 with `why` set.
int split_csv(std::string_view line, std::vector<std::string>& fields, std::string& why) {
  std::size_t n = 0, i = 0;
  while (true) {
    if (n == fields.size()) fields.emplace_back();
    std::string& f = fields[n++];
    f.clear();
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) {
          why = "the quoted field of column " + std::to_string(n) +
                " is not closed on this line (line breaks inside fields are not supported)";
          return -1;
        }
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            f += '"';
            ++i;
            continue;
          }
          ++i;
          break;
        }
        f += line[i];
      }
      if (i < line.size() && line[i] != ',') {
        why = "text after the closing quote of column " + std::to_string(n);
        return -1;
      }
    } else {
      const auto comma = line.find(',', i);
      const auto stop = comma == std::string_view::npos ? line.size() : comma;
      f.assign(line.substr(i, stop - i));
      i = stop;
    }
    if (i >= line.size()) return static_cast<int>(n);
    ++i;  // the comma
  }
}

// ---- wall-clock time ---------------------------------------------------------------------------

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant, "chrono-
/// Compatible Low-Level Date Algorithms").
constexpr std::int64_t days_from_civil(std::int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;                                     // [0, 399]
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;   // [0, 365]
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;             // [0, 146096]
  return era * 146097 + doe - 719468;
}
static_assert(days_from_civil(1970, 1, 1) == 0);
static_assert(days_from_civil(2000, 3, 1) == 11017);

constexpr int days_in_month(std::int64_t y, int m) {
  constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[static_cast<std::size_t>(m - 1)];
}

struct WallClock {
  std::int64_t sec = 0;  ///< seconds since 1970-01-01 00:00:00 UTC
  std::int64_t ns = 0;   ///< [0, 1e9)
};

/// Parses `YYYY-MM-DD HH:MM:SS[.fraction][Z|+HH:MM|+HHMM|+HH]` ('T' may stand for the space).
/// Returns an empty string, or what is wrong.
std::string parse_wall_clock(std::string_view s, WallClock& out) {
  const std::string expected = "expected a time YYYY-MM-DD HH:MM:SS[.fraction][+HH:MM] (got " + shown(s) + ")";
  std::size_t i = 0;
  auto number = [&](std::size_t digits, int& v) {
    if (i + digits > s.size()) return false;
    v = 0;
    for (std::size_t k = 0; k < digits; ++k, ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    return true;
  };
  auto literal = [&](char c) {
    if (i >= s.size() || s[i] != c) return false;
    ++i;
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!number(4, y) || !literal('-') || !number(2, mo) || !literal('-') || !number(2, d)) return expected;
  if (i >= s.size() || (s[i] != ' ' && s[i] != 'T')) return expected;
  ++i;
  if (!number(2, h) || !literal(':') || !number(2, mi) || !literal(':') || !number(2, sec)) return expected;
  std::int64_t ns = 0;
  if (literal('.')) {
    int digits = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++digits) {
      if (digits == 9) return "more than 9 fractional digits of a second (got " + shown(s) + ")";
      ns = ns * 10 + (s[i] - '0');
    }
    for (int k = digits; k < 9; ++k) ns *= 10;
  }
  std::int64_t offset_s = 0;
  if (literal('Z')) {
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    const int sign = s[i++] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    if (!number(2, oh)) return expected;
    if (i < s.size()) {
      literal(':');
      if (!number(2, om)) return expected;
    }
    if (oh > 23 || om > 59) return "UTC offset out of range (got " + shown(s) + ")";
    offset_s = sign * (oh * 3600 + om * 60);
  }
  if (i != s.size()) return expected;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return "no such date (got " + shown(s) + ")";
  if (h > 23 || mi > 59 || sec > 59) return "no such time of day (got " + shown(s) + ")";
  out.sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  out.ns = ns;
  return {};
}

}  // namespace

// ---- the reader --------------------------------------------------------------------------------

struct TraceReader::Impl {
  Impl(const FormatSpec& s, std::ifstream in, std::string file, TraceFilter f, int block)
      : spec(s), name(std::move(file)), filter(std::move(f)), block_tokens(block), src(std::move(in), name) {}

  const FormatSpec& spec;
  std::string name;
  TraceFilter filter;
  int block_tokens;
  LineSource src;
  TraceCounters counters;
  std::unordered_set<std::string> groups;
  bool done = false;

  // The clock: the first record's timestamp, and the previous one (the order check).
  bool have_first = false;
  WallClock first_wall, prev_wall;   // azure
  double first_s = 0, prev_value = 0;  // the others: seconds, and the previous value as written
  std::string prev_text;
  int prev_line = 0;

  // Scratch, reused from line to line.
  std::string line;
  std::vector<std::string> fields;

  [[noreturn]] void fail(std::string_view field, std::string message) const {
    throw InputError({{name, src.lineno(), std::string(field), std::move(message)}});
  }

  void read_header();
  bool parse_line(TraceRecord& r);  // false: past the window's end
  bool parse_csv(TraceRecord& r);
  bool parse_json(TraceRecord& r);

  /// Orders, places and (when inside the window) stamps the record's time; false when it is at
  /// or past the window's end. `decreased`: earlier than the previous record.
  bool accept_time(TraceRecord& r, bool decreased, double since_first_s, double recorded_s, std::string_view field,
                   std::string text);
  bool accept_seconds(TraceRecord& r, double value, double seconds_per_unit, std::string_view field, std::string text);

  [[nodiscard]] std::int64_t csv_int(std::string_view text, std::string_view field) const;
  [[nodiscard]] double csv_time(std::string_view text, std::string_view field) const;
  [[nodiscard]] int tokens(std::int64_t v, std::string_view field, bool input, bool zero_ok) const;

  [[nodiscard]] const nlohmann::json* find(const nlohmann::json& j, const char* key, bool required) const;
  [[nodiscard]] std::int64_t json_int(const nlohmann::json& v, std::string_view key) const;
  [[nodiscard]] double json_time(const nlohmann::json& v, std::string_view key) const;
  [[nodiscard]] std::string json_string(const nlohmann::json& v, std::string_view key) const;
  void json_hash_ids(const nlohmann::json& v, std::string_view key, std::string_view input_key, int input,
                     std::vector<std::int64_t>& out) const;
};

void TraceReader::Impl::read_header() {
  const std::string expected = "expected the header `" + join(spec.columns, ",") + "`";
  do {
    if (!src.next(line)) throw InputError({{name, 0, "", "empty file; " + expected}});
    ++counters.lines;
  } while (trim(line).empty());
  std::string why;
  const int n = split_csv(line, fields, why);
  if (n < 0) fail("", why + "; " + expected);
  const auto want = spec.columns.size();
  for (std::size_t c = 0; c < std::max(want, static_cast<std::size_t>(n)); ++c) {
    if (c >= static_cast<std::size_t>(n)) fail(spec.columns[c], "column " + std::to_string(c + 1) + " is missing; " + expected);
    if (c >= want)
      fail(fields[c], "extra column " + std::to_string(c + 1) + " " + shown(fields[c]) + "; " + expected);
    if (fields[c] != spec.columns[c])
      fail(spec.columns[c], "column " + std::to_string(c + 1) + " is " + shown(fields[c]) + ", not \"" +
                                std::string(spec.columns[c]) + "\"; " + expected);
  }
}

bool TraceReader::Impl::accept_time(TraceRecord& r, bool decreased, double since_first_s, double recorded_s,
                                    std::string_view field, std::string text) {
  if (decreased)
    fail(field, "timestamp " + text + " is earlier than " + prev_text + " on line " + std::to_string(prev_line) +
                    "; a trace must be sorted by time");
  prev_text = std::move(text);
  prev_line = src.lineno();
  if (filter.duration_s > 0 && since_first_s >= filter.start_s + filter.duration_s) {
    counters.reached_window_end = true;
    return false;
  }
  r.time_s = since_first_s;
  r.recorded_s = recorded_s;
  return true;
}

bool TraceReader::Impl::accept_seconds(TraceRecord& r, double value, double seconds_per_unit, std::string_view field,
                                       std::string text) {
  const double s = value * seconds_per_unit;
  const bool decreased = have_first && value < prev_value;
  if (!have_first) {
    first_s = s;
    have_first = true;
  }
  prev_value = value;
  return accept_time(r, decreased, s - first_s, s, field, std::move(text));
}

std::int64_t TraceReader::Impl::csv_int(std::string_view text, std::string_view field) const {
  const auto t = trim(text);
  if (t.empty()) fail(field, "empty; expected an integer");
  const char* end = t.data() + t.size();
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(t.data(), end, v);
  if (p == end && ec == std::errc()) return v;
  if (p == end && ec == std::errc::result_out_of_range) fail(field, "beyond the int range (got " + std::string(t) + ")");
  double d = 0;
  const auto [q, ec2] = std::from_chars(t.data(), end, d);
  if (q == end && ec2 != std::errc::invalid_argument) fail(field, "must be an integer (got " + std::string(t) + ")");
  fail(field, "not a number (got " + shown(t) + ")");
}

double TraceReader::Impl::csv_time(std::string_view text, std::string_view field) const {
  const auto t = trim(text);
  if (t.empty()) fail(field, "empty; expected a number of seconds");
  const char* end = t.data() + t.size();
  double v = 0;
  const auto [p, ec] = std::from_chars(t.data(), end, v);
  if (p != end || ec == std::errc::invalid_argument) fail(field, "not a number (got " + shown(t) + ")");
  if (ec == std::errc::result_out_of_range) fail(field, "beyond the range of a double (got " + std::string(t) + ")");
  if (!std::isfinite(v)) fail(field, "must be a finite number (got " + std::string(t) + ")");
  if (v < 0) fail(field, "must not be negative (got " + std::string(t) + ")");
  return v;
}

int TraceReader::Impl::tokens(std::int64_t v, std::string_view field, bool input, bool zero_ok) const {
  const std::string got = " (got " + std::to_string(v) + ")";
  if (v < 0) fail(field, "must not be negative" + got);
  if (v > INT_MAX) fail(field, "beyond the int range" + got);
  if (input && v < 1 && !zero_ok) fail(field, "input tokens must be >= 1" + got);
  if (!input && v < 1 && !zero_ok) fail(field, "output tokens must be >= 1" + got);
  return static_cast<int>(v);
}

const nlohmann::json* TraceReader::Impl::find(const nlohmann::json& j, const char* key, bool required) const {
  const auto it = j.find(key);
  if (it == j.end()) {
    if (required) fail(key, "missing");
    return nullptr;
  }
  return &*it;
}

std::int64_t TraceReader::Impl::json_int(const nlohmann::json& v, std::string_view key) const {
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    fail(key, "beyond the int range (got " + json_value_text(v) + ")");
  if (!v.is_number_integer()) fail(key, "must be an integer (got " + json_value_text(v) + ")");
  return v.get<std::int64_t>();
}

double TraceReader::Impl::json_time(const nlohmann::json& v, std::string_view key) const {
  if (!v.is_number()) fail(key, "must be a number (got " + json_value_text(v) + ")");
  const double t = v.get<double>();
  if (!std::isfinite(t)) fail(key, "must be a finite number (got " + json_value_text(v) + ")");
  if (t < 0) fail(key, "must not be negative (got " + json_value_text(v) + ")");
  return t;
}

std::string TraceReader::Impl::json_string(const nlohmann::json& v, std::string_view key) const {
  if (!v.is_string()) fail(key, "must be a string (got " + json_value_text(v) + ")");
  return v.get<std::string>();
}

void TraceReader::Impl::json_hash_ids(const nlohmann::json& v, std::string_view key, std::string_view input_key,
                                      int input, std::vector<std::int64_t>& out) const {
  if (!v.is_array()) fail(key, "must be a list of non-negative integers (got " + json_value_text(v) + ")");
  out.reserve(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) {
    const auto& e = v[k];
    if (!e.is_number_integer() || (e.is_number_unsigned() && e.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) ||
        e.get<std::int64_t>() < 0)
      fail(key, "must be a list of non-negative integers (item " + std::to_string(k + 1) + " is " + json_value_text(e) + ")");
    out.push_back(e.get<std::int64_t>());
  }
  const std::int64_t want = (static_cast<std::int64_t>(input) + block_tokens - 1) / block_tokens;
  if (static_cast<std::int64_t>(out.size()) != want)
    fail(key, "has " + std::to_string(out.size()) + " ids, but " + std::string(input_key) + " " + std::to_string(input) +
                  " needs ceil(" + std::to_string(input) + " / " + std::to_string(block_tokens) + ") = " + std::to_string(want) +
                  " (one per " + std::to_string(block_tokens) + "-token block)");
}

bool TraceReader::Impl::parse_csv(TraceRecord& r) {
  std::string why;
  const int n = split_csv(line, fields, why);
  if (n < 0) fail("", why);
  const auto want = static_cast<int>(spec.columns.size());
  if (n < want)
    fail(spec.columns[static_cast<std::size_t>(n)],
         "missing (the line has " + std::to_string(n) + " of the header's " + std::to_string(want) + " columns)");
  if (n > want) fail("", "has " + std::to_string(n) + " columns, but the header has " + std::to_string(want));
  const auto col = [&](int c) -> const std::string& { return fields[static_cast<std::size_t>(c)]; };
  const auto column = [&](int c) { return spec.columns[static_cast<std::size_t>(c)]; };
  switch (spec.id) {
    case Format::azure: {
      WallClock w;
      const std::string err = parse_wall_clock(col(0), w);
      if (!err.empty()) fail(column(0), err);
      const bool decreased = have_first && (w.sec < prev_wall.sec || (w.sec == prev_wall.sec && w.ns < prev_wall.ns));
      if (!have_first) {
        first_wall = w;
        have_first = true;
      }
      prev_wall = w;
      const double since = static_cast<double>(w.sec - first_wall.sec) + static_cast<double>(w.ns - first_wall.ns) * 1e-9;
      const double recorded = static_cast<double>(w.sec) + static_cast<double>(w.ns) * 1e-9;
      if (!accept_time(r, decreased, since, recorded, column(0), col(0))) return false;
      r.input_tokens = tokens(csv_int(col(1), column(1)), column(1), true, false);
      r.output_tokens = tokens(csv_int(col(2), column(2)), column(2), false, false);
      return true;
    }
    case Format::burstgpt: {
      if (!accept_seconds(r, csv_time(col(0), column(0)), 1.0, column(0), std::string(trim(col(0))))) return false;
      r.group = col(1);
      r.output_tokens = tokens(csv_int(col(3), column(3)), column(3), false, true);
      r.failed = r.output_tokens == 0;
      r.input_tokens = tokens(csv_int(col(2), column(2)), column(2), true, r.failed);
      return true;
    }
    case Format::splitwise: {
      if (!accept_seconds(r, csv_time(col(3), column(3)), 1.0, column(3), std::string(trim(col(3))))) return false;
      r.group = col(2);
      r.input_tokens = tokens(csv_int(col(5), column(5)), column(5), true, false);
      r.output_tokens = tokens(csv_int(col(6), column(6)), column(6), false, false);
      return true;
    }
    default:
      return false;  // not a CSV format; parse_line does not call this
  }
}

bool TraceReader::Impl::parse_json(TraceRecord& r) {
  // Bound what one line may cost to parse before parsing it (as the dataset reader does).
  if (json_nesting_depth(line) > kMaxDatasetLineDepth)
    fail("", "nests objects or lists deeper than " + std::to_string(kMaxDatasetLineDepth) + " levels");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error&) {
    fail("", "not valid JSON");
  } catch (const nlohmann::json::exception& e) {  // out_of_range: a number beyond a double, e.g. 1e400
    fail("", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) fail("", "expected a JSON object (got " + json_value_text(j) + ")");
  const auto time = [&](const char* key, double seconds_per_unit) {
    const auto& v = *find(j, key, true);
    return accept_seconds(r, json_time(v, key), seconds_per_unit, key, json_value_text(v));
  };
  const auto count = [&](const char* key, bool input) { return tokens(json_int(*find(j, key, true), key), key, input, false); };
  const auto session = [&](const char* key, bool parent, bool required, std::int64_t& dst) {
    const auto* v = find(j, key, required);
    if (v == nullptr) return;
    dst = json_int(*v, key);
    if (dst < (parent ? -1 : 0)) fail(key, parent ? "must be -1 (a first turn) or a chat id >= 0 (got " + std::to_string(dst) + ")"
                                                  : "must not be negative (got " + std::to_string(dst) + ")");
  };
  const auto turn = [&](bool required) {
    const auto* v = find(j, "turn", required);
    if (v == nullptr) return;
    const std::int64_t t = json_int(*v, "turn");
    if (t < 0 || t > INT_MAX) fail("turn", "must be an integer in [0, " + std::to_string(INT_MAX) + "] (got " + std::to_string(t) + ")");
    r.turn = static_cast<int>(t);
  };
  switch (spec.id) {
    case Format::mooncake:
      if (!time("timestamp", 1e-3)) return false;
      r.input_tokens = count("input_length", true);
      r.output_tokens = count("output_length", false);
      json_hash_ids(*find(j, "hash_ids", true), "hash_ids", "input_length", r.input_tokens, r.hash_ids);
      return true;
    case Format::bailian:
      if (!time("timestamp", 1.0)) return false;
      session("chat_id", false, true, r.chat_id);
      session("parent_chat_id", true, true, r.parent_chat_id);
      r.input_tokens = count("input_length", true);
      r.output_tokens = count("output_length", false);
      r.group = json_string(*find(j, "type", true), "type");
      turn(true);
      json_hash_ids(*find(j, "hash_ids", true), "hash_ids", "input_length", r.input_tokens, r.hash_ids);
      return true;
    case Format::moesim:
      if (!time("arrival_s", 1.0)) return false;
      r.input_tokens = count("prompt_tokens", true);
      r.output_tokens = count("output_tokens", false);
      if (const auto* v = find(j, "domain", false)) r.group = json_string(*v, "domain");
      if (const auto* v = find(j, "hash_ids", false)) json_hash_ids(*v, "hash_ids", "prompt_tokens", r.input_tokens, r.hash_ids);
      session("chat_id", false, false, r.chat_id);
      session("parent_chat_id", true, false, r.parent_chat_id);
      turn(false);
      return true;
    default:
      return false;  // not a JSONL format; parse_line does not call this
  }
}

bool TraceReader::Impl::parse_line(TraceRecord& r) {
  r.line = src.lineno();
  return spec.columns.empty() ? parse_json(r) : parse_csv(r);
}

TraceReader::TraceReader(const std::filesystem::path& file, const std::string& format, TraceFilter filter,
                         int moesim_block_tokens) {
  const FormatSpec* it = find_format(format);
  const std::string name = file.string();
  if (it == nullptr) {
    std::vector<std::string_view> names;
    for (const auto& s : format_specs()) names.push_back(s.name);
    throw InputError({{name, 0, "format", "unknown trace format \"" + format + "\"; known: " + join(names, ", ")}});
  }
  if (!std::isfinite(filter.start_s) || filter.start_s < 0)
    throw InputError({{name, 0, "start_s", "must be a finite number >= 0 (got " + std::to_string(filter.start_s) + ")"}});
  if (!std::isfinite(filter.duration_s) || filter.duration_s < 0)
    throw InputError({{name, 0, "duration_s", "must be a finite number >= 0 (got " + std::to_string(filter.duration_s) + ")"}});
  if (filter.max_requests < 0)
    throw InputError({{name, 0, "max_requests", "must be >= 0 (got " + std::to_string(filter.max_requests) + ")"}});
  if (!filter.groups.empty() && it->group_source.empty())
    throw InputError({{name, 0, "groups",
                       "the " + format + " format has no group to filter on (burstgpt: Model, bailian: type, "
                                         "splitwise: application_id, moesim: domain)"}});
  if (it->block_tokens < 0 && moesim_block_tokens < 1)
    throw InputError({{name, 0, "hash_block_tokens", "must be >= 1 (got " + std::to_string(moesim_block_tokens) + ")"}});
  const int block = it->block_tokens < 0 ? moesim_block_tokens : it->block_tokens;
  impl_ = std::make_unique<Impl>(*it, open_regular_file(file, "trace"), name, std::move(filter), block);
  impl_->groups.insert(impl_->filter.groups.begin(), impl_->filter.groups.end());
  if (!it->columns.empty()) impl_->read_header();
}

TraceReader::~TraceReader() = default;
TraceReader::TraceReader(TraceReader&&) noexcept = default;
TraceReader& TraceReader::operator=(TraceReader&&) noexcept = default;

std::optional<TraceRecord> TraceReader::next() {
  Impl& m = *impl_;
  while (!m.done) {
    if (m.filter.max_requests > 0 && m.counters.kept >= m.filter.max_requests) break;
    if (!m.src.next(m.line)) break;
    ++m.counters.lines;
    if (trim(m.line).empty()) continue;
    TraceRecord r;
    if (!m.parse_line(r)) break;
    ++m.counters.records;
    if (r.time_s < m.filter.start_s) {
      ++m.counters.skipped_before_window;
      continue;
    }
    if (r.failed && !m.filter.keep_failed) {
      ++m.counters.dropped_failed;
      continue;
    }
    if (!m.groups.empty() && !m.groups.contains(r.group)) {
      ++m.counters.dropped_filtered;
      continue;
    }
    ++m.counters.kept;
    return r;
  }
  m.done = true;
  return std::nullopt;
}

int TraceReader::hash_block_tokens() const { return impl_->spec.block_tokens == 0 ? 0 : impl_->block_tokens; }

const TraceCounters& TraceReader::counters() const { return impl_->counters; }

const std::vector<std::string>& trace_formats() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& s : format_specs()) out.emplace_back(s.name);
    return out;
  }();
  return names;
}

TraceSummary summarize_trace(const std::filesystem::path& file, const std::string& format, const TraceFilter& filter,
                             int moesim_block_tokens) {
  TraceReader reader(file, format, filter, moesim_block_tokens);
  const bool grouped = !find_format(format)->group_source.empty();  // the reader has checked the name
  TraceSummary s;
  s.hash_block_tokens = reader.hash_block_tokens();
  std::unordered_set<std::int64_t> seen;
  std::unordered_map<std::string, std::size_t> group_index;
  while (auto r = reader.next()) {
    if (s.records == 0) s.first_s = r->time_s;
    s.last_s = r->time_s;
    ++s.records;
    s.failed += r->failed ? 1 : 0;
    s.input_tokens_sum += r->input_tokens;
    s.output_tokens_sum += r->output_tokens;
    s.max_input_tokens = std::max(s.max_input_tokens, r->input_tokens);
    s.max_output_tokens = std::max(s.max_output_tokens, r->output_tokens);
    const auto hour = static_cast<std::size_t>(std::floor((r->time_s - filter.start_s) / 3600.0));
    if (hour >= s.per_hour_records.size()) s.per_hour_records.resize(hour + 1, 0);
    ++s.per_hour_records[hour];
    if (grouped) {
      const auto [it, added] = group_index.try_emplace(r->group, s.group_records.size());
      if (added) s.group_records.emplace_back(r->group, 0);
      ++s.group_records[it->second].second;
    }
    // The leading run of ids an unbounded cache holds; the request computes at least one token.
    std::size_t run = 0;
    while (run < r->hash_ids.size() && seen.contains(r->hash_ids[run])) ++run;
    const double hit = static_cast<double>(run) * s.hash_block_tokens;
    s.unbounded_prefix_hit_tokens += std::min(hit, static_cast<double>(std::max(0, r->input_tokens - 1)));
    seen.insert(r->hash_ids.begin(), r->hash_ids.end());
  }
  s.distinct_hash_ids = static_cast<std::int64_t>(seen.size());
  s.counters = reader.counters();
  return s;
}

}  // namespace moesim
