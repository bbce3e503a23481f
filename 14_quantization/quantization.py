"""Integer quantization from scratch: store each weight as a small integer code and a shared float scale.

A b-bit code can take 2^b values; quantization maps a float tensor onto that grid (q = round(x / s)),
dequantization maps it back (x̂ = s·q). The only error is the rounding (at most s/2 per element) plus
whatever is clipped; the art is choosing s — one per tensor, per output channel, or per group of
consecutive weights — so that a few large values (outlier channels) do not make the grid coarse for all.

    symmetric (absmax):    s = max|x| / (2^(b-1) - 1),   q = clamp(round(x / s), -(2^(b-1)-1), 2^(b-1)-1)
                           x̂ = s·q
    asymmetric (min/max):  s = (max - min) / (2^b - 1),  z = round(-min / s)     (min <= 0 <= max)
                           q = clamp(round(x / s) + z, 0, 2^b - 1),   x̂ = s·(q - z)
    fake quantization:     forward x̂ = dequantize(quantize(x)); backward ∂x̂/∂x = 1 where the code was
                           not clipped, 0 where it was (the straight-through estimator, Bengio et al. 2013)

Papers: Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
Only Inference" (the affine scheme and fake quantization); Bengio, Léonard & Courville 2013, "Estimating or
Propagating Gradients Through Stochastic Neurons" (the straight-through estimator); Dettmers et al. 2022,
"LLM.int8()" (outlier features: why per-channel and per-group scales matter in LLMs).

Conventions (those of torch.fake_quantize_per_tensor_affine, so the tests can compare with it):
round half to even (torch.round, std::nearbyint), codes computed as round(x · (1/s)), and the asymmetric
range widened to contain 0 (PyTorch's observers, GPTQ's quantizer), so that 0 is exact and the zero point
is a valid code. A group or tensor that is all zeros gets s = 1 (every code 0).

`QuantizedLinear` is an nn.Linear whose weight is stored as int8 codes (5-8 bits) or as 4-bit codes packed
two per byte (2-4 bits), with float32 scales per output channel or per group, dequantized on the fly in
forward; `quantize_model` (model_quantization.py) swaps every Linear of a model for one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.utils.checks import check_bool, check_choice, check_int, check_tensor
from llmlab.utils.exercises import exercise

__all__ = [
    "SCHEMES",
    "QuantizedLinear",
    "QuantizedTensor",
    "dequantize",
    "fake_quantize",
    "pack_int4",
    "quantize",
    "quantize_rtn",
    "quantized_range",
    "unpack_int4",
]

SCHEMES = ("symmetric", "asymmetric")
MIN_BITS, MAX_BITS = 2, 8


# --------------------------------------------------------------------------- argument checks
def _check_bits(bits: object) -> int:
    return check_int("bits", bits, minimum=MIN_BITS, maximum=MAX_BITS)


def _check_group_size(group_size: object, width: int | None) -> int | None:
    """None, or an int >= 1 that divides `width` (the last dimension)."""
    if group_size is None:
        return None
    check_int("group_size", group_size, minimum=1)
    if width is not None and width % group_size:
        raise ValueError(f"group_size must divide the last dimension {width}, got {group_size}")
    return int(group_size)


def _check_granularity(x: Tensor, axis: object, group_size: object) -> tuple[int | None, int | None]:
    if axis is not None:
        check_int("axis", axis, minimum=-x.dim(), maximum=x.dim() - 1)
        if group_size is not None:
            raise ValueError(
                f"axis and group_size are exclusive (groups already give every row its own scales), "
                f"got axis={axis}, group_size={group_size}"
            )
        axis = axis % x.dim()
    if group_size is not None and x.dim() == 0:
        raise ValueError("group_size needs a tensor with at least one dimension, got a 0-d tensor")
    return axis, _check_group_size(group_size, x.shape[-1] if x.dim() else None)


def quantized_range(bits: int, scheme: str = "symmetric") -> tuple[int, int]:
    """(q_min, q_max) of the codes: symmetric [-(2^(b-1)-1), 2^(b-1)-1] (the grid is symmetric about 0,
    so -128 of int8 is never used), asymmetric [0, 2^b - 1].

    Raises TypeError/ValueError unless bits is an int in [2, 8], ValueError unless scheme is 'symmetric' or
    'asymmetric'."""
    _check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    if scheme == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


# --------------------------------------------------------------------------- quantize / dequantize
def _grouped(x: Tensor, group_size: int | None) -> Tensor:
    """x viewed as (..., n / group_size, group_size) when grouping, else x itself."""
    if group_size is None:
        return x
    return x.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size)


def _reduce_dims(view: Tensor, axis: int | None, group_size: int | None) -> tuple[int, ...]:
    """The dimensions one scale covers: the group, everything but `axis`, or everything."""
    if group_size is not None:
        return (-1,)
    if axis is not None:
        return tuple(d for d in range(view.dim()) if d != axis)
    return tuple(range(view.dim()))


@exercise(3, "symmetric: absmax over dims / q_max; asymmetric: widen [min, max] to contain 0, then (max "
          "- min) / (q_max - q_min) and z = round(-min / s), clamped; an all-zero group gets s = 1")
def _scale_and_zero_point(view: Tensor, bits: int, scheme: str, dims: tuple[int, ...]
                          ) -> tuple[Tensor, Tensor | None]:
    """float32 scale (and int32 zero point) with keepdim shapes, broadcastable against `view`.

    One scale per slice reduced over `dims` (the module docstring's equations): symmetric s = max|x| / q_max
    and no zero point; asymmetric s = (max - min) / (q_max - q_min) over the range widened to contain 0,
    z = round(-min / s). A slice that is all zeros gets s = 1.
    """
    if view.numel() == 0:
        raise ValueError("x must have at least one element")
    view = view if view.dtype == torch.float64 else view.float()  # float32 scales (float64 stays)
    q_min, q_max = quantized_range(bits, scheme)
    if scheme == "symmetric":
        absmax = view.abs().amax(dim=dims, keepdim=True) if dims else view.abs()
        scale = absmax / q_max
        zero_point = None
    else:
        low = (view.amin(dim=dims, keepdim=True) if dims else view).clamp(max=0)  # widen to contain 0
        high = (view.amax(dim=dims, keepdim=True) if dims else view).clamp(min=0)
        scale = (high - low) / (q_max - q_min)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: every code 0
    if scheme == "asymmetric":
        zero_point = torch.round(-low / scale).clamp(q_min, q_max).to(torch.int32)
    return scale, zero_point


def _codes(view: Tensor, scale: Tensor, zero_point: Tensor | None, q_min: int, q_max: int
           ) -> tuple[Tensor, Tensor]:
    """(clamped codes, unclamped codes) as float32: round(x · (1/s)) + z, torch's order of operations."""
    unclamped = torch.round(view.to(scale.dtype) * (1.0 / scale))
    if zero_point is not None:
        unclamped = unclamped + zero_point
    return unclamped.clamp(q_min, q_max), unclamped


@dataclass
class QuantizedTensor:
    """A quantized tensor: integer codes of x's shape and the float32 scales (and zero points) that map
    them back. scale / zero_point broadcast against the codes viewed as groups: shape () per tensor,
    x's shape with 1 everywhere but `axis` per channel, (*x.shape[:-1], n / group_size, 1) per group."""

    codes: Tensor  # int8 (symmetric) or uint8 (asymmetric), x's shape
    scale: Tensor  # float32 (float64 for a float64 tensor)
    zero_point: Tensor | None  # int32, the shape of scale (asymmetric); None (symmetric)
    bits: int
    scheme: str
    axis: int | None
    group_size: int | None
    dtype: torch.dtype  # of the tensor that was quantized (dequantize returns it)

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def dequantize(self) -> Tensor:
        return dequantize(self)


def quantize(x: Tensor, bits: int, *, scheme: str = "symmetric", axis: int | None = None,
             group_size: int | None = None) -> QuantizedTensor:
    """Round x to `bits`-bit integer codes with a scale per tensor (default), per index of `axis`
    (axis=0: per output channel of an (out, in) weight) or per `group_size` consecutive elements of
    the last dimension (group_size must divide it).

    Raises TypeError/ValueError naming the argument: bits outside 2-8, an unknown scheme, an axis
    out of range, a group size that does not divide the width, axis and group_size together.
    """
    check_tensor("x", x, dtype="float")
    _check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    axis, group_size = _check_granularity(x, axis, group_size)
    view = _grouped(x.detach(), group_size)
    scale, zero_point = _scale_and_zero_point(view, bits, scheme, _reduce_dims(view, axis, group_size))
    q_min, q_max = quantized_range(bits, scheme)
    codes, _ = _codes(view, scale, zero_point, q_min, q_max)
    code_dtype = torch.int8 if scheme == "symmetric" else torch.uint8
    return QuantizedTensor(codes.reshape(x.shape).to(code_dtype), scale, zero_point, bits, scheme, axis,
                           group_size, x.dtype)


@exercise(2, "view the codes as groups, subtract the zero point (if any) in float, multiply by the "
          "scale, reshape back and cast to the original dtype")
def dequantize(qt: QuantizedTensor) -> Tensor:
    """x̂ = scale · (codes - zero_point), in the dtype of the tensor that was quantized.

    Raises TypeError unless qt is a QuantizedTensor.
    """
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"qt must be a QuantizedTensor, got {type(qt).__name__}")
    codes = _grouped(qt.codes, qt.group_size).float()
    if qt.zero_point is not None:
        codes = codes - qt.zero_point
    return (codes * qt.scale).reshape(qt.codes.shape).to(qt.dtype)


