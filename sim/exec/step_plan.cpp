#include "sim/exec/step_plan.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <unordered_map>
#include <stdexcept>

#include "models/common/stats.hpp"
#include "models/llm/layer_work.hpp"
#include "models/routing/affinity.hpp"

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

void attribute_segment(StepTimes& times, const std::vector<std::pair<const Phase*, double>>& segment, double wall) {
  if (segment.empty() || wall <= 0) return;
  double total = 0, copies = 0;
  std::vector<double> worst(segment.size(), 0.0);
  for (std::size_t i = 0; i < segment.size(); ++i) {
    for (double s : segment[i].first->compute_s) worst[i] = std::max(worst[i], s);
    worst[i] *= segment[i].second;
    total += worst[i];
    copies += segment[i].second;
  }
  for (std::size_t i = 0; i < segment.size(); ++i)
    times.add(segment[i].first->kind, total > 0 ? wall * worst[i] / total : wall * segment[i].second / copies);
}

StepTimes analytic_step_times(const StepPlan& plan, const FabricView& fabric) {
  StepTimes t;
  std::vector<std::pair<const Phase*, double>> segment;
  std::vector<double> per_gpu(static_cast<std::size_t>(plan.gpus), 0.0);
  auto close_segment = [&] {
    attribute_segment(t, segment, *std::max_element(per_gpu.begin(), per_gpu.end()));
    segment.clear();
    std::fill(per_gpu.begin(), per_gpu.end(), 0.0);
  };
  for_each_phase_weighted(plan, [&](const Phase& ph, double copies) {
    if (ph.kind == PhaseKind::comm) {
      close_segment();
      const double collective = analytic_collective_seconds(ph.collective, fabric);
      t.comm += collective;
      // Overlapped compute shows only where it outlasts the collective.
      if (ph.overlapped()) t.add(ph.overlap_kind, phase_seconds(ph, collective) - collective);
      return;
    }
    segment.emplace_back(&ph, copies);
    for (std::size_t r = 0; r < per_gpu.size(); ++r) per_gpu[r] += ph.compute_s[r] * copies;
  });
  close_segment();
  return t;
}

