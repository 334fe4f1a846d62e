#include "sim/metrics/report.hpp"

#include <fcntl.h>
#include <fmt/compile.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <stdexcept>

#include "models/common/stats.hpp"
#include "sim/metrics/csv_text.hpp"
#include "sim/metrics/timeseries.hpp"

namespace moesim {

namespace {

/// A NaN or infinity in a result is a broken model, not a number to print (JSON would show it as
/// null, which reads as "not applicable"): names the first one found by its key path.
void require_finite_json(const nlohmann::ordered_json& j, const std::string& path) {
  if (j.is_number_float()) {
    if (!std::isfinite(j.get<double>()))
      throw std::runtime_error(fmt::format("invariant broken: summary value {} is {} (a result must be a finite number)", path,
                                           j.get<double>()));
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) require_finite_json(v, path.empty() ? k : path + "." + k);
  } else if (j.is_array()) {
    for (std::size_t i = 0; i < j.size(); ++i) require_finite_json(j[i], fmt::format("{}[{}]", path, i));
  }
}

void require_finite(double x, const char* what, std::size_t index) {
  if (!std::isfinite(x)) throw std::runtime_error(fmt::format("invariant broken: {} {} is {} (not a finite number)", what, index, x));
}

}  // namespace

void check_invariants(const Scenario& sc, const RunResult& result) {
  const auto& rec = result.recorder;
  // Every number the outputs are made of is finite: GPU energy, power and temperatures, and
  // request times (the energy and token balances below cannot see a NaN: it compares false).
  for (std::size_t g = 0; g < result.gpus.size(); ++g) {
    const auto& st = result.gpus[g];
    require_finite(st.energy_j(), "energy (J) of GPU", g);
    require_finite(st.max_die_c(), "maximum die temperature (degC) of GPU", g);
    require_finite(st.peak_power_w(), "peak power (W) of GPU", g);
    for (const auto& smp : st.samples()) {
      require_finite(smp.power_w, "a power sample (W) of GPU", g);
      require_finite(smp.temp_die_c, "a die temperature sample (degC) of GPU", g);
      require_finite(smp.temp_sink_c, "a heatsink temperature sample (degC) of GPU", g);
    }
  }
  for (const auto& r : rec.requests()) {
    const auto id = static_cast<std::size_t>(r.request.id);
    require_finite(r.finish_s, "the finish time (s) of request", id);
    require_finite(r.first_token_s, "the first-token time (s) of request", id);
    require_finite(r.prefill_energy_j + r.decode_energy_j, "the energy (J) of request", id);
  }
  require_finite(result.end_time_s, "the simulated end time (s) of run", 0);
  std::int64_t prompt_sum = 0, decode_expected = 0;
  for (const auto& r : rec.requests()) {
    const auto& q = r.request;
    // Requests in = finished + rejected: a rejected request has its reason and was never served.
    if (r.rejected()) {
      if (r.first_scheduled_s >= 0 || r.tokens_emitted > 0 || r.finished())
        throw std::runtime_error(fmt::format("invariant broken: request {} was rejected ({}) but was also served", q.id,
                                             r.rejected_reason));
      continue;
    }
    if (!r.finished())
      throw std::runtime_error(fmt::format("invariant broken: request {} arrived at {:.6f} s but never finished", q.id, q.arrival_s));
    if (r.tokens_emitted != q.output_tokens)
      throw std::runtime_error(fmt::format("invariant broken: request {} emitted {} of {} output tokens", q.id,
                                           r.tokens_emitted, q.output_tokens));
    if (!(r.first_scheduled_s >= q.arrival_s && r.first_token_s > r.first_scheduled_s && r.finish_s >= r.first_token_s))
      throw std::runtime_error(fmt::format("invariant broken: request {} times out of order (arrival {:.9f}, first scheduled {:.9f}, "
                                           "first token {:.9f}, finish {:.9f})",
                                           q.id, q.arrival_s, r.first_scheduled_s, r.first_token_s, r.finish_s));
    prompt_sum += q.prompt_tokens;
    decode_expected += q.output_tokens - 1;
  }
  const StepTotals& steps = rec.step_totals();
  const std::int64_t prefill = steps.prefill_tokens, decode = steps.decode_tokens;
  const auto& sv = result.serving;
  if (prefill != prompt_sum + sv.recomputed_tokens - sv.prefix_hit_tokens)
    throw std::runtime_error(fmt::format("invariant broken: {} prompt tokens arrived, {} were recomputed after preemption and {} "
                                         "came from the prefix cache, but {} were prefilled",
                                         prompt_sum, sv.recomputed_tokens, sv.prefix_hit_tokens, prefill));
  if (decode != decode_expected - sv.recompute_emissions)
    throw std::runtime_error(fmt::format("invariant broken: {} decode tokens expected but {} were computed", decode_expected - sv.recompute_emissions,
                                         decode));
  // Token-expert assignments: every routed one was computed or dropped.
  {
    const PolicyTotals& p = result.policy;
    if (std::fabs(p.assignments - p.computed - p.dropped) > 0.5)
      throw std::runtime_error(fmt::format("invariant broken: {:.0f} token-expert assignments were routed but {:.0f} were computed "
                                           "and {:.0f} dropped", p.assignments, p.computed, p.dropped));
  }
  // Energy: what the GPUs consumed equals what steps, idle gaps, weight migrations and the tail account for.
  double gpu_energy = 0, request_energy = 0;
  const double step_energy = steps.energy_j;
  for (const auto& g : result.gpus) gpu_energy += g.energy_j();
  for (const auto& r : rec.requests()) request_energy += r.prefill_energy_j + r.decode_energy_j;
  const double accounted = step_energy + result.energy.idle_between_steps_j + result.energy.idle_after_last_step_j +
                           result.policy.migration_energy_j;
  if (std::fabs(accounted - gpu_energy) > 1e-9 * std::max(1.0, gpu_energy))
    throw std::runtime_error(fmt::format("invariant broken: GPUs consumed {:.9g} J but steps and idle time account for {:.9g} J",
                                         gpu_energy, accounted));
  if (std::fabs(request_energy - step_energy) > 1e-9 * std::max(1.0, step_energy))
    throw std::runtime_error(fmt::format("invariant broken: steps consumed {:.9g} J but requests were given {:.9g} J", step_energy,
                                         request_energy));
  // Energy = integral of power, when gpus.csv records every power change.
  if (sc.outputs.gpus_csv_interval_s == 0) {
    for (std::size_t g = 0; g < result.gpus.size(); ++g) {
      const auto& samples = result.gpus[g].samples();
      double integral = 0;
      for (std::size_t i = 0; i + 1 < samples.size(); ++i) integral += samples[i].power_w * (samples[i + 1].time_s - samples[i].time_s);
      if (!samples.empty()) integral += samples.back().power_w * (result.gpus[g].time_s() - samples.back().time_s);
      if (std::fabs(integral - result.gpus[g].energy_j()) > 1e-9 * std::max(1.0, result.gpus[g].energy_j()))
        throw std::runtime_error(fmt::format("invariant broken: GPU {} energy {:.9g} J differs from the integral of its power {:.9g} J",
                                             g, result.gpus[g].energy_j(), integral));
    }
  }
  const double routed = result.profiler->routed_assignments();
  const double expected = static_cast<double>(prefill + decode) * sc.model.spec.top_k * sc.model.spec.num_moe_layers();
  if (std::fabs(routed - expected) > 0.5)
    throw std::runtime_error(fmt::format("invariant broken: {} token-expert assignments expected but {} were computed", expected, routed));
}

