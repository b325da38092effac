"""Reads `mtc compile --explain`'s memory table for bench/gpu-memory.sh.

  explain-memory.py EXPLAIN host             prints the CUDA host total (GiB)
  explain-memory.py --table ROWS EXPLAIN_DIR WORK_DIR
      prints one line per run of ROWS (JSON lines: bench/lib-gpu.sh's mtc_row
      and the PyTorch peer's): tokens/s, TFLOP/s and MFU with docs/FLOPS.md's
      model FLOPs, the cost against the first run of the same shape, and GPU
      memory measured (mtrun's log in WORK_DIR) beside --explain's prediction.
"""
import json, os, re, sys

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
SIZE = re.compile(r"([0-9.]+) (B|KiB|MiB|GiB|TiB)\b")
# docs/FLOPS.md's reference shapes (and Llama-3.1-8B's).
SHAPES = {"llama3.2-1b": dict(V=128256, h=2048, L=16, nq=32, nkv=8, d=64, f=8192),
          "llama3.1-8b": dict(V=128256, h=4096, L=32, nq=32, nkv=8, d=128, f=14336)}
PEAK_TFLOPS = 989.4  # H100/H200 SXM dense bf16


def gib(text):
    value, unit = text
    return float(value) * UNITS[unit] / 2**30


def predicted(path):
    """(CUDA arenas, CUDA host, CUDA context estimate) in GiB from --explain."""
    text = open(path).read()
    total = re.search(r"^\s*total \(the peak\)(.*)$", text, re.M)
    if not total:
        sys.exit(f"{path}: no 'total (the peak)' line in the memory table")
    cpu, cuda, host = (gib(s) for s in SIZE.findall(total.group(1))[:3])
    context = re.search(r"CUDA context and library workspaces, about ([0-9.]+ \w+)", text)
    return cuda, host, gib(SIZE.match(context.group(1)).groups()) if context else 0.0


def flops_per_token(model, seq):
    c = SHAPES[model]
    q, kv = c["nq"] * c["d"], c["nkv"] * c["d"]
    layer = 2 * c["h"] * (q + 2 * kv) + 2 * q * c["h"] + 6 * c["h"] * c["f"] + 2 * seq * q
    return 3 * (c["L"] * layer + 2 * c["h"] * c["V"])


def table(rows_path, explain_dir, work_dir):
    rows = [json.loads(l) for l in open(rows_path) if l.strip()]
    print(f"{'run':14} {'tokens/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'vs first':>8} "
          f"{'arenas':>8} {'explain':>8} {'in use':>8} {'explain+ctx':>11} {'ratio':>6} {'host':>8}")
    first = {}
    for r in rows:
        name = r.get("peer", "?")
        if "tokens_per_s" not in r:
            print(f"{name:14} error: {r.get('error', '')[:90]}")
            continue
        shape = os.path.join(explain_dir, name + ".shape")
        if os.path.exists(shape):
            model, batch, seq = open(shape).read().split()
        else:  # the peer's row
            model, seq = r["model"], r["seq"]
        tf = r["tokens_per_s"] * flops_per_token(model, int(seq)) / 1e12
        base = first.setdefault(model, r["tokens_per_s"])
        cells = [f"{name[:14]:14} {r['tokens_per_s']:>9,.0f} {tf:>8.1f} {tf / PEAK_TFLOPS:>6.1%} "
                 f"{r['tokens_per_s'] / base:>8.2f}"]
        if os.path.exists(shape):
            arenas, host, context = predicted(os.path.join(explain_dir, name + ".txt"))
            log = open(os.path.join(work_dir, name + ".log")).read()
            got = re.search(r"plan arenas ([0-9.]+) GiB", log)
            used = r.get("peak_mem_gib")
            cells.append(f"{float(got.group(1)) if got else float('nan'):>8.2f} {arenas:>8.2f} "
                         f"{used if used is not None else float('nan'):>8.2f} "
                         f"{arenas + context:>11.2f} "
                         f"{(used or float('nan')) / (arenas + context):>6.3f} {host:>8.1f}")
        else:
            cells.append(f"{'':>8} {'':>8} {r.get('peak_mem_gib', float('nan')):>8.2f} "
                         f"{'(peak allocated)':>18}")
        print(" ".join(cells))
    print("GiB. arenas: mtrun's plan arenas; in use: cudaMemGetInfo at the end (CUDA context and "
          "workspaces included; the arenas are allocated once, so it is the peak); explain+ctx: "
          "--explain's CUDA total plus its context estimate; host: --explain's pinned host total. "
          "vs first: tokens/s against the first run of the same model.")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(*sys.argv[2:5])
    else:
        cuda, host, _ = predicted(sys.argv[1])
        print(f"{host if sys.argv[2] == 'host' else cuda:.1f}")
