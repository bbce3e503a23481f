"""Tests of the shared utilities: demo CLI, corpora, batching, training loop, cache, plotting, runner."""

import hashlib
import json
import math
import random
import re

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

matplotlib.use("Agg")

from llmlab.utils import (  # noqa: E402
    TRAINING_CODE_VERSION,
    AdamW,
    CharTokenizer,
    Demo,
    History,
    TrainConfig,
    cached_training,
    clip_grad_norm,
    cross_entropy,
    demo_parser,
    encode,
    estimate_loss,
    get_batch,
    get_device,
    load_checkpoint,
    load_corpus,
    log_softmax,
    lr_at,
    make_optimizer,
    plotting,
    save_checkpoint,
    set_seed,
    softmax,
    stories,
    train,
    train_val_split,
)
from llmlab.utils.cli import to_jsonable  # noqa: E402
from llmlab.utils.stories import (  # noqa: E402
    ARCS,
    MAX_STORY_CHARS,
    MIN_STORY_CHARS,
    generate_stories,
    generate_story,
    generate_story_with_facts,
)

# ---------------------------------------------------------------- demo command line


def test_demo_parser_has_the_standard_flags():
    args = demo_parser("x").parse_args(["--quick", "--seed", "3", "--device", "cpu", "--out", "o"])
    assert args.quick and args.seed == 3 and args.device == "cpu" and str(args.out) == "o" and not args.show


def test_demo_writes_results_json_with_config_seed_device_and_numbers(tmp_path):
    args = demo_parser("x").parse_args(["--quick", "--out", str(tmp_path), "--device", "cpu"])
    demo = Demo(args, lesson_file=__file__)
    demo.results["loss"] = torch.tensor(1.5)
    demo.results["curve"] = [1.0, float("nan")]
    fig, ax = plotting.new_figure()
    ax.plot([0, 1], [0, 1])
    demo.save_figure(fig, "line.png")
    data = json.loads(demo.finish().read_text())
    assert data["seed"] == 0 and data["device"] == "cpu" and data["quick"] is True
    assert data["results"] == {"loss": 1.5, "curve": [1.0, "nan"]}
    assert data["figures"] == ["line.png"] and (tmp_path / "line.png").stat().st_size > 1000
    assert data["config"]["quick"] is True and data["wall_time_s"] >= 0


def test_set_seed_makes_torch_deterministic():
    set_seed(7)
    a = torch.rand(3)
    set_seed(7)
    assert torch.equal(a, torch.rand(3))


def test_get_device_and_set_seed_reject_bad_values():
    assert get_device("cpu").type == "cpu"
    assert get_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device"):
        get_device("tpu")
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)
    with pytest.raises(TypeError, match="seed"):
        set_seed(1.5)


def test_to_jsonable_handles_tensors_arrays_and_non_finite_floats():
    import numpy as np

    assert to_jsonable({"a": np.float32(2.0), "b": np.arange(2), "c": float("inf")}) == {
        "a": 2.0, "b": [0, 1], "c": "inf"}


# ---------------------------------------------------------------- corpora and batching


def test_stories_corpus_is_deterministic_and_sized():
    a = load_corpus("stories", 5000, seed=1)
    assert len(a) == 5000 and a == load_corpus("stories", 5000, seed=1)
    assert a != load_corpus("stories", 5000, seed=2)


@pytest.mark.parametrize("name", ["python-docs", "python-code"])
def test_stdlib_corpora_are_real_text_and_deterministic(name):
    text = load_corpus(name, 50_000)
    assert len(text) == 50_000 and text == load_corpus(name, 50_000)
    words = text.split()
    assert len(words) > 3000
    if name == "python-docs":  # English prose: the most common words are English function words
        common = {w.lower() for w in words}
        assert {"the", "of", "is", "a"} <= common
    else:
        assert "def " in text and "import " in text


def test_load_corpus_reads_a_user_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("To be, or not to be, that is the question.", encoding="utf-8")
    assert load_corpus(path) == path.read_text()
    assert load_corpus(str(path), max_chars=5) == "To be"


def test_load_corpus_rejects_bad_input():
    with pytest.raises(ValueError, match="name_or_path"):
        load_corpus("no-such-corpus-or-file")
    with pytest.raises(ValueError, match="max_chars"):
        load_corpus("stories", 0)
    with pytest.raises(ValueError, match="max_chars"):
        load_corpus("stories")
    with pytest.raises(TypeError, match="name_or_path"):
        load_corpus(3)