StepPlanner::StepPlanner(const Scenario& scenario, const ParallelLayout& layout, std::unique_ptr<TokenRouter> router, int first_gpu,
                         int instance)
    : model_(scenario.model.spec),
      layout_(layout),
      roofline_(scenario.cluster.gpu.spec),
      graph_max_tokens_(scenario.serving.cuda_graph_max_tokens),
      host_fixed_s_((scenario.serving.step_overhead_us +
                     scenario.serving.step_overhead_per_worker_us * std::max(0, layout.gpus_per_instance - 1)) * 1e-6),
      host_per_seq_s_(scenario.serving.step_overhead_per_seq_us * 1e-6),
      async_scheduling_(scenario.serving.async_scheduling),
      shared_expert_overlap_(scenario.serving.shared_expert_overlap),
      dual_batch_overlap_(scenario.serving.dual_batch_overlap),
      sm_stretch_(static_cast<double>(scenario.cluster.gpu.spec.sm_count) /
                  std::max(1, scenario.cluster.gpu.spec.sm_count - scenario.serving.overlap_comm_sms)),
      ep_kernels_(scenario.network.ep_mode),
      sampler_bytes_per_logit_(scenario.serving.sampler_bytes_per_logit),
      router_(std::move(router)),
      placement_(contiguous_placement(scenario.model.spec.num_experts,
                                      layout.mode == ParallelMode::ep ? layout.gpus_per_instance : 1)),
      n_(layout.gpus_per_instance),
      policy_(scenario.routing),
      count_level_(scenario.workload.routing.sampling == "count"),
      split_rng_(instance_seed(scenario.seed, instance), "planner/domain_split"),
      fabric_{std::max(1, scenario.cluster.gpus_per_node), first_gpu, scenario.cluster.intra_node.spec, scenario.cluster.inter_node.spec},
      ep_traffic_(scenario.network.ep_mode, layout.gpus_per_instance, std::max(1, scenario.cluster.gpus_per_node), first_gpu),
      dispatch_token_bytes_(token_bytes(scenario.model.spec.hidden_size,
                                        scenario.network.dispatch_bytes_per_element(scenario.model.spec.weight_dtype))),
      combine_token_bytes_(token_bytes(scenario.model.spec.hidden_size, scenario.network.combine_bytes_per_element())) {
  moe_kernel_ = scenario.serving.moe_kernel == "deepgemm" ? MoeKernel::deepgemm : MoeKernel::triton;
  roofline_.set_moe_kernel(moe_kernel_);
  const int E = model_.num_experts;
  layers_.resize(static_cast<std::size_t>(model_.num_moe_layers()));
  PolicyContext pc;
  pc.num_experts = E;
  pc.top_k = model_.top_k;
  pc.num_moe_layers = model_.num_moe_layers();
  pc.gpus = layout_.mode == ParallelMode::ep ? n_ : 1;
  pc.gpus_per_node = gpus_per_node_ = std::max(1, scenario.cluster.gpus_per_node);
  pc.seed = instance_seed(scenario.seed, instance);
  pc.power_budget_w = policy_.nectar.power_budget_w > 0 ? policy_.nectar.power_budget_w : effective_cap_w(scenario);
  policy_impl_ = routing_policies().get(policy_.policy)(pc, policy_);
  if (policy_.eplb_placement() && layout_.mode == ParallelMode::ep) {
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
  LayerSlots& p = layers_[layer];
  p.slots_of.assign(static_cast<std::size_t>(model_.num_experts), {});
  for (std::size_t s = 0; s < phy2log.size(); ++s) p.slots_of[static_cast<std::size_t>(phy2log[s])].push_back(static_cast<int>(s));
  const int gpus = layout_.mode == ParallelMode::ep ? n_ : 1;
  p.slots_per_gpu = static_cast<int>(phy2log.size()) / gpus;
  p.phy2log = std::move(phy2log);
}

/// EPLB: every interval_steps steps, re-place experts from the loads of the last window_steps.
/// With routing.migration none the weights move instantly; otherwise the move is a Migration the
/// simulation carries out on the platform's links before the new placement takes effect.
void StepPlanner::maybe_rebalance(const StepPlan& finished, double now_s) {
  if (!policy_.eplb_placement() || layout_.mode != ParallelMode::ep) return;
  // The window's loads as a running sum (a DeepSeek-V3 window of 1000 steps would otherwise keep
  // 1000 x 58 x 256 counts).
  const auto& loads = finished.load.layer_expert_counts;
  if (window_sum_.empty()) window_sum_.assign(loads.size(), 0.0);
  for (std::size_t i = 0; i < loads.size(); ++i) window_sum_[i] += loads[i];
  window_.emplace_back(loads.begin(), loads.end());
  if (static_cast<int>(window_.size()) > policy_.window_steps) {
    for (std::size_t i = 0; i < loads.size(); ++i) window_sum_[i] -= window_.front()[i];
    window_.pop_front();
  }
  ++steps_;
  ++since_rebalance_;
  const bool by_steps = policy_.interval_s <= 0 && steps_ % policy_.interval_steps == 0;
  const bool by_time = policy_.interval_s > 0 && now_s - last_rebalance_s_ >= policy_.interval_s;
  // Early, when the GPUs are out of balance beyond the threshold (at most once per window).
  // The threshold is an imbalance fraction: a step whose GPU load max/mean (averaged over its MoE
  // layers) exceeds 1 + threshold, so 0.15 means the busiest GPU has 15% more tokens than the mean.
  const bool by_threshold = policy_.rebalance_threshold > 0 && finished.load.gpu_max_over_mean > 1.0 + policy_.rebalance_threshold &&
                            since_rebalance_ >= policy_.window_steps;
  if (!by_steps && !by_time && !by_threshold) return;
  if (pending_ || migrating_) return;  // the previous move has not finished
  since_rebalance_ = 0;
  last_rebalance_s_ = now_s;
  const auto E = static_cast<std::size_t>(model_.num_experts);
  std::vector<std::vector<double>> weight(layers_.size(), std::vector<double>(E, 0.0));
  for (std::size_t l = 0; l < layers_.size(); ++l)
    for (std::size_t e = 0; e < E; ++e) weight[l][e] = std::max(0.0, window_sum_[l * E + e]);
  EplbResult r = rebalance_experts(weight, model_.num_experts + policy_.num_redundant_experts, eplb_groups_, eplb_nodes_, n_);
  ++rebalances_;
  if (policy_.migration == "none") {
    for (std::size_t l = 0; l < layers_.size(); ++l) set_layer_placement(l, r.phy2log[l]);
    return;
  }
  Migration m = migration_to(std::move(r.phy2log));
  if (m.bytes <= 0) apply_migration(m);
  else pending_ = std::move(m);
}

Migration StepPlanner::migration_to(std::vector<std::vector<int>> phy2log) const {
  Migration m;
  m.traffic = TrafficMatrix(n_);
  const double expert_bytes = model_.expert_params() * bytes_per_element(model_.expert_weight_dtype);
  const int per_node = gpus_per_node_;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const LayerSlots& old = layers_[l];
    const auto& next = phy2log[l];
    const int spg = static_cast<int>(next.size()) / n_;
    for (int g = 0; g < n_; ++g) {
      std::vector<int> have, need;
      for (int s = g * old.slots_per_gpu; s < (g + 1) * old.slots_per_gpu; ++s) have.push_back(old.phy2log[static_cast<std::size_t>(s)]);
      for (int s = g * spg; s < (g + 1) * spg; ++s) {
        const int e = next[static_cast<std::size_t>(s)];
        if (std::find(have.begin(), have.end(), e) == have.end() && std::find(need.begin(), need.end(), e) == need.end())
          need.push_back(e);
      }
      for (int e : need) {
        // From a GPU that holds the expert now: on the same node if one does, else the first.
        int src = -1;
        for (int slot : old.slots_of[static_cast<std::size_t>(e)]) {
          const int h = old.gpu_of(slot);
          if (src < 0 || (h / per_node == g / per_node && src / per_node != g / per_node)) src = h;
        }
        m.traffic.at(src, g) += expert_bytes;
        m.bytes += expert_bytes;
      }
    }
  }
  m.phy2log = std::move(phy2log);
  return m;
}

std::optional<Migration> StepPlanner::take_migration() {
  if (!pending_) return std::nullopt;
  std::optional<Migration> m = std::move(pending_);
  pending_.reset();
  migrating_ = true;
  return m;
}

