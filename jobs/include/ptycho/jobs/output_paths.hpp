#pragma once
/// Every path a command reads or writes, checked in one place before any
/// file is opened for writing.
///
/// A command lists its inputs (the scan, a job file, a checkpoint to resume,
/// images) and its outputs (result, checkpoint, log, preview folder and the
/// files in it, side results) and calls check(). It refuses, with one line
/// that names the option and the path:
///   - an output that is an input, or another output, also through symbolic
///     or hard links and `..`;
///   - an output that is a folder, or a preview folder that is a file;
///   - an output whose folder is missing and cannot be made, or cannot be
///     written (read-only folder or file system): this is tried by creating
///     and removing a probe file, since permission bits say nothing for root.
/// Temporary files are made beside their targets (io/atomic_file.hpp), so a
/// writable folder covers them too.
#include <string>
#include <vector>

namespace ptycho::jobs {

class PathPlan {
 public:
  /// A file the command reads. `what` names it in messages ("the scan", "--resume").
  void input(const std::string& path, const std::string& what);
  /// A file the command writes (atomically, through a temporary beside it).
  /// `also_input`: the command may also read it first (a checkpoint it resumes from).
  void output(const std::string& path, const std::string& what, bool also_input = false);
  /// A folder the command writes `files` into (created if missing).
  void output_folder(const std::string& path, const std::string& what, const std::vector<std::string>& files);

  /// Throws InputError on the first problem (see the file comment). Creates
  /// nothing that stays: folders it had to make to test them are removed.
  void check() const;

  /// Creates the folders that are to hold the outputs (after check()).
  void create_folders() const;

 private:
  struct Entry {
    std::string path;
    std::string what;
    bool input = false;
    bool output = false;
    bool folder = false;
  };
  std::vector<Entry> m_entries;
};

/// `path` made absolute and normal, with symbolic links of its existing part
/// resolved (two spellings of one file give the same string).
std::string resolved_path(const std::string& path);

/// Whether two paths name the same file: one resolved_path, or, where both
/// exist, the same inode (hard links).
bool same_file(const std::string& a, const std::string& b);

}  // namespace ptycho::jobs
