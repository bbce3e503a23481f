"""llama.cpp's block formats Q8_0 and Q4_0, from scratch with numpy: the bytes a GGUF file stores.

Both cut each row into blocks of 32 consecutive weights and store one float16 scale d per block followed
by the 32 codes, so a scale costs 16/32 = 0.5 bit per weight on top of the codes:

    Q8_0 (34 bytes / 32 weights = 8.5 bits/weight)
        d = max|x| / 127                       (float32, stored as float16)
        q = round(x / d)                       round half AWAY from zero (C's roundf), int8 in [-127, 127]
        bytes: d (2, little-endian float16), q_0 .. q_31 (32 int8)
        x̂ = d · q
    Q4_0 (18 bytes / 32 weights = 4.5 bits/weight)
        m = the element with the largest |x| (its sign kept; the first one on a tie), d = m / -8
        q = min(floor(x / d + 8.5), 15)        x/d rounded half up, +8: 0..15, m itself maps to 0 (= -8)
        bytes: d (2, float16), then byte j = q_j | q_{j+16} << 4 for j = 0..15 (the first half of the
               block in the low nibbles, the second half in the high ones)
        x̂ = d · (q - 8)

Q4_0's signed scale uses all 16 codes (-8..7) where a symmetric absmax scale would waste one: the
largest-magnitude weight lands exactly on -8, the others share the finer steps. The quantization uses the
float32 scale; only the stored d is rounded to float16 (and dequantization uses the stored d), which is
why x̂ is not exactly d·round(x/d) when d is not a float16 number.

Reference: ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref (ggml-quants.c) and gguf-py's
gguf.quants, which the tests prove byte-identical to this file. Everything here is float32 arithmetic in
the same order as the C code, because a different order can flip a rounding and change a byte.
"""

from __future__ import annotations

import numpy as np

from llmlab.utils.exercises import exercise

__all__ = [
    "BLOCK_SIZE",
    "Q4_0_BYTES",
    "Q8_0_BYTES",
    "dequantize_q4_0",
    "dequantize_q8_0",
    "quantize_q4_0",
    "quantize_q8_0",
    "round_half_away_from_zero",
]

BLOCK_SIZE = 32  # weights per block (ggml's QK8_0 = QK4_0 = 32)
Q8_0_BYTES = 2 + BLOCK_SIZE  # float16 scale + 32 int8 codes
Q4_0_BYTES = 2 + BLOCK_SIZE // 2  # float16 scale + 32 nibbles


