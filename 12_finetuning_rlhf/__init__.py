"""Lesson 12: finetuning and RLHF — SFT with prompt masking, LoRA, a reward model, PPO's pieces (KL
estimators, KL-shaped rewards, GAE, the clipped losses) and DPO, on the lab GPT."""

from llmlab.finetuning_rlhf.dpo import dpo_loss
from llmlab.finetuning_rlhf.lora import LoRALinear, apply_lora, disable_lora, merge_lora
from llmlab.finetuning_rlhf.ppo import (
    KL_ESTIMATORS,
    ValueHead,
    gae,
    kl_estimates,
    kl_penalized_rewards,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    value_loss,
)
from llmlab.finetuning_rlhf.reward import RewardModel, final_hidden, last_token_index, reward_loss
from llmlab.finetuning_rlhf.sft import (
    SFTBatch,
    collate_prompts,
    collate_sft,
    mask_after_eos,
    response_mask,
    sequence_logprobs,
    sft_labels,
    sft_loss,
    token_logprobs,
)

__all__ = [
    "KL_ESTIMATORS",
    "LoRALinear",
    "RewardModel",
    "SFTBatch",
    "ValueHead",
    "apply_lora",
    "collate_prompts",
    "collate_sft",
    "disable_lora",
    "dpo_loss",
    "final_hidden",
    "gae",
    "kl_estimates",
    "kl_penalized_rewards",
    "last_token_index",
    "mask_after_eos",
    "masked_mean",
    "masked_whiten",
    "merge_lora",
    "ppo_policy_loss",
    "response_mask",
    "reward_loss",
    "sequence_logprobs",
    "sft_labels",
    "sft_loss",
    "token_logprobs",
    "value_loss",
]
