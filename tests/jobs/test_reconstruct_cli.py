#!/usr/bin/python3
"""`ptycho reconstruct` driven end to end with job files (run by ctest, see
tests/jobs/CMakeLists.txt):

    test_reconstruct_cli.py PTYCHO_EXE MPIEXEC [--shared DIR] [--examples DIR] [unittest options]

On one small simulated scan (object 96, probe 32) it checks that
  * a job file gives bit for bit the result of the same settings as options,
    with its relative paths taken from the job file's folder;
  * options given on the command line override the job file's keys;
  * an unknown key, a wrong type, a bad value and malformed TOML stop the
    program with exit code 2 and a message naming file, line and key;
  * checkpoints: written every N iterations and readable (ptycho info); SIGUSR1
    stops a run with exit code 75 after a checkpoint; the same job run again
    (on another rank count) resumes and ends with the uninterrupted result;
    a checkpoint of another chain is refused;
  * --log-json writes one valid JSON object per progress line and a summary,
    at 1 and at 2 ranks, and the summary matches the result file;
  * previews hold amplitude.png, phase.png, probe.png and cost.png;
  * the example job files (jobs/examples) run, with short engine chains.
Works in a temporary folder, removed at the end. Needs h5py and numpy.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import signal
import tempfile
import time
import unittest

import h5py
import numpy as np

ARGS = None  # the parsed command line, set in main()

OBJECT = "/entry_1/image_1/data"
PROBE = "/entry_1/image_2/data"
POSITIONS = "/entry_1/image_1/positions_px"
COST = "/entry_1/process_1/cost_history"
CONFIG = "/entry_1/process_1/configuration"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(args, cwd, ranks=None):
    """Runs ptycho with `args` in `cwd` (under mpiexec if `ranks`); returns the CompletedProcess."""
    cmd = [ARGS.ptycho] + list(args)
    if ranks:
        cmd = [ARGS.mpiexec, "-n", str(ranks), "--oversubscribe", "--allow-run-as-root"] + cmd
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def png_size(path):
    """(width, height) from a PNG's IHDR chunk; fails if the file is no PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def reporting_steps(chain, every):
    """The iterations that get a progress line: first, last and every `every`-th of each engine."""
    steps = 0
    for item in chain.split(","):
        n = int(item.split(":")[1])
        steps += len({i for i in range(1, n + 1) if i == 1 or i == n or i % every == 0})
    return steps


class ReconstructCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="ptycho_reconstruct_cli.")
        for sub in ("data", "jobs", "run", "out"):
            os.makedirs(os.path.join(cls.work, sub))
        sim = run(["simulate", "-o", "data/scan.cxi", "--object-size", "96", "--probe-size", "32", "--step", "8",
                   "--photons", "1e5", "--seed", "3"], cwd=cls.work)
        assert sim.returncode == 0, sim.stdout + sim.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    # ---- helpers

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def job(self, name, text):
        """Writes jobs/NAME (the scan is ../data/scan.cxi from there) and returns its path."""
        p = self.path("jobs", name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def ok(self, args, ranks=None, cwd=None):
        r = run(args, cwd=cwd or self.path("run"), ranks=ranks)
        self.assertEqual(r.returncode, 0, f"ptycho {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def fails(self, args, *expected):
        """Runs ptycho, expects exit code 2 and every string of `expected` in stderr."""
        r = run(args, cwd=self.path("run"))
        self.assertEqual(r.returncode, 2, f"ptycho {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        for e in expected:
            self.assertIn(e, r.stderr)
        self.assertNotIn("internal error", r.stderr)
        return r

    def assert_same_result(self, a, b):
        """The two result files hold identical objects, probes, positions and cost histories."""
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            for name in (OBJECT, PROBE, POSITIONS, COST):
                x, y = fa[name][()], fb[name][()]
                self.assertEqual(x.shape, y.shape, name)
                self.assertTrue(np.array_equal(x, y), f"{name} differs between {a} and {b}")

    def config(self, result):
        with h5py.File(result, "r") as f:
            return json.loads(f[CONFIG][()])

    # ---- job file against command line

    JOB = """# a job file with comments
input = "../data/scan.cxi"          # relative to this file's folder
output = "../out/job.h5"
engines = "dm:4,ml:6"
refine_probe = true
probe_modes = 2
probe_hold = 2
seed = 5
batch = 8
progress_every = 3
"""
    CLI = ["--engines", "dm:4,ml:6", "--refine-probe", "--probe-modes", "2", "--probe-hold", "2", "--seed", "5",
           "--batch", "8", "--progress-every", "3"]

    def test_job_file_gives_the_result_of_the_same_options(self):
        job = self.job("same.toml", self.JOB)
        self.ok(["reconstruct", job])  # run from run/: the paths must come from the job file's folder
        self.assertTrue(os.path.exists(self.path("out", "job.h5")))
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "cli.h5"] + self.CLI)
        self.assert_same_result(self.path("out", "job.h5"), self.path("run", "cli.h5"))
        cj, cc = self.config(self.path("out", "job.h5")), self.config(self.path("run", "cli.h5"))
        for key in ("engines", "probe_modes", "refine_probe", "probe_hold", "seed", "batch", "likelihood", "beta"):
            self.assertEqual(cj[key], cc[key], key)
        self.assertEqual(cj["job_file"], job)
        self.assertEqual(cc["job_file"], "")
        for out in (self.path("out", "job.h5"), self.path("run", "cli.h5")):
            with h5py.File(out, "r") as f:
                self.assertEqual(f["entry_1/process_1/batch"][()], 8)  # the batch in use

    def test_command_line_overrides_the_job_file(self):
        job = self.job("override.toml", self.JOB.replace("job.h5", "override_job.h5"))
        overrides = ["--engines", "dm:3", "--probe-modes", "1", "--refine-probe=false", "-o", "override.h5"]
        r = self.ok(["reconstruct", job] + overrides)
        self.assertFalse(os.path.exists(self.path("out", "override_job.h5")))
        with h5py.File(self.path("run", "override.h5"), "r") as f:
            self.assertEqual(len(f[COST]), 3)
            self.assertEqual(f[PROBE].shape[0], 1)
        cfg = self.config(self.path("run", "override.h5"))
        self.assertEqual(cfg["engines"], "dm:3")
        self.assertEqual(cfg["probe_modes"], 1)
        self.assertFalse(cfg["refine_probe"])
        self.assertEqual(cfg["seed"], 5)  # not overridden: the file's value
        self.assertIn("engines dm:3", r.stdout)
        # And exactly what the same settings give on the command line alone.
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "override_cli.h5", "--engines", "dm:3", "--probe-hold", "2",
                 "--seed", "5", "--batch", "8"])
        self.assert_same_result(self.path("run", "override.h5"), self.path("run", "override_cli.h5"))

    def test_the_first_bytes_decide_between_scan_and_job_file(self):
        shutil.copy(self.path("data", "scan.cxi"), self.path("data", "scan_no_extension"))
        self.ok(["reconstruct", "../data/scan_no_extension", "-o", "noext.h5", "--engines", "dm:2"])
        # No batch given: the configuration says 0 (the default) and the result the batch it resolved to.
        self.assertEqual(self.config(self.path("run", "noext.h5"))["batch"], 0)
        with h5py.File(self.path("run", "noext.h5"), "r") as f:
            self.assertGreaterEqual(f["entry_1/process_1/batch"][()], 1)
            self.assertGreaterEqual(f["entry_1/process_1/threads_per_rank"][()], 1)  # Kokkos' concurrency
        cfg = self.job("job.cfg", 'input = "../data/scan.cxi"\nengines = "dm:2"\noutput = "../out/cfg.h5"\n')
        self.ok(["reconstruct", cfg])
        self.assertTrue(os.path.exists(self.path("out", "cfg.h5")))

    # ---- errors

    def test_unknown_key_names_file_line_and_nearest_key(self):
        job = self.job("typo.toml", 'input = "../data/scan.cxi"\noutput = "../out/typo.h5"\nengins = "dm:5"\n')
        self.fails(["reconstruct", job], f"{job}:3: unknown key 'engins' (did you mean 'engines'?)")
        self.assertFalse(os.path.exists(self.path("out", "typo.h5")))

    def test_bad_values_name_key_and_what_is_expected(self):
        cases = [
            ('probe_modes = "two"', ":2: probe_modes: expected a whole number, got 'two'"),
            ('engines = "dm:x"', ":2: engines: 'dm:x': the iteration count must be a whole number from 0 to 10000000"),
            ("probe_modes = 0", ":2: probe_modes: must be from 1 to 32, got 0"),
            ('likelihood = "normal"', ":2: likelihood: must be 'poisson' or 'gaussian', got 'normal'"),
        ]
        for line, message in cases:
            with self.subTest(line=line):
                job = self.job("bad.toml", f'input = "../data/scan.cxi"\n{line}\n')
                self.fails(["reconstruct", job], job + message)
        self.fails(["reconstruct", "../data/scan.cxi", "--probe-modes", "0"], "--probe-modes: must be from 1 to 32, got 0")
        job = self.job("noinput.toml", 'engines = "dm:2"\n')
        self.fails(["reconstruct", job], f"{job}: no 'input' key")

    def test_malformed_toml_gives_the_parsers_message_with_file_and_line(self):
        job = self.job("malformed.toml", 'input = "../data/scan.cxi"\nengines = "dm:5\nprobe_modes = 2\n')
        r = self.fails(["reconstruct", job], f"{job}:2:", "not a valid TOML job file")
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_submit_fills_the_batch_template_from_the_slurm_table(self):
        job = self.job("submit.toml", 'input = "../data/scan.cxi"\nengines = "dm:4"\n\n[slurm]\nnodes = 2\n'
                                      'tasks = 8\ntime = "02:00:00"\npartition = "short"\n'
                                      'sbatch_options = ["--exclusive"]\n')
        out = self.ok(["submit", job, "--dry-run", "--time", "03:00:00"]).stdout.strip().splitlines()[-1].split()
        self.assertEqual(out[0], "sbatch")
        for option in ("--nodes=2", "--ntasks=8", "--time=03:00:00", "--partition=short", "--exclusive",
                       "--signal=B:USR1@120", "--job-name=ptycho-submit"):
            self.assertIn(option, out)
        self.assertTrue(out[-2].endswith("slurm/reconstruct.sbatch") and os.path.isfile(out[-2]), out[-2])
        self.assertEqual(out[-1], job)
        # reconstruct skips the [slurm] table; submit checks it and the job.
        self.ok(["reconstruct", job, "-o", self.path("out", "submit.h5")])
        bad = self.job("badslurm.toml", 'input = "../data/scan.cxi"\n[slurm]\nnodse = 2\n')
        self.fails(["submit", bad, "--dry-run"], f"{bad}:3: unknown key 'slurm.nodse'", "did you mean 'nodes'")
        bad = self.job("badjob.toml", 'input = "../data/scan.cxi"\nprobe_modes = 0\n[slurm]\nnodes = 1\n')
        self.fails(["submit", bad, "--dry-run"], f"{bad}:2: probe_modes: must be from 1 to 32")

    def test_checkpoints_stop_on_usr1_and_resume(self):
        """A job with checkpoints writes them; SIGUSR1 stops it with exit 75 after a
        checkpoint; running the same job again resumes from it and ends with the
        uninterrupted run's result; a changed chain is refused by name."""
        chain = "dm:30,lsqml:10"
        whole = self.path("out", "whole.h5")
        self.ok(["reconstruct", "../data/scan.cxi", "-o", whole, "--engines", chain, "--checkpoint-every", "5",
                 "--checkpoint", self.path("out", "whole.ckpt.h5")], ranks=2)
        info = self.ok(["info", self.path("out", "whole.ckpt.h5")])
        self.assertIn("readable", info.stdout)
        self.assertIn("35 iterations done", info.stdout)  # the last checkpoint before the end

        job = self.job("ckpt.toml", f'input = "../data/scan.cxi"\noutput = "../out/stopped.h5"\n'
                                    f'engines = "{chain}"\ncheckpoint = "../out/stopped.ckpt.h5"\n'
                                    f'checkpoint_every = 5\n')
        ckpt = self.path("out", "stopped.ckpt.h5")
        cmd = [ARGS.mpiexec, "-n", "2", "--oversubscribe", "--allow-run-as-root", ARGS.ptycho, "reconstruct", job,
               "--iteration-delay", "0.05"]
        proc = subprocess.Popen(cmd, cwd=self.path("run"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        deadline = time.time() + 60
        while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(ckpt), "no checkpoint appeared")
        proc.send_signal(signal.SIGUSR1)  # mpirun forwards SIGUSR1 to the ranks
        out, _ = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 75, out)
        self.assertIn("stopped by SIGUSR1", out)
        self.assertFalse(os.path.exists(self.path("out", "stopped.h5")), "a stopped run wrote a result")
        stopped_at = int(out.split("stopped by SIGUSR1 after iteration ")[1].split(";")[0])
        self.assertLess(stopped_at, 40)

        # A changed chain is refused; the checkpoint is left as it was.
        before = open(ckpt, "rb").read()
        self.fails(["reconstruct", job, "--engines", "dm:31,lsqml:10"], "dm:30,lsqml:10", "remove the checkpoint")
        self.assertEqual(open(ckpt, "rb").read(), before)

        # The same job again, on one rank: it finds its checkpoint and goes on.
        r = self.ok(["reconstruct", job])
        self.assertIn("resuming from ", r.stdout)
        self.assertIn(f"stopped.ckpt.h5 at iteration {stopped_at} of {chain}", r.stdout)
        with h5py.File(whole, "r") as fa, h5py.File(self.path("out", "stopped.h5"), "r") as fb:
            a, b = fa[OBJECT][()], fb[OBJECT][()]
            self.assertLess(np.linalg.norm(a - b) / np.linalg.norm(a), 1e-4)
            self.assertEqual(len(fb[COST][()]), 40)
            np.testing.assert_allclose(fb[COST][()], fa[COST][()], rtol=1e-4)

    def test_a_refinement_the_engine_cannot_do_fails_before_any_work(self):
        out = self.path("out", "unsupported.h5")
        self.fails(["reconstruct", "../data/scan.cxi", "-o", out, "--engines", "epie:4", "--refine-positions"],
                   "--refine-positions: engine 'epie' does not refine positions (engines that do: dm, raar, ml)")
        # The blind preset refines positions where its test finds them wrong.
        r = self.fails(["reconstruct", "../data/scan.cxi", "-o", out, "--preset", "blind", "--engines",
                        "raar:4,lsqml:2"], "preset blind: it refines positions where its test finds them wrong",
                       "engine 'lsqml' does not refine positions")
        self.assertFalse(os.path.exists(out), out)

    def test_blind_preset_sets_what_is_unset_and_options_still_win(self):
        import json
        out = self.path("out", "preset.h5")
        r = self.ok(["reconstruct", "../data/scan.cxi", "-o", out, "--preset", "blind", "--engines", "raar:4,ml:2"])
        with h5py.File(out, "r") as f:
            cfg = json.loads(f["entry_1/process_1/configuration"][()])
            self.assertEqual(f["entry_1/image_2/data"].shape[0], 3)  # the preset's 3 modes
            self.assertIn("probe_error_pct", f["entry_1/process_1"])
        self.assertEqual(cfg["engines"], "raar:4,ml:2")  # the option wins over the preset
        self.assertTrue(cfg["refine_probe"])
        self.assertEqual(cfg["position_method"], "annealing")
        self.assertEqual(cfg["max_position_shift"], 3.0)
        self.assertIn("estimated mismatch", r.stdout)
        self.assertIn("as a defocus", r.stdout)
        # One chain: positions refined behind the position gate, no second run.
        self.assertTrue(cfg["refine_positions"])
        self.assertEqual(cfg["position_gate"], 0.05)
        self.assertEqual(cfg["position_hold"], 20)
        self.assertEqual(sorted(os.listdir(os.path.dirname(out))).count("preset.fixed-positions.h5"), 0)
        self.assertNotIn("position test", r.stdout)  # 4 iterations: the test (at 20) never came
        # Tested early: this scan's positions are right, so they stay as given.
        out2 = self.path("out", "preset2.h5")
        r = self.ok(["reconstruct", "../data/scan.cxi", "-o", out2, "--preset", "blind", "--engines", "raar:8,ml:2",
                     "--position-hold", "4"])
        self.assertIn("position test (raar iteration 5): moving the frames lowers their misfit by", r.stdout)
        self.assertIn("the positions stay as given", r.stdout)
        with h5py.File(out2, "r") as f:
            self.assertEqual(f["entry_1/process_1/position_verdict"][()], -1)
            self.assertLess(f["entry_1/process_1/position_test_gain"][()], 0.05)
            self.assertEqual(f["entry_1/process_1/position_error_nm"][()], 0.0)  # exactly the given positions
        # A job that turns refinement off gets no test.
        r = self.ok(["reconstruct", "../data/scan.cxi", "-o", self.path("out", "preset3.h5"), "--preset", "blind",
                     "--engines", "raar:8,ml:2", "--position-hold", "4", "--refine-positions=false"])
        self.assertNotIn("position test", r.stdout)

    # ---- the detector's orientation

    def test_turned_frames_read_back_with_the_orientation_options(self):
        # A scan with an asymmetric mask (beam stop and dead pixels), and two
        # copies of it whose frames and mask are stored turned: read with the
        # options that undo the turn (transpose, then flip up-down, then
        # left-right), each reconstructs to exactly the original's result.
        base = self.path("data", "oriented.cxi")
        self.ok(["simulate", "-o", base, "--object-size", "96", "--probe-size", "32", "--step", "8",
                 "--photons", "1e5", "--seed", "4", "--mask", "beamstop"])
        turns = {
            # stored S; the reader makes fliplr(S) = F
            "flipx": (lambda a: a[..., ::-1], ["--flip-x"]),
            # the reader makes flipud(S^T) = F, so S = flipud(F)^T
            "transpose_flipy": (lambda a: np.swapaxes(a[..., ::-1, :], -1, -2), ["--transpose", "--flip-y"]),
        }
        ref = self.path("out", "oriented.h5")
        self.ok(["reconstruct", base, "-o", ref, "--engines", "dm:5"])
        for tag, (turn, options) in turns.items():
            copy = self.path("data", f"oriented_{tag}.cxi")
            shutil.copy(base, copy)
            with h5py.File(copy, "r+") as f:
                det = f["/entry_1/instrument_1/detector_1"]
                frames, mask = det["data"][()], det["mask"][()]
                self.assertFalse(np.array_equal(mask, turn(mask)))  # the turn shows in the mask
                det["data"][...] = turn(frames)
                det["mask"][...] = turn(mask)
            out = self.path("out", f"oriented_{tag}.h5")
            self.ok(["reconstruct", copy, "-o", out, "--engines", "dm:5"] + options)
            self.assert_same_result(ref, out)
            with h5py.File(out, "r") as f:
                for key in ("transpose", "flip_y", "flip_x"):
                    self.assertEqual(self.config(out)[key], "--" + key.replace("_", "-") in options)
            r = self.ok(["info", copy] + options)
            self.assertIn("frames' axes", r.stdout)
            self.assertIn("by the options", r.stdout)
        r = self.ok(["info", base])
        self.assertIn("as stored", r.stdout)

    # ---- progress, log, summary, previews

    def check_log(self, log, result, chain, every, ranks):
        with open(log) as f:
            lines = f.read().splitlines()
        entries = [json.loads(line) for line in lines]  # every line is one JSON object
        progress = [e for e in entries if e["event"] == "progress"]
        self.assertEqual(len(progress), reporting_steps(chain, every))
        self.assertEqual(len(entries), len(progress) + 1)
        total = sum(int(item.split(":")[1]) for item in chain.split(","))
        keys = {"engine", "iteration", "iterations", "total_done", "total", "cost", "seconds_per_iteration",
                "eta_seconds", "memory_mb_max"}
        done = 0
        for e in progress:
            self.assertTrue(keys <= set(e), f"missing {keys - set(e)} in {e}")
            self.assertEqual(e["total"], total)
            self.assertGreater(e["total_done"], done)
            done = e["total_done"]
            self.assertGreater(e["memory_mb_max"], 1.0)
            self.assertGreaterEqual(e["eta_seconds"], 0.0)
        self.assertEqual(done, total)
        summary = entries[-1]
        self.assertEqual(summary["event"], "summary")
        self.assertEqual(summary["iterations"], total)
        self.assertEqual(summary["ranks"], ranks)
        self.assertGreaterEqual(summary["threads_per_rank"], 1)
        self.assertEqual([(s["engine"], s["iterations"]) for s in summary["engines"]],
                         [(item.split(":")[0], int(item.split(":")[1])) for item in chain.split(",")])
        with h5py.File(result, "r") as f:
            cost = f[COST][()]
        self.assertEqual(summary["final_cost"], cost[-1])
        self.assertEqual(progress[-1]["cost"], cost[-1])
        return summary

    def test_log_json_has_a_line_per_progress_line_and_a_summary(self):
        r = self.ok(["reconstruct", "../data/scan.cxi", "-o", "log.h5", "--engines", "dm:4,ml:7", "--progress-every",
                     "3", "--log-json", "log.jsonl"])
        summary = self.check_log(self.path("run", "log.jsonl"), self.path("run", "log.h5"), "dm:4,ml:7", 3, 1)
        self.assertEqual(summary["result"], "log.h5")
        self.assertIsNone(summary["previews"])
        progress_lines = [line for line in r.stdout.splitlines() if line.lstrip().startswith("[")]
        self.assertEqual(len(progress_lines), reporting_steps("dm:4,ml:7", 3))
        for line in progress_lines:
            self.assertRegex(line, r"iter +\d+/\d+ +cost \S+ +\S+ s/it +ETA .* mem \d+ MB/rank")
        self.assertRegex(r.stdout, r"11 iterations in .* s/it\); final cost \S+; memory \d+ MB/rank")
        self.assertRegex(r.stdout, r"dm +4 iterations")
        self.assertRegex(r.stdout, r"ml +7 iterations")
        self.assertIn("result: log.h5", r.stdout)

    def test_trace_records_probe_positions_and_mismatch_at_every_progress_line(self):
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "trace.h5", "--engines", "dm:4,ml:7", "--progress-every",
                 "3", "--refine-probe", "--probe-modes", "2", "--refine-positions", "--position-hold", "2",
                 "--trace", "../out/trace/t.h5"], ranks=2)
        steps = reporting_steps("dm:4,ml:7", 3)
        with h5py.File(self.path("out", "trace", "t.h5"), "r") as t, h5py.File(self.path("run", "trace.h5"), "r") as r:
            self.assertEqual(t["iteration"].shape, (steps,))
            self.assertEqual(list(t["iteration"][()]), sorted(set(t["iteration"][()])))
            self.assertEqual(t["iteration"][-1], 11)
            self.assertEqual([e.decode() for e in t["engine"][()]], ["dm"] * 3 + ["ml"] * (steps - 3))
            n = r[POSITIONS].shape[0]
            self.assertEqual(t["positions_px"].shape, (steps, n, 2))
            self.assertEqual(t["probe_modes"].shape[:2], (steps, 2))
            self.assertEqual(t["occupancy"].shape, (steps, 2))
            # The last point is the result's state: its probe (the result's modes are
            # orthogonalised: the same illumination sum_k |P_k|^2), positions and cost.
            illumination = [(np.abs(p) ** 2).sum(0) for p in (t["probe_modes"][-1], r[PROBE][()])]
            self.assertTrue(np.allclose(*illumination, rtol=1e-4, atol=1e-5 * illumination[1].max()))
            self.assertTrue(np.allclose(t["positions_px"][-1], r[POSITIONS][()]))
            self.assertEqual(t["cost"][-1], r[COST][-1])
            # Positions move once refinement starts; the first point is still nominal.
            self.assertGreater(np.abs(t["positions_px"][-1] - t["positions_px"][0]).max(), 0)
            self.assertEqual(t["position_error_nm"][0], 0)
        # Tracing does not change the run (it once did: the mismatch estimate
        # orthogonalised the live probe modes in the middle of DM).
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "untraced.h5", "--engines", "dm:4,ml:7", "--progress-every",
                 "3", "--refine-probe", "--probe-modes", "2", "--refine-positions", "--position-hold", "2"], ranks=2)
        self.assert_same_result(self.path("run", "trace.h5"), self.path("run", "untraced.h5"))
        # examples/trace_vs_truth.py on a simulated scan with its truth: the
        # first point sits at the nominal positions' error, and refinement ends
        # closer to the true positions than it started.
        self.ok(["simulate", "-o", "tvt.cxi", "--truth", "tvt_truth.h5", "--object-size", "96", "--probe-size", "32",
                 "--step", "6", "--position-error", "6", "--seed", "4"])
        self.ok(["reconstruct", "tvt.cxi", "-o", "tvt.h5", "--engines", "ml:60", "--refine-positions",
                 "--position-hold", "5", "--trace", "tvt_trace.h5"], ranks=2)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "trace_vs_truth.py")
        out = subprocess.run([sys.executable, script, "tvt_trace.h5", "tvt_truth.h5", "--json"], cwd=self.path("run"),
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        report = json.loads(out.stdout)
        rows = report["rows"]
        self.assertEqual(report["truth"]["position_error_nm"], 6.0)
        self.assertAlmostEqual(rows[0]["position_error_nm"], report["start"]["nominal_position_error_nm"], places=9)
        self.assertLess(rows[-1]["position_error_nm"], 0.5 * rows[0]["position_error_nm"])
        self.assertLess(max(r["probe_error_pct"] for r in rows), 1e-3)  # the probe is the true one, never refined
        self.assertEqual(rows[-1]["iteration"], 60)
        # A trace larger than 1 GiB is refused before any iteration.
        r = self.fails(["reconstruct", "../data/scan.cxi", "-o", "big.h5", "--engines", "dm:6000", "--probe-modes",
                        "32", "--progress-every", "1", "--trace", "big_trace.h5"], "--trace", "raise --progress-every")
        self.assertNotIn("iter", r.stdout)
        self.assertFalse(os.path.exists(self.path("run", "big.h5")))
        # A trace path that is the scan is refused before any work.
        self.fails(["reconstruct", "../data/scan.cxi", "-o", "x.h5", "--trace", "../data/scan.cxi"], "--trace")
        self.assertFalse(os.path.exists(self.path("run", "x.h5")))

    def test_background_from_simulation_to_result(self):
        # A scan with a flat background of 4 photons per pixel, and its truth. (With less overlap than
        # here, step 5 of a 32 px probe, the object absorbs more of a weak background: see the README.)
        self.ok(["simulate", "-o", "../data/bg.cxi", "--truth", "../data/bg_truth.h5", "--object-size", "96",
                 "--probe-size", "32", "--step", "5", "--photons", "1e6", "--seed", "3", "--background", "4"])
        with h5py.File(self.path("data", "bg_truth.h5"), "r") as f:
            truth = f["background"][()]
        self.assertEqual(truth.shape, (32, 32))
        self.assertAlmostEqual(float(truth.mean()), 4.0, places=4)
        # Refined as a constant: in the result, the summary line and the log.
        r = self.ok(["reconstruct", "../data/bg.cxi", "-o", "bg.h5", "--engines", "ml:20", "--background",
                     "constant", "--log-json", "bg.jsonl"], ranks=2)
        with h5py.File(self.path("run", "bg.h5"), "r") as f:
            b = f["/entry_1/process_1/background"][()]
            mean = float(f["/entry_1/process_1/background_mean"][()])
        self.assertEqual(b.shape, (32, 32))
        self.assertEqual(b.dtype, np.float32)
        self.assertEqual(float(b.min()), float(b.max()))  # one value
        self.assertAlmostEqual(mean, float(b.mean()), places=4)
        self.assertLess(abs(mean - 4.0), 0.8, mean)  # within 20% of the truth
        self.assertRegex(r.stdout, r"final cost \S+; background \S+ counts/pixel \(mean\); memory")
        with open(self.path("run", "bg.jsonl")) as f:
            summary = [json.loads(line) for line in f][-1]
        self.assertAlmostEqual(summary["background_mean"], mean, places=4)
        self.assertEqual(self.config(self.path("run", "bg.h5"))["background"], "constant")
        # Without the option: no background anywhere.
        r = self.ok(["reconstruct", "../data/bg.cxi", "-o", "nobg.h5", "--engines", "ml:3"])
        with h5py.File(self.path("run", "nobg.h5"), "r") as f:
            self.assertNotIn("background", f["/entry_1/process_1"])
            self.assertNotIn("background_mean", f["/entry_1/process_1"])
        self.assertNotIn("background", r.stdout)
        self.fails(["reconstruct", "../data/bg.cxi", "--background", "flat"],
                   "--background: must be 'none', 'constant' or 'pixel', got 'flat'")

    def test_low_memory_is_rank_invariant_and_close_to_exact_shifts(self):
        # --low-memory rounds the sub-pixel shifts to 1/8 px: a different
        # result from the exact one, but a close one, the same at 1 and 2
        # ranks, and recorded in the result's configuration.
        chain = ["--engines", "dm:5,ml:10", "--refine-probe", "--probe-hold", "2"]
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "../out/lm_exact.h5"] + chain)
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "../out/lm_1.h5", "--low-memory"] + chain)
        self.ok(["reconstruct", "../data/scan.cxi", "-o", "../out/lm_2.h5", "--low-memory"] + chain, ranks=2)
        with h5py.File(self.path("out", "lm_exact.h5"), "r") as fe, \
                h5py.File(self.path("out", "lm_1.h5"), "r") as f1, h5py.File(self.path("out", "lm_2.h5"), "r") as f2:
            exact, one, two = fe[OBJECT][()], f1[OBJECT][()], f2[OBJECT][()]
        rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
        self.assertLess(rel(two, one), 1e-4)
        self.assertGreater(rel(one, exact), 1e-6)  # the shifts were rounded
        self.assertLess(rel(one, exact), 0.05)
        self.assertTrue(self.config(self.path("out", "lm_1.h5"))["low_memory"])
        self.assertFalse(self.config(self.path("out", "lm_exact.h5"))["low_memory"])

    def test_low_memory_switches_on_when_the_default_does_not_fit(self):
        # A scan whose default run needs about 143 MiB and whose low-memory run
        # about 116 MiB: under a limit of 130 MiB the low-memory mode is switched
        # on by itself (said on one line, recorded, the same object as asking
        # for it up to rounding: ML keeps the far fields of the frames that
        # the memory left holds, and says how many); a job that sets
        # low_memory = false is refused instead, and under 100 MiB the refusal
        # gives the low-memory mode's need.
        sim = run(["simulate", "-o", "data/big.cxi", "--object-size", "200", "--probe-size", "64", "--step", "6",
                   "--photons", "1e5", "--seed", "3"], cwd=self.work)
        self.assertEqual(sim.returncode, 0, sim.stdout + sim.stderr)
        chain = ["--engines", "dm:3,ml:3"]
        r = self.ok(["reconstruct", "../data/big.cxi", "-o", "../out/auto_lm.h5", "--max-memory", "130M"] + chain)
        note = [line for line in r.stdout.splitlines() if line.strip().startswith("memory:")]
        self.assertEqual(len(note), 1, r.stdout)
        self.assertIn("more than the limit of 130 MiB", note[0])
        self.assertIn("the low-memory mode fits", note[0])
        # 130 - 116 MiB left, three quarters of it for 64 KiB per frame, in
        # whole batches of 16: 160 of the 369 frames.
        self.assertIn("ml keeps the far fields of 160 of the 369 frames", note[0])
        self.assertTrue(self.config(self.path("out", "auto_lm.h5"))["low_memory"])
        r = self.ok(["reconstruct", "../data/big.cxi", "-o", "../out/asked_lm.h5", "--low-memory"] + chain)
        self.assertNotIn("memory:", r.stdout)  # asked for: no far fields kept, nothing to say
        with h5py.File(self.path("out", "auto_lm.h5"), "r") as fa, h5py.File(self.path("out", "asked_lm.h5"), "r") as fb:
            auto, asked = fa[OBJECT][()], fb[OBJECT][()]
        self.assertGreater(np.abs(auto - asked).max(), 0)  # some far fields kept, updated as in the default mode
        self.assertLess(float(np.linalg.norm(auto - asked) / np.linalg.norm(asked)), 1e-5)
        r = self.ok(["reconstruct", "../data/big.cxi", "-o", "../out/default_lm.h5"] + chain)  # no limit: default
        self.assertNotIn("memory:", r.stdout)
        self.assertFalse(self.config(self.path("out", "default_lm.h5"))["low_memory"])
        job = self.job("no_lm.toml", 'input = "../data/big.cxi"\noutput = "../out/no_lm.h5"\nengines = "dm:3,ml:3"\n'
                                     'max_memory = "130M"\nlow_memory = false\n')
        self.fails(["reconstruct", job], "--max-memory", "more than the limit of 130 MiB")
        self.fails(["reconstruct", "../data/big.cxi", "--max-memory", "100M"] + chain,
                   "in the low-memory mode needs about")
        self.assertFalse(os.path.exists(self.path("out", "no_lm.h5")))
        # Its checkpoint resumed where the default would fit (no limit): the run
        # goes on in the checkpoint's low-memory mode and says so; a job that
        # sets low_memory = false is refused by name instead.
        # (Its last checkpoint is in the middle of DM, whose far fields are halves.)
        ckpt, chain = self.path("out", "auto_lm.ckpt.h5"), ["--engines", "dm:5,ml:1"]
        self.ok(["reconstruct", "../data/big.cxi", "-o", "../out/auto_lm_ckpt.h5", "--max-memory", "130M",
                 "--checkpoint", ckpt, "--checkpoint-every", "4"] + chain)
        self.assertIn("(low-memory mode)", self.ok(["info", ckpt]).stdout)
        r = self.ok(["reconstruct", "../data/big.cxi", "-o", "../out/resumed_lm.h5", "--resume", ckpt] + chain)
        self.assertIn("resuming from ", r.stdout)
        note = [line for line in r.stdout.splitlines() if line.strip().startswith("memory:")]
        self.assertEqual(len(note), 1, r.stdout)
        self.assertIn("was written in the low-memory mode", note[0])
        # Not asked for by the job, so ML keeps the far fields the memory
        # holds: without a limit, all of them.
        self.assertIn("ml keeps the far fields of all 369 frames", note[0])
        self.assertTrue(self.config(self.path("out", "resumed_lm.h5"))["low_memory"])
        job = self.job("no_lm_resume.toml", f'input = "../data/big.cxi"\noutput = "../out/no_lm_resume.h5"\n'
                                            f'engines = "dm:5,ml:1"\nresume = "{ckpt}"\nlow_memory = false\n')
        self.fails(["reconstruct", job], "low_memory")
        self.assertFalse(os.path.exists(self.path("out", "no_lm_resume.h5")))

    def test_log_json_from_a_job_file_at_two_ranks(self):
        job = self.job("log.toml", 'input = "../data/scan.cxi"\noutput = "../out/log2.h5"\nengines = "dm:5"\n'
                                   'progress_every = 2\nlog_json = "../out/log2.jsonl"\n')
        self.ok(["reconstruct", job], ranks=2)
        self.check_log(self.path("out", "log2.jsonl"), self.path("out", "log2.h5"), "dm:5", 2, 2)

    def test_previews_include_the_cost_curve(self):
        job = self.job("previews.toml", 'input = "../data/scan.cxi"\noutput = "../out/new/previews.h5"\n'
                                        'engines = "dm:3,ml:3"\npreviews = "../out/previews"\n'
                                        'log_json = "../out/new/log/previews.jsonl"\n')
        r = self.ok(["reconstruct", job])
        # Folders for the result and the log are made as needed.
        self.assertTrue(os.path.exists(self.path("out", "new", "previews.h5")))
        self.assertTrue(os.path.exists(self.path("out", "new", "log", "previews.jsonl")))
        folder = self.path("out", "previews")
        for name in ("amplitude.png", "phase.png", "probe.png", "cost.png"):
            png_size(os.path.join(folder, name))
        self.assertEqual(png_size(os.path.join(folder, "cost.png")), (640, 400))
        # Relative to the job file's folder, as written (not normalised: the folder may be a link).
        shown = os.path.join(self.path("jobs"), "../out/previews")
        self.assertIn(f"previews: {shown}/{{amplitude,phase,probe,cost}}.png", r.stdout)

    # ---- the example job files

    def run_example(self, name, engines):
        example = os.path.join(ARGS.examples, name)
        out = self.path("out", name + ".d")
        r = self.ok(["reconstruct", example, "--engines", engines, "-o", os.path.join(out, "result.h5"),
                     "--previews", os.path.join(out, "previews"), "--log-json", os.path.join(out, "log.jsonl"),
                     "--checkpoint", os.path.join(out, "checkpoint.h5")])
        self.assertTrue(os.path.exists(os.path.join(out, "previews", "cost.png")))
        return r

    def test_examples_run(self):
        if not os.path.isdir(os.path.join(ARGS.shared, "bench")):
            self.skipTest(f"no shared data in {ARGS.shared}")
        os.makedirs(self.path("out", "standard.toml.d"))
        os.makedirs(self.path("out", "realdata_siemens.toml.d"))
        os.makedirs(self.path("out", "cluster.toml.d"))
        self.assertIn("standard_s01.cxi", self.run_example("standard.toml", "ml:2").stdout)
        self.assertIn("siemens_star_tike.cxi", self.run_example("realdata_siemens.toml", "raar:2").stdout)
        self.assertIn("standard_s01.cxi", self.run_example("cluster.toml", "dm:3,ml:2").stdout)
        sbatch = self.ok(["submit", os.path.join(ARGS.examples, "cluster.toml"), "--dry-run"]).stdout
        self.assertIn("--ntasks=2", sbatch)
        self.assertIn("--time=00:30:00", sbatch)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ptycho")
    parser.add_argument("mpiexec")
    parser.add_argument("--shared", default="", help="the shared/ folder (benchmark and real data)")
    parser.add_argument("--examples", default="", help="jobs/examples of the source tree")
    ARGS, rest = parser.parse_known_args()
    ARGS.ptycho = os.path.abspath(ARGS.ptycho)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
