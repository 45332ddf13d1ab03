#pragma once
/// What every fuzz target of tests/fuzz shares. A target defines
/// LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize); the same
/// source links either with mutation_driver.cpp (GCC or clang, a seeded,
/// deterministic mutation loop: what CI runs) or with libFuzzer
/// (clang -fsanitize=fuzzer, PTYCHO_LIBFUZZER=ON).
///
/// A target's input counts as handled when the code under test returns or
/// throws ptycho::Error (InputError included): a clean rejection. Anything
/// else fails the run: a crash, a sanitizer report, an exception of another
/// type (it escapes LLVMFuzzerTestOneInput and ends in std::terminate), a
/// hang (the driver's per-input alarm), or a huge allocation (ASan's
/// max_allocation_size_mb, libFuzzer's -malloc_limit_mb).
#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace ptycho::fuzz {

/// How the last input ended: accepted (the code under test returned) or
/// rejected (it threw ptycho::Error). The driver's --accept-prefix checks it.
enum class Outcome { accepted, rejected };
extern Outcome last_outcome;

/// A file of this process for the input bytes (the code under test reads
/// paths): `<temp dir>/ptycho-fuzz-<pid>-<name>`, created on first use.
std::string scratch_path(const std::string& name);

/// Writes `size` bytes to `path`, replacing it; aborts if it cannot.
void write_file(const std::string& path, const std::uint8_t* data, std::size_t size);

}  // namespace ptycho::fuzz
