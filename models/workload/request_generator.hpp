#pragma once
// Synthetic request streams: arrival process x prompt-length x output-length distributions.
//
// Arrival processes (rate λ in requests/s):
//   poisson     : inter-arrival gaps ~ Exp(λ)
//   gamma       : gaps ~ Gamma(shape 1/cv², scale cv²/λ): mean 1/λ, coefficient of variation cv
//                 (cv > 1 bursty, cv < 1 regular; vLLM bench's --burstiness is 1/cv²)
//   constant    : gaps exactly 1/λ
//   burst       : every request arrives at t = 0 (vLLM's benchmark with --request-rate inf)
//   closed_loop : at most max_concurrency requests in flight; the next is sent when one finishes
//                 (vLLM bench --max-concurrency); arrival times are set by the simulation
//   dataset     : the arrival_s of each dataset line
// With a dataset, prompt and output lengths and domains come from its lines (reused in order
// when more requests are asked for than it has); otherwise lengths come from the distributions
// and each request's domain is drawn from the domain mix (stream "workload/domain").
// Length distributions (tokens, rounded to the nearest integer, clamped to [min, max]):
//   fixed     : value
//   uniform   : integer uniform on [min, max]
//   lognormal : exp(N(μ, σ²)) with μ = ln(mean) − σ²/2, so that its mean is `mean`
//   normal    : N(mean, sigma²)
// Each draws from its own stream: "workload/arrival", "workload/prompt_tokens",
// "workload/output_tokens".
#include <functional>
#include <map>
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
  double cv = 1.0;           ///< gamma: coefficient of variation of the gaps
  int max_concurrency = 0;   ///< closed_loop: requests in flight
};

/// How the workload's tokens pick experts (see models/routing/router.hpp).
struct RoutingModelParams {
  std::string model = "uniform";
  double specialization = -1;    ///< domain_affinity: sigma of log expert popularity; -1: the model card's
  double locality = -1;          ///< P(token repeats its predecessor's first-choice expert); -1: the card's
  double layer_correlation = 0;  ///< P(first choice follows the previous layer's first choice)
  double drift_per_sqrt_s = 0;   ///< random-walk drift of log popularity, per sqrt(second)
  double zipf_s = 1.0;           ///< zipf: exponent over expert rank
  std::vector<int> hot_experts;  ///< hot_experts: the hot set
  double hot_share = 0.5;        ///< hot_experts: share of selections that go to the hot set
  std::string trace;             ///< trace: gate-log folder or moe_expert_activations.csv
  std::string sampling = "token";  ///< token: per-token top-k; count: per-expert counts per step
};

/// A production trace replayed as the workload (models/workload/trace_reader.hpp has the formats).
struct TraceParams {
  std::string format;            ///< azure, mooncake, burstgpt, bailian, splitwise, moesim; empty: no trace
  std::string path;
  double start_s = 0;            ///< window start, seconds from the trace's first record
  double duration_s = 0;         ///< window length; 0: to the end
  std::int64_t max_requests = 0; ///< 0: every request in the window
  std::vector<std::string> groups;  ///< keep only these groups (BurstGPT Model, Bailian type, ...)
  bool keep_failed = false;      ///< BurstGPT: replay failed requests (0 response tokens) too
  double speedup = 1.0;          ///< arrival.process trace: recorded gaps divided by this
  double rate_per_s = 0;         ///< arrival.process trace, > 0: gaps rescaled to this mean rate, shape kept
  int block_tokens = 16;         ///< moesim format: tokens per hash id
  std::map<std::string, std::string> group_domains;  ///< group -> corpus domain; other requests draw from the mix
  /// Multi-turn sessions (bailian, moesim chat_id / parent_chat_id): recorded (every turn at its
  /// time), after_parent (no earlier than its parent's finish + think time), think_time (at its
  /// parent's finish + think time, the recorded time of a later turn ignored).
  std::string sessions = "recorded";
  double think_time_s = 0;                    ///< mean think time between a turn's finish and the next
  std::string think_time_dist = "exponential";  ///< exponential or fixed
};

