"""RLHF with PPO, the pieces: KL estimators, the KL-shaped reward, GAE, and the clipped losses.

The policy π (the SFT model, being trained) writes a response y to a prompt x; a reward model scores the
whole response once, r(x, y). Maximising r alone lets π drift to text the reward model over-rates
(reward hacking), so InstructGPT maximises r minus a KL penalty to the frozen SFT model π_ref, paid per
token:

    reward_t = −kl_coef · kl_t              for every response token t,   kl_t ≈ log π(y_t) − log π_ref(y_t)
             + r(x, y)                      added on the last response token
    KL(π ‖ π_ref) estimated from samples y ~ π with log ρ = log π_ref − log π (Schulman 2020):
        k1 = −log ρ            unbiased, high variance, negative for many samples
        k2 = ½ (log ρ)²        biased, low variance, ≥ 0
        k3 = (ρ − 1) − log ρ   unbiased, low variance, ≥ 0
    GAE:  δ_t = reward_t + γ V_{t+1} − V_t,   A_t = δ_t + γ λ A_{t+1},   return_t = A_t + V_t
    PPO:  ratio_t = π(y_t) / π_old(y_t),      L = mean_t max(−A_t ratio_t, −A_t clip(ratio_t, 1 ± ε))
    value loss:  ½ mean_t max((V_t − R_t)², (clip(V_t, V_old ± ε_v) − R_t)²)

Every mean is over all response tokens of the batch (`mask`); V past a row's last token is 0 (the
episode has ended). Papers: Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (eq. 7);
Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage Estimation"
(eq. 16); Schulman 2020, "Approximating KL Divergence" (blog post: k1, k2, k3); Ziegler et al. 2019,
"Fine-Tuning Language Models from Human Preferences" and Ouyang et al. 2022 (the per-token KL penalty);
the formulas follow trl's former PPOTrainer (trl <= 0.x: rewards, GAE, the clipped policy and value
losses, masked whitening).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llmlab.utils.checks import check_bool, check_choice, check_int, check_number, check_tensor
from llmlab.utils.exercises import exercise

__all__ = [
    "KL_ESTIMATORS",
    "ValueHead",
    "gae",
    "kl_estimates",
    "kl_penalized_rewards",
    "masked_mean",
    "masked_whiten",
    "ppo_policy_loss",
    "value_loss",
]

KL_ESTIMATORS = ("k1", "k2", "k3")


# ---------------------------------------------------------------------------------------------- checks
def _check_same(name: str, value: object, like: Tensor, like_name: str) -> Tensor:
    check_tensor(name, value, dtype="float")
    if value.shape != like.shape:
        raise ValueError(f"{name} must have {like_name}'s shape {tuple(like.shape)}, got "
                         f"{tuple(value.shape)}")
    return value


def _check_mask(mask: object, like: Tensor, like_name: str) -> Tensor:
    check_tensor("mask", mask)
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"mask must be a bool or integer tensor (True = response token), got dtype "
                        f"{mask.dtype}")
    if mask.shape != like.shape:
        raise ValueError(f"mask must have {like_name}'s shape {tuple(like.shape)}, got {tuple(mask.shape)}")
    return mask.bool()


# ------------------------------------------------------------------------------------- masked averages
def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """The mean of x over the entries where mask is True (over `dim`, or all of them). nan if none.

    Raises TypeError unless x is a floating-point tensor and mask a bool or integer tensor, ValueError unless
    mask has x's shape.
    """
    check_tensor("x", x, dtype="float")
    mask = _check_mask(mask, x, "x")
    total = torch.where(mask, x, torch.zeros_like(x))
    if dim is None:
        return total.sum() / mask.sum()
    return total.sum(dim) / mask.sum(dim)


def masked_whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True) -> Tensor:
    """(x − mean) / std over the masked entries (the mean added back when shift_mean=False); 0 elsewhere.
    PPO whitens its advantages per batch: the step size then does not depend on the reward's scale.
    The variance is the unbiased one, as trl's masked_var.

    Raises TypeError unless x is a floating-point tensor, mask a bool or integer tensor and shift_mean a bool,
    ValueError unless mask has x's shape."""
    mask = _check_mask(mask, x, "x")
    check_bool("shift_mean", shift_mean)
    mean = masked_mean(x, mask)
    n = mask.sum()
    variance = masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)  # Bessel's correction
    whitened = (x - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))


# ------------------------------------------------------------------------------------------------ KL
@exercise(1, "take log rho = log pi_ref - log pi once, then write the three formulas; for k3 prefer "
          "expm1 over exp(.) - 1 (exact near rho = 1)")
