#include "ptycho/core/engine.hpp"

#include "engines.hpp"
#include "ptycho/core/error.hpp"

#include <algorithm>

namespace ptycho {

const std::vector<std::string>& engine_names() {
  static const std::vector<std::string> names{"dm", "raar", "sdr", "epie", "rpie", "mpie", "ml", "lsqml"};
  return names;
}

namespace {
EngineFactory g_learned_factory = nullptr;
}  // namespace

void set_learned_engine_factory(EngineFactory factory) { g_learned_factory = factory; }

EngineSupport engine_support(const std::string& name) {
  EngineSupport s;
  if (name == kLearnedEngine) return s;
  // Every engine refines the probe (PIE family, sDR and LSQ-ML through their
  // own probe updates) and the detector background (background.hpp); only
  // those built on PositionRefiner move positions.
  s.probe = true;
  s.background = true;
  if (name == "dm" || name == "raar" || name == "ml") {
    s.positions = true;
  } else if (!(name == "sdr" || name == "epie" || name == "rpie" || name == "mpie" || name == "lsqml")) {
    std::string known;
    for (const auto& n : engine_names()) known += (known.empty() ? "" : ", ") + n;
    PTYCHO_INPUT_ERROR_IF(true, "unknown engine '" << name << "' (known: " << known << ")");
  }
  return s;
}

std::unique_ptr<Engine> make_engine(const EngineOptions& opt, Workspace& ws, const Collective& coll,
                                    ReconState& state) {
  if (opt.name == "dm" || opt.name == "raar") return make_dm_engine(opt, ws, coll, state);
  if (opt.name == "epie" || opt.name == "rpie" || opt.name == "mpie" || opt.name == "sdr") return make_pie_engine(opt, ws, coll, state);
  if (opt.name == "ml") return make_ml_engine(opt, ws, coll, state);
  if (opt.name == "lsqml") return make_lsqml_engine(opt, ws, coll, state);
  if (opt.name == kLearnedEngine) {
    PTYCHO_INPUT_ERROR_IF(!g_learned_factory, "engine 'nn' needs the learned plugin (libptycho_learned.so), which "
                                              "is not loaded: this build has no libtorch, or the plugin was not "
                                              "found (learned/README.md)");
    return g_learned_factory(opt, ws, coll, state);
  }
  std::string known;
  for (const auto& n : engine_names()) known += (known.empty() ? "" : ", ") + n;
  PTYCHO_INPUT_ERROR_IF(true, "unknown engine '" << opt.name << "' (known: " << known << ")");
}

}  // namespace ptycho
