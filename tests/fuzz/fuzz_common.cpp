#include "fuzz_target.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ptycho::fuzz {

Outcome last_outcome = Outcome::accepted;

std::string scratch_path(const std::string& name) {
  const char* dir = std::getenv("PTYCHO_FUZZ_TMPDIR");
  const std::filesystem::path base = dir && *dir ? std::filesystem::path(dir) : std::filesystem::temp_directory_path();
  return (base / ("ptycho-fuzz-" + std::to_string(::getpid()) + "-" + name)).string();
}

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

}  // namespace ptycho::fuzz