/// The domain mix at one time of a drifting day (weights need not sum to 1).
struct DomainKeyframe {
  double at_s = 0;
  std::map<std::string, double> domains;
};

/// Domains drifting over time: each request's domain is drawn from the mix at its time, linear
/// between keyframes (each normalised first) and held before the first and after the last; with
/// period_s > 0 the keyframes repeat every period (a day: 86400), the last one blending into the
/// next period's first. The time is the trace's own clock (seconds after its first record, like
/// trace.start_s, whatever the speedup) when replaying a trace, the arrival time otherwise.
struct DomainDriftParams {
  double period_s = 0;
  std::vector<DomainKeyframe> points;
};

/// The weights of each of `domain_names` at time `t_s` (empty weights in a keyframe: uniform).
[[nodiscard]] std::vector<double> drift_weights_at(const DomainDriftParams& drift, const std::vector<std::string>& domain_names,
                                                   double t_s);

struct WorkloadParams {
  int requests = 100;
  TraceParams trace;
  std::string dataset;                    ///< JSONL request file; empty: synthetic requests
  std::map<std::string, double> domains;  ///< domain mix of synthetic requests; empty: uniform over the corpus
  DomainDriftParams domain_drift;         ///< when it has points: the mix over time instead of `domains`
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
  /// Gap before the next arrival (seconds); the first request arrives after one gap from t = 0.
  std::function<double(const ArrivalParams&, RngStream&)> gap_s;
  bool needs_rate = true;
  bool closed_loop = false;   ///< sent when a slot frees, not at a time
  bool from_dataset = false;  ///< times come from the dataset
  bool from_trace = false;    ///< times come from the trace (scaled)
};

[[nodiscard]] const Registry<LengthDistribution>& length_distributions();
[[nodiscard]] const Registry<ArrivalProcess>& arrival_processes();

/// Gamma(shape, scale) by Marsaglia & Tsang (2000), boosted for shape < 1.
[[nodiscard]] double sample_gamma(RngStream& rng, double shape, double scale);

/// Draws `params.requests` requests. Synthetic prompts are clamped to max_model_len - 1 and outputs
/// to what fits in max_model_len after the prompt, so every synthetic request is servable; dataset
/// lengths are kept as written (admission_problem tells which a server refuses). `domain_names`
/// are the corpus domains the mix refers to; `dataset` (may be null) replaces the synthetic lengths.
[[nodiscard]] std::vector<Request> generate_requests(const WorkloadParams& params, std::uint64_t seed, int max_model_len,
                                                     const std::vector<std::string>& domain_names = {},
                                                     const std::vector<struct DatasetRecord>* dataset = nullptr);

struct TraceRecord;
/// The requests of a trace's window, in order: lengths and block hashes from its records, arrival
/// times recorded (arrival.process trace: shifted to the window start, divided by speedup, or
/// rescaled to trace.rate_per_s keeping every gap's share) or drawn from the arrival process,
/// domains from trace.group_domains or drawn from the mix. `hash_block_tokens`: the reader's.
[[nodiscard]] std::vector<Request> requests_from_trace(const WorkloadParams& params, std::uint64_t seed,
                                                       const std::vector<TraceRecord>& records, int hash_block_tokens,
                                                       const std::vector<std::string>& domain_names);

/// Why a server with this max_model_len refuses `request` at arrival, or nullopt when it serves it.
/// vLLM's OpenAI server answers a request whose prompt plus requested output exceed the context
/// ("This model's maximum context length is ...") with an error rather than serving part of it:
/// reason "exceeds_max_model_len".
[[nodiscard]] std::optional<std::string> admission_problem(const Request& request, int max_model_len);

}  // namespace moesim
