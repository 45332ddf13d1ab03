/// A seeded, deterministic mutation fuzzer for the targets of tests/fuzz
/// (their LLVMFuzzerTestOneInput), for compilers without libFuzzer: CI runs
/// it in the sanitizer build (tests/run.sh, `asan`).
///
///   fuzz_<target> [options] CORPUS_DIR_OR_FILE...
///     --seconds S       stop fuzzing after S seconds (default 60)
///     --iterations N    stop fuzzing after N mutated inputs (default 1000000)
///     --seed K          the random seed (default 1): the same seed and corpus
///                       give the same inputs, in the same order
///     --timeout T       an input that runs longer than T seconds is a hang (default 5)
///     --max-len L       largest mutated input in bytes (default 65536)
///     --mutator M       text (default); hdf5: also targeted mutations of the
///                       dimensions and types of HDF5 datasets (finds bugs in
///                       HDF5 1.10 itself); hdf5-dims: only the dimensions of
///                       datasets rewritten, what CI runs (see README.md)
///     --dict FILE       tokens to insert, in libFuzzer's dictionary format
///     --replay          run each corpus input once, no mutations
///     --accept-prefix P corpus inputs whose file name starts with P must be
///                       accepted (not rejected with ptycho::Error)
///     --save-input F    where each input is written before it runs, so that
///                       a crash leaves it behind (default: ./<program>.last-input)
///
/// First the corpus inputs are run as they are, then mutated ones: each is a
/// corpus input (or one found earlier that the target accepted) with one to
/// four mutations stacked: bit flips, byte changes, insertions, deletions,
/// copies of ranges, splices of two inputs, dictionary tokens, numbers
/// replaced in text, little-endian integers changed in binary data, and with
/// --mutator hdf5, dataset dimensions and datatype sizes rewritten in the raw
/// HDF5 object headers (dataspace and datatype messages).
///
/// Failures end the program through abort() (and a sanitizer report where
/// there is one): crashes, sanitizer reports, an exception other than
/// ptycho::Error escaping the target (std::terminate), hangs (SIGALRM after
/// --timeout), and allocations of more than 2 GiB under ASan
/// (max_allocation_size_mb). Exit status 0 means every input was handled.
#include "fuzz_target.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

// Under ASan: an allocation of more than 2 GiB is a failure (a size read
// from the input, unchecked), not a bad_alloc the target might swallow.
extern "C" const char* __asan_default_options() {
  return "max_allocation_size_mb=2048:allocator_may_return_null=0:detect_leaks=1";
}
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace {

// ---------------------------------------------------------------- failure reporting

char g_saved_input[4096] = "";  ///< where the running input is saved (for the signal handler)
unsigned g_timeout = 5;

void write_stderr(const char* s) { (void)!::write(2, s, std::strlen(s)); }

void report_input() {
  write_stderr("fuzz: the failing input is saved in ");
  write_stderr(g_saved_input);
  write_stderr("\n");
}

void on_alarm(int) {
  write_stderr("fuzz: FAIL: hang: an input ran longer than the --timeout\n");
  std::abort();  // on_fatal_signal names the input
}

void on_terminate() {
  write_stderr("fuzz: FAIL: an exception that is not a ptycho::Error escaped the target");
  if (const std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      write_stderr(": ");
      write_stderr(x.what());
    } catch (...) {
    }
  }
  write_stderr("\n");
  std::abort();  // on_fatal_signal names the input
}

