#!/usr/bin/env python3
"""Makes the Hugging Face fidelity fixtures of test/hf/ with transformers.

For each config in test/hf/configs/: a model with random weights (fixed seed),
a token file of 2 samples of SEQ tokens (+1 for the last label), and the
reference outputs of one training step on CPU in fp32: logits, loss (mean
token cross-entropy, labels = inputs shifted by one, plus for mixture-of-
experts models the auxiliary loss as mtc defines it: see Routers), every
gradient, the global gradient norm, and every weight after one AdamW step
with Megatron's rules (no weight decay on 1-D parameters, clipping at CLIP).
Tensors are named as mtc names its parameters: routed experts as one tensor
[experts, ...] whose name has '*' for the expert (transformers 5 fuses them
differently; see mtc_tensors).

With --steps, it instead reads each fixture's committed model.safetensors and
writes expected-steps.safetensors: STEPS optimizer steps of MICRO accumulated
micro-batches each, with a partial loss mask, a warmup + cosine learning-rate
schedule and clipping that is active at every step (see make_steps).

With --padded, it writes expected-padded.safetensors for the fixtures of
PADDED (a vocabulary that tensor parallelism pads): the reference of
run-padded.sh's train-export-reload round trip (see make_padded). With
--check-padded-export RUN, transformers loads the export run-padded.sh wrote
in RUN and its loss must equal the one mtrun computed from that export.

Run where torch and transformers are installed (the GPU machine):
    python3 test/hf/make_fixtures.py --out test/hf/fixtures
    python3 test/hf/make_fixtures.py --steps --out test/hf/fixtures
The MoE and padded-vocabulary fixtures were made in one call on the GPU
machine (torch 2.11, transformers 5.17, CPU fp32) with
    N="tiny-qwen3-moe tiny-qwen3-moe-noaux tiny-mixtral tiny-qwen2-vocab95"
    python3 test/hf/make_fixtures.py --out F --only $N
    python3 test/hf/make_fixtures.py --steps --out F --only $N
    python3 test/hf/make_fixtures.py --padded --out F
    python3 test/hf/make_fixtures.py --check-padded-export RUN
(the generation_config.json save_pretrained wrote for tiny-qwen2-vocab95
was not kept), and tiny-qwen2-moe in the same way with
    python3 test/hf/make_fixtures.py --out F --only tiny-qwen2-moe
    python3 test/hf/make_fixtures.py --steps --out F --only tiny-qwen2-moe
(its shared expert and shared_expert_gate are ordinary parameters; the call
printed "tiny-qwen2-moe: loss 4.994902 ... grad_norm 2.383032 params 48352"
and "transformers' pooled aux_loss x coef 0.204407, per-layer sum 0.422117
over 2 MoE layers"), where RUN was made by `test/hf/run-padded.sh build/bin RUN
DIR` beforehand, DIR holding only `tools/random-tokens.py DIR/tokens.bin 95
33` (the fixture did not exist yet: mtrun's own initialisation). It printed
"transformers loss 3.85497093, mtrun loss 3.85497069, relative difference
6.18e-08", and for tiny-qwen3-moe "transformers' pooled aux_loss x coef
0.209984, per-layer sum 0.456958 over 2 MoE layers" (see Routers).
Every expected-steps.safetensors was remade on the GPU machine (torch 2.11,
transformers 5.17, CPU fp32) with
    python3 test/hf/make_fixtures.py --steps --out test/hf/fixtures
when scheduled_lr took Megatron-Core's offset (update k at num_steps k - 1).
"""
import argparse, json, math, os, re, struct, sys, traceback

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

SEQ, BATCH = 16, 2
LR, BETAS, EPS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.95), 1e-8, 0.1, 1.0


def write_token_file(path, tokens, vocab):
    # runtime/io/TokenFile.h, version 1: magic, version, width, vocab, count, reserved
    header = b"MTTOKENS" + struct.pack("<IIQQ", 1, 2, vocab, len(tokens)) + bytes(32)
    with open(path, "wb") as f:
        f.write(header + struct.pack(f"<{len(tokens)}H", *tokens))


