#!/usr/bin/env python3
"""The learned engine from the command line: ptycho train writes a model
that ptycho info describes and `--engines nn:MODEL,...` runs on 2 ranks;
bad options and bad model files are one clear line with exit 2, and
nothing is left behind.

    test_learned_cli.py PTYCHO MPIEXEC SCAN
"""
import json
import os
import subprocess
import sys
import tempfile

ptycho, mpiexec, scan = sys.argv[1:4]


def run(args, ranks=1):
    # -q: mpiexec's own note that a process exited non-zero is not ptycho's output.
    cmd = ([mpiexec, "-q", "-n", str(ranks), "--oversubscribe"] if ranks > 1 else []) + [ptycho] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def fails(args, words, ranks=1):
    p = run(args, ranks)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
    assert len(lines) == 1, (args, p.stderr)
    for w in words:
        assert w in lines[0], (args, w, lines[0])


with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, "m.pt")
    p = run(["train", "-o", model, "--architecture", "unet8", "--steps", "4", "--batch", "2",
             "--feature-iterations", "3"], ranks=2)
    assert p.returncode == 0, p.stderr
    assert "step      4 / 4" in p.stdout and "ETA" in p.stdout, p.stdout
    assert os.path.isfile(model) and not [f for f in os.listdir(tmp) if ".tmp." in f]

    p = run(["info", model, "--json"])
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["kind"] == "model" and info["architecture"] == "unet8" and info["frame_size"] == 64, info
    assert info["steps"] == 4 and "trained by:" in info["description"], info

    out = os.path.join(tmp, "r.h5")
    p = run(["reconstruct", scan, "-o", out, "--engines", "nn:" + model + ",ml:3"], ranks=2)
    assert p.returncode == 0, p.stderr
    assert "NN" in p.stdout and os.path.isfile(out), p.stdout

    # --preset learned: the shipped model's guess, then 200 iterations of ML (its TV prior, no smoothness prior).
    out = os.path.join(tmp, "preset.h5")
    p = run(["reconstruct", scan, "-o", out, "--preset", "learned"], ranks=2)
    assert p.returncode == 0, p.stderr
    import h5py
    with h5py.File(out, "r") as f:
        names = [x.decode() if isinstance(x, bytes) else str(x) for x in f["entry_1/process_1/engine_history"][()]]
        config = json.loads(f["entry_1/process_1/configuration"][()])
    assert names[0].lower() == "nn" and len(names) == 201 and set(n.lower() for n in names[1:]) == {"ml"}, names[:3]
    assert config["engines"] == "nn,ml:200" and config["smoothness"] == 0 and config["tv"] > 0, config

    # ptycho train --fine-tune: the model tuned on the scan, which is not changed.
    tuned = os.path.join(tmp, "tuned.pt")
    before = open(scan, "rb").read()
    p = run(["train", "--fine-tune", scan, "--init", model, "-o", tuned, "--steps", "2"], ranks=2)
    assert p.returncode == 0, p.stderr
    assert "nn fine-tuning: step 2 / 2" in p.stdout and "ETA" in p.stdout, p.stdout
    assert open(scan, "rb").read() == before
    p = run(["info", tuned, "--json"])
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["steps"] == 6 and "fine-tuned on a scan" in info["description"], info

    # Bad options and files: one line naming the culprit, exit 2, nothing written.
    fails(["train", "--fine-tune", os.path.join(tmp, "none.cxi"), "-o", os.path.join(tmp, "x.pt")],
          ["none.cxi", "no such file"])
    fails(["reconstruct", scan, "-o", os.path.join(tmp, "x.h5"), "--engines", "nn:" + model, "--nn-tune", "-3"],
          ["--nn-tune"])
    fails(["reconstruct", scan, "-o", os.path.join(tmp, "x.h5"), "--engines", "nn:" + model, "--nn-flips", "3"],
          ["--nn-flips", "power of 2"])
    fails(["train", "-o", os.path.join(tmp, "x.pt"), "--steps", "0"], ["--steps"])
    fails(["train", "-o", os.path.join(tmp, "x.pt"), "--architecture", "vgg"], ["unknown network architecture 'vgg'"])
    fails(["train", "-o", os.path.join(tmp, "x.pt"), "--frame-size", "60"], ["--frame-size"])
    fails(["train", "-o", scan, "--steps", "1"], [scan])
    junk = os.path.join(tmp, "junk.pt")
    with open(junk, "w") as f:
        f.write("PK\x03\x04 and then nothing")
    fails(["info", junk], [junk, "not a ptycho model file"])
    out2 = os.path.join(tmp, "r2.h5")
    fails(["reconstruct", scan, "-o", out2, "--engines", "nn:" + junk + ",ml:3"], [junk], ranks=2)
    fails(["reconstruct", scan, "-o", out2, "--engines", "nn:" + os.path.join(tmp, "none.pt")],
          ["no such model file"], ranks=2)
    fails(["reconstruct", scan, "-o", out2, "--engines", "nn:12,ml:3"], ["nn takes a model file"])
    assert not os.path.exists(out2)
    assert not [f for f in os.listdir(tmp) if ".tmp." in f], os.listdir(tmp)
print("test_learned_cli: OK")
