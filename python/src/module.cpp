// _ptycho: the compiled half of the Python module `ptycho` (python/ptycho/
// __init__.py is the other). A thin layer over the library API
// (ptycho/jobs/reconstruction.hpp, job.hpp, settings.hpp): numpy arrays in
// and out (copies), settings as keyword arguments checked by the settings
// table, the GIL released while iterating.
//
// Runtime: MPI is initialised at import unless mpi4py (or the host program)
// already did; Kokkos likewise. shutdown(), registered with atexit by
// __init__.py, frees every object that holds Kokkos memory, then finalises
// Kokkos, and MPI if this module initialised it.
#include "ptycho/core/error.hpp"
#include "ptycho/jobs/evaluate.hpp"
#include "ptycho/jobs/job.hpp"
#include "ptycho/jobs/reconstruction.hpp"
#include "ptycho/jobs/settings.hpp"
#include "ptycho/jobs/simulate.hpp"

#include <Kokkos_Core.hpp>
#include <mpi.h>
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <complex>
#include <cstring>
#include <memory>
#include <set>
#include <string>

namespace py = pybind11;

namespace {

using ptycho::HostCView2;
using ptycho::HostCView3;
using ptycho::HostRView2;
using ptycho::HostRView3;

/// Something that holds Kokkos memory and must let go of it before Kokkos is finalised.
struct Holder {
  Holder();
  virtual ~Holder();
  virtual void release() = 0;
};

struct Runtime {
  bool mpi_ours = false;
  bool kokkos_ours = false;
  std::set<Holder*> live;
};

Runtime& runtime() {
  static Runtime r;
  return r;
}

Holder::Holder() { runtime().live.insert(this); }
Holder::~Holder() { runtime().live.erase(this); }

void init_runtime() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    runtime().mpi_ours = true;
  }
  if (!Kokkos::is_initialized()) {
    setenv("KOKKOS_DISABLE_WARNINGS", "1", 0);
    Kokkos::initialize();
    runtime().kokkos_ours = true;
  }
}

void shutdown_runtime() {
  for (Holder* h : std::set<Holder*>(runtime().live)) h->release();
  if (runtime().kokkos_ours && Kokkos::is_initialized()) Kokkos::finalize();
  runtime().kokkos_ours = false;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (runtime().mpi_ours && !finalized) MPI_Finalize();
  runtime().mpi_ours = false;
}

void require_runtime() {
  PTYCHO_THROW_IF(!Kokkos::is_initialized(), "ptycho: the runtime is shut down (the interpreter is exiting)");
}

/// MPI_COMM_WORLD for -1, else the communicator of a Fortran handle (mpi4py's comm.py2f()).
MPI_Comm communicator(long long handle) {
  return handle < 0 ? MPI_COMM_WORLD : MPI_Comm_f2c(static_cast<MPI_Fint>(handle));
}

/// A Python value as a setting's value; TypeError for other types.
ptycho::jobs::SettingValue setting_value(const std::string& key, const py::handle& v) {
  if (py::isinstance<py::bool_>(v)) return v.cast<bool>();
  if (py::isinstance<py::int_>(v)) {
    try {
      return v.cast<long long>();
    } catch (const py::cast_error&) {
      throw ptycho::InputError("keyword argument: " + key + ": the integer " + std::string(py::str(v)) +
                               " is out of range");
    }
  }
  if (py::isinstance<py::float_>(v)) return v.cast<double>();
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  throw py::type_error("keyword argument " + key + ": expected a bool, int, float or str, got " +
                       std::string(py::str(v.get_type().attr("__name__"))));
}

/// Settings from keyword arguments, each checked by the settings table.
ptycho::Settings settings_from(const py::dict& kwargs) {
  ptycho::Settings s;
  for (const auto& [k, v] : kwargs) {
    const std::string key = k.cast<std::string>();
    ptycho::jobs::apply_keyword(s, key, setting_value(key, v), "keyword argument");
  }
  return s;
}

// ---- arrays

py::array_t<std::complex<float>> to_numpy(const HostCView2& v) {
  py::array_t<std::complex<float>> out({py::ssize_t(v.extent(0)), py::ssize_t(v.extent(1))});
  for (size_t r = 0; r < v.extent(0); ++r)
    std::memcpy(static_cast<void*>(out.mutable_data(r, 0)), &v(r, 0), v.extent(1) * sizeof(std::complex<float>));
  return out;
}

