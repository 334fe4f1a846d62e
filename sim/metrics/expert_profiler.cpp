#include "sim/metrics/expert_profiler.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/common/stats.hpp"
#include "models/routing/trace.hpp"
#include "sim/metrics/csv_text.hpp"

namespace moesim {

ExpertProfiler::ExpertProfiler(const ModelSpec& model, int gpus, bool expert_parallel, OutputsConfig options)
    : experts_(model.num_experts),
      top_k_(model.top_k),
      gpus_(expert_parallel ? std::max(1, gpus) : 1),
      expert_parallel_(expert_parallel),
      options_(options),
      tracker_(model.num_moe_layers(), model.num_experts, expert_parallel ? gpus : 1, options.imbalance_filter_max_tokens,
               options.trend_window_steps) {
  if (expert_parallel_ && experts_ > 0) {
    const std::size_t cells = static_cast<std::size_t>(model.num_moe_layers()) * static_cast<std::size_t>(experts_) * static_cast<std::size_t>(gpus_);
    expert_gpu_tokens_.assign(cells, 0.0);
    holds_replica_.assign(cells, 0);
  }
  for (int l = model.num_dense_layers; l < model.num_layers; ++l) moe_layer_ids_.push_back(l);
  // A dense model routes nothing: no gate logs, no expert tracking.
  if (moe_layer_ids_.empty() || experts_ == 0) options_.expert_profiler = options_.gate_logs = false;
  if (options_.expert_profiler)
    coselection_.assign(static_cast<std::size_t>(model.num_moe_layers()) * static_cast<std::size_t>(experts_) *
                            static_cast<std::size_t>(experts_), 0);
}

void ExpertProfiler::on_layer_routed(int moe_layer, std::span<const TokenInfo> tokens, std::span<const std::int32_t> experts,
                                     std::span<const float> weights) {
  if (!options_.expert_profiler) return;
  const auto k = static_cast<std::size_t>(top_k_);
  const auto E = static_cast<std::size_t>(experts_);
  std::uint64_t* cos = coselection_.data() + static_cast<std::size_t>(moe_layer) * E * E;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const std::int32_t* sel = experts.data() + t * k;
    for (std::size_t a = 0; a < k; ++a)
      for (std::size_t b = a + 1; b < k; ++b) {
        const auto lo = static_cast<std::size_t>(std::min(sel[a], sel[b]));
        const auto hi = static_cast<std::size_t>(std::max(sel[a], sel[b]));
        ++cos[lo * E + hi];
      }
  }
  // Every log_interval-th token (numbered in the order MoE layer 0 sees them) is logged in every layer.
  const std::int64_t first = tokens_seen_;
  const auto interval = static_cast<std::int64_t>(std::max(1, options_.profiler_log_interval_tokens));
  for (std::int64_t idx = (first + interval - 1) / interval * interval; idx < first + static_cast<std::int64_t>(tokens.size());
       idx += interval) {
    const auto t = static_cast<std::size_t>(idx - first);
    for (std::size_t j = 0; j < k; ++j)
      weight_samples_.push_back({moe_layer_ids_[static_cast<std::size_t>(moe_layer)], idx, experts[t * k + j],
                                 weights.empty() ? 1.0f / static_cast<float>(k) : weights[t * k + j]});
  }
  if (moe_layer + 1 == static_cast<int>(moe_layer_ids_.size())) tokens_seen_ += static_cast<std::int64_t>(tokens.size());
}

void ExpertProfiler::on_step(int instance, std::int64_t step, double time_s, int num_tokens, const StepLoadStats& load,
                             const StepPlanner& planner) {
  const std::span<const double> counts = load.layer_expert_counts;
  tracker_.add_step(num_tokens, counts, load.layer_gpu_loads);
  const auto E = static_cast<std::size_t>(experts_);
  if (!expert_gpu_tokens_.empty() && !load.layer_slot_loads.empty()) {
    const auto G = static_cast<std::size_t>(gpus_);
    const std::size_t layers = moe_layer_ids_.size();
    const std::size_t S = load.layer_slot_loads.size() / layers;
    for (std::size_t l = 0; l < layers; ++l) {
      const std::vector<int>& phy2log = planner.phy2log(static_cast<int>(l));
      const std::size_t per_gpu = S / G;
      for (std::size_t s = 0; s < S; ++s)
        expert_gpu_tokens_[(l * E + static_cast<std::size_t>(phy2log[s])) * G + s / per_gpu] += load.layer_slot_loads[l * S + s];
    }
  }
  if (options_.expert_profiler) {
    for (std::size_t l = 0; l < moe_layer_ids_.size(); ++l) {
      const auto row = counts.subspan(l * E, E);
      const double mn = *std::min_element(row.begin(), row.end());
      const double mx = *std::max_element(row.begin(), row.end());
      timeline_.push_back({moe_layer_ids_[l], time_s, stddev_of(row), mn > 0 ? mx / mn : std::numeric_limits<double>::infinity()});
    }
  }
  if (options_.gate_logs) {
    GateStep g{step, instance, time_s, num_tokens, {}};
    g.counts.reserve(counts.size());
    for (double c : counts) g.counts.push_back(static_cast<std::int32_t>(std::lround(c)));
    gate_steps_.push_back(std::move(g));
  }
}

