"""Lesson 03 specification: our attention is the same maths as torch's SDPA and nn.MultiheadAttention."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon  # an independent reference for the JSD
from torch import nn
from torch.nn.attention.bias import causal_lower_right

from llmlab.attention_basics import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
    single_query_attention,
)
from llmlab.attention_basics.attention import (
    attention_distance,
    attention_entropy,
    attention_scale,
    head_divergence,
    jensen_shannon,
)

F64 = dict(dtype=torch.float64)
TIGHT = dict(rtol=1e-10, atol=1e-12)


def qkv(*batch, Tq=5, Tk=5, D=8, Dv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, Tq, D, generator=g, **F64)
    k = torch.randn(*batch, Tk, D, generator=g, **F64)
    v = torch.randn(*batch, Tk, Dv or D, generator=g, **F64)
    return q, k, v


def reference_weights(q, k, *, scale=None, bias=None):
    """softmax(q k^T * scale + bias), written independently of the code under test."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("...qd,...kd->...qk", q, k) * scale
    return torch.softmax(scores if bias is None else scores + bias, dim=-1)


# --- scaled_dot_product_attention == torch ----------------------------------------------------------


def test_matches_torch_sdpa_without_mask():
    q, k, v = qkv(2, 3)
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TIGHT)
    torch.testing.assert_close(weights, reference_weights(q, k), **TIGHT)


@pytest.mark.parametrize("Tq, Tk", [(6, 6), (3, 7), (7, 3)])
def test_causal_matches_torch_is_causal_top_left_alignment(Tq, Tk):
    q, k, v = qkv(2, 2, Tq=Tq, Tk=Tk)
    out, weights = scaled_dot_product_attention(q, k, v, causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TIGHT)
    # no query ever puts weight on a key to its right (top-left aligned: key j > i is the future)
    future = ~torch.ones(Tq, Tk, dtype=torch.bool).tril()
    assert (weights[..., future] == 0).all()


@pytest.mark.parametrize("Tq, Tk", [(1, 9), (3, 7), (5, 5)])
def test_bottom_right_causal_mask_matches_torch_causal_lower_right(Tq, Tk):
    q, k, v = qkv(2, Tq=Tq, Tk=Tk)
    mask = causal_mask(Tq, Tk, offset=Tk - Tq)
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(Tq, Tk))
    torch.testing.assert_close(out, expected, **TIGHT)


def test_one_new_query_with_bottom_right_mask_sees_every_cached_key():
    q, k, v = qkv(Tq=1, Tk=6)
    _, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask(1, 6, offset=5))
    assert (weights > 0).all()


def test_bool_mask_matches_torch():
    q, k, v = qkv(2, 3, Tq=4, Tk=6)
    mask = torch.rand(2, 1, 4, 6, generator=torch.Generator().manual_seed(1)) > 0.4
    mask[..., 0] = True  # every query may attend something, so torch gives no NaN to compare with
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TIGHT)
    assert (weights[~mask.expand_as(weights)] == 0).all()


def test_additive_float_mask_matches_torch_and_reference():
    q, k, v = qkv(2, Tq=4, Tk=6)
    bias = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), **F64)
    bias[1, 3:] = float("-inf")
    out, weights = scaled_dot_product_attention(q, k, v, mask=bias)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), **TIGHT)
    torch.testing.assert_close(weights, reference_weights(q, k, bias=bias), **TIGHT)


def test_mask_and_causal_combine_like_a_single_bool_mask():
    q, k, v = qkv(2, Tq=5, Tk=5)
    mask = torch.rand(5, 5, generator=torch.Generator().manual_seed(3)) > 0.3
    mask.fill_diagonal_(True)
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask & causal_mask(5))
    torch.testing.assert_close(out, expected, **TIGHT)


@pytest.mark.parametrize("scale", [1.0, 0.05, 3.0])
def test_custom_scale_matches_torch(scale):
    q, k, v = qkv(3, Tq=4, Tk=4)
    out, weights = scaled_dot_product_attention(q, k, v, scale=scale, causal=True)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, scale=scale, is_causal=True), **TIGHT
    )
    causal_bias = torch.zeros(4, 4, **F64).masked_fill(~causal_mask(4), float("-inf"))
    torch.testing.assert_close(weights, reference_weights(q, k, scale=scale, bias=causal_bias), **TIGHT)