def test_train_val_split_holds_out_the_tail():
    train_part, val_part = train_val_split("abcdefghij", 0.2)
    assert (train_part, val_part) == ("abcdefgh", "ij")
    t, v = train_val_split(torch.arange(100), 0.1)
    assert len(t) == 90 and torch.equal(v, torch.arange(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split("abc", 1.0)


def test_char_tokenizer_round_trip_and_errors():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == len(set("hello world"))
    assert tok.decode(tok.encode("hello")) == "hello"
    assert encode("low", tok).dtype == torch.long
    with pytest.raises(ValueError, match="character"):
        tok.encode("xyz")
    with pytest.raises(ValueError, match="ids"):
        tok.decode([99])
    with pytest.raises(TypeError, match="text"):
        tok.encode(5)


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = torch.arange(1000)
    x, y = get_batch(data, 8, 16, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    x2, _ = get_batch(data, 8, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="block_size"):
        get_batch(torch.arange(10), 2, 10)
    with pytest.raises(ValueError, match="batch_size"):
        get_batch(data, 0, 4)


# ---------------------------------------------------------------- training loop and cache


class Bigram(nn.Module):
    """The smallest language model: next-token logits from the current token alone."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx, targets=None):
        logits = self.table(idx)
        loss = None if targets is None else nn.functional.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def _bigram_data():
    text = load_corpus("stories", 20_000)
    tok = CharTokenizer.from_text(text)
    return tok, train_val_split(encode(text, tok))


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) < 1.0  # the peak is held for one step only
    assert lr_at(99, cfg) == pytest.approx(0.1) and lr_at(100, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_lr_schedule_reaches_the_floor_exactly_on_the_last_step():
    cfg = TrainConfig(steps=20, lr=1.0, warmup_steps=5, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # warmup (t + 1) / T_w
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:5]))  # strictly increasing during warmup
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))  # then strictly decreasing: no peak plateau
    assert lrs[-1] == 0.1 * cfg.lr  # exactly the floor, on the last step (steps - 1)
    # no warmup: step 0 gets the peak, the last step the floor
    cfg0 = TrainConfig(steps=10, lr=2.0, warmup_steps=0, min_lr_ratio=0.5)
    assert lr_at(0, cfg0) == 2.0 and lr_at(9, cfg0) == 1.0
    # a single step and a warmup longer than the run do not divide by zero
    assert lr_at(0, TrainConfig(steps=1, lr=1.0, warmup_steps=0)) == 1.0
    assert lr_at(3, TrainConfig(steps=3, lr=1.0, warmup_steps=5)) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, cfg)
    with pytest.raises(TypeError, match="config"):
        lr_at(0, {"lr": 1.0})


def test_train_lowers_the_loss_of_a_bigram_model_below_uniform():
    tok, (train_data, val_data) = _bigram_data()
    model = Bigram(tok.vocab_size)
    cfg = TrainConfig(steps=150, batch_size=16, block_size=32, lr=0.05, warmup_steps=10, eval_interval=50,
                      eval_iters=5)
    before = estimate_loss(model, val_data, cfg)
    history = train(model, train_data, val_data, cfg, progress=False)
    assert len(history.train_loss) == 150 and history.eval_steps == [50, 100, 150]
    assert history.final_val_loss < before - 0.5
    assert history.final_val_loss < math.log(tok.vocab_size)  # better than guessing uniformly
    assert not history.diverged and history.tokens_seen == 150 * 16 * 32


def test_train_stops_and_reports_divergence():
    class Exploding(Bigram):
        def forward(self, idx, targets=None):
            logits, loss = super().forward(idx, targets)
            return logits, loss * float("inf")

    tok, (train_data, val_data) = _bigram_data()
    history = train(Exploding(tok.vocab_size), train_data, val_data, TrainConfig(steps=20), progress=False)
    assert history.diverged and len(history.train_loss) == 1


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=-1.0)


def test_cached_training_trains_once_then_reuses_the_weights():
    tok, (train_data, val_data) = _bigram_data()
    cfg = TrainConfig(steps=20, eval_interval=10, eval_iters=2)
    calls = []

    def fit(model):
        calls.append(1)
        return train(model, train_data, val_data, cfg, progress=False)

    key = {"model": "bigram", "vocab": tok.vocab_size, "steps": cfg.steps, "test": "cache"}
    m1, h1, hit1 = cached_training(key, lambda: Bigram(tok.vocab_size), fit)
    m2, h2, hit2 = cached_training(key, lambda: Bigram(tok.vocab_size), fit)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    assert torch.equal(m1.table.weight.cpu(), m2.table.weight)
    assert h1.val_loss == h2.val_loss and isinstance(h2, History)
    _, _, hit3 = cached_training({**key, "steps": 21}, lambda: Bigram(tok.vocab_size), fit)
    assert not hit3  # a different recipe is a different model


# ---------------------------------------------------------------- the training loop's parts from scratch


def _adamw_pair(weight_decay, groups_fn=None, seed=0):
    """Two identical small models, one for ours and one for torch.optim.AdamW(foreach=False)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    twin = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    twin.load_state_dict(model.state_dict())
    return model, twin


def _groups(model, weight_decay):
    params = list(model.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay, "lr": 3e-3},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr": 1e-2,
             "betas": (0.8, 0.99)}]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("several_groups", [False, True])
def test_adamw_equals_torch_adamw_step_by_step(weight_decay, several_groups):
    model, twin = _adamw_pair(weight_decay)
    if several_groups:
        ours = AdamW(_groups(model, weight_decay), lr=1e-3, betas=(0.9, 0.95))
        ref = torch.optim.AdamW(_groups(twin, weight_decay), lr=1e-3, betas=(0.9, 0.95), foreach=False)
    else:
        ours = AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=weight_decay)
        ref = torch.optim.AdamW(twin.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=weight_decay,
                                foreach=False)
    gen = torch.Generator().manual_seed(1)
    for step in range(25):
        x = torch.randn(5, 6, generator=gen)
        for m, opt in ((model, ours), (twin, ref)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            if step == 3:  # a parameter without a gradient this step is skipped by both
                m[2].bias.grad = None
            opt.step()
        for p, q in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)  # the same operations in the same order
    for p, q in zip(model.parameters(), twin.parameters()):
        s, r = ours.state[p], ref.state[q]
        assert float(s["step"]) == float(r["step"])
        torch.testing.assert_close(s["exp_avg"], r["exp_avg"], rtol=0, atol=0)
        torch.testing.assert_close(s["exp_avg_sq"], r["exp_avg_sq"], rtol=0, atol=0)
    assert float(ours.state[model[2].bias]["step"]) == 24  # skipped once


