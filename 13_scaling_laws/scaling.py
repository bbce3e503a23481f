"""Scaling laws: how loss falls with parameters N and tokens D, what a model costs, and how to split a budget.

Loss falls as a power law in model size and data, down to an irreducible floor E (the entropy of the text):

    L(N)    = E + A / N^alpha                                         one variable (Kaplan et al. 2020)
    L(N, D) = E + A / N^alpha + B / D^beta                            Hoffmann et al. 2022 ("Chinchilla")
    C       = 6 N D                                                   training FLOPs (forward 2N, backward 4N)

Minimising L(N, D) under C = 6ND gives the compute-optimal split in closed form:

    N_opt = G (C/6)^a,   D_opt = (C/6)^b / G,   G = (alpha A / (beta B))^(1/(alpha+beta)),
    a = beta / (alpha + beta),   b = alpha / (alpha + beta)

With alpha ~ beta, a ~ b ~ 1/2: parameters and tokens grow at the same rate, ~20 tokens per parameter
(Hoffmann et al.; "equal compute for model and data" is not what they say). Kaplan et al. found N_opt ~
C^0.73 instead, measured on non-embedding parameters, with one learning-rate schedule for every run
length, and with a loss-vs-compute law without the offset E.

Papers: Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (FLOPs per token, Table 1; alpha_N =
0.076 on non-embedding parameters); Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"
(Approach 2: IsoFLOP parabolas; Approach 3: the parametric fit, Huber loss on log-loss, L-BFGS from a grid);
Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt" (the refit: Hoffmann's optimizer
stopped early and the published constants are rounded); Rajbhandari et al. 2020, "ZeRO" (16 bytes per
parameter for mixed-precision Adam); Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (activation memory, 34·s·b·h + 5·a·s²·b bytes per layer).

Parts: parameter and FLOP counts of the lab GPT (closed form, checked against the model and against
torch's FlopCounterMode), the fitters, the compute-optimal split, and memory for training and serving
at real shapes (REAL_MODELS). train_ddp.py is the other half: training on several processes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers

import numpy as np
import torch
from scipy import optimize
from threadpoolctl import threadpool_limits

from llmlab.kv_cache import kv_cache_bytes  # lesson 06: bytes of a full KV cache
from llmlab.normalization import GATED_ACTIVATIONS  # lesson 10: swiglu/geglu have three matrices
from llmlab.transformer_block import GPTConfig, gpt2_config, llama_config
from llmlab.utils.checks import check_bool, check_choice, check_dtype, check_instance, check_int, check_number
from llmlab.utils.exercises import exercise

__all__ = [
    "BESIROGLU_2024",
    "HOFFMANN_2022",
    "HOFFMANN_2022_TABLE3",
    "HOFFMANN_GRID",
    "KAPLAN_2020",
    "OPTIMIZER_STATE_BYTES",
    "PUBLISHED_PARAMS",
    "REAL_MODELS",
    "activation_memory",
    "chinchilla_loss",
    "compute_optimal",
    "count_params",
    "exact_flops_per_token",
    "fit_chinchilla",
    "fit_isoflops",
    "fit_power_law",
    "flops_per_token",
    "inference_memory",
    "isoflop_parabola",
    "training_memory",
]

# ----------------------------------------------------------------------------------------------------
# published constants

# Hoffmann et al. 2022, eq. (10) as printed in the paper (rounded): L(N, D) = E + A/N^alpha + B/D^beta
HOFFMANN_2022 = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024, the refit of Approach 3 on data read off Hoffmann's Figure 4, run to convergence
BESIROGLU_2024 = dict(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
# Kaplan et al. 2020, eq. (1.1)-(1.2): L(N) = (N_c/N)^alpha_N with N the NON-embedding parameters,
# L(D) = (D_c/D)^alpha_D; compute-efficient training puts N_opt ~ C^0.73 (section 6)
KAPLAN_2020 = dict(alpha_N=0.076, N_c=8.8e13, alpha_D=0.095, D_c=5.4e13, N_opt_exponent=0.73)
# Hoffmann et al. 2022, Table 3 (Approach 1): (parameters, training FLOPs, training tokens) of a
# compute-optimal model. Chinchilla itself is 70B parameters on 1.4T tokens at Gopher's 5.76e23 FLOPs.
HOFFMANN_2022_TABLE3 = (
    (400e6, 1.92e19, 8.0e9),
    (1e9, 1.21e20, 20.2e9),
    (10e9, 1.23e22, 205.1e9),
    (67e9, 5.76e23, 1.5e12),
    (175e9, 3.85e24, 3.7e12),
    (280e9, 9.90e24, 5.9e12),
    (520e9, 3.43e25, 11.0e12),
    (1e12, 1.27e26, 21.2e12),
    (10e12, 1.30e28, 216.2e12),
)

# Real shapes, from each model's config.json on the Hugging Face Hub (openai-community/gpt2,
# meta-llama/Llama-2-7b-hf, meta-llama/Meta-Llama-3-8B, meta-llama/Meta-Llama-3-70B). Lesson 09 uses the
# Llama-2-7B and Llama-3-8B shapes too, for its KV-cache table.
REAL_MODELS: dict[str, GPTConfig] = {
    "GPT-2 124M": gpt2_config(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, d_model=768),
    "Llama-2-7B": llama_config(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, d_model=4096,
                               d_ff=11008, norm_eps=1e-5),
    "Llama-3-8B": llama_config(vocab_size=128256, block_size=8192, n_layer=32, n_head=32, n_kv_head=8,
                               d_model=4096, d_ff=14336, norm_eps=1e-5, rope_base=500000.0),
    "Llama-3-70B": llama_config(vocab_size=128256, block_size=8192, n_layer=80, n_head=64, n_kv_head=8,
                                d_model=8192, d_ff=28672, norm_eps=1e-5, rope_base=500000.0),
}
# the published totals, to the digits published: GPT-2 small 124.4M (its paper's "117M" was a miscount,
# corrected to 124M); Llama-2-7B, Llama-3-8B, Llama-3-70B as the Hugging Face Hub lists them
PUBLISHED_PARAMS = {"GPT-2 124M": 124.4e6, "Llama-2-7B": 6.74e9, "Llama-3-8B": 8.03e9, "Llama-3-70B": 70.6e9}

# bytes of optimizer state per parameter: AdamW keeps two fp32 moments; bitsandbytes' 8-bit AdamW two
# int8 moments (its per-block scales are left out); SGD with momentum one fp32 buffer; plain SGD none
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw_8bit": 2, "sgd_momentum": 4, "sgd": 0}


# ----------------------------------------------------------------------------------------------------
# argument checks


def _positive_array(name: str, values: object, *, min_len: int = 1) -> np.ndarray:
    """A 1-D float array of finite numbers > 0 with at least min_len entries."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if len(array) < min_len:
        raise ValueError(f"{name} must have at least {min_len} values, got {len(array)}")
    if not np.all(np.isfinite(array)) or not np.all(array > 0):
        raise ValueError(f"{name} must hold finite numbers > 0, got {array.tolist()[:8]}")
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("arguments must have the same length, got " +
                         ", ".join(f"len({name})={n}" for name, n in lengths.items()))


