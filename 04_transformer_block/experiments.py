"""Lesson 04's experiments: each function measures one thing and returns numbers (no plotting, no
printing); `demo.py` runs them in order, draws each one's figure and prints its verdict.

    break_overrides, describe                   the main model: the config changes the break flags ask for
    sample_continuations, count_model_losses   1. the trained model(s): samples, and count-based baselines
    trained_model_numbers                          (and each model's val loss, size and samples)
    lens_statistics, prompt_lens                2. the logit lens
    attention_statistics                        3. attention maps: where each block looks
    knockout_losses                             4. one sub-layer's output removed at a time
    ablation_runs                               5. small GPTs trained with one part changed
    residual_norm_curves                        6. the size of the residual stream after each block

The last functions turn those numbers into the lines the demo prints (training_report, lens_verdicts,
attention_verdicts, knockout_verdicts, ablation_verdicts: the lesson's claims against the noise,
residual_norm_verdicts): they return strings and print nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import asdict, replace

import numpy as np
import torch

from llmlab.kv_cache import generate
from llmlab.transformer_block import GPT, attention_maps, logit_lens, residual_norms
from llmlab.transformer_block.pretrained import PRESETS, LabModel
from llmlab.utils import cached_training, get_batch, train
from llmlab.utils.verdicts import claim_mark, compare, effect

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


def break_overrides(args, preset: str) -> dict:
    """The config changes the break flags ask for (only those that differ from the preset)."""
    default = PRESETS[preset]()
    wanted = {"residual": not args.no_residual, "norm": args.norm or default.norm,
              "prenorm": not args.postnorm, "n_layer": args.depth or default.n_layer}
    return {k: v for k, v in wanted.items() if getattr(default, k) != v}


def describe(overrides: dict) -> str:
    """The main model's name for the break flags' `overrides`: "no residual, 3 blocks", or "baseline"."""
    names = {"residual": lambda v: "no residual", "norm": lambda v: f"norm={v}",
             "prenorm": lambda v: "post-norm", "n_layer": lambda v: f"{v} blocks"}
    return ", ".join(names[k](v) for k, v in overrides.items()) or "baseline"


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


def trained_model_numbers(lab: LabModel, batches, cfg: dict, seed: int, device) -> dict:
    """A trained model's val loss and perplexity (measured now, on `batches`), its size, training record
    and sampled continuations of cfg["n_prompts"] of SAMPLE_PROMPTS."""
    loss, h = mean_loss(lab.model, batches), lab.history
    samples = sample_continuations(lab, SAMPLE_PROMPTS[: cfg["n_prompts"]], cfg["sample_tokens"], seed,
                                   device)
    return {"val_loss": loss, "perplexity": math.exp(loss), "steps": len(h.steps),
            "params": lab.model.num_parameters(), "cache_hit": lab.cache_hit,
            "train_step_ms": 1e3 * h.mean_step_time_s, "samples": samples}


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


# ------------------------------------------------------------------------------------------------
# The numbers above as the lines `demo.py` prints under each figure (pure: numbers in, sentences out)


def training_report(out: dict, counts: dict, batches, quick: bool) -> list[str]:
    """The lines that `demo.py` prints under the training figure: each model's numbers and samples."""
    lines = []
    say = lines.append
    say("\n1. The trained model(s): held-out loss measured now, on "
        f"{len(batches)}x{batches[0][0].shape[0]} windows of {batches[0][0].shape[1]} tokens")
    for name, r in out.items():
        cached = "loaded from cache" if r["cache_hit"] else "trained in this run"
        say(f"   {name}: {r['params']:,} parameters, {r['steps']} steps ({cached}, "
            f"{r['train_step_ms']:.0f} ms/step when trained): val loss {r['val_loss']:.3f} nats/token, "
            f"perplexity {r['perplexity']:.1f} (count bigram {counts['bigram']:.3f}, "
            f"unigram {counts['unigram']:.3f})")
        for s in r["samples"]:
            say(f"     {s['prompt']!r} -> {s['continuation']!r}")
    if quick:
        say("   (quick mode: the model saw a few dozen steps, so the samples are barely English)")
    return lines