void on_fatal_signal(int sig) {
  write_stderr("fuzz: FAIL: crashed with signal ");
  write_stderr(sig == SIGSEGV ? "SIGSEGV" : sig == SIGABRT ? "SIGABRT" : sig == SIGFPE ? "SIGFPE" : "SIGBUS");
  write_stderr("\n");
  report_input();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// ---------------------------------------------------------------- randomness

/// splitmix64: the same sequence with any compiler and library.
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform enough in [0, n), n > 0.
  std::size_t below(std::size_t n) { return std::size_t(next() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }
};

// ---------------------------------------------------------------- inputs

Bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// libFuzzer's dictionary format: one "token" per line (optionally name=),
/// with \\, \" and \xNN escapes; # starts a comment.
std::vector<Bytes> read_dictionary(const fs::path& p) {
  std::vector<Bytes> out;
  std::ifstream in(p);
  if (!in) {
    std::fprintf(stderr, "fuzz: cannot read the dictionary %s\n", p.c_str());
    std::exit(2);
  }
  std::string line;
  while (std::getline(in, line)) {
    const size_t open = line.find('"');
    const size_t close = line.rfind('"');
    if (line.empty() || line[0] == '#' || open == std::string::npos || close <= open) continue;
    Bytes token;
    for (size_t i = open + 1; i < close; ++i) {
      if (line[i] == '\\' && i + 1 < close) {
        ++i;
        if (line[i] == 'x' && i + 2 < close) {
          token.push_back(std::uint8_t(std::stoi(line.substr(i + 1, 2), nullptr, 16)));
          i += 2;
          continue;
        }
      }
      token.push_back(std::uint8_t(line[i]));
    }
    if (!token.empty()) out.push_back(token);
  }
  return out;
}

// ---------------------------------------------------------------- mutations

constexpr std::uint8_t kInterestingBytes[] = {0, 1, 0x7f, 0x80, 0xff, '\n', '"', '\'', '=', '[', ']', '.', '-', '\\'};
const char* const kInterestingNumbers[] = {"0",   "-1",   "1",    "2147483647", "2147483648", "-2147483649",
                                           "4294967296",   "9223372036854775807",   "-9223372036854775808",
                                           "1e308", "1e309", "-0.0", "nan", "inf", "-inf", "0x7fffffff", "1.5",
                                           "65537", "3"};
constexpr std::uint64_t kInterestingWords[] = {0,
                                               1,
                                               2,
                                               3,
                                               7,
                                               15,
                                               16,
                                               17,
                                               255,
                                               65535,
                                               65536,
                                               65538,
                                               0x7fffffffULL,
                                               0x80000000ULL,
                                               0xffffffffULL,
                                               0x100000000ULL,
                                               0x100000010ULL,
                                               0x4000000000000000ULL,
                                               0x5555555555555556ULL,  // times 3 wraps to 2
                                               0x8000000000000002ULL,  // times 2 wraps to 4
                                               0x7fffffffffffffffULL,
                                               0xffffffffffffffffULL};

std::uint64_t get_le(const Bytes& b, size_t at, size_t width) {
  std::uint64_t v = 0;
  for (size_t k = 0; k < width; ++k) v |= std::uint64_t(b[at + k]) << (8 * k);
  return v;
}
void put_le(Bytes& b, size_t at, size_t width, std::uint64_t v) {
  for (size_t k = 0; k < width; ++k) b[at + k] = std::uint8_t(v >> (8 * k));
}

/// A new value for an integer field that held `old`.
std::uint64_t interesting_word(Rng& rng, std::uint64_t old) {
  switch (rng.below(4)) {
    case 0: return old + 1 + rng.below(16);
    case 1: return old - 1 - rng.below(16);
    case 2: return old * 2 + rng.below(2);
    default: return kInterestingWords[rng.below(std::size(kInterestingWords))];
  }
}

/// Fields of HDF5 version-1 object-header messages that the reader's
/// checks depend on: the dimensions of dataspaces (message 0x0001) and the
/// class and size of datatypes (message 0x0003). Version-1 object headers
/// (the default `libver` of h5py and of ptycho's writers) have no checksum,
/// so HDF5 reads such a change as it is.
struct Hdf5Field {
  size_t offset, width;
};
std::vector<Hdf5Field> hdf5_fields(const Bytes& b) {
  std::vector<Hdf5Field> out;
  for (size_t i = 0; i + 16 <= b.size(); ++i) {
    const std::uint64_t type = get_le(b, i, 2), msg_size = get_le(b, i + 2, 2);
    if (b[i + 5] != 0 || b[i + 6] != 0 || b[i + 7] != 0) continue;  // the reserved bytes of the message header
    if (type == 0x0001) {
      // Dataspace v1: version, rank, flags, reserved(5), dims[rank] (8 bytes), maxdims if flags & 1.
      // Dataspace v2: version, rank, flags, type, dims[rank].
      const unsigned version = b[i + 8], rank = b[i + 9], flags = b[i + 10];
      if ((version != 1 && version != 2) || rank < 1 || rank > 4 || flags > 3) continue;
      const size_t dims_at = i + 8 + (version == 1 ? 8 : 4);
      const size_t n_fields = size_t(rank) * ((flags & 1) ? 2 : 1);
      if (msg_size < dims_at - i - 8 + 8 * n_fields || dims_at + 8 * n_fields > b.size()) continue;
      for (size_t k = 0; k < n_fields; ++k) out.push_back({dims_at + 8 * k, 8});
    } else if (type == 0x0003 && msg_size >= 8 && i + 16 <= b.size()) {
      // Datatype: class and version (1 byte), bit fields (3), size (4).
      const unsigned cls = b[i + 8] & 0x0f, version = b[i + 8] >> 4;
      if (version < 1 || version > 4 || cls > 10) continue;
      out.push_back({i + 8, 1});
      out.push_back({i + 12, 4});
    }
  }
  return out;
}

struct Mutator {
  Rng rng{0};
  bool hdf5 = false;       ///< targeted HDF5 mutations (dimensions and datatypes) besides the generic ones
  bool dims_only = false;  ///< only dataset dimensions rewritten (hdf5-dims)
  size_t max_len = 65536;
  std::vector<Bytes> dictionary;

  void mutate(Bytes& b, const std::vector<Bytes>& pool) {
    const unsigned n = 1 + unsigned(rng.below(4));
    for (unsigned k = 0; k < n; ++k) mutate_once(b, pool);
    if (b.size() > max_len) b.resize(max_len);
  }

  void mutate_once(Bytes& b, const std::vector<Bytes>& pool) {
    if (dims_only || (hdf5 && rng.chance(60))) {
      std::vector<Hdf5Field> fields = hdf5_fields(b);
      if (dims_only) fields.erase(std::remove_if(fields.begin(), fields.end(), [](const Hdf5Field& f) { return f.width != 8; }),
                                  fields.end());
      if (dims_only && fields.empty()) return;
      if (!fields.empty()) {
        const Hdf5Field f = fields[rng.below(fields.size())];
        if (f.width == 1) {  // datatype class: keep the version nibble
          b[f.offset] = std::uint8_t((b[f.offset] & 0xf0) | rng.below(11));
        } else {
          put_le(b, f.offset, f.width, interesting_word(rng, get_le(b, f.offset, f.width)));
        }
        return;
      }
    }
    const size_t op = rng.below(11);
    const size_t size = b.size();
    switch (op) {
      case 0:  // flip a bit
        if (size) b[rng.below(size)] ^= std::uint8_t(1u << rng.below(8));
        return;
      case 1:  // an interesting or random byte
        if (size)
          b[rng.below(size)] = rng.chance(50) ? kInterestingBytes[rng.below(std::size(kInterestingBytes))]
                                              : std::uint8_t(rng.next());
        return;
      case 2: {  // insert random bytes
        const size_t at = rng.below(size + 1), n = 1 + rng.below(8);
        std::uint8_t ins[8];  // an array: GCC 12 -O3 warns falsely about a small vector here
        for (size_t k = 0; k < n; ++k) ins[k] = std::uint8_t(rng.next());
        b.insert(b.begin() + long(at), ins, ins + n);
        return;
      }
      case 3: {  // delete a range
        if (!size) return;
        const size_t at = rng.below(size), n = 1 + rng.below(std::min<size_t>(32, size - at));
        b.erase(b.begin() + long(at), b.begin() + long(at + n));
        return;
      }
      case 4: {  // copy a range to another place (inserted)
        if (!size) return;
        const size_t from = rng.below(size), n = 1 + rng.below(std::min<size_t>(64, size - from));
        const Bytes piece(b.begin() + long(from), b.begin() + long(from + n));
        const size_t at = rng.below(size + 1);
        b.insert(b.begin() + long(at), piece.begin(), piece.end());
        return;
      }
      case 5: {  // splice: the start of this input, the end of another
        const Bytes& other = pool[rng.below(pool.size())];
        const size_t cut = rng.below(size + 1), from = rng.below(other.size() + 1);
        b.resize(cut);
        b.insert(b.end(), other.begin() + long(from), other.end());
        return;
      }
      case 6:  // insert a dictionary token
      case 7: {  // overwrite with a dictionary token
        if (dictionary.empty()) return mutate_once(b, pool);
        const Bytes& t = dictionary[rng.below(dictionary.size())];
        const size_t at = rng.below(size + 1);
        if (op == 6 || at + t.size() > size) {
          b.insert(b.begin() + long(at), t.begin(), t.end());
        } else {
          std::copy(t.begin(), t.end(), b.begin() + long(at));
        }
        return;
      }
      case 8: {  // a number in text replaced by an interesting one
        std::vector<size_t> starts;
        for (size_t i = 0; i < size; ++i)
          if (std::isdigit(b[i]) && (i == 0 || !std::isdigit(b[i - 1]))) starts.push_back(i);
        if (starts.empty()) return mutate_once(b, pool);
        const size_t at = starts[rng.below(starts.size())];
        size_t end = at;
        while (end < size && (std::isalnum(b[end]) || b[end] == '.' || b[end] == '_')) ++end;
        const std::string num = kInterestingNumbers[rng.below(std::size(kInterestingNumbers))];
        b.erase(b.begin() + long(at), b.begin() + long(end));
        b.insert(b.begin() + long(at), num.begin(), num.end());
        return;
      }
      default: {  // a little-endian integer of 1, 2, 4 or 8 bytes changed
        const size_t width = size_t(1) << rng.below(4);
        if (size < width) return;
        const size_t at = rng.below(size - width + 1);
        put_le(b, at, width, interesting_word(rng, get_le(b, at, width)));
        return;
      }
    }
  }
};

// ---------------------------------------------------------------- running

struct Counts {
  long accepted = 0, rejected = 0;
};

void run_one(const Bytes& input, Counts& counts) {
  {
    std::ofstream out(g_saved_input, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(input.data()), std::streamsize(input.size()));
  }
  ptycho::fuzz::last_outcome = ptycho::fuzz::Outcome::accepted;
  ::alarm(g_timeout);
  LLVMFuzzerTestOneInput(input.data(), input.size());
  ::alarm(0);
  if (ptycho::fuzz::last_outcome == ptycho::fuzz::Outcome::accepted)
    ++counts.accepted;
  else
    ++counts.rejected;
}

[[noreturn]] void usage(const char* argv0, const char* problem) {
  std::fprintf(stderr, "%s: %s\nusage: %s [--seconds S] [--iterations N] [--seed K] [--timeout T] [--max-len L]\n"
               "       [--mutator text|hdf5|hdf5-dims] [--dict FILE] [--replay] [--accept-prefix P] [--save-input F] CORPUS...\n",
               argv0, problem, argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 60;
  long iterations = 1000000;
  std::uint64_t seed = 1;
  bool replay = false;
  std::string accept_prefix, dict, save_input;
  Mutator mutator;
  std::vector<fs::path> corpus_args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0], (a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--seconds") seconds = std::stod(value());
    else if (a == "--iterations") iterations = std::stol(value());
    else if (a == "--seed") seed = std::stoull(value());
    else if (a == "--timeout") g_timeout = unsigned(std::stoul(value()));
    else if (a == "--max-len") mutator.max_len = std::stoul(value());
    else if (a == "--mutator") {
      const std::string m = value();
      if (m != "text" && m != "hdf5" && m != "hdf5-dims") usage(argv[0], "--mutator is text, hdf5 or hdf5-dims");
      mutator.hdf5 = m == "hdf5";
      mutator.dims_only = m == "hdf5-dims";
    } else if (a == "--dict") dict = value();
    else if (a == "--replay") replay = true;
    else if (a == "--accept-prefix") accept_prefix = value();
    else if (a == "--save-input") save_input = value();
    else if (!a.empty() && a[0] == '-') usage(argv[0], ("unknown option " + a).c_str());
    else corpus_args.emplace_back(a);
  }
  if (corpus_args.empty()) usage(argv[0], "no corpus");
  if (save_input.empty()) save_input = fs::path(argv[0]).filename().string() + ".last-input";
  std::snprintf(g_saved_input, sizeof g_saved_input, "%s", save_input.c_str());
  mutator.rng.state = seed;
  if (!dict.empty()) mutator.dictionary = read_dictionary(dict);

  std::set_terminate(on_terminate);
  ::signal(SIGALRM, on_alarm);
  // abort(): the target's own checks, hangs, unexpected exceptions. With a
  // sanitizer, it reports crashes and calls report_input; without, the handler does.
  ::signal(SIGABRT, on_fatal_signal);
  if (__sanitizer_set_death_callback) {
    __sanitizer_set_death_callback(report_input);
  } else {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE}) ::signal(sig, on_fatal_signal);
  }
  LLVMFuzzerInitialize(&argc, &argv);

  // The corpus, in file-name order (directory order is not portable).
  std::vector<std::pair<std::string, Bytes>> corpus;
  for (const fs::path& p : corpus_args) {
    std::vector<fs::path> files;
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
    } else if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else {
      usage(argv[0], ("no such corpus file or folder: " + p.string()).c_str());
    }
    for (const auto& f : files) corpus.emplace_back(f.filename().string(), read_bytes(f));
  }
  if (corpus.empty()) usage(argv[0], "the corpus is empty");

  // The corpus as it is.
  Counts seeds;
  std::vector<Bytes> pool;
  int wrong = 0;
  for (const auto& [name, bytes] : corpus) {
    run_one(bytes, seeds);
    const bool accepted = ptycho::fuzz::last_outcome == ptycho::fuzz::Outcome::accepted;
    if (!accept_prefix.empty() && name.rfind(accept_prefix, 0) == 0 && !accepted) {
      std::fprintf(stderr, "fuzz: FAIL: corpus input %s was rejected; inputs named %s* must be accepted\n",
                   name.c_str(), accept_prefix.c_str());
      ++wrong;
    }
    pool.push_back(bytes);
  }
  std::printf("fuzz: corpus: %zu inputs, %ld accepted, %ld rejected\n", corpus.size(), seeds.accepted, seeds.rejected);
  if (wrong) return 1;
  if (replay) return 0;

  // Mutated inputs. Accepted ones join the pool (a few hundred at most), so
  // that mutations build on inputs that get deep into the parser.
  constexpr size_t kMaxPool = 512;
  Counts counts;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  long done = 0;
  Bytes input;
  for (; done < iterations; ++done) {
    if ((done & 15) == 0) {
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed >= seconds) break;
    }
    input = pool[mutator.rng.below(pool.size())];
    mutator.mutate(input, pool);
    run_one(input, counts);
    if (ptycho::fuzz::last_outcome == ptycho::fuzz::Outcome::accepted && pool.size() < kMaxPool &&
        mutator.rng.chance(25))
      pool.push_back(input);
  }
  elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fuzz: PASS: %ld mutated inputs in %.1f s (%.0f/s, seed %llu): %ld accepted, %ld rejected, "
              "no crash, hang or unexpected exception\n",
              done, elapsed, done / std::max(elapsed, 1e-9), (unsigned long long)seed, counts.accepted,
              counts.rejected);
  return 0;
}