@exercise(4, "codes from _codes (clamped and unclamped), minus the zero point, times the scale; with "
          "ste, add (x - x.detach()) masked to the codes that were not clipped; without it, let a "
          "zero gradient through")
def fake_quantize(x: Tensor, bits: int, *, scheme: str = "symmetric", axis: int | None = None,
                  group_size: int | None = None, scale: Tensor | None = None,
                  zero_point: Tensor | None = None, ste: bool = True) -> Tensor:
    """dequantize(quantize(x)) in x's dtype, differentiable for quantization-aware training.

    scale / zero_point: fixed ones (shapes as QuantizedTensor's; zero_point only for "asymmetric")
        instead of the min/max of x — a clipping range smaller than x's, so that some codes clip.
    ste=True: the straight-through estimator, gradient 1 where the code was not clipped and 0 where
        it was (the gradient of torch.fake_quantize_per_tensor_affine); the scale is treated as a
        constant. ste=False: the true gradient of round(), which is 0 almost everywhere — training
        through it stops (the demo's --no-ste).
    Raises what quantize raises for x, bits, scheme, axis and group_size; TypeError unless ste is a bool and
    scale (when given) a floating-point tensor, ValueError for a zero_point without scale, a scale not > 0
    everywhere, or a zero_point given when scheme is 'symmetric' (or missing when it is 'asymmetric').
    """
    check_tensor("x", x, dtype="float")
    _check_bits(bits)
    check_choice("scheme", scheme, SCHEMES)
    check_bool("ste", ste)
    axis, group_size = _check_granularity(x, axis, group_size)
    view = _grouped(x, group_size)
    if scale is None:
        if zero_point is not None:
            raise ValueError("zero_point needs scale: pass both, or neither to use the min/max of x")
        scale, zero_point = _scale_and_zero_point(view.detach(), bits, scheme,
                                                  _reduce_dims(view, axis, group_size))
    else:
        check_tensor("scale", scale, dtype="float")
        if bool((scale <= 0).any()):
            raise ValueError("scale must be > 0 everywhere")
        if (zero_point is None) != (scheme == "symmetric"):
            raise ValueError(f"zero_point must be given exactly when scheme='asymmetric', got scheme="
                             f"{scheme!r} and zero_point {'None' if zero_point is None else 'set'}")
        scale = scale.detach().float()
    q_min, q_max = quantized_range(bits, scheme)
    codes, unclamped = _codes(view.detach(), scale, zero_point, q_min, q_max)
    if zero_point is not None:
        codes = codes - zero_point
    dequantized = (codes * scale).reshape(x.shape).to(x.dtype)  # no gradient: round() is flat
    if not ste:
        # the honest derivative: d round(x/s)/dx = 0, so nothing flows back to x
        return dequantized + 0.0 * x
    inside = ((unclamped >= q_min) & (unclamped <= q_max)).reshape(x.shape)  # the codes not clipped
    return dequantized + (x - x.detach()) * inside  # value: dequantized; gradient: 1 inside, 0 clipped


