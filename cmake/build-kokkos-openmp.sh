#!/usr/bin/env bash
# Builds Kokkos 3.4.01 with the OpenMP backend from Debian's own trilinos
# source package (the same Kokkos as libtrilinos-kokkos-dev, plus OpenMP), and
# installs it under a per-machine prefix, once. Later calls reuse it.
#
#   cmake/build-kokkos-openmp.sh [PREFIX]     (default /opt/ptycho/kokkos-openmp)
#
# Prints the prefix to pass as -DKokkos_ROOT=PREFIX on its last line.
set -euo pipefail
prefix=${1:-${PTYCHO_KOKKOS_OPENMP:-/opt/ptycho/kokkos-openmp}}
if [[ -f "$prefix/.ptycho-complete" ]]; then
  echo "$prefix"
  exit 0
fi
work=$(mktemp -d /tmp/ptycho-kokkos.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

# A private deb-src list, so the machine's apt configuration is not touched.
mkdir -p apt/lists/partial apt/cache/archives/partial
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
echo "deb-src http://deb.debian.org/debian $codename main" > apt/sources.list
aptopts=(-o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache")
echo "build-kokkos-openmp: fetching Debian's trilinos source (about 166 MB)" >&2
apt-get "${aptopts[@]}" update -q >&2
apt-get "${aptopts[@]}" source --download-only trilinos >&2
tarball=$(ls trilinos_*.orig.tar.* | head -n1)
echo "build-kokkos-openmp: unpacking the Kokkos part of $tarball" >&2
tar -xf "$tarball" --wildcards '*/packages/kokkos/*'
src=$(dirname "$(find . -path '*/packages/kokkos/CMakeLists.txt' | head -n1)")

cmake -S "$src" -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix.tmp" -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=OFF \
  -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_TESTS=OFF \
  -DBUILD_SHARED_LIBS=ON >&2
cmake --build build -j"$(nproc)" >&2
rm -rf "$prefix.tmp"
cmake --install build >&2
touch "$prefix.tmp/.ptycho-complete"
rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")"
mv "$prefix.tmp" "$prefix"
echo "$prefix"
