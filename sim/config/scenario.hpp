#pragma once
// A scenario: everything one simulation run needs, typed and validated before anything runs.
// Every field is declared once in scenario.cpp (name, type, default, unit, doc, validator).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <memory>

#include "models/network/ep_traffic.hpp"
#include "models/routing/policy.hpp"
#include "models/workload/dataset.hpp"
#include "models/workload/trace_reader.hpp"
#include "models/workload/request_generator.hpp"
#include "sim/config/catalog.hpp"

namespace moesim {

// Limits beyond which a scenario is rejected at validation rather than run out of memory or
// time (README, "Security and limits").
inline constexpr int kMaxGpus = 4096;                  ///< nodes x gpus_per_node; also tp, ep, dp
inline constexpr int kMaxRequests = 10'000'000;        ///< workload.requests
inline constexpr int kMaxBatchedTokens = 1 << 20;      ///< serving.max_num_batched_tokens
inline constexpr int kMaxNumSeqs = 1 << 16;            ///< serving.max_num_seqs
inline constexpr int kMaxModelLen = 1 << 24;           ///< serving.max_model_len and token lengths
// File size limits: kMaxScenarioFileBytes, kMaxInputFileBytes (sim/config/diagnostics.hpp).

enum class ParallelMode { tp, ep };
enum class EpAttention { tp, dp };
enum class NetworkFidelity { flow, analytic };
enum class ThermalStart { cold, steady_idle, steady_power };

template <>
struct EnumNames<ParallelMode> {
  static const std::vector<std::pair<std::string, ParallelMode>>& get();
};
template <>
struct EnumNames<EpAttention> {
  static const std::vector<std::pair<std::string, EpAttention>>& get();
};
template <>
struct EnumNames<ThermalStart> {
  static const std::vector<std::pair<std::string, ThermalStart>>& get();
};
template <>
struct EnumNames<NetworkFidelity> {
  static const std::vector<std::pair<std::string, NetworkFidelity>>& get();
};
template <>
struct EnumNames<EpKernels> {
  static const std::vector<std::pair<std::string, EpKernels>>& get();
};

struct ClusterConfig {
  CardRef<GpuSpec> gpu;
  int nodes = 1;
  int gpus_per_node = 8;
  CardRef<InterconnectSpec> intra_node;                 ///< default: the GPU card's default_intra_node
  CardRef<InterconnectSpec> inter_node{"ib-ndr400"};

  [[nodiscard]] int num_gpus() const { return nodes * gpus_per_node; }
};

struct ParallelConfig {
  ParallelMode mode = ParallelMode::tp;
  int tp = 0;  ///< 0: derived (all GPUs of an instance in mode tp, 1 in mode ep)
  int ep = 0;  ///< 0: derived (all GPUs of an instance in mode ep, 1 in mode tp)
  int dp = 1;  ///< independent serving instances
  EpAttention attention = EpAttention::tp;
  std::string dp_router = "round_robin";  ///< which instance gets each request
  int prefill_instances = 0;  ///< disaggregation: the first N instances only prefill; 0: off

  [[nodiscard]] int gpus_per_instance() const { return mode == ParallelMode::tp ? tp : ep; }
};


struct SloConfig {
  double ttft_ms = 0;  ///< 0: no TTFT objective
  double tpot_ms = 0;  ///< 0: no TPOT objective
};

struct ServingConfig {
  int max_num_batched_tokens = 8192;
  int max_num_seqs = 256;
  int max_model_len = 0;  ///< 0: the model's max_position_embeddings
  double gpu_memory_utilization = 0.9;
  double activation_reserve_gb = 2.0;
  bool chunked_prefill = true;
  int block_size = 16;
  bool prefix_caching = false;
  int cuda_graph_max_tokens = 512;  ///< steps of at most this many tokens replay CUDA graphs; 0: eager
  double step_overhead_us = 0;             ///< engine CPU time per step the GPUs wait for
  double step_overhead_per_seq_us = 0;     ///< engine CPU time per scheduled sequence per step
  double step_overhead_per_worker_us = 0;  ///< engine CPU time per step per GPU worker beyond an instance's first
  double sampler_bytes_per_logit = 700;    ///< HBM traffic of sampling per vocabulary entry and sequence
  bool async_scheduling = false;           ///< the engine prepares the next step while the GPUs run
  bool shared_expert_overlap = false;      ///< mode ep: shared experts compute while the dispatch moves tokens
  bool dual_batch_overlap = false;         ///< mode ep: two micro-batches, one's compute beside the other's communication
  int overlap_comm_sms = 20;               ///< SMs a normal-mode communication kernel takes from overlapped compute
  std::string moe_kernel = "triton";       ///< triton (vLLM's fused-MoE kernel) | deepgemm (DeepSeek's stack)
};

struct NetworkConfig {
  NetworkFidelity fidelity = NetworkFidelity::flow;
  EpKernels ep_mode = EpKernels::normal;   ///< DeepEP kernels of mode ep's dispatch and combine
  std::string dispatch_dtype = "auto";     ///< auto (fp8 when the model's weights are fp8) | bf16 | fp8
  std::string combine_dtype = "bf16";      ///< bf16 | fp8
  std::string flow_granularity = "auto";   ///< flow fidelity: pair | port | auto (port above 8 GPUs per instance)

