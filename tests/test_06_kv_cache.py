"""Lesson 06 specification: a KV cache changes the cost of generation, never its result.

Cached generation gives the tokens and logits of full recomputation (GPT-2 and Llama presets, batches,
grouped K/V heads) and of transformers' own `generate`; the cache's bytes are the formula's; the ring
buffer equals attention restricted to the window; int8 stays within its derived error bound; and every
misuse (a full cache, a context past block_size, bad arguments) raises an error that names the culprit.
"""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from references import mistral_sliding_window_attention  # transformers' Mistral, shared with lesson 07
from torch.utils._python_dispatch import TorchDispatchMode

from llmlab.attention_basics import scaled_dot_product_attention
from llmlab.gqa import repeat_kv
from llmlab.kv_cache import (
    Int8KVCache,
    KVCache,
    SlidingWindowKVCache,
    cache_for,
    dequantize_int8,
    generate,
    kv_cache_bytes,
    quantize_int8,
)
from llmlab.long_context import sliding_window_mask, windowed_attention  # lesson 07
from llmlab.transformer_block import GPT, GPTConfig, gpt2_config, llama_config, to_hf

TINY = dict(vocab_size=61, block_size=32, n_layer=2, n_head=4, d_model=32)


def tiny(preset=gpt2_config, **overrides) -> GPTConfig:
    return preset(**{**TINY, **overrides})


