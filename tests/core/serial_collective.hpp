#pragma once
// The Collective of one rank holding the whole object, for testing core/
// without MPI: every operation is the identity.
#include "ptycho/core/collective.hpp"

namespace ptycho::test {

using SerialCollective = OneRankCollective;

}  // namespace ptycho::test
