#pragma once
/// `ptycho train`: supervised pretraining on scans simulated on the fly
/// (synth.hpp), data-parallel over the ranks of a communicator: each rank
/// draws its own samples, and the gradients are averaged with one
/// MPI_Allreduce per step. Checkpoints (the model and the optimiser state)
/// let a stopped training go on.
#include "ptycho/learned/plugin_api.hpp"

namespace ptycho::learned {

TrainSummary train(MPI_Comm comm, const TrainOptions& options,
                   const std::function<void(const TrainProgress&)>& progress);

}  // namespace ptycho::learned
