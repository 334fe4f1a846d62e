#pragma once
// Synthetic datasets of varying expert-load imbalance, from the domain corpus.
//
// Dataset i (1-based) uses strategy (i - 1) mod 6:
//   single_domain : every prompt from one domain
//   two_domains   : a random mix of two domains
//   three_domains : a random mix of three domains
//   zipf_domains  : domains weighted 1/rank^s, s uniform in [0.5, 2.5], random ranking
//   uniform_mix   : every domain equally likely
//   bursts        : runs of 5-10 prompts from one domain, the domain redrawn per run
// Each prompt is a corpus query of the drawn domain; prompt_tokens is estimated from its text
// (estimate_prompt_tokens) and output_tokens is fixed.
//
// Score (the predicted imbalance): the expected aggregated CV of expert load for the dataset's
// token mix under the domain_affinity routing model of a model card. Per MoE layer l the expected
// load share of expert e is Σ_d w_d · P(e in top-k | l, d) / k, with w_d the dataset's share of
// tokens (prompt + output) from domain d; the score is the CV of that vector over experts,
// averaged over layers — the value cv_aggregated converges to on a long run.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/llm/model_spec.hpp"
#include "models/workload/dataset.hpp"

namespace moesim {

struct GeneratedDataset {
  int index = 0;
  std::string strategy;
  double score = 0;
  std::vector<DatasetRecord> records;
  std::vector<double> domain_token_share;  ///< per corpus domain

  [[nodiscard]] std::string file_name() const;  ///< {index:03d}_{score:.4f}.jsonl
  [[nodiscard]] std::string to_jsonl(const DomainCorpus& corpus) const;
};

/// Expected aggregated CV (see header) of a token mix over the corpus domains.
class ImbalancePredictor {
 public:
  ImbalancePredictor(const ModelSpec& model, int num_domains, int samples = 4000);
  [[nodiscard]] double score(const std::vector<double>& domain_token_share);

 private:
  const std::vector<double>& inclusion(int layer, int domain);
  ModelSpec model_;
  int num_domains_, samples_;
  std::vector<std::vector<double>> cache_;  ///< [layer * domains + domain]
};

[[nodiscard]] std::vector<GeneratedDataset> generate_datasets(const DomainCorpus& corpus, const ModelSpec& model, int count,
                                                              int prompts, int output_tokens, std::uint64_t seed);

}  // namespace moesim
