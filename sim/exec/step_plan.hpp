#pragma once
// The step executor's plan: what every GPU of a serving instance computes and communicates, layer
// by layer, for one batch. Pure C++ (no SimGrid): the actors in sim/actors replay a plan on the
// platform, so every number here is testable on its own.
//
// Phases per layer, N GPUs per instance (see layout.hpp for the weight split):
//   mode tp          : attention -> all-reduce -> MoE (every expert 1/N, all tokens) -> all-reduce
//   mode ep, attn tp : attention -> all-reduce -> dispatch (each GPU its 1/N slice of tokens)
//                      -> experts (E/N whole experts, plus shared experts 1/N) -> combine
//                      -> all-reduce (all-gather when the model has no shared experts)
//   mode ep, attn dp : attention (each GPU its own sequences) -> dispatch -> experts (+ replicated
//                      shared experts on own tokens) -> combine
// Dense layers replace the MoE part with a dense FFN (sharded like attention). The last layer adds
// the LM head over the tokens that emit an output token. A compute phase lasts as long as its
// slowest GPU: the collective after it waits for everyone, so imbalance shows as time.
//
// Dispatch and combine move tokens as DeepEP's kernels do (network.ep_mode, see
// models/network/ep_traffic.hpp): normal kernels send a token once to each GPU that holds one of
// its top-k experts (across nodes once per node over RDMA, then over NVLink), low-latency kernels
// once per selected expert over RDMA; combine mirrors dispatch. Token bytes follow
// network.dispatch_dtype (auto: FP8 when the model's weights are FP8, as DeepSeek-V3 serves) and
// network.combine_dtype (BF16 by default). All-reduces are ring or tree, whichever is faster.
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <span>
#include <string>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "models/gpu/kernel_cost.hpp"
#include "models/network/collectives.hpp"
#include "models/network/ep_traffic.hpp"
#include "models/routing/eplb.hpp"
#include "models/routing/placement.hpp"
#include "models/routing/policy.hpp"
#include "models/routing/router.hpp"
#include "models/serving/scheduler.hpp"
#include "sim/exec/layout.hpp"

namespace moesim {

enum class PhaseKind { attention, dense_ffn, moe, lm_head, comm };
[[nodiscard]] const char* to_string(PhaseKind kind);

/// One GPU's kernels in a compute phase: their time, how much of it is compute-bound (stretches
/// as f_max / f under a lower clock) and the utilisations the power model needs.
/// (models/gpu/kernel_cost.hpp: seconds, compute_bound_s, compute_busy_s, memory_busy_s.)
using RankWork = KernelTime;

/// One value per GPU of an instance; up to 8 GPUs (a node) inline, so planning a step of a small
/// instance allocates nothing.
using PerGpu = boost::container::small_vector<double, 8>;

/// A compute phase (every GPU runs its kernels; the phase ends with the slowest), or a comm phase
/// (a collective). A comm phase may carry compute that runs beside its collective (overlap:
/// serving.shared_expert_overlap, serving.dual_batch_overlap): then the per-GPU vectors hold that
/// compute, `overlap_kind` says what it is, and the phase lasts
///   max(collective time, slowest GPU's overlapped compute)
/// (phase_seconds); the collective and the compute both start once every GPU has finished the
/// phases before (the collective's usual synchronisation).
struct Phase {
  PhaseKind kind = PhaseKind::attention;
  PerGpu compute_s;        ///< per GPU of the instance (compute phases), at f_max
  PerGpu compute_bound_s;  ///< part of compute_s that is compute-bound
  PerGpu compute_util;     ///< u_c per GPU
  PerGpu memory_util;      ///< u_m per GPU
  Collective collective;                ///< comm phases
  PhaseKind overlap_kind = PhaseKind::moe;  ///< comm phases with overlapped compute: what that compute is

