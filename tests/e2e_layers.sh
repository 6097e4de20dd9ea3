#!/usr/bin/env bash
# Layers point one way, and the build enforces it (src/CMakeLists.txt): for every layer, a source
# file compiled with that layer's own flags (from the build's compile_commands.json) can include a
# header of each layer it links and CANNOT find one of any other layer. A wrong-way dependency
# added to src/CMakeLists.txt, or an include folder that exposes all of src/, fails this test.
set -euo pipefail
build=$(dirname "${LOFTQ_BINARY:?}")
[[ -f "$build/compile_commands.json" ]] || { echo "e2e_layers: no compile_commands.json in $build"; exit 1; }
exec /usr/bin/python3 - "$build/compile_commands.json" "${LOFTQ_SOURCE_DIR:?}" <<'PY'
import json, os, shlex, subprocess, sys

commands, src = json.load(open(sys.argv[1])), sys.argv[2]
# What each layer may see (itself and every layer it links, transitively).
below = {
    "core": [], "quant": ["core"], "comm": ["core"], "linalg": ["quant", "core"],
    "lowrank": ["linalg", "comm", "quant", "core"], "io": ["quant", "core"],
}
below["loftq"] = ["lowrank"] + below["lowrank"]
below["plan"] = ["io", "loftq"] + below["loftq"]
below["runtime"] = ["plan", "io"] + below["plan"]
below["cli"] = ["runtime"] + below["runtime"]
# One light header per layer to include.
probe = {"core": "core/error.hpp", "quant": "quant/format.hpp", "comm": "comm/communicator.hpp",
         "linalg": "linalg/backend.hpp", "lowrank": "lowrank/truncated_svd.hpp",
         "loftq": "loftq/loftq_loop.hpp", "io": "io/safetensors.hpp", "plan": "plan/plan.hpp",
         "runtime": "runtime/collective.hpp", "cli": "cli/config.hpp"}

def flags_of(layer):
    for c in commands:
        if c["file"].startswith(os.path.join(src, "src", layer) + "/") and c["file"].endswith(".cpp"):
            args = shlex.split(c["command"])
            keep, i = [], 1
            while i < len(args):
                a = args[i]
                if a in ("-o", "-c"): i += 2; continue
                if a.startswith(("-I", "-D", "-std", "-isystem", "-f")) or a == "-isystem":
                    keep.append(a)
                    if a == "-isystem": keep.append(args[i + 1]); i += 1
                i += 1
            return args[0], keep, c["directory"]
    raise SystemExit(f"e2e_layers: no compile command for a source of layer {layer}")

failed = checked = 0
for layer in probe:
    cxx, flags, cwd = flags_of(layer)
    for other, header in probe.items():
        allowed = other == layer or other in below[layer]
        r = subprocess.run([cxx, *flags, "-fsyntax-only", "-x", "c++", "-"], input=f'#include "{header}"\n',
                           text=True, capture_output=True, cwd=cwd)
        missing = "No such file or directory" in r.stderr
        ok = (r.returncode == 0) if allowed else (r.returncode != 0 and missing)
        checked += 1
        if not ok:
            failed += 1
            want = "compile" if allowed else "fail with 'No such file'"
            print(f"e2e_layers: FAIL: {layer} including {header} should {want}:\n{r.stderr[:400]}")
print(f"e2e_layers: {checked - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
