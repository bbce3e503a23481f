"""Lesson 02 specification: positional encodings.

References: the paper's formula computed independently with numpy (sinusoidal), transformers' Llama
rotary embedding (RoPE, rotate-half pairing), a complex-number RoPE as in Meta's original Llama code
(interleaved pairing), transformers' Bloom ALiBi (slopes), and closed-form properties (norms preserved,
scores depend only on the relative offset, linear distance penalties).
"""

import math

import numpy as np
import pytest
import torch
from transformers import LlamaConfig
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.llama.modeling_llama import rotate_half as hf_rotate_half

from llmlab.positional_embeddings import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    apply_rope_interleaved,
    apply_rotary,
    rope_cos_sin,
    rope_frequencies,
    rope_pairing_permutation,
    rotate_half,
    sinusoidal_embeddings,
)
from llmlab.positional_embeddings.positional_embeddings import offset_spread, similarity_vs_distance


def llama_rotary(head_dim: int, n_heads: int = 4, base: float = 10000.0) -> LlamaRotaryEmbedding:
    config = LlamaConfig(
        hidden_size=head_dim * n_heads,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        intermediate_size=4 * head_dim,
        num_hidden_layers=1,
        vocab_size=32,
        max_position_embeddings=128,
        rope_theta=base,
    )
    return LlamaRotaryEmbedding(config)


# ----------------------------------------------------------------------------------------------------
# sinusoidal


@pytest.mark.parametrize(("seq_len", "dim", "base"), [(1, 2, 10000.0), (50, 16, 10000.0), (7, 64, 500.0)])
def test_sinusoidal_matches_the_papers_formula_computed_with_numpy(seq_len, dim, base):
    expected = np.zeros((seq_len, dim))
    for pos in range(seq_len):
        for i in range(dim // 2):
            angle = pos / base ** (2 * i / dim)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    pe = sinusoidal_embeddings(seq_len, dim, base, dtype=torch.float64)
    assert pe.shape == (seq_len, dim)
    np.testing.assert_allclose(pe.numpy(), expected, rtol=0, atol=1e-12)


def test_sinusoidal_values_lie_in_minus_one_to_one_and_position_zero_is_sin0_cos0():
    pe = sinusoidal_embeddings(512, 32)
    assert pe.dtype == torch.float32
    assert pe.abs().max() <= 1.0
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 16))
    # every (sin, cos) pair lies on the unit circle
    torch.testing.assert_close(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(512, 16))


