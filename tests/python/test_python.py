"""Tests of the Python module `ptycho` (python/), run by ctest through pytest.

Environment (set by tests/python/CMakeLists.txt):
  PYTHONPATH        the build tree's python/ folder
  PTYCHO_EXE        the ptycho program of the same build
  PTYCHO_MPIEXEC    mpiexec
  PTYCHO_SHARED_DIR shared/ (benchmark data and scorer)
  PTYCHO_SOURCE_DIR the repository (examples/)
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import ptycho

EXE = os.environ["PTYCHO_EXE"]
MPIEXEC = os.environ.get("PTYCHO_MPIEXEC", "mpiexec")
SHARED = os.environ.get("PTYCHO_SHARED_DIR", "")
SOURCE = os.environ["PTYCHO_SOURCE_DIR"]
HERE = os.path.dirname(os.path.abspath(__file__))
CHAIN = dict(engines="dm:8,ml:6", probe_modes=2, refine_probe=True, probe_hold=2)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A small simulated scan with a probe error, written by the CLI."""
    d = tmp_path_factory.mktemp("scan")
    path = d / "scan.cxi"
    run([EXE, "simulate", "--object-size", "96", "--probe-size", "32", "--step", "5", "--probe-error", "4",
         "--seed", "5", "-o", str(path), "--truth", str(d / "truth.h5")])
    return path


def read(path, key):
    with h5py.File(path, "r") as f:
        return f[key][()]


def cli_options(settings):
    out = []
    for k, v in settings.items():
        flag = "--" + k.replace("_", "-")
        out += [flag] if v is True else [flag, str(v)]
    return out


def test_settings_are_checked_by_the_table():
    with pytest.raises(ValueError, match=r"keyword argument: probe_modes: must be from 1 to 32, got 0"):
        ptycho.check_settings(probe_modes=0)
    with pytest.raises(ValueError, match=r"unknown setting 'probe_mode' \(did you mean 'probe_modes'\?\)"):
        ptycho.check_settings(probe_mode=2)
    with pytest.raises(ValueError, match=r"engines: unknown engine 'foo'"):
        ptycho.check_settings(engines="foo:3")
    with pytest.raises(ValueError, match=r"refine_probe: expected true or false, got 3"):
        ptycho.check_settings(refine_probe=3)
    with pytest.raises(TypeError, match=r"expected a bool, int, float or str"):
        ptycho.check_settings(beta=[1])
    with pytest.raises(ValueError, match=r"--refine-positions: engine 'epie' does not refine positions"):
        ptycho.check_settings(engines="epie:3", refine_positions=True)
    s = json.loads(ptycho.check_settings(preset="blind"))
    assert s["engines"] == "raar:150,ml:200" and s["probe_modes"] == 3 and s["refine_probe"] is True
    assert s["refine_positions"] is True and s["position_gate"] == 0.05
    table = ptycho.settings()
    assert table["engines"][0] == '"ml:200"' and "engine chain" in table["engines"][1]
    assert set(table) >= {"probe_modes", "refine_positions", "max_position_shift", "background", "max_memory"}


def test_python_and_cli_give_identical_objects(scan, tmp_path):
    cli = tmp_path / "cli.h5"
    run([EXE, "reconstruct", str(scan), "-o", str(cli)] + cli_options(CHAIN))
    r = ptycho.reconstruct(scan, output=tmp_path / "py.h5", **CHAIN)
    assert r.ranks == 1 and r.iterations_done == 14
    for key in ["/entry_1/image_1/data", "/entry_1/image_2/data", "/entry_1/image_1/positions_px",
                "/entry_1/process_1/cost_history"]:
        assert np.array_equal(read(cli, key), read(tmp_path / "py.h5", key)), key
    assert np.array_equal(r.object(), read(cli, "/entry_1/image_1/data"))
    assert r.cost_history == list(read(cli, "/entry_1/process_1/cost_history"))
    assert r.engine_history[0].lower() == "dm" and r.engine_history[-1].lower() == "ml"
    assert r.positions().shape == (r.info["frames"], 2)
    mm = r.mismatch()
    assert mm["probe_error_pct"] > 0 and len(mm["mode_occupancy"]) == 2


