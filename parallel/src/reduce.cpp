#include "ptycho/parallel/reduce.hpp"

#include "ptycho/core/error.hpp"

#include <climits>

namespace ptycho {

namespace {

constexpr bool kHostAccessible = Kokkos::SpaceAccessibility<HostSpace, MemSpace>::accessible;

int mpi_count(std::size_t n, const char* what) {
  PTYCHO_THROW_IF(n > static_cast<std::size_t>(INT_MAX), what << ": " << n << " values exceed one MPI message");
  return static_cast<int>(n);
}

/// The sum of `n` contiguous complex<float> values at `data` (in MemSpace), in double.
cdouble local_sum(const cfloat* data, std::size_t n) {
  cdouble s(0, 0);
  Kokkos::parallel_reduce(
      "ptycho::global_sum_cfloat", Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::size_t>>(0, n),
      KOKKOS_LAMBDA(const std::size_t i, cdouble& acc) {
        acc += cdouble(static_cast<double>(data[i].real()), static_cast<double>(data[i].imag()));
      },
      s);
  return s;
}

cdouble global_sum_of(MPI_Comm comm, const cfloat* data, std::size_t n) {
  const cdouble s = local_sum(data, n);
  double v[2] = {s.real(), s.imag()};
  allreduce_sum(comm, v, 2);
  return cdouble(v[0], v[1]);
}

}  // namespace

void allreduce_sum(MPI_Comm comm, double* data, std::size_t n) {
  if (n == 0) return;  // still collective-safe: every rank passes the same n
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(n, "allreduce_sum"), MPI_DOUBLE, MPI_SUM, comm),
            "MPI_Allreduce (sum)");
}

void allreduce_max(MPI_Comm comm, double* data, std::size_t n) {
  if (n == 0) return;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, mpi_count(n, "allreduce_max"), MPI_DOUBLE, MPI_MAX, comm),
            "MPI_Allreduce (max)");
}

double global_sum(MPI_Comm comm, double local) {
  double out = 0;
  check_mpi(MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_SUM, comm), "MPI_Allreduce (sum)");
  return out;
}

long global_sum(MPI_Comm comm, long local) {
  long out = 0;
  check_mpi(MPI_Allreduce(&local, &out, 1, MPI_LONG, MPI_SUM, comm), "MPI_Allreduce (sum)");
  return out;
}

double global_max(MPI_Comm comm, double local) {
  double out = 0;
  check_mpi(MPI_Allreduce(&local, &out, 1, MPI_DOUBLE, MPI_MAX, comm), "MPI_Allreduce (max)");
  return out;
}

long global_max(MPI_Comm comm, long local) {
  long out = 0;
  check_mpi(MPI_Allreduce(&local, &out, 1, MPI_LONG, MPI_MAX, comm), "MPI_Allreduce (max)");
  return out;
}

cdouble global_sum(MPI_Comm comm, const View2<cfloat>& local) {
  PTYCHO_THROW_IF(!local.span_is_contiguous(), "global_sum: view " << local.label() << " is not contiguous");
  return global_sum_of(comm, local.data(), local.size());
}

cdouble global_sum(MPI_Comm comm, const View3<cfloat>& local) {
  PTYCHO_THROW_IF(!local.span_is_contiguous(), "global_sum: view " << local.label() << " is not contiguous");
  return global_sum_of(comm, local.data(), local.size());
}

ProbeReducer::ProbeReducer(MPI_Comm comm, int modes, int frame_size)
    : m_comm(comm), m_modes(modes), m_frame_size(frame_size) {
  PTYCHO_THROW_IF(modes < 1 || frame_size < 1,
                  "ProbeReducer: needs modes >= 1 and frame size >= 1, got " << modes << " and " << frame_size);
  const std::size_t plane = static_cast<std::size_t>(frame_size) * frame_size;
  const std::size_t n = 3 * static_cast<std::size_t>(modes) * plane;  // complex numerator + K denominators
  mpi_count(n, "ProbeReducer");
  m_buf = View1<double>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "ptycho::probe_reduce_buffer"), n);
  m_host = Kokkos::create_mirror_view(m_buf);
}

