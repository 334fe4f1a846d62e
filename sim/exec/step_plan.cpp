#include "sim/exec/step_plan.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/common/stats.hpp"
#include "models/llm/layer_work.hpp"

namespace moesim {

const char* to_string(PhaseKind kind) {
  switch (kind) {
    case PhaseKind::attention: return "attention";
    case PhaseKind::dense_ffn: return "dense_ffn";
    case PhaseKind::moe: return "moe";
    case PhaseKind::lm_head: return "lm_head";
    case PhaseKind::comm: return "comm";
  }
  return "?";
}

void StepTimes::add(PhaseKind kind, double seconds) {
  switch (kind) {
    case PhaseKind::attention: attention += seconds; break;
    case PhaseKind::dense_ffn: dense += seconds; break;
    case PhaseKind::moe: moe += seconds; break;
    case PhaseKind::lm_head: lm_head += seconds; break;
    case PhaseKind::comm: comm += seconds; break;
  }
}

void attribute_segment(StepTimes& times, const std::vector<const Phase*>& segment, double wall) {
  if (segment.empty() || wall <= 0) return;
  double total = 0;
  std::vector<double> worst(segment.size(), 0.0);
  for (std::size_t i = 0; i < segment.size(); ++i) {
    for (double s : segment[i]->compute_s) worst[i] = std::max(worst[i], s);
    total += worst[i];
  }
  for (std::size_t i = 0; i < segment.size(); ++i)
    times.add(segment[i]->kind, total > 0 ? wall * worst[i] / total : wall / static_cast<double>(segment.size()));
}

StepTimes analytic_step_times(const StepPlan& plan, const FabricView& fabric) {
  StepTimes t;
  std::vector<const Phase*> segment;
  std::vector<double> per_gpu(static_cast<std::size_t>(plan.gpus), 0.0);
  auto close_segment = [&] {
    attribute_segment(t, segment, *std::max_element(per_gpu.begin(), per_gpu.end()));
    segment.clear();
    std::fill(per_gpu.begin(), per_gpu.end(), 0.0);
  };
  for (const Phase& ph : plan.phases) {
    if (ph.kind == PhaseKind::comm) {
      close_segment();
      t.comm += analytic_collective_seconds(ph.collective, fabric);
      continue;
    }
    segment.push_back(&ph);
    for (std::size_t r = 0; r < per_gpu.size(); ++r) per_gpu[r] += ph.compute_s[r];
  }
  close_segment();
  return t;
}

StepPlanner::StepPlanner(const Scenario& scenario, const ParallelLayout& layout, std::unique_ptr<TokenRouter> router)
    : model_(scenario.model.spec),
      layout_(layout),
      roofline_(scenario.cluster.gpu.spec),
      router_(std::move(router)),
      placement_(contiguous_placement(scenario.model.spec.num_experts,
                                      layout.mode == ParallelMode::ep ? layout.gpus_per_instance : 1)),
      n_(layout.gpus_per_instance),
      policy_(scenario.routing),
      count_level_(scenario.workload.routing.sampling == "count") {
  const int E = model_.num_experts;
  layers_.resize(static_cast<std::size_t>(model_.num_moe_layers()));
  if (policy_.policy == "eplb" && layout_.mode == ParallelMode::ep) {
    eplb_groups_ = policy_.num_groups > 0 ? policy_.num_groups : std::max(1, model_.n_group);
    eplb_nodes_ = std::max(1, n_ / std::max(1, scenario.cluster.gpus_per_node));
    // Before any load is known: EPLB on equal loads (replicas go to the lowest expert ids).
    const std::vector<std::vector<double>> equal(layers_.size(), std::vector<double>(static_cast<std::size_t>(E), 1.0));
    const EplbResult r = rebalance_experts(equal, E + policy_.num_redundant_experts, eplb_groups_, eplb_nodes_, n_);
    for (std::size_t l = 0; l < layers_.size(); ++l) set_layer_placement(l, r.phy2log[l]);
  } else {
    std::vector<int> identity(static_cast<std::size_t>(E));
    std::iota(identity.begin(), identity.end(), 0);
    for (std::size_t l = 0; l < layers_.size(); ++l) set_layer_placement(l, identity);
  }
}

void StepPlanner::set_layer_placement(std::size_t layer, std::vector<int> phy2log) {
  LayerPlacement& p = layers_[layer];
  p.slots_of.assign(static_cast<std::size_t>(model_.num_experts), {});
  for (std::size_t s = 0; s < phy2log.size(); ++s) p.slots_of[static_cast<std::size_t>(phy2log[s])].push_back(static_cast<int>(s));
  const int gpus = layout_.mode == ParallelMode::ep ? n_ : 1;
  p.slots_per_gpu = static_cast<int>(phy2log.size()) / gpus;
  p.phy2log = std::move(phy2log);
}

/// EPLB: every interval_steps steps, re-place experts from the loads of the last window_steps.
/// (Weights move instantly here: the migration's time and traffic are not simulated.)
void StepPlanner::maybe_rebalance(const StepPlan& finished) {
  if (policy_.policy != "eplb" || layout_.mode != ParallelMode::ep) return;
  window_.push_back(finished.load.layer_expert_counts);
  if (static_cast<int>(window_.size()) > policy_.window_steps) window_.erase(window_.begin());
  if (++steps_ % policy_.interval_steps != 0) return;
  const auto E = static_cast<std::size_t>(model_.num_experts);
  std::vector<std::vector<double>> weight(layers_.size(), std::vector<double>(E, 0.0));
  for (const auto& step : window_)
    for (std::size_t l = 0; l < layers_.size(); ++l)
      for (std::size_t e = 0; e < E; ++e) weight[l][e] += step[l * E + e];
  const EplbResult r = rebalance_experts(weight, model_.num_experts + policy_.num_redundant_experts, eplb_groups_, eplb_nodes_, n_);
  for (std::size_t l = 0; l < layers_.size(); ++l) set_layer_placement(l, r.phy2log[l]);
  ++rebalances_;
}

Phase Phase::compute(PhaseKind kind, int gpus) {
  const auto n = static_cast<std::size_t>(gpus);
  Phase ph;
  ph.kind = kind;
  ph.compute_s.assign(n, 0.0);
  ph.compute_bound_s.assign(n, 0.0);
  ph.compute_util.assign(n, 0.0);
  ph.memory_util.assign(n, 0.0);
  return ph;
}

void Phase::set(int rank, const RankWork& w) {
  const auto r = static_cast<std::size_t>(rank);
  compute_s[r] = w.seconds;
  compute_bound_s[r] = w.compute_bound_s;
  compute_util[r] = w.seconds > 0 ? std::min(1.0, w.compute_busy_s / w.seconds) : 0.0;
  memory_util[r] = w.seconds > 0 ? std::min(1.0, w.memory_busy_s / w.seconds) : 0.0;
}

namespace {
/// Kernels launched one after another (each pays its launch).
RankWork separate_kernels(const RooflineModel& rf, std::initializer_list<KernelWork> kernels) {
  RankWork w;
  for (const auto& k : kernels) {
    if (k.flops <= 0 && k.bytes <= 0) continue;
    const double c = rf.compute_seconds(k), m = rf.memory_seconds(k);
    w.seconds += rf.gpu().kernel_launch_us * 1e-6 + std::max(c, m);
    if (c >= m) w.compute_bound_s += c;
    w.compute_busy_s += c;
    w.memory_busy_s += m;
  }
  return w;
}

/// A grouped kernel over several GEMMs: the sum of their rooflines plus one launch.
RankWork grouped_kernel(const RooflineModel& rf, const std::vector<KernelWork>& parts) {
  RankWork w;
  bool any = false;
  for (const auto& k : parts) {
    if (k.flops <= 0 && k.bytes <= 0) continue;
    const double c = rf.compute_seconds(k), m = rf.memory_seconds(k);
    w.seconds += std::max(c, m);
    if (c >= m) w.compute_bound_s += c;
    w.compute_busy_s += c;
    w.memory_busy_s += m;
    any = true;
  }
  if (any) w.seconds += rf.gpu().kernel_launch_us * 1e-6;
  return w;
}
}  // namespace

StepPlan StepPlanner::plan(const Batch& batch, double now_s) {
  StepPlan plan;
  plan.gpus = n_;
  plan.phases.reserve(static_cast<std::size_t>(model_.num_layers) * 6 + 1);
  plan.load.expert_max_over_mean = 0;
  plan.load.gpu_max_over_mean = 0;
  plan.load.layer_expert_counts.assign(static_cast<std::size_t>(model_.num_moe_layers() * model_.num_experts), 0.0);
  router_->begin_step(now_s);

  // Tokens of the step and the GPU each one lives on between layers.
  tokens_.clear();
  token_owner_.clear();
  const int total = batch.total_tokens();
  for (const BatchItem& item : batch.items) {
    for (int i = 0; i < item.num_tokens; ++i) {
      tokens_.push_back({item.request_id, item.context_before + i, item.domain});
      if (layout_.attention_ranks > 1) {
        token_owner_.push_back(item.attention_rank);
      } else {
        const auto idx = static_cast<std::int64_t>(token_owner_.size());
        token_owner_.push_back(static_cast<int>(idx * n_ / std::max(total, 1)));
      }
    }
  }
  tokens_per_rank_.assign(static_cast<std::size_t>(n_), 0.0);
  for (int owner : token_owner_) tokens_per_rank_[static_cast<std::size_t>(owner)] += 1.0;
  // With data-parallel attention every MoE layer synchronises the ranks, so the rank with the
  // most tokens sets the pace.
  if (layout_.attention_ranks > 1) plan.load.attention_rank_max_over_mean = max_over_mean(tokens_per_rank_);
  if (count_level_) {
    // Group tokens only by what changes the draw or the traffic: the source GPU matters for
    // dispatch (mode ep), the domain only to routers that use it.
    groups_.clear();
    const bool by_source = layout_.mode == ParallelMode::ep, by_domain = router_->uses_domains();
    for (std::size_t t = 0; t < tokens_.size(); ++t) {
      const int src = by_source ? token_owner_[t] : 0, dom = by_domain ? tokens_[t].domain : -1;
      auto it = std::find_if(groups_.begin(), groups_.end(), [&](const TokenGroup& g) { return g.source == src && g.domain == dom; });
      if (it == groups_.end()) groups_.push_back({src, dom, 1});
      else it->tokens += 1;
    }
  }

  // Every layer's attention is the same for a batch: cost it once, then copy it per layer.
  StepPlan attention;
  attention.gpus = n_;
  add_attention(attention, batch);
  int moe_layers = 0;
  for (int layer = 0; layer < model_.num_layers; ++layer) {
    plan.phases.insert(plan.phases.end(), attention.phases.begin(), attention.phases.end());
    if (layer < model_.num_dense_layers) {
      add_dense(plan);
      continue;
    }
    add_moe_layer(plan, moe_layers);
    ++moe_layers;
  }
  add_lm_head(plan, batch);

  // add_moe_layer adds each layer's statistics to the load block; turn the sums into means.
  if (moe_layers > 0) {
    plan.load.expert_cv_mean /= moe_layers;
    plan.load.expert_max_over_mean /= moe_layers;
    plan.load.gpu_max_over_mean /= moe_layers;
  }
  maybe_rebalance(plan);
  return plan;
}

void StepPlanner::add_attention(StepPlan& plan, const Batch& batch) const {
  Phase ph = Phase::compute(PhaseKind::attention, n_);
  const int shards = layout_.attention_shards;
  if (layout_.attention_ranks > 1) {
    // Data-parallel attention: each GPU its own sequences, whole weights.
    for (int r = 0; r < n_; ++r) {
      KernelWork prefill_core, decode_core;
      double tokens = 0;
      for (const BatchItem& item : batch.items) {
        if (item.attention_rank != r) continue;
        tokens += item.num_tokens;
        (item.is_prefill ? prefill_core : decode_core) += attention_core_work(model_, item.num_tokens, item.context_before, 1);
      }
      ph.set(r, separate_kernels(roofline_, {attention_projection_work(model_, tokens, 1), prefill_core, decode_core}));
    }
  } else {
    KernelWork prefill_core, decode_core;
    for (const BatchItem& item : batch.items)
      (item.is_prefill ? prefill_core : decode_core) += attention_core_work(model_, item.num_tokens, item.context_before, shards);
    const RankWork w =
        separate_kernels(roofline_, {attention_projection_work(model_, batch.total_tokens(), shards), prefill_core, decode_core});
    for (int r = 0; r < n_; ++r) ph.set(r, w);
  }
  plan.phases.push_back(std::move(ph));
  if (shards > 1) add_comm(plan, ring_all_reduce(n_, batch.total_tokens() * model_.hidden_size * kActivationBytes));
}

void StepPlanner::add_dense(StepPlan& plan) const {
  Phase ph = Phase::compute(PhaseKind::dense_ffn, n_);
  const int shards = layout_.attention_shards;
  for (int r = 0; r < n_; ++r) {
    const double tokens = shards > 1 ? static_cast<double>(tokens_.size()) : tokens_per_rank_[static_cast<std::size_t>(r)];
    ph.set(r, separate_kernels(roofline_, {dense_ffn_work(model_, tokens, shards)}));
  }
  plan.phases.push_back(std::move(ph));
  if (shards > 1) add_comm(plan, ring_all_reduce(n_, static_cast<double>(tokens_.size()) * model_.hidden_size * kActivationBytes));
}

void StepPlanner::add_moe_layer(StepPlan& plan, int moe_layer) {
  const auto k = static_cast<std::size_t>(model_.top_k);
  const auto e_count = static_cast<std::size_t>(model_.num_experts);
  std::vector<double> per_expert(e_count, 0.0);
  if (count_level_) {
    group_counts_.assign(groups_.size() * e_count, 0.0);
    router_->route_counts(moe_layer, groups_, group_counts_);
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (std::size_t e = 0; e < e_count; ++e) per_expert[e] += group_counts_[g * e_count + e];
  } else {
    experts_.resize(tokens_.size() * k);
    weights_.resize(observer_ != nullptr ? tokens_.size() * k : 0);
    router_->route(moe_layer, tokens_, experts_, weights_);
    if (observer_ != nullptr) observer_->on_layer_routed(moe_layer, tokens_, experts_, weights_);
    for (std::int32_t e : experts_) per_expert[static_cast<std::size_t>(e)] += 1.0;
  }
  std::copy(per_expert.begin(), per_expert.end(),
            plan.load.layer_expert_counts.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(moe_layer) * e_count));
  plan.load.expert_cv_mean += coefficient_of_variation(per_expert);
  plan.load.expert_max_over_mean += max_over_mean(per_expert);

