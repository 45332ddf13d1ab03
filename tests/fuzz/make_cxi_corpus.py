#!/usr/bin/python3
"""Writes the seed corpus of the CXI header fuzz target (tests/fuzz/corpus/cxi_header).

    /usr/bin/python3 tests/fuzz/make_cxi_corpus.py tests/fuzz/corpus/cxi_header

Small files (a few KB) that cover what read_cxi_header accepts: both frame
and translation paths, (N, 3), (3, N) and (N, 2) translations, unit
attributes, masks as integers and as h5py booleans (an enum), probes as
complex64, as {r, i} compounds and as modes, soft links, gzip chunks. Files
named valid_* must be accepted (the fuzz replay test checks it); the others
are rejected on purpose, so that mutations start from the error paths too.
h5py's default libver (earliest) writes version-1 object headers, which the
mutation driver's HDF5 mutations understand. Deterministic: no random data.
"""
import os
import sys

import h5py
import numpy as np

M = 16
ENERGY_J = 8000 * 1.602176634e-19
DX = 1.23984198e-6 / 8000 * 1.0 / (M * 75e-6)  # object pixel [m]


def frames(n, m=M, dtype=np.float32):
    r = np.arange(m) - m / 2
    ring = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 8.0)
    return np.stack([(100 * (k + 1) * ring).astype(dtype) for k in range(n)])


def positions(n):
    # A small raster, whole and fractional pixels, z = 0.
    xy = np.array([[(k % 2) * 3.5 * DX, (k // 2) * 2.25 * DX, 0.0] for k in range(n)])
    return xy


def probe(m=M):
    r = np.arange(m) - m / 2
    amp = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 18.0)
    phase = 0.1 * r[None, :] + 0.05 * r[:, None]
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def geometry(f, energy=ENERGY_J, units=None):
    src = f.require_group("entry_1/instrument_1/source_1")
    det = f.require_group("entry_1/instrument_1/detector_1")
    src["energy"] = energy
    det["distance"] = 1.0
    det["x_pixel_size"] = 75e-6
    det["y_pixel_size"] = 75e-6
    if units:
        src["energy"][...] = energy / 1.602176634e-19
        src["energy"].attrs["units"] = "eV"
        det["distance"][...] = 1000.0
        det["distance"].attrs["units"] = "mm"
        det["x_pixel_size"][...] = 75.0
        det["x_pixel_size"].attrs["units"] = "um"
        det["y_pixel_size"][...] = 75.0
        det["y_pixel_size"].attrs["units"] = np.bytes_(b"um")  # fixed-length string
    return src, det


def write(folder, name, build):
    path = os.path.join(folder, name)
    with h5py.File(path, "w") as f:
        build(f)
    print(f"{path}: {os.path.getsize(path)} bytes")


def basic(f):
    f["entry_1/data_1/data"] = frames(4)
    f["entry_1/sample_1/geometry_1/translation"] = positions(4)
    src, det = geometry(f)
    mask = np.zeros((M, M), np.uint8)
    mask[0, :3] = 1
    det["mask"] = mask
    src["probe"] = probe()


def pynx_like(f):
    # Frames under the detector with a soft link from data_1, uint16, gzip
    # chunks per frame; (3, N) translation under data_1; units; bool mask;
    # probe modes as an {r, i} compound under illumination.
    f.create_dataset("entry_1/instrument_1/detector_1/data", data=frames(3, dtype=np.uint16), chunks=(1, M, M),
                     compression="gzip")
    f.require_group("entry_1/data_1")
    f["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
    f["entry_1/data_1/translation"] = positions(3).T.copy()
    src, det = geometry(f, units=True)
    mask = np.zeros((M, M), bool)
    mask[M - 1, M - 1] = True
    det["mask"] = mask
    p = probe()
    modes = np.zeros((2, M, M), dtype=[("r", "<f4"), ("i", "<f4")])
    modes["r"][0], modes["i"][0] = p.real, p.imag
    modes["r"][1], modes["i"][1] = 0.3 * p.imag, 0.3 * p.real
    src["illumination"] = modes


def int_frames_xy(f):
    # int32 frames of 8 x 8, (N, 2) translation, no mask, no probe.
    f["entry_1/data_1/data"] = frames(2, m=8, dtype=np.int32)
    f["entry_1/sample_1/geometry_1/translation"] = positions(2)[:, :2].copy()
    geometry(f)


def detector_probe(f):
    # float64 frames, the probe under the detector, a float mask.
    f["entry_1/data_1/data"] = frames(2, dtype=np.float64)
    f["entry_1/sample_1/geometry_1/translation"] = positions(2)
    src, det = geometry(f)
    det["mask"] = np.zeros((M, M), np.float32)
    det["probe"] = probe()


def raster_basis_dark_monitor(f):
    # A 4-D raster (2, 2, M, M) with a (2, 2, 3) translation, frames turned a
    # quarter by basis_vectors (cdtools' (3, 2)), a (2, M, M) dark, a monitor
    # that leaves one frame out.
    f["entry_1/data_1/data"] = np.rot90(frames(4), axes=(1, 2)).copy().reshape(2, 2, M, M)
    f["entry_1/sample_1/geometry_1/translation"] = positions(4).reshape(2, 2, 3)
    src, det = geometry(f)
    det["basis_vectors"] = np.array([[75e-6, 0, 0], [0, -75e-6, 0]]).T
    det["data_dark"] = np.ones((2, M, M), np.float32)
    f["entry_1/data_1/monitor"] = np.array([1000.0, 1000.0, 20.0, 990.0])


def ptyd(f):
    # PtyPy's .ptyd: meta in keV with h5rw types, two chunks with (y, x)
    # positions and bool weights.
    for g in ("meta", "chunks", "info"):
        f.create_group(g).attrs["type"] = "dict"
    f["meta/energy"] = 8.0
    f["meta/distance"] = 1.0
    f["meta/psize"] = np.array([75e-6, 75e-6])
    f["meta/shape"] = np.array([M, M])
    f["meta/center"] = np.array([M / 2, M / 2])
    f["meta/num_frames"] = 4
    p = positions(4)
    for c, (lo, hi) in enumerate(((0, 3), (3, 4))):
        f[f"chunks/{c}/data"] = frames(4)[lo:hi]
        f[f"chunks/{c}/positions"] = np.stack([p[lo:hi, 1], p[lo:hi, 0]], axis=1)
        w = np.ones((hi - lo, M, M), bool)
        w[:, 0, 0] = False
        f[f"chunks/{c}/weights"] = w


def bad_translation_count(f):
    f["entry_1/data_1/data"] = frames(4)
    f["entry_1/sample_1/geometry_1/translation"] = positions(3)
    geometry(f)


def bad_energy(f):
    f["entry_1/data_1/data"] = frames(2)
    f["entry_1/sample_1/geometry_1/translation"] = positions(2)
    geometry(f, energy=8000.0)  # eV stored as joules


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "cxi_header")
    os.makedirs(folder, exist_ok=True)
    write(folder, "valid_basic.cxi", basic)
    write(folder, "valid_pynx_like.cxi", pynx_like)
    write(folder, "valid_int_frames_xy.cxi", int_frames_xy)
    write(folder, "valid_detector_probe.cxi", detector_probe)
    write(folder, "valid_raster_basis_dark_monitor.cxi", raster_basis_dark_monitor)
    write(folder, "valid_ptyd.cxi", ptyd)
    write(folder, "bad_translation_count.cxi", bad_translation_count)
    write(folder, "bad_energy.cxi", bad_energy)


if __name__ == "__main__":
    main()
