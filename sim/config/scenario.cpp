#include "sim/config/scenario.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include <fstream>
#include <sstream>

#include "models/routing/router.hpp"
#include "models/routing/trace.hpp"
#include "models/workload/trace_reader.hpp"
#include "sim/exec/layout.hpp"

namespace moesim {

const std::vector<std::pair<std::string, ParallelMode>>& EnumNames<ParallelMode>::get() {
  static const std::vector<std::pair<std::string, ParallelMode>> names{{"tp", ParallelMode::tp}, {"ep", ParallelMode::ep}};
  return names;
}
const std::vector<std::pair<std::string, EpAttention>>& EnumNames<EpAttention>::get() {
  static const std::vector<std::pair<std::string, EpAttention>> names{{"tp", EpAttention::tp}, {"dp", EpAttention::dp}};
  return names;
}
const std::vector<std::pair<std::string, NetworkFidelity>>& EnumNames<NetworkFidelity>::get() {
  static const std::vector<std::pair<std::string, NetworkFidelity>> names{{"flow", NetworkFidelity::flow},
                                                                           {"analytic", NetworkFidelity::analytic}};
  return names;
}

const std::vector<std::pair<std::string, EpKernels>>& EnumNames<EpKernels>::get() {
  static const std::vector<std::pair<std::string, EpKernels>> names{{"normal", EpKernels::normal},
                                                                     {"low_latency", EpKernels::low_latency}};
  return names;
}

double NetworkConfig::dispatch_bytes_per_element(DType model_weights) const {
  if (dispatch_dtype == "auto") return model_weights == DType::fp8 ? 1.0 : 2.0;
  return dispatch_dtype == "fp8" ? 1.0 : 2.0;
}

void describe(Schema<ClusterConfig>& s) {
  using C = ClusterConfig;
  card_field(s, "gpu", &C::gpu, "GPU card, e.g. h100-sxm").required = true;
  s.field("nodes", &C::nodes).min(1).max(4096).doc("servers");
  s.field("gpus_per_node", &C::gpus_per_node).min(1).max(72).doc("GPUs per server, joined by the intra-node fabric");
  s.check([](const C& c, Checker& chk) {
    // The platform declares a route between every pair of GPUs: memory grows as GPUs^2 (about
    // 0.5 GB at 2048 GPUs), so the total is bounded before anything is built.
    if (c.num_gpus() > kMaxGpus)
      chk.context().error_at(chk.path(), "nodes x gpus_per_node = " + std::to_string(c.nodes) + " x " + std::to_string(c.gpus_per_node) + " = " +
                        std::to_string(c.num_gpus()) + " GPUs, more than the limit of " + std::to_string(kMaxGpus) +
                        " GPUs (the platform's routes grow as GPUs squared)");
  });
  card_field(s, "intra_node", &C::intra_node, "scale-up fabric card (default: the GPU card's default_intra_node)");
  card_field(s, "inter_node", &C::inter_node, "scale-out fabric card, one NIC per GPU");
}

void describe(Schema<ParallelConfig>& s) {
  using P = ParallelConfig;
  s.field("mode", &P::mode).doc("tp: tensor-parallel experts, two all-reduces per layer (vLLM Triton fused MoE); "
                                "ep: whole experts per GPU, all-to-all dispatch and combine");
  s.field("tp", &P::tp).min(0).max(kMaxGpus).doc("tensor-parallel size; 0 derives it (GPUs per instance in mode tp, 1 in mode ep)");
  s.field("ep", &P::ep).min(0).max(kMaxGpus).doc("expert-parallel size; 0 derives it (GPUs per instance in mode ep, 1 in mode tp)");
  s.field("dp", &P::dp).min(1).max(kMaxGpus).doc("independent serving instances");
  s.field("dp_router", &P::dp_router)
      .one_of([] { return std::vector<std::string>{"least_kv", "least_outstanding", "round_robin"}; })
      .doc("which instance gets a request: round_robin, least_outstanding (fewest unfinished requests), least_kv (lowest "
           "KV-cache use; ties to the lowest index)");
  s.field("prefill_instances", &P::prefill_instances).min(0).max(kMaxGpus)
      .doc("prefill/decode disaggregation: the first N of the dp instances only prefill, then move each sequence's KV "
           "cache over the network to a decode instance (least outstanding); 0: every instance does both");
  s.check([](const P& p, Checker& c) {
    if (p.prefill_instances > 0 && p.prefill_instances >= p.dp)
      c.error("prefill_instances", "must leave at least one decode instance: < dp (" + std::to_string(p.dp) + ") (got " +
                                       std::to_string(p.prefill_instances) + ")");
  });
  s.field("attention", &P::attention).doc("mode ep only: tp shards attention over the EP group; dp replicates it, "
                                          "each GPU serving its own sequences");
}

void describe(Schema<ServingConfig>& s) {
  using S = ServingConfig;
  s.field("max_num_batched_tokens", &S::max_num_batched_tokens).min(1).max(kMaxBatchedTokens).unit("tokens").doc("token budget of one step");
  s.field("max_num_seqs", &S::max_num_seqs).min(1).max(kMaxNumSeqs).unit("sequences").doc("most sequences in one step");
  s.field("max_model_len", &S::max_model_len).min(0).max(kMaxModelLen).unit("tokens").doc("prompt + output limit; 0: the model's maximum");
  s.field("gpu_memory_utilization", &S::gpu_memory_utilization).greater_than(0).max(1)
      .doc("fraction of GPU memory for weights, activations and KV cache (vLLM default 0.9)");
  s.field("activation_reserve_gb", &S::activation_reserve_gb).min(0).max(1e6).unit("GB")
      .doc("memory held back for activations (estimate of vLLM's profiled peak)");
  s.field("chunked_prefill", &S::chunked_prefill).doc("split long prompts over steps to fit the token budget");
  s.field("block_size", &S::block_size).min(1).max(1024).unit("tokens").doc("tokens per paged KV-cache block (vLLM default 16)");
  s.field("prefix_caching", &S::prefix_caching)
      .doc("share the full KV blocks of identical prompt prefixes (dataset lines with prefix_id and prefix_tokens)");
  s.field("cuda_graph_max_tokens", &S::cuda_graph_max_tokens).min(0).max(kMaxBatchedTokens).unit("tokens")
      .doc("steps with at most this many tokens replay captured CUDA graphs (the GPU card's kernel_graph_launch_us per "
           "kernel instead of kernel_launch_us; vLLM's largest default capture size is 512); 0: every step eager");
  s.field("step_overhead_us", &S::step_overhead_us).min(0).max(1e6).unit("us")
      .doc("engine CPU time per step (scheduling, input preparation, sampling and output processing) the GPUs wait for");
  s.field("step_overhead_per_seq_us", &S::step_overhead_per_seq_us).min(0).max(1e5).unit("us")
      .doc("engine CPU time per sequence of the step");
  s.field("step_overhead_per_worker_us", &S::step_overhead_per_worker_us).min(0).max(1e6).unit("us")
      .doc("engine CPU time per step for every GPU of an instance beyond its first (a multi-process executor ships "
           "each step's inputs to every worker and waits for all of them)");
  s.field("sampler_bytes_per_logit", &S::sampler_bytes_per_logit).min(0).max(1e6).unit("bytes")
      .doc("GPU memory traffic of sampling, per vocabulary entry of every sequence that emits a token: vLLM's "
           "PyTorch top-p/top-k sampler sorts the FP32 logits with int64 indices (many passes); 4 for greedy argmax; "
           "the default is calibrated (tests/calibration/REPORT.md)");
  s.field("async_scheduling", &S::async_scheduling)
      .doc("the engine prepares the next step while the GPUs run the current one: only CPU time beyond the GPU time is exposed "
           "(vLLM --async-scheduling)");
  s.field("shared_expert_overlap", &S::shared_expert_overlap)
      .doc("mode ep: the shared experts compute while the dispatch moves the routed tokens (on a second stream, as SGLang "
           "and DeepSeek do), instead of inside the MoE kernel after it");
  s.field("dual_batch_overlap", &S::dual_batch_overlap)
      .doc("mode ep: split every step into two micro-batches of about half the tokens (by sequence) and run one's compute "
           "while the other's dispatch, combine and all-reduces move (DeepSeek's two-micro-batch overlap, SGLang "
           "--enable-two-batch-overlap); each micro-batch reads the weights again and pays every collective's latency");
  s.field("overlap_comm_sms", &S::overlap_comm_sms).min(0).max(100000).unit("SMs")
      .doc("SMs a normal-mode (network.ep_mode normal) communication kernel occupies while compute overlaps it: the "
           "overlapped compute-bound time stretches by sm_count / (sm_count - this) (vLLM's and DeepEP's default is 20); "
           "low-latency kernels overlap through a receive hook that occupies no SM");
  s.field("moe_kernel", &S::moe_kernel)
      .one_of([] { return std::vector<std::string>{"triton", "deepgemm"}; })
      .doc("the routed experts' grouped GEMMs: triton (vLLM's fused-MoE Triton kernel; FP8 experts stream at the GPU "
           "card's moe_fp8_memory_efficiency, and each FP8 GEMM's activations are quantised by a kernel of their own) "
           "or deepgemm (DeepSeek's stack: DeepGEMM grouped GEMMs at the card's memory_efficiency, FP8 quantisation "
           "fused into the dispatch and the activation kernel)");
}

void describe(Schema<NetworkConfig>& s) {
  s.field("fidelity", &NetworkConfig::fidelity)
      .doc("flow: collectives as SimGrid parallel tasks on the links (contention); analytic: closed form");
  s.field("ep_mode", &NetworkConfig::ep_mode)
      .doc("mode ep's all-to-all, as DeepEP's kernels move it: normal (NVLink inside a node; across nodes once per "
           "destination node over RDMA, then forwarded over NVLink) or low_latency (pure RDMA, one message per selected "
           "expert, the inter-node card's collective_latency_us per call)");
  s.field("dispatch_dtype", &NetworkConfig::dispatch_dtype)
      .one_of([] { return std::vector<std::string>{"auto", "bf16", "fp8"}; })
      .doc("dispatched hidden states: fp8 (plus one fp32 scale per 128 channels), bf16, or auto (fp8 when the model's "
           "weights are fp8)");
  s.field("combine_dtype", &NetworkConfig::combine_dtype)
      .one_of([] { return std::vector<std::string>{"bf16", "fp8"}; })
      .doc("combined expert outputs (DeepEP combines in bf16)");
  s.field("flow_granularity", &NetworkConfig::flow_granularity)
      .one_of([] { return std::vector<std::string>{"auto", "pair", "port"}; })
      .doc("flow fidelity: a collective's parallel task carries every GPU pair's bytes (pair, N^2 entries) or each "
           "GPU port's total through switch hosts (port, 4N entries; the same bytes on every link); auto: port above 8 "
           "GPUs per instance");
}

namespace {
std::vector<std::string> names_of_lengths() { return length_distributions().names(); }
std::vector<std::string> names_of_arrivals() { return arrival_processes().names(); }
std::vector<std::string> names_of_routers() { return token_routers().names(); }
}  // namespace

const std::vector<std::pair<std::string, ThermalStart>>& EnumNames<ThermalStart>::get() {
  static const std::vector<std::pair<std::string, ThermalStart>> names{{"cold", ThermalStart::cold},
                                                                        {"steady_idle", ThermalStart::steady_idle},
                                                                        {"steady_power", ThermalStart::steady_power}};
  return names;
}

void describe(Schema<PowerConfig>& s) {
  using P = PowerConfig;
  s.field("cap_w", &P::cap_w).min(0).unit("W").doc("per-GPU power limit (nvidia-smi -pl); 0: the card's TDP");
  s.field("node_budget_w", &P::node_budget_w).min(0).unit("W").doc("power budget of a node, split evenly over its GPUs; 0: none");
  s.field("cluster_budget_w", &P::cluster_budget_w).min(0).unit("W").doc("power budget of the cluster, split evenly; 0: none");
}

void describe(Schema<CapacityParams>& s) {
  using C = CapacityParams;
  s.field("factor", &C::factor).greater_than(0).max(1000).doc("tokens per slot and layer = ceil(factor x assignments / slots)");
  s.field("overflow", &C::overflow).one_of([] { return std::vector<std::string>{"drop", "next_replica"}; })
      .doc("what happens to an assignment whose slot is full: dropped (counted), or the expert's next replica with room");
}

void describe(Schema<NectarParams>& s) {
  using N = NectarParams;
  s.field("mode", &N::mode).one_of([] { return std::vector<std::string>{"gate_bias", "replica"}; })
      .doc("replica: steer among replicas, selection kept; gate_bias: bias the gate before top-k (changes selection)");
  s.field("strength", &N::strength).min(0).max(100).doc("bias = strength x (target - current)");
  s.field("history_steps", &N::history_steps).min(1).max(100000).unit("steps").doc("sliding window of distributions");
  s.field("trend_steps", &N::trend_steps).min(2).max(100000).unit("steps").doc("the linear trend uses the last this many");
  s.field("imbalance_threshold", &N::imbalance_threshold).min(0)
      .doc("bias only when the predicted imbalance score (KL/E + variance) exceeds this, or under pressure");
  s.field("power_budget_w", &N::power_budget_w).min(0).unit("W").doc("per-GPU budget of the power pressure; 0: the effective cap");
}

void describe(Schema<RoutingPolicyConfig>& s) {
  using R = RoutingPolicyConfig;
  s.field("policy", &R::policy).one_of([] { return routing_policies().names(); })
      .doc("how tokens reach expert replicas; `moesim list policies` (all but static need parallel.mode ep)");
  s.field("placement", &R::placement).one_of([] { return std::vector<std::string>{"auto", "contiguous", "eplb"}; })
      .doc("contiguous: expert e on GPU e*N/E; eplb: DeepSeek's EPLB with replicas; auto: contiguous for static, else eplb");
  s.field("num_redundant_experts", &R::num_redundant_experts).min(0).max(100000).doc("extra physical expert slots per MoE layer");
  s.field("interval_steps", &R::interval_steps).min(1).unit("steps").doc("rebalance every this many steps");
  s.field("window_steps", &R::window_steps).min(1).max(1000000).unit("steps").doc("rebalance from the loads of this many recent steps");
  s.field("interval_s", &R::interval_s).min(0).unit("s").doc("> 0: rebalance every this many simulated seconds instead of interval_steps");
  s.field("rebalance_threshold", &R::rebalance_threshold).min(0)
      .doc("> 0: also rebalance when a step's GPU load exceeds the mean by more than this fraction: max/mean > 1 + threshold, "
           "e.g. 0.15 for 15% (at most once per window_steps)");
  s.field("num_groups", &R::num_groups).min(0).doc("expert groups for the hierarchical policy; 0: the model's n_group or 1");
  s.field("replica_selection", &R::replica_selection)
      .one_of([] { return std::vector<std::string>{"even", "nearest", "position", "random"}; })
      .doc("default replica of a token: position (vLLM), random (SGLang dynamic), nearest (SGLang static), even (round robin)");
  s.field("migration", &R::migration).one_of([] { return std::vector<std::string>{"none", "overlap", "stall"}; })
      .doc("moved expert weights: stall (serving waits for the copy), overlap (copy beside serving; new map when done), none (free)");
  s.field("least_loaded_choices", &R::least_loaded_choices).min(0).max(2)
      .doc("least_loaded: 0 compares every replica, 2 the lesser of two random ones");
  s.section("capacity", &R::capacity, "capacity policy");
  s.section("nectar", &R::nectar, "nectar dynamic rerouting");
  s.field("aux_free_update_speed", &R::aux_free_update_speed).min(0).max(10)
      .doc("aux_free_bias: gate-bias step per step and layer (log-probability units)");
}

void describe(Schema<SloConfig>& s) {
  s.field("ttft_ms", &SloConfig::ttft_ms).min(0).unit("ms").doc("TTFT objective for goodput; 0: none");
  s.field("tpot_ms", &SloConfig::tpot_ms).min(0).unit("ms").doc("TPOT objective for goodput; 0: none");
}

void describe(Schema<ThermalConfig>& s) {
  using T = ThermalConfig;
  s.field("inlet_c", &T::inlet_c).min(-20).max(80).unit("degC").doc("inlet air temperature of every GPU");
  s.field("initial", &T::initial)
      .doc("cold: GPUs start at the inlet temperature; steady_idle: at their idle steady state; steady_power: at the "
           "steady state of initial_power_w (GPUs that have been serving before the run)");
  s.field("initial_power_w", &T::initial_power_w).min(0).max(1e5).unit("W").doc("steady_power: the power whose steady state the GPUs start at");
  s.field("recirculation_k_per_kw", &T::recirculation_k_per_kw).min(0).max(100).unit("K/kW")
      .doc("hot-air recirculation: a node's inlet rises by this much per kW of its GPUs' power, reached through a "
           "first-order lag of recirculation_tau_s (0: the inlet stays at inlet_c)");
  s.field("recirculation_tau_s", &T::recirculation_tau_s).greater_than(0).max(1e6).unit("s")
      .doc("time constant with which the recirculated air follows the node's power");
  s.check([](const T& t, Checker& c) {
    if (t.initial == ThermalStart::steady_power && t.initial_power_w <= 0)
      c.error("initial_power_w", "steady_power needs initial_power_w > 0");
  });
}

double effective_cap_w(const Scenario& sc) {
  const auto& g = sc.cluster.gpu.spec;
  double cap = sc.power.cap_w > 0 ? sc.power.cap_w : g.tdp_w;
  if (sc.power.node_budget_w > 0) cap = std::min(cap, sc.power.node_budget_w / sc.cluster.gpus_per_node);
  if (sc.power.cluster_budget_w > 0) cap = std::min(cap, sc.power.cluster_budget_w / sc.cluster.num_gpus());
  return cap;
}

void describe(Schema<OutputsConfig>& s) {
  using O = OutputsConfig;
  s.field("expert_profiler", &O::expert_profiler).doc("write moe_expert_tracking/ (the MoE expert profiler's files)");
  s.field("gate_logs", &O::gate_logs).doc("write gate_logs/gate_logs_<k>.json (per-step per-layer expert counts)");
  s.field("profiler_log_interval_tokens", &O::profiler_log_interval_tokens).min(1).max(1'000'000'000).unit("tokens")
      .doc("log the routing weights of every n-th token");
  s.field("gate_log_steps_per_file", &O::gate_log_steps_per_file).min(1).max(1'000'000).unit("steps");
  s.field("imbalance_filter_max_tokens", &O::imbalance_filter_max_tokens).min(1).unit("tokens")
      .doc("aggregated imbalance counts only steps with at most this many tokens");
  s.field("trend_window_steps", &O::trend_window_steps).min(2).max(1'000'000).unit("steps").doc("window of the load-variance trend");
  s.field("trace", &O::trace).doc("write trace.json (Chrome / Perfetto trace of GPU kernels, collectives and steps)");
  s.field("trace_max_steps", &O::trace_max_steps).min(0).max(1'000'000).unit("steps")
      .doc("steps per instance whose GPU spans go into the trace; 0 for all");
  s.field("gpus_csv_interval_s", &O::gpus_csv_interval_s).min(0).unit("s")
      .doc("gpus.csv: at most one row per GPU per interval (throttle changes always); 0: every power change");
  s.field("timeseries_interval_s", &O::timeseries_interval_s).min(0).unit("s")
      .doc("timeseries.csv: the interval of its rows; 0: a 1-2-5 step giving 500 to 1000 rows over the run");
}

void describe(Schema<LengthDistParams>& s) {
  using L = LengthDistParams;
  s.field("dist", &L::dist).one_of(names_of_lengths).doc("length distribution");
  s.field("value", &L::value).min(1).max(kMaxModelLen).unit("tokens").doc("fixed: the length");
  s.field("mean", &L::mean).greater_than(0).max(kMaxModelLen).unit("tokens").doc("lognormal, normal: the mean");
  s.field("sigma", &L::sigma).min(0).max(kMaxModelLen).doc("lognormal: sigma of the log; normal: standard deviation in tokens");
  s.field("min", &L::min).min(1).max(kMaxModelLen).unit("tokens").doc("lower clamp (uniform: lower bound)");
  s.field("max", &L::max).min(0).max(kMaxModelLen).unit("tokens").doc("upper clamp, 0 for none (uniform: upper bound)");
  s.check([](const L& p, Checker& c) {
    if (auto issue = length_distributions().get(p.dist).check(p)) c.error(issue->key, issue->message);
  });
}

void describe(Schema<ArrivalParams>& s) {
  using A = ArrivalParams;
  s.field("process", &A::process).one_of(names_of_arrivals).doc("arrival process");
  s.field("rate_per_s", &A::rate_per_s).greater_than(0).unit("requests/s").doc("mean arrival rate (poisson, gamma, constant)");
  s.field("cv", &A::cv).greater_than(0).max(100).doc("gamma: coefficient of variation of the gaps (1 = poisson)");
  s.field("max_concurrency", &A::max_concurrency).min(0).max(kMaxRequests).unit("requests").doc("closed_loop: requests in flight");
  s.check([](const A& a, Checker& c) {
    if (a.process == "closed_loop" && a.max_concurrency < 1) c.error("max_concurrency", "closed_loop needs max_concurrency >= 1");
  });
}

void describe(Schema<RoutingModelParams>& s) {
  using R = RoutingModelParams;
  s.field("model", &R::model).one_of(names_of_routers).doc("how tokens pick experts");
  s.field("specialization", &R::specialization).min(-1).max(5)
      .doc("domain_affinity: sigma of log expert popularity; -1 takes the model card's routing_specialization");
  s.field("locality", &R::locality).min(-1).max(1)
      .doc("domain_affinity: P(token repeats its predecessor's first choice), exactly; 0 turns the mechanism off "
           "(repeats at chance); -1 takes the card's routing_locality");
  s.field("layer_correlation", &R::layer_correlation).min(0).max(1)
      .doc("domain_affinity: P(a token's first choice follows its previous layer's first choice)");
  s.field("drift_per_sqrt_s", &R::drift_per_sqrt_s).min(0).doc("domain_affinity: random-walk drift of log popularity");
  s.field("zipf_s", &R::zipf_s).min(0).max(10).doc("zipf: exponent over expert rank");
  s.field("hot_experts", &R::hot_experts).doc("hot_experts: expert ids of the hot set");
  s.field("hot_share", &R::hot_share).greater_than(0).max(1).doc("hot_experts: popularity share of the hot set");
  s.field("trace", &R::trace).doc("trace: gate-log folder or moe_expert_activations.csv");
  s.field("sampling", &R::sampling).one_of([] { return std::vector<std::string>{"count", "token"}; })
      .doc("token: every token's top-k (locality, co-selection, exact dispatch); count: per-expert counts per "
           "step from Binomial draws (fast at scale; no locality, no co-selection or weight logs)");
  s.check([](const R& r, Checker& c) {
    if (r.model == "hot_experts" && r.hot_experts.empty()) c.error("hot_experts", "hot_experts needs at least one expert id");
    if (r.model == "trace" && r.trace.empty()) c.error("trace", "the trace router needs a gate-log folder or activations CSV");
  });
}

void describe(Schema<TraceParams>& s) {
  using T = TraceParams;
  s.field("format", &T::format).one_of([] {
     auto names = trace_formats();
     names.insert(names.begin(), "");
     return names;
   }).doc("trace format; empty: no trace (models/workload/trace_reader.hpp lists each format's columns)");
  s.field("path", &T::path).doc("the trace file (CSV or JSONL), relative to the scenario");
  s.field("start_s", &T::start_s).min(0).unit("s").doc("window start, seconds after the trace's first record");
  s.field("duration_s", &T::duration_s).min(0).unit("s").doc("window length; 0: to the end of the trace");
  s.field("max_requests", &T::max_requests).min(0).max(kMaxRequests).unit("requests").doc("at most this many requests of the window; 0: all");
  s.field("groups", &T::groups).doc("keep only these groups (BurstGPT Model, Bailian type, Splitwise application_id, moesim domain)");
  s.field("keep_failed", &T::keep_failed).doc("replay the trace's failed requests (BurstGPT: 0 response tokens) too");
  s.field("speedup", &T::speedup).greater_than(0).max(1e6).doc("arrival.process trace: recorded gaps divided by this");
  s.field("rate_per_s", &T::rate_per_s).min(0).unit("requests/s")
      .doc("arrival.process trace, > 0: every gap scaled by one factor so that the mean rate is this (burstiness kept)");
  s.field("block_tokens", &T::block_tokens).min(1).max(1 << 20).unit("tokens").doc("moesim format: tokens per hash id");
  s.field("group_domains", &T::group_domains).doc("trace group -> corpus domain; requests of other groups draw from workload.domains");
  s.field("sessions", &T::sessions).one_of([] { return std::vector<std::string>{"recorded", "after_parent", "think_time"}; })
      .doc("multi-turn sessions (chat_id / parent_chat_id): recorded times; after_parent: a turn no earlier than its parent's "
           "finish + think time; think_time: at its parent's finish + think time");
  s.field("think_time_s", &T::think_time_s).min(0).max(86400).unit("s").doc("mean think time between a turn's finish and the next turn");
  s.field("think_time_dist", &T::think_time_dist).one_of([] { return std::vector<std::string>{"exponential", "fixed"}; }).doc("distribution of the think time");
  s.check([](const T& t, Checker& c) {
    if (!t.format.empty() && t.path.empty()) c.error("path", "a trace needs its file");
    if (t.format.empty() && !t.path.empty()) c.error("format", "a trace file needs its format; one of " + join(trace_formats()));
    if (t.speedup != 1.0 && t.rate_per_s > 0) c.error("rate_per_s", "give speedup or rate_per_s, not both");
  });
}

/// workload.domain_drift.points: a list of {at_s: seconds, domains: {name: weight}}.
template <>
struct Codec<std::vector<DomainKeyframe>> {
  static constexpr const char* type = "list";
  static bool decode(const YAML::Node& n, std::vector<DomainKeyframe>& out, std::string& err) {
    out.clear();
    if (n.IsNull()) return true;
    if (!n.IsSequence()) {
      err = "expected a list of {at_s: seconds, domains: {name: weight}} (got " + describe_node(n) + ")";
      return false;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
      const YAML::Node item = n[i];
      const std::string where = fmt::format("point {} (line {})", i, item.Mark().line + 1);
      if (!item.IsMap()) {
        err = where + ": expected {at_s: seconds, domains: {name: weight}} (got " + describe_node(item) + ")";
        return false;
      }
      DomainKeyframe k;
      bool has_at = false;
      for (auto it = item.begin(); it != item.end(); ++it) {
        const std::string key = it->first.IsScalar() ? it->first.Scalar() : describe_node(it->first);
        std::string e;
        if (key == "at_s") {
          if (!Codec<double>::decode(it->second, k.at_s, e) || k.at_s < 0) {
            err = where + ": at_s must be a number of seconds >= 0" + (e.empty() ? "" : " (" + e + ")");
            return false;
          }
          has_at = true;
        } else if (key == "domains") {
          if (!Codec<std::map<std::string, double>>::decode(it->second, k.domains, e)) {
            err = where + ": domains: " + e;
            return false;
          }
        } else {
          err = where + ": unknown key \"" + key + "\"; allowed: at_s, domains";
          return false;
        }
      }
      if (!has_at) {
        err = where + ": at_s is missing";
        return false;
      }
      out.push_back(std::move(k));
    }
    return true;
  }
  static YAML::Node encode(const std::vector<DomainKeyframe>& v) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& k : v) {
      YAML::Node item(YAML::NodeType::Map);
      item["at_s"] = Codec<double>::encode(k.at_s);
      item["domains"] = Codec<std::map<std::string, double>>::encode(k.domains);
      out.push_back(item);
    }
    return out;
  }
};

