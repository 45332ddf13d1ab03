#include "ptycho/jobs/evaluate.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/core/metrics.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/hdf5_util.hpp"
#include "ptycho/io/result.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <numeric>

namespace ptycho::jobs {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Reads a benchmark ground truth (ptybench's `*_truth.h5`): /object, /positions_px
/// and the root attributes that mark the blind tier (absent ones count as 0).
GroundTruth read_ground_truth(const std::string& path) {
  io::silence_hdf5_errors();
  const io::H5File f = io::H5File::open_read(path);
  GroundTruth truth;
  std::vector<hsize_t> dims;
  const std::vector<cfloat> object = f.read_complex("/object", dims);
  PTYCHO_INPUT_ERROR_IF(dims.size() != 2, path << ": /object has " << dims.size() << " dimensions, expected (H, W)");
  truth.object = HostCView2(Kokkos::view_alloc(std::string("ptycho::evaluate::truth"), Kokkos::WithoutInitializing),
                            dims[0], dims[1]);
  std::copy(object.begin(), object.end(), truth.object.data());
  const std::vector<double> pos = f.read_doubles("/positions_px", &dims);
  PTYCHO_INPUT_ERROR_IF(dims.size() != 2 || dims[1] != 2 || dims[0] == 0,
                        path << ": /positions_px should have shape (N, 2) with N > 0");
  truth.positions.resize(dims[0]);
  for (size_t j = 0; j < dims[0]; ++j) truth.positions[j] = Position{pos[2 * j], pos[2 * j + 1]};
  for (const char* attr : {"probe_error_pct", "position_error_nm", "partial_coherence_nm"}) {
    const auto v = f.numeric_attribute("/", attr);
    if (v && *v != 0.0) truth.blind = true;
  }
  return truth;
}

/// Refuses a truth (or data) that belongs to another scan than the result:
/// the numbers of positions and frames must agree, the result's positions
/// must be the truth's up to one offset (the grids differ by a translation)
/// within a quarter of the frame, the truth's object must hold the scanned
/// area, and the pixel sizes must agree where both files give one.
void check_truth_fits(const std::string& result_path, const io::ResultData& result, const std::string& truth_path,
                      const GroundTruth& truth, const std::string& data_path, const MeasuredFrames& measured) {
  const size_t n = result.positions.size();
  PTYCHO_INPUT_ERROR_IF(n > 0 && n != truth.positions.size(),
                        truth_path << ": the truth has " << truth.positions.size() << " positions but " << result_path
                                   << " has " << n << ": they are not of the same scan");
  const size_t frames = measured.intensities.extent(0);
  PTYCHO_INPUT_ERROR_IF(frames > 0 && n > 0 && frames != n, data_path << ": the data has " << frames << " frames but "
                                                                      << result_path << " has " << n
                                                                      << " positions: they are not of the same scan");
  if (n > 0) {
    double mr = 0, mc = 0;
    for (size_t j = 0; j < n; ++j) {
      mr += result.positions[j].row - truth.positions[j].row;
      mc += result.positions[j].col - truth.positions[j].col;
    }
    mr /= double(n);
    mc /= double(n);
    double ss = 0;
    for (size_t j = 0; j < n; ++j) {
      const double dr = result.positions[j].row - truth.positions[j].row - mr;
      const double dc = result.positions[j].col - truth.positions[j].col - mc;
      ss += dr * dr + dc * dc;
    }
    const double rms = std::sqrt(ss / double(n));
    const double frame = result.probe_modes.size() ? double(result.probe_modes.extent(1)) : 64.0;
    const double allowed = std::max(4.0, 0.25 * frame);
    PTYCHO_INPUT_ERROR_IF(!(rms <= allowed),
                          truth_path << ": its positions differ from " << result_path << "'s by " << rms
                                     << " px RMS after removing one offset (at most " << allowed
                                     << " px expected): the truth of another scan?");
    double rmin = INFINITY, rmax = -INFINITY, cmin = INFINITY, cmax = -INFINITY;
    for (const Position& p : truth.positions) {
      rmin = std::min(rmin, p.row);
      rmax = std::max(rmax, p.row);
      cmin = std::min(cmin, p.col);
      cmax = std::max(cmax, p.col);
    }
    PTYCHO_INPUT_ERROR_IF(rmin < 0 || cmin < 0 || rmax >= double(truth.object.extent(0)) ||
                              cmax >= double(truth.object.extent(1)),
                          truth_path << ": its positions reach (" << rmax << ", " << cmax << ") px, outside its "
                                     << truth.object.extent(0) << " x " << truth.object.extent(1) << " object");
  }
  io::silence_hdf5_errors();
  const auto truth_pixel = io::H5File::open_read(truth_path).numeric_attribute("/", "pixel_size_m");
  PTYCHO_INPUT_ERROR_IF(truth_pixel && *truth_pixel > 0 && result.pixel_size_m > 0 &&
                            std::abs(result.pixel_size_m / *truth_pixel - 1.0) > 0.01,
                        truth_path << ": its pixel size is " << *truth_pixel << " m but " << result_path << "'s is "
                                   << result.pixel_size_m << " m: they are not of the same scan");
}

/// Reads every frame and the mask of a CXI file on this rank alone.
MeasuredFrames read_measured_frames(const std::string& path) {
  io::ReadOptions options;
  options.transfer = io::FrameTransfer::independent;
  options.probe_scaling = io::ProbeScaling::as_in_file;
  const ScanInfo info = io::read_scan_info(path, options);
  // The frames and their model, both in memory at once.
  const double need = 2.0 * double(info.num_frames) * info.geometry.frame_size * info.geometry.frame_size * 4.0;
  const double have = available_memory_bytes();
  PTYCHO_INPUT_ERROR_IF(have > 0 && need > have, path << ": scoring its " << info.num_frames << " frames of "
                                                      << info.geometry.frame_size << "x" << info.geometry.frame_size
                                                      << " needs about " << format_bytes(need) << ", more than the "
                                                      << format_bytes(have) << " this machine has available");
  std::vector<long> all(static_cast<size_t>(info.num_frames));
  std::iota(all.begin(), all.end(), 0L);
  const Dataset ds = io::read_cxi(MPI_COMM_SELF, path, all, options);
  return MeasuredFrames{ds.frames, ds.mask};
}

/// A float as Python's repr writes it (shortest round trip; fixed notation for
/// exponents in [-4, 16), else d.ddde+XX), so the output reads like ptybench's.
/// NaN and infinities as json.dumps (NaN, Infinity) or str (nan, inf) writes them.
std::string python_float(double v, bool json) {
  if (std::isnan(v)) return json ? "NaN" : "nan";
  if (std::isinf(v)) return std::string(v < 0 ? "-" : "") + (json ? "Infinity" : "inf");
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);  // e.g. -1.2345e+01, 5e-05
  const size_t e = sci.find('e');
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string mantissa = sci.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else {
      const size_t int_digits = static_cast<size_t>(exponent) + 1;
      if (digits.size() < int_digits) digits.append(int_digits - digits.size(), '0');
      const std::string frac = digits.substr(int_digits);
      out += digits.substr(0, int_digits) + "." + (frac.empty() ? "0" : frac);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    const int a = std::abs(exponent);
    out += std::string("e") + (exponent < 0 ? "-" : "+") + (a < 10 ? "0" : "") + std::to_string(a);
  }
  return out;
}

}  // namespace

