#pragma once
// A run as time series (timeseries.csv): per interval, the requests that arrived and their
// prompt tokens, the tokens the engines computed, served from the prefix cache and emitted, the
// queue at the interval's end, the latency of the interval's arrivals, and the GPUs' power and
// hottest die. A replayed trace's shape (its arrivals and tokens per second, its prefix hits)
// stands beside the simulated latency and power.
//
// The engine-side sums (prefill and prefix-hit tokens by step end, output tokens by emission time)
// are gathered while the run goes, in bins of one width that doubles, merging neighbours, whenever
// the run outgrows kMaxBins: a day-long trace keeps at most kMaxBins of them. The first width is
// the 1-2-5 x 10^k step that splits the requests' known arrival span into about kTargetBins
// (0.01 s when no arrival time is known beforehand: a burst or a closed loop), or the scenario's
// outputs.timeseries_interval_s, which is kept however long the run. The rest is
// computed at the end from the requests and the GPUs' power samples, in the final width.
#include <cstdint>
#include <string>
#include <vector>

namespace moesim {

struct EngineBin {
  std::int64_t prefill_tokens = 0;     ///< prompt positions computed (recomputation included)
  std::int64_t prefix_hit_tokens = 0;  ///< prompt positions the prefix cache covered
  std::int64_t output_tokens = 0;      ///< tokens emitted to clients
};

class EngineTimeBins {
 public:
  static constexpr std::size_t kMaxBins = 1000;
  static constexpr std::size_t kTargetBins = 500;
  static constexpr std::size_t kMaxFixedBins = 10'000'000;  ///< a fixed width finer than this over a run is refused

  /// The first width for a run whose arrivals span `span_s` (0: unknown).
  [[nodiscard]] static double initial_width_s(double span_s);

  /// `fixed`: the width the scenario asked for (outputs.timeseries_interval_s), never doubled.
  explicit EngineTimeBins(double width_s = 0.01, bool fixed = false) : width_s_(width_s), fixed_(fixed) {}
  void add_step(double end_s, std::int64_t prefill_tokens, std::int64_t prefix_hit_tokens);
  void add_output_token(double t_s);
  /// Doubles the width until a run ending at `end_s` fits in kMaxBins bins (unless fixed).
  void fit(double end_s);

  [[nodiscard]] double width_s() const { return width_s_; }
  [[nodiscard]] bool fixed() const { return fixed_; }
  /// The latest time seen past kMaxFixedBins fixed bins (then nothing past them was kept), or -1.
  [[nodiscard]] double overflow_s() const { return overflow_s_; }
  [[nodiscard]] const std::vector<EngineBin>& bins() const { return bins_; }

 private:
  EngineBin& at(double t_s);
  void double_width();

  double width_s_;
  bool fixed_ = false;
  double overflow_s_ = -1;
  EngineBin discard_;
  std::vector<EngineBin> bins_;
};

struct RunResult;

/// One row per interval [time_s, time_s + interval_s) from t = 0 to the run's end.
struct TimeSeries {
  double interval_s = 0;
  struct Row {
    double time_s = 0;
    std::int64_t arrivals = 0;           ///< requests that arrived (refused ones included)
    std::int64_t arrived_prompt_tokens = 0;
    EngineBin engine;
    std::int64_t finished = 0;
    std::int64_t waiting = 0;            ///< admitted, arrived and never scheduled, at the interval's end
    std::int64_t in_flight = 0;          ///< admitted, arrived and not finished, at the interval's end
    double mean_ttft_ms = -1, p99_ttft_ms = -1, mean_tpot_ms = -1;  ///< of the interval's arrivals; -1: none
    double power_w = 0;                  ///< all GPUs, mean over the interval
    double max_die_c = 0;                ///< hottest GPU die sample in the interval (or the last before it)
    double seconds = 0;                  ///< the interval's length inside the run (the last may be shorter)
  };
  std::vector<Row> rows;
};

[[nodiscard]] TimeSeries time_series(const RunResult& result);
/// timeseries.csv: rates per second over each interval; an interval without arrivals leaves its
/// latency fields empty.
[[nodiscard]] std::string timeseries_csv(const TimeSeries& series);

}  // namespace moesim