def randomized(config: GPTConfig, seed: int = 0) -> GPT:
    """A GPT whose every parameter is perturbed, so its logits are far from uniform and greedy choices
    are not decided by ties."""
    torch.manual_seed(seed)
    model = GPT(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def prompt(config: GPTConfig, B: int = 2, T: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (B, T), generator=g)


CONFIGS = {
    "gpt2": tiny(gpt2_config),
    "gpt2-untied-relu": tiny(gpt2_config, tie_embeddings=False, activation="relu"),
    "llama": tiny(llama_config),
    "llama-gqa": tiny(llama_config, n_kv_head=2),
    "llama-mqa": tiny(llama_config, n_kv_head=1),
    "alibi-gqa": tiny(gpt2_config, pos="alibi", n_kv_head=2),
    "lab-kernels": tiny(llama_config, n_kv_head=2, kernels="lab"),
}


# ----------------------------------------------------------------------------------------------------
# the cache changes the cost, never the result


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("B", [1, 3])
def test_cached_generation_equals_full_recomputation_tokens_and_logits(name, B):
    model = randomized(CONFIGS[name])
    ids = prompt(model.config, B=B, T=5)
    cached, cached_logits = generate(model, ids, 25, return_logits=True)
    full, full_logits = generate(model, ids, 25, use_cache=False, return_logits=True)
    assert cached.shape == (B, 30) and torch.equal(cached[:, :5], ids)
    assert torch.equal(cached, full)
    torch.testing.assert_close(cached_logits, full_logits, atol=1e-5, rtol=0)
    # and the uncached path is the model itself: each chosen token is the argmax of a fresh forward pass
    with torch.no_grad():
        torch.testing.assert_close(full_logits[:, -1], model(full[:, :-1])[0][:, -1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_cached_sampling_equals_uncached_sampling_with_the_same_generator(name):
    model = randomized(CONFIGS[name])
    ids = prompt(model.config, B=4, T=3)
    knobs = dict(temperature=1.0, top_k=10, top_p=0.9)
    a = generate(model, ids, 20, generator=torch.Generator().manual_seed(7), **knobs)
    b = generate(model, ids, 20, use_cache=False, generator=torch.Generator().manual_seed(7), **knobs)
    assert torch.equal(a, b)
    c = generate(model, ids, 20, generator=torch.Generator().manual_seed(8), **knobs)
    assert not torch.equal(a, c)  # the generator really drives the draws


@pytest.mark.parametrize("name", ["gpt2", "gpt2-untied-relu", "llama", "llama-gqa", "llama-mqa"])
def test_greedy_generate_equals_transformers_generate(name):
    model = randomized(CONFIGS[name])
    ids = prompt(model.config, B=3, T=6)
    ours = generate(model, ids, 24)
    hf = to_hf(model)
    theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, min_new_tokens=24,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_generate_restores_training_mode_and_zero_new_tokens_returns_the_prompt():
    model = randomized(CONFIGS["gpt2"]).train()
    ids = prompt(model.config)
    assert torch.equal(generate(model, ids, 0), ids)
    generate(model, ids, 3)
    assert model.training
    out, logits = generate(model, ids, 0, return_logits=True)
    assert logits.shape == (2, 0, model.config.vocab_size)


def test_step_times_records_one_increasing_time_per_new_token():
    model = randomized(CONFIGS["llama"])
    times: list[float] = []
    generate(model, prompt(model.config), 7, step_times=times)
    assert len(times) == 7 and all(b >= a for a, b in zip(times, times[1:], strict=False))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_generate_on_a_half_precision_model_at_a_tiny_temperature_is_greedy(dtype):
    # the sampler computes in float32: z / 1e-4 would overflow float16 logits into inf and nan
    model = randomized(CONFIGS["llama"]).to(dtype)
    ids = prompt(model.config, B=2, T=4)
    greedy = generate(model, ids, 6)
    assert torch.equal(generate(model, ids, 6, temperature=1e-4, generator=torch.Generator().manual_seed(0)),
                       greedy)


# ----------------------------------------------------------------------------------------------------
# prompts of different lengths in one batch: left padding


def left_padded(prompts: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (B, T_max): each prompt right-aligned, pad_id and 0 on its left."""
    T = max(p.numel() for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), T, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - p.numel():], mask[b, T - p.numel():] = p, 1
    return ids, mask


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "alibi-gqa", "lab-kernels"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_a_left_padded_batch_generates_what_each_prompt_generates_alone(name, use_cache):
    model = randomized(CONFIGS[name])
    prompts = [prompt(model.config, B=1, T=n, seed=n)[0] for n in (7, 2, 5)]
    ids, mask = left_padded(prompts)
    out, logits = generate(model, ids, 12, attention_mask=mask, use_cache=use_cache, return_logits=True)
    for b, p in enumerate(prompts):
        alone, alone_logits = generate(model, p[None], 12, return_logits=True)
        assert torch.equal(out[b, 7:], alone[0, p.numel():]), f"row {b}"
        torch.testing.assert_close(logits[b], alone_logits[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_left_padded_greedy_generate_equals_transformers_generate(name):
    model = randomized(CONFIGS[name])
    ids, mask = left_padded([prompt(model.config, B=1, T=n, seed=n)[0] for n in (6, 3, 1)])
    ours = generate(model, ids, 10, attention_mask=mask)
    theirs = to_hf(model).generate(ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10,
                                   do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_bad_attention_masks_are_refused():
    model = randomized(CONFIGS["llama"])
    ids = prompt(model.config, B=2, T=4)
    with pytest.raises(ValueError, match="attention_mask"):
        generate(model, ids, 2, attention_mask=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="left padding"):
        generate(model, ids, 2, attention_mask=torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1]]))  # a hole
    with pytest.raises(ValueError, match="left padding"):
        generate(model, ids, 2, attention_mask=torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))  # right padding
    with pytest.raises(ValueError, match="SlidingWindowKVCache"):
        generate(model, ids, 2, attention_mask=torch.ones(2, 4, dtype=torch.long),
                 cache=SlidingWindowKVCache(model.config, 2, 8))


# ----------------------------------------------------------------------------------------------------
# the decode hot path never waits on the device


class HostReads(TorchDispatchMode):
    """Counts the ops that copy a tensor's value back to the host (on a GPU: a synchronisation)."""

    READS = {"aten.item", "aten._local_scalar_dense", "aten.equal", "aten.is_nonzero"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __enter__(self):  # Tensor.tolist reads without dispatching an op: count it by hand
        self._tolist = tolist = torch.Tensor.tolist

        def counted_tolist(tensor, *args, **kwargs):
            self.count += 1
            return tolist(tensor, *args, **kwargs)

        torch.Tensor.tolist = counted_tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func.overloadpacket) in self.READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_reads(model: GPT, n_new: int, **kwargs) -> int:
    ids = prompt(model.config, B=2, T=5)
    with HostReads() as reads:
        generate(model, ids, n_new, **kwargs)
    return reads.count


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "alibi-gqa", "lab-kernels"])
def test_a_decode_step_reads_nothing_back_from_the_device_whatever_the_depth(name):
    shallow = randomized(dataclasses.replace(CONFIGS[name], n_layer=1))
    deep = randomized(dataclasses.replace(CONFIGS[name], n_layer=4))
    few, many = host_reads(deep, 2), host_reads(deep, 12)
    assert many == few, f"{(many - few) / 10:.1f} host reads per decode step"
    assert host_reads(shallow, 12) == many  # nothing per layer either
    assert many == 1  # the check at the boundary: the prompt's ids, read once
    mask = torch.ones(2, 5, dtype=torch.long)
    assert host_reads(deep, 12, attention_mask=mask) == host_reads(deep, 2, attention_mask=mask) == 2


# ----------------------------------------------------------------------------------------------------
# the preallocated cache


def test_update_writes_in_place_and_returns_views_of_the_buffers():
    config = CONFIGS["llama-gqa"]
    cache = KVCache(config, batch_size=2, max_len=10)
    buffer = cache.keys[1]
    k, v = torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)  # (B, n_kv_head, T_new, head_dim)
    k_all, v_all = cache.update(1, k, v)
    assert k_all.shape == (2, 2, 3, 8) and torch.equal(k_all, k) and torch.equal(v_all, v)
    k2 = torch.randn(2, 2, 1, 8)
    k_all, _ = cache.update(1, k2, k2)
    assert cache.keys[1] is buffer and k_all.data_ptr() == buffer.data_ptr()  # no reallocation, no copy
    assert torch.equal(k_all, torch.cat([k, k2], dim=2))
    assert cache.lengths == [0, 4] and cache.length == 0  # each layer keeps its own length
    cache.reset()
    assert cache.lengths == [0, 0]


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "llama-mqa"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B, seq_len", [(1, 32), (3, 17)])
def test_kv_cache_bytes_equals_the_bytes_of_the_cache_tensors(name, dtype, B, seq_len):
    config = CONFIGS[name]
    cache = KVCache(config, B, seq_len, dtype=dtype)
    measured = sum(t.untyped_storage().nbytes() for t in cache.tensors())  # what torch really allocated
    assert measured == cache.nbytes == kv_cache_bytes(config, seq_len, B, dtype)
    # the meta device counts the same bytes without allocating them
    assert KVCache(config, B, seq_len, dtype=dtype, device="meta").nbytes == measured


def test_kv_cache_bytes_closed_form_for_real_models():
    # GPT-2 small (12 layers, 12 heads of 64) at 1024 tokens in fp16: 2·12·12·64·1024·2 = 36 MiB
    gpt2_small = gpt2_config(n_layer=12, n_head=12, d_model=768, block_size=1024)
    assert kv_cache_bytes(gpt2_small, 1024) == 36 * 2**20
    # Llama-2-7B (32 layers, 32 heads of 128) at 4096 tokens in fp16: 2 GiB per sequence;
    # Llama-3-8B's 8 K/V heads (GQA) make the same context 4x smaller
    llama2_7b = llama_config(n_layer=32, n_head=32, d_model=4096, block_size=4096)
    llama3_8b = llama_config(n_layer=32, n_head=32, n_kv_head=8, d_model=4096, block_size=8192)
    assert kv_cache_bytes(llama2_7b, 4096) == 2 * 2**30
    assert kv_cache_bytes(llama3_8b, 4096) * 4 == kv_cache_bytes(llama2_7b, 4096)


def test_a_full_cache_raises_instead_of_overwriting():
    config = CONFIGS["gpt2"]
    cache = KVCache(config, 1, max_len=4)
    x = torch.randn(1, 4, 3, 8)
    cache.update(0, x, x)
    with pytest.raises(ValueError, match="max_len=4"):
        cache.update(0, x, x)


def test_generating_past_block_size_is_a_clear_error_without_a_sliding_window():
    model = randomized(CONFIGS["llama"])
    ids = prompt(model.config, T=10)
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="max_new_tokens.*block_size=32"):
            generate(model, ids, 23, use_cache=use_cache)
    assert generate(model, ids, 22).shape == (2, 32)  # exactly block_size is fine
    # learned positions do not exist past block_size: even a sliding window cannot go there
    gpt2 = randomized(CONFIGS["gpt2"])
    with pytest.raises(ValueError, match="block_size"):
        generate(gpt2, ids, 30, cache=SlidingWindowKVCache(gpt2.config, 2, window=8))


