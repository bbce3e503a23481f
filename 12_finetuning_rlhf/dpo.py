"""DPO: preference learning without a reward model and without RL — the policy IS the reward model.

The KL-regularised RL objective max E[r] − β KL(π ‖ π_ref) has the closed-form optimum
π*(y|x) ∝ π_ref(y|x) exp(r(x, y)/β), so r(x, y) = β log π*(y|x)/π_ref(y|x) + β log Z(x). Put that reward
into the Bradley–Terry loss of the reward model: log Z(x) cancels in the difference, and what is left
trains the policy directly on the preference pairs (Rafailov et al. 2023, eq. 7):

    L = −log σ(β [ (log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x)) ])
    implicit rewards:  r_c = β (log π(y_c|x) − log π_ref(y_c|x)),  r_r likewise  (no gradient)

The log-probabilities are sums over the response tokens (`sequence_logprobs`); their means give a
length-normalised variant. The usual picture while training: both log π(y_c) and log π(y_r) fall, the
rejected faster, so the margin r_c − r_r rises. label_smoothing ε > 0 is conservative DPO (cDPO: the
labels are flipped with probability ε).

Papers: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model" (eq. 7); Mitchell 2023, "A note on DPO with noisy preferences" (cDPO). trl's DPOTrainer computes
the same loss and rewards (checked against trl 1.16.0, loss_type="sigmoid").
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from llmlab.utils.checks import check_number, check_tensor
from llmlab.utils.exercises import exercise

__all__ = ["dpo_loss"]


@exercise(5, "the log-ratios log pi - log pi_ref of chosen and rejected; logits = beta * their "
          "difference; loss -log sigmoid(logits), mixed with -log sigmoid(-logits) by "
          "label_smoothing; rewards detached")
def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, *, beta: float = 0.1,
             label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """The DPO loss of a batch of preference pairs -> (loss, chosen_rewards, rejected_rewards).

    The four inputs: (B,) float, log π(y|x) of the chosen / rejected response under the policy (with
    gradient) and the frozen reference (no gradient needed). beta > 0: the strength of the implicit KL
    penalty (small beta lets the policy move far from the reference). label_smoothing in [0, 0.5).
    loss: the mean over pairs; chosen_rewards, rejected_rewards: (B,) β·(log π − log π_ref), detached.
    Raises TypeError/ValueError naming the argument.
    """
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    inputs = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    for name, value in zip(names, inputs):
        check_tensor(name, value, ndim=1, dtype="float")
        if value.shape != policy_chosen_logps.shape:
            raise ValueError(f"{name} must have policy_chosen_logps' shape "
                             f"{tuple(policy_chosen_logps.shape)}, got {tuple(value.shape)}")
    beta = check_number("beta", beta, low=0, low_open=True)
    label_smoothing = check_number("label_smoothing", label_smoothing, low=0, high=0.5, high_open=True)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,) log π/π_ref of the chosen answer
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,): the implicit reward margin
    losses = -F.logsigmoid(logits)
    if label_smoothing > 0:  # cDPO: the preference is wrong with probability ε
        losses = (1 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return losses.mean(), beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