py::array_t<std::complex<float>> to_numpy(const HostCView3& v) {
  py::array_t<std::complex<float>> out(
      {py::ssize_t(v.extent(0)), py::ssize_t(v.extent(1)), py::ssize_t(v.extent(2))});
  std::memcpy(static_cast<void*>(out.mutable_data()), v.data(), v.size() * sizeof(std::complex<float>));
  return out;
}

py::array_t<float> to_numpy(const HostRView2& v) {
  py::array_t<float> out({py::ssize_t(v.extent(0)), py::ssize_t(v.extent(1))});
  for (size_t r = 0; r < v.extent(0); ++r) std::memcpy(out.mutable_data(r, 0), &v(r, 0), v.extent(1) * sizeof(float));
  return out;
}

py::array_t<double> positions_to_numpy(const std::vector<ptycho::Position>& p) {
  py::array_t<double> out({py::ssize_t(p.size()), py::ssize_t(2)});
  for (size_t i = 0; i < p.size(); ++i) {
    *out.mutable_data(i, 0) = p[i].row;
    *out.mutable_data(i, 1) = p[i].col;
  }
  return out;
}

py::dict info_to_dict(const ptycho::ScanInfo& info) {
  py::dict d;
  d["source"] = info.source;
  d["frames"] = info.num_frames;
  d["frame_size"] = info.geometry.frame_size;
  d["energy_ev"] = info.geometry.energy_ev();
  d["distance_m"] = info.geometry.distance_m;
  d["detector_pixel_m"] = py::make_tuple(info.geometry.pixel_y_m, info.geometry.pixel_x_m);
  d["object_pixel_m"] = info.geometry.object_pixel_m();
  d["object_shape"] = py::make_tuple(info.object_rows, info.object_cols);
  d["positions_px"] = positions_to_numpy(info.positions);
  d["probe_source"] = info.probe_source;
  return d;
}

// ---- the wrapped classes

struct PyScan final : Holder {
  std::unique_ptr<ptycho::Scan> scan;
  explicit PyScan(ptycho::Scan s) : scan(std::make_unique<ptycho::Scan>(std::move(s))) {}
  void release() override { scan.reset(); }
  const ptycho::Scan& get() const {
    PTYCHO_THROW_IF(!scan, "ptycho.Scan: released (the interpreter is exiting)");
    return *scan;
  }
};

std::shared_ptr<PyScan> scan_from_arrays(py::array_t<float, py::array::c_style | py::array::forcecast> frames,
                                         py::array_t<double, py::array::c_style | py::array::forcecast> positions_m,
                                         double energy_ev, double distance_m, double pixel_y_m, double pixel_x_m,
                                         py::object mask, py::object probe, const std::string& name) {
  require_runtime();
  PTYCHO_INPUT_ERROR_IF(frames.ndim() != 3, name << ": frames: expected an array of N x M x M counts, got "
                                                 << frames.ndim() << " dimensions");
  PTYCHO_INPUT_ERROR_IF(positions_m.ndim() != 2 || positions_m.shape(1) != 2,
                        name << ": positions_m: expected an array of N x 2 positions (y, x) [m]");
  ptycho::ScanArrays a;
  a.name = name;
  a.frames = HostRView3(Kokkos::view_alloc(std::string("ptycho::py_frames"), Kokkos::WithoutInitializing),
                        frames.shape(0), frames.shape(1), frames.shape(2));
  std::memcpy(a.frames.data(), frames.data(), a.frames.size() * sizeof(float));
  for (py::ssize_t j = 0; j < positions_m.shape(0); ++j) {
    a.y_m.push_back(*positions_m.data(j, 0));
    a.x_m.push_back(*positions_m.data(j, 1));
  }
  a.geometry.energy_j = energy_ev * ptycho::kJoulePerEv;
  a.geometry.distance_m = distance_m;
  a.geometry.pixel_y_m = pixel_y_m;
  a.geometry.pixel_x_m = pixel_x_m;
  if (!mask.is_none()) {
    auto m = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>::ensure(mask);
    PTYCHO_INPUT_ERROR_IF(!m || m.ndim() != 2, name << ": mask: expected an M x M array (nonzero: invalid pixel)");
    a.mask = ptycho::View2<std::uint8_t, ptycho::HostSpace>("ptycho::py_mask", m.shape(0), m.shape(1));
    std::memcpy(a.mask.data(), m.data(), a.mask.size());
  }
  if (!probe.is_none()) {
    auto p = py::array_t<std::complex<float>, py::array::c_style | py::array::forcecast>::ensure(probe);
    PTYCHO_INPUT_ERROR_IF(!p || p.ndim() != 2, name << ": probe: expected an M x M complex array");
    a.probe = HostCView2("ptycho::py_probe", p.shape(0), p.shape(1));
    std::memcpy(static_cast<void*>(a.probe.data()), p.data(), a.probe.size() * sizeof(std::complex<float>));
  }
  return std::make_shared<PyScan>(ptycho::Scan::from_arrays(std::move(a)));
}