  /// Bytes per element of the dispatched and combined hidden states.
  [[nodiscard]] double dispatch_bytes_per_element(DType model_weights) const;
  [[nodiscard]] double combine_bytes_per_element() const { return combine_dtype == "fp8" ? 1.0 : 2.0; }
};

struct PowerConfig {
  double cap_w = 0;             ///< per-GPU power limit; 0: the card's TDP
  double node_budget_w = 0;     ///< 0: none
  double cluster_budget_w = 0;  ///< 0: none
};

struct ThermalConfig {
  double inlet_c = 25;
  ThermalStart initial = ThermalStart::cold;
  double initial_power_w = 0;  ///< steady_power: the GPUs start at the steady state of this power
  double recirculation_k_per_kw = 0;  ///< inlet rise per kW of the node's GPU power (steady state); 0: off
  double recirculation_tau_s = 60;    ///< time constant of the recirculated air's mixing
};

struct OutputsConfig {
  bool expert_profiler = true;
  bool gate_logs = true;
  int profiler_log_interval_tokens = 100;
  int gate_log_steps_per_file = 1000;
  int imbalance_filter_max_tokens = 1000;
  int trend_window_steps = 100;
  bool trace = false;
  int trace_max_steps = 200;
  double gpus_csv_interval_s = 0.01;
  double timeseries_interval_s = 0;  ///< timeseries.csv's interval; 0: about 500 over the run
};

/// Files a workload reads, loaded and checked with the scenario.
struct WorkloadInputs {
  DomainCorpus corpus;
  std::vector<DatasetRecord> dataset;
  std::vector<TraceRecord> trace;        ///< the records of workload.trace's window
  int trace_hash_block_tokens = 0;       ///< tokens per hash id of those records
  /// What the window's hash ids allow an unbounded prefix cache (independent of the scheduler).
  double trace_unbounded_prefix_hit_tokens = 0;
  TraceCounters trace_counters;
  std::uint64_t routing_trace_digest = 0;  ///< FNV-1a 64 of the routing trace's counts (0: none read)
};

struct Scenario {
  std::string name;
  std::string description;
  std::uint64_t seed = 0;
  CardRef<ModelSpec> model;
  ClusterConfig cluster;
  ParallelConfig parallel;
  ServingConfig serving;
  WorkloadParams workload;
  NetworkConfig network;
  RoutingPolicyConfig routing;
  SloConfig slo;
  PowerConfig power;
  ThermalConfig thermal;
  OutputsConfig outputs;
  /// Loaded inputs (not part of the schema; set by load_scenario).
  std::shared_ptr<const WorkloadInputs> inputs;
};

void describe(Schema<ClusterConfig>& s);
void describe(Schema<ParallelConfig>& s);
void describe(Schema<ServingConfig>& s);
void describe(Schema<NetworkConfig>& s);
void describe(Schema<OutputsConfig>& s);
void describe(Schema<PowerConfig>& s);
void describe(Schema<SloConfig>& s);
void describe(Schema<RoutingPolicyConfig>& s);
void describe(Schema<ThermalConfig>& s);
/// The per-GPU power cap in force: min(cap_w or TDP, node budget / GPUs per node, cluster budget / GPUs).
[[nodiscard]] double effective_cap_w(const Scenario& sc);
void describe(Schema<LengthDistParams>& s);
void describe(Schema<ArrivalParams>& s);
void describe(Schema<RoutingModelParams>& s);
void describe(Schema<WorkloadParams>& s);
void describe(Schema<Scenario>& s);

/// Where the domain corpus lives under a catalog home.
[[nodiscard]] std::filesystem::path domain_corpus_path(const Catalog& catalog);

/// Reads, overrides (`--set key.path=value`), resolves derived values and validates a scenario.
/// Throws ConfigError listing every problem found.
[[nodiscard]] Scenario load_scenario(const std::filesystem::path& file, const std::vector<std::string>& set_args,
                                     const Catalog& catalog);

/// Every scenario field: path, type, default, unit, constraint, doc (for `moesim describe`).
[[nodiscard]] std::vector<FieldDoc> scenario_field_docs();

/// The fully resolved scenario as YAML (every field, cards expanded); loading it gives the same run.
[[nodiscard]] std::string resolved_yaml(const Scenario& scenario);
/// A digest (16 hex digits, FNV-1a 64) of everything a run of the scenario depends on: the
/// resolved configuration with its cards, and the content of the files its workload read. Two
/// scenarios with the same fingerprint give the same outputs from the same moesim build.
[[nodiscard]] std::string scenario_fingerprint(const Scenario& scenario);

}  // namespace moesim
