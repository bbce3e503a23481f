"""Lesson 03's experiments: each function measures one thing and returns numbers (no plotting, no
printing); `demo.py` runs them in order, draws each one's figure and prints its verdict.

    link_weights          1. every head of the trained lab GPT on one passage, and three links in it
    reference_head_weights 2. the same kinds of link over many fresh stories
    head_diversity        3. entropy, head-vs-head Jensen-Shannon divergence, roles; trained vs untrained
    causality_curves      4. change one token: how much every output position moves, with and without mask
    saturation_series     5. softmax saturation vs head_dim, with and without 1/sqrt(d)
    train_variants, evaluate_variant  6. small GPTs trained without the scale / without the mask
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.nn.functional as F

from llmlab.attention_basics.attention import (
    MultiHeadAttention,
    attention_distance,
    attention_entropy,
    head_divergence,
)
from llmlab.kv_cache import generate
from llmlab.transformer_block import GPT, attention_maps
from llmlab.transformer_block.pretrained import LabModel
from llmlab.utils import TrainConfig, cached_training, get_batch, train
from llmlab.utils.stories import generate_story_with_facts

PASSAGE = ('Once upon a time, there was a girl named Mia who lived near the river. Mia had a red ball, '
           'and she took it everywhere. One day, Tom kicked the ball, and it rolled away. '
           '"Where is my ball?" she asked.')
PROMPT = "Once upon a time, there was a girl named"
# experiment 6: the GPTConfig changes of each variant
VARIANTS = {"baseline": {}, "no scale": {"attn_scale": 1.0}, "no mask": {"causal": False}}

LINKS = {"pronoun": "' she'/' he' -> the character's name", "object": "'the X' -> the earlier 'X'",
         "quote": "closing quote -> its opening quote"}


Link = tuple[str, int, list[int]]  # (kind, query token, key tokens)


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


def link_weights(lab: LabModel, device) -> dict:
    """Every head's attention on PASSAGE; for each link the head that puts the most weight on it."""
    ids, links = passage_links(lab)
    maps = stacked_maps(lab.model, torch.tensor([ids], device=device))[0].cpu()  # (L*H, T, T)
    n_head, tokens = lab.config.n_head, [token_label(lab.decode([i])) for i in ids]
    for link in links:
        mass = maps[:, link["query"], link["keys"]].sum(-1)  # (L*H,): weight of each head on the keys
        best = int(mass.argmax())
        link.update(best_head=head_name(best, n_head), best_index=best, best_weight=float(mass[best]),
                    mean_over_heads=float(mass.mean()),
                    uniform=len(link["keys"]) / (link["query"] + 1),  # causal row q spreads over q + 1 keys
                    query_token=tokens[link["query"]], key_tokens=[tokens[k] for k in link["keys"]])
    entropy = attention_entropy(maps).mean(-1)  # (L*H,) nats, mean over the query rows
    keep = ("name", "query", "keys", "query_token", "key_tokens", "best_head", "best_weight", "uniform",
            "mean_over_heads")  # what results.json keeps of each link
    return dict(ids=ids, links=links, maps=maps, tokens=tokens, entropy=entropy,
                summary=[{k: link[k] for k in keep} for link in links])


# ------------------------------------------------------------------------------------------------
# 2. the same links over many fresh stories


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


def reference_head_weights(lab: LabModel, n_stories: int, seed: int, device) -> dict:
    """Per link kind: the mean attention weight of every head from a query onto its referent, (L, H),
    and what uniform attention would give."""
    stories = story_links(lab, n_stories, seed)
    n_layer, n_head = lab.config.n_layer, lab.config.n_head
    mass = {kind: [] for kind in LINKS}
    uniform = {kind: [] for kind in LINKS}
    for ids, links in stories:
        maps = stacked_maps(lab.model, torch.tensor([ids], device=device))[0].cpu()  # (L*H, T, T)
        for kind, query, keys in links:
            mass[kind].append(maps[:, query, keys].sum(-1))  # (L*H,)
            uniform[kind].append(len(keys) / (query + 1))  # causal row `query` spreads over query + 1 keys
    results = {"n_stories": len(stories)}
    for kind in LINKS:
        per_head = torch.stack(mass[kind]).mean(0)  # (L*H,)
        best = int(per_head.argmax())
        results[kind] = dict(n_links=len(mass[kind]), per_head=per_head.view(n_layer, n_head),
                             best_head=head_name(best, n_head), best_weight=float(per_head[best]),
                             uniform=float(np.mean(uniform[kind])), mean_over_heads=float(per_head.mean()))
    return results


