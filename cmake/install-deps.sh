#!/usr/bin/env bash
# Installs the Debian 12 packages ptycho needs to build, run and test, plus the
# python3 packages of the benchmark scorer. Idempotent: it installs only what
# is missing, and does nothing (no apt-get update) when all is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libopenmpi-dev openmpi-bin
  libfftw3-dev libfftw3-mpi-dev
  libhdf5-openmpi-dev hdf5-tools hdf5-filter-plugin bitshuffle
  libtrilinos-kokkos-dev
  libgtest-dev libgmock-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libpng-dev
  python3-numpy python3-h5py python3-scipy python3-skimage
  python3-dev pybind11-dev python3-pytest python3-mpi4py
  libtorch-dev libopenblas0-pthread
  dpkg-dev ca-certificates
)
if [[ "${PTYCHO_WITH_SLURM:-0}" == 1 ]]; then
  packages+=(slurm-wlm munge)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q "${missing[@]}"