# ----------------------------------------------------------------------------------------------------
# the sliding-window (ring buffer) cache


def windowed_reference_logits(model: GPT, ids: torch.Tensor, window: int, n_new: int) -> torch.Tensor:
    """Full recomputation of the whole sequence with lesson 07's sliding-window mask: the logits that chose
    the last n_new tokens, (B, n_new, vocab)."""
    with torch.no_grad(), windowed_attention(model, window):
        logits = model(ids[:, :-1], allow_longer=True)[0]  # (B, T_total - 1, vocab)
    return logits[:, -n_new:]


@pytest.mark.parametrize("name", ["llama", "llama-gqa"])
@pytest.mark.parametrize("prompt_len", [4, 11])  # shorter and longer than the window
def test_sliding_window_cache_equals_attention_restricted_to_the_window_past_block_size(name, prompt_len):
    model = randomized(CONFIGS[name])
    ids = prompt(model.config, B=2, T=prompt_len)
    cache = SlidingWindowKVCache(model.config, 2, window=7)
    out, logits = generate(model, ids, 40, cache=cache, return_logits=True)  # 40 + prompt > block_size 32
    assert out.shape == (2, prompt_len + 40) and cache.seen == prompt_len + 39
    assert cache.nbytes == kv_cache_bytes(model.config, 7, 2, torch.float32)  # memory stops at the window
    torch.testing.assert_close(logits, windowed_reference_logits(model, out, 7, 40), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_sliding_window_covering_everything_equals_the_full_cache(name):
    model = randomized(CONFIGS[name])
    ids = prompt(model.config, B=2, T=6)
    full = generate(model, ids, 20, return_logits=True)
    ring = generate(model, ids, 20, cache=SlidingWindowKVCache(model.config, 2, window=26),
                    return_logits=True)
    assert torch.equal(full[0], ring[0])
    torch.testing.assert_close(full[1], ring[1], atol=1e-5, rtol=0)
    # a smaller window (inside block_size, so learned positions work too) equals the masked reference
    out, logits = generate(model, ids, 20, cache=SlidingWindowKVCache(model.config, 2, window=5),
                           return_logits=True)
    torch.testing.assert_close(logits, windowed_reference_logits(model, out, 5, 20), atol=1e-5, rtol=0)


def test_ring_buffer_refuses_chunks_once_full_and_refuses_alibi():
    config = CONFIGS["llama"]
    cache = SlidingWindowKVCache(config, 1, window=4)
    x = torch.randn(1, 4, 3, 8)
    cache.update(0, x, x)  # 3 of 4 slots, in order
    with pytest.raises(ValueError, match="T_new=2"):
        cache.update(0, torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8))
    one = torch.randn(1, 4, 1, 8)
    for _ in range(3):
        k_all, _ = cache.update(0, one, one)
        assert k_all.shape == (1, 4, 4, 8)  # never more than the window
    with pytest.raises(ValueError, match="pos='alibi'"):
        SlidingWindowKVCache(CONFIGS["alibi-gqa"], 1, window=4)


