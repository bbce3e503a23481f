"""Lesson 08: mixture of experts, checked against transformers' Mixtral, closed-form maths, a dense loop."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from llmlab.moe import (
    MoELayer,
    TopKRouter,
    dense_ffn_flops_per_token,
    expert_capacity,
    load_balancing_loss,
    moe_cost,
    router_z_loss,
)
from llmlab.normalization import FeedForward
from llmlab.transformer_block import GPT, llama_config


def _mixtral_block(d_model=16, d_ff=24, n_experts=4, top_k=2, seed=0):
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = MixtralConfig(hidden_size=d_model, intermediate_size=d_ff, num_local_experts=n_experts,
                           num_experts_per_tok=top_k)
    torch.manual_seed(seed)
    block = MixtralSparseMoeBlock(config)
    with torch.no_grad():
        for p in block.parameters():  # transformers allocates them with torch.empty
            p.normal_(0.0, 0.3)
    return block.eval()


def _dense_reference(layer: MoELayer, x: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, weighted by the gate (0 for experts not chosen): (N, d_model)."""
    route = layer.router(x)
    gates = torch.zeros(x.shape[0], layer.n_experts).scatter(1, route.indices, route.weights)  # (N, E)
    outs = torch.stack([expert(x) for expert in layer.experts], dim=1)  # (N, E, d_model)
    return (gates[..., None] * outs).sum(dim=1)


# ----------------------------------------------------------------------------------------------------
# against transformers


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_from_mixtral_matches_transformers_mixtral_sparse_moe_block(top_k):
    block = _mixtral_block(top_k=top_k)
    layer = MoELayer.from_mixtral(block)
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        expected = block(x.clone())
        got = layer(x)
    assert got.shape == expected.shape == (3, 7, 16)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (layer.n_experts, layer.top_k, layer.d_ff) == (4, top_k, 24)


def test_from_mixtral_maps_w1_gate_w3_up_w2_down():
    block = _mixtral_block()
    layer = MoELayer.from_mixtral(block)
    gate_up, down = block.experts.gate_up_proj, block.experts.down_proj
    torch.testing.assert_close(layer.experts[2].gate_proj.weight, gate_up[2, :24])
    torch.testing.assert_close(layer.experts[2].up_proj.weight, gate_up[2, 24:])
    torch.testing.assert_close(layer.experts[2].down_proj.weight, down[2])
    torch.testing.assert_close(layer.router.gate.weight, block.gate.weight)


@pytest.mark.parametrize("top_k", [1, 2])
def test_load_balancing_loss_matches_transformers(top_k):
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    torch.manual_seed(1)
    layers = [torch.randn(40, 6) * 2 for _ in range(3)]
    for logits in (layers[:1], layers):
        expected = load_balancing_loss_func(tuple(logits), 6, top_k)
        torch.testing.assert_close(load_balancing_loss(logits, 6, top_k), expected)
    torch.testing.assert_close(load_balancing_loss(layers[0], 6, top_k),
                               load_balancing_loss_func((layers[0],), 6, top_k))


# ----------------------------------------------------------------------------------------------------
# closed-form maths


def test_load_balancing_loss_is_top_k_when_balanced_and_n_experts_when_collapsed():
    n_experts = 4
    balanced = torch.eye(n_experts).repeat(5, 1) * 30.0  # each expert wins 5 tokens, with certainty
    torch.testing.assert_close(load_balancing_loss(balanced, n_experts, 1), torch.tensor(1.0), atol=1e-6,
                               rtol=0)
    collapsed = torch.zeros(20, n_experts)
    collapsed[:, 0] = 30.0  # every token on expert 0, with certainty
    torch.testing.assert_close(load_balancing_loss(collapsed, n_experts, 1), torch.tensor(4.0), atol=1e-6,
                               rtol=0)
    uniform = torch.zeros(20, n_experts)  # P_i = 1/E whatever the choices: the loss is exactly top_k
    torch.testing.assert_close(load_balancing_loss(uniform, n_experts, 2), torch.tensor(2.0))


