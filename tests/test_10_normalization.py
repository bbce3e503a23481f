"""Lesson 10 specification: norms, activations and feed-forward blocks equal torch's and
transformers' after a weight copy, have the invariances their equations promise, and reject bad input."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GPT2Config, LlamaConfig
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from llmlab.normalization import (
    ACTIVATIONS,
    GELU,
    NORMS,
    FeedForward,
    GeGLU,
    LayerNorm,
    ReLU,
    RMSNorm,
    SiLU,
    SwiGLU,
    count_parameters,
    ffn_hidden_size,
    geglu,
    gelu,
    layer_norm,
    make_activation,
    make_norm,
    relu,
    rms_norm,
    silu,
    swiglu,
)


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values, so a copy that forgot one (e.g. a bias) is caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


# --------------------------------------------------------------------------- norms == torch


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layernorm_matches_torch_layernorm_after_state_dict_copy(bias, eps):
    ours = _randomize(LayerNorm(16, eps=eps, bias=bias))
    ref = nn.LayerNorm(16, eps=eps, bias=bias)
    ref.load_state_dict(ours.state_dict())  # same parameter names, strict load
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rmsnorm_matches_torch_rmsnorm_after_state_dict_copy(eps):
    ours = _randomize(RMSNorm(16, eps=eps))
    ref = nn.RMSNorm(16, eps=eps)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(ours(x), ref(x))


def test_rmsnorm_matches_transformers_llama_rmsnorm():
    ours = _randomize(RMSNorm(16, eps=1e-6))
    ref = LlamaRMSNorm(16, eps=1e-6)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 1e-1])
def test_eps_sits_inside_the_square_root_like_torch(eps):
    # inputs of size ~1e-3 have variance ~1e-6, comparable to eps: where eps goes now matters
    x = 1e-3 * torch.randn(4, 32, dtype=torch.float64)
    torch.testing.assert_close(layer_norm(x, eps=eps), F.layer_norm(x, (32,), eps=eps))
    torch.testing.assert_close(rms_norm(x, eps=eps), F.rms_norm(x, (32,), eps=eps))
    closed_form = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    torch.testing.assert_close(rms_norm(x, eps=eps), closed_form)


def test_eps_changes_the_output_for_tiny_inputs_only():
    small = 1e-4 * torch.randn(4, 32)
    assert not torch.allclose(rms_norm(small, eps=1e-6), rms_norm(small, eps=1e-2), atol=1e-2)
    large = torch.randn(4, 32)
    torch.testing.assert_close(rms_norm(large, eps=1e-6), rms_norm(large, eps=1e-8), atol=1e-5, rtol=1e-5)


def test_norm_defaults_are_the_conventional_eps():
    assert LayerNorm(8).eps == nn.LayerNorm(8).eps == 1e-5
    assert RMSNorm(8).eps == LlamaRMSNorm(8).variance_epsilon == 1e-6


def test_constant_row_layer_norms_to_zero_not_nan():
    out = layer_norm(torch.full((2, 8), 3.0))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.zeros(2, 8))


def test_half_precision_inputs_are_normalised_in_float32():
    # 300^2 * 16 overflows float16's max of 65504 if summed in float16
    x = 300.0 * torch.randn(2, 16)
    for ours, ref in [(rms_norm, lambda t: F.rms_norm(t, (16,), eps=1e-6)), (layer_norm, None)]:
        out = ours(x.half())
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        expected = ours(x) if ref is None else ref(x)
        torch.testing.assert_close(out.float(), expected, atol=2e-3, rtol=2e-3)


# --------------------------------------------------------------------------- activations == torch


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_gelu(approximate):
    x = torch.linspace(-8, 8, 1001)
    torch.testing.assert_close(gelu(x, approximate), F.gelu(x, approximate=approximate))
    torch.testing.assert_close(GELU(approximate)(x), nn.GELU(approximate=approximate)(x))


def test_gelu_is_x_times_the_normal_cdf():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    phi = torch.distributions.Normal(0.0, 1.0).cdf(x)
    torch.testing.assert_close(gelu(x), x * phi)


def test_tanh_gelu_approximates_exact_gelu_to_about_1e_3():
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    gap = (gelu(x, "tanh") - gelu(x)).abs().max().item()
    assert 0 < gap < 1e-3


def test_silu_and_relu_match_torch():
    x = torch.linspace(-30, 30, 1001)
    torch.testing.assert_close(silu(x), F.silu(x))
    torch.testing.assert_close(SiLU()(x), nn.SiLU()(x))
    torch.testing.assert_close(relu(x), F.relu(x))
    torch.testing.assert_close(ReLU()(x), nn.ReLU()(x))


def test_silu_is_finite_with_finite_gradient_for_extreme_inputs():
    x = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4], requires_grad=True)
    silu(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("gelu", nn.GELU()),
        ("gelu_tanh", nn.GELU(approximate="tanh")),
        ("relu", nn.ReLU()),
        ("silu", nn.SiLU()),
    ],
)
def test_make_activation_builds_the_named_function(name, reference):
    x = torch.randn(64)
    torch.testing.assert_close(make_activation(name)(x), reference(x))


def test_swiglu_and_geglu_gates_are_activation_of_gate_times_up():
    gate, up = torch.randn(4, 10), torch.randn(4, 10)
    torch.testing.assert_close(swiglu(gate, up), F.silu(gate) * up)
    torch.testing.assert_close(geglu(gate, up), F.gelu(gate) * up)
    torch.testing.assert_close(geglu(gate, up, "tanh"), F.gelu(gate, approximate="tanh") * up)


# --------------------------------------------------------------------------- feed-forward == transformers


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation, hidden_act", [("swiglu", "silu"), ("geglu", "gelu")])
def test_gated_feedforward_matches_transformers_llama_mlp(activation, hidden_act, bias):
    config = LlamaConfig(hidden_size=32, intermediate_size=56, hidden_act=hidden_act, mlp_bias=bias)
    ours = _randomize(FeedForward(32, 56, activation, bias=bias))
    ref = LlamaMLP(config)
    ref.load_state_dict(ours.state_dict())  # strict: gate_proj/up_proj/down_proj names line up
    # float64: with N(0, 1) weights the outputs reach ~1e2, and float32 rounding would need loose tolerances
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    torch.testing.assert_close(ours.double()(x), ref.double()(x))


def test_swiglu_and_geglu_modules_are_the_gated_feedforwards():
    ff = _randomize(FeedForward(16, 24, "swiglu"))
    sw = SwiGLU(16, 24)
    sw.load_state_dict(ff.state_dict())
    x = torch.randn(5, 16)
    torch.testing.assert_close(sw(x), ff(x))
    # the equation itself: (silu(x W1) * x W3) W2
    torch.testing.assert_close(sw(x), sw.down_proj(F.silu(sw.gate_proj(x)) * sw.up_proj(x)))
    ge = _randomize(GeGLU(16, 24, bias=False))
    torch.testing.assert_close(ge(x), ge.down_proj(F.gelu(ge.gate_proj(x)) * ge.up_proj(x)))


def test_gelu_tanh_feedforward_matches_transformers_gpt2_mlp():
    config = GPT2Config(n_embd=32, activation_function="gelu_new", resid_pdrop=0.0)
    ref = GPT2MLP(4 * 32, config).eval()
    ours = _randomize(FeedForward(32, 4 * 32, "gelu_tanh"))
    with torch.no_grad():  # GPT-2's Conv1D stores weights as (in, out): transpose nn.Linear's (out, in)
        ref.c_fc.weight.copy_(ours.up_proj.weight.T)
        ref.c_fc.bias.copy_(ours.up_proj.bias)
        ref.c_proj.weight.copy_(ours.down_proj.weight.T)
        ref.c_proj.bias.copy_(ours.down_proj.bias)
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    torch.testing.assert_close(ours.double()(x), ref.double()(x))


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu", "silu"])
def test_plain_feedforward_is_down_of_act_of_up(activation):
    ff = _randomize(FeedForward(16, 40, activation))
    assert set(ff.state_dict()) == {"up_proj.weight", "up_proj.bias", "down_proj.weight", "down_proj.bias"}
    torch_act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU("tanh"), "relu": nn.ReLU(), "silu": nn.SiLU()}
    x = torch.randn(3, 16)
    torch.testing.assert_close(ff(x), ff.down_proj(torch_act[activation](ff.up_proj(x))))


def test_feedforward_dropout_acts_in_training_only():
    ff = FeedForward(16, 32, "gelu", dropout=0.5)
    x = torch.randn(8, 16)
    ff.eval()
    torch.testing.assert_close(ff(x), ff(x))
    ff.train()
    torch.manual_seed(0)
    a = ff(x)
    assert (a == 0).float().mean() > 0.2  # about half of the outputs dropped
    ff.eval()
    assert (ff(x) == 0).sum() == 0


# --------------------------------------------------------------------------- gradients


def test_gradcheck_in_float64():
    torch.manual_seed(0)
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: layer_norm(x, w, b, eps=1e-5), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: rms_norm(x, w, eps=1e-6), (x, w))
    assert torch.autograd.gradcheck(lambda x: gelu(x, "none"), (x,))
    assert torch.autograd.gradcheck(lambda x: gelu(x, "tanh"), (x,))
    assert torch.autograd.gradcheck(silu, (x,))
    g = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(swiglu, (g, x))
    sw = _randomize(SwiGLU(6, 8)).double()
    assert torch.autograd.gradcheck(sw, (x,))
    params = tuple(sw.parameters())
    assert torch.autograd.gradcheck(
        lambda x, *ps: torch.func.functional_call(sw, dict(zip(dict(sw.named_parameters()), ps)), (x,)),
        (x, *params),
    )


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0, 1e3])
def test_rms_norm_is_scale_invariant(c):
    x = torch.randn(4, 32, dtype=torch.float64)
    # eps breaks exact invariance for tiny inputs; a tiny eps isolates the property of the equation
    torch.testing.assert_close(rms_norm(c * x, eps=1e-30), rms_norm(x, eps=1e-30))


def test_rms_norm_is_not_shift_invariant():
    x = torch.randn(4, 32, dtype=torch.float64)
    assert not torch.allclose(rms_norm(x + 3.0), rms_norm(x), atol=1e-3)


@pytest.mark.parametrize("c", [-100.0, -1.0, 2.5, 1e3])
def test_layer_norm_is_shift_invariant(c):
    x = torch.randn(4, 32, dtype=torch.float64)
    torch.testing.assert_close(layer_norm(x + c, eps=1e-30), layer_norm(x, eps=1e-30))
    # a per-row shift too: the mean is removed row by row
    shift = torch.randn(4, 1, dtype=torch.float64) * c
    torch.testing.assert_close(layer_norm(x + shift, eps=1e-30), layer_norm(x, eps=1e-30))


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0, 1e3])
def test_layer_norm_is_scale_invariant(c):
    x = torch.randn(4, 32, dtype=torch.float64)
    torch.testing.assert_close(layer_norm(c * x, eps=1e-30), layer_norm(x, eps=1e-30))


def test_normalised_rows_have_the_promised_statistics():
    x = 5.0 + 3.0 * torch.randn(6, 64, dtype=torch.float64)
    ln = layer_norm(x, eps=1e-30)
    torch.testing.assert_close(ln.mean(-1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(ln.var(-1, unbiased=False), torch.ones(6, dtype=torch.float64))
    rms = rms_norm(x, eps=1e-30)
    torch.testing.assert_close(rms.pow(2).mean(-1), torch.ones(6, dtype=torch.float64))


# --------------------------------------------------------------------------- sizes and factories


def test_ffn_hidden_size_follows_llamas_rule():
    # Llama-7B: d_model 4096, d_ff = 4 * 4096, multiple_of 256 -> intermediate_size 11008
    assert ffn_hidden_size(4 * 4096, "swiglu", multiple_of=256) == 11008
    assert ffn_hidden_size(256, "swiglu") == 176  # int(170.67) = 170, rounded up to a multiple of 8
    assert ffn_hidden_size(256, "geglu", multiple_of=1) == 170
    for activation in ["gelu", "gelu_tanh", "relu", "silu"]:
        assert ffn_hidden_size(256, activation) == 256
    assert ffn_hidden_size(1, "swiglu") == 8


@pytest.mark.parametrize("d_model, d_ff", [(64, 256), (128, 512), (384, 1536)])
@pytest.mark.parametrize("gated", ["swiglu", "geglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_gated_ffn_at_two_thirds_width_has_about_the_plain_ffns_parameters(d_model, d_ff, gated, bias):
    plain = count_parameters(FeedForward(d_model, d_ff, "gelu", bias=bias))
    assert plain == 2 * d_model * d_ff + (d_ff + d_model if bias else 0)  # closed form
    hidden = ffn_hidden_size(d_ff, gated)
    gated_count = count_parameters(FeedForward(d_model, hidden, gated, bias=bias))
    assert gated_count == 3 * d_model * hidden + (2 * hidden + d_model if bias else 0)
    assert abs(gated_count / plain - 1) < 0.04
    # without the 2/3 rule the gated block would be 1.5x bigger
    assert count_parameters(FeedForward(d_model, d_ff, gated, bias=bias)) > 1.45 * plain


def test_count_parameters_counts_tied_weights_once_and_can_skip_frozen_ones():
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    assert count_parameters(nn.Sequential(a, b)) == 16
    norm = LayerNorm(8)
    norm.bias.requires_grad_(False)
    assert count_parameters(norm) == 16
    assert count_parameters(norm, trainable_only=True) == 8


def test_make_norm_builds_each_kind():
    assert isinstance(make_norm("layernorm", 8), LayerNorm)
    assert make_norm("layernorm", 8, bias=False).bias is None
    assert isinstance(make_norm("rmsnorm", 8), RMSNorm)
    assert make_norm("rmsnorm", 8, eps=1e-3).eps == 1e-3
    identity = make_norm("none", 8)
    x = torch.randn(2, 8)
    assert isinstance(identity, nn.Identity) and identity(x) is x
    assert set(NORMS) == {"layernorm", "rmsnorm", "none"}
    assert set(ACTIVATIONS) == {"gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu"}


# --------------------------------------------------------------------------- bad input


def test_unknown_names_raise_value_error_listing_the_allowed_ones():
    with pytest.raises(ValueError, match="kind.*layernorm.*rmsnorm.*none"):
        make_norm("batchnorm", 8)
    with pytest.raises(ValueError, match="activation.*gelu.*gelu_tanh.*relu.*silu.*swiglu.*geglu"):
        FeedForward(8, 16, "tanh")
    with pytest.raises(ValueError, match="name.*gelu.*relu.*silu"):
        make_activation("elu")
    with pytest.raises(ValueError, match="name.*swiglu.*FeedForward"):
        make_activation("swiglu")
    with pytest.raises(ValueError, match="approximate.*none.*tanh"):
        gelu(torch.randn(3), approximate="fast")
    with pytest.raises(ValueError, match="activation"):
        ffn_hidden_size(256, "mish")


@pytest.mark.parametrize("dim", [0, -4])
def test_non_positive_dims_raise_value_error(dim):
    for build in (LayerNorm, RMSNorm, lambda d: make_norm("rmsnorm", d)):
        with pytest.raises(ValueError, match="dim"):
            build(dim)
    with pytest.raises(ValueError, match="d_model"):
        FeedForward(dim, 16, "gelu")
    with pytest.raises(ValueError, match="d_ff"):
        FeedForward(16, dim, "swiglu")
    with pytest.raises(ValueError, match="d_ff"):
        ffn_hidden_size(dim, "swiglu")


@pytest.mark.parametrize("dim", [8.0, True, "8"])
def test_non_int_dims_raise_type_error(dim):
    with pytest.raises(TypeError, match="dim"):
        RMSNorm(dim)


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("inf"), float("nan")])
def test_non_positive_eps_raises_value_error(eps):
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(8, eps=eps)
    with pytest.raises(ValueError, match="eps"):
        RMSNorm(8, eps=eps)
    with pytest.raises(ValueError, match="eps"):
        rms_norm(torch.randn(2, 8), eps=eps)
    with pytest.raises(ValueError, match="eps"):
        layer_norm(torch.randn(2, 8), eps=eps)


def test_bad_tensors_and_shapes_are_rejected():
    with pytest.raises(TypeError, match="x"):
        rms_norm([1.0, 2.0])
    with pytest.raises(TypeError, match="x"):
        gelu(torch.arange(4))  # integer dtype
    with pytest.raises(ValueError, match="weight"):
        rms_norm(torch.randn(2, 8), torch.ones(7))
    with pytest.raises(ValueError, match="bias"):
        layer_norm(torch.randn(2, 8), torch.ones(8), torch.zeros(9))
    with pytest.raises(ValueError, match="gate"):
        swiglu(torch.randn(2, 8), torch.randn(2, 9))
    with pytest.raises(ValueError, match="d_model"):
        FeedForward(8, 16, "swiglu")(torch.randn(2, 9))
    with pytest.raises(ValueError, match="dropout"):
        FeedForward(8, 16, "gelu", dropout=1.0)
    with pytest.raises(ValueError, match="multiple_of"):
        ffn_hidden_size(256, "swiglu", multiple_of=0)
    with pytest.raises(TypeError, match="module"):
        count_parameters(torch.randn(3))


# --------------------------------------------------------------------------- fused kernels


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_fused_norm_equals_the_from_scratch_formula(kind):
    x = torch.randn(4, 7, 32, dtype=torch.float64) * 3 + 1
    lab = make_norm(kind, 32).double()
    fused = make_norm(kind, 32, fused=True).double()
    with torch.no_grad():
        lab.weight.normal_()
        if getattr(lab, "bias", None) is not None:
            lab.bias.normal_()
    fused.load_state_dict(lab.state_dict())
    torch.testing.assert_close(fused(x), lab(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu"])
def test_fused_feed_forward_equals_the_from_scratch_one(activation):
    torch.manual_seed(0)
    lab = FeedForward(16, 40, activation).double()
    fused = FeedForward(16, 40, activation, fused=True).double()
    fused.load_state_dict(lab.state_dict())
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(fused(x), lab(x), rtol=1e-12, atol=1e-12)


def test_fused_must_be_a_bool():
    with pytest.raises(TypeError, match="fused"):
        LayerNorm(8, fused="yes")


# --------------------------------------------------------------------------- analysis helpers


def test_token_statistics_match_torch_mean_std_and_rms():
    from llmlab.normalization.layers import token_statistics

    x = 2.0 + 3.0 * torch.randn(5, 7, 48, dtype=torch.float64)
    mean, std, rms = token_statistics(x)
    assert mean.shape == std.shape == rms.shape == (5, 7)
    torch.testing.assert_close(mean, x.mean(-1))
    torch.testing.assert_close(std, x.std(-1, correction=0))
    torch.testing.assert_close(rms, torch.linalg.vector_norm(x, dim=-1) / 48**0.5)
    # the identity that relates the two norms: rms^2 = mean^2 + std^2
    torch.testing.assert_close(rms**2, mean**2 + std**2)


def test_token_statistics_after_each_norm_are_what_the_norm_promises():
    from llmlab.normalization.layers import token_statistics

    x = 4.0 + 10.0 * torch.randn(32, 64, dtype=torch.float64)
    mean, std, _ = token_statistics(layer_norm(x, eps=1e-30))
    torch.testing.assert_close(mean, torch.zeros(32, dtype=torch.float64))
    torch.testing.assert_close(std, torch.ones(32, dtype=torch.float64))
    mean, std, rms = token_statistics(rms_norm(x, eps=1e-30))
    torch.testing.assert_close(rms, torch.ones(32, dtype=torch.float64))
    assert (mean.abs() > 0.1).all()  # RMSNorm keeps the direction, mean included: no centring


def test_token_statistics_of_half_precision_are_float32():
    from llmlab.normalization.layers import token_statistics

    x = torch.full((2, 64), 300.0, dtype=torch.float16)  # x^2 = 9e4 overflows float16
    mean, std, rms = token_statistics(x)
    assert rms.dtype == torch.float32
    torch.testing.assert_close(rms, torch.full((2,), 300.0))


def test_token_statistics_rejects_bad_input():
    from llmlab.normalization.layers import token_statistics

    with pytest.raises(TypeError, match="x"):
        token_statistics([1.0, 2.0])
    with pytest.raises(TypeError, match="x"):
        token_statistics(torch.arange(4))
    with pytest.raises(ValueError, match="x"):
        token_statistics(torch.tensor(1.0))
