#include "ptycho/jobs/reconstruction.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/core/first_guess.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/io/checkpoint.hpp"
#include "ptycho/io/cxi.hpp"
#include "ptycho/io/mpi_detail.hpp"
#include "ptycho/io/png.hpp"
#include "ptycho/io/scan_formats.hpp"
#include "ptycho/jobs/learned.hpp"
#include "ptycho/jobs/memory_check.hpp"
#include "ptycho/jobs/output_paths.hpp"
#include "ptycho/parallel/gather.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace ptycho {

namespace {

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

/// How the reader scales the probe guess: sum |P|^2 = the mean counts per
/// frame, so that a flat object of 1 matches the counts.
io::ReadOptions read_options(const io::Orientation& orientation, const std::string& probe_from,
                             const io::Description& description) {
  io::ReadOptions read;
  read.probe_scaling = io::ProbeScaling::to_mean_counts;
  read.orientation = orientation;
  read.probe_file = probe_from;
  read.description = description;
  return read;
}

/// A deep copy (a host mirror of a host view is the view itself).
template <class V>
V copy_of(const V& v, const std::string& label) {
  V out(Kokkos::view_alloc(label, Kokkos::WithoutInitializing), v.layout());
  Kokkos::deep_copy(out, v);
  return out;
}

}  // namespace

// ---- Scan

Scan Scan::from_file(const std::string& path) {
  Scan s;
  s.m_name = path;
  return s;
}

Scan Scan::from_arrays(ScanArrays a) {
  const std::string& n = a.name;
  PTYCHO_INPUT_ERROR_IF(a.frames.extent(0) == 0, n << ": frames: no frames (expected an array of N x M x M counts)");
  const long count = long(a.frames.extent(0));
  const int m = int(a.frames.extent(1));
  PTYCHO_INPUT_ERROR_IF(a.frames.extent(1) != a.frames.extent(2) || m < 2,
                        n << ": frames: each frame must be square, M x M with M >= 2; got " << a.frames.extent(1)
                          << " x " << a.frames.extent(2));
  PTYCHO_INPUT_ERROR_IF(m > io::kMaxFrameSize,
                        n << ": frames: frames of " << m << " x " << m << " pixels; at most " << io::kMaxFrameSize);
  PTYCHO_INPUT_ERROR_IF(long(a.y_m.size()) != count || long(a.x_m.size()) != count,
                        n << ": positions: " << a.y_m.size() << " y and " << a.x_m.size() << " x positions for "
                          << count << " frames");
  for (long j = 0; j < count; ++j)
    PTYCHO_INPUT_ERROR_IF(!std::isfinite(a.y_m[j]) || !std::isfinite(a.x_m[j]),
                          n << ": positions: position " << j << " is not finite (" << a.y_m[j] << ", " << a.x_m[j]
                            << ")");
  a.geometry.frame_size = m;
  const auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  PTYCHO_INPUT_ERROR_IF(!positive(a.geometry.energy_j), n << ": energy: must be a positive number");
  PTYCHO_INPUT_ERROR_IF(!positive(a.geometry.distance_m), n << ": distance: must be a positive number [m]");
  PTYCHO_INPUT_ERROR_IF(!positive(a.geometry.pixel_x_m) || !positive(a.geometry.pixel_y_m),
                        n << ": pixel size: must be a positive number [m]");
  PTYCHO_INPUT_ERROR_IF(a.mask.size() && (long(a.mask.extent(0)) != m || long(a.mask.extent(1)) != m),
                        n << ": mask: " << a.mask.extent(0) << " x " << a.mask.extent(1) << ", the frames are " << m
                          << " x " << m);
  PTYCHO_INPUT_ERROR_IF(a.probe.size() && (long(a.probe.extent(0)) != m || long(a.probe.extent(1)) != m),
                        n << ": probe: " << a.probe.extent(0) << " x " << a.probe.extent(1) << ", the frames are "
                          << m << " x " << m);
  if (!a.mask.size()) {
    a.mask = View2<std::uint8_t, HostSpace>("ptycho::mask", m, m);  // zeros: all valid
  }
  Scan s;
  s.m_name = a.name;
  s.m_arrays = std::make_shared<const ScanArrays>(std::move(a));
  return s;
}

Scan Scan::half(int which) const {
  PTYCHO_THROW_IF(which != 0 && which != 1, "Scan::half: which is " << which << ", not 0 or 1");
  Scan s = *this;
  s.m_half = which;
  return s;
}

