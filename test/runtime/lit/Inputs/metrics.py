#!/usr/bin/env python3
"""Checks on mtrun's --metrics files (JSON lines) for the lit tests.

  metrics.py same EXPECTED ACTUAL
      every step of ACTUAL is in EXPECTED with the same values, bit for bit
      (all fields but tokens_per_s, which is a timing), and ACTUAL is not empty.
  metrics.py valid METRICS LOG
      every line of METRICS is JSON (Python's parser, which refuses NaN and
      Infinity); a value that is null is named under "non_finite" and vice
      versa; and every step the log reports says what METRICS says.
Exits non-zero with a message naming the line on the first difference.
"""
import json
import math
import re
import sys


def load(path):
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line, parse_constant=reject))
            except ValueError as e:
                sys.exit(f"{path}:{number}: not JSON ({e}): {line.strip()}")
    return rows


def reject(name):
    raise ValueError(f"{name} is not JSON")


def same(expected_path, actual_path):
    expected = {r["step"]: r for r in load(expected_path)}
    actual = load(actual_path)
    if not actual:
        sys.exit(f"{actual_path}: no steps")
    for row in actual:
        want = dict(expected.get(row["step"], {}))
        got = dict(row)
        for r in (want, got):
            r.pop("tokens_per_s", None)
        if want != got:
            sys.exit(f"step {row['step']}: {actual_path} has {got}, {expected_path} {want}")
    print(f"{len(actual)} steps equal")


# "step 3/8  loss 5.1234  grad_norm nan  lr ...", for MoE models
# "step 3/8  loss 5.1234 (lm 5.1000, aux 0.0234)  grad_norm ...", and with a
# router z-loss "(lm 5.1000, aux 0.0200, z 0.0034)" (runtime/exec/Trainer.cpp)
LOG_LINE = re.compile(
    r"step (\d+)/\d+\s+loss (\S+)(?: \(lm ([^,]+), aux ([^,)]+)(?:, z ([^)]+))?\))?"
    r"\s+grad_norm (\S+)")


def log_text(value, non_finite, key, decimals):
    if value is None:
        return non_finite[key]
    return f"{value:.{decimals}f}"


def valid(metrics_path, log_path):
    rows = {r["step"]: r for r in load(metrics_path)}
    for r in rows.values():
        non_finite = r.get("non_finite", {})
        for key, value in r.items():
            if (value is None) != (key in non_finite):
                sys.exit(f"step {r['step']}: '{key}' is {value}, non_finite {non_finite}")
        for key, text in non_finite.items():
            if text not in ("nan", "inf", "-inf"):
                sys.exit(f"step {r['step']}: non_finite '{key}' is {text!r}")
    reported = 0
    with open(log_path) as f:
        for line in f:
            m = LOG_LINE.search(line)
            if not m:
                continue
            step, loss, lm, aux, z, grad_norm = int(m.group(1)), *m.group(2, 3, 4, 5, 6)
            r = rows[step]
            nf = r.get("non_finite", {})
            terms = lambda key: log_text(r[key], nf, key, 4) if key in r else None
            want = (log_text(r["loss"], nf, "loss", 4), terms("lm_loss"), terms("aux_loss"),
                    terms("z_loss"), log_text(r["grad_norm"], nf, "grad_norm", 3))
            if (loss, lm, aux, z, grad_norm) != want:
                sys.exit(f"step {step}: the log says loss {loss} (lm {lm}, aux {aux}, z {z}) "
                         f"grad_norm {grad_norm}, the metrics {want}")
            reported += 1
    if not reported:
        sys.exit(f"{log_path}: no step lines")
    print(f"{len(rows)} lines are JSON; {reported} log lines agree")


if __name__ == "__main__":
    commands = {"same": same, "valid": valid}
    if len(sys.argv) != 4 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2], sys.argv[3])
