#!/usr/bin/python3
"""Print one SHA-256 per deterministic dataset of a run file (those that must be byte-identical
for any rank count and across a kill + --resume: everything but timings and owners), plus
/complete. Two run files match when their digests match. Needs Debian's python3-h5py.

    runfile_digest.py RUN.h5
"""
import hashlib
import sys

import h5py

SKIP = {"timings", "owners"}


def main(path):
    with h5py.File(path, "r") as f:
        print("complete", hashlib.sha256(f["complete"][...].tobytes()).hexdigest())
        for name in sorted(f["matrices"].keys()):
            g = f["matrices"][name]
            for ds in sorted(g.keys()):
                if ds in SKIP:
                    continue
                data = g[ds][()]
                raw = data.tobytes() if hasattr(data, "tobytes") else bytes(str(data), "ascii")
                print(name, ds, hashlib.sha256(raw).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
