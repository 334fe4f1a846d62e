#pragma once
// Synthetic request streams: arrival process x prompt-length x output-length distributions.
//
// Arrival processes (rate λ in requests/s):
//   poisson  : inter-arrival gaps ~ Exp(λ)
//   constant : gaps exactly 1/λ
//   burst    : every request arrives at t = 0 (vLLM's benchmark with --request-rate inf)
// Length distributions (tokens, rounded to the nearest integer, clamped to [min, max]):
//   fixed     : value
//   uniform   : integer uniform on [min, max]
//   lognormal : exp(N(μ, σ²)) with μ = ln(mean) − σ²/2, so that its mean is `mean`
//   normal    : N(mean, sigma²)
// Each draws from its own stream: "workload/arrival", "workload/prompt_tokens",
// "workload/output_tokens".
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "models/common/registry.hpp"
#include "models/common/rng.hpp"
#include "models/workload/request.hpp"

namespace moesim {

struct LengthDistParams {
  std::string dist = "fixed";
  int value = 128;
  double mean = 128.0;
  double sigma = 0.5;
  int min = 1;
  int max = 0;  ///< 0: no upper bound other than the model length
};

struct ArrivalParams {
  std::string process = "poisson";
  double rate_per_s = 1.0;
};

/// How the workload's tokens pick experts (see models/routing/router.hpp).
struct RoutingModelParams {
  std::string model = "uniform";
};

struct WorkloadParams {
  int requests = 100;
  RoutingModelParams routing;
  ArrivalParams arrival;
  LengthDistParams prompt_tokens;
  LengthDistParams output_tokens{"fixed", 128, 128.0, 0.5, 1, 0};
};

/// A problem with a parameter: the key (relative to the parameter block) and what is wrong.
struct ParamIssue {
  std::string key;
  std::string message;
};

struct LengthDistribution {
  std::function<double(const LengthDistParams&, RngStream&)> sample;
  std::function<std::optional<ParamIssue>(const LengthDistParams&)> check;
};

struct ArrivalProcess {
  /// Gap before the next arrival (seconds); the first request arrives after one gap from t = 0,
  /// except for burst, whose gaps are all zero.
  std::function<double(const ArrivalParams&, RngStream&)> gap_s;
  bool needs_rate = true;
};

[[nodiscard]] const Registry<LengthDistribution>& length_distributions();
[[nodiscard]] const Registry<ArrivalProcess>& arrival_processes();

/// Draws `params.requests` requests. Prompts are clamped to max_model_len - 1 and outputs to what
/// fits in max_model_len after the prompt, so every request is servable.
[[nodiscard]] std::vector<Request> generate_requests(const WorkloadParams& params, std::uint64_t seed, int max_model_len);

}  // namespace moesim
