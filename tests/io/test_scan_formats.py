#!/usr/bin/python3
"""The scan formats ptycho reads besides its own CXI, and `ptycho convert`
(run by ctest, see tests/io/CMakeLists.txt):

    test_scan_formats.py PTYCHO_EXE MPIEXEC [--shared DIR] [unittest options]

The files are written here with h5py in each format's documented layout (as
PtyPy's h5rw, the APS fold_slice scripts, NXcxi_ptycho and cdtools write
them; see io/include/ptycho/io/scan_formats.hpp for the sources), never with
ptycho's own writers, and read back through `ptycho convert IN OUT.cxi`:
  * frames, positions, geometry and mask come out as in the CXI they were made from;
  * a 4-D raster, and frames turned with basis_vectors that say so (CXI's
    (2, 3) and cdtools' (3, 2)), read as the plain frames;
  * frames compressed with bitshuffle-LZ4, LZ4 and LZF read as the plain ones;
  * ptycho's own writers round-trip: CXI -> .ptyd -> CXI, CXI -> fold_slice
    -> CXI, CXI -> CXI;
  * every format reconstructs to the same object as the plain CXI (a
    simulated scan, and ../shared/bench/data/standard_s00 when present),
    with --probe-from where the format holds no probe;
  * malformed files of each format: exit 2, one line naming the file and
    the dataset, inputs unchanged.
Works in a temporary folder, removed at the end. Needs h5py and numpy.
"""
import argparse
import hashlib
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
TIMEOUT = 300
PIXEL = 75e-6  # the simulated detector pixel [m]
FRAMES = "/entry_1/instrument_1/detector_1/data"
HC_EV_M = 1.23984198e-6  # ptycho's wavelength [m] = HC_EV_M / energy [eV]
EV = 1.602176634e-19


def run(args, ranks=1, env=None):
    cmd = [ARGS.ptycho] + args
    if ranks > 1:
        cmd = [ARGS.mpiexec, "-n", str(ranks)] + cmd
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=e)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_cxi(path):
    """What a CXI file says, in the scan's convention: frames (N, M, M) with
    rows along y, the translation's x and y [m], energy [J], distance and
    pixel sizes [m], mask (M, M) bool (True = invalid) and the probe (or None)."""
    with h5py.File(path, "r") as f:
        t = f["/entry_1/data_1/translation"][()]
        if t.shape[0] in (2, 3) and t.shape[1] != 3:
            t = t.T
        det = f["/entry_1/instrument_1/detector_1"]
        m = det["mask"][()] != 0 if "mask" in det else None
        probe = f["/entry_1/instrument_1/source_1/probe"][()] if "/entry_1/instrument_1/source_1/probe" in f else None
        return dict(frames=f[FRAMES][()].astype(np.float32), x=t[:, 0], y=t[:, 1],
                    energy=float(f["/entry_1/instrument_1/source_1/energy"][()]), distance=float(det["distance"][()]),
                    px=float(det["x_pixel_size"][()]), py=float(det["y_pixel_size"][()]), mask=m, probe=probe)


