#include "fft_wisdom.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace ptycho {

namespace {

/// The host name, as gethostname() gives it ("unknown-host" if it fails).
std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf;
}

/// The CPU model from /proc/cpuinfo: the first "model name" (x86), else the
/// first of the keys other architectures use; "unknown-cpu" if none.
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::map<std::string, std::string> first;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto trim = [](std::string s) {
      const auto b = s.find_first_not_of(" \t");
      const auto e = s.find_last_not_of(" \t");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    const std::string key = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
    if (!key.empty() && !value.empty() && !first.count(key)) first[key] = value;
  }
  for (const char* key : {"model name", "cpu model", "cpu", "Hardware", "CPU part"}) {
    const auto it = first.find(key);
    if (it != first.end()) return it->second;
  }
  return "unknown-cpu";
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// A file-name-safe version of `s`: letters, digits, '.', '-' and '_' kept,
/// anything else '_', at most `max` characters.
std::string file_safe(const std::string& s, std::size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) break;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out;
}

/// What identifies the machine and the FFTW build: the host, the CPU model
/// and FFTW's version string (which names its SIMD codelets).
struct MachineKey {
  std::string host, cpu, fftw;
  std::string hash_hex;
};

const MachineKey& machine_key() {
  static const MachineKey key = [] {
    MachineKey k{host_name(), cpu_model(), fftwf_version, ""};
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(fnv1a(k.host + '\n' + k.cpu + '\n' + k.fftw)));
    k.hash_hex = hex;
    return k;
  }();
  return key;
}

/// The first line of a wisdom file: what it was measured for. A file whose
/// first line differs is foreign (another machine, FFTW, size) and ignored.
std::string wisdom_header(int m) {
  const MachineKey& k = machine_key();
  std::ostringstream os;
  os << "# ptycho FFTW wisdom v1; precision single; frame " << m << "x" << m << "; host " << k.host << "; cpu "
     << k.cpu << "; " << k.fftw;
  std::string h = os.str();
  for (char& c : h)
    if (c == '\n' || c == '\r') c = ' ';
  return h + "\n";
}

/// The wisdom in the file at `path` after its header, if the header is this
/// machine's for frame size m; nothing if the file is missing, unreadable,
/// foreign or implausible.
std::optional<std::string> read_wisdom(const std::string& path, int m) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream os;
  os << in.rdbuf();
  const std::string text = os.str();
  const std::string header = wisdom_header(m);
  if (text.size() > (std::size_t(16) << 20) || text.compare(0, header.size(), header) != 0) return std::nullopt;
  std::string body = text.substr(header.size());
  if (body.find('\0') != std::string::npos) return std::nullopt;
  return body;
}

/// Writes header + wisdom to `path` atomically (a temporary file beside it,
/// flushed to disk, then renamed over it). Returns "" or what went wrong.
std::string write_wisdom(const std::string& path, int m, const std::string& wisdom) {
  static std::atomic<unsigned long> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(long(::getpid())) + "." + std::to_string(counter++);
  const std::string text = wisdom_header(m) + wisdom;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return tmp + ": " + std::strerror(errno);
  std::size_t done = 0;
  std::string err;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = tmp + ": " + std::strerror(errno);
      break;
    }
    done += std::size_t(n);
  }
  if (err.empty() && ::fsync(fd) != 0) err = tmp + ": " + std::strerror(errno);
  if (::close(fd) != 0 && err.empty()) err = tmp + ": " + std::strerror(errno);
  if (err.empty() && std::rename(tmp.c_str(), path.c_str()) != 0) err = path + ": " + std::strerror(errno);
  if (!err.empty()) ::unlink(tmp.c_str());
  return err;
}

/// An exclusive flock on a lock file, held while alive.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    m_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (m_fd < 0) {
      m_error = path + ": " + std::strerror(errno);
      return;
    }
    int rc;
    do rc = ::flock(m_fd, LOCK_EX);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      m_error = path + ": cannot lock: " + std::strerror(errno);
      ::close(m_fd);
      m_fd = -1;
    }
  }
  ~FileLock() {
    if (m_fd >= 0) {
      ::flock(m_fd, LOCK_UN);
      ::close(m_fd);
    }
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool locked() const { return m_fd >= 0; }
  const std::string& error() const { return m_error; }

 private:
  int m_fd = -1;
  std::string m_error;
};

/// One line on stderr, the first time only (per process).
void notice_once(const std::string& what) {
  static bool said = false;
  if (said) return;
  said = true;
  std::fprintf(stderr,
               "ptycho: %s; FFT plans use FFTW_ESTIMATE (repeatable, slower; set PTYCHO_FFTW_WISDOM_DIR to a "
               "writable folder)\n",
               what.c_str());
}

void destroy(fftwf_plan& p) {
  if (p) fftwf_destroy_plan(p);
  p = nullptr;
}

fftwf_plan plan_2d(int m, fftwf_complex* scratch, int sign, unsigned flags) {
  return fftwf_plan_dft_2d(m, m, scratch, scratch, sign, flags);
}

