"""Lesson 14 specification: integer quantization has the error bounds and the closed forms it promises and
equals torch's fake quantization where the conventions match; the straight-through estimator passes the
gradient exactly where nothing was clipped; QuantizedLinear computes F.linear with its dequantized weights
from the bytes it says it holds; bad input is refused naming the argument."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from llmlab.quantization import (
    QuantizedLinear,
    awq_quantize_weight,
    awq_scales,
    awq_search,
    dequantize,
    dequantize_q4_0,
    dequantize_q8_0,
    export_gguf,
    fake_quantize,
    gguf_tensor_names,
    gptq_quantize,
    gptq_quantize_weight,
    hessian,
    interleave_rope_rows,
    layer_output_error,
    load_gguf,
    pack_int4,
    quantize,
    quantize_model,
    quantize_q4_0,
    quantize_q8_0,
    quantized_range,
    record_inputs,
    uninterleave_rope_rows,
    unpack_int4,
)
from llmlab.quantization import gguf_export as gguf_export_module
from llmlab.transformer_block import GPT, gpt2_config, llama_config, to_hf

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType  # noqa: E402

BITS = (2, 3, 4, 6, 8)
SCHEMES = ("symmetric", "asymmetric")


def weights(rows=16, cols=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * torch.rand(rows, 1, generator=g) * 3


def tiny_llama(**overrides):
    torch.manual_seed(0)
    config = llama_config(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_kv_head=2, d_model=64,
                          d_ff=96, **overrides)
    return GPT(config).eval()


# ------------------------------------------------------------------------------ quantize / dequantize
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("granularity", [{}, {"axis": 0}, {"axis": 1}, {"group_size": 16}])
def test_rounding_error_is_at_most_half_a_step_per_element(scheme, bits, granularity):
    x = weights()
    qt = quantize(x, bits, scheme=scheme, **granularity)
    q_min, q_max = quantized_range(bits, scheme)
    assert int(qt.codes.min()) >= q_min and int(qt.codes.max()) <= q_max
    grouped_shape = (*qt.scale.shape[:-1], -1) if "group_size" in granularity else x.shape
    scale = qt.scale.expand(qt.codes.reshape(grouped_shape).shape).reshape(x.shape)  # each element's scale
    error = (x - dequantize(qt)).abs()
    assert bool((error <= scale / 2 * (1 + 1e-5)).all())  # nothing is clipped: the range is x's own


@pytest.mark.parametrize("bits", BITS)
def test_symmetric_maps_absmax_onto_the_largest_code(bits):
    x = weights()
    qt = quantize(x, bits, axis=0)
    q_max = 2 ** (bits - 1) - 1
    torch.testing.assert_close(qt.scale.flatten(), x.abs().amax(dim=1) / q_max)
    assert bool((qt.codes.abs().amax(dim=1) == q_max).all())
    rows = torch.arange(x.shape[0])
    peak = x.abs().argmax(dim=1)
    torch.testing.assert_close(dequantize(qt)[rows, peak], x[rows, peak])  # absmax comes back exactly


@pytest.mark.parametrize("bits", BITS)
def test_zero_point_maps_min_and_max_within_half_a_step_and_zero_exactly(bits):
    x = weights() + 0.7  # lopsided: min and max of different sizes
    x[0, 0] = 0.0
    qt = quantize(x, bits, scheme="asymmetric", axis=0)
    dq = dequantize(qt)
    scale = qt.scale.flatten()
    torch.testing.assert_close(scale, (x.amax(1).clamp(min=0) - x.amin(1).clamp(max=0)) / (2**bits - 1))
    torch.testing.assert_close(qt.zero_point.flatten().float(), torch.round(-x.amin(1).clamp(max=0) / scale))
    for reduce in (torch.amin, torch.amax):
        index = (x == reduce(x, dim=1, keepdim=True)).float().argmax(dim=1)
        rows = torch.arange(x.shape[0])
        assert bool(((dq[rows, index] - x[rows, index]).abs() <= scale / 2 * (1 + 1e-5)).all())
    assert float(dq[0, 0]) == 0.0


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", BITS)
def test_dequantize_equals_torch_fake_quantize_per_tensor_and_per_channel(scheme, bits):
    x = weights(seed=bits)
    q_min, q_max = quantized_range(bits, scheme)
    qt = quantize(x, bits, scheme=scheme)
    zero_point = torch.zeros(1, dtype=torch.int32) if qt.zero_point is None else qt.zero_point.reshape(1)
    expected = torch.fake_quantize_per_tensor_affine(x, qt.scale.reshape(1), zero_point, q_min, q_max)
    assert torch.equal(dequantize(qt), expected)
    assert torch.equal(fake_quantize(x, bits, scheme=scheme), expected)
    for axis in (0, 1):
        qt = quantize(x, bits, scheme=scheme, axis=axis)
        n = x.shape[axis]
        zero_point = torch.zeros(n, dtype=torch.int32) if qt.zero_point is None else qt.zero_point.reshape(n)
        expected = torch.fake_quantize_per_channel_affine(x, qt.scale.reshape(n), zero_point, axis,
                                                          q_min, q_max)
        assert torch.equal(dequantize(qt), expected)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_group_is_quantized_like_a_tensor_of_its_own(scheme):
    x = weights(rows=4, cols=96)
    grouped = dequantize(quantize(x, 4, scheme=scheme, group_size=32))
    for row in range(4):
        for start in range(0, 96, 32):
            alone = dequantize(quantize(x[row, start:start + 32], 4, scheme=scheme))
            assert torch.equal(grouped[row, start:start + 32], alone)


def test_finer_granularity_means_smaller_error_with_outlier_channels():
    x = weights(rows=64, cols=128)
    x[:, 5] *= 30  # one outlier input channel (LLM.int8()'s emergent features)
    x[7] *= 20  # and one large output channel
    error = {name: float((x - dequantize(quantize(x, 4, **kw))).pow(2).mean())
             for name, kw in [("tensor", {}), ("channel", {"axis": 0}), ("group", {"group_size": 32})]}
    assert error["group"] < error["channel"] < error["tensor"]


def test_an_all_zero_tensor_quantizes_to_zero_codes():
    for scheme in SCHEMES:
        qt = quantize(torch.zeros(3, 32), 4, scheme=scheme, group_size=16)
        assert torch.equal(dequantize(qt), torch.zeros(3, 32))


def test_dequantize_returns_the_input_dtype():
    x = weights().to(torch.bfloat16)
    assert dequantize(quantize(x, 8)).dtype == torch.bfloat16


# ------------------------------------------------------------------------------ straight-through estimator
@pytest.mark.parametrize("scheme", SCHEMES)
def test_ste_gradient_is_one_inside_the_range_and_zero_where_clipped(scheme):
    x = (torch.linspace(-3, 3, 241) + 0.013).requires_grad_(True)
    bits = 4
    q_min, q_max = quantized_range(bits, scheme)
    scale = torch.tensor(0.2)  # the range is smaller than x's: codes clip at both ends
    zero_point = None if scheme == "symmetric" else torch.tensor(7, dtype=torch.int32)
    y = fake_quantize(x, bits, scheme=scheme, scale=scale, zero_point=zero_point)
    upstream = torch.randn(x.shape)
    (grad,) = torch.autograd.grad(y, x, upstream)
    z = 0 if zero_point is None else 7
    codes = torch.round(x.detach() / scale) + z
    inside = (codes >= q_min) & (codes <= q_max)  # the closed form
    assert 0 < int(inside.sum()) < x.numel()
    assert torch.equal(grad, upstream * inside)
    expected = (codes.clamp(q_min, q_max) - z) * scale
    assert torch.equal(y.detach(), expected)
    # torch's own fake quantization: the same values and the same gradient
    x_ref = x.detach().clone().requires_grad_(True)
    ref = torch.fake_quantize_per_tensor_affine(x_ref, scale.reshape(1), torch.tensor([z], dtype=torch.int32),
                                                q_min, q_max)
    (ref_grad,) = torch.autograd.grad(ref, x_ref, upstream)
    assert torch.equal(y.detach(), ref.detach())
    assert torch.equal(grad, ref_grad)


def test_ste_gradient_matches_torch_per_channel_fake_quantize():
    x = (weights(rows=6, cols=40) * 2).requires_grad_(True)
    scale = torch.rand(6) * 0.3 + 0.05  # per row, small enough that some codes clip
    zero_point = torch.randint(0, 16, (6,), dtype=torch.int32)
    y = fake_quantize(x, 4, scheme="asymmetric", axis=0, scale=scale[:, None], zero_point=zero_point[:, None])
    upstream = torch.randn(x.shape)
    (grad,) = torch.autograd.grad(y, x, upstream)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = torch.fake_quantize_per_channel_affine(x_ref, scale, zero_point, 0, 0, 15)
    (ref_grad,) = torch.autograd.grad(ref, x_ref, upstream)
    assert torch.equal(y.detach(), ref.detach())
    assert torch.equal(grad, ref_grad)
    assert 0 < int((grad == 0).sum()) < grad.numel()


def test_with_its_own_range_nothing_clips_so_the_ste_gradient_is_one_everywhere():
    x = weights().requires_grad_(True)
    for kw in ({}, {"axis": 0}, {"group_size": 16}):
        (grad,) = torch.autograd.grad(fake_quantize(x, 3, **kw).sum(), x)
        assert torch.equal(grad, torch.ones_like(x))


def test_without_the_ste_the_gradient_vanishes():
    x = weights().requires_grad_(True)
    y = fake_quantize(x, 4, axis=0, ste=False)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))
    assert torch.equal(y.detach(), fake_quantize(x, 4, axis=0).detach())


# ------------------------------------------------------------------------------ int4 packing
def test_int4_packing_puts_two_codes_in_a_byte_and_round_trips():
    codes = torch.randint(-8, 8, (5, 32), dtype=torch.int8)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 16)
    assert torch.equal(packed[:, 0], ((codes[:, 0] + 8) | ((codes[:, 1] + 8) << 4)).to(torch.uint8))
    assert torch.equal(unpack_int4(packed), codes)


# ------------------------------------------------------------------------------ QuantizedLinear
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("group_size", [None, 32])
def test_quantized_linear_is_f_linear_with_its_dequantized_weight(bits, group_size):
    linear = nn.Linear(96, 40)
    layer = QuantizedLinear.from_linear(linear, bits, group_size=group_size)
    x = torch.randn(3, 7, 96)
    reference = dequantize(quantize(linear.weight.detach(), bits, axis=None if group_size else 0,
                                    group_size=group_size))
    torch.testing.assert_close(layer.dequantized_weight(), reference, rtol=0, atol=0)
    torch.testing.assert_close(layer(x), F.linear(x, reference, linear.bias.detach()))
    assert bool((layer.weight_codes() == quantize(linear.weight, bits, axis=None if group_size else 0,
                                                  group_size=group_size).codes).all())


def test_quantized_linear_holds_the_bytes_it_reports():
    linear = nn.Linear(256, 128, bias=False)
    fp32_bytes = 256 * 128 * 4
    int8 = QuantizedLinear.from_linear(linear, 8)
    int4 = QuantizedLinear.from_linear(linear, 4, group_size=64)
    assert int8.qweight.dtype == torch.int8 and int8.qweight.shape == (128, 256)
    assert int4.qweight.dtype == torch.uint8 and int4.qweight.shape == (128, 128)  # two codes per byte
    assert int8.memory_bytes() == 128 * 256 + 128 * 4  # codes + one float32 scale per row
    assert int4.memory_bytes() == 128 * 128 + 128 * 4 * 4  # packed codes + 4 group scales per row
    assert int8.memory_bytes() / fp32_bytes == pytest.approx(0.254, abs=1e-3)
    assert int4.memory_bytes() / fp32_bytes == pytest.approx(0.141, abs=1e-3)
    assert set(dict(int4.named_parameters())) == set()  # nothing trainable: everything is a buffer


def test_eight_bit_layer_is_close_to_the_float_layer():
    linear = nn.Linear(128, 64)
    x = torch.randn(10, 128)
    with torch.no_grad():
        exact = linear(x)
        approx = QuantizedLinear.from_linear(linear, 8)(x)
    assert float((approx - exact).norm() / exact.norm()) < 0.01


def test_quantized_linear_survives_state_dict_and_moves_dtype():
    layer = QuantizedLinear.from_linear(nn.Linear(64, 32), 4, group_size=32)
    copy = QuantizedLinear(64, 32, 4, group_size=32)
    copy.load_state_dict(layer.state_dict())
    x = torch.randn(2, 64)
    assert torch.equal(copy(x), layer(x))
    assert layer(x.double()).dtype == torch.float64


# ------------------------------------------------------------------------------ quantize_model (RTN)
def test_quantize_model_replaces_every_linear_but_the_output_layer_and_keeps_the_original():
    model = tiny_llama()
    ids = torch.randint(64, (2, 16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_model(model, bits=8)
    linears = [n for n, m in quantized.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["lm_head"]
    assert sum(isinstance(m, QuantizedLinear) for m in quantized.modules()) == 2 * 7
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        exact, _ = model(ids)
        approx, _ = quantized(ids)
        four, _ = quantize_model(model, bits=4, group_size=32)(ids)
    err8 = float((approx - exact).norm() / exact.norm())
    err4 = float((four - exact).norm() / exact.norm())
    assert err8 < 0.02 and err8 < err4 < 0.5


def test_quantize_model_rtn_equals_quantizing_each_layer():
    model = tiny_llama()
    quantized = quantize_model(model, bits=4, group_size=32, skip=())
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            expected = QuantizedLinear.from_linear(module, 4, group_size=32)
            assert torch.equal(quantized.get_submodule(name).qweight, expected.qweight)


# ------------------------------------------------------------------------------ GPTQ
def correlated_inputs(n=1024, width=96, seed=0, sample_seed=None):
    """Activations whose channels are correlated (a random mixing of a few strong directions), as in a
    transformer: the case where rounding errors can be compensated by the other columns. sample_seed:
    other samples of the same distribution (held-out data)."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(width, width, generator=g) / width**0.5 + 0.3 * torch.eye(width)
    if sample_seed is not None:
        g = torch.Generator().manual_seed(sample_seed)
    return torch.randn(n, width, generator=g) @ mixing


