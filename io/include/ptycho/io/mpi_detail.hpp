#pragma once
// MPI helpers of io/ and jobs/: MPI status checks, agreement on errors, one
// temporary file name for a collective write, and a byte packer for
// broadcasting small structures.
#include "ptycho/core/error.hpp"
#include "ptycho/io/atomic_file.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <vector>

namespace ptycho::io::detail {

/// Throws ptycho::Error naming `what` unless `code` is MPI_SUCCESS.
inline void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  PTYCHO_THROW_IF(true, what << " failed: " << text);
}

inline int comm_rank(MPI_Comm comm) {
  int r = 0;
  check_mpi(MPI_Comm_rank(comm, &r), "MPI_Comm_rank");
  return r;
}

inline int comm_size(MPI_Comm comm) {
  int s = 1;
  check_mpi(MPI_Comm_size(comm, &s), "MPI_Comm_size");
  return s;
}

/// Broadcasts a byte buffer of any size from `root` (resized on the receivers).
inline void broadcast_bytes(MPI_Comm comm, std::vector<char>& bytes, int root) {
  long long n = static_cast<long long>(bytes.size());
  check_mpi(MPI_Bcast(&n, 1, MPI_LONG_LONG, root, comm), "MPI_Bcast");
  bytes.resize(static_cast<size_t>(n));
  constexpr long long kChunk = 1LL << 30;
  for (long long off = 0; off < n; off += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - off));
    check_mpi(MPI_Bcast(bytes.data() + off, count, MPI_BYTE, root, comm), "MPI_Bcast");
  }
}

/// One temporary name for `path` (temporary_path_for) on every rank of
/// `comm`, chosen by rank 0: the name a collective atomic write creates.
inline std::string shared_temporary_path(MPI_Comm comm, const std::string& path) {
  std::vector<char> bytes;
  if (comm_rank(comm) == 0) {
    const std::string temp = temporary_path_for(path);
    bytes.assign(temp.begin(), temp.end());
  }
  broadcast_bytes(comm, bytes, 0);
  return std::string(bytes.begin(), bytes.end());
}

/// Runs `step` on every rank of `comm`, then makes the ranks agree: if any
/// rank threw, every rank throws the error of the lowest failing rank (an
/// InputError stays an InputError), so no rank goes on into a collective
/// call that the others will never make.
template <class Step>
void collectively(MPI_Comm comm, Step&& step) {
  int kind = 0;  // 0 ok, 1 input error, 2 other error
  std::string message;
  try {
    step();
  } catch (const InputError& e) {
    kind = 1;
    message = e.what();
  } catch (const std::exception& e) {
    kind = 2;
    message = e.what();
  } catch (...) {
    kind = 2;
    message = "an unknown exception";
  }
  const int rank = comm_rank(comm);
  const int size = comm_size(comm);
  int mine = kind ? rank : size;
  int first = size;
  check_mpi(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (first == size) return;
  check_mpi(MPI_Bcast(&kind, 1, MPI_INT, first, comm), "MPI_Bcast");
  std::vector<char> bytes(message.begin(), message.end());
  broadcast_bytes(comm, bytes, first);
  message.assign(bytes.begin(), bytes.end());
  if (kind == 1) throw InputError(message);
  throw Error(message);
}

/// Appends trivially copyable values, strings and vectors to a byte buffer.
class BytePacker {
 public:
  template <class T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const char* p = reinterpret_cast<const char*>(&v);
    m_bytes.insert(m_bytes.end(), p, p + sizeof(T));
  }
  void put(const std::string& s) {
    put(static_cast<long long>(s.size()));
    m_bytes.insert(m_bytes.end(), s.begin(), s.end());
  }
  template <class T>
  void put_array(const T* data, size_t n) {
    static_assert(std::is_trivially_copyable_v<T>);
    put(static_cast<long long>(n));
    const char* p = reinterpret_cast<const char*>(data);
    m_bytes.insert(m_bytes.end(), p, p + n * sizeof(T));
  }
  std::vector<char>& bytes() { return m_bytes; }

 private:
  std::vector<char> m_bytes;
};

/// Reads back what BytePacker wrote, in the same order.
class ByteUnpacker {
 public:
  explicit ByteUnpacker(const std::vector<char>& bytes) : m_bytes(bytes) {}
  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    take(&v, sizeof(T));
    return v;
  }
  std::string get_string() {
    const auto n = static_cast<size_t>(get<long long>());
    std::string s(n, '\0');
    take(s.data(), n);
    return s;
  }
  /// Reads an array of `expected` elements into `data` (throws if the count differs).
  template <class T>
  void get_array(T* data, size_t expected) {
    const auto n = static_cast<size_t>(get<long long>());
    PTYCHO_THROW_IF(n != expected, "ByteUnpacker: expected " << expected << " elements, got " << n);
    take(data, n * sizeof(T));
  }
  size_t peek_count() const {
    long long n = 0;
    PTYCHO_THROW_IF(m_pos + sizeof(n) > m_bytes.size(), "ByteUnpacker: buffer too short");
    std::memcpy(&n, m_bytes.data() + m_pos, sizeof(n));
    return static_cast<size_t>(n);
  }

 private:
  void take(void* dst, size_t n) {
    PTYCHO_THROW_IF(m_pos + n > m_bytes.size(), "ByteUnpacker: buffer too short");
    if (n) std::memcpy(dst, m_bytes.data() + m_pos, n);
    m_pos += n;
  }
  const std::vector<char>& m_bytes;
  size_t m_pos = 0;
};

}  // namespace ptycho::io::detail
