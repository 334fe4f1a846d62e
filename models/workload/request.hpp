#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace moesim {

struct Request {
  std::int64_t id = 0;
  double arrival_s = 0.0;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int domain = -1;  ///< index into the domain corpus; -1 when the request has none
  std::int64_t prefix_id = -1;  ///< requests with the same id share their first prefix_tokens tokens
  int prefix_tokens = 0;
  /// Chained hashes of the prompt's blocks of hash_block_tokens tokens, as a trace records them
  /// (Mooncake, Bailian): hash k names the whole prompt up to the end of block k, so two requests
  /// whose hash lists share a leading run share that prefix. Null when the request has none.
  std::shared_ptr<const std::vector<std::int64_t>> block_hashes{};
  int hash_block_tokens = 0;
  std::int64_t session = -1;  ///< conversation id (multi-turn traces); -1: none
  std::int64_t parent = -1;   ///< the request id of the previous turn, sent before this one; -1: none
};

}  // namespace moesim
