#!/usr/bin/python3
"""`ptycho analyze` and `ptycho reconstruct --halves` end to end (run by ctest,
see tests/jobs/CMakeLists.txt):

    test_analyze_cli.py PTYCHO_EXE MPIEXEC [unittest options]

With result files made here (numpy, h5py) whose truth is known, it checks that
  * --remove-ramp, --unwrap and --filter add /entry_1/analysis_1/object and
    /entry_1/analysis_1/phase_unwrapped, leave the object as it was, and give
    the same numbers at 1 and 4 ranks (to 1e-4); the unwrapped phase is the
    truth up to a constant;
  * --frc of two noisy copies of an object band-limited at a known frequency
    finds that frequency within 10 %, stores the curve in process_1/frc, writes
    frc.png and analysis.json, and agrees at 1 and 4 ranks to 1e-4;
  * bad requests exit 2 with one line naming the option or file;
  * reconstruct --halves writes both halves, their FRC and the plot;
  * a result is also a ptychodus product: everything its h5_product_file
    reader requires, with the positions back in the scan's metres and the
    object's centre consistent with them;
  * PyNX's object and probe loader (load_obj_probe_cxi, replayed) reads the
    same object and modes, the same way up, from a result written by 3 ranks.
Works in a temporary folder, removed at the end. Needs h5py and numpy.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

ARGS = None
OBJECT = "/entry_1/image_1/data"


def run(args, cwd, ranks=1):
    cmd = [ARGS.mpiexec, "-q", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", ARGS.ptycho] + list(args)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def write_result(path, obj, positions, pixel_size=10e-9):
    with h5py.File(path, "w") as f:
        f[OBJECT] = obj.astype(np.complex64)
        f["/entry_1/image_1/positions_px"] = np.asarray(positions, dtype=np.float64)
        f["/entry_1/image_1/pixel_size"] = pixel_size
        f["/entry_1/image_2/data"] = np.ones((1, 32, 32), np.complex64)


def grid_positions(rows, cols, step=8, margin=20):
    return [(r, c) for r in range(margin, rows - margin + 1, step) for c in range(margin, cols - margin + 1, step)]


def band_limited(rows, cols, cutoff, seed):
    rng = np.random.default_rng(seed)
    fr = np.fft.fftfreq(rows)[:, None]
    fc = np.fft.fftfreq(cols)[None, :]
    spec = (rng.normal(size=(rows, cols)) + 1j * rng.normal(size=(rows, cols))) * (np.hypot(fr, fc) < cutoff)
    field = np.fft.ifft2(spec)
    return field / np.sqrt(np.mean(np.abs(field) ** 2))


class Analyze(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ptycho_analyze_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_processing_at_one_and_four_ranks(self):
        rows, cols = 120, 136
        r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
        phase = 0.002 * ((c - 60) ** 2 + (r - 50) ** 2) + 2.0 * np.sin(0.08 * c) + 0.15 * r - 0.1 * c
        amp = 1 + 0.3 * np.cos(0.2 * r) * np.sin(0.15 * c)
        obj = amp * np.exp(1j * phase)
        out = {}
        for ranks in (1, 4):
            res = self.path(f"r{ranks}.h5")
            write_result(res, obj, grid_positions(rows, cols))
            with open(res, "rb") as f:
                before = f.read()
            p = run(["analyze", res, "--remove-ramp", "--unwrap", "--filter", "lowpass:0.45:0.05",
                     "--previews", self.path(f"prev{ranks}")], self.dir, ranks)
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            self.assertIn("peak memory per rank", p.stdout)
            with h5py.File(res, "r") as f:
                np.testing.assert_array_equal(f[OBJECT][()], obj.astype(np.complex64))
                out[ranks] = (f["/entry_1/analysis_1/object"][()], f["/entry_1/analysis_1/phase_unwrapped"][()])
                self.assertIn("remove-ramp", f["/entry_1/analysis_1/object"].attrs["operations"])
            self.assertNotEqual(len(before), 0)
            for png in ("processed_amplitude.png", "processed_phase.png", "phase_unwrapped.png", "analysis.json"):
                self.assertTrue(os.path.isfile(os.path.join(self.path(f"prev{ranks}"), png)), png)
        np.testing.assert_allclose(out[1][0], out[4][0], atol=1e-4)
        np.testing.assert_allclose(out[1][1], out[4][1], atol=1e-4)
        # The unwrapped phase: the truth less the fitted ramp, up to a constant (the filter barely
        # touches this smooth object inside the scanned region).
        unwrapped = out[1][1].astype(np.float64)
        inner = (slice(25, rows - 25), slice(25, cols - 25))
        ramp_free = phase - 0.15 * r + 0.1 * c
        d = unwrapped[inner] - ramp_free[inner]
        # The fitted ramp differs a little from the one put in (the quadratic has a mean slope too): fit a plane.
        A = np.stack([np.ones(d.size), r[inner].ravel(), c[inner].ravel()], 1)
        coef, *_ = np.linalg.lstsq(A, d.ravel(), rcond=None)
        self.assertLess(np.abs(d.ravel() - A @ coef).max(), 0.05)

    def test_frc_finds_a_known_band_limit(self):
        rows, cols, cutoff = 192, 176, 0.18
        truth = band_limited(rows, cols, cutoff, 1)
        rng = np.random.default_rng(2)
        noise = lambda: 0.35 * (rng.normal(size=(rows, cols)) + 1j * rng.normal(size=(rows, cols)))
        a = truth + noise()
        b = np.roll(truth, (2, -3), axis=(0, 1)) * np.exp(0.7j) + noise()
        pos = grid_positions(rows, cols, margin=16)
        found = {}
        for ranks in (1, 4):
            ra, rb = self.path(f"a{ranks}.h5"), self.path(f"b{ranks}.h5")
            write_result(ra, a, pos)
            write_result(rb, b, pos)
            with open(rb, "rb") as f:
                b_bytes = f.read()
            p = run(["analyze", ra, "--frc", rb, "--previews", self.path(f"frc{ranks}")], self.dir, ranks)
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            self.assertIn("at 1/2 bit", p.stdout)
            with open(rb, "rb") as f:
                self.assertEqual(f.read(), b_bytes, "--frc changed the second result")
            with h5py.File(ra, "r") as f:
                g = f["/entry_1/process_1/frc"]
                found[ranks] = (g["cutoff_half_bit_per_px"][()], g["cutoff_one_seventh_per_px"][()],
                                g["frc_complex"][()], g["shift_row_px"][()], g["shift_col_px"][()],
                                g["resolution_half_bit_m"][()])
            self.assertTrue(os.path.isfile(os.path.join(self.path(f"frc{ranks}"), "frc.png")))
            with open(os.path.join(self.path(f"frc{ranks}"), "analysis.json")) as f:
                j = json.load(f)
            self.assertAlmostEqual(j["frc"]["resolution_half_bit_nm"], found[ranks][5] * 1e9, places=6)
        cut = found[1][0]
        self.assertLess(abs(cut - cutoff), 0.1 * cutoff, f"1/2-bit cutoff {cut} for a band limit {cutoff}")
        self.assertAlmostEqual(found[1][3], -2, delta=0.2)
        self.assertAlmostEqual(found[1][4], 3, delta=0.2)
        self.assertAlmostEqual(found[1][5], 10e-9 / (2 * cut), delta=1e-12)
        for k in (0, 1, 3, 4):
            self.assertAlmostEqual(found[1][k], found[4][k], delta=1e-4)
        np.testing.assert_allclose(found[1][2], found[4][2], atol=1e-4)

    def test_bad_requests(self):
        rows, cols = 64, 64
        res = self.path("r.h5")
        write_result(res, np.ones((rows, cols)), grid_positions(rows, cols, margin=10))
        other = self.path("other.h5")
        write_result(other, np.ones((rows, cols + 8)), grid_positions(rows, cols, margin=10))
        cases = [
            ([res], "nothing to do"),
            ([res, "--filter", "lowpass:0.9"], "--filter"),
            ([res, "--filter", "notch:0.1"], "--filter"),
            ([res, "--frc", other], "--frc"),
            ([res, "--frc", res], "--frc"),
        ]
        # An object declared larger than any machine: refused before anything is allocated.
        huge = self.path("huge.h5")
        with h5py.File(huge, "w") as f:
            f.create_dataset(OBJECT, (2_000_000, 2_000_000), dtype=np.complex64)  # never written: no space used
        cases.append(([huge, "--unwrap"], "memory"))
        with open(res, "rb") as f:
            before = f.read()
        for args, needle in cases:
            p = run(["analyze"] + args, self.dir, 2)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stdout}{p.stderr}")
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, f"{args}: {p.stderr}")
            self.assertIn(needle, lines[0], args)
        with open(res, "rb") as f:
            self.assertEqual(f.read(), before, "a refused analysis changed the result")
        self.assertEqual(sorted(os.listdir(self.dir)), ["huge.h5", "other.h5", "r.h5"], "a refused analysis left files")

    def test_reconstruct_halves(self):
        scan = self.path("scan.cxi")
        p = run(["simulate", "-o", scan, "--object-size", "96", "--probe-size", "32", "--step", "4"], self.dir, 1)
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        p = run(["reconstruct", scan, "-o", self.path("out.h5"), "--halves", "--engines", "dm:20",
                 "--previews", self.path("prev")], self.dir, 2)
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        self.assertIn("FRC of the two halves", p.stdout)
        for half, other in (("half1", "half2"), ("half2", "half1")):
            with h5py.File(self.path(f"out.{half}.h5"), "r") as f:
                g = f["/entry_1/process_1/frc"]
                self.assertTrue(0 < g["cutoff_half_bit_per_px"][()] <= 0.5)
                self.assertTrue(g["compared_with"][()].decode().endswith(f"out.{other}.h5"))
                n = f["/entry_1/image_1/positions_px"].shape[0]
            self.assertGreater(n, 10)
        self.assertTrue(os.path.isfile(self.path("out.frc.png")))
        for png in ("frc.png", "half1/phase.png", "half2/amplitude.png", "half2/cost.png"):
            self.assertTrue(os.path.isfile(os.path.join(self.path("prev"), png)), png)
        with open(self.path("out.frc.json")) as f:
            self.assertGreater(json.load(f)["resolution_half_bit_nm"], 0)
        self.assertFalse(os.path.exists(self.path("out.h5")))


def small_result(test, folder, ranks):
    """Simulates a small scan in `folder` and reconstructs it (dm:4, 2 modes) on
    `ranks` ranks; returns (scan, result) paths."""
    scan, res = os.path.join(folder, "scan.cxi"), os.path.join(folder, "r.h5")
    p = run(["simulate", "-o", scan, "--object-size", "96", "--probe-size", "32", "--step", "4"], folder, 1)
    test.assertEqual(p.returncode, 0, p.stderr)
    p = run(["reconstruct", scan, "-o", res, "--engines", "dm:4", "--probe-modes", "2"], folder, ranks)
    test.assertEqual(p.returncode, 0, p.stderr)
    return scan, res


class PtychodusProduct(unittest.TestCase):
    def test_result_is_a_ptychodus_product(self):
        d = tempfile.mkdtemp(prefix="ptycho_product_")
        try:
            scan, res = small_result(self, d, 2)
            with h5py.File(scan, "r") as s, h5py.File(res, "r") as f:
                # Root attributes ptychodus reads without a default (str() of a str, floats).
                for a in ("name", "comments"):
                    self.assertIsInstance(f.attrs[a], str)
                self.assertEqual(f.attrs["name"], "scan")
                energy_ev = s["/entry_1/instrument_1/source_1/energy"][()] / 1.602176634e-19
                self.assertAlmostEqual(f.attrs["probe_energy_eV"], energy_ev, delta=1e-6 * energy_ev)
                self.assertAlmostEqual(f.attrs["detector_object_distance_m"],
                                       s["/entry_1/instrument_1/detector_1/distance"][()], places=12)
                self.assertIn("exposure_time_s", f.attrs)
                # Positions: indexes and metres, as in the scan (dm does not move them).
                t = s["/entry_1/data_1/translation"][()]  # (N, 3); geometry_1 holds (3, N) for PyNX
                n = t.shape[0]
                np.testing.assert_array_equal(f["probe_position_indexes"][()], np.arange(n))
                np.testing.assert_allclose(f["probe_position_x_m"][()], t[:, 0], atol=1e-15)
                np.testing.assert_allclose(f["probe_position_y_m"][()], t[:, 1], atol=1e-15)
                # Probe and object: complex, the same data as the contract's paths, with pixel geometry.
                probe, obj = f["probe"], f["object"]
                self.assertEqual(probe.dtype, np.complex64)
                self.assertEqual(probe.shape, (2, 32, 32))
                np.testing.assert_array_equal(probe[()], f["/entry_1/image_2/data"][()])
                np.testing.assert_array_equal(obj[()], f["/entry_1/image_1/data"][()])
                px = f["/entry_1/image_1/pixel_size"][()]
                for a in ("pixel_width_m", "pixel_height_m"):
                    self.assertAlmostEqual(probe.attrs[a], px)
                    self.assertAlmostEqual(obj.attrs[a], px)
                # Pixel j is centred at x = min_x + (j + 0.5) px with min_x = center - W px / 2: the
                # position in metres lands on the contract's pixel coordinate.
                h, w = obj.shape
                col = (f["probe_position_x_m"][()] - (obj.attrs["center_x_m"] - w * px / 2)) / px - 0.5
                row = (f["probe_position_y_m"][()] - (obj.attrs["center_y_m"] - h * px / 2)) / px - 0.5
                pos = f["/entry_1/image_1/positions_px"][()]
                np.testing.assert_allclose(col, pos[:, 1], atol=1e-6)
                np.testing.assert_allclose(row, pos[:, 0], atol=1e-6)
                self.assertEqual(f["object_layer_spacing_m"].shape, (0,))
                np.testing.assert_array_equal(f["loss_values"][()], f["/entry_1/process_1/cost_history"][()])
                self.assertNotIn("/entry_1/data_1", f)  # still a result, not a scan
        finally:
            shutil.rmtree(d, ignore_errors=True)


def pynx_load_obj_probe(path):
    """PyNX 2022.1's Ptycho.load_obj_probe_cxi (pynx/ptycho/ptycho.py; the runner's
    `load=` does the same), replayed with h5py: the last of entry_1, entry_2, ...
    (numbered without gaps), its object/data and probe/data flipped up/down
    (PyNX stores the top row first), the probe's pixel size as the mean of
    probe/x_pixel_size and y_pixel_size, and a look for a mask in result_1 and
    result_2, which must exist (a KeyError in PyNX otherwise)."""
    with h5py.File(path, "r") as h:
        i = 1
        while "entry_%d" % i in h:
            i += 1
        entry = h["entry_%d" % (i - 1)]
        obj = np.flip(entry["object/data"][()], axis=-2)
        probe = np.flip(entry["probe/data"][()], axis=-2)
        pixel = (entry["probe/x_pixel_size"][()] + entry["probe/y_pixel_size"][()]) / 2
        masks = ("mask" in entry["result_1"], "mask" in entry["result_2"])
    return obj, probe, pixel, masks


class PynxLayout(unittest.TestCase):
    def test_pynx_loads_the_object_and_probe(self):
        d = tempfile.mkdtemp(prefix="ptycho_pynx_")
        try:
            # 3 ranks: tiles of several sizes, each written upside down into its mirrored rows.
            _, res = small_result(self, d, 3)
            obj, probe, pixel, masks = pynx_load_obj_probe(res)
            with h5py.File(res, "r") as f:
                ours, modes = f["/entry_1/image_1/data"][()], f["/entry_1/image_2/data"][()]
                px = f["/entry_1/image_1/pixel_size"][()]
                self.assertEqual(f["/entry_1/result_1/data_type"][()].decode(), "electron density")
                self.assertNotIn("/entry_1/data_1", f)  # still a result, not a scan
            self.assertEqual(obj.shape, (1,) + ours.shape)  # PyNX's (modes, ny, nx)
            self.assertGreater(ours.shape[0], 1)
            np.testing.assert_array_equal(obj[0], ours)  # the same object, the same way up
            self.assertFalse(np.array_equal(ours, ours[::-1]))  # (a flip would show)
            np.testing.assert_array_equal(probe, modes)
            self.assertEqual(probe.shape, (2, 32, 32))
            self.assertAlmostEqual(pixel, px)
            self.assertEqual(masks, (False, False))
        finally:
            shutil.rmtree(d, ignore_errors=True)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("ptycho")
    parser.add_argument("mpiexec")
    ARGS, rest = parser.parse_known_args()
    ARGS.ptycho = os.path.abspath(ARGS.ptycho)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