  static Phase compute(PhaseKind kind, int gpus);
  void set(int rank, const RankWork& w);
  /// A comm phase with compute beside its collective.
  [[nodiscard]] bool overlapped() const { return kind == PhaseKind::comm && !compute_s.empty(); }
  /// The slowest GPU's kernel time (0 for a comm phase without overlap).
  [[nodiscard]] double slowest_compute_s() const;
  /// Adds `from`'s per-GPU kernels to this phase's (times add up, utilisations time-weighted);
  /// compute-bound time stretched by `stretch` (SMs taken by a communication kernel beside it).
  void add_compute(const Phase& from, double stretch = 1.0);
  /// Seconds this phase takes on `rank` when compute-bound time stretches by `clock_ratio`.
  [[nodiscard]] double seconds_at(int rank, double clock_ratio) const {
    const auto r = static_cast<std::size_t>(rank);
    return compute_s[r] + compute_bound_s[r] * (clock_ratio - 1.0);
  }
};

/// Expert-load statistics of one step (over its MoE layers).
struct StepLoadStats {
  double expert_cv_mean = 0;            ///< CV of tokens per expert, averaged over MoE layers
  double expert_max_over_mean = 1;      ///< max/mean tokens per expert, averaged over MoE layers
  double gpu_max_over_mean = 1;         ///< max/mean routed tokens per EP GPU, averaged (1 in mode tp)
  double attention_rank_max_over_mean = 1;  ///< data-parallel attention: max/mean tokens per rank (1 otherwise)
  std::vector<double> layer_expert_counts;  ///< tokens per expert, layer-major: [moe_layer * E + expert]
  double dispatch_bytes = 0;            ///< all MoE layers, all GPUs
  double combine_bytes = 0;
  /// Mode ep: GPU load max/mean per MoE layer with the gate's own selection on the contiguous map
  /// (no placement, no policy), and as the policy sent it.
  std::vector<double> layer_gpu_mom_before, layer_gpu_mom_after;
  /// Mode ep: tokens each GPU of the instance computed, after the policy, in the placement in use:
  /// [moe_layer * gpus + gpu]; and per physical expert slot: [moe_layer * slots + slot] (the
  /// planner's phy2log(moe_layer) names each slot's expert). Empty in mode tp.
  std::vector<double> layer_gpu_loads, layer_slot_loads;
  double gpu_max_over_mean_before = 1;  ///< mean over MoE layers of layer_gpu_mom_before
  PolicyCounters policy;                ///< summed over MoE layers
};

/// Expert weights moving to a new placement: bytes per (source, destination) GPU of the instance.
struct Migration {
  TrafficMatrix traffic;
  double bytes = 0;
  std::vector<std::vector<int>> phy2log;  ///< per MoE layer, the placement after the move
};

/// One kernel (or fixed group of kernels, KernelWork::launches) the planner costed: for
/// `moesim kernels --kernels`.
struct KernelLogEntry {
  PhaseKind phase = PhaseKind::attention;
  int moe_layer = -1;    ///< MoE layer of a moe entry, else -1
  int micro_batch = 0;   ///< 1: the second micro-batch of dual-batch overlap
  int rank = 0;          ///< GPU of the instance
  std::string name;
  KernelWork work;
  KernelTime time;       ///< this kernel alone on the roofline
};

/// Sees every routing decision (the expert profiler subscribes here).
class RoutingObserver {
 public:
  virtual ~RoutingObserver() = default;
  virtual void on_layer_routed(int moe_layer, std::span<const TokenInfo> tokens, std::span<const std::int32_t> experts,
                               std::span<const float> weights) = 0;
};

struct StepPlan {
  /// The step's phases in order, except that phases[repeat_begin, repeat_end) stand for `repeat`
  /// consecutive copies of themselves (identical dense layers planned once; only plans made with
  /// PlanOptions::repeat_dense_layers, for consumers that visit phases through for_each_phase).
  std::vector<Phase> phases;
  std::size_t repeat_begin = 0, repeat_end = 0;
  int repeat = 1;
  StepLoadStats load;
  int gpus = 1;
  int micro_batches = 1;  ///< 2 when the step runs as two overlapped micro-batches (serving.dual_batch_overlap)
  /// The serving engine's CPU work for the step (scheduling, input preparation, output
  /// processing): the GPUs idle for it after the kernels, or, with async scheduling, only for the
  /// part that the GPU time does not hide.
  double host_s = 0;
  bool host_overlapped = false;
};

/// Calls f(phase) for every phase of the step in order, repeated blocks expanded.
template <class F>
void for_each_phase(const StepPlan& plan, F&& f) {
  const std::size_t n = plan.phases.size();
  const bool repeats = plan.repeat > 1 && plan.repeat_end > plan.repeat_begin;
  const std::size_t begin = repeats ? plan.repeat_begin : n, end = repeats ? plan.repeat_end : n;
  for (std::size_t i = 0; i < begin; ++i) f(plan.phases[i]);
  for (int k = 0; k < (repeats ? plan.repeat : 0); ++k)
    for (std::size_t i = begin; i < end; ++i) f(plan.phases[i]);
  for (std::size_t i = end; i < n; ++i) f(plan.phases[i]);
}

/// Calls f(phase, copies) for every phase of the step in order. A repeated block without
/// collectives is visited once with copies = plan.repeat (consumers that only sum over phases scale
/// by it); one with collectives is expanded (copies = 1), since each collective synchronises.
template <class F>
void for_each_phase_weighted(const StepPlan& plan, F&& f) {
  const std::size_t n = plan.phases.size();
  const bool repeats = plan.repeat > 1 && plan.repeat_end > plan.repeat_begin;
  bool collapsible = repeats;
  for (std::size_t i = plan.repeat_begin; collapsible && i < plan.repeat_end; ++i)
    collapsible = plan.phases[i].kind != PhaseKind::comm;
  if (repeats && !collapsible) {
    for_each_phase(plan, [&f](const Phase& ph) { f(ph, 1.0); });
    return;
  }
  const std::size_t begin = repeats ? plan.repeat_begin : n, end = repeats ? plan.repeat_end : n;
  for (std::size_t i = 0; i < begin; ++i) f(plan.phases[i], 1.0);
  for (std::size_t i = begin; i < end; ++i) f(plan.phases[i], static_cast<double>(plan.repeat));
  for (std::size_t i = end; i < n; ++i) f(plan.phases[i], 1.0);
}

/// Wall time of a phase whose collective (if any) takes `collective_s`: a compute phase's slowest
/// GPU, a comm phase's collective, or with overlap the longer of the collective and the compute.
[[nodiscard]] double phase_seconds(const Phase& ph, double collective_s);

/// Dual-batch overlap: the phases of two micro-batches as one timeline. Each micro-batch is a
/// chain C0 K0 C1 K1 ... (C: compute phases, K: a run of collectives); the chains alternate so that
/// one's compute runs beside the other's first collective of a run:
///   A.C0 | A.K0 + B.C0 | B.K0 + A.C1 | A.K1 + B.C1 | ...
/// (each micro-batch keeps its order, and no GPU computes for both at once). `stretch(c)`: how much
/// compute-bound time lengthens beside collective c.
void overlap_micro_batches(std::span<const Phase> a, std::span<const Phase> b, std::vector<Phase>& out,
                           const std::function<double(const Collective&)>& stretch);

/// Wall time of each kind of phase in one step.
struct StepTimes {
  double attention = 0, dense = 0, moe = 0, lm_head = 0, comm = 0;
  void add(PhaseKind kind, double seconds);
  [[nodiscard]] double total() const { return attention + dense + moe + lm_head + comm; }
};

/// Splits the wall time of a compute segment (the phases between two synchronisations) over its
/// phase kinds, in proportion to each kind's slowest GPU.
void attribute_segment(StepTimes& times, const std::vector<const Phase*>& segment, double wall);
/// The same for phases that stand for several copies of themselves (for_each_phase_weighted).
void attribute_segment(StepTimes& times, const std::vector<std::pair<const Phase*, double>>& segment, double wall);

/// The step's timeline in closed form: every compute segment lasts as long as its slowest GPU
/// (the collective after it waits for everyone), every collective its analytic time.
[[nodiscard]] StepTimes analytic_step_times(const StepPlan& plan, const FabricView& fabric);

class StepPlanner {
 public:
  /// `first_gpu`: cluster index of the instance's GPU 0 (where its node boundaries fall);
  /// `instance`: which serving instance (data-parallel rank) it plans for, so that instances draw
  /// their own random streams (policy choices, token dealing).
  StepPlanner(const Scenario& scenario, const ParallelLayout& layout, std::unique_ptr<TokenRouter> router, int first_gpu = 0,
              int instance = 0);

