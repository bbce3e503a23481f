"""Mixture of experts: many feed-forward blocks, and a router that sends each token to only a few.

A dense transformer runs every token through the same FFN. An MoE layer holds n_experts FFNs
("experts") and a router; each token is processed by its top_k experts only, so the parameters grow
with n_experts while the compute per token grows with top_k (sparse activation).

    p = softmax(x W_r)                          router probabilities over the experts, W_r: (d_model, E)
    S = top_k(p)                                the k experts this token goes to
    g_i = p_i / sum_{j in S} p_j   (i in S)     gates, renormalised over the chosen experts (Mixtral)
    y = sum_{i in S} g_i · FFN_i(x)             FFN_i: SwiGLU, (silu(x W1) * x W3) W2

Auxiliary losses keep the router healthy:
    load balance  L_bal = E · sum_i f_i · P_i   f_i = fraction of tokens routed to expert i (counting all k
                                                choices), P_i = mean router probability of expert i
    router z-loss L_z   = mean_tokens (logsumexp(x W_r))^2     keeps the router logits small

Papers: Shazeer et al. 2017, "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts
Layer" (noisy top-k gating); Lepikhin et al. 2020, "GShard" (top-2, expert capacity); Fedus et al. 2021,
"Switch Transformers" (top-1, the load-balancing loss, capacity factor); Zoph et al. 2022, "ST-MoE"
(router z-loss); Jiang et al. 2024, "Mixtral of Experts" (softmax -> top-2 -> renormalise, SwiGLU
experts w1/w3/w2).

Capacity and token dropping (Switch/GShard): with a capacity_factor, each expert takes at most
    capacity = ceil(capacity_factor · T · top_k / n_experts)
assignments per sequence of T tokens (a 2-D input (N, d_model) is one sequence of N tokens). An
assignment over capacity is dropped: that expert contributes nothing for that token (its gate is *not*
re-spread over the other choices), so a token whose k choices are all dropped passes through the block
unchanged on the residual stream.
Priority order: position-major within each sequence — all k choices of token t are served before any
choice of token t + 1, first come first served. GShard's order (every token's 1st choice before any
2nd choice, over the whole flattened batch) lets a later token's 1st choice push out an earlier token's
2nd choice, and lets one batch row push out another's: in a causal decoder the past would then depend
on the future and on the other rows. Position-major per sequence keeps every output causal and every
row independent (tests/test_08_moe.py). What remains: the capacity counts the T tokens of one forward
pass, so a token's output can depend on T itself — cached decoding (T = 1, capacity >= 1 per expert and
k distinct experts per token) never drops. With capacity_factor=None nothing is ever dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.normalization import ACTIVATIONS, GATED_ACTIVATIONS, FeedForward  # lesson 10: the experts
from llmlab.sampling import entropy  # lesson 05: the one entropy of the lab, of softmax(logits) in nats
from llmlab.utils.checks import check_bool, check_int, check_number
from llmlab.utils.exercises import exercise

__all__ = [
    "MoECost",
    "MoELayer",
    "MoEStats",
    "RouterOutput",
    "TopKRouter",
    "dense_ffn_flops_per_token",
    "expert_capacity",
    "load_balancing_loss",
    "moe_cost",
    "router_z_loss",
]


# ----------------------------------------------------------------------------------------------------
# argument checks


def _check_capacity_factor(capacity_factor: object) -> None:
    if capacity_factor is None:
        return
    check_number("capacity_factor", capacity_factor, low=0, low_open=True)


def _check_router_logits(router_logits: object) -> Tensor:
    if not isinstance(router_logits, Tensor) or not router_logits.is_floating_point():
        raise TypeError(f"router_logits must be a float tensor (..., n_experts), got {router_logits!r:.80}")
    if router_logits.dim() < 1 or router_logits.shape[-1] == 0 or router_logits.numel() == 0:
        raise ValueError(f"router_logits must have shape (..., n_experts), got {tuple(router_logits.shape)}")
    return router_logits.reshape(-1, router_logits.shape[-1])  # (N, E)


# ----------------------------------------------------------------------------------------------------
# the maths as plain functions


@exercise(3, "pool the layers' logits; softmax in float32; f = how often each expert is among the top_k,"
          " divided by the token count; P = mean probability; return E * sum(f * P)")
def load_balancing_loss(router_logits: Tensor | list[Tensor] | tuple[Tensor, ...], n_experts: int,
                        top_k: int) -> Tensor:
    """The Switch Transformer load-balancing loss (Fedus et al. 2021, eq. 4-6), in Mixtral's top-k form.

        L = E · sum_i f_i · P_i,   f_i = (# of the N·k choices that went to expert i) / N,
                                   P_i = mean over the N tokens of softmax(router_logits)_i

    router_logits: (..., E), or a list of them (one per layer: counts and probabilities are pooled over
    all layers first, as transformers' `load_balancing_loss_func` does). f is not differentiable, P is:
    the gradient lowers the probability of the experts that already get more than their share.
    Perfect balance (f_i = k/E, P_i = 1/E) gives exactly top_k; with top_k=1, every token on one expert
    with certainty (f = P = 1 there) gives the maximum, E.
    Raises TypeError unless router_logits are float tensors, ValueError for an empty list or tensor, a
    column count other than n_experts, n_experts < 1 or top_k outside [1, n_experts].
    """
    check_int("n_experts", n_experts, minimum=1)
    check_int("top_k", top_k, minimum=1, maximum=n_experts)
    layers = list(router_logits) if isinstance(router_logits, (list, tuple)) else [router_logits]
    if not layers:
        raise ValueError("router_logits must not be an empty list")
    flat = [_check_router_logits(logits) for logits in layers]
    for logits in flat:
        if logits.shape[-1] != n_experts:
            raise ValueError(f"router_logits must have n_experts={n_experts} columns, got {logits.shape[-1]}")
    logits = torch.cat(flat, dim=0)  # (N, E), all layers pooled
    probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
    chosen = probs.topk(top_k, dim=-1).indices  # (N, k)
    counts = F.one_hot(chosen, n_experts).sum(dim=(0, 1)).float()  # (E,) choices per expert
    tokens_per_expert = counts / logits.shape[0]  # f: (E,), sums to top_k
    prob_per_expert = probs.mean(dim=0)  # P: (E,), sums to 1
    return n_experts * torch.sum(tokens_per_expert * prob_per_expert)


def router_z_loss(router_logits: Tensor) -> Tensor:
    """ST-MoE's router z-loss (Zoph et al. 2022, eq. 5): mean over tokens of logsumexp(logits)^2.

    Large router logits make the softmax saturate and round badly in low precision; this penalises their
    overall size without caring which expert wins. router_logits: (..., E) -> scalar.
    Raises TypeError unless router_logits is a float tensor, ValueError if it is empty.
    """
    logits = _check_router_logits(router_logits)  # (N, E)
    return torch.logsumexp(logits.float(), dim=-1).pow(2).mean()


@exercise(1, "None for no capacity factor; otherwise the ceiling of factor * n_tokens * top_k / "
          "n_experts, rounded to 9 decimals first so that float error cannot add one")
def expert_capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float | None) -> int | None:
    """Assignments one expert may take from a sequence of n_tokens: ceil(capacity_factor · n_tokens · top_k /
    n_experts).

    capacity_factor 1.0 is exactly a fair share; > 1 leaves slack for imbalance; None = unlimited (None).
    Raises TypeError/ValueError for n_tokens < 0, n_experts < 1, top_k outside [1, n_experts] or a
    capacity_factor that is not a finite number > 0 (or None).
    """
    check_int("n_tokens", n_tokens, minimum=0)
    check_int("n_experts", n_experts, minimum=1)
    check_int("top_k", top_k, minimum=1, maximum=n_experts)
    _check_capacity_factor(capacity_factor)
    if capacity_factor is None:
        return None
    # round before ceil: 1.25 · 64 · 2 / 8 is 20 exactly, not 20.000000000000004 -> 21
    return math.ceil(round(capacity_factor * n_tokens * top_k / n_experts, 9))


@dataclass(frozen=True)
class MoECost:
    """Parameters and forward FLOPs of an MoE layer next to the dense FFN of one expert's size.

    FLOPs count a multiply-add as 2 and only the matrix products (router + expert matmuls); activations
    and the gate multiply are O(d_ff) per token, negligible next to O(d_model · d_ff).
    """

    total_params: int  # router + all experts: what must be stored
    active_params: int  # router + top_k experts: what one token touches
    flops_per_token: int  # router + top_k expert forwards
    dense_params: int  # one expert alone = the dense FFN of width d_ff
    dense_flops_per_token: int


def dense_ffn_flops_per_token(d_model: int, d_ff: int, activation: str = "swiglu") -> int:
    """Forward FLOPs of one FeedForward per token: 2 · (number of weight matrices) · d_model · d_ff.

    Raises TypeError/ValueError for d_model or d_ff < 1, ValueError for an unknown activation.
    """
    check_int("d_model", d_model, minimum=1)
    check_int("d_ff", d_ff, minimum=1)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    n_matrices = 3 if activation in GATED_ACTIVATIONS else 2
    return 2 * n_matrices * d_model * d_ff


@exercise(2, "start from dense_ffn_flops_per_token (it also checks the sizes and the activation); one "
          "expert has 3 weight matrices when gated, 2 otherwise (plus biases); the router is d_model "
          "x n_experts; total counts all experts, active only top_k")
def moe_cost(d_model: int, d_ff: int, n_experts: int, top_k: int, *, activation: str = "swiglu",
             bias: bool = False) -> MoECost:
    """Total vs active parameters and FLOPs per token of MoELayer(d_model, d_ff, n_experts, top_k).

    Raises TypeError/ValueError for sizes < 1, top_k outside [1, n_experts] or an unknown activation.
    """
    check_int("n_experts", n_experts, minimum=1)
    check_int("top_k", top_k, minimum=1, maximum=n_experts)
    dense_flops = dense_ffn_flops_per_token(d_model, d_ff, activation)
    n_matrices = 3 if activation in GATED_ACTIVATIONS else 2
    expert_params = n_matrices * d_model * d_ff
    if bias:  # one bias per hidden unit of each input matrix, and d_model for down_proj
        expert_params += (n_matrices - 1) * d_ff + d_model
    router_params = d_model * n_experts
    return MoECost(
        total_params=router_params + n_experts * expert_params,
        active_params=router_params + top_k * expert_params,
        flops_per_token=2 * d_model * n_experts + top_k * dense_flops,
        dense_params=expert_params,
        dense_flops_per_token=dense_flops,
    )


# ----------------------------------------------------------------------------------------------------
# the router


@dataclass
class RouterOutput:
    """logits (N, E): the scores used for routing (noisy ones when noise is on); probs (N, E) = their
    softmax; weights (N, k): the gates of the chosen experts; indices (N, k): the chosen experts, best
    first."""

    logits: Tensor
    probs: Tensor
    weights: Tensor
    indices: Tensor


class TopKRouter(nn.Module):
    """Scores every expert for every token and keeps the top_k: x (N, d_model) -> RouterOutput.

    Default: Mixtral's softmax over all experts, top-k, renormalise over the k chosen (= a softmax over
    the k chosen logits). renormalize=None picks Mixtral's renormalisation for top_k > 1 and Switch's raw
    probability for top_k = 1: a renormalised single gate is always 1.0 and the router would get no
    gradient from the language-model loss at all.
    noisy=True: Shazeer et al. 2017's noisy top-k gating: in training, each logit gets Gaussian noise of
    a learned, per-token scale softplus(x W_noise); the noise explores experts that would otherwise
    never be tried. In eval mode the noise is off.
    Raises TypeError/ValueError for d_model or n_experts < 1, top_k outside [1, n_experts], and TypeError
    unless noisy is a bool and renormalize a bool or None.
    """

    def __init__(self, d_model: int, n_experts: int, top_k: int = 2, *, noisy: bool = False,
                 renormalize: bool | None = None) -> None:
        super().__init__()
        check_int("d_model", d_model, minimum=1)
        check_int("n_experts", n_experts, minimum=1)
        check_int("top_k", top_k, minimum=1, maximum=n_experts)
        check_bool("noisy", noisy)
        if renormalize is not None and not isinstance(renormalize, bool):
            raise TypeError(f"renormalize must be a bool or None, got {renormalize!r}")
        self.d_model, self.n_experts, self.top_k = d_model, n_experts, top_k
        self.renormalize = top_k > 1 if renormalize is None else renormalize
        self.gate = nn.Linear(d_model, n_experts, bias=False)  # W_r (Mixtral's "gate")
        self.noise = nn.Linear(d_model, n_experts, bias=False) if noisy else None

    @exercise(4, "logits from the gate (plus softplus-scaled noise in training when noisy); softmax in "
              "float32; top_k; renormalise the k gates when self.renormalize; gates back in x's dtype")
    def forward(self, x: Tensor) -> RouterOutput:
        """x (N, d_model) -> RouterOutput. Raises ValueError unless x is a tensor of shape (N, d_model)."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != self.d_model:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (N, d_model={self.d_model}), got {shape}")
        logits = self.gate(x)  # (N, E)
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(x))  # (N, E)
        probs = torch.softmax(logits.float(), dim=-1)  # (N, E), float32 like Mixtral
        weights, indices = probs.topk(self.top_k, dim=-1)  # (N, k) each, best first
        if self.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)  # the k gates sum to 1
        return RouterOutput(logits=logits, probs=probs, weights=weights.to(x.dtype), indices=indices)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_experts={self.n_experts}, top_k={self.top_k}, "
                f"noisy={self.noise is not None}, renormalize={self.renormalize}")


