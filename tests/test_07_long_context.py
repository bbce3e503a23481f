"""Lesson 07 specification: sliding-window and chunked attention compute exactly the attention they
claim (checked against lesson 03, torch's F.scaled_dot_product_attention and transformers' mask
convention), in the memory they claim (the largest tensor grows with T, not T²); the memory tracker
counts what torch allocates; the context-length helpers measure what they say; bad input is refused."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from references import mistral_sliding_window_attention  # transformers' Mistral, shared with lesson 06
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers.masking_utils import (
    sdpa_mask,
    sliding_window_causal_mask_function,
)

from llmlab.attention_basics import causal_mask, scaled_dot_product_attention
from llmlab.long_context import (
    PeakMemory,
    chunked_attention,
    loss_per_position,
    sliding_window_attention,
    sliding_window_mask,
    windowed_attention,
)
from llmlab.positional_embeddings import alibi_bias, apply_rotary
from llmlab.transformer_block import GPT, gpt2_config, llama_config
from llmlab.transformer_block.model import build_attention_mask


def qkv(*shape, dtype=torch.float64, Tk=None):
    """Random q (shape) and k, v with Tk rows (default: the same T)."""
    *lead, T, D = shape
    Tk = T if Tk is None else Tk
    return torch.randn(*shape, dtype=dtype), torch.randn(*lead, Tk, D, dtype=dtype), \
        torch.randn(*lead, Tk, D, dtype=dtype)


class LargestTensor(TorchDispatchMode):
    """Records the number of elements of the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def largest_tensor(fn, *args, **kwargs) -> int:
    with torch.no_grad(), LargestTensor() as mode:
        fn(*args, **kwargs)
    return mode.largest


# ----------------------------------------------------------------------------------------------------
# sliding_window_mask: the convention


@pytest.mark.parametrize("T, window", [(1, 1), (5, 3), (8, 1), (7, 7), (6, 10), (13, 4)])
def test_sliding_window_mask_matches_transformers_mistral_convention(T, window):
    reference = sdpa_mask(batch_size=1, q_length=T, kv_length=T, allow_is_causal_skip=False,
                          mask_function=sliding_window_causal_mask_function(window))[0, 0]
    assert torch.equal(sliding_window_mask(T, window), reference)


def test_window_one_sees_only_itself_and_a_long_window_is_the_causal_mask():
    assert torch.equal(sliding_window_mask(6, 1), torch.eye(6, dtype=torch.bool))
    assert torch.equal(sliding_window_mask(6, 6), causal_mask(6))
    assert torch.equal(sliding_window_mask(6, 100), causal_mask(6))


def test_query_i_sees_the_min_of_i_plus_1_and_window_most_recent_keys():
    T, window = 12, 5
    mask = sliding_window_mask(T, window)
    for i in range(T):
        visible = mask[i].nonzero().flatten().tolist()
        assert visible == list(range(max(0, i - window + 1), i + 1))


# ----------------------------------------------------------------------------------------------------
# sliding_window_attention


@pytest.mark.parametrize("T, window", [(16, 1), (16, 4), (13, 4), (10, 3), (7, 7), (5, 64), (1, 3), (33, 8)])
def test_sliding_window_attention_equals_full_attention_with_the_sliding_mask(T, window):
    q, k, v = qkv(2, 3, T, 8)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(T, window))
    torch.testing.assert_close(sliding_window_attention(q, k, v, window), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("T, window", [(20, 6), (32, 8), (9, 2)])
def test_sliding_window_attention_equals_torch_sdpa_with_the_same_mask(T, window):
    q, k, v = qkv(1, 2, T, 16)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(T, window))
    torch.testing.assert_close(sliding_window_attention(q, k, v, window), expected, rtol=0, atol=1e-12)


def test_sliding_window_attention_with_a_long_window_is_causal_attention():
    q, k, v = qkv(2, 11, 4)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(sliding_window_attention(q, k, v, 11), expected, rtol=0, atol=1e-12)


def test_a_key_only_reaches_the_next_window_queries():
    T, window = 20, 5
    q, k, v = qkv(1, T, 8)
    out = sliding_window_attention(q, k, v, window)
    j = 7
    k2, v2 = k.clone(), v.clone()
    k2[:, j] += 1.0
    v2[:, j] += 1.0
    changed = (sliding_window_attention(q, k2, v2, window) - out).abs().amax(-1)[0] > 0  # (T,)
    assert changed.nonzero().flatten().tolist() == list(range(j, j + window))