def kl_estimates(logprobs: Tensor, ref_logprobs: Tensor) -> dict[str, Tensor]:
    """Schulman's three per-sample estimators of KL(π ‖ π_ref) for samples drawn from π.

    logprobs: log π(y_t) of the sampled tokens, any shape, float; ref_logprobs: log π_ref(y_t), same shape.
    Returns {"k1", "k2", "k3"}, each of that shape, with log ρ = ref_logprobs − logprobs:
    k1 = −log ρ, k2 = ½ (log ρ)², k3 = exp(log ρ) − 1 − log ρ. The mean of k1 or k3 over samples from π is
    the KL exactly in expectation; k2 is biased (but close when π ≈ π_ref). Gradients flow as written.
    Raises TypeError unless logprobs and ref_logprobs are floating-point tensors, ValueError unless they have
    the same shape.
    """
    check_tensor("logprobs", logprobs, dtype="float")
    _check_same("ref_logprobs", ref_logprobs, logprobs, "logprobs")
    log_ratio = ref_logprobs - logprobs  # log ρ = log π_ref/π
    return {
        "k1": -log_ratio,
        "k2": 0.5 * log_ratio ** 2,
        "k3": torch.expm1(log_ratio) - log_ratio,  # expm1: exact for ρ near 1, where k3 ~ ½ (log ρ)²
    }


@exercise(6, "without gradient: -kl_coef * the chosen estimator on the response tokens, 0 elsewhere; "
          "then add each row's score at its last True position of mask")
def kl_penalized_rewards(scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, *,
                         kl_coef: float, estimator: str = "k1") -> Tensor:
    """The per-token reward of RLHF: −kl_coef · kl_t on every response token, plus each row's score on its
    last response token; 0 where mask is False. -> (B, T), detached (a reward is data, not a loss).

    scores: (B,) the reward model's r(x, y); logprobs, ref_logprobs: (B, T) log π and log π_ref of the
    sampled tokens; mask: (B, T) bool, True on the response tokens (each row needs at least one);
    kl_coef >= 0 (0: no penalty, the reward-hacking setting); estimator: "k1" (trl's default), "k2", "k3".
    Raises TypeError/ValueError naming the argument.
    """
    check_tensor("logprobs", logprobs, ndim=2, dtype="float")
    _check_same("ref_logprobs", ref_logprobs, logprobs, "logprobs")
    mask = _check_mask(mask, logprobs, "logprobs")
    check_tensor("scores", scores, ndim=1, dtype="float")
    if scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"scores must have one score per row (B={logprobs.shape[0]}), got shape "
                         f"{tuple(scores.shape)}")
    kl_coef = check_number("kl_coef", kl_coef, low=0)
    check_choice("estimator", estimator, KL_ESTIMATORS)
    if not bool(mask.any(dim=-1).all()):  # one read: the score needs a token to sit on
        raise ValueError("mask has a row without a response token: its score has no token to go to")
    with torch.no_grad():
        kl = kl_estimates(logprobs, ref_logprobs)[estimator]  # (B, T)
        rewards = torch.where(mask, -kl_coef * kl, torch.zeros_like(kl))
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, positions, -1).amax(dim=-1)  # (B,): each row's last response token
        rewards[torch.arange(mask.shape[0], device=mask.device), last] += scores.to(rewards.dtype)
    return rewards


# ----------------------------------------------------------------------------------------------- GAE
@exercise(8, "zero rewards and values off the mask, then one pass from the last column: delta = r + "
          "gamma V_next - V, A = delta + gamma lam A_next; V_next and A_next are 0 past the episode's"
          " end; returns = A + V")
