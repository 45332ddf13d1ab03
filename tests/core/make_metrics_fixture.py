#!/usr/bin/python3
"""Fixture for tests/core/test_metrics.cpp: a degraded reconstruction of a
benchmark truth, written both as a result file (the result contract of
shared/docs/CONVENTIONS.md, for ptybench.py score) and as raw arrays (for the
C++ test, which links ptycho_core only and reads no HDF5).

  make_metrics_fixture.py --truth T_truth.h5 --data D.cxi --out DIR --case NAME

Degradations (all known, so the scorer has something to undo and something
to measure): the object is put on a larger or smaller grid at a whole-pixel
offset, shifted by a sub-pixel amount, multiplied by a complex factor and a
linear phase ramp, and given complex Gaussian noise. Positions are the true
ones moved by the same offset, plus a little jitter. The probe modes are the
true ones. With --mask, a copy of the data gets a beamstop-and-dead-pixel
mask whose pixels hold garbage, and DIR/data.cxi is that copy (the whole
file, so that any CXI reader accepts it).

DIR receives result.h5, data.cxi (only with --mask), meta.txt and NAME.bin
files: meta.txt lists `name dtype dims...` per array (dtypes c64, f64, f32,
u8; raw little-endian, row-major) and `blind 0|1` and `data PATH`.
"""
import argparse
import math
import os
import shutil

import h5py
import numpy as np

CASES = {
    # name: offset (row, col), grid growth (rows, cols), sub-pixel shift,
    #       factor, ramp (a, b, c), noise sigma, jitter sigma [px], seed
    "grown": dict(offset=(5, 3), grow=(9, 4), shift=(0.37, -0.61), factor=1.3 * np.exp(0.7j),
                  ramp=(0.3, 0.004, -0.003), noise=0.02, jitter=0.2, seed=11),
    "shrunk": dict(offset=(-2, 7), grow=(-3, 12), shift=(-1.28, 0.45), factor=0.8 * np.exp(-2.1j),
                   ramp=(-1.0, -0.002, 0.006), noise=0.05, jitter=0.3, seed=12),
    "clean": dict(offset=(0, 0), grow=(0, 0), shift=(0.0, 0.0), factor=1.0 + 0.0j,
                  ramp=(0.0, 0.0, 0.0), noise=0.005, jitter=0.0, seed=13),
}


def fourier_shift(x, s):
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(x) * np.exp(-2j * math.pi * (fy * s[0] + fx * s[1])))


def dump(out, meta, name, arr, dtype, code):
    a = np.ascontiguousarray(arr, dtype=dtype)
    a.tofile(os.path.join(out, name + ".bin"))
    meta.append(f"{name} {code} " + " ".join(str(d) for d in a.shape))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--mask", action="store_true")
    a = ap.parse_args()
    p = CASES[a.case]
    rng = np.random.default_rng(p["seed"])
    os.makedirs(a.out, exist_ok=True)

    with h5py.File(a.truth, "r") as f:
        truth = f["object"][()]
        true_pos = f["positions_px"][()]
        modes = f["probe_modes"][()]
        blind = bool(f.attrs["probe_error_pct"] or f.attrs["position_error_nm"] or f.attrs["partial_coherence_nm"])

    h, w = truth.shape
    yy, xx = np.mgrid[0:h, 0:w]
    a0, b, c = p["ramp"]
    deg = truth.astype(np.complex128) * p["factor"] * np.exp(1j * (a0 + b * yy + c * xx))
    deg = fourier_shift(deg, p["shift"])
    deg += p["noise"] * (rng.normal(size=deg.shape) + 1j * rng.normal(size=deg.shape))

    # rec(q) = deg(q - offset) on a grid of (h + grow_r, w + grow_c), 1 elsewhere.
    oy, ox = p["offset"]
    hr, wr = h + p["grow"][0], w + p["grow"][1]
    rec = np.ones((hr, wr), np.complex128)
    qy, qx = np.mgrid[0:hr, 0:wr]
    sy, sx = qy - oy, qx - ox
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    rec[inside] = deg[sy[inside], sx[inside]]
    rec = rec.astype(np.complex64)
    pos = true_pos + np.array([oy, ox], float) + p["jitter"] * rng.normal(size=true_pos.shape)

    data_path = a.data
    with h5py.File(a.data, "r") as f:
        frames = f["entry_1/instrument_1/detector_1/data"][()]
        mask = f["entry_1/instrument_1/detector_1/mask"][()] if "entry_1/instrument_1/detector_1/mask" in f else None
    if a.mask:
        m = frames.shape[-1]
        mask = np.zeros((m, m), np.uint32)
        fy, fx = np.meshgrid(np.arange(m) - m / 2, np.arange(m) - m / 2, indexing="ij")
        mask[(fy ** 2 + fx ** 2) <= 2.0 ** 2] = 1
        dead = rng.integers(0, m, size=(6, 2))
        mask[dead[:, 0], dead[:, 1]] = 1
        frames = frames.copy()
        frames[:, mask > 0] = np.where(rng.random((len(frames), int(mask.sum()))) < 0.5, 0.0, 1e7)
        # A full copy of the dataset (so any CXI reader accepts it) with the
        # corrupted frames and the mask in place.
        data_path = os.path.join(a.out, "data.cxi")
        shutil.copyfile(a.data, data_path)
        with h5py.File(data_path, "r+") as f:
            det = f["entry_1/instrument_1/detector_1"]
            del det["data"]
            det.create_dataset("data", data=frames.astype(np.float32), chunks=(1,) + frames.shape[1:],
                               compression="gzip", compression_opts=1)
            if "mask" in det:
                del det["mask"]
            det.create_dataset("mask", data=mask)

    with h5py.File(os.path.join(a.out, "result.h5"), "w") as f:
        f.create_dataset("entry_1/image_1/data", data=rec)
        f.create_dataset("entry_1/image_1/positions_px", data=pos.astype(np.float64))
        f.create_dataset("entry_1/image_1/pixel_size", data=1e-8)
        f.create_dataset("entry_1/image_2/data", data=modes.astype(np.complex64))

    meta = []
    dump(a.out, meta, "object", rec, np.complex64, "c64")
    dump(a.out, meta, "positions", pos, np.float64, "f64")
    dump(a.out, meta, "probe", modes, np.complex64, "c64")
    dump(a.out, meta, "truth_object", truth, np.complex64, "c64")
    dump(a.out, meta, "true_positions", true_pos, np.float64, "f64")
    dump(a.out, meta, "frames", frames, np.float32, "f32")
    if mask is not None:
        dump(a.out, meta, "mask", (mask != 0), np.uint8, "u8")
    meta.append(f"blind {int(blind)}")
    meta.append(f"data {data_path}")
    with open(os.path.join(a.out, "meta.txt"), "w") as f:
        f.write("\n".join(meta) + "\n")


if __name__ == "__main__":
    main()
