#pragma once
// Parameter sweeps: a scenario's `sweep` section expands into points, each a set of --set
// overrides of the base scenario, run each in its own process (SimGrid holds one engine per
// process) and its own run directory.
//
//   sweep:
//     grid:                      # cartesian product over dotted keys
//       parallel.mode: [tp, ep]
//       workload.dataset: {glob: "datasets/imbalance/*.jsonl"}   # every matching file, sorted
//     zip:                       # lists advanced together (all the same length)
//       serving.max_num_seqs: [16, 32, 64]
//       serving.max_num_batched_tokens: [2048, 4096, 8192]
//     seeds: 3                   # repeat every point with seed, seed+1, seed+2
//
// Points are numbered in a fixed order (grid keys in file order, first key slowest; then zip;
// then seeds), so --shard i/N and resumed sweeps agree on what point k is. A key is swept once:
// in grid or in zip, not both, not also given by the sweep's --set, and not `seed` with seeds > 1.
//
// Resume: a point is skipped only when its done.json names the fingerprint of the configuration it
// would run now and its summary.json is a complete summary; otherwise it runs again (after an
// edit of the base scenario, a card or a dataset, another --set, a corrupt or empty summary).
// sweep.csv lists such points as "stale" or "invalid" instead of merging their numbers.
//
// Interrupts: SIGINT, SIGTERM and SIGHUP stop the sweep: no new point starts, the running ones
// are terminated (and left without a marker, so a resume runs them again), and the sweep exits
// with 128 + the signal. A point's process dies with the sweep even if the sweep is killed
// outright (PR_SET_PDEATHSIG).
//
// Layout of a sweep directory:
//   point-0000/run/...           the run's outputs (summary.json written last)
//   point-0000/done.json         completion marker: overrides, fingerprint, status ok, wall seconds
//   point-0000/failed.json       the error of a failed point (the sweep goes on)
//   sweep.csv                    one row per point: swept values, status, wall_s, error, metrics
#include <filesystem>
#include <string>
#include <vector>

#include "sim/config/catalog.hpp"

namespace moesim {

/// The most points one sweep may expand to: every point is validated (datasets loaded) before
/// anything runs and gets its own directory, so larger studies are split into several sweeps.
inline constexpr int kMaxSweepPoints = 10'000;

struct SweepPoint {
  int index = 0;
  std::vector<std::pair<std::string, std::string>> overrides;  ///< key path, value as YAML text
  /// scenario_fingerprint of the point's resolved scenario (base file, the sweep's --set, the
  /// point's overrides, cards and input files): a completed point is reused only if it matches.
  std::string fingerprint;

  [[nodiscard]] std::string dir_name() const;
  [[nodiscard]] std::vector<std::string> set_args() const;
};

struct SweepSpec {
  std::filesystem::path scenario;
  std::vector<std::string> keys;  ///< swept keys in column order
  std::vector<SweepPoint> points;
};

/// Reads the sweep section and expands it; checks every point by loading it (unknown keys, bad
/// values, empty globs are errors before anything runs). Throws ConfigError.
[[nodiscard]] SweepSpec load_sweep(const std::filesystem::path& scenario, const std::vector<std::string>& base_sets,
                                   const Catalog& catalog);

struct SweepOptions {
  std::filesystem::path out;
  int jobs = 1;
  int shard_index = 1;  ///< 1-based
  int shard_count = 1;
  std::vector<std::string> base_sets;    ///< --set given on the sweep command line, before the point's
  std::vector<std::string> extra_args;   ///< passed to every run (--catalog, --cfg=...)
  std::filesystem::path self_exe;
  /// When set, a point runs in a fork of this process that calls `entry` with the point's command
  /// line (argv[0] = self_exe), instead of a fresh exec of self_exe: the same isolation (its own
  /// process, killed or crashed alone) without loading the program and its libraries per point.
  int (*entry)(int argc, char** argv) = nullptr;
};

/// Parses "i/N" (1 <= i <= N). Throws ConfigError naming the bad spec.
void parse_shard(const std::string& spec, SweepOptions& options);

struct SweepOutcome {
  int failed = 0;       ///< points that ran and failed
  int interrupted = 0;  ///< the signal that stopped the sweep (SIGINT, SIGTERM, SIGHUP); 0 if none
};

/// Runs the points of this shard that are not complete (see Resume above).
SweepOutcome run_sweep(const SweepSpec& spec, const SweepOptions& options);

/// Writes sweep.csv (or `file_name`) from the point directories found under `out`, for the points
/// of shard i of N (all points by default); returns the number of points with a result.
int write_sweep_csv(const SweepSpec& spec, const std::filesystem::path& out, const std::string& file_name = "sweep.csv",
                    int shard_index = 1, int shard_count = 1);

}  // namespace moesim
