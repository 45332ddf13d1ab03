#pragma once
// Factories of the individual engines (internal to core/).
#include "ptycho/core/engine.hpp"

namespace ptycho {
std::unique_ptr<Engine> make_ml_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
std::unique_ptr<Engine> make_dm_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
std::unique_ptr<Engine> make_pie_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
std::unique_ptr<Engine> make_lsqml_engine(const EngineOptions&, Workspace&, const Collective&, ReconState&);
}  // namespace ptycho
