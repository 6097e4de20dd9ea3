"""Run load_check.py's checks on many loftq output folders in one process (issue #12's family
test, tests/e2e_families.sh: one torch import instead of one per folder).

    python families_check.py CASES
CASES: one line per folder, "MODEL OUTPUT VERIFY_JSON". Prints each folder's checks and a table;
exit 0 when every folder passes, 1 otherwise. Run in the client venv.
"""
import contextlib
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load_check  # noqa: E402


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # 64 loads: keep the log to the checks
    with open(sys.argv[1]) as f:
        cases = [line.split() for line in f if line.strip()]
    failed, table = [], []
    for model, output, verify in cases:
        t0 = time.time()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                rc = load_check.main(["--model", model, "--output", output, "--verify-json", verify,
                                      "--json", output + ".result.json"])
            except load_check.CheckFailed as e:
                print(f"load_check: {e}")
                rc = 1
        text = buf.getvalue()
        name = os.path.basename(output.rstrip("/"))
        passes = [ln for ln in text.splitlines() if ln.startswith("[PASS]")]
        fails = [ln for ln in text.splitlines() if ln.startswith("[FAIL]")]
        logits = ""
        if os.path.exists(output + ".result.json"):
            with open(output + ".result.json") as f:
                lg = json.load(f).get("logits", {})
            if lg:
                logits = f"logits distance to the original: {lg['backbone_vs_orig']:.4f} -> {lg['adapter_vs_orig']:.4f} with the adapter"
        table.append(f"{name:<18} {'ok  ' if rc == 0 else 'FAIL'} {len(passes)} checks {time.time() - t0:4.1f} s  {logits}")
        if rc != 0:
            failed.append(name)
            print(f"== {name} (rc {rc}) ==\n{text}", flush=True)
        else:
            print(f"{name}: passed ({', '.join(ln.split(':')[0][7:] for ln in passes)})", flush=True)
    print("\n".join(table))
    print(f"families_check: {len(cases) - len(failed)} of {len(cases)} folders pass"
          + (f"; failed: {failed}" if failed else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
