"""Lesson 11: pretraining objectives — causal LM, masked LM (BERT's 80/10/10, whole-word masking),
prefix LM (T5's causal-with-prefix mask) and T5 span corruption, from scratch."""

from llmlab.pretraining_objectives.objectives import (
    IGNORE_INDEX,
    causal_lm_loss,
    mask_tokens,
    masked_lm_loss,
    prefix_lm_loss,
    prefix_lm_mask,
    span_corrupt,
    span_noise_mask,
    whole_word_mask,
)

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_loss",
    "mask_tokens",
    "masked_lm_loss",
    "prefix_lm_loss",
    "prefix_lm_mask",
    "span_corrupt",
    "span_noise_mask",
    "whole_word_mask",
]