def test_sliding_window_attention_gradients_match_full_attention():
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 13, 4))
    sliding_window_attention(q, k, v, 4).square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(13, 4))[0].square().sum().backward()
    for ours, expected in zip(grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_sliding_window_attention_scale_and_broadcast_leading_dims():
    q = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    k, v = torch.randn(2, 1, 9, 8, dtype=torch.float64), torch.randn(2, 1, 9, 8, dtype=torch.float64)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(9, 3), scale=0.5)
    torch.testing.assert_close(sliding_window_attention(q, k, v, 3, scale=0.5), expected, rtol=0, atol=1e-12)


def test_sliding_window_attention_in_half_precision_is_close_to_float32():
    q, k, v = qkv(1, 2, 24, 16, dtype=torch.float32)
    expected = sliding_window_attention(q, k, v, 5)
    out = sliding_window_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 5)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=3e-2)


def test_sliding_window_memory_grows_with_T_times_window_not_T_squared():
    window, D = 32, 8
    sizes = (512, 1024)
    ours = [largest_tensor(sliding_window_attention, *qkv(1, T, D, dtype=torch.float32), window)
            for T in sizes]
    full = [largest_tensor(scaled_dot_product_attention, *qkv(1, T, D, dtype=torch.float32), causal=True)
            for T in sizes]
    assert full == [T * T for T in sizes]  # the T x T score matrix
    assert ours[1] / ours[0] == pytest.approx(2.0, rel=0.05)  # doubling T doubles it: linear
    assert ours[1] <= 2 * sizes[1] * window  # the (T / window) tiles of window x 2 window scores
    assert full[1] / full[0] == pytest.approx(4.0)


@pytest.mark.parametrize("T, window", [(13, 4), (16, 4), (9, 1), (7, 7), (5, 9), (21, 6)])
@pytest.mark.parametrize("n_kv_heads", [1, 4])
def test_sliding_window_attention_equals_transformers_mistral_sliding_window(T, window, n_kv_heads):
    q = torch.randn(2, 4, T, 8, dtype=torch.float64)
    k, v = torch.randn(2, n_kv_heads, T, 8, dtype=torch.float64), torch.randn(2, n_kv_heads, T, 8,
                                                                               dtype=torch.float64)
    expected = mistral_sliding_window_attention(q, k, v, window)
    float32_softmax = dict(rtol=0, atol=1e-6)  # Mistral's softmax runs in float32 even for float64 input
    torch.testing.assert_close(sliding_window_attention(q, k, v, window), expected, **float32_softmax)
    ours, _ = scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(T, window))
    torch.testing.assert_close(ours, expected, **float32_softmax)


# ----------------------------------------------------------------------------------------------------
# chunked_attention


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T, chunk_size", [(16, 4), (17, 5), (10, 3), (9, 64), (8, 1), (1, 2)])
def test_chunked_attention_equals_torch_sdpa(T, chunk_size, causal):
    q, k, v = qkv(2, 3, T, 8)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = chunked_attention(q, k, v, causal=causal, chunk_size=chunk_size)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    ours_lesson03, _ = scaled_dot_product_attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, ours_lesson03, rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("Tq, Tk, chunk_size", [(5, 13, 4), (13, 5, 4), (1, 9, 2), (7, 20, 6)])
def test_chunked_attention_with_different_query_and_key_lengths(Tq, Tk, chunk_size, causal):
    q, k, v = qkv(2, Tq, 8, Tk=Tk)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # top-left aligned, like ours
    out = chunked_attention(q, k, v, causal=causal, chunk_size=chunk_size)
    assert out.shape == (2, Tq, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_chunked_attention_with_large_scores_does_not_overflow():
    q, k, v = qkv(1, 2, 40, 8)
    q, k = q * 30, k * 30  # scores in the thousands: a naive exp would be inf
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = chunked_attention(q, k, v, chunk_size=7)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)


