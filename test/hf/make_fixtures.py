#!/usr/bin/env python3
"""Makes the Hugging Face fidelity fixtures of test/hf/ with transformers.

For each config in test/hf/configs/: a model with random weights (fixed seed),
a token file of 2 samples of SEQ tokens (+1 for the last label), and the
reference outputs of one training step on CPU in fp32: logits, loss (mean
token cross-entropy, labels = inputs shifted by one), every gradient, the
global gradient norm, and every weight after one AdamW step with Megatron's
rules (no weight decay on 1-D parameters, clipping at CLIP).

Run where torch and transformers are installed (the GPU machine):
    python3 test/hf/make_fixtures.py --out test/hf/fixtures
"""
import argparse, json, os, struct

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

SEQ, BATCH = 16, 2
LR, BETAS, EPS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.95), 1e-8, 0.1, 1.0


def write_token_file(path, tokens, vocab):
    # runtime/io/TokenFile.h, version 1: magic, version, width, vocab, count, reserved
    header = b"MTTOKENS" + struct.pack("<IIQQ", 1, 2, vocab, len(tokens)) + bytes(32)
    with open(path, "wb") as f:
        f.write(header + struct.pack(f"<{len(tokens)}H", *tokens))


def make(name, config_path, out):
    torch.manual_seed(0)
    with open(config_path) as f:
        fields = json.load(f)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32).eval()
    with torch.no_grad():  # weights of order 0.1 (norms 1 +- 0.1), not HF's 0.02
        for pname, p in model.named_parameters():
            base = 1.0 if "norm" in pname else 0.0
            p.copy_(base + 0.1 * torch.randn_like(p))
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, config.vocab_size, (BATCH * SEQ + 1,), generator=gen)
    write_token_file(os.path.join(out, "tokens.bin"), tokens.tolist(), config.vocab_size)
    inputs = torch.stack([tokens[i * SEQ:(i + 1) * SEQ] for i in range(BATCH)])
    labels = torch.stack([tokens[i * SEQ + 1:(i + 1) * SEQ + 1] for i in range(BATCH)])

    model.train()
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1))
    loss.backward()
    params = dict(model.named_parameters())
    expected = {"input_ids": inputs.to(torch.int32), "labels": labels.to(torch.int32),
                "logits": logits.detach(), "loss": loss.detach().reshape(1)}
    expected.update({"grad." + k: p.grad.detach().clone() for k, p in params.items()})
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    expected["grad_norm"] = norm.detach().reshape(1)
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, foreach=False).step()
    expected.update({"updated." + k: p.detach().clone() for k, p in params.items()})
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(out, "expected.safetensors"))
    print(f"{name}: loss {loss.item():.6f} grad_norm {norm.item():.6f} "
          f"params {sum(p.numel() for p in params.values())}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    for file in sorted(os.listdir(os.path.join(here, "configs"))):
        name = file[:-len(".json")]
        make(name, os.path.join(here, "configs", file), os.path.join(args.out, name))


if __name__ == "__main__":
    main()