def _check_constants(**constants: object) -> dict[str, float]:
    return {name: check_number(name, value, low=0, low_open=True) for name, value in constants.items()}


# ----------------------------------------------------------------------------------------------------
# parameters


@dataclasses.dataclass(frozen=True)
class _Parts:
    """Parameters of the lab GPT by part; `matrices` are the >= 2-D weights, the rest are vectors."""

    token_embedding: int
    position_embedding: int
    lm_head: int  # 0 when tied to the token embedding
    attention: int  # all layers: q, k, v, o (with biases)
    ffn: int  # all layers: the FeedForward or the MoE layer (router + experts)
    ffn_active: int  # all layers: what one token passes through (router + top_k experts)
    norms: int  # all layers and the final norm
    vectors: int  # biases and norm gains: what stays in 16 bits when the matrices are quantized

    @property
    def total(self) -> int:
        return (self.token_embedding + self.position_embedding + self.lm_head + self.attention + self.ffn
                + self.norms)

    @property
    def embeddings(self) -> int:
        return self.token_embedding + self.position_embedding + self.lm_head


@exercise(6, "count each module of model.py: attention q, k, v, o (k and v kv-wide) with optional "
          "biases, the FFN (gated: 3 matrices) or the MoE router + experts, the norms (and a final "
          "one when prenorm), embeddings, an untied head")
