"""Lesson 04's experiments: each function measures one thing and returns numbers (no plotting, no
printing); `demo.py` runs them in order, draws each one's figure and prints its verdict.

    sample_continuations, count_model_losses   1. the trained model(s): samples, and count-based baselines
    lens_statistics, prompt_lens                2. the logit lens
    attention_statistics                        3. attention maps: where each block looks
    knockout_losses                             4. one sub-layer's output removed at a time
    ablation_runs                               5. small GPTs trained with one part changed
    residual_norm_curves                        6. the size of the residual stream after each block
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, replace

import numpy as np
import torch

from llmlab.kv_cache import generate
from llmlab.transformer_block import GPT, attention_maps, logit_lens, residual_norms
from llmlab.transformer_block.pretrained import PRESETS, LabModel
from llmlab.utils import cached_training, get_batch, train

# A story opening in the corpus's style: the name comes back, so a model that has learned to copy it
# through attention predicts it where the lens of the early layers cannot.
PROMPT = ("Once upon a time, a girl named Fatima lived on a houseboat. Everyone knew Fatima because "
          "she was so helpful. Fatima often")
SAMPLE_PROMPTS = ("Once upon a time, a boy named", "One day, Mia and her brother",
                  '"I am scared of the dark," said')
# The small models of the ablation grid: name -> config overrides of the preset at d_model 64 ("lr" is a
# training override). The learning rate was tuned for the small pre-norm baseline (with GPT-2's constant
# 0.02 init, before the lab GPT's fan-in init). Post-norm gets a second run at a sixth of it, because
# Xiong et al. 2020 find that post-norm needs a small learning rate and a long warmup and pre-norm does
# not; the run prints whether that holds at this init (the README quotes it).
ABLATION_LR = 6e-3
VARIANTS = {
    "baseline": {},
    "no residual": {"residual": False},
    "no norm": {"norm": "none"},
    "post-norm": {"prenorm": False},
    "post-norm, lr/6": {"prenorm": False, "lr": ABLATION_LR / 6},
    "1 block": {"n_layer": 1},
    "2 blocks": {"n_layer": 2},
    "8 blocks": {"n_layer": 8},
}
QUICK_VARIANTS = ("baseline", "no residual", "no norm", "post-norm")


def eval_batches(lab: LabModel, cfg: dict, seed: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed held-out batches (the same for every model), full-context windows of the val text."""
    generator = torch.Generator().manual_seed(seed + 1234)
    block = min(lab.config.block_size, len(lab.val_data) - 1)
    return [get_batch(lab.val_data, cfg["eval_batch_size"], block, generator=generator, device=device)
            for _ in range(cfg["eval_batches"])]


def mean_loss(model: GPT, batches) -> float:
    with torch.no_grad():
        model.eval()
        return float(np.mean([model(x, y)[1].item() for x, y in batches]))


def count_model_losses(train_data: torch.Tensor, val_data: torch.Tensor, vocab_size: int,
                       alpha: float = 0.1) -> dict:
    """Cross-entropy on the val tokens of a unigram and a bigram model counted on the train tokens
    (add-alpha smoothing): the best a model can do that sees no context / only the current token."""
    V = vocab_size
    unigram = torch.bincount(train_data, minlength=V).double() + alpha  # (V,)
    unigram_loss = -(unigram / unigram.sum()).log()[val_data].mean().item()
    pairs = torch.bincount(train_data[:-1] * V + train_data[1:], minlength=V * V).double().view(V, V) + alpha
    log_p = (pairs / pairs.sum(dim=1, keepdim=True)).log()  # (V, V): log p(next | current)
    bigram_loss = -log_p[val_data[:-1], val_data[1:]].mean().item()
    return {"unigram": unigram_loss, "bigram": bigram_loss, "alpha": alpha}


# ------------------------------------------------------------------------------------------------
# 1. the main model: samples


def sample_continuations(lab: LabModel, prompts, n_tokens: int, seed: int, device) -> list[dict]:
    """One sampled continuation of each prompt (temperature 0.8, top-k 50), one generator for all."""
    generator = torch.Generator(device=device).manual_seed(seed)
    samples = []
    for prompt in prompts:
        idx = lab.encode(prompt)
        # lesson 06's generate, recomputing the whole context every step (no cache): the same ids as the
        # minimal sampling loop; prompt + n_tokens stays within block_size
        ids = generate(lab.model, idx, n_tokens, use_cache=False, temperature=0.8, top_k=50,
                       generator=generator)  # (1, T + n_tokens)
        samples.append({"prompt": prompt, "continuation": lab.decode(ids[0, idx.shape[1]:])})
    return samples