def link_verdict(weight: float, uniform: float) -> str:
    """Does a head follow a link? Its weight on the referent against what uniform attention would give."""
    ratio = weight / uniform
    if ratio > 3 and weight > 0.2:
        return "a head follows this link"
    if ratio > 1.5:
        return "only a weak preference, no head that clearly follows this link"
    return "no head follows this link more than uniform attention would"


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


def head_diversity(lab: LabModel, n_windows: int, seed: int, device) -> dict:
    """Are the heads different from each other? The trained model's head statistics beside its untrained
    init's, on `n_windows` validation windows, with what uniform attention would give."""
    T = lab.config.block_size
    g = torch.Generator().manual_seed(seed)
    x, _ = get_batch(lab.val_data, n_windows, T, generator=g, device=device)
    torch.manual_seed(seed)
    untrained = GPT(lab.config).to(device)
    punctuation_ids = [i for i in range(len(lab.tokenizer.vocab))
                       if lab.decode([i]).strip() and not any(c.isalnum() for c in lab.decode([i]))]
    is_punctuation = torch.isin(x, torch.tensor(punctuation_ids, device=x.device)).cpu()  # (B, T)
    trained = head_statistics(stacked_maps(lab.model, x).cpu(), is_punctuation)
    n_heads = trained["entropy"].numel()
    jsd = trained["jsd"]
    untrained_stats = head_statistics(stacked_maps(untrained, x).cpu(), is_punctuation)
    masked = jsd + torch.eye(n_heads) * 9  # ignore the diagonal when looking for the closest pair
    pairs = off_diagonal(jsd)
    roles = torch.stack([trained[k] for k in ("previous", "self", "first", "punctuation")], 1)
    return dict(
        T=T, trained=trained, untrained=untrained_stats,
        names=[head_name(i, lab.config.n_head) for i in range(n_heads)],
        # what uniform attention over the past would put on punctuation: its share of the visible keys
        punctuation_uniform=float((is_punctuation.cumsum(-1) / torch.arange(1, T + 1))[:, 1:].mean()),
        # ... and on one given key (the previous token, itself, the first token): 1 / (i + 1) at row i
        one_key_uniform=float((1 / torch.arange(2, T + 1, dtype=torch.float64)).mean()),
        uniform_entropy=float(torch.log(torch.arange(2, T + 1, dtype=torch.float64)).mean()),
        mean_jsd=float(pairs.mean()), mean_jsd_init=float(off_diagonal(untrained_stats["jsd"]).mean()),
        closest=divmod(int(masked.argmin()), n_heads), near_duplicates=int((pairs < 0.05).sum()) // 2,
        jsd_ratio=float(pairs.mean()) / max(float(off_diagonal(untrained_stats["jsd"]).mean()), 1e-12),
        roles=roles, leaders=dict(  # the head that puts the most weight on each role, and the broadest head
            previous=int(roles[:, 0].argmax()), first=int(roles[:, 2].argmax()),
            punctuation=int(roles[:, 3].argmax()), broadest=int(trained["entropy"].argmax())))


# ------------------------------------------------------------------------------------------------
# 4. causality: a changed token never changes the outputs before it


