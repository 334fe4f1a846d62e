#include "models/workload/dataset_generator.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/common/rng.hpp"
#include "models/common/stats.hpp"
#include "models/routing/affinity.hpp"

namespace moesim {

std::string GeneratedDataset::file_name() const { return fmt::format("{:03d}_{:.4f}.jsonl", index, score); }

std::string GeneratedDataset::to_jsonl(const DomainCorpus& corpus) const {
  std::string out;
  for (const auto& r : records) {
    nlohmann::ordered_json j;
    j["prompt"] = r.prompt;
    j["domain"] = corpus.names[static_cast<std::size_t>(r.domain)];
    j["prompt_tokens"] = r.prompt_tokens;
    j["output_tokens"] = r.output_tokens;
    out += j.dump() + "\n";
  }
  return out;
}

ImbalancePredictor::ImbalancePredictor(const ModelSpec& model, int num_domains, int samples)
    : model_(model),
      num_domains_(num_domains),
      samples_(samples),
      cache_(static_cast<std::size_t>(model.num_moe_layers() * num_domains)) {}

const std::vector<double>& ImbalancePredictor::inclusion(int layer, int domain) {
  auto& slot = cache_[static_cast<std::size_t>(layer * num_domains_ + domain)];
  if (slot.empty()) {
    const auto lp = affinity_log_popularity(model_.name, layer, domain, model_.num_experts, model_.routing_specialization);
    const ExpertDistribution dist(softmax(lp), model_.n_group, model_.topk_group);
    slot = dist.inclusion_probabilities(model_.top_k, samples_, fnv1a64(model_.name) + static_cast<std::uint64_t>(layer));
  }
  return slot;
}

double ImbalancePredictor::score(const std::vector<double>& share) {
  const int layers = model_.num_moe_layers();
  double acc = 0;
  for (int l = 0; l < layers; ++l) {
    std::vector<double> load(static_cast<std::size_t>(model_.num_experts), 0.0);
    for (int d = 0; d < num_domains_; ++d) {
      if (share[static_cast<std::size_t>(d)] <= 0) continue;
      const auto& inc = inclusion(l, d);
      for (std::size_t e = 0; e < load.size(); ++e) load[e] += share[static_cast<std::size_t>(d)] * inc[e];
    }
    acc += coefficient_of_variation(load);
  }
  return acc / layers;
}

namespace {

const char* const kStrategies[] = {"single_domain", "two_domains", "three_domains", "zipf_domains", "uniform_mix", "bursts"};

std::vector<int> distinct_domains(RngStream& rng, int n, int k) {
  std::vector<int> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  for (int i = 0; i < k; ++i) std::swap(all[static_cast<std::size_t>(i)], all[i + rng.uniform_index(static_cast<std::uint64_t>(n - i))]);
  all.resize(static_cast<std::size_t>(k));
  return all;
}

int draw(RngStream& rng, const std::vector<double>& w) {
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  double u = rng.uniform01() * total;
  for (std::size_t i = 0; i < w.size(); ++i) {
    u -= w[i];
    if (u < 0) return static_cast<int>(i);
  }
  return static_cast<int>(w.size()) - 1;
}

}  // namespace

std::vector<GeneratedDataset> generate_datasets(const DomainCorpus& corpus, const ModelSpec& model, int count, int prompts,
                                                int output_tokens, std::uint64_t seed) {
  const int n = static_cast<int>(corpus.names.size());
  ImbalancePredictor predictor(model, n);
  std::vector<GeneratedDataset> out;
  for (int i = 1; i <= count; ++i) {
    RngStream rng(seed, "gen-datasets/" + std::to_string(i));
    GeneratedDataset ds;
    ds.index = i;
    ds.strategy = kStrategies[(i - 1) % 6];
    std::vector<double> weights(static_cast<std::size_t>(n), 0.0);
    std::vector<int> sequence;  // for bursts: the domain of each prompt
    switch ((i - 1) % 6) {
      case 0: weights[static_cast<std::size_t>(rng.uniform_index(static_cast<std::uint64_t>(n)))] = 1.0; break;
      case 1:
      case 2:
        for (int d : distinct_domains(rng, n, (i - 1) % 6 + 1)) weights[static_cast<std::size_t>(d)] = 0.2 + rng.uniform01();
        break;
      case 3: {
        const double s = 0.5 + 2.0 * rng.uniform01();
        const auto order = distinct_domains(rng, n, n);
        for (int r = 0; r < n; ++r) weights[static_cast<std::size_t>(order[static_cast<std::size_t>(r)])] = 1.0 / std::pow(r + 1.0, s);
        break;
      }
      case 4: std::fill(weights.begin(), weights.end(), 1.0); break;
      default:
        while (static_cast<int>(sequence.size()) < prompts) {
          const int d = static_cast<int>(rng.uniform_index(static_cast<std::uint64_t>(n)));
          const int len = 5 + static_cast<int>(rng.uniform_index(6));
          for (int j = 0; j < len && static_cast<int>(sequence.size()) < prompts; ++j) sequence.push_back(d);
        }
    }
    std::vector<double> tokens(static_cast<std::size_t>(n), 0.0);
    for (int p = 0; p < prompts; ++p) {
      const int d = sequence.empty() ? draw(rng, weights) : sequence[static_cast<std::size_t>(p)];
      const auto& qs = corpus.queries[static_cast<std::size_t>(d)];
      DatasetRecord r;
      r.prompt = qs[rng.uniform_index(qs.size())];
      r.domain = d;
      r.prompt_tokens = estimate_prompt_tokens(r.prompt);
      r.output_tokens = output_tokens;
      tokens[static_cast<std::size_t>(d)] += r.prompt_tokens + r.output_tokens;
      ds.records.push_back(std::move(r));
    }
    const double total = std::accumulate(tokens.begin(), tokens.end(), 0.0);
    for (double& t : tokens) t /= total;
    ds.domain_token_share = tokens;
    ds.score = predictor.score(tokens);
    out.push_back(std::move(ds));
  }
  return out;
}

}  // namespace moesim
