#pragma once
#include <cstdint>

namespace moesim {

struct Request {
  std::int64_t id = 0;
  double arrival_s = 0.0;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int domain = -1;  ///< index into the domain corpus; -1 when the request has none
  std::int64_t prefix_id = -1;  ///< requests with the same id share their first prefix_tokens tokens
  int prefix_tokens = 0;
};

}  // namespace moesim
