#pragma once
/// Atomic replacement of output files: write to a temporary file beside the
/// target (same directory, hence same file system), then rename it onto the
/// target. A reader never sees a half-written file, and a failed write never
/// touches an existing one.
#include <string>

namespace ptycho::io {

/// A fresh temporary name for `target`: `target.tmp.<pid>.<counter>`, in the
/// same directory. Unique within the host for this process.
std::string temporary_path_for(const std::string& target);

/// Removes temporary files of `target` (`target.tmp.<pid>.<n>`) left by
/// processes of this host that no longer run (a run killed while writing);
/// returns how many. Files of live processes are kept.
int remove_stale_temporaries(const std::string& target);

/// Owns the temporary file of one atomic write. Write to temp_path(), then
/// commit(); if the object is destroyed without commit() (an exception), the
/// temporary file is removed and the target is left as it was.
class AtomicFile {
 public:
  /// Picks a temporary name for `target`; creates nothing yet.
  explicit AtomicFile(std::string target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& target() const { return m_target; }
  const std::string& temp_path() const { return m_temp; }
  /// Renames the temporary file onto the target; throws InputError if it cannot.
  void commit();
  /// Removes the temporary file (if any) without touching the target.
  void discard() noexcept;

 private:
  std::string m_target;
  std::string m_temp;
  bool m_done = false;
};

}  // namespace ptycho::io