void StepPlanner::apply_migration(const Migration& m) {
  for (std::size_t l = 0; l < layers_.size(); ++l) set_layer_placement(l, m.phy2log[l]);
  migrating_ = false;
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

StepPlan StepPlanner::plan(const Batch& batch, double now_s, std::span<const GpuSignal> gpus) {
  StepPlan plan;
  plan_into(plan, batch, now_s, gpus);
  return plan;
}

void StepPlanner::plan_into(StepPlan& plan, const Batch& batch, double now_s, std::span<const GpuSignal> gpus,
                            bool repeat_dense_layers) {
  {
    // A fresh plan that keeps the old one's storage.
    StepLoadStats fresh;
    fresh.layer_expert_counts.swap(plan.load.layer_expert_counts);
    fresh.layer_gpu_mom_before.swap(plan.load.layer_gpu_mom_before);
    fresh.layer_gpu_mom_after.swap(plan.load.layer_gpu_mom_after);
    fresh.layer_gpu_loads.swap(plan.load.layer_gpu_loads);
    fresh.layer_slot_loads.swap(plan.load.layer_slot_loads);
    fresh.layer_gpu_mom_before.clear();
    fresh.layer_gpu_mom_after.clear();
    plan.load = std::move(fresh);
    plan.phases.clear();
    plan.repeat_begin = plan.repeat_end = 0;
    plan.repeat = 1;
  }
  plan.gpus = n_;
  plan.load.expert_max_over_mean = 0;
  plan.load.gpu_max_over_mean = 0;
  plan.load.layer_expert_counts.assign(static_cast<std::size_t>(model_.num_moe_layers() * model_.num_experts), 0.0);
  if (layout_.mode == ParallelMode::ep && !layers_.empty()) {
    plan.load.layer_gpu_loads.assign(layers_.size() * static_cast<std::size_t>(n_), 0.0);
    plan.load.layer_slot_loads.assign(layers_.size() * layers_.front().phy2log.size(), 0.0);
  } else {
    plan.load.layer_gpu_loads.clear();
    plan.load.layer_slot_loads.clear();
  }
  router_->begin_step(now_s);
  roofline_.set_launch_mode(batch.total_tokens() <= graph_max_tokens_ ? LaunchMode::graph : LaunchMode::eager);
  plan.host_s = host_fixed_s_ + host_per_seq_s_ * static_cast<double>(batch.items.size());
  plan.host_overlapped = async_scheduling_;
  policy_impl_->begin_step(gpus);

  // Tokens of the step and the GPU each one lives on between layers (token by token only when
  // there are MoE layers to route them through).
  tokens_.clear();
  token_owner_.clear();
  const int total = batch.total_tokens();
  step_tokens_ = total;
  const bool routes = model_.num_moe_layers() > 0 && model_.num_experts > 0;
  tokens_per_rank_.assign(static_cast<std::size_t>(n_), 0.0);
  if (routes) {
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
    for (int owner : token_owner_) tokens_per_rank_[static_cast<std::size_t>(owner)] += 1.0;
  } else if (layout_.attention_ranks > 1) {
    for (const BatchItem& item : batch.items) tokens_per_rank_[static_cast<std::size_t>(item.attention_rank)] += item.num_tokens;
  } else {
    // Token idx lives on GPU idx * n / total: GPU r holds [ceil(r T / n), ceil((r + 1) T / n)).
    const std::int64_t t = total, ranks = n_;
    auto first = [t, ranks](std::int64_t r) { return (r * t + ranks - 1) / ranks; };
    for (std::int64_t r = 0; r < ranks; ++r) tokens_per_rank_[static_cast<std::size_t>(r)] = static_cast<double>(first(r + 1) - first(r));
  }
  // With data-parallel attention every MoE layer synchronises the ranks, so the rank with the
  // most tokens sets the pace.
  if (layout_.attention_ranks > 1) plan.load.attention_rank_max_over_mean = max_over_mean(tokens_per_rank_);
  if (count_level_) {
    // Group tokens only by what changes the draw or the traffic: the source GPU matters for
    // dispatch (mode ep), the domain only to routers that use it.
    groups_.clear();
    group_index_.clear();
    const bool by_source = layout_.mode == ParallelMode::ep, by_domain = router_->uses_domains();
    for (std::size_t t = 0; t < tokens_.size(); ++t) {
      const int src = by_source ? token_owner_[t] : 0, dom = by_domain ? tokens_[t].domain : -1;
      const auto key = (static_cast<std::int64_t>(src) << 32) | static_cast<std::uint32_t>(dom + 1);
      const auto [it, fresh] = group_index_.try_emplace(key, groups_.size());
      if (fresh) groups_.push_back({src, dom, 1});
      else groups_[it->second].tokens += 1;
    }
    // Domain-major order: a domain's groups are drawn one after another from the same
    // distribution tables, which then stay in cache (each source's row is the same sum in any
    // order). Source order for the sources themselves is their order of first appearance.
    if (by_domain)
      std::stable_sort(groups_.begin(), groups_.end(), [](const TokenGroup& a, const TokenGroup& b) { return a.domain < b.domain; });
    source_groups_.clear();
    group_source_.resize(groups_.size());
    {
      std::unordered_map<int, std::size_t> index;
      for (std::size_t g = 0; g < groups_.size(); ++g) {
        const auto [it, fresh] = index.try_emplace(groups_[g].source, source_groups_.size());
        if (fresh) source_groups_.push_back({groups_[g].source, -1, 0});
        source_groups_[it->second].tokens += groups_[g].tokens;
        group_source_[g] = it->second;
      }
    }
    // Many small (source, domain) groups: draw per domain (E draws per domain, not per group),
    // then deal each domain's assignments to its tokens' source GPUs (after the policy).
    domain_groups_.clear();
    domain_pool_.clear();
    split_by_domain_ = false;
    if (by_source && by_domain) {
      std::unordered_map<int, std::size_t> index;
      group_domain_.resize(groups_.size());
      for (std::size_t g = 0; g < groups_.size(); ++g) {
        const auto [it, fresh] = index.try_emplace(groups_[g].domain, domain_groups_.size());
        if (fresh) domain_groups_.push_back({-1, groups_[g].domain, 0});
        domain_groups_[it->second].tokens += groups_[g].tokens;
        group_domain_[g] = it->second;
      }
      // Drawing per domain and dealing (one shuffle step per assignment) pays when the groups'
      // own draws would cost more (binomials per expert for large groups, a top-k per token for
      // small ones: count_draw_cost). A dealing step costs about 0.4 of an assignment draw
      // (measured on DeepSeek-V3 EP144: its 147k-token prefill step 0.89 s with 1.0, 0.52 s with
      // 0.4; decode steps the same).
      constexpr double kDealCost = 0.4;
      double per_group = 0, per_domain = 0, assignments = 0;
      for (const TokenGroup& g : groups_) {
        per_group += count_draw_cost(g.tokens, model_.top_k, model_.num_experts);
        assignments += static_cast<double>(g.tokens) * model_.top_k;
      }
      for (const TokenGroup& d : domain_groups_) per_domain += count_draw_cost(d.tokens, model_.top_k, model_.num_experts);
      split_by_domain_ = per_domain + kDealCost * assignments < per_group;
      if (split_by_domain_) {
        domain_pool_.assign(domain_groups_.size(), {});
        for (std::size_t g = 0; g < groups_.size(); ++g)
          domain_pool_[group_domain_[g]].insert(domain_pool_[group_domain_[g]].end(),
                                                static_cast<std::size_t>(groups_[g].tokens) * static_cast<std::size_t>(model_.top_k),
                                                static_cast<std::uint16_t>(group_source_[g]));
      }
    }
    // A policy that re-selects experts needs each group's counts; otherwise groups of one source
    // are drawn straight into that source's row.
    merge_groups_ = by_source && !split_by_domain_ && !policy_impl_->changes_selection();
  }

  // Every layer's attention (and dense FFN) is the same for a batch: cost it once, then copy it
  // per layer.
  whole_.share = 1.0;  // whole_.batch stays empty: the whole batch is `batch` itself
  whole_.tokens_per_rank = tokens_per_rank_;
  const bool dbo = dual_batch_overlap_ && split_micro_batches(batch);
  const int timelines = dbo ? 2 : 1;
  plan.micro_batches = timelines;
  std::vector<Phase>* out[2] = {&plan.phases, &plan.phases};
  const MicroBatch* mbs[2] = {&whole_, &whole_};
  const Batch* batches[2] = {&batch, &batch};
  if (dbo) {
    for (int m = 0; m < 2; ++m) {
      micro_phases_[m].clear();
      out[m] = &micro_phases_[m];
      mbs[m] = &micro_[m];
      batches[m] = &micro_[m].batch;
    }
    repeat_dense_layers = false;  // the merged timeline interleaves the micro-batches' layers
  }
  StepPlan* attention_blocks[2] = {&attention_block_, &attention_micro_block_};
  StepPlan* dense_blocks[2] = {&dense_block_, &dense_micro_block_};
  for (int m = 0; m < timelines; ++m) {
    log_micro_batch_ = m;
    attention_blocks[m]->phases.clear();
    add_attention(attention_blocks[m]->phases, *batches[m]);
    dense_blocks[m]->phases.clear();
    if (model_.num_dense_layers > 0) add_dense(dense_blocks[m]->phases, *mbs[m]);
  }
  int moe_layers = 0;
  for (int layer = 0; layer < model_.num_layers; ++layer) {
    if (layer < model_.num_dense_layers && repeat_dense_layers && layer > 0) continue;  // the block below repeats
    const bool dense = layer < model_.num_dense_layers;
    if (!dense) route_moe_layer(plan, moe_layers);
    for (int m = 0; m < timelines; ++m) {
      log_micro_batch_ = m;
      std::vector<Phase>& phases = *out[m];
      phases.insert(phases.end(), attention_blocks[m]->phases.begin(), attention_blocks[m]->phases.end());
      if (dense) phases.insert(phases.end(), dense_blocks[m]->phases.begin(), dense_blocks[m]->phases.end());
      else add_moe_phases(phases, *mbs[m], moe_layers);
    }
    if (dense) {
      if (repeat_dense_layers) {
        plan.repeat_begin = 0;
        plan.repeat_end = plan.phases.size();
        plan.repeat = model_.num_dense_layers;
      }
      continue;
    }
    ++moe_layers;
  }
  for (int m = 0; m < timelines; ++m) {
    log_micro_batch_ = m;
    add_lm_head(*out[m], *batches[m]);
  }
  log_micro_batch_ = 0;
  if (dbo) overlap_micro_batches(micro_phases_[0], micro_phases_[1], plan.phases, [this](const Collective& c) { return overlap_stretch(c); });

  // route_moe_layer adds each layer's statistics to the load block; turn the sums into means.
  if (moe_layers > 0) {
    plan.load.expert_cv_mean /= moe_layers;
    plan.load.expert_max_over_mean /= moe_layers;
    plan.load.gpu_max_over_mean /= moe_layers;
    if (!plan.load.layer_gpu_mom_before.empty())
      plan.load.gpu_max_over_mean_before =
          std::accumulate(plan.load.layer_gpu_mom_before.begin(), plan.load.layer_gpu_mom_before.end(), 0.0) / moe_layers;
  }
  maybe_rebalance(plan, now_s);
}

void StepPlanner::add_attention(std::vector<Phase>& out, const Batch& batch) const {
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
      ph.set(r, kernels(PhaseKind::attention, r,
                        {{"attention projections", attention_projection_work(model_, tokens, 1)},
                         {"attention core (prefill)", prefill_core},
                         {"attention core (decode)", decode_core}}));
    }
  } else {
    KernelWork prefill_core, decode_core;
    for (const BatchItem& item : batch.items)
      (item.is_prefill ? prefill_core : decode_core) += attention_core_work(model_, item.num_tokens, item.context_before, shards);
    const RankWork w = kernels(PhaseKind::attention, 0,
                               {{"attention projections", attention_projection_work(model_, batch.total_tokens(), shards)},
                                {"attention core (prefill)", prefill_core},
                                {"attention core (decode)", decode_core}});
    for (int r = 0; r < n_; ++r) ph.set(r, w);
  }
  out.push_back(std::move(ph));
  if (shards > 1) add_comm(out, all_reduce(n_, batch.total_tokens() * model_.hidden_size * kActivationBytes, fabric_));
}

