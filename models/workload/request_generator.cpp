#include "models/workload/request_generator.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <unordered_map>

#include "models/workload/dataset.hpp"
#include "models/workload/trace_reader.hpp"

namespace moesim {
namespace {

/// A domain mix over the corpus order: the weights given, or uniform when none are.
class DomainMix {
 public:
  DomainMix(const std::map<std::string, double>& weights, const std::vector<std::string>& domain_names) {
    for (const auto& name : domain_names) {
      double w = 1.0;
      if (!weights.empty()) {
        auto it = weights.find(name);
        w = it == weights.end() ? 0.0 : it->second;
      }
      total_ += w;
      cumulative_.push_back(total_);
    }
  }
  /// The mix drifts over time: draw_at(t) draws from drift_weights_at(t) instead.
  DomainMix(const DomainDriftParams& drift, const std::vector<std::string>& domain_names) : drift_(&drift), names_(&domain_names) {}

  /// A domain index drawn from the mix (at time t when it drifts), or -1 when there is no corpus.
  /// One uniform draw either way.
  [[nodiscard]] int draw(RngStream& rng, double t_s = 0) const {
    if (drift_ != nullptr) {
      std::vector<double> w = drift_weights_at(*drift_, *names_, t_s);
      double total = 0;
      for (double& x : w) x = total += x;
      return pick(w, total, rng);
    }
    return pick(cumulative_, total_, rng);
  }

