#!/usr/bin/env python3
"""Roofline of `loftq run`: each phase's work against this machine's measured limits (issue #15).

  roofline.py limits --work DIR --blas LIB.so --threads 1,2 [--repeats 5] [--lock /tmp/bench.lock]
  roofline.py report --work DIR --json OUT.json --md OUT.md [--notes NOTES.json]

Debian's /usr/bin/python3 + numpy; no build. bench/roofline.sh runs both (read it for the whole
benchmark); DIR holds what roofline.sh measured: meta.json, and per shape ROWSxCOLS/ with run_<i>.jsonl
(loftq --log-json), run_<i>.wall (whole process, s), run_<i>.out (its console).

`limits` measures, under the timing lock, and writes DIR/limits.json:
  copy bandwidth  memmove of a 512 MB buffer (>> L3) into another, via ctypes libc memmove (which
                  releases the GIL): 1 thread, and 2 Python threads each moving one half.
                  GB/s = (bytes read + bytes written) / s = 2 * 512 MB / s. Median of --repeats.
  SGEMM GFLOP/s   cblas_sgemm of the OpenBLAS library the binary links (LIB.so, from `ldd`), row-major
                  float32, numpy arrays as buffers, openblas_set_num_threads(t), at the exact shapes of
                  the loop for each measured shape (k = the record's `sketch`, r = its rank):
                    sketch_nt   C(k x rows)    = B * A^T,  B k x cols,  A rows x cols (a sketch pass, Y^T)
                    sketch_nn   C(k x cols)    = Qt * A,  Qt k x rows,  A rows x cols (a sketch pass, Z^T)
                    lowrank_nn  C(rows x cols) = L(rows x r) * R(r x cols)        (the low-rank term)
                  GFLOP/s = 2 * M * N * K / s / 1e9. One warm-up, then --repeats; the limit is the
                  best of them (the median is recorded too).

`report` applies the WORK MODEL below to the median run of each shape, and writes the tables.
Efficiency of a phase = (its roofline time bound) / (its measured time), the bound being
  sum over its memory items of bytes / copy bandwidth  +  sum over its GEMM items of flops / SGEMM rate
at that GEMM's shape, both at the run's thread count. For a pure memory phase that is
(bytes / time) / bandwidth; for a pure GEMM phase (flops / time) / GFLOP/s.
"""
import argparse
import ctypes
import fcntl
import glob
import json
import os
import statistics
import threading
import time

import numpy as np

# ---------------------------------------------------------------------------------------------
# WORK MODEL: the one table to edit. N = rows * cols floats, T iterations, p[t] = gemm_passes[t]
# (t = 0..T-1), P = sum of p[t], C = sum of gemm_columns[t] (the columns those passes multiply),
# k = sketch width, r = rank. Each item: (phase, item, kind, bytes,
# flops), bytes and flops Python expressions of rows, cols, N, T, k, r, P, C; kind "mem" (bound by copy
# bandwidth) or a GEMM shape key of `limits` (bound by that SGEMM rate; its bytes are shown, the
# SGEMM benchmark already pays for them). A GEMM pass is one full product of the rows x cols residual by a k-wide block;
# passes alternate between the two sketch shapes (Y = A Omega: rows x k out; Z = Q^T A: k x cols
# out): half of the passes multiply k columns at the first shape's rate, the other half the rest of
# the C columns (the Krylov projection on (q + 1) k) at the second's. The last step, with the LoRA
# scaling compensated (the default), forms the stored factors' product into the residual (beta = 1)
# and its norm is the error as loaded: no separate final evaluation. The SGEMM rates are measured
# at k columns; the Krylov projection's wider product ((q + 1) k) runs somewhat faster than that,
# so its bound is a little loose (the svd phase's efficiency a little high).
# ---------------------------------------------------------------------------------------------
WORK_MODEL = [
    # phase     item                                          kind          bytes                          flops
    ("read",     "bf16 tensor -> float32 W",                   "mem",        "6 * N",                       "0"),
    ("quantize", "norm(W) + QLoRA's plain NF4 of W (read W x2)", "mem",        "8 * N",                       "0"),
    ("quantize", "t = 1: read W, write residual",              "mem",        "8 * N",                       "0"),
    ("quantize", "t > 1: read W + low-rank term, write res.",  "mem",        "12 * N * (T - 1)",            "0"),
    ("svd",      "sketch passes, Y^T = B A^T shape (P / 2)",   "sketch_nt",  "4 * N * P / 2",               "P / 2 * 2 * N * k"),
    ("svd",      "sketch passes, Z^T = Q^T A shape (P / 2)",   "sketch_nn",  "4 * N * P / 2",               "2 * N * (C - k * P / 2)"),
    ("svd",      "norm of the residual, steps 1..T-1",         "mem",        "4 * N * (T - 1)",             "0"),
    ("svd",      "low-rank product L R into the residual, 1..T-1", "lowrank_nn", "4 * N * (T - 1)",         "2 * N * r * (T - 1)"),
    ("svd",      "last step: W - Q - s B A into the residual", "lowrank_nn", "8 * N",                       "2 * N * r"),
    ("svd",      "last step: norm (the error as loaded)",      "mem",        "4 * N",                       "0"),
    ("comm",     "none (one rank)",                            "mem",        "0",                           "0"),
    ("write",    "run file: codes + absmax + A, B",            "mem",        "0.5 * N + N / 16 + 4 * r * (rows + cols)", "0"),
    ("export",   "read codes, write bf16 backbone + adapter",  "mem",        "2.5 * N + 4 * r * (rows + cols)",          "0"),
]
LOOP_PHASES = ["read", "quantize", "svd", "comm", "write"]

