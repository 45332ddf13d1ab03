#include "ptycho/jobs/learned.hpp"

#include "ptycho/core/error.hpp"
#include "ptycho/io/mpi_detail.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>

#ifndef PTYCHO_HAVE_TORCH
#define PTYCHO_HAVE_TORCH 0
#endif

namespace ptycho::jobs {

namespace {

/// Where the plugin may be, in order.
std::vector<std::string> plugin_candidates() {
  if (const char* env = std::getenv("PTYCHO_LEARNED_PLUGIN"); env && *env) return {env};
  std::vector<std::string> out;
#ifdef PTYCHO_LEARNED_BUILD_PLUGIN
  out.push_back(PTYCHO_LEARNED_BUILD_PLUGIN);
#endif
#ifdef PTYCHO_LEARNED_INSTALL_PLUGIN
  out.push_back(PTYCHO_LEARNED_INSTALL_PLUGIN);
#endif
  return out;
}

const learned::PluginApi* load() {
  PTYCHO_INPUT_ERROR_IF(!PTYCHO_HAVE_TORCH && !std::getenv("PTYCHO_LEARNED_PLUGIN"),
                        "the learned engines need libtorch, and this ptycho was built without it (install "
                        "libtorch-dev and rebuild; see learned/README.md)");
  std::string tried;
  for (const std::string& path : plugin_candidates()) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      tried += (tried.empty() ? "" : ", ") + path + " (missing)";
      continue;
    }
    // libtorch parallelises its own loops; OpenBLAS threads under it would
    // oversubscribe the cores (read when the library loads; a user's setting wins).
    ::setenv("OPENBLAS_NUM_THREADS", "1", 0);
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      PTYCHO_INPUT_ERROR_IF(true, path << ": cannot load the learned plugin: " << (why ? why : "unknown error"));
    }
    using Entry = const learned::PluginApi* (*)();
    auto entry = reinterpret_cast<Entry>(::dlsym(handle, "ptycho_learned_plugin"));
    PTYCHO_INPUT_ERROR_IF(!entry, path << ": not a ptycho learned plugin (no ptycho_learned_plugin)");
    const learned::PluginApi* api = entry();
    PTYCHO_INPUT_ERROR_IF(!api || api->abi != learned::kPluginAbi,
                          path << ": a learned plugin of another ptycho build (interface " << (api ? api->abi : -1)
                               << ", this one needs " << learned::kPluginAbi << ")");
    return api;  // never unloaded: libtorch does not survive dlclose
  }
  PTYCHO_INPUT_ERROR_IF(
      true, "the learned plugin libptycho_learned.so was not found (tried " << tried << "; set PTYCHO_LEARNED_PLUGIN)");
}

}  // namespace

bool learned_plugin_built() { return PTYCHO_HAVE_TORCH; }

bool looks_like_model_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  f.read(magic, 4);
  return f.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

const learned::PluginApi& learned_plugin() {
  static std::once_flag once;
  static const learned::PluginApi* api = nullptr;
  static std::string error;
  std::call_once(once, [] {
    try {
      api = load();
      set_learned_engine_factory(api->make_engine);
    } catch (const InputError& e) {
      error = e.what();
    }
  });
  PTYCHO_INPUT_ERROR_IF(!api, error);
  return *api;
}

std::string default_model(int frame_size) {
  const std::string name = "default_" + std::to_string(frame_size) + ".pt";
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("PTYCHO_MODELS_DIR"); env && *env) dirs.push_back(env);
#ifdef PTYCHO_MODELS_SOURCE_DIR
  dirs.push_back(PTYCHO_MODELS_SOURCE_DIR);
#endif
#ifdef PTYCHO_MODELS_INSTALL_DIR
  dirs.push_back(PTYCHO_MODELS_INSTALL_DIR);
#endif
  std::string tried;
  for (const std::string& d : dirs) {
    const std::string path = d + "/" + name;
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) return path;
    tried += (tried.empty() ? "" : ", ") + d;
  }
  PTYCHO_INPUT_ERROR_IF(true, "no shipped model for frames of " << frame_size << "x" << frame_size << " (looked for "
                                                                << name << " in " << tried
                                                                << "); name one with nn:MODEL, or train one with "
                                                                   "ptycho train --frame-size "
                                                                << frame_size);
}

void prepare_learned(MPI_Comm comm, std::vector<EngineOptions>& chain, int frame_size) {
  bool any = false;
  for (const EngineOptions& e : chain) any |= e.name == kLearnedEngine;
  if (!any) return;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  io::detail::collectively(comm, [&] {
    const learned::PluginApi& api = learned_plugin();
    for (EngineOptions& e : chain) {
      if (e.name != kLearnedEngine) continue;
      if (e.model.empty()) e.model = default_model(frame_size);
      if (rank != 0) continue;
      const learned::ModelInfo info = api.inspect_model(e.model);
      PTYCHO_INPUT_ERROR_IF(info.frame_size != frame_size,
                            e.model << ": the network takes frames of " << info.frame_size << "x" << info.frame_size
                                    << ", this scan's are " << frame_size << "x" << frame_size);
    }
  });
}

learned::TrainSummary train_network(MPI_Comm comm, const learned::TrainOptions& options,
                                    const std::function<void(const learned::TrainProgress&)>& progress) {
  const learned::PluginApi* api = nullptr;
  io::detail::collectively(comm, [&] { api = &learned_plugin(); });
  return api->train(comm, options, progress);
}

}  // namespace ptycho::jobs