def lens_verdicts(stats: dict, main: str, tied: bool) -> list[str]:
    """What the logit lens of each model says, block by block (`tied`: the main model ties its input and
    output embeddings): the lines that `demo.py` prints under the figure."""
    lines, s = [], stats[main]
    say = lines.append
    drops = np.diff(s["loss"])  # negative = the block made the prediction better
    biggest = int(np.argmin(drops)) + 1
    say("\n2. Logit lens (the residual stream after each block, decoded by the final norm + lm_head), "
        "held-out text:")
    for name, st in stats.items():
        say(f"   {name}: lens loss per layer {' -> '.join(f'{v:.2f}' for v in st['loss'])} nats; "
            f"top-1 accuracy {' -> '.join(f'{v:.0%}' for v in st['top1_accuracy'])}")
    echo = s["top1_is_input"]
    why = " (tied embeddings: E E^T peaks on the diagonal)" if tied else ""
    say(f"   After the embeddings alone the lens's top-1 is the input token itself at {echo[0]:.0%} of "
        f"positions{why}, at the output at {echo[-1]:.0%}"
        + (": the stream starts as 'the current token' and the blocks turn it into 'the next token'."
           if echo[0] > 0.5 > echo[-1] else "."))
    say(f"   In {main}, block {biggest} lowers the loss most ({drops[biggest - 1]:+.2f} nats). "
        + ("Every block improves the prediction: each one adds to the same stream that the output reads."
           if (drops < 0).all() else
           "Not every block improves the lens prediction: "
           + ", ".join(f"block {i + 1} {d:+.2f}" for i, d in enumerate(drops) if d >= 0)
           + " — intermediate layers need not be in the output's basis (the lens is only a probe)."))
    return lines


def attention_verdicts(stats: dict, name: str, T: int) -> tuple[list[str], dict]:
    """Where each block of `name` looks, against uniform attention over a causal window of T tokens: the
    lines that `demo.py` prints under the figure, and the uniform baseline's numbers."""
    lines, L = [], len(stats["look_back_tokens"])
    say = lines.append
    say(f"\n3. Attention of {name} on held-out text (head average; queries after the first):")
    for layer in range(L):
        prev, best_head, first, back = (stats[k][layer] for k in (
            "previous_token", "max_head_previous_token", "first_token", "look_back_tokens"))
        say(f"   block {layer + 1}: {prev:.0%} on the previous token (best head {best_head:.0%}), "
            f"{first:.0%} on the first token, mean look-back {back:.1f} tokens")
    uniform_prev = float(np.mean([1 / (i + 1) for i in range(1, T)]))  # query i sees i + 1 keys
    uniform_back = float(np.mean([i / 2 for i in range(1, T)]))  # the mean of 0..i
    say(f"   (uniform attention over the causal window: {uniform_prev:.0%} on the previous token, "
        f"look-back {uniform_back:.1f} tokens)")
    back = stats["look_back_tokens"]
    if L > 1:
        trend = ("later blocks look further back" if all(b > a for a, b in zip(back, back[1:]))
                 else "look-back does not grow steadily with depth")
        say(f"   Mean look-back {back[0]:.1f} tokens in block 1, {back[-1]:.1f} in block {L}: {trend}.")
    best = int(np.argmax(stats["max_head_previous_token"]))
    share = stats["max_head_previous_token"][best]
    say(f"   The most previous-token-focused head (block {best + 1}) puts {share:.0%} there"
        + (": attention has learned where to look." if share > 2 * uniform_prev
           else ", not clearly above uniform (is the model trained enough?)."))
    return lines, {"uniform_previous_token": uniform_prev, "uniform_look_back_tokens": uniform_back}


