#pragma once
// Opening an input file: only a regular file is read. A folder, a FIFO or a device in its place is
// an InputError naming the path and what was expected, not a stream that throws (std::ifstream
// opens a folder and fails on the first read) or never ends.
#include <filesystem>
#include <fstream>
#include <string>

#include "models/common/input_error.hpp"

namespace moesim {

/// An open stream on `path`; `what` names the input in the message ("domain corpus", ...).
/// Throws InputError when `path` is missing, not a regular file, or cannot be opened.
[[nodiscard]] inline std::ifstream open_regular_file(const std::filesystem::path& path, const std::string& what) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) throw InputError({{path.string(), 0, "", "cannot open " + what + ": no such file"}});
  if (std::filesystem::is_directory(status))
    throw InputError({{path.string(), 0, "", "is a folder, but a " + what + " is a file"}});
  if (!std::filesystem::is_regular_file(status))
    throw InputError({{path.string(), 0, "", "is not a regular file; a " + what + " is read from a regular file"}});
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError({{path.string(), 0, "", "cannot open " + what}});
  return in;
}

}  // namespace moesim