namespace {

/// Mean and std in the values' own order, then the percentiles by selection (reorders the values).
void add_stats(nlohmann::ordered_json& j, const std::string& name, std::vector<double>& values_ms) {
  if (values_ms.empty()) {
    // No request to measure (all rejected, or no request with a second token): not applicable,
    // which 0 ms would misstate.
    for (const char* stat : {"mean_", "median_", "std_", "p90_", "p95_", "p99_"}) j[stat + name + "_ms"] = nullptr;
    return;
  }
  const double mean = mean_of(values_ms), std = stddev_of(values_ms);
  static constexpr double kPs[] = {50, 90, 95, 99};
  double pct[4];
  percentiles_in_place(values_ms, kPs, pct);
  j["mean_" + name + "_ms"] = mean;
  j["median_" + name + "_ms"] = pct[0];
  j["std_" + name + "_ms"] = std;
  j["p90_" + name + "_ms"] = pct[1];
  j["p95_" + name + "_ms"] = pct[2];
  j["p99_" + name + "_ms"] = pct[3];
}

double tpot_ms(const RequestRecord& r) {
  const int n = r.request.output_tokens;
  return n > 1 ? (r.finish_s - r.first_token_s) * 1e3 / (n - 1) : 0.0;
}

nlohmann::ordered_json finite_or_null(double x) {
  return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json imbalance_json(const ImbalanceTracker::Result& r, int filter, double step_mm_mean,
                                      double step_gpu_mm_mean) {
  nlohmann::ordered_json imb;
  imb["filter_max_tokens"] = filter;
  imb["steps"] = r.steps;
  imb["steps_in_filter"] = r.steps_in_filter;
  imb["cv_per_step_mean"] = r.cv_per_step_mean;
  imb["cv_aggregated"] = r.cv_aggregated;
  imb["cv_aggregated_all_steps"] = r.cv_aggregated_all;
  imb["max_over_mean_aggregated"] = r.max_over_mean_aggregated;
  imb["max_over_min_aggregated"] = finite_or_null(r.max_over_min_aggregated);
  imb["kl_from_uniform"] = r.kl_from_uniform;
  imb["entropy_bits"] = r.entropy_bits;
  imb["gini"] = r.gini;
  imb["balancedness"] = r.balancedness;
  imb["expert_max_over_mean_per_step_mean"] = step_mm_mean;
  imb["gpu_max_over_mean_per_step_mean"] = step_gpu_mm_mean;
  imb["utilization_cv"] = r.utilization_cv;
  imb["load_variance_trend"] = r.load_variance_trend;
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (std::size_t l = 0; l < r.layers.size(); ++l) {
    const auto& lr = r.layers[l];
    nlohmann::ordered_json j;
    j["moe_layer"] = l;
    j["cv_per_step_mean"] = lr.cv_per_step_mean;
    j["cv_aggregated"] = lr.aggregated.cv;
    j["max_over_mean"] = lr.aggregated.max_over_mean;
    j["max_over_min"] = finite_or_null(lr.aggregated.max_over_min);
    j["kl_from_uniform"] = lr.aggregated.kl_from_uniform;
    j["entropy_bits"] = lr.aggregated.entropy_bits;
    j["gini"] = lr.aggregated.gini;
    j["gpu_max_over_mean"] = lr.gpu_max_over_mean;
    layers.push_back(std::move(j));
  }
  imb["per_layer"] = std::move(layers);
  return imb;
}

}  // namespace

nlohmann::ordered_json make_summary(const Scenario& sc, const RunResult& result) {
  const auto& rec = result.recorder;
  std::vector<double> ttft, tpot, e2el, itl, queue;
  std::int64_t input_tokens = 0, output_tokens = 0;
  double first_arrival = 1e300, last_finish = 0;
  std::size_t finished = 0;
  std::map<std::string, std::size_t> rejected;
  for (const auto& r : rec.requests()) {
    if (r.rejected()) {
      rejected[r.rejected_reason] += 1;
      continue;
    }
    ++finished;
    ttft.push_back((r.first_token_s - r.request.arrival_s) * 1e3);
    if (r.request.output_tokens > 1) tpot.push_back(tpot_ms(r));
    e2el.push_back((r.finish_s - r.request.arrival_s) * 1e3);
    queue.push_back((r.first_scheduled_s - r.request.arrival_s) * 1e3);
    input_tokens += r.request.prompt_tokens;
    output_tokens += r.request.output_tokens;
    first_arrival = std::min(first_arrival, r.request.arrival_s);
    last_finish = std::max(last_finish, r.finish_s);
  }
  const StreamingSample& itl_s = rec.inter_token_latencies_s();
  if (itl_s.exact())
    for (double s : itl_s.values()) itl.push_back(s * 1e3);
  // vLLM's benchmark measures from sending the first request to the last completion.
  const double duration = finished == 0 ? 0.0 : last_finish - first_arrival;
  const auto completed = static_cast<double>(finished);

  nlohmann::ordered_json j;
  j["duration"] = duration;
  j["completed"] = finished;
  // Every request that arrived either completed or was rejected for a reason counted here.
  std::size_t rejected_total = 0;
  nlohmann::ordered_json reasons = nlohmann::ordered_json::object();
  for (const auto& [reason, count] : rejected) {
    reasons[reason] = count;
    rejected_total += count;
  }
  j["rejected"] = rejected_total;
  j["rejected_reasons"] = std::move(reasons);
  j["total_input_tokens"] = input_tokens;
  j["total_output_tokens"] = output_tokens;
  j["request_throughput"] = duration > 0 ? completed / duration : 0.0;
  j["output_throughput"] = duration > 0 ? static_cast<double>(output_tokens) / duration : 0.0;
  j["total_token_throughput"] = duration > 0 ? static_cast<double>(input_tokens + output_tokens) / duration : 0.0;
  // Goodput (vLLM's request_goodput): completed requests per second that met every objective set.
  if (sc.slo.ttft_ms > 0 || sc.slo.tpot_ms > 0) {
    std::size_t good = 0;
    for (const auto& r : rec.requests()) {
      if (r.rejected()) continue;
      const bool ttft_ok = sc.slo.ttft_ms <= 0 || (r.first_token_s - r.request.arrival_s) * 1e3 <= sc.slo.ttft_ms;
      const bool tpot_ok = sc.slo.tpot_ms <= 0 || tpot_ms(r) <= sc.slo.tpot_ms;
      good += ttft_ok && tpot_ok;
    }
    j["request_goodput"] = duration > 0 ? static_cast<double>(good) / duration : 0.0;
    j["requests_meeting_slo"] = good;
  }
  add_stats(j, "ttft", ttft);
  add_stats(j, "tpot", tpot);
  if (itl_s.exact()) {
    add_stats(j, "itl", itl);
  } else {
    // Past 1M inter-token latencies: from the streamed histogram (percentiles within 0.001%).
    j["mean_itl_ms"] = itl_s.mean() * 1e3;
    j["median_itl_ms"] = itl_s.percentile(50) * 1e3;
    j["std_itl_ms"] = itl_s.stddev() * 1e3;
    j["p90_itl_ms"] = itl_s.percentile(90) * 1e3;
    j["p95_itl_ms"] = itl_s.percentile(95) * 1e3;
    j["p99_itl_ms"] = itl_s.percentile(99) * 1e3;
  }
  add_stats(j, "e2el", e2el);
  add_stats(j, "queue", queue);  // arrival to first scheduled

  const StepTotals& totals = rec.step_totals();
  const double attention = totals.attention_s, dense = totals.dense_s, moe = totals.moe_s, lm_head = totals.lm_head_s, comm = totals.comm_s,
               dispatch = totals.dispatch_bytes, combine = totals.combine_bytes;
  const double n_steps = static_cast<double>(totals.steps);
  const double step_mm_mean = totals.steps > 0 ? totals.expert_load_max_over_mean / n_steps : 0.0;
  const double step_gpu_mm_mean = totals.steps > 0 ? totals.gpu_load_max_over_mean / n_steps : 0.0;
  nlohmann::ordered_json serving;
  serving["kv_block_size"] = result.serving.block_size;
  serving["kv_blocks_per_attention_rank"] = result.serving.kv_blocks_per_rank;
  serving["kv_tokens_per_attention_rank"] = result.serving.kv_blocks_per_rank * result.serving.block_size;
  serving["preemptions"] = result.serving.preemptions;
  serving["recomputed_tokens"] = result.serving.recomputed_tokens;
  serving["prefix_hit_tokens"] = result.serving.prefix_hit_tokens;
  serving["kv_transfers"] = result.serving.kv_transfers;
  serving["kv_transfer_bytes"] = result.serving.kv_transfer_bytes;
  serving["mean_kv_transfer_ms"] =
      result.serving.kv_transfers > 0 ? result.serving.kv_transfer_seconds * 1e3 / static_cast<double>(result.serving.kv_transfers) : 0.0;
  serving["attention_rank_max_over_mean"] = totals.steps == 0 ? 1.0 : totals.attention_rank_max_over_mean / n_steps;
  j["serving"] = serving;
  if (sc.inputs && !sc.inputs->trace.empty()) {
    // The replayed window beside what its own hash ids allow: an unbounded prefix cache that
    // keeps every block of every earlier request of the window (rejected ones included).
    const WorkloadInputs& in = *sc.inputs;
    nlohmann::ordered_json trace;
    trace["format"] = sc.workload.trace.format;
    trace["file"] = std::filesystem::path(sc.workload.trace.path).filename().string();
    trace["requests_in_window"] = in.trace.size();
    trace["lines_read"] = in.trace_counters.lines;
    trace["skipped_before_window"] = in.trace_counters.skipped_before_window;
    trace["dropped_failed"] = in.trace_counters.dropped_failed;
    trace["dropped_by_group"] = in.trace_counters.dropped_filtered;
    double prompt = 0;
    for (const auto& r : in.trace) prompt += r.input_tokens;
    trace["prompt_tokens"] = prompt;
    trace["hash_block_tokens"] = in.trace_hash_block_tokens;
    trace["unbounded_prefix_hit_tokens"] = in.trace_unbounded_prefix_hit_tokens;
    trace["unbounded_prefix_hit_rate"] = prompt > 0 ? in.trace_unbounded_prefix_hit_tokens / prompt : 0.0;
    trace["prefix_hit_rate"] = prompt > 0 ? static_cast<double>(result.serving.prefix_hit_tokens) / prompt : 0.0;
    j["trace"] = trace;
  }
  {
    // The busiest interval of timeseries.csv: what a trace's peak asks of the deployment.
    const TimeSeries ts = time_series(result);
    nlohmann::ordered_json series;
    series["interval_s"] = ts.interval_s;
    series["intervals"] = ts.rows.size();
    double arrivals = 0, output = 0, power = 0, prompt = 0;
    for (const auto& r : ts.rows) {
      if (r.seconds <= 0) continue;
      arrivals = std::max(arrivals, static_cast<double>(r.arrivals) / r.seconds);
      prompt = std::max(prompt, static_cast<double>(r.arrived_prompt_tokens) / r.seconds);
      output = std::max(output, static_cast<double>(r.engine.output_tokens) / r.seconds);
      power = std::max(power, r.power_w);
    }
    series["peak_arrival_rate_per_s"] = arrivals;
    series["peak_arrived_prompt_tokens_per_s"] = prompt;
    series["peak_output_tokens_per_s"] = output;
    series["peak_interval_power_w"] = power;
    j["timeseries"] = series;
  }
  nlohmann::ordered_json routing;
  routing["policy"] = sc.routing.policy;
  routing["placement"] = sc.routing.eplb_placement() ? "eplb" : "contiguous";
  routing["replica_selection"] = sc.routing.replica_selection;
  routing["num_redundant_experts"] = sc.routing.eplb_placement() ? sc.routing.num_redundant_experts : 0;
  {
    const PolicyTotals& p = result.policy;
    const double a = p.assignments;
    routing["token_expert_assignments"] = a;
    routing["computed_assignments"] = p.computed;
    routing["dropped_assignments"] = p.dropped;
    routing["dropped_fraction"] = a > 0 ? p.dropped / a : 0.0;
    routing["rerouted_fraction"] = a > 0 ? p.rerouted / a : 0.0;
    routing["selection_divergence"] = a > 0 ? p.changed / a : 0.0;
    nlohmann::ordered_json reb;
    reb["count"] = result.serving.rebalances;
    reb["migration"] = sc.routing.migration;
    reb["weight_moves"] = p.migrations;
    reb["bytes_moved"] = p.migration_bytes;
    reb["seconds"] = p.migration_seconds;
    reb["analytic_seconds"] = p.migration_analytic_seconds;
    reb["energy_j"] = p.migration_energy_j;
    routing["rebalances"] = reb;
    nlohmann::ordered_json before = nlohmann::ordered_json::array(), after = nlohmann::ordered_json::array();
    double mb = 0, ma = 0;
    for (std::size_t l = 0; l < p.layer_gpu_mom_after.size(); ++l) {
      const double b = p.layer_gpu_mom_before[l] / static_cast<double>(p.ep_steps), x = p.layer_gpu_mom_after[l] / static_cast<double>(p.ep_steps);
      before.push_back(std::round(b * 1e6) / 1e6);
      after.push_back(std::round(x * 1e6) / 1e6);
      mb += b;
      ma += x;
    }
    const auto layers = static_cast<double>(p.layer_gpu_mom_after.size());
    routing["gpu_load_max_over_mean_before"] = layers > 0 ? mb / layers : 1.0;
    routing["gpu_load_max_over_mean_after"] = layers > 0 ? ma / layers : 1.0;
    routing["per_layer_gpu_load_max_over_mean"] = {{"before", before}, {"after", after}};
  }
  j["routing"] = routing;
  j["imbalance"] = imbalance_json(result.profiler->tracker().result(), sc.outputs.imbalance_filter_max_tokens, step_mm_mean, step_gpu_mm_mean);
  if (sc.model.spec.num_moe_layers() == 0 || sc.model.spec.num_experts == 0 || totals.steps == 0) {
    // A dense model (or a run that never ran a step: every request rejected) routes nothing:
    // expert-load statistics are not applicable (null), with the same keys as a MoE run's so
    // that a sweep over both has one set of columns.
    for (auto& [k, v] : j["imbalance"].items())
      if (v.is_number_float()) v = nullptr;
  }

  nlohmann::ordered_json time;
  time["attention_s"] = attention;
  time["dense_ffn_s"] = dense;
  time["moe_s"] = moe;
  time["lm_head_s"] = lm_head;
  time["comm_s"] = comm;
  time["dispatch_bytes"] = dispatch;
  time["combine_bytes"] = combine;
  j["step_time_breakdown"] = time;

  {
    double total = 0, peak = 0, max_temp = 0, max_inlet = -1e300, prefill_j = 0, decode_j = 0;
    double throttled_sw = 0, throttled_hw = 0;
    nlohmann::ordered_json per_gpu = nlohmann::ordered_json::array();
    for (std::size_t g = 0; g < result.gpus.size(); ++g) {
      const auto& st = result.gpus[g];
      total += st.energy_j();
      peak = std::max(peak, st.peak_power_w());
      max_temp = std::max(max_temp, st.max_die_c());
      max_inlet = std::max(max_inlet, st.max_inlet_c());
      throttled_sw += st.throttled_s(ThrottleState::sw_slowdown);
      throttled_hw += st.throttled_s(ThrottleState::hw_slowdown);
      nlohmann::ordered_json gj;
      gj["gpu"] = g;
      gj["energy_j"] = st.energy_j();
      gj["avg_power_w"] = result.end_time_s > 0 ? st.energy_j() / result.end_time_s : 0.0;
      gj["peak_power_w"] = st.peak_power_w();
      gj["max_temp_c"] = st.max_die_c();
      gj["max_inlet_c"] = st.max_inlet_c();
      gj["throttled_sw_s"] = st.throttled_s(ThrottleState::sw_slowdown);
      gj["throttled_hw_s"] = st.throttled_s(ThrottleState::hw_slowdown);
      per_gpu.push_back(std::move(gj));
    }
    for (const auto& r : rec.requests()) {
      prefill_j += r.prefill_energy_j;
      decode_j += r.decode_energy_j;
    }
    nlohmann::ordered_json e;
    e["total_energy_j"] = total;
    e["joules_per_token"] = input_tokens + output_tokens > 0 ? total / static_cast<double>(input_tokens + output_tokens) : 0.0;
    e["joules_per_output_token"] = output_tokens > 0 ? total / static_cast<double>(output_tokens) : 0.0;
    e["prefill_joules_per_prompt_token"] = input_tokens > 0 ? prefill_j / static_cast<double>(input_tokens) : 0.0;
    e["decode_joules_per_output_token"] = output_tokens > 0 ? decode_j / static_cast<double>(output_tokens) : 0.0;
    e["avg_power_w"] = result.end_time_s > 0 && !result.gpus.empty() ? total / result.end_time_s / static_cast<double>(result.gpus.size()) : 0.0;
    e["peak_power_w"] = peak;
    e["max_temp_c"] = max_temp;
    e["max_inlet_c"] = result.gpus.empty() ? sc.thermal.inlet_c : max_inlet;
    e["throttled_s"] = throttled_sw + throttled_hw;
    e["power_cap_w"] = effective_cap_w(sc);
    e["step_energy_j"] = prefill_j + decode_j;
    // The idle energy is what the GPUs consumed minus what the steps account for: a run without
    // idle time leaves a rounding remainder of either sign, shown as the zero it is (within the
    // invariant's 1e-9 relative tolerance).
    const double idle = result.energy.idle_between_steps_j + result.energy.idle_after_last_step_j;
    e["idle_energy_j"] = std::fabs(idle) <= 1e-9 * std::max(1.0, total) ? 0.0 : idle;
    e["migration_energy_j"] = result.policy.migration_energy_j;
    e["sync_wait_energy_j"] = result.energy.sync_wait_j;
    e["imbalance_energy_j"] = result.energy.imbalance_j;
    e["per_gpu"] = std::move(per_gpu);
    j["energy"] = std::move(e);
  }

  nlohmann::ordered_json run;
  run["scenario"] = sc.name;
  run["seed"] = sc.seed;
  run["model"] = sc.model.card;
  run["gpu"] = sc.cluster.gpu.card;
  run["num_gpus"] = sc.cluster.num_gpus();
  run["mode"] = sc.parallel.mode == ParallelMode::tp ? "tp" : "ep";
  run["tp"] = sc.parallel.tp;
  run["ep"] = sc.parallel.ep;
  run["dp"] = sc.parallel.dp;
  run["network_fidelity"] = sc.network.fidelity == NetworkFidelity::flow ? "flow" : "analytic";
  run["steps"] = rec.num_steps();
  run["simulated_end_s"] = result.end_time_s;
  j["run"] = run;
  require_finite_json(j, "");
  return j;
}

std::string requests_csv(const RunResult& result, const std::vector<std::string>& domain_names) {
  std::string out =
      "request_id,instance,arrival_s,first_scheduled_s,first_token_s,finish_s,prompt_tokens,output_tokens,"
      "queue_ms,ttft_ms,tpot_ms,e2e_ms,energy_j,prefill_energy_j,decode_energy_j,domain\n";
  for (const auto& r : result.recorder.requests()) {
    if (r.rejected()) continue;  // counted by reason in summary.json
    const auto& q = r.request;
    using namespace csv;
    integer_c(out, q.id);
    integer_c(out, r.instance);
    for (double t : {q.arrival_s, r.first_scheduled_s, r.first_token_s, r.finish_s}) fixed_c(out, t, 9);
    integer_c(out, q.prompt_tokens);
    integer_c(out, q.output_tokens);
    for (double v : {(r.first_scheduled_s - q.arrival_s) * 1e3, (r.first_token_s - q.arrival_s) * 1e3, tpot_ms(r),
                     (r.finish_s - q.arrival_s) * 1e3, r.prefill_energy_j + r.decode_energy_j, r.prefill_energy_j})
      fixed_c(out, v, 6);
    fixed_c(out, r.decode_energy_j, 6);
    if (q.domain >= 0 && static_cast<std::size_t>(q.domain) < domain_names.size()) out += domain_names[static_cast<std::size_t>(q.domain)];
    out += '\n';
  }
  return out;
}

std::string steps_csv(const RunResult& result) {
  std::string out = steps_csv_header();
  for (const auto& s : result.recorder.steps()) append_steps_csv_row(out, s);
  return out;
}

std::string gpus_csv(const RunResult& result) {
  struct Row {
    double t;
    std::size_t gpu;
    const GpuSample* s;
    double power_w;  ///< mean power over the interval to the GPU's next row
  };
  std::vector<Row> rows;
  for (std::size_t g = 0; g < result.gpus.size(); ++g) {
    const auto& st = result.gpus[g];
    const std::vector<double> mean = interval_mean_power_w(st.samples(), st.time_s(), st.energy_j());
    for (std::size_t i = 0; i < st.samples().size(); ++i) rows.push_back({st.samples()[i].time_s, g, &st.samples()[i], mean[i]});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.t < b.t || (a.t == b.t && a.gpu < b.gpu); });
  std::string out = "time_s,gpu,power_w,temp_die_c,temp_sink_c,clock_mhz,throttle_state,compute_util,mem_util,inlet_c\n";
  const auto row = [&out](double t, std::size_t gpu, double power, double die, double sink, double clock, ThrottleState state,
                          double uc, double um, double inlet) {
    using namespace csv;
    fixed_c(out, t, 9);
    integer_c(out, gpu);
    fixed_c(out, power, 4);
    fixed_c(out, die, 4);
    fixed_c(out, sink, 4);
    fixed_c(out, clock, 0);
    out += to_string(state);
    out += ',';
    fixed_c(out, uc, 4);
    fixed_c(out, um, 4);
    fixed(out, inlet, 4);
    out += '\n';
  };
  out.reserve(rows.size() * 80);
  for (const auto& r : rows)
    row(r.t, r.gpu, r.power_w, r.s->temp_die_c, r.s->temp_sink_c, r.s->clock_mhz, r.s->state, r.s->compute_util, r.s->memory_util,
        r.s->inlet_c);
  // The last state of every GPU holds until the end of the run.
  for (std::size_t g = 0; g < result.gpus.size(); ++g) {
    const auto& st = result.gpus[g];
    if (st.samples().empty()) continue;
    const auto& last = st.samples().back();
    if (last.time_s < st.time_s())
      row(st.time_s(), g, st.power_w(), st.die_c(), st.sink_c(), st.clock_mhz(), st.state(), last.compute_util, last.memory_util,
          st.inlet_c());
  }
  return out;
}