def knockout_verdicts(result: dict, counts: dict, config, quick: bool) -> list[str]:
    """What the knock-outs say about each sub-layer, against the count models: the lines that `demo.py`
    prints under its per-block numbers."""
    base, per_layer, everything = (result[k] for k in ("base_loss", "per_layer_increase", "all_removed_loss"))
    L = config.n_layer
    lines = []
    say = lines.append
    gap = everything["attn"] - counts["bigram"]
    losses = per_layer["attn"] + per_layer["ffn"]
    if not config.residual and max(losses) - min(losses) < 1e-4:
        V, knocked = config.vocab_size, base + losses[0]
        uniform = f" = ln {V}, a uniform guess" if abs(knocked - math.log(V)) < 0.01 else ""
        say(f"   Without residual connections a knock-out zeroes the whole stream, so every knock-out "
            f"gives the same loss, {knocked:.3f}{uniform}.")
    if base > counts["bigram"] - 0.05:
        say(f"   The full model ({base:.2f}) is not better than a count bigram ({counts['bigram']:.2f})"
            + (" (quick mode: barely trained)" if quick else "")
            + ", so these knock-outs say little about what each sub-layer is for.")
    elif gap > -0.05:
        say(f"   Without any attention the model ({everything['attn']:.2f}) is no better than a count "
            f"bigram ({counts['bigram']:.2f}): context beyond the current token reaches a position only "
            "through attention ('what to attend to').")
    else:
        say(f"   Without any attention the model ({everything['attn']:.2f}) still beats a count bigram "
            f"({counts['bigram']:.2f}) by {-gap:.2f}: it can still read the position embedding, which "
            "a bigram cannot.")
    ffn_cost, attn_cost = everything["ffn"] - base, everything["attn"] - base
    ffn = per_layer["ffn"]
    top = max(range(L), key=lambda i: ffn[i])  # the block whose FFN costs most when removed alone
    others = [d for i, d in enumerate(ffn) if i != top]
    if base > counts["bigram"] - 0.05:
        role = "."
    elif ffn_cost <= 0.1:
        role = ": the FFNs matter little in this model (the claim is not supported here)."
    elif others and ffn[top] > 0.5 * ffn_cost:
        # one block's FFN makes up most of the total: the total measures that block, not FFNs in general
        role = (f": one block at a time, block {top + 1}'s FFN costs {ffn[top]:+.2f} and the other "
                f"blocks' {min(others):+.2f} to {max(others):+.2f}, so most of the total is one block's FFN"
                + (", the one that reads the token embedding first" if top == 0 else "") + ".")
    else:
        role = (": one block at a time the FFNs cost "
                + ", ".join(f"block {i + 1} {d:+.2f}" for i, d in enumerate(ffn)) + ".")
    say(f"   Removing every FFN costs {ffn_cost:+.2f} nats, every attention {attn_cost:+.2f}{role}")
    return lines


