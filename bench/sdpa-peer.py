#!/usr/bin/env python3
"""PyTorch's SDPA (flash and cuDNN backends) timed as mtc's attention
benchmarks time: causal GQA, bf16, median of 20 after 3 warm-ups with CUDA
events, causal FLOPs (4*b*h*s*s*d/2 forward, 2.5x that backward).

  sdpa-peer.py [--report FILE] BxSxHxKVxD...

Prints one line per backend and shape ("sdpa-flash 4x2048 32/8 d64 fwd ...");
--report also appends tab-separated rows (tools/gpu-check.sh's report form).
A backend that cannot run a shape prints why and the others go on.
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(20):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return 0.5 * (times[9] + times[10])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", help="append tab-separated rows to this file")
    parser.add_argument("shapes", nargs="+", help="BxSxHxKVxD, e.g. 4x2048x32x8x64")
    args = parser.parse_args()
    for spec in args.shapes:
        b, s, h, kv, d = (int(x) for x in spec.split("x"))
        rand = lambda heads: (torch.rand(b, heads, s, d, device="cuda") * 2 - 1).bfloat16()
        q, k, v = (rand(n).requires_grad_() for n in (h, kv, kv))
        dout = rand(h)
        flops = 4 * b * h * s * s * d / 2
        shape = f"{b}x{s} {h}/{kv} d{d}"
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                              ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel([backend]):
                    attn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                  enable_gqa=True)
                    fwd = median_ms(attn)
                    out = attn()
                    bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout,
                                                                retain_graph=True))
            except RuntimeError as e:
                print(f"sdpa-{name:15s} {shape:22s} cannot run: {str(e).splitlines()[0]}")
                continue
            print(f"sdpa-{name:15s} {shape:22s} fwd {fwd:8.3f} ms "
                  f"({flops / fwd / 1e9:4.0f} TFLOP/s)  bwd {bwd:8.3f} ms "
                  f"({2.5 * flops / bwd / 1e9:4.0f} TFLOP/s)", flush=True)
            if args.report:
                with open(args.report, "a") as f:
                    for kind, ms, work in (("fwd", fwd, flops), ("bwd", bwd, 2.5 * flops)):
                        f.write(f"torch_sdpa_{name}_{kind}\t{spec} (bench)\t-\t-\tran\t{ms:.4f}\t"
                                f"{work / ms / 1e9:.0f} TFLOP/s\n")
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
