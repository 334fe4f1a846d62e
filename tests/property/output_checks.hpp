#pragma once
// What every finished run's output folder must satisfy, read back from its files as a user's
// script would: requests in = completed + rejected, every prompt and output token accounted for
// in requests.csv and steps.csv, energy = the sum over GPUs = the integral of gpus.csv's power,
// times in order, and no missing number where a result exists.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sim/config/scenario.hpp"

namespace moesim::property {

/// The problems found in `dir` (empty when the outputs are consistent).
[[nodiscard]] std::vector<std::string> check_run_outputs(const std::filesystem::path& dir, const Scenario& sc);

/// Every regular file under `dir`, by path relative to it, with its bytes.
[[nodiscard]] std::map<std::string, std::string> folder_contents(const std::filesystem::path& dir);

/// The first difference between two folder contents ("" when identical).
[[nodiscard]] std::string first_difference(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b);

}  // namespace moesim::property
