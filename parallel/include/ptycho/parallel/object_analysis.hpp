#pragma once
/// Whole-object operations on the distributed object, through FFTW3-MPI.
///
/// Everything here works on FFTW-MPI's row slabs of a (rows x cols) grid
/// (see slab_plan.hpp: a SlabPlan moves the tiled object into them): rank r
/// holds slab().rows whole rows starting at slab().row0, row-major, in a
/// buffer of at least slab_alloc() complex elements. Each operation is
/// collective over the communicator the transforms were built on; sums over
/// the grid are accumulated in double and combined with MPI_Allreduce, so a
/// result differs between rank counts only by float rounding in the
/// transforms.
///
/// Units: frequencies are in cycles per pixel (Nyquist is 0.5), shifts and
/// positions in pixels, phases in radians.
#include "ptycho/core/tile.hpp"
#include "ptycho/core/types.hpp"
#include "ptycho/parallel/comm.hpp"
#include "ptycho/parallel/slab_plan.hpp"

#include <mpi.h>

#include <string>
#include <vector>

namespace ptycho {

/// The FFTW-MPI plans of one grid, built once (FFTW_ESTIMATE, so the plans,
/// and the results, do not depend on timing): an in-place complex 2-D DFT
/// both ways on complex_data(), and an in-place 2-D DCT both ways (REDFT10
/// and REDFT01) on real_data(). Not copyable.
class ObjectTransforms {
 public:
  ObjectTransforms(MPI_Comm comm, long rows, long cols);
  ~ObjectTransforms();
  ObjectTransforms(const ObjectTransforms&) = delete;
  ObjectTransforms& operator=(const ObjectTransforms&) = delete;

  /// Forward DFT of complex_data(), in place, unnormalised (FFTW's sign -1).
  void forward();
  /// Inverse DFT of complex_data(), in place, divided by rows x cols: inverse(forward(x)) == x.
  void inverse();
  /// DCT-II (REDFT10) of real_data() along both axes, in place, unnormalised.
  void dct();
  /// DCT-III (REDFT01) along both axes divided by 4 rows cols: idct(dct(x)) == x.
  void idct();

  cfloat* complex_data() { return m_complex; }
  float* real_data() { return m_real; }
  const Rect& slab() const { return m_slab.rect; }
  long slab_alloc() const { return m_slab.alloc; }
  long rows() const { return m_rows; }
  long cols() const { return m_cols; }
  MPI_Comm comm() const { return m_comm.get(); }
  /// The number of complex elements of one slab buffer (the area of the slab).
  long slab_size() const { return m_slab.rect.area(); }
  /// Bytes this rank's plans hold in buffers (for memory reports).
  long buffer_bytes() const;

  /// The frequency [cycles per pixel] of DFT row index `i` (global), in [-0.5, 0.5).
  double row_frequency(long i) const { return double(i <= (m_rows - 1) / 2 ? i : i - m_rows) / double(m_rows); }
  /// The frequency of DFT column index `j`.
  double col_frequency(long j) const { return double(j <= (m_cols - 1) / 2 ? j : j - m_cols) / double(m_cols); }