def _parts(config: GPTConfig) -> _Parts:
    """Closed-form parameter counts of GPT(config), mirroring the modules of model.py."""
    d, f, bias = config.d_model, config.ffn_dim, int(config.bias)
    kv = config.kv_heads * config.head_dim  # width of K and of V
    # attention: q (d -> d), k and v (d -> kv), o (d -> d)
    attn_weights, attn_biases = 2 * d * d + 2 * d * kv, bias * (2 * d + 2 * kv)
    # one FeedForward: gated = gate_proj and up_proj (d -> f) + down_proj (f -> d); plain = up + down
    n_in = 2 if config.activation in GATED_ACTIVATIONS else 1
    ffn_weights, ffn_biases = (n_in + 1) * d * f, bias * (n_in * f + d)
    if config.n_experts:  # lesson 08: a router (d -> n_experts, no bias) and n_experts FeedForwards
        router = d * config.n_experts
        layer_ffn = router + config.n_experts * (ffn_weights + ffn_biases)
        layer_ffn_active = router + config.moe_top_k * (ffn_weights + ffn_biases)
        ffn_vectors = config.n_experts * ffn_biases
    else:
        layer_ffn = layer_ffn_active = ffn_weights + ffn_biases
        ffn_vectors = ffn_biases
    norm = {"layernorm": d * (1 + bias), "rmsnorm": d, "none": 0}[config.norm]
    final_norm = norm if config.prenorm else 0  # post-norm blocks end in a norm: no final one
    L = config.n_layer
    norms = 2 * L * norm + final_norm
    return _Parts(
        token_embedding=config.vocab_size * d,
        position_embedding=config.block_size * d if config.pos == "learned" else 0,
        lm_head=0 if config.tie_embeddings else config.vocab_size * d,
        attention=L * (attn_weights + attn_biases),
        ffn=L * layer_ffn,
        ffn_active=L * layer_ffn_active,
        norms=norms,
        vectors=L * (attn_biases + ffn_vectors) + norms,
    )


def count_params(config: GPTConfig, *, non_embedding: bool = False, active: bool = False) -> int:
    """Scalar parameters of GPT(config), tied embeddings counted once: equal to
    sum(p.numel() for p in GPT(config).parameters()).

    non_embedding: leave out the token embedding, a learned position table and an untied LM head (Kaplan
        et al.'s N; their L(N) law is clean on it and bends on the total, because the embeddings of a
        small model are a large share of it).
    active: for a mixture of experts, count the router and top_k experts per layer (what one token
        passes through) instead of all experts; the same as the total for a dense model.
    Raises TypeError unless config is a GPTConfig and the flags are bools.
    """
    parts = _parts(check_instance("config", config, GPTConfig))
    check_bool("non_embedding", non_embedding)
    check_bool("active", active)
    total = parts.total - (parts.ffn - parts.ffn_active if active else 0)
    return total - parts.embeddings if non_embedding else total


# ----------------------------------------------------------------------------------------------------
# FLOPs (a multiply-add is 2 FLOPs)


@exercise(3, "N = the non-embedding parameters a token passes through (count_params with the right "
          "flags); forward = 2N plus the attention term; training is 3x forward")
def flops_per_token(config: GPTConfig, *, seq_len: int, training: bool = True) -> int:
    """Kaplan et al.'s estimate (Table 1): forward 2N + 2·n_layer·seq_len·d_model FLOPs per token, N =
    the non-embedding parameters a token passes through; training = 3x forward (the backward pass
    computes two matrix products per forward one: the gradients of the inputs and of the weights).

    2N counts every weight once as a multiply-add; 2·n_layer·seq_len·d_model is the attention over the
    context (causal: on average half of seq_len keys, for scores and for values). The LM head, the
    embeddings and all element-wise work are left out. With N ~ 12·n_layer·d_model², the attention term
    is seq_len / (12·d_model) of 2N, small once d_model > seq_len/12 (GPT-3 175B: 1.4 %), hence "C = 6ND".
    Raises TypeError/ValueError for a bad config, seq_len < 1 or a non-bool training.
    """
    check_instance("config", config, GPTConfig)
    check_int("seq_len", seq_len, minimum=1)
    check_bool("training", training)
    N = count_params(config, non_embedding=True, active=True)
    forward = 2 * N + 2 * config.n_layer * seq_len * config.d_model
    return 3 * forward if training else forward


@exercise(5, "per layer: the four projections (k and v have the kv width), the full T x T square for "
          "scores and values, the FFN (2 or 3 matrices; MoE: router + top_k experts); then the LM "
          "head; 2 FLOPs per multiply-add; training 3x")
def exact_flops_per_token(config: GPTConfig, *, seq_len: int, training: bool = True) -> int:
    """Every matrix-product FLOP of the lab GPT per token, for sequences of seq_len tokens.

    Per layer: q/k/v/o projections 2·(2·d² + 2·d·kv_width); attention scores Q K^T and the weighted sum
    of V, 2·seq_len·d_model each (the full square: a matmul computes the masked half too, so this is 2x
    Kaplan's causal average); the FFN 2·(matrices)·d_model·d_ff (MoE: the router 2·d_model·n_experts plus
    top_k experts, with no token dropped by capacity). Then the LM head, 2·d_model·vocab_size. Biases,
    norms, softmax and activations are left out (O(d) per token, not O(d²)), as FlopCounterMode does.
    Training = 3x forward: every product has two in the backward pass (the lab GPT's embeddings need
    gradients, so the first layer's input gradients are computed too).
    Raises TypeError/ValueError for a bad config, seq_len < 1 or a non-bool training.
    """
    check_instance("config", config, GPTConfig)
    check_int("seq_len", seq_len, minimum=1)
    check_bool("training", training)
    d, f, kv = config.d_model, config.ffn_dim, config.kv_heads * config.head_dim
    projections = 2 * (2 * d * d + 2 * d * kv)
    attention = 2 * 2 * seq_len * d  # scores and values, every head over every key of the square
    n_matrices = 3 if config.activation in GATED_ACTIVATIONS else 2
    ffn = 2 * n_matrices * d * f
    if config.n_experts:
        ffn = 2 * d * config.n_experts + config.moe_top_k * ffn
    forward = config.n_layer * (projections + attention + ffn) + 2 * d * config.vocab_size
    return 3 * forward if training else forward