Scan Scan::oriented(const io::Orientation& o) const {
  Scan s = *this;
  s.m_orientation = o;
  return s;
}

Scan Scan::described(const io::Description& d) const {
  PTYCHO_INPUT_ERROR_IF(m_arrays, "frames_dataset: a scan of arrays needs no description");
  Scan s = *this;
  s.m_description = d;
  return s;
}

Scan Scan::with_probe_from(const std::string& file) const {
  PTYCHO_INPUT_ERROR_IF(m_arrays, "probe_from: " << file << ": a scan of arrays takes its probe as an array (probe=)");
  Scan s = *this;
  s.m_probe_from = file;
  return s;
}

namespace {
/// `info` reduced to the frames of index 2 i + half.
ScanInfo half_of(ScanInfo info, int half) {
  if (half < 0) return info;
  std::vector<Position> kept;
  for (size_t i = size_t(half); i < info.positions.size(); i += 2) kept.push_back(info.positions[i]);
  info.positions = std::move(kept);
  info.num_frames = long(info.positions.size());
  return info;
}
}  // namespace

ScanInfo Scan::info() const { return half_of(full_info(), m_half); }

ScanInfo Scan::full_info() const {
  if (!m_arrays) return io::read_scan_info(m_name, read_options(m_orientation, m_probe_from, m_description));
  const ScanArrays& a = *m_arrays;
  const io::ObjectGrid grid = io::place_on_object_grid(a.x_m, a.y_m, a.geometry, io::kDefaultMarginPx, a.name);
  ScanInfo info;
  info.source = a.name;
  info.geometry = a.geometry;
  info.num_frames = long(a.frames.extent(0));
  info.positions = grid.positions;
  info.object_rows = grid.rows;
  info.object_cols = grid.cols;
  info.grid_offset_row = grid.shift_row;
  info.grid_offset_col = grid.shift_col;
  info.probe_source = a.probe.size() ? "the probe array" : io::kEstimatedProbeSource;
  return info;
}

Dataset Scan::read(MPI_Comm comm, const std::vector<long>& my_frames) const {
  if (m_half >= 0) {
    // The half's frame i is the scan's frame 2 i + half.
    std::vector<long> frames;
    for (const long i : my_frames) frames.push_back(2 * i + m_half);
    Scan whole = *this;
    whole.m_half = -1;
    Dataset ds = whole.read(comm, frames);
    ds.frame_index = my_frames;
    ds.info = half_of(ds.info, m_half);
    return ds;
  }
  if (!m_arrays) return io::read_cxi(comm, m_name, my_frames, read_options(m_orientation, m_probe_from, m_description));
  const ScanArrays& a = *m_arrays;
  const int m = a.geometry.frame_size;
  const size_t mm = size_t(m) * m;
  Dataset ds;
  ds.info = info();
  ds.frame_index = my_frames;
  ds.mask = a.mask;
  if (!m_orientation.identity() && a.mask.size() > 0) {  // the caller's mask stays as it is
    ds.mask = copy_of(a.mask, "ptycho::mask");
    io::orient_frames(ds.mask.data(), 1, m, m_orientation);
  }
  ds.frames = HostRView3(Kokkos::view_alloc(std::string("ptycho::frames"), Kokkos::WithoutInitializing),
                         my_frames.size(), m, m);
  io::detail::collectively(comm, [&] {
    for (size_t i = 0; i < my_frames.size(); ++i) {
      const long g = my_frames[i];
      std::memcpy(ds.frames.data() + i * mm, a.frames.data() + size_t(g) * mm, mm * sizeof(float));
      for (size_t p = 0; p < mm; ++p) {
        float& v = ds.frames.data()[i * mm + p];
        if (std::isfinite(v)) continue;
        PTYCHO_INPUT_ERROR_IF(!a.mask.data()[p], a.name << ": frames: frame " << g << " has the value " << v
                                                        << " at pixel (" << p / m << ", " << p % m << ")");
        v = 0.0f;
      }
    }
  });
  io::orient_frames(ds.frames.data(), my_frames.size(), m, m_orientation);
  const io::FrameStatistics stats = io::frame_statistics(comm, ds.frames, ds.mask);
  io::detail::collectively(comm, [&] {
    PTYCHO_INPUT_ERROR_IF(stats.max_count > io::kMaxCount,
                          a.name << ": frames: counts up to " << stats.max_count << " in a valid pixel; at most "
                                 << io::kMaxCount << " (divide the frames by a constant)");
    PTYCHO_INPUT_ERROR_IF(!(stats.filled_total_counts > 0),
                          a.name << ": frames: no positive counts in any valid pixel; cannot scale a probe to them");
    if (a.probe.size()) {
      ds.probe = copy_of(a.probe, "ptycho::probe");
      const double power = probe_power(ds.probe);
      PTYCHO_INPUT_ERROR_IF(!(power > 0) || !std::isfinite(power),
                            a.name << ": probe: its power is " << power << "; expected a finite, non-zero probe");
      scale_probe_to_power(ds.probe, stats.filled_total_counts);
    } else {
      ds.probe = io::estimate_probe(stats);  // deterministic: the same on every rank
    }
  });
  return ds;
}