  Phase ph = Phase::compute(PhaseKind::moe, n_);
  if (layout_.mode == ParallelMode::tp) {
    std::vector<KernelWork> parts;
    for (std::size_t e = 0; e < e_count; ++e) parts.push_back(expert_ffn_work(model_, per_expert[e], n_));
    parts.push_back(shared_expert_work(model_, static_cast<double>(tokens_.size()), n_));
    const RankWork w = grouped_kernel(roofline_, parts);
    for (int r = 0; r < n_; ++r) ph.set(r, w);
    plan.load.gpu_max_over_mean += 1.0;
    plan.phases.push_back(std::move(ph));
    add_comm(plan, ring_all_reduce(n_, static_cast<double>(tokens_.size()) * model_.hidden_size * kActivationBytes));
    return;
  }

  // Expert parallelism: dispatch to the GPUs holding the selected experts, compute, combine.
  const double dispatch_elem = model_.weight_dtype == DType::fp8 ? 1.0 : kActivationBytes;
  Collective dispatch{CollectiveKind::dispatch, TrafficMatrix(n_), 1};
  Collective combine{CollectiveKind::combine, TrafficMatrix(n_), 1};
  const double hidden = model_.hidden_size;
  // Tokens go to a replica of each selected expert: by the token's position in the step (vLLM's
  // rule), or, for counts, split evenly over the replicas.
  const LayerPlacement& place = layers_[static_cast<std::size_t>(moe_layer)];
  std::vector<double> per_slot(place.phy2log.size(), 0.0);
  auto gpu_of = [&](int slot) { return slot / place.slots_per_gpu; };
  if (count_level_) {
    // Counts carry no token identity: every remote (token, expert) pair moves one hidden state,
    // an upper bound on the per-destination-GPU deduplicated traffic of the token level.
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const int src = groups_[g].source;
      for (std::size_t e = 0; e < e_count; ++e) {
        const auto& slots = place.slots_of[e];
        const double c = group_counts_[g * e_count + e];
        const double share = std::floor(c / static_cast<double>(slots.size()));
        double left = c - share * static_cast<double>(slots.size());
        for (int slot : slots) {
          const double n = share + (left > 0 ? 1.0 : 0.0);
          left -= 1.0;
          per_slot[static_cast<std::size_t>(slot)] += n;
          const int d = gpu_of(slot);
          if (d == src || n <= 0) continue;
          dispatch.traffic.at(src, d) += n * hidden * dispatch_elem;
          combine.traffic.at(d, src) += n * hidden * kActivationBytes;
        }
      }
    }
  }
  std::vector<int> dests;
  for (std::size_t t = 0; t < (count_level_ ? 0 : tokens_.size()); ++t) {
    const int src = token_owner_[t];
    dests.clear();
    for (std::size_t j = 0; j < k; ++j) {
      const auto& slots = place.slots_of[static_cast<std::size_t>(experts_[t * k + j])];
      const int slot = slots[t % slots.size()];
      per_slot[static_cast<std::size_t>(slot)] += 1.0;
      const int d = gpu_of(slot);
      if (d != src && std::find(dests.begin(), dests.end(), d) == dests.end()) dests.push_back(d);
    }
    for (int d : dests) {
      dispatch.traffic.at(src, d) += hidden * dispatch_elem;
      combine.traffic.at(d, src) += hidden * kActivationBytes;
    }
  }
  plan.load.dispatch_bytes += dispatch.traffic.total();
  plan.load.combine_bytes += combine.traffic.total();

  std::vector<double> per_gpu(static_cast<std::size_t>(n_), 0.0);
  std::vector<std::vector<KernelWork>> parts(static_cast<std::size_t>(n_));
  for (std::size_t slot = 0; slot < per_slot.size(); ++slot) {
    const auto r = static_cast<std::size_t>(gpu_of(static_cast<int>(slot)));
    per_gpu[r] += per_slot[slot];
    parts[r].push_back(expert_ffn_work(model_, per_slot[slot], 1));
  }
  const bool shared_sharded = layout_.attention_shards > 1;
  for (int r = 0; r < n_; ++r) {
    const double shared_tokens = shared_sharded ? static_cast<double>(tokens_.size()) : tokens_per_rank_[static_cast<std::size_t>(r)];
    parts[static_cast<std::size_t>(r)].push_back(shared_expert_work(model_, shared_tokens, shared_sharded ? n_ : 1));
    ph.set(r, grouped_kernel(roofline_, parts[static_cast<std::size_t>(r)]));
  }
  plan.load.gpu_max_over_mean += max_over_mean(per_gpu);

  add_comm(plan, std::move(dispatch));
  plan.phases.push_back(std::move(ph));
  add_comm(plan, std::move(combine));
  if (shared_sharded) {
    const double bytes = static_cast<double>(tokens_.size()) * hidden * kActivationBytes;
    add_comm(plan, model_.shared_expert_intermediate_size > 0 ? ring_all_reduce(n_, bytes) : ring_all_gather(n_, bytes));
  }
}

void StepPlanner::add_lm_head(StepPlan& plan, const Batch& batch) const {
  Phase ph = Phase::compute(PhaseKind::lm_head, n_);
  const int shards = layout_.attention_shards;
  std::vector<double> emitting(static_cast<std::size_t>(n_), 0.0);
  double all = 0;
  for (const BatchItem& item : batch.items) {
    if (!item.emits_token) continue;
    emitting[static_cast<std::size_t>(item.attention_rank)] += 1.0;
    all += 1.0;
  }
  for (int r = 0; r < n_; ++r) {
    const double tokens = shards > 1 ? all : emitting[static_cast<std::size_t>(r)];
    ph.set(r, separate_kernels(roofline_, {lm_head_work(model_, tokens, shards)}));
  }
  plan.phases.push_back(std::move(ph));
}

void StepPlanner::add_comm(StepPlan& plan, Collective c) const {
  if (n_ < 2 || c.traffic.empty()) return;
  Phase ph;
  ph.kind = PhaseKind::comm;
  ph.collective = std::move(c);
  plan.phases.push_back(std::move(ph));
}

}  // namespace moesim