def test_default_scale_is_one_over_sqrt_head_dim():
    q, k, v = qkv(Tq=3, Tk=4, D=16)
    default, weights = scaled_dot_product_attention(q, k, v)
    explicit, _ = scaled_dot_product_attention(q, k, v, scale=0.25)
    torch.testing.assert_close(default, explicit, **TIGHT)
    # written out: softmax(q k^T / sqrt(16)) v, so a body that ignores the scale fails here by name
    expected = torch.softmax(q @ k.transpose(-2, -1) / 4.0, dim=-1)
    torch.testing.assert_close(weights, expected, **TIGHT)
    torch.testing.assert_close(default, expected @ v, **TIGHT)


@pytest.mark.parametrize("head_dim", [1, 4, 16, 64, 100])
def test_attention_scale_keeps_the_variance_of_the_scores_at_one(head_dim):
    assert attention_scale(None, head_dim) == pytest.approx(head_dim ** -0.5, rel=1e-15)
    assert attention_scale(2.0, head_dim) == 2.0
    g = torch.Generator().manual_seed(head_dim)
    q, k = torch.randn(2, 200_000, head_dim, generator=g, dtype=torch.float64)
    scores = (q * k).sum(-1) * attention_scale(None, head_dim)  # 200,000 independent q . k
    assert scores.var().item() == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="scale must be a finite number > 0, got 0.0"):
        attention_scale(0.0, head_dim)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3), (2, 1, 3)])
def test_any_number_of_batch_dims_and_value_width(batch):
    q, k, v = qkv(*batch, Tq=3, Tk=5, D=4, Dv=7)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (*batch, 3, 7) and weights.shape == (*batch, 3, 5)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TIGHT)


def test_weight_rows_are_probability_distributions():
    q, k, v = qkv(4, Tq=6, Tk=9, seed=5)
    for causal in (False, True):
        _, weights = scaled_dot_product_attention(q, k, v, causal=causal)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(4, 6, **F64), **TIGHT)


def test_out_is_the_weighted_average_of_the_values():
    q, k, v = qkv(Tq=3, Tk=5)
    out, weights = scaled_dot_product_attention(q, k, v)
    for i in range(3):
        torch.testing.assert_close(out[i], sum(weights[i, t] * v[t] for t in range(5)), **TIGHT)


def test_single_query_attention_is_one_row_of_the_full_attention():
    q, k, v = qkv(Tq=4, Tk=6, Dv=3)
    full_out, full_weights = scaled_dot_product_attention(q, k, v)
    for i in range(4):
        out, weights = single_query_attention(q[i], k, v)
        torch.testing.assert_close(out, full_out[i], **TIGHT)
        torch.testing.assert_close(weights, full_weights[i], **TIGHT)
    out, weights = single_query_attention(q[0], k, v, scale=1.0)
    torch.testing.assert_close(weights, reference_weights(q[0:1], k, scale=1.0)[0], **TIGHT)


def test_fully_masked_row_gives_zero_output_and_zero_weights_not_nan():
    q, k, v = qkv(2, Tq=3, Tk=4)
    q.requires_grad_(True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False  # query 1 may attend nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    # a plain softmax over an all -inf row is 0/0 = NaN
    naive_bias = torch.zeros(3, 4, **F64).masked_fill(~mask, float("-inf"))
    assert torch.isnan(reference_weights(q, k, bias=naive_bias)[:, 1]).all()
    assert not torch.isnan(out).any() and not torch.isnan(weights).any()
    assert (out[:, 1] == 0).all() and (weights[:, 1] == 0).all()
    # torch's math SDPA (2.5+) defines the same zeros; the other rows are untouched
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TIGHT)
    torch.testing.assert_close(out[:, [0, 2]], F.scaled_dot_product_attention(q, k, v)[:, [0, 2]], **TIGHT)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    # an additive -inf row and a negative causal offset are fully masked the same way
    bias = torch.zeros(3, 4, **F64)
    bias[2] = float("-inf")
    q.grad = None
    out, weights = scaled_dot_product_attention(q, k, v, mask=bias)
    assert (out[:, 2] == 0).all() and (weights[:, 2] == 0).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    _, weights = scaled_dot_product_attention(q.detach(), k, v, mask=causal_mask(3, 4, offset=-1))
    assert (weights[:, 0] == 0).all() and torch.isfinite(weights).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("offset", [2e3, 1e5])
