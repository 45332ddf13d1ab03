#include "ptycho/core/error.hpp"

#include <cstring>

namespace ptycho::detail {

void throw_error(const std::string& msg, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  std::ostringstream os;
  os << msg << " [" << (base ? base + 1 : file) << ":" << line << "]";
  throw Error(os.str());
}

}  // namespace ptycho::detail