def test_without_the_rescaling_the_online_softmax_is_wrong():
    q, k, v = qkv(1, 32, 8)
    k[:, 20:] *= 4  # later chunks hold larger scores, so the running max changes
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    broken = chunked_attention(q, k, v, chunk_size=8, rescale=False)
    assert (broken - expected).abs().max() > 1e-2
    single_chunk = chunked_attention(q, k, v, chunk_size=32, rescale=False)  # nothing to rescale
    torch.testing.assert_close(single_chunk, expected, rtol=0, atol=1e-12)


def test_chunked_attention_custom_scale_and_value_width():
    q, k = torch.randn(2, 6, 4, dtype=torch.float64), torch.randn(2, 9, 4, dtype=torch.float64)
    v = torch.randn(2, 9, 5, dtype=torch.float64)  # Dv != D
    expected = F.scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(chunked_attention(q, k, v, causal=False, chunk_size=4, scale=0.3), expected,
                               rtol=0, atol=1e-12)


def test_chunked_attention_gradients_match_torch_sdpa():
    q, k, v = (t.requires_grad_() for t in qkv(1, 2, 11, 4))
    chunked_attention(q, k, v, chunk_size=3).square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    F.scaled_dot_product_attention(q, k, v, is_causal=True).square().sum().backward()
    for ours, expected in zip(grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_chunked_attention_in_half_precision_keeps_the_dtype_and_is_close(dtype):
    q, k, v = qkv(1, 2, 24, 16, dtype=torch.float32)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = chunked_attention(q.to(dtype), k.to(dtype), v.to(dtype), chunk_size=5)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=3e-2)


@pytest.mark.parametrize("causal", [True, False])
def test_chunked_attention_memory_grows_with_T_times_chunk_not_T_squared(causal):
    chunk_size, D = 64, 16
    sizes = (512, 1024)
    largest = [largest_tensor(chunked_attention, *qkv(1, T, D, dtype=torch.float32), causal=causal,
                              chunk_size=chunk_size) for T in sizes]
    assert largest[1] / largest[0] == pytest.approx(2.0, rel=0.05)
    assert largest[1] <= sizes[1] * max(chunk_size, D)  # the (T, chunk) scores, never (T, T)


# ----------------------------------------------------------------------------------------------------
# PeakMemory: the tracker the demo measures with


def test_peak_memory_counts_new_tensors_once_and_frees_them():
    x = torch.ones(1000)  # allocated before the block: not counted
    with torch.no_grad(), PeakMemory() as mem:
        a = x * 2  # 4000 bytes
        view = a.view(10, 100)  # a view: no new memory
        b = a + 1  # 4000 more: 8000 live
        del a, view  # frees the first 4000
        c = b.exp()  # 8000 live again, never 12000
    assert mem.peak_bytes == 8000
    assert mem.largest_bytes == 4000
    assert mem.current_bytes == 8000  # b and c are still alive
    del b, c
    assert mem.current_bytes == 0


def test_peak_memory_of_full_attention_holds_the_T_by_T_scores():
    T = 256
    q, k, v = qkv(1, T, 8, dtype=torch.float32)
    with torch.no_grad(), PeakMemory() as mem:
        scaled_dot_product_attention(q, k, v, causal=True)
    assert mem.largest_bytes == T * T * 4
    assert mem.peak_bytes >= 2 * T * T * 4  # scores and weights coexist at the softmax


# ----------------------------------------------------------------------------------------------------
# the context-length helpers on a tiny GPT


def tiny_gpt(pos="rope", n_layer=1, **overrides):
    torch.manual_seed(0)
    config = llama_config(vocab_size=50, block_size=16, n_layer=n_layer, n_head=2, d_model=16, pos=pos,
                          **overrides)
    return GPT(config).eval()


def test_loss_per_position_is_the_cross_entropy_of_each_position():
    model, data = tiny_gpt(), torch.randint(0, 50, (200,))
    losses = loss_per_position(model, data, 12, 5, reduce=False)  # (5, 12)
    starts = torch.linspace(0, 200 - 13, 5).long()
    windows = torch.stack([data[s:s + 13] for s in starts])
    with torch.no_grad():
        logits, mean_loss = model(windows[:, :-1], windows[:, 1:])
    expected = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")
    torch.testing.assert_close(losses, expected)
    torch.testing.assert_close(loss_per_position(model, data, 12, 5), expected.mean(0))
    torch.testing.assert_close(losses.mean(), mean_loss)


