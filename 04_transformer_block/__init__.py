"""Lesson 04: the transformer block and the lab GPT, the one model every later lesson uses."""

from llmlab.transformer_block.transformer import (
    GPT,
    CausalSelfAttention,
    GPTConfig,
    GPTTrace,
    TransformerBlock,
    attention_maps,
    from_hf,
    gpt2_config,
    llama_config,
    logit_lens,
    residual_norms,
    to_hf,
)

__all__ = [
    "GPT",
    "CausalSelfAttention",
    "GPTConfig",
    "GPTTrace",
    "TransformerBlock",
    "attention_maps",
    "from_hf",
    "gpt2_config",
    "llama_config",
    "logit_lens",
    "residual_norms",
    "to_hf",
]