def test_router_z_loss_is_mean_squared_logsumexp():
    logits = torch.randn(2, 5, 8) * 3
    expected = torch.stack([torch.log(torch.exp(row).sum()) ** 2 for row in logits.reshape(-1, 8)]).mean()
    torch.testing.assert_close(router_z_loss(logits), expected)
    # it ignores which expert wins and grows with the logits' overall size
    assert router_z_loss(logits + 10) > router_z_loss(logits)


def test_expert_capacity_formula():
    assert expert_capacity(64, 8, 2, 1.25) == 20  # exactly 1.25 · 64 · 2 / 8, no float round-up
    assert expert_capacity(10, 3, 1, 1.0) == math.ceil(10 / 3)
    assert expert_capacity(10, 3, 1, None) is None


def test_router_is_mixtral_softmax_topk_renormalise():
    torch.manual_seed(0)
    router = TopKRouter(8, 5, top_k=2)
    x = torch.randn(11, 8)
    out = router(x)
    probs = torch.softmax(x @ router.gate.weight.T, dim=-1)
    top = probs.topk(2, dim=-1)
    torch.testing.assert_close(out.indices, top.indices)
    torch.testing.assert_close(out.weights, top.values / top.values.sum(-1, keepdim=True))
    # renormalised top-k gates == a softmax over the k chosen logits only
    chosen_logits = out.logits.gather(1, out.indices)
    torch.testing.assert_close(out.weights, torch.softmax(chosen_logits, dim=-1))


def test_top1_router_keeps_the_raw_probability_so_the_router_gets_a_gradient():
    router = TopKRouter(8, 4, top_k=1)
    out = router(torch.randn(6, 8))
    torch.testing.assert_close(out.weights[:, 0], out.probs.max(dim=-1).values)
    assert not torch.allclose(out.weights, torch.ones_like(out.weights))


def test_noisy_router_adds_noise_in_training_only():
    torch.manual_seed(0)
    router = TopKRouter(8, 4, top_k=2, noisy=True)
    x = torch.randn(50, 8)
    router.train()
    a, b = router(x).logits, router(x).logits
    assert not torch.allclose(a, b)
    router.eval()
    torch.testing.assert_close(router(x).logits, x @ router.gate.weight.T)


# ----------------------------------------------------------------------------------------------------
# the layer


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_sparse_dispatch_equals_a_dense_loop_over_all_experts_weighted_by_the_gates(top_k):
    torch.manual_seed(0)
    layer = MoELayer(12, 20, 4, top_k).eval()
    x = torch.randn(30, 12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _dense_reference(layer, x), atol=1e-6, rtol=1e-5)


def test_one_expert_top1_is_exactly_its_feed_forward():
    torch.manual_seed(0)
    layer = MoELayer(12, 20, 1, 1, renormalize=True)
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(layer(x), layer.experts[0](x))
    assert isinstance(layer.experts[0], FeedForward)