def max_change(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(B, T, C) twice -> (T,) the largest |a - b| at each position."""
    return (a - b).abs().amax(dim=(0, 2)).double().cpu().numpy()


def causality_curves(lab: LabModel, seed: int, device) -> dict:
    """Perturb one position: the max |change| of every position's output, for lesson 03's attention on
    random input and for the trained GPT on the passage, each with and without the causal mask."""
    g = torch.Generator().manual_seed(seed)
    T, p = 24, 16
    torch.manual_seed(seed)
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
    idx = torch.tensor([ids], device=device)
    other = idx.clone()
    other[0, q] = lab.tokenizer.encode(" dog")[0]
    no_mask = GPT(replace(lab.config, causal=False)).to(device).eval()
    no_mask.load_state_dict(lab.model.state_dict())  # the same trained weights, the mask removed
    gpt_curves = {}
    with torch.no_grad():
        for label, model in (("trained GPT (causal)", lab.model), ("same weights, mask removed", no_mask)):
            gpt_curves[label] = max_change(model(idx)[0], model(other)[0])
    before = {k: float(v[:p].max()) for k, v in lab_curves.items()}  # the largest change before the change
    gpt_before = {k: float(v[:q].max()) for k, v in gpt_curves.items()}
    return dict(p=p, lab_curves=lab_curves, q=q, gpt_curves=gpt_curves, before=before, gpt_before=gpt_before,
                causal_ok=before["causal mask"] == 0 and gpt_before["trained GPT (causal)"] == 0)


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


def saturation_series(dims: list[int], n_rows: int, n_keys: int, seed: int) -> dict:
    """`softmax_saturation` at every head_dim: var(q.k), its slope on log-log axes, and each statistic
    of the scaled and unscaled softmax as a list over `dims`."""
    g = torch.Generator().manual_seed(seed)
    rows = [softmax_saturation(d, n_rows, n_keys, g) for d in dims]
    series = {label: {key: [r[label][key] for r in rows] for key in rows[0][label]}
              for label in ("scaled", "unscaled")}
    var_qk = [r["var_qk"] for r in rows]
    autograd_error = max(max(series[label]["autograd_vs_formula"]) for label in ("scaled", "unscaled"))
    sc, un = series["scaled"], series["unscaled"]  # saturation: at the largest d, without the scale only
    saturates = un["max_weight"][-1] > 0.8 and un["dead_fraction"][-1] > 0.5 > sc["dead_fraction"][-1]
    return dict(var_qk=var_qk, slope=float(np.polyfit(np.log(dims), np.log(var_qk), 1)[0]),
                var_qk_scaled=np.array(var_qk) / dims, autograd_error=autograd_error,
                saturates=saturates,
                scaled=series["scaled"], unscaled=series["unscaled"])


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


def train_variants(lab: LabModel, cfg: dict, *, steps: int, seed: int, device,
                   quick: bool) -> tuple[dict, dict]:
    """Train the baseline and the two broken GPTs of VARIANTS for `steps` steps (cached).
    Returns (models, histories) keyed by variant."""
    # RoPE: relative positions make the no-mask shortcut "look one token ahead" the same rule at every
    # position, so the cheat can be learned within the few steps of this experiment
    base = replace(lab.config, block_size=cfg["break_block"], n_layer=2, n_head=2, d_model=64, pos="rope")
    models, histories = {}, {}
    for label, change in VARIANTS.items():
        config = replace(base, **change)
        recipe = TrainConfig(steps=steps, batch_size=cfg["break_batch"], block_size=cfg["break_block"],
                             lr=3e-3, warmup_steps=steps // 10, eval_iters=cfg["eval_iters"],
                             eval_interval=max(1, steps // (4 if quick else 10)))
        key = {"what": "lesson03-break", "config": config.cache_key(), "train": asdict(recipe),
               "seed": seed,
               "data": {"train": token_digest(lab.train_data), "val": token_digest(lab.val_data)}}

        def build(config=config):
            torch.manual_seed(seed)
            return GPT(config)

        def fit(model, recipe=recipe, label=label):
            return train(model, lab.train_data, lab.val_data, recipe, device=device, seed=seed,
                         desc=f"train {label}")

        model, history, _ = cached_training(key, build, fit)
        models[label], histories[label] = model.to(device).eval(), history
    return models, histories


def evaluate_variant(model: GPT, lab: LabModel, x: torch.Tensor, y: torch.Tensor, cfg: dict,
                     words: set[str], seed: int) -> tuple[dict, list[str]]:
    """Losses with and without the future, sample quality, attention sharpness of one trained variant."""
    stride = cfg["honest_stride"]
    with torch.no_grad():  # the ordinary loss on the same positions: every position sees the whole window
        logits = model(x)[0][:, ::stride]  # (B, T / stride, vocab)
        forced = float(F.cross_entropy(logits.transpose(1, 2), y[:, ::stride]))
    prompt = lab.encode(PROMPT, device=x.device).repeat(cfg["n_samples"], 1)
    # lesson 06's generate without the cache: the whole context is recomputed at every step, so the
    # no-mask model sees all of it as in training (a KV cache would assume causality)
    ids = generate(model, prompt, cfg["sample_tokens"], use_cache=False, temperature=0.8,
                   generator=torch.Generator(device=x.device).manual_seed(seed))
    texts = [lab.decode(row[prompt.shape[1]:]) for row in ids]
    maps = stacked_maps(model, x).cpu()
    stats = dict(val_loss_teacher_forced=forced,
                 val_loss_generation_time=generation_time_loss(model, x, y, stride),
                 judge_nll=judge_nll(lab.model, prompt.shape[1], ids), **word_statistics(texts, words),
                 attention_entropy=float(attention_entropy(maps)[..., 1:].mean()),
                 attention_max_weight=float(maps.max(-1).values[..., 1:].mean()))
    return stats, texts


def break_training(lab: LabModel, cfg: dict, *, steps: int, seed: int, device, quick: bool) -> dict:
    """Train the VARIANTS and measure each on the same validation windows: its stats, its samples, its
    history; and two references: real text under the lab GPT, and the unigram entropy."""
    models, histories = train_variants(lab, cfg, steps=steps, seed=seed, device=device, quick=quick)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = get_batch(lab.val_data, cfg["honest_windows"], cfg["break_block"], generator=g, device=device)
    words = set(re.findall(r"[A-Za-z]+", lab.decode(lab.train_data)))
    with torch.no_grad():
        real_nll = float(lab.model(x, y)[1])
    stats, samples = {}, {}
    for label, model in models.items():
        stats[label], samples[label] = evaluate_variant(model, lab, x, y, cfg, words, seed)
        stats[label].update(steps=steps, seconds=histories[label].wall_time_s,
                            final_train_loss=float(np.mean(histories[label].train_loss[-10:])))
    counts = torch.bincount(lab.train_data, minlength=lab.config.vocab_size).double()
    freqs = counts[counts > 0] / counts.sum()
    unigram = float(-(freqs * freqs.log()).sum())  # the loss of a model that knows token frequencies only
    bl, nm = stats["baseline"], stats["no mask"]  # the no-mask cheat: a loss below the baseline's that only
    cheat = nm["val_loss_teacher_forced"] < bl["val_loss_teacher_forced"] < nm["val_loss_generation_time"]
    return dict(stats=stats, samples=samples, histories=histories, real_nll=real_nll, unigram=unigram,
                cheat=cheat,  # reading the future buys (it gets worse than the baseline without it)
                val_curves={k: {"eval_steps": h.eval_steps, "val_loss": h.val_loss}
                            for k, h in histories.items()})


def break_training_lines(r: dict, steps_of: dict, note: str | None) -> list[str]:
    """Experiment 6's printed lines: each variant's losses and samples, and the verdicts on the two breaks
    (`note`: the quick-mode caveat, or None)."""
    lines, stats, real_nll, unigram = [], r["stats"], r["real_nll"], r["unigram"]
    say = lines.append
    labels = list(VARIANTS)
    bl, ns, nm = (stats[k] for k in labels)
    steps_text = ", ".join(f"{k} {v}" for k, v in steps_of.items())
    say(f"6. Breaking it: 2-layer GPTs on the stories (training steps: {steps_text}):")
    for label in labels:
        s = stats[label]
        say(f"   {label:>9}: val loss {s['val_loss_teacher_forced']:.2f} with the whole window visible, "
            f"{s['val_loss_generation_time']:.2f} with only the past; samples: "
            f"{100 * s['real_word_fraction']:.0f}% corpus words, {100 * s['repeat_fraction']:.0f}% "
            f"repeats, {s['judge_nll']:.2f} nats/token under the lab GPT; attention entropy "
            f"{s['attention_entropy']:.2f} nats, mean largest weight {s['attention_max_weight']:.2f}")
    say(f"   (real validation text: {real_nll:.2f} nats/token under the lab GPT; unigram entropy "
        f"{unigram:.2f})")
    gain = bl["val_loss_teacher_forced"] - nm["val_loss_teacher_forced"]
    if r["cheat"]:
        evidence = []
        if nm["judge_nll"] > bl["judge_nll"] + 0.5:
            evidence.append(f"its samples cost {nm['judge_nll']:.2f} nats/token under the lab GPT vs "
                            f"{bl['judge_nll']:.2f}")
        if nm["repeat_fraction"] > bl["repeat_fraction"] + 0.2:
            evidence.append(f"{100 * nm['repeat_fraction']:.0f}% of its generated words repeat the word "
                            f"before (baseline {100 * bl['repeat_fraction']:.0f}%)")
        say(f"   -> no mask: its loss looks {gain:.2f} nats better than the baseline's because it reads "
            f"the next token; with only the past to read it scores "
            f"{nm['val_loss_generation_time']:.2f} vs {bl['val_loss_generation_time']:.2f}"
            + ("; " + " and ".join(evidence) + ": a low loss, a useless generator." if evidence else
               "; its samples are not measurably worse than the baseline's here."))
    else:
        say("   -> no mask: this run does not show the cheat (the no-mask loss is not below the "
            "baseline's, or it does not get worse without the future).")
    diff = ns["val_loss_teacher_forced"] - bl["val_loss_teacher_forced"]
    sharper = "sharper" if ns["attention_entropy"] < bl["attention_entropy"] else "not sharper"
    saturated = "saturated" if ns["attention_max_weight"] > 0.9 else "not saturated"
    say(f"   -> no scale: val loss {diff:+.2f} nats vs the baseline; its attention is {sharper} "
        f"(entropy {ns['attention_entropy']:.2f} vs {bl['attention_entropy']:.2f} nats) but {saturated} "
        f"(mean largest weight {ns['attention_max_weight']:.2f}): at head_dim 32 training "
        + ("did not suffer from the missing 1/sqrt(d)." if diff < 0.05 else
           f"lost {diff:.2f} nats without 1/sqrt(d)."))
    if note:
        say(f"   ({note}; the small GPTs trained {steps_of['baseline']} steps)")
    return lines