COPY_MB = 512


# ------------------------------------------------------------------------------------ limits
class Lock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def timed(call, repeats, lock):
    """Seconds of `repeats` calls after one warm-up call, all under the timing lock."""
    secs = []
    with lock:
        call()  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            secs.append(time.perf_counter() - t0)
    return secs


def copy_bandwidth(threads, repeats, lock):
    """GB/s of memmove (bytes read + written) of COPY_MB MB split over `threads` Python threads."""
    libc = ctypes.CDLL("libc.so.6")
    libc.memmove.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    libc.memmove.restype = ctypes.c_void_p
    nbytes = COPY_MB << 20
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.zeros(nbytes, dtype=np.uint8)  # touched: no page faults in the timed copies
    part = nbytes // threads
    chunks = [(dst.ctypes.data + i * part, src.ctypes.data + i * part, part) for i in range(threads)]

    def one():
        if threads == 1:
            libc.memmove(*chunks[0])
            return
        ts = [threading.Thread(target=libc.memmove, args=c) for c in chunks]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    secs = timed(one, repeats, lock)
    assert dst[::4096].all()
    gbs = [2 * part * threads / s / 1e9 for s in secs]
    return {"threads": threads, "bytes": nbytes, "seconds": secs, "gbs": gbs, "median_gbs": statistics.median(gbs),
            "best_gbs": max(gbs)}


def sgemm_rates(blas_path, rows, cols, k, r, threads, repeats, lock):
    """GFLOP/s of cblas_sgemm at the loop's three GEMM shapes for one matrix shape."""
    lib = ctypes.CDLL(blas_path)
    P, I = ctypes.c_void_p, ctypes.c_int
    lib.cblas_sgemm.argtypes = [I, I, I, I, I, I, ctypes.c_float, P, I, P, I, ctypes.c_float, P, I]
    lib.cblas_sgemm.restype = None
    lib.openblas_set_num_threads.argtypes = [I]
    lib.openblas_set_num_threads(threads)
    RM, N_, T_ = 101, 111, 112
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, cols), dtype=np.float32)
    b = rng.standard_normal((k, cols), dtype=np.float32)    # sketch_nt: B
    q = rng.standard_normal((k, rows), dtype=np.float32)    # sketch_nn: Qt
    lm = rng.standard_normal((rows, r), dtype=np.float32)
    rm = rng.standard_normal((r, cols), dtype=np.float32)
    c_nt = np.zeros((k, rows), np.float32)
    c_zt = np.zeros((k, cols), np.float32)
    c_nn = np.zeros((rows, cols), np.float32)
    calls = {
        "sketch_nt": (lambda: lib.cblas_sgemm(RM, N_, T_, k, rows, cols, 1.0, b.ctypes.data, cols,
                                              a.ctypes.data, cols, 0.0, c_nt.ctypes.data, rows),
                      2.0 * rows * k * cols, f"C({k}x{rows}) = B({k}x{cols}) A^T({cols}x{rows})", c_nt,
                      lambda: b @ a[:64].T),
        "sketch_nn": (lambda: lib.cblas_sgemm(RM, N_, N_, k, cols, rows, 1.0, q.ctypes.data, rows,
                                              a.ctypes.data, cols, 0.0, c_zt.ctypes.data, cols),
                      2.0 * k * cols * rows, f"C({k}x{cols}) = Qt({k}x{rows}) A({rows}x{cols})", c_zt,
                      lambda: q @ a),
        "lowrank_nn": (lambda: lib.cblas_sgemm(RM, N_, N_, rows, cols, r, 1.0, lm.ctypes.data, r,
                                               rm.ctypes.data, cols, 0.0, c_nn.ctypes.data, cols),
                       2.0 * rows * cols * r, f"C({rows}x{cols}) = L({rows}x{r}) R({r}x{cols})", c_nn,
                       lambda: lm[:64] @ rm),
    }
    out = {}
    for key, (call, flops, desc, c, ref) in calls.items():
        secs = timed(call, repeats, lock)
        want = ref()
        got = {"sketch_nt": c[:, :64], "sketch_nn": c}.get(key, c[:64])
        assert np.allclose(got, want, rtol=1e-3, atol=1e-2 * np.abs(want).max()), f"cblas_sgemm {key} is wrong"
        g = [flops / s / 1e9 for s in secs]
        out[key] = {"shape": desc, "flops": flops, "seconds": secs, "gflops": g, "median_gflops": statistics.median(g),
                    "best_gflops": max(g)}
    return out