def test_half_precision_scores_and_softmax_are_computed_in_float32(dtype, offset):
    # scores = offset + O(1): in half precision, 2e3 is rounded to steps of 1 (float16) or 16 (bfloat16),
    # which wipes out the O(1) differences that softmax cares about, and 1e5 overflows float16 (max 65504)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, generator=g, **F64)
    c = offset / base.dot(base)
    q = (c * base + torch.randn(2, 3, 64, generator=g, **F64)).to(dtype)
    k = (base + torch.randn(2, 6, 64, generator=g, **F64) / (8 * c)).to(dtype)
    v = torch.randn(2, 6, 64, generator=g, **F64).to(dtype)
    out, weights = scaled_dot_product_attention(q, k, v, scale=1.0)
    assert out.dtype == dtype and weights.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    # reference: the same (rounded) inputs in float64
    ref_out, ref_weights = scaled_dot_product_attention(q.double(), k.double(), v.double(), scale=1.0)
    torch.testing.assert_close(weights.double(), ref_weights, rtol=0, atol=1e-2)
    torch.testing.assert_close(out.double(), ref_out, rtol=0, atol=2e-2)


def test_dropout_zeroes_weights_and_rescales_the_rest():
    q, k, v = qkv(4, Tq=8, Tk=8)
    _, clean = scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    out, dropped = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    kept = dropped != 0
    assert 0.3 < kept.double().mean() < 0.7
    torch.testing.assert_close(dropped[kept], clean[kept] * 2, **TIGHT)
    torch.testing.assert_close(out, dropped @ v, **TIGHT)


# --- large scores: softmax must subtract the max before exp -----------------------------------------