void describe(Schema<DomainDriftParams>& s) {
  using D = DomainDriftParams;
  s.field("period_s", &D::period_s).min(0).max(1e9).unit("s").doc("the keyframes repeat every period (86400: a day); 0: no repeat");
  s.field("points", &D::points)
      .doc("keyframes {at_s, domains: {name: weight}}, at_s increasing; the mix is linear between them");
  s.check([](const D& d, Checker& c) {
    for (std::size_t i = 0; i < d.points.size(); ++i) {
      const auto& k = d.points[i];
      if (i > 0 && !(k.at_s > d.points[i - 1].at_s))
        c.error("points", fmt::format("point {}: at_s {} must be greater than the previous point's {}", i, k.at_s, d.points[i - 1].at_s));
      if (d.period_s > 0 && k.at_s >= d.period_s)
        c.error("points", fmt::format("point {}: at_s {} must be less than period_s {}", i, k.at_s, d.period_s));
      double total = 0;
      for (const auto& [name, w] : k.domains) total += w;
      if (!k.domains.empty() && total <= 0) c.error("points", fmt::format("point {}: the weights must not all be 0", i));
    }
    if (d.period_s > 0 && d.points.empty()) c.error("period_s", "a period needs points");
  });
}

void describe(Schema<WorkloadParams>& s) {
  using W = WorkloadParams;
  s.field("requests", &W::requests).min(1).max(kMaxRequests)
      .doc("number of requests (a dataset is reused in order if shorter; a trace gives the requests of its window instead)");
  s.section("trace", &W::trace, "a production trace replayed as the workload");
  s.field("dataset", &W::dataset).doc("JSONL requests (moesim gen-datasets); lengths and domains come from its lines");
  s.field("domains", &W::domains).doc("domain mix of synthetic requests, name: weight; empty: uniform over the corpus");
  s.section("domain_drift", &W::domain_drift, "the domain mix over the day (replaces workload.domains)");
  s.section("routing", &W::routing, "token-to-expert routing model");
  s.section("arrival", &W::arrival, "arrival process");
  s.section("prompt_tokens", &W::prompt_tokens, "prompt length distribution");
  s.section("output_tokens", &W::output_tokens, "output length distribution");
}

