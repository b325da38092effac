#!/usr/bin/env python3
"""Loads checkpoints that `mtrun --export-hf` wrote back into transformers and
compares the loss transformers computes on the fixture's batch with the loss
mtrun computed from the same weights (the first step of `mtrun --load`).

    python3 test/hf/check_export.py FIXTURES EXPORTS NAME...
FIXTURES/NAME/expected.safetensors gives the batch; EXPORTS/NAME is the export,
EXPORTS/NAME.jsonl the metrics of mtrun's run from it.
"""
import json, sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main(fixtures, exports, names):
    print(f"{'model':12} {'transformers loss':>18} {'mtrun loss':>12} {'abs diff':>10} {'rel diff':>10}")
    worst = 0.0
    for name in names:
        batch = load_file(f"{fixtures}/{name}/expected.safetensors")
        model = AutoModelForCausalLM.from_pretrained(f"{exports}/{name}", torch_dtype=torch.float32)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"].long()).logits
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch["labels"].long().reshape(-1)).item()
        ours = json.loads(open(f"{exports}/{name}.jsonl").readline())["loss"]
        rel = abs(loss - ours) / abs(loss)
        worst = max(worst, rel)
        print(f"{name:12} {loss:18.8f} {ours:12.8f} {abs(loss - ours):10.2e} {rel:10.2e}")
    print(f"worst relative difference {worst:.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