void StepPlanner::add_dense(std::vector<Phase>& out, const MicroBatch& mb) const {
  Phase ph = Phase::compute(PhaseKind::dense_ffn, n_);
  const int shards = layout_.attention_shards;
  const double step_tokens = mb.share * static_cast<double>(step_tokens_);
  for (int r = 0; r < n_; ++r) {
    const double tokens = shards > 1 ? step_tokens : mb.tokens_per_rank[static_cast<std::size_t>(r)];
    ph.set(r, kernels(PhaseKind::dense_ffn, r, {{"dense FFN", dense_ffn_work(model_, tokens, shards)}}));
  }
  out.push_back(std::move(ph));
  if (shards > 1) add_comm(out, all_reduce(n_, step_tokens * model_.hidden_size * kActivationBytes, fabric_));
}

void StepPlanner::route_moe_layer(StepPlan& plan, int moe_layer) {
  const auto k = static_cast<std::size_t>(model_.top_k);
  const auto e_count = static_cast<std::size_t>(model_.num_experts);
  const bool ep = layout_.mode == ParallelMode::ep;
  auto expert_loads = [&](std::vector<double>& per_expert) {
    per_expert.assign(e_count, 0.0);
    if (count_level_) {
      const auto& counts = split_by_domain_ ? domain_counts_ : merge_groups_ ? source_counts_ : group_counts_;
      for (std::size_t g = 0; g < counts.size() / e_count; ++g)
        for (std::size_t e = 0; e < e_count; ++e) per_expert[e] += counts[g * e_count + e];
    } else {
      for (std::int32_t e : experts_) per_expert[static_cast<std::size_t>(e)] += 1.0;
    }
  };
  // The gate's own selection, then whatever a selection-changing policy makes of it.
  PolicyCounters counters;
  if (count_level_) {
    if (split_by_domain_) {
      domain_counts_.assign(domain_groups_.size() * e_count, 0.0);
      router_->route_counts(moe_layer, domain_groups_, domain_counts_);
    } else if (merge_groups_) {
      // Only each source's sum matters past the gate: draw every group into its source's row.
      source_counts_.assign(source_groups_.size() * e_count, 0.0);
      for (std::size_t g = 0; g < groups_.size(); ++g)
        router_->add_counts(moe_layer, groups_[g], std::span<double>(source_counts_).subspan(group_source_[g] * e_count, e_count));
    } else {
      group_counts_.assign(groups_.size() * e_count, 0.0);
      router_->route_counts(moe_layer, groups_, group_counts_);
    }
  } else {
    experts_.resize(tokens_.size() * k);
    weights_.resize(observer_ != nullptr ? tokens_.size() * k : 0);
    router_->route(moe_layer, tokens_, experts_, weights_);
  }
  std::vector<double>& gate_load = gate_load_;
  std::vector<double>& per_expert = per_expert_;
  expert_loads(gate_load);
  using Clock = std::chrono::steady_clock;
  auto policy_t0 = Clock::now();
  if (ep && policy_impl_->changes_selection()) {
    if (count_level_ && split_by_domain_) policy_impl_->reselect_counts(moe_layer, domain_groups_, domain_counts_, counters);
    else if (count_level_) policy_impl_->reselect_counts(moe_layer, groups_, group_counts_, counters);
    else policy_impl_->reselect(moe_layer, experts_, counters);
    expert_loads(per_expert);
  } else {
    per_expert = gate_load;
  }
  policy_wall_s_ += std::chrono::duration<double>(Clock::now() - policy_t0).count();
  if (!count_level_ && observer_ != nullptr) observer_->on_layer_routed(moe_layer, tokens_, experts_, weights_);
  std::copy(per_expert.begin(), per_expert.end(),
            plan.load.layer_expert_counts.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(moe_layer) * e_count));
  plan.load.expert_cv_mean += coefficient_of_variation(per_expert);
  plan.load.expert_max_over_mean += max_over_mean(per_expert);

  if (!ep) {
    plan.load.gpu_max_over_mean += 1.0;
    return;
  }

  // Expert parallelism: the policy sends every assignment to a replica (or drops it); dispatch to
  // the GPUs holding them, compute, combine (traffic as DeepEP's kernels move it:
  // models/network/ep_traffic.hpp).
  ep_traffic_.reset();
  const LayerSlots& place = layers_[static_cast<std::size_t>(moe_layer)];
  const std::size_t S = place.phy2log.size();
  std::vector<double>& per_slot = per_slot_;
  per_slot.assign(S, 0.0);
  if (count_level_) {
    // Counts carry no token identity: the traffic estimates the distinct tokens per destination
    // from the assignment counts (EpTrafficBuilder::add_counts). Past the gate only the source GPU
    // matters: merge each source's groups.
    // merge_groups_: the groups were drawn into source_counts_ already.
    if (!merge_groups_) source_counts_.assign(source_groups_.size() * e_count, 0.0);
    if (split_by_domain_) {
      // Deal each domain's assignments to its tokens' source GPUs at random (exact per-source
      // totals: a pool holds each source once per assignment of its tokens of the domain).
      // Counted expert-major (one expert's increments stay within a row of sources), then
      // transposed into source_counts_.
      const std::size_t sources = source_groups_.size();
      deal_counts_.assign(e_count * sources, 0.0);
      for (std::size_t d = 0; d < domain_groups_.size(); ++d) {
        auto& pool = domain_pool_[d];
        for (std::size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[split_rng_.uniform_index(i)]);
        std::size_t next = 0;
        for (std::size_t e = 0; e < e_count; ++e) {
          double* row = deal_counts_.data() + e * sources;
          for (auto c = static_cast<std::int64_t>(domain_counts_[d * e_count + e]); c > 0 && next < pool.size(); --c)
            row[pool[next++]] += 1.0;
        }
      }
      // Transposed in 32 x 32 tiles (source_counts_ was just zeroed).
      constexpr std::size_t kTile = 32;
      for (std::size_t e0 = 0; e0 < e_count; e0 += kTile)
        for (std::size_t s0 = 0; s0 < sources; s0 += kTile)
          for (std::size_t e = e0; e < std::min(e0 + kTile, e_count); ++e)
            for (std::size_t src = s0; src < std::min(s0 + kTile, sources); ++src)
              source_counts_[src * e_count + e] = deal_counts_[e * sources + src];
    } else if (!merge_groups_) {
      for (std::size_t g = 0; g < groups_.size(); ++g) {
        double* row = source_counts_.data() + group_source_[g] * e_count;
        const double* from = group_counts_.data() + g * e_count;
        for (std::size_t e = 0; e < e_count; ++e) row[e] += from[e];
      }
    }
    slot_counts_.assign(source_groups_.size() * S, 0.0);
    policy_t0 = Clock::now();
    policy_impl_->assign_counts(moe_layer, place, source_groups_, source_counts_, slot_counts_, counters);
    policy_wall_s_ += std::chrono::duration<double>(Clock::now() - policy_t0).count();
    std::vector<double> per_rank(static_cast<std::size_t>(n_));
    // A GPU's slots are contiguous (gpu_of): sum each GPU's range.
    const auto per_gpu_slots = static_cast<std::size_t>(place.slots_per_gpu);
    for (std::size_t g = 0; g < source_groups_.size(); ++g) {
      const double* row = slot_counts_.data() + g * S;
      for (std::size_t s = 0; s < S; ++s) per_slot[s] += row[s];
      for (std::size_t r = 0; r < per_rank.size(); ++r) {
        double acc = 0;
        for (std::size_t s = r * per_gpu_slots; s < std::min(S, (r + 1) * per_gpu_slots); ++s) acc += row[s];
        per_rank[r] = acc;
      }
      ep_traffic_.add_counts(source_groups_[g].source, source_groups_[g].tokens, model_.top_k, per_rank);
    }
  } else {
    slot_of_.assign(experts_.size(), -1);
    policy_t0 = Clock::now();
    policy_impl_->assign(moe_layer, place, token_owner_, experts_, slot_of_, counters);
    policy_wall_s_ += std::chrono::duration<double>(Clock::now() - policy_t0).count();
    std::vector<int>& dests = dests_;
    for (std::size_t t = 0; t < tokens_.size(); ++t) {
      dests.clear();
      for (std::size_t j = 0; j < k; ++j) {
        const int slot = slot_of_[t * k + j];
        if (slot < 0) continue;  // dropped: the token skips this expert
        per_slot[static_cast<std::size_t>(slot)] += 1.0;
        dests.push_back(place.gpu_of(slot));
      }
      ep_traffic_.add_token(token_owner_[t], dests);
    }
  }
  // Tokens routed = computed + dropped, and what was computed is what the slots got.
  const double computed = std::accumulate(per_slot.begin(), per_slot.end(), 0.0);
  const double routed = static_cast<double>(tokens_.size() * k);
  if (std::abs(counters.assignments - routed) > 0.5 || std::abs(counters.computed + counters.dropped - routed) > 0.5 ||
      std::abs(computed - counters.computed) > 0.5)
    throw std::logic_error("internal error: MoE layer " + std::to_string(moe_layer) + " routed " + std::to_string(routed) +
                           " token-expert assignments but the policy '" + policy_.policy + "' accounts for " +
                           std::to_string(counters.assignments) + " (computed " + std::to_string(computed) + ", dropped " +
                           std::to_string(counters.dropped) + ")");
  moe_dispatch_ = ep_traffic_.dispatch(dispatch_token_bytes_);
  moe_combine_ = ep_traffic_.combine(combine_token_bytes_);
  plan.load.dispatch_bytes += moe_dispatch_.link_bytes();
  plan.load.combine_bytes += moe_combine_.link_bytes();

  std::vector<double>& per_gpu = per_gpu_;
  std::vector<double>& before = before_;
  per_gpu.assign(static_cast<std::size_t>(n_), 0.0);
  before.assign(static_cast<std::size_t>(n_), 0.0);
  for (std::size_t slot = 0; slot < S; ++slot) per_gpu[static_cast<std::size_t>(place.gpu_of(static_cast<int>(slot)))] += per_slot[slot];
  for (std::size_t e = 0; e < e_count; ++e) before[e * static_cast<std::size_t>(n_) / e_count] += gate_load[e];
  const double after_mom = max_over_mean(per_gpu);
  std::copy(per_gpu.begin(), per_gpu.end(), plan.load.layer_gpu_loads.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(moe_layer) * per_gpu.size()));
  std::copy(per_slot.begin(), per_slot.end(), plan.load.layer_slot_loads.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(moe_layer) * S));
  plan.load.gpu_max_over_mean += after_mom;
  plan.load.layer_gpu_mom_before.push_back(max_over_mean(before));
  plan.load.layer_gpu_mom_after.push_back(after_mom);
  plan.load.policy.assignments += counters.assignments;
  plan.load.policy.computed += counters.computed;
  plan.load.policy.dropped += counters.dropped;
  plan.load.policy.rerouted += counters.rerouted;
  plan.load.policy.changed += counters.changed;
  policy_impl_->observe_layer(moe_layer, gate_load, per_expert, per_gpu);
}

