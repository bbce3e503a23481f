"""GPTQ: quantize a layer's weights one input column at a time, and let the not-yet-quantized columns
absorb each column's rounding error, so that the layer's OUTPUT on real inputs changes as little as
possible — rather than each weight on its own (round-to-nearest).

The objective, for a linear layer W (out, in) and calibration inputs X (n, in):

    min over quantized Ŵ of  ||X Wᵀ - X Ŵᵀ||²  =  sum over rows w of  (w - ŵ) H (w - ŵ)ᵀ,   H = 2/n · Xᵀ X

Every output row shares the same H, so the rows are independent and all quantized together. Optimal
Brain Surgeon (Hassibi & Stork 1993) says: after rounding column j, the remaining columns F should move by

    δ_F = - (w_j - q_j) / [H_F⁻¹]_jj · [H_F⁻¹]_{j,F}          (then drop j from H_F⁻¹)

GPTQ's three changes (Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers", Algorithm 1): the same column order for every row (so H⁻¹ is shared); the
rows of the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) are exactly the [H_F⁻¹]_{j,F} / sqrt([H_F⁻¹]_jj)
of that sequence of eliminations, so no inverse is ever updated; lazy batches — columns are processed in
blocks of `block_size`, and the columns after a block get its accumulated updates in one matrix product.
H is damped, H + λ·mean(diag H)·I with λ = 1% (numerical stability: H is often near-singular).

Groups: every `group_size` consecutive columns get their own scales, chosen when the group's first column
is reached, from the weights as the earlier errors have already moved them (this file aligns the lazy
blocks with the groups so that those weights are up to date; the reference code reads them before the
current block's updates, which makes its result depend on block_size). With H = I nothing moves, and
GPTQ is round-to-nearest exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmlab.quantization.quantization import (
    _check_bits,
    _check_group_size,
    _codes,
    _scale_and_zero_point,
    quantized_range,
)
from llmlab.utils.checks import check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

__all__ = ["gptq_quantize", "gptq_quantize_weight", "hessian", "layer_output_error"]


def hessian(X: Tensor) -> Tensor:
    """H = 2/n · Xᵀ X (in, in) of n calibration inputs X (n, in) (or (..., in), flattened), float32 or
    float64: the Hessian of the squared output error with respect to each row of W.

    Raises TypeError unless X is a floating-point tensor, ValueError unless it has at least 2 dimensions."""
    check_tensor("X", X, min_ndim=2, dtype="float")
    X = X.reshape(-1, X.shape[-1])
    X = X.double() if X.dtype == torch.float64 else X.float()
    return 2.0 / X.shape[0] * X.T @ X


def layer_output_error(W: Tensor, W_hat: Tensor, X: Tensor) -> float:
    """||X Wᵀ - X Ŵᵀ||_F / ||X Wᵀ||_F: how much the layer's output on X moved (what GPTQ minimizes)."""
    X = X.reshape(-1, X.shape[-1]).to(W.dtype)
    exact = X @ W.T
    return float((exact - X @ W_hat.to(W.dtype).T).norm() / exact.norm())


def _row_scales(W: Tensor, bits: int) -> Tensor:
    """Symmetric absmax scales (out, 1) of the columns W (out, k): those of quantize(W, axis=0)."""
    scale, _ = _scale_and_zero_point(W, bits, "symmetric", (1,))
    return scale.to(W.dtype)


@exercise(8, "fix dead inputs, damp H, U = upper Cholesky of H^-1; per block, per column: quantize with "
          "the row (or group) scale, error / U[j, j], update the rest of the block; then the lazy "
          "update of later columns")
def gptq_quantize(W: Tensor, H: Tensor, bits: int, *, group_size: int | None = None, block_size: int = 128,
                  damp: float = 0.01) -> tuple[Tensor, Tensor]:
    """GPTQ of an (out, in) weight with the Hessian H (in, in) of its inputs: (int8 codes (out, in),
    scales (out, n_groups)) — symmetric, per output channel or per group, as QuantizedLinear stores them.

    Computes in float32 (float64 if W is float64; the scales come back in that dtype). block_size:
    columns per lazy batch (rounded to a multiple of group_size when grouping). damp: λ, the fraction of
    mean(diag H) added to the diagonal.
    Raises TypeError unless W and H are floating-point tensors, ValueError unless W is 2-D and H is (in, in);
    TypeError/ValueError unless bits is an int in [2, 8], group_size None or an int >= 1 dividing in,
    block_size an int >= 1 and damp a number >= 0.
    """
    check_tensor("W", W, ndim=2, dtype="float")
    check_tensor("H", H, ndim=2, dtype="float")
    out_features, in_features = W.shape
    if H.shape != (in_features, in_features):
        raise ValueError(f"H must be (in, in) = ({in_features}, {in_features}) for W of shape "
                         f"{tuple(W.shape)}, got {tuple(H.shape)}")
    _check_bits(bits)
    group_size = _check_group_size(group_size, in_features)
    check_int("block_size", block_size, minimum=1)
    check_number("damp", damp, low=0)
    dtype = torch.float64 if W.dtype == torch.float64 else torch.float32
    W = W.detach().to(dtype).clone()
    H = H.detach().to(dtype).clone()
    q_min, q_max = quantized_range(bits, "symmetric")

    dead = torch.diagonal(H) == 0  # inputs that were always 0: their weights never matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diagonal(H).mean() * torch.eye(in_features, dtype=dtype, device=H.device)
    # U: the upper Cholesky factor of H⁻¹; row j holds the OBS update of column j onto columns > j
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    if group_size is not None:  # align the lazy blocks with the groups (see the module docstring)
        block_size = group_size * max(1, block_size // group_size)
        scales = torch.empty(out_features, in_features // group_size, dtype=dtype, device=W.device)
    else:
        scales = _row_scales(W, bits)  # (out, 1): from the whole original rows, as round-to-nearest
    codes = torch.empty(out_features, in_features, dtype=torch.int8, device=W.device)

    for start in range(0, in_features, block_size):
        end = min(start + block_size, in_features)
        block = W[:, start:end]  # (out, B) a view: updated in place, column by column
        errors = torch.empty_like(block)  # (out, B) the scaled errors, for the lazy update below
        U_block = U[start:end, start:end]
        for i in range(end - start):
            column = start + i
            if group_size is not None and column % group_size == 0:
                scales[:, column // group_size] = _row_scales(block[:, i:i + group_size], bits)[:, 0]
            scale = scales[:, column // group_size if group_size else 0]  # (out,)
            q, _ = _codes(block[:, i], scale, None, q_min, q_max)  # (out,) round(w / s), clamped
            codes[:, column] = q.to(torch.int8)
            error = (block[:, i] - q * scale) / U_block[i, i]  # (out,)
            block[:, i:] -= error[:, None] * U_block[i, i:][None, :]  # OBS update inside the block
            errors[:, i] = error
        W[:, end:] -= errors @ U[start:end, end:]  # the lazy update of every later column at once
    return codes, scales


def gptq_quantize_weight(W: Tensor, H: Tensor, bits: int, *, group_size: int | None = None,
                         block_size: int = 128, damp: float = 0.01) -> Tensor:
    """GPTQ's quantized weight, dequantized: (out, in) in W's dtype (see gptq_quantize)."""
    codes, scales = gptq_quantize(W, H, bits, group_size=group_size, block_size=block_size, damp=damp)
    groups = codes.to(scales.dtype).view(W.shape[0], scales.shape[1], -1)  # (out, n_groups, group)
    return (groups * scales[:, :, None]).view(W.shape).to(W.dtype)
