"""Independent references shared by several lessons' tests (transformers' own code paths)."""

from types import SimpleNamespace

import torch
from transformers import MistralConfig
from transformers.masking_utils import create_sliding_window_causal_mask
from transformers.models.mistral.modeling_mistral import eager_attention_forward as mistral_eager_attention


def mistral_sliding_window_attention(q, k, v, window):
    """transformers' Mistral with `sliding_window=window`, eager, over the whole sequence: its own mask (from
    the config, by create_sliding_window_causal_mask) and its own attention (repeat_kv for grouped heads,
    float32 softmax). q: (B, H, T, D), k, v: (B, H_kv, T, D) -> (B, H, T, D)."""
    B, H, T, D = q.shape
    config = MistralConfig(hidden_size=H * D, num_attention_heads=H, num_key_value_heads=k.shape[1],
                           sliding_window=window, num_hidden_layers=1, attn_implementation="eager")
    mask = create_sliding_window_causal_mask(config=config, inputs_embeds=q.new_zeros(B, T, H * D),
                                             attention_mask=None, cache=None,
                                             position_ids=torch.arange(T)[None])  # (B, 1, T, T) additive
    module = SimpleNamespace(num_key_value_groups=H // k.shape[1], training=False)
    out, _ = mistral_eager_attention(module, q, k, v, mask, scaling=D ** -0.5)  # (B, T, H, D)
    return out.transpose(1, 2)
