"""Lesson 05: every sampling filter equals transformers' logits warper; sampling draws from the filtered
distribution; temperature 0 is argmax; bad arguments are rejected by name."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmlab.sampling import (
    PRESETS,
    apply_temperature,
    entropy,
    filter_logits,
    kept_mass,
    min_p_filter,
    n_kept,
    sample,
    top_k_filter,
    top_p_filter,
)

BATCH, VOCAB = 8, 32_000  # a Llama-sized vocabulary


def random_logits(batch: int = BATCH, vocab: int = VOCAB, *, scale: float = 3.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, vocab, generator=g) * scale


def tied_logits(batch: int = BATCH, vocab: int = 2_000, seed: int = 1) -> torch.Tensor:
    """Logits on a coarse grid of 12 values: hundreds of exact ties at every top-k / top-p boundary."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 12, (batch, vocab), generator=g).float() * 0.75


def hf(warper, logits: torch.Tensor) -> torch.Tensor:
    input_ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)  # the warpers ignore the context
    return warper(input_ids, logits.clone())


def assert_same_filter(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Same tokens removed (bit for bit), same values kept."""
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# each filter == the transformers warper


@pytest.mark.parametrize("temperature", [0.1, 0.7, 1.0, 1.5, 2.0, 10.0])
def test_temperature_matches_transformers_temperature_warper(temperature):
    logits = random_logits()
    theirs = hf(TemperatureLogitsWarper(temperature), logits)
    assert_same_filter(apply_temperature(logits, temperature), theirs)


@pytest.mark.parametrize("make", [random_logits, tied_logits], ids=["random", "ties"])
@pytest.mark.parametrize("top_k", [1, 2, 10, 50, 100, 1_999, 2_000, 50_000])
def test_top_k_matches_transformers_top_k_warper(make, top_k):
    logits = make()
    assert_same_filter(top_k_filter(logits, top_k), hf(TopKLogitsWarper(top_k), logits))


@pytest.mark.parametrize("make", [random_logits, tied_logits], ids=["random", "ties"])
@pytest.mark.parametrize("top_p", [1e-6, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
def test_top_p_matches_transformers_top_p_warper(make, top_p):
    logits = make()
    assert_same_filter(top_p_filter(logits, top_p), hf(TopPLogitsWarper(top_p), logits))


@pytest.mark.parametrize("make", [random_logits, tied_logits], ids=["random", "ties"])
@pytest.mark.parametrize("min_p", [0.0, 0.01, 0.05, 0.1, 0.5, 1.0])
def test_min_p_matches_transformers_min_p_warper(make, min_p):
    logits = make()
    assert_same_filter(min_p_filter(logits, min_p), hf(MinPLogitsWarper(min_p), logits))


def hf_chain(temperature, top_k, top_p, min_p) -> LogitsProcessorList:
    """The warpers `generate` builds, in its order (transformers.generation.utils._get_logits_processor)."""
    chain = LogitsProcessorList()
    if temperature != 1.0:
        chain.append(TemperatureLogitsWarper(temperature))
    if top_k is not None:
        chain.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p))
    if min_p is not None:
        chain.append(MinPLogitsWarper(min_p))
    return chain


@pytest.mark.parametrize("temperature, top_k, top_p, min_p", [
    (0.7, 10, 0.9, None),       # the "focused" preset
    (1.5, 100, 0.99, None),     # the "creative" preset
    (1.0, 50, 0.5, 0.1),
    (2.0, None, 0.8, 0.05),
    (0.5, 3, None, 0.2),
    (1.0, None, 1.0, None),
])
@pytest.mark.parametrize("make", [random_logits, tied_logits], ids=["random", "ties"])
def test_filter_logits_matches_transformers_warpers_chained_in_generate_order(make, temperature, top_k, top_p,
                                                                              min_p):
    logits = make()
    ours = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    input_ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)
    theirs = hf_chain(temperature, top_k, top_p, min_p)(input_ids, logits.clone())
    assert_same_filter(ours, theirs)


def test_filters_work_on_any_leading_shape():
    logits = random_logits(batch=12, vocab=500).view(2, 3, 2, 500)  # (..., vocab)
    flat = logits.reshape(-1, 500)
    for fn, arg in ((apply_temperature, 0.7), (top_k_filter, 7), (top_p_filter, 0.8), (min_p_filter, 0.1)):
        assert torch.equal(fn(logits, arg).reshape(-1, 500), fn(flat, arg))
    assert sample(logits, temperature=0).shape == (2, 3, 2)
    assert sample(logits, top_k=5, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 2)
    assert entropy(logits).shape == n_kept(logits).shape == (2, 3, 2)
    one_row = torch.randn(500)  # a single distribution, (vocab,)
    assert sample(one_row, top_p=0.9).shape == ()
    assert torch.equal(top_p_filter(one_row, 0.8), top_p_filter(one_row[None], 0.8)[0])


# ------------------------------------------------------------------------------------------------
# what each filter keeps, from first principles


def test_top_k_keeps_exactly_k_tokens_without_ties_and_all_ties_at_the_boundary():
    logits = random_logits(vocab=1_000)
    kept = top_k_filter(logits, 10)
    assert (n_kept(kept) == 10).all()
    assert torch.equal(torch.isfinite(kept), torch.zeros_like(kept, dtype=torch.bool).scatter_(
        -1, logits.topk(10).indices, True))
    tie = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    assert n_kept(top_k_filter(tie, 2)).item() == 4  # the k-th value (2.0) is tied three times


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8, 8, width=32), min_size=1, max_size=40), st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_top_set_with_mass_at_least_p(values, top_p):
    logits = torch.tensor(values, dtype=torch.float64)  # float64: no rounding at the boundary
    probs = logits.softmax(-1)
    kept = torch.isfinite(top_p_filter(logits, top_p))
    m = int(kept.sum())
    assert probs[kept].min() >= probs[~kept].max() if (~kept).any() else True  # the top tokens are kept
    mass = probs[kept].sum()
    assert mass >= top_p - 1e-12 or m == len(values)  # enough mass ...
    smaller = torch.sort(probs, descending=True).values[: m - 1].sum()
    assert m == 1 or smaller < top_p + 1e-12  # ... and one token fewer would not be enough


def test_min_p_keeps_tokens_above_min_p_times_the_top_probability():
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]])
    kept = torch.isfinite(min_p_filter(probs.log(), 0.15))  # threshold 0.15 * 0.5 = 0.075
    assert kept.tolist() == [[True, True, True, False, False]]
    assert n_kept(min_p_filter(probs.log(), 1.0)).item() == 1
    assert n_kept(min_p_filter(probs.log(), 0.0)).item() == 5


def test_temperature_zero_keeps_only_the_argmax_and_sample_returns_it():
    logits = random_logits()
    zero = apply_temperature(logits, 0)
    assert (n_kept(zero) == 1).all()
    assert torch.equal(zero.argmax(-1), logits.argmax(-1))
    for preset in ({}, {"top_k": 5}, {"top_p": 0.3}, {"min_p": 0.5}):
        assert torch.equal(sample(logits, temperature=0.0, **preset), logits.argmax(-1))
    assert torch.equal(sample(logits, **PRESETS["deterministic"]), logits.argmax(-1))


def test_filters_never_change_the_kept_logits_only_remove():
    logits = random_logits(vocab=3_000)
    out = filter_logits(logits, top_k=200, top_p=0.9, min_p=0.01)
    kept = torch.isfinite(out)
    assert torch.equal(out[kept], logits[kept])
    assert (n_kept(out) >= 1).all()


def test_top_k_then_top_p_can_keep_fewer_tokens_than_either_alone():
    # top-p after top-k sees the renormalised top-k distribution, where each survivor weighs more
    probs = torch.tensor([[0.30, 0.20, 0.15, 0.10, 0.05] + [0.01] * 20])
    logits = probs.log()
    alone_k = n_kept(top_k_filter(logits, 4)).item()  # 4 tokens, mass 0.75
    alone_p = n_kept(top_p_filter(logits, 0.7)).item()  # 0.30+0.20+0.15+0.10 = 0.75 >= 0.7: 4 tokens
    both = n_kept(filter_logits(logits, top_k=4, top_p=0.7)).item()  # 0.3/0.75+0.2/0.75+0.15/0.75 = 0.87
    assert (alone_k, alone_p, both) == (4, 4, 3)


# ------------------------------------------------------------------------------------------------
# sampling draws from the filtered distribution

# chi-square 99.9% quantiles (df -> critical value), from a standard table (scipy is not installed)
CHI2_999 = {3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32, 8: 26.12, 9: 27.88, 10: 29.59}


@pytest.mark.parametrize("kwargs", [
    {},                                       # the model's own distribution
    {"temperature": 0.6},
    {"temperature": 1.8, "top_k": 8},
    {"top_p": 0.8},
    {"temperature": 1.3, "top_k": 9, "top_p": 0.95, "min_p": 0.05},
])
def test_empirical_frequencies_match_the_filtered_distribution(kwargs):
    vocab, n_draws = 11, 40_000
    logits = torch.linspace(2.0, -2.0, vocab) + 0.3 * torch.sin(torch.arange(vocab) * 1.7)
    target = filter_logits(logits[None], **kwargs).softmax(-1)[0]  # (vocab,)
    draws = sample(logits.expand(n_draws, vocab), generator=torch.Generator().manual_seed(1234), **kwargs)
    counts = torch.bincount(draws, minlength=vocab).double()
    kept = target > 0
    assert counts[~kept].sum() == 0, "a filtered-out token was drawn"
    expected = n_draws * target[kept].double()
    assert expected.min() >= 5, "chi-square needs >= 5 expected counts per cell"
    chi2 = ((counts[kept] - expected) ** 2 / expected).sum().item()
    df = int(kept.sum()) - 1
    assert chi2 < CHI2_999[df], f"chi2 = {chi2:.1f} with {df} degrees of freedom"


def test_sampling_with_the_same_generator_seed_is_reproducible():
    logits = random_logits(vocab=1_000)
    a = sample(logits, temperature=1.2, top_p=0.95, generator=torch.Generator().manual_seed(7))
    b = sample(logits, temperature=1.2, top_p=0.95, generator=torch.Generator().manual_seed(7))
    c = sample(logits, temperature=1.2, top_p=0.95, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_sample_accepts_half_and_double_precision_logits(dtype):
    logits = random_logits(vocab=1_000).to(dtype)
    ids = sample(logits, top_k=20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(top_k_filter(logits, 20).gather(-1, ids[:, None])).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("logits, temperature", [([10.0, 9.0, 0.0], 1e-4), ([-90.0, -92.0, -95.0], 1e-3),
                                                  ([60000.0, 0.0, -60000.0], 0.5)])
def test_tiny_temperatures_in_half_precision_give_the_argmax(dtype, logits, temperature):
    # as T -> 0 all the mass goes to the argmax; z / T overflows float16 unless computed in float32
    z = torch.tensor([logits], dtype=dtype)
    for top_k, top_p, min_p in ((None, None, None), (2, None, None), (None, 0.9, None), (None, None, 0.1)):
        ids = sample(z, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                     generator=torch.Generator().manual_seed(0))
        assert ids.tolist() == [0]
        filtered = filter_logits(z, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        assert filtered.dtype == torch.float32 and not filtered.isnan().any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_filters_on_half_precision_equal_the_filters_on_their_float32_upcast(dtype):
    logits = (random_logits(vocab=500) * 30).to(dtype)  # large logits: exp overflows in half precision
    for f, arg in ((apply_temperature, 0.01), (top_k_filter, 7), (top_p_filter, 0.9), (min_p_filter, 0.05)):
        assert torch.equal(f(logits, arg), f(logits.float(), arg))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sample_runs_on_the_logits_device():
    logits = random_logits(vocab=32_000).cuda()
    ids = sample(logits, **PRESETS["creative"], generator=torch.Generator("cuda").manual_seed(0))
    assert ids.device.type == "cuda"
    assert torch.isfinite(filter_logits(logits, **PRESETS["creative"]).gather(-1, ids[:, None])).all()


# ------------------------------------------------------------------------------------------------
# entropy and sparsity


def test_entropy_matches_torch_categorical_and_closed_forms():
    logits = random_logits(vocab=1_000)
    reference = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(entropy(logits), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy(torch.zeros(3, 64)), torch.full((3,), math.log(64)))  # uniform
    assert entropy(apply_temperature(logits, 0)).abs().max() < 1e-6  # argmax: a certainty
    filtered = top_k_filter(logits, 10)  # -inf entries contribute 0, not nan
    torch.testing.assert_close(entropy(filtered), torch.distributions.Categorical(
        logits=filtered).entropy(), rtol=1e-5, atol=1e-5)


def test_entropy_never_decreases_with_temperature():
    # dH/dT = Var_p(z) / T^3 >= 0: raising the temperature can only flatten the distribution
    logits = random_logits(vocab=2_000)
    temperatures = [0.05, 0.1, 0.3, 0.7, 1.0, 1.5, 3.0, 10.0]
    h = torch.stack([entropy(apply_temperature(logits, t)) for t in temperatures])  # (n_T, B)
    assert (h.diff(dim=0) >= -1e-5).all()
    assert (h[-1] <= math.log(2_000) + 1e-4).all()


def test_n_kept_and_kept_mass_measure_what_a_filter_keeps():
    logits = random_logits(vocab=1_000)
    assert (n_kept(logits) == 1_000).all()
    torch.testing.assert_close(kept_mass(logits, logits), torch.ones(BATCH))
    nucleus = top_p_filter(logits, 0.9)
    assert (kept_mass(logits, nucleus) >= 0.9 - 1e-5).all()
    top1 = top_k_filter(logits, 1)
    torch.testing.assert_close(kept_mass(logits, top1), logits.softmax(-1).amax(-1))


def test_presets_follow_the_curriculum():
    assert PRESETS["deterministic"] == {"temperature": 0.0}
    assert PRESETS["focused"] == {"temperature": 0.7, "top_k": 10, "top_p": 0.9}
    assert PRESETS["creative"]["top_k"] == 100 and PRESETS["creative"]["top_p"] == 0.99
    assert 1.5 <= PRESETS["creative"]["temperature"] <= 2.0
    for preset in PRESETS.values():
        filter_logits(random_logits(vocab=200), **preset)  # every preset is a valid argument set


# ------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("kwargs, name", [
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": -0.2}, "top_p"),
    ({"top_p": float("nan")}, "top_p"),
    ({"min_p": -0.01}, "min_p"),
    ({"min_p": 1.01}, "min_p"),
])
def test_bad_arguments_raise_and_name_the_argument(kwargs, name):
    logits = random_logits(batch=2, vocab=50)
    with pytest.raises(ValueError, match=name):
        sample(logits, **kwargs)
    with pytest.raises(ValueError, match=name):
        filter_logits(logits, **kwargs)
    if name != "temperature":
        with pytest.raises(ValueError, match=name):
            sample(logits, temperature=0.0, **kwargs)  # greedy decoding still checks the other arguments
    single = {"temperature": apply_temperature, "top_k": top_k_filter, "top_p": top_p_filter,
              "min_p": min_p_filter}[name]
    with pytest.raises(ValueError, match=name):
        single(logits, kwargs[name])


def test_bad_logits_raise_and_name_the_argument():
    with pytest.raises(TypeError, match="logits"):
        sample([1.0, 2.0])
    with pytest.raises(TypeError, match="logits"):
        top_k_filter(torch.tensor([[1, 2, 3]]), 1)  # integer logits
    with pytest.raises(ValueError, match="logits"):
        top_p_filter(torch.tensor(1.0), 0.5)  # no vocabulary dimension
    with pytest.raises(ValueError, match="logits"):
        entropy(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="filtered_logits"):
        kept_mass(torch.zeros(2, 5), torch.zeros(2, 4))