# ------------------------------------------------------------------------------------------------
# 2. the logit lens


def lens_statistics(model: GPT, batches) -> dict:
    """Per layer (embeddings, block 1..L): the lens cross-entropy, top-1 accuracy, median rank and mean
    probability of the true next token, and how often the top-1 is the input token itself."""
    with torch.no_grad():
        ce, acc, prob, ranks, echo = [], [], [], [], []
        for x, y in batches:
            lens = logit_lens(model, x)  # (L+1, B, T, V)
            log_p = lens.log_softmax(dim=-1)
            # (L+1, B, T)
            true = log_p.gather(-1, y[None, ..., None].expand(lens.shape[0], -1, -1, 1))[..., 0]
            ce.append(-true.mean(dim=(1, 2)))
            acc.append((lens.argmax(dim=-1) == y[None]).float().mean(dim=(1, 2)))
            echo.append((lens.argmax(dim=-1) == x[None]).float().mean(dim=(1, 2)))
            prob.append(true.exp().mean(dim=(1, 2)))
            ranks.append((log_p > true[..., None]).sum(dim=-1).flatten(1).float())  # (L+1, B*T), 0 = top-1
        return {"loss": torch.stack(ce).mean(0).tolist(), "top1_accuracy": torch.stack(acc).mean(0).tolist(),
                "p_true": torch.stack(prob).mean(0).tolist(),
                "median_rank": torch.cat(ranks, dim=1).median(dim=1).values.add(1).tolist(),
                "top1_is_input": torch.stack(echo).mean(0).tolist()}


def prompt_lens(lab: LabModel, prompt: str) -> dict:
    """The logit lens on one prompt: for every layer and position, P(true next token) and the top-1 id."""
    idx = lab.encode(prompt)  # (1, T)
    T = idx.shape[1]
    lens = logit_lens(lab.model, idx)[:, 0, :-1]  # (L+1, T-1, V): predictions that have a true next token
    probs = lens.softmax(dim=-1)
    target = idx[0, 1:]  # (T-1,)
    return dict(p_true=probs[..., torch.arange(T - 1), target].cpu().numpy(),  # (L+1, T-1)
                top1=probs.argmax(dim=-1).cpu(), target=target,  # (L+1, T-1), (T-1,)
                tokens=[lab.decode([int(t)]) for t in idx[0]])


# ------------------------------------------------------------------------------------------------
# 3. attention maps


def attention_statistics(model: GPT, x: torch.Tensor) -> dict:
    """Per layer: head-averaged mean look-back distance (tokens), attention on the previous token and
    on the first token, and the largest previous-token share of any single head (queries i >= 1)."""
    with torch.no_grad():
        maps = attention_maps(model, x)  # n_layer x (B, H, T, T)
        T = x.shape[1]
        positions = torch.arange(T, device=x.device)
        distance = (positions[:, None] - positions[None, :]).clamp(min=0).float()  # (T, T): i - j
        rows = torch.arange(1, T, device=x.device)
        out = {"look_back_tokens": [], "previous_token": [], "first_token": [], "max_head_previous_token": []}
        for w in maps:
            prev = w[:, :, rows, rows - 1].mean(dim=(0, 2))  # (H,)
            out["previous_token"].append(prev.mean().item())
            out["max_head_previous_token"].append(prev.max().item())
            out["first_token"].append(w[:, :, 1:, 0].mean().item())
            out["look_back_tokens"].append((w * distance).sum(-1)[:, :, 1:].mean().item())
        return out


# ------------------------------------------------------------------------------------------------
# 4. knocking out sub-layers