def cmd_limits(a):
    meta = json.load(open(os.path.join(a.work, "meta.json")))
    threads = [int(t) for t in a.threads.split(",")]
    lock = Lock(a.lock)
    lim = {"blas": a.blas, "copy_mb": COPY_MB, "repeats": a.repeats, "copy": {}, "sgemm": {}}
    lib = ctypes.CDLL(a.blas)
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_get_corename.restype = ctypes.c_char_p
    lim["blas_config"] = lib.openblas_get_config().decode()
    lim["blas_core"] = lib.openblas_get_corename().decode()
    for t in threads:
        c = copy_bandwidth(t, a.repeats, lock)
        lim["copy"][str(t)] = c
        print(f"copy bandwidth, {t} thread(s): best {c['best_gbs']:.1f}, median {c['median_gbs']:.1f} GB/s (read + write, {COPY_MB} MB, {a.repeats} repeats)", flush=True)
    for shape in meta["shapes"]:
        rec = median_run(a.work, shape)[0]
        rows, cols, k, r = rec["rows"], rec["cols"], rec.get("sketch") or 80, meta["rank"]
        lim["sgemm"][shape] = {"k": k, "r": r}
        for t in threads:
            s = sgemm_rates(a.blas, rows, cols, k, r, t, a.repeats, lock)
            lim["sgemm"][shape][str(t)] = s
            print(f"SGEMM {shape}, {t} thread(s): " + ", ".join(f"{key} best {v['best_gflops']:.1f} median {v['median_gflops']:.1f}" for key, v in s.items())
                  + " GFLOP/s", flush=True)
    json.dump(lim, open(os.path.join(a.work, "limits.json"), "w"), indent=1)


# ------------------------------------------------------------------------------------ report
def load_runs(work, shape):
    runs = []
    for f in sorted(glob.glob(os.path.join(work, shape, "run_*.jsonl")), key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])):
        base = f[:-len(".jsonl")]
        rec = json.loads(open(f).read().splitlines()[-1])
        wall = float(open(base + ".wall").read())
        export = None
        for line in open(base + ".out"):
            if line.startswith("[loftq] exported") and " in " in line:
                export = float(line.rsplit(" in ", 1)[1].split()[0])
        runs.append((rec, wall, export))
    if not runs:
        raise SystemExit(f"roofline.py: no runs for {shape} in {work}")
    return runs


