#include "tests/property/scenario_generator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "models/common/rng.hpp"
#include "models/gpu/gpu_spec.hpp"
#include "models/llm/model_spec.hpp"
#include "models/workload/dataset.hpp"
#include "sim/config/scenario.hpp"
#include "sim/exec/layout.hpp"

namespace moesim::property {

namespace {

/// A draw's choices: integers and reals from one stream of the (seed, index) pair.
class Dice {
 public:
  Dice(std::uint64_t seed, std::uint64_t index) : rng_(seed ^ (0x9E3779B97F4A7C15ULL * (index + 1)), "property/scenario") {}
  int below(int n) { return static_cast<int>(rng_.uniform_index(static_cast<std::size_t>(n))); }
  int between(int lo, int hi) { return lo + below(hi - lo + 1); }  ///< inclusive
  double real(double lo, double hi) { return lo + (hi - lo) * rng_.uniform01(); }
  double log_real(double lo, double hi) { return std::exp(real(std::log(lo), std::log(hi))); }
  int log_int(int lo, int hi) { return std::clamp(static_cast<int>(std::lround(log_real(lo, hi + 0.999))), lo, hi); }
  bool chance(double p) { return rng_.uniform01() < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(below(static_cast<int>(v.size())))];
  }

 private:
  RngStream rng_;
};

std::string b(bool v) { return v ? "true" : "false"; }

/// A length distribution section under `key`, its values within [1, cap].
std::string lengths(Dice& d, const char* key, int cap) {
  switch (d.below(4)) {
    case 0: return fmt::format("  {}: {{dist: fixed, value: {}}}\n", key, d.log_int(1, cap));
    case 1: {
      const double mean = d.log_real(1, cap);
      return fmt::format("  {}: {{dist: lognormal, mean: {:.3f}, sigma: {:.3f}, max: {}}}\n", key, mean, d.real(0, 1.5),
                         d.chance(0.8) ? cap : 0);
    }
    case 2: {
      const double mean = d.log_real(1, cap);
      return fmt::format("  {}: {{dist: normal, mean: {:.3f}, sigma: {:.3f}, min: 1, max: {}}}\n", key, mean, d.real(0, mean), cap);
    }
    default: {
      const int lo = d.log_int(1, cap), hi = d.between(lo, cap);
      return fmt::format("  {}: {{dist: uniform, min: {}, max: {}}}\n", key, lo, hi);
    }
  }
}

}  // namespace

ScenarioGenerator::ScenarioGenerator(const Catalog& catalog, DrawLimits limits) : limits_(limits) {
  std::vector<Diagnostic> sink;
  for (const auto& name : catalog.names<ModelSpec>()) {
    const auto m = catalog.load<ModelSpec>(name, sink);
    if (!m) continue;
    models_.push_back({name, m->num_layers, m->num_dense_layers, m->num_experts, m->total_params_b * bytes_per_element(m->expert_weight_dtype)});
  }
  for (const auto& name : catalog.names<GpuSpec>()) {
    const auto g = catalog.load<GpuSpec>(name, sink);
    if (g) gpus_.push_back({name, g->hbm_capacity_gb, g->tdp_w, g->power_limit_min_w});
  }
  if (models_.empty() || gpus_.empty())
    throw std::runtime_error("the catalog in " + catalog.home().string() + " has no loadable model or GPU card" +
                             (sink.empty() ? std::string() : ": " + sink.front().format()));
  domains_ = DomainCorpus::load(domain_corpus_path(catalog)).names;
}