void ExpertProfiler::on_run_end(const StepPlanner& planner) {
  if (holds_replica_.empty()) return;
  const auto E = static_cast<std::size_t>(experts_), G = static_cast<std::size_t>(gpus_);
  for (std::size_t l = 0; l < moe_layer_ids_.size(); ++l) {
    const std::vector<int>& phy2log = planner.phy2log(static_cast<int>(l));
    const std::size_t per_gpu = phy2log.size() / G;
    for (std::size_t s = 0; s < phy2log.size(); ++s) holds_replica_[(l * E + static_cast<std::size_t>(phy2log[s])) * G + s / per_gpu] = 1;
  }
}

double ExpertProfiler::routed_assignments() const {
  const auto& agg = tracker_.aggregated_all();
  return std::accumulate(agg.begin(), agg.end(), 0.0);
}

namespace {
std::string ratio_text(double r) {
  if (std::isinf(r)) return "inf";
  std::string out;
  csv::fixed(out, r, 6);
  return out;
}
}  // namespace

void ExpertProfiler::render(std::map<std::string, std::string>& files, const std::string& model_name) const {
  const auto E = static_cast<std::size_t>(experts_);
  const auto& agg = tracker_.aggregated_all();

  std::string experts_csv = "layer,expert,gpu,tokens,share\n";
  const auto G = static_cast<std::size_t>(gpus_);
  for (std::size_t l = 0; l < moe_layer_ids_.size(); ++l) {
    const double total = std::accumulate(agg.begin() + static_cast<std::ptrdiff_t>(l * E),
                                         agg.begin() + static_cast<std::ptrdiff_t>((l + 1) * E), 0.0);
    for (std::size_t e = 0; e < E; ++e) {
      if (expert_gpu_tokens_.empty()) {
        experts_csv += fmt::format("{},{},{},{:.0f},{:.6f}\n", moe_layer_ids_[l], e, -1, agg[l * E + e], total > 0 ? agg[l * E + e] / total : 0.0);
        continue;
      }
      // The GPUs that computed the expert's tokens, or hold a replica of it now.
      for (std::size_t g = 0; g < G; ++g) {
        const std::size_t i = (l * E + e) * G + g;
        const double tokens = expert_gpu_tokens_[i];
        if (tokens <= 0 && holds_replica_[i] == 0) continue;
        experts_csv += fmt::format("{},{},{},{:.0f},{:.6f}\n", moe_layer_ids_[l], e, g, tokens, total > 0 ? tokens / total : 0.0);
      }
    }
  }
  files["experts.csv"] = std::move(experts_csv);

  if (options_.expert_profiler) {
    std::string act = "layer_idx,expert_id,activation_count,percentage\n";
    std::string cos = "layer_idx,expert_id_1,expert_id_2,coselection_count\n";
    nlohmann::ordered_json summary;
    for (std::size_t l = 0; l < moe_layer_ids_.size(); ++l) {
      const auto row = std::span<const double>(agg).subspan(l * E, E);
      const double total = std::accumulate(row.begin(), row.end(), 0.0);
      for (std::size_t e = 0; e < E; ++e)
        act += fmt::format("{},{},{:.0f},{:.2f}\n", moe_layer_ids_[l], e, row[e], total > 0 ? 100.0 * row[e] / total : 0.0);
      for (std::size_t a = 0; a < E; ++a)
        for (std::size_t b = a + 1; b < E; ++b)
          if (const auto c = coselection_[l * E * E + a * E + b]; c > 0)
            cos += fmt::format("{},{},{},{}\n", moe_layer_ids_[l], a, b, c);
      const double mn = *std::min_element(row.begin(), row.end());
      const double mx = *std::max_element(row.begin(), row.end());
      nlohmann::ordered_json j;
      j["num_experts"] = experts_;
      j["top_k"] = top_k_;
      j["total_activations"] = static_cast<std::int64_t>(std::llround(total));
      const auto used = std::count_if(row.begin(), row.end(), [](double x) { return x > 0; });
      j["unique_experts_activated"] = used;
      j["activation_coverage_pct"] = 100.0 * static_cast<double>(used) / static_cast<double>(E);
      j["mean_activations_per_expert"] = mean_of(row);
      j["std_dev_activations"] = stddev_of(row);
      j["min_activations"] = static_cast<std::int64_t>(std::llround(mn));
      j["max_activations"] = static_cast<std::int64_t>(std::llround(mx));
      j["load_balance_ratio"] = mn > 0 ? nlohmann::ordered_json(mx / mn) : nlohmann::ordered_json(nullptr);
      summary["layer_" + std::to_string(moe_layer_ids_[l])] = j;
    }
    std::string weights = "layer_idx,token_idx,expert_id,weight\n";
    std::vector<WeightSample> sorted = weight_samples_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.layer_idx < b.layer_idx; });
    weights.reserve(sorted.size() * 24);
    for (const auto& w : sorted) {
      csv::integer_c(weights, w.layer_idx);
      csv::integer_c(weights, w.token_idx);
      csv::integer_c(weights, w.expert);
      csv::fixed(weights, w.weight, 6);
      weights += '\n';
    }
    std::string timeline = "layer_idx,timestamp_sec,std_dev,max_min_ratio\n";
    timeline.reserve(timeline_.size() * 36);
    for (const auto& r : timeline_) {
      csv::integer_c(timeline, r.layer_idx);
      csv::fixed_c(timeline, r.time_s, 6);
      csv::fixed_c(timeline, r.std_dev, 6);
      timeline += ratio_text(r.max_min_ratio);
      timeline += '\n';
    }
    files["moe_expert_tracking/moe_expert_activations.csv"] = std::move(act);
    files["moe_expert_tracking/moe_expert_coselection.csv"] = std::move(cos);
    files["moe_expert_tracking/moe_routing_weights_hist.csv"] = std::move(weights);
    files["moe_expert_tracking/moe_load_imbalance.csv"] = std::move(timeline);
    files["moe_expert_tracking/moe_summary.json"] = summary.dump(2) + "\n";
  }

  if (options_.gate_logs) {
    const auto per_file = static_cast<std::size_t>(std::max(1, options_.gate_log_steps_per_file));
    // Written as text (the same bytes nlohmann::json's compact dump gives, without building a
    // JSON tree of every count).
    std::string head = "{\"format\":\"moesim-gate-log-v1\",\"model\":" + nlohmann::json(model_name).dump() +
                       ",\"moe_layers\":" + nlohmann::json(moe_layer_ids_).dump() + ",\"num_experts\":" + std::to_string(experts_) +
                       ",\"top_k\":" + std::to_string(top_k_) + ",\"steps\":[";
    // A file ends after gate_log_steps_per_file steps, or once it passes half the size a gate-log
    // file may have when read back (kMaxGateLogFileBytes), so that every file moesim writes loads.
    const std::size_t soft_bytes = kMaxGateLogFileBytes / 2;
    for (std::size_t start = 0, end = 0, k = 0; start < gate_steps_.size(); start = end, ++k) {
      std::string out = head;
      const std::size_t last = std::min(start + per_file, gate_steps_.size());
      out.reserve(std::min(soft_bytes, head.size() + (last - start) * (96 + gate_steps_[start].counts.size() * 4)));
      for (std::size_t i = start; i < last && (i == start || out.size() < soft_bytes); ++i, end = i) {
        const GateStep& g = gate_steps_[i];
        if (i > start) out += ',';
        out += "{\"step\":";
        csv::integer(out, g.step);
        out += ",\"instance\":";
        csv::integer(out, g.instance);
        out += ",\"time_s\":";
        out += nlohmann::json(g.time_s).dump();
        out += ",\"num_tokens\":";
        csv::integer(out, g.num_tokens);
        out += ",\"expert_counts\":[";
        for (std::size_t l = 0; l < moe_layer_ids_.size(); ++l) {
          if (l > 0) out += ',';
          out += '[';
          for (std::size_t e = 0; e < E; ++e) {
            if (e > 0) out += ',';
            csv::integer(out, g.counts[l * E + e]);
          }
          out += ']';
        }
        out += "]}";
      }
      out += "]}\n";
      files["gate_logs/gate_logs_" + std::to_string(k) + ".json"] = std::move(out);
    }
  }
}

}  // namespace moesim