 private:
  Comm m_comm;
  long m_rows = 0;
  long m_cols = 0;
  Slab m_slab;
  cfloat* m_complex = nullptr;
  float* m_real = nullptr;
  void* m_forward = nullptr;
  void* m_inverse = nullptr;
  void* m_dct = nullptr;
  void* m_idct = nullptr;
};

/// Rows [row0 - 1] and [row0 + rows] of a slab-distributed field, from the
/// ranks that hold them (value 0 where the grid ends): for finite
/// differences across slab borders. `above` and `below` get cols elements each.
template <class T>
void neighbour_rows(const ObjectTransforms& t, const T* slab, std::vector<T>& above, std::vector<T>& below);

// ---- phase ramps ------------------------------------------------------------------------------

/// A linear phase: offset + slope_row * row + slope_col * col [rad], with
/// row and col global pixel indices.
struct PhaseRamp {
  double slope_row = 0;
  double slope_col = 0;
  double offset = 0;
};

/// The ramp of `object` (slab) over the pixels whose `weight` (slab, >= 0)
/// is positive: the slopes are the phases of the weighted sums of
/// O(r, c + 1) conj O(r, c) and O(r + 1, c) conj O(r, c) (robust to wrapped
/// phases), the offset the phase of the weighted sum of the object with the
/// slopes removed. An object with no weight gives a zero ramp.
PhaseRamp fit_phase_ramp(const ObjectTransforms& t, const cfloat* object, const float* weight);

/// object *= exp(-i ramp(r, c)) on this rank's slab.
void remove_phase_ramp(const ObjectTransforms& t, cfloat* object, const PhaseRamp& ramp);

// ---- unwrapping --------------------------------------------------------------------------------

/// Least-squares phase unwrapping (Ghiglia and Romero 1994, unweighted):
/// the phase whose differences best match the wrapped differences of
/// `wrapped` (slab, radians), by a Poisson solve with Neumann boundaries
/// through the DCT plans; then made congruent to the input (the input plus
/// the multiple of 2 pi nearest the least-squares solution), so a phase
/// whose true differences stay within (-pi, pi) comes back exactly, up to a
/// constant. Writes `unwrapped` (slab; it may be `wrapped` itself); uses
/// real_data() as scratch.
void unwrap_phase(ObjectTransforms& t, const float* wrapped, float* unwrapped);

// ---- Fourier filters ---------------------------------------------------------------------------

/// A radial Fourier filter. Frequencies in cycles per pixel.
struct FourierFilter {
  enum class Kind { lowpass, highpass, bandpass };
  Kind kind = Kind::lowpass;
  double low = 0;     ///< highpass and bandpass: the cut-on frequency
  double high = 0.5;  ///< lowpass and bandpass: the cut-off frequency
  /// Apodisation: the width of the cosine-squared edge centred on each cut [cycles per pixel].
  double width = 0.02;
};

/// Parses `lowpass:F`, `highpass:F` or `bandpass:F1:F2`, optionally followed
/// by `:W` for the edge width. Throws InputError naming `option` otherwise.
FourierFilter parse_fourier_filter(const std::string& text, const std::string& option);

/// The filter's gain at radial frequency f (cycles per pixel).
double filter_gain(const FourierFilter& f, double frequency);

/// Filters complex_data() in place: forward DFT, multiplication by the gain, inverse DFT.
void apply_fourier_filter(ObjectTransforms& t, const FourierFilter& filter);

// ---- registration and FRC ------------------------------------------------------------------------

/// A 2-D shift [pixels].
struct Shift {
  double row = 0;
  double col = 0;
};

/// A window over a rectangle of the grid (slab layout): 1 inside `region`
/// shrunk by `taper` pixels, falling to 0 at its edge as a cosine squared,
/// and 0 outside. `out` gets slab_size() values.
void tukey_window(const ObjectTransforms& t, const Rect& region, double taper, float* out);

/// The shift s that best maps b onto a, a(r) ~ b(r - s): the peak of the
/// cross-correlation |IDFT(DFT(a w) conj DFT(b w))|, refined to sub-pixel
/// precision by a parabola through the peak and its neighbours on each axis.
/// Uses complex_data() as scratch.
Shift register_shift(ObjectTransforms& t, const cfloat* a, const cfloat* b, const float* window);

/// field(r) := field(r - s), by a phase ramp in Fourier space (periodic). In place.
void shift_field(ObjectTransforms& t, cfloat* field, const Shift& s);

/// The Fourier ring correlation of two images, in rings one frequency step
/// (1 / max(rows, cols)) wide, up to Nyquist (0.5).
struct FrcCurve {
  std::vector<double> frequency;  ///< ring centres [cycles per pixel]
  std::vector<double> frc;        ///< Re sum A conj B / sqrt(sum |A|^2 sum |B|^2)
  std::vector<double> half_bit;   ///< van Heel and Schatz's 1/2-bit threshold per ring
  std::vector<long> pixels;       ///< Fourier pixels per ring
  /// Where the curve first falls below each threshold [cycles per pixel],
  /// interpolated linearly between rings; 0.5 if it never does.
  double cutoff_half_bit = 0.5;
  double cutoff_one_seventh = 0.5;
  bool reached_half_bit = false;
  bool reached_one_seventh = false;
};

/// The FRC of the windowed images a w and b w (slabs). Uses complex_data()
/// as scratch; the rings are summed over all ranks.
FrcCurve fourier_ring_correlation(ObjectTransforms& t, const cfloat* a, const cfloat* b, const float* window);

/// The half-period resolution [m] of a cutoff frequency [cycles per pixel] for pixels of `pixel_size` [m].
inline double half_period_resolution(double cutoff, double pixel_size) { return pixel_size / (2.0 * cutoff); }

}  // namespace ptycho
