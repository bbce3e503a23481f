"""Lesson 12's measurements: SFT through the shared training loop, LoRA, a reward model, PPO with the KL
penalty and DPO, all on the lab GPT; every function returns numbers (the figures are in figures.py)."""

from __future__ import annotations

import copy
import statistics
import time

import torch

from llmlab.finetuning_rlhf import (
    RewardModel,
    ValueHead,
    apply_lora,
    collate_prompts,
    collate_sft,
    dpo_loss,
    final_hidden,
    gae,
    kl_estimates,
    kl_penalized_rewards,
    mask_after_eos,
    masked_whiten,
    ppo_policy_loss,
    reward_loss,
    sequence_logprobs,
    token_logprobs,
    value_loss,
)
from llmlab.finetuning_rlhf.data import render, true_quality
from llmlab.kv_cache import generate
from llmlab.utils import TrainConfig, train
from llmlab.utils.train import estimate_loss

PAD_ID = 0  # a byte token that no prompt here contains; --pad-is-eos makes it the EOS id


def encode_pairs(tok, examples, fmt: str) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) of every example in format `fmt` (the EOS is added by the collate)."""
    out = []
    for ex in examples:
        prompt, response = render(ex, fmt)
        out.append((tok.encode(prompt), tok.encode(response)))
    return out


def sft_batch_fn(pairs, batch_size: int, eos_id: int, *, pad_is_eos: bool = False, prompt_mask: bool = True):
    """batch_fn for the shared loop: a random batch -> (inputs, labels) with -100 on prompt and padding.
    pad_is_eos (the classic bug): padding with the EOS id and masking every token equal to the pad id in
    the labels, which masks the real EOS too; prompt_mask=False trains on the prompt tokens as well."""
    def batch(generator: torch.Generator):
        rows = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
        b = collate_sft([pairs[i] for i in rows], pad_id=eos_id if pad_is_eos else PAD_ID, eos_id=eos_id)
        labels = b.labels if prompt_mask else b.ids.masked_fill(b.attention_mask == 0, -100)
        if pad_is_eos:
            labels = labels.masked_fill(b.ids == eos_id, -100)
        return b.ids[:, :-1], labels[:, 1:]
    return batch


def finetune(model, pairs, val_pairs, cfg: dict, *, eos_id: int, seed: int, device, lr: float,
             pad_is_eos: bool = False, prompt_mask: bool = True, desc: str = "sft"):
    """SFT through the shared loop -> (its History: train loss per step, val loss every eval_interval;
    the val loss before the first step)."""
    config = TrainConfig(steps=cfg["sft_steps"], batch_size=cfg["batch_size"], block_size=128, lr=lr,
                         warmup_steps=cfg["sft_steps"] // 10, eval_interval=max(1, cfg["sft_steps"] // 8),
                         eval_iters=cfg["eval_iters"], weight_decay=0.0)
    val_fn = sft_batch_fn(val_pairs, cfg["batch_size"], eos_id)
    initial = estimate_loss(model, None, config, device=device, batch_fn=val_fn)  # the loop's eval batches
    history = train(model, None, None, config, device=device, seed=seed, progress=False, desc=desc,
                    batch_fn=sft_batch_fn(pairs, cfg["batch_size"], eos_id, pad_is_eos=pad_is_eos,
                                          prompt_mask=prompt_mask), val_batch_fn=val_fn)
    return history, initial


def lora_model(base, r: int):
    """A copy of `base` with rank-r adapters on every attention and MLP projection (alpha = 2r)."""
    model = copy.deepcopy(base)
    targets = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] != "lm_head"})
    return apply_lora(model, r=r, alpha=2 * r, target_modules=targets)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def step_times(models: dict, pairs, cfg: dict, eos_id: int, reps: int) -> dict[str, float]:
    """Median ms of one training step (forward, backward, AdamW) of each model, timed round-robin."""
    batch = sft_batch_fn(pairs, cfg["batch_size"], eos_id)(torch.Generator().manual_seed(0))
    opts = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-6)
            for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(reps):
        for k, m in models.items():
            m.train()
            t0 = time.perf_counter()
            _, loss = m(*batch)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            times[k].append(1000 * (time.perf_counter() - t0))
            m.eval()
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------------------------ generation
@torch.no_grad()
def respond(model, prompts: list[list[int]], n_new: int, eos_id: int, *, temperature: float = 0.0,
            generator: torch.Generator | None = None):
    """Generate after left-padded prompts -> (full ids, attention mask of prompt + response up to its
    EOS, prompt width P, response mask (B, n_new))."""
    ids, am = collate_prompts(prompts, pad_id=PAD_ID)
    dev = next(model.parameters()).device
    out = generate(model, ids.to(dev), n_new, temperature=temperature, generator=generator,
                   attention_mask=am.to(dev))
    new = out[:, ids.shape[1]:]
    mask = mask_after_eos(new, eos_id)
    return out, torch.cat([am.to(dev), mask.long()], dim=1), ids.shape[1], mask


def decode_responses(tok, out, P: int, mask, eos_id: int) -> tuple[list[str], list[bool]]:
    """Each row's response text (up to its EOS, excluded) and whether it stopped (emitted the EOS)."""
    texts, stopped = [], []
    for row, m in zip(out[:, P:].tolist(), mask.tolist()):
        kept = [t for t, keep in zip(row, m) if keep]
        stop = bool(kept) and kept[-1] == eos_id
        texts.append(tok.decode(kept[:-1] if stop else kept))
        stopped.append(stop)
    return texts, stopped