void ProbeReducer::check_dims(const char* what, std::size_t k, std::size_t r, std::size_t c) const {
  PTYCHO_THROW_IF(r != static_cast<std::size_t>(m_frame_size) || c != static_cast<std::size_t>(m_frame_size) ||
                      (k != static_cast<std::size_t>(m_modes) && k != 1),
                  "ProbeReducer: " << what << " is " << k << " x " << r << " x " << c << " but the plan is for "
                                   << m_modes << " modes of " << m_frame_size << " x " << m_frame_size);
}

void ProbeReducer::allreduce(const ExecSpace& exec, std::size_t n) {
  auto dev = Kokkos::subview(m_buf, Kokkos::make_pair(std::size_t(0), n));
  auto host = Kokkos::subview(m_host, Kokkos::make_pair(std::size_t(0), n));
  if constexpr (!kHostAccessible) Kokkos::deep_copy(exec, host, dev);
  exec.fence();
  allreduce_sum(m_comm.get(), host.data(), n);
  if constexpr (!kHostAccessible) Kokkos::deep_copy(exec, dev, host);
}

void ProbeReducer::sum(const ExecSpace& exec, const View3<cdouble>& numerator, const View2<double>& denominator) {
  check_dims("numerator", numerator.extent(0), numerator.extent(1), numerator.extent(2));
  check_dims("denominator", 1, denominator.extent(0), denominator.extent(1));
  sum_contiguous(exec, numerator, denominator.data(), denominator.size());
}

void ProbeReducer::sum(const ExecSpace& exec, const View3<cdouble>& numerator, const View3<double>& denominator) {
  check_dims("numerator", numerator.extent(0), numerator.extent(1), numerator.extent(2));
  check_dims("denominator", denominator.extent(0), denominator.extent(1), denominator.extent(2));
  sum_contiguous(exec, numerator, denominator.data(), denominator.size());
}

void ProbeReducer::sum_contiguous(const ExecSpace& exec, const View3<cdouble>& numerator, double* denominator,
                                  std::size_t nd) {
  PTYCHO_THROW_IF(numerator.extent(0) != static_cast<std::size_t>(m_modes),
                  "ProbeReducer: numerator has " << numerator.extent(0) << " modes, expected " << m_modes);
  const std::size_t nn = numerator.size();
  cdouble* num = numerator.data();
  double* den = denominator;
  const View1<double> buf = m_buf;
  const Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::size_t>> policy(exec, 0, nn + nd);
  Kokkos::parallel_for(
      "ptycho::probe_reduce_pack", policy, KOKKOS_LAMBDA(const std::size_t i) {
        if (i < nn) {
          buf(2 * i) = num[i].real();
          buf(2 * i + 1) = num[i].imag();
        } else {
          buf(nn + i) = den[i - nn];
        }
      });
  allreduce(exec, 2 * nn + nd);
  Kokkos::parallel_for(
      "ptycho::probe_reduce_unpack", policy, KOKKOS_LAMBDA(const std::size_t i) {
        if (i < nn)
          num[i] = cdouble(buf(2 * i), buf(2 * i + 1));
        else
          den[i - nn] = buf(nn + i);
      });
  exec.fence();
}

void ProbeReducer::sum(const ExecSpace& exec, const View3<cfloat>& local, const View3<cdouble>& global) {
  check_dims("local", local.extent(0), local.extent(1), local.extent(2));
  check_dims("global", global.extent(0), global.extent(1), global.extent(2));
  PTYCHO_THROW_IF(local.extent(0) != global.extent(0),
                  "ProbeReducer: local has " << local.extent(0) << " modes but global has " << global.extent(0));
  const std::size_t n = local.size();
  const cfloat* in = local.data();
  cdouble* out = global.data();
  const View1<double> buf = m_buf;
  Kokkos::parallel_for(
      "ptycho::probe_reduce_widen", Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::size_t>>(exec, 0, n),
      KOKKOS_LAMBDA(const std::size_t i) {
        buf(2 * i) = static_cast<double>(in[i].real());
        buf(2 * i + 1) = static_cast<double>(in[i].imag());
      });
  allreduce(exec, 2 * n);
  Kokkos::parallel_for(
      "ptycho::probe_reduce_unpack", Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::size_t>>(exec, 0, n),
      KOKKOS_LAMBDA(const std::size_t i) { out[i] = cdouble(buf(2 * i), buf(2 * i + 1)); });
  exec.fence();
}

}  // namespace ptycho
