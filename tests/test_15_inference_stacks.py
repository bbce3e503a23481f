"""Lesson 15 specification: a paged, continuously batched engine changes how tokens are computed, never
which tokens come out.

- paged_attention (decode) and paged_prefill_attention (prefill over a cached prefix) equal torch's SDPA
  on the contiguous K/V gathered through the block table, for MHA, GQA and MQA;
- the BlockManager's ref counts, free counts and prefix cache: blocks taken as a sequence grows, shared
  full blocks, a hit only with equal tokens after an equal prefix, every block free once all finish;
- LLMEngine's greedy tokens equal lesson 06's `generate` (and transformers' `generate`) per prompt, for
  a GPT-2-style and a Llama-style (RoPE, GQA) model, under continuous batching, preemption and prefix
  caching — and the three classic engine bugs each have a test: a block-aligned prompt fully in the
  prefix cache, a preempted sequence re-prefilled with a cache hit, a block boundary crossed on the
  first decode step.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from llmlab.inference_stacks import (
    BlockManager,
    HFContinuousBatchingBackend,
    HFGenerateBackend,
    KVPool,
    LabEngineBackend,
    Lesson06Backend,
    LLMEngine,
    SamplingParams,
    Sequence,
    gather_kv,
    paged_attention,
    paged_prefill_attention,
    slot_mapping,
    write_kv,
)
from llmlab.kv_cache import generate
from llmlab.transformer_block import GPT, GPTConfig, gpt2_config, llama_config, to_hf

TINY = dict(vocab_size=61, block_size=64, n_layer=2, n_head=4, d_model=32)
CONFIGS = {
    "gpt2": gpt2_config(**TINY),
    "llama-gqa": llama_config(**TINY, n_kv_head=2),
}


def randomized(config: GPTConfig, seed: int = 0, dtype=torch.float32) -> GPT:
    """A GPT with every parameter perturbed, so greedy choices are not decided by near-ties."""
    torch.manual_seed(seed)
    model = GPT(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.to(dtype).eval()


def random_prompts(n: int, low: int, high: int, vocab: int = 61, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high + 1, (n,), generator=g).tolist()
    return [torch.randint(0, vocab, (t,), generator=g).tolist() for t in lengths]


def reference(model: GPT, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Lesson 06's cached generate, one prompt at a time (no batching, no paging)."""
    return [generate(model, torch.tensor([p]), max_tokens)[0, len(p):].tolist() for p in prompts]


@pytest.fixture(scope="module", params=list(CONFIGS))
def model(request) -> GPT:
    return randomized(CONFIGS[request.param])


# ----------------------------------------------------------------------------------------------------
# paged attention == SDPA on the gathered context