 private:
  static int pick(const std::vector<double>& cumulative, double total, RngStream& rng) {
    if (total <= 0.0) return -1;
    const double u = rng.uniform01() * total;
    const auto d = static_cast<int>(std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
    return std::min(d, static_cast<int>(cumulative.size()) - 1);
  }

  std::vector<double> cumulative_;
  double total_ = 0.0;
  const DomainDriftParams* drift_ = nullptr;
  const std::vector<std::string>* names_ = nullptr;
};

DomainMix make_mix(const WorkloadParams& params, const std::vector<std::string>& domain_names) {
  if (!params.domain_drift.points.empty()) return {params.domain_drift, domain_names};
  return {params.domains, domain_names};
}

/// A keyframe's weights over `names`, normalised to sum 1 (uniform when it names none).
std::vector<double> normalised(const DomainKeyframe& k, const std::vector<std::string>& names) {
  std::vector<double> w(names.size(), k.domains.empty() ? 1.0 : 0.0);
  if (!k.domains.empty())
    for (std::size_t d = 0; d < names.size(); ++d)
      if (auto it = k.domains.find(names[d]); it != k.domains.end()) w[d] = it->second;
  double total = 0;
  for (double x : w) total += x;
  if (total > 0)
    for (double& x : w) x /= total;
  return w;
}

}  // namespace

std::vector<double> drift_weights_at(const DomainDriftParams& drift, const std::vector<std::string>& names, double t_s) {
  const auto& k = drift.points;
  if (k.empty()) return std::vector<double>(names.size(), 1.0);
  if (k.size() == 1) return normalised(k[0], names);
  double t = t_s;
  if (drift.period_s > 0) {
    t = std::fmod(t_s, drift.period_s);
    if (t < 0) t += drift.period_s;
  }
  // The keyframes a and b around t, and how far t is from a to b.
  std::size_t a = 0, b = 0;
  double frac = 0;
  const auto next = std::upper_bound(k.begin(), k.end(), t, [](double x, const DomainKeyframe& f) { return x < f.at_s; });
  if (next == k.begin() || next == k.end()) {
    if (drift.period_s <= 0) return normalised(next == k.begin() ? k.front() : k.back(), names);
    // Between the last keyframe and the next period's first.
    a = k.size() - 1;
    b = 0;
    const double from = k.back().at_s, to = k.front().at_s + drift.period_s;
    const double at = next == k.begin() ? t + drift.period_s : t;
    frac = to > from ? (at - from) / (to - from) : 0.0;
  } else {
    b = static_cast<std::size_t>(next - k.begin());
    a = b - 1;
    frac = (t - k[a].at_s) / (k[b].at_s - k[a].at_s);
  }
  const auto wa = normalised(k[a], names), wb = normalised(k[b], names);
  std::vector<double> w(names.size());
  for (std::size_t d = 0; d < names.size(); ++d) w[d] = (1 - frac) * wa[d] + frac * wb[d];
  return w;
}

namespace {

int clamp_length(double x, const LengthDistParams& p) {
  // Clamped as a double first: a draw from a heavy tail (or inf) must not overflow the integer.
  const auto lowest = static_cast<double>(std::max(p.min, 1));
  double v = x >= lowest ? x : lowest;  // NaN too
  if (p.max > 0) v = std::min(v, static_cast<double>(p.max));
  v = std::min(v, static_cast<double>(std::numeric_limits<int>::max()));
  return static_cast<int>(std::lround(v));
}

std::optional<ParamIssue> bounds_issue(const LengthDistParams& p) {
  if (p.min < 1) return ParamIssue{"min", "must be >= 1 (got " + std::to_string(p.min) + ")"};
  if (p.max != 0 && p.max < p.min)
    return ParamIssue{"max", "must be >= min (" + std::to_string(p.min) + ") or 0 for no bound (got " + std::to_string(p.max) + ")"};
  return std::nullopt;
}

Registry<LengthDistribution> make_length_registry() {
  Registry<LengthDistribution> r("length distribution");
  r.add("fixed", "every request has `value` tokens",
        {[](const LengthDistParams& p, RngStream&) { return static_cast<double>(p.value); },
         [](const LengthDistParams& p) -> std::optional<ParamIssue> {
           if (p.value < 1) return ParamIssue{"value", "must be >= 1 (got " + std::to_string(p.value) + ")"};
           return std::nullopt;
         }});
  r.add("uniform", "integer uniform on [min, max]",
        {[](const LengthDistParams& p, RngStream& rng) {
           return static_cast<double>(p.min + static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(p.max - p.min + 1))));
         },
         [](const LengthDistParams& p) -> std::optional<ParamIssue> {
           if (p.max < 1) return ParamIssue{"max", "uniform needs max >= min >= 1 (got max " + std::to_string(p.max) + ")"};
           return bounds_issue(p);
         }});
  r.add("lognormal", "exp(N(mu, sigma^2)) with mean `mean`, clamped to [min, max]",
        {[](const LengthDistParams& p, RngStream& rng) {
           const double mu = std::log(p.mean) - p.sigma * p.sigma / 2.0;
           return std::exp(mu + p.sigma * rng.standard_normal());
         },
         [](const LengthDistParams& p) -> std::optional<ParamIssue> {
           if (!(p.mean >= 1.0)) return ParamIssue{"mean", "must be >= 1 (got " + std::to_string(p.mean) + ")"};
           if (!(p.sigma >= 0.0 && p.sigma <= 5.0)) return ParamIssue{"sigma", "must be in [0, 5] (got " + std::to_string(p.sigma) + ")"};
           return bounds_issue(p);
         }});
  r.add("normal", "N(mean, sigma^2) tokens, clamped to [min, max]",
        {[](const LengthDistParams& p, RngStream& rng) { return p.mean + p.sigma * rng.standard_normal(); },
         [](const LengthDistParams& p) -> std::optional<ParamIssue> {
           if (!(p.mean >= 1.0)) return ParamIssue{"mean", "must be >= 1 (got " + std::to_string(p.mean) + ")"};
           if (!(p.sigma >= 0.0)) return ParamIssue{"sigma", "must be >= 0 (got " + std::to_string(p.sigma) + ")"};
           return bounds_issue(p);
         }});
  return r;
}

Registry<ArrivalProcess> make_arrival_registry() {
  Registry<ArrivalProcess> r("arrival process");
  r.add("poisson", "exponential gaps with mean 1/rate_per_s",
        {[](const ArrivalParams& p, RngStream& rng) { return rng.exponential(p.rate_per_s); }, true});
  r.add("gamma", "gamma gaps with mean 1/rate_per_s and coefficient of variation cv",
        {[](const ArrivalParams& p, RngStream& rng) {
           const double shape = 1.0 / (p.cv * p.cv);
           return sample_gamma(rng, shape, 1.0 / (p.rate_per_s * shape));
         },
         true});
  r.add("constant", "one request every 1/rate_per_s seconds",
        {[](const ArrivalParams& p, RngStream&) { return 1.0 / p.rate_per_s; }, true});
  r.add("burst", "all requests at t = 0 (vLLM bench --request-rate inf)",
        {[](const ArrivalParams&, RngStream&) { return 0.0; }, false});
  r.add("closed_loop", "max_concurrency requests in flight, the next sent when one finishes",
        {[](const ArrivalParams&, RngStream&) { return 0.0; }, false, true, false});
  r.add("dataset", "the arrival_s of each dataset line",
        {[](const ArrivalParams&, RngStream&) { return 0.0; }, false, false, true});
  r.add("trace", "the recorded times of workload.trace (speedup, rate_per_s)",
        {[](const ArrivalParams&, RngStream&) { return 0.0; }, false, false, false, true});
  return r;
}

}  // namespace