def test_coupled_variant_equals_torch_adam_with_l2():
    model, twin = _adamw_pair(0.1)
    ours = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, decoupled_weight_decay=False)
    ref = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)  # Adam + L2
    gen = torch.Generator().manual_seed(2)
    for _ in range(10):
        x = torch.randn(5, 6, generator=gen)
        for m, opt in ((model, ours), (twin, ref)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(TypeError, match="decoupled_weight_decay"):
        AdamW(model.parameters(), decoupled_weight_decay="yes")


def test_adamw_first_step_is_bias_corrected_and_decay_is_decoupled():
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamW([w], lr=0.1, betas=(0.9, 0.999), eps=0.0, weight_decay=0.5)
    w.grad = torch.tensor([3.0, -0.001])
    opt.step()
    # step 1: m^ = g, v^ = g^2, so the Adam step is lr * sign(g) whatever |g|; decay shrinks w by (1 - lr wd)
    expected = torch.tensor([1.0, -2.0]) * (1 - 0.1 * 0.5) - 0.1 * torch.tensor([1.0, -1.0])
    torch.testing.assert_close(w.detach(), expected)


def test_adamw_rejects_bad_hyperparameters():
    params = [nn.Parameter(torch.zeros(2))]
    for kwargs, name in (({"lr": -1.0}, "lr"), ({"betas": (1.0, 0.9)}, r"betas\[0\]"),
                         ({"betas": (0.9, -0.1)}, r"betas\[1\]"), ({"betas": (0.9,)}, "betas"),
                         ({"eps": -1e-8}, "eps"), ({"weight_decay": -0.1}, "weight_decay")):
        with pytest.raises(ValueError, match=name):
            AdamW(params, **kwargs)
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW([{"params": params, "weight_decay": -1.0}])


SOFTMAX_CASES = {
    "normal": lambda g: torch.randn(7, 11, generator=g) * 3,
    "plus_minus_1e4": lambda g: torch.randn(7, 11, generator=g).sign() * 1e4
    + torch.randn(7, 11, generator=g),
    "huge_positive": lambda g: torch.full((3, 5), 1e4) + torch.arange(5.0),
    "huge_negative": lambda g: torch.full((3, 5), -1e4) - torch.arange(5.0),
}


@pytest.mark.parametrize("case", sorted(SOFTMAX_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_softmax_and_cross_entropy_equal_torch_even_for_huge_logits(case, dtype):
    g = torch.Generator().manual_seed(0)
    base = SOFTMAX_CASES[case](g)
    logits = base.to(dtype)
    targets = torch.randint(0, base.shape[-1], base.shape[:-1], generator=g)
    targets[0] = -100  # ignored: not counted in the mean
    tol = {} if dtype in (torch.float32, torch.float64) else {"rtol": 1e-2, "atol": 1e-2}
    wide = logits.double() if dtype == torch.float64 else logits.float()  # torch's accumulation type
    torch.testing.assert_close(softmax(logits), F.softmax(wide, -1).to(dtype), **tol)
    torch.testing.assert_close(log_softmax(logits), F.log_softmax(wide, -1).to(dtype), **tol)
    assert torch.isfinite(softmax(logits)).all() and torch.isfinite(log_softmax(logits)).all()

    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours, ref = cross_entropy(a, targets), F.cross_entropy(b.to(wide.dtype), targets).to(dtype)
    assert ours.dtype == dtype and torch.isfinite(ours)
    torch.testing.assert_close(ours, ref, **tol)
    direct = F.cross_entropy(logits, targets)  # torch on the low-precision tensor itself
    if torch.isfinite(direct):
        torch.testing.assert_close(ours, direct, **tol)
    else:  # torch's CPU float16 kernel sums the per-target losses (~1e4 each) in float16: > 65504 = inf.
        assert dtype == torch.float16 and case == "plus_minus_1e4"  # ours sums in float32: finite
    ours.float().backward()
    ref.float().backward()
    torch.testing.assert_close(a.grad, b.grad, **tol)
    assert (a.grad[0] == 0).all()  # the ignored row gets no gradient
    for reduction in ("sum", "none"):
        ref = F.cross_entropy(wide, targets, reduction=reduction).to(dtype)
        torch.testing.assert_close(cross_entropy(logits, targets, reduction=reduction), ref, **tol)


def test_cross_entropy_in_float32_matches_torch_tightly_and_counts_only_real_targets():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, 50, generator=g)  # (B, T, vocab): classes last
    targets = torch.randint(0, 50, (4, 6), generator=g)
    targets[:, :2] = -100
    ref = F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), ref, rtol=1e-6, atol=1e-6)
    # the mean is over the 16 counted targets, not the 24 positions
    per_target = cross_entropy(logits, targets, reduction="none")
    torch.testing.assert_close(per_target.sum() / 16, ref, rtol=1e-6, atol=1e-6)
    assert torch.isnan(cross_entropy(logits, torch.full((4, 6), -100)))  # nothing counted: nan, as torch
    other = targets.clamp(min=0)  # another ignore_index: -100 is then an ordinary (here absent) class
    torch.testing.assert_close(cross_entropy(logits, other, ignore_index=7),
                               F.cross_entropy(logits.reshape(-1, 50), other.reshape(-1), ignore_index=7),
                               rtol=1e-6, atol=1e-6)


def test_softmax_and_cross_entropy_reject_bad_input():
    with pytest.raises(TypeError, match="logits"):
        softmax([1.0, 2.0])
    with pytest.raises(TypeError, match="logits"):
        cross_entropy(torch.tensor([[1, 2]]), torch.tensor([0]))
    with pytest.raises(TypeError, match="targets"):
        cross_entropy(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="targets"):
        cross_entropy(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), reduction="avg")
    with pytest.raises(TypeError, match="ignore_index"):
        cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), ignore_index=1.5)


def _grads_model(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    model(torch.randn(3, 4)).sum().backward()
    model[2].bias.grad = None  # a parameter without a gradient
    return model


@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e3])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clip_grad_norm_equals_torch(max_norm, norm_type):
    ours, ref = _grads_model(0), _grads_model(0)
    before = [p.grad.clone() for p in ours.parameters() if p.grad is not None]
    total = clip_grad_norm(ours.parameters(), max_norm, norm_type)
    total_ref = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm, norm_type)
    torch.testing.assert_close(total, total_ref)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad)
    after = [p.grad for p in ours.parameters() if p.grad is not None]
    if total < max_norm:  # below the max: the gradients are untouched, bit for bit
        assert all(torch.equal(a, b) for a, b in zip(after, before))
    else:  # above: the new joint norm is max_norm
        new = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in after]),
                                       norm_type)
        torch.testing.assert_close(new, torch.tensor(max_norm), rtol=1e-4, atol=1e-6)