@pytest.mark.parametrize("offset", [1, 5, 100])
def test_sinusoidal_shift_by_k_positions_is_the_same_rotation_for_every_position(offset):
    # Vaswani et al.: PE[pos + k] is a linear function of PE[pos]. The map is block-diagonal, one
    # rotation by k * omega_i per (sin, cos) pair, and it does not depend on pos.
    dim, base = 16, 10000.0
    pe = sinusoidal_embeddings(300, dim, base, dtype=torch.float64)
    rotation = torch.zeros(dim, dim, dtype=torch.float64)
    for i in range(dim // 2):
        angle = offset / base ** (2 * i / dim)
        c, s = math.cos(angle), math.sin(angle)
        # sin(a + b) = sin a cos b + cos a sin b;  cos(a + b) = cos a cos b - sin a sin b
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    torch.testing.assert_close(pe[:-offset] @ rotation.T, pe[offset:])


# ----------------------------------------------------------------------------------------------------
# learned


def test_learned_embedding_returns_one_trained_row_per_position():
    torch.manual_seed(0)
    emb = LearnedPositionalEmbedding(max_len=16, dim=8)
    assert [name for name, _ in emb.named_parameters()] == ["weight"]
    assert emb.weight.shape == (16, 8)
    torch.testing.assert_close(emb(5), emb.weight[:5])
    positions = torch.tensor([[0, 3, 15], [2, 2, 1]])
    out = emb(positions)
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(out[1, 2], emb.weight[1])
    out.sum().backward()
    assert emb.weight.grad[2].abs().sum() > 0 and emb.weight.grad[4].abs().sum() == 0


def test_learned_embedding_refuses_positions_past_max_len():
    emb = LearnedPositionalEmbedding(max_len=16, dim=8)
    emb(16)  # positions 0..15: all fine
    with pytest.raises(ValueError, match="max_len"):
        emb(17)
    with pytest.raises(ValueError, match="max_len"):
        emb(torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="positions"):
        emb(torch.tensor([-1, 0]))


# ----------------------------------------------------------------------------------------------------
# RoPE against transformers' Llama


@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_rope_matches_transformers_llama(base):
    torch.manual_seed(0)
    B, H, T, head_dim = 2, 4, 11, 16
    q = torch.randn(B, H, T, head_dim)
    k = torch.randn(B, H, T, head_dim)
    position_ids = torch.stack([torch.arange(T), torch.arange(T) + 37])  # (B, T): second one cached
    cos, sin = llama_rotary(head_dim, H, base)(q, position_ids)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(apply_rope(q, position_ids, base), q_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(apply_rope(k, position_ids, base), k_ref, rtol=0, atol=1e-6)
    # the same positions for the whole batch: a (T,) tensor
    torch.testing.assert_close(apply_rope(q, position_ids[1], base)[1], q_ref[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_rotary_embedding_cos_sin_equal_transformers_llama(base):
    head_dim = 32
    position_ids = torch.tensor([[0, 1, 2, 3, 500, 2047], [7, 8, 9, 10, 11, 12]])
    cos_ref, sin_ref = llama_rotary(head_dim, base=base)(torch.zeros(1), position_ids)
    rope = RotaryEmbedding(head_dim, base)
    cos, sin = rope(position_ids)
    torch.testing.assert_close(cos, cos_ref, rtol=0, atol=0)
    torch.testing.assert_close(sin, sin_ref, rtol=0, atol=0)
    torch.testing.assert_close(rope_cos_sin(position_ids, head_dim, base), (cos_ref, sin_ref), rtol=0, atol=0)
    freqs_ref = llama_rotary(head_dim, base=base).inv_freq
    torch.testing.assert_close(rope_frequencies(head_dim, base), freqs_ref, rtol=0, atol=0)


def test_apply_rotary_with_precomputed_tables_equals_transformers_in_bfloat16():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 16).to(torch.bfloat16)
    position_ids = torch.arange(9).expand(2, 9)
    cos_ref, sin_ref = llama_rotary(16)(x, position_ids)  # cast to bfloat16 by transformers
    expected, _ = apply_rotary_pos_emb(x, x, cos_ref, sin_ref)
    cos, sin = RotaryEmbedding(16)(position_ids)  # float32 tables, cast inside apply_rotary
    assert torch.equal(apply_rotary(x, cos, sin), expected)
    assert torch.equal(apply_rope(x, position_ids), expected)


def test_rotate_half_matches_transformers_and_is_a_quarter_turn():
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(rotate_half(x), hf_rotate_half(x), rtol=0, atol=0)
    torch.testing.assert_close(rotate_half(rotate_half(x)), -x)  # two quarter turns = half turn
    torch.testing.assert_close((rotate_half(x) * x).sum(-1), torch.zeros(3, 5))  # orthogonal to x


def test_rotary_embedding_has_no_parameters_and_grows_its_cache_on_demand():
    rope = RotaryEmbedding(8, cache_len=4)
    assert list(rope.parameters()) == [] and rope.state_dict() == {}
    assert rope.cos_cached.shape == (4, 8)
    positions = torch.tensor([0, 3, 99])
    cos, sin = rope(positions)
    assert rope.cos_cached.shape[0] >= 100
    torch.testing.assert_close((cos, sin), rope_cos_sin(positions, 8), rtol=0, atol=0)
    cos_t, _ = rope(6)  # an int means positions 0..5
    torch.testing.assert_close(cos_t, rope_cos_sin(torch.arange(6), 8)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="positions"):
        rope(torch.tensor([-1]))


def test_rotary_tables_stay_float32_when_the_model_is_cast_to_half_precision():
    rope = RotaryEmbedding(16).to(torch.bfloat16)
    positions = torch.tensor([1, 1000, 5000])
    cos, sin = rope(positions)
    assert cos.dtype == sin.dtype == torch.float32
    torch.testing.assert_close((cos, sin), rope_cos_sin(positions, 16), rtol=0, atol=0)


def test_apply_rotary_equals_apply_rope_for_one_and_for_per_sequence_positions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8)
    rope = RotaryEmbedding(8)
    positions = torch.tensor([4, 5, 6, 7, 8])
    torch.testing.assert_close(apply_rotary(x, *rope(positions)), apply_rope(x, positions))
    batch_positions = torch.stack([positions, positions + 10])  # (B, T)
    torch.testing.assert_close(apply_rotary(x, *rope(batch_positions)), apply_rope(x, batch_positions))
    torch.testing.assert_close(apply_rope(x, batch_positions)[1], apply_rope(x[1], positions + 10))


# ----------------------------------------------------------------------------------------------------
# RoPE properties


@pytest.mark.parametrize("rope_fn", [apply_rope, apply_rope_interleaved])
def test_rope_preserves_the_norm_of_every_vector(rope_fn):
    torch.manual_seed(0)
    x = torch.randn(3, 50, 16, dtype=torch.float64)
    positions = torch.arange(50) * 97  # far positions too
    torch.testing.assert_close(rope_fn(x, positions).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rope_fn(x, torch.zeros(50, dtype=torch.long)), x)  # position 0: identity


@pytest.mark.parametrize("rope_fn", [apply_rope, apply_rope_interleaved])
def test_rope_score_depends_only_on_the_relative_offset(rope_fn):
    # <R_m q, R_n k> = <q, R_(n-m) k>: shift both positions by s and no score changes
    torch.manual_seed(0)
    head_dim, n_pairs = 32, 64
    q = torch.randn(n_pairs, 1, head_dim, dtype=torch.float64)
    k = torch.randn(n_pairs, 1, head_dim, dtype=torch.float64)
    m = torch.randint(0, 64, (n_pairs, 1))
    n = torch.randint(0, 64, (n_pairs, 1))
    score = (rope_fn(q, m) * rope_fn(k, n)).sum(-1)  # (n_pairs, 1)
    for shift in [1, 2, 7, 31, 100, 999, 4096, 12345]:
        shifted = (rope_fn(q, m + shift) * rope_fn(k, n + shift)).sum(-1)
        torch.testing.assert_close(shifted, score, rtol=1e-9, atol=1e-9)
    # and it does change with the offset itself (the encoding is not trivial)
    farther = (rope_fn(q, m) * rope_fn(k, n + 1)).sum(-1)
    assert (farther - score).abs().max() > 1e-3


def test_interleaved_rope_matches_the_complex_number_form_of_the_roformer_paper():
    # Meta's Llama code: view (x[2i], x[2i+1]) as the complex number x[2i] + i x[2i+1] and multiply it
    # by e^(i pos theta_i); an implementation independent of the real-valued one.
    torch.manual_seed(0)
    T, head_dim, base = 12, 16, 10000.0
    x = torch.randn(2, 3, T, head_dim, dtype=torch.float64)
    positions = torch.arange(T) + 5
    theta = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(positions.double(), theta)  # (T, head_dim/2)
    rotor = torch.polar(torch.ones_like(angles), angles)  # e^(i pos theta_i)
    x_complex = torch.view_as_complex(x.reshape(2, 3, T, head_dim // 2, 2).contiguous())
    expected = torch.view_as_real(x_complex * rotor).reshape(2, 3, T, head_dim)
    torch.testing.assert_close(apply_rope_interleaved(x, positions, base), expected)


def test_interleaved_and_rotate_half_pairings_differ_exactly_by_a_permutation_of_dimensions():
    torch.manual_seed(0)
    head_dim = 12
    perm = rope_pairing_permutation(head_dim)
    assert perm.tolist() == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]
    x = torch.randn(2, 4, 9, head_dim, dtype=torch.float64)
    positions = torch.arange(9) * 3
    interleaved = apply_rope_interleaved(x, positions)
    torch.testing.assert_close(apply_rope(x[..., perm], positions), interleaved[..., perm])
    inverse = torch.argsort(perm)
    torch.testing.assert_close(apply_rope(x[..., perm], positions)[..., inverse], interleaved)
    # and without the permutation they are different maps
    assert (apply_rope(x, positions) - interleaved).abs().max() > 1e-2
    # the checkpoint view: permuting the rows of W_q turns an interleaved model into a rotate-half one
    hidden = torch.randn(9, 20, dtype=torch.float64)
    w_q = torch.randn(head_dim, 20, dtype=torch.float64)
    q_meta = apply_rope_interleaved(hidden @ w_q.T, positions)  # (T, head_dim)
    torch.testing.assert_close(apply_rope(hidden @ w_q[perm].T, positions), q_meta[..., perm])


# ----------------------------------------------------------------------------------------------------
# ALiBi


def test_alibi_slopes_for_8_heads_are_one_half_to_one_over_256():
    expected = torch.tensor([1 / 2**h for h in range(1, 9)])
    torch.testing.assert_close(alibi_slopes(8), expected, rtol=0, atol=0)


@pytest.mark.parametrize("n_heads", [1, 2, 4, 16, 32])
def test_alibi_slopes_for_powers_of_two_are_a_geometric_sequence(n_heads):
    expected = torch.tensor([2 ** (-8 * h / n_heads) for h in range(1, n_heads + 1)], dtype=torch.float64)
    torch.testing.assert_close(alibi_slopes(n_heads, dtype=torch.float64), expected)


@pytest.mark.parametrize("n_heads", [3, 5, 6, 7, 12, 20, 24, 40])
def test_alibi_slopes_match_transformers_bloom(n_heads):
    T = 6
    # Bloom returns slope_h * key position for every head, shape (batch * n_heads, 1, T)
    bloom = build_alibi_tensor(torch.ones(1, T), n_heads, torch.float32)
    bloom_slopes = bloom[:, 0, 1:] / torch.arange(1, T)  # divide the positions out
    slopes = alibi_slopes(n_heads)
    assert slopes.shape == (n_heads,)
    torch.testing.assert_close(bloom_slopes, slopes[:, None].expand(n_heads, T - 1), rtol=1e-6, atol=0)
    assert len(set(slopes.tolist())) == n_heads and (slopes > 0).all() and (slopes < 1).all()


def test_alibi_bias_is_zero_on_the_diagonal_and_linear_in_the_distance():
    n_heads, T = 4, 7
    bias = alibi_bias(n_heads, T)
    slopes = alibi_slopes(n_heads)
    assert bias.shape == (n_heads, T, T)
    torch.testing.assert_close(torch.diagonal(bias, dim1=1, dim2=2), torch.zeros(n_heads, T))
    for i in range(T):
        for j in range(T):
            if j <= i:
                torch.testing.assert_close(bias[:, i, j], -slopes * (i - j))
            else:
                assert torch.isneginf(bias[:, i, j]).all()  # causal: future keys are removed
    # one step further into the past costs exactly one slope more
    steps = bias[:, -1, 1:] - bias[:, -1, :-1]  # (H, T-1)
    torch.testing.assert_close(steps, slopes[:, None].expand(n_heads, T - 1))


def test_alibi_bias_without_causal_keeps_the_papers_positive_values_above_the_diagonal():
    bias = alibi_bias(2, 5, causal=False)
    slopes = alibi_slopes(2)
    i, j = torch.arange(5)[:, None], torch.arange(5)[None, :]
    torch.testing.assert_close(bias, -slopes[:, None, None] * (i - j).float())
    assert (bias[:, 0, 1:] > 0).all()
    causal = alibi_bias(2, 5)
    below = j <= i
    torch.testing.assert_close(bias[:, below], causal[:, below])


def test_alibi_bias_for_new_queries_against_cached_keys_is_the_last_rows_of_the_full_bias():
    full = alibi_bias(6, 10)
    torch.testing.assert_close(alibi_bias(6, 10, query_len=1), full[:, -1:, :])  # one decode step
    torch.testing.assert_close(alibi_bias(6, 10, query_len=4), full[:, -4:, :])
    assert torch.isfinite(alibi_bias(6, 10, query_len=1)).all()  # the newest query sees every key


def test_alibi_attention_equals_blooms_key_position_form_after_softmax():
    # Bloom adds slope * j instead of -slope * (i - j): the two differ by slope * i, a constant per
    # query row, and softmax ignores constants per row, so the attention weights are identical.
    torch.manual_seed(0)
    n_heads, T = 5, 9
    scores = torch.randn(n_heads, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    bloom = build_alibi_tensor(torch.ones(1, T), n_heads, torch.float32)  # (H, 1, T)
    reference = torch.softmax((scores + bloom).masked_fill(~causal, float("-inf")), dim=-1)
    ours = torch.softmax(scores + alibi_bias(n_heads, T), dim=-1)
    torch.testing.assert_close(ours, reference)


# ----------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: sinusoidal_embeddings(0, 8), ValueError, "seq_len"),
        (lambda: sinusoidal_embeddings(4.0, 8), TypeError, "seq_len"),
        (lambda: sinusoidal_embeddings(4, 7), ValueError, "dim"),
        (lambda: sinusoidal_embeddings(4, -2), ValueError, "dim"),
        (lambda: sinusoidal_embeddings(4, 8, base=0.0), ValueError, "base"),
        (lambda: sinusoidal_embeddings(4, 8, base="10000"), TypeError, "base"),
        (lambda: LearnedPositionalEmbedding(0, 8), ValueError, "max_len"),
        (lambda: LearnedPositionalEmbedding(8, True), TypeError, "dim"),
        (lambda: LearnedPositionalEmbedding(8, 4)(torch.tensor([0.5])), TypeError, "positions"),
        (lambda: LearnedPositionalEmbedding(8, 4)(torch.zeros(1, 1, 2).long()), ValueError, "positions"),
        (lambda: RotaryEmbedding(7), ValueError, "head_dim"),
        (lambda: RotaryEmbedding(0), ValueError, "head_dim"),
        (lambda: RotaryEmbedding(8, base=-1.0), ValueError, "base"),
        (lambda: RotaryEmbedding(8)(torch.tensor([1.0])), TypeError, "positions"),
        (lambda: RotaryEmbedding(8)("3"), TypeError, "positions"),
        (lambda: rope_frequencies(5), ValueError, "head_dim"),
        (lambda: rope_cos_sin(torch.arange(3), 6, base=float("nan")), ValueError, "base"),
        (lambda: rope_pairing_permutation(3), ValueError, "head_dim"),
        (lambda: apply_rope(torch.randn(2, 3, 5), torch.arange(2)), ValueError, "head_dim"),
        (lambda: apply_rope(torch.randn(2, 3, 4), torch.arange(2)), ValueError, "positions"),
        (lambda: apply_rope(torch.randn(2, 3, 4), torch.arange(3), base=0), ValueError, "base"),
        (lambda: apply_rope(torch.arange(12).view(3, 4), torch.arange(3)), TypeError, "x"),
        (lambda: apply_rope([[1.0, 2.0]], torch.arange(1)), TypeError, "x"),
        (lambda: apply_rope(torch.randn(2, 4, 3, 4), torch.zeros(3, 3, dtype=torch.long)), ValueError, "cos"),
        (lambda: apply_rope_interleaved(torch.randn(3, 6), torch.arange(4)), ValueError, "positions"),
        (lambda: apply_rope_interleaved(torch.randn(3, 5), torch.arange(3)), ValueError, "head_dim"),
        (lambda: rotate_half(torch.randn(3, 5)), ValueError, "x"),
        (lambda: apply_rotary(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 2)), ValueError, "sin"),
        (lambda: apply_rotary(torch.randn(3, 4), torch.randn(2, 4), torch.randn(2, 4)), ValueError, "cos"),
        (lambda: alibi_slopes(0), ValueError, "n_head"),
        (lambda: alibi_slopes(2.5), TypeError, "n_head"),
        (lambda: alibi_bias(4, 0), ValueError, "seq_len"),
        (lambda: alibi_bias(-4, 3), ValueError, "n_head"),
        (lambda: alibi_bias(4, 3, query_len=5), ValueError, "query_len"),
        (lambda: alibi_bias(4, 3, causal="yes"), TypeError, "causal"),
    ],
)
def test_bad_input_raises_an_error_that_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()


def test_alibi_old_keyword_n_heads_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="n_heads= is deprecated, use n_head="):
        slopes = alibi_slopes(n_heads=4)
    with pytest.warns(DeprecationWarning, match="n_heads="):
        bias = alibi_bias(n_heads=4, seq_len=3)
    torch.testing.assert_close(slopes, alibi_slopes(n_head=4))
    torch.testing.assert_close(bias, alibi_bias(n_head=4, seq_len=3))