def evaluate(model, tok, examples, fmt: str, eos_id: int, n_new: int) -> dict:
    """Greedy exact-match accuracy per family, mean true quality and the share of responses that stop."""
    prompts = [tok.encode(render(ex, fmt)[0]) for ex in examples]
    out, _, P, mask = respond(model, prompts, n_new, eos_id)
    texts, stopped = decode_responses(tok, out, P, mask, eos_id)
    families: dict[str, list[float]] = {}
    for ex, text in zip(examples, texts):
        families.setdefault(ex.family, []).append(float(text.strip() == ex.answer))
    quality = [true_quality(t, ex) for t, ex in zip(texts, examples)]
    return dict(accuracy={f: sum(v) / len(v) for f, v in families.items()},
                quality=sum(quality) / len(quality), stop_rate=sum(stopped) / len(stopped), texts=texts)


def family_mean(acc: dict, families) -> float:
    return sum(acc[f] for f in families) / len(families)


# --------------------------------------------------------------------------------------- reward model
def pair_batch(tok, pairs, eos_id: int):
    """(chosen batch, rejected batch) as right-padded SFTBatches of prompt + response + EOS."""
    enc = [(tok.encode(p), tok.encode(c), tok.encode(r)) for p, c, r, _ in pairs]
    chosen = collate_sft([(p, c) for p, c, _ in enc], pad_id=PAD_ID, eos_id=eos_id)
    rejected = collate_sft([(p, r) for p, _, r in enc], pad_id=PAD_ID, eos_id=eos_id)
    return chosen, rejected


def train_reward_model(sft, tok, pairs, cfg: dict, eos_id: int, seed: int) -> tuple[RewardModel, list]:
    """A RewardModel on a copy of the SFT model, Bradley-Terry on the preference pairs -> (model, losses)."""
    torch.manual_seed(seed)
    rm = RewardModel(copy.deepcopy(sft))
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg["rm_lr"])
    g = torch.Generator().manual_seed(seed)
    losses = []
    rm.train()
    for _ in range(cfg["rm_steps"]):
        rows = torch.randint(len(pairs), (cfg["batch_size"],), generator=g).tolist()
        c, r = pair_batch(tok, [pairs[i] for i in rows], eos_id)
        loss = reward_loss(rm(c.ids, c.attention_mask), rm(r.ids, r.attention_mask))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    rm.eval()
    return rm, losses


@torch.no_grad()
def reward_accuracy(rm, tok, pairs, eos_id: int) -> dict:
    """Pairwise accuracy (chosen scored above rejected) overall and per kind of pair."""
    c, r = pair_batch(tok, pairs, eos_id)
    wins = (rm(c.ids, c.attention_mask) > rm(r.ids, r.attention_mask)).float().tolist()
    kinds: dict[str, list[float]] = {}
    for (_, _, _, kind), w in zip(pairs, wins):
        kinds.setdefault(kind, []).append(w)
    return dict(accuracy=sum(wins) / len(wins), by_kind={k: sum(v) / len(v) for k, v in kinds.items()})