  /// Plans one step at simulated time now_s (the router may drift with time); `gpus` is the state
  /// of the instance's GPUs the policy may use (empty: nominal).
  [[nodiscard]] StepPlan plan(const Batch& batch, double now_s = 0.0, std::span<const GpuSignal> gpus = {});
  /// The same into `plan`, reusing its storage (the engine plans every step into one StepPlan).
  /// `repeat_dense_layers`: plan identical dense layers once, as a repeated block (see StepPlan;
  /// for the analytic timeline, which visits phases with for_each_phase).
  void plan_into(StepPlan& plan, const Batch& batch, double now_s = 0.0, std::span<const GpuSignal> gpus = {},
                 bool repeat_dense_layers = false);
  /// A rebalance whose weights must move (routing.migration stall or overlap): taken once, applied
  /// with apply_migration when the copy has finished. No new rebalance starts meanwhile.
  [[nodiscard]] std::optional<Migration> take_migration();
  void apply_migration(const Migration& m);
  void set_observer(RoutingObserver* observer) { observer_ = observer; }
  /// Whether expert-parallel collectives carry per-pair matrices (EpTrafficBuilder::set_pair_traffic).
  void set_pair_traffic(bool on) { ep_traffic_.set_pair_traffic(on); }
  /// Records every kernel costed from now on into `log` (nullptr: stop).
  void set_kernel_log(std::vector<KernelLogEntry>* log) { kernel_log_ = log; }
  [[nodiscard]] TokenRouter& router() { return *router_; }
  [[nodiscard]] const ExpertPlacement& placement() const { return placement_; }
  [[nodiscard]] int rebalances() const { return rebalances_; }
  /// Host seconds spent in the routing policy (replica choice, selection changes): for benchmarks.
  [[nodiscard]] double policy_wall_s() const { return policy_wall_s_; }
  /// Physical slot -> logical expert of one MoE layer (EP); slots [g*S/N, (g+1)*S/N) on GPU g.
  [[nodiscard]] const std::vector<int>& phy2log(int moe_layer) const { return layers_[static_cast<std::size_t>(moe_layer)].phy2log; }

