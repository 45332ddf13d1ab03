"""PtyPy (ptycho/ptypy@1681bec3) on a .ptyd written by `ptycho convert`:
one engine, N iterations, one process, FFTW (pyfftw) or scipy; prints
seconds per iteration from the engine's own loop and the peak RSS."""
import sys, time, resource
import numpy as np
import ptypy
from ptypy.core import Ptycho
from ptypy import utils as u

path, engine, iters, fft = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
probe_update = len(sys.argv) > 5 and sys.argv[5] == "probe"
p = u.Param()
p.verbose_level = "warning"
p.io = u.Param(home="/tmp/ptypy_cmp", autosave=u.Param(active=False), autoplot=u.Param(active=False),
               interaction=u.Param(active=False))
p.scans = u.Param()
s = u.Param(name="Full", ffttype=fft)
s.data = u.Param(name="PtydScan", source="file", dfile=path)
s.illumination = u.Param(aperture=u.Param(form="circ", size=1.0e-6), propagation=u.Param(parallel=None))
p.scans.s = s
p.engines = u.Param()
e = u.Param(name=engine, numiter=iters + 2, numiter_contiguous=1)
e.probe_update_start = 1 if probe_update else 100000
if engine == "DM":
    e.fourier_relax_factor = 0.0
    e.overlap_max_iterations = 1  # one object update per iteration, as ptycho's DM
if engine == "ML":
    e.ML_type = "Poisson"
    e.reg_del2 = False
    e.scale_precond = True
    e.floating_intensities = False
p.engines.e = e
t0 = time.perf_counter()
P = Ptycho(p, level=5)
total = time.perf_counter() - t0
d = [i["duration"] for i in P.runtime.iter_info][2:]  # each iteration's own time, 2 warm-up ones dropped
print(f"ptypy {engine} fft={fft} probe_update={probe_update}: mean {np.mean(d):.4f} s/it, best {np.min(d):.4f} "
      f"over {len(d)} iterations (whole run {total:.1f} s); peak RSS "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
