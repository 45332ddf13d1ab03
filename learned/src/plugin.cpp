// The plugin's entry point (plugin_api.hpp).
#include "network.hpp"
#include "nn_engine.hpp"
#include "train.hpp"

#include <torch/version.h>

namespace {

const ptycho::learned::PluginApi kApi = [] {
  ptycho::learned::PluginApi api;
  api.abi = ptycho::learned::kPluginAbi;
  api.torch_version = TORCH_VERSION;
  api.make_engine = &ptycho::learned::make_nn_engine;
  api.inspect_model = &ptycho::learned::inspect_model;
  api.train = &ptycho::learned::train;
  return api;
}();

}  // namespace

extern "C" __attribute__((visibility("default"))) const ptycho::learned::PluginApi* ptycho_learned_plugin() {
  return &kApi;
}
