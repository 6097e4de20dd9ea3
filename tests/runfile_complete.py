#!/usr/bin/python3
"""Print how many matrices of a run file are complete (works while a job writes it: HDF5 file
locking is turned off for this read-only look). Needs Debian's python3-h5py.

    runfile_complete.py RUN.h5   ->   "<complete> <total>"
"""
import os
import sys

os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
import h5py  # noqa: E402


def main(path):
    try:
        with h5py.File(path, "r") as f:
            c = f["complete"][...]
            print(int(c.sum()), c.size)
    except (OSError, KeyError):
        print(0, 0)  # not created yet
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