def read_token_file(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"MTTOKENS", path
    _, width, _, count = struct.unpack("<IIQQ", data[8:32])
    return list(struct.unpack(f"<{count}{'H' if width == 2 else 'I'}", data[64:64 + width * count]))


def optimizer_groups(params):
    """Megatron's rule: no weight decay on 1-D parameters (norms, biases)."""
    return [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
            {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]


# ---------------------------------------------------------------- experts

# model_type -> (mtc's and the Hub checkpoints' name of the MoE block, the
# names of the experts' gate, up and down projections).
MOE_BLOCKS = {"qwen3_moe": ("mlp", ("gate_proj", "up_proj", "down_proj")),
              "qwen2_moe": ("mlp", ("gate_proj", "up_proj", "down_proj")),
              "mixtral": ("block_sparse_moe", ("w1", "w3", "w2"))}


def num_experts(config):
    return getattr(config, "num_local_experts", None) or config.num_experts


def expert_ffn(config):
    return config.moe_intermediate_size if config.model_type != "mixtral" else config.intermediate_size


def mtc_tensors(model, tensors):
    """{name in model.named_parameters(): tensor (weight or gradient)} in
    mtc's names and shapes: the routed experts of a layer as one tensor
    [E, ...] named with '*' for the expert, under transformers 4's (and the
    Hub checkpoints') names. transformers 5 holds them fused as
    mlp.experts.gate_up_proj [E, 2F, H] (gate then up: the Concatenate(dim=1)
    of its conversion_mapping.py) and mlp.experts.down_proj [E, H, F], and
    renames Mixtral's block_sparse_moe to mlp; transformers 4 as one module
    per expert. save_model checks the inverse against transformers' loader."""
    config = model.config
    if config.model_type not in MOE_BLOCKS:
        return {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    block, (gate, up, down) = MOE_BLOCKS[config.model_type]
    H, Fe = config.hidden_size, expert_ffn(config)
    out, per_expert = {}, {}
    for name, t in tensors.items():
        t = t.detach()
        m = re.fullmatch(r"(model\.layers\.\d+\.)(?:mlp|block_sparse_moe)\.(gate\.weight|experts\..+)", name)
        if not m:
            out[name] = t
            continue
        prefix, rest = m.group(1) + block + ".", m.group(2)
        if rest == "gate.weight":
            out[prefix + "gate.weight"] = t
        elif rest == "experts.gate_up_proj":
            if tuple(t.shape[1:]) == (H, 2 * Fe):
                t = t.transpose(1, 2)
            assert tuple(t.shape[1:]) == (2 * Fe, H), f"{name}: unexpected shape {tuple(t.shape)}"
            out[prefix + f"experts.*.{gate}.weight"] = t[:, :Fe]
            out[prefix + f"experts.*.{up}.weight"] = t[:, Fe:]
        elif rest == "experts.down_proj":
            if tuple(t.shape[1:]) == (Fe, H):
                t = t.transpose(1, 2)
            assert tuple(t.shape[1:]) == (H, Fe), f"{name}: unexpected shape {tuple(t.shape)}"
            out[prefix + f"experts.*.{down}.weight"] = t
        else:
            e = re.fullmatch(r"experts\.(\d+)\.(\w+)\.weight", rest)
            assert e, f"{name}: unknown expert tensor"
            per_expert.setdefault(prefix + f"experts.*.{e.group(2)}.weight", {})[int(e.group(1))] = t
    for name, experts in per_expert.items():
        out[name] = torch.stack([experts[i] for i in range(len(experts))])
    return {k: v.clone().contiguous() for k, v in out.items()}


def save_model(model, out):
    """config.json and model.safetensors; MoE experts one tensor per expert
    (the Hub checkpoints' layout, which mtc reads), checked by loading the
    file back with transformers: every parameter must come back equal."""
    if model.config.model_type not in MOE_BLOCKS:
        model.save_pretrained(out, safe_serialization=True)
        return
    model.config.save_pretrained(out)
    tensors = {}
    for name, t in mtc_tensors(model, dict(model.named_parameters())).items():
        for e in range(t.shape[0]) if "*" in name else [None]:
            tensors[name if e is None else name.replace("*", str(e))] = t if e is None else t[e].contiguous()
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    mine = dict(model.named_parameters())
    print("  experts in transformers:", {k: tuple(p.shape) for k, p in mine.items()
                                          if ".experts." in k and ".layers.0." in k})
    again = dict(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).named_parameters())
    assert mine.keys() == again.keys(), f"{sorted(mine.keys() ^ again.keys())}"
    for k, p in mine.items():
        assert torch.equal(p, again[k]), f"{k} does not survive transformers' loader"


class Routers:
    """The routers' logits of every forward, by hooks on the router modules
    (mlp.gate / block_sparse_moe.gate, weight [E, H]) in layer order, and the
    auxiliary loss as mtc adds it to the language-model loss: per MoE layer,
    router_aux_loss_coef x transformers' load_balancing_loss_func on that
    layer's logits alone, summed over the layers (mt.moe_router,
    dialects/mt/MtOps.td; Megatron-Core's per-layer switch_load_balancing_loss_func
    has a further 1/top_k). transformers itself, with
    output_router_logits=True, applies load_balancing_loss_func once to all
    layers' logits concatenated, which pools the layers' token counts and
    probabilities: the same number only for one MoE layer."""

    def __init__(self, model):
        config = model.config
        self.model, self.logits = model, []
        self.experts = num_experts(config) if config.model_type in MOE_BLOCKS else 0
        shape = (self.experts, config.hidden_size)
        self.modules = [m for n, m in model.named_modules()
                        if n.endswith(".gate") and isinstance(getattr(m, "weight", None), torch.Tensor)
                        and tuple(m.weight.shape) == shape]
        for m in self.modules:
            m.register_forward_hook(self._hook, with_kwargs=True)
        self.min_margin = math.inf

    def _hook(self, module, args, kwargs, output):
        x = args[0] if args else next(iter(kwargs.values()))
        self.logits.append(F.linear(x.reshape(-1, x.shape[-1]), module.weight))

    def aux(self):
        """[MoE layers]: each layer's coef x load_balancing_loss_func of the
        last forward (the logits are then dropped); also tracks the smallest
        gap between the k-th and (k+1)-th probability of any token, below
        which fp32 differences could change the routing."""
        if not self.modules:
            return torch.zeros(0)
        lbl = sys.modules[type(self.model).__module__].load_balancing_loss_func
        config, k = self.model.config, self.model.config.num_experts_per_tok
        losses = []
        for logits in self.logits:
            losses.append(config.router_aux_loss_coef * lbl((logits,), self.experts, k))
            if k < self.experts:
                top = torch.topk(torch.softmax(logits.detach(), dim=-1), k + 1, dim=-1).values
                self.min_margin = min(self.min_margin, (top[:, k - 1] - top[:, k]).min().item())
        self.logits = []
        return torch.stack(losses)


def describe_router_outputs(model, inputs, routers):
    """Prints how transformers' own outputs relate to Routers (documentation
    of the relation, not a fixture): what its router_logits hold and its
    pooled aux_loss with output_router_logits=True."""
    try:
        with torch.no_grad():
            out = model(input_ids=inputs, output_router_logits=True)
            mine = list(routers.logits)
            per_layer = routers.aux()
        theirs = [t.reshape(-1, t.shape[-1]) for t in out.router_logits]
        same = lambda f: len(theirs) == len(mine) and all(
            torch.allclose(f(a), b, rtol=1e-5, atol=1e-6) for a, b in zip(mine, theirs))
        kind = ("the logits" if same(lambda a: a) else
                "the probabilities" if same(lambda a: torch.softmax(a, -1)) else "neither")
        print(f"  transformers' pooled aux_loss x coef "
              f"{model.config.router_aux_loss_coef * float(out.aux_loss):.6f}, per-layer sum "
              f"{per_layer.sum().item():.6f} over {len(per_layer)} MoE layers; its "
              f"router_logits ({len(theirs)}) hold {kind} of the hooked routers")
    except Exception as e:  # documentation only
        print(f"  (transformers' router outputs not described: {e!r})")


# ---------------------------------------------------------------- one step

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
    save_model(model, out)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, config.vocab_size, (BATCH * SEQ + 1,), generator=gen)
    write_token_file(os.path.join(out, "tokens.bin"), tokens.tolist(), config.vocab_size)
    inputs = torch.stack([tokens[i * SEQ:(i + 1) * SEQ] for i in range(BATCH)])
    labels = torch.stack([tokens[i * SEQ + 1:(i + 1) * SEQ + 1] for i in range(BATCH)])

    model.train()
    routers = Routers(model)
    if routers.modules:
        describe_router_outputs(model, inputs, routers)
    logits = model(input_ids=inputs).logits
    lm_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    aux = routers.aux()
    loss = lm_loss + aux.sum()
    loss.backward()
    params = dict(model.named_parameters())
    expected = {"input_ids": inputs.to(torch.int32), "labels": labels.to(torch.int32),
                "logits": logits.detach(), "loss": loss.detach().reshape(1)}
    if routers.modules:  # the language-model loss and each MoE layer's aux loss
        expected.update({"lm_loss": lm_loss.detach().reshape(1), "aux_loss": aux.detach()})
    grads = mtc_tensors(model, {k: p.grad for k, p in params.items()})
    expected.update({"grad." + k: g for k, g in grads.items()})
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    expected["grad_norm"] = norm.detach().reshape(1)
    torch.optim.AdamW(optimizer_groups(params), lr=LR, betas=BETAS, eps=EPS, foreach=False).step()
    expected.update({"updated." + k: w for k, w in mtc_tensors(model, params).items()})
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(out, "expected.safetensors"))
    print(f"{name}: loss {loss.item():.6f} (aux {aux.tolist()}) grad_norm {norm.item():.6f} "
          f"params {sum(p.numel() for p in params.values())} router margin {routers.min_margin:.2e}")


