"""ptycho: distributed ptychographic reconstruction, from Python.

A thin layer over ptycho's C++ library API: the same settings as
``ptycho reconstruct`` and job files (as keyword arguments, checked by the
same table), numpy arrays in and out, MPI through an optional mpi4py
communicator, so that ``mpirun -n 4 python3 script.py`` distributes exactly
as the command line does.

    import ptycho
    r = ptycho.reconstruct("scan.cxi", engines="dm:100,ml:200", probe_modes=2)
    r.write_result("scan_ptycho.h5")
    obj = r.object()          # the whole object on rank 0, None on the others

See python/README.md and ``ptycho.settings()`` for every keyword.
"""
import atexit as _atexit
import os as _os
import sys as _sys

from . import _ptycho

__all__ = ["Scan", "Reconstruction", "reconstruct", "run_job", "simulate", "evaluate", "settings", "check_settings",
           "InputError", "NumericalError", "__version__"]

__version__ = _ptycho.version()
InputError = _ptycho.InputError          # bad settings or input (a ValueError)
NumericalError = _ptycho.NumericalError  # the state stopped being finite (an ArithmeticError)
Scan = _ptycho.Scan

_atexit.register(_ptycho.shutdown)


def _comm_handle(comm):
    """The Fortran handle of an mpi4py communicator, or -1 for MPI_COMM_WORLD."""
    if comm is None:
        return -1
    if not hasattr(comm, "py2f"):
        raise TypeError("comm: expected an mpi4py communicator (e.g. MPI.COMM_WORLD), got %s"
                        % type(comm).__name__)
    return int(comm.py2f())


def _settings(kwargs):
    """Keyword arguments as the settings table takes them (paths as str)."""
    return {k: (_os.fspath(v) if isinstance(v, _os.PathLike) else v) for k, v in kwargs.items()}


def _command_line():
    return "python3 " + " ".join(_sys.argv)


def settings():
    """Every setting: {key: (default as JSON text, help text)}, in the README's order."""
    return {key: (default, text) for key, default, text in _ptycho.settings_table()}


def check_settings(**kwargs):
    """Checks keyword settings as a reconstruction would (ValueError on a bad
    one); returns the complete settings, preset applied, as JSON text."""
    return _ptycho.check_settings(_settings(kwargs))


class Reconstruction:
    """One run of an engine chain on a scan (collective: every rank of
    ``comm`` makes it and calls its methods in the same order).

    scan:   a ptycho.Scan, or the path of a CXI file.
    comm:   an mpi4py communicator; None: MPI_COMM_WORLD.
    kwargs: settings, e.g. engines="dm:100,ml:200", probe_modes=2,
            refine_probe=True (see ptycho.settings()).
    """

    def __init__(self, scan, comm=None, **kwargs):
        if not isinstance(scan, Scan):
            scan = Scan.from_file(_os.fspath(scan))
        self._r = _ptycho.Reconstruction(scan, _comm_handle(comm), _settings(kwargs))

    def run(self, progress=None):
        """Runs what is left of the chain, without the GIL. progress(dict) is
        called after every iteration (on every rank). Ctrl-C stops after the
        iteration and raises KeyboardInterrupt. Returns "finished" or
        "stopped"."""
        return self._r.run(progress)

    @property
    def rank(self):
        return self._r.rank

    @property
    def ranks(self):
        return self._r.ranks

    @property
    def info(self):
        """The scan: frames, geometry, object grid, nominal positions [px]."""
        return self._r.info

    def object(self, root=0):
        """The whole object (H, W) complex64 on rank ``root``; None elsewhere (collective)."""
        return self._r.object(root)

    def object_tile(self):
        """This rank's tile of the object and its (row, col) in the object."""
        return self._r.object_tile()

    @property
    def probe(self):
        """The probe modes (K, M, M) complex64, scaled to counts."""
        return self._r.probe

    def positions(self):
        """All positions (N, 2) [object px] (row, col), input order (collective)."""
        return self._r.positions()

    @property
    def cost_history(self):
        return self._r.cost_history

    @property
    def engine_history(self):
        return self._r.engine_history

    @property
    def background(self):
        """The refined detector background (M, M) [counts]; zeros if none."""
        return self._r.background

    def mismatch(self):
        """The estimated model mismatch: probe error [%], position error [nm
        RMS], partial coherence [nm], mode occupancy (collective)."""
        return self._r.mismatch()

    @property
    def iterations_done(self):
        return self._r.iterations_done

    @property
    def seconds(self):
        return self._r.seconds

    def write_result(self, path):
        """Writes the result file (the benchmark's result contract; atomic, collective)."""
        self._r.write_result(_os.fspath(path), _command_line())

    def write_checkpoint(self, path):
        """Writes a checkpoint; Reconstruction(..., resume=path) goes on from it (collective)."""
        self._r.write_checkpoint(_os.fspath(path))

    def write_previews(self, folder):
        """amplitude.png, phase.png, probe.png and cost.png into ``folder`` (created; collective)."""
        folder = _os.fspath(folder)
        if self.rank == 0:
            _os.makedirs(folder, exist_ok=True)
        self._r.write_previews(folder)


def reconstruct(scan, output=None, comm=None, progress=None, **kwargs):
    """Reconstructs ``scan`` (a path or a ptycho.Scan) with keyword
    ``kwargs`` settings; writes the result to ``output`` if given. Returns
    the Reconstruction (collective)."""
    r = Reconstruction(scan, comm=comm, **kwargs)
    r.run(progress)
    if output is not None:
        r.write_result(output)
    return r


def run_job(job_file=None, comm=None, **kwargs):
    """Runs a job exactly as ``ptycho reconstruct`` does: an optional TOML
    job file with keyword settings on top (input= names the scan if the file
    does not), progress lines, checkpoints, the blind preset's position
    trial, and the result file. Returns the exit code (0, or 75 if stopped
    by Ctrl-C after a checkpoint)."""
    return _ptycho.run_job(_settings(kwargs), _os.fspath(job_file) if job_file else "", _comm_handle(comm),
                           _command_line())


def simulate(output, truth=None, **options):
    """Writes a simulated scan (CXI) to ``output`` and its ground truth to
    ``truth``, as ``ptycho simulate`` does; options are its options with _
    for - (object_size=128, probe_size=32, step=5, probe_error=4, seed=3,
    ...). Serial: call it on one rank. Returns the summary text."""
    return _ptycho.simulate(_os.fspath(output), _os.fspath(truth) if truth else "", options)


def evaluate(result, truth=None, data=None):
    """The benchmark score of a result file against a ground truth, the
    numbers of ``ptybench.py score`` (serial): a dict with psnr_amp,
    ssim_amp, psnr_phase, ssim_phase, score_standard, consistency,
    score_blind, ... and notes on what was left out."""
    return _ptycho.evaluate(_os.fspath(result), _os.fspath(truth) if truth else "",
                            _os.fspath(data) if data else "")
