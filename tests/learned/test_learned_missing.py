#!/usr/bin/env python3
"""A build without the learned plugin: asking for a network is one clear
error with exit 2, and everything else still runs.

    test_learned_missing.py PTYCHO MPIEXEC SCAN
"""
import os
import subprocess
import sys
import tempfile

ptycho, mpiexec, scan = sys.argv[1:4]
with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "r.h5")
    for cmd in ([mpiexec, "-q", "-n", "2", "--oversubscribe", ptycho, "reconstruct", scan, "-o", out, "--engines", "nn,ml:2"],
                [ptycho, "train", "-o", os.path.join(tmp, "m.pt"), "--steps", "1"]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        assert p.returncode == 2, (cmd, p.returncode, p.stderr)
        assert len(lines) == 1 and "built without it" in lines[0] and "libtorch" in lines[0], p.stderr
        assert not os.path.exists(out)
    p = subprocess.run([ptycho, "reconstruct", scan, "-o", out, "--engines", "dm:2"], capture_output=True, text=True)
    assert p.returncode == 0 and os.path.exists(out), p.stderr
print("test_learned_missing: OK")