# --------------------------------------------------------------------------- int4 packing
@exercise(1, "shift the codes by +8 into 0..15 (via int16 to avoid overflow), then the even elements go "
          "in the low nibble and the odd ones in the high nibble")
def pack_int4(codes: Tensor) -> Tensor:
    """Signed 4-bit codes (values -8..7, last dimension even) -> uint8, two per byte: element 2j in the
    low nibble of byte j, element 2j+1 in the high one, each stored as code + 8 (0..15).

    Raises TypeError unless codes is an integer tensor, ValueError for an odd last dimension."""
    check_tensor("codes", codes, dtype="int")
    if codes.shape[-1] % 2:
        raise ValueError(f"codes must have an even last dimension to pack two per byte, got {codes.shape}")
    nibbles = (codes.to(torch.int16) + 8).to(torch.uint8)  # (..., n) in 0..15
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)  # (..., n / 2)


def unpack_int4(packed: Tensor) -> Tensor:
    """The inverse of pack_int4: uint8 (..., n / 2) -> int8 codes (..., n).

    Raises TypeError unless packed is an integer tensor.
    """
    check_tensor("packed", packed, dtype="int")
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack((low, high), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


# --------------------------------------------------------------------------- QuantizedLinear
class QuantizedLinear(nn.Module):
    """y = x W^T + b with W kept as integer codes and float32 scales (symmetric, per output channel, or
    per group of `group_size` input columns), dequantized on the fly in every forward.

    bits 5-8: one int8 per weight; bits 2-4: two 4-bit codes per byte (`pack_int4`), so a 4-bit layer
    holds ~1/8 of the float32 bytes. `input_scale` (AWQ): a per-input-channel factor s, the layer then
    computes Q(W·diag(s)) (x / s) — llama.cpp and AutoAWQ fold 1/s into the previous layer instead.
    Everything is a buffer: `memory_bytes()` is what the layer really holds. Not trainable.
    The constructor raises TypeError/ValueError unless in_features and out_features are ints >= 1, bits an int
    in [2, 8] and group_size None or an int >= 1 dividing in_features, TypeError unless bias is a bool,
    ValueError for an odd in_features with bits <= 4.
    """

    def __init__(self, in_features: int, out_features: int, bits: int, *, group_size: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.bits = _check_bits(bits)
        self.group_size = _check_group_size(group_size, in_features)
        check_bool("bias", bias)
        self.packed = bits <= 4
        if self.packed and in_features % 2:
            raise ValueError(f"in_features must be even to pack {bits}-bit codes two per byte, "
                             f"got {in_features}")
        n_groups = 1 if group_size is None else in_features // group_size
        width = in_features // 2 if self.packed else in_features
        self.register_buffer("qweight", torch.zeros(out_features, width,
                                                    dtype=torch.uint8 if self.packed else torch.int8))
        self.register_buffer("scale", torch.ones(out_features, n_groups))  # float32 (out, n_groups)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("input_scale", None)

    @classmethod
    def from_codes(cls, codes: Tensor, scale: Tensor, bits: int, *, group_size: int | None = None,
                   bias: Tensor | None = None, input_scale: Tensor | None = None) -> QuantizedLinear:
        """A layer from symmetric codes (out, in) and scales (out, n_groups) that something else chose
        (RTN, GPTQ, AWQ). Raises ValueError for codes outside the bits' range or mismatched shapes."""
        check_tensor("codes", codes, ndim=2, dtype="int")
        out_features, in_features = codes.shape
        layer = cls(in_features, out_features, bits, group_size=group_size, bias=bias is not None)
        q_min, q_max = quantized_range(bits, "symmetric")
        low, high = torch.stack(torch.aminmax(codes)).tolist()
        if low < q_min or high > q_max:
            raise ValueError(f"codes must lie in [{q_min}, {q_max}] for bits={bits}, got [{low}, {high}]")
        scale = check_tensor("scale", scale, dtype="float").reshape(out_features, -1)
        if scale.shape != layer.scale.shape:
            raise ValueError(f"scale must have {tuple(layer.scale.shape)} elements per (out, group), "
                             f"got {tuple(scale.shape)}")
        device = codes.device
        layer = layer.to(device)
        codes = codes.to(torch.int8)
        layer.qweight = pack_int4(codes) if layer.packed else codes
        layer.scale = scale.detach().float().to(device)
        if bias is not None:
            layer.bias = bias.detach().float().to(device)
        if input_scale is not None:
            check_tensor("input_scale", input_scale, ndim=1, dtype="float")
            if input_scale.shape[0] != in_features:
                raise ValueError(f"input_scale must have in_features={in_features} elements, "
                                 f"got {input_scale.shape[0]}")
            layer.input_scale = input_scale.detach().float().to(device)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, *, group_size: int | None = None) -> QuantizedLinear:
        """Round-to-nearest: `quantize(linear.weight, bits, axis=0)` (or per group), stored as codes.

        Raises TypeError unless linear is an nn.Linear, TypeError/ValueError unless bits is an int in [2, 8]
        and group_size None or an int >= 1 dividing in_features.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        _check_bits(bits)
        _check_group_size(group_size, linear.in_features)
        codes, scale = quantize_rtn(linear.weight, bits, group_size=group_size)
        return cls.from_codes(codes, scale, bits, group_size=group_size, bias=linear.bias)

    def weight_codes(self) -> Tensor:
        """The int8 codes (out, in), unpacked."""
        return unpack_int4(self.qweight) if self.packed else self.qweight

    def dequantized_weight(self) -> Tensor:
        """W = scale · codes, float32 (out, in) (AWQ's input_scale not folded in)."""
        codes = self.weight_codes().float()  # (out, in)
        groups = codes.view(self.out_features, self.scale.shape[1], -1)  # (out, n_groups, group)
        return (groups * self.scale[:, :, None]).view(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_scale is not None:
            x = x / self.input_scale.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight().to(x.dtype), bias)

    def memory_bytes(self) -> int:
        """Bytes of every buffer the layer holds: codes, scales, bias, input scales."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def extra_repr(self) -> str:
        groups = "per channel" if self.group_size is None else f"group_size={self.group_size}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"{groups}, bias={self.bias is not None}, bytes={self.memory_bytes()}")


def quantize_rtn(weight: Tensor, bits: int, *, group_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Round-to-nearest, symmetric, per output channel (or per group): (int8 codes (out, in), float32
    scales (out, n_groups)) of an (out, in) weight.

    Raises TypeError unless weight is a floating-point tensor, ValueError unless it is 2-D, and what quantize
    raises for bits or group_size."""
    check_tensor("weight", weight, ndim=2, dtype="float")
    qt = quantize(weight.detach(), bits, scheme="symmetric",
                  axis=0 if group_size is None else None, group_size=group_size)
    return qt.codes, qt.scale.reshape(weight.shape[0], -1)