// ---- Reconstruction

Reconstruction::Reconstruction(MPI_Comm comm, const Scan& scan, const Settings& settings)
    : m_settings(settings), m_scan_name(scan.name()) {
  MPI_Comm_dup(comm, &m_comm);
  const int me = rank(), size = ranks();
  m_scan_in_memory = scan.in_memory();
  m_input_abs = scan.in_memory() ? scan.name() : absolute_path(scan.name());
  m_settings.input = scan.name();
  if (scan.in_memory()) m_settings.origin.erase("input");  // a name, not a file to check
  // Settings first (the same checks on every rank, no collective needed).
  jobs::check_settings(m_settings);
  ReconstructOptions opt;
  opt.chain = parse_chain(m_settings.engines, jobs::engine_base(m_settings));
  opt.probe_modes = m_settings.probe_modes;
  opt.shift_quantum = m_settings.low_memory ? jobs::kLowMemoryShiftQuantum : 0;

  // The detector's orientation, if the settings turn the frames.
  io::Orientation turn;
  turn.transpose = m_settings.transpose;
  turn.flip_y = m_settings.flip_y;
  turn.flip_x = m_settings.flip_x;
  Scan source = turn.identity() ? scan : scan.oriented(turn);
  if (!m_settings.probe_from.empty()) source = source.with_probe_from(m_settings.probe_from);
  if (!m_settings.frames_dataset.empty()) source = source.described(jobs::description_of(m_settings));
  m_info = source.info();
  // The batch: the job's, or as many frames per thread as stay in a core's cache.
  opt.batch = m_batch = batch_or_default(m_settings.batch, m_info.geometry.frame_size, opt.probe_modes);
  // A file with a dark: unless the job says otherwise, every engine refines a
  // per-pixel background starting from it (as PyNX and cdtools use a dark).
  if (!m_info.background_source.empty() && !m_settings.origin.count("background") && m_settings.background == "none") {
    m_settings.background = "pixel";
    m_settings.origin["background"] = "the scan's dark (" + m_info.background_source + ")";
    opt.chain = parse_chain(m_settings.engines, jobs::engine_base(m_settings));
  }
  // A probe estimated from the data is rough: unless the job says otherwise,
  // the engines refine it.
  const bool estimated = m_info.probe_source == io::kEstimatedProbeSource;
  if (estimated && !m_settings.origin.count("refine_probe") && !m_settings.refine_probe) {
    m_settings.refine_probe = true;
    m_settings.origin["refine_probe"] = "the probe is estimated from the data";
    opt.chain = parse_chain(m_settings.engines, jobs::engine_base(m_settings));
  }
  // A network in the chain: its plugin and model, checked before the data are read.
  jobs::prepare_learned(m_comm, opt.chain, m_info.geometry.frame_size);
  // A resumed run that leaves low_memory alone goes on in the mode its
  // checkpoint was written in (one the low-memory mode switched on by itself
  // may be resumed where the default would fit).
  bool low_memory_by_itself = false;  // on, and not because the job asked for it
  if (!m_settings.resume.empty() && !m_settings.low_memory && !m_settings.origin.count("low_memory")) {
    int low = 0;
    if (me == 0) low = io::peek_checkpoint_text(m_settings.resume, "run/low_memory") == "true";
    MPI_Bcast(&low, 1, MPI_INT, 0, m_comm);
    if (low) {
      m_settings.low_memory = true;
      m_settings.origin["low_memory"] = "the checkpoint " + m_settings.resume + " was written in the low-memory mode";
      low_memory_by_itself = true;
      opt.chain = parse_chain(m_settings.engines, jobs::engine_base(m_settings));
      opt.shift_quantum = jobs::kLowMemoryShiftQuantum;
      m_memory_note = "the checkpoint " + m_settings.resume +
                      " was written in the low-memory mode, so the run goes on in it (low_memory = false in a job "
                      "file refuses instead)";
    }
  }
  {
    // The memory each rank will need, against the node and max_memory,
    // before anything of the size of the frames or the object is allocated
    // (the reconstruction below makes its halo buffers at once).
    const Decomposition dec = decompose_for(m_info, opt, size);
    const Rect tile = dec.extent[me];
    RankShare share{long(dec.positions_of[me].size()), m_info.geometry.frame_size, opt.probe_modes, opt.batch,
                    tile.rows, tile.cols, opt.shift_quantum};
    jobs::MemoryNeed need;
    need.bytes = estimate_rank_bytes(share, opt.chain);
    need.max_memory =
        m_settings.max_memory.empty() ? 0.0 : parse_bytes(m_settings.max_memory, m_settings.where("max_memory"));
    need.what = scan.name() + " (" + std::to_string(m_info.num_frames) + " frames of " +
                std::to_string(m_info.geometry.frame_size) + "x" + std::to_string(m_info.geometry.frame_size) +
                ", object " + std::to_string(m_info.object_rows) + "x" + std::to_string(m_info.object_cols) +
                " px, " + std::to_string(opt.probe_modes) + " probe mode" + (opt.probe_modes > 1 ? "s, " : ", ") +
                m_settings.engines + ")";
    // Far fields and shifted probes are kept while memory allows: if the
    // default does not fit and the job left low_memory alone, the low-memory
    // mode is switched on when it fits (the decomposition does not change).
    const std::string shortfall = jobs::memory_shortfall(m_comm, need);
    if (!shortfall.empty() && !m_settings.low_memory && !m_settings.origin.count("low_memory")) {
      jobs::ReconstructJob low = m_settings;
      low.low_memory = true;
      std::vector<EngineOptions> low_chain = parse_chain(low.engines, jobs::engine_base(low));
      RankShare low_share = share;
      low_share.shift_quantum = jobs::kLowMemoryShiftQuantum;
      jobs::MemoryNeed low_need = need;
      low_need.bytes = estimate_rank_bytes(low_share, low_chain);
      low_need.what += " in the low-memory mode";
      const std::string low_shortfall = jobs::memory_shortfall(m_comm, low_need);
      // Neither fits: the refusal gives the smaller need, the low-memory mode's.
      PTYCHO_INPUT_ERROR_IF(!low_shortfall.empty(), low_shortfall);
      m_settings.low_memory = true;
      m_settings.origin["low_memory"] = "the default did not fit the memory";
      opt.shift_quantum = jobs::kLowMemoryShiftQuantum;
      m_memory_note = shortfall + "; the low-memory mode fits (about " + format_bytes(low_need.bytes) +
                      " on this rank), so it is on (low_memory = false in a job file refuses instead)";
      opt.chain = low_chain;
      share = low_share;
      need = low_need;
      low_memory_by_itself = true;
    }
    // Far fields are kept while memory allows: in a low-memory mode the job
    // did not ask for, ML keeps those of as many of its frames as a share of
    // what is left holds, and makes the rest again in every pass.
    const auto ml = [](const EngineOptions& e) { return e.name == "ml"; };
    if (low_memory_by_itself && std::any_of(opt.chain.begin(), opt.chain.end(), ml)) {
      const double budget = jobs::kFarFieldShareOfHeadroom * jobs::memory_headroom(m_comm, need);
      for (EngineOptions& e : opt.chain)
        if (ml(e)) e.far_field_budget = budget;
      long kept[2] = {ml_kept_far_fields(share.frames, share.frame_size, share.modes, share.batch, budget),
                      share.frames};
      MPI_Allreduce(MPI_IN_PLACE, kept, 2, MPI_LONG, MPI_SUM, m_comm);
      need.bytes = estimate_rank_bytes(share, opt.chain);
      if (kept[0] == kept[1])
        m_memory_note +=
            "; ml keeps the far fields of all " + std::to_string(kept[1]) + " frames (the memory holds them)";
      else if (kept[0] > 0)
        m_memory_note += "; ml keeps the far fields of " + std::to_string(kept[0]) + " of the " +
                         std::to_string(kept[1]) + " frames and makes the others again in every pass";
    }
    jobs::check_memory(m_comm, need);
  }
  m_recon = std::make_unique<DistributedReconstruction>(m_comm, m_info, opt);
  Dataset data = source.read(m_comm, m_recon->my_frames());
  if (estimated) {
    // The zero-phase estimate is about one scan step across: spread it by a
    // defocus to kEstimatedProbeSteps steps (the same on every rank).
    const double step = mean_nearest_step(m_info.positions);
    double c = 0;
    data.probe = spread_probe(data.probe, kEstimatedProbeSteps * step, &c);
    if (c > 0) {
      char note[160];
      std::snprintf(note, sizeof note, ", spread by a defocus to %.1f px (%.0f mean steps; 90 %% of its power)",
                    probe_diameter(data.probe, 0.9), kEstimatedProbeSteps);
      data.info.probe_source += note;
    }
  }
  m_info = data.info;
  m_recon->set_data(data);
  if (!m_settings.resume.empty()) resume_from(m_settings.resume);
}