@contextlib.contextmanager
def knocked_out(model: GPT, parts: list[tuple[int, str]]) -> Iterator[None]:
    """Zero the output of the given (layer, "attn" | "ffn") sub-layers: in a pre-norm block x + 0 = x,
    so the block's write into the residual stream is simply skipped."""

    def zero_attn(module, inputs, output):
        out, weights = output
        return torch.zeros_like(out), weights

    def zero_ffn(module, inputs, output):
        return torch.zeros_like(output)

    handles = [(model.blocks[i].attn.register_forward_hook(zero_attn) if part == "attn"
                else model.blocks[i].ffn.register_forward_hook(zero_ffn)) for i, part in parts]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def knockout_losses(model: GPT, batches) -> dict:
    """The held-out loss of the full model, its increase with each (layer, part) removed alone, and the
    loss with every attention / every FFN removed."""
    L = model.config.n_layer
    base = mean_loss(model, batches)
    per_layer = {"attn": [], "ffn": []}
    for layer in range(L):
        for part in per_layer:
            with knocked_out(model, [(layer, part)]):
                per_layer[part].append(mean_loss(model, batches) - base)
    everything = {}
    for part in ("attn", "ffn"):
        with knocked_out(model, [(layer, part) for layer in range(L)]):
            everything[part] = mean_loss(model, batches)
    return {"base_loss": base, "per_layer_increase": per_layer, "all_removed_loss": everything}


# ------------------------------------------------------------------------------------------------
# 5-6. ablations and the residual stream: small models trained with one part changed


def data_digest(data: torch.Tensor) -> str:
    return hashlib.sha256(data.cpu().numpy().tobytes()).hexdigest()[:16]


def train_variant(cfg: dict, lab: LabModel, preset: str, overrides: dict, seed: int, desc: str, device):
    """A small GPT of `preset` with `overrides`, trained on the lab model's token stream (cached)."""
    overrides = dict(overrides)
    tc = cfg["ablation"]
    if "lr" in overrides:
        tc = replace(tc, lr=overrides.pop("lr"))
    config = PRESETS[preset](vocab_size=lab.config.vocab_size, **{**cfg["small"], **overrides})
    key = {"what": "lesson04-ablation", "config": asdict(config), "train": asdict(tc), "seed": seed,
           "train_data": data_digest(lab.train_data), "val_data": data_digest(lab.val_data)}

    def build() -> GPT:
        torch.manual_seed(seed)
        return GPT(config)

    def fit(model: GPT):
        return train(model, lab.train_data, lab.val_data, tc, device=device, seed=seed, desc=desc)

    model, history, hit = cached_training(key, build, fit)
    return model.to(device).eval(), history, hit




def ablation_runs(cfg: dict, lab: LabModel, preset: str, seed: int, device) -> dict:
    """Train (or load) every variant of cfg["variants"], and the baseline again with other seeds: the
    noise level a difference must exceed. Returns runs (name -> numbers and history), the models, the
    noise, the other seeds' losses and the threshold."""
    runs, models = {}, {}
    for name in cfg["variants"]:
        model, history, hit = train_variant(cfg, lab, preset, VARIANTS[name], seed, name, device)
        models[name] = model
        runs[name] = {"overrides": VARIANTS[name], "history": history, "cache_hit": hit,
                      "n_layer": model.config.n_layer,
                      "params": model.num_parameters(), "final_val_loss": history.final_val_loss,
                      "step_ms": 1e3 * history.mean_step_time_s, "diverged": history.diverged}
    noise, other_seeds = None, {}
    for k in range(1, cfg["noise_seeds"] + 1):  # the baseline again with another seed: the noise level
        other = seed + k
        _, history, _ = train_variant(cfg, lab, preset, {}, other, f"baseline seed {other}", device)
        other_seeds[other] = history.final_val_loss
        noise = max(noise or 0.0, abs(history.final_val_loss - runs["baseline"]["final_val_loss"]))
    # two runs that differ only in the seed differ by `noise`; a variant vs the baseline is one such pair
    # too, so a difference counts only beyond twice that spread
    threshold = max(2 * noise if noise is not None else 0.05, 0.02)
    return dict(runs=runs, models=models, noise=noise, other_seeds=other_seeds, threshold=threshold)


def residual_norm_curves(models: dict[str, LabModel], small: dict[str, GPT], x: torch.Tensor) -> dict:
    """Mean L2 norm of the residual stream per layer, for the lab model(s) and the depth-4 ablations."""
    big = {n: residual_norms(m.model, x).tolist() for n, m in models.items()}
    small_x = x[:, : small["baseline"].config.block_size]
    same_depth = {n: residual_norms(m, small_x).tolist() for n, m in small.items() if "block" not in n}
    return {"lab": big, "small": same_depth, "growth_small": {n: v[-1] / v[0] for n, v in same_depth.items()}}