def test_clip_grad_norm_without_gradients_and_bad_input():
    assert float(clip_grad_norm([nn.Parameter(torch.ones(3))], 1.0)) == 0.0
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([nn.Parameter(torch.ones(3))], 0.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm([nn.Parameter(torch.ones(3))], 1.0, norm_type=-2)


def test_make_optimizer_never_decays_biases_and_norm_gains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 4))
    cfg = TrainConfig(lr=1.0, weight_decay=0.5)
    optimizer = make_optimizer(model, cfg)
    assert isinstance(optimizer, AdamW)
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert (group["weight_decay"] > 0) == (p.ndim >= 2)
    # behaviour: with zero gradients the Adam step is 0, so only the decay moves weights
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 0.5 if p.ndim >= 2 else 1.0  # 1 - lr * wd on matrices, nothing on 1-D parameters
        torch.testing.assert_close(p.detach(), before[name] * factor, msg=name)


def _loop_data():
    torch.manual_seed(0)
    return torch.randint(0, 12, (500,))


class DropoutBigram(Bigram):
    """A bigram model with dropout, so the global RNG matters for training."""

    def __init__(self, vocab_size):
        super().__init__(vocab_size)
        self.norm = nn.LayerNorm(vocab_size)
        self.drop = nn.Dropout(0.2)

    def forward(self, idx, targets=None):
        logits = self.drop(self.norm(self.table(idx)))
        loss = None if targets is None else cross_entropy(logits, targets)
        return logits, loss


def test_train_loop_equals_a_hand_written_loop():
    data = _loop_data()
    cfg = TrainConfig(steps=6, batch_size=4, block_size=8, lr=0.05, warmup_steps=2, grad_clip=0.5,
                      eval_interval=100, eval_iters=1)
    torch.manual_seed(1)
    model = DropoutBigram(12)
    twin = DropoutBigram(12)
    twin.load_state_dict(model.state_dict())
    torch.manual_seed(2)
    train(model, data, None, cfg, seed=5, progress=False)

    torch.manual_seed(2)  # the hand-written reference: the same steps, written out
    optimizer = make_optimizer(twin, cfg)
    generator = torch.Generator().manual_seed(5)
    twin.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(data, cfg.batch_size, cfg.block_size, generator=generator)
        _, loss = twin(x, y)
        for p in twin.parameters():
            p.grad = None
        loss.backward()
        clip_grad_norm(twin.parameters(), cfg.grad_clip)
        optimizer.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)  # fails if the loop forgets zero_grad (gradients add up across steps)


def test_train_loop_with_torch_optim_gives_the_same_weights_within_float_error():
    data = _loop_data()
    histories, models = [], []
    for torch_optim in (False, True):
        torch.manual_seed(1)
        model = Bigram(12)
        cfg = TrainConfig(steps=20, batch_size=4, block_size=8, lr=0.05, warmup_steps=2, eval_interval=100,
                          eval_iters=1, torch_optim=torch_optim)
        histories.append(train(model, data, None, cfg, progress=False))
        models.append(model)
    torch.testing.assert_close(models[0].table.weight, models[1].table.weight, rtol=1e-4, atol=1e-5)
    assert histories[0].train_loss == pytest.approx(histories[1].train_loss, rel=1e-4)


def test_resuming_from_a_checkpoint_continues_bit_for_bit(tmp_path):
    data = _loop_data()
    cfg = TrainConfig(steps=12, batch_size=4, block_size=8, lr=0.05, warmup_steps=3, eval_interval=4,
                      eval_iters=2)
    val = data[:200]

    torch.manual_seed(1)
    reference = DropoutBigram(12)
    init = {k: v.clone() for k, v in reference.state_dict().items()}
    torch.manual_seed(2)
    full = train(reference, data, val, cfg, seed=3, progress=False)

    class Crash(Exception):
        pass

    calls = []

    def crashing_batches(generator):  # the run dies when it asks for the batch of step 7
        calls.append(1)
        if len(calls) > 7:
            raise Crash
        return get_batch(data, cfg.batch_size, cfg.block_size, generator=generator)

    path = tmp_path / "ckpt.pt"
    interrupted = DropoutBigram(12)
    interrupted.load_state_dict(init)
    torch.manual_seed(2)
    with pytest.raises(Crash):
        train(interrupted, None, val, cfg, seed=3, progress=False, batch_fn=crashing_batches,
              checkpoint_path=path, checkpoint_interval=7)

    torch.manual_seed(999)  # a different global RNG state: the checkpoint must restore it
    fresh = DropoutBigram(12)  # different initial weights: the checkpoint must replace them
    resumed = train(fresh, data, val, cfg, seed=12345, progress=False, resume_from=path)
    for (name, p), q in zip(reference.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
    assert resumed.train_loss == full.train_loss and resumed.steps == full.steps
    assert resumed.val_loss == full.val_loss and resumed.eval_steps == full.eval_steps


def test_checkpoint_functions_reject_bad_input(tmp_path):
    model = Bigram(3)
    optimizer = make_optimizer(model, TrainConfig())
    with pytest.raises(TypeError, match="path"):
        save_checkpoint(3, model, optimizer, 0)
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path / "a.pt", model, optimizer, -1)
    with pytest.raises(TypeError, match="optimizer"):
        save_checkpoint(tmp_path / "a.pt", model, "adam", 0)
    with pytest.raises(ValueError, match="path"):
        load_checkpoint(tmp_path / "missing.pt", model)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="save_checkpoint"):
        load_checkpoint(tmp_path / "other.pt", model)
    save_checkpoint(tmp_path / "b.pt", model, optimizer, 5, extra={"note": "x"})
    assert load_checkpoint(tmp_path / "b.pt", model, optimizer) == {"step": 5, "extra": {"note": "x"}}
    with pytest.raises(ValueError, match="generator"):
        load_checkpoint(tmp_path / "b.pt", model, generator=torch.Generator())
    with pytest.raises(ValueError, match="checkpoint_interval"):
        train(model, torch.arange(3).repeat(50), None, TrainConfig(steps=2, block_size=4, batch_size=2),
              progress=False, checkpoint_path=tmp_path / "c.pt", checkpoint_interval=0)
    with pytest.raises(ValueError, match="checkpoint_path"):
        train(model, torch.arange(3).repeat(50), None, TrainConfig(steps=2, block_size=4, batch_size=2),
              progress=False, checkpoint_interval=2)
    with pytest.raises(TypeError, match="torch_optim"):
        TrainConfig(torch_optim="yes")