void StepPlanner::add_moe_phases(std::vector<Phase>& out, const MicroBatch& mb, int moe_layer) {
  const double hidden = model_.hidden_size;
  const double tokens = mb.share * static_cast<double>(tokens_.size());
  Phase ph = Phase::compute(PhaseKind::moe, n_);
  if (layout_.mode != ParallelMode::ep) {
    // Tensor parallelism: every GPU holds 1/N of every expert and computes all tokens.
    std::vector<KernelWork>& parts = tp_parts_;
    parts.clear();
    for (double load : per_expert_) parts.push_back(expert_ffn_work(model_, load * mb.share, n_, moe_kernel_));
    parts.push_back(shared_expert_work(model_, tokens, n_, moe_kernel_));
    log_moe_layer_ = moe_layer;
    const RankWork w = fused_moe(0, parts);
    for (int r = 0; r < n_; ++r) ph.set(r, w);
    out.push_back(std::move(ph));
    add_comm(out, all_reduce(n_, tokens * hidden * kActivationBytes, fabric_));
    return;
  }
  const LayerSlots& place = layers_[static_cast<std::size_t>(moe_layer)];
  std::vector<std::vector<KernelWork>>& parts = parts_;
  parts.resize(static_cast<std::size_t>(n_));
  for (auto& p : parts) p.clear();
  for (std::size_t slot = 0; slot < per_slot_.size(); ++slot)
    parts[static_cast<std::size_t>(place.gpu_of(static_cast<int>(slot)))].push_back(expert_ffn_work(model_, per_slot_[slot] * mb.share, 1, moe_kernel_));
  // Shared experts: sharded with attention (tp), or each GPU on its own tokens (attention dp);
  // inside the MoE kernel, or beside the dispatch on their own kernels (shared_expert_overlap).
  const bool shared_sharded = layout_.attention_shards > 1;
  const bool has_shared = model_.num_shared_experts > 0 && model_.shared_expert_intermediate_size > 0;
  const bool shared_beside = shared_expert_overlap_ && has_shared;
  Phase shared = Phase::compute(PhaseKind::moe, shared_beside ? n_ : 0);
  log_moe_layer_ = moe_layer;
  for (int r = 0; r < n_; ++r) {
    const auto ri = static_cast<std::size_t>(r);
    const KernelWork sw =
        shared_expert_work(model_, shared_sharded ? tokens : mb.tokens_per_rank[ri], shared_sharded ? n_ : 1, moe_kernel_);
    if (shared_beside) shared.set(r, kernels(PhaseKind::moe, r, {{"shared experts (beside the dispatch)", sw}}));
    else parts[ri].push_back(sw);
    ph.set(r, fused_moe(r, parts[ri]));
  }
  const bool whole = &mb == &whole_;
  Collective dispatch = whole ? std::move(moe_dispatch_) : ep_traffic_.dispatch(dispatch_token_bytes_ * mb.share);
  Collective combine = whole ? std::move(moe_combine_) : ep_traffic_.combine(combine_token_bytes_ * mb.share);
  const std::size_t before_dispatch = out.size();
  add_comm(out, std::move(dispatch));
  if (shared_beside) {
    if (out.size() > before_dispatch) out.back().add_compute(shared, overlap_stretch(out.back().collective));
    else out.push_back(std::move(shared));  // no dispatch to hide behind (one GPU)
  }
  out.push_back(std::move(ph));
  add_comm(out, std::move(combine));
  if (shared_sharded) {
    const double bytes = tokens * hidden * kActivationBytes;
    add_comm(out, model_.shared_expert_intermediate_size > 0 ? all_reduce(n_, bytes, fabric_) : ring_all_gather(n_, bytes));
  }
}

