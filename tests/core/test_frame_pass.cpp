// The frame pass and its far-field propagator:
//  - FarFieldPropagator keeps the Propagator contract: forward() is M times
//    the centred unitary far field of the unsigned wave (up to the
//    checkerboard sign), and backward() is its adjoint;
//  - a pass gives the same floats as the loop written out by hand (exit
//    waves, forward, kernel, backward, object sums) in Workspace::batch_order,
//    over batches whose last one is partial, and the same sums as the loop in
//    the scan's order up to rounding;
//  - the stages see the frames and wave slots the pass promises, in
//    batch_order for a range (per-batch and per-frame stores) and in the
//    given order for single frames; KeptFarFields makes no exit waves and
//    MeasureOnly propagates nothing back;
//  - a pass given a background folds the kernel's model intensities into it;
//  - slots that do not fit the buffer are refused.
#include "engine_fixture.hpp"
#include "serial_collective.hpp"

#include "ptycho/core/frame_pass.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <complex>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace ptycho {
namespace {

constexpr int kModes = 2;

/// A small scan with a random object and two probe modes, and its workspace (batch 4).
struct Case {
  test::SmallScan s = test::make_small_scan(1e6, 64, 16, 7);
  ReconState st;
  Workspace ws;
  explicit Case(int batch = 4) : ws(s.scan, kModes, batch) {
    st = test::start_state(s, test::true_probe(s));
    const int m = s.scan.frame_size;
    CView3 probe("probe", kModes, m, m);
    auto hp = Kokkos::create_mirror_view(probe);
    auto p0 = Kokkos::create_mirror_view_and_copy(HostSpace(), st.probe);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < m; ++c) {
        hp(0, r, c) = p0(0, r, c);
        hp(1, r, c) = p0(0, r, c) * cfloat(0.3f, -0.2f) * float(1 + (r * c) % 3);
      }
    Kokkos::deep_copy(probe, hp);
    st.probe = probe;
    std::mt19937 rng(5);
    std::normal_distribution<float> g;
    auto obj = Kokkos::create_mirror_view(st.object);
    for (size_t i = 0; i < obj.size(); ++i) obj.data()[i] = cfloat(1 + 0.3f * g(rng), 0.3f * g(rng));
    Kokkos::deep_copy(st.object, obj);
    ws.set_positions(st.positions);
    ws.set_probe(st.probe);
  }
  long frames() const { return s.scan.num_local(); }
  int m() const { return s.scan.frame_size; }
};

std::vector<std::complex<double>> host_values(const CView3& v) {
  auto h = Kokkos::create_mirror_view_and_copy(HostSpace(), v);
  std::vector<std::complex<double>> out(h.size());
  for (size_t i = 0; i < h.size(); ++i) out[i] = {h.data()[i].real(), h.data()[i].imag()};
  return out;
}

CView3 random_waves(long count, int m, unsigned seed) {
  CView3 v("waves", count, m, m);
  auto h = Kokkos::create_mirror_view(v);
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  for (size_t i = 0; i < h.size(); ++i) h.data()[i] = cfloat(g(rng), g(rng));
  Kokkos::deep_copy(v, h);
  return v;
}

/// A stand-in Fourier-space kernel: returns sum |w|^2 / M^2 and scales the
/// waves by 1/M^2 (for the unnormalised pair).
double scale_kernel(const CView3& w, int m) {
  const float inv_m2 = 1.0f / (float(m) * m);
  double total = 0;
  Kokkos::parallel_reduce(
      "test::scale_kernel", Kokkos::RangePolicy<ExecSpace>(0, long(w.size())),
      KOKKOS_LAMBDA(long i, double& acc) {
        cfloat& x = w.data()[i];
        acc += double(x.real() * x.real() + x.imag() * x.imag()) * inv_m2;
        x *= inv_m2;
      },
      total);
  return total;
}