# ----------------------------------------------------------------------------------------------------
# fitting power laws


def _power_law_residuals(theta: np.ndarray, log_x: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    E, log_A, alpha = theta
    return np.log(E + np.exp(log_A - alpha * log_x)) - log_y


def fit_power_law(x, y, *, offset: bool = True) -> tuple[float, float, float]:
    """Least-squares fit of y = E + A · x^(-alpha) on log y (relative errors) -> (E, A, alpha).

    offset=True: E in [0, min(y)), alpha > 0 (a loss falling to a floor E); the fit scans E on a grid
    (for a fixed E, log(y - E) is a straight line in log x), then refines all three together.
    offset=False: E = 0 and a straight line in log-log (alpha may have either sign: y = A·x^(-alpha)).
    x, y: 1-D, positive, the same length; at least 3 points (2 with offset=False).
    Raises TypeError/ValueError naming the bad argument.
    """
    check_bool("offset", offset)
    x = _positive_array("x", x, min_len=3 if offset else 2)
    y = _positive_array("y", y, min_len=3 if offset else 2)
    _same_length(x=x, y=y)
    log_x, log_y = np.log(x), np.log(y)
    if len(np.unique(x)) < (3 if offset else 2):
        raise ValueError(f"x must hold at least {3 if offset else 2} distinct values, "
                         f"got {np.unique(x).tolist()}")
    if not offset:
        slope, intercept = np.polyfit(log_x, log_y, 1)
        return 0.0, float(np.exp(intercept)), float(-slope)
    best = None
    y_min = float(y.min())
    for E in y_min * np.linspace(0.0, 1.0 - 1e-3, 200):
        slope, intercept = np.polyfit(log_x, np.log(y - E), 1)
        theta = np.array([E, intercept, max(-slope, 1e-6)])
        sse = float(np.sum(_power_law_residuals(theta, log_x, log_y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, theta)
    theta0 = best[1]
    theta0[0] = min(theta0[0], y_min * (1 - 1e-9))
    with threadpool_limits(limits=1):  # tiny problem: BLAS threads only wait on each other
        result = optimize.least_squares(
            _power_law_residuals, theta0, args=(log_x, log_y), method="trf", x_scale="jac",
            bounds=([0.0, -np.inf, 0.0], [y_min, np.inf, np.inf]), xtol=1e-15, ftol=1e-15, gtol=1e-15,
            max_nfev=10_000,
        )
    E, log_A, alpha = result.x
    return float(E), float(np.exp(log_A)), float(alpha)


@exercise(1, "the floor E plus one power-law term in N and one in D, elementwise on the arrays; a 0-d "
          "result goes back as a float")
def chinchilla_loss(N, D, *, E: float, A: float, B: float, alpha: float, beta: float):
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2). N, D: numbers or arrays > 0.

    Raises TypeError/ValueError unless E, A, B, alpha and beta are finite numbers > 0, ValueError unless every
    N and D is finite and > 0.
    """
    constants = _check_constants(E=E, A=A, B=B, alpha=alpha, beta=beta)
    N_arr, D_arr = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    for name, value in (("N", N_arr), ("D", D_arr)):
        if not np.all(np.isfinite(value)) or not np.all(value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value.tolist()}")
    E, A, B, alpha, beta = (constants[k] for k in ("E", "A", "B", "alpha", "beta"))
    loss = E + A / N_arr**alpha + B / D_arr**beta
    return float(loss) if loss.ndim == 0 else loss


# Hoffmann et al.'s grid of starting points (Appendix D.2), with (a, b, e) = log of (A, B, E):
# alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}: 4500 points
HOFFMANN_GRID = dict(alpha=np.arange(0, 2.01, 0.5), beta=np.arange(0, 2.01, 0.5), e=np.arange(-1, 1.01, 0.5),
                     a=np.arange(0, 25.01, 5), b=np.arange(0, 25.01, 5))


def _chinchilla_objective(theta: np.ndarray, log_N: np.ndarray, log_D: np.ndarray, log_L: np.ndarray,
                          delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber(delta) of log L_hat - log L, with log L_hat = LSE(a - alpha log N, b - beta log D, e),
    and its gradient with respect to theta = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)])  # (3, n)
    top = terms.max(axis=0)
    weights = np.exp(terms - top)  # (3, n)
    total = weights.sum(axis=0)
    residual = top + np.log(total) - log_L  # (n,)
    weights /= total  # softmax: d LSE / d term
    small = np.abs(residual) <= delta
    value = np.where(small, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta)).sum()
    slope = np.clip(residual, -delta, delta)  # Huber'(r)
    grad = np.array([
        np.sum(slope * weights[0]), np.sum(slope * weights[1]), np.sum(slope * weights[2]),
        -np.sum(slope * weights[0] * log_N), -np.sum(slope * weights[1] * log_D),
    ])
    return float(value), grad


def _lse_residuals(thetas: np.ndarray, log_N: np.ndarray, log_D: np.ndarray, log_L: np.ndarray) -> np.ndarray:
    """log L_hat - log L for many parameter vectors at once: thetas (S, 5) -> residuals (S, n)."""
    a, b, e, alpha, beta = (thetas[:, i, None] for i in range(5))  # (S, 1) each
    terms = np.stack(np.broadcast_arrays(a - alpha * log_N, b - beta * log_D, e))  # (3, S, n)
    top = terms.max(axis=0)
    return top + np.log(np.exp(terms - top).sum(axis=0)) - log_L


@exercise(8, "work in logs; scale the Huber objective by 1 / (delta n); keep the n_starts grid points "
          "with the lowest Huber value; run L-BFGS-B (with the gradient) from each, single-threaded, "
          "keep the best; exponentiate a, b, e back")
def fit_chinchilla(N, D, L, *, delta: float = 1e-3, grid: dict | None = None,
                   n_starts: int | None = 64) -> dict[str, float]:
    """Hoffmann et al.'s Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta to measured losses.

    Minimises sum_i Huber_delta(LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i) over (a, b, e,
    alpha, beta), A = e^a, B = e^b, E = e^e, with L-BFGS (scipy) from a grid of starting points, and
    keeps the best minimum. Huber with delta = 1e-3 on log-loss is a robust loss: residuals above 0.1 %
    count linearly, so a few outlier runs do not drag the fit. Each run goes to convergence (tight
    tolerances on the objective scaled by 1/(delta·n): Besiroglu et al. found that Hoffmann's stopped
    early because of the loss's tiny scale).
    grid: dict of 1-D sequences for "a", "b", "e", "alpha", "beta" (default HOFFMANN_GRID, 4500 points).
    n_starts: run L-BFGS from the n_starts grid points with the lowest objective (None = from all of
        them, as Hoffmann et al.: ~15 ms each, about a minute in all; on synthetic data the lowest grid point
        alone already led to the minimum that all 4500 starts find).
    Returns dict(E, A, B, alpha, beta), ready for compute_optimal(C, **fit).
    Raises TypeError/ValueError for bad arrays (1-D, positive, equal lengths, at least 5 points), delta
    <= 0, a grid without those five keys, or n_starts < 1.
    """
    N, D, L = (_positive_array(name, v, min_len=5) for name, v in (("N", N), ("D", D), ("L", L)))
    _same_length(N=N, D=D, L=L)
    delta = check_number("delta", delta, low=0, low_open=True)
    if grid is None:
        grid = HOFFMANN_GRID
    keys = ("a", "b", "e", "alpha", "beta")
    if not isinstance(grid, dict) or set(grid) != set(keys):
        raise ValueError(f"grid must be a dict with the keys {keys}, got "
                         f"{sorted(grid) if isinstance(grid, dict) else type(grid).__name__}")
    starts = np.array(list(itertools.product(*(np.asarray(grid[k], dtype=float).ravel() for k in keys))))
    if starts.size == 0 or not np.all(np.isfinite(starts)):
        raise ValueError("grid must hold finite starting values for every key")
    if n_starts is not None:
        check_int("n_starts", n_starts, minimum=1)
    log_N, log_D, log_L = np.log(N), np.log(D), np.log(L)
    scale = 1.0 / (delta * len(L))  # objective ~ mean |residual| / delta: tolerances mean the same anywhere

    def objective(theta):
        value, grad = _chinchilla_objective(theta, log_N, log_D, log_L, delta)
        return value * scale, grad * scale

    if n_starts is not None and n_starts < len(starts):
        residual = np.abs(_lse_residuals(starts, log_N, log_D, log_L))  # (S, n)
        values = np.where(residual <= delta, 0.5 * residual**2, delta * (residual - 0.5 * delta)).sum(axis=1)
        starts = starts[np.argsort(values, kind="stable")[:n_starts]]
    best = None
    # 5-vectors: BLAS threads only wait on each other (measured 100x slower on 2 busy cores)
    with threadpool_limits(limits=1):
        for theta0 in starts:
            result = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B",
                                       options=dict(maxiter=10_000, maxfun=20_000, ftol=1e-15, gtol=1e-12))
            if np.all(np.isfinite(result.x)) and (best is None or result.fun < best.fun):
                best = result
    a, b, e, alpha, beta = best.x
    return dict(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                beta=float(beta))


# ----------------------------------------------------------------------------------------------------
# the compute-optimal split


@exercise(2, "G from alpha, A, beta, B; then the exponents a = beta / (alpha + beta) and b = alpha / "
          "(alpha + beta) on C / 6; floats for a scalar C, arrays otherwise")
def compute_optimal(C, *, E: float, A: float, B: float, alpha: float, beta: float):
    """The (N_opt, D_opt) that minimise E + A/N^alpha + B/D^beta subject to C = 6 N D (Hoffmann et al.
    eq. 4): N_opt = G (C/6)^a, D_opt = (C/6)^b / G, G = (alpha A / (beta B))^(1/(alpha + beta)),
    a = beta/(alpha + beta), b = alpha/(alpha + beta). E does not move the optimum (accepted so that a
    fit's dict can be passed as **constants).

    C: a number or an array of training FLOPs > 0 -> floats or arrays of the same shape.
    Raises TypeError/ValueError for a C or constant that is not a finite number > 0.
    """
    constants = _check_constants(E=E, A=A, B=B, alpha=alpha, beta=beta)
    if isinstance(C, bool) or not isinstance(C, (numbers.Real, np.ndarray, list, tuple)):
        raise TypeError(f"C must be a number or an array of numbers > 0, got {type(C).__name__}")
    C_arr = np.asarray(C, dtype=float)
    if not np.all(np.isfinite(C_arr)) or not np.all(C_arr > 0):
        raise ValueError(f"C must be finite and > 0, got {C_arr.tolist()}")
    al, be = constants["alpha"], constants["beta"]
    G = (al * constants["A"] / (be * constants["B"])) ** (1 / (al + be))
    N_opt = G * (C_arr / 6) ** (be / (al + be))
    D_opt = (C_arr / 6) ** (al / (al + be)) / G
    if C_arr.ndim == 0:
        return float(N_opt), float(D_opt)
    return N_opt, D_opt


def isoflop_parabola(N, L) -> tuple[float, float, np.ndarray]:
    """Hoffmann et al.'s Approach 2 for one compute budget: fit L = c2·x² + c1·x + c0, x = ln N - mean,
    through the runs of one IsoFLOP curve -> (N_opt, L_opt, (c2, c1, c0)) at the parabola's minimum.

    Raises ValueError for fewer than 3 distinct N, or a parabola that opens downwards (the runs do not
    bracket a minimum: add smaller and larger models).
    """
    N = _positive_array("N", N, min_len=3)
    L = _positive_array("L", L, min_len=3)
    _same_length(N=N, L=L)
    if len(np.unique(N)) < 3:
        raise ValueError(f"N must hold at least 3 distinct sizes, got {np.unique(N).tolist()}")
    center = float(np.log(N).mean())
    coeffs = np.polyfit(np.log(N) - center, L, 2)
    c2, c1, c0 = coeffs
    if not c2 > 0:
        raise ValueError(f"the losses do not bracket a minimum (the parabola in log N opens downwards, "
                         f"c2={c2:.3g}); N={N.tolist()}, L={L.tolist()}")
    x_opt = -c1 / (2 * c2)
    return float(np.exp(x_opt + center)), float(c0 - c1**2 / (4 * c2)), coeffs


def fit_isoflops(C, N, L) -> dict:
    """Approach 2 over several budgets: one IsoFLOP parabola per distinct C, then the power laws
    N_opt = k_N · C^a and D_opt = k_D · C^b by least squares in log-log, with D_opt = C / (6 N_opt).

    C, N, L: one entry per run (C = the budget the run belongs to). Needs >= 2 budgets of >= 3 runs.
    Returns dict(budgets, N_opt, D_opt, L_opt (arrays, one per budget), inside (bool array: the optimum
    lies within the sizes tried), a, k_N, b, k_D, tokens_per_param (D_opt / N_opt per budget)).
    Raises ValueError as isoflop_parabola, or for fewer than 2 budgets.
    """
    C = _positive_array("C", C, min_len=6)
    N = _positive_array("N", N, min_len=6)
    L = _positive_array("L", L, min_len=6)
    _same_length(C=C, N=N, L=L)
    budgets = np.unique(C)
    if len(budgets) < 2:
        raise ValueError(f"C must hold at least 2 distinct budgets, got {budgets.tolist()}")
    N_opt, L_opt, inside = [], [], []
    for budget in budgets:
        on_curve = C == budget
        try:
            n, loss, _ = isoflop_parabola(N[on_curve], L[on_curve])
        except ValueError as err:
            raise ValueError(f"budget C={budget:.3g}: {err}") from None
        N_opt.append(n)
        L_opt.append(loss)
        inside.append(bool(N[on_curve].min() <= n <= N[on_curve].max()))
    N_opt = np.array(N_opt)
    D_opt = budgets / (6 * N_opt)
    a, log_k_N = np.polyfit(np.log(budgets), np.log(N_opt), 1)
    b, log_k_D = np.polyfit(np.log(budgets), np.log(D_opt), 1)
    return dict(budgets=budgets, N_opt=N_opt, D_opt=D_opt, L_opt=np.array(L_opt), inside=np.array(inside),
                a=float(a), k_N=float(np.exp(log_k_N)), b=float(b), k_D=float(np.exp(log_k_D)),
                tokens_per_param=D_opt / N_opt)


# ----------------------------------------------------------------------------------------------------
# memory


def _bytes_of(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


@exercise(7, "per token and layer: the attention sub-layer's saved tensors (probabilities or an fp32 LSE"
          " when fused, dropout masks), then the FFN's (MoE: fp32 router logits + per-expert copies);"
          " then the head; checkpointing keeps each layer's input + one layer")
def activation_memory(config: GPTConfig, *, batch_size: int, seq_len: int, dtype: torch.dtype,
                      checkpointing: bool = False, fused_attention: bool = False) -> dict[str, int]:
    """Bytes of the activations a training step keeps for the backward pass (Korthikanti et al. 2022,
    section 4.1, generalised to the lab GPT's options).

    Per layer and token, in `dtype` unless said: the inputs of both norms (d) and their outputs, which
    the next matrix products read (d each); q (d), k and v (kv width each); the attention output (d);
    the attention probabilities (n_head·seq_len), or with fused_attention (FlashAttention, torch's SDPA)
    only a log-sum-exp per head in fp32; the FFN's hidden activations: 2·d_ff for a plain MLP (before
    and after the activation), 4·d_ff for a gated one (gate, act(gate), up, their product); with dropout
    a 1-byte mask per dropped element and the dropped probabilities. An MoE layer keeps its router's
    fp32 logits and, for each of top_k experts, its copy of the input, the hidden activations and the
    output before gating. After the last layer: the final norm's input and output (d each) and the fp32
    log-probabilities of the cross-entropy (vocab_size; autocast runs log_softmax in fp32).
    For a GPT-3-style layer (layernorm, 4·d GELU MLP, dropout, 16-bit) this is Korthikanti's
    34·d + 5·n_head·seq_len bytes per token.
    checkpointing: keep only each layer's input (d per layer) and recompute a layer during the backward
    pass, which then holds one layer's activations at a time.
    Returns dict(per_layer, layers, head, total) in bytes for the whole batch.
    Raises TypeError/ValueError for a bad config, sizes < 1, a non-float dtype or non-bool flags.
    """
    check_instance("config", config, GPTConfig)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    e = _bytes_of(check_dtype("dtype", dtype))
    check_bool("checkpointing", checkpointing)
    check_bool("fused_attention", fused_attention)
    d, f, H = config.d_model, config.ffn_dim, config.n_head
    kv = config.kv_heads * config.head_dim
    dropout = config.dropout > 0
    normed = config.norm != "none"
    # attention sub-layer: norm input, norm output (= q/k/v input), q, k, v, attention output
    attn = e * (d * normed + d + d + 2 * kv + d) + dropout * d  # + the output dropout's mask
    if fused_attention:
        attn += 4 * H  # fp32 log-sum-exp per head; the probabilities are recomputed in the backward pass
    else:
        attn += e * H * seq_len + dropout * (H * seq_len + e * H * seq_len)  # probs, mask, dropped probs
    hidden = 4 * f if config.activation in GATED_ACTIVATIONS else 2 * f
    if config.n_experts:  # router logits (fp32); per chosen expert: its input copy, hidden, output
        ffn_body = 4 * config.n_experts + config.moe_top_k * e * (d + hidden + d)
    else:
        ffn_body = e * hidden
    ffn = e * (d * normed + d) + ffn_body + dropout * d
    per_token_layer = attn + ffn
    head = e * (d * (normed and config.prenorm) + d) + 4 * config.vocab_size + dropout * d  # + embedding mask
    tokens = batch_size * seq_len
    per_layer = tokens * per_token_layer
    if checkpointing:
        layers = config.n_layer * tokens * e * d + per_layer  # inputs of every layer + one layer recomputed
    else:
        layers = config.n_layer * per_layer
    return dict(per_layer=per_layer, layers=layers, head=tokens * head, total=layers + tokens * head)


@exercise(4, "params and grads in dtype's bytes, an fp32 master copy only below 4 bytes, optimizer "
          "states from OPTIMIZER_STATE_BYTES, activations from activation_memory; total = the sum")
def training_memory(config: GPTConfig, *, batch_size: int, seq_len: int, dtype: torch.dtype,
                    optimizer: str = "adamw", checkpointing: bool = False,
                    fused_attention: bool = False) -> dict[str, int]:
    """Bytes to train GPT(config) on one device (no sharding) with batches of batch_size x seq_len.

    params and grads in `dtype`; when dtype is below fp32 (bf16/fp16 mixed precision) the optimizer
    updates an fp32 master copy (4 bytes/param); optimizer states per OPTIMIZER_STATE_BYTES (AdamW: two
    fp32 moments, 8 bytes/param). Mixed-precision AdamW is therefore 2 + 2 + 4 + 8 = 16 bytes per
    parameter (ZeRO's "2 + 2 + K, K = 12"), and so is fp32 AdamW (4 + 4 + 8). Activations: see
    activation_memory (which checkpointing and fused_attention are passed to). Temporary buffers,
    the allocator's fragmentation and the framework's own memory are left out.
    Returns dict(params, grads, master_weights, optimizer_states, activations, total) in bytes.
    Raises TypeError/ValueError for a bad config, sizes < 1, a non-float dtype, an unknown optimizer or
    non-bool flags.
    """
    check_instance("config", config, GPTConfig)
    e = _bytes_of(check_dtype("dtype", dtype))
    check_choice("optimizer", optimizer, tuple(OPTIMIZER_STATE_BYTES))
    activations = activation_memory(config, batch_size=batch_size, seq_len=seq_len, dtype=dtype,
                                    checkpointing=checkpointing, fused_attention=fused_attention)["total"]
    n = count_params(config)
    memory = dict(params=e * n, grads=e * n, master_weights=4 * n if e < 4 else 0,
                  optimizer_states=OPTIMIZER_STATE_BYTES[optimizer] * n, activations=activations)
    memory["total"] = sum(memory.values())
    return memory


def inference_memory(config: GPTConfig, *, seq_len: int, batch_size: int = 1, weight_bits: int = 16,
                     group_size: int | None = None, kv_dtype: torch.dtype = torch.float16) -> dict[str, int]:
    """Bytes to serve GPT(config): the weights and a full KV cache of batch_size sequences of seq_len.

    weight_bits: 32 (fp32), 16 (bf16/fp16), 8 or 4 (integer weights) for every matrix (embeddings
    included); biases and norm gains stay in 16 bits (32 with fp32 weights). group_size: with 8 or 4
    bits, one fp16 scale per group_size weights (+16/group_size bits each: llama.cpp's Q8_0 and Q4_0 are
    8.5 and 4.5 bits per weight with groups of 32); None = no scales counted (per-channel scales are a
    negligible d_model·2 bytes per matrix). kv_cache: lesson 06's kv_cache_bytes in kv_dtype.
    Activations of a decode step (a few vectors of d_model and the logits) are left out.
    Returns dict(weights, kv_cache, total) in bytes.
    Raises TypeError/ValueError for a bad config, sizes < 1, weight_bits not in (32, 16, 8, 4), a
    group_size with 16/32-bit weights or < 1, or a non-float kv_dtype.
    """
    parts = _parts(check_instance("config", config, GPTConfig))
    seq_len = check_int("seq_len", seq_len, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_choice("weight_bits", weight_bits, (32, 16, 8, 4))
    if group_size is not None:
        check_int("group_size", group_size, minimum=1)
        if weight_bits >= 16:
            raise ValueError(f"group_size applies to 8- and 4-bit weights, got weight_bits={weight_bits}")
    check_dtype("kv_dtype", kv_dtype)
    matrices = parts.total - parts.vectors
    bits = weight_bits + (16 / group_size if group_size else 0)
    weights = math.ceil(matrices * bits / 8) + parts.vectors * (4 if weight_bits == 32 else 2)
    kv = kv_cache_bytes(config, seq_len, batch_size, kv_dtype)
    return dict(weights=weights, kv_cache=kv, total=weights + kv)
