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
  /// Positions [0, cacheable_tokens) of the sequence (prompt and output) that block_hashes name:
  /// a turn whose next turn resends its prompt and answer registers its output blocks too, so the
  /// next turn can hit them. 0: the prompt's.
  int cacheable_tokens = 0;
  std::int64_t session = -1;  ///< conversation id (multi-turn traces); -1: none
  /// The request id of the previous turn of the session; -1: none. With `think_s` >= 0 the request
  /// is sent think_s after that turn finishes (and, unless the run times turns from their parents
  /// alone, no earlier than arrival_s).
  std::int64_t parent = -1;
  double think_s = -1;
};

}  // namespace moesim
