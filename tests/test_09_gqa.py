"""Lesson 09 specification: grouped-query attention.

- repeat_kv lines K/V heads up with groups of query heads exactly like torch.repeat_interleave and
  transformers' Llama;
- grouped_attention (the fold: MQA within each group) == lesson 03's attention on repeat_kv'd K/V ==
  torch's F.scaled_dot_product_attention(..., enable_gqa=True);
- GroupedQueryAttention with n_kv_head == n_head is lesson 03's MultiHeadAttention after a weight copy;
- the lab GPT with GQA (and after lesson 04's gpt_mha_to_gqa) has the logits of transformers' Llama with
  num_key_value_heads (through to_hf);
- mha_to_gqa mean-pools K/V heads (Ainslie et al. 2023), is exact when each group's heads are already
  identical, never modifies its input, and rejects head counts that do not divide.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

from llmlab.attention_basics import MultiHeadAttention, scaled_dot_product_attention
from llmlab.gqa import (
    GroupedQueryAttention,
    grouped_attention,
    mha_to_gqa,
    pool_kv_heads,
    repeat_kv,
)
from llmlab.positional_embeddings import RotaryEmbedding
from llmlab.transformer_block import GPT, CausalSelfAttention, gpt_mha_to_gqa, llama_config, to_hf
from llmlab.transformer_block.model import make_attention


@pytest.mark.parametrize("n_kv_head, n_rep", [(1, 8), (2, 4), (4, 2), (3, 3), (4, 1)])
def test_repeat_kv_matches_repeat_interleave_and_transformers(n_kv_head, n_rep):
    x = torch.randn(2, n_kv_head, 5, 8)
    out = repeat_kv(x, n_rep)
    assert out.shape == (2, n_kv_head * n_rep, 5, 8)
    torch.testing.assert_close(out, torch.repeat_interleave(x, n_rep, dim=1), rtol=0, atol=0)
    torch.testing.assert_close(out, hf_repeat_kv(x, n_rep), rtol=0, atol=0)


def test_each_query_head_gets_kv_head_h_floor_divided_by_n_rep():
    n_kv_head, n_rep = 3, 4
    x = torch.randn(1, n_kv_head, 2, 4)
    out = repeat_kv(x, n_rep)
    for h in range(n_kv_head * n_rep):
        assert torch.equal(out[:, h], x[:, h // n_rep])  # consecutive heads share, not tiled


def test_n_rep_one_returns_the_input_itself():
    x = torch.randn(2, 4, 3, 8)
    assert repeat_kv(x, 1) is x


def test_gradient_of_a_shared_kv_head_sums_over_its_query_group():
    x = torch.randn(1, 2, 3, 4, requires_grad=True)
    weights = torch.arange(1.0, 7.0).view(1, 6, 1, 1)  # a different weight per repeated head
    (repeat_kv(x, 3) * weights).sum().backward()
    torch.testing.assert_close(x.grad[0, 0], torch.full((3, 4), 1.0 + 2.0 + 3.0))
    torch.testing.assert_close(x.grad[0, 1], torch.full((3, 4), 4.0 + 5.0 + 6.0))


@pytest.mark.parametrize("n_rep", [0, -2])
def test_non_positive_n_rep_raises_value_error(n_rep):
    with pytest.raises(ValueError, match="n_rep"):
        repeat_kv(torch.randn(1, 2, 3, 4), n_rep)


@pytest.mark.parametrize("n_rep", [2.0, True, "2"])
def test_non_int_n_rep_raises_type_error(n_rep):
    with pytest.raises(TypeError, match="n_rep"):
        repeat_kv(torch.randn(1, 2, 3, 4), n_rep)


def test_x_must_be_a_4d_tensor():
    with pytest.raises(ValueError, match="x"):
        repeat_kv(torch.randn(2, 3, 4), 2)
    with pytest.raises(TypeError, match="x"):
        repeat_kv([[1.0]], 2)


# ----------------------------------------------------------------------------------------------------
# grouped_attention: the fold computes the same numbers as repeating K/V


@pytest.mark.parametrize("n_head, n_kv_head", [(8, 8), (8, 4), (8, 2), (8, 1), (6, 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_grouped_attention_equals_attention_on_repeated_kv_and_torch_enable_gqa(n_head, n_kv_head, causal):
    torch.manual_seed(0)
    q = torch.randn(2, n_head, 5, 8, dtype=torch.float64)
    k = torch.randn(2, n_kv_head, 7, 8, dtype=torch.float64)
    v = torch.randn(2, n_kv_head, 7, 8, dtype=torch.float64)
    out, weights = grouped_attention(q, k, v, causal=causal)
    n_rep = n_head // n_kv_head
    ref_out, ref_weights = scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep),
                                                        causal=causal)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)
    torch_out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    torch.testing.assert_close(out, torch_out)


def test_grouped_attention_applies_per_head_and_per_batch_masks_to_the_right_query_head():
    torch.manual_seed(0)
    B, H, H_kv, Tq, Tk = 2, 6, 2, 3, 5
    q, k, v = torch.randn(B, H, Tq, 4), torch.randn(B, H_kv, Tk, 4), torch.randn(B, H_kv, Tk, 4)
    bool_mask = torch.rand(B, H, Tq, Tk) > 0.3
    bias = torch.randn(H, Tq, Tk)  # an additive per-head bias, like ALiBi
    for mask in (bool_mask, bias, bool_mask[0, 0]):
        out, weights = grouped_attention(q, k, v, mask=mask, causal=True)
        ref_out, ref_weights = scaled_dot_product_attention(q, repeat_kv(k, 3), repeat_kv(v, 3), mask=mask,
                                                            causal=True)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(weights, ref_weights)


def test_grouped_attention_rejects_kv_heads_that_do_not_divide_the_query_heads():
    with pytest.raises(ValueError, match="K/V heads"):
        grouped_attention(torch.randn(1, 4, 2, 8), torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8))
    with pytest.raises(ValueError, match="q"):
        grouped_attention(torch.randn(4, 2, 8), torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8))
    with pytest.raises(ValueError, match="mask"):
        grouped_attention(torch.randn(1, 4, 2, 8), torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8),
                          mask=torch.ones(3, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------------
# GroupedQueryAttention: the module


def copy_mha_into_gqa(mha: MultiHeadAttention, gqa: GroupedQueryAttention) -> None:
    with torch.no_grad():
        for name in ("q_proj", "k_proj", "v_proj"):
            gqa.get_submodule(name).load_state_dict(mha.get_submodule(name).state_dict())
        gqa.o_proj.load_state_dict(mha.out_proj.state_dict())


@pytest.mark.parametrize("causal", [False, True])
def test_gqa_with_as_many_kv_heads_as_query_heads_is_lesson_03_multi_head_attention(causal):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, bias=True)
    gqa = GroupedQueryAttention(32, 4, 4, bias=True)
    copy_mha_into_gqa(mha, gqa)
    x = torch.randn(2, 6, 32)
    out, weights = gqa(x, causal=causal, need_weights=True)
    ref_out, ref_weights = mha(x, causal=causal, need_weights=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_gqa_module_equals_torch_sdpa_with_enable_gqa_on_its_projections(n_kv_head):
    torch.manual_seed(0)
    attn = GroupedQueryAttention(32, 4, n_kv_head)
    x = torch.randn(2, 6, 32)
    out, weights = attn(x)
    assert weights is None
    B, T, D = 2, 6, 8
    q = attn.q_proj(x).view(B, T, 4, D).transpose(1, 2)  # (B, H, T, D)
    k = attn.k_proj(x).view(B, T, n_kv_head, D).transpose(1, 2)  # (B, H_kv, T, D)
    v = attn.v_proj(x).view(B, T, n_kv_head, D).transpose(1, 2)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, H, T, D)
    ref = attn.o_proj(ref.transpose(1, 2).reshape(B, T, 32))
    torch.testing.assert_close(out, ref)


def test_kv_projections_and_parameters_shrink_with_n_kv_head():
    d_model, n_head = 64, 8
    head_dim = d_model // n_head
    for n_kv_head in (8, 4, 2, 1):
        attn = GroupedQueryAttention(d_model, n_head, n_kv_head)
        assert attn.k_proj.out_features == attn.v_proj.out_features == n_kv_head * head_dim
        assert attn.n_rep == n_head // n_kv_head
        n_params = sum(p.numel() for p in attn.parameters())
        assert n_params == 2 * d_model * d_model + 2 * d_model * n_kv_head * head_dim  # q, o + k, v


def test_changing_future_tokens_never_changes_past_outputs():
    torch.manual_seed(0)
    attn = GroupedQueryAttention(32, 4, 2)
    x = torch.randn(1, 8, 32)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(1, 3, 32)
    out, _ = attn(x)
    out2, _ = attn(x2)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


def test_queries_of_one_group_see_identical_keys():
    """All query heads of a group attend with the same K/V head: with identical queries in a group,
    they produce identical attention patterns; different groups differ."""
    torch.manual_seed(0)
    attn = GroupedQueryAttention(32, 4, 2)
    with torch.no_grad():
        w = attn.q_proj.weight.view(4, 8, 32)
        w[1], w[3] = w[0], w[2]  # head 1 copies head 0 (group 0), head 3 copies head 2 (group 1)
    _, weights = attn(torch.randn(1, 6, 32), need_weights=True)
    torch.testing.assert_close(weights[:, 0], weights[:, 1])
    torch.testing.assert_close(weights[:, 2], weights[:, 3])
    assert not torch.allclose(weights[:, 0], weights[:, 2])


@pytest.mark.parametrize("d_model, n_head, n_kv_head, name", [
    (32, 4, 3, "n_kv_head"), (32, 4, 8, "n_kv_head"), (30, 4, 2, "d_model"), (32, 4, 0, "n_kv_head"),
    (32, 0, 1, "n_head"),
])
def test_head_counts_that_do_not_divide_raise_value_error_naming_the_argument(d_model, n_head, n_kv_head,
                                                                              name):
    with pytest.raises(ValueError, match=name):
        GroupedQueryAttention(d_model, n_head, n_kv_head)


def test_non_int_head_counts_and_bad_inputs_raise():
    with pytest.raises(TypeError, match="n_kv_head"):
        GroupedQueryAttention(32, 4, 2.0)
    with pytest.raises(TypeError, match="bias"):
        GroupedQueryAttention(32, 4, 2, bias="yes")
    attn = GroupedQueryAttention(32, 4, 2)
    with pytest.raises(ValueError, match="x"):
        attn(torch.randn(2, 5, 16))
    with pytest.raises(TypeError, match="x"):
        attn([[0.0] * 32])


# ----------------------------------------------------------------------------------------------------
# converting multi-head checkpoints


def test_mean_pooling_averages_the_heads_of_each_group_and_first_keeps_the_first():
    head_dim, d_model = 3, 5
    weight = torch.randn(6 * head_dim, d_model)  # 6 K heads
    heads = weight.view(6, head_dim, d_model)
    pooled = pool_kv_heads(weight, 2, head_dim).view(2, head_dim, d_model)
    torch.testing.assert_close(pooled[0], (heads[0] + heads[1] + heads[2]) / 3)
    torch.testing.assert_close(pooled[1], (heads[3] + heads[4] + heads[5]) / 3)
    first = pool_kv_heads(weight, 2, head_dim, method="first").view(2, head_dim, d_model)
    assert torch.equal(first[0], heads[0]) and torch.equal(first[1], heads[3])
    bias = torch.arange(6.0 * head_dim)
    torch.testing.assert_close(pool_kv_heads(bias, 1, head_dim), bias.view(6, head_dim).mean(0))
    assert torch.equal(pool_kv_heads(weight, 6, head_dim), weight)  # n_kv_head = n_in: unchanged


def make_groups_identical(module, n_kv_head: int, head_dim: int) -> None:
    """Overwrite every K/V head with the first head of its group (n_kv_head groups)."""
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            linear = module.get_submodule(name)
            for p in (linear.weight, linear.bias):
                if p is None:
                    continue
                heads = p.view(n_kv_head, -1, head_dim, *p.shape[1:])  # (G, n_rep, D, ...)
                heads.copy_(heads[:, :1].expand_as(heads))


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_mha_to_gqa_is_exact_when_each_groups_heads_are_already_identical(n_kv_head):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 32)
    for source in (MultiHeadAttention(32, 4, bias=True), GroupedQueryAttention(32, 4, 4, bias=True)):
        make_groups_identical(source, n_kv_head, 8)
        gqa = mha_to_gqa(source, n_kv_head)
        assert isinstance(gqa, GroupedQueryAttention) and gqa.n_kv_head == n_kv_head
        out, _ = gqa(x, causal=True)
        ref, _ = source(x, causal=True)
        torch.testing.assert_close(out, ref)


def test_mha_to_gqa_converts_the_lab_gpts_causal_self_attention_exactly_for_identical_groups():
    torch.manual_seed(0)
    config = llama_config(vocab_size=64, block_size=16, n_layer=1, n_head=4, d_model=32)
    attn = make_attention(config, layer_idx=0)  # the GPT's layer: lesson 09's GroupedQueryAttention
    make_groups_identical(attn, 2, 8)
    gqa = mha_to_gqa(attn, 2)
    assert isinstance(gqa, CausalSelfAttention) and gqa.n_kv_head == 2
    assert (gqa.kernels, gqa.layer_idx, gqa.attn_scale) == (attn.kernels, 0, attn.attn_scale)
    x = torch.randn(2, 10, 32)
    rope = RotaryEmbedding(config.head_dim)(torch.arange(10))  # (cos, sin): what the GPT passes each layer
    torch.testing.assert_close(gqa(x, rope=rope)[0], attn(x, rope=rope)[0])  # RoPE is linear


def test_mha_to_gqa_can_go_from_gqa_to_fewer_kv_heads_and_leaves_its_input_unchanged():
    torch.manual_seed(0)
    attn = GroupedQueryAttention(64, 8, 4)
    before = {k: v.clone() for k, v in attn.state_dict().items()}
    mqa = mha_to_gqa(attn, 1)
    assert mqa.n_kv_head == 1 and mqa.k_proj.out_features == 8
    torch.testing.assert_close(mqa.k_proj.weight, attn.k_proj.weight.view(4, 8, 64).mean(0))
    assert torch.equal(mqa.q_proj.weight, attn.q_proj.weight)
    assert torch.equal(mqa.o_proj.weight, attn.o_proj.weight)
    for k, v in attn.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("n_kv_head, error, name", [
    (3, ValueError, "n_kv_head"), (8, ValueError, "n_kv_head"), (0, ValueError, "n_kv_head"),
    (2.0, TypeError, "n_kv_head"),
])
def test_mha_to_gqa_rejects_head_counts_that_do_not_divide(n_kv_head, error, name):
    with pytest.raises(error, match=name):
        mha_to_gqa(MultiHeadAttention(32, 4), n_kv_head)


def test_mha_to_gqa_rejects_other_modules_and_methods():
    with pytest.raises(TypeError, match="attention"):
        mha_to_gqa(torch.nn.Linear(4, 4), 1)
    with pytest.raises(ValueError, match="method"):
        mha_to_gqa(MultiHeadAttention(32, 4), 2, method="max")
    with pytest.raises(ValueError, match="n_kv_head"):
        pool_kv_heads(torch.randn(4 * 8, 32), 3, 8)


# ----------------------------------------------------------------------------------------------------
# the lab GPT with GQA == transformers' Llama with num_key_value_heads


def tiny_llama(**overrides) -> GPT:
    torch.manual_seed(0)
    config = llama_config(vocab_size=64, block_size=16, n_layer=2, n_head=4, d_model=32, **overrides)
    return GPT(config).eval()


@pytest.mark.parametrize("n_kv_head", [2, 1])
def test_lab_gpt_with_gqa_has_the_logits_of_transformers_llama_with_num_key_value_heads(n_kv_head):
    model = tiny_llama(n_kv_head=n_kv_head)
    hf = to_hf(model)
    assert hf.config.num_key_value_heads == n_kv_head
    idx = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_kv_head", [2, 1])
def test_converted_gpt_matches_transformers_llama_and_keeps_the_original(n_kv_head):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gqa = gpt_mha_to_gqa(model, n_kv_head)
    assert isinstance(gqa, GPT) and gqa.config.n_kv_head == n_kv_head
    assert all(block.attn.k_proj.out_features == n_kv_head * 8 for block in gqa.blocks)
    idx = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], to_hf(gqa)(idx).logits, rtol=1e-4, atol=1e-4)
    for k, v in model.state_dict().items():  # the MHA model is untouched
        assert torch.equal(v, before[k])
    assert model.config.n_kv_head is None


def test_converted_gpt_is_exact_when_each_groups_heads_are_identical_and_differs_otherwise():
    model = tiny_llama()
    idx = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        ref = model(idx)[0]
        assert not torch.allclose(gpt_mha_to_gqa(model, 2)(idx)[0], ref, atol=1e-4)
        for block in model.blocks:
            make_groups_identical(block.attn, 2, 8)
        ref = model(idx)[0]
        torch.testing.assert_close(gpt_mha_to_gqa(model, 2)(idx)[0], ref)
        torch.testing.assert_close(gpt_mha_to_gqa(model, 2, method="first")(idx)[0], ref)


def test_converted_gpt_trains_and_its_config_round_trips():
    model = gpt_mha_to_gqa(tiny_llama(), 2).train()
    assert dataclasses.replace(model.config, n_kv_head=None) == tiny_llama().config
    idx = torch.randint(0, 64, (2, 12))
    _, loss = model(idx, idx)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_gpt_mha_to_gqa_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        gpt_mha_to_gqa(MultiHeadAttention(32, 4), 2)
    with pytest.raises(ValueError, match="n_kv_head"):
        gpt_mha_to_gqa(tiny_llama(), 3)
    with pytest.raises(ValueError, match="n_kv_head"):
        gpt_mha_to_gqa(tiny_llama(n_kv_head=2), 4)  # cannot create K/V heads by pooling


def test_the_old_head_count_keywords_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="deprecated, use n_head="), \
            pytest.warns(DeprecationWarning, match="deprecated, use n_kv_head="):
        attn = GroupedQueryAttention(32, n_heads=4, n_kv_heads=2)
    assert (attn.n_head, attn.n_kv_head) == (4, 2)
    with pytest.warns(DeprecationWarning, match="n_kv_head"):
        assert mha_to_gqa(attn, n_kv_heads=1).n_kv_head == 1
    with pytest.warns(DeprecationWarning, match="n_kv_head"):
        assert gpt_mha_to_gqa(tiny_llama(), n_kv_heads=2).config.n_kv_head == 2
    with pytest.raises(TypeError, match="n_kv_head"):
        GroupedQueryAttention(32, 4, n_kv_head=2, n_kv_heads=2)
