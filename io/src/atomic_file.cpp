#include "ptycho/io/atomic_file.hpp"

#include "ptycho/core/error.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace ptycho::io {

std::string temporary_path_for(const std::string& target) {
  static std::atomic<unsigned long> counter{0};
  return target + ".tmp." + std::to_string(static_cast<long>(::getpid())) + "." + std::to_string(counter++);
}

int remove_stale_temporaries(const std::string& target) {
  namespace fs = std::filesystem;
  const fs::path t(target);
  const fs::path dir = t.parent_path().empty() ? fs::path(".") : t.parent_path();
  const std::string prefix = t.filename().string() + ".tmp.";
  std::error_code ec;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    // .tmp.<pid>.<counter>
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || dot == 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(rest.substr(0, dot).c_str(), &end, 10);
    if (!end || *end != '\0' || pid <= 0) continue;
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    if (fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

AtomicFile::AtomicFile(std::string target) : m_target(std::move(target)), m_temp(temporary_path_for(m_target)) {}

AtomicFile::~AtomicFile() {
  if (!m_done) discard();
}

void AtomicFile::commit() {
  PTYCHO_THROW_IF(m_done, "AtomicFile: " << m_target << " was already committed or discarded");
  if (std::rename(m_temp.c_str(), m_target.c_str()) != 0) {
    const int err = errno;
    discard();
    PTYCHO_INPUT_ERROR_IF(true, m_target << ": cannot move the finished file into place: " << std::strerror(err));
  }
  m_done = true;
}

void AtomicFile::discard() noexcept {
  std::remove(m_temp.c_str());
  m_done = true;
}

}  // namespace ptycho::io
