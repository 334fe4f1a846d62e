#pragma once
// Fast CSV fields: fixed-precision doubles through std::to_chars (correctly rounded, the same text
// as fmt's "{:.Nf}", about twice as fast), integers, and separators. Output files are the
// simulator's main cost after the simulation itself on long runs.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace moesim::csv {

inline void fixed(std::string& out, double v, int precision) {
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
