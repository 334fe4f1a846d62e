#pragma once
#include <cstdint>

namespace moesim {

struct Request {
  std::int64_t id = 0;
  double arrival_s = 0.0;
  int prompt_tokens = 0;
  int output_tokens = 0;
};

}  // namespace moesim