def literal_gptq(W, H, bits, group_size=None, damp=0.01):
    """The paper read literally, in float64: columns in order, each rounded and its error spread over
    the remaining columns by the Optimal Brain Surgeon update (GPTQ eq. 2-3) with an explicit inverse
    Hessian, from which the quantized column is then eliminated (Gaussian elimination, eq. 3). No
    Cholesky factor, no lazy batches."""
    W, H = W.double().clone(), H.double().clone()
    width = W.shape[1]
    H += damp * H.diagonal().mean() * torch.eye(width, dtype=torch.float64)
    H_inv = torch.linalg.inv(H)
    q_max = 2 ** (bits - 1) - 1
    Q = torch.zeros_like(W)
    scale = W.abs().amax(dim=1) / q_max
    for j in range(width):
        if group_size and j % group_size == 0:
            scale = W[:, j:j + group_size].abs().amax(dim=1) / q_max
        Q[:, j] = (W[:, j] / scale).round().clamp(-q_max, q_max) * scale
        error = (W[:, j] - Q[:, j]) / H_inv[j, j]
        W -= error[:, None] * H_inv[j][None, :]  # column j becomes Q[:, j]; later columns compensate
        H_inv -= H_inv[:, j:j + 1] @ H_inv[j:j + 1, :] / H_inv[j, j]  # remove j from the problem
    return Q


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [None, 32])
def test_gptq_with_identity_hessian_is_round_to_nearest_exactly(bits, group_size):
    W = weights(rows=24, cols=96)
    rtn = dequantize(quantize(W, bits, axis=None if group_size else 0, group_size=group_size))
    assert torch.equal(gptq_quantize_weight(W, torch.eye(96), bits, group_size=group_size), rtn)
    assert torch.equal(gptq_quantize_weight(W, 5 * torch.eye(96), bits, group_size=group_size,
                                            block_size=7), rtn)  # any multiple of I: nothing moves


