#pragma once
// Random scenarios over the whole configuration space, for property tests: every model and GPU
// card, both modes, data-parallel and disaggregated instances, serving limits tight enough to
// preempt, every router, arrival process, length distribution, policy, network setting, power cap
// and thermal start, and small synthetic datasets with shared prefixes. A draw is a YAML text the
// scenario loader reads as a user's file; most draws are valid, the loader refuses the rest.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sim/config/catalog.hpp"
#include "sim/config/scenario.hpp"

namespace moesim::property {

/// A drawn scenario: the YAML text and, when it reads a dataset, the dataset's JSONL text (the
/// YAML names it as `dataset_path`).
struct DrawnScenario {
  std::string yaml;
  std::string dataset_jsonl;
  /// > 0: the draw wants KV-cache room for about this many tokens per GPU and no more (memory
  /// pressure that preempts); set_kv_room fits activation_reserve_gb to it once loaded.
  std::int64_t kv_room_tokens = 0;
};

/// The YAML with activation_reserve_gb chosen so that the loaded scenario's GPUs have room for
/// `tokens` of KV cache past their weights.
[[nodiscard]] std::string set_kv_room(const std::string& yaml, const Scenario& loaded, std::int64_t tokens);

/// How large drawn scenarios may get: the CI smoke keeps them small; a campaign may go further.
struct DrawLimits {
  int max_requests = 48;
  int max_gpus = 32;
  int max_output_tokens = 256;
  int max_prompt_tokens = 4096;
};

class ScenarioGenerator {
 public:
  ScenarioGenerator(const Catalog& catalog, DrawLimits limits);

  /// The draw of (campaign seed, index): the same pair always gives the same text.
  [[nodiscard]] DrawnScenario draw(std::uint64_t seed, std::uint64_t index, const std::filesystem::path& dataset_path) const;

 private:
  struct ModelFacts {
    std::string name;
    int num_layers = 0, num_dense_layers = 0, num_experts = 0;
    double weights_gb = 0;
  };
  struct GpuFacts {
    std::string name;
    double hbm_gb = 0, tdp_w = 0, min_cap_w = 0;
  };
  std::vector<ModelFacts> models_;
  std::vector<GpuFacts> gpus_;
  std::vector<std::string> domains_;
  DrawLimits limits_;
};

}  // namespace moesim::property
