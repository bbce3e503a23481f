"""Lesson 13: scaling laws — parameter and FLOP counts of the lab GPT, power-law and Chinchilla fits, the
compute-optimal split, memory to train and serve real shapes; train_ddp.py trains on many processes.

scaling.py: everything importable; train_ddp.py: a torchrun script (DDP / FSDP2), not imported here.
"""

from llmlab.scaling_laws.scaling import (
    BESIROGLU_2024,
    HOFFMANN_2022,
    HOFFMANN_2022_TABLE3,
    HOFFMANN_GRID,
    KAPLAN_2020,
    OPTIMIZER_STATE_BYTES,
    PUBLISHED_PARAMS,
    REAL_MODELS,
    activation_memory,
    chinchilla_loss,
    compute_optimal,
    count_params,
    exact_flops_per_token,
    fit_chinchilla,
    fit_isoflops,
    fit_power_law,
    flops_per_token,
    inference_memory,
    isoflop_parabola,
    training_memory,
)

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