# ----------------------------------------------------------------------------------------------------
# the layer


@dataclass
class MoEStats:
    """What one forward of an MoELayer did (kept in `layer.last_stats`).

    router_logits (N, E) keep their graph (the aux losses are computed from them); tokens_per_expert (E,)
    = the fraction of the N·k assignments each expert received before capacity (sums to 1);
    expert_counts (E,) the same as counts; n_dropped = assignments dropped for capacity; n_tokens_dropped
    = tokens with all k assignments dropped; router_entropy = mean per-token entropy of the router
    probabilities (nats; ln E = undecided, 0 = certain).
    """

    router_logits: Tensor
    tokens_per_expert: Tensor
    expert_counts: Tensor
    capacity: int | None
    n_assignments: int
    n_dropped: int
    n_tokens_dropped: int
    router_entropy: float


class MoELayer(nn.Module):
    """A sparse mixture of SwiGLU experts, a drop-in replacement for a FeedForward: x (..., d_model) ->
    (..., d_model), the same shape.

    Every forward stores `last_stats` (MoEStats), `last_aux_loss` (the load-balancing loss) and
    `last_z_loss` (the router z-loss), both scalar tensors with their graph, for the training loop (the
    lab GPT adds them to its loss, see GPTConfig.moe_aux_loss_coef). Each expert is lesson 10's
    FeedForward(d_model, d_ff, activation, bias=bias) with Llama/Mixtral's names gate_proj (w1),
    up_proj (w3), down_proj (w2).
    Raises TypeError/ValueError for sizes < 1, top_k outside [1, n_experts], a capacity_factor that is not
    a finite number > 0 (or None), a non-bool bias or noisy, ValueError for an unknown activation.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int = 2, *,
                 capacity_factor: float | None = None, activation: str = "swiglu", bias: bool = False,
                 dropout: float = 0.0, noisy: bool = False, renormalize: bool | None = None,
                 fused: bool = False) -> None:
        super().__init__()
        check_int("d_model", d_model, minimum=1)
        check_int("d_ff", d_ff, minimum=1)
        check_int("n_experts", n_experts, minimum=1)
        check_int("top_k", top_k, minimum=1, maximum=n_experts)
        _check_capacity_factor(capacity_factor)
        check_bool("bias", bias)
        self.d_model, self.d_ff, self.n_experts, self.top_k = d_model, d_ff, n_experts, top_k
        self.capacity_factor, self.activation, self.bias = capacity_factor, activation, bias
        self.router = TopKRouter(d_model, n_experts, top_k, noisy=noisy, renormalize=renormalize)
        self.experts = nn.ModuleList(
            FeedForward(d_model, d_ff, activation, bias=bias, dropout=dropout, fused=fused)
            for _ in range(n_experts)
        )
        self.last_stats: MoEStats | None = None
        self.last_aux_loss: Tensor | None = None
        self.last_z_loss: Tensor | None = None

    @exercise(6, "flatten to tokens and route; list the (token, choice) assignments token-major; per "
              "sequence, an assignment beyond its expert's capacity is dropped; each expert runs on "
              "its kept tokens, scaled by the gates and index_add-ed into the output; fill last_stats"
              " and the two aux losses")
    def forward(self, x: Tensor) -> Tensor:
        """x (..., d_model) -> (..., d_model): each token through its top_k experts, weighted by the
        router; sets last_stats, last_aux_loss and last_z_loss. Raises TypeError unless x is a
        floating-point tensor, ValueError unless its shape is (..., d_model) with at least 2
        dimensions.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a float tensor (..., d_model), got {type(x).__name__}")
        if x.dim() < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (..., d_model={self.d_model}), got {tuple(x.shape)}")
        shape = x.shape
        T = shape[-2] if x.dim() >= 3 else shape[0]  # tokens per sequence (a 2-D input is one sequence)
        x = x.reshape(-1, self.d_model)  # (N, d_model): routing is per token, batch and time flattened
        N, E, k = x.shape[0], self.n_experts, self.top_k
        route = self.router(x)

        # every (token, choice) assignment in priority order: token-major (all k choices of token 0, then
        # of token 1, ...), so within each sequence an earlier token is always served first
        expert_of = route.indices.reshape(-1)  # (N·k,)
        token_of = torch.arange(N, device=x.device).repeat_interleave(k)  # (N·k,)
        gate_of = route.weights.reshape(-1)  # (N·k,)
        counts = torch.bincount(expert_of, minlength=E)  # (E,) assignments each expert was asked to take
        capacity = expert_capacity(T, E, k, self.capacity_factor)  # per sequence
        if capacity is None:
            kept = torch.ones(N * k, dtype=torch.bool, device=x.device)
        else:  # each assignment's place in its expert's queue, counted within its own sequence
            chosen = F.one_hot(expert_of.view(N // T, T * k), E)  # (B, T·k, E)
            place = (chosen.cumsum(dim=1) * chosen).sum(dim=-1) - 1  # (B, T·k): 0 = first in line
            kept = (place < capacity).reshape(-1)  # (N·k,) first come, first served; the rest dropped

        out = torch.zeros_like(x)  # (N, d_model); a dropped assignment adds nothing
        order = torch.sort(expert_of, stable=True).indices  # (N·k,) grouped by expert, priority kept
        start = 0
        for e, n_e in enumerate(counts.tolist()):
            slots = order[start:start + n_e]  # (n_e,) this expert's assignments, priority order
            start += n_e
            slots = slots[kept[slots]]  # (n_kept,) the ones within capacity
            if slots.numel() == 0:
                continue
            tokens = token_of[slots]  # (n_kept,)
            y = self.experts[e](x[tokens]) * gate_of[slots, None]  # (n_kept, d_model)
            out.index_add_(0, tokens, y.to(out.dtype))

        n_dropped = int((~kept).sum())
        tokens_dropped = int((~kept).view(N, k).all(dim=1).sum()) if n_dropped else 0
        router_entropy = entropy(route.logits.detach()).mean()  # of probs = softmax(logits), per token
        self.last_stats = MoEStats(
            router_logits=route.logits, tokens_per_expert=(counts.float() / (N * k)).detach(),
            expert_counts=counts.detach(), capacity=capacity, n_assignments=N * k, n_dropped=n_dropped,
            n_tokens_dropped=tokens_dropped, router_entropy=float(router_entropy),
        )
        self.last_aux_loss = load_balancing_loss(route.logits, E, k)
        self.last_z_loss = router_z_loss(route.logits)
        return out.reshape(shape)

    # -- accounting -----------------------------------------------------------------------------------

    def cost(self) -> MoECost:
        """Total vs active parameters and FLOPs per token (see moe_cost); noise weights count as router."""
        cost = moe_cost(self.d_model, self.d_ff, self.n_experts, self.top_k, activation=self.activation,
                        bias=self.bias)
        if self.router.noise is not None:
            extra = self.router.noise.weight.numel()
            cost = MoECost(cost.total_params + extra, cost.active_params + extra, cost.flops_per_token,
                           cost.dense_params, cost.dense_flops_per_token)
        return cost

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, d_ff={self.d_ff}, n_experts={self.n_experts}, top_k={self.top_k}, "
                f"capacity_factor={self.capacity_factor}")

    # -- conversion -----------------------------------------------------------------------------------

    @exercise(5, "read the router weight and the experts (fused gate_up_proj split in half, or per-"
              "expert w1, w3, w2); build an MoELayer with renormalize=True and copy w1 -> gate_proj, "
              "w3 -> up_proj, w2 -> down_proj")
    @classmethod
    def from_mixtral(cls, block: nn.Module) -> MoELayer:
        """An MoELayer with the weights of transformers' MixtralSparseMoeBlock (same outputs, float32).

        transformers 5 fuses the experts into 3-D tensors: experts.gate_up_proj (E, 2·d_ff, d_model),
        the gate rows (Mixtral's w1) first, then the up rows (w3), and experts.down_proj (E, d_model, d_ff)
        (w2); transformers 4 kept one module per expert with w1, w3, w2. Both are read. The router is
        block.gate.weight (E, d_model). Mixtral's optional training-time input jitter
        (router_jitter_noise, 0 by default) has no counterpart here: conversion is for inference.
        No capacity limit (Mixtral never drops tokens).
        Raises TypeError unless block is a transformers MixtralSparseMoeBlock.
        """
        gate = getattr(block, "gate", None)
        experts = getattr(block, "experts", None)
        router_weight = getattr(gate, "weight", None)
        if not isinstance(router_weight, Tensor) or experts is None or not hasattr(block, "top_k"):
            raise TypeError(f"block must be a transformers MixtralSparseMoeBlock, got {type(block).__name__}")
        n_experts, d_model = router_weight.shape
        if hasattr(experts, "gate_up_proj"):  # transformers 5: fused (E, 2·d_ff, d_model)
            gate_up = experts.gate_up_proj.detach().float()
            d_ff = gate_up.shape[1] // 2
            w1, w3 = gate_up[:, :d_ff], gate_up[:, d_ff:]  # (E, d_ff, d_model) each
            w2 = experts.down_proj.detach().float()  # (E, d_model, d_ff)
        else:  # transformers 4: a ModuleList of MixtralBlockSparseTop2MLP(w1, w2, w3)
            w1 = torch.stack([m.w1.weight.detach().float() for m in experts])
            w3 = torch.stack([m.w3.weight.detach().float() for m in experts])
            w2 = torch.stack([m.w2.weight.detach().float() for m in experts])
            d_ff = w1.shape[1]
        layer = cls(d_model, d_ff, n_experts, int(block.top_k), renormalize=True)
        with torch.no_grad():
            layer.router.gate.weight.copy_(router_weight.detach().float())
            for e, expert in enumerate(layer.experts):
                expert.gate_proj.weight.copy_(w1[e])  # w1: the SiLU-gated branch
                expert.up_proj.weight.copy_(w3[e])  # w3: the linear branch
                expert.down_proj.weight.copy_(w2[e])  # w2: back to d_model
        return layer.to(router_weight.device).train(block.training)
