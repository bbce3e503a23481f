"""Lesson 03 demo: attention, measured: what a trained model's heads look at, and what breaks without
the causal mask and the 1/sqrt(d) scale.

    python demo.py [--quick] [--out DIR] [--seed N] [--device ...] [--show] [--no-scale] [--no-mask]
                   [--corpus stories|python-docs|python-code|PATH]

Experiments (each prints its numbers and draws one figure into outputs/):
 1. attention_maps.png    every head of the trained lab GPT on one story passage, and the heads that link
                          " she" -> "Mia", "the ball" -> "a red ball" and a closing quote -> its opening quote
 2. reference_heads.png   the same two links measured over many fresh stories: each head's attention on
                          the referent, against what uniform attention would give
 3. head_diversity.png    entropy of every head, Jensen-Shannon divergence between heads, what each head
                          looks at; trained vs untrained ("different heads specialize"?)
 4. causality.png         change one token: how much every output position changes, with and without mask
 5. saturation.png        var(q.k), softmax entropy and the gradient through softmax vs head_dim, with and
                          without 1/sqrt(d), for random unit-variance q and k
 6. break_training.png    small GPTs trained without the scale / without the mask: loss curves, the
                          "cheating" loss vs the generation-time loss, and what their samples are worth
Break flags (experiment 6 always runs in a small form; a flag makes that break the focus: twice the
training steps for it and the baseline, and its samples printed in full):
 --no-scale   train with attn_scale=1.0 instead of 1/sqrt(head_dim)
 --no-mask    train with causal=False: every position sees the future, so it can read the next token
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

from llmlab.utils.cli import demo_parser
from llmlab.utils.stories import generate_story_with_facts

# Editors and type checkers read the imports here; at run time `load_libraries` imports them once the
# flags are parsed, so that `python demo.py --help` answers at once.
if TYPE_CHECKING:
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    import torch.nn.functional as F
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    from llmlab.attention_basics.attention import (
        MultiHeadAttention,
        attention_distance,
        attention_entropy,
        head_divergence,
    )
    from llmlab.transformer_block import GPT, attention_maps
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, TrainConfig, cached_training, get_batch, plotting, train


def load_libraries() -> None:
    """The imports of the `TYPE_CHECKING` block above (torch, numpy, matplotlib, the lessons' modules), made
    as this module's globals: `main` calls this once the flags are parsed."""
    global plt, np, torch, F, PowerNorm, Rectangle, FuncFormatter, MultiHeadAttention
    global attention_distance, attention_entropy, head_divergence, GPT, attention_maps, LabModel
    global lab_model, Demo, TrainConfig, cached_training, get_batch, plotting, train
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    import torch.nn.functional as F
    from matplotlib.colors import PowerNorm
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

    from llmlab.attention_basics.attention import (
        MultiHeadAttention,
        attention_distance,
        attention_entropy,
        head_divergence,
    )
    from llmlab.transformer_block import GPT, attention_maps
    from llmlab.transformer_block.pretrained import LabModel, lab_model
    from llmlab.utils import Demo, TrainConfig, cached_training, get_batch, plotting, train


PASSAGE = ('Once upon a time, there was a girl named Mia who lived near the river. Mia had a red ball, '
           'and she took it everywhere. One day, Tom kicked the ball, and it rolled away. '
           '"Where is my ball?" she asked.')
PROMPT = "Once upon a time, there was a girl named"
# experiment 6: the GPTConfig changes of each variant
VARIANTS = {"baseline": {}, "no scale": {"attn_scale": 1.0}, "no mask": {"causal": False}}
QUICK_NOTE = "quick mode: the lab model trained for a few seconds only; run without --quick to judge"


def settings(quick: bool) -> dict:
    if quick:
        return dict(n_stories=24, diversity_windows=4, sat_dims=[4, 16, 64, 256, 1024], sat_rows=128,
                    sat_keys=64, break_steps=60, break_batch=8, break_block=64, eval_iters=2,
                    honest_windows=4, honest_stride=4, n_samples=4, sample_tokens=40)
    return dict(n_stories=200, diversity_windows=32, sat_dims=[4, 8, 16, 32, 64, 128, 256, 512, 1024],
                sat_rows=1024, sat_keys=64, break_steps=400, break_batch=16, break_block=64, eval_iters=10,
                honest_windows=16, honest_stride=1, n_samples=8, sample_tokens=48)


def head_name(index: int, n_head: int) -> str:
    """Head `index` of the heads of all layers stacked -> 'L<layer>H<head>' (both counted from 0)."""
    return f"L{index // n_head}H{index % n_head}"


def token_label(token: str) -> str:
    """Make a token's spaces and newlines visible on an axis."""
    return token.replace(" ", "\u00b7").replace("\n", "\u23ce")


def token_byte_spans(lab: LabModel, ids: list[int]) -> list[tuple[int, int]]:
    """The [start, end) byte offsets of every token in the encoded text (BPE tokens are byte strings)."""
    spans, start = [], 0
    for i in ids:
        end = start + len(lab.tokenizer.vocab[i])
        spans.append((start, end))
        start = end
    return spans


def tokens_in(spans: list[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens that overlap the bytes [start, end)."""
    return [t for t, (a, b) in enumerate(spans) if a < end and start < b]


def mentions_before(spans: list[tuple[int, int]], starts: list[int], length: int, before: int) -> list[int]:
    """The tokens of the mentions (at the byte offsets `starts`, `length` bytes each)
    that start before `before`."""
    return sorted({t for p in starts if p < before for t in tokens_in(spans, p, p + length)})


def stacked_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Every layer's attention weights, heads of all layers side by side: (B, n_layer * n_head, T, T)."""
    return torch.cat(attention_maps(model, idx), dim=1)


# ------------------------------------------------------------------------------------------------
# 1. attention maps of the trained model on one passage


def passage_links(lab: LabModel) -> tuple[list[int], list[dict]]:
    """The passage's token ids and the three links to look for: (name, query token, key tokens)."""
    ids = lab.tokenizer.encode(PASSAGE)
    spans = token_byte_spans(lab, ids)
    text = PASSAGE

    def at(pos: int) -> int:
        return tokens_in(spans, pos, pos + 1)[0]

    she = text.rfind(" she") + 1
    mia = [m.start() for m in re.finditer(r"\bMia\b", text)]
    kicked_ball = text.find("kicked the ball") + len("kicked the ")
    red_ball = text.find("red ball") + len("red ")
    close_quote, open_quote = text.rfind('?"') + 1, text.find(' "') + 1
    links = [
        dict(name="' she' -> 'Mia'", query=at(she),
             keys=sorted({t for p in mia for t in tokens_in(spans, p, p + 3)})),
        dict(name="'the ball' -> 'a red ball'", query=at(kicked_ball),
             keys=tokens_in(spans, red_ball, red_ball + 4)),
        dict(name="closing quote -> opening quote", query=at(close_quote), keys=[at(open_quote)]),
    ]
    return ids, links


def attention_maps_experiment(demo: Demo, lab: LabModel) -> dict:
    """Every head on the passage; for each link the head that puts the most weight on it."""
    ids, links = passage_links(lab)
    maps = stacked_maps(lab.model, torch.tensor([ids], device=demo.device))[0].cpu()  # (L*H, T, T)
    n_head, tokens = lab.config.n_head, [token_label(lab.decode([i])) for i in ids]
    for link in links:
        mass = maps[:, link["query"], link["keys"]].sum(-1)  # (L*H,): weight of each head on the keys
        best = int(mass.argmax())
        link.update(best_head=head_name(best, n_head), best_index=best, best_weight=float(mass[best]),
                    mean_over_heads=float(mass.mean()),
                    uniform=len(link["keys"]) / (link["query"] + 1),  # causal row q spreads over q + 1 keys
                    query_token=tokens[link["query"]], key_tokens=[tokens[k] for k in link["keys"]])

    fig = plt.figure(figsize=(19, 14))
    grid = fig.add_gridspec(2, 1, height_ratios=[1.45, 1])
    top = grid[0].subgridspec(1, 3)
    for col, link in enumerate(links):
        ax = fig.add_subplot(top[col])
        im = plotting.heatmap(ax, maps[link["best_index"]], row_labels=tokens, col_labels=tokens,
                              cbar_label="attention weight (square-root colour scale)",
                              xlabel="key (attended-to token)", ylabel="query (attending token)")
        im.set_norm(PowerNorm(0.5, vmin=0, vmax=1))  # small weights stay visible next to the large ones
        ax.tick_params(labelsize=5.5)
        for k in link["keys"]:
            ax.add_patch(Rectangle((k - 0.5, link["query"] - 0.5), 1, 1, fill=False, ec="red", lw=1.6))
        ax.set_title(f"{link['best_head']}: {link['name']}\nweight {link['best_weight']:.2f} "
                     f"(uniform {link['uniform']:.2f}, mean of all heads {link['mean_over_heads']:.2f})",
                     fontsize=10)
    n_heads = maps.shape[0]
    bottom = grid[1].subgridspec(2, math.ceil(n_heads / 2))
    entropy = attention_entropy(maps).mean(-1)  # (L*H,) nats, mean over the query rows
    for index in range(n_heads):
        ax = fig.add_subplot(bottom[index // math.ceil(n_heads / 2), index % math.ceil(n_heads / 2)])
        ax.imshow(maps[index], cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_title(f"{head_name(index, n_head)}  H={entropy[index]:.2f} nats", fontsize=8)
    top = max(links, key=lambda link: link["best_weight"] / link["uniform"])
    fig.suptitle(f"Trained lab GPT on one passage ({len(ids)} tokens): the clearest link is {top['name']} "
                 f"({top['best_head']}, {top['best_weight']:.2f} vs {top['uniform']:.2f} uniform)\n"
                 f"red boxes = the link measured; thumbnails: all {n_heads} heads, H = mean row entropy",
                 fontweight="bold")
    demo.save_figure(fig, "attention_maps.png")

    note = f"; {QUICK_NOTE}" if demo.quick else ""
    demo.say(f"1. Attention maps of the trained lab GPT on a story passage "
             f"(val loss {lab.history.final_val_loss:.2f} nats/token{note}):")
    for link in links:
        ratio = link["best_weight"] / link["uniform"]
        demo.say(f"   {link['name']}: head {link['best_head']} puts {link['best_weight']:.2f} of the "
                 f"attention of {link['query_token']!r} on {link['key_tokens']} ({ratio:.1f}x uniform "
                 f"attention {link['uniform']:.2f}; the mean head gives {link['mean_over_heads']:.2f}).")
    keep = ("name", "query", "keys", "query_token", "key_tokens", "best_head", "best_weight", "uniform",
            "mean_over_heads")
    return {"passage": PASSAGE, "n_tokens": len(ids), "links": [{k: link[k] for k in keep} for link in links],
            "head_entropy_on_passage_nats": entropy}


# ------------------------------------------------------------------------------------------------
# 2. the same links over many fresh stories


LINKS = {"pronoun": "' she'/' he' -> the character's name", "object": "'the X' -> the earlier 'X'",
         "quote": "closing quote -> its opening quote"}


Link = tuple[str, int, list[int]]  # (kind, query token, key tokens)


def story_links(lab: LabModel, n_stories: int, seed: int) -> list[tuple[list[int], list[Link]]]:
    """Fresh stories (drawn from the grammar, not cut from the training text), cut to block_size tokens,
    with every unambiguous link (kind, query token, key tokens) of the kinds in LINKS."""
    rng = random.Random(1_000_003 + seed)
    out = []
    while len(out) < n_stories:
        text, facts = generate_story_with_facts(rng)
        ids = lab.tokenizer.encode(text)[: lab.config.block_size]
        spans = token_byte_spans(lab, ids)
        limit = spans[-1][1]  # the stories are ASCII: byte offsets = character offsets

        links = []
        genders = [c.gender for c in facts.characters]
        main = facts.characters[0]
        if main.gender in ("female", "male") and genders.count(main.gender) == 1:
            pronoun = main.pronouns[0]  # "she" / "he": in this story it can only mean the main character
            names = [m.start() for m in re.finditer(rf"\b{re.escape(main.name)}\b", text)]
            for m in re.finditer(rf"\b({pronoun}|{pronoun.capitalize()})\b", text):
                keys = mentions_before(spans, names, len(main.name), m.start())
                if m.start() < limit and keys:
                    links.append(("pronoun", tokens_in(spans, m.start(), m.start() + 1)[0], keys))
        for thing in facts.things:
            noun = thing.split()[-1]  # "toy car" -> "car"
            mentions = [m.start() for m in re.finditer(rf"\b{re.escape(noun)}\b", text)]
            for m in re.finditer(rf"\bthe {re.escape(thing)}\b", text):
                start = m.end() - len(noun)
                keys = mentions_before(spans, mentions, len(noun), start)
                if start < limit and keys:
                    links.append(("object", tokens_in(spans, start, start + 1)[0], keys))
        for m in re.finditer(r'"[^"]*"', text):
            if m.end() <= limit:
                links.append(("quote", tokens_in(spans, m.end() - 1, m.end())[0],
                              tokens_in(spans, m.start(), m.start() + 1)))
        links = [link for link in links if link[2][-1] < link[1]]  # keys strictly before the query
        if links:
            out.append((ids, links))
    return out


def link_verdict(weight: float, uniform: float) -> str:
    ratio = weight / uniform
    if ratio > 3 and weight > 0.2:
        return "a head follows this link"
    if ratio > 1.5:
        return "only a weak preference, no head that clearly follows this link"
    return "no head follows this link more than uniform attention would"


def reference_heads_experiment(demo: Demo, lab: LabModel, cfg: dict) -> dict:
    """Mean attention weight of every head from a query onto its referent, vs uniform attention."""
    stories = story_links(lab, cfg["n_stories"], demo.seed)
    n_layer, n_head = lab.config.n_layer, lab.config.n_head
    mass = {kind: [] for kind in LINKS}
    uniform = {kind: [] for kind in LINKS}
    for ids, links in stories:
        maps = stacked_maps(lab.model, torch.tensor([ids], device=demo.device))[0].cpu()  # (L*H, T, T)
        for kind, query, keys in links:
            mass[kind].append(maps[:, query, keys].sum(-1))  # (L*H,)
            uniform[kind].append(len(keys) / (query + 1))  # causal row `query` spreads over query + 1 keys
    results = {"n_stories": len(stories)}
    fig, axes = plotting.new_figure(1, 3, figsize=(17, 4.8))
    for ax, kind in zip(axes, LINKS):
        per_head = torch.stack(mass[kind]).mean(0)  # (L*H,)
        best = int(per_head.argmax())
        base = float(np.mean(uniform[kind]))
        results[kind] = dict(n_links=len(mass[kind]), per_head=per_head.view(n_layer, n_head),
                             best_head=head_name(best, n_head), best_weight=float(per_head[best]),
                             uniform=base, mean_over_heads=float(per_head.mean()))
        plotting.heatmap(ax, per_head.view(n_layer, n_head), annotate=True, vmin=0, vmax=1,
                         row_labels=[f"layer {i}" for i in range(n_layer)],
                         col_labels=[f"head {i}" for i in range(n_head)],
                         cbar_label="mean attention weight on the referent")
        ax.set_title(f"{LINKS[kind]} ({len(mass[kind])} links)\nbest {head_name(best, n_head)}: "
                     f"{per_head[best]:.2f}; uniform attention would give {base:.2f}", fontsize=10)
    fig.suptitle(f"Which head looks back at the referent? {len(stories)} fresh stories, trained lab GPT",
                 fontweight="bold")
    demo.save_figure(fig, "reference_heads.png")

    demo.say(f"2. The same links over {len(stories)} fresh stories (not from the training text):")
    for kind in LINKS:
        r = results[kind]
        r["verdict"] = link_verdict(r["best_weight"], r["uniform"])
        demo.say(f"   {LINKS[kind]}: best head {r['best_head']} puts {r['best_weight']:.2f} on the referent, "
                 f"{r['best_weight'] / r['uniform']:.1f}x uniform attention ({r['uniform']:.2f}; "
                 f"{r['n_links']} links) -> {r['verdict']}.")
    if demo.quick:
        demo.say(f"   ({QUICK_NOTE})")
    return results


# ------------------------------------------------------------------------------------------------
# 3. head diversity: entropy and Jensen-Shannon divergence between heads, trained vs untrained


def head_statistics(maps: torch.Tensor, is_punctuation: torch.Tensor) -> dict:
    """maps (B, L*H, T, T), is_punctuation (B, T) bool -> per head: entropy, the weight on the previous
    token / itself / the first token / punctuation, mean distance, and the head-vs-head JSD."""
    rows = slice(1, None)  # row 0 can only look at itself: leave it out of the averages
    on_punctuation = (maps * is_punctuation[:, None, None, :]).sum(-1)  # (B, L*H, T)
    return dict(
        punctuation=on_punctuation[..., rows].mean((0, 2)),
        entropy=attention_entropy(maps)[..., rows].mean((0, 2)),  # (L*H,) nats
        previous=maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, 2)),  # weight on token i - 1
        self=maps.diagonal(dim1=-2, dim2=-1)[..., rows].mean((0, 2)),  # weight on token i itself
        first=maps[..., rows, 0].mean((0, 2)),  # weight on the window's first token (a "sink")
        distance=attention_distance(maps)[..., rows].mean((0, 2)),  # tokens
        jsd=head_divergence(maps, base=2),  # (L*H, L*H) bits
    )


def off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[~torch.eye(matrix.shape[0], dtype=torch.bool)]


def head_diversity_experiment(demo: Demo, lab: LabModel, cfg: dict) -> dict:
    """Are the heads different from each other? Compare the trained model with its untrained init."""
    T = lab.config.block_size
    g = torch.Generator().manual_seed(demo.seed)
    x, _ = get_batch(lab.val_data, cfg["diversity_windows"], T, generator=g, device=demo.device)
    torch.manual_seed(demo.seed)
    untrained = GPT(lab.config).to(demo.device)
    punctuation_ids = [i for i in range(len(lab.tokenizer.vocab))
                       if lab.decode([i]).strip() and not any(c.isalnum() for c in lab.decode([i]))]
    is_punctuation = torch.isin(x, torch.tensor(punctuation_ids, device=x.device)).cpu()  # (B, T)
    # what uniform attention over the past would put on punctuation: its share of the visible keys
    punctuation_uniform = float((is_punctuation.cumsum(-1) / torch.arange(1, T + 1))[:, 1:].mean())
    # ... and on one given key (the previous token, itself, the first token): 1 / (i + 1) at row i
    one_key_uniform = float((1 / torch.arange(2, T + 1, dtype=torch.float64)).mean())
    trained_stats = head_statistics(stacked_maps(lab.model, x).cpu(), is_punctuation)
    untrained_stats = head_statistics(stacked_maps(untrained, x).cpu(), is_punctuation)
    n_head, n_heads = lab.config.n_head, trained_stats["entropy"].numel()
    names = [head_name(i, n_head) for i in range(n_heads)]
    uniform_entropy = float(torch.log(torch.arange(2, T + 1, dtype=torch.float64)).mean())
    jsd = trained_stats["jsd"]
    pairs = off_diagonal(jsd)
    mean_jsd, mean_jsd_init = float(pairs.mean()), float(off_diagonal(untrained_stats["jsd"]).mean())
    masked = jsd + torch.eye(n_heads) * 9  # ignore the diagonal when looking for the closest pair
    a, b = divmod(int(masked.argmin()), n_heads)
    near_duplicates = int((pairs < 0.05).sum()) // 2
    roles = torch.stack([trained_stats[k] for k in ("previous", "self", "first", "punctuation")], 1)

    fig, axes = plotting.new_figure(1, 3, figsize=(19, 5.6))
    xs = np.arange(n_heads)
    axes[0].bar(xs - 0.2, trained_stats["entropy"], 0.4, label="trained")
    axes[0].bar(xs + 0.2, untrained_stats["entropy"], 0.4, label="untrained (init)")
    axes[0].axhline(uniform_entropy, color="gray", ls="--",
                    label=f"uniform over the past ({uniform_entropy:.2f})")
    axes[0].set_xticks(xs, labels=names, rotation=90)
    axes[0].set(xlabel="head", ylabel="mean entropy of a query's attention (nats)")
    axes[0].set_ylim(0, uniform_entropy * 1.3)
    axes[0].legend(loc="upper center", ncol=2)
    ent = trained_stats["entropy"]
    ent0 = untrained_stats["entropy"]
    axes[0].set_title(f"Entropy per head: {ent.min():.2f} to {ent.max():.2f} nats trained,\n"
                      f"{ent0.min():.2f} to {ent0.max():.2f} untrained", fontsize=10)
    plotting.heatmap(axes[1], jsd, row_labels=names, col_labels=names, vmin=0, vmax=1, cmap="magma",
                     cbar_label="Jensen-Shannon divergence (bits, max 1)")
    for boundary in range(n_head, n_heads, n_head):
        axes[1].axhline(boundary - 0.5, color="white", lw=1)
        axes[1].axvline(boundary - 0.5, color="white", lw=1)
    axes[1].set_title(f"Head vs head: mean JSD {mean_jsd:.2f} bits trained vs {mean_jsd_init:.3f} untrained\n"
                      f"closest pair {names[a]}/{names[b]} ({jsd[a, b]:.3f}); white lines separate layers",
                      fontsize=10)
    plotting.heatmap(axes[2], roles, row_labels=names, annotate=True, vmin=0,
                     cbar_label="mean attention weight",
                     col_labels=[f"previous token\n(uniform: {one_key_uniform:.2f})", "itself",
                                 "first token\nof the window",
                                 f"punctuation\n(uniform: {punctuation_uniform:.2f})"])
    axes[2].tick_params(axis="x", rotation=0)
    axes[2].set_title(f"What each head looks at (trained): weight on punctuation\n"
                      f"{roles[:, 3].min():.2f}..{roles[:, 3].max():.2f} vs {punctuation_uniform:.2f} "
                      "for uniform attention", fontsize=10)
    demo.save_figure(fig, "head_diversity.png")

    ratio = mean_jsd / max(mean_jsd_init, 1e-12)
    prev_head, sink_head, punct_head = (int(roles[:, i].argmax()) for i in (0, 2, 3))
    broad_head = int(trained_stats["entropy"].argmax())
    demo.say(f"3. Head diversity over {cfg['diversity_windows']} validation windows of {T} tokens:")
    demo.say(f"   mean JSD between two heads {mean_jsd:.3f} bits trained vs {mean_jsd_init:.4f} untrained "
             f"({ratio:.0f}x); entropy per head {ent.min():.2f}..{ent.max():.2f} nats "
             f"(uniform over the past {uniform_entropy:.2f}); {near_duplicates} near-duplicate pairs "
             "(JSD < 0.05 bits).")
    demo.say(f"   roles: {names[prev_head]} puts {roles[prev_head, 0]:.2f} on the previous token (uniform "
             f"attention: {one_key_uniform:.2f}), "
             f"{names[sink_head]} puts {roles[sink_head, 2]:.2f} on the first token, "
             f"{names[punct_head]} puts "
             f"{roles[punct_head, 3]:.2f} on punctuation (uniform attention: {punctuation_uniform:.2f}), "
             f"{names[broad_head]} is the broadest (entropy {ent[broad_head]:.2f}).")
    if demo.quick:
        demo.say(f"   -> {QUICK_NOTE}.")
    elif ratio > 5 and mean_jsd > 0.1:
        demo.say("   -> the curriculum's 'different heads specialize' holds here: trained heads differ "
                 f"{ratio:.0f}x more from each other than at init"
                 + (f", though {near_duplicates} pairs are near-duplicates." if near_duplicates else "."))
    else:
        demo.say("   -> this run does NOT support 'different heads specialize' by this test: the trained "
                 f"heads differ {ratio:.1f}x more from each other than at init (the test asks for > 5x and "
                 "a mean JSD > 0.1 bits).")
    return {"windows": cfg["diversity_windows"], "heads": names, "uniform_entropy_nats": uniform_entropy,
            "punctuation_uniform": punctuation_uniform, "one_key_uniform": one_key_uniform,
            "trained": {k: v for k, v in trained_stats.items()},
            "untrained": {k: v for k, v in untrained_stats.items() if k != "jsd"},
            "mean_jsd_bits": mean_jsd, "mean_jsd_bits_untrained": mean_jsd_init,
            "closest_pair": [names[a], names[b], float(jsd[a, b])], "near_duplicate_pairs": near_duplicates}


# ------------------------------------------------------------------------------------------------
# 4. causality: a changed token never changes the outputs before it


def max_change(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(B, T, C) twice -> (T,) the largest |a - b| at each position."""
    return (a - b).abs().amax(dim=(0, 2)).double().cpu().numpy()


def causality_experiment(demo: Demo, lab: LabModel) -> dict:
    """Perturb position p: outputs before p must not move (exactly), with the mask; without it they do."""
    g = torch.Generator().manual_seed(demo.seed)
    T, p = 24, 16
    torch.manual_seed(demo.seed)
    mha = MultiHeadAttention(32, 4).double().eval()
    x = torch.randn(1, T, 32, generator=g, dtype=torch.float64)
    changed = x.clone()
    changed[:, p] = torch.randn(32, generator=g, dtype=torch.float64)
    lab_curves = {}
    with torch.no_grad():
        for label, causal in (("causal mask", True), ("no mask", False)):
            lab_curves[label] = max_change(mha(x, causal=causal)[0], mha(changed, causal=causal)[0])

    ids, links = passage_links(lab)
    q = links[1]["query"]  # perturb the second ' ball' of the passage: 'the ball' -> 'the <other>'
    idx = torch.tensor([ids], device=demo.device)
    other = idx.clone()
    other[0, q] = lab.tokenizer.encode(" dog")[0]
    no_mask = GPT(replace(lab.config, causal=False)).to(demo.device).eval()
    no_mask.load_state_dict(lab.model.state_dict())  # the same trained weights, the mask removed
    gpt_curves = {}
    with torch.no_grad():
        for label, model in (("trained GPT (causal)", lab.model), ("same weights, mask removed", no_mask)):
            gpt_curves[label] = max_change(model(idx)[0], model(other)[0])

    fig, axes = plotting.new_figure(1, 2, figsize=(13, 4.6))
    for ax, curves, pos, what in ((axes[0], lab_curves, p, "MultiHeadAttention output (float64)"),
                                  (axes[1], gpt_curves, q, "next-token logits")):
        for i, (label, ys) in enumerate(curves.items()):
            ax.plot(np.arange(len(ys)), ys, marker="o", ms=3.5, label=label, color=plotting.PALETTE[i])
        ax.axvline(pos, color="gray", ls="--")
        ax.set_yscale("symlog", linthresh=1e-12)  # linear around 0, so an exact 0 is drawn as 0
        ax.set_ylim(0, 10)
        ax.set(xlabel="position", ylabel=f"max |change| of the {what}")
        ax.legend(loc="center left")
    before = {k: float(v[:p].max()) for k, v in lab_curves.items()}
    gpt_before = {k: float(v[:q].max()) for k, v in gpt_curves.items()}
    axes[0].set_title(f"Lab attention, random input, position {p} changed:\nbefore it max |change| = "
                      f"{before['causal mask']:.1g} with the mask, {before['no mask']:.2g} without",
                      fontsize=10)
    axes[1].set_title(f"Lab GPT on the passage, 'the ball' -> 'the dog' at position {q}:\n"
                      f"before it max |change| = {gpt_before['trained GPT (causal)']:.1g} with the mask, "
                      f"{gpt_before['same weights, mask removed']:.2g} without", fontsize=10)
    demo.save_figure(fig, "causality.png")

    causal_ok = before["causal mask"] == 0 and gpt_before["trained GPT (causal)"] == 0
    demo.say(f"4. Causality: change one token, measure every position's output. Before the change: max "
             f"|change| {before['causal mask']:.1g} (lab attention) and "
             f"{gpt_before['trained GPT (causal)']:.1g} (trained GPT) with the mask; {before['no mask']:.2g} "
             f"and {gpt_before['same weights, mask removed']:.2g} without.")
    if causal_ok:
        demo.say("   -> with the mask the past is bit-for-bit unchanged: the future cannot leak backwards.")
    else:
        demo.say("   -> outputs before the change moved despite the mask: causality is broken!")
    return {"lab_attention": {"changed_position": p, "max_change": lab_curves, "max_change_before": before},
            "gpt": {"changed_position": q, "max_change": gpt_curves, "max_change_before": gpt_before}}


# ------------------------------------------------------------------------------------------------
# 5. softmax saturation vs head_dim


def softmax_saturation(head_dim: int, n_rows: int, n_keys: int, generator: torch.Generator) -> dict:
    """Random q, k with unit-variance entries: the variance of q.k and, with and without 1/sqrt(d), the
    softmax's entropy, its largest weight and how much gradient it passes back to its scores."""
    raw = []
    for start in range(0, n_rows, 256):  # chunks: 256 queries x n_keys keys x head_dim at a time
        n = min(256, n_rows - start)
        q = torch.randn(n, 1, head_dim, generator=generator)
        k = torch.randn(n, n_keys, head_dim, generator=generator)
        raw.append((q * k).sum(-1))  # (n, n_keys): q.k, a sum of head_dim unit-variance products
    raw = torch.cat(raw).double()  # (n_rows, n_keys)
    upstream = torch.randn(n_rows, n_keys, generator=generator, dtype=torch.float64)  # dLoss/dweights
    out = {"var_qk": float(raw.var())}
    for label, scale in (("scaled", 1 / math.sqrt(head_dim)), ("unscaled", 1.0)):
        scores = (raw * scale).requires_grad_(True)
        weights = torch.softmax(scores, dim=-1)
        (weights * upstream).sum().backward()
        w = weights.detach()
        # softmax's Jacobian is J = diag(w) - w w^T, so the gradient it passes back is J g = w * (g - w.g);
        # it vanishes when w is one-hot. ||J||_F^2 = sum w^2 - 2 sum w^3 + (sum w^2)^2 per query.
        expected = w * (upstream - (w * upstream).sum(-1, keepdim=True))
        w2 = (w * w).sum(-1)
        jacobian = (w2 - 2 * (w**3).sum(-1) + w2**2).clamp_min(0).sqrt()  # (n_rows,)
        out[label] = dict(entropy=float(attention_entropy(w).mean()),
                          max_weight=float(w.max(-1).values.mean()), jacobian_norm=float(jacobian.mean()),
                          dead_fraction=float((jacobian < 0.01).double().mean()),
                          grad_norm=float(scores.grad.norm(dim=-1).mean()),
                          autograd_vs_formula=float((scores.grad - expected).abs().max()))
    return out


def saturation_experiment(demo: Demo, cfg: dict) -> dict:
    g = torch.Generator().manual_seed(demo.seed)
    dims, n_keys = cfg["sat_dims"], cfg["sat_keys"]
    rows = [softmax_saturation(d, cfg["sat_rows"], n_keys, g) for d in dims]
    series = {label: {key: [r[label][key] for r in rows] for key in rows[0][label]}
              for label in ("scaled", "unscaled")}
    sc, un = series["scaled"], series["unscaled"]
    var_qk = [r["var_qk"] for r in rows]
    slope = float(np.polyfit(np.log(dims), np.log(var_qk), 1)[0])

    fig, axes = plotting.new_figure(1, 3, figsize=(16, 4.8))
    plotting.line_plot(axes[0], dims, {"var(q.k)": var_qk, "var(q.k / sqrt(d))": np.array(var_qk) / dims},
                       logx=True, logy=True, xlabel="head_dim d (log)", ylabel="variance of the score (log)")
    axes[0].plot(dims, dims, color="gray", ls=":", label="d (theory)")
    axes[0].legend()
    axes[0].set_title(f"var(q.k) grows like d^{slope:.2f}:\nthe raw scores spread by sqrt(d)", fontsize=10)
    styles = {"without 1/sqrt(d)": {"ls": "--"}}
    plotting.line_plot(axes[1], dims, {"with 1/sqrt(d)": sc["entropy"], "without 1/sqrt(d)": un["entropy"]},
                       logx=True, xlabel="head_dim d (log)", ylabel="softmax entropy (nats)", styles=styles)
    axes[1].axhline(math.log(n_keys), color="gray", ls=":", label=f"uniform over {n_keys} keys")
    axes[1].legend()
    axes[1].set_title(f"At d={dims[-1]}: entropy {sc['entropy'][-1]:.2f} nats with the scale,\n"
                      f"{un['entropy'][-1]:.2f} without (mean largest weight {un['max_weight'][-1]:.2f})",
                      fontsize=10)
    jacobians = {"with 1/sqrt(d)": sc["jacobian_norm"], "without 1/sqrt(d)": un["jacobian_norm"]}
    plotting.line_plot(axes[2], dims, jacobians,
                       logx=True, logy=True, xlabel="head_dim d (log)",
                       ylabel="||d softmax / d scores||_F per query (log)", styles=styles)
    axes[2].set_title(f"Gradient through softmax at d={dims[-1]}: "
                      f"{100 * un['dead_fraction'][-1]:.0f}% of queries\n"
                      f"pass back almost none (||J|| < 0.01) without the scale, "
                      f"{100 * sc['dead_fraction'][-1]:.0f}% with it", fontsize=10)
    fig.suptitle(f"Softmax saturation: {cfg['sat_rows']} random unit-variance queries x {n_keys} keys "
                 "per head_dim", fontweight="bold")
    demo.save_figure(fig, "saturation.png")

    autograd_error = max(max(sc["autograd_vs_formula"]), max(un["autograd_vs_formula"]))
    demo.say(f"5. Softmax saturation ({n_keys} keys, random q, k with unit-variance entries): var(q.k) "
             f"grows like d^{slope:.2f} (theory: d^1); divided by sqrt(d) it stays "
             f"{min(np.array(var_qk) / dims):.2f}..{max(np.array(var_qk) / dims):.2f}.")
    demo.say(f"   without 1/sqrt(d), d={dims[0]} -> {dims[-1]}: entropy {un['entropy'][0]:.2f} -> "
             f"{un['entropy'][-1]:.2f} nats, largest weight {un['max_weight'][0]:.2f} -> "
             f"{un['max_weight'][-1]:.2f}, mean ||J||_F "
             f"{un['jacobian_norm'][0]:.3f} -> {un['jacobian_norm'][-1]:.3f}, queries with ~no gradient "
             f"{100 * un['dead_fraction'][0]:.0f}% -> {100 * un['dead_fraction'][-1]:.0f}%; with it: entropy "
             f"{min(sc['entropy']):.2f}..{max(sc['entropy']):.2f}, ||J||_F {min(sc['jacobian_norm']):.3f}.."
             f"{max(sc['jacobian_norm']):.3f} at every d.")
    saturates = un["max_weight"][-1] > 0.8 and un["dead_fraction"][-1] > 0.5 > sc["dead_fraction"][-1]
    demo.say("   -> " + (f"the curriculum's 'scaling prevents saturation' holds: without the scale "
                         f"{100 * un['dead_fraction'][-1]:.0f}% of the queries at d={dims[-1]} get (almost) "
                         "no gradient."
                         if saturates else "this run does not show saturation without the scale."))
    demo.say(f"   (autograd's gradient = the formula w * (g - w.g) to {autograd_error:.1g})")
    return {"head_dims": dims, "n_keys": n_keys, "rows": cfg["sat_rows"], "var_qk": var_qk,
            "var_qk_slope": slope, "scaled": sc, "unscaled": un}


# ------------------------------------------------------------------------------------------------
# 6. breaking it: train without the scale and without the mask


def generation_time_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, stride: int = 1) -> float:
    """The next-token loss when position t sees tokens 0..t only, as in generation: one run per prefix,
    for every `stride`-th position t.

    For a causal model this equals the ordinary (teacher-forced) loss; a model trained without the mask
    loses the future tokens it learned to read."""
    with torch.no_grad():
        model.eval()
        losses = [F.cross_entropy(model(x[:, : t + 1])[0][:, -1], y[:, t], reduction="none")
                  for t in range(0, x.shape[1], stride)]
        return float(torch.stack(losses).mean())


def judge_nll(judge: GPT, prompt_len: int, ids: torch.Tensor) -> float:
    """Mean NLL (nats/token) of the generated tokens ids[:, prompt_len:] under the `judge` model."""
    with torch.no_grad():
        ids = ids[:, : judge.config.block_size]
        logits, _ = judge(ids[:, :-1])
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T - 1)
        return float(nll[:, prompt_len - 1:].mean())


def word_statistics(texts: list[str], words: set[str]) -> dict:
    """The share of generated words that are words of the corpus, and of words that repeat the word before."""
    real = repeats = total = 0
    for text in texts:
        found = re.findall(r"[A-Za-z]+", text)
        real += sum(w in words for w in found)
        repeats += sum(a == b for a, b in zip(found, found[1:]))
        total += len(found)
    return {"real_word_fraction": real / max(1, total), "repeat_fraction": repeats / max(1, total)}


def token_digest(ids: torch.Tensor) -> str:
    """The SHA-256 of a token stream: the cache key of a model trained on it (by content, whatever the
    corpus and its file name)."""
    return hashlib.sha256(ids.cpu().numpy().tobytes()).hexdigest()[:16]


def train_variants(demo: Demo, lab: LabModel, cfg: dict) -> tuple[dict, dict, dict]:
    """Train the baseline and the two broken GPTs (cached); a break flag doubles the steps of all three,
    so that they stay comparable. Returns (models, histories, steps) keyed by variant."""
    steps = cfg["break_steps"] * (2 if demo.args.no_scale or demo.args.no_mask else 1)
    # RoPE: relative positions make the no-mask shortcut "look one token ahead" the same rule at every
    # position, so the cheat can be learned within the few steps of this experiment
    base = replace(lab.config, block_size=cfg["break_block"], n_layer=2, n_head=2, d_model=64, pos="rope")
    models, histories, steps_of = {}, {}, {}
    for label, change in VARIANTS.items():
        config = replace(base, **change)
        recipe = TrainConfig(steps=steps, batch_size=cfg["break_batch"], block_size=cfg["break_block"],
                             lr=3e-3, warmup_steps=steps // 10, eval_iters=cfg["eval_iters"],
                             eval_interval=max(1, steps // (4 if demo.quick else 10)))
        key = {"what": "lesson03-break", "config": config.cache_key(), "train": asdict(recipe),
               "seed": demo.seed,
               "data": {"train": token_digest(lab.train_data), "val": token_digest(lab.val_data)}}

        def build(config=config):
            torch.manual_seed(demo.seed)
            return GPT(config)

        def fit(model, recipe=recipe, label=label):
            return train(model, lab.train_data, lab.val_data, recipe, device=demo.device, seed=demo.seed,
                         desc=f"train {label}")

        model, history, _ = cached_training(key, build, fit)
        models[label], histories[label], steps_of[label] = model.to(demo.device).eval(), history, steps
    return models, histories, steps_of


def evaluate_variant(model: GPT, lab: LabModel, x: torch.Tensor, y: torch.Tensor, cfg: dict,
                     words: set[str], seed: int) -> tuple[dict, list[str]]:
    """Losses with and without the future, sample quality, attention sharpness of one trained variant."""
    stride = cfg["honest_stride"]
    with torch.no_grad():  # the ordinary loss on the same positions: every position sees the whole window
        logits = model(x)[0][:, ::stride]  # (B, T / stride, vocab)
        forced = float(F.cross_entropy(logits.transpose(1, 2), y[:, ::stride]))
    prompt = lab.encode(PROMPT, device=x.device).repeat(cfg["n_samples"], 1)
    ids = model.generate(prompt, cfg["sample_tokens"], temperature=0.8,
                         generator=torch.Generator(device=x.device).manual_seed(seed))
    texts = [lab.decode(row[prompt.shape[1]:]) for row in ids]
    maps = stacked_maps(model, x).cpu()
    stats = dict(val_loss_teacher_forced=forced,
                 val_loss_generation_time=generation_time_loss(model, x, y, stride),
                 judge_nll=judge_nll(lab.model, prompt.shape[1], ids), **word_statistics(texts, words),
                 attention_entropy=float(attention_entropy(maps)[..., 1:].mean()),
                 attention_max_weight=float(maps.max(-1).values[..., 1:].mean()))
    return stats, texts


def break_training_experiment(demo: Demo, lab: LabModel, cfg: dict) -> dict:
    """Small GPTs on the stories: baseline, attn_scale=1.0 (no scale), causal=False (no mask)."""
    models, histories, steps_of = train_variants(demo, lab, cfg)
    g = torch.Generator().manual_seed(demo.seed + 1)
    x, y = get_batch(lab.val_data, cfg["honest_windows"], cfg["break_block"], generator=g, device=demo.device)
    words = set(re.findall(r"[A-Za-z]+", lab.decode(lab.train_data)))
    with torch.no_grad():
        real_nll = float(lab.model(x, y)[1])
    stats, samples = {}, {}
    for label, model in models.items():
        stats[label], samples[label] = evaluate_variant(model, lab, x, y, cfg, words, demo.seed)
        stats[label].update(steps=steps_of[label], seconds=histories[label].wall_time_s,
                            final_train_loss=float(np.mean(histories[label].train_loss[-10:])))
    counts = torch.bincount(lab.train_data, minlength=lab.config.vocab_size).double()
    freqs = counts[counts > 0] / counts.sum()
    unigram = float(-(freqs * freqs.log()).sum())  # the loss of a model that knows token frequencies only
    plot_break_training(demo, histories, stats, real_nll, unigram)

    labels = list(VARIANTS)
    bl, ns, nm = (stats[k] for k in labels)
    steps_text = ", ".join(f"{k} {v}" for k, v in steps_of.items())
    demo.say(f"6. Breaking it: 2-layer GPTs on the stories (training steps: {steps_text}):")
    for label in labels:
        s = stats[label]
        demo.say(f"   {label:>9}: val loss {s['val_loss_teacher_forced']:.2f} with the whole window visible, "
                 f"{s['val_loss_generation_time']:.2f} with only the past; samples: "
                 f"{100 * s['real_word_fraction']:.0f}% corpus words, {100 * s['repeat_fraction']:.0f}% "
                 f"repeats, {s['judge_nll']:.2f} nats/token under the lab GPT; attention entropy "
                 f"{s['attention_entropy']:.2f} nats, mean largest weight {s['attention_max_weight']:.2f}")
    demo.say(f"   (real validation text: {real_nll:.2f} nats/token under the lab GPT; unigram entropy "
             f"{unigram:.2f})")
    gain = bl["val_loss_teacher_forced"] - nm["val_loss_teacher_forced"]
    if nm["val_loss_teacher_forced"] < bl["val_loss_teacher_forced"] < nm["val_loss_generation_time"]:
        evidence = []
        if nm["judge_nll"] > bl["judge_nll"] + 0.5:
            evidence.append(f"its samples cost {nm['judge_nll']:.2f} nats/token under the lab GPT vs "
                            f"{bl['judge_nll']:.2f}")
        if nm["repeat_fraction"] > bl["repeat_fraction"] + 0.2:
            evidence.append(f"{100 * nm['repeat_fraction']:.0f}% of its generated words repeat the word "
                            f"before (baseline {100 * bl['repeat_fraction']:.0f}%)")
        demo.say(f"   -> no mask: its loss looks {gain:.2f} nats better than the baseline's because it reads "
                 f"the next token; with only the past to read it scores "
                 f"{nm['val_loss_generation_time']:.2f} vs {bl['val_loss_generation_time']:.2f}"
                 + ("; " + " and ".join(evidence) + ": a low loss, a useless generator." if evidence else
                    "; its samples are not measurably worse than the baseline's here."))
    else:
        demo.say("   -> no mask: this run does not show the cheat (the no-mask loss is not below the "
                 "baseline's, or it does not get worse without the future).")
    diff = ns["val_loss_teacher_forced"] - bl["val_loss_teacher_forced"]
    sharper = "sharper" if ns["attention_entropy"] < bl["attention_entropy"] else "not sharper"
    saturated = "saturated" if ns["attention_max_weight"] > 0.9 else "not saturated"
    demo.say(f"   -> no scale: val loss {diff:+.2f} nats vs the baseline; its attention is {sharper} "
             f"(entropy {ns['attention_entropy']:.2f} vs {bl['attention_entropy']:.2f} nats) but {saturated} "
             f"(mean "
             f"largest weight {ns['attention_max_weight']:.2f}): at head_dim 32 training "
             + ("did not suffer from the missing 1/sqrt(d)." if diff < 0.05 else
                f"lost {diff:.2f} nats without 1/sqrt(d)."))
    if demo.quick:
        demo.say(f"   ({QUICK_NOTE}; the small GPTs trained {steps_of['baseline']} steps)")
    focus = [k for k, flag in (("no scale", demo.args.no_scale), ("no mask", demo.args.no_mask)) if flag]
    for label in (focus + ["baseline"]) if focus else labels:
        for text in samples[label][: 3 if focus else 1]:
            demo.say(f"   sample {label:>9}: {PROMPT + text!r}"[:400])
    return {"steps": steps_of, "stats": stats, "samples": samples, "real_text_judge_nll": real_nll,
            "unigram_entropy": unigram, "histories": {k: {"eval_steps": h.eval_steps, "val_loss": h.val_loss}
                                                      for k, h in histories.items()}}


def plot_break_training(demo: Demo, histories: dict, stats: dict, real_nll: float, unigram: float) -> None:
    labels = list(VARIANTS)
    bl, ns, nm = (stats[k] for k in labels)
    xs = np.arange(len(labels))
    fig, axes = plotting.new_figure(2, 2, figsize=(13, 9.5))
    ax = axes[0, 0]
    for i, label in enumerate(labels):
        h = histories[label]
        smooth = np.convolve(h.train_loss, np.ones(10) / 10, mode="valid")  # 10-step moving average
        ax.plot(np.arange(len(smooth)) + 9, smooth, color=plotting.PALETTE[i], lw=1.2,
                label=f"{label} (train)")
        ax.plot(h.eval_steps, h.val_loss, "o--", color=plotting.PALETTE[i], ms=4, label=f"{label} (val)")
    ax.set_yscale("log")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.1, 0.2, ... not 10^-1, 2x10^-1
    ax.set(xlabel="training step", ylabel="loss (nats/token, log)")
    ax.legend(fontsize=8)
    ax.set_title(f"Validation loss: baseline {bl['val_loss_teacher_forced']:.2f}, no scale "
                 f"{ns['val_loss_teacher_forced']:.2f}, no mask {nm['val_loss_teacher_forced']:.2f}",
                 fontsize=10)

    ax = axes[0, 1]
    forced = [stats[k]["val_loss_teacher_forced"] for k in labels]
    honest = [stats[k]["val_loss_generation_time"] for k in labels]
    for offset, values, text in ((-0.2, forced, "the whole window visible (training view)"),
                                 (0.2, honest, "only the past visible (generation)")):
        ax.bar_label(ax.bar(xs + offset, values, 0.4, label=text), fmt="%.2f", fontsize=8)
    ax.axhline(unigram, color="gray", ls=":", label=f"token frequencies only ({unigram:.2f})")
    ax.set_xticks(xs, labels=labels)
    ax.set(ylabel="validation loss (nats/token)", ylim=(0, 1.35 * max(honest + forced + [unigram])))
    ax.legend(fontsize=8, loc="upper left")
    cheat = nm["val_loss_teacher_forced"] < bl["val_loss_teacher_forced"] < nm["val_loss_generation_time"]
    ax.set_title(("Without the mask the loss is a cheat: " if cheat else "No-mask loss: ")
                 + f"{nm['val_loss_teacher_forced']:.2f} with the future visible,\n"
                 f"{nm['val_loss_generation_time']:.2f} with only the past (baseline "
                 f"{bl['val_loss_generation_time']:.2f})", fontsize=10)

    ax = axes[1, 0]
    real = [100 * stats[k]["real_word_fraction"] for k in labels]
    repeated = [100 * stats[k]["repeat_fraction"] for k in labels]
    for offset, values, text in ((-0.2, real, "words of the corpus"),
                                 (0.2, repeated, "the same word as the one before")):
        ax.bar_label(ax.bar(xs + offset, values, 0.4, label=text), fmt="%.0f%%", fontsize=8)
    ax.set_xticks(xs, labels=labels)
    ax.set(ylabel="% of the generated words", ylim=(0, 125))
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.set_title(f"Samples (temperature 0.8): corpus words {real[2]:.0f}% without the mask vs "
                 f"{real[0]:.0f}%,\nrepeated words {repeated[2]:.0f}% vs {repeated[0]:.0f}%", fontsize=10)

    judged = [stats[k]["judge_nll"] for k in labels] + [real_nll]
    plotting.bar_plot(axes[1, 1], labels + ["real text"], judged,
                      ylabel="NLL under the trained lab GPT (nats/token)", fmt="{:.2f}")
    axes[1, 1].set_title(f"The lab GPT judges the samples: {nm['judge_nll']:.2f} nats/token without\n"
                         f"the mask, {bl['judge_nll']:.2f} for the baseline, {real_nll:.2f} for real text",
                         fontsize=10)
    fig.suptitle("Breaking attention while training a 2-layer GPT (d_model 64, 2 heads of 32, RoPE) "
                 "on the stories", fontweight="bold")
    demo.save_figure(fig, "break_training.png")


def main(argv: list[str] | None = None) -> None:
    parser = demo_parser(__doc__)
    parser.add_argument("--no-scale", action="store_true", help="focus on training without 1/sqrt(head_dim)")
    parser.add_argument("--no-mask", action="store_true", help="focus on training without the causal mask")
    parser.add_argument("--corpus", type="corpus", default="stories",
                        help="lab model's text: stories (default), python-docs, python-code or a file")
    args = parser.parse_args(argv)
    load_libraries()
    demo = Demo(args, lesson_file=__file__)
    cfg = settings(demo.quick)
    lab = lab_model("gpt2", quick=demo.quick, device=demo.device)
    demo.results["lab_model"] = {"val_loss": lab.history.final_val_loss, "steps": len(lab.history.steps),
                                 "cache_hit": lab.cache_hit, "config": lab.config}
    demo.results["attention_maps"] = attention_maps_experiment(demo, lab)
    demo.results["reference_heads"] = reference_heads_experiment(demo, lab, cfg)
    demo.results["head_diversity"] = head_diversity_experiment(demo, lab, cfg)
    demo.results["causality"] = causality_experiment(demo, lab)
    demo.results["saturation"] = saturation_experiment(demo, cfg)
    demo.results["break_training"] = break_training_experiment(demo, lab, cfg)
    demo.finish()


if __name__ == "__main__":
    main()
