#!/usr/bin/env python3
"""Where a PyTorch peer's training step spends its GPU time, in the kernel
classes `mtrun --profile` prints (GEMM, attention, optimizer, and the rest),
so that bench/gpu-train.sh can set the two side by side.

  peer-classes.py PEER MODEL:BATCH:SEQ:MODE

Runs the peer script PEER (the interface bench/gpu-train.sh's header gives)
on one spec under torch.profiler: a global optimizer-step hook starts it
after the first MT_PEER_SKIP steps (default 8: the peer's warm-up and
torch.compile's first calls) and stops it MT_PEER_STEPS later (default 4;
the peers train 12). Prints one JSON line: the peer's own line (its speed
there measured with the profiler on for part of the steps) with "classes"
added, each class's kernel time in ms per recorded step, and "top", the 8
kernels that took the most (name, class, ms per step, launches per step);
or "error". Kernel times are CUPTI's (device time of each kernel), not wall
time.
"""
import collections
import contextlib
import io
import json
import os
import runpy
import sys

import torch
from torch.autograd import DeviceType
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.profiler import ProfilerActivity, profile

# Kernel names by class. cuDNN's fused attention runs helper kernels beside
# its flash kernels (compute_dot_do_o, convert_dq_to_16bits, and
# fmha_reduce_head, the GQA head reduction); cuBLAS's GEMMs are nvjet, xmma
# or cutlass kernels.
ATTENTION = ("flash", "fmha", "sdpa", "attn", "dot_do_o", "convert_dq")
GEMM = ("nvjet", "gemm", "xmma", "cutlass", "cublas")
OPTIMIZER = ("multi_tensor_apply", "adam")


def kernel_class(name):
    lower = name.lower()
    for label, keys in (("attention", ATTENTION), ("GEMM", GEMM), ("optimizer", OPTIMIZER)):
        if any(key in lower for key in keys):
            return label
    return "other"


def main():
    if len(sys.argv) != 3 or sys.argv[2].count(":") != 3:
        sys.exit("usage: peer-classes.py PEER MODEL:BATCH:SEQ:MODE")
    peer, spec = sys.argv[1], sys.argv[2]
    skip = int(os.environ.get("MT_PEER_SKIP", "8"))
    steps = int(os.environ.get("MT_PEER_STEPS", "4"))
    if skip < 1 or steps < 1:
        sys.exit("peer-classes.py: MT_PEER_SKIP and MT_PEER_STEPS must be at least 1")
    # Starts after step `skip` and stops after step skip + steps, each once
    # the GPU is done, so that exactly `steps` whole steps are recorded.
    prof, done = profile(activities=[ProfilerActivity.CUDA]), [0]

    def after_step(*_):
        done[0] += 1
        if done[0] in (skip, skip + steps):
            torch.cuda.synchronize()
            if done[0] == skip:
                prof.start()
            else:
                prof.stop()

    hook = register_optimizer_step_post_hook(after_step)
    printed = io.StringIO()
    # As `python3 PEER SPEC` would run it: its folder first on the path, and
    # a sys.exit at its end no exit of ours.
    sys.argv = [peer, spec]
    sys.path.insert(0, os.path.dirname(os.path.abspath(peer)))
    with contextlib.redirect_stdout(printed):
        try:
            runpy.run_path(peer, run_name="__main__")
        except SystemExit as e:
            if e.code not in (None, 0):
                printed.write(json.dumps({"error": f"the peer exited with {e.code}"}) + "\n")
    hook.remove()
    lines = [json.loads(line) for line in printed.getvalue().splitlines() if line.startswith("{")]
    row = lines[-1] if lines else {"error": "the peer printed no JSON line"}
    if done[0] < skip + steps:
        row.setdefault("error", f"the peer took {done[0]} optimizer steps, fewer than "
                                f"{skip + steps}")
        print(json.dumps(row))
        return
    totals, launches = collections.Counter(), collections.Counter()
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            totals[event.name] += event.device_time
            launches[event.name] += 1
    classes = collections.Counter()
    for name, us in totals.items():
        classes[kernel_class(name)] += us
    row["classes"] = {label: round(us / steps / 1e3, 2) for label, us in classes.most_common()}
    row["top"] = [[name[:90], kernel_class(name), round(us / steps / 1e3, 2),
                   launches[name] // steps] for name, us in totals.most_common(8)]
    print(json.dumps(row))


if __name__ == "__main__":
    main()