struct PyReconstruction final : Holder {
  std::unique_ptr<ptycho::Reconstruction> r;
  void release() override { r.reset(); }
  ptycho::Reconstruction& get() const {
    PTYCHO_THROW_IF(!r, "ptycho.Reconstruction: released (the interpreter is exiting)");
    return *r;
  }
};

std::shared_ptr<PyReconstruction> make_reconstruction(const PyScan& scan, long long comm, const py::dict& kwargs) {
  require_runtime();
  ptycho::Settings s = settings_from(kwargs);
  ptycho::jobs::apply_preset(s);
  auto out = std::make_shared<PyReconstruction>();
  const ptycho::Scan& sc = scan.get();
  py::gil_scoped_release release;
  out->r = std::make_unique<ptycho::Reconstruction>(communicator(comm), sc, s);
  return out;
}

/// A stop check for a run without the GIL: takes the GIL, lets Python handle
/// pending signals, and sets `interrupted` (and says stop) once Ctrl-C came.
std::function<bool()> interrupt_check(bool& interrupted) {
  return [&interrupted] {
    py::gil_scoped_acquire acquire;
    if (PyErr_CheckSignals() != 0) {
      PyErr_Clear();
      interrupted = true;
    }
    return interrupted;
  };
}

py::dict progress_to_dict(const ptycho::Progress& p) {
  py::dict d;
  d["engine"] = p.engine;
  d["iteration"] = p.iteration;
  d["iterations"] = p.iterations;
  d["total_done"] = p.total_done;
  d["total"] = p.total;
  d["cost"] = p.cost;
  d["seconds_per_iteration"] = p.seconds_per_iteration;
  d["eta_seconds"] = p.eta_seconds;
  return d;
}