def test_loss_per_position_reads_past_block_size_only_where_the_encoding_can():
    data = torch.randint(0, 50, (300,))
    assert loss_per_position(tiny_gpt("alibi"), data, 48, 3).shape == (48,)  # 3x block_size
    learned = GPT(gpt2_config(vocab_size=50, block_size=16, n_layer=1, n_head=2, d_model=16)).eval()
    with pytest.raises(ValueError, match="block_size"):
        loss_per_position(learned, data, 48, 3)


@pytest.mark.parametrize("pos", ["none", "rope", "alibi", "sinusoidal"])
@pytest.mark.parametrize("kernels", ["torch", "lab"])
def test_a_window_longer_than_the_input_changes_nothing_and_is_undone_on_exit(pos, kernels):
    model, idx = tiny_gpt(pos, n_layer=2, kernels=kernels), torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        expected, _ = model(idx)
        with windowed_attention(model, 12):
            same, _ = model(idx)
        with windowed_attention(model, 3):
            different, _ = model(idx)
        after, _ = model(idx)
    torch.testing.assert_close(same, expected)
    assert not torch.allclose(different, expected)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    assert model.config.sliding_window is None  # the original config is back


@pytest.mark.parametrize("n_layer", [1, 2, 3])
def test_each_windowed_layer_reaches_window_minus_1_tokens_further_back(n_layer):
    window, T = 4, 16
    model = tiny_gpt("rope", n_layer=n_layer)
    idx = torch.randint(0, 50, (1, T))
    reach = n_layer * (window - 1)  # the last position sees tokens T-1-reach .. T-1
    with torch.no_grad(), windowed_attention(model, window):
        base = model(idx)[0][0, -1]
        for j in range(T):
            changed = idx.clone()
            changed[0, j] = (idx[0, j] + 1) % 50
            moved = not torch.allclose(model(changed)[0][0, -1], base)
            assert moved == (j >= T - 1 - reach), f"token {j}, reach {reach}"


@pytest.mark.parametrize("pos", ["rope", "none"])
def test_windowed_gpt_attention_equals_sliding_window_attention(pos):
    model = tiny_gpt(pos)
    layer = model.blocks[0].attn
    x = torch.randn(2, 13, 16)
    B, T, _ = x.shape
    q = layer.q_proj(x).view(B, T, 2, 8).transpose(1, 2)  # (B, H, T, D)
    k = layer.k_proj(x).view(B, T, 2, 8).transpose(1, 2)
    v = layer.v_proj(x).view(B, T, 2, 8).transpose(1, 2)
    if pos == "rope":
        cos, sin = model.rotary(torch.arange(T))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    expected = layer.o_proj(sliding_window_attention(q, k, v, 5).transpose(1, 2).reshape(B, T, 16))
    rope = model.rotary(torch.arange(T)) if pos == "rope" else None
    with torch.no_grad(), windowed_attention(model, 5):
        out, _ = layer(x, mask=build_attention_mask(model.config, T, T), rope=rope)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-6)


def test_windowed_alibi_is_the_alibi_bias_cut_to_the_band():
    model = tiny_gpt("alibi")
    with windowed_attention(model, 3):
        mask = build_attention_mask(model.config, 7, 7)
    expected = alibi_bias(2, 7).masked_fill(~sliding_window_mask(7, 3), float("-inf"))
    torch.testing.assert_close(mask, expected)