const Registry<LengthDistribution>& length_distributions() {
  static const Registry<LengthDistribution> registry = make_length_registry();
  return registry;
}

const Registry<ArrivalProcess>& arrival_processes() {
  static const Registry<ArrivalProcess> registry = make_arrival_registry();
  return registry;
}

double sample_gamma(RngStream& rng, double shape, double scale) {
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    double u = rng.uniform01();
    while (u <= 0.0) u = rng.uniform01();
    return sample_gamma(rng, shape + 1.0, scale) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = rng.standard_normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = rng.uniform01();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v * scale;
    if (u > 0.0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v * scale;
  }
}

std::vector<Request> generate_requests(const WorkloadParams& params, std::uint64_t seed, int max_model_len,
                                       const std::vector<std::string>& domain_names,
                                       const std::vector<DatasetRecord>* dataset) {
  const auto& arrival = arrival_processes().get(params.arrival.process);
  const auto& prompt_dist = length_distributions().get(params.prompt_tokens.dist);
  const auto& output_dist = length_distributions().get(params.output_tokens.dist);
  RngStream arrival_rng(seed, "workload/arrival");
  RngStream prompt_rng(seed, "workload/prompt_tokens");
  RngStream output_rng(seed, "workload/output_tokens");
  RngStream domain_rng(seed, "workload/domain");

  const DomainMix mix = make_mix(params, domain_names);

  std::vector<Request> requests;
  requests.reserve(static_cast<std::size_t>(params.requests));
  double t = 0.0;
  for (int i = 0; i < params.requests; ++i) {
    Request r;
    r.id = i;
    if (dataset != nullptr && !dataset->empty()) {
      const DatasetRecord& rec = (*dataset)[static_cast<std::size_t>(i) % dataset->size()];
      r.prompt_tokens = rec.prompt_tokens;
      r.output_tokens = rec.output_tokens;
      r.domain = rec.domain;
      r.prefix_id = rec.prefix_id;
      r.prefix_tokens = rec.prefix_tokens;
      if (arrival.from_dataset && rec.arrival_s) {
        // A reused dataset continues after its last arrival.
        const auto lap = static_cast<double>(static_cast<std::size_t>(i) / dataset->size());
        t = *rec.arrival_s + lap * dataset->back().arrival_s.value_or(0.0);
      } else {
        t += arrival.gap_s(params.arrival, arrival_rng);
      }
    } else {
      t += arrival.gap_s(params.arrival, arrival_rng);
      r.prompt_tokens = std::min(clamp_length(prompt_dist.sample(params.prompt_tokens, prompt_rng), params.prompt_tokens),
                                 max_model_len - 1);
      r.output_tokens = std::min(clamp_length(output_dist.sample(params.output_tokens, output_rng), params.output_tokens),
                                 max_model_len - r.prompt_tokens);
      r.domain = mix.draw(domain_rng, t);
    }
    r.arrival_s = t;
    requests.push_back(r);
  }
  return requests;
}