# ----------------------------------------------------------------------------------------------------
# the int8 cache


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(1e-3, 1e3), st.integers(1, 64))
def test_int8_error_is_at_most_half_a_step_of_the_row_absmax(seed, magnitude, head_dim):
    # round-to-nearest on the grid scale·{-127..127}, scale = absmax / 127: |x - q·scale| <= absmax / 254
    x = torch.randn(3, 2, 5, head_dim, generator=torch.Generator().manual_seed(seed)) * magnitude
    q, scale = quantize_int8(x)
    assert q.dtype == torch.int8 and scale.shape == (3, 2, 5, 1)
    error = (dequantize_int8(q, scale) - x).abs()
    absmax = x.abs().amax(-1, keepdim=True)
    # plus float32 rounding of x / scale, q · scale and the difference: a few ulps of absmax (2^-23 each)
    assert (error <= absmax / 254 + 4 * absmax * 2.0**-23).all()
    assert (q.abs().amax(-1) == 127).all()  # the grid is used to its end: the absmax maps to ±127


def test_int8_all_zero_rows_stay_zero():
    q, scale = quantize_int8(torch.zeros(2, 4))
    assert torch.equal(dequantize_int8(q, scale), torch.zeros(2, 4))


def test_int8_cache_reads_back_the_dequantized_values_at_a_quarter_of_the_float32_bytes():
    config = CONFIGS["llama-gqa"]
    cache = Int8KVCache(config, 2, 16)
    k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    k_all, v_all = cache.update(0, k, v)
    torch.testing.assert_close(k_all, dequantize_int8(*quantize_int8(k)), atol=0, rtol=0)
    torch.testing.assert_close(v_all, dequantize_int8(*quantize_int8(v)), atol=0, rtol=0)
    # per (token, head): head_dim int8 codes + one float32 scale, against head_dim float32 numbers
    full = kv_cache_bytes(config, 16, 2, torch.float32)
    assert cache.nbytes == full * (8 + 4) // (8 * 4)