def scattered_pool(B, H_kv, D, block_size, context_lens, num_blocks=40, seed=0, dtype=torch.float64):
    """A random pool and block tables that hand out the blocks in a shuffled order (non-contiguous)."""
    g = torch.Generator().manual_seed(seed)
    k_cache = torch.randn(num_blocks, block_size, H_kv, D, generator=g, dtype=dtype)
    v_cache = torch.randn(num_blocks, block_size, H_kv, D, generator=g, dtype=dtype)
    order = torch.randperm(num_blocks, generator=g).tolist()
    per_seq = [-(-n // block_size) for n in context_lens]
    max_blocks = max(per_seq)
    tables, start = [], 0
    for n in per_seq:
        tables.append(order[start:start + n] + [0] * (max_blocks - n))
        start += n
    return k_cache, v_cache, torch.tensor(tables), torch.tensor(context_lens)


def contiguous(cache, table, n):
    """The first n tokens of one sequence, (H_kv, n, D), by walking its block table in Python."""
    block_size = cache.shape[1]
    rows = [cache[table[t // block_size], t % block_size] for t in range(n)]  # n × (H_kv, D)
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize("H, H_kv", [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("kernels", ["lab", "torch"])
def test_paged_attention_equals_sdpa_on_the_contiguous_context(H, H_kv, kernels):
    D, block_size = 8, 4
    context_lens = [1, 4, 5, 13, 16]  # one token, exactly one block, one past, several, block-aligned
    k_cache, v_cache, tables, lens = scattered_pool(len(context_lens), H_kv, D, block_size, context_lens)
    q = torch.randn(len(context_lens), H, D, dtype=torch.float64)
    out = paged_attention(q, k_cache, v_cache, tables, lens, kernels=kernels)
    assert out.shape == (len(context_lens), H, D)
    for b, n in enumerate(context_lens):
        k, v = contiguous(k_cache, tables[b].tolist(), n), contiguous(v_cache, tables[b].tolist(), n)
        expected = F.scaled_dot_product_attention(q[b, :, None], k, v, enable_gqa=True)[:, 0]  # (H, D)
        torch.testing.assert_close(out[b], expected)


def test_paged_attention_scale_is_the_factor_on_q_dot_k():
    k_cache, v_cache, tables, lens = scattered_pool(2, 2, 8, 4, [7, 3])
    q = torch.randn(2, 2, 8, dtype=torch.float64)
    out = paged_attention(q, k_cache, v_cache, tables, lens, scale=0.3)
    for b, n in enumerate([7, 3]):
        k, v = contiguous(k_cache, tables[b].tolist(), n), contiguous(v_cache, tables[b].tolist(), n)
        expected = F.scaled_dot_product_attention(q[b, :, None], k, v, scale=0.3)[:, 0]
        torch.testing.assert_close(out[b], expected)


def test_paged_attention_never_reads_past_context_or_outside_its_blocks():
    k_cache, v_cache, tables, lens = scattered_pool(3, 2, 8, 4, [6, 9, 2])
    q = torch.randn(3, 4, 8, dtype=torch.float64)
    before = paged_attention(q, k_cache, v_cache, tables, lens)
    used = {(tables[b, t // 4].item(), t % 4) for b, n in enumerate([6, 9, 2]) for t in range(n)}
    k2, v2 = k_cache.clone(), v_cache.clone()
    for blk in range(k_cache.shape[0]):
        for off in range(4):
            if (blk, off) not in used:  # every slot no sequence owns: other blocks, tails of last blocks
                k2[blk, off], v2[blk, off] = 1e3, -1e3
    torch.testing.assert_close(paged_attention(q, k2, v2, tables, lens), before, rtol=0, atol=0)


@pytest.mark.parametrize("H, H_kv", [(4, 4), (4, 2)])
@pytest.mark.parametrize("kernels", ["lab", "torch"])
def test_prefill_attention_over_a_cached_prefix_equals_causal_sdpa(H, H_kv, kernels):
    D, block_size = 8, 4
    context_lens, query_lens = [9, 8, 12, 3], [9, 3, 1, 2]  # no prefix, prefix 5, prefix 11, prefix 1
    k_cache, v_cache, tables, lens = scattered_pool(4, H_kv, D, block_size, context_lens)
    Tq = max(query_lens)
    q = torch.randn(4, H, Tq, D, dtype=torch.float64)
    out = paged_prefill_attention(q, k_cache, v_cache, tables, lens, torch.tensor(query_lens),
                                  kernels=kernels)
    assert out.shape == (4, H, Tq, D) and torch.isfinite(out).all()
    for b, (n, m) in enumerate(zip(context_lens, query_lens)):
        k, v = contiguous(k_cache, tables[b].tolist(), n), contiguous(v_cache, tables[b].tolist(), n)
        causal = torch.ones(m, n, dtype=torch.bool).tril(diagonal=n - m)  # query i sits at key n - m + i
        expected = F.scaled_dot_product_attention(q[b, :, :m], k, v, attn_mask=causal, enable_gqa=True)
        torch.testing.assert_close(out[b, :, :m], expected)


def test_slot_mapping_write_then_gather_gives_back_the_contiguous_kv():
    config = llama_config(**TINY, n_kv_head=2)
    pool = KVPool(config, num_blocks=10, block_size=4, dtype=torch.float64)
    table = [7, 2, 9]  # scattered blocks
    k = torch.randn(11, 2, config.head_dim, dtype=torch.float64)  # 11 tokens (H_kv, D)
    v = torch.randn(11, 2, config.head_dim, dtype=torch.float64)
    slots = slot_mapping(table, 0, 6, 4) + slot_mapping(table, 6, 11, 4)  # two writes: prefill, then more
    assert slots[:5] == [28, 29, 30, 31, 8]
    write_kv(pool.k[0], pool.v[0], k, v, torch.tensor(slots))
    gathered = gather_kv(pool.k[0], torch.tensor([table]))  # (1, H_kv, 12, D)
    torch.testing.assert_close(gathered[0, :, :11], k.transpose(0, 1), rtol=0, atol=0)
    assert pool.nbytes == 2 * config.n_layer * 10 * 4 * 2 * config.head_dim * 8
    with pytest.raises(ValueError, match="block_table"):
        slot_mapping(table, 10, 13, 4)


def test_paged_attention_rejects_bad_shapes_naming_the_argument():
    k_cache, v_cache, tables, lens = scattered_pool(2, 2, 8, 4, [3, 5])
    q = torch.randn(2, 4, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="q"):
        paged_attention(q[:, None], k_cache, v_cache, tables, lens)
    with pytest.raises(ValueError, match="divide"):
        paged_attention(torch.randn(2, 3, 8, dtype=torch.float64), k_cache, v_cache, tables, lens)
    with pytest.raises(ValueError, match="block_tables"):
        paged_attention(q, k_cache, v_cache, tables[:1], lens)
    with pytest.raises(ValueError, match="context_lens"):
        paged_attention(q, k_cache, v_cache, tables, lens[:1])
    with pytest.raises(TypeError, match="k_cache"):
        paged_attention(q, k_cache.float(), v_cache, tables, lens)
    with pytest.raises(TypeError, match="block_tables"):
        paged_attention(q, k_cache, v_cache, tables.double(), lens)
    with pytest.raises(ValueError, match="kernels"):
        paged_attention(q, k_cache, v_cache, tables, lens, kernels="cuda")


# ----------------------------------------------------------------------------------------------------
# the block manager


def seq_of(tokens, max_tokens=4) -> Sequence:
    return Sequence(list(tokens), SamplingParams(max_tokens=max_tokens))


def computed(bm: BlockManager, seq: Sequence) -> None:
    """What the engine does after a step: every token's K/V is in the pool; full blocks get cached."""
    seq.num_cached_tokens = len(seq)
    bm.hash_blocks(seq)


def test_blocks_are_taken_as_a_sequence_grows_not_reserved_up_front():
    bm = BlockManager(8, 4)
    seq = seq_of(range(6), max_tokens=20)
    assert bm.can_allocate(seq) and bm.allocate(seq) == 0
    assert len(seq.block_table) == 2 and bm.num_free_blocks == 6  # ceil(6 / 4), not ceil(26 / 4)
    for new_len in range(7, 14):  # decode: one token at a time
        computed(bm, seq)
        seq.token_ids.append(0)
        assert bm.can_append(seq)
        bm.may_append(seq)
        assert len(seq.block_table) == -(-new_len // 4)  # a new block at tokens 9 and 13 only
    assert bm.num_free_blocks + bm.num_used_blocks == 8
    bm.deallocate(seq)
    assert bm.num_free_blocks == 8 and all(b.ref_count == 0 for b in bm.blocks) and seq.block_table == []


def test_prefix_blocks_are_shared_with_ref_counts_and_the_last_token_is_never_a_hit():
    bm = BlockManager(10, 4)
    a = seq_of([1, 2, 3, 4, 5, 6, 7, 8, 9])
    bm.allocate(a)
    computed(bm, a)  # blocks 0 and 1 are full: cached
    b = seq_of([1, 2, 3, 4, 5, 6, 7, 8])  # exactly a's two full blocks
    assert bm.num_prefix_hit_tokens(b) == 4  # not 8: the block of its last token is recomputed
    assert bm.allocate(b) == 4 and b.block_table[0] == a.block_table[0]
    assert b.block_table[1] != a.block_table[1]
    assert bm.blocks[a.block_table[0]].ref_count == 2 and bm.blocks[a.block_table[1]].ref_count == 1
    c = seq_of([1, 2, 3, 4, 5, 6, 7, 8, 0])
    assert bm.allocate(c) == 8 and c.block_table[:2] == a.block_table[:2]
    assert bm.blocks[a.block_table[0]].ref_count == 3
    assert bm.num_used_blocks == 3 + 1 + 1  # a: 3, b: a new second block, c: a new third block
    for s in (a, b, c):
        bm.deallocate(s)
    assert bm.num_free_blocks == 10 and all(blk.ref_count == 0 for blk in bm.blocks)


def test_cached_but_unreferenced_blocks_are_free_and_still_hit():
    bm = BlockManager(4, 4)
    a = seq_of(range(9))
    bm.allocate(a)
    computed(bm, a)
    bm.deallocate(a)
    assert bm.num_free_blocks == 4 and bm.num_cached_free_blocks == 2  # free, yet holding a's prefix
    b = seq_of(range(9))
    assert bm.can_allocate(b) and bm.allocate(b) == 8  # reuses both, needs one fresh block
    assert bm.num_free_blocks == 1
    # a full pool still admits a sequence that fits only by evicting cached blocks
    bm.deallocate(b)
    c = seq_of(range(100, 116))
    assert bm.can_allocate(c) and bm.allocate(c) == 0 and bm.num_cached_free_blocks == 0
    assert bm.num_prefix_hit_tokens(seq_of(range(9))) == 0  # evicted


def test_the_least_recently_freed_block_is_evicted_first():
    bm = BlockManager(4, 2)
    old, new = seq_of([1, 2, 3]), seq_of([7, 8, 9])
    for s in (old, new):
        bm.allocate(s)
        computed(bm, s)
    bm.deallocate(old)
    bm.deallocate(new)
    fresh = seq_of([5])
    bm.allocate(fresh)  # takes one free block: the oldest, i.e. old's partial block, then old's cached one
    bm.allocate(seq_of([6]))
    assert bm.num_prefix_hit_tokens(seq_of([1, 2, 3])) == 0  # old's prefix is gone
    assert bm.num_prefix_hit_tokens(seq_of([7, 8, 9])) == 2  # new's survives


def test_a_hash_hit_requires_equal_tokens(monkeypatch):
    monkeypatch.setattr(BlockManager, "compute_hash", staticmethod(lambda parent, tokens: 42))  # all collide
    bm = BlockManager(8, 2)
    a = seq_of([1, 2, 3])
    bm.allocate(a)
    computed(bm, a)
    assert bm.num_prefix_hit_tokens(seq_of([5, 6, 7])) == 0  # same hash, other tokens: a miss
    assert bm.num_prefix_hit_tokens(seq_of([1, 2, 7])) == 2


def test_a_hash_hit_requires_the_same_prefix_not_only_the_same_block(monkeypatch):
    # an unchained hash: the key of a block forgets what came before it
    monkeypatch.setattr(BlockManager, "compute_hash", staticmethod(lambda parent, tokens: hash(tokens)))
    bm = BlockManager(12, 2)
    for tokens in ([1, 2, 3, 4, 0], [5, 6, 9, 9, 0]):
        s = seq_of(tokens)
        bm.allocate(s)
        computed(bm, s)
    # block 0 = [5, 6] hits legitimately; block 1 = [3, 4] exists, but was computed after [1, 2]
    assert bm.num_prefix_hit_tokens(seq_of([5, 6, 3, 4, 0])) == 2
    assert bm.num_prefix_hit_tokens(seq_of([1, 2, 3, 4, 0])) == 4


def test_without_prefix_caching_nothing_is_shared():
    bm = BlockManager(8, 2, enable_prefix_caching=False)
    a = seq_of([1, 2, 3, 4, 5])
    bm.allocate(a)
    computed(bm, a)
    b = seq_of([1, 2, 3, 4, 5])
    assert bm.allocate(b) == 0 and not set(a.block_table) & set(b.block_table)


def test_block_manager_refuses_what_does_not_fit_and_bad_arguments():
    bm = BlockManager(2, 4)
    big = seq_of(range(9))
    assert not bm.can_allocate(big)
    with pytest.raises(RuntimeError, match="out of KV blocks"):
        bm.allocate(big)
    s = seq_of(range(3))
    bm.allocate(s)
    with pytest.raises(ValueError, match="seq"):
        bm.allocate(s)
    with pytest.raises(ValueError, match="num_blocks"):
        BlockManager(0, 4)
    with pytest.raises(TypeError, match="block_size"):
        BlockManager(4, 2.0)
    with pytest.raises(TypeError, match="enable_prefix_caching"):
        BlockManager(4, 2, enable_prefix_caching=1)


# ----------------------------------------------------------------------------------------------------
# the engine: the tokens of lesson 06, whatever the batching


def test_engine_greedy_equals_lesson06_with_continuous_batching_and_preemption(model):
    prompts = random_prompts(24, 1, 30)
    expected = reference(model, prompts, 12)
    engine = LLMEngine(model, block_size=4, num_blocks=14, max_num_seqs=4, max_num_batched_tokens=48)
    assert engine.generate(prompts, SamplingParams(max_tokens=12)) == expected
    assert engine.stats["preemptions"] > 0 and engine.stats["decode_steps"] > 0
    assert engine.block_manager.num_free_blocks == 14  # nothing leaked


def test_engine_with_a_roomy_pool_batches_everything_at_once(model):
    prompts = random_prompts(10, 1, 20, seed=3)
    engine = LLMEngine(model)  # defaults: 32 sequences, a full context each
    assert engine.block_manager.num_blocks == 32 * (64 // 16)
    assert engine.generate(prompts, SamplingParams(max_tokens=8)) == reference(model, prompts, 8)
    assert engine.stats["prefill_steps"] == 1 and engine.stats["decode_steps"] == 7
    assert engine.stats["preemptions"] == 0


def test_engine_greedy_equals_transformers_generate():
    model = randomized(CONFIGS["llama-gqa"])
    hf = to_hf(model).eval()
    prompts = random_prompts(4, 3, 12, seed=4)
    out = LLMEngine(model, block_size=4).generate(prompts, SamplingParams(max_tokens=10))
    for p, tokens in zip(prompts, out):
        hf_out = hf.generate(torch.tensor([p]), max_new_tokens=10, do_sample=False, pad_token_id=0)
        assert tokens == hf_out[0, len(p):].tolist()


def test_prefix_caching_saves_prefill_and_changes_no_token(model):
    system = random_prompts(1, 20, 20, seed=5)[0]  # a shared "system prompt" of 20 tokens
    prompts = [system + tail for tail in random_prompts(8, 1, 6, seed=6)]
    expected = reference(model, prompts, 6)
    runs = {}
    for caching in (False, True):
        engine = LLMEngine(model, block_size=4, max_num_seqs=2, enable_prefix_caching=caching)
        assert engine.generate(prompts, SamplingParams(max_tokens=6)) == expected
        runs[caching] = engine.stats
    assert runs[False]["prefix_cache_hit_tokens"] == 0
    assert runs[True]["prefix_cache_hit_tokens"] >= 6 * 20  # all but the first two reuse 5 full blocks
    saved = runs[False]["prefill_tokens"] - runs[True]["prefill_tokens"]
    assert saved == runs[True]["prefix_cache_hit_tokens"]


def test_bug_a_block_aligned_prompt_fully_in_the_prefix_cache_still_computes_a_token(model):
    prompt = random_prompts(1, 12, 12, seed=7)[0]  # 3 blocks of 4
    expected = reference(model, [prompt, prompt[:8]], 5)
    engine = LLMEngine(model, block_size=4)
    assert engine.generate([prompt], SamplingParams(max_tokens=5)) == expected[:1]
    assert engine.generate([prompt], SamplingParams(max_tokens=5)) == expected[:1]  # 3 blocks cached
    assert engine.stats["prefix_cache_hit_tokens"] == 8  # 2 blocks: the block of the last token is rerun
    assert engine.generate([prompt[:8]], SamplingParams(max_tokens=5)) == expected[1:]  # a cached prefix
    assert engine.stats["prefix_cache_hit_tokens"] == 8 + 4


def test_a_block_is_cached_only_once_the_kv_of_all_its_tokens_is_computed(model):
    prompt = random_prompts(1, 7, 7, seed=22)[0]
    engine = LLMEngine(model, block_size=4)
    (token,) = engine.generate([prompt], SamplingParams(max_tokens=1))  # block 1 holds 3 computed tokens
    longer = prompt + token + [5, 6]  # its block 1 = prompt[4:7] + the sampled token, whose K/V never was
    assert engine.generate([longer], SamplingParams(max_tokens=5)) == reference(model, [longer], 5)
    assert engine.stats["prefix_cache_hit_tokens"] == 4  # block 0 only


def test_bug_a_preempted_sequence_is_re_prefilled_with_a_prefix_cache_hit(model, monkeypatch):
    prompts = [[i] + p for i, p in enumerate(random_prompts(6, 5, 14, seed=8))]  # no shared prefix
    expected = reference(model, prompts, 16)
    engine = LLMEngine(model, block_size=4, num_blocks=12, max_num_seqs=4)
    resumed_hits = []
    allocate = engine.block_manager.allocate

    def spy(seq):
        hits = allocate(seq)
        if seq.num_preemptions:
            resumed_hits.append(hits)
        return hits

    monkeypatch.setattr(engine.block_manager, "allocate", spy)
    assert engine.generate(prompts, SamplingParams(max_tokens=16)) == expected
    assert engine.stats["preemptions"] > 0 and max(resumed_hits) > 0  # its old blocks came back


@pytest.mark.parametrize("prompt_len", [4, 8])
def test_bug_a_block_boundary_crossed_on_the_first_decode_step(model, prompt_len):
    prompt = random_prompts(1, prompt_len, prompt_len, seed=9)[0]
    engine = LLMEngine(model, block_size=4, num_blocks=prompt_len // 4 + 1)  # the pool fits it exactly
    engine.add_request(prompt, SamplingParams(max_tokens=5))
    engine.step()  # prefill: the prompt fills its blocks to the brim
    seq = engine.scheduler.running[0]
    assert len(seq.block_table) == prompt_len // 4
    engine.step()  # first decode: token prompt_len opens a new block
    assert len(seq.block_table) == prompt_len // 4 + 1
    finished = []
    while engine.has_unfinished_requests():
        finished += engine.step()
    assert [tokens for _, tokens in finished] == reference(model, [prompt], 5)


def test_block_manager_invariants_hold_after_every_step(model):
    prompts = random_prompts(3, 9, 9, seed=10)
    prompts = prompts + [p[:8] + [1, 2] for p in prompts] + random_prompts(8, 1, 20, seed=11)  # shared heads
    engine = LLMEngine(model, block_size=4, num_blocks=16, max_num_seqs=5)
    for p in prompts:
        engine.add_request(p, SamplingParams(max_tokens=10))
    bm = engine.block_manager
    while engine.has_unfinished_requests():
        engine.step()
        assert len(engine.scheduler.running) <= 5
        held = [b for s in engine.scheduler.running for b in s.block_table]
        assert all(not s.block_table for s in engine.scheduler.waiting)
        for block in bm.blocks:
            assert block.ref_count == held.count(block.block_id)
            assert (block.ref_count == 0) == (block.block_id in bm.free)
        assert bm.num_free_blocks + bm.num_used_blocks == 16 == bm.num_free_blocks + len(set(held))
        for s in engine.scheduler.running:
            assert len(s.block_table) == len(set(s.block_table)) == -(-s.num_cached_tokens // 4)
    assert bm.num_free_blocks == 16 and all(b.ref_count == 0 for b in bm.blocks)
    assert engine.stats["prefix_cache_hit_tokens"] > 0


def test_limits_max_num_seqs_and_max_num_batched_tokens_are_respected(model, monkeypatch):
    engine = LLMEngine(model, block_size=4, max_num_seqs=3, max_num_batched_tokens=30)
    batches = []
    run = engine.runner.run
    monkeypatch.setattr(engine.runner, "run", lambda seqs, is_prefill: (
        batches.append((is_prefill, len(seqs), sum(len(s) - s.num_cached_tokens for s in seqs))),
        run(seqs, is_prefill))[1])
    prompts = random_prompts(10, 8, 20, seed=12)
    assert engine.generate(prompts, SamplingParams(max_tokens=4)) == reference(model, prompts, 4)
    assert max(n for _, n, _ in batches) <= 3
    assert max(t for prefill, _, t in batches if prefill) <= 30
    assert all(t == n for prefill, n, t in batches if not prefill)  # decode: one token per sequence


def test_requests_join_a_running_batch(model):
    prompts = random_prompts(3, 4, 10, seed=13)
    engine = LLMEngine(model, block_size=4)
    first = engine.add_request(prompts[0], SamplingParams(max_tokens=10))
    engine.step()
    engine.step()
    late = [engine.add_request(p, SamplingParams(max_tokens=6)) for p in prompts[1:]]
    engine.step()  # a prefill of the newcomers while the first request waits one step
    assert len(engine.scheduler.running) == 3
    finished = {}
    while engine.has_unfinished_requests():
        finished.update(engine.step())
    assert finished[first] == reference(model, prompts[:1], 10)[0]
    assert [finished[i] for i in late] == reference(model, prompts[1:], 6)


def test_eos_stops_a_request_unless_ignore_eos(model):
    prompt = random_prompts(1, 6, 6, seed=14)[0]
    full = reference(model, [prompt], 10)[0]
    eos = full[3]
    engine = LLMEngine(model, block_size=4, eos_token_id=eos)
    stop, go_on = engine.generate([prompt, prompt], [SamplingParams(max_tokens=10),
                                                     SamplingParams(max_tokens=10, ignore_eos=True)])
    assert stop == full[:full.index(eos) + 1] and go_on == full


def test_params_per_prompt_and_results_in_prompt_order(model):
    prompts = random_prompts(4, 2, 9, seed=15)
    lengths = [7, 1, 4, 2]
    out = LLMEngine(model, block_size=4).generate(prompts, [SamplingParams(max_tokens=n) for n in lengths])
    assert out == [reference(model, [p], n)[0] for p, n in zip(prompts, lengths)]


# ----------------------------------------------------------------------------------------------------
# sampling


def test_seeded_sampling_equals_lesson06_generate_with_the_same_generator():
    model = randomized(CONFIGS["llama-gqa"], dtype=torch.float64)
    prompt = random_prompts(1, 7, 7, seed=16)[0]
    params = SamplingParams(temperature=0.9, top_k=20, top_p=0.95, max_tokens=12, seed=123)
    out = LLMEngine(model, block_size=4).generate([prompt], params)[0]
    ref = generate(model, torch.tensor([prompt]), 12, temperature=0.9, top_k=20, top_p=0.95,
                   generator=torch.Generator().manual_seed(123))
    assert out == ref[0, 7:].tolist()


def test_a_seeded_request_samples_the_same_tokens_whatever_its_batch_and_preemptions():
    model = randomized(CONFIGS["gpt2"], dtype=torch.float64)
    prompts = random_prompts(6, 3, 12, seed=17)
    params = [SamplingParams(temperature=1.0, max_tokens=14, seed=s) for s in range(6)]
    alone = [LLMEngine(model, block_size=4).generate([p], sp)[0] for p, sp in zip(prompts, params)]
    engine = LLMEngine(model, block_size=4, num_blocks=10, max_num_seqs=4)
    assert engine.generate(prompts, params) == alone
    assert engine.stats["preemptions"] > 0
    assert len({tuple(a) for a in alone}) == 6


def test_one_prompt_two_seeds_share_the_prefix_blocks_without_overwriting_them():
    model = randomized(CONFIGS["llama-gqa"], dtype=torch.float64)
    prompt = random_prompts(1, 11, 11, seed=18)[0]
    params = [SamplingParams(temperature=1.0, max_tokens=10, seed=s) for s in (1, 2)]
    alone = [LLMEngine(model, block_size=4).generate([prompt], sp)[0] for sp in params]
    engine = LLMEngine(model, block_size=4)
    engine.generate([prompt], SamplingParams(max_tokens=1))  # caches the prompt's 2 full blocks
    assert engine.generate([prompt, prompt], params) == alone
    assert engine.stats["prefix_cache_hit_tokens"] == 2 * 8


# ----------------------------------------------------------------------------------------------------
# bad input


def test_engine_rejects_bad_requests_and_settings_naming_the_argument(model):
    engine = LLMEngine(model, block_size=4, num_blocks=4, max_num_batched_tokens=20)
    with pytest.raises(ValueError, match="block_size=64"):
        engine.add_request([1] * 60, SamplingParams(max_tokens=5))
    with pytest.raises(ValueError, match="num_blocks=4"):
        engine.add_request([1] * 10, SamplingParams(max_tokens=8))
    with pytest.raises(ValueError, match="max_num_batched_tokens=20"):
        LLMEngine(model, max_num_batched_tokens=20).add_request([1] * 15, SamplingParams(max_tokens=8))
    with pytest.raises(ValueError, match="prompt"):
        engine.add_request([])
    with pytest.raises(ValueError, match="vocab_size"):
        engine.add_request([61])
    with pytest.raises(TypeError, match="prompt"):
        engine.add_request([1.0, 2.0])
    with pytest.raises(TypeError, match="params"):
        engine.add_request([1], {"max_tokens": 2})
    with pytest.raises(ValueError, match="params"):
        engine.generate([[1], [2]], [SamplingParams()])
    with pytest.raises(ValueError, match=r"prompts\[1\]"):
        engine.generate([[1], []])
    with pytest.raises(ValueError, match=r"prompts\[2\].*num_blocks=4"):
        engine.generate([[1], [2], [3] * 10], SamplingParams(max_tokens=8))
    assert not engine.has_unfinished_requests()  # nothing was queued by the failed calls
    with pytest.raises(TypeError, match="model"):
        LLMEngine(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="alibi"):
        LLMEngine(GPT(dataclasses.replace(CONFIGS["gpt2"], pos="alibi")))
    with pytest.raises(ValueError, match="max_num_seqs"):
        LLMEngine(model, max_num_seqs=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(temperature=1.0, top_p=1.5)
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams(max_tokens=0)


# ----------------------------------------------------------------------------------------------------
# backends: one interface, the same greedy tokens


def test_every_backend_gives_the_same_greedy_tokens(model):
    prompts = random_prompts(7, 1, 15, seed=19)
    backends = [LabEngineBackend(model, block_size=4, max_num_seqs=3), Lesson06Backend(model, batch_size=3),
                HFGenerateBackend(model, batch_size=4)]  # left-padded static batches of mixed lengths
    expected = reference(model, prompts, 8)
    for backend in backends:
        assert backend.generate(prompts, 8) == expected, backend.name
    assert backends[0].last_stats["decode_steps"] > 0


def test_transformers_continuous_batching_gives_the_engine_tokens():
    if not HFContinuousBatchingBackend.available():
        pytest.skip("the installed transformers has no generate_batch (continuous batching, >= 4.56)")
    model = randomized(CONFIGS["llama-gqa"])
    prompts = random_prompts(5, 1, 15, seed=20)
    backend = HFContinuousBatchingBackend(model, block_size=4, num_blocks=64, max_batch_tokens=128)
    assert backend.generate(prompts, 6) == LabEngineBackend(model, block_size=4).generate(prompts, 6)


def test_backends_sample_when_not_greedy_and_check_their_arguments(model):
    prompts = random_prompts(3, 2, 6, seed=21)
    for backend in (LabEngineBackend(model), Lesson06Backend(model), HFGenerateBackend(model)):
        out = backend.generate(prompts, 5, greedy=False)
        assert [len(o) for o in out] == [5, 5, 5]
        with pytest.raises(ValueError, match="max_new_tokens"):
            backend.generate(prompts, 0)
        with pytest.raises(ValueError, match=r"prompts\[1\]"):
            backend.generate([[1], []], 2)
        with pytest.raises(TypeError, match="greedy"):
            backend.generate(prompts, 2, greedy=1)


# ----------------------------------------------------------------------------------------------------
# the demo's pieces (experiments.py) and vLLM


def test_vllm_backend_gives_the_engine_greedy_tokens_on_the_same_weights():
    from llmlab.inference_stacks import VLLMBackend

    reason = VLLMBackend.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    # vLLM's CPU attention takes head sizes of 32 and up (it refuses 8: "Unsupported CPU attention")
    model = randomized(llama_config(**dict(TINY, d_model=64, n_head=2), n_kv_head=1))
    prompts = random_prompts(5, 1, 15, seed=22)
    backend = VLLMBackend(model, max_num_seqs=8)
    assert backend.generate(prompts, 6) == LabEngineBackend(model, block_size=4).generate(prompts, 6)
    assert [len(o) for o in backend.generate(prompts, [1, 2, 3, 4, 5])] == [1, 2, 3, 4, 5]


def test_workload_and_static_kv_trace_count_what_padding_wastes():
    from llmlab.inference_stacks import experiments as ex

    wl = ex.workload(list(range(100)), 6, (2, 5), (1, 3), seed=0, system=[7, 7])
    assert len(wl["prompts"]) == 6 and all(p[:2] == [7, 7] and 4 <= len(p) <= 7 for p in wl["prompts"])
    assert wl == ex.workload(list(range(100)), 6, (2, 5), (1, 3), seed=0, system=[7, 7])
    # one batch: prompts of 2 and 4 tokens padded to 4, outputs of 1 and 3 tokens
    trace = ex.static_kv_trace([[1, 2], [1, 2, 3, 4]], [1, 3], batch_size=2)
    assert trace == [(2 + 4, 2 * 4), (5, 2 * 5), (6, 2 * 6)]


def test_experiments_serve_the_reference_tokens_and_count_paged_waste(model):
    from llmlab.inference_stacks import experiments as ex

    prompts = random_prompts(6, 2, 12, seed=23)
    out_lens = [3, 5, 2, 6, 4, 1]
    expected = [t[:n] for t, n in zip(reference(model, prompts, 6), out_lens)]
    for static in (False, True):
        served = ex.make_backends(model, 4, names=("lab-engine", "hf-generate", "lesson06-static"),
                                  engine_kwargs=dict(block_size=4), static_engine=static)
        for name, fn in served.items():
            assert fn(prompts, out_lens) == expected, (name, static)
    run = ex.run_engine(model, prompts, out_lens, trace=True, arrivals_per_step=2, block_size=4)
    assert run["outputs"] == expected
    assert all(0 <= used <= reserved < used + 4 * 6 for used, reserved in run["trace"])  # < 1 block each
    kv = ex.kv_memory(model, dict(prompts=prompts, out_lens=out_lens), 4, [1, 8], 4)
    assert kv["paged"][1]["waste"] == 0.0 and kv["paged"][1]["waste"] < kv["paged"][8]["waste"]
    assert kv["static"]["waste"] > kv["paged"][4]["waste"]


def test_demo_break_flags_run(tmp_path):
    from llmlab.inference_stacks import demo

    results = demo.main(["--quick", "--out", str(tmp_path), "--no-prefix-caching", "--block-size", "8",
                         "--num-blocks", "40", "--static-batching", "--vllm", "off"])
    pc = results["prefix_caching"]["stats"]
    assert pc["caching"]["prefix_cache_hit_tokens"] == 0 == pc["no caching"]["prefix_cache_hit_tokens"]
    assert results["kv_memory"]["default_block"] == 8 and 8 in results["kv_memory"]["paged"]
    assert all(results["throughput"]["greedy_equal_to_engine"].values())
    assert results["vllm"] == dict(used=False, reason="--vllm off")
    assert len(list(tmp_path.glob("*.png"))) == 4
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--block-size", "0"])