void describe(Schema<Scenario>& s) {
  s.field("name", &Scenario::name).doc("scenario name: 1-100 of A-Z a-z 0-9 . _ -, not starting with . or - (the default output folder is results/<name>)");
  s.field("description", &Scenario::description).doc("free text");
  s.field("seed", &Scenario::seed).doc("root of every random stream");
  card_field(s, "model", &Scenario::model, "model card, e.g. mixtral-8x7b").required = true;
  s.section("cluster", &Scenario::cluster, "GPUs and fabrics").required = true;
  s.section("parallel", &Scenario::parallel, "parallelism");
  s.section("serving", &Scenario::serving, "batch scheduler limits");
  s.section("workload", &Scenario::workload, "requests");
  s.section("network", &Scenario::network, "communication model");
  s.section("routing", &Scenario::routing, "expert placement and rebalancing");
  s.section("slo", &Scenario::slo, "service-level objectives for goodput");
  s.section("power", &Scenario::power, "power caps and budgets");
  s.section("thermal", &Scenario::thermal, "cooling");
  s.section("outputs", &Scenario::outputs, "optional output files");
  s.check([](const Scenario& sc, Checker& c) {
    // The name becomes a folder name (results/<name>): no separators, no "." or "..", nothing a
    // shell or a file system treats specially.
    const std::string& n = sc.name;
    const bool chars_ok = std::all_of(n.begin(), n.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    });
    if (n.empty() || n.size() > 100 || !chars_ok || n.front() == '.' || n.front() == '-')
      c.error("name", "must be 1 to 100 characters of A-Z a-z 0-9 . _ -, not starting with . or - (it names the output folder "
                      "results/<name>) (got \"" + n + "\")");
  });
}