# ---------------------------------------------------------------- several steps

# The multi-step fixture: must match the compile flags of compile-plans.sh's
# "-steps" plans.
STEPS, MICRO = 4, 3
STEP_LR, STEP_MIN_LR, STEP_WARMUP, STEP_DECAY = 1e-2, 1e-3, 2, 4
STEP_CLIP, STEP_EPS = 0.05, 1e-2
MASK_KEEP = 0.7


def scheduled_lr(step):
    """The rate of the 1-based update `step` under Megatron-Core's
    OptimizerParamScheduler, written from its definition: get_lr at
    num_steps = step - 1 (the constructor calls step(0), each update step(1)
    after it), i.e. linear warmup from 0 to the peak while num_steps <=
    warmup steps, then cosine decay to min_lr at decay_steps. Update 1
    therefore has rate 0."""
    n = step - 1
    if n <= STEP_WARMUP:
        return STEP_LR * n / STEP_WARMUP
    ratio = min(1.0, (n - STEP_WARMUP) / (STEP_DECAY - STEP_WARMUP))
    return STEP_MIN_LR + (STEP_LR - STEP_MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * ratio))


def make_steps(name, fixture):
    """STEPS optimizer steps on the fixture's weights: each step accumulates
    MICRO micro-batches of BATCH x SEQ tokens whose loss is the masked token
    mean (plus the MoE aux loss of all the micro-batch's tokens, which the
    mask does not touch, as in Megatron-Core) scaled by 1 / MICRO (Megatron's
    per-micro-batch mean), clips the global norm at STEP_CLIP (chosen below
    every step's norm, so clipping is active) and takes an AdamW step at the
    scheduled learning rate. STEP_EPS is large against sqrt(v), so each
    update is a continuous function of the gradient (no sign flips on fp32
    noise) and a missing or wrong clip coefficient or learning rate shows in
    the weights."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(fixture, dtype=torch.float32)
    model.train()
    routers = Routers(model)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(2)
    shape = (STEPS, MICRO, BATCH, SEQ)
    inputs = torch.randint(0, vocab, shape, generator=gen)
    labels = torch.randint(0, vocab, shape, generator=gen)
    mask = (torch.rand(shape, generator=gen) < MASK_KEEP).float()
    mask[0, 0, 0, :] = 0.0  # a row with no loss at all
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(optimizer_groups(params), lr=STEP_LR, betas=BETAS, eps=STEP_EPS,
                                  foreach=False)
    losses, norms, lrs = [], [], []
    for step in range(STEPS):
        optimizer.zero_grad()
        loss_sum = 0.0
        for micro in range(MICRO):
            logits = model(input_ids=inputs[step, micro]).logits.reshape(-1, vocab)
            per_token = F.cross_entropy(logits, labels[step, micro].reshape(-1), reduction="none")
            m = mask[step, micro].reshape(-1)
            loss = (per_token * m).sum() / m.sum() + routers.aux().sum()
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
    expected.update({"updated." + k: w for k, w in mtc_tensors(model, params).items()})
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(fixture, "expected-steps.safetensors"))
    print(f"{name} steps: losses {['%.6f' % l for l in losses]} norms {['%.4f' % n for n in norms]}"
          f" router margin {routers.min_margin:.2e}")


# ---------------------------------------------------------------- padded vocabulary

# run-padded.sh's round trip; must match its compile flags. The fixtures
# whose vocabulary tp2 pads (95 rows -> 96).
PADDED = ["tiny-qwen2-vocab95"]
PAD_STEPS, PAD_LR, PAD_EPS = 2, 1e-2, 1e-2


def train_batch(model, inputs, labels, steps):
    """`steps` AdamW steps (a fresh optimizer) on one batch at PAD_LR; the
    losses before each update."""
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(optimizer_groups(params), lr=PAD_LR, betas=BETAS, eps=PAD_EPS,
                                  foreach=False)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        losses.append(loss.item())
    return losses


def make_padded(name, fixture):
    """The unpadded reference of run-padded.sh: PAD_STEPS steps on the
    fixture's batch (tokens.bin holds exactly one global batch, so every
    step sees it whole), the weights then ("exported.*", what --export-hf
    must write), and PAD_STEPS more steps from them with a fresh optimizer
    (mtrun --load starts one). "loss" holds the 2 x PAD_STEPS losses."""
    model = AutoModelForCausalLM.from_pretrained(fixture, dtype=torch.float32)
    model.train()
    batch = load_file(os.path.join(fixture, "expected.safetensors"))
    inputs, labels = batch["input_ids"].long(), batch["labels"].long()
    losses = train_batch(model, inputs, labels, PAD_STEPS)
    exported = mtc_tensors(model, dict(model.named_parameters()))
    losses += train_batch(model, inputs, labels, PAD_STEPS)
    expected = {"loss": torch.tensor(losses, dtype=torch.float64)}
    expected.update({"exported." + k: w for k, w in exported.items()})
    save_file(expected, os.path.join(fixture, "expected-padded.safetensors"))
    print(f"{name} padded round trip: losses {['%.6f' % l for l in losses]}")


def check_padded_export(run):
    """transformers loads mtrun's padded-vocabulary export RUN/export and
    computes, on RUN's token file (one global batch), the loss mtrun
    computed from that export (RUN/reloaded.jsonl, step 1)."""
    model = AutoModelForCausalLM.from_pretrained(os.path.join(run, "export"), dtype=torch.float32)
    vocab = model.config.vocab_size
    rows = {n: tuple(p.shape) for n, p in model.named_parameters() if p.shape[0] == vocab}
    tokens = torch.tensor(read_token_file(os.path.join(run, "tokens.bin")))
    inputs = tokens[:BATCH * SEQ].reshape(BATCH, SEQ)
    labels = tokens[1:BATCH * SEQ + 1].reshape(BATCH, SEQ)
    with torch.no_grad():
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1)).item()
    with open(os.path.join(run, "reloaded.jsonl")) as f:
        mine = json.loads(f.readline())["loss"]
    rel = abs(loss - mine) / abs(loss)
    print(f"padded export: vocab_size {vocab}, vocabulary tensors {rows}; transformers loss "
          f"{loss:.8f}, mtrun loss {mine:.8f}, relative difference {rel:.2e}")
    return rel < 1e-6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="the fixtures directory (all but --check-padded-export)")
    parser.add_argument("--steps", action="store_true",
                        help="only the multi-step fixtures, from the committed weights in --out")
    parser.add_argument("--padded", action="store_true",
                        help="only the padded-vocabulary round trips, from the weights in --out")
    parser.add_argument("--check-padded-export", metavar="RUN",
                        help="only check that transformers reloads run-padded.sh's export in RUN")
    parser.add_argument("--only", nargs="*", help="these fixtures only (default: every config)")
    args = parser.parse_args()
    if args.check_padded_export:
        return 0 if check_padded_export(args.check_padded_export) else 1
    if not args.out:
        parser.error("--out is required")
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(f[:-len(".json")] for f in os.listdir(os.path.join(here, "configs")))
    if args.padded:
        names = PADDED
    failed = []
    for name in args.only or names:
        try:  # one fixture's failure does not cost the others (one device call)
            if args.padded:
                make_padded(name, os.path.join(args.out, name))
            elif args.steps:
                make_steps(name, os.path.join(args.out, name))
            else:
                make(name, os.path.join(here, "configs", name + ".json"), os.path.join(args.out, name))
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
