// Workload and routing models: distributions, locality, group limits, the imbalance predictor,
// and input-file errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>

#include "models/common/imbalance.hpp"
#include "models/common/stats.hpp"
#include "models/routing/affinity.hpp"
#include "models/routing/router.hpp"
#include "models/routing/trace.hpp"
#include "models/workload/dataset_generator.hpp"
#include "tests/unit/test_support.hpp"

namespace moesim::test {
namespace {

ModelSpec card(const std::string& name) { return load_card<ModelSpec>(name); }

DomainCorpus corpus() { return DomainCorpus::load(kSourceDir / "datasets/domain_queries.json"); }

RouterContext context_for(const ModelSpec& m, const std::string& model, std::uint64_t seed = 1) {
  RoutingModelParams params;
  params.model = model;
  params.specialization = m.routing_specialization;
  params.locality = m.routing_locality;
  return router_context(m, params, seed, 25);
}

/// Routes `sequences` sequences of `length` tokens of one domain through `layers` layers, in steps
/// of `step_tokens`, and returns aggregated per-layer loads (layer-major).
std::vector<double> route_sequences(TokenRouter& router, const ModelSpec& m, int sequences, int length, int domain,
                                    int layers, std::vector<std::int32_t>* first_choices = nullptr) {
  const auto k = static_cast<std::size_t>(m.top_k);
  std::vector<double> loads(static_cast<std::size_t>(layers * m.num_experts), 0.0);
  std::vector<TokenInfo> tokens;
  std::vector<std::int32_t> experts;
  for (int s = 0; s < sequences; ++s) {
    tokens.clear();
    for (int p = 0; p < length; ++p) tokens.push_back({s, p, domain});
    experts.assign(tokens.size() * k, -1);
    for (int l = 0; l < layers; ++l) {
      router.route(l, tokens, experts, {});
      for (auto e : experts) loads[static_cast<std::size_t>(l * m.num_experts + e)] += 1;
      if (l == 0 && first_choices != nullptr)
        for (std::size_t t = 0; t < tokens.size(); ++t) first_choices->push_back(experts[t * k]);
    }
  }
  return loads;
}

TEST(Routing, uniform_routing_passes_chi_square) {
  const ModelSpec m = card("mixtral-8x7b");
  auto router = token_routers().get("uniform")(context_for(m, "uniform"));
  const auto loads = route_sequences(*router, m, 100, 1000, -1, 1);
  const double expected = 100.0 * 1000 * 2 / 8;
  double chi2 = 0;
  for (double x : loads) chi2 += (x - expected) * (x - expected) / expected;
  EXPECT_LT(chi2, 24.32);  // chi-square, 7 degrees of freedom, p = 0.001
}

TEST(Routing, measured_locality_matches_configured_probability_within_one_point) {
  for (double locality : {0.14, 0.25, 0.6}) {
    ModelSpec m = card("mixtral-8x7b");
    RouterContext ctx = context_for(m, "domain_affinity");
    ctx.params.locality = locality;
    auto router = token_routers().get("domain_affinity")(ctx);
    std::vector<std::int32_t> first;
    route_sequences(*router, m, 100, 1000, 3, 1, &first);  // 100k tokens
    int repeats = 0, pairs = 0;
    for (std::size_t i = 1; i < first.size(); ++i) {
      if (i % 1000 == 0) continue;  // a new sequence starts
      ++pairs;
      repeats += first[i] == first[i - 1];
    }
    EXPECT_NEAR(static_cast<double>(repeats) / pairs, locality, 0.01) << locality;
  }
}

TEST(Routing, mixtral_expert_shares_match_the_published_range) {
  // Mixtral paper section 5: per-expert shares roughly 0.06-0.19 against 0.125.
  const ModelSpec m = card("mixtral-8x7b");
  std::vector<double> shares;
  for (int l = 0; l < m.num_moe_layers(); ++l)
    for (int d = 0; d < 25; ++d) {
      const ExpertDistribution dist(softmax(affinity_log_popularity(m.name, l, d, 8, m.routing_specialization)), 0, 0);
      for (double inc : dist.inclusion_probabilities(2, 4000, 7)) shares.push_back(inc / 2);
    }
  EXPECT_GE(percentile_of(shares, 1), 0.06);
  EXPECT_LE(percentile_of(shares, 99), 0.21);
  EXPECT_GE(percentile_of(shares, 99), 0.17);  // not trivially uniform either
}

TEST(Routing, group_limited_routing_uses_at_most_topk_group_groups) {
  const ModelSpec m = card("deepseek-v3");
  ASSERT_EQ(m.n_group, 8);
  ASSERT_EQ(m.topk_group, 4);
  auto router = token_routers().get("domain_affinity")(context_for(m, "domain_affinity"));
  std::vector<TokenInfo> tokens;
  for (int p = 0; p < 2000; ++p) tokens.push_back({0, p, 5});
  std::vector<std::int32_t> experts(tokens.size() * 8);
  router->route(0, tokens, experts, {});
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    std::set<int> groups, distinct;
    for (std::size_t j = 0; j < 8; ++j) {
      groups.insert(experts[t * 8 + j] / 32);
      distinct.insert(experts[t * 8 + j]);
    }
    EXPECT_LE(groups.size(), 4u);
    EXPECT_EQ(distinct.size(), 8u);
  }
}

TEST(Routing, group_limited_sampling_picks_what_the_gumbel_top_k_of_the_same_draws_picks) {
  // The reference: log p + Gumbel noise per expert from the same uniforms, groups ranked by the sum
  // of their two best scores, the top topk_group groups' experts ranked by score.
  const int E = 256, G = 8, TG = 4, K = 8;
  std::vector<double> w(E);
  RngStream wr(3, "test/weights");
  for (auto& x : w) x = std::exp(2.0 * wr.standard_normal());
  const ExpertDistribution dist(w, G, TG);
  const auto& p = dist.probabilities();
  RngStream a(11, "test/draws"), b(11, "test/draws");
  for (int token = 0; token < 3000; ++token) {
    std::vector<std::int32_t> got(K);
    dist.sample_top_k(a, got, -1, -1);
    std::vector<double> score(E);
    for (int e = 0; e < E; ++e) {
      double u = b.uniform01();
      while (u <= 0.0) u = b.uniform01();
      score[static_cast<std::size_t>(e)] = std::log(p[static_cast<std::size_t>(e)]) - std::log(-std::log(u));
    }
    std::vector<std::pair<double, int>> groups;
    for (int g = 0; g < G; ++g) {
      std::vector<double> s(score.begin() + g * 32, score.begin() + (g + 1) * 32);
      std::sort(s.rbegin(), s.rend());
      groups.push_back({s[0] + s[1], g});
    }
    std::sort(groups.begin(), groups.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    std::vector<std::pair<double, int>> cand;
    for (int gi = 0; gi < TG; ++gi)
      for (int e = groups[static_cast<std::size_t>(gi)].second * 32; e < (groups[static_cast<std::size_t>(gi)].second + 1) * 32; ++e)
        cand.push_back({score[static_cast<std::size_t>(e)], e});
    std::sort(cand.begin(), cand.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    for (int j = 0; j < K; ++j) ASSERT_EQ(got[static_cast<std::size_t>(j)], cand[static_cast<std::size_t>(j)].second) << "token " << token << " choice " << j;
  }
}

TEST(Routing, hot_experts_take_their_share) {
  const ModelSpec m = card("mixtral-8x7b");
  RouterContext ctx = context_for(m, "hot_experts");
  ctx.params.hot_experts = {0};
  ctx.params.hot_share = 0.3;
  auto router = token_routers().get("hot_experts")(ctx);
  const auto loads = route_sequences(*router, m, 20, 1000, -1, 1);
  const double total = std::accumulate(loads.begin(), loads.end(), 0.0);
  // Top-2 without replacement: P(expert 0 chosen) = 0.3 + 0.7 * 0.3 / (1 - 0.1) = 0.5333, share /2.
  EXPECT_NEAR(loads[0] / total, 0.5333 / 2, 0.01);
}

TEST(Routing, gate_weights_sum_to_one_per_token) {
  const ModelSpec m = card("qwen3-30b-a3b");
  auto router = token_routers().get("domain_affinity")(context_for(m, "domain_affinity"));
  std::vector<TokenInfo> tokens{{0, 0, 1}, {0, 1, 1}, {1, 0, 2}};
  std::vector<std::int32_t> experts(tokens.size() * 8);
  std::vector<float> weights(experts.size());
  router->route(0, tokens, experts, weights);
  for (std::size_t t = 0; t < tokens.size(); ++t)
    EXPECT_NEAR(std::accumulate(weights.begin() + static_cast<long>(t * 8), weights.begin() + static_cast<long>(t * 8 + 8), 0.0), 1.0, 1e-5);
}

TEST(Routing, sigmoid_scoring_selects_the_same_experts_with_flatter_weights) {
  // The same tokens routed by a softmax and a sigmoid gate (DeepSeek-V3's card is sigmoid): the
  // top k is the same, the weights follow sigma(log(E p)) = E p / (1 + E p), renormalised.
  ModelSpec soft = card("deepseek-v3"), sig = soft;
  ASSERT_EQ(sig.scoring_func, GateScoring::sigmoid);
  soft.scoring_func = GateScoring::softmax;
  std::vector<TokenInfo> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back({i, 0, i % 3});
  const std::size_t k = 8;
  std::vector<std::int32_t> ea(tokens.size() * k), eb(ea.size());
  std::vector<float> wa(ea.size()), wb(ea.size());
  token_routers().get("domain_affinity")(context_for(soft, "domain_affinity"))->route(3, tokens, ea, wa);
  token_routers().get("domain_affinity")(context_for(sig, "domain_affinity"))->route(3, tokens, eb, wb);
  EXPECT_EQ(ea, eb);
  double spread_soft = 0, spread_sig = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const auto a = std::span(wa).subspan(t * k, k), b = std::span(wb).subspan(t * k, k);
    EXPECT_NEAR(std::accumulate(b.begin(), b.end(), 0.0), 1.0, 1e-5);
    spread_soft += *std::max_element(a.begin(), a.end()) - *std::min_element(a.begin(), a.end());
    spread_sig += *std::max_element(b.begin(), b.end()) - *std::min_element(b.begin(), b.end());
    // sigma(x) / sigma(y) <= exp(x) / exp(y) for x >= y: each pair's ratio is pulled towards 1.
    for (std::size_t i = 1; i < k; ++i) {
      const double ratio_soft = a[0] / a[i], ratio_sig = b[0] / b[i];
      EXPECT_LE(std::abs(std::log(ratio_sig)), std::abs(std::log(ratio_soft)) + 1e-6);
    }
  }
  EXPECT_LT(spread_sig, spread_soft);
}

double spearman(std::vector<double> a, std::vector<double> b) {
  auto ranks = [](const std::vector<double>& v) {
    std::vector<std::size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](auto i, auto j) { return v[i] < v[j]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < idx.size(); ++i) r[idx[i]] = static_cast<double>(i);
    return r;
  };
  const auto ra = ranks(a), rb = ranks(b);
  const double ma = mean_of(ra), mb = mean_of(rb);
  double num = 0, da = 0, db = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    num += (ra[i] - ma) * (rb[i] - mb);
    da += (ra[i] - ma) * (ra[i] - ma);
    db += (rb[i] - mb) * (rb[i] - mb);
  }
  return num / std::sqrt(da * db);
}