std::filesystem::path domain_corpus_path(const Catalog& catalog) { return catalog.home() / "datasets/domain_queries.json"; }

namespace {

std::string fmt_gb(double bytes) {
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << bytes / 1e9 << " GB";
  return s.str();
}

/// Applies one `key.path=value` to the YAML tree.
void apply_override(YAML::Node& root, const std::string& arg, std::map<std::string, std::string>& overrides,
                    std::vector<Diagnostic>& sink) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) {
    sink.push_back({"--set " + arg, 0, "", "expected key.path=value"});
    return;
  }
  const std::string path = arg.substr(0, eq);
  const std::string text = arg.substr(eq + 1);
  if (const auto bad = first_invalid_utf8(arg)) {
    sink.push_back({"--set " + path + "=...", 0, path, invalid_utf8_message(*bad)});
    return;
  }
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    sink.push_back({"--set " + arg, 0, path, "malformed value: " + e.msg});
    return;
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  YAML::Node cur = root;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node child = cur[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
    } else if (child.IsScalar()) {
      // `model: mixtral-8x7b` overridden field by field becomes {card: mixtral-8x7b, ...}.
      YAML::Node as_card(YAML::NodeType::Map);
      as_card["card"] = child.Scalar();
      cur[parts[i]] = as_card;
    } else if (!child.IsMap()) {
      sink.push_back({"--set " + arg, 0, path, "cannot set a key inside " + describe_node(child)});
      return;
    }
    YAML::Node next = cur[parts[i]];
    cur.reset(next);
  }
  cur[parts.back()] = value;
  overrides[path] = arg;
}

