// Routing policies on hand-built placements: where tokens land, what is counted, and the
// seed-000 formulas against hand computations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/common/rng.hpp"
#include "models/routing/policy.hpp"
#include "models/routing/router.hpp"

namespace moesim {
namespace {

constexpr int kExperts = 16, kTopK = 4, kGpus = 4;

/// 16 experts + 8 replicas on 4 GPUs (6 slots each); experts 0..7 have two replicas.
LayerSlots replicated_layer() {
  LayerSlots l;
  for (int e = 0; e < kExperts; ++e) l.phy2log.push_back(e);
  for (int e = 0; e < 8; ++e) l.phy2log.push_back(e);
  // Interleave so that the two replicas of an expert sit on different GPUs.
  std::vector<int> order(l.phy2log.size());
  for (std::size_t s = 0; s < order.size(); ++s) order[s] = l.phy2log[(s * 7) % l.phy2log.size()];
  l.phy2log = order;
  l.slots_per_gpu = static_cast<int>(l.phy2log.size()) / kGpus;
  l.slots_of.assign(kExperts, {});
  for (std::size_t s = 0; s < l.phy2log.size(); ++s) l.slots_of[static_cast<std::size_t>(l.phy2log[s])].push_back(static_cast<int>(s));
  return l;
}

PolicyContext context() {
  PolicyContext c;
  c.num_experts = kExperts;
  c.top_k = kTopK;
  c.num_moe_layers = 1;
  c.gpus = kGpus;
  c.gpus_per_node = 2;
  c.seed = 7;
  c.power_budget_w = 700;
  return c;
}

/// Skewed top-k per token: experts 0 and 1 are hot.
void draw_tokens(RngStream& rng, int tokens, std::vector<std::int32_t>& experts, std::vector<int>& src) {
  experts.assign(static_cast<std::size_t>(tokens * kTopK), 0);
  src.assign(static_cast<std::size_t>(tokens), 0);
  for (int t = 0; t < tokens; ++t) {
    src[static_cast<std::size_t>(t)] = t * kGpus / tokens;
    auto row = std::span<std::int32_t>(experts).subspan(static_cast<std::size_t>(t * kTopK), kTopK);
    int n = 0;
    while (n < kTopK) {
      const auto e = static_cast<std::int32_t>(rng.uniform01() < 0.5 ? rng.uniform_index(2) : rng.uniform_index(kExperts));
      if (std::find(row.begin(), row.begin() + n, e) == row.begin() + n) row[static_cast<std::size_t>(n++)] = e;
    }
  }
}

std::unique_ptr<RoutingPolicy> make(const std::string& name, RoutingPolicyConfig cfg = {}) {
  cfg.policy = name;
  return routing_policies().get(name)(context(), cfg);
}

std::vector<double> gpu_loads(const LayerSlots& l, const std::vector<int>& slot_of) {
  std::vector<double> load(kGpus, 0.0);
  for (int s : slot_of)
    if (s >= 0) load[static_cast<std::size_t>(l.gpu_of(s))] += 1;
  return load;
}

TEST(Policies, every_assignment_lands_on_a_replica_of_its_selected_expert_or_is_counted_as_dropped) {
  const LayerSlots layer = replicated_layer();
  RngStream rng(1, "test/tokens");
  for (const std::string name : {"static", "eplb", "least_loaded", "capacity", "nectar"}) {
    RoutingPolicyConfig cfg;
    cfg.capacity.factor = 1.0;
    auto policy = make(name, cfg);
    for (int step = 0; step < 20; ++step) {
      std::vector<std::int32_t> experts;
      std::vector<int> src;
      draw_tokens(rng, 64 + step, experts, src);
      const auto gate = experts;
      std::vector<int> slot_of(experts.size(), -2);
      PolicyCounters c;
      policy->begin_step(std::vector<GpuSignal>(kGpus));
      policy->assign(0, layer, src, experts, slot_of, c);
      EXPECT_EQ(experts, gate) << name;
      double dropped = 0;
      for (std::size_t i = 0; i < slot_of.size(); ++i) {
        if (slot_of[i] < 0) {
          EXPECT_EQ(slot_of[i], -1) << name;
          dropped += 1;
          continue;
        }
        EXPECT_EQ(layer.phy2log[static_cast<std::size_t>(slot_of[i])], experts[i]) << name << " assignment " << i;
      }
      EXPECT_EQ(c.assignments, static_cast<double>(experts.size())) << name;
      EXPECT_EQ(c.computed + c.dropped, c.assignments) << name;
      EXPECT_EQ(c.dropped, dropped) << name;
      if (name != "capacity") {
        EXPECT_EQ(dropped, 0) << name;
      }
      std::vector<double> e_load(kExperts, 0.0);
      for (auto e : experts) e_load[static_cast<std::size_t>(e)] += 1;
      policy->observe_layer(0, e_load, e_load, gpu_loads(layer, slot_of));
    }
  }
}

TEST(Policies, least_loaded_max_gpu_load_is_never_above_the_default_rule_on_the_same_step) {
  const LayerSlots layer = replicated_layer();
  RngStream rng(2, "test/tokens");
  for (int choices : {0, 2}) {
    RoutingPolicyConfig cfg;
    cfg.least_loaded_choices = choices;
    auto ll = make("least_loaded", cfg);
    auto stat = make("eplb", cfg);
    for (int step = 0; step < 200; ++step) {
      std::vector<std::int32_t> experts;
      std::vector<int> src;
      draw_tokens(rng, 8 + step % 50, experts, src);
      std::vector<int> a(experts.size()), b(experts.size());
      PolicyCounters ca, cb;
      ll->assign(0, layer, src, experts, a, ca);
      stat->assign(0, layer, src, experts, b, cb);
      const auto la = gpu_loads(layer, a), lb = gpu_loads(layer, b);
      EXPECT_LE(*std::max_element(la.begin(), la.end()), *std::max_element(lb.begin(), lb.end())) << "step " << step;
    }
  }
}

TEST(Policies, least_loaded_spreads_hot_replicas_below_the_default_rule_on_average) {
  const LayerSlots layer = replicated_layer();
  RngStream rng(3, "test/tokens");
  auto ll = make("least_loaded");
  auto stat = make("eplb");
  double sum_ll = 0, sum_st = 0;
  for (int step = 0; step < 100; ++step) {
    std::vector<std::int32_t> experts;
    std::vector<int> src;
    draw_tokens(rng, 128, experts, src);
    std::vector<int> a(experts.size()), b(experts.size());
    PolicyCounters ca, cb;
    ll->assign(0, layer, src, experts, a, ca);
    stat->assign(0, layer, src, experts, b, cb);
    const auto la = gpu_loads(layer, a), lb = gpu_loads(layer, b);
    sum_ll += *std::max_element(la.begin(), la.end());
    sum_st += *std::max_element(lb.begin(), lb.end());
    EXPECT_GT(ca.rerouted, 0);
  }
  EXPECT_LT(sum_ll, 0.95 * sum_st);
}

TEST(Policies, capacity_never_exceeds_a_slot_capacity_and_next_replica_drops_no_more_than_drop) {
  const LayerSlots layer = replicated_layer();
  RngStream rng(4, "test/tokens");
  std::vector<std::int32_t> experts;
  std::vector<int> src;
  draw_tokens(rng, 256, experts, src);
  std::fill(src.begin(), src.end(), 0);  // every token on GPU 0: nearest picks the replica there
  double dropped[2];
  for (int i = 0; i < 2; ++i) {
    RoutingPolicyConfig cfg;
    cfg.capacity.factor = 1.5;
    cfg.capacity.overflow = i == 0 ? "drop" : "next_replica";
    cfg.replica_selection = "nearest";  // uneven over replicas: the next replica has room
    auto cap = make("capacity", cfg);
    std::vector<int> slot_of(experts.size());
    PolicyCounters c;
    cap->assign(0, layer, src, experts, slot_of, c);
    const double limit = std::ceil(1.5 * static_cast<double>(experts.size()) / static_cast<double>(layer.phy2log.size()));
    std::vector<double> per_slot(layer.phy2log.size(), 0.0);
    for (int s : slot_of)
      if (s >= 0) per_slot[static_cast<std::size_t>(s)] += 1;
    EXPECT_LE(*std::max_element(per_slot.begin(), per_slot.end()), limit);
    if (i == 0) {
      EXPECT_GT(c.dropped, 0);  // the replica near most tokens of a hot expert overflows
    }
    dropped[i] = c.dropped;
  }
  EXPECT_LT(dropped[1], dropped[0]);
}

TEST(Policies, count_level_assignments_conserve_every_row_and_respect_capacity) {
  const LayerSlots layer = replicated_layer();
  const std::size_t S = layer.phy2log.size();
  std::vector<TokenGroup> groups;
  for (int g = 0; g < kGpus; ++g) groups.push_back({g, -1, 100});
  std::vector<double> counts(groups.size() * kExperts, 0.0);
  RngStream rng(5, "test/counts");
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (int j = 0; j < 100 * kTopK; ++j) counts[g * kExperts + (rng.uniform01() < 0.5 ? rng.uniform_index(2) : rng.uniform_index(kExperts))] += 1;
  for (const std::string name : {"eplb", "least_loaded", "capacity", "nectar"}) {
    RoutingPolicyConfig cfg;
    for (const std::string rule : {"position", "random", "nearest", "even"}) {
      cfg.replica_selection = rule;
      auto p = make(name, cfg);
      for (int step = 0; step < 3; ++step) {
        std::vector<double> slots(groups.size() * S, 0.0);
        PolicyCounters c;
        p->assign_counts(0, layer, groups, counts, slots, c);
        for (std::size_t g = 0; g < groups.size(); ++g)
          for (int e = 0; e < kExperts; ++e) {
            double got = 0;
            for (int s : layer.slots_of[static_cast<std::size_t>(e)]) got += slots[g * S + static_cast<std::size_t>(s)];
            if (name == "capacity") EXPECT_LE(got, counts[g * kExperts + static_cast<std::size_t>(e)]);
            else EXPECT_EQ(got, counts[g * kExperts + static_cast<std::size_t>(e)]) << name << "/" << rule;
          }
        const double total = std::accumulate(slots.begin(), slots.end(), 0.0);
        EXPECT_DOUBLE_EQ(total, c.computed) << name;
        EXPECT_DOUBLE_EQ(c.computed + c.dropped, std::accumulate(counts.begin(), counts.end(), 0.0)) << name;
        std::vector<double> gpu(kGpus, 0.0);
        for (std::size_t i = 0; i < slots.size(); ++i) gpu[static_cast<std::size_t>(layer.gpu_of(static_cast<int>(i % S)))] += slots[i];
        std::vector<double> e_load(kExperts, 0.0);
        for (std::size_t i = 0; i < counts.size(); ++i) e_load[i % kExperts] += counts[i];
        p->observe_layer(0, e_load, e_load, gpu);
      }
    }
  }
}

TEST(Nectar, pressures_score_prediction_and_bias_match_hand_computations) {
  EXPECT_DOUBLE_EQ(thermal_pressure(50), 0.0);
  EXPECT_DOUBLE_EQ(thermal_pressure(70), 0.5);
  EXPECT_DOUBLE_EQ(thermal_pressure(85), 1.25);
  EXPECT_DOUBLE_EQ(power_pressure(400, 700), 0.0);
  EXPECT_NEAR(power_pressure(600, 700), (600.0 - 490.0) / 210.0, 1e-15);
  // KL(u || p) / E + unbiased variance for p = (0.7, 0.1, 0.1, 0.1).
  const std::vector<double> p{0.7, 0.1, 0.1, 0.1};
  const double kl = 0.25 * (std::log(0.25) - std::log(0.7 + 1e-8)) + 0.75 * (std::log(0.25) - std::log(0.1 + 1e-8));
  EXPECT_NEAR(nectar_imbalance_score(p), kl / 4 + 0.27 / 3, 1e-12);
  EXPECT_NEAR(nectar_imbalance_score(std::vector<double>{0.25, 0.25, 0.25, 0.25}), 0.0, 1e-7);
  // Trend: last + (last - first) / (n - 1), clipped and renormalised.
  const auto pred = nectar_predict({{0.4, 0.6}, {0.45, 0.55}, {0.5, 0.5}});
  EXPECT_NEAR(pred[0], 0.55, 1e-12);
  EXPECT_NEAR(pred[1], 0.45, 1e-12);
  const auto clipped = nectar_predict({{0.9, 0.1}, {0.5, 0.5}});
  EXPECT_NEAR(clipped[0], 0.1 / 1.0, 1e-12);  // (0.1, 0.9): nothing negative here
  const auto neg = nectar_predict({{0.2, 0.8}, {0.8, 0.2}});  // 1.4, -0.4 -> 1, 0
  EXPECT_DOUBLE_EQ(neg[0], 1.0);
  EXPECT_DOUBLE_EQ(neg[1], 0.0);
  // Bias: strength x (target - current); target 0.7 predicted + 0.3 uniform, or uniform under pressure.
  const std::vector<double> cur{0.6, 0.4}, prd{0.6, 0.4};
  const auto calm = nectar_bias(cur, prd, 0.2, 0.5);
  EXPECT_NEAR(calm[0], 0.5 * (0.7 * 0.6 + 0.15 - 0.6), 1e-15);
  EXPECT_NEAR(calm[1], 0.5 * (0.7 * 0.4 + 0.15 - 0.4), 1e-15);
  const auto hot = nectar_bias(cur, prd, 0.6, 0.5);
  EXPECT_NEAR(hot[0], -0.05, 1e-15);
  EXPECT_NEAR(hot[1], 0.05, 1e-15);
}

TEST(GateBias, the_coupling_moves_the_gate_distribution_exactly_to_the_biased_one) {
  const std::vector<double> p{0.5, 0.3, 0.15, 0.05};
  const std::vector<double> b{-0.4, 0.1, 0.3, 0.8};
  const GateBiasCoupling c = gate_bias_coupling(p, b);
  double z = 0;
  for (std::size_t e = 0; e < p.size(); ++e) z += p[e] * std::exp(b[e]);
  double leaving = 0;
  for (std::size_t e = 0; e < p.size(); ++e) leaving += p[e] * c.leave[e];
  double tv = 0;
  for (std::size_t e = 0; e < p.size(); ++e) {
    const double q = p[e] * std::exp(b[e]) / z;
    const double arrive = c.arrive_cdf[e] - (e > 0 ? c.arrive_cdf[e - 1] : 0.0);
    EXPECT_NEAR(p[e] * (1 - c.leave[e]) + leaving * arrive, q, 1e-12) << "expert " << e;
    tv += std::max(0.0, p[e] - q);
  }
  EXPECT_NEAR(leaving, tv, 1e-12);  // the fewest moves: the total variation distance
  const GateBiasCoupling none = gate_bias_coupling(p, std::vector<double>(4, 0.25));
  EXPECT_TRUE(none.arrive_cdf.empty());
}

TEST(GateBias, aux_free_bias_counts_changed_assignments_and_keeps_experts_distinct_per_token) {
  RoutingPolicyConfig cfg;
  cfg.aux_free_update_speed = 0.05;
  auto p = make("aux_free_bias", cfg);
  EXPECT_TRUE(p->changes_selection());
  RngStream rng(6, "test/tokens");
  double changed = 0, assignments = 0;
  std::vector<double> first_hot, last_hot;
  for (int step = 0; step < 60; ++step) {
    std::vector<std::int32_t> experts;
    std::vector<int> src;
    draw_tokens(rng, 200, experts, src);
    std::vector<double> gate(kExperts, 0.0);
    for (auto e : experts) gate[static_cast<std::size_t>(e)] += 1;
    const auto before = experts;
    PolicyCounters c;
    p->reselect(0, experts, c);
    double diff = 0;
    for (std::size_t i = 0; i < experts.size(); ++i) diff += experts[i] != before[i] ? 1 : 0;
    EXPECT_EQ(c.changed, diff);
    for (std::size_t t = 0; t < experts.size(); t += kTopK) {
      std::vector<std::int32_t> row(experts.begin() + static_cast<std::ptrdiff_t>(t), experts.begin() + static_cast<std::ptrdiff_t>(t + kTopK));
      std::sort(row.begin(), row.end());
      EXPECT_EQ(std::adjacent_find(row.begin(), row.end()), row.end());
    }
    std::vector<double> load(kExperts, 0.0);
    for (auto e : experts) load[static_cast<std::size_t>(e)] += 1;
    if (step == 1) first_hot = load;
    last_hot = load;
    changed += c.changed;
    assignments += static_cast<double>(experts.size());
    p->observe_layer(0, gate, load, {});
  }
  EXPECT_GT(changed, 0);
  // The bias pulls load off the hot experts.
  EXPECT_LT(last_hot[0] + last_hot[1], first_hot[0] + first_hot[1]);
}

TEST(GateBias, count_level_reselection_keeps_every_rows_sum_even_when_a_row_exceeds_its_tokens) {
  // Dealing a domain's counts to (source, domain) groups can give a group more of one expert than
  // it has tokens; moving assignments must still conserve every row.
  RoutingPolicyConfig cfg;
  cfg.aux_free_update_speed = 2.0;
  auto p = make("aux_free_bias", cfg);
  std::vector<double> gate(kExperts, 1.0);
  gate[0] = gate[1] = 40.0;
  for (int step = 0; step < 3; ++step) p->observe_layer(0, gate, gate, {});
  std::vector<TokenGroup> groups{{0, 1, 1}, {1, 1, 3}};
  std::vector<double> counts(groups.size() * kExperts, 0.0);
  // Group 0 (one token) holds 5 of cold expert 2 and one of every other cold expert: no room left.
  counts[0] = 3;
  counts[2] = 5;
  for (int e = 3; e < kExperts; ++e) counts[static_cast<std::size_t>(e)] = 1;
  counts[kExperts + 0] = 5;
  counts[kExperts + 1] = 5;
  counts[kExperts + 2] = 2;
  for (int rep = 0; rep < 50; ++rep) {
    auto c = counts;
    PolicyCounters pc;
    p->reselect_counts(0, groups, c, pc);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      double before = 0, after = 0;
      for (int e = 0; e < kExperts; ++e) {
        before += counts[g * kExperts + static_cast<std::size_t>(e)];
        after += c[g * kExperts + static_cast<std::size_t>(e)];
        EXPECT_GE(c[g * kExperts + static_cast<std::size_t>(e)], 0.0);
      }
      EXPECT_EQ(after, before) << "group " << g << " repetition " << rep;
    }
  }
}

TEST(Nectar, replica_mode_steers_replicated_load_away_from_a_hot_gpu) {
  const LayerSlots layer = replicated_layer();
  RoutingPolicyConfig cfg;
  cfg.nectar.mode = "replica";
  auto p = make("nectar", cfg);
  RngStream rng(8, "test/tokens");
  std::vector<GpuSignal> gpus(kGpus);
  gpus[1].temp_c = 90;  // thermal pressure 1.5
  double hot_share = 0, calm_share = 0;
  for (int step = 0; step < 10; ++step) {
    std::vector<std::int32_t> experts;
    std::vector<int> src;
    draw_tokens(rng, 128, experts, src);
    p->begin_step(gpus);
    std::vector<int> slot_of(experts.size());
    PolicyCounters c;
    p->assign(0, layer, src, experts, slot_of, c);
    const auto load = gpu_loads(layer, slot_of);
    if (step > 0) {
      hot_share += load[1] / static_cast<double>(experts.size());
      auto stat = make("eplb", cfg);
      std::vector<int> def(experts.size());
      PolicyCounters cd;
      stat->assign(0, layer, src, experts, def, cd);
      calm_share += gpu_loads(layer, def)[1] / static_cast<double>(experts.size());
    }
    std::vector<double> e_load(kExperts, 0.0);
    for (auto e : experts) e_load[static_cast<std::size_t>(e)] += 1;
    p->observe_layer(0, e_load, e_load, load);
  }
  EXPECT_LT(hot_share, calm_share);
}

TEST(Policies, unknown_policy_names_list_the_valid_ones) {
  try {
    (void)routing_policies().get("nope");
    FAIL();
  } catch (const UnknownNameError& e) {
    EXPECT_NE(std::string(e.what()).find("aux_free_bias, capacity, eplb, least_loaded, nectar, static"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moesim
