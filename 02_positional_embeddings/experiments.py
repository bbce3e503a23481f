"""The experiments of lesson 02's demo: each function measures one thing and returns its numbers.

`demo.py` runs them in order, draws each one's figure and prints its verdict; the numbers returned here
are what it writes into results.json. Sizes come from the demo's `settings(quick)`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from llmlab.positional_embeddings import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_rotary,
    offset_spread,
    rope_frequencies,
    similarity_vs_distance,
    sinusoidal_embeddings,
)
from llmlab.transformer_block import GPT, gpt2_config, trace
from llmlab.utils import (
    CharTokenizer,
    TrainConfig,
    cached_training,
    encode,
    load_corpus,
    train,
    train_val_split,
)
from llmlab.utils.verdicts import compare


def log_bins(values: np.ndarray, per_octave: int = 8, *,
             split: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average values[0..T-1] (position t = t + 1 tokens of context) over bins of equal width on a log axis.

    For plotting only (results.json keeps the raw per-position values): late positions are many and
    noisy, so they are pooled into wide bins; early positions, where the loss changes fast, stay single.
    No bin straddles `split` (a context length, e.g. L). Returns (geometric centre of each bin in tokens
    of context, mean of the bin).
    """
    T = len(values)
    edges = np.round(np.logspace(0, np.log2(T + 1), int(np.log2(T + 1) * per_octave) + 1, base=2))
    if split is not None and split < T:
        edges = np.append(edges, split + 1)
    edges = np.unique(edges.astype(int))  # 1 .. T+1, in tokens of context
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        centres.append(math.sqrt(lo * (hi - 1)))
        means.append(values[lo - 1 : hi - 1].mean())
    return np.array(centres), np.array(means)


# ------------------------------------------------------------------------------------------------
# training: one small GPT per encoding, everything else equal


def model_specs(encodings: list[str], rope_base: float | None) -> dict[str, dict]:
    """label -> the GPTConfig overrides of that model."""
    specs = {name: {"pos": name} for name in encodings}
    if rope_base is not None:
        specs[f"rope base {rope_base:g}"] = {"pos": "rope", "rope_base": float(rope_base)}
    return specs


def load_and_train(cfg: dict, corpus: str, encodings: list[str], rope_base: float | None, *, seed: int,
                   device) -> tuple[dict, dict]:
    """The corpus (`load_data`) and one trained model per encoding (+ RoPE with `rope_base` if given)."""
    data = load_data(cfg, corpus, seed)
    specs = model_specs(list(dict.fromkeys(encodings)), rope_base)
    return data, train_models(cfg, data, specs, corpus, seed=seed, device=device)


def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    text = load_corpus(corpus, cfg["n_chars"], seed=seed)
    tokenizer = CharTokenizer.from_text(text)  # one token per character: "position" = character offset
    train_text, val_text = train_val_split(text, 0.1)
    return {"tokenizer": tokenizer, "train": encode(train_text, tokenizer),
            "val": encode(val_text, tokenizer)}