/// Fills derived values: parallel sizes, max_model_len, the default intra-node fabric.
void resolve(Scenario& sc, ParseContext& ctx) {
  auto& par = sc.parallel;
  const int gpus = sc.cluster.num_gpus();
  if (par.mode == ParallelMode::tp) {
    if (par.tp == 0) par.tp = gpus / par.dp;
    if (par.ep == 0) par.ep = 1;
  } else {
    if (par.ep == 0) par.ep = gpus / par.dp;
    if (par.tp == 0) par.tp = 1;
  }
  if (sc.serving.max_model_len == 0) sc.serving.max_model_len = sc.model.spec.max_position_embeddings;
  if (sc.workload.routing.specialization < 0) sc.workload.routing.specialization = sc.model.spec.routing_specialization;
  if (sc.workload.routing.locality < 0) sc.workload.routing.locality = sc.model.spec.routing_locality;
  if (!sc.cluster.intra_node.loaded && sc.cluster.gpu.loaded) {
    sc.cluster.intra_node.card = sc.cluster.gpu.spec.default_intra_node;
    load_card(sc.cluster.intra_node, ctx, "cluster.gpu.default_intra_node", nullptr);
  }
  if (!sc.cluster.inter_node.loaded) load_card(sc.cluster.inter_node, ctx, "cluster.inter_node", nullptr);
}

