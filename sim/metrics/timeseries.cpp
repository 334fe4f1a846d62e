#include "sim/metrics/timeseries.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "models/common/stats.hpp"
#include "sim/actors/simulation.hpp"
#include "sim/metrics/csv_text.hpp"

namespace moesim {

double EngineTimeBins::initial_width_s(double span_s) {
  if (!(span_s > 0) || !std::isfinite(span_s)) return 0.01;
  const double want = span_s / static_cast<double>(kTargetBins);
  double decade = std::pow(10.0, std::floor(std::log10(want)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * decade >= want * (1 - 1e-12)) return std::max(1e-3, m * decade);
  return std::max(1e-3, 10 * decade);
}

EngineBin& EngineTimeBins::at(double t_s) {
  fit(t_s);
  const double index = std::max(0.0, t_s) / width_s_;
  if (index >= static_cast<double>(kMaxFixedBins)) {
    overflow_s_ = std::max(overflow_s_, t_s);
    return discard_;
  }
  const auto i = static_cast<std::size_t>(index);
  if (i >= bins_.size()) bins_.resize(i + 1);
  return bins_[i];
}

void EngineTimeBins::add_step(double end_s, std::int64_t prefill_tokens, std::int64_t prefix_hit_tokens) {
  EngineBin& b = at(end_s);
  b.prefill_tokens += prefill_tokens;
  b.prefix_hit_tokens += prefix_hit_tokens;
}

void EngineTimeBins::add_output_token(double t_s) { at(t_s).output_tokens += 1; }

void EngineTimeBins::fit(double end_s) {
  if (fixed_) return;
  while (std::max(0.0, end_s) / width_s_ >= static_cast<double>(kMaxBins)) double_width();
}

void EngineTimeBins::double_width() {
  std::vector<EngineBin> merged((bins_.size() + 1) / 2);
  for (std::size_t i = 0; i < bins_.size(); ++i) {
    EngineBin& m = merged[i / 2];
    m.prefill_tokens += bins_[i].prefill_tokens;
    m.prefix_hit_tokens += bins_[i].prefix_hit_tokens;
    m.output_tokens += bins_[i].output_tokens;
  }
  bins_ = std::move(merged);
  width_s_ *= 2;
}

namespace {

/// Energy of a GPU from t = 0 to each of `n + 1` boundaries k·w (capped at the GPU's own end):
/// each sample interval at its mean power, so the last boundary gives the GPU's energy exactly.
std::vector<double> energy_at_boundaries(const GpuPowerState& gpu, double w, std::size_t n) {
  const auto& s = gpu.samples();
  const std::vector<double> mean = interval_mean_power_w(s, gpu.time_s(), gpu.energy_j());
  std::vector<double> out(n + 1, 0.0);
  std::size_t i = 0;
  for (std::size_t k = 0; k <= n; ++k) {
    const double t = std::min(static_cast<double>(k) * w, gpu.time_s());
    while (i + 1 < s.size() && s[i + 1].time_s <= t) ++i;
    if (s.empty() || t < s[0].time_s) continue;
    out[k] = s[i].energy_j + mean[i] * (t - s[i].time_s);
  }
  if (!s.empty() && gpu.time_s() <= static_cast<double>(n) * w) out[n] = gpu.energy_j();
  return out;
}

}  // namespace

TimeSeries time_series(const RunResult& result) {
  const auto& rec = result.recorder;
  EngineTimeBins engine = rec.engine_bins();
  double end = result.end_time_s;
  for (const auto& r : rec.requests()) end = std::max({end, r.request.arrival_s, r.finish_s});
  engine.fit(end);
  const double w = engine.width_s();
  if (engine.fixed() && (engine.overflow_s() >= 0 || end / w >= static_cast<double>(EngineTimeBins::kMaxFixedBins)))
    throw std::runtime_error(fmt::format("outputs.timeseries_interval_s = {} s would give more than {} rows over this {:.6g} s run; "
                                         "choose an interval of at least {:.3g} s, or 0 for an automatic one",
                                         w, EngineTimeBins::kMaxFixedBins, end,
                                         end / static_cast<double>(EngineTimeBins::kMaxFixedBins)));
  const auto n = static_cast<std::size_t>(end / w) + 1;
  const auto bin = [w, n](double t) { return std::min(n - 1, static_cast<std::size_t>(std::max(0.0, t) / w)); };

  TimeSeries ts;
  ts.interval_s = w;
  ts.rows.resize(n);
  std::vector<std::int64_t> admitted(n, 0), scheduled(n, 0), finished(n, 0);
  std::vector<std::vector<double>> ttft(n), tpot(n);
  for (const auto& r : rec.requests()) {
    const auto& q = r.request;
    auto& row = ts.rows[bin(q.arrival_s)];
    row.arrivals += 1;
    row.arrived_prompt_tokens += q.prompt_tokens;
    if (r.rejected()) continue;
    admitted[bin(q.arrival_s)] += 1;
    if (r.first_scheduled_s >= 0) scheduled[bin(r.first_scheduled_s)] += 1;
    if (r.finished()) {
      finished[bin(r.finish_s)] += 1;
      ttft[bin(q.arrival_s)].push_back((r.first_token_s - q.arrival_s) * 1e3);
      if (q.output_tokens > 1) tpot[bin(q.arrival_s)].push_back((r.finish_s - r.first_token_s) * 1e3 / (q.output_tokens - 1));
    }
  }
  std::vector<std::vector<double>> energy;
  energy.reserve(result.gpus.size());
  for (const auto& g : result.gpus) energy.push_back(energy_at_boundaries(g, w, n));
  std::vector<std::size_t> sample(result.gpus.size(), 0);
  std::vector<double> last_die(result.gpus.size(), 0.0);
  std::int64_t arrived = 0, started = 0, done = 0;
  for (std::size_t k = 0; k < n; ++k) {
    auto& row = ts.rows[k];
    row.time_s = static_cast<double>(k) * w;
    row.seconds = std::max(0.0, std::min(static_cast<double>(k + 1) * w, end) - row.time_s);
    if (k < engine.bins().size()) row.engine = engine.bins()[k];
    row.finished = finished[k];
    arrived += admitted[k];
    started += scheduled[k];
    done += finished[k];
    row.waiting = arrived - started;
    row.in_flight = arrived - done;
    if (!ttft[k].empty()) {
      row.mean_ttft_ms = mean_of(ttft[k]);
      row.p99_ttft_ms = percentile_of(ttft[k], 99);
    }
    if (!tpot[k].empty()) row.mean_tpot_ms = mean_of(tpot[k]);
    double joules = 0, die = 0;
    for (std::size_t g = 0; g < result.gpus.size(); ++g) {
      joules += energy[g][k + 1] - energy[g][k];
      const auto& s = result.gpus[g].samples();
      double hottest = last_die[g];
      const double t1 = static_cast<double>(k + 1) * w;
      while (sample[g] < s.size() && s[sample[g]].time_s < t1) {
        hottest = std::max(hottest, s[sample[g]].temp_die_c);
        last_die[g] = s[sample[g]].temp_die_c;
        ++sample[g];
      }
      die = std::max(die, hottest);
    }
    row.power_w = row.seconds > 0 ? joules / row.seconds : 0.0;
    row.max_die_c = die;
  }
  return ts;
}

std::string timeseries_csv(const TimeSeries& series) {
  using namespace csv;
  std::string out =
      "time_s,interval_s,arrivals,arrival_rate_per_s,arrived_prompt_tokens_per_s,prefill_tokens_per_s,"
      "prefix_hit_tokens_per_s,prefix_hit_rate,output_tokens_per_s,finished,waiting,in_flight,mean_ttft_ms,p99_ttft_ms,"
      "mean_tpot_ms,power_w,max_die_c\n";
  const auto optional_ms = [&out](double v) {
    if (v >= 0) fixed(out, v, 6);
    out += ',';
  };
  for (const auto& r : series.rows) {
    const double per_s = r.seconds > 0 ? 1.0 / r.seconds : 0.0;
    fixed_c(out, r.time_s, 6);
    fixed_c(out, r.seconds, 6);
    integer_c(out, r.arrivals);
    fixed_c(out, static_cast<double>(r.arrivals) * per_s, 6);
    fixed_c(out, static_cast<double>(r.arrived_prompt_tokens) * per_s, 3);
    fixed_c(out, static_cast<double>(r.engine.prefill_tokens) * per_s, 3);
    fixed_c(out, static_cast<double>(r.engine.prefix_hit_tokens) * per_s, 3);
    const auto prompt_positions = r.engine.prefill_tokens + r.engine.prefix_hit_tokens;
    fixed_c(out, prompt_positions > 0 ? static_cast<double>(r.engine.prefix_hit_tokens) / static_cast<double>(prompt_positions) : 0.0, 6);
    fixed_c(out, static_cast<double>(r.engine.output_tokens) * per_s, 3);
    integer_c(out, r.finished);
    integer_c(out, r.waiting);
    integer_c(out, r.in_flight);
    optional_ms(r.mean_ttft_ms);
    optional_ms(r.p99_ttft_ms);
    optional_ms(r.mean_tpot_ms);
    fixed_c(out, r.power_w, 3);
    fixed(out, r.max_die_c, 3);
    out += '\n';
  }
  return out;
}

}  // namespace moesim
