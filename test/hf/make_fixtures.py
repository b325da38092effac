#!/usr/bin/env python3
"""Makes the Hugging Face fidelity fixtures of test/hf/ with transformers.

For each config in test/hf/configs/: a model with random weights (fixed seed),
a token file of 2 samples of SEQ tokens (+1 for the last label), and the
reference outputs of one training step on CPU in fp32: logits, loss (mean
token cross-entropy, labels = inputs shifted by one), every gradient, the
global gradient norm, and every weight after one AdamW step with Megatron's
rules (no weight decay on 1-D parameters, clipping at CLIP).

With --steps, it instead reads each fixture's committed model.safetensors and
writes expected-steps.safetensors: STEPS optimizer steps of MICRO accumulated
micro-batches each, with a partial loss mask, a warmup + cosine learning-rate
schedule and clipping that is active at every step (see make_steps).

Run where torch and transformers are installed (the GPU machine):
    python3 test/hf/make_fixtures.py --out test/hf/fixtures
    python3 test/hf/make_fixtures.py --steps --out test/hf/fixtures
"""
import argparse, json, math, os, struct

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


# The multi-step fixture: must match the compile flags of compile-plans.sh's
# "-steps" plans.
STEPS, MICRO = 4, 3
STEP_LR, STEP_MIN_LR, STEP_WARMUP, STEP_DECAY = 1e-2, 1e-3, 2, 4
STEP_CLIP, STEP_EPS = 0.05, 1e-2
MASK_KEEP = 0.7


def scheduled_lr(step):
    """Megatron-Core's OptimizerParamScheduler.get_lr for the 1-based step,
    written from its definition: linear warmup from 0 to the peak over the
    warmup steps, then cosine decay to min_lr at decay_steps."""
    if step <= STEP_WARMUP:
        return STEP_LR * step / STEP_WARMUP
    ratio = min(1.0, (step - STEP_WARMUP) / (STEP_DECAY - STEP_WARMUP))
    return STEP_MIN_LR + (STEP_LR - STEP_MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * ratio))


def make_steps(name, fixture):
    """STEPS optimizer steps on the fixture's weights: each step accumulates
    MICRO micro-batches of BATCH x SEQ tokens whose loss is the masked token
    mean scaled by 1 / MICRO (Megatron's per-micro-batch mean), clips the
    global norm at STEP_CLIP (chosen below every step's norm, so clipping is
    active) and takes an AdamW step at the scheduled learning rate.
    STEP_EPS is large against sqrt(v), so each update is a continuous
    function of the gradient (no sign flips on fp32 noise) and a missing or
    wrong clip coefficient or learning rate shows in the weights."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(fixture, torch_dtype=torch.float32)
    model.train()
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(2)
    shape = (STEPS, MICRO, BATCH, SEQ)
    inputs = torch.randint(0, vocab, shape, generator=gen)
    labels = torch.randint(0, vocab, shape, generator=gen)
    mask = (torch.rand(shape, generator=gen) < MASK_KEEP).float()
    mask[0, 0, 0, :] = 0.0  # a row with no loss at all
    params = dict(model.named_parameters())
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=STEP_LR, betas=BETAS, eps=STEP_EPS, foreach=False)
    losses, norms, lrs = [], [], []
    for step in range(STEPS):
        optimizer.zero_grad()
        loss_sum = 0.0
        for micro in range(MICRO):
            logits = model(input_ids=inputs[step, micro]).logits.reshape(-1, vocab)
            per_token = torch.nn.functional.cross_entropy(
                logits, labels[step, micro].reshape(-1), reduction="none")
            m = mask[step, micro].reshape(-1)
            loss = (per_token * m).sum() / m.sum()
            (loss / MICRO).backward()
            loss_sum += loss.item() / MICRO
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), STEP_CLIP)
        assert norm.item() > 2 * STEP_CLIP, f"{name}: step {step + 1} norm {norm} does not clip"
        lr = scheduled_lr(step + 1)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.step()
        losses.append(loss_sum), norms.append(norm.item()), lrs.append(lr)
    expected = {"input_ids": inputs.to(torch.int32), "labels": labels.to(torch.int32),
                "loss_mask": mask, "loss": torch.tensor(losses, dtype=torch.float64),
                "grad_norm": torch.tensor(norms, dtype=torch.float64),
                "lr": torch.tensor(lrs, dtype=torch.float64)}
    expected.update({"updated." + k: p.detach().clone() for k, p in params.items()})
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(fixture, "expected-steps.safetensors"))
    print(f"{name} steps: losses {['%.6f' % l for l in losses]} norms {['%.4f' % n for n in norms]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", action="store_true",
                        help="only the multi-step fixtures, from the committed weights in --out")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    for file in sorted(os.listdir(os.path.join(here, "configs"))):
        name = file[:-len(".json")]
        if args.steps:
            make_steps(name, os.path.join(args.out, name))
        else:
            make(name, os.path.join(here, "configs", file), os.path.join(args.out, name))


if __name__ == "__main__":
    main()