def median_run(work, shape):
    """The run of median whole-process wall time (its own phase times, not mixed across runs)."""
    runs = sorted(load_runs(work, shape), key=lambda x: x[1])
    return runs[(len(runs) - 1) // 2]


def fmt(x, unit=""):
    if x is None:
        return ""
    if x >= 100:
        return f"{x:.0f}{unit}"
    if x >= 10:
        return f"{x:.1f}{unit}"
    return f"{x:.2f}{unit}"


def cmd_report(a):
    meta = json.load(open(os.path.join(a.work, "meta.json")))
    lim = json.load(open(os.path.join(a.work, "limits.json")))
    notes = json.load(open(a.notes)) if a.notes else {}
    t = str(meta["threads"])
    # A limit is what the machine can do: the best of the repeats (on these shared cores a median
    # can sit inside a slow spell and put a phase above 100% of its "limit").
    copy_gbs = lim["copy"][t]["best_gbs"]
    result = {"meta": meta, "limits": lim, "shapes": {}}
    md = [f"# Roofline of `loftq run` (bench/roofline.sh)", "",
          f"Machine: {meta['machine']}, {meta['cores']} cores; loftq and the limits at {t} thread(s); "
          f"loftq binary {meta['loftq_binary']} (source commit {meta['loftq_commit']}, sha256 {meta['loftq_sha256_16']}...); "
          f"scripts at {meta['script_commit']}; {meta['date']}. r = {meta['rank']}, T = {meta['iters']}, NF4.", "",
          f"Limits measured in the same run (best of the repeats): copy bandwidth (memmove {COPY_MB} MB, read + write) "
          + ", ".join(f"{c['best_gbs']:.1f} GB/s at {n} thread(s)" for n, c in lim["copy"].items())
          + f"; SGEMM: {lim['blas']} ({lim['blas_core']}), per shape below.", "",
          "Efficiency = roofline time bound / measured time; the bound = memory bytes / copy bandwidth + "
          "GEMM flops / SGEMM rate at that GEMM's shape (work model: WORK_MODEL in bench/roofline.py). "
          "read, write and export are file I/O through the page cache: their bound (copy bandwidth) is "
          "optimistic. `other` = whole process - loop total - export (start-up, MPI, plan, summary).", ""]
    for shape in meta["shapes"]:
        runs = load_runs(a.work, shape)
        rec, wall, export = median_run(a.work, shape)
        rows, cols = rec["rows"], rec["cols"]
        T = len(rec["errors"])
        passes = rec.get("gemm_passes")
        passes_source = "record"
        if rec.get("svd") == "exact":
            passes, passes_source = None, "exact SVD: not modelled"
        elif not passes:
            q0, qw = meta["power_iters"], meta["warm_power_iters"]
            passes = [2 * q0 + 2] + [2 * qw + 2] * (T - 1)
            passes_source = f"ASSUMED 2q+2 (q = {q0} at t = 1, {qw} after): not in the record"
        k = rec.get("sketch") or lim["sgemm"][shape]["k"]
        columns = rec.get("gemm_columns") or [k * p for p in (passes or [])]
        s = {"rows": rows, "cols": cols, "N": rows * cols, "T": T, "k": k, "r": meta["rank"], "P": sum(passes or []),
             "C": sum(columns)}
        rates = {key: v["best_gflops"] for key, v in lim["sgemm"][shape][t].items()}
        times = dict(rec["times"])
        times["export"] = export
        times["other"] = wall - rec["times"]["total"] - (export or 0.0)
        items, phases = [], {}
        for phase, item, kind, fb, ff in WORK_MODEL:
            b, f = float(eval(fb, {}, s)), float(eval(ff, {}, s))
            if phase == "svd" and passes is None:
                b, f = 0.0, 0.0
            bound = b / (copy_gbs * 1e9) if kind == "mem" else f / (rates[kind] * 1e9)
            items.append({"phase": phase, "item": item, "kind": kind, "bytes": b, "flops": f, "bound_s": bound})
            ph = phases.setdefault(phase, {"bytes": 0.0, "flops": 0.0, "bound_s": 0.0, "gemm": set()})
            ph["bytes"] += b
            ph["flops"] += f
            ph["bound_s"] += bound
            if kind != "mem":
                ph["gemm"].add(kind)
        rows_out = []
        for phase in LOOP_PHASES + ["export", "other"]:
            tm = times.get(phase)
            ph = phases.get(phase, {"bytes": 0.0, "flops": 0.0, "bound_s": 0.0, "gemm": set()})
            eff = ph["bound_s"] / tm if tm and ph["bound_s"] > 0 else None
            limit = [f"{copy_gbs:.1f} GB/s"] if ph["bytes"] and any(
                i["kind"] == "mem" and i["bytes"] for i in items if i["phase"] == phase) else []
            limit += [f"{k_} {rates[k_]:.0f} GF/s" for k_ in sorted(ph["gemm"])]
            rows_out.append({
                "phase": phase, "bytes": ph["bytes"], "flops": ph["flops"], "seconds": tm,
                "achieved_gbs": ph["bytes"] / tm / 1e9 if tm and ph["bytes"] else None,
                "achieved_gflops": ph["flops"] / tm / 1e9 if tm and ph["flops"] else None,
                "limit": "; ".join(limit), "bound_s": ph["bound_s"] if ph["bound_s"] else None,
                "efficiency": eff,
                "why": notes.get(f"{shape}/{phase}", notes.get(f"*/{phase}",
                                 "(to explain)" if eff is not None and eff < 0.5 else "")),
            })
        loop_bound = sum(p["bound_s"] for n, p in phases.items() if n in LOOP_PHASES)
        result["shapes"][shape] = {
            "rows": rows, "cols": cols, "sketch": k, "rank": meta["rank"], "iters": T,
            "gemm_passes": passes, "gemm_passes_source": passes_source, "svd": rec.get("svd"),
            "walls": [w for _, w, _ in runs], "median_wall": wall, "loop_total": rec["times"]["total"],
            "loop_bound_s": loop_bound, "loop_efficiency": loop_bound / rec["times"]["total"],
            "loaded_error": rec.get("loaded_error"), "qlora_error": rec.get("qlora_error"),
            "sgemm_gflops": rates, "copy_gbs": copy_gbs, "phases": rows_out, "items": items,
            "records": [r for r, _, _ in runs],
        }
        md += [f"## {rows} x {cols}", "",
               f"Whole process {wall:.2f} s (median of {len(runs)}: " + ", ".join(f"{w:.2f}" for _, w, _ in runs)
               + f"), loop {rec['times']['total']:.2f} s, loop bound {loop_bound:.3f} s "
               f"(loop efficiency {100 * loop_bound / rec['times']['total']:.1f}%). k = {k}, r = {meta['rank']}, "
               f"T = {T}, GEMM passes per iteration {passes} ({passes_source}). As-loaded error "
               f"{rec.get('loaded_error', float('nan')):.6f} (QLoRA {rec.get('qlora_error', float('nan')):.6f}).", "",
               "| phase | bytes | flops | time s | achieved GB/s | achieved GFLOP/s | limit | bound s | efficiency % | why |",
               "|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]
        for r_ in rows_out:
            md.append("| {phase} | {b} | {f} | {t} | {gb} | {gf} | {lim} | {bd} | {eff} | {why} |".format(
                phase=r_["phase"], b=fmt(r_["bytes"] / 1e9, " GB") if r_["bytes"] else "",
                f=fmt(r_["flops"] / 1e9, " GF") if r_["flops"] else "",
                t=f"{r_['seconds']:.3f}" if r_["seconds"] is not None else "",
                gb=fmt(r_["achieved_gbs"]), gf=fmt(r_["achieved_gflops"]), lim=r_["limit"],
                bd=f"{r_['bound_s']:.3f}" if r_["bound_s"] else "",
                eff=f"{100 * r_['efficiency']:.1f}" if r_["efficiency"] is not None else "", why=r_["why"]))
        md.append("")
    md += ["## Work model (bench/roofline.py WORK_MODEL)", "",
           "N = rows x cols floats, T iterations, p_t = gemm_passes[t], k sketch width, r rank; bytes of float32 "
           "unless said; P = sum of p_t, C = sum of gemm_columns[t] (the columns the passes multiply).", "", "| phase | item | bound by | bytes | flops |", "|---|---|---|---|---|"]
    for phase, item, kind, fb, ff in WORK_MODEL:
        md.append(f"| {phase} | {item} | {'copy bandwidth' if kind == 'mem' else 'SGEMM ' + kind} | `{fb}` | `{ff}` |")
    md.append("")
    json.dump(result, open(a.json, "w"), indent=1, default=list)
    open(a.md, "w").write("\n".join(md))
    for shape, r in result["shapes"].items():
        print(f"roofline {shape}: whole {r['median_wall']:.2f} s, loop {r['loop_total']:.2f} s, bound {r['loop_bound_s']:.3f} s, "
              + ", ".join(f"{p['phase']} {p['seconds']:.3f} s ({100 * p['efficiency']:.0f}%)" for p in r["phases"]
                          if p["seconds"] is not None and p["efficiency"] is not None))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    li = sub.add_parser("limits")
    li.add_argument("--work", required=True)
    li.add_argument("--blas", required=True)
    li.add_argument("--threads", default="1,2")
    li.add_argument("--repeats", type=int, default=5)
    li.add_argument("--lock", default="/tmp/bench.lock")
    re_ = sub.add_parser("report")
    re_.add_argument("--work", required=True)
    re_.add_argument("--json", required=True)
    re_.add_argument("--md", required=True)
    re_.add_argument("--notes", help="JSON {\"ROWSxCOLS/phase\" or \"*/phase\": \"why\"} for the why column")
    a = ap.parse_args()
    cmd_limits(a) if a.cmd == "limits" else cmd_report(a)


if __name__ == "__main__":
    main()
