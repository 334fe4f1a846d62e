#include "models/workload/request_generator.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {
namespace {

int clamp_length(double x, const LengthDistParams& p) {
  long v = std::lround(x);
  v = std::max<long>(v, std::max(p.min, 1));
  if (p.max > 0) v = std::min<long>(v, p.max);
  return static_cast<int>(v);
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
  r.add("constant", "one request every 1/rate_per_s seconds",
        {[](const ArrivalParams& p, RngStream&) { return 1.0 / p.rate_per_s; }, true});
  r.add("burst", "all requests at t = 0 (vLLM bench --request-rate inf)",
        {[](const ArrivalParams&, RngStream&) { return 0.0; }, false});
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

std::vector<Request> generate_requests(const WorkloadParams& params, std::uint64_t seed, int max_model_len) {
  const auto& arrival = arrival_processes().get(params.arrival.process);
  const auto& prompt_dist = length_distributions().get(params.prompt_tokens.dist);
  const auto& output_dist = length_distributions().get(params.output_tokens.dist);
  RngStream arrival_rng(seed, "workload/arrival");
  RngStream prompt_rng(seed, "workload/prompt_tokens");
  RngStream output_rng(seed, "workload/output_tokens");

  std::vector<Request> requests;
  requests.reserve(static_cast<std::size_t>(params.requests));
  double t = 0.0;
  for (int i = 0; i < params.requests; ++i) {
    t += arrival.gap_s(params.arrival, arrival_rng);
    Request r;
    r.id = i;
    r.arrival_s = t;
    r.prompt_tokens = std::min(clamp_length(prompt_dist.sample(params.prompt_tokens, prompt_rng), params.prompt_tokens),
                               max_model_len - 1);
    r.output_tokens = std::min(clamp_length(output_dist.sample(params.output_tokens, output_rng), params.output_tokens),
                               max_model_len - r.prompt_tokens);
    requests.push_back(r);
  }
  return requests;
}

}  // namespace moesim