class ScanFormats(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="ptycho-scan-formats-")
        cls.scan = os.path.join(cls.base, "scan.cxi")
        r = run(["simulate", "--object-size", "64", "--probe-size", "16", "--step", "4", "--seed", "3",
                 "--mask", "beamstop", "-o", cls.scan])
        assert r.returncode == 0, r.stderr
        cls.ref = read_cxi(cls.scan)
        cls.shared_s00 = None
        if ARGS.shared:
            p = os.path.join(ARGS.shared, "bench", "data", "standard_s00.cxi")
            if os.path.exists(p):
                cls.shared_s00 = p

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.base, name)

    # ---------------------------------------------------------------- writers in each format's layout
    def write_ptyd(self, path, ref, chunks=2, weights_per_frame=True, tweak=None):
        """As PtyPy's PtyScan saves it: h5rw groups and `type` attributes,
        energy in keV, positions (y, x) [m], bool weights (h5py's enum)."""
        n, m = ref["frames"].shape[0], ref["frames"].shape[1]
        with h5py.File(path, "w") as f:
            for g in ("meta", "chunks", "info"):
                f.create_group(g).attrs["type"] = "dict"
            meta = f["meta"]
            for k, v, t in (("energy", ref["energy"] / EV / 1e3, "scalar"), ("distance", ref["distance"], "scalar"),
                            ("psize", np.array([ref["py"], ref["px"]]), "array"),
                            ("shape", np.array([m, m], dtype=np.int64), "array"),
                            ("center", np.array([m // 2, m // 2], dtype=float), "array"),
                            ("num_frames", np.int64(n), "scalar"), ("version", 0.1, "scalar")):
                meta.create_dataset(k, data=v).attrs["type"] = t
            bounds = np.linspace(0, n, chunks + 1).astype(int)
            good = ~ref["mask"] if ref["mask"] is not None else np.ones((m, m), bool)
            for c in range(chunks):
                lo, hi = bounds[c], bounds[c + 1]
                g = f["chunks"].create_group(str(c))
                g.attrs["type"] = "dict"
                g.create_dataset("data", data=ref["frames"][lo:hi], compression="gzip").attrs["type"] = "array"
                g.create_dataset("positions", data=np.stack([ref["y"][lo:hi], ref["x"][lo:hi]], axis=1))
                w = np.broadcast_to(good, (hi - lo, m, m)) if weights_per_frame else good
                g.create_dataset("weights", data=np.ascontiguousarray(w), compression="gzip")
                g.create_dataset("indices", data=np.arange(lo, hi, dtype=np.int64)).attrs["type"] = "arraylist"
            if tweak:
                tweak(f)

    def write_fold_slice(self, stem, ref, tweak=None, pos_shape=None, with_geometry=False):
        """As the APS prep scripts write it: /dp (N, H, W) float64 gzip; /ppX,
        /ppY [m]; /lambda and /dx (1,) [m]."""
        n, m = ref["frames"].shape[0], ref["frames"].shape[1]
        lam = HC_EV_M / (ref["energy"] / EV)
        dx = lam * ref["distance"] / (m * ref["px"])
        with h5py.File(stem + "_dp.hdf5", "w") as f:
            f.create_dataset("dp", data=ref["frames"].astype(np.float64), compression="gzip", chunks=(1, m, m))
        with h5py.File(stem + "_para.hdf5", "w") as f:
            shape = pos_shape or (n,)
            f["ppX"] = ref["x"].reshape(shape)
            f["ppY"] = ref["y"].reshape(shape)
            f["lambda"] = np.array([lam])
            f["dx"] = np.array([dx])
            if with_geometry:
                f["z"] = np.array([ref["distance"]])
                f["ds"] = np.array([ref["px"]])
            if tweak:
                tweak(f)

    def write_ptychodus(self, folder, ref, extra_index=False, tweak=None):
        """As ptychodus's batch mode exports it: diffraction.h5 with /patterns
        (LZF, as ptychodus writes), /indexes and /bad_pixels (bool), and a
        product-in.h5 with the probe as (OPR, modes, M, M) and its pixel."""
        os.makedirs(folder, exist_ok=True)
        n, m = ref["frames"].shape[0], ref["frames"].shape[1]
        lam = HC_EV_M / (ref["energy"] / EV)
        dx = lam * ref["distance"] / (m * ref["px"])
        dy = lam * ref["distance"] / (m * ref["py"])
        index = np.arange(n, dtype=np.int64) + 100  # any labels: matched, not counted
        with h5py.File(os.path.join(folder, "diffraction.h5"), "w") as f:
            f.create_dataset("patterns", data=ref["frames"], compression="lzf")
            f.create_dataset("indexes", data=index, compression="lzf")
            bad = ref["mask"] if ref["mask"] is not None else np.zeros((m, m), bool)
            f.create_dataset("bad_pixels", data=bad, compression="lzf")
        with h5py.File(os.path.join(folder, "product-in.h5"), "w") as f:
            for k, v in (("name", "scan"), ("comments", ""), ("detector_object_distance_m", ref["distance"]),
                         ("probe_energy_eV", ref["energy"] / EV), ("exposure_time_s", 0.0)):
                f.attrs[k] = v
            pi, px_, py_ = index, ref["x"], ref["y"]
            if extra_index:  # a position without a pattern, and pattern 0 without a position
                pi, px_, py_ = np.append(index[1:], 7), np.append(ref["x"][1:], 0.0), np.append(ref["y"][1:], 0.0)
            f["probe_position_indexes"] = pi
            f["probe_position_x_m"] = px_
            f["probe_position_y_m"] = py_
            f["probe"] = ref["probe"].astype(np.complex64)[None, None]
            f["probe"].attrs["pixel_width_m"] = dx
            f["probe"].attrs["pixel_height_m"] = dy
            f["object"] = np.ones((1, 8, 8), np.complex64)
            for k, v in (("pixel_width_m", dx), ("pixel_height_m", dy), ("center_x_m", 0.0), ("center_y_m", 0.0)):
                f["object"].attrs[k] = v
            f["object_layer_spacing_m"] = np.zeros(0)
            f["loss_values"] = np.zeros(0)
            if tweak:
                tweak(f)
        return os.path.join(folder, "diffraction.h5")

    def write_cxi_variant(self, path, src, frames=None, translation=None, basis=None, drop_probe=False, turn=None):
        """A copy of the CXI `src` with its frames, translation or basis
        replaced; `turn` turns the frames and the mask alike."""
        with h5py.File(src, "r") as f, h5py.File(path, "w") as g:
            def cp(name, obj):
                if not isinstance(obj, h5py.Dataset) or name.startswith("entry_1/data_1"):
                    return
                if drop_probe and "source_1/" in name and ("probe" in name or "illumination" in name):
                    return
                d = obj[()]
                if "/" + name == FRAMES and frames is not None:
                    d = frames(d)
                if turn is not None and "/" + name == FRAMES:
                    d = np.ascontiguousarray(turn(d))
                if turn is not None and name.endswith("detector_1/mask"):
                    d = np.ascontiguousarray(turn(d[None])[0])
                if name == "entry_1/sample_1/geometry_1/translation" and translation is not None:
                    d = translation(d)
                if name.endswith("basis_vectors"):
                    return
                g.create_dataset(name, data=d)
            f.visititems(cp)
            if basis is not None:
                g["/entry_1/instrument_1/detector_1/basis_vectors"] = basis
            g["/entry_1/data_1/data"] = h5py.SoftLink(FRAMES)

    # ---------------------------------------------------------------- checks
    def convert_ok(self, src, out, extra=()):
        before = sha(src)
        r = run(["convert", src, out] + list(extra))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sha(src), before, "convert modified its input")
        return r

    def assert_same_scan(self, got, ref, probe=True):
        np.testing.assert_array_equal(got["frames"], ref["frames"])
        step = np.max(np.abs(np.diff(ref["x"]))) + np.max(np.abs(np.diff(ref["y"])))
        np.testing.assert_allclose(got["x"], ref["x"], rtol=0, atol=1e-9 * step)
        np.testing.assert_allclose(got["y"], ref["y"], rtol=0, atol=1e-9 * step)
        lam = lambda e: HC_EV_M / (e / EV)
        obj = lambda s: lam(s["energy"]) * s["distance"] / (s["frames"].shape[1] * s["px"])
        self.assertAlmostEqual(obj(got) / obj(ref), 1.0, places=10)
        self.assertAlmostEqual(got["energy"] / ref["energy"], 1.0, places=10)
        if ref["mask"] is not None:
            self.assertIsNotNone(got["mask"])
            np.testing.assert_array_equal(got["mask"], ref["mask"])
        if probe and ref["probe"] is not None:
            np.testing.assert_allclose(got["probe"], ref["probe"], rtol=0, atol=1e-6 * np.abs(ref["probe"]).max())

    def through_convert(self, src, name):
        out = self.path(name + ".cxi")
        self.convert_ok(src, out)
        return read_cxi(out)

    def info(self, src, extra=()):
        r = run(["info", src, "--json"] + list(extra))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    # ---------------------------------------------------------------- readers
    def test_ptyd_as_ptypy_writes_it(self):
        for per_frame in (True, False):
            p = self.path(f"ptypy_{per_frame}.ptyd")
            self.write_ptyd(p, self.ref, chunks=3, weights_per_frame=per_frame)
            self.assertEqual(self.info(p)["format"], "PtyPy .ptyd")
            self.assert_same_scan(self.through_convert(p, f"from_ptyd_{per_frame}"), self.ref, probe=False)

    def test_ptyd_with_h5rw_none_and_no_weights(self):
        """PtyPy writes None as a placeholder (type "None") when it does not
        know the frame count, counts frames a scan that ended early never
        saved, and may store empty weights (ptyd.rst)."""
        n = len(self.ref["x"])

        def tweak(f):
            del f["meta/num_frames"]
            f.create_dataset("meta/num_frames", data=np.zeros((1,))).attrs["type"] = "None"
            del f["meta/center"]
            f.create_dataset("meta/center", data=np.zeros((1,))).attrs["type"] = "None"
            for c in f["chunks"]:
                del f[f"chunks/{c}/weights"]
                f[f"chunks/{c}/weights"] = np.zeros((0,))
        p = self.path("none.ptyd")
        self.write_ptyd(p, self.ref, tweak=tweak)
        self.assert_same_scan(self.through_convert(p, "from_none"), dict(self.ref, mask=None), probe=False)

        def early(f):
            f["meta/num_frames"][()] = n + 50
        p = self.path("early.ptyd")
        self.write_ptyd(p, self.ref, tweak=early)
        self.assertEqual(self.info(p)["frames"], n)

    def test_ptyd_weight_zero_in_one_frame_masks_the_pixel(self):
        p = self.path("one_frame.ptyd")

        def zero(f):
            w = f["chunks/1/weights"][()]
            w[2, 3, 4] = False
            del f["chunks/1/weights"]
            f["chunks/1/weights"] = w
        self.write_ptyd(p, self.ref, tweak=zero)
        got = self.through_convert(p, "one_frame")
        expected = self.ref["mask"].copy()
        expected[3, 4] = True
        np.testing.assert_array_equal(got["mask"], expected)

    def test_fold_slice_as_the_aps_scripts_write_it(self):
        for i, shape in enumerate(((len(self.ref["x"]),), (len(self.ref["x"]), 1), (1, len(self.ref["x"])))):
            stem = self.path(f"aps{i}")
            ref = dict(self.ref, mask=None)
            self.write_fold_slice(stem, ref, pos_shape=shape)
            info = self.info(stem + "_dp.hdf5")
            self.assertEqual(info["format"], "fold_slice _dp/_para")
            # No distance in the pair: a 75 um pixel is assumed, and the object pixel is dx.
            self.assertAlmostEqual(info["detector_pixel_m"][0], 75e-6, places=15)
            # Either file of the pair names the scan.
            got = self.through_convert(stem + "_para.hdf5", f"from_fold_slice{i}")
            self.assert_same_scan(got, ref, probe=False)

    def test_ptychodus_as_its_batch_mode_writes_it(self):
        p = self.write_ptychodus(self.path("ptychodus"), self.ref)
        self.assertEqual(self.info(p)["format"], "ptychodus diffraction.h5 + product-in.h5")
        self.assert_same_scan(self.through_convert(p, "from_ptychodus"), self.ref)
        # Matched by index: a pattern without a position is left out.
        p = self.write_ptychodus(self.path("ptychodus_extra"), self.ref, extra_index=True)
        info = self.info(p)
        self.assertEqual((info["frames"], info["frames_left_out"]), (len(self.ref["x"]) - 1, 1))
        got = self.through_convert(p, "from_ptychodus_extra")
        ref = dict(self.ref, frames=self.ref["frames"][1:], x=self.ref["x"][1:], y=self.ref["y"][1:])
        self.assert_same_scan(got, ref)

    def write_described(self, name, extra_keys=(), drop_keys=()):
        """A plain HDF5 file (frames, positions in um as (y, -x), a uint8
        mask) and a job file that describes it."""
        h5 = self.path(name + ".h5")
        with h5py.File(h5, "w") as f:
            f["measured/frames"] = self.ref["frames"]
            f["measured/positions"] = np.stack([self.ref["y"] * 1e6, -self.ref["x"] * 1e6], axis=1)
            f["measured/mask"] = self.ref["mask"].astype(np.uint8)
        keys = {"input": f'"{h5}"', "frames_dataset": '"/measured/frames"', "positions_dataset": '"/measured/positions"',
                "positions_order": '"yx"', "positions_unit": '"um"', "negate_x": "true",
                "energy_kev": repr(self.ref["energy"] / EV / 1e3), "distance_m": repr(self.ref["distance"]),
                "pixel_size_m": repr(self.ref["px"]), "mask_dataset": '"/measured/mask"'}
        keys.update(dict(extra_keys))
        job = self.path(name + ".toml")
        with open(job, "w") as f:
            for k, v in keys.items():
                if k not in drop_keys:
                    f.write(f"{k} = {v}\n")
        return job

    def test_described_hdf5_in_a_job_file(self):
        job = self.write_described("described")
        info = self.info(job)
        self.assertEqual((info["format"], info["frames"], info["masked_pixels"]),
                         ("HDF5 described by the job", len(self.ref["x"]), int(self.ref["mask"].sum())))
        r = self.convert_ok(job, self.path("described.cxi"))
        self.assertIn("HDF5 described by", r.stdout)
        self.assert_same_scan(read_cxi(self.path("described.cxi")), self.ref, probe=False)
        plain = self.reconstruct(self.scan, "described_plain")
        obj = self.reconstruct(job, "described", ["--probe-from", self.scan])
        np.testing.assert_allclose(obj, plain, rtol=0, atol=1e-5 * np.abs(plain).max())
        # Bad descriptions: one line naming the key or the dataset.
        for name, kw, text in (("no_energy", dict(drop_keys=("energy_kev",)), "energy_kev"),
                               ("inch", dict(extra_keys={"positions_unit": '"inch"'}), "positions_unit"),
                               ("orphan", dict(drop_keys=("frames_dataset",)), "frames_dataset"),
                               ("wrong", dict(extra_keys={"positions_dataset": '"/measured/mask"'}), "/measured/mask")):
            bad = self.write_described("bad_" + name, **kw)
            self.refuse(["convert", bad, self.path(f"bad_{name}.cxi")], text)
            self.assertFalse(os.path.exists(self.path(f"bad_{name}.cxi")))

    def test_raster_frames_read_as_the_plain_frames(self):
        n = self.ref["frames"].shape[0]
        rows = next(r for r in range(int(np.sqrt(n)), 0, -1) if n % r == 0)
        m = self.ref["frames"].shape[1]
        p = self.path("raster.cxi")
        self.write_cxi_variant(p, self.scan, frames=lambda d: d.reshape(rows, n // rows, m, m),
                               translation=lambda t: t.reshape(rows, n // rows, 3) if t.shape[-1] == 3
                               else t.T.reshape(rows, n // rows, 3))
        self.assert_same_scan(self.through_convert(p, "from_raster"), self.ref)

    def test_basis_vectors_turn_the_frames_back(self):
        px, py = self.ref["px"], self.ref["py"]
        cases = {
            # np.rot90: stored row i+1 steps +x, column j+1 steps -y.
            "rot90": (lambda d: np.rot90(d, axes=(1, 2)), [[px, 0, 0], [0, -py, 0]]),
            # up-down flip: rows step +y.
            "flipud": (lambda d: d[:, ::-1, :], [[0, py, 0], [-px, 0, 0]]),
            # transpose: rows step -x, columns -y.
            "transpose": (lambda d: np.transpose(d, (0, 2, 1)), [[-px, 0, 0], [0, -py, 0]]),
            # the default written out: nothing turns.
            "default": (lambda d: d, [[0, -py, 0], [-px, 0, 0]]),
            # directions only (unit vectors): the turn, with the pixel sizes of x/y_pixel_size.
            "unit_rot90": (lambda d: np.rot90(d, axes=(1, 2)), [[1, 0, 0], [0, -1, 0]]),
        }
        for name, (turn, basis) in cases.items():
            for layout in ("cxi", "cdtools"):
                b = np.array(basis, dtype=float)
                p = self.path(f"basis_{name}_{layout}.cxi")
                self.write_cxi_variant(p, self.scan, turn=turn, basis=b if layout == "cxi" else b.T)
                info = self.info(p)
                if name != "default":
                    self.assertIn("basis_vectors", info["stored_orientation_source"], name)
                self.assert_same_scan(self.through_convert(p, f"from_basis_{name}_{layout}"), self.ref)

    def test_compressed_frames_read_through_the_filter_plugins(self):
        for name, filt, opts in (("bslz4", 32008, (0, 2)), ("lz4", 32004, None), ("lzf", "lzf", None)):
            p = self.path(f"{name}.cxi")
            with h5py.File(self.scan, "r") as f, h5py.File(p, "w") as g:
                def cp(n, obj):
                    if isinstance(obj, h5py.Dataset) and not n.startswith("entry_1/data_1"):
                        kw = {}
                        if "/" + n == FRAMES:
                            kw = dict(compression=filt, chunks=(1,) + obj.shape[1:])
                            if opts:
                                kw["compression_opts"] = opts
                        g.create_dataset(n, data=obj[()], **kw)
                f.visititems(cp)
                g["/entry_1/data_1/data"] = h5py.SoftLink(FRAMES)
                self.assertTrue(g[FRAMES]._filters, name)
            self.assert_same_scan(self.through_convert(p, f"from_{name}"), self.ref)

    def test_a_missing_filter_is_named(self):
        p = self.path("bslz4_missing.cxi")
        with h5py.File(self.scan, "r") as f, h5py.File(p, "w") as g:
            f.copy("entry_1", g)
            del g[FRAMES]
            g.create_dataset(FRAMES, data=f[FRAMES][()], compression=32008, compression_opts=(0, 2),
                             chunks=(1,) + f[FRAMES].shape[1:])
        r = run(["info", p], env={"HDF5_PLUGIN_PATH": self.base})  # a folder without plugins
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("filter 32008", r.stderr)
        self.assertIn("/entry_1/data_1/data", r.stderr)  # the path the frames were opened by

    def test_real_cdtools_file_reads_and_round_trips(self):
        """The PETRA III near-field scan as cdtools wrote it (../shared/realdata,
        CC BY 4.0): int32 frames, a uint32 mask, basis_vectors (3, 2) (the CXI
        default in cdtools' layout), energy in joules. Read as stored, and
        carried through .ptyd and fold_slice back to CXI unchanged."""
        if not ARGS.shared:
            self.skipTest("no ../shared")
        src = os.path.join(ARGS.shared, "realdata", "PETRAIII_P25_Near_Field_Ptycho.cxi")
        info = self.info(src)
        self.assertEqual((info["frames"], info["frame_size"], info["frames_type"]), (200, 100, "int32"))
        self.assertEqual(info["stored_orientation"], "as stored")  # the default basis, in cdtools' (3, 2)
        self.assertEqual(info["masked_pixels"], 5)
        with h5py.File(src, "r") as f:
            self.assertEqual(f["/entry_1/instrument_1/detector_1/basis_vectors"].shape, (3, 2))
            t = f["/entry_1/sample_1/geometry_1/translation"][()]
            det = f["/entry_1/instrument_1/detector_1"]
            ref = dict(frames=f["/entry_1/data_1/data"][()].astype(np.float32), x=t[:, 0].astype(float),
                       y=t[:, 1].astype(float), energy=float(f["/entry_1/instrument_1/source_1/energy"][()]),
                       distance=float(det["distance"][()]), px=float(det["x_pixel_size"][()]),
                       py=float(det["y_pixel_size"][()]), mask=det["mask"][()] != 0, probe=None)
        self.assert_same_scan(self.through_convert(src, "petra"), ref)
        for out in ("petra.ptyd", "petra_dp.hdf5"):
            self.convert_ok(src, self.path(out))
            back = self.through_convert(self.path(out), "petra_back_" + out.replace(".", "_"))
            self.assert_same_scan(back, ref)

    def test_dark_starts_the_background(self):
        p = self.path("dark.cxi")
        m = self.ref["frames"].shape[1]
        dark = np.stack([np.full((m, m), 2.0), np.full((m, m), 4.0)]).astype(np.float32)  # averaged: 3
        dark[:, 0, 1] = [6.0, 8.0]
        with h5py.File(self.scan, "r") as f, h5py.File(p, "w") as g:
            f.copy("entry_1", g)
            g["/entry_1/instrument_1/detector_1/data_dark"] = dark
        info = self.info(p)
        self.assertEqual(info["dark_dataset"], "/entry_1/instrument_1/detector_1/data_dark")
        r = run(["reconstruct", p, "-o", self.path("dark_r.h5"), "--engines", "dm:2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("background: pixel, starting from the scan's dark", r.stdout)
        r = run(["reconstruct", p, "-o", self.path("dark_none.h5"), "--engines", "dm:2", "--background", "none"])
        self.assertIn("is not used (background = none)", r.stdout)
        # convert carries it to CXI (data_dark and PyNX's dark), not to .ptyd.
        out = self.path("dark_out.cxi")
        self.convert_ok(p, out, ["--flip-x"])
        with h5py.File(out, "r") as f:
            d = f["/entry_1/instrument_1/detector_1/data_dark"][()]
            self.assertEqual(d[0, m - 2], 7.0)  # the mean of 6 and 8, turned with the frames
            self.assertEqual(d[0, 1], 3.0)
            np.testing.assert_array_equal(f["/entry_1/instrument_1/detector_1/dark"][()], d)
        r = self.convert_ok(p, self.path("dark.ptyd"))
        self.assertIn("not carried over: the dark", r.stdout)
        bad = self.path("dark_bad.cxi")
        with h5py.File(p, "r") as f, h5py.File(bad, "w") as g:
            f.copy("entry_1", g)
            del g["/entry_1/instrument_1/detector_1/data_dark"]
            g["/entry_1/instrument_1/detector_1/dark"] = np.zeros((3, 5))
        self.refuse(["info", bad], bad, "/entry_1/instrument_1/detector_1/dark")

    def test_monitor_leaves_out_frames_without_beam(self):
        n = len(self.ref["x"])
        mon = np.full(n, 1000.0)
        out = [3, 7, n - 1]
        mon[out] = [50.0, 0.0, 100.0]  # at most 0.1 x the median: left out
        mon[5] = 101.0  # just above: kept
        p = self.path("monitor.cxi")
        with h5py.File(self.scan, "r") as f, h5py.File(p, "w") as g:
            f.copy("entry_1", g)
            g["/entry_1/data_1/monitor"] = mon
        info = self.info(p)
        self.assertEqual((info["frames"], info["frames_left_out"]), (n - 3, 3))
        for ranks in (1, 2):
            r = run(["reconstruct", p, "-o", self.path(f"monitor_r{ranks}.h5"), "--engines", "dm:2"], ranks=ranks)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.convert_ok(p, self.path("monitor_out.cxi"))
        self.assertIn("the monitor (/entry_1/data_1/monitor) and the 3 frames it leaves out", r.stdout)
        keep = np.setdiff1d(np.arange(n), out)
        got = read_cxi(self.path("monitor_out.cxi"))
        ref = dict(self.ref, frames=self.ref["frames"][keep], x=self.ref["x"][keep], y=self.ref["y"][keep])
        self.assert_same_scan(got, ref)
        for name, value, text in (("short", mon[:-1], "one value each"), ("dark", np.zeros(n), "median")):
            bad = self.path(f"monitor_{name}.cxi")
            with h5py.File(self.scan, "r") as f, h5py.File(bad, "w") as g:
                f.copy("entry_1", g)
                g["/entry_1/data_1/monitor"] = value
            self.refuse(["info", bad], bad, "/entry_1/data_1/monitor", text)

    def test_probe_from_a_ptyr(self):
        """A PtyPy reconstruction (.ptyr, h5rw layout, the storage ID not
        S00G00, as in real files) gives the starting probe."""
        src = read_cxi(self.scan)
        m = src["frames"].shape[1]
        lam = HC_EV_M / (src["energy"] / EV)
        dx = lam * src["distance"] / (m * src["px"])
        probe = src["probe"].astype(np.complex64)
        ptyr = self.path("rec.ptyr")
        with h5py.File(ptyr, "w") as f:
            g = f.create_group("content/probe/SMFG00")
            g["data"] = probe[None]
            g["_psize"] = np.array([dx, dx])
            g["_energy"] = np.array([src["energy"] / EV / 1e3])
        stripped = self.path("noprobe.ptyd")
        self.write_ptyd(stripped, self.ref)
        a = self.reconstruct(self.scan, "ptyr_plain")
        b = self.reconstruct(stripped, "ptyr_probe", ["--probe-from", ptyr])
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
        # Two modes: the first carries the power of both.
        with h5py.File(ptyr, "a") as f:
            del f["content/probe/SMFG00/data"]
            f["content/probe/SMFG00/data"] = np.stack([probe, 0.5 * probe[::-1]])
        r = run(["reconstruct", stripped, "-o", self.path("two.h5"), "--engines", "dm:2", "--probe-from", ptyr])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("/content/probe/SMFG00/data (mode 0 of 2, scaled to the power of all)", r.stdout)
        with h5py.File(ptyr, "a") as f:
            f["content/probe/SMFG00/_psize"][...] = [2 * dx, 2 * dx]
        self.refuse(["reconstruct", stripped, "-o", self.path("x.h5"), "--probe-from", ptyr],
                    ptyr, "_psize")

    # ---------------------------------------------------------------- writers
    def test_round_trips_through_each_format(self):
        os.makedirs(self.path("rt_ptychodus"))
        for out, lost in (("rt.ptyd", True), ("rt_dp.hdf5", True), ("rt.cxi", False),
                          ("rt_ptychodus/diffraction.h5", False)):
            r = self.convert_ok(self.scan, self.path(out))
            self.assertEqual("not carried over: the probe guess" in r.stdout, lost, r.stdout)
            back = self.path("back_" + out.replace(".", "_").replace("/", "_") + ".cxi")
            src = self.path(out.replace("_dp", "_para")) if "_dp" in out else self.path(out)
            self.convert_ok(src, back)
            self.assert_same_scan(read_cxi(back), self.ref, probe=not lost)
        # The written fold_slice pair holds what fold_slice and ptychodus read.
        with h5py.File(self.path("rt_para.hdf5"), "r") as f:
            self.assertEqual(f["ppX"].shape, (len(self.ref["x"]),))
            for k in ("lambda", "dx", "z", "ds"):
                self.assertEqual(f[k].shape, (1,))
        # The written CXI: translation (3, N) where PyNX reads it, (N, 3) where ptychodus and cdtools do.
        with h5py.File(self.path("rt.cxi"), "r") as f:
            n = len(self.ref["x"])
            self.assertEqual(f["/entry_1/sample_1/geometry_1/translation"].shape, (3, n))
            self.assertEqual(f["/entry_1/data_1/translation"].shape, (n, 3))
            self.assertIn("name", f["/entry_1/instrument_1"])
            self.assertIn("illumination", f["/entry_1/instrument_1/source_1"])

    def test_convert_turns_frames_on_request(self):
        out = self.path("turned.cxi")
        r = self.convert_ok(self.scan, out, ["--transpose"])
        self.assertIn("frames turned: transposed", r.stdout)
        got = read_cxi(out)
        np.testing.assert_array_equal(got["frames"], np.transpose(self.ref["frames"], (0, 2, 1)))

    # ---------------------------------------------------------------- same object
    def reconstruct(self, src, name, extra=()):
        out = self.path(f"rec_{name}.h5")
        r = run(["reconstruct", src, "-o", out, "--engines", "dm:8,ml:8"] + list(extra), ranks=2,
                env={"OMP_NUM_THREADS": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        with h5py.File(out, "r") as f:
            return f["/entry_1/image_1/data"][()]

    def check_same_objects(self, cxi, tag):
        ref = read_cxi(cxi)
        plain = self.reconstruct(cxi, tag + "_plain")
        n, m = ref["frames"].shape[:2]
        rows = next(r for r in range(int(np.sqrt(n)), 0, -1) if n % r == 0)
        variants = {}
        p = self.path(tag + ".ptyd")
        self.write_ptyd(p, ref)
        variants["ptyd"] = p
        stem = self.path(tag + "_fs")
        self.write_fold_slice(stem, ref, with_geometry=True)
        if ref["mask"] is not None:
            with h5py.File(stem + "_dp.hdf5", "a") as f:
                f["mask"] = ref["mask"].astype(np.uint8)
        variants["fold_slice"] = stem + "_dp.hdf5"
        variants["ptychodus"] = self.write_ptychodus(self.path(tag + "_ptychodus"), ref)
        p = self.path(tag + "_raster.cxi")
        self.write_cxi_variant(p, cxi, frames=lambda d: d.reshape(rows, n // rows, m, m),
                               translation=lambda t: t.reshape(rows, n // rows, 3) if t.shape[-1] == 3
                               else t.T.reshape(rows, n // rows, 3), drop_probe=True)
        variants["raster"] = p
        p = self.path(tag + "_rot90.cxi")
        self.write_cxi_variant(p, cxi, turn=lambda d: np.rot90(d, axes=(1, 2)),
                               basis=np.array([[ref["px"], 0, 0], [0, -ref["py"], 0]]), drop_probe=True)
        variants["basis"] = p
        for name, src in variants.items():
            obj = self.reconstruct(src, f"{tag}_{name}", ["--probe-from", cxi])
            self.assertEqual(obj.shape, plain.shape, name)
            np.testing.assert_allclose(obj, plain, rtol=0, atol=1e-5 * np.abs(plain).max(), err_msg=name)

    def test_every_format_reconstructs_the_same_object(self):
        self.check_same_objects(self.scan, "sim")

    def test_every_format_reconstructs_the_same_object_standard_s00(self):
        if not self.shared_s00:
            self.skipTest("no ../shared/bench/data/standard_s00.cxi")
        self.check_same_objects(self.shared_s00, "s00")

    def test_a_scan_without_a_probe_starts_from_a_spread_estimate(self):
        """.ptyd and fold_slice hold no probe: the estimate from the mean
        pattern is spread by a defocus to 3 mean steps and refined. On
        standard_s00 without its probe the default chain scored 0.044 from the
        bare estimate; now about 0.87 (0.886 from the file's probe)."""
        if not self.shared_s00:
            self.skipTest("no ../shared/bench/data/standard_s00.cxi")
        p = self.path("s00_noprobe.cxi")
        self.write_cxi_variant(p, self.shared_s00, drop_probe=True)
        out = self.path("s00_noprobe_r.h5")
        r = run(["reconstruct", p, "-o", out], ranks=2, env={"OMP_NUM_THREADS": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("estimated from the mean diffraction pattern, spread by a defocus to", r.stdout)
        truth = self.shared_s00.replace(".cxi", "_truth.h5")
        e = run(["evaluate", out, "--truth", truth, "--json"])
        self.assertEqual(e.returncode, 0, e.stderr)
        self.assertGreater(json.loads(e.stdout)["score_standard"], 0.80)

    # ---------------------------------------------------------------- malformed
    def refuse(self, args, *names):
        files = [a for a in args if os.path.isfile(a)]
        before = {f: sha(f) for f in files}
        r = run(args)
        self.assertEqual(r.returncode, 2, f"{args}: {r.stdout} {r.stderr}")
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        for n in names:
            self.assertIn(n, lines[0])
        for f, h in before.items():
            self.assertEqual(sha(f), h, f"{f} was modified")

    def test_malformed_ptyd(self):
        def without(path):
            return lambda f: f.__delitem__(path)

        def replace(path, value):
            def t(f):
                del f[path]
                f[path] = value
            return t
        n = len(self.ref["x"])
        cases = {
            "no_energy": (without("meta/energy"), "/meta/energy"),
            "bad_positions": (replace("chunks/0/positions", np.zeros((3, 2))), "/chunks/0/positions"),
            "named_chunk": (lambda f: f["chunks"].move("1", "one"), "/chunks/one"),
            "off_centre": (replace("meta/center", np.array([3.0, 3.0])), "/meta/center"),
            "ev_not_kev": (replace("meta/energy", 1e5), "/meta/energy"),
            "bad_weights": (replace("chunks/0/weights", np.ones((2, 2))), "/chunks/0/weights"),
            "no_data": (without("chunks/0/data"), "/chunks/0/data"),
        }
        for name, (tweak, dataset) in cases.items():
            p = self.path(f"bad_{name}.ptyd")
            self.write_ptyd(p, self.ref, tweak=tweak)
            self.refuse(["info", p], p, dataset)
            self.refuse(["convert", p, self.path(f"bad_{name}.cxi")], p, dataset)
            self.assertFalse(os.path.exists(self.path(f"bad_{name}.cxi")))

    def test_malformed_fold_slice(self):
        n = len(self.ref["x"])
        ref = dict(self.ref, mask=None)
        cases = {
            "short": (lambda f: (f.__delitem__("ppX"), f.__setitem__("ppX", np.zeros(n - 1))), "/ppX"),
            "no_lambda": (lambda f: f.__delitem__("lambda"), "/lambda"),
            "no_dx": (lambda f: f.__delitem__("dx"), "/dx"),
            "inconsistent": (lambda f: (f.__delitem__("z"), f.__setitem__("z", np.array([9.0]))), "/dx"),
            "nan": (lambda f: f["ppY"].__setitem__(0, np.nan), "/ppY"),
        }
        for name, (tweak, dataset) in cases.items():
            stem = self.path(f"badfs_{name}")
            self.write_fold_slice(stem, ref, tweak=tweak, with_geometry=True)
            self.refuse(["info", stem + "_dp.hdf5"], stem + "_para.hdf5", dataset)
        # A pair without its partner, and a name that is no pair.
        stem = self.path("alone")
        self.write_fold_slice(stem, ref)
        os.remove(stem + "_para.hdf5")
        self.refuse(["info", stem + "_dp.hdf5"], stem + "_para.hdf5")
        os.rename(stem + "_dp.hdf5", self.path("alone.h5"))
        self.refuse(["info", self.path("alone.h5")], "STEM_dp.hdf5")

    def test_malformed_ptychodus(self):
        cases = {
            "no_energy": (lambda f: f.attrs.__delitem__("probe_energy_eV"), "probe_energy_eV"),
            "no_pixel": (lambda f: f["probe"].attrs.__delitem__("pixel_width_m"), "pixel_width_m"),
            "short_x": (lambda f: (f.__delitem__("probe_position_x_m"), f.__setitem__("probe_position_x_m", np.zeros(2))),
                        "/probe_position_x_m"),
            "no_match": (lambda f: f["probe_position_indexes"].__setitem__(slice(None), -5), "/probe_position_indexes"),
        }
        for name, (tweak, text) in cases.items():
            p = self.write_ptychodus(self.path(f"badpd_{name}"), self.ref, tweak=tweak)
            self.refuse(["info", p], "product-in.h5", text)
        p = self.write_ptychodus(self.path("badpd_alone"), self.ref)
        os.remove(self.path("badpd_alone/product-in.h5"))
        self.refuse(["info", p], "product-in.h5", "does not exist")
        self.refuse(["convert", self.scan, self.path("patterns.h5"), "--format", "ptychodus"], "diffraction.h5")
        # A patterns file of another name still reads its product-in.h5, which convert never replaces.
        p = self.write_ptychodus(self.path("renamed"), self.ref)
        os.rename(p, self.path("renamed/patterns.h5"))
        self.refuse(["convert", self.path("renamed/patterns.h5"), self.path("renamed/product-in.h5")], "input")

    def test_malformed_cxi_features(self):
        px = self.ref["px"]
        cases = {
            "tilted": (dict(basis=np.array([[0, -px, 0.3 * px], [-px, 0, 0]])), "basis_vectors"),
            "rotated": (dict(basis=np.array([[0.7 * px, -0.7 * px, 0], [-px, 0, 0]])), "basis_vectors"),
            "shape": (dict(basis=np.zeros((3, 3))), "basis_vectors"),
            "parallel": (dict(basis=np.array([[0, -px, 0], [0, px, 0]])), "basis_vectors"),
            "raster_count": (dict(frames=lambda d: d.reshape((1,) + d.shape),
                                  translation=lambda t: t[:, :-1] if t.shape[0] == 3 else t[:-1]),
                             "translation"),
        }
        for name, (kw, dataset) in cases.items():
            p = self.path(f"badcxi_{name}.cxi")
            self.write_cxi_variant(p, self.scan, **kw)
            self.refuse(["info", p], p, dataset)
        p = self.path("nothing.h5")
        with h5py.File(p, "w") as f:
            f["x"] = 1
        self.refuse(["info", p], p, "not a scan file")

    def test_convert_never_overwrites_its_input(self):
        self.refuse(["convert", self.scan, self.scan], self.scan, "input")
        stem = self.path("keep")
        self.write_fold_slice(stem, dict(self.ref, mask=None))
        self.refuse(["convert", stem + "_dp.hdf5", stem + "_para.hdf5"], "input")
        self.refuse(["convert", self.scan, self.path("x.cxi"), "--format", "zip"], "--format")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("ptycho")
    parser.add_argument("mpiexec")
    parser.add_argument("--shared", default="")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