def test_capacity_drops_exactly_the_assignments_over_capacity_in_position_order():
    torch.manual_seed(0)
    n_tokens, n_experts, top_k, factor = 24, 4, 2, 0.75
    layer = MoELayer(8, 16, n_experts, top_k, capacity_factor=factor).eval()
    with torch.no_grad():  # a router that prefers expert 0 for every token, so expert 0 overflows
        layer.router.gate.weight[0] += 2.0 * layer.router.gate.weight.abs().sum(0)
    x = torch.randn(n_tokens, 8).abs()
    with torch.no_grad():
        got = layer(x)
        route = layer.router(x)
    capacity = math.ceil(factor * n_tokens * top_k / n_experts)
    assert layer.last_stats.capacity == capacity == 9

    # the documented order: position-major, all k choices of token t before token t + 1; first come,
    # first served (GShard's rank-major order would let a later token's 1st choice beat this one's 2nd)
    served = {e: 0 for e in range(n_experts)}
    kept = torch.zeros(n_tokens, top_k, dtype=torch.bool)
    for t in range(n_tokens):
        for rank in range(top_k):
            e = int(route.indices[t, rank])
            if served[e] < capacity:
                served[e] += 1
                kept[t, rank] = True
    assert int((~kept).sum()) == layer.last_stats.n_dropped > 0
    assert layer.last_stats.n_tokens_dropped == int((~kept).all(dim=1).sum())
    counts = torch.bincount(route.indices.reshape(-1), minlength=n_experts)
    assert layer.last_stats.n_dropped == int((counts - capacity).clamp(min=0).sum())

    # the reference output: only the kept assignments contribute, with their original gates
    expected = torch.zeros_like(x)
    with torch.no_grad():
        for t in range(n_tokens):
            for rank in range(top_k):
                if kept[t, rank]:
                    e = int(route.indices[t, rank])
                    expected[t] += route.weights[t, rank] * layer.experts[e](x[t])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_no_capacity_drops_nothing_and_utilisation_sums_to_one():
    torch.manual_seed(0)
    layer = MoELayer(8, 16, 4, 2)
    x = torch.randn(3, 10, 8)
    layer(x)
    stats = layer.last_stats
    assert stats.n_dropped == 0 and stats.capacity is None and stats.n_assignments == 60
    torch.testing.assert_close(stats.tokens_per_expert.sum(), torch.tensor(1.0))
    torch.testing.assert_close(stats.tokens_per_expert, stats.expert_counts.float() / 60)
    assert 0.0 <= stats.router_entropy <= math.log(4) + 1e-6
    torch.testing.assert_close(layer.last_aux_loss, load_balancing_loss(stats.router_logits, 4, 2))
    torch.testing.assert_close(layer.last_z_loss, router_z_loss(stats.router_logits))


def test_gradients_reach_the_router_from_the_output_and_from_the_aux_losses():
    torch.manual_seed(0)
    layer = MoELayer(8, 16, 4, 2)
    layer(torch.randn(20, 8)).pow(2).sum().backward()
    grad = layer.router.gate.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    layer.zero_grad()
    layer(torch.randn(20, 8))
    (layer.last_aux_loss + layer.last_z_loss).backward()
    assert layer.router.gate.weight.grad.abs().sum() > 0


def test_parameter_and_flop_accounting_match_the_module_and_torch_flop_counter():
    torch.manual_seed(0)
    d_model, d_ff, n_experts, top_k, n_tokens = 16, 32, 8, 2, 50
    layer = MoELayer(d_model, d_ff, n_experts, top_k).eval()
    cost = layer.cost()
    assert cost.total_params == sum(p.numel() for p in layer.parameters())
    one_expert = sum(p.numel() for p in layer.experts[0].parameters())
    assert cost.dense_params == one_expert
    assert cost.active_params == layer.router.gate.weight.numel() + top_k * one_expert
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        layer(torch.randn(n_tokens, d_model))
    assert counter.get_total_flops() == n_tokens * cost.flops_per_token
    assert cost.dense_flops_per_token == dense_ffn_flops_per_token(d_model, d_ff) == 6 * d_model * d_ff
    with_bias = moe_cost(d_model, d_ff, n_experts, top_k, activation="gelu", bias=True)
    plain = MoELayer(d_model, d_ff, n_experts, top_k, activation="gelu", bias=True)
    assert with_bias.total_params == sum(p.numel() for p in plain.parameters())


