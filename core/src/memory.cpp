#include "ptycho/core/memory.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/local_scan.hpp"
#include "ptycho/core/types.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <type_traits>

namespace ptycho {

namespace {

/// A number read from a one-line file (cgroup), or -1 ("max", missing).
double read_number_file(const char* path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word == "max") return -1;
  char* end = nullptr;
  const double v = std::strtod(word.c_str(), &end);
  return end && *end == '\0' ? v : -1;
}

}  // namespace

double available_memory_bytes() {
  double available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kib = 0;
  std::string unit;
  while (meminfo >> key >> kib) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") available = kib * 1024.0;
  }
  const double limit = read_number_file("/sys/fs/cgroup/memory.max");
  const double used = read_number_file("/sys/fs/cgroup/memory.current");
  if (limit > 0) {
    const double left = std::max(0.0, limit - std::max(0.0, used));
    available = available > 0 ? std::min(available, left) : left;
  }
  return available;
}

int default_batch(int frame_size, int modes, int threads) {
  const double wave = double(std::max(1, frame_size)) * double(std::max(1, frame_size)) * 8.0 * std::max(1, modes);
  const int per_thread = std::clamp(int(kBatchBytesPerThread / wave), 1, kMaxDefaultBatchPerThread);
  return per_thread * std::max(1, threads);
}

int batch_or_default(int batch, int frame_size, int modes) {
  return batch > 0 ? batch : default_batch(frame_size, modes, ExecSpace().concurrency());
}

double ml_far_field_bytes_per_frame(int frame_size, int modes) {
  return 2.0 * std::max(1, modes) * double(frame_size) * double(frame_size) * 8.0;
}

long ml_kept_far_fields(long frames, int frame_size, int modes, int batch, double budget) {
  const long n = std::max(0L, frames);
  if (!(budget > 0) || n == 0) return 0;
  const double per_frame = ml_far_field_bytes_per_frame(frame_size, modes);
  if (budget >= per_frame * double(n)) return n;
  const long b = std::max(1, batch);
  return std::min(n, long(budget / per_frame) / b * b);
}

double estimate_rank_bytes(const RankShare& s, const std::vector<EngineOptions>& chain) {
  const double n = double(std::max(0L, s.frames));
  const double mm = double(s.frame_size) * double(s.frame_size);
  const double k = double(std::max(1, s.modes));
  const double batch = double(std::max(1, s.batch));
  const double frame_set = n * k * mm * 8.0;  // one complex64 wave per frame and mode
  double engine = 0;
  for (const EngineOptions& e : chain) {
    double sets = 0;
    if (e.name == "dm" || e.name == "raar") sets = e.low_memory ? 0.5 : 1;  // low memory: complex halves
    else if (e.name == "sdr") sets = e.low_memory ? 0.5 : 1;  // low memory: complex halves
    // low memory: one batch of each (the work frames), and the frames its budget keeps
    else if (e.name == "ml")
      sets = !e.low_memory
                 ? 2
                 : 2.0 * double(ml_kept_far_fields(s.frames, s.frame_size, s.modes, s.batch, e.far_field_budget)) /
                       std::max(1.0, n);
    else if (e.name == "lsqml") sets = e.refine_probe ? 1.0 / std::max(1, e.batches) : 0;
    // nn: one predicted patch per frame, and libtorch with the network.
    else if (e.name == kLearnedEngine) sets = 1.0 / k + kLearnedOverheadBytes / std::max(1.0, frame_set);
    // Work frames: a few batches of waves (position refinement keeps three per frame of a batch).
    const double work = 6.0 * batch * k * mm * 8.0;
    engine = std::max(engine, sets * frame_set + work);
  }
  const double frames = (std::is_same_v<MemSpace, HostSpace> ? 1.0 : 2.0) * n * mm * 4.0;
  const double probes = double(Workspace::probe_slots_for(long(n), s.shift_quantum)) * k * mm * 8.0;
  const double object = double(s.tile_rows) * double(s.tile_cols) * 80.0;
  return kProcessOverheadBytes + frames + probes + engine + object;
}

std::string format_bytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 6) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", bytes, units[u]);
  return buf;
}

double parse_bytes(const std::string& text, const std::string& what) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double value = std::strtod(begin, &end);
  std::string unit(end ? end : "");
  unit.erase(std::remove_if(unit.begin(), unit.end(), [](unsigned char c) { return std::isspace(c); }), unit.end());
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::toupper(c); });
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();                   // GB, GIB -> G, GI
  if (unit.size() == 2 && unit.back() == 'I') unit.pop_back();                  // GI -> G
  double scale = -1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K") scale = 1024.0;
  else if (unit == "M") scale = 1024.0 * 1024;
  else if (unit == "G") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T") scale = 1024.0 * 1024 * 1024 * 1024;
  PTYCHO_INPUT_ERROR_IF(end == begin || scale < 0 || !std::isfinite(value) || !(value > 0),
                        what << ": expected a memory size such as 4G, 512M or 2.5GiB, got '" << text << "'");
  return value * scale;
}

}  // namespace ptycho