/// Checks that span sections: parallel sizes against GPUs, experts against EP, memory.
void check_consistency(const Scenario& sc, ParseContext& ctx) {
  const auto& par = sc.parallel;
  const auto& m = sc.model.spec;
  const int gpus = sc.cluster.num_gpus();
  const std::string mode = par.mode == ParallelMode::tp ? "tp" : "ep";
  if (par.mode == ParallelMode::tp && par.ep != 1)
    ctx.error_at("parallel.ep", "must be 1 in mode tp (got " + std::to_string(par.ep) + "); use mode: ep for expert parallelism");
  if (par.mode == ParallelMode::ep && par.tp != 1)
    ctx.error_at("parallel.tp", "must be 1 in mode ep (got " + std::to_string(par.tp) +
                                    "); attention inside the EP group is set by parallel.attention");
  // Each size may reach kMaxGpus: their product needs 64 bits.
  const std::int64_t tp_ep_dp = static_cast<std::int64_t>(par.tp) * par.ep * par.dp;
  if (tp_ep_dp != gpus)
    ctx.error_at("parallel", "tp x ep x dp = " + std::to_string(par.tp) + " x " + std::to_string(par.ep) + " x " +
                                 std::to_string(par.dp) + " = " + std::to_string(tp_ep_dp) +
                                 " must equal the cluster's GPUs, nodes x gpus_per_node = " +
                                 std::to_string(sc.cluster.nodes) + " x " + std::to_string(sc.cluster.gpus_per_node) +
                                 " = " + std::to_string(gpus));
  if (par.ep >= 1 && m.num_experts % par.ep != 0 && !(par.mode == ParallelMode::ep && sc.routing.eplb_placement()))
    ctx.error_at("parallel.ep", "the model's " + std::to_string(m.num_experts) + " experts must divide evenly over ep = " +
                                    std::to_string(par.ep) + " GPUs (or use the eplb placement with redundant experts that make "
                                    "experts + routing.num_redundant_experts divide)");
  const bool sharded_attention = par.mode == ParallelMode::tp || par.attention == EpAttention::tp;
  const int shards = par.mode == ParallelMode::tp ? par.tp : par.ep;
  if (sharded_attention && shards >= 1 && m.num_attention_heads % shards != 0)
    ctx.error_at(par.mode == ParallelMode::tp ? "parallel.tp" : "parallel.attention",
                 "the model's " + std::to_string(m.num_attention_heads) + " attention heads must divide evenly over " +
                     std::to_string(shards) + " GPUs");
  if (sc.serving.max_model_len > m.max_position_embeddings)
    ctx.error_at("serving.max_model_len", "must be <= the model's max_position_embeddings (" +
                                              std::to_string(m.max_position_embeddings) + ") (got " +
                                              std::to_string(sc.serving.max_model_len) + ")");
  if (sc.serving.max_model_len < 2)
    ctx.error_at("serving.max_model_len", "must be >= 2 (one prompt token and one output token)");
  if (!sc.serving.chunked_prefill && sc.serving.max_num_batched_tokens < sc.serving.max_model_len)
    ctx.error_at("serving.max_num_batched_tokens", "must be >= max_model_len (" + std::to_string(sc.serving.max_model_len) +
                                                       ") without chunked prefill (got " +
                                                       std::to_string(sc.serving.max_num_batched_tokens) + ")");
  if (sc.serving.max_num_batched_tokens < sc.serving.max_num_seqs)
    ctx.error_at("serving.max_num_batched_tokens", "must be >= max_num_seqs (" + std::to_string(sc.serving.max_num_seqs) +
                                                       ") (got " + std::to_string(sc.serving.max_num_batched_tokens) + ")");
  const auto& rp = sc.routing;
  if (rp.policy != "static" && par.mode != ParallelMode::ep)
    ctx.error_at("routing.policy", rp.policy + " places experts on an EP group: needs parallel.mode ep");
  if (rp.eplb_placement()) {
    if (par.mode != ParallelMode::ep) {
      if (rp.policy == "static") ctx.error_at("routing.placement", "eplb places experts on an EP group: needs parallel.mode ep");
    } else if ((m.num_experts + rp.num_redundant_experts) % par.ep != 0)
      ctx.error_at("routing.num_redundant_experts", "experts + redundant experts (" + std::to_string(m.num_experts) + " + " +
                                                        std::to_string(rp.num_redundant_experts) + ") must divide evenly over ep = " +
                                                        std::to_string(par.ep) + " GPUs");
    else if (rp.num_redundant_experts > m.num_experts * (par.ep - 1))
      ctx.error_at("routing.num_redundant_experts", "more replicas than slots: at most " + std::to_string(m.num_experts * (par.ep - 1)) +
                                                        " (every expert on every GPU) (got " + std::to_string(rp.num_redundant_experts) + ")");
    const int groups = rp.num_groups > 0 ? rp.num_groups : std::max(1, m.n_group);
    if (m.num_experts % groups != 0)
      ctx.error_at("routing.num_groups", "must divide the model's " + std::to_string(m.num_experts) + " experts (got " +
                                             std::to_string(groups) + ")");
  } else if (rp.num_redundant_experts > 0) {
    ctx.error_at("routing.num_redundant_experts", "redundant experts need the eplb placement (routing.placement: eplb, or a policy other than static)");
  }
  if (rp.policy == "nectar" && rp.nectar.mode == "replica" && rp.num_redundant_experts == 0 && par.mode == ParallelMode::ep)
    ctx.error_at("routing.nectar.mode", "replica mode steers among replicas: needs routing.num_redundant_experts > 0 (or mode gate_bias)");
  if (rp.least_loaded_choices == 1)
    ctx.error_at("routing.least_loaded_choices", "must be 0 (every replica) or 2 (two random replicas) (got 1)");
  if (rp.policy == "least_loaded" && rp.num_redundant_experts == 0 && par.mode == ParallelMode::ep)
    ctx.error_at("routing.num_redundant_experts", "least_loaded chooses among replicas: needs num_redundant_experts > 0");
  const auto& g = sc.cluster.gpu.spec;
  if (m.num_experts == 0 && par.mode == ParallelMode::ep)
    ctx.error_at("parallel.mode", "ep places routed experts on GPUs, but " + m.name +
                                      " is a dense model (num_experts 0): use mode tp (tensor parallelism) or dp instances");
  // The kernel model computes every matmul in its weights' dtype on the tensor cores: a dtype the
  // GPU has no tensor cores for (a zero peak on its card) is not represented, so it is refused
  // rather than run at another precision. FP8 weights are W8A8 (DeepSeek-V3, Qwen3-FP8): FP8 tensor
  // cores. FP4 weights are MXFP4, a weight-only format: without FP4 tensor cores the MoE kernels
  // dequantise them to BF16 (vLLM's gpt-oss path on Hopper), so BF16 tensor cores do.
  auto tensor_cores = [&g](DType d) {
    switch (d) {
      case DType::bf16: return g.peak_tflops_bf16 > 0;
      case DType::fp16: return g.peak_tflops_fp16 > 0;
      case DType::fp8: return g.peak_tflops_fp8 > 0;
      case DType::fp4: return g.peak_tflops_fp4 > 0;
    }
    return false;
  };
  for (const auto& [field, dtype] : {std::pair{"model.weight_dtype", m.weight_dtype}, std::pair{"model.expert_weight_dtype", m.expert_weight_dtype}})
    if (!tensor_cores(dtype) && !(dtype == DType::fp4 && tensor_cores(DType::bf16)))
      ctx.error_at(field, std::string(to_string(dtype)) + " is not supported by the " + g.name + " (peak_tflops_" + to_string(dtype) +
                              " 0 on its card: no " + to_string(dtype) + " tensor cores); use a bf16 or fp16 variant of " + m.name +
                              " or a GPU with " + to_string(dtype) + " support");
  if (par.mode == ParallelMode::ep && sc.network.dispatch_bytes_per_element(m.weight_dtype) < 2.0 && !tensor_cores(DType::fp8))
    ctx.error_at("network.dispatch_dtype", "fp8 dispatch casts on the GPU and the " + g.name +
                                               " has no fp8 support (peak_tflops_fp8 0 on its card); use bf16");
  if (par.mode == ParallelMode::ep && sc.network.combine_dtype == "fp8" && !tensor_cores(DType::fp8))
    ctx.error_at("network.combine_dtype", "fp8 combine casts on the GPU and the " + g.name +
                                              " has no fp8 support (peak_tflops_fp8 0 on its card); use bf16");
  for (const auto& [field, on] : {std::pair{"serving.shared_expert_overlap", sc.serving.shared_expert_overlap},
                                  std::pair{"serving.dual_batch_overlap", sc.serving.dual_batch_overlap}})
    if (on && par.mode != ParallelMode::ep)
      ctx.error_at(field, "overlaps compute with mode ep's dispatch and combine: needs parallel.mode ep (got tp)");
  if (sc.serving.overlap_comm_sms >= g.sm_count)
    ctx.error_at("serving.overlap_comm_sms", "must leave the " + g.name + " at least one of its " + std::to_string(g.sm_count) +
                                                 " SMs: < " + std::to_string(g.sm_count) + " (got " +
                                                 std::to_string(sc.serving.overlap_comm_sms) + ")");
  if (sc.power.cap_w > 0 && (sc.power.cap_w < g.power_limit_min_w || sc.power.cap_w > g.tdp_w))
    ctx.error_at("power.cap_w", "must be in [" + Rules<double>::num(g.power_limit_min_w) + ", " + Rules<double>::num(g.tdp_w) +
                                    "] W for a " + g.name + " (got " + Rules<double>::num(sc.power.cap_w) + ")");
  if (effective_cap_w(sc) < g.power_limit_min_w && sc.power.cap_w == 0)
    ctx.error_at("power", "the budgets leave " + Rules<double>::num(effective_cap_w(sc)) + " W per GPU, below the " + g.name +
                              "'s lowest power limit " + Rules<double>::num(g.power_limit_min_w) + " W");
  if (sc.thermal.inlet_c >= g.temp_shutdown_c)
    ctx.error_at("thermal.inlet_c", "must be below the " + g.name + "'s shutdown temperature " +
                                        Rules<double>::num(g.temp_shutdown_c) + " degC (got " + Rules<double>::num(sc.thermal.inlet_c) + ")");
  if (sc.thermal.initial == ThermalStart::steady_power && sc.thermal.initial_power_w > 0) {
    // The steady state of the two-node RC network: die = inlet + P (R_die_sink + R_sink_inlet).
    const double die = sc.thermal.inlet_c + sc.thermal.initial_power_w * (g.thermal_r_die_sink_k_per_w + g.thermal_r_sink_inlet_k_per_w);
    if (die >= g.temp_shutdown_c)
      ctx.error_at("thermal.initial_power_w", "its steady state puts the " + g.name + " die at " + Rules<double>::num(die) +
                                                  " degC, at or above its shutdown temperature " + Rules<double>::num(g.temp_shutdown_c) +
                                                  " degC: such a GPU has failed before the run starts; must be < " +
                                                  Rules<double>::num((g.temp_shutdown_c - sc.thermal.inlet_c) /
                                                                     (g.thermal_r_die_sink_k_per_w + g.thermal_r_sink_inlet_k_per_w)) +
                                                  " W at inlet " + Rules<double>::num(sc.thermal.inlet_c) + " degC (got " +
                                                  Rules<double>::num(sc.thermal.initial_power_w) + ")");
  }
  if (tp_ep_dp != gpus || par.tp < 1 || par.ep < 1) return;  // layout meaningless
  const ParallelLayout lay = make_layout(sc);
  const double kv_min = lay.kv_bytes_for(sc.serving.max_model_len);
  if (lay.weight_bytes_per_gpu + kv_min > lay.usable_bytes_per_gpu) {
    ctx.error_at("model", "does not fit: " + m.name + " needs " + fmt_gb(lay.weight_bytes_per_gpu) +
                              " of weights per GPU in mode " + mode + " plus " + fmt_gb(kv_min) + " of KV cache for one " +
                              std::to_string(sc.serving.max_model_len) + "-token sequence, but each " +
                              sc.cluster.gpu.spec.name + " has " + fmt_gb(lay.usable_bytes_per_gpu) + " usable (" +
                              fmt_gb(sc.cluster.gpu.spec.hbm_capacity_bytes()) + " x gpu_memory_utilization " +
                              Rules<double>::num(sc.serving.gpu_memory_utilization) + " - activation_reserve_gb " +
                              Rules<double>::num(sc.serving.activation_reserve_gb) + "); use more GPUs or a smaller model");
  }
}