def test_routing_is_per_token_so_batching_does_not_change_outputs_without_capacity():
    torch.manual_seed(0)
    layer = MoELayer(8, 16, 4, 2).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        whole = layer(x)
        one = layer(x[1:, :3])
    torch.testing.assert_close(whole[1:, :3], one, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------
# inside the lab GPT


def test_gpt_with_experts_uses_moe_layers_and_adds_the_aux_loss_in_training_only():
    from llmlab.transformer_block import GPT, llama_config

    torch.manual_seed(0)
    config = llama_config(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=32, n_experts=4,
                          moe_top_k=2, moe_aux_loss_coef=0.05, moe_z_loss_coef=0.001)
    model = GPT(config)
    assert all(isinstance(block.ffn, MoELayer) for block in model.blocks)
    idx = torch.randint(0, 50, (2, 16))
    model.train()
    logits, loss = model(idx, idx)
    ce = F.cross_entropy(logits.reshape(-1, 50), idx.reshape(-1))
    aux = sum(0.05 * b.ffn.last_aux_loss + 0.001 * b.ffn.last_z_loss for b in model.blocks)
    torch.testing.assert_close(loss, ce + aux)
    assert aux > 0
    model.eval()
    logits, loss = model(idx, idx)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 50), idx.reshape(-1)))


def test_gpt_with_experts_trains_and_the_loss_decreases():
    from llmlab.transformer_block import GPT, llama_config

    torch.manual_seed(0)
    model = GPT(llama_config(vocab_size=16, block_size=8, n_layer=1, n_head=2, d_model=16, n_experts=4,
                             moe_top_k=1))
    data = torch.arange(16).repeat(8)  # a cycle: perfectly predictable
    idx, targets = data[:64].view(8, 8), data[1:65].view(8, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(40):
        _, loss = model(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.blocks[0].ffn.router.gate.weight.grad.abs().sum() > 0


def test_to_hf_refuses_a_mixture_of_experts_config():
    from llmlab.transformer_block import GPT, llama_config, to_hf

    model = GPT(llama_config(vocab_size=32, block_size=8, n_layer=1, n_head=2, d_model=16, n_experts=2))
    with pytest.raises(ValueError, match="n_experts"):
        to_hf(model)


# ----------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    (dict(n_experts=0), ValueError, "n_experts"),
    (dict(n_experts=2.0), TypeError, "n_experts"),
    (dict(top_k=5), ValueError, "top_k"),
    (dict(top_k=0), ValueError, "top_k"),
    (dict(d_ff=0), ValueError, "d_ff"),
    (dict(capacity_factor=0.0), ValueError, "capacity_factor"),
    (dict(capacity_factor="1"), TypeError, "capacity_factor"),
    (dict(activation="tanh"), ValueError, "activation"),
])
def test_moe_layer_rejects_bad_arguments(kwargs, error, name):
    args = dict(d_model=8, d_ff=16, n_experts=4, top_k=2) | kwargs
    with pytest.raises(error, match=name):
        MoELayer(**args)


def test_functions_reject_bad_input():
    with pytest.raises(TypeError, match="router_logits"):
        router_z_loss([[1.0, 2.0]])
    with pytest.raises(ValueError, match="n_experts"):
        load_balancing_loss(torch.randn(5, 3), 4, 1)
    with pytest.raises(ValueError, match="top_k"):
        load_balancing_loss(torch.randn(5, 4), 4, 5)
    with pytest.raises(ValueError, match="router_logits"):
        load_balancing_loss([], 4, 1)
    with pytest.raises(ValueError, match="n_tokens"):
        expert_capacity(-1, 4, 1, 1.0)
    with pytest.raises(ValueError, match="x"):
        MoELayer(8, 16, 4)(torch.randn(3, 7))
    with pytest.raises(TypeError, match="x"):
        MoELayer(8, 16, 4)(torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="block"):
        MoELayer.from_mixtral(torch.nn.Linear(3, 3))
    with pytest.raises(TypeError, match="noisy"):
        TopKRouter(8, 4, noisy=1)


