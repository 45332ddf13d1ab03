#!/usr/bin/python3
"""The bad-input matrix: the `ptycho` program against malformed files and
command lines, as a new user would give them (run by ctest, see
tests/jobs/CMakeLists.txt):

    test_bad_inputs.py PTYCHO_EXE MPIEXEC [--workers N] [unittest options]

Every case checks
  * the exit code (2 for bad input unless said otherwise; never 0, never a
    crash or a hang: each run has a time limit);
  * that the message is one line on standard error that names the culprit
    (the option, key, file or dataset);
  * that every input is byte-identical afterwards;
  * that no file was left behind (no partial result, checkpoint, log,
    preview or temporary), and no folder was made.
Classes: outputs that name an input or each other (also through links),
outputs that cannot be written, counts out of range on the command line and
in job files, sizes larger than memory (positions spanning millimetres, a
frames dataset declared larger than memory, many probe modes, absurd
simulations), extreme counts, malformed CXI files, malformed job files,
damaged checkpoints, a truth of another scan, errors on several ranks.
Works in a temporary folder, removed at the end. Needs h5py and numpy.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import h5py
import numpy as np

ARGS = None
TIMEOUT = 120  # seconds: a run that takes longer counts as a hang

FRAMES = "/entry_1/data_1/data"
DETECTOR_FRAMES = "/entry_1/instrument_1/detector_1/data"
TRANSLATION = "/entry_1/sample_1/geometry_1/translation"


def snapshot(folder):
    """{relative path: sha256} of every file below `folder`, and the set of folders."""
    files, folders = {}, set()
    for root, dirs, names in os.walk(folder):
        for d in dirs:
            folders.add(os.path.relpath(os.path.join(root, d), folder))
        for n in names:
            p = os.path.join(root, n)
            if os.path.islink(p):
                files[os.path.relpath(p, folder)] = "link:" + os.readlink(p)
                continue
            with open(p, "rb") as f:
                files[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
    return files, folders


class BadInputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="ptycho-bad-inputs-")
        os.chmod(cls.base, 0o755)  # the unprivileged case reads from here
        cls.fixtures = os.path.join(cls.base, "fixtures")
        os.makedirs(cls.fixtures)
        f = cls.fixtures
        for name, seed, size in (("scan", 1, 64), ("other", 2, 80)):
            cls.ptycho_ok(["simulate", "--object-size", str(size), "--probe-size", "16", "--step", "4",
                           "--seed", str(seed), "-o", f"{f}/{name}.cxi", "--truth", f"{f}/{name}_truth.h5"])
        cls.ptycho_ok(["reconstruct", f"{f}/scan.cxi", "--engines", "dm:2", "-o", f"{f}/result.h5",
                       "--checkpoint-every", "1", "--checkpoint", f"{f}/scan.checkpoint.h5"])
        os.chmod(f"{f}/scan.checkpoint.h5", 0o644)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base, ignore_errors=True)

    @classmethod
    def ptycho_ok(cls, args):
        r = subprocess.run([ARGS.ptycho] + args, capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, f"ptycho {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"

    def setUp(self):
        # Each case works in a fresh copy of the fixtures.
        name = self.id().split(".")[-1]
        self.dir = os.path.join(self.base, name)
        shutil.copytree(self.fixtures, self.dir)
        os.chmod(self.dir, 0o755)
        # Its processes get an Open MPI session folder of their own. Singletons
        # started with OMPI_MCA_ess_singleton_isolated=1 (tests/run.sh) share
        # one job id, hence one session folder, so two cases at a time
        # (run_concurrently) met there: MPI-IO's shared-file-pointer files,
        # named after the scan, collided (a stray line on standard error), and
        # one process removing the folder while another made it failed MPI_Init.
        self.mpi_tmp = os.path.join(self.base, "mpi-" + name)
        os.makedirs(self.mpi_tmp)
        os.chmod(self.mpi_tmp, 0o777)  # the unprivileged case's processes too
        self.env = dict(os.environ, OMPI_MCA_orte_tmpdir_base=self.mpi_tmp)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.mpi_tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def refuse(self, args, culprit, code=2, ranks=None, prefix=None, may_create=()):
        """Runs ptycho `args` in the case folder and checks the refusal (see the file comment)."""
        before = snapshot(self.dir)
        cmd = (prefix or []) + [ARGS.ptycho] + list(args)
        if ranks:
            # -q: mpiexec's own note that a process exited non-zero is not ptycho's output.
            cmd = [ARGS.mpiexec, "-q", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root"] + cmd
        try:
            r = subprocess.run(cmd, cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"hang: {' '.join(args)} ran longer than {TIMEOUT} s")
        where = f"\n$ {' '.join(args)}\nexit {r.returncode}\nstdout:\n{r.stdout[-2000:]}\nstderr:\n{r.stderr[-2000:]}"
        self.assertEqual(r.returncode, code, "exit code" + where)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "one line on standard error" + where)
        self.assertIn(culprit, lines[0], "the message names the culprit" + where)
        self.assertNotIn("MPI_ABORT", r.stdout + r.stderr, where)
        after = snapshot(self.dir)
        changed = {p for p in before[0] if after[0].get(p) != before[0][p]}
        self.assertEqual(changed, set(), "inputs changed or removed" + where)
        new = {p for p in after[0] if p not in before[0] and not any(p.startswith(m) for m in may_create)}
        self.assertEqual(new, set(), "files left behind" + where)
        self.assertEqual(after[1] - before[1], set(), "folders left behind" + where)
        return lines[0]

    def edit_scan(self, name, edit):
        """A copy of scan.cxi as `name`, changed by edit(h5py.File)."""
        p = self.path(name)
        shutil.copy(self.path("scan.cxi"), p)
        with h5py.File(p, "r+") as f:
            edit(f)
        return p

    def declared_scan(self, name, n, m, dtype, per_row, step=2e-7, **dataset_options):
        """A CXI file `name` with scan.cxi's geometry, an (n, m, m) frames
        dataset made with `dataset_options` (written or not), and n positions
        on a raster of `per_row` columns and `step` metres; returns the frames dataset's file path."""
        p = self.path(name)
        with h5py.File(self.path("scan.cxi"), "r") as src, h5py.File(p, "w") as f:
            for key in ("/entry_1/instrument_1/source_1/energy", "/entry_1/instrument_1/detector_1/distance",
                        "/entry_1/instrument_1/detector_1/x_pixel_size",
                        "/entry_1/instrument_1/detector_1/y_pixel_size"):
                f[key] = src[key][()]
            f.create_dataset(FRAMES, shape=(n, m, m), dtype=dtype, **dataset_options)
            j = np.arange(n)
            f[TRANSLATION] = np.stack([(j % per_row) * step, (j // per_row) * step, np.zeros(n)], axis=1)
        return p

    # ---- outputs that name an input, or each other

    def test_log_json_is_the_scan(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--log-json", "scan.cxi"], "--log-json")

    def test_previews_is_the_scan(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--previews", "scan.cxi"], "--previews")

    def test_previews_folder_holds_the_output(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--previews", ".", "-o", "phase.png"],
                    "--previews")

    def test_checkpoint_is_the_output(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "r.h5", "--checkpoint", "r.h5"],
                    "--checkpoint")

    def test_output_is_the_scan(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "scan.cxi"], "--output")

    def test_output_is_a_link_to_the_scan(self):
        os.symlink("scan.cxi", self.path("link.h5"))
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "link.h5"], "--output")

    def test_output_is_a_hard_link_to_the_scan(self):
        os.link(self.path("scan.cxi"), self.path("hard.h5"))
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "hard.h5"], "--output")

    def test_output_through_dotdot_is_the_scan(self):
        os.makedirs(self.path("sub"))
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--log-json", "sub/../scan.cxi"],
                    "--log-json")

    def test_output_is_the_job_file(self):
        with open(self.path("job.toml"), "w") as f:
            f.write('input = "scan.cxi"\nengines = "dm:1"\noutput = "job.toml"\n')
        self.refuse(["reconstruct", "job.toml"], "output")

    def test_output_is_a_folder(self):
        os.makedirs(self.path("out"))
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "out"], "--output")

    def test_output_folder_is_a_file(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "scan.cxi/r.h5"], "--output")

    def test_log_folder_cannot_be_made(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--log-json", "result.h5/logs/x.json"],
                    "--log-json")

    def test_read_only_output_folder(self):
        os.makedirs(self.path("ro"))
        os.chmod(self.path("ro"), 0o555)
        prefix = []
        if os.geteuid() == 0:
            # Root writes anywhere: run as nobody, for whom the folder is read-only.
            setpriv = shutil.which("setpriv")
            if not setpriv:
                self.skipTest("setpriv is missing")
            prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "ro/r.h5"], "--output", prefix=prefix)

    def test_simulate_truth_is_the_output(self):
        self.refuse(["simulate", "--object-size", "48", "--probe-size", "16", "-o", "x.cxi", "--truth", "x.cxi"],
                    "--truth")

    def test_simulate_output_is_an_input_image(self):
        self.refuse(["simulate", "--object-size", "48", "--probe-size", "16", "-o", "scan.cxi",
                     "--amplitude-image", "scan.cxi"], "-o")

    def test_output_is_a_device(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "-o", "/dev/null"], "--output")

    # ---- counts out of range

    def test_iterations_beyond_int(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:2147483648"], "--engines")

    def test_iterations_wrapping_to_one(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:4294967297"], "--engines")

    def test_negative_iterations(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:-1"], "--engines")

    def test_too_many_probe_modes(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--probe-modes", "1000"], "--probe-modes")

    def test_probe_modes_beyond_int(self):
        self.refuse(["reconstruct", "scan.cxi", "--probe-modes", "99999999999"], "--probe-modes")

    def test_batch_out_of_range(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--batch", "100000"], "--batch")
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--batch", "-1"], "--batch")

    def test_job_file_counts(self):
        for key, value in (("probe_modes", "1000"), ("engines", '"dm:99999999999"'), ("batches", "0"),
                           ("probe_modes", "99999999999"), ("max_position_shift", "1e9")):
            with open(self.path("job.toml"), "w") as f:
                f.write(f'input = "scan.cxi"\n{key} = {value}\n')
            self.refuse(["reconstruct", "job.toml"], key)
            os.remove(self.path("job.toml"))

    # ---- sizes checked before anything is allocated

    def test_max_memory_too_small(self):
        line = self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--max-memory", "1M"], "--max-memory")
        self.assertIn("ranks would fit", line)

    def test_max_memory_garbage(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--max-memory", "lots"], "--max-memory")

    def test_positions_spanning_millimetres(self):
        def spread(f):
            t = f[TRANSLATION][...]
            t *= 2e4  # micrometres -> centimetres apart (z is 0; either layout)
            f[TRANSLATION][...] = t
        self.edit_scan("wide.cxi", spread)
        self.refuse(["reconstruct", "wide.cxi", "--engines", "dm:1"], "wide.cxi")

    def test_frames_declared_larger_than_memory(self):
        n, m = 400000, 1024  # 1.6 TB of float32 frames, never written: the file stays small
        self.declared_scan("huge.cxi", n, m, "f4", int(np.ceil(np.sqrt(n))), chunks=(1, m, m))
        for ranks in (None, 2):
            line = self.refuse(["reconstruct", "huge.cxi", "--engines", "dm:1"], "huge.cxi", ranks=ranks)
            self.assertIn("memory", line)

    def test_probe_modes_beyond_memory(self):
        # Many modes of large frames: refused by the estimate, before the frames are read.
        self.declared_scan("big.cxi", 2000, 2048, "u2", 45, chunks=(1, 2048, 2048))
        self.refuse(["reconstruct", "big.cxi", "--engines", "ml:1", "--probe-modes", "32"], "memory")

    def test_simulate_absurd_sizes(self):
        self.refuse(["simulate", "--object-size", "1000000", "-o", "s.cxi"], "--object-size")
        self.refuse(["simulate", "--object-size", "256", "--step", "0.001", "-o", "s.cxi"], "--step")
        self.refuse(["simulate", "--probe-size", "7", "-o", "s.cxi"], "--probe-size")
        self.refuse(["simulate", "--photons", "inf", "-o", "s.cxi"], "--photons")
        self.refuse(["simulate", "--object-size", "32768", "--probe-size", "4096", "--step", "0.3", "-o", "s.cxi"],
                    "needs about")

    def test_info_streams_the_frames(self):
        # A file whose frames do not fit a 300 MB budget: info reads it a chunk at a time.
        n, m = 1500, 256  # 393 MB of float32
        p = self.declared_scan("tall.cxi", n, m, "u2", 40, chunks=(50, m, m), compression="gzip")
        # Every chunk written (compressed, the file stays small): frame 0 holds 7, the others 3.
        with h5py.File(p, "r+") as f:
            d = f[FRAMES]
            block = np.full((50, m, m), 3, dtype="u2")
            for j in range(0, n, 50):
                d[j:j + 50] = block
            d[0] = np.full((m, m), 7, dtype="u2")
        out = os.path.join(self.dir, "info.json")
        with open(out, "w") as stdout:
            child = subprocess.Popen([ARGS.ptycho, "info", p, "--json"], stdout=stdout, stderr=subprocess.PIPE,
                                     env=self.env)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
            child.returncode = os.waitstatus_to_exitcode(status)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, child.stderr.read())
        child.stderr.close()
        # Under AddressSanitizer (tests/run.sh's asan build sets ASAN_OPTIONS) freed
        # chunks wait in its quarantine and shadow memory adds more: the peak says
        # nothing about the program there, so it is asserted in the other builds only.
        if "ASAN_OPTIONS" not in os.environ:
            self.assertLess(usage.ru_maxrss, 300 * 1024, "info's peak memory [KiB]")
        with open(out) as f:
            info = json.load(f)
        os.remove(out)
        self.assertEqual(info["frames"], n)
        mean = (3 * (n - 1) + 7) / n * m * m
        self.assertAlmostEqual(info["photons_per_frame"] / mean, 1.0, places=5)

    # ---- extreme counts

    def test_huge_counts(self):
        def scale(f):
            f[FRAMES][...] = f[FRAMES][...].astype("f4") * np.float32(1e30)
        self.edit_scan("bright.cxi", scale)
        self.refuse(["reconstruct", "bright.cxi", "--engines", "ml:3"], "bright.cxi")

    def test_diverging_run_is_an_error_never_a_nan_result(self):
        # A step far too large makes the object blow up: an error naming the engine, no result.
        r = subprocess.run([ARGS.ptycho, "reconstruct", "scan.cxi", "--engines", "epie:20", "--object-step", "1e30",
                            "-o", "r.h5"], cwd=self.dir, env=self.env, capture_output=True, text=True,
                           timeout=TIMEOUT)
        if r.returncode == 0:
            with h5py.File(self.path("r.h5"), "r") as f:
                self.assertTrue(np.isfinite(f["/entry_1/image_1/data"][...]).all(), "a non-finite result, exit 0")
        else:
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertIn("epie iteration", r.stderr)
            self.assertFalse(os.path.exists(self.path("r.h5")))

    # ---- malformed CXI files

    def test_malformed_cxi(self):
        cases = {
            "no_frames.cxi": (lambda f: (f.__delitem__(FRAMES), f.__delitem__(DETECTOR_FRAMES)), "no frames"),
            "few_positions.cxi": (lambda f: (f.__delitem__(TRANSLATION),
                                             f.create_dataset(TRANSLATION, data=np.zeros((3, 3))))[-1],
                                  "positions"),
            "nan_position.cxi": (lambda f: f[TRANSLATION].__setitem__((0, 0), np.nan), "non-finite"),
            "zero_energy.cxi": (lambda f: f["/entry_1/instrument_1/source_1/energy"].write_direct(np.array(0.0)),
                                "energy"),
            "text_frames.cxi": (lambda f: (f.__delitem__(FRAMES), f.create_dataset(FRAMES, data=np.array([b"x"]))),
                                FRAMES),
        }
        for name, (edit, culprit) in cases.items():
            with self.subTest(name=name):
                p = self.edit_scan(name, edit)
                self.refuse(["reconstruct", name, "--engines", "dm:1"], name)
                self.refuse(["info", name], name)
                os.remove(p)

    def test_nan_count_in_a_valid_pixel(self):
        def poison(f):
            d = f[FRAMES][...].astype("f4")
            d[3, 5, 6] = np.nan
            del f[FRAMES]
            f[FRAMES] = d
        self.edit_scan("nan.cxi", poison)
        self.refuse(["reconstruct", "nan.cxi", "--engines", "dm:1"], "frame 3")

    def test_not_hdf5_and_empty_and_truncated(self):
        with open(self.path("empty.cxi"), "wb"):
            pass
        with open(self.path("text.cxi"), "w") as f:
            f.write("not hdf5\n")
        with open(self.path("scan.cxi"), "rb") as src, open(self.path("cut.cxi"), "wb") as dst:
            dst.write(src.read()[:3000])
        for name in ("empty.cxi", "text.cxi", "cut.cxi"):
            with self.subTest(name=name):
                self.refuse(["reconstruct", name, "--engines", "dm:1"], name)
                self.refuse(["info", name], name)

    def test_declared_sizes_beyond_memory(self):
        # Datasets declared far larger than memory, never written: refused before they are read.
        def big_translation(f):
            del f[TRANSLATION]
            f.create_dataset(TRANSLATION, shape=(10**10, 3), dtype="f8", chunks=(1024, 3))
        self.edit_scan("big_translation.cxi", big_translation)
        self.refuse(["reconstruct", "big_translation.cxi", "--engines", "dm:1"], TRANSLATION)
        self.refuse(["info", "big_translation.cxi"], TRANSLATION)

        def big_frames(f):
            del f[FRAMES]
            del f[DETECTOR_FRAMES]
            f.create_dataset(FRAMES, shape=(87, 16384, 16384), dtype="u2", chunks=(1, 256, 256))
        self.edit_scan("big_frames.cxi", big_frames)
        self.refuse(["reconstruct", "big_frames.cxi", "--engines", "dm:1"], "at most 8192")

        def big_object(f):
            del f["/entry_1/image_1/data"]
            f.create_dataset("/entry_1/image_1/data", shape=(10**6, 10**6), dtype="c8", chunks=(256, 256))
        p = self.path("big_result.h5")
        shutil.copy(self.path("result.h5"), p)
        with h5py.File(p, "r+") as f:
            big_object(f)
        self.refuse(["info", "big_result.h5"], "big_result.h5")
        self.refuse(["evaluate", "big_result.h5", "--truth", "scan_truth.h5"], "big_result.h5")

    def test_mask_of_the_wrong_shape(self):
        self.edit_scan("mask.cxi", lambda f: f.create_dataset("/entry_1/instrument_1/detector_1/mask",
                                                               data=np.zeros((8, 8), dtype="u1")))
        self.refuse(["reconstruct", "mask.cxi", "--engines", "dm:1"], "mask")

    def test_evaluate_a_scan_as_a_result(self):
        self.refuse(["evaluate", "scan.cxi", "--truth", "scan_truth.h5"], "scan.cxi")

    def test_checkpoint_every_zero(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--checkpoint-every", "0"],
                    "--checkpoint-every")

    # ---- malformed job files

    def test_malformed_job_files(self):
        cases = {
            'input = "scan.cxi"\nengines = \n': "job.toml:2",
            'input = "scan.cxi"\nprobe_mode = 2\n': "probe_mode",
            'input = "scan.cxi"\nprobe_modes = "two"\n': "probe_modes",
            'engines = "dm:1"\n': "input",
            'input = "missing.cxi"\n': "missing.cxi",
            'input = "scan.cxi"\n[extra]\nx = 1\n': "extra",
            'input = "scan.cxi"\nmax_memory = "12 apples"\n': "max_memory",
        }
        for text, culprit in cases.items():
            with self.subTest(text=text):
                with open(self.path("job.toml"), "w") as f:
                    f.write(text)
                self.refuse(["reconstruct", "job.toml"], culprit)
                os.remove(self.path("job.toml"))

    # ---- checkpoints and results

    def test_resume_from_a_truncated_checkpoint(self):
        with open(self.path("scan.checkpoint.h5"), "rb") as src, open(self.path("cut.h5"), "wb") as dst:
            dst.write(src.read()[:5000])
        line = self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:3", "-o", "r.h5", "--resume", "cut.h5"],
                           "cut.h5")
        self.assertIn("truncated", line)

    def test_resume_from_a_scan(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:3", "-o", "r.h5", "--resume", "other.cxi"],
                    "other.cxi")

    def test_evaluate_against_the_truth_of_another_scan(self):
        self.refuse(["evaluate", "result.h5", "--truth", "other_truth.h5", "--data", "scan.cxi"], "other_truth.h5")
        self.refuse(["evaluate", "result.h5", "--truth", "scan_truth.h5", "--data", "other.cxi"], "other.cxi")

    def test_evaluate_missing_truth(self):
        self.refuse(["evaluate", "result.h5", "--truth", "nothing_truth.h5"], "nothing_truth.h5")

    # ---- several ranks: one line, exit 2, no MPI_ABORT banner

    def test_one_line_on_several_ranks(self):
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--probe-modes", "1000"], "--probe-modes",
                    ranks=2)
        self.refuse(["reconstruct", "scan.cxi", "--engines", "dm:1", "--log-json", "scan.cxi"], "--log-json",
                    ranks=3)
        self.refuse(["info", "missing.cxi"], "missing.cxi", ranks=2)
        self.refuse(["evaluate", "result.h5", "--truth", "other_truth.h5"], "other_truth.h5", ranks=2)
        self.refuse(["simulate", "-o", "x.cxi", "--truth", "x.cxi"], "--truth", ranks=2)
        # Without -q, mpiexec adds its note, but no rank calls MPI_Abort and ptycho prints one line.
        r = subprocess.run([ARGS.mpiexec, "-n", "2", "--oversubscribe", "--allow-run-as-root", ARGS.ptycho,
                            "reconstruct", "scan.cxi", "--probe-modes", "0"], cwd=self.dir, env=self.env,
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stderr.count("ptycho: error:"), 1, r.stderr)
        self.assertNotIn("MPI_ABORT", r.stdout + r.stderr)


def run_concurrently(workers):
    """Runs every case, `workers` at a time (each has its own folder and its
    own processes, and most of a case is waiting for them), with unittest's
    verbose lines in the cases' order; returns whether all passed."""
    cases = list(unittest.defaultTestLoader.loadTestsFromTestCase(BadInputs))

    def run(case):
        result = unittest.TestResult()
        start = time.monotonic()
        case(result)  # setUp, the case, tearDown
        return case, result, time.monotonic() - start

    BadInputs.setUpClass()
    failed = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for case, result, seconds in pool.map(run, cases):
                problems = result.failures + result.errors
                status = "FAIL" if problems else "skipped" if result.skipped else "ok"
                print(f"{case.id().split('.')[-1]} ... {status} ({seconds:.1f} s)", flush=True)
                for _, trace in problems:
                    print(trace, flush=True)
                failed += bool(problems)
    finally:
        BadInputs.tearDownClass()
    print(f"{len(cases)} cases, {failed} failed, {workers} at a time")
    return failed == 0


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("ptycho")
    parser.add_argument("mpiexec")
    parser.add_argument("--workers", type=int, default=2,
                        help="cases run at a time (default 2); unittest options run them one by one")
    ARGS, rest = parser.parse_known_args()
    if rest:
        unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
    sys.exit(0 if run_concurrently(max(1, ARGS.workers)) else 1)


if __name__ == "__main__":
    main()