TEST(Datasets, measured_aggregated_cv_rises_with_predicted_score) {
  const ModelSpec m = card("mixtral-8x7b");
  const DomainCorpus c = corpus();
  const auto datasets = generate_datasets(c, m, 50, 30, 256, 0);
  std::vector<double> predicted, measured;
  for (const auto& ds : datasets) {
    auto router = token_routers().get("domain_affinity")(context_for(m, "domain_affinity", 11));
    ImbalanceTracker tracker(m.num_moe_layers(), 8, 1, 1000000, 10);
    std::vector<double> counts(static_cast<std::size_t>(m.num_moe_layers() * 8));
    std::vector<TokenInfo> tokens;
    std::vector<std::int32_t> experts;
    for (std::size_t r = 0; r < ds.records.size(); ++r) {
      const auto& rec = ds.records[r];
      tokens.clear();
      for (int p = 0; p < rec.prompt_tokens + rec.output_tokens; ++p) tokens.push_back({static_cast<std::int64_t>(r), p, rec.domain});
      experts.assign(tokens.size() * 2, 0);
      std::fill(counts.begin(), counts.end(), 0.0);
      for (int l = 0; l < m.num_moe_layers(); ++l) {
        router->route(l, tokens, experts, {});
        for (auto e : experts) counts[static_cast<std::size_t>(l * 8 + e)] += 1;
      }
      tracker.add_step(static_cast<int>(tokens.size()), counts);
    }
    predicted.push_back(ds.score);
    measured.push_back(tracker.result().cv_aggregated);
  }
  EXPECT_GE(spearman(predicted, measured), 0.8);
  // Single-domain datasets score higher than uniform mixes.
  double uniform = 0;
  for (const auto& ds : datasets)
    if (ds.strategy == "uniform_mix") uniform = std::max(uniform, ds.score);
  for (const auto& ds : datasets) {
    if (ds.strategy != "single_domain") continue;
    EXPECT_GT(ds.score, uniform);
  }
}