# ----------------------------------------------------------------------------------------------------
# analysis helpers: similarity vs distance, and the offset spread of a score matrix


def test_sinusoidal_dot_product_vs_distance_is_the_closed_form_sum_of_cosines():
    # PE[m] . PE[m+k] = sum_i sin(m w_i) sin((m+k) w_i) + cos(m w_i) cos((m+k) w_i) = sum_i cos(k w_i)
    seq_len, dim, base = 300, 32, 10000.0
    pe = sinusoidal_embeddings(seq_len, dim, base, dtype=torch.float64)
    omega = base ** (-np.arange(0, dim, 2) / dim)
    expected = np.array([np.cos(k * omega).sum() for k in range(seq_len)])
    np.testing.assert_allclose(similarity_vs_distance(pe).numpy(), expected, rtol=0, atol=1e-9)
    # every position gives the same value (not just on average): the Gram matrix is Toeplitz
    assert offset_spread(pe @ pe.T).abs().max() < 1e-9
    # cosine similarity divides by |PE|^2 = dim / 2
    np.testing.assert_allclose(similarity_vs_distance(pe, cosine=True, max_distance=40).numpy(),
                               expected[:41] / (dim / 2), rtol=0, atol=1e-12)


def test_similarity_vs_distance_equals_a_plain_loop_over_pairs():
    torch.manual_seed(0)
    table = torch.randn(20, 6)
    result = similarity_vs_distance(table, cosine=True, max_distance=7)
    assert result.shape == (8,)
    for k in range(8):
        pairs = [torch.nn.functional.cosine_similarity(table[m].double(), table[m + k].double(), dim=0)
                 for m in range(20 - k)]
        assert result[k].item() == pytest.approx(torch.stack(pairs).mean().item(), abs=1e-12)
    assert result[0].item() == pytest.approx(1.0)  # every vector is identical to itself


