#include "ptycho/io/hdf5_util.hpp"

#include <sstream>

namespace ptycho::io {

void H5Id::reset() {
  if (m_id < 0) return;
  switch (H5Iget_type(m_id)) {
    case H5I_FILE: H5Fclose(m_id); break;
    case H5I_GROUP: H5Gclose(m_id); break;
    case H5I_DATASET: H5Dclose(m_id); break;
    case H5I_DATASPACE: H5Sclose(m_id); break;
    case H5I_DATATYPE: H5Tclose(m_id); break;
    case H5I_ATTR: H5Aclose(m_id); break;
    case H5I_GENPROP_LST: H5Pclose(m_id); break;
    default: break;
  }
  m_id = H5I_INVALID_HID;
}

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

bool path_exists(hid_t file, const std::string& path) {
  // Walk the path one component at a time: H5Lexists fails on a missing parent.
  std::string partial;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += "/" + part;
    if (H5Lexists(file, partial.c_str(), H5P_DEFAULT) <= 0) return false;
    if (H5Oexists_by_name(file, partial.c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return true;
}

}  // namespace ptycho::io