/// Runs the chain without the GIL. `progress(dict)` is called after every
/// iteration (with the GIL). Ctrl-C stops the run after the iteration
/// (writing a checkpoint if the settings name one) and raises KeyboardInterrupt.
std::string run_reconstruction(PyReconstruction& self, py::object progress) {
  ptycho::Reconstruction& r = self.get();
  bool interrupted = false;
  std::unique_ptr<py::error_already_set> callback_error;
  ptycho::RunCallbacks cb;
  cb.progress = [&](const ptycho::Progress& p) {
    if (progress.is_none() || callback_error) return;
    py::gil_scoped_acquire acquire;
    try {
      progress(progress_to_dict(p));
    } catch (py::error_already_set& e) {
      callback_error = std::make_unique<py::error_already_set>(std::move(e));
    }
  };
  const auto ctrl_c = interrupt_check(interrupted);
  cb.stop_requested = [&] { return ctrl_c() || callback_error != nullptr; };
  ptycho::RunEnd end;
  {
    py::gil_scoped_release release;
    end = r.run(cb);
  }
  if (callback_error) throw std::move(*callback_error);
  if (interrupted) {
    PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
  return end == ptycho::RunEnd::finished ? "finished" : "stopped";
}

int run_job(const py::dict& kwargs, const std::string& job_file, long long comm, const std::string& command_line) {
  require_runtime();
  ptycho::Settings s = job_file.empty() ? ptycho::Settings{} : ptycho::jobs::read_job_file(job_file);
  for (const auto& [k, v] : kwargs) {
    const std::string key = k.cast<std::string>();
    ptycho::jobs::apply_keyword(s, key, setting_value(key, v), "keyword argument");
  }
  PTYCHO_INPUT_ERROR_IF(s.input.empty(), "run_job: no input: pass input=\"scan.cxi\" or a job file that names it");
  ptycho::jobs::complete_job(s);
  ptycho::jobs::JobHooks hooks;
  hooks.command_line = command_line;
  bool interrupted = false;
  hooks.stop_requested = interrupt_check(interrupted);
  hooks.stop_reason = [] { return std::string("KeyboardInterrupt"); };
  int code = 0;
  {
    py::gil_scoped_release release;
    code = ptycho::jobs::run_job(communicator(comm), s, hooks);
  }
  std::fflush(stdout);
  return code;
}


/// `ptycho simulate`'s options as keywords (the option names with _ for -).
std::string simulate(const std::string& output, const std::string& truth, const py::dict& options) {
  require_runtime();
  ptycho::jobs::SimulateJob j;
  j.output = output;
  j.truth = truth;
  auto& o = j.opt;
  for (const auto& [k, v] : options) {
    const std::string key = k.cast<std::string>();
    try {
      if (key == "object_size") o.object_size = v.cast<int>();
      else if (key == "probe_size") o.probe_size = v.cast<int>();
      else if (key == "step") o.step = v.cast<double>();
      else if (key == "photons") o.photons = v.cast<double>();
      else if (key == "seed") o.seed = v.cast<std::uint64_t>();
      else if (key == "probe_error") o.probe_error_pct = v.cast<double>();
      else if (key == "position_error") o.position_error_nm = v.cast<double>();
      else if (key == "partial_coherence") o.partial_coherence_nm = v.cast<double>();
      else if (key == "energy") o.energy_kev = v.cast<double>();
      else if (key == "pixel_size") o.object_pixel_m = v.cast<double>();
      else if (key == "background") o.background = v.cast<double>();
      else if (key == "scan") j.scan = v.cast<std::string>();
      else if (key == "amplitude_image") j.amplitude_png = v.cast<std::string>();
      else if (key == "phase_image") j.phase_png = v.cast<std::string>();
      else if (key == "mask") j.mask = v.cast<std::string>();
      else if (key == "background_profile") j.background_profile = v.cast<std::string>();
      else
        throw ptycho::InputError("simulate: unknown option '" + key +
                                 "' (options: object_size, probe_size, step, photons, seed, probe_error, "
                                 "position_error, partial_coherence, scan, energy, pixel_size, amplitude_image, "
                                 "phase_image, mask, background, background_profile)");
    } catch (const py::cast_error&) {
      throw ptycho::InputError("simulate: " + key + ": a value of the wrong type, " + std::string(py::repr(v)));
    }
  }
  py::gil_scoped_release release;
  return ptycho::jobs::simulate_job(j);
}

py::dict evaluate(const std::string& result, const std::string& truth, const std::string& data) {
  require_runtime();
  ptycho::jobs::Evaluation e;
  {
    py::gil_scoped_release release;
    e = ptycho::jobs::evaluate({result, truth, data});
  }
  const ptycho::BenchmarkScore& s = e.score;
  py::dict d;
  d["psnr_amp"] = s.psnr_amp;
  d["ssim_amp"] = s.ssim_amp;
  d["psnr_phase"] = s.psnr_phase;
  d["ssim_phase"] = s.ssim_phase;
  d["psnr"] = s.psnr;
  d["ssim"] = s.ssim;
  d["shift"] = py::make_tuple(s.shift.row, s.shift.col);
  d["score_standard"] = s.score_standard;
  d["consistency"] = s.consistency;
  d["score_blind"] = s.score_blind;
  d["blind"] = s.blind;
  d["notes"] = e.notes;
  return d;
}

}  // namespace

