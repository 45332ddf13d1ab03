#!/usr/bin/env python3
"""How far a run's probe, positions and modes are from the truth, against
iterations: reads the trace of `ptycho reconstruct --trace TRACE.h5` and a
simulated scan's ground truth (ptybench's *_truth.h5), prints a table and
writes a plot.

    trace_vs_truth.py TRACE.h5 TRUTH.h5 [--plot OUT.png] [--json]

Per trace point:
  probe_error_pct     || P1 - c T1 || / || T1 ||: the run's first mode
                      against the truth's, both orthogonalised (SVD), after
                      the best complex factor c and the best whole-pixel
                      shift (the probe may drift with the object)
  intensity_error_pct the same for the illumination sum_k |P_k|^2 (no
                      factor but the scale): the part modes can fix
  position_error_nm   RMS per axis of refined - true positions, the mean
                      offset removed (the object may drift with them)
  coherence_nm        the run's estimated partial coherence (its own
                      estimate, from the trace), beside the truth's
The first row also gives the nominal positions' error: where refinement
started. Needs numpy and h5py; matplotlib for --plot.
"""
import argparse
import json
import sys

import h5py
import numpy as np


def orthogonal_modes(modes):
    """Modes (K, M, M) as orthogonal modes sorted by power (the SVD of the
    K x M^2 matrix): the same incoherent sum, the first mode the dominant."""
    k, m, _ = modes.shape
    u, s, vh = np.linalg.svd(modes.reshape(k, m * m), full_matrices=False)
    return (s[:, None] * vh).reshape(-1, m, m)


def best_shift(a, b):
    """The whole-pixel shift of b that best matches a (circular cross-correlation)."""
    x = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b)))
    r, c = np.unravel_index(np.argmax(np.abs(x)), x.shape)
    m = a.shape[0]
    return (r if r <= m // 2 else r - m), (c if c <= m // 2 else c - m)


def mode_error(p, t):
    """|| p - c t' || / || t' || with t' the best whole-pixel shift of t and
    c the best complex factor [%]."""
    dr, dc = best_shift(p, t)
    ts = np.roll(t, (dr, dc), axis=(0, 1))
    c = np.vdot(ts, p) / max(np.vdot(ts, ts).real, 1e-30)
    return 100 * np.linalg.norm(p - c * ts) / max(np.linalg.norm(c * ts), 1e-30)


def intensity_error(p_modes, t_modes):
    ip = (np.abs(p_modes) ** 2).sum(0)
    it = (np.abs(t_modes) ** 2).sum(0)
    dr, dc = best_shift(ip, it)
    it = np.roll(it, (dr, dc), axis=(0, 1))
    scale = (ip * it).sum() / max((it * it).sum(), 1e-30)
    return 100 * np.linalg.norm(ip - scale * it) / max(np.linalg.norm(scale * it), 1e-30)


def position_error_nm(p, t, pixel_nm):
    d = p - t
    d = d - d.mean(0)
    return float(np.sqrt((d ** 2).mean()) * pixel_nm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("truth")
    ap.add_argument("--plot", help="write the curves to this PNG")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args()
    try:
        tr = h5py.File(a.trace, "r")
        tt = h5py.File(a.truth, "r")
    except OSError as e:
        sys.exit(f"trace_vs_truth: {e}")
    for f, path, keys in ((tr, a.trace, ("iteration", "probe_modes", "positions_px")),
                          (tt, a.truth, ("probe_modes", "positions_px", "nominal_positions_px"))):
        for k in keys:
            if k not in f:
                sys.exit(f"trace_vs_truth: {path}: no dataset '{k}'")
    true_modes = orthogonal_modes(tt["probe_modes"][()].astype(np.complex128))
    true_pos = tt["positions_px"][()]
    nominal = tt["nominal_positions_px"][()]
    pixel_nm = float(tt.attrs.get("pixel_size_m", 1e-8)) * 1e9
    positions = tr["positions_px"][()]
    if positions.shape[1] != true_pos.shape[0]:
        sys.exit(f"trace_vs_truth: {a.trace} has {positions.shape[1]} positions, {a.truth} {true_pos.shape[0]}: "
                 "not the same scan")
    truth = {k: float(tt.attrs[k]) for k in ("probe_error_pct", "position_error_nm", "partial_coherence_nm")
             if k in tt.attrs}
    rows = []
    for i, it in enumerate(tr["iteration"][()]):
        modes = orthogonal_modes(tr["probe_modes"][i].astype(np.complex128))
        rows.append({
            "iteration": int(it),
            "engine": tr["engine"][i].decode() if isinstance(tr["engine"][i], bytes) else str(tr["engine"][i]),
            "cost": float(tr["cost"][i]),
            "probe_error_pct": mode_error(modes[0], true_modes[0]),
            "intensity_error_pct": intensity_error(modes, true_modes),
            "position_error_nm": position_error_nm(positions[i], true_pos, pixel_nm),
            "coherence_nm": float(tr["partial_coherence_nm"][i]),
            "estimated_probe_change_pct": float(tr["probe_error_pct"][i]),
            "estimated_position_error_nm": float(tr["position_error_nm"][i]),
            "occupancy": [float(x) for x in tr["occupancy"][i]],
        })
    start = {"nominal_position_error_nm": position_error_nm(nominal, true_pos, pixel_nm),
             "truth_occupancy": [float(x) for x in (np.linalg.norm(true_modes.reshape(len(true_modes), -1), axis=1) ** 2
                                                    / (np.abs(true_modes) ** 2).sum())[:4]]}
    if a.json:
        print(json.dumps({"truth": truth, "start": start, "rows": rows}))
    else:
        print(f"truth: {truth}; nominal positions {start['nominal_position_error_nm']:.2f} nm from the true ones; "
              f"true mode occupancy {np.round(start['truth_occupancy'], 3).tolist()}")
        print(f"{'iter':>5} {'engine':>6} {'cost':>10} {'probe %':>8} {'illum %':>8} {'pos nm':>7} "
              f"{'coh nm':>7} {'est probe %':>11} {'est pos nm':>10}  occupancy")
        for r in rows:
            print(f"{r['iteration']:5d} {r['engine']:>6} {r['cost']:10.5g} {r['probe_error_pct']:8.2f} "
                  f"{r['intensity_error_pct']:8.2f} {r['position_error_nm']:7.2f} {r['coherence_nm']:7.2f} "
                  f"{r['estimated_probe_change_pct']:11.2f} {r['estimated_position_error_nm']:10.2f}  "
                  f"{' '.join(f'{x:.3f}' for x in r['occupancy'])}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        x = [r["iteration"] for r in rows]
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        ax[0].plot(x, [r["probe_error_pct"] for r in rows], label="first mode vs truth")
        ax[0].plot(x, [r["intensity_error_pct"] for r in rows], label="illumination vs truth")
        ax[0].set_ylabel("probe error [%]")
        ax[1].plot(x, [r["position_error_nm"] for r in rows], label="refined vs true")
        ax[1].axhline(start["nominal_position_error_nm"], color="grey", ls="--", label="nominal vs true")
        ax[1].set_ylabel("position error [nm RMS]")
        ax[2].plot(x, [r["coherence_nm"] for r in rows], label="estimate")
        if "partial_coherence_nm" in truth:
            ax[2].axhline(abs(truth["partial_coherence_nm"]), color="grey", ls="--", label="truth")
        ax[2].set_ylabel("partial coherence [nm]")
        for axis in ax:
            axis.set_xlabel("iteration")
            axis.legend(fontsize=8)
        fig.suptitle(a.trace, fontsize=9)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=90)


if __name__ == "__main__":
    main()
