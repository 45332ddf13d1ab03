"""Reconstructs a CXI scan from Python and writes the result file.

    python3 examples/reconstruct.py ../shared/bench/data/standard_s00.cxi s00_ptycho.h5
    mpirun -n 2 python3 examples/reconstruct.py SCAN.cxi OUT.h5      # the same, on 2 ranks

With the build tree's module: PYTHONPATH=build/serial/python (after `cmake --install`,
the installed package is found without it). Settings are the keywords of
`ptycho reconstruct` (see ptycho.settings()); the defaults are its defaults (ml:200).
"""
import sys

import ptycho


def main(scan, output):
    def progress(p):
        if p["iteration"] % 50 == 0 or p["iteration"] == p["iterations"]:
            print(f"  [{p['engine']}] {p['iteration']}/{p['iterations']} cost {p['cost']:.5g} "
                  f"ETA {p['eta_seconds']:.0f} s", flush=True)

    r = ptycho.Reconstruction(scan)          # comm=mpi4py communicator; default MPI_COMM_WORLD
    if r.rank == 0:
        info = r.info
        print(f"{scan}: {info['frames']} frames of {info['frame_size']}x{info['frame_size']}, "
              f"object {info['object_shape']}, {r.ranks} rank(s)")
    r.run(progress=progress if r.rank == 0 else None)
    r.write_result(output)
    obj = r.object()                         # numpy complex64 (H, W) on rank 0, None on the others
    mismatch = r.mismatch()
    if r.rank == 0:
        print(f"object {obj.shape}, final cost {r.cost_history[-1]:.5g}, "
              f"probe change {mismatch['probe_error_pct']:.2f} %, result {output}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: reconstruct.py SCAN.cxi RESULT.h5")
    main(sys.argv[1], sys.argv[2])
