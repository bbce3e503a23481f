"""Lesson 02 demo: four ways to tell a transformer where each token is, and what happens past the end.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show]
                   [--train-len L] [--extrapolate K] [--rope-base B] [--encodings none rope ...]
                   [--steps N] [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. encodings.png       the four encodings as heatmaps: sinusoidal table, a trained learned table, RoPE's
                        rotation angles, ALiBi's bias
 2. similarity.png      similarity of two positions vs their distance (sinusoidal, RoPE, learned)
 3. relative.png        RoPE's and ALiBi's attention logits depend only on m - n; added positions do not
 4. alibi.png           ALiBi's penalty per head, and how far back each head can look
 5. extrapolation.png   character-level GPTs (lesson 04), identical but for `pos`, trained on windows of
                        L characters and evaluated on windows of K*L: loss per position
Break flags:
 --train-len L     the training context (default 64; quick: 32)
 --extrapolate K   evaluate up to K * L positions (default 4)
 --rope-base B     also train RoPE with base B (e.g. 10 or 1e6) and compare its extrapolation
 --encodings ...   which position encodings to train (default: all five; `--encodings none` = NoPE only)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.verdicts import compare

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from llmlab.positional_embeddings import (
        alibi_bias,
        alibi_slopes,
        apply_rope,
        apply_rotary,
        rope_frequencies,
    )
    from llmlab.positional_embeddings.positional_embeddings import (
        offset_spread,
        similarity_vs_distance,
        sinusoidal_embeddings,
    )
    from llmlab.transformer_block import GPT, gpt2_config
    from llmlab.utils import (
        CharTokenizer,
        Demo,
        TrainConfig,
        cached_training,
        encode,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global np, torch, F, alibi_bias, alibi_slopes, apply_rope, apply_rotary, rope_frequencies
    global offset_spread, similarity_vs_distance, sinusoidal_embeddings, GPT, gpt2_config, CharTokenizer
    global Demo, TrainConfig, cached_training, encode, load_corpus, plotting, train, train_val_split
    import numpy as np
    import torch
    import torch.nn.functional as F

    from llmlab.positional_embeddings import (
        alibi_bias,
        alibi_slopes,
        apply_rope,
        apply_rotary,
        rope_frequencies,
    )
    from llmlab.positional_embeddings.positional_embeddings import (
        offset_spread,
        similarity_vs_distance,
        sinusoidal_embeddings,
    )
    from llmlab.transformer_block import GPT, gpt2_config
    from llmlab.utils import (
        CharTokenizer,
        Demo,
        TrainConfig,
        cached_training,
        encode,
        load_corpus,
        plotting,
        train,
        train_val_split,
    )


ENCODINGS = ("none", "sinusoidal", "learned", "rope", "alibi")
COLORS = {"none": "#8C8C8C", "sinusoidal": "#4C72B0", "learned": "#DD8452", "rope": "#55A868",
          "alibi": "#C44E52"}
EXTRA_COLOR = "#8172B3"  # the --rope-base model
VERDICTS = {"degrades": "DEGRADES past L", "holds": "holds past L",
            "unclear": "no clear change (within noise)"}
# Curriculum claims checked by experiment 5 (CURRICULUM-SEED.md, lesson 02's "Key Insights").
CLAIMS = {"sinusoidal": "Sinusoidal: fixed, excellent extrapolation",
          "learned": "Learned PE: flexible but poor extrapolation",
          "rope": "RoPE: excellent for long contexts"}


def settings(quick: bool) -> dict:
    # The models: 2 layers, 4 heads of 16 dims, 64 wide, character-level: big enough to use the context
    # (the loss falls from ~2.5 to ~1.3 nats/char over the first 16 characters), small enough to train
    # five of them in a few minutes on a CPU.
    model = dict(n_layer=2, n_head=4, d_model=64)
    if quick:
        return dict(model, n_chars=200_000, train_len=32, steps=100, batch_size=8, n_windows=32,
                    n_pairs=4)
    return dict(model, n_chars=1_000_000, train_len=64, steps=1000, batch_size=16, n_windows=256,
                n_pairs=16)


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


def load_data(cfg: dict, corpus: str, seed: int) -> dict:
    text = load_corpus(corpus, cfg["n_chars"], seed=seed)
    tokenizer = CharTokenizer.from_text(text)  # one token per character: "position" = character offset
    train_text, val_text = train_val_split(text, 0.1)
    return {"tokenizer": tokenizer, "train": encode(train_text, tokenizer),
            "val": encode(val_text, tokenizer)}


def train_models(demo: Demo, cfg: dict, data: dict, specs: dict[str, dict], corpus: str) -> dict:
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
               "seed": demo.seed}

        def build(config=config):
            torch.manual_seed(demo.seed)  # the same initial weights wherever the models share a shape
            return GPT(config)

        def fit(model, label=label):
            return train(model, data["train"], data["val"], train_config, device=demo.device, seed=demo.seed,
                         desc=f"pos={label}")

        start = time.perf_counter()
        model, history, hit = cached_training(key, build, fit)
        models[label] = {"model": model.to(demo.device).eval(), "history": history, "cache_hit": hit,
                         "seconds": time.perf_counter() - start}
    return models


# ------------------------------------------------------------------------------------------------
# 1. the encodings as pictures


def encodings_heatmaps(demo: Demo, cfg: dict, models: dict, n_positions: int,
                       rope_bases: list[float]) -> dict:
    L, d_model = cfg["train_len"], cfg["d_model"]
    head_dim = d_model // cfg["n_head"]
    sinusoidal = sinusoidal_embeddings(n_positions, d_model)  # (K*L, d_model)
    learned = models["learned"]["model"].pos_emb.weight.detach().cpu() if "learned" in models else None
    # RoPE: the angle of pair i at position m is m * theta_i; cos of it, per pair (head_dim/2 pairs).
    # A pair whose angle never reaches 2*pi inside the training context meets new angles past it.
    unseen_by_base = {base: int(((L - 1) * rope_frequencies(head_dim, base).double() < 2 * math.pi).sum())
                      for base in rope_bases}
    rope_base = rope_bases[0]
    theta = rope_frequencies(head_dim, rope_base).double()  # (D/2,)
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * theta  # (K*L, D/2)
    unseen = unseen_by_base[rope_base]
    slopes = alibi_slopes(cfg["n_head"])
    alibi = alibi_bias(cfg["n_head"], n_positions)[0].clone()  # (K*L, K*L): head 1, the steepest
    alibi[torch.isinf(alibi)] = float("nan")  # future keys: drawn blank

    fig, axes = plotting.new_figure(2, 2, figsize=(12, 9))
    (ax1, ax2), (ax3, ax4) = axes
    plotting.heatmap(ax1, sinusoidal, cmap="RdBu_r", vmin=-1, vmax=1, xlabel="dimension",
                     ylabel="position", cbar_label="PE value",
                     title=f"Sinusoidal ({d_model} dims): fast waves left, slow right")
    ax1.axhline(L - 0.5, color="black", ls="--", lw=1)
    if learned is not None:
        limit = float(learned.abs().quantile(0.99))  # a few extreme weights would wash out the rest
        plotting.heatmap(ax2, learned, cmap="RdBu_r", vmin=-limit, vmax=limit, xlabel="dimension",
                         ylabel="position", cbar_label="trained weight (clipped at 99th pct.)",
                         title=f"Learned table after training: {L} rows, nothing past position {L - 1}")
    else:
        ax2.set_axis_off()
        ax2.text(0.5, 0.5, "learned model not trained\n(--encodings)", ha="center", va="center")
    plotting.heatmap(ax3, torch.cos(angles), cmap="RdBu_r", vmin=-1, vmax=1, xlabel="pair i (speed theta_i)",
                     ylabel="position m", cbar_label="cos(m * theta_i)",
                     title=f"RoPE angles (base {rope_base:g}): {unseen} of {head_dim // 2} pairs\n"
                           f"never complete a turn within L={L}")
    ax3.axhline(L - 0.5, color="black", ls="--", lw=1)
    ax3.text(head_dim / 2 - 0.6, L + 3, f"past L={L}: new angles", ha="right", va="top", fontsize=8,
             bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    plotting.heatmap(ax4, alibi, cmap="viridis", xlabel="key position j", ylabel="query position i",
                     cbar_label="bias added to the logit",
                     title=f"ALiBi bias, head 1 (slope {slopes[0]:.3g}): -slope * (i - j)")
    for ax in axes.flat:
        ax.grid(False)
    fig.suptitle("The four encodings (dashed line: the training length L)", fontweight="bold")
    demo.save_figure(fig, "encodings.png")
    counts = " and ".join(f"{n} (base {base:g})" for base, n in unseen_by_base.items())
    demo.say(f"1. Encodings: sinusoidal table {tuple(sinusoidal.shape)}; RoPE: {counts} of {head_dim // 2} "
             f"rotation pairs never complete a full turn within L={L} positions, so past L they reach angles "
             f"the model never saw; ALiBi has no vectors, only a bias per head.")
    return {"rope_pairs_without_full_turn_in_L": {f"{b:g}": n for b, n in unseen_by_base.items()},
            "rope_pairs": head_dim // 2,
            "rope_max_angle_in_L_rad": [float(a) for a in (L - 1) * theta],
            "learned_table_abs_max": None if learned is None else float(learned.abs().max())}


# ------------------------------------------------------------------------------------------------
# 2. how alike are two positions k apart?


def similarity_experiment(demo: Demo, cfg: dict, models: dict, n_positions: int,
                          rope_bases: list[float]) -> dict:
    L, d_model = cfg["train_len"], cfg["d_model"]
    head_dim = d_model // cfg["n_head"]
    curves: dict[str, np.ndarray] = {}
    curves[f"sinusoidal ({d_model} dims)"] = similarity_vs_distance(
        sinusoidal_embeddings(n_positions, d_model), cosine=True).numpy()
    # RoPE: the same query content q placed at m and at m + k; average over random q
    generator = torch.Generator().manual_seed(demo.seed)
    q = torch.randn(64, 1, head_dim, generator=generator, dtype=torch.float64)  # (64, 1, D)
    positions = torch.arange(n_positions)
    for base in rope_bases:
        rotated = apply_rope(q.expand(64, n_positions, head_dim), positions, base)  # (64, K*L, D)
        curves[f"RoPE q.R(k)q (head_dim {head_dim}, base {base:g})"] = np.mean(
            [similarity_vs_distance(r, cosine=True).numpy() for r in rotated], axis=0)
    learned_stats = {}
    if "learned" in models:
        table = models["learned"]["model"].pos_emb.weight.detach().cpu()
        curves["learned, trained"] = similarity_vs_distance(table, cosine=True).numpy()
        torch.manual_seed(demo.seed)
        init = GPT(models["learned"]["model"].config).pos_emb.weight.detach().cpu()  # before training
        curves["learned, at init"] = similarity_vs_distance(init, cosine=True).numpy()
        learned_stats = {"learned_cos_neighbour": float(curves["learned, trained"][1]),
                         "learned_init_cos_neighbour": float(curves["learned, at init"][1]),
                         "learned_cos_min": float(curves["learned, trained"].min()),
                         "learned_cos_argmin": int(curves["learned, trained"].argmin())}

    def first_below(curve: np.ndarray, level: float) -> int | None:
        below = np.nonzero(curve < level)[0]
        return int(below[0]) if below.size else None

    fig, ax = plotting.new_figure(figsize=(9, 4.8))
    for i, (label, curve) in enumerate(curves.items()):
        style = {"ls": "--", "lw": 1} if "init" in label else {"lw": 1.6}
        ax.plot(np.arange(len(curve)), curve, color=plotting.PALETTE[i % len(plotting.PALETTE)], label=label,
                **style)
    ax.axvline(L, color="black", ls=":", lw=1)
    ax.text(L + 2, 0.95, f"L={L}", fontsize=8)
    ax.axhline(0, color="gray", lw=0.5)
    sin_curve = curves[f"sinusoidal ({d_model} dims)"]
    rope_curve = next(c for label, c in curves.items() if label.startswith("RoPE"))
    fixed_floor = min(sin_curve[L:].mean(), rope_curve[L:].mean())
    title = (f"Fixed encodings {'never decay to 0' if fixed_floor > 0.1 else 'decay towards 0'}: "
             f"sinusoidal {sin_curve[L]:.2f}, RoPE {rope_curve[L]:.2f} at distance L={L}")
    if "learned, trained" in curves:
        learned = curves["learned, trained"]
        title += (f"\nthe trained learned table: {learned[1]:.2f} at distance 1, {learned.min():.2f} "
                  f"at distance {int(learned.argmin())} (init: {curves['learned, at init'][1]:.2f})")
    ax.set_title(title)
    ax.set_xlabel("distance k between the two positions (tokens)")
    ax.set_ylabel("cosine similarity (mean over pairs)")
    ax.legend(loc="upper right")
    demo.save_figure(fig, "similarity.png")

    stats = {label: {"at_1": float(c[1]), "at_L": float(c[min(L, len(c) - 1)]), "min": float(c.min()),
                     "first_below_0.5": first_below(c, 0.5), "curve": c} for label, c in curves.items()}
    rising = int(np.sum(np.diff(sin_curve[: L + 1]) > 0))
    demo.say(f"2. Cosine similarity of two positions k apart: sinusoidal {sin_curve[1]:.3f} at k=1, "
             f"{sin_curve[L]:.3f} at k=L={L}, below 0.5 from k={first_below(sin_curve, 0.5)}; "
             f"RoPE (same q at both positions) {rope_curve[1]:.3f} at k=1, {rope_curve[L]:.3f} at k=L.")
    demo.say(f"   The decay is not monotonic: the sinusoidal curve rises again in {rising} of its first {L} "
             f"steps (sums of cosines oscillate), so similarity alone does not separate near from far.")
    if learned_stats:
        trained, init = learned_stats["learned_cos_neighbour"], learned_stats["learned_init_cos_neighbour"]
        smooth = trained > 0.5  # neighbours clearly alike (a random table gives ~0)
        learned_says = ("learned a smooth order by itself (neighbours alike)" if smooth
                        else "has not (yet) learned that neighbours are alike")
        demo.say(f"   The trained learned table {learned_says}: neighbour cosine {trained:.3f} vs {init:.3f} "
                 f"at init; lowest {learned_stats['learned_cos_min']:.3f} at distance "
                 f"{learned_stats['learned_cos_argmin']}.")
    return {**stats, **learned_stats}


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


def relative_experiment(demo: Demo, cfg: dict, models: dict, n_positions: int) -> dict:
    with torch.no_grad():
        L = cfg["train_len"]
        vocab = next(iter(models.values()))["model"].config.vocab_size
        generator = torch.Generator().manual_seed(demo.seed)
        pairs = torch.randint(vocab, (cfg["n_pairs"], 2), generator=generator).tolist()
        offset = 4  # the offset m - n whose logit is followed along m in the left panel
        spreads, traces, checks = {}, {}, {}
        for label, entry in models.items():
            model = entry["model"]
            # sanity check: the reconstruction equals the model's own attention on a sequence of one token
            token = pairs[0][0]
            T_check = min(L, 16)
            idx = torch.full((1, T_check), token, device=model.tok_emb.weight.device)
            _, _, trace = model(idx, return_attn=True)
            mask = torch.ones(T_check, T_check, dtype=torch.bool, device=idx.device).tril()
            logits = layer0_logits(model, token, token, T_check).masked_fill(~mask, float("-inf"))
            mine = torch.softmax(logits, dim=-1)  # (H, T, T)
            checks[label] = float((mine - trace.attn[0][0]).abs().max())
            # the spread of the logit over all (m, n) with the same offset, relative to the logits' spread
            worst = 0.0
            for token_q, token_k in pairs:
                logits = layer0_logits(model, token_q, token_k, L).double()  # (H, L, L)
                # (H, L(L+1)/2): the logits a decoder uses
                causal = logits[:, mask.new_ones(L, L).tril()]
                scale = causal.std(dim=-1).clamp_min(1e-12)  # (H,)
                # (H, L-1); the last offset has one pair
                spread = offset_spread(logits)[:, :-1] / scale[:, None]
                worst = max(worst, float(spread.max()))
            spreads[label] = worst
            T = L if model.config.pos == "learned" else n_positions
            logits = layer0_logits(model, pairs[0][0], pairs[0][1], T)[0].double().cpu()  # head 1, (T, T)
            # logit(m, m - offset), m >= offset
            traces[label] = torch.diagonal(logits, offset=-offset).numpy()

        fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12.5, 4.6))
        for label, values in traces.items():
            ax1.plot(np.arange(offset, offset + len(values)), values, color=COLORS.get(label, EXTRA_COLOR),
                     label=label, lw=1.5)
        ax1.axvline(L, color="black", ls=":", lw=1)
        ax1.text(L + 2, ax1.get_ylim()[0], f"L={L}", fontsize=8, va="bottom")
        ax1.set_xlabel(f"query position m (key at m - {offset})")
        ax1.set_ylabel("layer-0 attention logit, head 1")
        ax1.set_title("Same two tokens, same offset 4, moved along the sequence:\n"
                      "a flat line = the logit depends only on m - n")
        ax1.legend(fontsize=8)
        labels = list(spreads)
        floor = 1e-9
        shown = [max(spreads[label], floor) for label in labels]
        bars = ax2.bar(range(len(labels)), shown, color=[COLORS.get(label, EXTRA_COLOR) for label in labels])
        ax2.set_yscale("log")
        ax2.set_ylim(floor / 3, max(shown) * 30)  # room above the tallest bar for its label
        ax2.set_xticks(range(len(labels)), labels=labels, rotation=20)
        texts = ["0 (exact)" if spreads[label] == 0 else f"{spreads[label]:.1e}" for label in labels]
        ax2.bar_label(bars, labels=texts, fontsize=8, padding=2)
        ax2.set_ylabel("max spread of the logit at a fixed m - n\n/ std of all logits (log)")
        absolute = [label for label in labels
                    if models[label]["model"].config.pos in ("learned", "sinusoidal")]
        relative = [label for label in labels if label not in absolute]
        worst_rel = max((spreads[label] for label in relative), default=float("nan"))
        best_abs = min((spreads[label] for label in absolute), default=float("nan"))
        ax2.set_title(f"Relative encodings: spread <= {worst_rel:.1e}; added positions: >= {best_abs:.2f}\n"
                      f"(over {cfg['n_pairs']} token pairs, 4 heads, all offsets < L={L})")
        demo.save_figure(fig, "relative.png")

        demo.say(f"3. Layer-0 attention logits of the trained models, {cfg['n_pairs']} token pairs, "
                 "every (m, n) "
                 f"with the same offset m - n < L: max spread / std of the logits =")
        demo.say("   " + ", ".join(f"{label} {spreads[label]:.2g}" for label in labels))
        if relative and absolute:
            holds = worst_rel < 1e-4 and best_abs > 1e-2
            demo.say(f"   {'As the maths says' if holds else 'UNEXPECTED'}: RoPE/ALiBi/none logits are a "
                     f"function of m - n (spread {worst_rel:.1e}, float rounding), while added "
                     f"sinusoidal/learned positions make one offset score differently at different places "
                     f"(spread {best_abs:.2f} of a std).")
        demo.say(f"   (check: the reconstructed logits reproduce each model's own layer-0 attention to "
                 f"{max(checks.values()):.1e})")
        return {"max_relative_spread": spreads, "offset_traced": offset, "token_pairs": pairs,
                "reconstruction_max_abs_diff": checks}


# ------------------------------------------------------------------------------------------------
# 4. ALiBi: one penalty per head


def alibi_experiment(demo: Demo, cfg: dict, n_positions: int) -> dict:
    L, n_head = cfg["train_len"], cfg["n_head"]
    slopes = alibi_slopes(n_head)
    bias = alibi_bias(n_head, n_positions, query_len=1)[:, 0, :].flip(-1)  # (H, K*L): distance 0, 1, 2, ...
    distance = np.arange(n_positions)
    # with equal content scores, attention = softmax(bias): how far back does each head look?
    attention = torch.softmax(bias.double(), dim=-1)  # (H, K*L)
    cumulative = attention.cumsum(-1)
    reach90 = [int((c < 0.9).sum()) for c in cumulative]  # distance holding 90% of the attention
    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(12, 4.5))
    for h in range(n_head):
        color = plotting.PALETTE[h]
        ax1.plot(distance, bias[h].numpy(), color=color, label=f"head {h + 1}: slope {slopes[h]:.4g}")
        ax2.plot(distance, cumulative[h].numpy(), color=color, label=f"head {h + 1}: 90% within {reach90[h]}")
    for ax in (ax1, ax2):
        ax.axvline(L, color="black", ls=":", lw=1)
        ax.set_xlabel("distance i - j from the query (tokens)")
        ax.legend(fontsize=8)
    ax2.axhline(0.9, color="gray", ls="--", lw=0.8)
    ax1.set_ylabel("bias added to the logit")
    ax1.set_title(f"ALiBi: a straight line per head, slopes 2^(-8h/{n_head})")
    ax2.set_ylabel(f"attention mass within distance (query at {n_positions - 1})")
    local = sum(r < L for r in reach90)
    ax2.set_title(f"With equal content scores, {local} of {n_head} heads put 90% of\n"
                  f"their attention within L={L} tokens")
    demo.save_figure(fig, "alibi.png")
    demo.say(f"4. ALiBi slopes {', '.join(f'{s:.4g}' for s in slopes.tolist())}: with equal content scores "
             f"the heads hold 90% of their attention within {', '.join(map(str, reach90))} tokens; "
             f"the {local} of {n_head} that stay inside L={L} see past L the same window as in training; the "
             f"others reach keys farther away than any in training.")
    return {"slopes": slopes, "reach90_tokens": reach90, "heads_within_L": local}


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


def extrapolation_title(results: dict, labels: list[str]) -> str:
    """The bar chart's title: the lowest ratio is named best only when it is lower than the runner-up's by
    more than their two 95% intervals together (the error bars drawn); else no measurable difference."""
    ranked = sorted(labels, key=lambda label: results[label]["ratio"])
    best, r = ranked[0], results[ranked[0]]["ratio"]
    if len(ranked) == 1:
        return f"Past the training length: {best} {r:.2f}x"
    second, r2 = ranked[1], results[ranked[1]]["ratio"]
    half = {label: results[label]["excess_ci95"] / results[label]["inside_late"] for label in ranked[:2]}
    if compare(r, r2, half[best] + half[second]) == "a":
        return f"Past the training length: {best} is best ({r:.2f}x vs {second} {r2:.2f}x)"
    return f"Past the training length: {best} {r:.2f}x and {second} {r2:.2f}x, no measurable difference"


def extrapolation_experiment(demo: Demo, cfg: dict, data: dict, models: dict, K: int) -> dict:
    L = cfg["train_len"]
    T = K * L
    val = data["val"]
    if len(val) < T + 1:
        raise ValueError(f"the validation split has {len(val)} tokens, fewer than K*L+1 = {T + 1}: use a "
                         f"larger corpus or a smaller --train-len / --extrapolate")
    starts = torch.linspace(0, len(val) - T - 1, cfg["n_windows"]).long()  # a fixed, evenly spread set
    windows = torch.stack([val[s : s + T + 1] for s in starts.tolist()]).to(demo.device)  # (N, T + 1)
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

    fig, (ax1, ax2) = plotting.new_figure(1, 2, figsize=(13, 4.8), )
    binned = {label: log_bins(curve, split=L) for label, curve in curves.items()}
    # the y range of the losses inside L (+ margin): a curve that blows up past L leaves the plot, and its
    # legend entry says where it went
    bottom = min(float(y.min()) for _, y in binned.values()) - 0.05
    inside_top = max(float(curve[:L].max()) for curve in curves.values())
    ymax = inside_top + 0.3 * (inside_top - bottom)
    for label, (x, y) in binned.items():
        color = COLORS.get(label, EXTRA_COLOR)
        text = label
        if y.max() > ymax:
            text += f" (off the plot: {curves[label][-L:].mean():.2f} at {T - L}..{T - 1})"
        ax1.plot(x, y, color=color, lw=1.6, marker="o", ms=2.5, label=text)
        if models[label]["model"].config.pos == "learned":
            ax1.plot([x[-1]], [y[-1]], marker="X", ms=11, color=color, ls="none")
            ax1.annotate("learned: no vector\nfor position L", (x[-1], y[-1]), xytext=(14, -42),
                         textcoords="offset points", fontsize=8, color=color,
                         arrowprops={"arrowstyle": "-", "color": color, "lw": 0.8},
                         bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    ax1.axvline(L, color="black", ls=":", lw=1)
    ax1.set_ylim(bottom, ymax)
    ax1.text(L * 0.95, ymax - 0.02 * (ymax - bottom), f"trained up to L={L}", ha="right", va="top",
             fontsize=8)
    ax1.set_xlabel("tokens of context = position + 1 (characters, log scale)")
    ax1.set_xscale("log", base=2)
    ax1.set_ylabel("validation loss (nats/char, log-spaced bins)")
    groups = {verdict: [label for label, row in results.items() if row.get("verdict") == verdict]
              for verdict in ("degrades", "holds", "unclear")}
    verbs = {"degrades": "degrade", "holds": "hold", "unclear": "change within noise"}
    summary = "; ".join(f"{', '.join(names)}: {verbs[verdict]}" for verdict, names in groups.items() if names)
    ax1.set_title(f"Past L={L}: {summary}\n"
                  f"(loss per position, mean of {cfg['n_windows']} windows of {T} chars)")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    labels = [label for label in results if "ratio" in results[label]]
    ratios = [results[label]["ratio"] for label in labels]
    errors = [results[label]["excess_ci95"] / results[label]["inside_late"] for label in labels]
    plotting.bar_plot(ax2, labels, ratios, errors=errors, fmt="{:.2f}x",
                      colors=[COLORS.get(label, EXTRA_COLOR) for label in labels],
                      ylabel=f"loss at positions L..{K}L / loss at L/2..L")
    ax2.axhline(1.0, color="black", lw=0.8)
    if labels:
        ax2.set_ylim(min(0.9, min(ratios) - 0.05), max(ratios) * 1.12)
        ax2.set_title(extrapolation_title(results, labels))
    else:
        ax2.set_title("no model here can run past L (learned positions only)")
    demo.save_figure(fig, "extrapolation.png")

    demo.say(f"5. Extrapolation: char-level GPTs ({cfg['n_layer']} layers, {cfg['d_model']} wide) trained "
             f"{cfg['steps']} steps on windows of L={L}, evaluated on {cfg['n_windows']} windows of {T} "
             f"characters (loss inside = positions {L // 2}..{L - 1}, beyond = {L}..{T - 1}):")
    if demo.quick:
        val = np.mean([row["val_loss_at_L"] for row in results.values()])
        demo.say(f"   quick mode: each model trained only {cfg['steps']} steps (mean val loss {val:.2f}); "
                 f"the verdicts below describe barely-trained models: run without --quick to measure.")
    for label, row in results.items():
        if "ratio" in row:
            change = VERDICTS[row["verdict"]]
            demo.say(f"   {label:<16} inside {row['inside_late']:.3f}, beyond {row['beyond_mean']:.3f} "
                     f"({row['ratio']:.2f}x, {row['excess_nats']:+.3f} ± {row['excess_ci95']:.3f} nats): "
                     f"{change}")
        else:
            demo.say(f"   {label:<16} inside {row['inside_late']:.3f}, beyond: cannot run ({refused})")
    for name, claim in CLAIMS.items():
        if name not in results:
            continue
        row = results[name]
        if name == "learned":
            said = ("confirmed, and stronger: it cannot be evaluated past L at all" if refused
                    else "not tested")
        elif row["verdict"] == "degrades":
            said = f"CONTRADICTED by this run: loss {row['ratio']:.2f}x higher past L"
            said += (". Long-context RoPE models get there by rescaling positions or the base and "
                     "fine-tuning at the long length (Chen et al. 2023; Xiong et al. 2023), not by "
                     "extrapolating"
                     if name == "rope" else
                     " (Press et al. 2022 found the same: sinusoidal perplexity explodes soon after L)")
        elif row["verdict"] == "holds":
            said = f"supported by this run ({row['ratio']:.2f}x)"
        else:
            said = f"not settled by this run ({row['ratio']:.2f}x, within noise)"
        if demo.quick and said.startswith(("CONTRADICTED", "supported")):
            said += " [quick run: barely trained]"
        demo.say(f"   Curriculum: '{claim}' -> {said}.")
    if "alibi" in results and "ratio" in results["alibi"]:
        row = results["alibi"]
        demo.say(f"   ALiBi here: {VERDICTS[row['verdict']]} ({row['ratio']:.2f}x). Press et al. 2022: "
                 f"trained at 1024 tokens, it matched at 2048 a sinusoidal model trained at 2048.")
    other = [label for label in labels if label.startswith("rope base")]
    if other and "rope" in results:
        mine, ref = results[other[0]], results["rope"]
        # the two ratios' 95% intervals (the error bars of the bar chart) together are the noise band
        band = sum(row["excess_ci95"] / row["inside_late"] for row in (mine, ref))
        change = {"a": "better than", "b": "worse than"}.get(compare(mine["ratio"], ref["ratio"], band),
                                                            "with no measurable difference from")
        demo.say(f"   RoPE base: {other[0]} extrapolates {change} base 10000 ({mine['ratio']:.2f}x vs "
                 f"{ref['ratio']:.2f}x past L; inside L {mine['inside_late']:.3f} vs "
                 f"{ref['inside_late']:.3f}).")
    if labels:
        order = sorted(labels, key=lambda label: results[label]["beyond_mean"])
        demo.say("   Ranked by loss past L (lower = better): " +
                 " < ".join(f"{label} {results[label]['beyond_mean']:.3f}" for label in order))
    scale = embedding_scale(models)
    worse = (results["sinusoidal"]["inside_late"] - results["learned"]["inside_late"]
             if scale and "learned" in results else 0.0)
    if worse > 0.05:
        demo.say(f"   Note: inside L the sinusoidal model is {worse:.2f} nats worse than the learned one. "
                 f"Its fixed table (row norm {scale['pe_norm']:.2f}) is {scale['ratio']:.1f}x the trained "
                 f"token vectors (row norm {scale['token_norm']:.2f}, the embeddings times "
                 f"{scale['embedding_scale']:.1f} = sqrt(d_model), as Vaswani et al. scale them).")
    return {"train_len": L, "eval_len": T, "n_windows": cfg["n_windows"], "learned_error": refused,
            "models": results, "sinusoidal_scale": scale}


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


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    """Parse the flags, run every experiment, write the figures and results.json."""
    parser = demo_parser(__doc__)
    parser.add_argument("--train-len", type="positive_int", default=None,
                        help="training context L in characters (default 64; --quick: 32)")
    parser.add_argument("--extrapolate", type="positive_int", default=4,
                        help="evaluate on windows of K * L characters (default K=4)")
    parser.add_argument("--rope-base", type="positive_float", default=None,
                        help="also train a RoPE model with this base (e.g. 10 or 1e6) and compare")
    parser.add_argument("--encodings", nargs="+", choices=ENCODINGS, default=list(ENCODINGS),
                        help="which position encodings to train (default: all five)")
    parser.add_argument("--steps", type="positive_int", default=None,
                        help="training steps per model (default 1000; --quick 100)")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="stories (default), python-docs, python-code or a path to a UTF-8 text file")
    args = parser.parse_args(argv)
    for name, minimum in (("train_len", 4), ("extrapolate", 2), ("steps", 1)):
        value = getattr(args, name)
        if value is not None and value < minimum:
            parser.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")
    if args.rope_base is not None and not (math.isfinite(args.rope_base) and args.rope_base > 1):
        parser.error(f"--rope-base must be a finite number > 1, got {args.rope_base}")
    return _run(args)  # Demo runs torch on --threads threads (default 1)


def _run(args) -> dict:
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    if args.train_len is not None:
        cfg["train_len"] = args.train_len
    if args.steps is not None:
        cfg["steps"] = args.steps
    K, L = args.extrapolate, cfg["train_len"]
    results = demo.results
    results["settings"] = dict(cfg, extrapolate=K, corpus=args.corpus, rope_base=args.rope_base)
    timings = results["timings_s"] = {}

    start = time.perf_counter()
    data = load_data(cfg, args.corpus, demo.seed)
    specs = model_specs(list(dict.fromkeys(args.encodings)), args.rope_base)
    models = train_models(demo, cfg, data, specs, args.corpus)
    timings["training"] = round(time.perf_counter() - start, 2)
    hits = sum(entry["cache_hit"] for entry in models.values())
    demo.say(f"Trained {len(models)} char-level GPTs (vocab {data['tokenizer'].vocab_size}, L={L}, "
             f"{cfg['steps']} steps of {cfg['batch_size']}x{L}) in {timings['training']:.1f} s "
             f"({hits} loaded from the cache); final val loss "
             + ", ".join(f"{k} {v['history'].final_val_loss:.3f}" for k, v in models.items()))

    def run(name, experiment, *inputs):
        begin = time.perf_counter()
        results[name] = experiment(demo, cfg, *inputs)
        timings[name] = round(time.perf_counter() - begin, 2)

    rope_bases = [10000.0] + ([args.rope_base] if args.rope_base is not None else [])
    run("encodings", encodings_heatmaps, models, K * L, rope_bases)
    run("similarity", similarity_experiment, models, K * L, rope_bases)
    run("relative", relative_experiment, models, K * L)
    run("alibi", alibi_experiment, K * L)
    run("extrapolation", extrapolation_experiment, data, models, K)
    demo.finish()
    return results


if __name__ == "__main__":
    main()
