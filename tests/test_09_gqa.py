"""Lesson 09 specification (so far): repeat_kv lines K/V heads up with groups of query heads
exactly like torch.repeat_interleave and transformers' Llama, and rejects bad input."""

import pytest
import torch
from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

from llmlab.gqa import repeat_kv

torch.set_num_threads(1)


@pytest.mark.parametrize("n_kv_heads, n_rep", [(1, 8), (2, 4), (4, 2), (3, 3), (4, 1)])
def test_repeat_kv_matches_repeat_interleave_and_transformers(n_kv_heads, n_rep):
    x = torch.randn(2, n_kv_heads, 5, 8)
    out = repeat_kv(x, n_rep)
    assert out.shape == (2, n_kv_heads * n_rep, 5, 8)
    torch.testing.assert_close(out, torch.repeat_interleave(x, n_rep, dim=1), rtol=0, atol=0)
    torch.testing.assert_close(out, hf_repeat_kv(x, n_rep), rtol=0, atol=0)


def test_each_query_head_gets_kv_head_h_floor_divided_by_n_rep():
    n_kv_heads, n_rep = 3, 4
    x = torch.randn(1, n_kv_heads, 2, 4)
    out = repeat_kv(x, n_rep)
    for h in range(n_kv_heads * n_rep):
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