def test_arrays_give_the_file_result(scan, tmp_path):
    with h5py.File(scan, "r") as f:
        frames = f["/entry_1/data_1/data"][()]
        t = f["/entry_1/data_1/translation"][()]  # (N, 3); geometry_1 holds (3, N) for PyNX
        energy_j = float(f["/entry_1/instrument_1/source_1/energy"][()])
        distance = float(f["/entry_1/instrument_1/detector_1/distance"][()])
        px = float(f["/entry_1/instrument_1/detector_1/x_pixel_size"][()])
        py = float(f["/entry_1/instrument_1/detector_1/y_pixel_size"][()])
        probe = f["/entry_1/instrument_1/source_1/probe"][()]
    arrays = ptycho.Scan.from_arrays(frames, np.stack([t[:, 1], t[:, 0]], axis=1), energy_ev=energy_j / 1.602176634e-19,
                                     distance_m=distance, pixel_y_m=py, pixel_x_m=px, probe=probe, name="test arrays")
    assert arrays.in_memory and arrays.name == "test arrays"
    a = ptycho.reconstruct(arrays, **CHAIN)
    b = ptycho.reconstruct(ptycho.Scan.from_file(str(scan)), **CHAIN)
    np.testing.assert_allclose(a.object(), b.object(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"test arrays: positions: 3 y and 3 x positions for"):
        ptycho.Scan.from_arrays(frames, np.zeros((3, 2)), energy_ev=8000, distance_m=1, pixel_y_m=1e-4,
                                pixel_x_m=1e-4, name="test arrays")


def test_progress_callback_and_errors(scan):
    seen = []
    r = ptycho.Reconstruction(scan, engines="dm:4")
    assert r.run(progress=seen.append) == "finished"
    assert [p["iteration"] for p in seen] == [1, 2, 3, 4] and seen[-1]["engine"] == "dm"

    def fail(p):
        raise RuntimeError("stop here")

    r = ptycho.Reconstruction(scan, engines="dm:50")
    with pytest.raises(RuntimeError, match="stop here"):
        r.run(progress=fail)
    assert r.iterations_done == 1
    # The blind preset is one chain (its positions behind the position gate), so the API runs it too.
    blind = ptycho.Reconstruction(scan, preset="blind", engines="raar:2")
    blind.run()
    assert blind.iterations_done == 2
    with pytest.raises(ValueError, match=r"no-such.cxi"):
        ptycho.reconstruct("no-such.cxi")
    before = open(scan, "rb").read()
    with pytest.raises(ValueError, match=r"the result"):
        r.write_result(scan)  # never onto the scan
    assert open(scan, "rb").read() == before


def test_checkpoint_and_resume(scan, tmp_path):
    whole = ptycho.reconstruct(scan, engines="dm:6")
    first = ptycho.Reconstruction(scan, engines="dm:6", checkpoint=str(tmp_path / "ck.h5"), checkpoint_every=3)
    stop_at = []
    # Stopping after iteration 3 through a failing callback leaves the checkpoint of iteration 3.
    with pytest.raises(RuntimeError):
        first.run(progress=lambda p: stop_at.append(p) or (_ for _ in ()).throw(RuntimeError())
                  if p["iteration"] == 3 else None)
    second = ptycho.Reconstruction(scan, engines="dm:6", resume=str(tmp_path / "ck.h5"))
    assert second.iterations_done == 3
    second.run()
    np.testing.assert_array_equal(second.object(), whole.object())


def test_mpi4py_communicator(scan):
    from mpi4py import MPI
    r = ptycho.Reconstruction(scan, comm=MPI.COMM_SELF, engines="dm:2")
    assert r.ranks == 1
    with pytest.raises(TypeError, match="mpi4py communicator"):
        ptycho.Reconstruction(scan, comm=3)


def test_run_job_writes_what_the_cli_writes(scan, tmp_path):
    out = tmp_path / "job.h5"
    assert ptycho.run_job(input=str(scan), output=str(out), progress_every=100, **CHAIN) == 0
    cli = tmp_path / "cli.h5"
    run([EXE, "reconstruct", str(scan), "-o", str(cli), "--progress-every", "100"] + cli_options(CHAIN))
    assert np.array_equal(read(out, "/entry_1/image_1/data"), read(cli, "/entry_1/image_1/data"))


def test_simulate_and_evaluate_as_the_cli(scan, tmp_path):
    summary = ptycho.simulate(tmp_path / "sim.cxi", truth=tmp_path / "sim_truth.h5", object_size=96, probe_size=32,
                              step=5, probe_error=4, seed=5)
    assert "frames of 32x32" in summary and "sim.cxi" in summary
    assert np.array_equal(read(tmp_path / "sim.cxi", "/entry_1/data_1/data"), read(scan, "/entry_1/data_1/data"))
    with pytest.raises(ValueError, match=r"simulate: unknown option 'objet_size'"):
        ptycho.simulate(tmp_path / "x.cxi", objet_size=3)
    ptycho.reconstruct(scan, output=tmp_path / "r.h5", engines="dm:10")
    mine = ptycho.evaluate(tmp_path / "r.h5", truth=scan.parent / "truth.h5", data=scan)
    cli = json.loads(run([EXE, "evaluate", str(tmp_path / "r.h5"), "--truth", str(scan.parent / "truth.h5"),
                          "--data", str(scan), "--json"]).stdout)
    for key in ("psnr_amp", "ssim_phase", "score_standard", "consistency", "score_blind"):
        assert mine[key] == pytest.approx(cli[key], rel=1e-12), key
    with pytest.raises(ValueError, match=r"give the ground truth"):
        ptycho.evaluate(tmp_path / "r.h5")


def test_two_ranks_match_one(scan, tmp_path):
    script = os.path.join(HERE, "mpi_reconstruct.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for n in (1, 2):
        run([MPIEXEC, "-n", str(n), "--oversubscribe", "--allow-run-as-root", sys.executable, script, str(scan),
             str(tmp_path / f"np{n}.h5")], env=env)
    a, b = (read(tmp_path / f"np{n}.h5", "/entry_1/image_1/data") for n in (1, 2))
    assert np.linalg.norm(b - a) / np.linalg.norm(a) <= 1e-4  # the rank-invariance tolerance
    with h5py.File(tmp_path / "np2.h5", "r") as f:
        assert json.loads(f["/entry_1/process_1/configuration"][()])["ranks"] == 2


@pytest.mark.skipif(not os.path.isfile(os.path.join(SHARED, "bench/data/standard_s00.cxi")),
                    reason="no shared/bench/data")
def test_readme_example_scores_as_the_cli(tmp_path):
    data = os.path.join(SHARED, "bench/data/standard_s00.cxi")
    example = os.path.join(SOURCE, "examples/reconstruct.py")
    run([sys.executable, example, data, str(tmp_path / "py.h5")])
    run([EXE, "reconstruct", data, "-o", str(tmp_path / "cli.h5")])
    scores = []
    for name in ("py.h5", "cli.h5"):
        p = run(["/usr/bin/python3", os.path.join(SHARED, "bench/ptybench.py"), "score", data,
                 str(tmp_path / name), "--json"])
        scores.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert scores[0]["score_standard"] == scores[1]["score_standard"], scores
