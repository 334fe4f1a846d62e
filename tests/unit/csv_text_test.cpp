// CSV number fields (sim/metrics/csv_text.hpp): the integer fast path writes exactly the text of
// std::to_chars in fixed notation, or defers to it.
#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <random>
#include <string>

#include "sim/metrics/csv_text.hpp"

namespace moesim::test {
namespace {

std::string reference(double v, int precision) {
  char buf[400];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, precision);
  return std::string(buf, r.ptr);
}

std::string fast(double v, int precision) {
  std::string s;
  csv::fixed(s, v, precision);
  return s;
}

TEST(CsvText, fixed_fields_are_the_correctly_rounded_text_of_to_chars) {
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> mantissa(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-12, 16), precision(0, 9);
  int fast_path = 0;
  for (int i = 0; i < 2'000'000; ++i) {
    const double v = mantissa(rng) * std::pow(10.0, exponent(rng));
    const int p = precision(rng);
    ASSERT_EQ(fast(v, p), reference(v, p)) << v << " at " << p;
    std::string probe;
    fast_path += csv::detail::fixed_by_integer(probe, v, p) ? 1 : 0;
  }
  EXPECT_GT(fast_path, 1'000'000);  // the fast path takes most values
  // Ties and near-ties, signed zeros, values that round to zero, integers, limits of the path.
  for (double v : {0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 0.375, 1.0005, 2.675, 1e-7, -1e-7, -4e-10, 123456789.0, 1099511.627776,
                   1099511627775.0, 1099511627776.0, 3e15, -3e15, 0.1, 0.7, 1.0 / 3.0, 999.9999995, 4.35, 1e300,
                   std::nextafter(0.5, 1.0), std::nextafter(0.5, 0.0), std::numeric_limits<double>::denorm_min()})
    for (int p = 0; p <= 12; ++p) EXPECT_EQ(fast(v, p), reference(v, p)) << v << " at " << p;
  EXPECT_EQ(fast(std::nan(""), 3), reference(std::nan(""), 3));
  EXPECT_EQ(fast(INFINITY, 3), reference(INFINITY, 3));
}

}  // namespace
}  // namespace moesim::test