TEST(Datasets, generation_is_deterministic_from_the_seed) {
  const ModelSpec m = card("mixtral-8x7b");
  const DomainCorpus c = corpus();
  const auto a = generate_datasets(c, m, 6, 30, 256, 3);
  const auto b = generate_datasets(c, m, 6, 30, 256, 3);
  const auto d = generate_datasets(c, m, 6, 30, 256, 4);
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].to_jsonl(c), b[i].to_jsonl(c));
    EXPECT_EQ(a[i].file_name(), b[i].file_name());
  }
  EXPECT_NE(a[0].to_jsonl(c), d[0].to_jsonl(c));
  EXPECT_EQ(a[0].file_name().size(), std::string("001_0.2171.jsonl").size());
}

TEST(Imbalance, metrics_match_hand_computations) {
  const std::vector<double> x{1, 2, 3, 6};  // mean 3, population std sqrt(3.5)
  const LoadStats s = load_stats(x);
  EXPECT_NEAR(s.cv, std::sqrt(3.5) / 3, 1e-12);
  EXPECT_NEAR(s.max_over_mean, 2.0, 1e-12);
  EXPECT_NEAR(s.max_over_min, 6.0, 1e-12);
  // Gini: sum |xi - xj| over ordered pairs = 2 * (1+2+5+1+4+3) = 32; / (2 * 16 * 3) = 1/3.
  EXPECT_NEAR(s.gini, 32.0 / 96.0, 1e-12);
  EXPECT_NEAR(s.entropy_bits, -(1.0 / 12 * std::log2(1.0 / 12) + 2.0 / 12 * std::log2(2.0 / 12) + 3.0 / 12 * std::log2(3.0 / 12) + 0.5 * std::log2(0.5)), 1e-12);
  EXPECT_NEAR(load_stats(std::vector<double>{5, 5, 5, 5}).kl_from_uniform, 0.0, 1e-15);
  EXPECT_TRUE(std::isinf(load_stats(std::vector<double>{0, 1}).max_over_min));
  EXPECT_NEAR(linear_trend(std::vector<double>{1, 3, 5, 7}), 2.0, 1e-12);
}

