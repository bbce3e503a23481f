"""Lesson 08: mixture of experts: a router sends each token to its top-k SwiGLU experts."""

from llmlab.moe.moe_layer import (
    MoECost,
    MoELayer,
    MoEStats,
    RouterOutput,
    TopKRouter,
    dense_ffn_flops_per_token,
    expert_capacity,
    load_balancing_loss,
    moe_cost,
    router_z_loss,
)

__all__ = [
    "MoECost", "MoELayer", "MoEStats", "RouterOutput", "TopKRouter", "dense_ffn_flops_per_token",
    "expert_capacity", "load_balancing_loss", "moe_cost", "router_z_loss",
]
