"""Lesson 12 specification: the SFT loss is transformers' labels convention with the prompt masked and the
EOS kept; sequence log-probs ignore padding wherever it sits; LoRA equals peft's LoRA after copying A and B
(outputs and gradients), merges exactly and trains only A and B; the reward model reads each row's last
real token; the Bradley-Terry, DPO, KL, GAE and PPO formulas equal their closed forms, literal loops and
(where the installed trl still has them) trl's own code; bad input is refused."""

import pytest
import torch
import torch.nn.functional as F

from llmlab.finetuning_rlhf import (
    collate_prompts,
    collate_sft,
    mask_after_eos,
    response_mask,
    sequence_logprobs,
    sft_labels,
    sft_loss,
    token_logprobs,
)
from llmlab.kv_cache import generate
from llmlab.transformer_block import GPT, gpt2_config, llama_config, to_hf

V = 40  # vocabulary of the tiny test models; token 0 is EOS (and pad, where a test says so)
EOS = 0


def tiny_gpt(preset=gpt2_config, seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = dict(vocab_size=V, block_size=32, n_layer=2, n_head=2, d_model=32)
    return GPT(preset(**{**fields, **overrides})).eval()


def random_logits(B=3, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, V, generator=g), torch.randint(1, V, (B, T), generator=g)


# ------------------------------------------------------------------------------------------------ SFT
def test_sft_loss_is_cross_entropy_over_the_response_tokens_only():
    logits, ids = random_logits()
    prompt_lengths = [2, 5, 1]
    terms = [F.cross_entropy(logits[b, t - 1], ids[b, t], reduction="sum")
             for b, P in enumerate(prompt_lengths) for t in range(P, ids.shape[1])]
    torch.testing.assert_close(sft_loss(logits, ids, prompt_lengths), torch.stack(terms).mean())


@pytest.mark.parametrize("preset", [gpt2_config, llama_config])
def test_sft_loss_equals_transformers_loss_with_minus_100_labels(preset):
    model = tiny_gpt(preset)
    batch = collate_sft([([5, 6, 7], [8, 9]), ([3], [4, 5, 6, 7, 8]), ([9, 9, 9, 9], [])],
                        pad_id=EOS, eos_id=EOS)
    hf = to_hf(model).eval()
    with torch.no_grad():
        logits, _ = model(batch.ids)
        hf_loss = hf(batch.ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    loss = sft_loss(logits, batch.ids, batch.prompt_lengths, attention_mask=batch.attention_mask)
    torch.testing.assert_close(loss, hf_loss, rtol=1e-5, atol=1e-6)


def test_collate_with_pad_equal_to_eos_keeps_the_eos_label():
    batch = collate_sft([([1, 2, 3], [4, 5]), ([6], [7, 8, 9, 10])], pad_id=EOS, eos_id=EOS)
    assert batch.ids.tolist() == [[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 10, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert batch.labels.tolist() == [[-100, -100, -100, 4, 5, 0], [-100, 7, 8, 9, 10, 0]]
    assert batch.prompt_lengths.tolist() == [3, 1]
    short = collate_sft([([1, 2], [3]), ([1], [2, 3, 4, 5])], pad_id=EOS, eos_id=EOS)
    assert short.labels[0].tolist() == [-100, -100, 3, EOS, -100, -100]  # EOS scored, padding not
    # the classic bug: labels from `ids != pad_id` hide every EOS label when pad_id == eos_id
    buggy = short.ids.masked_fill(short.ids == EOS, -100)
    assert (buggy == EOS).sum() == 0 and (short.labels == EOS).sum() == 2


def test_sequence_logprobs_sum_and_mean_by_hand():
    logits, ids = random_logits()
    logp = torch.log_softmax(logits, -1)
    mask = torch.tensor([[1] * 9, [1] * 7 + [0] * 2, [1] * 9])
    P = [3, 2, 8]
    expected = [[logp[b, t - 1, ids[b, t]] for t in range(P[b], 9) if mask[b, t]] for b in range(3)]
    total = sequence_logprobs(logits, ids, P, attention_mask=mask)
    mean = sequence_logprobs(logits, ids, P, attention_mask=mask, average=True)
    torch.testing.assert_close(total, torch.stack([torch.stack(e).sum() for e in expected]))
    torch.testing.assert_close(mean, torch.stack([torch.stack(e).mean() for e in expected]))
    torch.testing.assert_close(token_logprobs(logits, ids), logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0])


def test_sequence_logprobs_ignore_padding_left_or_right():
    model = tiny_gpt(llama_config)
    pairs = [([5, 6, 7], [8, 9, 10]), ([3], [4]), ([11, 12], [13, 14, 15, 16])]
    alone = []
    for prompt, response in pairs:
        ids = torch.tensor([prompt + response])
        alone.append(sequence_logprobs(model(ids)[0], ids, [len(prompt)])[0])
    right = collate_sft(pairs, pad_id=EOS)
    right_scores = sequence_logprobs(model(right.ids)[0], right.ids, right.prompt_lengths,
                                     attention_mask=right.attention_mask)
    other_pad = right.ids.masked_fill(right.attention_mask == 0, 17)  # the pad id does not matter
    torch.testing.assert_close(sequence_logprobs(model(other_pad)[0], other_pad, right.prompt_lengths,
                                                 attention_mask=right.attention_mask), right_scores)
    # left padding (a generated batch): prompts padded on the left, responses after column T_prompt
    prompt_ids, prompt_mask = collate_prompts([p for p, _ in pairs], pad_id=EOS)
    width = max(len(r) for _, r in pairs)
    responses = torch.tensor([r + [EOS] * (width - len(r)) for _, r in pairs])
    ids = torch.cat([prompt_ids, responses], dim=1)
    mask = torch.cat([prompt_mask, (responses != EOS).long()], dim=1)
    left_logits = model(ids, attention_mask=mask)[0]
    left_scores = sequence_logprobs(left_logits, ids, prompt_ids.shape[1], attention_mask=mask)
    torch.testing.assert_close(right_scores, torch.stack(alone), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(left_scores, torch.stack(alone), rtol=1e-5, atol=1e-5)


def test_left_padded_prompts_generate_what_each_prompt_generates_alone():
    model = tiny_gpt()
    prompts = [[5, 6, 7, 8], [3], [11, 12]]
    ids, mask = collate_prompts(prompts, pad_id=EOS)
    assert ids.tolist() == [[5, 6, 7, 8], [0, 0, 0, 3], [0, 0, 11, 12]]
    batched = generate(model, ids, 5, attention_mask=mask)[:, ids.shape[1]:]
    for b, prompt in enumerate(prompts):
        alone = generate(model, torch.tensor([prompt]), 5)[:, len(prompt):]
        assert batched[b].tolist() == alone[0].tolist()


def test_mask_after_eos_keeps_the_first_eos_and_nothing_after():
    tokens = torch.tensor([[4, EOS, 5, EOS], [4, 5, 6, 7], [EOS, 1, 2, 3]])
    assert mask_after_eos(tokens, EOS).tolist() == [[True, True, False, False], [True] * 4,
                                                    [True, False, False, False]]


def test_sft_gradient_reaches_no_prompt_logit():
    logits, ids = random_logits(B=2, T=6)
    logits.requires_grad_(True)
    sft_loss(logits, ids, [3, 4]).backward()
    assert logits.grad[0, :2].abs().sum() == 0 and logits.grad[1, :3].abs().sum() == 0
    assert logits.grad[0, 2:5].abs().sum() > 0 and logits.grad[:, -1].abs().sum() == 0  # last: no target


def test_sft_bad_input_names_the_argument():
    logits, ids = random_logits()
    with pytest.raises(ValueError, match="prompt_lengths"):
        sft_loss(logits, ids, [0, 1, 1])  # the first token has nothing before it
    with pytest.raises(ValueError, match="prompt_lengths"):
        sft_loss(logits, ids, [1, 2])
    with pytest.raises(ValueError, match="prompt_lengths"):
        sequence_logprobs(logits, ids, 10)
    with pytest.raises(TypeError, match="prompt_lengths"):
        response_mask(ids, 2.0)
    with pytest.raises(ValueError, match="attention_mask"):
        sft_loss(logits, ids, 1, attention_mask=torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        sft_labels(ids, 1, torch.full((3, 9), 2))
    with pytest.raises(TypeError, match="logits"):
        sft_loss(ids, ids, 1)
    with pytest.raises(TypeError, match="average"):
        sequence_logprobs(logits, ids, 1, average=1)
    with pytest.raises(ValueError, match="prompt"):
        collate_sft([([], [1, 2])], pad_id=0)
    with pytest.raises(ValueError, match="max_length"):
        collate_sft([([1, 2, 3], [4, 5])], pad_id=0, eos_id=0, max_length=5)
    with pytest.raises(ValueError, match="examples"):
        collate_sft([], pad_id=0)
    with pytest.raises(TypeError, match="examples"):
        collate_sft([[1, 2, 3]], pad_id=0)
    with pytest.raises(TypeError, match="prompts"):
        collate_prompts([[1, -2]], pad_id=0)
    with pytest.raises(TypeError, match="pad_id"):
        collate_prompts([[1]], pad_id=None)