@pytest.mark.parametrize("group_size, block_size", [(None, 128), (None, 7), (None, 1), (32, 128), (16, 40)])
def test_gptq_equals_the_literal_obs_algorithm(group_size, block_size):
    W = weights(rows=12, cols=96).double()
    H = hessian(correlated_inputs().double())
    ours = gptq_quantize_weight(W, H, 3, group_size=group_size, block_size=block_size)
    torch.testing.assert_close(ours, literal_gptq(W, H, 3, group_size), rtol=0, atol=1e-9)


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [None, 32])
def test_gptq_output_error_is_below_round_to_nearest(bits, group_size):
    X = correlated_inputs()
    W = torch.randn(48, 96) / 96**0.5
    gptq = gptq_quantize_weight(W, hessian(X), bits, group_size=group_size)
    rtn = dequantize(quantize(W, bits, axis=None if group_size else 0, group_size=group_size))
    held_out = correlated_inputs(n=512, sample_seed=1)
    assert layer_output_error(W, gptq, X) < 0.8 * layer_output_error(W, rtn, X)
    assert layer_output_error(W, gptq, held_out) < layer_output_error(W, rtn, held_out)


def test_gptq_codes_and_scales_are_what_quantized_linear_stores():
    X, W = correlated_inputs(), torch.randn(40, 96)
    codes, scales = gptq_quantize(W, hessian(X), 4, group_size=32)
    assert codes.dtype == torch.int8 and scales.shape == (40, 3) and int(codes.abs().max()) <= 7
    layer = QuantizedLinear.from_codes(codes, scales, 4, group_size=32)
    expected = gptq_quantize_weight(W, hessian(X), 4, group_size=32)
    torch.testing.assert_close(layer.dequantized_weight(), expected)


