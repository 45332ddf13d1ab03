#pragma once
/// Small RAII helpers over the HDF5 C API, used inside io/ only.
#include <hdf5.h>

#include <string>

namespace ptycho::io {

/// Owns an HDF5 identifier and closes it with the right H5*close.
class H5Id {
 public:
  H5Id() = default;
  explicit H5Id(hid_t id) : m_id(id) {}
  ~H5Id() { reset(); }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  H5Id(H5Id&& o) noexcept : m_id(o.m_id) { o.m_id = H5I_INVALID_HID; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = o.m_id;
      o.m_id = H5I_INVALID_HID;
    }
    return *this;
  }
  hid_t get() const { return m_id; }
  explicit operator bool() const { return m_id >= 0; }
  void reset();

 private:
  hid_t m_id = H5I_INVALID_HID;
};

/// Turns off HDF5's automatic error stack printing (we report our own errors).
void silence_hdf5_errors();

/// True if `path` (absolute, soft links followed) names an existing object.
bool path_exists(hid_t file, const std::string& path);

}  // namespace ptycho::io