def large_score_qkv(offset, *, Tq=3, Tk=7, D=16, seed=0):
    """float64 q, k, v whose scores q . k are `offset` plus O(1) differences (exp(offset) is inf)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(D, generator=g, **F64)
    q = offset / base.dot(base) * base + torch.randn(Tq, D, generator=g, **F64)
    k = base + torch.randn(Tk, D, generator=g, **F64) / (offset / base.norm())  # q . k = offset + O(1)
    v = torch.randn(Tk, D, generator=g, **F64)
    return q, k, v


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_scores_around_ten_thousand_give_finite_weights_equal_to_float64_and_torch(offset):
    # exp(1e4) overflows float32 (and float64): without the max-shift every weight is inf/inf = NaN,
    # and at -1e4 every exp underflows to 0 and the weights are 0/0
    q, k, v = large_score_qkv(offset)
    ref_out, ref_weights = reference_weights(q, k, scale=1.0) @ v, reference_weights(q, k, scale=1.0)
    assert (ref_weights.amax(-1) < 0.999).all()  # O(1) differences: the softmax is not one-hot
    q32, k32, v32 = q.float(), k.float(), v.float()
    out, weights = scaled_dot_product_attention(q32, k32, v32, scale=1.0)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    # float32 rounds 1e4 to steps of 1e-3: the scores carry ~1e-4 of rounding (whatever the order of the
    # sums), so the reference is float64 on the same rounded inputs, within 1e-3
    exact = reference_weights(q32.double(), k32.double(), scale=1.0)
    loose = dict(rtol=0, atol=1e-3)
    torch.testing.assert_close(weights.double(), exact, **loose)
    torch.testing.assert_close(out.double(), exact @ v32.double(), **loose)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q32, k32, v32, scale=1.0), **loose)
    for i in range(q.shape[0]):  # the single-query version: one row, the same numbers
        row_out, row_weights = single_query_attention(q32[i], k32, v32, scale=1.0)
        assert torch.isfinite(row_out).all() and torch.isfinite(row_weights).all()
        torch.testing.assert_close(row_weights.double(), exact[i], **loose)
        torch.testing.assert_close(row_out, out[i], **loose)
        row64_out, _ = single_query_attention(q[i], k, v, scale=1.0)  # float64 overflows at 1e4 too
        torch.testing.assert_close(row64_out, ref_out[i], **TIGHT)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_in_half_precision_with_scores_whose_exp_overflows(dtype):
    # scores * scale = 128 - j, exact in both formats (integers below 256 times powers of two): exp(128)
    # is inf in float16, bfloat16 and float32 alike, so only the max-shift keeps the weights finite
    D, Tk = 8, 6
    q = torch.zeros(D, dtype=dtype)
    q[0] = 64.0
    k = torch.zeros(Tk, D, dtype=dtype)
    k[:, 0] = 128.0 - torch.tensor([0, 0, 1, 2, 3, 8])  # scores 8192 - 64 j, times 1/64
    v = torch.randn(Tk, D, generator=torch.Generator().manual_seed(0)).to(dtype)
    out, weights = single_query_attention(q, k, v, scale=1 / 64)
    expected = torch.softmax(torch.tensor([0.0, 0.0, -1.0, -2.0, -3.0, -8.0], **F64), dim=-1)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(weights.double(), expected, rtol=0, atol=1e-2)
    torch.testing.assert_close(out.double(), expected @ v.double(), rtol=0, atol=2e-2)
    full_out, full_weights = scaled_dot_product_attention(q[None], k, v, scale=1 / 64)  # the batched version
    torch.testing.assert_close(full_weights[0].double(), expected, rtol=0, atol=1e-2)
    torch.testing.assert_close(full_out[0].double(), expected @ v.double(), rtol=0, atol=2e-2)


# --- causal_mask ------------------------------------------------------------------------------------


def test_causal_mask_is_true_on_and_below_the_diagonal():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert causal_mask(4).dtype == torch.bool
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool))
    assert torch.equal(causal_mask(2, 5, offset=3), causal_lower_right(2, 5)._materialize())


# --- MultiHeadAttention == nn.MultiheadAttention ----------------------------------------------------


def make_pair(d_model=16, n_heads=4, bias=True, seed=0):
    torch.manual_seed(seed)
    ours = MultiHeadAttention(d_model, n_heads, bias=bias).double().eval()
    theirs = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True).double().eval()
    with torch.no_grad():
        w_q, w_k, w_v = theirs.in_proj_weight.chunk(3, dim=0)
        ours.q_proj.weight.copy_(w_q)
        ours.k_proj.weight.copy_(w_k)
        ours.v_proj.weight.copy_(w_v)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        if bias:
            # torch initialises these to zero: randomise them so the test sees the biases
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
            b_q, b_k, b_v = theirs.in_proj_bias.chunk(3)
            ours.q_proj.bias.copy_(b_q)
            ours.k_proj.bias.copy_(b_k)
            ours.v_proj.bias.copy_(b_v)
            ours.out_proj.bias.copy_(theirs.out_proj.bias)
    return ours, theirs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_nn_multihead_attention(bias, causal):
    ours, theirs = make_pair(bias=bias)
    x = torch.randn(3, 7, 16, **F64)
    out, weights = ours(x, causal=causal, need_weights=True)
    # nn.MultiheadAttention's bool mask means the opposite: True = may NOT attend
    attn_mask = ~causal_mask(7) if causal else None
    expected, expected_weights = theirs(x, x, x, attn_mask=attn_mask, need_weights=True)
    torch.testing.assert_close(out, expected, **TIGHT)
    assert weights.shape == (3, 4, 7, 7)
    torch.testing.assert_close(weights.mean(dim=1), expected_weights, **TIGHT)  # average_attn_weights=True


def test_multi_head_cross_attention_matches_nn_multihead_attention():
    ours, theirs = make_pair(d_model=12, n_heads=3, seed=1)
    x, memory = torch.randn(2, 4, 12, **F64), torch.randn(2, 9, 12, **F64)
    mask = torch.rand(4, 9) > 0.5
    mask[:, 0] = True
    out, weights = ours(x, kv=memory, mask=mask, need_weights=True)
    expected, expected_weights = theirs(x, memory, memory, attn_mask=~mask)
    torch.testing.assert_close(out, expected, **TIGHT)
    torch.testing.assert_close(weights.mean(dim=1), expected_weights, **TIGHT)


def test_need_weights_false_returns_none():
    ours, _ = make_pair()
    out, weights = ours(torch.randn(1, 3, 16, **F64))
    assert weights is None and out.shape == (1, 3, 16)


def test_split_and_merge_heads_are_inverses_and_slice_channels():
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 5, 12)
    heads = mha.split_heads(x)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])  # head h owns channels h*D:(h+1)*D
    assert torch.equal(mha.merge_heads(heads), x)


@settings(max_examples=20, deadline=None)
@given(T=st.integers(2, 10), data=st.data())
def test_changing_future_tokens_never_changes_past_outputs(T, data):
    t = data.draw(st.integers(1, T - 1), label="first changed position")
    torch.manual_seed(T)
    mha = MultiHeadAttention(8, 2).double().eval()
    x = torch.randn(2, T, 8, **F64)
    changed = x.clone()
    changed[:, t:] = torch.randn(2, T - t, 8, **F64)
    out, _ = mha(x, causal=True)
    out_changed, _ = mha(changed, causal=True)
    torch.testing.assert_close(out_changed[:, :t], out[:, :t], rtol=0, atol=1e-12)
    assert not torch.allclose(out_changed[:, t:], out[:, t:])  # the future itself does change


def test_dropout_is_deterministic_in_eval_and_random_in_train():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.3)
    x = torch.randn(2, 6, 16)
    mha.eval()
    a, wa = mha(x, need_weights=True)
    b, _ = mha(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(wa.sum(-1), torch.ones(2, 4, 6))
    mha.train()
    c, wc = mha(x, need_weights=True)
    d, _ = mha(x)
    assert not torch.allclose(c, a) and not torch.allclose(c, d)
    assert (wc == 0).any()


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(k=torch.randn(2, 5, 7)), ValueError, "k"),  # last dim differs from q
        (dict(v=torch.randn(2, 4, 8)), ValueError, "v"),  # not one row per key
        (dict(mask=torch.ones(3, 5, dtype=torch.bool)), ValueError, "mask"),  # scores are (2, 4, 5)
        (dict(mask=torch.ones(4, 5, dtype=torch.long)), TypeError, "mask"),
        (dict(mask=[[True]]), TypeError, "mask"),
        (dict(q=[[1.0]]), TypeError, "q"),
        (dict(q=torch.ones(2, 4, 8, dtype=torch.long)), TypeError, "q"),
        (dict(q=torch.randn(8)), ValueError, "q"),
        (dict(scale=0.0), ValueError, "scale"),
        (dict(scale=-1.0), ValueError, "scale"),
        (dict(scale="big"), TypeError, "scale"),
        (dict(causal=1), TypeError, "causal"),
        (dict(dropout_p=1.0), ValueError, "dropout_p"),
    ],
)
def test_scaled_dot_product_attention_rejects_bad_input(kwargs, error, name):
    args = dict(q=torch.randn(2, 4, 8), k=torch.randn(2, 5, 8), v=torch.randn(2, 5, 8)) | kwargs
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(error, match=rf"^{name}\b"):  # the message starts with the argument's name
        scaled_dot_product_attention(q, k, v, **args)


def test_single_query_attention_rejects_bad_input():
    with pytest.raises(ValueError, match="q"):
        single_query_attention(torch.randn(1, 4), torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="k"):
        single_query_attention(torch.randn(4), torch.randn(3, 5), torch.randn(3, 4))
    with pytest.raises(ValueError, match="v"):
        single_query_attention(torch.randn(4), torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="scale"):
        single_query_attention(torch.randn(4), torch.randn(3, 4), torch.randn(3, 4), scale=0)
    with pytest.raises(ValueError, match="^k"):
        single_query_attention(torch.randn(4), torch.randn(0, 4), torch.randn(0, 4))
    with pytest.raises(TypeError, match="dtype"):
        single_query_attention(torch.randn(4), torch.randn(3, 4, **F64), torch.randn(3, 4))


def test_causal_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="Tq"):
        causal_mask(-1)
    with pytest.raises(TypeError, match="Tk"):
        causal_mask(3, 2.5)
    with pytest.raises(TypeError, match="offset"):
        causal_mask(3, offset=0.5)


@pytest.mark.parametrize(
    "args, kwargs, error, name",
    [
        ((10, 3), {}, ValueError, "n_head"),
        ((0, 1), {}, ValueError, "d_model"),
        ((8, 0), {}, ValueError, "n_head"),
        ((8.0, 2), {}, TypeError, "d_model"),
        ((8, 2), dict(dropout=1.0), ValueError, "dropout"),
        ((8, 2), dict(dropout=-0.1), ValueError, "dropout"),
    ],
)
def test_multi_head_attention_rejects_bad_config(args, kwargs, error, name):
    with pytest.raises(error, match=name):
        MultiHeadAttention(*args, **kwargs)


def test_multi_head_attention_old_keyword_n_heads_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="n_heads= is deprecated, use n_head="):
        mha = MultiHeadAttention(8, n_heads=2)
    assert mha.n_head == 2 and mha.head_dim == 4


def test_multi_head_attention_rejects_bad_input():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="x"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="x"):
        mha(torch.randn(5, 8))
    with pytest.raises(TypeError, match="x"):
        mha([[0.0] * 8])
    with pytest.raises(ValueError, match="kv"):
        mha(torch.randn(2, 5, 8), kv=torch.randn(3, 5, 8))
    with pytest.raises(ValueError, match="mask"):
        mha(torch.randn(2, 5, 8), mask=torch.ones(4, 4, dtype=torch.bool))


# --- analysis helpers: entropy, Jensen-Shannon divergence, head divergence, attention distance ------

def random_rows(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=g, **F64), dim=-1)


def test_entropy_matches_torch_categorical_and_closed_forms():
    w = random_rows(2, 3, 5, 7)
    expected = torch.distributions.Categorical(probs=w).entropy()
    torch.testing.assert_close(attention_entropy(w), expected, **TIGHT)
    torch.testing.assert_close(attention_entropy(w, base=2), expected / math.log(2), **TIGHT)
    uniform = torch.full((4, 10), 0.1, **F64)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((4,), math.log(10), **F64), **TIGHT)
    assert torch.equal(attention_entropy(torch.eye(6, **F64)), torch.zeros(6, **F64))  # one-hot: saturated


def test_entropy_of_causal_uniform_attention_is_log_of_the_visible_keys():
    T = 9
    q = k = torch.zeros(1, T, 4, **F64)  # equal scores: each query spreads evenly over what it may see
    _, w = scaled_dot_product_attention(q, k, k, causal=True)
    expected = torch.log(torch.arange(1, T + 1, **F64))[None]
    torch.testing.assert_close(attention_entropy(w), expected, **TIGHT)


def test_entropy_of_a_fully_masked_row_is_zero():
    q, k, v = qkv(Tq=3, Tk=4)
    _, w = scaled_dot_product_attention(q, k, v, mask=torch.tensor([True, False, True])[:, None])
    assert attention_entropy(w)[1] == 0.0


@pytest.mark.parametrize("base", [math.e, 2.0])
def test_jensen_shannon_matches_scipy(base):
    p, q = random_rows(6, 8, seed=1), random_rows(6, 8, seed=2)
    expected = torch.tensor([jensenshannon(a, b, base=base) ** 2 for a, b in zip(p.numpy(), q.numpy())])
    torch.testing.assert_close(jensen_shannon(p, q, base=base), expected, rtol=1e-9, atol=1e-12)


def test_jensen_shannon_is_symmetric_zero_on_equal_rows_and_one_bit_when_disjoint():
    p, q = random_rows(4, 5, seed=3), random_rows(4, 5, seed=4)
    torch.testing.assert_close(jensen_shannon(p, q), jensen_shannon(q, p), **TIGHT)
    assert torch.equal(jensen_shannon(p, p), torch.zeros(4, **F64))
    disjoint_a = torch.tensor([[0.5, 0.5, 0.0, 0.0]], **F64)
    disjoint_b = torch.tensor([[0.0, 0.0, 0.25, 0.75]], **F64)
    torch.testing.assert_close(jensen_shannon(disjoint_a, disjoint_b, base=2), torch.ones(1, **F64), **TIGHT)
    assert (jensen_shannon(p, q, base=2) <= 1).all()


def test_head_divergence_is_the_mean_row_jsd_for_every_pair_of_heads():
    w = random_rows(2, 3, 4, 5, seed=5)  # (B, H, Tq, Tk)
    d = head_divergence(w, base=2)
    assert d.shape == (3, 3)
    assert torch.equal(d.diagonal(), torch.zeros(3, **F64))
    torch.testing.assert_close(d, d.T, **TIGHT)
    for a in range(3):
        for b in range(3):
            rows_a, rows_b = w[:, a].reshape(-1, 5).numpy(), w[:, b].reshape(-1, 5).numpy()
            expected = np.mean([jensenshannon(x, y, base=2) ** 2 for x, y in zip(rows_a, rows_b)])
            assert d[a, b].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_attention_distance_of_previous_token_and_first_token_heads():
    T = 6
    previous = torch.zeros(T, T, **F64)
    previous[0, 0] = 1.0
    previous[torch.arange(1, T), torch.arange(T - 1)] = 1.0  # query i looks at i - 1
    torch.testing.assert_close(attention_distance(previous), torch.tensor([0.0] + [1.0] * (T - 1), **F64))
    first = torch.zeros(T, T, **F64)
    first[:, 0] = 1.0  # every query looks at token 0 (an "attention sink")
    torch.testing.assert_close(attention_distance(first), torch.arange(T, **F64))
    # bottom-right alignment: one new query at position Tk - 1 (a KV cache) looking at key 0
    torch.testing.assert_close(attention_distance(first[-1:]), torch.tensor([T - 1.0], **F64))


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda: attention_entropy([[1.0]]), TypeError, "weights"),
        (lambda: attention_entropy(torch.tensor([[0.5, 0.6]])), ValueError, "weights"),
        (lambda: attention_entropy(torch.tensor([[1.5, -0.5]])), ValueError, "weights"),
        (lambda: attention_entropy(torch.ones(2, 1), base=1.0), ValueError, "base"),
        (lambda: attention_entropy(torch.ones(2, 1), base="e"), TypeError, "base"),
        (lambda: jensen_shannon(torch.ones(2, 1), torch.ones(3, 1)), ValueError, "q"),
        (lambda: jensen_shannon(torch.tensor([2.0]), torch.ones(1)), ValueError, "p"),
        (lambda: head_divergence(torch.ones(2, 3, 1)), ValueError, "weights"),
        (lambda: attention_distance(torch.ones(3)), ValueError, "weights"),
    ],
)
def test_analysis_helpers_reject_bad_input(call, error, name):
    with pytest.raises(error, match=rf"^{name}\b"):
        call()


def test_attention_entropy_is_lesson_05s_entropy_of_the_log_weights_equal_to_sum_w_log_w():
    # one entropy in the lab (llmlab.sampling.entropy, of softmax(logits)): attention weights go in as
    # their logs; the result is the plain -sum w log w, masked keys and fully masked rows counting 0
    torch.manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        scores = torch.randn(2, 3, 6, 6, dtype=dtype)
        _, w = scaled_dot_product_attention(scores, scores, scores, causal=True)  # zeros above the diagonal
        w = torch.cat([w, torch.zeros_like(w[..., :1, :])], dim=-2)  # plus a fully masked row
        expected = -torch.special.xlogy(w, w).sum(-1)
        torch.testing.assert_close(attention_entropy(w), expected, rtol=tol, atol=tol)
        torch.testing.assert_close(attention_entropy(w, base=2), expected / math.log(2), rtol=tol, atol=tol)
        assert attention_entropy(w).dtype == dtype and (attention_entropy(w)[..., -1] == 0).all()