void StepPlanner::add_lm_head(std::vector<Phase>& out, const Batch& batch) const {
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
    ph.set(r, kernels(PhaseKind::lm_head, r,
                      {{"LM head", lm_head_work(model_, tokens, shards)}, {"sampler", sampler_work(model_, tokens, sampler_bytes_per_logit_)}}));
  }
  out.push_back(std::move(ph));
}

void StepPlanner::add_comm(std::vector<Phase>& out, Collective c) const {
  if (n_ < 2 || c.link_bytes() <= 0) return;
  Phase ph;
  ph.kind = PhaseKind::comm;
  ph.collective = std::move(c);
  out.push_back(std::move(ph));
}


RankWork StepPlanner::kernels(PhaseKind phase, int rank, std::initializer_list<NamedKernel> ks) const {
  RankWork total;
  for (const NamedKernel& k : ks) {
    const KernelTime t = roofline_.time(k.work);
    total += t;
    if (kernel_log_ != nullptr && !k.work.empty())
      kernel_log_->push_back({phase, phase == PhaseKind::moe ? log_moe_layer_ : -1, log_micro_batch_, rank, k.name, k.work, t});
  }
  return total;
}

RankWork StepPlanner::fused_moe(int rank, const std::vector<KernelWork>& parts) const {
  const RankWork total = roofline_.grouped(parts);
  if (kernel_log_ != nullptr) {
    // The routed experts' grouped GEMMs as one entry, each other part (shared experts) on its own:
    // grouped() costs the latter as separate kernels, so the entries add up to the phase.
    KernelWork routed;
    RankWork others;
    int experts = 0;
    for (const KernelWork& k : parts) {
      if (!k.grouped) {
        const KernelTime t = roofline_.time(k);
        others += t;
        if (!k.empty()) kernel_log_->push_back({PhaseKind::moe, log_moe_layer_, log_micro_batch_, rank, "shared experts", k, t});
        continue;
      }
      if (k.empty()) continue;
      ++experts;
      routed.flops += k.flops;
      routed.bytes += k.bytes;
      routed.rows += k.rows;
      routed.launches = std::max(routed.launches, k.launches);
    }
    RankWork grouped = total;
    grouped.seconds -= others.seconds;
    grouped.compute_bound_s -= others.compute_bound_s;
    grouped.compute_busy_s -= others.compute_busy_s;
    grouped.memory_busy_s -= others.memory_busy_s;
    grouped.launch_s -= others.launch_s;
    if (experts > 0)
      kernel_log_->push_back({PhaseKind::moe, log_moe_layer_, log_micro_batch_, rank,
                              "fused MoE, " + std::to_string(experts) + " expert" + (experts == 1 ? "" : "s") + " with tokens", routed,
                              grouped});
  }
  return total;
}