TEST(Imbalance, aggregated_cv_filters_large_steps) {
  ImbalanceTracker t(1, 2, 1, 10, 5);
  t.add_step(4, std::vector<double>{4, 4});        // kept, balanced
  t.add_step(100, std::vector<double>{200, 0});    // filtered out of the aggregate
  const auto r = t.result();
  EXPECT_EQ(r.steps, 2);
  EXPECT_EQ(r.steps_in_filter, 1);
  EXPECT_NEAR(r.cv_aggregated, 0.0, 1e-12);
  EXPECT_NEAR(r.cv_per_step_mean, 0.5, 1e-12);  // (0 + 1) / 2
  EXPECT_GT(r.cv_aggregated_all, 0.9);
}

TEST(Arrivals, gamma_gaps_have_the_requested_mean_and_cv) {
  WorkloadParams p;
  p.requests = 40000;
  p.arrival = {"gamma", 10.0, 3.0, 0};
  const auto reqs = generate_requests(p, 1, 4096);
  std::vector<double> gaps;
  for (std::size_t i = 1; i < reqs.size(); ++i) gaps.push_back(reqs[i].arrival_s - reqs[i - 1].arrival_s);
  EXPECT_NEAR(mean_of(gaps), 0.1, 0.005);
  EXPECT_NEAR(coefficient_of_variation(gaps), 3.0, 0.15);
}

