#pragma once
// An interconnect as read from a catalog card (models/network/cards/*.yaml).
#include <string>

namespace moesim {

struct InterconnectSpec {
  std::string name;
  std::string display_name;
  std::string kind;             ///< nvlink | xgmi | infiniband | roce
  std::string scope;            ///< intra_node | inter_node
  double bw_gbytes_per_s = 0;   ///< per GPU, per direction
  double latency_us = 0;        ///< one-way, GPU to GPU, small message
  double achievable_fraction = 1.0;
  double collective_latency_us = 0;  ///< fixed software cost of one collective call

  [[nodiscard]] double effective_bytes_per_s() const { return bw_gbytes_per_s * 1e9 * achievable_fraction; }
};

}  // namespace moesim
