#!/usr/bin/python3
"""Compares two `ptycho reconstruct` result files of the same scan made at
different rank counts (run by test_rank_count_output.sh).

    test_rank_count_output.py REFERENCE.h5 OTHER.h5 [--tolerance T]

Checks, and exits 1 listing every failure:
  * /entry_1/image_1 and /entry_1/image_2 hold the same datasets, with the
    same shapes and dtypes, in both files;
  * /entry_1/image_1/positions_px are identical;
  * the object (image_1/data) and the probe modes (image_2/data) agree within
    T in relative L2 norm, ||other - reference|| / ||reference|| (default 1e-4);
  * /entry_1/process_1/cost_history has the same length in both.
"""
import argparse
import sys

import h5py
import numpy as np

GROUPS = ("/entry_1/image_1", "/entry_1/image_2")
COMPARED = (("object", "/entry_1/image_1/data"), ("probe", "/entry_1/image_2/data"))
POSITIONS = "/entry_1/image_1/positions_px"
COST = "/entry_1/process_1/cost_history"


def datasets_under(f, group):
    """{path relative to group: (shape, dtype)} of every dataset below group."""
    if group not in f:
        return None
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = (obj.shape, obj.dtype)

    f[group].visititems(visit)
    return found


def relative_l2(other, reference):
    ref = np.linalg.norm(reference.astype(np.complex128).ravel())
    diff = np.linalg.norm((other.astype(np.complex128) - reference.astype(np.complex128)).ravel())
    return diff / ref if ref > 0 else diff


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference")
    parser.add_argument("other")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="relative L2 bound on object and probe")
    args = parser.parse_args()

    failures = []
    with h5py.File(args.reference, "r") as ref, h5py.File(args.other, "r") as oth:
        for group in GROUPS:
            a, b = datasets_under(ref, group), datasets_under(oth, group)
            if a is None or b is None:
                failures.append(f"{group} missing in {args.reference if a is None else args.other}")
                continue
            if sorted(a) != sorted(b):
                failures.append(f"{group}: datasets differ: {sorted(a)} vs {sorted(b)}")
            for name in sorted(set(a) & set(b)):
                (sa, da), (sb, db) = a[name], b[name]
                status = "same" if (sa, da) == (sb, db) else "DIFFERENT"
                print(f"  {group}/{name}: {sa} {da} vs {sb} {db}: {status}")
                if (sa, da) != (sb, db):
                    failures.append(f"{group}/{name}: {sa} {da} vs {sb} {db}")

        if POSITIONS in ref and POSITIONS in oth:
            pa, pb = ref[POSITIONS][()], oth[POSITIONS][()]
            same = pa.shape == pb.shape and np.array_equal(pa, pb)
            print(f"  positions_px: {pa.shape[0]} positions, identical: {same}")
            if not same:
                failures.append(f"{POSITIONS} differ")
        else:
            failures.append(f"{POSITIONS} missing")

        for what, path in COMPARED:
            if path not in ref or path not in oth:
                failures.append(f"{path} missing")
                continue
            a, b = ref[path][()], oth[path][()]
            if a.shape != b.shape:
                continue  # reported above
            err = relative_l2(b, a)
            ok = err <= args.tolerance
            verdict = "ok" if ok else "FAIL"
            print(f"  {what}: relative L2 difference {err:.3e} (tolerance {args.tolerance:.1e}): {verdict}")
            if not ok:
                failures.append(f"{what} ({path}): relative L2 difference {err:.3e} > {args.tolerance:.1e}")

        if COST in ref and COST in oth:
            ca, cb = ref[COST][()], oth[COST][()]
            print(f"  cost_history: {len(ca)} vs {len(cb)} entries; final cost {ca[-1]:.6g} vs {cb[-1]:.6g}"
                  if len(ca) and len(cb) else f"  cost_history: {len(ca)} vs {len(cb)} entries")
            if len(ca) != len(cb):
                failures.append(f"{COST}: {len(ca)} vs {len(cb)} entries")
        else:
            failures.append(f"{COST} missing")

    if failures:
        print(f"FAIL: {args.other} does not match {args.reference}:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print(f"ok: {args.other} matches {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