def gae(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over each row's response tokens -> (advantages, returns), (B, T).

    rewards: (B, T) per-token rewards (kl_penalized_rewards); values: (B, T) the critic's V(s_t);
    mask: (B, T) bool, each row's response tokens as one contiguous run (the episode); the step after a
    row's last token has value 0 (the episode ends). gamma, lam in [0, 1]: lam = 1 is the Monte-Carlo
    return minus V (unbiased, noisy), lam = 0 the one-step TD error (biased by V, quiet).
    returns = advantages + values (the critic's regression target). Both are 0 where mask is False,
    detached. Raises TypeError/ValueError naming the argument.
    """
    check_tensor("rewards", rewards, ndim=2, dtype="float")
    _check_same("values", values, rewards, "rewards")
    mask = _check_mask(mask, rewards, "rewards")
    gamma = check_number("gamma", gamma, low=0, high=1)
    lam = check_number("lam", lam, low=0, high=1)
    with torch.no_grad():
        zeros = torch.zeros_like(rewards)
        rewards = torch.where(mask, rewards, zeros)
        values = torch.where(mask, values, zeros)
        T = rewards.shape[1]
        advantages = torch.zeros_like(rewards)
        next_value = rewards.new_zeros(rewards.shape[0])  # (B,): V after the last column
        next_advantage = rewards.new_zeros(rewards.shape[0])
        for t in reversed(range(T)):  # A_t needs A_{t+1}: one pass from the end
            delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
            advantages[:, t] = delta + gamma * lam * next_advantage
            live = mask[:, t]  # a masked step is past the episode's end: V = A = 0 for the step before
            next_value = torch.where(live, values[:, t], 0.0)
            next_advantage = torch.where(live, advantages[:, t], 0.0)
        advantages = torch.where(mask, advantages, zeros)
        returns = torch.where(mask, advantages + values, zeros)
    return advantages, returns


# -------------------------------------------------------------------------------------------- losses
@exercise(7, "detach the old log-probs and advantages; ratio = exp(new - old); per token the larger of "
          "-A * ratio and -A * clamped ratio; masked_mean; the stats under no_grad")
def ppo_policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
                    clip_range: float = 0.2,
                    return_stats: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate loss, the mean over all response tokens of the batch.

    logprobs: (B, T) log π(y_t) now (with gradient); old_logprobs: (B, T) at rollout time (constants);
    advantages: (B, T) (gae, usually whitened); mask: (B, T) bool; clip_range ε > 0.
    Per token: max(−A ratio, −A clip(ratio, 1−ε, 1+ε)), ratio = exp(logprobs − old_logprobs): once the
    ratio has moved ε in the direction the advantage asks for, the gradient of that token is 0.
    return_stats=True also returns {"clip_fraction", "approx_kl" (½ mean (Δ log π)², as trl),
    "ratio_mean"}, detached. Raises TypeError/ValueError naming the argument.
    """
    check_tensor("logprobs", logprobs, dtype="float")
    _check_same("old_logprobs", old_logprobs, logprobs, "logprobs")
    _check_same("advantages", advantages, logprobs, "logprobs")
    mask = _check_mask(mask, logprobs, "logprobs")
    clip_range = check_number("clip_range", clip_range, low=0, low_open=True)
    check_bool("return_stats", return_stats)
    old_logprobs, advantages = old_logprobs.detach(), advantages.detach()
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)  # the pessimistic (larger) loss
    if not return_stats:
        return loss
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": 0.5 * masked_mean(log_ratio ** 2, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *,
               clip_range_value: float | None = 0.2) -> Tensor:
    """The critic's loss: ½ mean over response tokens of max((V − R)², (clip(V, V_old ± ε_v) − R)²).

    values: (B, T) V now (with gradient); old_values: (B, T) at rollout time; returns: (B, T) gae's
    returns; clip_range_value: ε_v > 0, or None for the plain ½ (V − R)². Raises TypeError/ValueError.
    """
    check_tensor("values", values, dtype="float")
    _check_same("old_values", old_values, values, "values")
    _check_same("returns", returns, values, "values")
    mask = _check_mask(mask, values, "values")
    old_values, returns = old_values.detach(), returns.detach()
    losses = (values - returns) ** 2
    if clip_range_value is not None:
        clip_range_value = check_number("clip_range_value", clip_range_value, low=0, low_open=True)
        clipped = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
        losses = torch.maximum(losses, (clipped - returns) ** 2)
    return 0.5 * masked_mean(losses, mask)


# ---------------------------------------------------------------------------------------- value head
class ValueHead(nn.Module):
    """The critic's head on a policy's hidden states: (B, T, d_model) -> values (B, T).

    A Linear(d_model, 1) with bias (a value has an offset, unlike a Bradley–Terry reward), weights
    N(0, 1/d_model) and bias 0; dropout on its input (trl's old value head used 0.1). Put it on the
    policy's `final_hidden` to share the body, or use a separate RewardModel(per_token=True) as critic.
    Raises TypeError/ValueError unless d_model is an int >= 1 and dropout a number in [0, 1).
    """

    def __init__(self, d_model: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = check_int("d_model", d_model, minimum=1)
        self.dropout = nn.Dropout(check_number("dropout", dropout, low=0, high=1, high_open=True))
        self.summary = nn.Linear(d_model, 1)
        nn.init.normal_(self.summary.weight, std=d_model ** -0.5)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden (..., d_model) -> the value of each position (...).

        Raises TypeError unless hidden is a floating-point tensor, ValueError unless it has shape
        (..., d_model) with at least 2 dimensions.
        """
        check_tensor("hidden", hidden, dtype="float")
        if hidden.dim() < 2 or hidden.shape[-1] != self.d_model:
            raise ValueError(f"hidden must have shape (..., d_model={self.d_model}), got "
                             f"{tuple(hidden.shape)}")
        return self.summary(self.dropout(hidden)).squeeze(-1)  # (B, T)