TEST(Arrivals, domain_mix_is_respected) {
  WorkloadParams p;
  p.requests = 20000;
  p.domains = {{"cooking", 3.0}, {"programming", 1.0}};
  const DomainCorpus c = corpus();
  const auto reqs = generate_requests(p, 2, 4096, c.names);
  int cooking = 0, programming = 0;
  for (const auto& r : reqs) {
    cooking += r.domain == c.index_of("cooking");
    programming += r.domain == c.index_of("programming");
  }
  EXPECT_EQ(cooking + programming, 20000);
  EXPECT_NEAR(cooking / 20000.0, 0.75, 0.01);
}

TEST(Arrivals, a_drifting_domain_mix_is_linear_between_keyframes_and_wraps_over_its_period) {
  const std::vector<std::string> names{"cooking", "programming", "math"};
  DomainDriftParams d;
  d.period_s = 100;
  d.points = {{10, {{"cooking", 2.0}}}, {60, {{"programming", 1.0}, {"math", 1.0}}}};
  const auto at = [&](double t) { return drift_weights_at(d, names, t); };
  EXPECT_DOUBLE_EQ(at(10)[0], 1.0);  // each keyframe normalised
  EXPECT_DOUBLE_EQ(at(60)[1], 0.5);
  const auto mid = at(35);  // halfway from the first to the second
  EXPECT_DOUBLE_EQ(mid[0], 0.5);
  EXPECT_DOUBLE_EQ(mid[1], 0.25);
  EXPECT_DOUBLE_EQ(mid[2], 0.25);
  // From the last keyframe (60) into the next period's first (110): 85 and -15 are halfway.
  EXPECT_DOUBLE_EQ(at(85)[0], 0.5);
  EXPECT_DOUBLE_EQ(at(0)[0], 0.8);  // 0 = 100: 40 of the 50 s from 60 (cooking 0) to 110 (cooking 1)
  EXPECT_DOUBLE_EQ(at(235)[0], 0.5);  // two periods later
  d.period_s = 0;  // no period: held before the first and after the last
  EXPECT_DOUBLE_EQ(drift_weights_at(d, names, 0)[0], 1.0);
  EXPECT_DOUBLE_EQ(drift_weights_at(d, names, 1e6)[1], 0.5);
}

TEST(Arrivals, requests_draw_their_domain_from_the_mix_at_their_arrival_time) {
  WorkloadParams p;
  p.requests = 20000;
  p.arrival = {"constant", 100.0, 1.0, 0};  // 200 s
  p.domain_drift.points = {{0, {{"cooking", 1.0}}}, {200, {{"programming", 1.0}}}};
  const DomainCorpus c = corpus();
  const auto reqs = generate_requests(p, 2, 4096, c.names);
  // Share of cooking in each 50 s quarter: the mean of a line falling from 1 to 0 over it.
  int cooking[4] = {0, 0, 0, 0}, total[4] = {0, 0, 0, 0};
  for (const auto& r : reqs) {
    const int q = std::min(3, static_cast<int>(r.arrival_s / 50));
    total[q] += 1;
    cooking[q] += r.domain == c.index_of("cooking");
    ASSERT_TRUE(r.domain == c.index_of("cooking") || r.domain == c.index_of("programming"));
  }
  for (int q = 0; q < 4; ++q) EXPECT_NEAR(static_cast<double>(cooking[q]) / total[q], 1.0 - (q + 0.5) / 4, 0.02) << q;
}

// ---- input errors ------------------------------------------------------------------------------

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto p = std::filesystem::temp_directory_path() / ("moesim-wl-" + name);
  std::ofstream(p) << text;
  return p;
}

std::vector<std::string> dataset_errors(const std::string& text) {
  const auto p = write_temp("ds.jsonl", text);
  try {
    (void)load_dataset(p, corpus());
  } catch (const InputError& e) {
    std::vector<std::string> out;
    for (const auto& i : e.issues()) out.push_back(InputError::format(i).substr(p.string().size()));
    return out;
  }
  return {};
}