TEST(FarFieldPropagator, IsMTimesTheCentredFarFieldAndItsAdjointGoesBack) {
  const int m = 16;
  FramePlan plan(m);
  FarFieldPropagator prop(plan);
  const CView3 x = random_waves(3, m, 1), y = random_waves(3, m, 2);
  // forward of the signed wave: M times the centred unitary transform, up to the sign.
  CView3 signed_x("signed", 3, m, m), centred("centred", 3, m, m);
  Kokkos::deep_copy(centred, x);
  plan.execute(centred, FftDirection::forward, Centring::centred_unitary);
  {
    auto hx = Kokkos::create_mirror_view_and_copy(HostSpace(), x);
    auto hs = Kokkos::create_mirror_view(signed_x);
    for (int b = 0; b < 3; ++b)
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < m; ++c) hs(b, r, c) = hx(b, r, c) * centring_sign(r, c);
    Kokkos::deep_copy(signed_x, hs);
  }
  prop.forward(signed_x);
  const auto f = host_values(signed_x), fc = host_values(centred);
  for (size_t i = 0; i < f.size(); ++i) {
    const int r = int(i / m) % m, c = int(i % m);
    EXPECT_NEAR(std::abs(f[i] - double(m) * centring_sign(r, c) * fc[i]), 0.0, 1e-4 * m) << "at " << i;
  }
  // <forward x, y> = <x, backward y>, and backward(forward(x)) = M^2 x.
  CView3 fx("fx", 3, m, m), by("by", 3, m, m);
  Kokkos::deep_copy(fx, x);
  Kokkos::deep_copy(by, y);
  prop.forward(fx);
  prop.backward(by);
  const auto hx = host_values(x), hy = host_values(y), hfx = host_values(fx), hby = host_values(by);
  std::complex<double> lhs = 0, rhs = 0;
  for (size_t i = 0; i < hx.size(); ++i) {
    lhs += std::conj(hfx[i]) * hy[i];
    rhs += std::conj(hx[i]) * hby[i];
  }
  EXPECT_NEAR(std::abs(lhs - rhs) / std::abs(lhs), 0.0, 1e-5);
  prop.backward(fx);
  const auto back = host_values(fx);
  for (size_t i = 0; i < back.size(); ++i) EXPECT_NEAR(std::abs(back[i] / double(m * m) - hx[i]), 0.0, 1e-5);
}

TEST(FramePass, GivesTheFloatsOfTheLoopWrittenOut) {
  Case c;
  const int m = c.m();
  const long n = c.frames();
  ASSERT_GT(n % c.ws.batch(), 0) << "the last batch should be partial";
  const auto prop = make_propagator(c.ws);
  const long rows = c.s.scan.extent.rows, cols = c.s.scan.extent.cols;
  // By hand.
  CView3 work("work", std::size_t(c.ws.batch()) * kModes, m, m);
  View2<cdouble> num_ref("num_ref", rows, cols), num("num", rows, cols);
  View2<double> den_ref("den_ref", rows, cols), den("den", rows, cols);
  View2<cdouble> num_scan("num_scan", rows, cols);
  View2<double> den_scan("den_scan", rows, cols);
  auto by_hand = [&](const std::vector<long>& firsts, const View2<cdouble>& num_out, const View2<double>& den_out) {
    double cost = 0;
    for (long first : firsts) {
      const long count = std::min<long>(c.ws.batch(), n - first);
      auto w = Kokkos::subview(work, Kokkos::make_pair(0L, count * kModes), Kokkos::ALL, Kokkos::ALL);
      c.ws.exit_waves(c.st.object, first, count, w);
      c.ws.plan().execute(w, FftDirection::forward, Centring::none);
      cost += scale_kernel(w, m);
      c.ws.plan().execute(w, FftDirection::backward, Centring::none);
      c.ws.accumulate_object(num_out, den_out, w, first, count);
    }
    return cost;
  };
  const std::vector<long> order = c.ws.batch_order(0, n);
  std::vector<long> scan_order;
  for (long first = 0; first < n; first += c.ws.batch()) scan_order.push_back(first);
  ASSERT_NE(order, scan_order) << "the scan's own order is no test of the visiting order";
  const double cost_ref = by_hand(order, num_ref, den_ref);
  const double cost_scan = by_hand(scan_order, num_scan, den_scan);
  // Through the pass, on another buffer.
  CView3 work2("work2", std::size_t(c.ws.batch()) * kModes, m, m);
  FramePass pass(c.ws, prop, WaveStore::per_batch(work2), nullptr);
  const double cost = pass.run(
      FrameRange{0, n}, ExitWaves{c.st.object}, [&](long, long, const CView3& w) { return scale_kernel(w, m); },
      [&](long first, long count, const CView3& w) { c.ws.accumulate_object(num, den, w, first, count); });
  EXPECT_EQ(std::memcmp(&cost, &cost_ref, sizeof cost), 0) << cost << " vs " << cost_ref;
  auto a = Kokkos::create_mirror_view_and_copy(HostSpace(), num),
       b = Kokkos::create_mirror_view_and_copy(HostSpace(), num_ref);
  auto da = Kokkos::create_mirror_view_and_copy(HostSpace(), den),
       db = Kokkos::create_mirror_view_and_copy(HostSpace(), den_ref);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(cdouble)), 0);
  EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size() * sizeof(double)), 0);
  double total = 0;
  for (size_t i = 0; i < da.size(); ++i) total += da.data()[i];
  EXPECT_GT(total, 0.0);
  // In the scan's order: the same sums up to rounding.
  EXPECT_NEAR(cost, cost_scan, 1e-12 * cost_scan);
  auto as = Kokkos::create_mirror_view_and_copy(HostSpace(), num_scan);
  auto ds = Kokkos::create_mirror_view_and_copy(HostSpace(), den_scan);
  for (size_t i = 0; i < da.size(); ++i) {
    EXPECT_NEAR(da.data()[i], ds.data()[i], 1e-12 * total) << "at " << i;
    EXPECT_NEAR(std::abs(std::complex<double>(a.data()[i].real() - as.data()[i].real(),
                                              a.data()[i].imag() - as.data()[i].imag())),
                0.0, 1e-12 * total)
        << "at " << i;
  }
}

