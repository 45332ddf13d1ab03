#pragma once
/// Experimental geometry and the object-pixel conventions of
/// shared/docs/CONVENTIONS.md.
#include <cmath>

namespace ptycho {

constexpr double kJoulePerEv = 1.602176634e-19;
constexpr double kHcEvMetre = 1.23984198e-6;  ///< wavelength [m] = kHcEvMetre / energy [eV]

/// Far-field detector geometry. SI units throughout.
struct DetectorGeometry {
  int frame_size = 0;          ///< M: frames are M x M pixels
  double energy_j = 0;         ///< photon energy [J]
  double distance_m = 0;       ///< sample-detector distance [m]
  double pixel_x_m = 0;        ///< detector pixel size along columns [m]
  double pixel_y_m = 0;        ///< detector pixel size along rows [m]

  double energy_ev() const { return energy_j / kJoulePerEv; }
  double wavelength_m() const { return kHcEvMetre / energy_ev(); }
  /// Object pixel size along rows and columns: lambda z / (M p) [m].
  double object_pixel_y_m() const { return wavelength_m() * distance_m / (frame_size * pixel_y_m); }
  double object_pixel_x_m() const { return wavelength_m() * distance_m / (frame_size * pixel_x_m); }
  /// The (square) object pixel size used for the object grid [m].
  double object_pixel_m() const { return object_pixel_x_m(); }
};

/// Where frame j reads the object: its patch starts at floor(r - M/2) and the
/// fractional remainder in [0, 1) is applied to the probe as a sub-pixel shift.
struct PatchOrigin {
  long row = 0;
  long col = 0;
  double frac_row = 0;
  double frac_col = 0;
};

inline PatchOrigin patch_origin(double row, double col, int frame_size) {
  const double tr = row - 0.5 * frame_size;
  const double tc = col - 0.5 * frame_size;
  PatchOrigin o;
  o.row = static_cast<long>(std::floor(tr));
  o.col = static_cast<long>(std::floor(tc));
  o.frac_row = tr - static_cast<double>(o.row);
  o.frac_col = tc - static_cast<double>(o.col);
  return o;
}

}  // namespace ptycho
