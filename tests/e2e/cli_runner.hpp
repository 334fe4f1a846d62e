#pragma once
// Runs the moesim binary as a user would, from the source tree, and captures what it printed.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <sys/wait.h>

namespace moesim::test {

inline const std::filesystem::path kSourceDir = MOESIM_SOURCE_DIR;
inline const std::filesystem::path kBinary = MOESIM_BINARY;

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// A fresh scratch directory under the build tree, unique per test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("moesim-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Runs `moesim <args>` in the source directory.
inline CliResult run_cli(const std::string& args, const std::string& tag = "cli") {
  const auto dir = scratch_dir("io-" + tag);
  const std::string cmd = "cd '" + kSourceDir.string() + "' && MOESIM_HOME='" + kSourceDir.string() + "' '" +
                          kBinary.string() + "' " + args + " > '" + (dir / "out").string() + "' 2> '" +
                          (dir / "err").string() + "'";
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(dir / "out");
  r.err = read_text(dir / "err");
  std::filesystem::remove_all(dir);
  return r;
}

/// A CSV file written by moesim (no quoted commas in the columns read) as rows of column -> text.
inline std::vector<std::map<std::string, std::string>> read_rows(const std::filesystem::path& p) {
  std::stringstream in(read_text(p));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  std::stringstream hs(line);
  for (std::string x; std::getline(hs, x, ',');) header.push_back(x);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::map<std::string, std::string> row;
    std::stringstream ls(line);
    std::size_t i = 0;
    for (std::string x; std::getline(ls, x, ',') && i < header.size(); ++i) row[header[i]] = x;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace moesim::test