/// What a stage saw: its name, the frames, and where its waves start in the buffer.
struct Call {
  char stage;
  long first, count, slot, slots;
  bool operator==(const Call& o) const {
    return stage == o.stage && first == o.first && count == o.count && slot == o.slot && slots == o.slots;
  }
};

std::ostream& operator<<(std::ostream& os, const Call& c) {
  return os << c.stage << "(" << c.first << "," << c.count << " @" << c.slot << "+" << c.slots << ")";
}

TEST(FramePass, StagesSeeTheFramesAndSlotsInOrder) {
  Case c;
  const int m = c.m();
  const long n = c.frames();
  ASSERT_GE(n, 13);
  const auto prop = make_propagator(c.ws);
  CView3 buffer("buffer", std::size_t(n) * kModes, m, m);
  std::vector<Call> calls;
  auto log = [&](char stage) {
    return [&calls, &buffer, stage](long first, long count, const CView3& w) {
      calls.push_back(
          {stage, first, count, long(w.data() - buffer.data()) / long(w.extent(1) * w.extent(2)), long(w.extent(0))});
      return 1.0;
    };
  };
  // A range, per batch: the batches 3..6, 7..10 and 11..12 in batch_order,
  // every one at slot 0; the kernel's returns summed.
  const std::vector<long> order = c.ws.batch_order(3, 13);
  std::vector<long> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(sorted, (std::vector<long>{3, 7, 11}));
  auto expected = [&](bool per_frame_slots) {
    std::vector<Call> e;
    for (long first : order) {
      const long count = first == 11 ? 2 : 4;
      const long slot = per_frame_slots ? (first - 3) * kModes : 0;
      for (char stage : {'s', 'f', 'u'}) e.push_back({stage, first, count, slot, count * kModes});
    }
    return e;
  };
  FramePass per_batch(c.ws, prop, WaveStore::per_batch(buffer), nullptr);
  const double sum = per_batch.run(FrameRange{3, 13}, log('s'), log('f'), log('u'));
  EXPECT_EQ(sum, 3.0);
  std::vector<Call> expect = expected(false);
  EXPECT_EQ(calls, expect);
  // The same range per frame: slots from the range's first frame on.
  calls.clear();
  FramePass per_frame(c.ws, prop, WaveStore::per_frame(buffer), nullptr);
  per_frame.run(FrameRange{3, 13}, log('s'), log('f'), log('u'));
  expect = expected(true);
  EXPECT_EQ(calls, expect);
  // The first 8 frames of the range in their own slots, the later batch
  // (11..12) at the slots after them.
  calls.clear();
  FramePass then_batch(c.ws, prop, WaveStore::per_frame_then_batch(buffer, 8), nullptr);
  then_batch.run(FrameRange{3, 13}, log('s'), log('f'), log('u'));
  expect = expected(true);
  for (Call& e : expect)
    if (e.first == 11) e.slot = 8 * kModes;
  EXPECT_EQ(calls, expect);
  // An order of single frames.
  calls.clear();
  per_batch.run(std::vector<long>{5, 2, 9}, log('s'), log('f'), log('u'));
  expect = {{'s', 5, 1, 0, 2}, {'f', 5, 1, 0, 2}, {'u', 5, 1, 0, 2}, {'s', 2, 1, 0, 2}, {'f', 2, 1, 0, 2},
            {'u', 2, 1, 0, 2}, {'s', 9, 1, 0, 2}, {'f', 9, 1, 0, 2}, {'u', 9, 1, 0, 2}};
  EXPECT_EQ(calls, expect);
  // Kept far fields and a measuring pass: only the kernel runs.
  calls.clear();
  per_frame.run(FrameRange{0, 5}, KeptFarFields{}, log('f'), MeasureOnly{});
  std::sort(calls.begin(), calls.end(), [](const Call& a, const Call& b) { return a.first < b.first; });
  expect = {{'f', 0, 4, 0, 8}, {'f', 4, 1, 8, 2}};
  EXPECT_EQ(calls, expect);
}