def test_gptq_handles_inputs_that_are_always_zero():
    X = correlated_inputs()
    X[:, 5] = 0.0
    W = gptq_quantize_weight(torch.randn(8, 96), hessian(X), 4)
    assert bool(torch.isfinite(W).all()) and bool((W[:, 5] == 0).all())


# ------------------------------------------------------------------------------ AWQ
def outlier_inputs(n=1024, width=96, sample_seed=0):
    """Activations with a few channels ~30x larger than the rest (Dettmers et al. 2022's outliers)."""
    sizes = torch.rand(width, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.1
    sizes[[3, 17, 60]] *= 30
    return torch.randn(n, width, generator=torch.Generator().manual_seed(sample_seed)) * sizes


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize("group_size", [None, 32])
def test_awq_beats_round_to_nearest_on_outlier_channels(bits, group_size):
    X, W = outlier_inputs(), torch.randn(48, 96) / 96**0.5
    awq = awq_quantize_weight(W, X, bits, group_size=group_size)
    rtn = dequantize(quantize(W, bits, axis=None if group_size else 0, group_size=group_size))
    held_out = outlier_inputs(n=512, sample_seed=1)
    assert layer_output_error(W, awq, X) < 0.7 * layer_output_error(W, rtn, X)
    assert layer_output_error(W, awq, held_out) < 0.7 * layer_output_error(W, rtn, held_out)
    _, alpha, errors = awq_search(W, X, bits, group_size=group_size)
    assert 0 < alpha <= 1 and errors[alpha] == min(errors.values()) < errors[0.0]


def test_awq_with_alpha_zero_is_round_to_nearest():
    X, W = outlier_inputs(), torch.randn(48, 96)
    assert torch.equal(awq_scales(X.abs().mean(0), 0.0), torch.ones(96))
    rtn = dequantize(quantize(W, 4, group_size=32))
    _, _, errors = awq_search(W, X, 4, group_size=32)
    assert errors[0.0] == float((X @ W.T - X @ rtn.T).pow(2).sum(dim=1).mean())
    # inputs without outliers: nothing to protect, the search keeps (nearly) plain rounding
    uniform = torch.randn(1024, 96)
    _, alpha, errors = awq_search(W, uniform, 4, group_size=32)
    assert errors[alpha] <= errors[0.0]


# ------------------------------------------------------------------------------ quantize_model (calibrated)
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_calibrated_quantize_model_quantizes_each_layer_on_the_inputs_of_the_quantized_layers_before(method):
    model = tiny_llama()
    calibration = torch.randint(64, (4, 32))
    quantized = quantize_model(model, bits=3, group_size=32, method=method, calibration=calibration)
    names = [n for n, m in quantized.named_modules() if isinstance(m, QuantizedLinear)]
    assert len(names) == 14
    moved = 0
    for name in names:
        layer = quantized.get_submodule(name)
        W = model.get_submodule(name).weight
        X = record_inputs(quantized, name, calibration)  # what the layer sees behind quantized layers
        moved += not torch.equal(X, record_inputs(model, name, calibration))
        if method == "gptq":
            codes, scales = gptq_quantize(W, hessian(X), 3, group_size=32)
            assert layer.input_scale is None
            assert torch.equal(layer.weight_codes(), codes) and torch.equal(layer.scale, scales)
        else:
            s, _, _ = awq_search(W, X, 3, group_size=32)
            assert torch.equal(layer.input_scale, s)
            expected = dequantize(quantize(W.detach() * s, 3, group_size=32))
            assert torch.equal(layer.dequantized_weight(), expected)
    assert moved == len(names) - 3  # all but q, k, v of the first block see quantized layers before them


def test_gptq_model_is_closer_to_the_float_model_than_rtn_on_the_calibration_data():
    model = tiny_llama()
    calibration = torch.randint(64, (8, 32))
    with torch.no_grad():
        exact, _ = model(calibration)
        errors = {method: float((quantize_model(model, bits=3, group_size=32, method=method,
                                                calibration=None if method == "rtn" else calibration)(
            calibration)[0] - exact).norm() / exact.norm()) for method in ("rtn", "gptq")}
    assert errors["gptq"] < 0.9 * errors["rtn"]


# ------------------------------------------------------------------------------ GGUF blocks Q8_0 / Q4_0
GGUF_FORMATS = [(quantize_q8_0, dequantize_q8_0, "Q8_0", 34), (quantize_q4_0, dequantize_q4_0, "Q4_0", 18)]


def hard_blocks() -> np.ndarray:
    """Blocks of 32 that catch every rounding convention: exact .5 steps (d = 1 in both formats), the
    float32 just below 0.5, zeros, +/- ties for the largest magnitude, float16 extremes, random data."""
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    steps = np.arange(-15, 17, dtype=np.float32) - np.float32(0.5)  # -15.5 .. 15.5
    q8_ties = np.concatenate([[127, -127, below_half, -below_half], steps[:28]])  # d = 127/127 = 1
    q4_ties = np.concatenate([[-8], np.arange(-8, 7) + 0.5, np.arange(-8, 7), [below_half]])  # d = -8/-8
    rng = np.random.default_rng(0)
    rows = [
        q8_ties, q4_ties, np.zeros(32),
        np.r_[3.0, -3.0, rng.uniform(-1, 1, 30)], np.r_[-3.0, 3.0, rng.uniform(-1, 1, 30)],  # peak ties
        np.r_[6.0e4, -3.0e4, rng.uniform(-1e4, 1e4, 30)], rng.uniform(-1e-6, 1e-6, 32),  # fp16 extremes
        np.r_[0.0, 1e-30, rng.uniform(0, 1, 30)],  # all non-negative
        rng.standard_normal(32) * 0.02, rng.standard_t(2, 32),  # weight-like, heavy-tailed
    ]
    scale = rng.uniform(0.01, 2, (8, 1))  # grid points k·d + d/2 for random d
    rows += list((rng.integers(-8, 8, (8, 32)) + 0.5) * scale)
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("quantize_fn, dequantize_fn, name, nbytes", GGUF_FORMATS)
def test_gguf_blocks_are_byte_identical_to_gguf_py(quantize_fn, dequantize_fn, name, nbytes):
    qtype = GGMLQuantizationType[name]
    rng = np.random.default_rng(1)
    random = rng.standard_normal((3, 4, 64)).astype(np.float32)
    for x in (hard_blocks(), hard_blocks().reshape(2, -1), random):
        ours = quantize_fn(x)
        reference = gguf.quants.quantize(x, qtype)
        assert ours.dtype == np.uint8 and ours.shape == (*x.shape[:-1], x.shape[-1] // 32 * nbytes)
        np.testing.assert_array_equal(ours, reference)
        np.testing.assert_array_equal(dequantize_fn(ours, x.shape), gguf.quants.dequantize(reference, qtype))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (2, 64), elements=st.one_of(  # |x| >= 2^-66: 1/d of a ~1e-38 block is inf
    st.just(0.0), st.floats(2**-66, 1e3, width=32), st.floats(-1e3, -(2**-66), width=32))))