double StepPlanner::overlap_stretch(const Collective& c) const {
  // DeepEP's low-latency kernels receive through a hook that holds no SM while compute runs.
  const bool hook = ep_kernels_ == EpKernels::low_latency && (c.kind == CollectiveKind::dispatch || c.kind == CollectiveKind::combine);
  return hook ? 1.0 : sm_stretch_;
}

void StepPlanner::rank_tokens(const Batch& batch, std::vector<double>& per_rank) const {
  per_rank.assign(static_cast<std::size_t>(n_), 0.0);
  if (layout_.attention_ranks > 1) {
    for (const BatchItem& item : batch.items) per_rank[static_cast<std::size_t>(item.attention_rank)] += item.num_tokens;
    return;
  }
  // Token idx lives on GPU idx * n / total: GPU r holds [ceil(r T / n), ceil((r + 1) T / n)).
  const std::int64_t t = batch.total_tokens(), ranks = n_;
  auto first = [t, ranks](std::int64_t r) { return (r * t + ranks - 1) / ranks; };
  for (std::int64_t r = 0; r < ranks; ++r) per_rank[static_cast<std::size_t>(r)] = static_cast<double>(first(r + 1) - first(r));
}

bool StepPlanner::split_micro_batches(const Batch& batch) {
  for (MicroBatch& mb : micro_) {
    mb.batch.items.clear();
    mb.batch.prefill_tokens = mb.batch.decode_tokens = 0;
  }
  // Per attention rank (the whole instance when attention is sharded), sequences in batch order
  // go to the first micro-batch until it holds half of the rank's tokens; the prefill chunk that
  // crosses the middle is cut there (its second part continues from the first's context).
  std::vector<std::int64_t> rank_total(static_cast<std::size_t>(n_), 0), rank_first(static_cast<std::size_t>(n_), 0);
  auto rank_of = [this](const BatchItem& item) { return layout_.attention_ranks > 1 ? item.attention_rank : 0; };
  for (const BatchItem& item : batch.items) rank_total[static_cast<std::size_t>(rank_of(item))] += item.num_tokens;
  auto add = [](MicroBatch& mb, const BatchItem& item) {
    mb.batch.items.push_back(item);
    (item.is_prefill ? mb.batch.prefill_tokens : mb.batch.decode_tokens) += item.num_tokens;
  };
  for (const BatchItem& item : batch.items) {
    const auto r = static_cast<std::size_t>(rank_of(item));
    const std::int64_t half = (rank_total[r] + 1) / 2, room = half - rank_first[r];
    if (room >= item.num_tokens) {
      add(micro_[0], item);
      rank_first[r] += item.num_tokens;
    } else if (room > 0 && item.is_prefill && item.num_tokens > 1) {
      BatchItem head = item, rest = item;
      head.num_tokens = static_cast<int>(room);
      head.emits_token = false;
      rest.num_tokens = item.num_tokens - head.num_tokens;
      rest.context_before = item.context_before + head.num_tokens;
      add(micro_[0], head);
      add(micro_[1], rest);
      rank_first[r] += room;
    } else {
      add(micro_[1], item);
      if (room > 0) rank_first[r] = half;  // later sequences of this rank go to the second micro-batch
    }
  }
  const int total = batch.total_tokens();
  if (micro_[0].batch.total_tokens() == 0 || micro_[1].batch.total_tokens() == 0 || total == 0) return false;
  for (MicroBatch& mb : micro_) {
    mb.share = static_cast<double>(mb.batch.total_tokens()) / total;
    rank_tokens(mb.batch, mb.tokens_per_rank);
  }
  return true;
}