def test_offset_spread_is_zero_for_a_toeplitz_matrix_and_measures_a_perturbation():
    T = 9
    m, n = torch.arange(T)[:, None], torch.arange(T)[None, :]
    toeplitz = torch.cos(0.3 * (m - n).double()) + 0.1 * (m - n).double()  # a function of m - n only
    assert offset_spread(toeplitz).abs().max() == 0.0
    bumped = toeplitz.clone()
    bumped[6, 4] += 0.5  # one pair at offset 2 is off by 0.5
    spread = offset_spread(bumped)
    assert spread.shape == (T,)
    assert spread[2].item() == pytest.approx(0.5)
    assert spread[torch.arange(T) != 2].abs().max() == 0.0
    # above the diagonal (future keys) is ignored, and leading dimensions are kept
    bumped[1, 7] += 3.0
    batched = offset_spread(torch.stack([toeplitz, bumped]))
    assert batched.shape == (2, T)
    torch.testing.assert_close(batched[1], spread)


def test_rope_scores_depend_on_the_offset_alone_but_added_sinusoidal_positions_do_not():
    torch.manual_seed(0)
    T, d_model, head_dim = 96, 32, 16
    w_q, w_k = torch.randn(head_dim, d_model, dtype=torch.float64), torch.randn(head_dim, d_model,
                                                                                  dtype=torch.float64)
    x, y = torch.randn(d_model, dtype=torch.float64), torch.randn(d_model, dtype=torch.float64)
    positions = torch.arange(T)
    # RoPE: the same query token at every position m, the same key token at every position n
    q = apply_rope((w_q @ x).expand(T, head_dim), positions)  # (T, head_dim)
    k = apply_rope((w_k @ y).expand(T, head_dim), positions)
    assert offset_spread(q @ k.T).abs().max() < 1e-9
    # sinusoidal added to the tokens: the cross terms x . W p_n depend on n itself, not only on m - n
    pe = sinusoidal_embeddings(T, d_model, dtype=torch.float64)
    q_abs, k_abs = (x + pe) @ w_q.T, (y + pe) @ w_k.T  # (T, head_dim)
    scores = q_abs @ k_abs.T
    assert offset_spread(scores)[:-1].min() > 1e-3 * scores.std()  # every offset with two pairs varies


@pytest.mark.parametrize(
    ("call", "error", "name"),
    [
        (lambda: similarity_vs_distance(torch.randn(4)), ValueError, "table"),
        (lambda: similarity_vs_distance(torch.arange(12).view(3, 4)), TypeError, "table"),
        (lambda: similarity_vs_distance([[1.0]]), TypeError, "table"),
        (lambda: similarity_vs_distance(torch.randn(4, 2), max_distance=4), ValueError, "max_distance"),
        (lambda: similarity_vs_distance(torch.randn(4, 2), max_distance=1.0), TypeError, "max_distance"),
        (lambda: similarity_vs_distance(torch.randn(4, 2), cosine=1), TypeError, "cosine"),
        (lambda: offset_spread(torch.randn(3, 4)), ValueError, "scores"),
        (lambda: offset_spread(torch.randn(3)), ValueError, "scores"),
        (lambda: offset_spread(torch.ones(3, 3, dtype=torch.long)), TypeError, "scores"),
    ],
)
def test_analysis_helpers_reject_bad_input_naming_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