PYBIND11_MODULE(_ptycho, m) {
  m.doc() = "ptycho's compiled core; use the package `ptycho`";
  init_runtime();
  m.def("shutdown", &shutdown_runtime, "frees everything and finalises Kokkos (and MPI if ptycho started it)");
  m.def("version", [] { return std::string(PTYCHO_VERSION); });

  static py::exception<ptycho::InputError> input_error(m, "InputError", PyExc_ValueError);
  static py::exception<ptycho::NumericalError> numerical_error(m, "NumericalError", PyExc_ArithmeticError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ptycho::InputError& e) {
      PyErr_SetString(input_error.ptr(), e.what());
    } catch (const ptycho::NumericalError& e) {
      PyErr_SetString(numerical_error.ptr(), e.what());
    }
  });

  m.def("settings_table", [] {
    const nlohmann::json defaults = ptycho::jobs::to_json(ptycho::Settings{});
    py::list out;
    for (const auto& key : ptycho::jobs::job_file_keys())
      out.append(py::make_tuple(key, defaults[key].dump(), ptycho::jobs::setting_help(key)));
    return out;
  });
  m.def("check_settings", [](const py::dict& kwargs) {
    ptycho::Settings s = settings_from(kwargs);
    ptycho::jobs::apply_preset(s);
    ptycho::jobs::check_settings(s);
    return py::str(ptycho::jobs::to_json(s).dump());
  });

  py::class_<PyScan, std::shared_ptr<PyScan>>(m, "Scan")
      .def_static(
          "from_file", [](const std::string& path) { return std::make_shared<PyScan>(ptycho::Scan::from_file(path)); })
      .def_static("from_arrays", &scan_from_arrays, py::arg("frames"), py::arg("positions_m"), py::arg("energy_ev"),
                  py::arg("distance_m"), py::arg("pixel_y_m"), py::arg("pixel_x_m"), py::arg("mask") = py::none(),
                  py::arg("probe") = py::none(), py::arg("name") = "arrays")
      .def_property_readonly("name", [](const PyScan& s) { return s.get().name(); })
      .def_property_readonly("in_memory", [](const PyScan& s) { return s.get().in_memory(); })
      .def("info", [](const PyScan& s) { return info_to_dict(s.get().info()); });

  py::class_<PyReconstruction, std::shared_ptr<PyReconstruction>>(m, "Reconstruction")
      .def(py::init(&make_reconstruction), py::arg("scan"), py::arg("comm"), py::arg("settings"))
      .def("run", &run_reconstruction, py::arg("progress") = py::none())
      .def_property_readonly("rank", [](const PyReconstruction& s) { return s.get().rank(); })
      .def_property_readonly("ranks", [](const PyReconstruction& s) { return s.get().ranks(); })
      .def_property_readonly("info", [](const PyReconstruction& s) { return info_to_dict(s.get().info()); })
      .def_property_readonly("settings",
                             [](const PyReconstruction& s) { return ptycho::jobs::to_json(s.get().settings()).dump(); })
      .def("object",
           [](const PyReconstruction& s, int root) -> py::object {
             HostCView2 o;
             {
               py::gil_scoped_release release;
               o = s.get().object(root);
             }
             if (s.get().rank() != root) return py::none();
             return to_numpy(o);
           },
           py::arg("root") = 0)
      .def("object_tile",
           [](const PyReconstruction& s) {
             const ptycho::Rect r = s.get().object_tile_rect();
             return py::make_tuple(to_numpy(s.get().object_tile()), py::make_tuple(r.row0, r.col0));
           })
      .def_property_readonly("probe", [](const PyReconstruction& s) { return to_numpy(s.get().probe()); })
      .def("positions", [](const PyReconstruction& s) { return positions_to_numpy(s.get().positions()); })
      .def_property_readonly("cost_history", [](const PyReconstruction& s) { return s.get().cost_history(); })
      .def_property_readonly("engine_history", [](const PyReconstruction& s) { return s.get().engine_history(); })
      .def_property_readonly("background", [](const PyReconstruction& s) { return to_numpy(s.get().background()); })
      .def("mismatch",
           [](const PyReconstruction& s) {
             const ptycho::Mismatch mm = s.get().mismatch();
             py::dict d;
             d["probe_error_pct"] = mm.probe_error_pct;
             d["probe_residual_pct"] = mm.probe_residual_pct;
             d["position_error_nm"] = mm.position_error_nm;
             d["partial_coherence_nm"] = mm.partial_coherence_nm;
             d["mode_occupancy"] = mm.occupancy;
             return d;
           })
      .def_property_readonly("iterations_done", [](const PyReconstruction& s) { return s.get().iterations_done(); })
      .def_property_readonly("seconds", [](const PyReconstruction& s) { return s.get().seconds(); })
      .def(
          "write_result",
          [](const PyReconstruction& s, const std::string& path, const std::string& command_line) {
            py::gil_scoped_release release;
            s.get().write_result(path, command_line);
          },
          py::arg("path"), py::arg("command_line") = "")
      .def(
          "write_checkpoint",
          [](const PyReconstruction& s, const std::string& path) {
            py::gil_scoped_release release;
            s.get().write_checkpoint(path);
          },
          py::arg("path"))
      .def(
          "write_previews",
          [](const PyReconstruction& s, const std::string& folder) {
            py::gil_scoped_release release;
            s.get().write_previews(folder);
          },
          py::arg("folder"));

  m.def("simulate", &simulate, py::arg("output"), py::arg("truth"), py::arg("options"));
  m.def("evaluate", &evaluate, py::arg("result"), py::arg("truth"), py::arg("data"));
  m.def("run_job", &run_job, py::arg("settings"), py::arg("job_file"), py::arg("comm"), py::arg("command_line"));
}