TEST(DatasetErrors, each_problem_names_line_and_field) {
  EXPECT_EQ(dataset_errors("{\"domain\": \"cooking\", \"prompt_tokens\": 5, \"output_tokens\": 8}\n{not json\n"),
            (std::vector<std::string>{":2: not valid JSON"}));
  EXPECT_EQ(dataset_errors("{\"domain\": \"cooking\", \"prompt_tokens\": 5}\n"),
            (std::vector<std::string>{":1: output_tokens: missing"}));
  EXPECT_EQ(dataset_errors("{\"domain\": \"cooking\", \"prompt_tokens\": -5, \"output_tokens\": 8}\n"),
            (std::vector<std::string>{":1: prompt_tokens: must be an integer >= 1 (got -5)"}));
  const auto unknown = dataset_errors("{\"domain\": \"knitting\", \"prompt_tokens\": 5, \"output_tokens\": 8}\n");
  ASSERT_EQ(unknown.size(), 1u);
  EXPECT_EQ(unknown[0].rfind(":1: domain: unknown domain \"knitting\"; known: programming, mathematics", 0), 0u) << unknown[0];
}

TEST(TraceErrors, expert_or_layer_mismatch_is_reported) {
  const auto p = write_temp("acts.csv", "layer_idx,expert_id,activation_count,percentage\n0,0,5,50\n0,9,5,50\n");
  try {
    (void)load_routing_trace(p, 1, 8);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(InputError::format(e.issues()[0]), p.string() + ":3: expert_id: must be in [0, 7] for this model (got 9)");
  }
  const auto q = write_temp("acts2.csv", "layer_idx,expert_id,activation_count,percentage\n0,0,5,50\n1,1,5,50\n");
  try {
    (void)load_routing_trace(q, 32, 8);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(InputError::format(e.issues()[0]), q.string() + ": layer_idx: the profile has 2 layers but the model has 32 MoE layers");
  }
}

}  // namespace
}  // namespace moesim::test

namespace moesim::test {
namespace {

TEST(Routing, count_level_and_token_level_agree_in_mean_and_variance) {
  // Count-level routing is for many experts (its variance is (1 - 1/E) of the token level's after
  // the counts are made to sum to n * k): Qwen3-30B-A3B, 128 experts, top-8.
  const ModelSpec m = card("qwen3-30b-a3b");
  RouterContext ctx = context_for(m, "domain_affinity", 5);
  ctx.params.locality = 0;  // count level has no sequence identity
  auto token_router = token_routers().get("domain_affinity")(ctx);
  auto count_router = token_routers().get("domain_affinity")(ctx);
  const int trials = 1000, n = 1024, E = 128, k = 8;
  std::vector<std::vector<double>> token_loads(E), count_loads(E);
  std::vector<TokenInfo> tokens;
  std::vector<std::int32_t> experts(static_cast<std::size_t>(n * k));
  std::vector<double> counts(E);
  const TokenGroup group{0, 4, n};
  for (int t = 0; t < trials; ++t) {
    tokens.clear();
    for (int i = 0; i < n; ++i) tokens.push_back({t * n + i, 0, 4});
    token_router->route(0, tokens, experts, {});
    std::vector<double> c(E, 0.0);
    for (auto e : experts) c[static_cast<std::size_t>(e)] += 1;
    count_router->route_counts(0, std::span<const TokenGroup>(&group, 1), counts);
    EXPECT_DOUBLE_EQ(std::accumulate(counts.begin(), counts.end(), 0.0), 1.0 * n * k);
    for (std::size_t e = 0; e < E; ++e) {
      token_loads[e].push_back(c[e]);
      count_loads[e].push_back(counts[e]);
    }
  }
  double worst_mean = 0, worst_var = 0;
  for (std::size_t e = 0; e < E; ++e) {
    const double tm = mean_of(token_loads[e]), cm = mean_of(count_loads[e]);
    if (tm < 20) continue;  // rarely chosen experts: relative errors are noise
    const double tv = std::pow(stddev_of(token_loads[e]), 2), cv = std::pow(stddev_of(count_loads[e]), 2);
    worst_mean = std::max(worst_mean, std::fabs(cm - tm) / tm);
    worst_var = std::max(worst_var, std::fabs(cv - tv) / tv);
  }
  EXPECT_LT(worst_mean, 0.03);
  EXPECT_LT(worst_var, 0.2);  // 1000 trials: the variance estimate itself scatters by ~9% (2 sigma ~ 18%)
}

}  // namespace
}  // namespace moesim::test
