#!/usr/bin/env python3
"""Checks `mtc compile --explain --gpu-memory`: for a size between two
options' memory, the option it names is the one with the fewest extra FLOPs
among those its own table says fit, and every fits/does not fit agrees with
the size.

usage: recompute-advice.py MTC MODEL [compile flags...]
"""
import re
import subprocess
import sys

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
ROW = re.compile(r"^  (\S.*?)\s+([0-9.]+) (B|KiB|MiB|GiB|TiB)\s+([+-][0-9.]+)% FLOPs  (fits|does not fit)$")


def advice(mtc, model, flags, size):
    out = subprocess.run([mtc, "compile", model, *flags, "--explain", "--gpu-memory", str(size)],
                         check=True, capture_output=True, text=True).stdout
    rows = [(m[1], float(m[2]) * UNITS[m[3]], float(m[4]), m[5] == "fits")
            for m in map(ROW.match, out.splitlines()) if m]
    chosen = re.search(r"^  cheapest that fits: (.*) \([+-][0-9.]+% of the model", out, re.M)
    return rows, chosen[1] if chosen else None


mtc, model, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
rows, _ = advice(mtc, model, flags, 2**50)
sizes = sorted({r[1] for r in rows})
if len(rows) < 3 or len(sizes) < 2:
    sys.exit(f"recompute-advice: expected several options of different sizes, got {rows}")
# A size halfway between the two middle ones: some options fit, some not.
middle = len(sizes) // 2
size = int((sizes[middle - 1] + sizes[middle]) / 2)
rows, chosen = advice(mtc, model, flags, size)
for what, bytes_, _, fits in rows:
    if fits != (bytes_ <= size):
        sys.exit(f"recompute-advice: '{what}' ({bytes_:.0f} B) marked fits={fits} at {size} B")
fitting = [r for r in rows if r[3]]
cheapest = min(fitting, key=lambda r: r[2])
if chosen is None or [r for r in fitting if r[0] == chosen][0][2] != cheapest[2]:
    sys.exit(f"recompute-advice: chose {chosen}, the cheapest fitting is {cheapest[0]}")
print(f"ok: {len(fitting)} of {len(rows)} fit, chose {chosen}")
