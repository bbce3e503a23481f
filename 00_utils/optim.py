"""AdamW and gradient-norm clipping from scratch: the optimizer of every lab model (DESIGN §4).

Adam keeps two running averages per parameter, of the gradient (m, the direction) and of its square
(v, the scale), and moves each weight by m / sqrt(v): a step of about `lr` whatever the gradient's
size. AdamW takes the weight decay out of the gradient and applies it to the weights directly.

    g_t   = grad of the loss at step t (t = 1, 2, ...)
    m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t                  first moment   (m_0 = 0)
    v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t^2                second moment  (v_0 = 0)
    m^_t  = m_t / (1 - beta1^t),   v^_t = v_t / (1 - beta2^t)    bias correction
    w_t   = w_{t-1} - lr * wd * w_{t-1}                          decoupled weight decay
            - lr * m^_t / (sqrt(v^_t) + eps)                     the Adam step

Bias correction: m and v start at 0, so early averages are shrunk towards 0 by a factor
(1 - beta^t); dividing by it makes them unbiased. Without it the first steps are wrong in size:
with beta1 = 0.9, beta2 = 0.999 the first step is m_1 / sqrt(v_1) = 0.1 g / (0.032 |g|) ≈ 3.2 lr.
Decoupled decay: Adam + L2 adds wd * w to the gradient, which then gets divided by sqrt(v): weights
with large gradients are barely decayed and weights with tiny gradients are decayed hugely.
AdamW shrinks every weight by the same factor (1 - lr * wd) per step.

Papers: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015); Loshchilov & Hutter,
"Decoupled Weight Decay Regularization" (ICLR 2019). Gradient clipping: Pascanu, Mikolov & Bengio,
"On the difficulty of training recurrent neural networks" (ICML 2013).

The operations are those of `torch.optim.AdamW(foreach=False)` in the same order, so the two agree
bit for bit on CPU (tests/test_00_utils.py proves it step by step).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from llmlab.utils.checks import check_number


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter 2019) as a `torch.optim.Optimizer`, one parameter at a time.

    Same arguments, param groups and state (`step`, `exp_avg`, `exp_avg_sq`) as `torch.optim.AdamW`,
    so a state dict moves between the two. No amsgrad, maximize or complex parameters.
    `decoupled_weight_decay=False` is the coupled variant for comparison, Adam + L2 (=
    `torch.optim.Adam(weight_decay=...)`): g_t <- g_t + wd * w_{t-1}, then the Adam step, no decay.
    Raises ValueError for an lr, betas, eps or weight_decay out of range (a wrong type included, as
    torch.optim.AdamW), TypeError unless decoupled_weight_decay is a bool.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, *, decoupled_weight_decay: bool = True):
        _check_hyperparameters(lr, betas, eps, weight_decay)
        if not isinstance(decoupled_weight_decay, bool):
            raise TypeError("decoupled_weight_decay must be a bool, got "
                            f"{type(decoupled_weight_decay).__name__}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "decoupled_weight_decay": decoupled_weight_decay})
        for group in self.param_groups:  # per-group overrides are checked too
            _check_hyperparameters(group["lr"], group["betas"], group["eps"], group["weight_decay"])

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() if given.

        Raises RuntimeError for sparse gradients.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:  # lazy init, as torch: the step count lives on the CPU as a float tensor
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grad, m, v = p.grad, state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"].item()  # a CPU tensor: no device synchronisation
                if wd != 0 and group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * wd)  # decoupled: shrink the weight itself, not its gradient
                elif wd != 0:
                    grad = grad.add(p, alpha=wd)  # Adam + L2: the decay goes through 1 / sqrt(v)
                m.lerp_(grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                step_size = lr / bias_correction1  # lr * m^ = lr / (1 - beta1^t) * m
                denom = (v.sqrt() / bias_correction2**0.5).add_(eps)  # sqrt(v^) + eps
                p.addcdiv_(m, denom, value=-step_size)
        return loss


def clip_grad_norm(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Scale all gradients together so that their joint norm is at most `max_norm`; returns the norm before.

        total = || (||g_1||_p, ||g_2||_p, ...) ||_p          (the norm of all gradients as one vector)
        g_i  <- g_i * min(1, max_norm / (total + 1e-6))

    The multiplication by min(1, ...) happens always (by exactly 1.0 below the max, which changes no
    bit), so nothing is read back from the device. Parameters without a gradient are skipped; with
    none at all the norm is 0. Same result as `torch.nn.utils.clip_grad_norm_`.
    Raises ValueError unless max_norm and norm_type are numbers > 0 (math.inf allowed), as torch does.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    check_number("max_norm", max_norm, low=0, low_open=True, finite=False, wrong_type=ValueError)
    check_number("norm_type", norm_type, low=0, low_open=True, finite=False, wrong_type=ValueError)
    if not grads:
        return torch.tensor(0.0)
    norms = [torch.linalg.vector_norm(g, norm_type) for g in grads]  # one norm per parameter
    total = torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in norms]), norm_type)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # 1.0 below the max: a no-op
    for g in grads:
        g.mul_(coef.to(g.device))
    return total


def _check_hyperparameters(lr, betas, eps, weight_decay) -> None:
    """ValueError for every bad value, a wrong type included, as torch.optim raises."""
    check_number("lr", lr, low=0, wrong_type=ValueError)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for name, beta in zip(("betas[0]", "betas[1]"), betas):
        check_number(name, beta, low=0.0, high=1.0, high_open=True, wrong_type=ValueError)
    check_number("eps", eps, low=0, finite=False, wrong_type=ValueError)
    check_number("weight_decay", weight_decay, low=0, finite=False, wrong_type=ValueError)