def train_models(cfg: dict, data: dict, specs: dict[str, dict], corpus: str, *, seed: int, device) -> dict:
    """Train (or load from the cache) one GPT per encoding on windows of train_len characters."""
    L = cfg["train_len"]
    steps = cfg["steps"]
    train_config = TrainConfig(steps=steps, batch_size=cfg["batch_size"], block_size=L, lr=3e-3,
                               warmup_steps=max(1, steps // 10), eval_interval=max(1, steps // 5),
                               eval_iters=10)
    models = {}
    for label, overrides in specs.items():
        config = gpt2_config(vocab_size=data["tokenizer"].vocab_size, block_size=L, n_layer=cfg["n_layer"],
                             n_head=cfg["n_head"], d_model=cfg["d_model"], **overrides)
        key = {"what": "lesson02-extrapolation", "config": config.cache_key(), "corpus": corpus,
               "n_chars": cfg["n_chars"], "tokenizer": "char", "train": asdict(train_config),
               "seed": seed}

        def build(config=config):
            torch.manual_seed(seed)  # the same initial weights wherever the models share a shape
            return GPT(config)

        def fit(model, label=label):
            return train(model, data["train"], data["val"], train_config, device=device, seed=seed,
                         desc=f"pos={label}")

        start = time.perf_counter()
        model, history, hit = cached_training(key, build, fit)
        models[label] = {"model": model.to(device).eval(), "history": history, "cache_hit": hit,
                         "seconds": time.perf_counter() - start}
    return models


# ------------------------------------------------------------------------------------------------
# 1. the encodings as pictures


def encoding_tables(cfg: dict, models: dict, n_positions: int, rope_bases: list[float]) -> dict:
    """The four encodings over n_positions: the sinusoidal table, the trained learned table (or None),
    RoPE's rotation angles m * theta_i (first base) and head 1's ALiBi bias (future keys NaN); per RoPE
    base, how many rotation pairs never complete a turn within the training length L; and under
    "numbers" what results.json keeps of them."""
    L, d_model = cfg["train_len"], cfg["d_model"]
    head_dim = d_model // cfg["n_head"]
    # RoPE: the angle of pair i at position m is m * theta_i; cos of it, per pair (head_dim/2 pairs).
    # A pair whose angle never reaches 2*pi inside the training context meets new angles past it.
    unseen_by_base = {base: int(((L - 1) * rope_frequencies(head_dim, base).double() < 2 * math.pi).sum())
                      for base in rope_bases}
    theta = rope_frequencies(head_dim, rope_bases[0]).double()  # (D/2,)
    alibi = alibi_bias(cfg["n_head"], n_positions)[0].clone()  # (K*L, K*L): head 1, the steepest
    alibi[torch.isinf(alibi)] = float("nan")  # future keys: drawn blank
    learned = models["learned"]["model"].pos_emb.weight.detach().cpu() if "learned" in models else None
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * theta  # (K*L, D/2)
    numbers = {"rope_pairs_without_full_turn_in_L": {f"{b:g}": n for b, n in unseen_by_base.items()},
               "rope_pairs": head_dim // 2, "rope_max_angle_in_L_rad": [float(a) for a in (L - 1) * theta],
               "learned_table_abs_max": None if learned is None else float(learned.abs().max())}
    return {"sinusoidal": sinusoidal_embeddings(n_positions, d_model),  # (K*L, d_model)
            "learned": learned, "angles": angles, "unseen_by_base": unseen_by_base,
            "alibi_slopes": alibi_slopes(cfg["n_head"]), "alibi": alibi, "numbers": numbers}


# ------------------------------------------------------------------------------------------------
# 2. how alike are two positions k apart?


def similarity_curves(cfg: dict, models: dict, n_positions: int, rope_bases: list[float], *,
                      seed: int) -> dict[str, np.ndarray]:
    """label -> mean cosine similarity of two positions k apart, k = 0 .. n_positions - 1."""
    d_model = cfg["d_model"]
    head_dim = d_model // cfg["n_head"]
    curves: dict[str, np.ndarray] = {}
    curves[f"sinusoidal ({d_model} dims)"] = similarity_vs_distance(
        sinusoidal_embeddings(n_positions, d_model), cosine=True).numpy()
    # RoPE: the same query content q placed at m and at m + k; average over random q
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(64, 1, head_dim, generator=generator, dtype=torch.float64)  # (64, 1, D)
    positions = torch.arange(n_positions)
    for base in rope_bases:
        rotated = apply_rope(q.expand(64, n_positions, head_dim), positions, base)  # (64, K*L, D)
        curves[f"RoPE q.R(k)q (head_dim {head_dim}, base {base:g})"] = np.mean(
            [similarity_vs_distance(r, cosine=True).numpy() for r in rotated], axis=0)
    if "learned" in models:
        table = models["learned"]["model"].pos_emb.weight.detach().cpu()
        curves["learned, trained"] = similarity_vs_distance(table, cosine=True).numpy()
        torch.manual_seed(seed)
        init = GPT(models["learned"]["model"].config).pos_emb.weight.detach().cpu()  # before training
        curves["learned, at init"] = similarity_vs_distance(init, cosine=True).numpy()
    return curves


def first_below(curve: np.ndarray, level: float) -> int | None:
    below = np.nonzero(curve < level)[0]
    return int(below[0]) if below.size else None


def similarity_stats(curves: dict[str, np.ndarray], L: int) -> dict:
    """Per curve: its value at distance 1 and L, its minimum, where it first drops below 0.5 (and the curve);
    for the learned table, its neighbour cosine trained and at init, and its lowest point."""
    stats = {label: {"at_1": float(c[1]), "at_L": float(c[min(L, len(c) - 1)]), "min": float(c.min()),
                     "first_below_0.5": first_below(c, 0.5), "curve": c} for label, c in curves.items()}
    if "learned, trained" in curves:
        stats.update(learned_cos_neighbour=float(curves["learned, trained"][1]),
                     learned_init_cos_neighbour=float(curves["learned, at init"][1]),
                     learned_cos_min=float(curves["learned, trained"].min()),
                     learned_cos_argmin=int(curves["learned, trained"].argmin()))
    return stats


def fixed_curves(curves: dict[str, np.ndarray], d_model: int, L: int) -> dict:
    """The fixed encodings' similarity curves (sinusoidal, RoPE), their lower mean past distance L, and in
    how many of its first L steps the sinusoidal curve rises again."""
    sin_curve = curves[f"sinusoidal ({d_model} dims)"]
    rope_curve = next(c for label, c in curves.items() if label.startswith("RoPE"))
    return dict(sin=sin_curve, rope=rope_curve, floor=min(sin_curve[L:].mean(), rope_curve[L:].mean()),
                rising=int(np.sum(np.diff(sin_curve[: L + 1]) > 0)))


# ------------------------------------------------------------------------------------------------
# 3. relative vs absolute: layer-0 attention logits of the trained models


def layer0_logits(model: GPT, token_q: int, token_k: int, T: int) -> torch.Tensor:
    """The first layer's attention logits (n_head, T, T) between token_q at every position m and
    token_k at every position n (layer 0 sees only the token and its position, so this is exact)."""
    config, attn = model.config, model.blocks[0].attn
    device = model.tok_emb.weight.device
    positions = torch.arange(T, device=device)
    scale = config.embedding_scale  # sqrt(d_model) for sinusoidal positions, as GPT.forward applies it
    x_q = scale * model.tok_emb.weight[token_q].expand(T, config.d_model)  # (T, d_model)
    x_k = scale * model.tok_emb.weight[token_k].expand(T, config.d_model)
    if config.pos == "learned":
        x_q, x_k = x_q + model.pos_emb(positions), x_k + model.pos_emb(positions)
    elif config.pos == "sinusoidal":
        table = sinusoidal_embeddings(T, config.d_model, device=device)
        x_q, x_k = x_q + table, x_k + table
    h_q, h_k = model.blocks[0].norm1(x_q), model.blocks[0].norm1(x_k)  # pre-norm
    H, D = config.n_head, config.head_dim
    q = attn.q_proj(h_q).view(T, H, D).transpose(0, 1)  # (H, T, D)
    k = attn.k_proj(h_k).view(T, H, D).transpose(0, 1)  # (H, T, D)
    if config.pos == "rope":
        cos, sin = model.rotary(positions)  # (T, D) each
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    logits = q @ k.transpose(-2, -1) / math.sqrt(D)  # (H, T, T)
    if config.pos == "alibi":
        logits = logits + alibi_bias(H, T, causal=False, device=device)
    return logits


@torch.no_grad()
def relative_spreads(cfg: dict, models: dict, n_positions: int, *, seed: int, offset: int = 4) -> dict:
    """Per model: the largest spread of the layer-0 logit over all (m, n) with the same offset m - n < L,
    relative to the spread of all its logits (0 = a function of m - n only), over n_pairs random token
    pairs; the logit of the first pair at offset `offset` along m (head 1, "traces"); and the check that
    `layer0_logits` reproduces the model's own layer-0 attention ("checks")."""
    L = cfg["train_len"]
    vocab = next(iter(models.values()))["model"].config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.randint(vocab, (cfg["n_pairs"], 2), generator=generator).tolist()
    spreads, traces, checks = {}, {}, {}
    for label, entry in models.items():
        model = entry["model"]
        # sanity check: the reconstruction equals the model's own attention on a sequence of one token
        token = pairs[0][0]
        T_check = min(L, 16)
        idx = torch.full((1, T_check), token, device=model.tok_emb.weight.device)
        _, recorded = trace(model, idx, attn=True)
        mask = torch.ones(T_check, T_check, dtype=torch.bool, device=idx.device).tril()
        logits = layer0_logits(model, token, token, T_check).masked_fill(~mask, float("-inf"))
        mine = torch.softmax(logits, dim=-1)  # (H, T, T)
        checks[label] = float((mine - recorded.attn[0][0]).abs().max())
        # the spread of the logit over all (m, n) with the same offset, relative to the logits' spread
        worst = 0.0
        for token_q, token_k in pairs:
            logits = layer0_logits(model, token_q, token_k, L).double()  # (H, L, L)
            causal = logits[:, mask.new_ones(L, L).tril()]  # (H, L(L+1)/2): the logits a decoder uses
            scale = causal.std(dim=-1).clamp_min(1e-12)  # (H,)
            spread = offset_spread(logits)[:, :-1] / scale[:, None]  # (H, L-1); the last offset has one pair
            worst = max(worst, float(spread.max()))
        spreads[label] = worst
        T = L if model.config.pos == "learned" else n_positions
        logits = layer0_logits(model, pairs[0][0], pairs[0][1], T)[0].double().cpu()  # head 1, (T, T)
        traces[label] = torch.diagonal(logits, offset=-offset).numpy()  # logit(m, m - offset), m >= offset
    # added positions (learned, sinusoidal) vs the encodings that act on the logits (RoPE, ALiBi, none)
    absolute = [label for label in spreads if models[label]["model"].config.pos in ("learned", "sinusoidal")]
    relative = [label for label in spreads if label not in absolute]
    return {"spreads": spreads, "traces": traces, "checks": checks, "pairs": pairs, "offset": offset,
            "absolute": absolute, "relative": relative,
            "worst_relative": max((spreads[label] for label in relative), default=float("nan")),
            "best_absolute": min((spreads[label] for label in absolute), default=float("nan"))}


# ------------------------------------------------------------------------------------------------
# 4. ALiBi: one penalty per head


def alibi_reach(n_head: int, n_positions: int) -> dict:
    """ALiBi's bias by distance per head, and with equal content scores (attention = softmax(bias)) the
    attention mass within each distance and the distance that holds 90% of it."""
    bias = alibi_bias(n_head, n_positions, query_len=1)[:, 0, :].flip(-1)  # (H, K*L): distance 0, 1, 2, ...
    attention = torch.softmax(bias.double(), dim=-1)  # (H, K*L)
    cumulative = attention.cumsum(-1)
    return {"slopes": alibi_slopes(n_head), "bias": bias, "cumulative": cumulative,
            "reach90": [int((c < 0.9).sum()) for c in cumulative]}  # distance holding 90% of the attention


# ------------------------------------------------------------------------------------------------
# 5. extrapolation: loss per position up to K * L


def per_position_loss(model: GPT, windows: torch.Tensor, *, allow_longer: bool,
                      chunk: int = 32) -> torch.Tensor:
    """windows: (N, T + 1) token ids -> (N, T) cross-entropy of predicting token t + 1 from tokens 0..t."""
    with torch.no_grad():
        losses = []
        for part in windows.split(chunk):
            x, y = part[:, :-1], part[:, 1:]  # (n, T) each
            logits, _ = model(x, allow_longer=allow_longer)  # (n, T, vocab)
            losses.append(F.cross_entropy(logits.transpose(1, 2), y, reduction="none"))  # (n, T)
        return torch.cat(losses).double().cpu()


def extrapolation(cfg: dict, data: dict, models: dict, K: int, *, device) -> tuple[dict, dict, str | None]:
    """Loss per position on n_windows validation windows of K * L characters, for every model.

    Returns (label -> its numbers and verdict, label -> mean loss per position, the learned model's error
    message when it cannot run past L, else None). Verdict: "degrades" when the loss past L exceeds the
    loss at L/2..L by more than 2% plus the 95% interval, "holds" when it stays below 2% by more than the
    interval, "unclear" in between."""
    L = cfg["train_len"]
    T = K * L
    val = data["val"]
    if len(val) < T + 1:
        raise ValueError(f"the validation split has {len(val)} tokens, fewer than K*L+1 = {T + 1}: use a "
                         f"larger corpus or a smaller --train-len / --extrapolate")
    starts = torch.linspace(0, len(val) - T - 1, cfg["n_windows"]).long()  # a fixed, evenly spread set
    windows = torch.stack([val[s : s + T + 1] for s in starts.tolist()]).to(device)  # (N, T + 1)
    inside = slice(L // 2, L)  # the reference: late positions inside the context (early ones lack context)
    results, curves, refused = {}, {}, None
    for label, entry in models.items():
        model = entry["model"]
        if model.config.pos == "learned":
            try:
                model(windows[:1, :T], allow_longer=True)
            except ValueError as err:  # no vector for position L: the model cannot run at all
                refused = str(err)
            loss = per_position_loss(model, windows[:, : L + 1], allow_longer=False)  # (N, L)
        else:
            loss = per_position_loss(model, windows, allow_longer=True)  # (N, K*L)
        mean = loss.mean(0)  # (T,) per position, averaged over the windows
        curves[label] = mean.numpy()
        row = {"loss_per_position": mean.numpy(), "val_loss_at_L": entry["history"].final_val_loss,
               "inside_mean": float(mean[:L].mean()), "inside_late": float(mean[inside].mean()),
               "train_seconds": entry["seconds"], "cache_hit": entry["cache_hit"],
               "mean_step_s": entry["history"].mean_step_time_s}
        if loss.shape[1] > L:
            beyond = loss[:, L:].mean(1) - loss[:, inside].mean(1)  # (N,): paired per window
            half = 1.96 * float(beyond.std()) / math.sqrt(len(beyond))
            row.update(beyond_mean=float(mean[L:].mean()),
                       segments=[float(mean[j * L : (j + 1) * L].mean()) for j in range(K)],
                       excess_nats=float(beyond.mean()), excess_ci95=half,
                       ratio=float(mean[L:].mean() / mean[inside].mean()))
            # 2% of the inside loss: smaller differences are not "breaking", whatever their significance
            tolerance = 0.02 * row["inside_late"]
            if row["excess_nats"] - half > tolerance:
                row["verdict"] = "degrades"
            elif row["excess_nats"] + half < tolerance:
                row["verdict"] = "holds"
            else:
                row["verdict"] = "unclear"
        results[label] = row
    return results, curves, refused


def binned_curves(curves: dict[str, np.ndarray], L: int) -> tuple[dict, float, float]:
    """The loss curves in log-spaced bins (`log_bins`), and a y range for them: the losses inside L plus a
    margin, so that a curve that blows up past L leaves the plot instead of squashing the others."""
    binned = {label: log_bins(curve, split=L) for label, curve in curves.items()}
    bottom = min(float(y.min()) for _, y in binned.values()) - 0.05
    inside_top = max(float(curve[:L].max()) for curve in curves.values())
    return binned, bottom, inside_top + 0.3 * (inside_top - bottom)


def verdict_groups(results: dict) -> dict[str, list[str]]:
    """The models of each extrapolation verdict (degrades, holds, unclear)."""
    return {verdict: [label for label, row in results.items() if row.get("verdict") == verdict]
            for verdict in ("degrades", "holds", "unclear")}


def verdict_summary(results: dict) -> str:
    """The extrapolation figure's verdicts in a line: the models grouped by what they do past L."""
    verbs = {"degrades": "degrade", "holds": "hold", "unclear": "change within noise"}
    return "; ".join(f"{', '.join(names)}: {verbs[verdict]}"
                     for verdict, names in verdict_groups(results).items() if names)


def compare_ratios(mine: dict, ref: dict) -> str:
    """`compare` of two models' ratios (loss past L / inside): "a" if `mine` is lower, "b" if higher, beyond
    the noise band, the two ratios' 95% intervals (the error bars of the bar chart) together."""
    band = sum(row["excess_ci95"] / row["inside_late"] for row in (mine, ref))
    return compare(mine["ratio"], ref["ratio"], band)


def ratio_bars(results: dict) -> tuple[list[str], list[float], list[float]]:
    """The models that ran past L, their ratios (loss past L / loss inside) and each ratio's 95% interval
    half-width (the loss excess's interval relative to the loss inside)."""
    labels = [label for label in results if "ratio" in results[label]]
    return (labels, [results[label]["ratio"] for label in labels],
            [results[label]["excess_ci95"] / results[label]["inside_late"] for label in labels])


def sinusoidal_gap(results: dict, scale: dict | None) -> float:
    """How much worse (nats) the sinusoidal model is than the learned one inside L (0 if either is absent)."""
    return (results["sinusoidal"]["inside_late"] - results["learned"]["inside_late"]
            if scale and "learned" in results else 0.0)


def embedding_scale(models: dict) -> dict | None:
    """Row norms of the sinusoidal table and of the trained token embeddings it is added to."""
    if "sinusoidal" not in models:
        return None
    model = models["sinusoidal"]["model"]
    pe_norm = float(sinusoidal_embeddings(model.config.block_size, model.config.d_model).norm(dim=-1).mean())
    # the vector added to the table: the embedding times config.embedding_scale (sqrt(d_model) here)
    token_norm = float(model.tok_emb.weight.detach().norm(dim=-1).mean()) * model.config.embedding_scale
    return {"pe_norm": pe_norm, "token_norm": token_norm, "ratio": pe_norm / token_norm,
            "embedding_scale": model.config.embedding_scale}
