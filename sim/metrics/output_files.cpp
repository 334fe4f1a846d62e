#include "sim/metrics/output_files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace moesim {

namespace {

[[noreturn]] void fail(const std::string& what, int err) { throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(err))); }

/// The file names that mark a folder as one a run wrote.
bool holds_a_run(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const char* name : {"config.resolved.yaml", "summary.json", "steps.csv"})
    if (std::filesystem::exists(dir / name, ec)) return true;
  return false;
}

void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

int create_exclusive_temporary(const std::filesystem::path& dir, const std::string& prefix, std::filesystem::path& path) {
  std::string name = (dir / (prefix + "XXXXXX")).string();
  std::vector<char> buf(name.begin(), name.end());
  buf.push_back('\0');
  // mkostemp opens with O_CREAT | O_EXCL under a random name: it never follows a symlink planted
  // at the name, nor reuses a file another process made.
  const int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) fail("cannot create a temporary file in " + dir.string(), errno);
  path = buf.data();
  ::fchmod(fd, 0644);
  return fd;
}

void write_file_atomically(const std::filesystem::path& path, const std::string& content) {
  // Readers (and a resumed sweep) see either the old file or the whole new one, never a prefix.
  std::filesystem::path tmp;
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  int fd = -1;
  try {
    fd = create_exclusive_temporary(dir, ".tmp-" + path.filename().string() + "-", tmp);
  } catch (const std::runtime_error&) {
    fail("cannot write " + path.string(), errno);
  }
  auto give_up = [&](int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail("cannot write " + path.string(), err);
  };
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) give_up(n < 0 ? errno : EIO);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) give_up(errno);
  const int closing = fd;
  fd = -1;
  if (::close(closing) != 0) give_up(errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) give_up(errno);
}

StagedRunFolder::StagedRunFolder(std::filesystem::path target) {
  std::error_code ec;
  target = target.lexically_normal();
  if (!target.has_filename() && target.has_parent_path()) target = target.parent_path();
  const std::string given = target.string();
  const std::string name = target.filename().string();
  if (name.empty() || name == "." || name == "..")
    throw std::runtime_error("cannot create output directory " + given +
                             ": a run replaces its output folder whole, so it must be a folder of its own (a new or empty "
                             "subfolder), not the current or a parent folder");
  // A target that is a symlink to a folder: the run replaces the folder it points to.
  if (std::filesystem::is_symlink(target, ec)) target = std::filesystem::weakly_canonical(target, ec);
  target_ = target;
  const std::filesystem::path parent = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(parent, ec);
  if (ec) throw std::runtime_error("cannot create output directory " + given + ": " + ec.message());

  lock_ = std::make_unique<ExclusiveLock>(parent / fmt::format(".{}.lock", name), "output directory " + given);
  auto release = [&]() { lock_.reset(); };
  const auto st = std::filesystem::symlink_status(target_, ec);
  if (std::filesystem::exists(st)) {
    if (!std::filesystem::is_directory(st)) {
      release();
      throw std::runtime_error("cannot create output directory " + given + ": a file that is not a folder is in the way");
    }
    if (!std::filesystem::is_empty(target_, ec) && !holds_a_run(target_)) {
      release();
      throw std::runtime_error("cannot use " + given +
                               " as the output directory: it holds other files and no run's outputs (config.resolved.yaml, "
                               "summary.json); a run replaces its output folder whole, so choose a new or empty folder");
    }
  }
  // Staging folders of runs that were killed (the lock is ours, so none of them is alive).
  for (auto it = std::filesystem::directory_iterator(parent, ec); !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.rfind("." + name + ".staging-", 0) == 0 || f.rfind("." + name + ".old-", 0) == 0) {
      std::error_code rm;
      std::filesystem::remove_all(it->path(), rm);
    }
  }
  std::string tmpl = (parent / fmt::format(".{}.staging-XXXXXX", name)).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    const int err = errno;
    release();
    fail("cannot create output directory " + given, err);
  }
  staging_ = buf.data();
  ::chmod(staging_.c_str(), 0755);
}

void StagedRunFolder::commit() {
  if (committed_) throw std::logic_error("run folder committed twice");
  const std::filesystem::path parent = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(target_, ec))) {
    // One atomic step: readers see the old complete folder or the new one.
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) == 0) {
      std::filesystem::remove_all(staging_, ec);  // now the previous result
    } else {
      // File systems without RENAME_EXCHANGE: move the old one aside, then the new one in.
      const std::filesystem::path old = parent / fmt::format(".{}.old-{}", target_.filename().string(), staging_.filename().string());
      if (::rename(target_.c_str(), old.c_str()) != 0) fail("cannot replace " + target_.string(), errno);
      if (::rename(staging_.c_str(), target_.c_str()) != 0) {
        const int err = errno;
        (void)::rename(old.c_str(), target_.c_str());
        fail("cannot replace " + target_.string(), err);
      }
      std::filesystem::remove_all(old, ec);
    }
  } else if (::rename(staging_.c_str(), target_.c_str()) != 0) {
    fail("cannot create output directory " + target_.string(), errno);
  }
  sync_directory(parent);
  committed_ = true;
}

StagedRunFolder::~StagedRunFolder() {
  std::error_code ec;
  if (!committed_ && !staging_.empty()) std::filesystem::remove_all(staging_, ec);
}

ExclusiveLock::ExclusiveLock(const std::filesystem::path& lock, const std::string& what) {
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create " + what + " (its lock " + lock.string() + ")", errno);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char pid[32] = {0};
    (void)::pread(fd_, pid, sizeof pid - 1, 0);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw std::runtime_error(fmt::format("another moesim run (pid {}) is writing {}; wait for it to finish or choose another --out",
                                           std::strtol(pid, nullptr, 10), what));
    fail("cannot lock " + what, err);
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) (void)::pwrite(fd_, me.data(), me.size(), 0);
}

ExclusiveLock::~ExclusiveLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace moesim