def ablation_verdicts(runs: dict, counts: dict, threshold: float, noise: float | None,
                      quick: bool) -> tuple[dict, list[str]]:
    """The curriculum's lesson-04 claims against this run's numbers: a difference counts only beyond the
    noise, and in quick mode nothing is concluded (the numbers are printed, the verdicts say so). Returns
    the verdicts and the lines that `demo.py` prints."""
    lines = []
    say = lines.append
    base = runs["baseline"]["final_val_loss"]
    steps = len(runs["baseline"]["history"].steps)
    unigram = counts["unigram"]

    def delta(name: str) -> float:
        return runs[name]["final_val_loss"] - base

    def stuck(name: str) -> str:
        """A note when a model never got past word frequencies (the count unigram's loss)."""
        loss = runs[name]["final_val_loss"]
        return (f" — at {loss:.2f} it never got past word frequencies (count unigram {unigram:.2f})"
                if loss > unigram - 0.1 and not quick else "")

    say(f"\n5. Ablations: small GPTs, {steps} training steps each; final val loss (nats/token), "
        f"time per step, parameters:")
    for name, r in runs.items():
        say(f"   {name:<16} {r['final_val_loss']:.3f} ({delta(name):+.3f})  "
            f"{r['step_ms']:5.0f} ms/step  {r['params']:>8,} params"
            + ("  DIVERGED" if r["diverged"] else "") + ("  (cached)" if r["cache_hit"] else ""))
    noise_text = (f"the baseline with another seed differs by {noise:.3f}" if noise is not None
                  else f"no noise measured in quick mode, {threshold:.2f} assumed")
    say(f"   A difference counts only beyond {threshold:.3f} nats ({noise_text}"
        + (", doubled)." if noise is not None else ")."))
    if quick:
        say(f"   QUICK MODE: {steps} steps leave every model barely trained, so nothing is concluded"
            " below; run without --quick for the real comparison.")
    verdicts = {}

    def verdict(key: str, supported: bool | str | None, text: str, why: str = "") -> None:
        if quick:  # a few dozen steps decide nothing: report the numbers, claim nothing
            supported, why = None, ""
        text += why + "."
        verdicts[key] = {"supported": supported, "text": text}
        say(f"   [{claim_mark(supported)}] {text}")

    if "no residual" in runs:
        d = delta("no residual")
        worse = effect(d, threshold) == "worse"
        verdict("residual", worse,
                f"Residual connections: without them the val loss is {d:+.3f} nats from the baseline",
                stuck("no residual") if worse else ", within the noise at this depth and budget")
    if "no norm" in runs:
        d = delta("no norm")
        outcome = effect(d, threshold)
        verdict("norm", {"worse": True, "better": False}.get(outcome),
                f"Normalization: without any norm the val loss is {d:+.3f} nats from the baseline",
                {"worse": stuck("no norm"), "better": " — better without it here"}.get(
                    outcome, ", within the noise: as good without it at this depth and learning rate"))
    if "post-norm" in runs:
        d = delta("post-norm")
        text = f"Norm placement: post-norm is {d:+.3f} nats from pre-norm at the same learning rate"
        text += stuck("post-norm")
        why = ""
        low = "post-norm, lr/6"
        if low in runs:
            text += (f"; at a sixth of the learning rate it reaches {runs[low]['final_val_loss']:.3f} "
                     f"({delta(low):+.3f})")
            post, rescue = runs["post-norm"]["final_val_loss"], runs[low]["final_val_loss"]
            rescued = compare(rescue, post, threshold) == "a"
            if effect(d, threshold) == "worse" and rescued:
                why += (": post-norm fails at a step size that pre-norm trains well with — where the norm "
                        "sits decides how large a learning rate is stable")
        verdict("prenorm", {"worse": True, "better": False}.get(effect(d, threshold)), text, why)

    by_depth = sorted((r["n_layer"], r["final_val_loss"], r["step_ms"]) for n, r in runs.items()
                      if n == "baseline" or "n_layer" in r["overrides"])  # (depth, loss, ms/step)
    if len(by_depth) > 1:
        gains = [(a, b, la - lb) for (a, la, _), (b, lb, _) in zip(by_depth, by_depth[1:])]
        text = "Depth (same width, same steps): "
        text += ", ".join(f"{n} blocks {loss:.3f}" for n, loss, _ in by_depth)
        parts = []
        helps = {a: effect(-g, threshold) == "better" for a, _, g in gains}  # g: loss drop a -> b blocks
        for a, b, g in gains:
            words = {"better": "helps", "worse": "HURTS"}.get(effect(-g, threshold), "is within the noise")
            parts.append(f"{a}->{b} blocks {words} ({-g:+.3f})")
        text += "; " + ", ".join(parts)
        best = min(by_depth, key=lambda row: row[1])
        deepest = by_depth[-1]
        why = ""
        if best[0] != deepest[0]:
            relation = ("worse than" if compare(deepest[1], best[1], threshold) == "b"
                        else "not measurably better than")
            why = (f": at equal steps {deepest[0]} blocks are {relation} {best[0]} on this budget, at "
                   f"{deepest[2] / best[2]:.1f}x the time per step")
        if all(helps.values()):
            supported = True
        elif any(helps.values()):
            supported = "partly"  # some extra depth helps, the rest is not better at equal steps
        else:
            supported = False
        verdict("depth", supported, text, why)
    return verdicts, lines


def residual_norm_verdicts(result: dict, d_small: int) -> list[str]:
    """The residual stream's size per block (`result` of `residual_norm_curves`; d_small: the ablation
    models' width): the lines that `demo.py` prints under the figure."""
    big, same_depth, growth = result["lab"], result["small"], result["growth_small"]
    lines = []
    say = lines.append
    say("\n6. Residual stream norm after the embeddings and after each block (held-out text):")
    for n, v in {**big, **{f"small {k}": v for k, v in same_depth.items()}}.items():
        say(f"   {n}: {' -> '.join(f'{a:.1f}' for a in v)}")
    for name in [n for n in same_depth if n.startswith("post-norm")]:
        post = same_depth[name][1:]
        say(f"   {name} ends every block in a norm: its stream stays between {min(post):.1f} and "
            f"{max(post):.1f} (sqrt(d_model) = {math.sqrt(d_small):.1f} when the norm's gains are 1); "
            f"the pre-norm baseline's grows {growth['baseline']:.0f}x from the embeddings.")
    return lines