def test_gguf_blocks_match_gguf_py_on_arbitrary_floats(x):
    for quantize_fn, _, name, _ in GGUF_FORMATS:
        np.testing.assert_array_equal(quantize_fn(x), gguf.quants.quantize(x, GGMLQuantizationType[name]))


def test_q8_0_rounds_half_away_from_zero_and_q4_0_puts_halves_in_nibbles():
    blocks = hard_blocks()
    q8 = quantize_q8_0(blocks[0]).view(np.int8)[2:]  # d = 1
    assert list(q8[:4]) == [127, -127, 0, 0]  # 0.49999997 rounds to 0, not up
    assert list(q8[4:8]) == [-16, -15, -14, -13]  # -15.5 -> -16, -14.5 -> -15 (away from zero)
    assert list(q8[-4:]) == [9, 10, 11, 12]  # 8.5 -> 9, ..., 11.5 -> 12
    q4 = quantize_q4_0(blocks[1])
    np.testing.assert_array_equal(q4[:2].view(np.float16), [1.0])
    codes = np.concatenate([q4[2:] & 0x0F, q4[2:] >> 4])  # element j low nibble, j + 16 high nibble
    assert codes[0] == 0  # the peak -8 maps to code 0
    np.testing.assert_array_equal(codes[1:16], np.arange(1, 16))  # k + 0.5 rounds up: k + 1 + 8


@pytest.mark.parametrize("quantize_fn, dequantize_fn, name, nbytes", GGUF_FORMATS)
def test_gguf_block_error_is_half_a_step_plus_the_float16_rounding_of_the_scale(quantize_fn, dequantize_fn,
                                                                              name, nbytes):
    x = np.random.default_rng(2).standard_normal((16, 128)).astype(np.float32)
    blocks = x.reshape(-1, 32)
    stored = quantize_fn(x).reshape(-1, nbytes)
    d16 = stored[:, :2].copy().view(np.float16).astype(np.float32)  # (N, 1) the stored scale
    if name == "Q8_0":
        d32, largest = np.abs(blocks).max(1, keepdims=True) / 127, 127
        step = np.full_like(blocks, 0.5)  # half a step everywhere
    else:
        peak = np.take_along_axis(blocks, np.abs(blocks).argmax(1)[:, None], axis=1)
        d32, largest = peak / -8, 8
        # codes reach -8 on the peak's side but only +7 on the other: beyond 7.5 steps they clip to 7,
        # an error of up to a whole step (the price of using all 16 codes)
        step = np.where(blocks / d32 > 7.5, 1.0, 0.5)
        assert np.any(step == 1.0)
    error = np.abs(dequantize_fn(quantize_fn(x)).reshape(-1, 32) - blocks)
    assert np.all(error <= np.abs(d32) * step + np.abs(d32 - d16) * largest + 1e-6)
    assert 8 * stored.nbytes / x.size == {"Q8_0": 8.5, "Q4_0": 4.5}[name]  # bits per weight