void add_input_issues(const InputError& e, std::vector<Diagnostic>& diags) {
  for (const auto& i : e.issues()) diags.push_back({i.file, i.line, i.field, i.message});
}

/// Resolves a path given in a scenario: as written (from the current directory), else beside the
/// scenario file.
std::filesystem::path resolve_input(const std::string& given, const std::filesystem::path& scenario_file) {
  const std::filesystem::path p(given);
  if (p.is_absolute() || std::filesystem::exists(p)) return p;
  const auto beside = scenario_file.parent_path() / p;
  return std::filesystem::exists(beside) ? beside : p;
}

/// Loads the corpus, dataset and trace a workload names, and checks them against the scenario.
std::shared_ptr<const WorkloadInputs> load_inputs(Scenario& sc, const std::filesystem::path& file, const Catalog& catalog,
                                                  ParseContext& ctx, std::vector<Diagnostic>& diags) {
  auto inputs = std::make_shared<WorkloadInputs>();
  if (auto problem = input_file_problem(domain_corpus_path(catalog), kMaxScenarioFileBytes, "domain corpora"); !problem.empty()) {
    diags.push_back({domain_corpus_path(catalog).string(), 0, "", problem});
    return inputs;
  }
  try {
    inputs->corpus = DomainCorpus::load(domain_corpus_path(catalog));
  } catch (const InputError& e) {
    add_input_issues(e, diags);
    return inputs;
  }
  const auto& names = inputs->corpus.names;
  for (const auto& [name, weight] : sc.workload.domains) {
    if (inputs->corpus.index_of(name) >= 0) continue;
    std::string msg = "unknown domain \"" + name + "\"";
    if (auto near = closest_match(name, names); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
    ctx.error_at("workload.domains", msg + "; known: " + join(names));
  }
  if (!sc.workload.domains.empty()) {
    double total = 0;
    for (const auto& [name, weight] : sc.workload.domains) total += weight;
    if (total <= 0) ctx.error_at("workload.domains", "the weights must not all be 0");
  }
  const auto& arrival = arrival_processes().get(sc.workload.arrival.process);
  const DomainDriftParams& drift = sc.workload.domain_drift;
  if (!drift.points.empty()) {
    for (std::size_t i = 0; i < drift.points.size(); ++i)
      for (const auto& [name, weight] : drift.points[i].domains) {
        if (inputs->corpus.index_of(name) >= 0) continue;
        std::string msg = fmt::format("point {}: unknown domain \"{}\"", i, name);
        if (auto near = closest_match(name, names); !near.empty()) msg += " (did you mean \"" + near + "\"?)";
        ctx.error_at("workload.domain_drift.points", msg + "; known: " + join(names));
      }
    if (!sc.workload.domains.empty())
      ctx.error_at("workload.domain_drift", "give workload.domains or workload.domain_drift, not both");
    if (!sc.workload.dataset.empty())
      ctx.error_at("workload.domain_drift", "a dataset's lines carry their own domains; domain_drift applies to synthetic and trace requests");
    if (arrival.closed_loop && sc.workload.trace.format.empty())
      ctx.error_at("workload.domain_drift", "closed_loop arrival times are known only while the run goes; a drifting mix needs "
                                            "timed arrivals (poisson, gamma, constant, burst) or a trace's clock");
  }
  if (!sc.workload.dataset.empty()) {
    const auto path = resolve_input(sc.workload.dataset, file);
    sc.workload.dataset = path.string();
    if (auto problem = input_file_problem(path, kMaxInputFileBytes, "datasets and traces"); !problem.empty()) {
      ctx.error_at("workload.dataset", path.string() + " " + problem);
      return inputs;
    }
    try {
      inputs->dataset = load_dataset(path, inputs->corpus);
    } catch (const InputError& e) {
      add_input_issues(e, diags);
      return inputs;
    }
    // Lines longer than serving.max_model_len are not an error: the server rejects those requests
    // at arrival, as vLLM does, and summary.json counts them (rejected_reasons).
    int line = 0;
    for (const auto& r : inputs->dataset) {
      ++line;
      if (arrival.from_dataset && !r.arrival_s) {
        diags.push_back({path.string(), line, "arrival_s", "missing; arrival.process: dataset needs it on every line"});
        break;
      }
    }
  } else if (arrival.from_dataset) {
    ctx.error_at("workload.arrival.process", "dataset arrivals need workload.dataset");
  }
  const TraceParams& tp = sc.workload.trace;
  if (arrival.from_trace && tp.format.empty()) ctx.error_at("workload.arrival.process", "trace arrivals need workload.trace");
  if (tp.sessions != "recorded" && !arrival.from_trace)
    ctx.error_at("workload.trace.sessions", "sessions: " + tp.sessions + " times turns from the trace; it needs arrival.process: trace");
  if (!tp.format.empty() && !sc.workload.dataset.empty())
    ctx.error_at("workload.trace", "give workload.dataset or workload.trace, not both");
  for (const auto& [group, domain] : tp.group_domains)
    if (inputs->corpus.index_of(domain) < 0)
      ctx.error_at("workload.trace.group_domains", "group \"" + group + "\" maps to unknown domain \"" + domain + "\"; known: " + join(names));
  if (!tp.format.empty() && !tp.path.empty()) {
    const auto path = resolve_input(tp.path, file);
    sc.workload.trace.path = path.string();
    TraceFilter filter{tp.start_s, tp.duration_s, tp.max_requests, tp.groups, tp.keep_failed};
    try {
      // Streamed: only the window's records are kept.
      TraceReader reader(path, tp.format, filter, tp.block_tokens);
      while (auto rec = reader.next()) {
        if (static_cast<std::int64_t>(inputs->trace.size()) >= kMaxRequests)
          throw InputError({{path.string(), rec->line, "", "the window holds more than " + std::to_string(kMaxRequests) +
                                                             " requests; cut it with workload.trace.duration_s or max_requests"}});
        inputs->trace.push_back(std::move(*rec));
      }
      inputs->trace_hash_block_tokens = reader.hash_block_tokens();
      inputs->trace_counters = reader.counters();
      if (reader.hash_block_tokens() > 0)
        inputs->trace_unbounded_prefix_hit_tokens = summarize_trace(path, tp.format, filter, tp.block_tokens).unbounded_prefix_hit_tokens;
    } catch (const InputError& e) {
      add_input_issues(e, diags);
      return inputs;
    }
    if (inputs->trace.empty()) ctx.error_at("workload.trace", path.string() + ": no request in the window (start_s, duration_s, groups)");
  }
  const auto& m = sc.model.spec;
  for (int e : sc.workload.routing.hot_experts)
    if (e < 0 || e >= m.num_experts)
      ctx.error_at("workload.routing.hot_experts", "expert ids must be in [0, " + std::to_string(m.num_experts - 1) +
                                                       "] (got " + std::to_string(e) + ")");
  if (sc.workload.routing.model == "trace") {
    const auto path = resolve_input(sc.workload.routing.trace, file);
    sc.workload.routing.trace = path.string();
    if (auto problem = input_file_problem(path, kMaxInputFileBytes, "datasets and traces", /*folder_allowed=*/true); !problem.empty()) {
      ctx.error_at("workload.routing.trace", path.string() + " " + problem);
      return inputs;
    }
    try {
      const RoutingTrace trace = load_routing_trace(path, m.num_moe_layers(), m.num_experts);
      // What the run will read, for scenario_fingerprint: a trace edited between two runs is a
      // different input even under the same path.
      std::uint64_t h = 14695981039346656037ull;
      const auto mix = [&h](std::uint64_t x) {
        for (int b = 0; b < 8; ++b, x >>= 8) {
          h ^= x & 0xff;
          h *= 1099511628211ull;
        }
      };
      mix(static_cast<std::uint64_t>(trace.per_step));
      for (const auto& step : trace.steps) {
        mix(step.size());
        for (const auto& layer : step)
          for (const double c : layer) mix(std::bit_cast<std::uint64_t>(c));
      }
      inputs->routing_trace_digest = h;
    } catch (const InputError& e) {
      add_input_issues(e, diags);
    }
  }
  return inputs;
}

}  // namespace