def _as_float32(a, name: str = "a") -> np.ndarray:
    """a (numpy array or torch tensor, at least 1-D, last dimension a multiple of 32) as float32 numpy."""
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().float().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must hold floating-point numbers, got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[-1] % BLOCK_SIZE:
        raise ValueError(f"{name} must have a last dimension that is a multiple of {BLOCK_SIZE} (whole "
                         f"blocks), got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _as_blocks(data, bytes_per_block: int, shape, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """uint8 data (..., n_blocks · bytes_per_block) -> (blocks (N, bytes_per_block), the float shape)."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise TypeError(f"data must be a uint8 numpy array (the bytes of {name} blocks), got "
                        f"{getattr(data, 'dtype', type(data).__name__)}")
    if data.ndim == 0 or data.shape[-1] % bytes_per_block:
        raise ValueError(f"data must have a last dimension that is a multiple of {bytes_per_block} bytes "
                         f"(whole {name} blocks), got shape {data.shape}")
    inferred = (*data.shape[:-1], data.shape[-1] // bytes_per_block * BLOCK_SIZE)
    if shape is not None and tuple(shape) != inferred:
        raise ValueError(f"shape must be {inferred} for data of shape {data.shape}, got {tuple(shape)}")
    return np.ascontiguousarray(data).reshape(-1, bytes_per_block), inferred


def round_half_away_from_zero(v: np.ndarray) -> np.ndarray:
    """C's roundf: 2.5 -> 3, -2.5 -> -3 (numpy's round goes to even: 2.5 -> 2). Exact: the fraction
    |v| - floor(|v|) is computed without rounding, unlike floor(|v| + 0.5), which turns the float32 just
    below 0.5 into 1."""
    magnitude = np.abs(v)
    whole = np.floor(magnitude)
    return np.sign(v) * (whole + (magnitude - whole >= 0.5))


def _inverse(d: np.ndarray) -> np.ndarray:
    """1/d in float32, 0 where d is 0 (an all-zero block: every code 0)."""
    inverse = np.zeros_like(d)
    np.divide(np.float32(1), d, out=inverse, where=d != 0)
    return inverse


@exercise(5, "_as_float32 first; per block of 32: d = max|x| / 127 in float32, codes = round half away "
          "from zero of x * (1/d); bytes = d as float16 viewed as uint8, then the int8 codes")
def quantize_q8_0(a) -> np.ndarray:
    """float (..., n) with n a multiple of 32 -> uint8 (..., n/32 · 34): Q8_0 blocks, row by row."""
    x = _as_float32(a)
    blocks = x.reshape(-1, BLOCK_SIZE)  # (N, 32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)  # (N, 1) float32
    codes = round_half_away_from_zero(blocks * _inverse(d)).astype(np.int8)  # (N, 32) in [-127, 127]
    packed = np.concatenate([d.astype(np.float16).view(np.uint8), codes.view(np.uint8)], axis=1)
    return packed.reshape(*x.shape[:-1], x.shape[-1] // BLOCK_SIZE * Q8_0_BYTES)


def dequantize_q8_0(data: np.ndarray, shape=None) -> np.ndarray:
    """uint8 Q8_0 blocks (..., n/32 · 34) -> float32 (..., n); `shape`, if given, must be that shape."""
    blocks, shape = _as_blocks(data, Q8_0_BYTES, shape, "Q8_0")
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (N, 1)
    codes = blocks[:, 2:].view(np.int8).astype(np.float32)  # (N, 32)
    return (d * codes).reshape(shape)


@exercise(6, "d = the signed largest-magnitude element / -8; codes = floor(x * (1/d) + 8.5) clipped to "
          "0..15 in float32; byte j packs element j (low nibble) with element j + 16 (high)")
def quantize_q4_0(a) -> np.ndarray:
    """float (..., n) with n a multiple of 32 -> uint8 (..., n/32 · 18): Q4_0 blocks, row by row."""
    x = _as_float32(a)
    blocks = x.reshape(-1, BLOCK_SIZE)  # (N, 32)
    peak = np.abs(blocks).argmax(axis=1)[:, None]  # (N, 1): the first largest magnitude
    d = np.take_along_axis(blocks, peak, axis=1) / np.float32(-8)  # signed: the peak maps to code 0
    shifted = blocks * _inverse(d) + np.float32(8.5)  # x/d + 8 + 0.5, in float32 as ggml computes it
    codes = np.clip(np.floor(shifted), 0, 15).astype(np.uint8)  # (N, 32) in 0..15
    nibbles = codes[:, :16] | (codes[:, 16:] << 4)  # byte j: element j low, element j + 16 high
    packed = np.concatenate([d.astype(np.float16).view(np.uint8), nibbles], axis=1)
    return packed.reshape(*x.shape[:-1], x.shape[-1] // BLOCK_SIZE * Q4_0_BYTES)


def dequantize_q4_0(data: np.ndarray, shape=None) -> np.ndarray:
    """uint8 Q4_0 blocks (..., n/32 · 18) -> float32 (..., n); `shape`, if given, must be that shape."""
    blocks, shape = _as_blocks(data, Q4_0_BYTES, shape, "Q4_0")
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (N, 1)
    nibbles = blocks[:, 2:]  # (N, 16)
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8  # (N, 32)
    return (d * codes).reshape(shape)
