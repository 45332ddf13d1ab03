#include "ptycho/jobs/output_paths.hpp"

#include "ptycho/core/error.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>

namespace ptycho::jobs {

namespace fs = std::filesystem;

std::string resolved_path(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  if (ec) return fs::path(path).lexically_normal().string();
  const fs::path canonical = fs::weakly_canonical(p, ec);
  return (ec ? p : canonical).lexically_normal().string();
}

void PathPlan::input(const std::string& path, const std::string& what) {
  if (!path.empty()) m_entries.push_back({path, what, true, false, false});
}

void PathPlan::output(const std::string& path, const std::string& what, bool also_input) {
  if (!path.empty()) m_entries.push_back({path, what, also_input, true, false});
}

void PathPlan::output_folder(const std::string& path, const std::string& what, const std::vector<std::string>& files) {
  if (path.empty()) return;
  m_entries.push_back({path, what, false, true, true});
  for (const auto& f : files) m_entries.push_back({(fs::path(path) / f).string(), what, false, true, false});
}

bool same_file(const std::string& a, const std::string& b) {
  if (resolved_path(a) == resolved_path(b)) return true;
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec) && !ec;
}

namespace {

/// The folder that would hold `path` (its parent, "." for a bare name).
fs::path folder_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

/// Tries to create and remove a file in `folder` (which exists); "" or why not.
std::string try_write_in(const fs::path& folder) {
  std::string name = (folder / ".ptycho-write-test.XXXXXX").string();
  const int fd = ::mkstemp(name.data());
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  ::unlink(name.c_str());
  return "";
}

/// Checks that files can be written in `folder`, making it (and removing
/// what was made) if it does not exist; throws InputError naming `what`.
void check_writable_folder(const fs::path& folder, const std::string& what, const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(folder, ec)) {
    const std::string why = try_write_in(folder);
    PTYCHO_INPUT_ERROR_IF(!why.empty(), what << ": cannot write " << path << ": its folder " << folder.string()
                                             << " is not writable (" << why << ")");
    return;
  }
  // The nearest existing ancestor must be a folder we can make folders in.
  fs::path existing = fs::absolute(folder, ec);
  std::vector<fs::path> missing;
  while (!existing.empty() && !fs::exists(existing, ec)) {
    missing.push_back(existing);
    if (existing == existing.parent_path()) break;
    existing = existing.parent_path();
  }
  PTYCHO_INPUT_ERROR_IF(!fs::is_directory(existing, ec),
                        what << ": cannot write " << path << ": " << existing.string() << " is not a folder");
  fs::create_directories(folder, ec);
  std::string why = ec ? ec.message() : try_write_in(folder);
  for (const fs::path& made : missing) fs::remove(made, ec);  // deepest first; only what this made
  PTYCHO_INPUT_ERROR_IF(!why.empty(), what << ": cannot write " << path << ": cannot make its folder "
                                           << folder.string() << " (" << why << ")");
}

}  // namespace

void PathPlan::check() const {
  // Outputs against inputs and against each other.
  for (size_t i = 0; i < m_entries.size(); ++i) {
    const Entry& a = m_entries[i];
    if (!a.output) continue;
    for (size_t j = 0; j < m_entries.size(); ++j) {
      if (i == j) continue;
      const Entry& b = m_entries[j];
      if (b.output && j < i) continue;  // each pair of outputs once
      if (!same_file(a.path, b.path)) continue;
      if (b.input && !b.output) {
        PTYCHO_INPUT_ERROR_IF(true, a.what << ": " << a.path << " is " << b.what
                                           << ", an input: writing it would destroy it; choose another path");
      }
      PTYCHO_INPUT_ERROR_IF(true, a.what << ": " << a.path << " is also " << b.what << " (" << b.path
                                         << "): one would overwrite the other; choose another path");
    }
  }
  // Each output: the right kind of thing, in a folder that can be written.
  for (const Entry& e : m_entries) {
    if (!e.output) continue;
    std::error_code ec;
    const fs::file_status st = fs::status(e.path, ec);
    if (e.folder) {
      PTYCHO_INPUT_ERROR_IF(fs::exists(st) && !fs::is_directory(st),
                            e.what << ": " << e.path << " exists and is not a folder");
      check_writable_folder(fs::path(e.path), e.what, e.path);
      continue;
    }
    PTYCHO_INPUT_ERROR_IF(fs::is_directory(st), e.what << ": " << e.path << " is a folder, expected a file name");
    PTYCHO_INPUT_ERROR_IF(fs::exists(st) && !fs::is_regular_file(st),
                          e.what << ": " << e.path << " exists and is not a regular file");
    check_writable_folder(folder_of(e.path), e.what, e.path);
  }
}

void PathPlan::create_folders() const {
  for (const Entry& e : m_entries) {
    if (!e.output) continue;
    const fs::path folder = e.folder ? fs::path(e.path) : folder_of(e.path);
    std::error_code ec;
    fs::create_directories(folder, ec);
    PTYCHO_INPUT_ERROR_IF(ec && !fs::is_directory(folder),
                          e.what << ": cannot make the folder " << folder.string() << ": " << ec.message());
  }
}

}  // namespace ptycho::jobs