@pytest.mark.parametrize("Tq, Tk, window", [(1, 12, 5), (3, 12, 5), (4, 9, 2), (2, 6, 10), (12, 12, 5)])
def test_windowed_queries_are_the_last_Tq_keys_bottom_right_like_mistral_with_a_cache(Tq, Tk, window):
    # a cached decode step: Tq new queries sit at positions Tk - Tq .. Tk - 1 of the keys (transformers'
    # q_offset); the band must hang from the bottom-right corner, not from the top-left one
    model = tiny_gpt("rope")
    with windowed_attention(model, window):
        mask = build_attention_mask(model.config, Tq, Tk)  # the mask the GPT builds for this forward
    expected = sdpa_mask(batch_size=1, q_length=Tq, kv_length=Tk, q_offset=Tk - Tq,
                         mask_function=sliding_window_causal_mask_function(window),
                         allow_is_causal_skip=False)[0, 0]
    assert torch.equal(mask, expected)
    # the last Tq rows of full sliding-window attention, computed with only those queries
    q, k, v = qkv(2, Tk, 8)
    out, _ = scaled_dot_product_attention(q[:, Tk - Tq:], k, v, mask=mask)
    full = sliding_window_attention(q, k, v, window)
    torch.testing.assert_close(out, full[:, Tk - Tq:], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("T, window, error, name", [
    (0, 2, ValueError, "T"), (4, 0, ValueError, "window"), (4, 1.5, TypeError, "window"),
    (4, True, TypeError, "window"), ("4", 2, TypeError, "T"),
])
def test_sliding_window_mask_rejects_bad_sizes(T, window, error, name):
    with pytest.raises(error, match=name):
        sliding_window_mask(T, window)


def test_attention_functions_reject_bad_tensors():
    q, k, v = qkv(1, 8, 4)
    for fn in (lambda *a: sliding_window_attention(*a, 2), lambda *a: chunked_attention(*a)):
        with pytest.raises(TypeError, match="q"):
            fn(q.long(), k, v)
        with pytest.raises(TypeError, match="k"):
            fn(q, [[1.0]], v)
        with pytest.raises(TypeError, match="dtype"):
            fn(q, k.float(), v)
        with pytest.raises(ValueError, match="k"):
            fn(q, torch.randn(1, 8, 5, dtype=torch.float64), v)
        with pytest.raises(ValueError, match="v"):
            fn(q, k, v[:, :5])
        with pytest.raises(ValueError, match="q"):
            fn(torch.randn(4, dtype=torch.float64), k, v)
        with pytest.raises(ValueError, match="dims"):
            fn(torch.randn(3, 8, 4, dtype=torch.float64), torch.randn(2, 8, 4, dtype=torch.float64),
               torch.randn(2, 8, 4, dtype=torch.float64))


def test_bad_window_chunk_size_causal_and_scale_are_refused():
    q, k, v = qkv(1, 8, 4)
    with pytest.raises(ValueError, match="window"):
        sliding_window_attention(q, k, v, 0)
    with pytest.raises(TypeError, match="window"):
        sliding_window_attention(q, k, v, 2.0)
    with pytest.raises(ValueError, match="k must have the sequence length"):
        sliding_window_attention(q, *qkv(1, 6, 4)[1:], 2)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_attention(q, k, v, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        chunked_attention(q, k, v, chunk_size=None)
    with pytest.raises(TypeError, match="causal"):
        chunked_attention(q, k, v, causal="yes")
    with pytest.raises(TypeError, match="rescale"):
        chunked_attention(q, k, v, rescale=1)
    with pytest.raises(ValueError, match="scale"):
        chunked_attention(q, k, v, scale=-1.0)
    with pytest.raises(ValueError, match="scale"):
        sliding_window_attention(q, k, v, 2, scale=float("inf"))


def test_context_helpers_reject_bad_input():
    model, data = tiny_gpt(), torch.randint(0, 50, (40,))
    with pytest.raises(TypeError, match="model"):
        loss_per_position("gpt", data, 8, 2)
    with pytest.raises(TypeError, match="data"):
        loss_per_position(model, data.float(), 8, 2)
    with pytest.raises(ValueError, match="length"):
        loss_per_position(model, data, 40, 2)
    with pytest.raises(ValueError, match="n_windows"):
        loss_per_position(model, data, 8, 0)
    with pytest.raises(TypeError, match="reduce"):
        loss_per_position(model, data, 8, 2, reduce="no")
    with pytest.raises(ValueError, match="window"), windowed_attention(model, 0):
        pass
    with pytest.raises(ValueError, match="model"), windowed_attention(torch.nn.Linear(2, 2), 4):
        pass
    with pytest.raises(TypeError, match="model"), windowed_attention("gpt", 4):
        pass


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux's /proc/self/clear_refs only")
def test_the_demos_os_memory_probe_runs_in_a_fresh_process():
    # the demo measures the OS's peak memory in a subprocess that imports only rss_probe
    code = "from llmlab.long_context.experiments import rss_probe; rss_probe(256, 2, 16, 64, 64)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    growth = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(growth) == 3 and all(isinstance(v, int) for v in growth.values())