 private:
  /// The part of a step's batch whose kernels one timeline runs: the whole batch, or one of the
  /// two micro-batches of dual-batch overlap.
  struct MicroBatch {
    Batch batch;
    double share = 1.0;               ///< of the step's tokens
    std::vector<double> tokens_per_rank;
  };
  void add_attention(std::vector<Phase>& out, const Batch& batch) const;
  void add_dense(std::vector<Phase>& out, const MicroBatch& mb) const;
  /// Routes one MoE layer (gate, policy, placement) for the whole step: per-expert and per-slot
  /// loads, the dispatch/combine traffic and the step's load statistics.
  void route_moe_layer(StepPlan& plan, int moe_layer);
  /// The routed layer's phases for `mb` (its share of every expert's tokens and of the traffic).
  void add_moe_phases(std::vector<Phase>& out, const MicroBatch& mb, int moe_layer);
  void add_lm_head(std::vector<Phase>& out, const Batch& batch) const;
  void add_comm(std::vector<Phase>& out, Collective c) const;
  /// Splits the batch into two micro-batches of about half the tokens each (per attention rank,
  /// by sequence; a prefill chunk across the middle is cut in two). False when one would be empty.
  bool split_micro_batches(const Batch& batch);
  void rank_tokens(const Batch& batch, std::vector<double>& per_rank) const;
  [[nodiscard]] double overlap_stretch(const Collective& c) const;
  struct NamedKernel {
    const char* name;
    KernelWork work;
  };
  /// Kernels launched one after another on `rank` (each pays its launches), logged if asked.
  [[nodiscard]] RankWork kernels(PhaseKind phase, int rank, std::initializer_list<NamedKernel> ks) const;
  /// A fused-MoE kernel over `parts` on `rank` (grouped GEMMs share one tile and launch; other
  /// parts, the shared experts, are kernels of their own), logged if asked.
  [[nodiscard]] RankWork fused_moe(int rank, const std::vector<KernelWork>& parts) const;
  std::vector<KernelLogEntry>* kernel_log_ = nullptr;
  int log_moe_layer_ = -1, log_micro_batch_ = 0;