/// Plans from `wisdom` alone (FFTW_WISDOM_ONLY): false if FFTW refuses the
/// text or it lacks either plan. Starts and ends with empty in-memory wisdom.
bool plan_with_wisdom(const std::string& wisdom, int m, fftwf_complex* scratch, fftwf_plan& fwd, fftwf_plan& bwd) {
  fftwf_forget_wisdom();
  bool ok = fftwf_import_wisdom_from_string(wisdom.c_str()) != 0;
  if (ok) {
    const unsigned flags = FFTW_MEASURE | FFTW_WISDOM_ONLY;
    fwd = plan_2d(m, scratch, FFTW_FORWARD, flags);
    bwd = plan_2d(m, scratch, FFTW_BACKWARD, flags);
    ok = fwd && bwd;
    if (!ok) {
      destroy(fwd);
      destroy(bwd);
    }
  }
  fftwf_forget_wisdom();
  return ok;
}

/// Times the two plans from empty wisdom (FFTW_MEASURE) and returns the
/// wisdom FFTW exports for them ("" if it cannot plan).
std::string measure_wisdom(int m, fftwf_complex* scratch) {
  fftwf_forget_wisdom();
  fftwf_plan fwd = plan_2d(m, scratch, FFTW_FORWARD, FFTW_MEASURE);
  fftwf_plan bwd = plan_2d(m, scratch, FFTW_BACKWARD, FFTW_MEASURE);
  std::string wisdom;
  if (fwd && bwd) {
    char* text = fftwf_export_wisdom_to_string();
    if (text) {
      wisdom = text;
      std::free(text);
    }
  }
  destroy(fwd);
  destroy(bwd);
  fftwf_forget_wisdom();
  return wisdom;
}

PlanSource plan_estimate(int m, fftwf_complex* scratch, fftwf_plan& fwd, fftwf_plan& bwd) {
  fftwf_forget_wisdom();
  fwd = plan_2d(m, scratch, FFTW_FORWARD, FFTW_ESTIMATE);
  bwd = plan_2d(m, scratch, FFTW_BACKWARD, FFTW_ESTIMATE);
  return PlanSource::estimate;
}

}  // namespace

std::string fft_wisdom_dir() {
  const char* dir = std::getenv("PTYCHO_FFTW_WISDOM_DIR");
  if (dir && *dir) return dir;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/ptycho";  // the XDG spec ignores relative paths
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.cache/ptycho";
  return "";
}

std::string fft_wisdom_path(int frame_size) {
  const std::string dir = fft_wisdom_dir();
  if (dir.empty()) return "";
  const MachineKey& k = machine_key();
  return dir + "/fftwf-" + std::to_string(frame_size) + "x" + std::to_string(frame_size) + "-" +
         file_safe(k.host, 64) + "-" + k.hash_hex + ".wisdom";
}

namespace detail {

PlanSource plan_frames_from_wisdom(int m, fftwf_complex* scratch, fftwf_plan& fwd, fftwf_plan& bwd) {
  // The wisdom this process planned from, by file: once a process has used a
  // file it keeps to it, even if the file is replaced meanwhile.
  static std::map<std::string, std::string> used;
  const std::string dir = fft_wisdom_dir();
  if (dir.empty()) {
    notice_once("no folder for FFTW wisdom (PTYCHO_FFTW_WISDOM_DIR, XDG_CACHE_HOME and HOME are unset)");
    return plan_estimate(m, scratch, fwd, bwd);
  }
  const std::string path = fft_wisdom_path(m);
  const auto it = used.find(path);
  if (it != used.end() && plan_with_wisdom(it->second, m, scratch, fwd, bwd)) return PlanSource::wisdom;

  // Most processes: the file is there (written atomically, so no lock is needed to read it).
  auto from_file = [&]() {
    const auto wisdom = read_wisdom(path, m);
    if (!wisdom || !plan_with_wisdom(*wisdom, m, scratch, fwd, bwd)) return false;
    used[path] = *wisdom;
    return true;
  };
  if (from_file()) return PlanSource::wisdom;

  // Missing, corrupt or foreign: one process measures, under the lock; the
  // others wait for it and then read what it saved.
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    notice_once("cannot make the FFTW wisdom folder " + dir + ": " + ec.message());
    return plan_estimate(m, scratch, fwd, bwd);
  }
  FileLock lock(path + ".lock");
  if (!lock.locked()) {
    notice_once("cannot lock the FFTW wisdom file (" + lock.error() + ")");
    return plan_estimate(m, scratch, fwd, bwd);
  }
  if (from_file()) return PlanSource::wisdom;
  const std::string wisdom = measure_wisdom(m, scratch);
  if (wisdom.empty()) return plan_estimate(m, scratch, fwd, bwd);  // the caller reports FFTW's failure
  const std::string err = write_wisdom(path, m, wisdom);
  if (!err.empty()) {
    notice_once("cannot save the FFTW wisdom (" + err + ")");
    return plan_estimate(m, scratch, fwd, bwd);
  }
  // Plan from the saved wisdom like every other process (not from the timed
  // plans themselves), so that all take one path to the same plan.
  if (!plan_with_wisdom(wisdom, m, scratch, fwd, bwd)) {
    notice_once("FFTW did not re-import the wisdom it exported for " + std::to_string(m) + "x" + std::to_string(m));
    return plan_estimate(m, scratch, fwd, bwd);
  }
  used[path] = wisdom;
  return PlanSource::measured;
}

}  // namespace detail

}  // namespace ptycho