namespace {

/// A synthetic block key for block `block` of request `origin`'s context (sessions of traces
/// without hash ids): splitmix64, kept non-negative like a trace's ids.
std::int64_t session_block_key(std::size_t origin, std::size_t block) {
  std::uint64_t z = (static_cast<std::uint64_t>(origin) << 24) ^ static_cast<std::uint64_t>(block);
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<std::int64_t>((z ^ (z >> 31)) >> 1);
}

/// Links each turn to the latest earlier request of its parent chat in the window, and lets a
/// parent's output blocks be cached under the names its next turn gives them: with trace hash ids,
/// the parent's chain continues with its first child's hashes past the parent's prompt (where the
/// child's leading hashes are the parent's); without, every request of a session gets synthetic
/// keys, a turn inheriting those of its parent's whole context (prompt and answer) that its prompt
/// holds. Returns, per request, the index of its parent or -1.
std::vector<std::int64_t> link_sessions(const std::vector<TraceRecord>& records, std::vector<Request>& requests,
                                        int hash_block_tokens, int session_block_tokens) {
  const std::size_t n = records.size();
  std::vector<std::int64_t> parent(n, -1);
  std::vector<std::int64_t> first_child(n, -1);
  std::unordered_map<std::int64_t, std::size_t> by_chat;
  for (std::size_t i = 0; i < n; ++i) {
    if (records[i].parent_chat_id >= 0) {
      const auto it = by_chat.find(records[i].parent_chat_id);
      if (it != by_chat.end()) {
        parent[i] = static_cast<std::int64_t>(it->second);
        if (first_child[it->second] < 0) first_child[it->second] = static_cast<std::int64_t>(i);
      }
    }
    if (records[i].chat_id >= 0) by_chat[records[i].chat_id] = i;
  }
  auto context_blocks = [](const TraceRecord& r, std::int64_t t) {
    return (static_cast<std::int64_t>(r.input_tokens) + r.output_tokens) / t;
  };
  const bool hashed = hash_block_tokens > 0 &&
                      std::any_of(records.begin(), records.end(), [](const TraceRecord& r) { return !r.hash_ids.empty(); });
  if (hashed) {
    const std::int64_t t = hash_block_tokens;
    for (std::size_t p = 0; p < n; ++p) {
      if (first_child[p] < 0) continue;
      const auto& mine = records[p].hash_ids;
      const auto& next = records[static_cast<std::size_t>(first_child[p])].hash_ids;
      const auto full = static_cast<std::size_t>(records[p].input_tokens / t);
      const auto end = std::min(next.size(), static_cast<std::size_t>(context_blocks(records[p], t)));
      if (end <= full || mine.size() < full || !std::equal(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(full), next.begin()))
        continue;
      requests[p].block_hashes = std::make_shared<const std::vector<std::int64_t>>(next.begin(), next.begin() + static_cast<std::ptrdiff_t>(end));
      requests[p].cacheable_tokens = static_cast<int>(static_cast<std::int64_t>(end) * t);
    }
    return parent;
  }
  const std::int64_t t = session_block_tokens;
  std::vector<std::shared_ptr<const std::vector<std::int64_t>>> keys(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (parent[i] < 0 && first_child[i] < 0) continue;
    const TraceRecord& r = records[i];
    // The context's full blocks, and one more for a partial last prompt block.
    const auto prompt_blocks = static_cast<std::size_t>((r.input_tokens + t - 1) / t);
    const auto size = std::max(prompt_blocks, static_cast<std::size_t>(context_blocks(r, t)));
    auto v = std::make_shared<std::vector<std::int64_t>>(size);
    std::size_t inherited = 0;
    if (parent[i] >= 0) {
      const auto& up = *keys[static_cast<std::size_t>(parent[i])];
      const auto up_context = static_cast<std::size_t>(context_blocks(records[static_cast<std::size_t>(parent[i])], t));
      inherited = std::min({up.size(), up_context, static_cast<std::size_t>(r.input_tokens / t)});
      std::copy(up.begin(), up.begin() + static_cast<std::ptrdiff_t>(inherited), v->begin());
    }
    for (std::size_t b = inherited; b < size; ++b) (*v)[b] = session_block_key(i, b);
    keys[i] = v;
    requests[i].block_hashes = v;
    requests[i].hash_block_tokens = static_cast<int>(t);
    if (first_child[i] >= 0) requests[i].cacheable_tokens = static_cast<int>(context_blocks(r, t) * t);
  }
  return parent;
}

}  // namespace

