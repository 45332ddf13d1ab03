#include "ptycho/io/atomic_file.hpp"

#include "ptycho/core/error.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ptycho::io {

std::string temporary_path_for(const std::string& target) {
  static std::atomic<unsigned long> counter{0};
  return target + ".tmp." + std::to_string(static_cast<long>(::getpid())) + "." + std::to_string(counter++);
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