double Phase::slowest_compute_s() const {
  return compute_s.empty() ? 0.0 : *std::max_element(compute_s.begin(), compute_s.end());
}

void Phase::add_compute(const Phase& from, double stretch) {
  const std::size_t n = from.compute_s.size();
  if (compute_s.empty()) {
    compute_s.assign(n, 0.0);
    compute_bound_s.assign(n, 0.0);
    compute_util.assign(n, 0.0);
    memory_util.assign(n, 0.0);
    if (kind == PhaseKind::comm) overlap_kind = from.kind;
  } else if (kind == PhaseKind::comm && from.slowest_compute_s() > slowest_compute_s()) {
    overlap_kind = from.kind;  // named after the longest part
  }
  for (std::size_t r = 0; r < n; ++r) {
    const double bound = from.compute_bound_s[r] * stretch;
    const double s = from.compute_s[r] + bound - from.compute_bound_s[r];
    const double total = compute_s[r] + s;
    if (total > 0) {
      compute_util[r] = (compute_util[r] * compute_s[r] + from.compute_util[r] * from.compute_s[r]) / total;
      memory_util[r] = (memory_util[r] * compute_s[r] + from.memory_util[r] * from.compute_s[r]) / total;
    }
    compute_s[r] = total;
    compute_bound_s[r] += bound;
  }
}

double phase_seconds(const Phase& ph, double collective_s) {
  if (ph.kind != PhaseKind::comm) return ph.slowest_compute_s();
  return std::max(collective_s, ph.slowest_compute_s());
}

void overlap_micro_batches(std::span<const Phase> a, std::span<const Phase> b, std::vector<Phase>& out,
                           const std::function<double(const Collective&)>& stretch) {
  // Each chain as its segments: [compute phases) then [collectives), alternating.
  struct Segment {
    std::span<const Phase> compute, comms;
  };
  auto segments = [](std::span<const Phase> phases) {
    std::vector<Segment> segs;
    std::size_t i = 0;
    while (i < phases.size()) {
      const std::size_t c0 = i;
      while (i < phases.size() && phases[i].kind != PhaseKind::comm) ++i;
      const std::size_t k0 = i;
      while (i < phases.size() && phases[i].kind == PhaseKind::comm) ++i;
      segs.push_back({phases.subspan(c0, k0 - c0), phases.subspan(k0, i - k0)});
    }
    return segs;
  };
  const std::vector<Segment> sa = segments(a), sb = segments(b);
  // Puts `comms` on the timeline with `beside` running next to the first of them.
  auto slot = [&](std::span<const Phase> comms, std::span<const Phase> beside) {
    if (comms.empty()) {
      out.insert(out.end(), beside.begin(), beside.end());
      return;
    }
    out.push_back(comms.front());
    for (const Phase& ph : beside) out.back().add_compute(ph, stretch(comms.front().collective));
    out.insert(out.end(), comms.begin() + 1, comms.end());
  };
  auto compute_of = [](const std::vector<Segment>& s, std::size_t i) { return i < s.size() ? s[i].compute : std::span<const Phase>{}; };
  auto comms_of = [](const std::vector<Segment>& s, std::size_t i) { return i < s.size() ? s[i].comms : std::span<const Phase>{}; };
  out.clear();
  out.insert(out.end(), compute_of(sa, 0).begin(), compute_of(sa, 0).end());
  for (std::size_t i = 0; i < std::max(sa.size(), sb.size()); ++i) {
    slot(comms_of(sa, i), compute_of(sb, i));
    slot(comms_of(sb, i), compute_of(sa, i + 1));
  }
}
}  // namespace moesim