@torch.no_grad()
def score_samples(sft, rm, tok, examples, n_new: int, eos_id: int, seed: int) -> tuple[list, list]:
    """Temperature-1 samples of the SFT model on qa prompts -> (reward model scores, true qualities)."""
    prompts = [tok.encode(render(ex, "qa")[0]) for ex in examples]
    out, am, P, mask = respond(sft, prompts, n_new, eos_id, temperature=1.0,
                               generator=torch.Generator().manual_seed(seed))
    texts, _ = decode_responses(tok, out, P, mask, eos_id)
    return rm(out, am).tolist(), [true_quality(t, ex) for t, ex in zip(texts, examples)]


# ------------------------------------------------------------------------------------------------ RL
def policy_logprobs(model, out, am, P: int):
    """Token log-probs of the response columns (B, n_new) and the final hidden states."""
    logits, hidden = final_hidden(model, out, am)
    return token_logprobs(logits, out)[:, P - 1:], hidden


@torch.no_grad()
def sampled_kl(policy, ref, tok, examples, cfg: dict, eos_id: int, seed: int) -> dict:
    """KL(policy || ref) per response from temperature-1 samples of the policy: the k1 and k3 estimates
    (sums over the response tokens, mean over prompts), k1's share of negative samples, and diversity."""
    prompts = [tok.encode(render(ex, "qa")[0]) for ex in examples]
    g = torch.Generator().manual_seed(seed)
    out, am, P, mask = respond(policy, prompts, cfg["new_tokens"], eos_id, temperature=1.0, generator=g)
    logp, _ = policy_logprobs(policy, out, am, P)
    ref_logp, _ = policy_logprobs(ref, out, am, P)
    ks = {k: (v * mask).sum(-1) for k, v in kl_estimates(logp, ref_logp).items()}
    texts, _ = decode_responses(tok, out, P, mask, eos_id)
    return dict(k1=ks["k1"].mean().item(), k3=ks["k3"].mean().item(),
                k1_negative=(ks["k1"] < 0).float().mean().item(), diversity=len(set(texts)) / len(texts),
                quality=sum(true_quality(t, ex) for t, ex in zip(texts, examples)) / len(texts))


def ppo_run(sft, rm, tok, train_examples, test_examples, cfg: dict, eos_id: int, *, kl_coef: float,
            seed: int, estimator: str = "k1") -> dict:
    """A small PPO loop: rollouts with lesson 06's generate, KL-shaped rewards, GAE, K epochs of clipped
    minibatch updates of the policy and a value head on its body. Returns its curves per iteration."""
    torch.manual_seed(seed)
    policy, ref = copy.deepcopy(sft), sft
    vhead = ValueHead(sft.config.d_model)
    opt = torch.optim.AdamW(list(policy.parameters()) + list(vhead.parameters()), lr=cfg["ppo_lr"])
    g = torch.Generator().manual_seed(seed)
    hist: dict[str, list] = {k: [] for k in ("score", "quality", "k1", "k3", "k1_negative", "diversity",
                                             "length", "eval_iter", "eval_accuracy", "eval_kl")}
    n = cfg["rollouts"]
    for it in range(cfg["ppo_iters"]):
        rows = torch.randint(len(train_examples), (n,), generator=g).tolist()
        exs = [train_examples[i] for i in rows]
        prompts = [tok.encode(render(ex, "qa")[0]) for ex in exs]
        out, am, P, mask = respond(policy, prompts, cfg["new_tokens"], eos_id, temperature=1.0, generator=g)
        with torch.no_grad():
            old_logp, hidden = policy_logprobs(policy, out, am, P)
            ref_logp, _ = policy_logprobs(ref, out, am, P)
            old_values = vhead(hidden)[:, P - 1:-1]
            scores = rm(out, am)
        rewards = kl_penalized_rewards(scores, old_logp, ref_logp, mask, kl_coef=kl_coef, estimator=estimator)
        advantages, returns = gae(rewards, old_values, mask, gamma=1.0, lam=0.95)
        advantages = masked_whiten(advantages, mask)
        texts, _ = decode_responses(tok, out, P, mask, eos_id)
        ks = {k: (v * mask).sum(-1) for k, v in kl_estimates(old_logp, ref_logp).items()}
        hist["score"].append(scores.mean().item())
        hist["quality"].append(sum(true_quality(t, ex) for t, ex in zip(texts, exs)) / n)
        hist["k1"].append(ks["k1"].mean().item())
        hist["k3"].append(ks["k3"].mean().item())
        hist["k1_negative"].append((ks["k1"] < 0).float().mean().item())
        hist["diversity"].append(len(set(texts)) / n)
        hist["length"].append(mask.sum(-1).float().mean().item())
        policy.train()
        for _ in range(cfg["ppo_epochs"]):
            for mb in torch.randperm(n, generator=g).split(cfg["minibatch"]):
                logp, hid = policy_logprobs(policy, out[mb], am[mb], P)
                values = vhead(hid)[:, P - 1:-1]
                loss = ppo_policy_loss(logp, old_logp[mb], advantages[mb], mask[mb]) \
                    + 0.1 * value_loss(values, old_values[mb], returns[mb], mask[mb])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
        policy.eval()
        if (it + 1) % cfg["eval_every"] == 0 or it + 1 == cfg["ppo_iters"]:
            checkpoint(hist, it + 1, policy, ref, tok, test_examples, cfg, eos_id)
    hist["final"] = evaluate(policy, tok, test_examples, "qa", eos_id, cfg["new_tokens"])
    hist["policy"] = policy
    return hist


