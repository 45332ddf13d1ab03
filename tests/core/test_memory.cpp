// The memory estimate and the size parser (core/memory.hpp), and the range
// checks of the simulator's options.
#include "ptycho/core/error.hpp"
#include "ptycho/core/memory.hpp"
#include "ptycho/core/simulate.hpp"
#include "ptycho/core/types.hpp"

#include <gtest/gtest.h>

namespace ptycho {
namespace {

std::vector<EngineOptions> chain_of(const std::string& name, bool refine_probe = false) {
  EngineOptions e;
  e.name = name;
  e.iterations = 10;
  e.refine_probe = refine_probe;
  return {e};
}

TEST(Memory, ParsesSizesWithUnits) {
  EXPECT_DOUBLE_EQ(parse_bytes("4G", "--max-memory"), 4.0 * (1 << 30));
  EXPECT_DOUBLE_EQ(parse_bytes("512M", "x"), 512.0 * (1 << 20));
  EXPECT_DOUBLE_EQ(parse_bytes("2.5GiB", "x"), 2.5 * (1 << 30));
  EXPECT_DOUBLE_EQ(parse_bytes("3 kb", "x"), 3.0 * 1024);
  EXPECT_DOUBLE_EQ(parse_bytes("1000", "x"), 1000.0);
  EXPECT_DOUBLE_EQ(parse_bytes("1T", "x"), 1024.0 * 1024 * 1024 * 1024);
  for (const char* bad : {"", "G", "lots", "-1G", "0", "4X", "nan", "inf", "1e400"}) {
    try {
      parse_bytes(bad, "--max-memory");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--max-memory"), std::string::npos) << e.what();
    }
  }
}

TEST(Memory, FormatsBytes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(3.0 * (1 << 30)), "3 GiB");
}

TEST(Memory, DefaultBatchKeepsABatchOfWavesPerThreadInCache) {
  // Per thread: as many frames of K modes as fit kBatchBytesPerThread (512 KiB).
  EXPECT_EQ(default_batch(256, 1, 1), 1);  // one frame of 256^2 is 512 KiB
  EXPECT_EQ(default_batch(128, 1, 1), 4);
  EXPECT_EQ(default_batch(64, 1, 1), 16);                         // the benchmark's frames: the old fixed 16
  EXPECT_EQ(default_batch(64, 3, 1), 5);                          // modes share the cache
  EXPECT_EQ(default_batch(32, 1, 1), kMaxDefaultBatchPerThread);  // small frames: at most 16 per thread
  EXPECT_EQ(default_batch(512, 2, 1), 1);                         // at least one frame per thread, however large
  // Every thread gets its share.
  EXPECT_EQ(default_batch(256, 1, 4), 4);
  EXPECT_EQ(default_batch(128, 1, 2), 8);
  EXPECT_EQ(default_batch(64, 1, 0), 16);  // (no thread count: one)
}

TEST(Memory, BatchOrDefaultKeepsAGivenBatchAndOtherwiseFollowsTheThreads) {
  EXPECT_EQ(batch_or_default(7, 256, 1), 7);
  EXPECT_EQ(batch_or_default(1, 32, 2), 1);
  const int threads = ExecSpace().concurrency();
  EXPECT_EQ(batch_or_default(0, 256, 1), threads);  // one frame of 256^2 per thread
  EXPECT_EQ(batch_or_default(0, 64, 3), 5 * threads);
  EXPECT_EQ(batch_or_default(-1, 128, 1), 4 * threads);  // (not positive: the default)
}

TEST(Memory, EstimateFollowsTheBuffersEachEngineKeeps) {
  RankShare s;
  s.frames = 1000;
  s.frame_size = 256;
  s.modes = 1;
  s.tile_rows = s.tile_cols = 1000;
  const double frame_set = 1000.0 * 256 * 256 * 8;  // one complex wave per frame
  const double dm = estimate_rank_bytes(s, chain_of("dm"));
  const double ml = estimate_rank_bytes(s, chain_of("ml"));
  const double epie = estimate_rank_bytes(s, chain_of("epie"));
  EXPECT_NEAR(ml - dm, frame_set, 1.0);        // ML keeps a search direction besides the waves
  EXPECT_NEAR(dm - epie, frame_set, 1.0);      // DM keeps the waves, the PIE family none
  EXPECT_GT(epie, 3.0 * 1000 * 256 * 256 * 4);  // the counts and the shifted probes at least
  // A chain needs what its largest engine needs.
  auto both = chain_of("epie");
  both.push_back(chain_of("ml")[0]);
  EXPECT_DOUBLE_EQ(estimate_rank_bytes(s, both), ml);
  // Modes multiply the waves and the probes; frames and tile add.
  RankShare k2 = s;
  k2.modes = 2;
  EXPECT_NEAR(estimate_rank_bytes(k2, chain_of("dm")) - dm, 2 * frame_set + 6.0 * 16 * 256 * 256 * 8, 1.0);
  RankShare big_tile = s;
  big_tile.tile_rows = 2000;
  EXPECT_NEAR(estimate_rank_bytes(big_tile, chain_of("dm")) - dm, 1000.0 * 1000 * 80, 1.0);
  // LSQ-ML keeps one batch's corrections only when it refines the probe.
  EXPECT_LT(estimate_rank_bytes(s, chain_of("lsqml")), estimate_rank_bytes(s, chain_of("lsqml", true)));
  // A shift quantum q keeps min(n, q^2) shifted probes instead of n.
  RankShare low = s;
  low.shift_quantum = 8;
  EXPECT_NEAR(epie - estimate_rank_bytes(low, chain_of("epie")), (1000.0 - 64) * 256 * 256 * 8, 1.0);
  low.frames = 50;
  RankShare few = low;
  few.shift_quantum = 0;
  EXPECT_DOUBLE_EQ(estimate_rank_bytes(low, chain_of("epie")), estimate_rank_bytes(few, chain_of("epie")));
  // ML's low-memory mode keeps no far fields: what the PIE family needs.
  auto ml_low = chain_of("ml");
  ml_low[0].low_memory = true;
  EXPECT_DOUBLE_EQ(estimate_rank_bytes(s, ml_low), epie);
  // With a far-field budget, those of the whole batches it holds (both sets).
  ml_low[0].far_field_budget = 100.5 * ml_far_field_bytes_per_frame(256, 1);
  const long kept = ml_kept_far_fields(s.frames, 256, 1, s.batch, ml_low[0].far_field_budget);
  EXPECT_EQ(kept, 100 / s.batch * s.batch);
  EXPECT_NEAR(estimate_rank_bytes(s, ml_low) - epie, 2.0 * kept * 256 * 256 * 8, 1.0);
  // DM's, as complex halves: half a set.
  auto dm_low = chain_of("dm");
  dm_low[0].low_memory = true;
  EXPECT_NEAR(dm - estimate_rank_bytes(s, dm_low), 0.5 * frame_set, 1.0);
  // sDR's exit waves, as complex halves too.
  auto sdr_low = chain_of("sdr");
  sdr_low[0].low_memory = true;
  EXPECT_NEAR(estimate_rank_bytes(s, chain_of("sdr")) - estimate_rank_bytes(s, sdr_low), 0.5 * frame_set, 1.0);
}

TEST(Memory, SimulationOptionsAreRangeChecked) {
  sim::SimulationOptions ok;
  EXPECT_NO_THROW(sim::check_options(ok));
  const auto refused = [](sim::SimulationOptions o, const std::string& option) {
    try {
      sim::check_options(o);
    } catch (const InputError& e) {
      return std::string(e.what()).find(option) != std::string::npos;
    }
    return false;
  };
  sim::SimulationOptions o = ok;
  o.object_size = 1000000;
  EXPECT_TRUE(refused(o, "--object-size"));
  o = ok;
  o.probe_size = 63;
  EXPECT_TRUE(refused(o, "--probe-size"));
  o = ok;
  o.probe_size = 512;
  EXPECT_TRUE(refused(o, "--probe-size"));  // larger than the object
  o = ok;
  o.step = 1e-3;
  EXPECT_TRUE(refused(o, "--step"));
  o = ok;
  o.photons = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(refused(o, "--photons"));
  o = ok;
  o.position_error_nm = -1;
  EXPECT_TRUE(refused(o, "--position-error"));
  // The estimate grows with the number of frames a finer step makes.
  sim::SimulationOptions fine = ok;
  fine.step = ok.step / 2;
  EXPECT_GT(sim::estimate_bytes(fine), 3.0 * sim::estimate_bytes(ok) / 2);
}

}  // namespace
}  // namespace ptycho
