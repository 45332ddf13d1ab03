// ptycho info FILE.cxi: what a CXI scan holds and how it is scanned.
//
// Every rank streams through a block of the frames, a chunk at a time (for
// the photon count and, without a probe in the file, the probe estimate);
// rank 0 prints.
#include "commands.hpp"
#include "ptycho/core/error.hpp"
#include "ptycho/core/first_guess.hpp"
#include "ptycho/io/checkpoint.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/result.hpp"
#include "ptycho/jobs/learned.hpp"
#include "ptycho/jobs/settings.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace ptycho::jobs {

namespace {

struct InfoOptions {
  std::string file;
  bool json = false;
  io::Orientation orientation;  ///< --transpose, --flip-y, --flip-x: as reconstruct turns the frames
};

std::string fmt(const char* format, double v) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

/// `ptycho info CHECKPOINT`: reads every dataset through (a damaged file
/// fails with an error naming it) and says where the run stands.
int info_checkpoint(MPI_Comm world, const InfoOptions& opt) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  if (rank != 0) return 0;
  const io::CheckpointSummary s = io::inspect_checkpoint(opt.file);
  if (opt.json) {
    nlohmann::ordered_json j = {{"file", opt.file},   {"kind", "checkpoint"},         {"input", s.input},
                                      {"chain", s.chain},   {"iteration", s.iteration},     {"frames", s.frames},
                                      {"frame_size", s.frame_size}, {"object", {s.object_rows, s.object_cols}},
                                      {"datasets", s.datasets},     {"megabytes", s.megabytes}};
    if (!s.low_memory.empty()) j["low_memory"] = s.low_memory == "true";
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::printf("%s: ptycho checkpoint, readable (%ld datasets, %.1f MB read)\n", opt.file.c_str(), s.datasets,
              s.megabytes);
  std::printf("  scan:       %s\n", s.input.c_str());
  std::printf("  chain:      %s, %ld iterations done%s\n", s.chain.c_str(), s.iteration,
              s.low_memory == "true" ? " (low-memory mode)" : "");
  std::printf("  frames:     %ld of %dx%d; object %ldx%ld px\n", s.frames, s.frame_size, s.frame_size, s.object_rows,
              s.object_cols);
  return 0;
}

/// `ptycho info MODEL`: a learned engine's model file (learned/README.md).
int info_model(MPI_Comm world, const InfoOptions& opt) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  if (rank != 0) return 0;
  const learned::ModelInfo m = learned_plugin().inspect_model(opt.file);
  if (opt.json) {
    const nlohmann::ordered_json j = {{"file", opt.file},
                                      {"kind", "model"},
                                      {"architecture", m.architecture},
                                      {"frame_size", m.frame_size},
                                      {"parameters", m.parameters},
                                      {"features", m.features},
                                      {"feature_iterations", m.feature_iterations},
                                      {"steps", m.steps},
                                      {"loss", m.loss},
                                      {"version", m.version},
                                      {"description", m.description}};
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::printf("%s: ptycho model, readable\n", opt.file.c_str());
  std::printf("  network:    %s, %ld parameters, for %dx%d frames (%s features, %d iterations of %s)\n",
              m.architecture.c_str(), m.parameters, m.frame_size, m.frame_size, m.features.c_str(),
              m.feature_iterations, m.features == "scan"    ? "ML over the scan"
              : m.features == "frame" ? "single-frame error reduction"
                                      : "nothing: the frame itself");
  std::printf("  training:   %ld steps, last loss %.4g, ptycho %s\n", m.steps, m.loss, m.version.c_str());
  std::printf("  about:      %s\n", m.description.c_str());
  return 0;
}

/// `ptycho info RESULT`: reads the result back and summarises it.
int info_result(MPI_Comm world, const InfoOptions& opt) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  if (rank != 0) return 0;
  const io::ResultData r = io::read_result(opt.file);
  const long iterations = long(r.process.cost_history.size());
  if (opt.json) {
    const nlohmann::ordered_json j = {{"file", opt.file},
                                      {"kind", "result"},
                                      {"object", {r.layout.object_rows, r.layout.object_cols}},
                                      {"probe_modes", r.probe_modes.extent(0)},
                                      {"positions", r.positions.size()},
                                      {"iterations", iterations}};
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::printf("%s: ptycho result, readable\n", opt.file.c_str());
  std::printf("  object:     %ldx%ld px, pixel %.3g nm\n", r.layout.object_rows, r.layout.object_cols, r.pixel_size_m * 1e9);
  std::printf("  probe:      %zu mode%s of %zux%zu\n", r.probe_modes.extent(0), r.probe_modes.extent(0) == 1 ? "" : "s",
              r.probe_modes.extent(1), r.probe_modes.extent(2));
  std::printf("  positions:  %zu; %ld iterations%s%s\n", r.positions.size(), iterations,
              r.process.cost_history.empty() ? "" : ", final cost ",
              r.process.cost_history.empty() ? "" : std::to_string(r.process.cost_history.back()).c_str());
  return 0;
}

int run_info(MPI_Comm world, const InfoOptions& given) {
  InfoOptions opt = given;
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  if (io::is_checkpoint(opt.file)) return info_checkpoint(world, opt);
  if (io::is_result(opt.file)) return info_result(world, opt);
  if (looks_like_model_file(opt.file)) return info_model(world, opt);
  // A job file: its input, read as its keys say.
  io::ReadOptions given_read;
  given_read.probe_scaling = io::ProbeScaling::as_in_file;
  given_read.orientation = opt.orientation;
  const ScanToRead scan = scan_to_read(opt.file, given_read);
  opt.file = scan.path;
  opt.orientation = scan.read.orientation;

  // Rank 0 reads the header (for the layout and N). If that fails,
  // read_frame_statistics below raises the same error on every rank.
  const io::ReadOptions read_options = scan.read;
  long n = -1;
  if (rank == 0) {
    try {
      n = io::read_cxi_header(opt.file, read_options).info.num_frames;
    } catch (const std::exception&) {
      n = -1;  // every rank meets the error again below
    }
  }
  MPI_Bcast(&n, 1, MPI_LONG, 0, world);
  // The statistics stream through the frames a chunk at a time: a file
  // larger than memory can be described.
  const std::vector<long> mine = n > 0 ? io::block_of_frames(n, rank, size) : std::vector<long>();
  io::CxiHeader header;
  const io::FrameStatistics stats = io::read_frame_statistics(world, opt.file, mine, read_options, &header);
  if (rank != 0) return 0;
  struct {
    ScanInfo info;
    HostCView2 probe;
    View2<std::uint8_t, HostSpace> mask;
  } ds{header.info, header.probe, header.mask};
  if (ds.probe.size() == 0) {
    PTYCHO_INPUT_ERROR_IF(!(stats.filled_total_counts > 0),
                          opt.file << ": " << header.layout.frames
                                   << " has no positive counts in any valid pixel; cannot estimate a probe");
    ds.probe = io::estimate_probe(stats);
  }

  const ScanInfo& info = ds.info;
  const DetectorGeometry& g = info.geometry;
  const int m = g.frame_size;
  const double dx_m = g.object_pixel_x_m(), dy_m = g.object_pixel_y_m();
  double rmin = INFINITY, rmax = -INFINITY, cmin = INFINITY, cmax = -INFINITY;
  for (const Position& p : info.positions) {
    rmin = std::min(rmin, p.row);
    rmax = std::max(rmax, p.row);
    cmin = std::min(cmin, p.col);
    cmax = std::max(cmax, p.col);
  }
  const double extent_rows_px = rmax - rmin, extent_cols_px = cmax - cmin;
  const double step_px = mean_nearest_step(info.positions);
  const double diameter_px = probe_diameter(ds.probe, 0.9);
  const double overlap = diameter_px > 0 ? 1.0 - step_px / diameter_px : 0.0;
  long masked = 0;
  for (size_t p = 0; p < ds.mask.size(); ++p) masked += ds.mask.data()[p] != 0;
  double probe_power = 0;
  for (size_t p = 0; p < ds.probe.size(); ++p)
    probe_power += double(Kokkos::abs(ds.probe.data()[p])) * Kokkos::abs(ds.probe.data()[p]);
  const bool estimated = header.layout.probe.empty();

  if (opt.json) {
    nlohmann::json j;
    j["file"] = opt.file;
    j["frames"] = info.num_frames;
    j["frames_dataset"] = header.layout.frames;
    j["frames_type"] = header.layout.frames_type;
    j["frame_size"] = m;
    j["energy_kev"] = g.energy_ev() / 1e3;
    j["wavelength_m"] = g.wavelength_m();
    j["distance_m"] = g.distance_m;
    j["detector_pixel_m"] = {g.pixel_x_m, g.pixel_y_m};
    j["object_pixel_m"] = {dx_m, dy_m};
    j["scan_extent_m"] = {extent_cols_px * dx_m, extent_rows_px * dy_m};
    j["scan_extent_px"] = {extent_cols_px, extent_rows_px};
    j["object_grid_px"] = {info.object_rows, info.object_cols};
    j["translation_dataset"] = header.layout.translation;
    j["translation_transposed"] = header.layout.translation_transposed;
    j["format"] = header.layout.format;
    j["frame_orientation"] = opt.orientation.text();
    j["stored_orientation"] = header.layout.stored.text();
    j["stored_orientation_source"] = header.layout.stored_source;
    j["mean_nearest_step_px"] = step_px;
    j["probe_diameter_90_px"] = diameter_px;
    j["overlap"] = overlap;
    j["photons_per_frame"] = stats.mean_total_counts;
    j["max_count"] = stats.max_count;
    j["negative_values"] = stats.negative_values;
    j["nonfinite_values"] = stats.nonfinite_values;
    j["masked_pixels"] = masked;
    j["mask_dataset"] = header.layout.mask;
    j["dark_dataset"] = header.layout.dark;
    j["monitor_dataset"] = header.layout.monitor;
    j["frames_left_out"] = header.layout.dropped;
    j["probe_source"] = info.probe_source;
    j["probe_power"] = probe_power;
    std::cout << j.dump(2) << std::endl;
    return 0;
  }

  auto line = [](const std::string& key, const std::string& value) {
    std::cout << "  " << key << std::string(key.size() < 20 ? 20 - key.size() : 1, ' ') << value << "\n";
  };
  std::cout << info.source << "\n";
  line("frames",
       std::to_string(info.num_frames) + " (" + header.layout.frames_type + ", " + header.layout.frames + ")");
  line("frame size", std::to_string(m) + " x " + std::to_string(m) + " pixels");
  line("energy", fmt("%.4g keV", g.energy_ev() / 1e3) + fmt(" (wavelength %.4g nm)", g.wavelength_m() * 1e9));
  line("distance", fmt("%.4g m", g.distance_m));
  line("detector pixel", fmt("%.4g", g.pixel_x_m * 1e6) + fmt(" x %.4g um (x, y)", g.pixel_y_m * 1e6));
  line("object pixel",
       fmt("%.4g", dx_m * 1e9) + fmt(" x %.4g nm (x, y) = wavelength distance / (M pixel)", dy_m * 1e9));
  line("scan extent", fmt("%.4g", extent_cols_px * dx_m * 1e6) + fmt(" x %.4g um", extent_rows_px * dy_m * 1e6) +
                          fmt(" = %.1f", extent_cols_px) + fmt(" x %.1f object pixels (x, y)", extent_rows_px));
  line("object grid", std::to_string(info.object_rows) + " x " + std::to_string(info.object_cols) +
                          " pixels (rows x cols, " + std::to_string(io::kDefaultMarginPx) + " px margin)");
  const bool cxi = header.layout.format == "CXI";
  line("format", header.layout.format);
  line("positions", header.layout.translation +
                        (cxi ? (header.layout.translation_transposed ? " (3, N)" : " (N, 3)") : std::string()) +
                        ": x = column, y = row, both increasing, in metres");
  std::string axes;
  if (!header.layout.stored.identity())
    axes = header.layout.stored.text() + " by the file's " + header.layout.stored_source;
  if (!opt.orientation.identity())
    axes += (axes.empty() ? "" : "; then ") + opt.orientation.text() + " by the options";
  line("frames' axes", axes.empty() ? "as stored (rows = detector y, columns = x; --transpose, --flip-y, --flip-x "
                                      "turn them)"
                                    : axes);
  line("mean step", fmt("%.4g nm", step_px * dx_m * 1e9) + fmt(" = %.2f px (to the nearest neighbour)", step_px));
  line("probe diameter",
       fmt("%.4g nm", diameter_px * dx_m * 1e9) +
           fmt(" = %.1f px (disc about the centroid holding 90%% of the probe's power)", diameter_px));
  if (overlap >= 0) {
    line("overlap", fmt("%.0f%% (1 - mean step / probe diameter)", 100.0 * overlap));
  } else {
    line("overlap", "none: the mean step is larger than the probe diameter");
    if (estimated)
      line("note",
           "the probe is estimated as for far-field data; for near-field (holographic) data, neither it "
           "nor the object pixel size nor the overlap applies");
  }
  line("photons per frame", fmt("%.4g (mean total counts over valid pixels)", stats.mean_total_counts));
  line("max count",
       fmt("%.6g", stats.max_count) +
           (stats.negative_values ? " (" + std::to_string(stats.negative_values) + " negative values)" : "") +
           (stats.nonfinite_values ? " (" + std::to_string(stats.nonfinite_values) +
                                         " values are NaN or infinite: reconstruct refuses them in valid pixels)"
                                   : ""));
  line("masked pixels", std::to_string(masked) + " of " + std::to_string(long(m) * m) +
                            (header.layout.mask.empty() ? " (no mask in the file)" : " (" + header.layout.mask + ")"));
  if (!header.layout.monitor.empty())
    line("monitor", header.layout.monitor + ": " + std::to_string(header.layout.dropped) + " frame" +
                        (header.layout.dropped == 1 ? "" : "s") +
                        " left out (monitor at most 0.1 x its median: no beam), as PyNX does");
  if (header.dark.size() > 0) {
    double sum = 0;
    for (size_t p = 0; p < header.dark.size(); ++p) sum += header.dark.data()[p];
    line("dark", header.layout.dark + fmt(" (mean %.4g counts per pixel): reconstruct refines a per-pixel background "
                                          "from it unless --background says otherwise",
                                          sum / double(header.dark.size())));
  }
  if (estimated) {
    line("probe", info.probe_source + fmt(" (power %.4g counts)", probe_power));
  } else {
    line("probe", info.probe_source + fmt(" (power %.4g; ", probe_power) +
                      fmt("x %.4g in amplitude to match the counts)",
                          probe_power > 0 ? std::sqrt(stats.filled_total_counts / probe_power) : 0.0));
  }
  std::cout.flush();
  return 0;
}

}  // namespace

Command add_info_command(CLI::App& app) {
  auto opt = std::make_shared<InfoOptions>();
  Command c;
  c.app = app.add_subcommand("info",
                             "Describe a scan (CXI, PtyPy .ptyd, fold_slice, ptychodus, or a job file's input: "
                             "geometry, scan, counts, mask, probe), or check and summarise a result, checkpoint or "
                             "model file");
  c.app->add_option("file", opt->file,
                    "the scan (CXI, .ptyd, fold_slice _dp/_para, ptychodus diffraction.h5), a job file (its input, "
                    "read as its keys say), or a result, checkpoint or model file")
      ->required();
  c.app->add_flag("--json", opt->json, "print JSON instead of text");
  c.app->add_flag("--transpose", opt->orientation.transpose, "describe the frames transposed, as reconstruct --transpose reads them");
  c.app->add_flag("--flip-y", opt->orientation.flip_y, "describe the frames flipped up-down (after --transpose)");
  c.app->add_flag("--flip-x", opt->orientation.flip_x, "describe the frames flipped left-right (after --flip-y)");
  c.run = [opt](MPI_Comm world) -> int { return run_info(world, *opt); };
  return c;
}

}  // namespace ptycho::jobs