  const ModelSpec model_;
  const ParallelLayout layout_;
  RooflineModel roofline_;
  MoeKernel moe_kernel_ = MoeKernel::triton;
  int graph_max_tokens_ = 0;  ///< serving.cuda_graph_max_tokens: smaller steps replay CUDA graphs
  /// serving.step_overhead_us (+ step_overhead_per_worker_us per GPU of the instance beyond its first),
  /// step_overhead_per_seq_us
  double host_fixed_s_ = 0, host_per_seq_s_ = 0;
  bool async_scheduling_ = false;
  bool shared_expert_overlap_ = false, dual_batch_overlap_ = false;
  double sm_stretch_ = 1.0;  ///< sm_count / (sm_count - serving.overlap_comm_sms)
  EpKernels ep_kernels_ = EpKernels::normal;
  MicroBatch whole_, micro_[2];
  std::vector<Phase> micro_phases_[2];
  Collective moe_dispatch_, moe_combine_;  ///< the routed layer's traffic for the whole step
  double sampler_bytes_per_logit_ = 0;  ///< serving.sampler_bytes_per_logit
  std::unique_ptr<TokenRouter> router_;
  ExpertPlacement placement_;
  int n_;  ///< GPUs per instance
  // Per-step scratch, reused between steps.
  StepPlan attention_block_, dense_block_;  ///< one layer's attention (dense FFN) phases, the same in every layer
  StepPlan attention_micro_block_, dense_micro_block_;  ///< the same for the second micro-batch (dual-batch overlap)
  std::vector<double> gate_load_, per_expert_, per_slot_, per_gpu_, before_;  ///< route_moe_layer's per-layer vectors (per_expert_, per_slot_ also feed add_moe_phases)
  std::vector<int> dests_;
  std::vector<std::vector<KernelWork>> parts_;  ///< per GPU: its expert GEMMs of the layer
  std::vector<KernelWork> tp_parts_;            ///< mode tp: every expert's 1/N GEMMs of the layer
  std::vector<TokenInfo> tokens_;
  std::vector<int> token_owner_;  ///< GPU that holds each token's hidden state between layers
  std::vector<double> tokens_per_rank_;
  int step_tokens_ = 0;  ///< tokens of the step being planned
  std::vector<std::int32_t> experts_;
  std::vector<float> weights_;
  void set_layer_placement(std::size_t layer, std::vector<int> phy2log);
  void maybe_rebalance(const StepPlan& finished, double now_s);
  [[nodiscard]] Migration migration_to(std::vector<std::vector<int>> phy2log) const;

  std::vector<LayerSlots> layers_;  ///< where each MoE layer's experts live (mode ep)
  RoutingPolicyConfig policy_;
  std::unique_ptr<RoutingPolicy> policy_impl_;
  std::optional<Migration> pending_;  ///< computed, not yet taken
  bool migrating_ = false;            ///< taken, not yet applied
  std::vector<int> slot_of_;          ///< token level: slot of each assignment
  std::vector<double> slot_counts_;   ///< count level: [group * slots + slot]
  std::deque<std::vector<float>> window_;  ///< per step: layer-major expert counts (eplb; integers, exact in float)
  std::vector<double> window_sum_;
  std::int64_t since_rebalance_ = 0;
  double last_rebalance_s_ = 0;
  std::int64_t steps_ = 0;
  int rebalances_ = 0;
  double policy_wall_s_ = 0;
  int eplb_groups_ = 1, eplb_nodes_ = 1;
  int gpus_per_node_ = 1;
  bool count_level_ = false;          ///< workload.routing.sampling: count
  std::vector<TokenGroup> groups_;    ///< count level: tokens per (source GPU, domain)
  std::vector<double> group_counts_;  ///< count level: [group * E + expert]
  RngStream split_rng_;
  std::unordered_map<std::int64_t, std::size_t> group_index_;  ///< (source, domain) -> group
  bool split_by_domain_ = false;          ///< count level: draw per domain, deal to groups
  bool merge_groups_ = false;             ///< count level: draw groups into their source rows (no per-group counts)
  std::vector<TokenGroup> domain_groups_;
  std::vector<std::size_t> group_domain_;
  std::vector<std::vector<std::uint16_t>> domain_pool_;  ///< per domain: a source index per assignment of its tokens
  std::vector<double> deal_counts_;  ///< dealing scratch, expert-major: [expert * sources + source]
  std::vector<double> domain_counts_;
  std::vector<TokenGroup> source_groups_;  ///< count level: tokens per source GPU (after the gate)
  std::vector<std::size_t> group_source_;
  std::vector<double> source_counts_;
  RoutingObserver* observer_ = nullptr;
  FabricView fabric_;               ///< the instance's GPUs (all-reduce algorithm choice)
  EpTrafficBuilder ep_traffic_;     ///< mode ep: dispatch/combine traffic of the layer being planned
  double dispatch_token_bytes_ = 0, combine_token_bytes_ = 0;
};

}  // namespace moesim
