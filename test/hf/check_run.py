#!/usr/bin/env python3
"""Loads the checkpoint-N that a prepared `mtc train` run wrote (sharded
safetensors, config.json, the tokenizer files, trainer_state.json) with
transformers, as a user would, and compares the logits transformers computes
on a batch with those mtrun computed from the same checkpoint
(`mtrun PLAN --load CHECKPOINT --dump-logits LOGITS`).

    python3 test/hf/check_run.py CHECKPOINT LOGITS
"""
import json, os, sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(checkpoint, logits_path):
    step = int(os.path.basename(os.path.normpath(checkpoint)).split("-")[-1])
    state = json.load(open(os.path.join(checkpoint, "trainer_state.json")))
    if state["global_step"] != step:
        print(f"{checkpoint}: trainer_state.json says global_step {state['global_step']}")
        return 1
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    ours = load_file(logits_path)
    ids = ours["input_ids"].long()
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    diff = (logits - ours["logits"]).abs().max().item()
    scale = logits.abs().max().item()
    text = tokenizer.decode(ids[0][:16])
    print(f"{checkpoint}: {type(model).__name__}, global_step {step}, tokenizer "
          f"{type(tokenizer).__name__} ({len(tokenizer)} tokens; row 0 starts {text!r}); "
          f"logits max abs diff {diff:.2e} over max |logit| {scale:.4f}")
    return 0 if diff / scale < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