void print_score(std::ostream& os, const BenchmarkScore& s, bool json) {
  const std::string shift = "[" + python_float(s.shift.row, json) + ", " + python_float(s.shift.col, json) + "]";
  const std::vector<std::pair<std::string, std::string>> items{
      {"psnr_amp", python_float(s.psnr_amp, json)},
      {"ssim_amp", python_float(s.ssim_amp, json)},
      {"psnr_phase", python_float(s.psnr_phase, json)},
      {"ssim_phase", python_float(s.ssim_phase, json)},
      {"psnr", python_float(s.psnr, json)},
      {"ssim", python_float(s.ssim, json)},
      {"shift_px", shift},
      {"score_standard", python_float(s.score_standard, json)},
      {"consistency", python_float(s.consistency, json)},
      {"score_blind", python_float(s.score_blind, json)},
      {"blind", json ? (s.blind ? "true" : "false") : (s.blind ? "True" : "False")},
  };
  if (json) {
    os << "{";
    for (size_t i = 0; i < items.size(); ++i)
      os << (i ? ", " : "") << "\"" << items[i].first << "\": " << items[i].second;
    os << "}\n";
  } else {
    for (const auto& [key, value] : items) os << std::left << std::setw(16) << key << " " << value << "\n";
  }
  os.flush();
}

Evaluation evaluate(const EvaluateOptions& opt) {
  Evaluation out;
  namespace fs = std::filesystem;
  PTYCHO_INPUT_ERROR_IF(opt.truth.empty() && opt.data.empty(),
                        "evaluate: give the ground truth with --truth (or --data DATA.cxi beside DATA_truth.h5)");
  std::string truth_path = opt.truth;
  if (truth_path.empty()) {
    PTYCHO_INPUT_ERROR_IF(!ends_with(opt.data, ".cxi"),
                          "evaluate: cannot derive the truth file from " << opt.data << "; give --truth");
    truth_path = opt.data.substr(0, opt.data.size() - 4) + "_truth.h5";
  }
  // The data: as given, else beside the truth (NAME_truth.h5 -> NAME.cxi); a
  // derived file that does not exist only drops the consistency term.
  std::string data_path = opt.data;
  if (data_path.empty() && ends_with(truth_path, "_truth.h5")) {
    const std::string guess = truth_path.substr(0, truth_path.size() - 9) + ".cxi";
    if (fs::exists(guess)) data_path = guess;
  }
  const io::ResultData result = io::read_result(opt.result);
  ScoredReconstruction rec{result.object_tile, result.probe_modes, result.positions};
  const GroundTruth truth = read_ground_truth(truth_path);
  if (data_path.empty())
    out.notes.push_back("no data file (give --data DATA.cxi); consistency and score_blind leave out the data term");
  MeasuredFrames measured;
  if (!data_path.empty()) measured = read_measured_frames(data_path);
  if (measured.intensities.size() != 0 && (rec.probe_modes.size() == 0 || rec.positions.empty()))
    out.notes.push_back(opt.result + " has no " +
                        (rec.probe_modes.size() == 0 ? "probe modes (/entry_1/image_2/data)"
                                                     : "positions (/entry_1/image_1/positions_px)") +
                        "; consistency is not computed");

  check_truth_fits(opt.result, result, truth_path, truth, data_path, measured);

  out.score = score_reconstruction(rec, truth, measured);
  return out;
}

}  // namespace ptycho::jobs