std::vector<Request> requests_from_trace(const WorkloadParams& params, std::uint64_t seed,
                                         const std::vector<TraceRecord>& records, int hash_block_tokens,
                                         const std::vector<std::string>& domain_names) {
  const auto& arrival = arrival_processes().get(params.arrival.process);
  RngStream arrival_rng(seed, "workload/arrival");
  RngStream domain_rng(seed, "workload/domain");
  const DomainMix mix = make_mix(params, domain_names);
  // Rate rescaling keeps the trace's burstiness: every gap shrinks or grows by the same factor.
  double scale = 1.0 / params.trace.speedup;
  if (params.trace.rate_per_s > 0 && records.size() > 1) {
    const double span = records.back().time_s - records.front().time_s;
    if (span > 0) scale = (static_cast<double>(records.size() - 1) / params.trace.rate_per_s) / span;
  }
  std::vector<Request> requests;
  requests.reserve(records.size());
  double t = 0.0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const TraceRecord& rec = records[i];
    Request r;
    r.id = static_cast<std::int64_t>(i);
    r.prompt_tokens = rec.input_tokens;
    r.output_tokens = rec.output_tokens;
    if (arrival.from_trace) {
      t = params.trace.rate_per_s > 0 ? (rec.time_s - records.front().time_s) * scale
                                      : (rec.time_s - params.trace.start_s) * scale;
    } else {
      t += arrival.gap_s(params.arrival, arrival_rng);
    }
    r.arrival_s = t;
    if (!rec.hash_ids.empty()) {
      r.block_hashes = std::make_shared<const std::vector<std::int64_t>>(rec.hash_ids);
      r.hash_block_tokens = hash_block_tokens;
    }
    r.session = rec.chat_id;
    const auto mapped = params.trace.group_domains.find(rec.group);
    if (mapped != params.trace.group_domains.end()) {
      const auto it = std::find(domain_names.begin(), domain_names.end(), mapped->second);
      r.domain = it == domain_names.end() ? -1 : static_cast<int>(it - domain_names.begin());
    } else {
      r.domain = mix.draw(domain_rng, rec.time_s);  // a drifting mix follows the trace's own clock
    }
    requests.push_back(r);
  }
  const std::vector<std::int64_t> parent = link_sessions(records, requests, hash_block_tokens, params.trace.block_tokens);
  RngStream think_rng(seed, "workload/think_time");
  const bool after_parent = params.trace.sessions != "recorded";
  const bool exponential = params.trace.think_time_dist == "exponential";
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (parent[i] < 0) continue;
    Request& r = requests[i];
    r.parent = parent[i];
    r.session = requests[static_cast<std::size_t>(parent[i])].session;
    if (!after_parent) continue;
    const double mean = params.trace.think_time_s;
    r.think_s = exponential && mean > 0 ? -mean * std::log1p(-think_rng.uniform01()) : mean;
  }
  return requests;
}

std::optional<std::string> admission_problem(const Request& request, int max_model_len) {
  if (static_cast<std::int64_t>(request.prompt_tokens) + request.output_tokens > max_model_len) return "exceeds_max_model_len";
  return std::nullopt;
}

}  // namespace moesim