def test_cache_key_includes_the_training_code_version(monkeypatch):
    import importlib

    train_module = importlib.import_module("llmlab.utils.train")

    key = {"model": "x"}
    before = train_module._key_digest(key)
    monkeypatch.setattr(train_module, "TRAINING_CODE_VERSION", TRAINING_CODE_VERSION + 1)
    assert train_module._key_digest(key) != before  # a new training code never reuses old weights


def test_lab_gpt_with_lab_kernels_uses_the_from_scratch_loss():
    from llmlab.transformer_block import GPT, gpt2_config

    torch.manual_seed(0)
    config = gpt2_config(vocab_size=50, block_size=16, n_layer=1, n_head=2, d_model=16, kernels="lab")
    model = GPT(config)
    idx = torch.randint(0, 50, (2, 16))
    targets = idx.clone()
    targets[:, :3] = -100
    logits, loss = model(idx, targets)
    assert loss.grad_fn is not None and "NllLoss" not in type(loss.grad_fn).__name__
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1)))


# ---------------------------------------------------------------- plotting


def test_plot_helpers_draw_labelled_figures(tmp_path):
    fig, axes = plotting.new_figure(2, 3)
    plotting.heatmap(axes[0, 0], torch.rand(3, 4), row_labels=list("abc"), col_labels=list("wxyz"),
                     title="t", cbar_label="c", annotate=True)
    plotting.line_plot(axes[0, 1], [1, 10, 100], {"a": [1, 2, 3], "b": [3, 2, 1]}, logx=True, title="lines")
    plotting.bar_plot(axes[0, 2], ["a", "b"], [1.0, 2.0], title="bars")
    plotting.scatter_plot(axes[1, 0], torch.randn(5, 2), labels=list("abcde"))
    plotting.token_strip(axes[1, 1], ["Once", " upon", " a", " time", "\n"], ids=[1, 2, 3, 4, 5])
    assert axes[0, 1].get_xscale() == "log" and axes[0, 1].get_legend() is not None
    assert [t.get_text() for t in axes[0, 0].get_xticklabels()] == list("wxyz")
    path = plotting.save_figure(fig, tmp_path / "all")
    assert path.suffix == ".png" and path.stat().st_size > 5000