TEST(FramePass, KeptFarFieldsAreNotTouchedAndMeasuringPassesDoNotGoBack) {
  Case c;
  const int m = c.m();
  const long n = c.frames();
  const auto prop = make_propagator(c.ws);
  // A measuring pass with exit waves leaves the propagated exit waves of every frame.
  CView3 kept("kept", std::size_t(n) * kModes, m, m), ref("ref", std::size_t(n) * kModes, m, m);
  FramePass pass(c.ws, prop, WaveStore::per_frame(kept), nullptr);
  pass.run(
      FrameRange{0, n}, ExitWaves{c.st.object}, [](long, long, const CView3&) { return 0.0; }, MeasureOnly{});
  c.ws.exit_waves(c.st.object, 0, n, ref);
  prop->forward(ref);
  EXPECT_EQ(host_values(kept), host_values(ref));
  // Kept far fields reach the kernel as they are.
  const auto before = host_values(kept);
  std::vector<std::complex<double>> seen(before.size());
  const size_t plane = size_t(m) * m;
  pass.run(
      FrameRange{0, n}, KeptFarFields{},
      [&](long first, long, const CView3& w) {
        const auto v = host_values(w);
        std::copy(v.begin(), v.end(), seen.begin() + first * kModes * plane);
        return 0.0;
      },
      MeasureOnly{});
  EXPECT_EQ(seen, before);
}

TEST(FramePass, FoldsTheModelIntensitiesIntoTheBackground) {
  Case c;
  const int m = c.m();
  const auto prop = make_propagator(c.ws);
  CView3 work("work", std::size_t(c.ws.batch()) * kModes, m, m);
  test::SerialCollective coll;
  auto background_after_pass = [&](bool given) {
    ReconState st;
    Background bg(BackgroundMode::constant, c.s.scan, c.ws.batch(), st);
    bg.reset();
    FramePass pass(c.ws, prop, WaveStore::per_batch(work), given ? &bg : nullptr);
    // The kernel models no sample at all: the counts are all background.
    const auto model = bg.model();
    pass.run(
        FrameRange{0, c.frames()}, ExitWaves{c.st.object},
        [&](long, long, const CView3&) {
          Kokkos::deep_copy(model, 0.0f);
          return 0.0;
        },
        MeasureOnly{});
    bg.update(coll);
    return bg.mean();
  };
  EXPECT_GT(background_after_pass(true), 0.0);
  EXPECT_EQ(background_after_pass(false), 0.0);
}

TEST(FramePass, RefusesSlotsBeyondItsBuffer) {
  Case c;
  const int m = c.m();
  const auto prop = make_propagator(c.ws);
  auto nothing = [](long, long, const CView3&) { return 0.0; };
  CView3 small("small", std::size_t(c.ws.batch() - 1) * kModes, m, m);
  FramePass too_small(c.ws, prop, WaveStore::per_batch(small), nullptr);
  EXPECT_THROW(too_small.run(FrameRange{0, c.frames()}, KeptFarFields{}, nothing, MeasureOnly{}), Error);
  EXPECT_NO_THROW(too_small.run(std::vector<long>{0, 1}, KeptFarFields{}, nothing, MeasureOnly{}));
  CView3 frames("frames", std::size_t(6) * kModes, m, m);
  FramePass kept(c.ws, prop, WaveStore::per_frame(frames), nullptr);
  EXPECT_NO_THROW(kept.run(FrameRange{4, 10}, KeptFarFields{}, nothing, MeasureOnly{}));
  EXPECT_THROW(kept.run(FrameRange{4, 11}, KeptFarFields{}, nothing, MeasureOnly{}), Error);
  EXPECT_THROW(kept.run(std::vector<long>{0}, KeptFarFields{}, nothing, MeasureOnly{}), Error);
  // Kept frames and then batches: a batch across the kept frames' end is refused.
  const int b = c.ws.batch();
  CView3 some("some", std::size_t(3 * b) * kModes, m, m);
  FramePass whole(c.ws, prop, WaveStore::per_frame_then_batch(some, 2 * b), nullptr);
  EXPECT_NO_THROW(whole.run(FrameRange{0, c.frames()}, KeptFarFields{}, nothing, MeasureOnly{}));
  FramePass straddled(c.ws, prop, WaveStore::per_frame_then_batch(some, b + 1), nullptr);
  EXPECT_THROW(straddled.run(FrameRange{0, c.frames()}, KeptFarFields{}, nothing, MeasureOnly{}), Error);
}

}  // namespace
}  // namespace ptycho
