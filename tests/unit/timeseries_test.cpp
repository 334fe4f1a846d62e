// The engine-side time bins: the width a run starts with, and doubling that keeps every token.
#include <gtest/gtest.h>

#include "sim/metrics/timeseries.hpp"

namespace moesim {
namespace {

TEST(TimeSeries, the_first_width_is_the_1_2_5_step_that_splits_the_arrival_span_into_at_most_the_target) {
  EXPECT_DOUBLE_EQ(EngineTimeBins::initial_width_s(0), 0.01);      // nothing known: a burst or a closed loop
  EXPECT_DOUBLE_EQ(EngineTimeBins::initial_width_s(100), 0.2);     // 100 s / 500 = 0.2
  EXPECT_DOUBLE_EQ(EngineTimeBins::initial_width_s(86400), 200);   // a day: 172.8 s rounds up to 200
  EXPECT_DOUBLE_EQ(EngineTimeBins::initial_width_s(1200), 5);      // 2.4 -> 5
  EXPECT_DOUBLE_EQ(EngineTimeBins::initial_width_s(0.01), 0.001);  // never below 1 ms
}

TEST(TimeSeries, doubling_the_width_merges_neighbours_and_loses_no_token) {
  EngineTimeBins bins(1.0);
  std::int64_t prefill = 0, hits = 0, tokens = 0;
  for (int i = 0; i < 20000; ++i) {
    const double t = 0.37 * i;  // 7400 s: past kMaxBins one-second bins, so the width doubles
    bins.add_step(t, i % 7, i % 3);
    bins.add_output_token(t);
    prefill += i % 7;
    hits += i % 3;
    tokens += 1;
  }
  EXPECT_DOUBLE_EQ(bins.width_s(), 8.0);
  EXPECT_LE(bins.bins().size(), EngineTimeBins::kMaxBins);
  std::int64_t p = 0, h = 0, o = 0;
  for (const auto& b : bins.bins()) p += b.prefill_tokens, h += b.prefix_hit_tokens, o += b.output_tokens;
  EXPECT_EQ(p, prefill);
  EXPECT_EQ(h, hits);
  EXPECT_EQ(o, tokens);
  // The first 8 s hold the steps at 0, 0.37, ..., 7.77 s: 22 of them.
  EXPECT_EQ(bins.bins()[0].output_tokens, 22);
}

TEST(TimeSeries, a_fixed_width_is_never_doubled) {
  EngineTimeBins bins(0.5, /*fixed=*/true);
  bins.add_output_token(1999.9);
  EXPECT_DOUBLE_EQ(bins.width_s(), 0.5);
  EXPECT_EQ(bins.bins().size(), 4000u);
  EXPECT_LT(bins.overflow_s(), 0);
}

}  // namespace
}  // namespace moesim
