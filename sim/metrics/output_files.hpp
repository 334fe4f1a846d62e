#pragma once
// Writing output files so that a reader never sees a mixture or a prefix of them.
//
// write_file_atomically: one file through a temporary beside it (created exclusively, never
// through a symlink, under a random name), flushed to disk and renamed into place.
//
// StagedRunFolder: a whole run folder. The run holds an exclusive lock on its output folder
// (`<parent>/.<name>.lock`, flock) for its whole life, so a second run into the same --out fails
// at once instead of mixing its files with the first's. Its outputs go to a fresh staging folder
// beside the target (`<parent>/.<name>.staging-XXXXXX`, made by mkdtemp); commit() swaps it into
// place (renameat2 RENAME_EXCHANGE when the target exists) and removes the previous result. A run
// that fails at any point before commit() leaves the previous complete result untouched; the
// staging folders of killed runs are removed by the next run that takes the lock.
//
// A target that exists must be a run folder (holding config.resolved.yaml, summary.json or
// steps.csv) or empty: the folder is replaced whole, and a folder of other files is not moesim's
// to replace.
#include <filesystem>
#include <memory>
#include <string>

namespace moesim {

/// Writes `content` to `path` through an exclusive temporary in the same directory and a rename.
/// Throws std::runtime_error naming the file and the system's reason.
void write_file_atomically(const std::filesystem::path& path, const std::string& content);

/// Creates a new file `dir/<prefix>XXXXXX` exclusively (O_EXCL | O_NOFOLLOW, mode 0644); returns
/// its descriptor and sets `path`. Throws std::runtime_error.
[[nodiscard]] int create_exclusive_temporary(const std::filesystem::path& dir, const std::string& prefix, std::filesystem::path& path);

/// An exclusive flock on `lock_file` (created without following a symlink) for the object's
/// life; the file holds the owner's pid. Throws std::runtime_error naming `what` and the pid of
/// the holder when another process has it.
class ExclusiveLock {
 public:
  ExclusiveLock(const std::filesystem::path& lock_file, const std::string& what);
  ~ExclusiveLock();
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;

 private:
  int fd_ = -1;
};

class StagedRunFolder {
 public:
  /// Takes the lock of `target` and makes the staging folder; throws std::runtime_error (another
  /// run holds the lock, the target is in the way, the parent cannot be written).
  explicit StagedRunFolder(std::filesystem::path target);
  ~StagedRunFolder();
  StagedRunFolder(const StagedRunFolder&) = delete;
  StagedRunFolder& operator=(const StagedRunFolder&) = delete;

  /// Where the outputs go until commit().
  [[nodiscard]] const std::filesystem::path& staging() const { return staging_; }
  [[nodiscard]] const std::filesystem::path& target() const { return target_; }
  /// Moves the staged outputs into place as one step; the previous result goes away after.
  void commit();

 private:
  std::filesystem::path target_;
  std::filesystem::path staging_;
  std::unique_ptr<ExclusiveLock> lock_;
  bool committed_ = false;
};

}  // namespace moesim
