// libFuzzer driver of one target of targets.hpp, chosen at build time with
// -DMOESIM_FUZZ_TARGET=<name>. An exception escaping the target aborts, which libFuzzer reports
// as a crash with the input that caused it.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  moesim::fuzz::MOESIM_FUZZ_TARGET(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
