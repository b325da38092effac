#!/usr/bin/env python3
"""Checks that the per-stage parameter lines of `mtc compile --explain` add
up: the stage that holds the most fills the plan's weight, gradient and
AdamW arenas (which the memory table prints), the stages hold the plan's
parameters (plan.txt) once each, a tied parameter's copy on its second stage
besides, and with tp 1 these are as many as `mtc stats` counts.

usage: explain-sums.py EXPLAIN_OUTPUT PLAN_TXT STATS_OUTPUT
"""
import math
import re
import sys


def fail(message):
    print("explain-sums: " + message)
    sys.exit(1)


def as_explain_prints(size):
    """Bytes as --explain prints them (compiler/driver/Explain.cpp)."""
    units, unit = ["B", "KiB", "MiB", "GiB", "TiB"], 0
    while size >= 1024 and unit < 4:
        size, unit = size / 1024, unit + 1
    return f"{size:.1f} {units[unit]}" if unit else f"{size:.0f} B"


explain, plan_txt, stats = (open(path).read() for path in sys.argv[1:4])
stages = [(int(n.replace(",", "")), size, what.split(", "))
          for n, size, what in re.findall(
              r"^  stage \d+: ([\d,]+) parameters?, (\S+ \S+) \((.*)\)$", explain, re.M)]
if not stages:
    fail("no per-stage parameter lines in " + sys.argv[1])
arena = {kind: int(size) for kind, size in re.findall(
    r"^\s+(PARAMETERS|GRADIENTS|OPTIMIZER)\s+(\d+) bytes$", plan_txt, re.M)}
listing = plan_txt.split("\nparameters (")[1].split("\n\n")[0]
shapes = {name: math.prod(int(d) for d in shape.split("x")) if shape else 1
          for name, shape in re.findall(r"^  (\S+) \[([\dx]*)\]", listing, re.M)}
tp = int(re.search(r"^mesh \(pp, dp, cp, tp\) = \((?:\d+, ){3}(\d+)\)",
                   plan_txt, re.M).group(1))
model = int(re.search(r"^parameters:\s+([\d,]+)$", stats, re.M).group(1).replace(",", ""))

for row, kind in [("weights (fp32 master)", "PARAMETERS"),
                  ("gradients (fp32 main)", "GRADIENTS"), ("AdamW state (fp32)", "OPTIMIZER")]:
    printed = re.search(r"^  " + re.escape(row) + r"\s+(\S+ \S+)", explain, re.M).group(1)
    if printed != as_explain_prints(arena[kind]):
        fail(f"the table's {row} is {printed}; the plan's {kind} arena "
             f"{as_explain_prints(arena[kind])}")
most = max(stages)
if most[0] * 4 != arena["PARAMETERS"]:
    fail(f"the largest stage holds {most[0]} parameters, {most[0] * 4} bytes; the "
         f"PARAMETERS arena has {arena['PARAMETERS']}")
state = arena["PARAMETERS"] + arena["GRADIENTS"] + arena["OPTIMIZER"]
if most[1] != as_explain_prints(state):
    fail(f"the largest stage's line says {most[1]}; its arenas hold {as_explain_prints(state)}")
copies = sum(shapes[name[:-len(" (tied copy)")]] for _, _, what in stages
             for name in what if name.endswith(" (tied copy)"))
held, listed = sum(n for n, _, _ in stages), sum(shapes.values())
if held != listed + copies:
    fail(f"the stages hold {held} parameters; plan.txt lists {listed}"
         + (f" and their tied copies {copies}" if copies else ""))
if tp == 1 and listed != model:  # with tp > 1 plan.txt lists each rank's slice
    fail(f"plan.txt lists {listed} parameters; mtc stats counts {model}")
print(f"explain-sums: {len(stages)} stages add up (largest {most[0]} parameters, {most[1]})")
