#pragma once
/// The learned engines from the library's side: loading the plugin
/// (learned/include/ptycho/learned/plugin_api.hpp) on demand, the shipped
/// models, and training. Nothing here needs libtorch: the plugin is
/// dlopen'ed the first time a run asks for a network, so runs without one
/// never load libtorch.
#include "ptycho/learned/plugin_api.hpp"

#include <mpi.h>

#include <string>
#include <vector>

namespace ptycho::jobs {

/// Whether this build made the plugin (it was configured with libtorch).
bool learned_plugin_built();

/// The plugin, loaded once per process (from $PTYCHO_LEARNED_PLUGIN if set,
/// else from the build tree or the install tree), with the nn engine's
/// factory registered in core. Throws InputError saying what is missing.
const learned::PluginApi& learned_plugin();

/// The shipped model for frames of `frame_size` (learned/models), or an
/// InputError naming what exists.
std::string default_model(int frame_size);

/// For a chain with an nn stage (collective over comm): loads the plugin,
/// fills in the default model, and checks the model file and its frame size
/// on rank 0; every rank gets the same InputError. Does nothing otherwise.
void prepare_learned(MPI_Comm comm, std::vector<EngineOptions>& chain, int frame_size);

/// True if `path` starts like a model file (a zip archive, as libtorch
/// writes them); serial, false for a missing file. Needs no plugin.
bool looks_like_model_file(const std::string& path);

/// Trains a network (collective; see learned::TrainOptions).
learned::TrainSummary train_network(MPI_Comm comm, const learned::TrainOptions& options,
                                    const std::function<void(const learned::TrainProgress&)>& progress);

}  // namespace ptycho::jobs