DrawnScenario ScenarioGenerator::draw(std::uint64_t seed, std::uint64_t index, const std::filesystem::path& dataset_path) const {
  Dice d(seed, index);
  DrawnScenario out;
  std::string& y = out.yaml;
  const ModelFacts& m = d.pick(models_);
  const GpuFacts& g = d.pick(gpus_);
  const bool moe = m.num_experts > 0;
  y += fmt::format("name: property-{}-{}\nseed: {}\n", seed, index, d.below(1 << 30));

  // Fewer layers keep most draws fast; a whole model now and then.
  int layers = m.num_layers;
  if (d.chance(0.85)) layers = d.between(std::min(m.num_layers, m.num_dense_layers + 1), std::min(m.num_layers, m.num_dense_layers + 6));
  if (layers != m.num_layers) y += fmt::format("model: {{card: {}, num_layers: {}}}\n", m.name, layers);
  else y += fmt::format("model: {}\n", m.name);
  // A whole deep model costs per token what a few layers cost per request: fewer, shorter requests.
  DrawLimits lim = limits_;
  if (layers > 16) {
    lim.max_requests = std::min(lim.max_requests, 6);
    lim.max_prompt_tokens = std::min(lim.max_prompt_tokens, 1024);
    lim.max_output_tokens = std::min(lim.max_output_tokens, 32);
  }

  // Enough GPUs for the weights most of the time (the loader refuses the rest).
  const double weights_gb = m.weights_gb * layers / std::max(1, m.num_layers);
  int need = 1;
  while (need < lim.max_gpus && need * g.hbm_gb * 0.75 < weights_gb) need *= 2;
  int gpus = std::min(lim.max_gpus, need << d.below(3));
  const int per_node = std::min(gpus, d.pick(std::vector<int>{1, 2, 4, 8, 8}));
  const int nodes = gpus / per_node;
  y += fmt::format("cluster: {{gpu: {}, nodes: {}, gpus_per_node: {}", g.name, nodes, per_node);
  if (d.chance(0.15)) y += fmt::format(", inter_node: {}", d.pick(std::vector<std::string>{"ib-hdr200", "ib-ndr400", "roce-400"}));
  y += "}\n";

  const bool ep = moe ? d.chance(0.6) : d.chance(0.05);
  int dp = 1;
  for (int k = d.below(3); k > 0 && gpus % (dp * 2) == 0; --k) dp *= 2;
  const int per_instance = gpus / dp;
  y += fmt::format("parallel: {{mode: {}, dp: {}", ep ? "ep" : "tp", dp);
  if (ep && d.chance(0.4)) y += ", attention: dp";
  if (dp > 1) {
    y += fmt::format(", dp_router: {}", d.pick(std::vector<std::string>{"round_robin", "least_outstanding", "least_kv"}));
    if (d.chance(0.25)) y += ", prefill_instances: 1";
  }
  y += "}\n";

  y += "serving:\n";
  y += fmt::format("  max_num_batched_tokens: {}\n", d.pick(std::vector<int>{64, 256, 1024, 2048, 8192, 16384}));
  y += fmt::format("  max_num_seqs: {}\n", d.pick(std::vector<int>{1, 3, 16, 64, 256}));
  // KV pressure a third of the time: room for one to five sequences of max_model_len (the reserve
  // is set from the loaded layout: set_kv_room).
  const bool kv_pressure = d.chance(0.35);
  const int model_len = kv_pressure ? d.pick(std::vector<int>{512, 2048, 4096}) : d.pick(std::vector<int>{0, 512, 2048, 4096, 16384});
  y += fmt::format("  max_model_len: {}\n", model_len);
  const double util = d.real(0.5, 0.95);
  double reserve = d.pick(std::vector<double>{0, 2, 2, 8, 30});
  if (kv_pressure) out.kv_room_tokens = static_cast<std::int64_t>(model_len * d.real(1.02, 3.0));
  y += fmt::format("  gpu_memory_utilization: {:.3f}\n", util);
  y += fmt::format("  activation_reserve_gb: {}\n", reserve);
  y += fmt::format("  chunked_prefill: {}\n", b(d.chance(0.8)));
  y += fmt::format("  block_size: {}\n", d.pick(std::vector<int>{1, 16, 16, 32, 128}));
  y += fmt::format("  cuda_graph_max_tokens: {}\n", d.pick(std::vector<int>{0, 512}));
  y += fmt::format("  step_overhead_us: {}\n", d.pick(std::vector<double>{0, 0, 150}));
  y += fmt::format("  step_overhead_per_seq_us: {}\n", d.pick(std::vector<double>{0, 0, 4}));
  y += fmt::format("  async_scheduling: {}\n", b(d.chance(0.3)));
  y += fmt::format("  moe_kernel: {}\n", d.chance(0.3) ? "deepgemm" : "triton");
  if (ep) {
    y += fmt::format("  shared_expert_overlap: {}\n", b(d.chance(0.25)));
    y += fmt::format("  dual_batch_overlap: {}\n", b(d.chance(0.25)));
  }
  const bool dataset = d.chance(0.3);
  if (dataset) y += fmt::format("  prefix_caching: {}\n", b(d.chance(0.7)));

  y += "workload:\n";
  y += fmt::format("  requests: {}\n", kv_pressure ? d.between(std::min(4, lim.max_requests), lim.max_requests) : d.log_int(1, lim.max_requests));
  const std::string arrival = kv_pressure && d.chance(0.5)
                                   ? std::string("burst")
                                   : d.pick(std::vector<std::string>{"burst", "poisson", "poisson", "gamma", "constant", "closed_loop"});
  if (dataset) {
    const bool timed = d.chance(0.4);
    y += fmt::format("  dataset: \"{}\"\n", dataset_path.string());
    const int lines = d.between(1, 24), prefixes = d.between(1, 3);
    double t = 0;
    for (int i = 0; i < lines; ++i) {
      const int prompt = d.log_int(1, lim.max_prompt_tokens), output = d.log_int(1, lim.max_output_tokens);
      out.dataset_jsonl += fmt::format(R"({{"domain": "{}", "prompt_tokens": {}, "output_tokens": {})", d.pick(domains_), prompt, output);
      if (d.chance(0.7)) out.dataset_jsonl += fmt::format(R"(, "prefix_id": "p{}", "prefix_tokens": {})", d.below(prefixes), d.between(0, prompt));
      if (timed) {
        t += d.log_real(1e-4, 2.0);
        out.dataset_jsonl += fmt::format(R"(, "arrival_s": {:.6f})", t);
      }
      out.dataset_jsonl += "}\n";
    }
    if (timed) y += "  arrival: {process: dataset}\n";
  }
  if (!dataset || out.dataset_jsonl.find("arrival_s") == std::string::npos) {
    y += fmt::format("  arrival: {{process: {}, rate_per_s: {:.4f}", arrival, d.log_real(0.2, 400));
    if (arrival == "gamma") y += fmt::format(", cv: {:.3f}", d.log_real(0.1, 8));
    if (arrival == "closed_loop") y += fmt::format(", max_concurrency: {}", d.log_int(1, 64));
    y += "}\n";
  }
  if (!dataset && kv_pressure && d.chance(0.7)) {
    // Long prompts arriving together: more KV than the room, so that sequences preempt.
    y += fmt::format("  prompt_tokens: {{dist: uniform, min: {}, max: {}}}\n", model_len / 4, model_len);
    y += fmt::format("  output_tokens: {{dist: uniform, min: 16, max: {}}}\n", std::max(32, std::min(model_len / 4, 2 * lim.max_output_tokens)));
  } else if (!dataset) {
    y += lengths(d, "prompt_tokens", lim.max_prompt_tokens);
    y += lengths(d, "output_tokens", lim.max_output_tokens);
    if (d.chance(0.3))
      y += fmt::format("  domains: {{{}: {:.3f}, {}: {:.3f}}}\n", domains_[0], d.real(0.1, 3), d.pick(domains_), d.real(0.1, 3));
  }
  if (moe) {
    const std::string router = d.pick(std::vector<std::string>{"uniform", "zipf", "hot_experts", "domain_affinity", "domain_affinity"});
    y += fmt::format("  routing: {{model: {}, sampling: {}", router, d.chance(0.3) ? "count" : "token");
    if (router == "zipf") y += fmt::format(", zipf_s: {:.3f}", d.real(0, 3));
    if (router == "hot_experts") {
      const int a = d.below(m.num_experts), c = d.below(m.num_experts);
      y += fmt::format(", hot_experts: [{}], hot_share: {:.3f}", a == c ? fmt::format("{}", a) : fmt::format("{}, {}", a, c), d.real(0.05, 1));
    }
    if (router == "domain_affinity") {
      if (d.chance(0.5)) y += fmt::format(", specialization: {:.3f}", d.real(0, 2));
      if (d.chance(0.5)) y += fmt::format(", locality: {:.3f}", d.real(0, 1));
      if (d.chance(0.3)) y += fmt::format(", layer_correlation: {:.3f}", d.real(0, 1));
      if (d.chance(0.2)) y += fmt::format(", drift_per_sqrt_s: {:.3f}", d.real(0, 0.5));
    }
    y += "}\n";
  }

  y += fmt::format("network: {{fidelity: {}", d.chance(0.5) ? "flow" : "analytic");
  if (ep) {
    y += fmt::format(", ep_mode: {}", d.chance(0.5) ? "normal" : "low_latency");
    y += fmt::format(", dispatch_dtype: {}", d.pick(std::vector<std::string>{"auto", "bf16", "fp8"}));
    y += fmt::format(", combine_dtype: {}", d.chance(0.8) ? "bf16" : "fp8");
  }
  y += fmt::format(", flow_granularity: {}}}\n", d.pick(std::vector<std::string>{"auto", "pair", "port"}));

  if (ep && moe) {
    const std::string policy = d.pick(std::vector<std::string>{"static", "static", "eplb", "least_loaded", "capacity", "nectar", "aux_free_bias"});
    y += fmt::format("routing:\n  policy: {}\n", policy);
    const bool replicas = policy == "eplb" || policy == "least_loaded" || (policy == "nectar" && d.chance(0.7)) ||
                          (policy == "capacity" && d.chance(0.5));
    if (replicas) {
      const int ep_size = per_instance;
      const int rest = (ep_size - m.num_experts % ep_size) % ep_size;
      int redundant = rest + ep_size * d.below(2);
      if (redundant == 0 && (policy == "least_loaded" || policy == "nectar")) redundant = ep_size;  // they steer among replicas
      y += fmt::format("  num_redundant_experts: {}\n", redundant);
      y += fmt::format("  replica_selection: {}\n", d.pick(std::vector<std::string>{"position", "random", "nearest", "even"}));
    }
    if (policy == "nectar" && !replicas) y += "  nectar: {mode: gate_bias}\n";
    if (policy == "nectar" && replicas) y += fmt::format("  nectar: {{mode: replica, strength: {:.3f}}}\n", d.real(0, 5));
    if (policy == "capacity")
      y += fmt::format("  capacity: {{factor: {:.3f}, overflow: {}}}\n", d.real(0.5, 3), replicas && d.chance(0.5) ? "next_replica" : "drop");
    if (policy == "aux_free_bias") y += fmt::format("  aux_free_update_speed: {:.4f}\n", d.log_real(1e-4, 0.1));
    if (policy == "least_loaded" && d.chance(0.4)) y += "  least_loaded_choices: 2\n";
    if (policy != "static") {
      y += fmt::format("  interval_steps: {}\n  window_steps: {}\n", d.pick(std::vector<int>{3, 20, 3000}), d.pick(std::vector<int>{1, 20, 1000}));
      y += fmt::format("  migration: {}\n", d.pick(std::vector<std::string>{"stall", "overlap", "none"}));
      if (d.chance(0.2)) y += fmt::format("  interval_s: {:.3f}\n", d.log_real(0.01, 2));
      if (d.chance(0.3)) y += fmt::format("  rebalance_threshold: {:.3f}\n", d.real(0.01, 0.5));
    }
  }

  if (d.chance(0.3)) y += fmt::format("slo: {{ttft_ms: {:.1f}, tpot_ms: {:.1f}}}\n", d.log_real(1, 5000), d.log_real(1, 200));
  if (d.chance(0.3)) {
    y += fmt::format("power: {{cap_w: {:.0f}", d.real(g.min_cap_w, g.tdp_w));
    if (d.chance(0.3)) y += fmt::format(", node_budget_w: {:.0f}", d.real(g.min_cap_w, g.tdp_w) * per_node);
    y += "}\n";
  }
  // Hot rooms now and then: GPUs that start near or past their slowdown temperature.
  y += fmt::format("thermal: {{inlet_c: {:.2f}", d.chance(0.2) ? d.real(45, 65) : d.real(10, 45));
  switch (d.below(3)) {
    case 0: y += ", initial: cold"; break;
    case 1: y += ", initial: steady_idle"; break;
    default: y += fmt::format(", initial: steady_power, initial_power_w: {:.0f}", d.real(50, g.tdp_w)); break;
  }
  if (d.chance(0.2)) y += fmt::format(", recirculation_k_per_kw: {:.3f}, recirculation_tau_s: {:.3f}", d.real(0, 3), d.log_real(0.1, 100));
  y += "}\n";
  y += fmt::format("outputs: {{gate_logs: {}, expert_profiler: {}, trace: {}, gpus_csv_interval_s: {}, gate_log_steps_per_file: {}}}\n",
                   b(d.chance(0.5)), b(d.chance(0.5)), b(d.chance(0.1)), d.pick(std::vector<double>{0, 0.01, 0.5}),
                   d.pick(std::vector<int>{1, 1000}));
  return out;
}

std::string set_kv_room(const std::string& yaml, const Scenario& loaded, std::int64_t tokens) {
  const ParallelLayout layout = make_layout(loaded);
  const double reserve = loaded.serving.activation_reserve_gb;
  const double spare = layout.usable_bytes_per_gpu - layout.weight_bytes_per_gpu - layout.kv_bytes_for(tokens);
  const double fitted = std::max(0.0, std::floor((reserve + spare / 1e9) * 1000) / 1000);
  const std::string key = "  activation_reserve_gb: ";
  const auto at = yaml.find(key);
  if (at == std::string::npos) throw std::logic_error("a drawn scenario has no activation_reserve_gb line");
  const auto eol = yaml.find('\n', at);
  return yaml.substr(0, at) + key + fmt::format("{:.3f}", fitted) + yaml.substr(eol);
}

}  // namespace moesim::property