def test_int8_cache_generation_stays_close_to_the_full_cache():
    model = randomized(CONFIGS["llama-gqa"])
    ids = prompt(model.config, B=2, T=5)
    out, int8_logits = generate(model, ids, 20, cache=cache_for(model, "int8", batch_size=2, max_len=25),
                                return_logits=True)
    with torch.no_grad():  # the exact logits on the int8 run's own tokens: both see identical contexts
        exact = model(out[:, :-1])[0][:, -20:]  # (B, 20, vocab)
    error = (int8_logits - exact).abs().max()
    assert 0 < error < 0.05 * exact.abs().max()  # lossy (step absmax/127 per element), by < 5% of the range


# ----------------------------------------------------------------------------------------------------
# bad input


def test_bad_arguments_raise_naming_the_argument():
    model = randomized(CONFIGS["gpt2"])
    config, ids, zeros = model.config, prompt(CONFIGS["gpt2"]), torch.zeros
    cases = [
        (ValueError, "max_new_tokens", lambda: generate(model, ids, -1)),
        (TypeError, "max_new_tokens", lambda: generate(model, ids, 2.0)),
        (ValueError, "prompt_ids", lambda: generate(model, ids.float(), 2)),
        (ValueError, "prompt_ids", lambda: generate(model, ids[0], 2)),
        (TypeError, "model", lambda: generate(torch.nn.Linear(2, 2), ids, 2)),
        (ValueError, "temperature", lambda: generate(model, ids, 2, temperature=-1.0)),
        (ValueError, "top_p", lambda: generate(model, ids, 2, temperature=1.0, top_p=1.5)),
        (ValueError, "top_k", lambda: generate(model, ids, 2, temperature=1.0, top_k=0)),
        (TypeError, "use_cache", lambda: generate(model, ids, 2, use_cache=1)),
        (ValueError, "use_cache", lambda: generate(model, ids, 2, use_cache=False, cache=KVCache(config, 2))),
        (ValueError, "batch_size", lambda: generate(model, ids, 2, cache=KVCache(config, 3))),
        (ValueError, "n_kv_head", lambda: generate(model, ids, 2, cache=KVCache(CONFIGS["llama-gqa"], 2))),
        (TypeError, "cache", lambda: generate(model, ids, 2, cache=object())),
        (TypeError, "config", lambda: KVCache("gpt2")),
        (ValueError, "batch_size", lambda: KVCache(config, 0)),
        (ValueError, "max_len", lambda: KVCache(config, 1, 0)),
        (TypeError, "dtype", lambda: KVCache(config, 1, dtype=torch.int8)),
        (ValueError, "window", lambda: SlidingWindowKVCache(config, 1, window=0)),
        (ValueError, "seq_len", lambda: kv_cache_bytes(config, 0)),
        (TypeError, "batch_size", lambda: kv_cache_bytes(config, 8, True)),
        (TypeError, "dtype", lambda: kv_cache_bytes(config, 8, 1, "fp16")),
        (ValueError, "layer_idx", lambda: KVCache(config, 1).update(2, zeros(1, 4, 1, 8), zeros(1, 4, 1, 8))),
        (ValueError, "k must", lambda: KVCache(config, 1).update(0, zeros(1, 2, 1, 8), zeros(1, 4, 1, 8))),
        (ValueError, "kind", lambda: cache_for(model, "fp4")),
        (TypeError, "x must", lambda: quantize_int8(torch.ones(3, dtype=torch.long))),
    ]
    for error, name, call in cases:
        with pytest.raises(error, match=name):
            call()
    filled = KVCache(config, 2)
    generate(model, ids, 2, cache=filled)
    with pytest.raises(ValueError, match="cache must be empty"):
        generate(model, ids, 2, cache=filled)