Scenario load_scenario(const std::filesystem::path& file, const std::vector<std::string>& set_args, const Catalog& catalog) {
  std::vector<Diagnostic> diags;
  if (auto problem = input_file_problem(file, kMaxScenarioFileBytes, "scenario files"); !problem.empty())
    throw ConfigError({{file.string(), 0, "", problem}});
  std::ifstream in(file);
  if (!in) throw ConfigError({{file.string(), 0, "", "cannot open scenario file"}});
  std::stringstream text;
  text << in.rdbuf();
  if (const auto bad = first_invalid_utf8(text.view())) throw ConfigError({{file.string(), bad->first, "", invalid_utf8_message(*bad)}});
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    throw ConfigError({{file.string(), e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "malformed YAML: " + e.msg}});
  }
  if (!root.IsMap()) throw ConfigError({{file.string(), 1, "", "a scenario must be a mapping of keys (got " + describe_node(root) + ")"}});

  std::map<std::string, std::string> overrides;
  for (const auto& arg : set_args) apply_override(root, arg, overrides, diags);
  if (!diags.empty()) throw ConfigError(diags);

  ParseContext ctx(file.string(), diags, &overrides, &catalog);
  Scenario sc;
  // Without a `name`, the file's stem, made a valid name (the check in describe(Schema<Scenario>)).
  sc.name = file.stem().string();
  for (char& ch : sc.name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') ch = '_';
  while (!sc.name.empty() && (sc.name.front() == '.' || sc.name.front() == '-')) sc.name.erase(0, 1);
  if (sc.name.size() > 100) sc.name.resize(100);
  if (sc.name.empty()) sc.name = "scenario";
  // The `sweep` section belongs to `moesim sweep` (sim/sweep); a run ignores it.
  Schema<Scenario>::ParseOptions options;
  options.extra_keys = {"sweep"};
  schema_of<Scenario>().parse(root, sc, ctx, "", options);
  if (!diags.empty()) throw ConfigError(diags);
  resolve(sc, ctx);
  if (!diags.empty()) throw ConfigError(diags);
  check_consistency(sc, ctx);
  if (!diags.empty()) throw ConfigError(diags);
  sc.inputs = load_inputs(sc, file, catalog, ctx, diags);
  if (!diags.empty()) throw ConfigError(diags);
  return sc;
}

std::vector<FieldDoc> scenario_field_docs() {
  std::vector<FieldDoc> rows;
  schema_of<Scenario>().document(rows, "");
  return rows;
}

std::string resolved_yaml(const Scenario& scenario) {
  YAML::Emitter out;
  out << schema_of<Scenario>().dump(scenario);
  return std::string(out.c_str()) + "\n";
}

namespace {

struct Fnv1a64 {
  std::uint64_t h = 14695981039346656037ull;
  void bytes(std::string_view text) {
    for (const unsigned char c : text) {
      h ^= c;
      h *= 1099511628211ull;
    }
    // A separator, so that consecutive fields cannot run into each other.
    h ^= 0xff;
    h *= 1099511628211ull;
  }
  void number(std::int64_t x) { bytes(std::to_string(x)); }
};

}  // namespace

std::string scenario_fingerprint(const Scenario& scenario) {
  Fnv1a64 f;
  f.bytes(resolved_yaml(scenario));
  if (scenario.inputs) {
    for (std::size_t d = 0; d < scenario.inputs->corpus.names.size(); ++d) {
      f.bytes(scenario.inputs->corpus.names[d]);
      for (const auto& q : scenario.inputs->corpus.queries[d]) f.bytes(q);
    }
    for (const auto& r : scenario.inputs->dataset) {
      f.number(static_cast<std::int64_t>(r.prompt_digest));
      f.number(r.domain);
      f.number(r.prompt_tokens);
      f.number(r.output_tokens);
      f.bytes(r.arrival_s ? fmt::format("{:a}", *r.arrival_s) : std::string("-"));
      f.number(r.prefix_id);
      f.number(r.prefix_tokens);
    }
    for (const auto& r : scenario.inputs->trace) {
      f.bytes(fmt::format("{:a}", r.time_s));
      f.number(r.input_tokens);
      f.number(r.output_tokens);
      f.bytes(r.group);
      for (auto h : r.hash_ids) f.number(h);
      f.number(r.chat_id);
      f.number(r.parent_chat_id);
    }
    f.bytes(std::to_string(scenario.inputs->routing_trace_digest));
  }
  return fmt::format("{:016x}", f.h);
}

}  // namespace moesim