@pytest.mark.parametrize(("field", "value", "error"), [
    ("n_experts", -1, ValueError), ("n_experts", 1.5, TypeError), ("moe_top_k", 0, ValueError),
    ("moe_capacity_factor", -1.0, ValueError), ("moe_aux_loss_coef", -0.1, ValueError),
    ("moe_z_loss_coef", "0", TypeError),
])
def test_gpt_config_validates_the_moe_fields(field, value, error):
    from llmlab.transformer_block import GPTConfig

    with pytest.raises(error, match=field):
        GPTConfig(n_experts=4, **{field: value}) if field != "n_experts" else GPTConfig(n_experts=value)
    with pytest.raises(ValueError, match="moe_top_k"):
        GPTConfig(n_experts=2, moe_top_k=3)


# ----------------------------------------------------------------------------------------------------
# capacity never lets the future (or another batch row) change the past


MOE_SETTINGS = [dict(moe_top_k=1), dict(moe_top_k=2), dict(moe_top_k=1, moe_capacity_factor=1.0),
                dict(moe_top_k=2, moe_capacity_factor=1.0), dict(moe_top_k=2, moe_capacity_factor=0.5),
                dict(moe_top_k=2, moe_capacity_factor=1.25, moe_z_loss_coef=1e-3)]


@pytest.mark.parametrize("settings", MOE_SETTINGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_every_moe_setting_keeps_the_gpt_causal_and_batch_rows_independent(settings):
    torch.manual_seed(0)
    config = llama_config(vocab_size=61, block_size=32, n_layer=2, n_head=4, d_model=32, n_experts=4,
                          **settings)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a router with opinions: some experts overflow
    idx = torch.randint(0, 61, (3, 32), generator=torch.Generator().manual_seed(1))
    future = idx.clone()
    future[:, 20:] = torch.randint(0, 61, (3, 12), generator=torch.Generator().manual_seed(2))
    other_rows = idx.clone()
    other_rows[1:] = torch.randint(0, 61, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        base = model(idx)[0]
        # up to float rounding (an expert's batch of tokens changes shape); a served-before-an-earlier-
        # token future moved these logits by ~5e-3
        torch.testing.assert_close(model(future)[0][:, :20], base[:, :20], rtol=0, atol=1e-5)
        torch.testing.assert_close(model(other_rows)[0][0], base[0], rtol=0, atol=1e-5)
    if settings.get("moe_capacity_factor") == 0.5:  # the setting must really drop something
        stats = [b.ffn.last_stats for b in model.blocks]
        assert sum(s.n_dropped for s in stats) > 0


def test_an_earlier_tokens_second_choice_is_served_before_a_later_tokens_first_choice():
    layer = MoELayer(4, 8, 2, 2, capacity_factor=0.5, renormalize=True).eval()  # capacity 1 per expert
    with torch.no_grad():
        layer.router.gate.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    x = torch.tensor([[0.0, 1.0, 0, 0], [1.0, 0.0, 0, 0]])  # token 0 prefers expert 1, token 1 expert 0
    with torch.no_grad():
        out = layer(x)
        route = layer.router(x)
        expected = sum(route.weights[0, r] * layer.experts[int(route.indices[0, r])](x[0]) for r in range(2))
    assert layer.last_stats.capacity == 1
    torch.testing.assert_close(out[0], expected)  # token 0 kept both choices
    torch.testing.assert_close(out[1], torch.zeros(4))  # token 1 came second: both its experts were full


def test_router_entropy_is_the_mean_entropy_of_the_router_probabilities():
    # lesson 05's entropy of the router logits == -sum p log p of the probabilities the router uses
    torch.manual_seed(0)
    layer = MoELayer(d_model=8, d_ff=16, n_experts=4, top_k=2)
    layer(torch.randn(2, 5, 8))
    probs = torch.softmax(layer.last_stats.router_logits.detach().float(), dim=-1)
    expected = -(probs * probs.log()).sum(-1).mean()
    assert layer.last_stats.router_entropy == pytest.approx(float(expected), rel=1e-6)