def test_plot_helpers_reject_mismatched_input():
    fig, ax = plotting.new_figure()
    with pytest.raises(ValueError, match="2-D"):
        plotting.heatmap(ax, torch.rand(3))
    with pytest.raises(ValueError, match="labels"):
        plotting.bar_plot(ax, ["a"], [1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        plotting.line_plot(ax, [1, 2], {"a": [1, 2, 3]})


def test_grouped_bar_plot_puts_one_bar_per_series_side_by_side_within_each_label():
    fig, ax = plotting.new_figure()
    series = {"lab": [3.0, 2.0], "torch": [1.0, 1.5]}
    lab, fused = plotting.grouped_bar_plot(ax, ["LayerNorm", "RMSNorm"], series, horizontal=True)
    assert [b.get_width() for b in lab] == [3.0, 2.0] and [b.get_width() for b in fused] == [1.0, 1.5]
    assert [b.get_y() + b.get_height() / 2 for b in lab] == pytest.approx([-0.2, 0.8])  # 0.8 wide per label
    assert [t.get_text() for t in ax.get_yticklabels()] == ["LayerNorm", "RMSNorm"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lab", "torch"]
    with pytest.raises(ValueError, match="series 'torch' has 1 values for 2 labels"):
        plotting.grouped_bar_plot(ax, ["a", "b"], {"lab": [1.0, 2.0], "torch": [1.0]})
    with pytest.raises(ValueError, match="series"):
        plotting.grouped_bar_plot(ax, ["a"], {})
    plotting.plt.close(fig)


# ---------------------------------------------------------------- runner


def test_runner_lists_all_lessons_and_resolves_names(capsys):
    from llmlab.utils import runner

    assert runner.main(["list"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 17 and "01_tokenization" in out
    assert runner.resolve(["1", "03", "tokenization"]) == [runner.LESSONS[1], runner.LESSONS[3]]
    with pytest.raises(SystemExit):
        runner.resolve(["99"])


def test_runner_gallery_shows_plots_and_numbers(tmp_path):
    from llmlab.utils import runner

    (tmp_path / "01_tokenization").mkdir()
    (tmp_path / "01_tokenization" / "results.json").write_text(json.dumps(
        {"figures": ["a.png"], "results": {"bytes_per_token": 4.2}}))
    runs = {"01_tokenization": {"returncode": 0, "seconds": 1.0, "quick": False}}
    page = runner.write_gallery(tmp_path, runs)
    text = page.read_text()
    assert "01_tokenization/a.png" in text and "bytes_per_token" in text and "4.2" in text


# ---------------------------------------------------------------- the stories corpus
# Coherence is checked against the generator's facts (who each sentence refers to) and against
# pronoun tables written here, independently of the generator's own tables.

ONE_MB = 1_000_000
# English third-person pronouns by gender, as a grammar book lists them.
PRONOUNS = {
    "female": {"she", "her", "hers", "herself"},
    "male": {"he", "him", "his", "himself"},
    "plural": {"they", "them", "their", "theirs", "themselves"},
}
ALL_PRONOUNS = set().union(*PRONOUNS.values())


@pytest.fixture(scope="module")
def one_mb() -> str:
    return generate_stories(ONE_MB, seed=0)


@pytest.fixture(scope="module")
def sample() -> list:
    """300 stories with their facts."""
    rng = random.Random(1234)
    return [generate_story_with_facts(rng) for _ in range(300)]


def narration(sentence: str) -> str:
    """The sentence without its quoted speech (inside quotes, "I" and "you" take over)."""
    return re.sub(r'"[^"]*"', " ", sentence)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def mentions(name: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


# --- the corpus -----------------------------------------------------------------------------


def test_same_seed_gives_the_same_text():
    assert generate_stories(20_000, seed=7) == generate_stories(20_000, seed=7)


def test_different_seeds_give_different_text():
    assert generate_stories(5_000, seed=0) != generate_stories(5_000, seed=1)


@pytest.mark.parametrize("n_chars", [0, 1, 299, 1_000, 12_345])
def test_returns_exactly_n_chars(n_chars):
    assert len(generate_stories(n_chars, seed=3)) == n_chars


# The SHA-256 of the corpus as the lessons were measured on: the trained lab models are cached by the
# corpus's content and every lesson's numbers depend on it, so any change to the grammar, its data
# file or the order in which it draws random numbers must fail here.
PINNED_CORPUS_SHA256 = {
    0: "5040850c19df7c709a47a367b83de2c9822f3e564b5534947981ff7e4961c3f2",
    1: "19a6775a2a180a10b7d0e28208f419e363d9d88dcabcd45e3ab853b2b267b7c8",
}


@pytest.mark.parametrize("seed", sorted(PINNED_CORPUS_SHA256))
def test_the_stories_corpus_is_byte_identical_to_the_pinned_one(seed):
    text = load_corpus("stories", 100_000, seed=seed)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == PINNED_CORPUS_SHA256[seed]


def test_a_longer_corpus_starts_with_the_shorter_one():
    assert generate_stories(30_000, seed=5).startswith(generate_stories(10_000, seed=5))


def test_accepts_numpy_integers():
    assert generate_stories(np.int64(500), seed=np.int32(2)) == generate_stories(500, seed=2)


def test_never_touches_the_global_random_state():
    random.seed(99)
    state = random.getstate()
    generate_stories(5_000, seed=0)
    assert random.getstate() == state


def test_is_ascii_with_stories_separated_by_blank_lines(one_mb):
    assert one_mb.isascii()
    stories = one_mb.split("\n\n")
    assert all(story and "\n" not in story for story in stories)
    assert all(story == story.strip() for story in stories)


def test_one_megabyte_has_no_repeated_story(one_mb):
    stories = one_mb.split("\n\n")[:-1]  # the last one is cut to length
    assert len(stories) > 500
    assert len(set(stories)) == len(stories)


def test_one_megabyte_is_varied_at_the_sentence_level(one_mb):
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", one_mb)
    assert len(set(sentences)) > 0.5 * len(sentences)


def test_every_story_has_the_documented_length(one_mb):
    lengths = [len(story) for story in one_mb.split("\n\n")[:-1]]
    assert MIN_STORY_CHARS <= min(lengths) and max(lengths) <= MAX_STORY_CHARS


def test_every_arc_occurs(sample):
    assert {facts.arc for _, facts in sample} == set(ARCS)


def test_every_step_of_the_data_file_is_used_and_every_used_step_is_there(monkeypatch):
    """story_arcs.json and the arcs' code name the same steps: no dead templates, no missing ones."""
    used = set()
    add, say = stories._Story.add, stories._Story.say

    def spy_add(self, step, **inline):
        used.add(step)
        return add(self, step, **inline)

    def spy_say(self, speaker, step, to=None):
        used.add(step)
        return say(self, speaker, step, to=to)

    monkeypatch.setattr(stories._Story, "add", spy_add)
    monkeypatch.setattr(stories._Story, "say", spy_say)
    rng = random.Random(0)
    for _ in range(1500):
        generate_story(rng)
    assert used == {step for section in stories.STEPS.values() for step in section}
    assert set(stories.STEPS) == {"shared", *ARCS}


# --- one story and its facts --------------------------------------------------------------


def test_facts_sentences_make_up_the_story(sample):
    for text, facts in sample:
        assert " ".join(facts.sentences) == text
        assert len(facts.sentence_roles) == len(facts.sentences)


def test_generate_story_is_the_text_of_generate_story_with_facts():
    assert generate_story(random.Random(5)) == generate_story_with_facts(random.Random(5))[0]


def test_characters_carry_the_pronouns_of_their_gender(sample):
    for _, facts in sample:
        for character in facts.characters:
            assert set(character.pronouns) == PRONOUNS[character.gender]


def test_main_character_is_named_in_the_first_and_last_sentence(sample):
    for _, facts in sample:
        main = facts.characters[0]
        assert main.role == "A"
        assert mentions(main.name, facts.sentences[0]), facts.sentences[0]
        assert mentions(main.name, facts.sentences[-1]), facts.sentences[-1]


def test_each_character_is_introduced_by_name_before_any_pronoun(sample):
    for _, facts in sample:
        for character in facts.characters:
            sentences = zip(facts.sentences, facts.sentence_roles)
            first = next(sentence for sentence, roles in sentences if character.role in roles)
            assert mentions(character.name, first), (character.name, first)


def test_a_sentence_names_only_characters_it_is_said_to_refer_to(sample):
    for _, facts in sample:
        for sentence, roles in zip(facts.sentences, facts.sentence_roles):
            for character in facts.characters:
                if mentions(character.name, sentence):
                    assert character.role in roles, (character.name, sentence)


def test_pronouns_agree_with_the_characters_a_sentence_refers_to(sample):
    checked = 0
    for _, facts in sample:
        gender = {c.role: c.gender for c in facts.characters}
        for sentence, roles in zip(facts.sentences, facts.sentence_roles):
            used = words(narration(sentence)) & ALL_PRONOUNS
            if not roles:
                assert not used, sentence
            elif len(roles) == 1:
                assert used <= PRONOUNS[gender[roles[0]]], (gender[roles[0]], sentence)
                checked += bool(used)
            else:  # each pronoun belongs to one of the characters, or to them together ("they")
                allowed = PRONOUNS["plural"].union(*(PRONOUNS[gender[role]] for role in roles))
                assert used <= allowed, (roles, sentence)
    assert checked > len(sample)  # the check is not vacuous: stories do use pronouns


def test_pairs_of_children_take_plural_verbs(sample):
    for text, facts in sample:
        assert not re.search(r"\b(they|we) was\b|\b(he|she|I) were\b", text, flags=re.IGNORECASE), text
        for character in facts.characters:
            if character.gender == "plural":
                assert not re.search(rf"\b{character.name} (was|is|has)\b", text), text


def test_things_are_introduced_with_a_and_referred_back_to_with_the(sample):
    for text, facts in sample:
        for noun in facts.things:
            spans = [m.start() for m in re.finditer(rf"\b{noun}\b", text)]
            after_a = r"\b(?i:an?) (\w+ ){0,2}$"  # "a kite", "a red kite", "an old brown dog"
            preceded_by_a = [re.search(after_a, text[:start]) is not None for start in spans]
            assert preceded_by_a[0] and not any(preceded_by_a[1:]), (noun, text)
            assert re.search(rf"\b(?i:the) (\w+ )?{noun}\b", text[spans[0]:]), (noun, text)


def test_a_second_character_interacts_and_someone_speaks(sample):
    for text, facts in sample:
        assert len(facts.characters) >= 2
        assert any({"A", "B"} <= set(roles) for roles in facts.sentence_roles)
        assert text.count('"') >= 2 and all(s.count('"') % 2 == 0 for s in facts.sentences)


def test_sentences_start_with_a_capital_and_end_with_punctuation(sample):
    for _, facts in sample:
        for sentence in facts.sentences:
            assert re.match(r'^"?[A-Z]', sentence) and sentence[-1] in '.!?"', sentence


# --- bad input ------------------------------------------------------------------------------


def test_negative_n_chars_is_a_value_error():
    with pytest.raises(ValueError, match="n_chars"):
        generate_stories(-1)


@pytest.mark.parametrize("n_chars", [1.5, "100", None, True])
def test_non_integer_n_chars_is_a_type_error(n_chars):
    with pytest.raises(TypeError, match="n_chars"):
        generate_stories(n_chars)


def test_non_integer_seed_is_a_type_error():
    with pytest.raises(TypeError, match="seed"):
        generate_stories(10, seed="0")


def test_story_needs_a_random_generator():
    with pytest.raises(TypeError, match="rng"):
        generate_story(42)


# ---------------------------------------------------------------- quick-mode figures say so (DESIGN §8)


@pytest.mark.parametrize("quick", [True, False])
def test_quick_mode_figures_say_so_in_their_title_and_full_runs_do_not(tmp_path, quick):
    argv = ["--out", str(tmp_path), "--device", "cpu"] + (["--quick"] if quick else [])
    demo = Demo(demo_parser("x").parse_args(argv), lesson_file=__file__)
    plain, _ = plotting.new_figure()
    titled, _ = plotting.new_figure(1, 2, suptitle="MoE 1.62 vs dense 1.66")
    for fig, name in ((plain, "plain.png"), (titled, "titled.png")):
        fig.axes[0].plot([0, 1], [0, 1])
        demo.save_figure(fig, name)
    if quick:
        assert plain.get_suptitle() == plotting.QUICK_MODE_NOTE
        assert titled.get_suptitle() == f"{plotting.QUICK_MODE_NOTE}\nMoE 1.62 vs dense 1.66"
    else:
        assert plain.get_suptitle() == "" and titled.get_suptitle() == "MoE 1.62 vs dense 1.66"
    # a title that already says it is quick-mode is not marked twice
    said, ax = plotting.new_figure()
    ax.set_title("loss (quick mode: barely trained)")
    plotting.mark_quick_mode(said)
    assert said.get_suptitle() == ""


# ----------------------------------------------------------------------------------------------------
# llmlab.utils.checks: one function per kind of argument check, one meaning per name


def test_check_int_returns_the_int_and_names_argument_value_and_range():
    from llmlab.utils.checks import check_int

    assert check_int("n_head", np.int64(4), minimum=1) == 4 and type(check_int("n", 3)) is int
    with pytest.raises(ValueError, match=r"^n_head must be an int >= 1, got 0$"):
        check_int("n_head", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^k must be an int in \[1, 3\], got 4$"):
        check_int("k", 4, minimum=1, maximum=3)
    with pytest.raises(ValueError, match=r"^dim must be an int >= 1 and even, got 5$"):
        check_int("dim", 5, minimum=1, multiple_of=2)
    assert check_int("d_ff", 12, minimum=1, multiple_of=4) == 12
    with pytest.raises(ValueError, match=r"^d_ff must be an int >= 1 and a multiple of 4, got 10$"):
        check_int("d_ff", 10, minimum=1, multiple_of=4)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(TypeError, match=r"^n_head must be an int"):
            check_int("n_head", bad, minimum=1)


def test_check_number_intervals_open_and_closed_ends_nan_and_infinity():
    from llmlab.utils.checks import check_int, check_number

    assert check_number("top_p", 1, low=0, high=1, low_open=True) == 1.0
    with pytest.raises(ValueError, match=r"^top_p must be a number in \(0, 1\], got 1.5$"):
        check_number("top_p", 1.5, low=0, high=1, low_open=True)
    with pytest.raises(ValueError, match=r"^top_p must be a number in \(0, 1\], got 0.0$"):
        check_number("top_p", 0.0, low=0, high=1, low_open=True)
    with pytest.raises(ValueError, match=r"^dropout must be a number in \[0.0, 1.0\), got 1.0$"):
        check_number("dropout", 1.0, low=0.0, high=1.0, high_open=True)
    with pytest.raises(ValueError, match=r"^base must be a finite number > 1, got 1.0$"):
        check_number("base", 1.0, low=1, low_open=True)
    with pytest.raises(ValueError, match="^eps must be a finite number"):
        check_number("eps", float("inf"), low=0, low_open=True)
    assert check_number("limit", float("inf"), low=0, finite=False) == float("inf")
    with pytest.raises(ValueError, match="^limit"):
        check_number("limit", float("nan"), finite=False)  # NaN is never a value
    for bad in (True, "1", None, torch.tensor(1.0)):
        with pytest.raises(TypeError, match="^x must be a finite number"):
            check_number("x", bad)
    with pytest.raises(ValueError, match=r"^top_k must be an int >= 1, got 2.5"):
        check_int("top_k", 2.5, minimum=1, wrong_type=ValueError)  # an API that raises ValueError throughout
    with pytest.raises(ValueError, match=r"^temperature must be a finite number >= 0, got True"):
        check_number("temperature", True, low=0, wrong_type=ValueError)


def test_check_bool_refuses_ints_and_none():
    from llmlab.utils.checks import check_bool

    assert check_bool("causal", True) is True and check_bool("causal", False) is False
    for bad in (0, 1, None, "yes"):
        with pytest.raises(TypeError, match=r"^causal must be a bool, got "):
            check_bool("causal", bad)


def test_str_instance_dtype_and_logits_ids_checks_name_the_argument():
    from llmlab.transformer_block import GPTConfig, gpt2_config
    from llmlab.utils.checks import check_dtype, check_instance, check_logits_ids, check_str

    assert check_str("text", "abc") == "abc"
    with pytest.raises(TypeError, match=r"text must be a str, got b'abc' of type bytes"):
        check_str("text", b"abc")
    config = gpt2_config(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8)
    assert check_instance("config", config, GPTConfig) is config
    with pytest.raises(TypeError, match="config must be a GPTConfig, got dict"):
        check_instance("config", {}, GPTConfig)
    assert check_dtype("dtype", torch.bfloat16) is torch.bfloat16
    for bad in (torch.int8, "float32", None):
        with pytest.raises(TypeError, match=r"kv_dtype must be a floating-point torch.dtype"):
            check_dtype("kv_dtype", bad)
    assert check_logits_ids(torch.zeros(2, 5, 7), torch.zeros(2, 5, dtype=torch.long)) == (2, 5)
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 5\) \(logits' \(B, T\)\), got \(2, 4"):
        check_logits_ids(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long), ids_name="labels")
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        check_logits_ids(torch.zeros(2, 5, 7), torch.zeros(2, 5))


def test_check_choice_lists_the_allowed_values_and_compares_types():
    from llmlab.utils.checks import check_choice

    assert check_choice("norm", "rmsnorm", ("layernorm", "rmsnorm")) == "rmsnorm"
    with pytest.raises(ValueError, match=r"^norm must be one of 'layernorm', 'rmsnorm', got 'batchnorm'$"):
        check_choice("norm", "batchnorm", ("layernorm", "rmsnorm"))
    with pytest.raises(ValueError, match="^bits"):
        check_choice("bits", True, (1, 4, 8))  # True == 1, but it is not the int 1


def test_check_tensor_type_dtype_and_dimensions():
    from llmlab.utils.checks import check_tensor

    x = torch.zeros(2, 3)
    assert check_tensor("x", x, ndim=2, dtype="float") is x
    assert check_tensor("ids", torch.zeros(2, dtype=torch.long), min_ndim=1, dtype="int") is not None
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor, got list$"):
        check_tensor("x", [1.0])
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor, got dtype torch.int64$"):
        check_tensor("x", torch.zeros(2, dtype=torch.long), dtype="float")
    with pytest.raises(TypeError, match=r"^ids must be an integer tensor, got dtype torch.bool$"):
        check_tensor("ids", torch.zeros(2, dtype=torch.bool), dtype="int")
    with pytest.raises(ValueError, match=r"^x must have 3 dimension\(s\), got shape \(2, 3\)$"):
        check_tensor("x", x, ndim=3)
    with pytest.raises(ValueError, match=r"^x must have at least 3 dimension\(s\), got shape \(2, 3\)$"):
        check_tensor("x", x, min_ndim=3)


def test_renamed_arguments_warns_maps_the_old_keyword_and_refuses_both_spellings():
    import warnings

    from llmlab.utils.checks import renamed_arguments

    @renamed_arguments(n_heads="n_head")
    def heads(d_model, n_head=1):
        return d_model, n_head

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling and positional calls never warn
        assert heads(8, n_head=2) == (8, 2) and heads(8, 2) == (8, 2)
    with pytest.warns(DeprecationWarning, match=r"n_heads= is deprecated, use n_head="):
        assert heads(8, n_heads=4) == (8, 4)
    with pytest.raises(TypeError, match=r"both n_heads= and n_head="):
        heads(8, n_heads=4, n_head=4)
    assert heads.__name__ == "heads"  # functools.wraps: the docs and the signature stay


def test_band_plot_and_plain_log_axis_draw_what_they_say():
    fig, (a, b) = plotting.new_figure(1, 2)
    x = [0.1, 0.5, 0.9]
    quantiles = [[1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7]]  # P10, P25, P50, P75, P90 at each x
    (median,) = plotting.band_plot(a, x, quantiles, band_labels=["10-90th", "IQR"])
    assert list(median.get_ydata()) == [3, 4, 5] and len(a.collections) == 2  # a line inside two bands
    plotting.plain_log_axis(a.yaxis)
    plotting.plain_log_axis(a.xaxis, scale="logit")
    assert a.get_yscale() == "log" and a.get_xscale() == "logit"
    assert a.yaxis.get_major_formatter()(100.0, 0) == "100"  # a plain number, not 10^2
    with pytest.raises(ValueError, match="quantiles"):
        plotting.band_plot(b, x, quantiles, band_labels=["IQR"])  # 5 columns need two band labels
    with pytest.raises(ValueError, match="scale"):
        plotting.plain_log_axis(b.xaxis, scale="symlog")