def checkpoint(hist: dict, step: int, policy, ref, tok, test_examples, cfg: dict, eos_id: int) -> None:
    """Greedy accuracy on the held-out prompts and the sampled KL to the SFT model, at this step."""
    acc = evaluate(policy, tok, test_examples, "qa", eos_id, cfg["new_tokens"])
    hist["eval_iter"].append(step)
    hist["eval_accuracy"].append(family_mean(acc["accuracy"], list(acc["accuracy"])))
    hist["eval_kl"].append(sampled_kl(policy, ref, tok, test_examples, cfg, eos_id, seed=step)["k3"])


def dpo_run(sft, tok, pairs, test_examples, cfg: dict, eos_id: int, *, beta: float, seed: int,
            average: bool = False) -> dict:
    """DPO from the SFT model (also the frozen reference) -> its curves: the policy's chosen and rejected
    log-probs, their margin and the implicit reward accuracy per step; accuracy and KL at checkpoints."""
    torch.manual_seed(seed)
    policy, ref = copy.deepcopy(sft), sft
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg["dpo_lr"])
    g = torch.Generator().manual_seed(seed)
    hist: dict[str, list] = {k: [] for k in ("chosen", "rejected", "margin", "reward_accuracy", "loss",
                                             "eval_iter", "eval_accuracy", "eval_kl")}

    def logps(model, b):
        logits = model(b.ids, attention_mask=b.attention_mask)[0]
        return sequence_logprobs(logits, b.ids, b.prompt_lengths, attention_mask=b.attention_mask,
                                 average=average)
    for step in range(cfg["dpo_steps"]):
        rows = torch.randint(len(pairs), (cfg["batch_size"],), generator=g).tolist()
        c, r = pair_batch(tok, [pairs[i] for i in rows], eos_id)
        with torch.no_grad():
            ref_c, ref_r = logps(ref, c), logps(ref, r)
        policy.train()
        pc, pr = logps(policy, c), logps(policy, r)
        loss, rc, rr = dpo_loss(pc, pr, ref_c, ref_r, beta=beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.eval()
        hist["chosen"].append(pc.mean().item())
        hist["rejected"].append(pr.mean().item())
        hist["margin"].append((rc - rr).mean().item())
        hist["reward_accuracy"].append((rc > rr).float().mean().item())
        hist["loss"].append(loss.item())
        if (step + 1) % cfg["dpo_eval_every"] == 0 or step + 1 == cfg["dpo_steps"]:
            checkpoint(hist, step + 1, policy, ref, tok, test_examples, cfg, eos_id)
    hist["final"] = evaluate(policy, tok, test_examples, "qa", eos_id, cfg["new_tokens"])
    hist["policy"] = policy
    return hist


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (sx * sy) if sx > 0 and sy > 0 else float("nan")