# ----------------------------------------------------------------------------------------------------
# the ring buffer against transformers' Mistral `sliding_window`, at the attention level


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("window, prompt_len", [(5, 3), (5, 5), (4, 1), (7, 6), (1, 1)])
def test_ring_buffer_decode_equals_transformers_mistral_sliding_window(n_kv_head, window, prompt_len):
    # a prompt of prompt_len <= window tokens, then one token at a time well past the window: every query's
    # output through the ring buffer is Mistral's full-sequence attention restricted to the last `window` keys
    config = tiny(llama_config, n_kv_head=n_kv_head)
    B, H, D, T = 2, config.n_head, config.head_dim, 19
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, T, D, generator=g)
    k, v = torch.randn(B, n_kv_head, T, D, generator=g), torch.randn(B, n_kv_head, T, D, generator=g)
    expected = mistral_sliding_window_attention(q, k, v, window)  # (B, H, T, D)

    cache, n_rep = SlidingWindowKVCache(config, B, window=window), H // n_kv_head
    k_all, v_all = cache.update(1, k[:, :, :prompt_len], v[:, :, :prompt_len])  # the prompt, in order
    causal = sliding_window_mask(prompt_len, window)  # prompt_len <= window: plain causal
    out, _ = scaled_dot_product_attention(q[:, :, :prompt_len], repeat_kv(k_all, n_rep),
                                          repeat_kv(v_all, n_rep), mask=causal)
    outs = [out]
    for t in range(prompt_len, T):
        k_all, v_all = cache.update(1, k[:, :, t:t + 1], v[:, :, t:t + 1])
        assert k_all.shape == (B, n_kv_head, min(t + 1, window), D)
        # one query: it sees every slot of the ring, in whatever order the slots hold its keys
        out, _ = scaled_dot_product_attention(q[:, :, t:t + 1], repeat_kv(k_all, n_rep),
                                              repeat_kv(v_all, n_rep))
        outs.append(out)
    assert cache.lengths[1] == T and cache.lengths[0] == 0  # layers keep their own lengths
    torch.testing.assert_close(torch.cat(outs, dim=2), expected, rtol=0, atol=1e-5)
