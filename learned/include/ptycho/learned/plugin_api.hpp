#pragma once
/// The learned engines' plugin: what the rest of ptycho sees of it.
///
/// Everything that needs libtorch lives in one shared module,
/// libptycho_learned.so (learned/src), loaded with dlopen only when a run
/// asks for a network (an `nn` stage in the chain, `ptycho train`). A run
/// that uses no network never loads libtorch: it pays neither its start-up
/// time nor its memory. This header needs no libtorch; jobs/ includes it
/// to load the plugin (jobs/include/ptycho/jobs/learned.hpp).
///
/// The plugin exports one C symbol, ptycho_learned_plugin(), which returns
/// a PluginApi. Its abi must equal kPluginAbi: a plugin from another build
/// is refused with a clear error instead of crashing.
#include "ptycho/core/engine.hpp"

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ptycho::learned {

/// Changes whenever PluginApi or the structs below change.
constexpr int kPluginAbi = 3;

/// What a model file says about itself (learned/README.md, "Model files").
struct ModelInfo {
  std::string path;
  std::string architecture;    ///< e.g. "unet16"
  int frame_size = 0;          ///< M the network takes
  /// What the network sees: "frame", one frame's single-frame estimate
  /// (learned/src/features.hpp); "scan", a frame's window of a multi-frame
  /// ML estimate (learned/src/scan_features.hpp).
  std::string features = "frame";
  int feature_iterations = 0;  ///< iterations of that estimate: error reduction ("frame") or ML ("scan")
  long parameters = 0;
  std::string description;  ///< the training set, the command that trained it
  std::string version;      ///< ptycho version that wrote it
  long steps = 0;           ///< training steps done
  double loss = 0;          ///< last training loss
};

/// `ptycho train` (one call, collective over the communicator's ranks).
struct TrainOptions {
  std::string output;       ///< model file to write (atomically)
  std::string description;  ///< recorded in the model (e.g. the command line), before the training set's
  std::string init;         ///< start from this model; empty: a new network
  std::string architecture = "unet16";
  int frame_size = 64;          ///< M
  std::string features = "scan";  ///< "frame" or "scan" (ModelInfo::features)
  int feature_iterations = 60;    ///< iterations of the features' estimate
  long steps = 2000;            ///< optimiser steps (over all ranks)
  int batch = 32;               ///< samples per step per rank
  double learning_rate = 2e-3;
  double minutes = 0;  ///< > 0: stop after this wall time (the model is still written)
  std::uint64_t seed = 1;
  std::string checkpoint;  ///< written every checkpoint_every steps; resumed from if present
  long checkpoint_every = 200;
  int threads = 0;  ///< torch threads per rank; 0: the cores per rank
};

struct TrainProgress {
  long step = 0, steps = 0;
  double loss = 0;
  double seconds = 0;
  double samples_per_second = 0;
};

/// What a training run reports (every rank gets the same).
struct TrainSummary {
  long steps = 0;
  double first_loss = 0;  ///< mean loss over the first steps
  double last_loss = 0;   ///< mean loss over the last steps
  double seconds = 0;
};

struct PluginApi {
  int abi = 0;
  const char* torch_version = "";
  /// The `nn` engine (EngineOptions::model names the model file).
  std::unique_ptr<Engine> (*make_engine)(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                         ReconState& state) = nullptr;
  /// Reads a model file's metadata, checking it (throws InputError).
  ModelInfo (*inspect_model)(const std::string& path) = nullptr;
  /// Trains (collective over comm); `progress` is called on every rank.
  TrainSummary (*train)(MPI_Comm comm, const TrainOptions& options,
                        const std::function<void(const TrainProgress&)>& progress) = nullptr;
};

}  // namespace ptycho::learned

extern "C" {
/// The plugin's one entry point.
const ptycho::learned::PluginApi* ptycho_learned_plugin();
}