void write_run_outputs(const std::filesystem::path& dir, const Scenario& sc, const RunResult& result) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create output directory " + dir.string() + ": " + ec.message());
  // The summary first: a result that cannot be summarised (a NaN) writes nothing.
  const std::string summary = make_summary(sc, result).dump(2) + "\n";
  // summary.json marks a complete set: a previous run's must not vouch for files half replaced.
  if (!std::filesystem::remove(dir / "summary.json", ec) && ec)
    throw std::runtime_error("cannot remove the previous " + (dir / "summary.json").string() + ": " + ec.message());
  // Each file is written whole (atomically) and freed before the next is rendered; summary.json,
  // written last, marks the set complete.
  {
    std::map<std::string, std::string> profiler_files;
    result.profiler->render(profiler_files, sc.model.card);
    for (const auto& [rel, content] : profiler_files) {
      const auto path = dir / rel;
      std::filesystem::create_directories(path.parent_path(), ec);
      if (ec) throw std::runtime_error("cannot create " + path.parent_path().string() + ": " + ec.message());
      write_file_atomically(path, content);
    }
  }
  if (result.trace) write_file_atomically(dir / "trace.json", result.trace->render());
  write_file_atomically(dir / "gpus.csv", gpus_csv(result));
  write_file_atomically(dir / "config.resolved.yaml", resolved_yaml(sc));
  write_file_atomically(dir / "requests.csv", requests_csv(result, sc.inputs ? sc.inputs->corpus.names : std::vector<std::string>{}));
  write_file_atomically(dir / "timeseries.csv", timeseries_csv(time_series(result)));
  if (result.recorder.steps_streamed()) result.recorder.commit_steps_csv(dir / "steps.csv");
  else write_file_atomically(dir / "steps.csv", steps_csv(result));
  write_file_atomically(dir / "summary.json", summary);
}

}  // namespace moesim
