#pragma once
// Fast CSV fields: fixed-precision doubles through std::to_chars (correctly rounded, the same text
// as fmt's "{:.Nf}", about twice as fast), integers, and separators. Output files are the
// simulator's main cost after the simulation itself on long runs.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace moesim::csv {

namespace detail {
inline constexpr double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/// The text std::to_chars(fixed, precision) gives, by integer arithmetic when that is provably the
/// same: x = v * 10^p is within half an ulp of the exact product (10^p <= 1e9 is exact), so the
/// nearest integer to x is the correctly rounded result unless x lies within an ulp of a tie.
/// Returns false (nothing written) otherwise.
inline bool fixed_by_integer(std::string& out, double v, int precision) {
  if (precision < 0 || precision > 9) return false;
  const double x = std::fabs(v) * kPow10[precision];
  if (!(x < 1099511627776.0)) return false;  // 2^40: the ulp of x stays below 2^-12 (also rejects NaN)
  const double whole = std::floor(x), frac = x - whole;
  if (std::fabs(frac - 0.5) <= 0x1p-11) return false;  // too close to a tie to decide here
  auto digits = static_cast<std::uint64_t>(whole) + (frac > 0.5 ? 1 : 0);
  char buf[32];
  char* end = buf + sizeof buf;
  char* p = end;
  for (int i = 0; i < precision; ++i) {
    *--p = static_cast<char>('0' + digits % 10);
    digits /= 10;
  }
  if (precision > 0) *--p = '.';
  do {
    *--p = static_cast<char>('0' + digits % 10);
    digits /= 10;
  } while (digits != 0);
  if (std::signbit(v)) *--p = '-';
  out.append(p, end);
  return true;
}
}  // namespace detail

inline void fixed(std::string& out, double v, int precision) {
  if (detail::fixed_by_integer(out, v, precision)) return;
  char buf[400];  // the largest double has 309 integer digits
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, precision);
  out.append(buf, r.ptr);
}

template <class Int>
inline void integer(std::string& out, Int v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

/// fixed() then a comma.
inline void fixed_c(std::string& out, double v, int precision) {
  fixed(out, v, precision);
  out += ',';
}
template <class Int>
inline void integer_c(std::string& out, Int v) {
  integer(out, v);
  out += ',';
}

}  // namespace moesim::csv