def test_gguf_blocks_refuse_bad_shapes():
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8_0(np.zeros((4, 48), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        quantize_q4_0(np.zeros((4, 32), np.int32))
    with pytest.raises(ValueError, match="multiple of 18"):
        dequantize_q4_0(np.zeros((4, 34), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        dequantize_q8_0(np.zeros((4, 34), np.uint8), (4, 64))
    torch_input = torch.randn(2, 32)
    np.testing.assert_array_equal(quantize_q8_0(torch_input), quantize_q8_0(torch_input.numpy()))


# ------------------------------------------------------------------------------ GGUF files
QTYPES = ("F32", "F16", "Q8_0", "Q4_0")


@pytest.fixture(scope="module")
def gguf_model():
    """A lab Llama with grouped K/V heads, an untied output layer, and a feed-forward width (80) that is
    not a multiple of 32 (its down projection must fall back to F16)."""
    torch.manual_seed(0)
    config = llama_config(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=64, d_ff=80)
    return GPT(config).eval()


@pytest.fixture(scope="module")
def gguf_files(gguf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return {qtype: export_gguf(gguf_model, folder / f"lab-{qtype}.gguf", qtype=qtype) for qtype in QTYPES}


def logits_of(model, ids):
    with torch.no_grad():
        return model(ids)[0] if isinstance(model, GPT) else model(ids).logits


def test_rope_row_interleaving_is_the_permutation_llama_cpp_expects_and_is_inverted():
    n_heads, head_dim = 3, 8
    weight = torch.arange(n_heads * head_dim, dtype=torch.float32)[:, None].expand(-1, 5)  # row = its index
    rows = interleave_rope_rows(weight, n_heads)[:, 0].long().tolist()
    # within each head: rows i (first half) and i + d/2 (second half) become adjacent, 2i and 2i + 1
    expected = [h * head_dim + half * head_dim // 2 + i
                for h in range(n_heads) for i in range(head_dim // 2) for half in (0, 1)]
    assert rows == expected
    assert torch.equal(uninterleave_rope_rows(interleave_rope_rows(weight, n_heads), n_heads), weight)


def test_gguf_reader_reads_names_shapes_types_metadata_and_our_bytes(gguf_model, gguf_files):
    config = gguf_model.config
    state = gguf_model.state_dict()
    names = gguf_tensor_names(config)
    # the names are llama.cpp's: gguf-py's own map from the transformers Llama parameter names
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.n_layer)
    hf_names = to_hf(gguf_model).state_dict()
    expected_names = {name_map.get_name(n.rsplit(".", 1)[0]) + ".weight" for n in hf_names}
    assert set(names.values()) == expected_names
    for qtype, path in gguf_files.items():
        reader = gguf.GGUFReader(path)
        fields = {key: field.contents() for key, field in reader.fields.items()}
        assert fields[gguf.Keys.General.ARCHITECTURE] == "llama"
        assert fields["general.file_type"] == {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}[qtype]
        assert fields["llama.block_count"] == 2 and fields["llama.embedding_length"] == 64
        assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
        assert fields["llama.feed_forward_length"] == 80 and fields["llama.rope.dimension_count"] == 16
        assert fields["llama.vocab_size"] == 96 and fields["llama.context_length"] == 64
        assert fields["llama.rope.freq_base"] == 10000.0
        assert fields["llama.attention.layer_norm_rms_epsilon"] == np.float32(1e-6)
        tensors = {t.name: t for t in reader.tensors}
        assert set(tensors) == set(names.values())
        for ours, theirs in names.items():
            tensor, weight = tensors[theirs], state[ours].float()
            assert tuple(tensor.shape) == tuple(reversed(weight.shape))  # innermost dimension first
            assert tensor.data_offset % 32 == 0
            if weight.dim() == 1:
                expected_type = "F32"
            elif qtype in ("Q8_0", "Q4_0") and weight.shape[1] % 32:
                expected_type = "F16"  # ffn_down: width 80 is not whole blocks
            else:
                expected_type = qtype
            assert tensor.tensor_type.name == expected_type
            if ours.endswith("q_proj.weight"):
                weight = interleave_rope_rows(weight, 4)
            elif ours.endswith("k_proj.weight"):
                weight = interleave_rope_rows(weight, 2)
            reference = gguf.quants.quantize(weight.numpy(), GGMLQuantizationType[expected_type])
            assert bytes(np.asarray(tensor.data).tobytes()) == reference.tobytes()


def test_transformers_loads_the_f32_file_with_our_logits_exactly(gguf_model, gguf_files):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    path = gguf_files["F32"]
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    assert isinstance(hf, LlamaForCausalLM)
    assert hf.config.num_key_value_heads == 2 and not hf.config.tie_word_embeddings
    ids = torch.randint(96, (2, 48))
    torch.testing.assert_close(logits_of(hf, ids), logits_of(gguf_model, ids), rtol=1e-5, atol=1e-5)


# ||logits(file) - logits(model)|| / ||logits(model)|| measured on this random-init model: F16 0.08%,
# Q8_0 1.9%, Q4_0 27% (an untrained model's logits are small and noisy: a trained one loses far less)
@pytest.mark.parametrize("qtype, tolerance", [("F16", 5e-3), ("Q8_0", 5e-2), ("Q4_0", 0.6)])
def test_transformers_loads_the_quantized_files_within_their_quantization_error(gguf_model, gguf_files, qtype,
                                                                                tolerance):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    path = gguf_files[qtype]
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    ids = torch.randint(96, (2, 48))
    exact, loaded = logits_of(gguf_model, ids), logits_of(hf, ids)
    # the same dequantized weights in the lab GPT (our reader) give transformers' logits to rounding
    torch.testing.assert_close(logits_of(load_gguf(path), ids), loaded, rtol=1e-5, atol=1e-5)
    # and the quantization error itself: relative to the logits, under the stated tolerance
    assert float((loaded - exact).norm() / exact.norm()) < tolerance


def test_without_the_rope_permutation_transformers_computes_something_else(gguf_model, tmp_path, monkeypatch):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(gguf_export_module, "interleave_rope_rows", lambda weight, n_heads: weight)
    path = export_gguf(gguf_model, tmp_path / "unpermuted.gguf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name).eval()
    ids = torch.randint(96, (2, 48))
    exact = logits_of(gguf_model, ids)
    assert float((logits_of(hf, ids) - exact).norm() / exact.norm()) > 0.05


def test_load_gguf_round_trips_the_lab_model(gguf_model, gguf_files):
    ids = torch.randint(96, (2, 48))
    loaded = load_gguf(gguf_files["F32"])
    assert loaded.config == gguf_model.config
    assert torch.equal(logits_of(loaded, ids), logits_of(gguf_model, ids))


def test_tied_embeddings_write_no_output_tensor(tmp_path):
    torch.manual_seed(0)
    model = GPT(llama_config(vocab_size=64, block_size=32, n_layer=1, n_head=2, d_model=64,
                             tie_embeddings=True)).eval()
    path = export_gguf(model, tmp_path / "tied.gguf", qtype="Q8_0")
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert "output.weight" not in names and "token_embd.weight" in names
    assert load_gguf(path).config.tie_embeddings


def test_the_bpe_tokenizer_in_the_file_encodes_as_ours_in_transformers(tmp_path):
    pytest.importorskip("tokenizers")
    from transformers import AutoTokenizer

    from llmlab.tokenization import BPETokenizer
    from llmlab.utils import load_corpus

    text = load_corpus("stories", max_chars=30_000)
    tokenizer = BPETokenizer.train(text[:20_000], 300, special_tokens={"<|endoftext|>": 300})
    torch.manual_seed(0)
    model = GPT(llama_config(vocab_size=320, block_size=32, n_layer=1, n_head=2, d_model=64)).eval()
    path = export_gguf(model, tmp_path / "with-tokenizer.gguf", tokenizer=tokenizer)
    fields = {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items()}
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "llama-bpe"
    assert len(fields["tokenizer.ggml.tokens"]) == 320 and fields["tokenizer.ggml.tokens"][32] == "Ġ"
    assert fields["tokenizer.ggml.token_type"][300:302] == [3, 5]  # special (CONTROL), unused padding
    assert len(fields["tokenizer.ggml.merges"]) == len(tokenizer.merges)
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for sample in (text[20_000:], "Hello wörld! 123456  \n\n  tabs\there 😀 it's"):
        assert hf_tokenizer.encode(sample, add_special_tokens=False) == tokenizer.encode(sample)
    assert hf_tokenizer.encode("a<|endoftext|>b", add_special_tokens=False) == [97, 300, 98]
    with pytest.raises(ValueError, match="tokenizer"):
        export_gguf(GPT(llama_config(vocab_size=256, n_layer=1, d_model=64, n_head=2)), tmp_path / "x.gguf",
                    tokenizer=tokenizer)


# measured relative logit differences (llama-cpp-python 0.3.36, CPU): F32 5e-7; Q8_0 1.3% against the lab
# GPT with the file's dequantized weights (llama.cpp also rounds the activations to 8 bits)
@pytest.mark.parametrize("qtype, tolerance", [("F32", 1e-5), ("Q8_0", 5e-2)])
def test_llama_cpp_runs_the_exported_file_with_our_tokens_and_logits(tmp_path, qtype, tolerance):
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python (the optional extra `llamacpp`, built from source) is absent")
    from llmlab.kv_cache import generate
    from llmlab.tokenization import BPETokenizer
    from llmlab.utils import load_corpus

    text = load_corpus("stories", max_chars=30_000)
    tokenizer = BPETokenizer.train(text[:20_000], 300, special_tokens={"<|endoftext|>": 300})
    torch.manual_seed(0)
    model = GPT(llama_config(vocab_size=320, block_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=64,
                             d_ff=96)).eval()
    path = export_gguf(model, tmp_path / f"lab-{qtype}.gguf", qtype=qtype, tokenizer=tokenizer)
    # type_k / type_v = 0 (GGML_TYPE_F32): a float32 KV cache (llama.cpp's default is float16)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, logits_all=True, n_threads=1,
                          type_k=0, type_v=0, verbose=False)
    prompt = text[20_000:20_200]
    ids = tokenizer.encode(prompt)[:32]
    # llama.cpp's own tokenizer, built from the metadata, splits and merges as lesson 01's
    assert llm.tokenize(prompt.encode(), add_bos=False, special=False)[:32] == ids
    llm.eval(ids)
    theirs = torch.from_numpy(np.array(llm.scores[:len(ids)]))  # (T, vocab)
    ours = logits_of(model if qtype == "F32" else load_gguf(path), torch.tensor([ids]))[0]
    assert float((theirs - ours).norm() / ours.norm()) < tolerance
    if qtype == "F32":  # greedy decoding: the same tokens
        new = generate(model, torch.tensor([ids]), 8, temperature=0.0)[0, len(ids):].tolist()
        llm.reset()
        theirs_new = [t for _, t in zip(range(8), llm.generate(ids, temp=0.0, top_k=1))]
        assert theirs_new == new


def test_gguf_sizes_follow_the_bits_per_weight(gguf_files):
    sizes = {qtype: path.stat().st_size for qtype, path in gguf_files.items()}
    assert sizes["F32"] > sizes["F16"] > sizes["Q8_0"] > sizes["Q4_0"]
    assert sizes["Q8_0"] / sizes["F32"] < 0.4 and sizes["Q4_0"] / sizes["F32"] < 0.25


def test_export_gguf_refuses_what_llama_cpp_cannot_represent(gguf_model, tmp_path):
    with pytest.raises(ValueError, match="pos='rope'"):
        export_gguf(GPT(gpt2_config(n_layer=1, d_model=64, n_head=2)), tmp_path / "gpt2.gguf")
    with pytest.raises(ValueError, match="qtype"):
        export_gguf(gguf_model, tmp_path / "x.gguf", qtype="Q4_K")
    with pytest.raises(ValueError, match="path"):
        export_gguf(gguf_model, tmp_path / "x.bin")
    with pytest.raises(TypeError, match="model"):
        export_gguf(quantize_model(gguf_model, bits=8), tmp_path / "x.gguf")


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bits, error",
                         [(1, ValueError), (9, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bits_outside_two_to_eight_are_refused(bits, error):
    x = weights()
    for call in (lambda: quantize(x, bits), lambda: fake_quantize(x, bits),
                 lambda: QuantizedLinear.from_linear(nn.Linear(64, 8), bits),
                 lambda: quantize_model(tiny_llama(), bits=bits)):
        with pytest.raises(error, match="bits"):
            call()


def test_a_group_size_that_does_not_divide_the_width_is_refused():
    with pytest.raises(ValueError, match="group_size"):
        quantize(weights(cols=64), 4, group_size=24)
    with pytest.raises(ValueError, match="group_size"):
        QuantizedLinear.from_linear(nn.Linear(64, 8), 4, group_size=48)
    with pytest.raises(ValueError, match="group_size"):
        quantize_model(tiny_llama(), bits=4, group_size=40)  # d_model 64
    with pytest.raises(ValueError, match="group_size"):
        quantize(weights(), 4, group_size=0)


def test_other_bad_arguments_name_themselves():
    x = weights()
    with pytest.raises(ValueError, match="scheme"):
        quantize(x, 4, scheme="affine")
    with pytest.raises(ValueError, match="axis"):
        quantize(x, 4, axis=2)
    with pytest.raises(ValueError, match="axis and group_size"):
        quantize(x, 4, axis=0, group_size=16)
    with pytest.raises(TypeError, match="x"):
        quantize(torch.arange(8), 4)
    with pytest.raises(ValueError, match="zero_point"):
        fake_quantize(x, 4, scale=torch.tensor(0.1), zero_point=torch.tensor(3))
    with pytest.raises(ValueError, match="scale"):
        fake_quantize(x, 4, scale=torch.tensor(0.0))
    with pytest.raises(TypeError, match="linear"):
        QuantizedLinear.from_linear(nn.Conv1d(4, 4, 1), 8)
    with pytest.raises(ValueError, match="method"):
        quantize_model(tiny_llama(), bits=4, method="hqq")
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(tiny_llama(), bits=4, method="gptq")
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(tiny_llama(), bits=4, calibration=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="H must be"):
        gptq_quantize(torch.randn(4, 32), torch.eye(16), 4)
    with pytest.raises(ValueError, match="in_features"):
        awq_search(torch.randn(4, 32), torch.randn(10, 16), 4)
    with pytest.raises(ValueError, match="group_size"):
        gptq_quantize(torch.randn(4, 32), torch.eye(32), 4, group_size=12)
    with pytest.raises(ValueError, match="in_features"):
        QuantizedLinear(33, 8, 4)  # odd width cannot pack two codes per byte


# ------------------------------------------------------------------------------ the demo's own pieces
from llmlab.quantization import experiments as ex  # noqa: E402


def tiny_windows(n=4, T=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(64, (n, T + 1), generator=g)


def test_fake_quant_training_model_computes_what_the_quantized_model_will():
    model = tiny_llama().eval()
    ids = tiny_windows()[:, :-1]
    for group_size in (None, 32):
        wrapped = ex.with_fake_quant(model, 4, group_size)
        real = quantize_model(model, bits=4, group_size=group_size)
        with torch.no_grad():
            torch.testing.assert_close(wrapped(ids)[0], real(ids)[0], rtol=1e-5, atol=1e-5)
        # taking the wrappers off gives back the float model, and the original is untouched
        assert all(not isinstance(m, ex.FakeQuantLinear) for m in ex.without_fake_quant(wrapped).modules())
        assert isinstance(model.blocks[0].attn.q_proj, nn.Linear)


@pytest.mark.parametrize("ste", [True, False])
def test_qat_without_the_ste_moves_no_quantized_weight(ste):
    model = ex.with_fake_quant(tiny_llama(), 3, None, ste=ste)
    before = model.blocks[0].ffn.up_proj.linear.weight.detach().clone()
    run = ex.finetune(model, torch.randint(64, (400,)), steps=2, batch_size=2, block_size=16, lr=1e-2, seed=0)
    after = model.blocks[0].ffn.up_proj.linear.weight
    assert len(run["losses"]) == 2
    if ste:
        assert run["weight_grad_norm"] > 0 and not torch.equal(before, after)
    else:  # round() has zero derivative: nothing reaches W, and AdamW without weight decay leaves it
        assert run["weight_grad_norm"] == 0 and torch.equal(before, after)


def test_evaluate_reports_the_models_own_loss_and_full_agreement_with_itself():
    model = tiny_llama().eval()
    windows = tiny_windows(n=6)
    metrics, preds = ex.evaluate(model, windows, batch_size=4, n_chunks=3)
    with torch.no_grad():
        _, loss = model(windows[:, :-1], windows[:, 1:])
    assert metrics["mean_nll"] == pytest.approx(float(loss), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(float(loss.exp()), rel=1e-5)
    assert len(metrics["chunk_nll"]) == 3
    again, _ = ex.evaluate(model, windows, preds)
    assert again["agreement"] == 1.0
    assert ex.chunk_diffs(metrics, metrics) == [0.0, 0.0, 0.0]


def test_per_tensor_copy_is_quantize_dequantize_and_calibrated_methods_refuse_it():
    model = tiny_llama()
    copy = ex.quantized(model, 4, "tensor", "rtn", None)
    W = model.blocks[1].attn.o_proj.weight
    assert torch.equal(copy.blocks[1].attn.o_proj.weight, dequantize(quantize(W, 4)))
    assert torch.equal(copy.lm_head.weight, model.lm_head.weight)  # the output layer stays float
    with pytest.raises(ValueError, match="per tensor"):
        ex.quantized(model, 4, "tensor", "gptq", tiny_windows()[:, :-1])
    with pytest.raises(ValueError, match="granularity"):
        ex.granularity_kwargs("row")


def test_memory_counts_the_codes_and_scales_the_layers_hold():
    model = tiny_llama()
    n = sum(model.get_submodule(name).weight.numel() for name in ex.target_linears(model))
    assert ex.quantized_layer_bytes(model) == 4 * n
    q8 = quantize_model(model, bits=8)
    q4 = quantize_model(model, bits=4, group_size=32)
    assert ex.quantized_layer_bytes(q8) == n + 4 * sum(m.out_features for m in q8.modules()
                                                       if isinstance(m, QuantizedLinear))
    assert ex.quantized_layer_bytes(q4) == n // 2 + 4 * (n // 32)
    assert ex.tensor_bytes(q4) < ex.tensor_bytes(q8) < ex.tensor_bytes(model)


def test_val_windows_refuse_more_windows_than_tokens():
    assert ex.val_windows(torch.arange(100), 3, 9).shape == (3, 10)
    with pytest.raises(ValueError, match="n=11"):
        ex.val_windows(torch.arange(100), 11, 9)


@pytest.mark.slow
def test_quick_demo_with_every_break_flag(tmp_path):
    from llmlab.quantization import demo

    results = demo.main(["--quick", "--out", str(tmp_path), "--device", "cpu", "--bits", "3",
                         "--group-size", "32", "--method", "gptq", "--no-ste", "--qat-steps", "1"])
    rows = results["sweep"]["rows"]
    assert {r["method"] for r in rows} == {"rtn", "gptq"}
    assert {(r["bits"], r["granularity"]) for r in rows if r["method"] == "gptq"} == {(3, "group 32")}
    assert all(b["weight_grad_norm"] == 0 for b in results["qat"]["bits"].values())  # --no-ste
    assert "int3 group 32" in results["memory_speed"]["layer_bytes"]
    assert (tmp_path / "results.json").exists() and len(list(tmp_path.glob("*.png"))) == 5


@pytest.mark.parametrize("flags", [["--group-size", "48"], ["--bits", "9"], ["--method", "hqq"]])
def test_bad_demo_flags_are_usage_errors(flags):
    from llmlab.quantization import demo

    with pytest.raises(SystemExit) as exit_info:
        demo.main(flags)
    assert exit_info.value.code == 2