Reconstruction::~Reconstruction() {
  m_recon.reset();
  if (m_comm != MPI_COMM_NULL) MPI_Comm_free(&m_comm);
}

int Reconstruction::rank() const {
  int r = 0;
  MPI_Comm_rank(m_comm, &r);
  return r;
}

int Reconstruction::ranks() const {
  int s = 1;
  MPI_Comm_size(m_comm, &s);
  return s;
}

RankLayout Reconstruction::layout() const { return m_recon->layout(); }

void Reconstruction::resume_from(const std::string& path) {
  auto archive = io::open_checkpoint(m_comm, path, layout());
  std::string input;
  archive->text("run/input", input);
  std::error_code ec;
  PTYCHO_INPUT_ERROR_IF(!std::filesystem::equivalent(input, m_input_abs, ec) && input != m_input_abs,
                        path << ": the checkpoint is of the scan " << input << ", this run reconstructs "
                             << m_input_abs << " (remove the checkpoint to start afresh)");
  try {
    m_recon->restore(*archive);
  } catch (const InputError& e) {
    PTYCHO_INPUT_ERROR_IF(true, path << ": " << e.what() << " (remove the checkpoint to start afresh)");
  }
}

RunEnd Reconstruction::run(const RunCallbacks& callbacks) {
  RunControl control;
  control.progress = callbacks.progress;
  control.stop_requested = callbacks.stop_requested;
  const std::string& checkpoint = m_settings.checkpoint;
  if (!checkpoint.empty()) {
    control.checkpoint_every = m_settings.checkpoint_every;
    control.write_checkpoint = [&](const std::function<void(StateArchive&)>& save) {
      const auto t0 = std::chrono::steady_clock::now();
      io::write_checkpoint(m_comm, checkpoint, layout(), [&](StateArchive& ar) {
        save_run_texts(ar);
        save(ar);
      });
      if (callbacks.checkpoint_written)
        callbacks.checkpoint_written(checkpoint, m_recon->iterations_done(),
                                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    };
  }
  try {
    return m_recon->run(control);
  } catch (const NumericalError& e) {
    std::error_code ec;
    const bool kept = !checkpoint.empty() && std::filesystem::exists(checkpoint, ec);
    throw NumericalError(std::string(e.what()) + "; " +
                         (kept ? "the last checkpoint, " + checkpoint + ", is kept"
                               : std::string("no result or checkpoint was written")) +
                         " (lower the step sizes or check the data's counts)");
  }
}

HostCView2 Reconstruction::object(int root) const {
  return gather_tiles(m_comm, m_recon->owned_object(), m_recon->owned(), m_info.object_rows, m_info.object_cols,
                      root);
}

HostCView2 Reconstruction::object_tile() const { return m_recon->owned_object(); }
Rect Reconstruction::object_tile_rect() const { return m_recon->owned(); }
HostCView3 Reconstruction::probe() const { return copy_of(m_recon->probe(), "ptycho::probe_modes"); }
std::vector<Position> Reconstruction::positions() const { return m_recon->all_positions(); }
const std::vector<double>& Reconstruction::cost_history() const { return m_recon->state().cost_history; }
const std::vector<std::string>& Reconstruction::engine_history() const { return m_recon->state().engine_history; }
HostRView2 Reconstruction::background() const { return copy_of(m_recon->background(), "ptycho::background"); }
Mismatch Reconstruction::mismatch() const { return m_recon->mismatch(); }
int Reconstruction::position_verdict() const { return m_recon->state().position_verdict; }
double Reconstruction::position_gain() const { return m_recon->state().position_gain; }
long Reconstruction::iterations_done() const { return m_recon->iterations_done(); }
double Reconstruction::seconds() const { return m_recon->seconds(); }
long Reconstruction::frames_migrated() const { return m_recon->frames_migrated(); }

io::ResultData Reconstruction::result(const std::string& command_line) const {
  io::ResultData result;
  result.layout = layout();
  result.object_tile = m_recon->owned_object();
  result.positions = positions();
  // The modes as written: orthogonal, strongest first (as the mismatch
  // estimate sees them).
  result.probe_modes = probe();
  orthogonalize_modes(result.probe_modes);
  result.pixel_size_m = m_info.geometry.object_pixel_m();
  result.energy_j = m_info.geometry.energy_j;
  result.distance_m = m_info.geometry.distance_m;
  result.grid_offset_row = double(m_info.grid_offset_row);
  result.grid_offset_col = double(m_info.grid_offset_col);
  result.name = std::filesystem::path(m_scan_name).stem().string();
  const bool with_background = m_settings.background != "none";
  if (with_background) result.background = background();
  auto& proc = result.process;
  proc.version = PTYCHO_VERSION;
  proc.command_line = command_line;
  nlohmann::json cfg = jobs::to_json(m_settings);
  cfg["ranks"] = ranks();
  cfg["job_file"] = m_settings.job_file;
  proc.configuration = cfg.dump();
  proc.cost_history = cost_history();
  proc.engine_history = engine_history();
  const double iters = std::max<double>(1, proc.cost_history.size());
  proc.metrics["seconds_total"] = seconds();
  proc.metrics["seconds_per_iteration"] = seconds() / iters;
  proc.metrics["ranks"] = ranks();
  proc.metrics["threads_per_rank"] = double(ExecSpace().concurrency());
  proc.metrics["frames_migrated"] = double(frames_migrated());
  proc.metrics["batch"] = double(m_batch);  // the configuration's batch may be 0: the default, resolved here
  // The estimated model mismatch: what the reconstruction changed in the
  // probe and the positions, and the partial coherence.
  const Mismatch mm = mismatch();
  proc.metrics["probe_error_pct"] = mm.probe_error_pct;
  proc.metrics["probe_residual_pct"] = mm.probe_residual_pct;
  proc.metrics["position_error_nm"] = mm.position_error_nm;
  proc.metrics["partial_coherence_nm"] = mm.partial_coherence_nm;
  if (position_verdict() != 0) {
    proc.metrics["position_test_gain"] = position_gain();
    proc.metrics["position_verdict"] = position_verdict();
  }
  for (size_t k = 0; k < mm.occupancy.size(); ++k)
    proc.metrics["mode_occupancy_" + std::to_string(k)] = mm.occupancy[k];
  if (with_background) proc.metrics["background_mean"] = m_recon->background_mean();
  return result;
}

void Reconstruction::check_output(const std::string& path, const std::string& what, bool also_input) const {
  // An output never replaces the scan; its folder must be writable (rank 0 looks, all raise).
  io::detail::collectively(m_comm, [&] {
    if (rank() != 0) return;
    jobs::PathPlan plan;
    if (!m_scan_in_memory)
      for (const std::string& file : io::scan_files(m_scan_name)) plan.input(file, "the scan");
    plan.output(path, what, also_input);
    plan.check();
    plan.create_folders();
  });
}

void Reconstruction::write_result(const std::string& path, const std::string& command_line) const {
  check_output(path, "the result");
  io::write_result(m_comm, path, result(command_line));
}

void Reconstruction::write_checkpoint(const std::string& path) const {
  check_output(path, "the checkpoint", true);
  io::write_checkpoint(m_comm, path, layout(), [&](StateArchive& ar) {
    save_run_texts(ar);
    m_recon->save(ar);
  });
}

void Reconstruction::save_run_texts(StateArchive& ar) const {
  std::string input = m_input_abs;
  ar.text("run/input", input);
  std::string low = m_settings.low_memory ? "true" : "false";  // read before a resume is set up
  ar.text("run/low_memory", low);
}

void Reconstruction::write_previews(const std::string& folder) const {
  const HostCView2 whole = object(0);
  const HostCView3 modes = probe();
  io::detail::collectively(m_comm, [&] {
    if (rank() == 0) ptycho::write_previews(folder, whole, modes, cost_history(), engine_history());
  });
}

void write_previews(const std::string& folder, const HostCView2& object, const HostCView3& probe_modes,
                    const std::vector<double>& costs, const std::vector<std::string>& engines) {
  io::write_previews(folder, object, probe_modes);
  io::write_cost_curve((std::filesystem::path(folder) / "cost.png").string(), costs, engines);
}

}  // namespace ptycho
