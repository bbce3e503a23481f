"""Lesson 04: the transformer block and the lab GPT, the one model every later lesson uses.

config.py: GPTConfig and the presets; model.py: attention mask -> block -> GPT (the file to read);
hf.py: to_hf / from_hf; probes.py: trace (hooks), residual norms, attention maps, the logit lens.
"""

from llmlab.transformer_block.config import GPTConfig, gpt2_config, llama_config
from llmlab.transformer_block.hf import from_hf, to_hf
from llmlab.transformer_block.model import GPT, CausalSelfAttention, TransformerBlock, gpt_mha_to_gqa
from llmlab.transformer_block.probes import GPTTrace, attention_maps, logit_lens, residual_norms, trace

__all__ = [
    "GPT",
    "CausalSelfAttention",
    "GPTConfig",
    "GPTTrace",
    "TransformerBlock",
    "attention_maps",
    "from_hf",
    "gpt2_config",
    "gpt_mha_to_gqa",
    "llama_config",
    "logit_lens",
    "residual_norms",
    "to_hf",
    "trace",
]
