"""mpi_reconstruct.py SCAN OUT: the chain of test_two_ranks_match_one on every
rank of MPI_COMM_WORLD (run under mpiexec -n N), through an mpi4py communicator."""
import sys

from mpi4py import MPI

import ptycho

r = ptycho.reconstruct(sys.argv[1], comm=MPI.COMM_WORLD, output=sys.argv[2], engines="dm:8,ml:6", probe_modes=2,
                       refine_probe=True, probe_hold=2)
assert r.ranks == MPI.COMM_WORLD.Get_size()
obj = r.object()
assert (obj is not None) == (r.rank == 0)
