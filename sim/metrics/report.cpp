#include "sim/metrics/report.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <stdexcept>

#include "models/common/stats.hpp"

namespace moesim {

void check_invariants(const Scenario& sc, const RunResult& result) {
  const auto& rec = result.recorder;
  std::int64_t prompt_sum = 0, decode_expected = 0;
  for (const auto& r : rec.requests()) {
    const auto& q = r.request;
    if (!r.finished())
      throw std::runtime_error(fmt::format("invariant broken: request {} arrived at {:.6f} s but never finished", q.id, q.arrival_s));
    if (r.tokens_emitted != q.output_tokens)
      throw std::runtime_error(fmt::format("invariant broken: request {} emitted {} of {} output tokens", q.id,
                                           r.tokens_emitted, q.output_tokens));
    if (!(r.first_scheduled_s >= q.arrival_s && r.first_token_s > r.first_scheduled_s && r.finish_s >= r.first_token_s))
      throw std::runtime_error(fmt::format("invariant broken: request {} times out of order", q.id));
    prompt_sum += q.prompt_tokens;
    decode_expected += q.output_tokens - 1;
  }
  std::int64_t prefill = 0, decode = 0;
  for (const auto& s : rec.steps()) {
    prefill += s.prefill_tokens;
    decode += s.decode_tokens;
  }
  if (prefill != prompt_sum)
    throw std::runtime_error(fmt::format("invariant broken: {} prompt tokens arrived but {} were prefilled", prompt_sum, prefill));
  if (decode != decode_expected)
    throw std::runtime_error(fmt::format("invariant broken: {} decode tokens expected but {} were computed", decode_expected, decode));
  const double routed = result.profiler->routed_assignments();
  const double expected = static_cast<double>(prefill + decode) * sc.model.spec.top_k * sc.model.spec.num_moe_layers();
  if (std::fabs(routed - expected) > 0.5)
    throw std::runtime_error(fmt::format("invariant broken: {} token-expert assignments expected but {} were computed", expected, routed));
}

namespace {

void add_stats(nlohmann::ordered_json& j, const std::string& name, std::vector<double> values_ms) {
  j["mean_" + name + "_ms"] = mean_of(values_ms);
  j["median_" + name + "_ms"] = median_of(values_ms);
  j["std_" + name + "_ms"] = stddev_of(values_ms);
  j["p90_" + name + "_ms"] = percentile_of(values_ms, 90);
  j["p99_" + name + "_ms"] = percentile_of(values_ms, 99);
}

double tpot_ms(const RequestRecord& r) {
  const int n = r.request.output_tokens;
  return n > 1 ? (r.finish_s - r.first_token_s) * 1e3 / (n - 1) : 0.0;
}

nlohmann::ordered_json finite_or_null(double x) {
  return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json imbalance_json(const ImbalanceTracker::Result& r, int filter, const std::vector<double>& step_mm,
                                      const std::vector<double>& step_gpu_mm) {
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
  imb["expert_max_over_mean_per_step_mean"] = mean_of(step_mm);
  imb["gpu_max_over_mean_per_step_mean"] = mean_of(step_gpu_mm);
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
  std::vector<double> ttft, tpot, e2el, itl;
  std::int64_t input_tokens = 0, output_tokens = 0;
  double first_arrival = 1e300, last_finish = 0;
  for (const auto& r : rec.requests()) {
    ttft.push_back((r.first_token_s - r.request.arrival_s) * 1e3);
    if (r.request.output_tokens > 1) tpot.push_back(tpot_ms(r));
    e2el.push_back((r.finish_s - r.request.arrival_s) * 1e3);
    input_tokens += r.request.prompt_tokens;
    output_tokens += r.request.output_tokens;
    first_arrival = std::min(first_arrival, r.request.arrival_s);
    last_finish = std::max(last_finish, r.finish_s);
  }
  for (double s : rec.inter_token_latencies_s()) itl.push_back(s * 1e3);
  // vLLM's benchmark measures from sending the first request to the last completion.
  const double duration = rec.requests().empty() ? 0.0 : last_finish - first_arrival;
  const auto completed = static_cast<double>(rec.requests().size());

  nlohmann::ordered_json j;
  j["duration"] = duration;
  j["completed"] = rec.requests().size();
  j["total_input_tokens"] = input_tokens;
  j["total_output_tokens"] = output_tokens;
  j["request_throughput"] = duration > 0 ? completed / duration : 0.0;
  j["output_throughput"] = duration > 0 ? static_cast<double>(output_tokens) / duration : 0.0;
  j["total_token_throughput"] = duration > 0 ? static_cast<double>(input_tokens + output_tokens) / duration : 0.0;
  add_stats(j, "ttft", ttft);
  add_stats(j, "tpot", tpot);
  add_stats(j, "itl", itl);
  add_stats(j, "e2el", e2el);

  double attention = 0, dense = 0, moe = 0, lm_head = 0, comm = 0, dispatch = 0, combine = 0;
  std::vector<double> step_mm, step_gpu_mm;
  for (const auto& s : rec.steps()) {
    step_mm.push_back(s.expert_load_max_over_mean);
    step_gpu_mm.push_back(s.gpu_load_max_over_mean);
    attention += s.attention_s;
    dense += s.dense_s;
    moe += s.moe_s;
    lm_head += s.lm_head_s;
    comm += s.comm_s;
    dispatch += s.dispatch_bytes;
    combine += s.combine_bytes;
  }
  j["imbalance"] = imbalance_json(result.profiler->tracker().result(), sc.outputs.imbalance_filter_max_tokens, step_mm, step_gpu_mm);

  nlohmann::ordered_json time;
  time["attention_s"] = attention;
  time["dense_ffn_s"] = dense;
  time["moe_s"] = moe;
  time["lm_head_s"] = lm_head;
  time["comm_s"] = comm;
  time["dispatch_bytes"] = dispatch;
  time["combine_bytes"] = combine;
  j["step_time_breakdown"] = time;

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
  run["steps"] = rec.steps().size();
  run["simulated_end_s"] = result.end_time_s;
  j["run"] = run;
  return j;
}

std::string requests_csv(const RunResult& result) {
  std::string out =
      "request_id,instance,arrival_s,first_scheduled_s,first_token_s,finish_s,prompt_tokens,output_tokens,"
      "queue_ms,ttft_ms,tpot_ms,e2e_ms\n";
  for (const auto& r : result.recorder.requests()) {
    const auto& q = r.request;
    out += fmt::format("{},{},{:.9f},{:.9f},{:.9f},{:.9f},{},{},{:.6f},{:.6f},{:.6f},{:.6f}\n", q.id, r.instance, q.arrival_s,
                       r.first_scheduled_s, r.first_token_s, r.finish_s, q.prompt_tokens, q.output_tokens,
                       (r.first_scheduled_s - q.arrival_s) * 1e3, (r.first_token_s - q.arrival_s) * 1e3, tpot_ms(r),
                       (r.finish_s - q.arrival_s) * 1e3);
  }
  return out;
}

std::string steps_csv(const RunResult& result) {
  std::string out =
      "step,instance,start_s,duration_ms,prefill_tokens,decode_tokens,batch_size,attention_ms,dense_ffn_ms,moe_ms,"
      "lm_head_ms,comm_ms,expert_load_cv,expert_load_max_over_mean,gpu_load_max_over_mean,dispatch_bytes,combine_bytes\n";
  for (const auto& s : result.recorder.steps()) {
    out += fmt::format("{},{},{:.9f},{:.6f},{},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.0f},{:.0f}\n",
                       s.step, s.instance, s.start_s, (s.end_s - s.start_s) * 1e3, s.prefill_tokens, s.decode_tokens,
                       s.num_seqs, s.attention_s * 1e3, s.dense_s * 1e3, s.moe_s * 1e3, s.lm_head_s * 1e3, s.comm_s * 1e3,
                       s.expert_load_cv, s.expert_load_max_over_mean, s.gpu_load_max_over_mean, s.dispatch_bytes,
                       s.combine_bytes);
  }
  return out;
}

void write_file_atomically(const std::filesystem::path& path, const std::string& content) {
  const auto tmp = path.parent_path() / (".tmp-" + path.filename().string() + "-" + std::to_string(::getpid()));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + tmp.string());
    f << content;
    f.flush();
    if (!f) throw std::runtime_error("failed writing " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw std::runtime_error("cannot move " + tmp.string() + " to " + path.string() + ": " + ec.message());
  }
}

void write_run_outputs(const std::filesystem::path& dir, const Scenario& sc, const RunResult& result) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create output directory " + dir.string() + ": " + ec.message());
  // Render everything first, so that a failure leaves no half-written set.
  const std::string requests = requests_csv(result);
  const std::string steps = steps_csv(result);
  const std::string summary = make_summary(sc, result).dump(2) + "\n";
  const std::string config = resolved_yaml(sc);
  std::map<std::string, std::string> profiler_files;
  result.profiler->render(profiler_files, sc.model.card);
  for (const auto& [rel, content] : profiler_files) {
    const auto path = dir / rel;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw std::runtime_error("cannot create " + path.parent_path().string() + ": " + ec.message());
    write_file_atomically(path, content);
  }
  if (result.trace) write_file_atomically(dir / "trace.json", result.trace->render());
  write_file_atomically(dir / "config.resolved.yaml", config);
  write_file_atomically(dir / "requests.csv", requests);
  write_file_atomically(dir / "steps.csv", steps);
  write_file_atomically(dir / "summary.json", summary);
}

}  // namespace moesim
