#!/usr/bin/env python3
"""Loads checkpoints that `mtrun --export-hf` wrote back into transformers and
compares, on the same batch, the logits and loss transformers computes with
those mtrun computed from the same weights (the first step of `mtrun --load
EXPORT --dump-logits`).

    python3 test/hf/check_export.py FIXTURES EXPORTS NAME...
EXPORTS/NAME is the export, EXPORTS/NAME.jsonl the metrics of mtrun's run
from it, EXPORTS/NAME.logits.safetensors its dumped logits and input ids.
"""
import json, sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main(fixtures, exports, names):
    print(f"{'model':12} {'transformers loss':>18} {'mtrun loss':>12} {'loss rel diff':>14}"
          f" {'max |logit|':>12} {'logits max abs diff':>20}")
    worst = 0.0
    for name in names:
        ours = load_file(f"{exports}/{name}.logits.safetensors")
        ids = ours["input_ids"].long()
        model = AutoModelForCausalLM.from_pretrained(f"{exports}/{name}", dtype=torch.float32)
        batch = load_file(f"{fixtures}/{name}/expected.safetensors")
        with torch.no_grad():
            logits = model(input_ids=ids).logits
            full = model(input_ids=batch["input_ids"].long()).logits
            loss = torch.nn.functional.cross_entropy(
                full.reshape(-1, full.shape[-1]), batch["labels"].long().reshape(-1)).item()
        mine = json.loads(open(f"{exports}/{name}.jsonl").readline())["loss"]
        rel = abs(loss - mine) / abs(loss)
        diff = (logits - ours["logits"]).abs().max().item()
        scale = logits.abs().max().item()
        worst = max(worst, rel, diff / scale)
        print(f"{name:12} {loss:18.8f} {mine:12.8f} {rel:14.2e} {scale:12.4f} {diff:20.2e}")
    print(f"worst relative difference (loss, or logits over max |logit|) {worst:.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
