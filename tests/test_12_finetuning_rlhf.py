"""Lesson 12 specification: the SFT loss is transformers' labels convention with the prompt masked and the
EOS kept; sequence log-probs ignore padding wherever it sits; LoRA equals peft's LoRA after copying A and B
(outputs and gradients), merges exactly and trains only A and B; the reward model reads each row's last
real token; the Bradley-Terry, DPO, KL, GAE and PPO formulas equal their closed forms, literal loops and
(where the installed trl still has them) trl's own code; bad input is refused."""

import copy
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from llmlab.finetuning_rlhf import (
    LoRALinear,
    RewardModel,
    ValueHead,
    apply_lora,
    collate_prompts,
    collate_sft,
    disable_lora,
    dpo_loss,
    final_hidden,
    gae,
    kl_estimates,
    kl_penalized_rewards,
    last_token_index,
    mask_after_eos,
    masked_mean,
    masked_whiten,
    merge_lora,
    ppo_policy_loss,
    response_mask,
    reward_loss,
    sequence_logprobs,
    sft_labels,
    sft_loss,
    token_logprobs,
    value_loss,
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


# ----------------------------------------------------------------------------------------------- LoRA
LORA_TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


def lora_pair(r=4, alpha=8.0, targets=LORA_TARGETS):
    """The same tiny Llama-style GPT twice: our LoRA on one, peft's LoraModel on the other, with B random
    (non-zero, so the adapters matter) and A and B copied from ours into peft's."""
    peft = pytest.importorskip("peft")
    base = tiny_gpt(llama_config)
    ours = apply_lora(copy.deepcopy(base), r=r, alpha=alpha, target_modules=targets)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    theirs = peft.LoraModel(copy.deepcopy(base), config, "default")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, layer in ours.named_modules():
            if isinstance(layer, LoRALinear):
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)
                other = theirs.model.get_submodule(name)
                other.lora_A["default"].weight.copy_(layer.lora_A)
                other.lora_B["default"].weight.copy_(layer.lora_B)
    return base, ours, theirs


def test_lora_equals_peft_outputs_and_gradients():
    base, ours, theirs = lora_pair()
    ids = torch.randint(1, V, (2, 10))
    our_logits, our_loss = ours(ids, ids)
    their_logits, their_loss = theirs.model(ids, ids)
    torch.testing.assert_close(our_logits, their_logits, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(our_logits, base(ids)[0], atol=1e-3)  # the adapters change the output
    our_loss.backward()
    their_loss.backward()
    n = 0
    for name, layer in ours.named_modules():
        if isinstance(layer, LoRALinear):
            other = theirs.model.get_submodule(name)
            torch.testing.assert_close(layer.lora_A.grad, other.lora_A["default"].weight.grad, rtol=1e-4,
                                       atol=1e-6)
            torch.testing.assert_close(layer.lora_B.grad, other.lora_B["default"].weight.grad, rtol=1e-4,
                                       atol=1e-6)
            n += 1
    assert n == 2 * len(LORA_TARGETS)  # two layers


def test_lora_trains_only_a_and_b_with_peft_count():
    base, ours, theirs = lora_pair()
    trainable = {name: p.numel() for name, p in ours.named_parameters() if p.requires_grad}
    assert all(name.endswith(("lora_A", "lora_B")) for name in trainable)
    d, d_ff = 32, base.config.ffn_dim
    per_layer = 4 * (d + d) + 4 * (d + d) + 4 * (d + d) + 4 * (d_ff + d)  # r·(in + out), 4 targets
    assert sum(trainable.values()) == 2 * per_layer
    assert sum(trainable.values()) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert sum(p.numel() for p in ours.parameters()) == base.num_parameters() + 2 * per_layer


def test_lora_starts_at_the_base_model_and_init_matches_peft():
    base = tiny_gpt()
    ours = apply_lora(copy.deepcopy(base), r=8, alpha=16, target_modules=["q_proj", "v_proj"])
    ids = torch.randint(1, V, (2, 10))
    torch.testing.assert_close(ours(ids)[0], base(ids)[0])  # B = 0: exactly the pretrained function
    layer = ours.blocks[0].attn.q_proj
    assert isinstance(layer, LoRALinear) and layer.scaling == 2.0 and (layer.lora_B == 0).all()
    bound = 1 / math.sqrt(layer.in_features)  # kaiming_uniform(a=sqrt(5)) on (r, d_in)
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.std() > bound / 3
    assert apply_lora(tiny_gpt(), r=4, alpha=8, rslora=True).blocks[0].attn.v_proj.scaling == 4.0


@pytest.mark.parametrize("preset", [gpt2_config, llama_config])
def test_merged_lora_is_the_same_function(preset):
    targets = r".*\.(q_proj|up_proj)" + ("|lm_head" if preset is llama_config else "")  # GPT-2's is tied
    model = apply_lora(tiny_gpt(preset), r=4, alpha=8, target_modules=targets)
    for layer in model.modules():
        if isinstance(layer, LoRALinear):
            torch.nn.init.normal_(layer.lora_B, std=0.1)
    ids = torch.randint(1, V, (2, 10))
    with torch.no_grad():
        unmerged = model(ids)[0]
        with disable_lora(model):
            base_logits = model(ids)[0]
        unmerged_model = copy.deepcopy(model)  # generation (lesson 06's KV cache) runs through the adapters
        merged = merge_lora(model)
        assert not any(isinstance(m, LoRALinear) for m in merged.modules())
        torch.testing.assert_close(merged(ids)[0], unmerged, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(base_logits, unmerged, atol=1e-3)
        assert torch.equal(generate(merged, ids[:, :4], 6), generate(unmerged_model, ids[:, :4], 6))
        hf = to_hf(merged).eval()  # the plain architecture again
        torch.testing.assert_close(hf(ids).logits, unmerged, rtol=1e-4, atol=1e-4)


def test_lora_base_stays_frozen_through_training_steps():
    model = apply_lora(tiny_gpt(), r=2, alpha=4, target_modules=["q_proj", "v_proj", "up_proj"])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(1, V, (4, 12))
    losses = []
    for _ in range(5):
        loss = model(ids, ids)[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)


def test_lora_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="r must"):
        LoRALinear(torch.nn.Linear(4, 4), r=0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(torch.nn.Linear(4, 4), alpha=0)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(torch.nn.Linear(4, 4), dropout=1.0)
    with pytest.raises(TypeError, match="base"):
        LoRALinear(torch.nn.Conv1d(4, 4, 1))
    with pytest.raises(ValueError, match="match no module"):
        apply_lora(tiny_gpt(), target_modules=["c_attn"])
    with pytest.raises(TypeError, match="nn.Linear"):
        apply_lora(tiny_gpt(), target_modules=["attn"])
    with pytest.raises(TypeError, match="target_modules"):
        apply_lora(tiny_gpt(), target_modules=[])
    with pytest.raises(ValueError, match="tied"):
        apply_lora(tiny_gpt(gpt2_config), target_modules=["lm_head"])
    with pytest.raises(ValueError, match="already"):
        apply_lora(apply_lora(tiny_gpt()))


# -------------------------------------------------------------------------------------- reward model
def trl_stub(**attrs):
    """What trl's trainers read from `self` in compute_loss, without building a Trainer: eval mode (no token
    counting), an accelerator whose gathers are the identity, and a metrics store."""
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x,
                                  gather_for_metrics=lambda x: x)
    metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return SimpleNamespace(model=SimpleNamespace(training=False), accelerator=accelerator, _metrics=metrics,
                           _total_train_tokens=0, _tp_size=1, **attrs)


def checked_trl():
    trl = pytest.importorskip("trl", reason="trl is an optional reference (pip install trl==1.16.0)")
    if trl.__version__ != "1.16.0":
        pytest.skip(f"the stubbed trainer internals were read from trl 1.16.0, found {trl.__version__}")
    return trl


def test_reward_loss_is_bradley_terry_with_margin():
    g = torch.Generator().manual_seed(0)
    chosen, rejected, margin = torch.randn(3, 16, generator=g).unbind(0)
    d = chosen - rejected
    torch.testing.assert_close(reward_loss(chosen, rejected), torch.log1p(torch.exp(-d)).mean())
    torch.testing.assert_close(reward_loss(chosen, rejected, margin=margin),
                               torch.log1p(torch.exp(-(d - margin))).mean())
    torch.testing.assert_close(reward_loss(chosen, rejected, margin=0.5),
                               torch.log1p(torch.exp(-(d - 0.5))).mean())
    torch.testing.assert_close(reward_loss(chosen + 7.0, rejected + 7.0), reward_loss(chosen, rejected))
    big = reward_loss(torch.tensor([-500.0, 500.0]), torch.tensor([500.0, -500.0]))  # no overflow
    torch.testing.assert_close(big, torch.tensor(500.0))
    c = chosen.clone().requires_grad_(True)
    reward_loss(c, rejected).backward()  # dL/dr_c = -σ(-(r_c - r_r)) / B
    torch.testing.assert_close(c.grad, -torch.sigmoid(-d) / 16)


def test_reward_loss_equals_trls_reward_trainer():
    trl = checked_trl()
    g = torch.Generator().manual_seed(0)
    chosen, rejected, margin = torch.randn(3, 8, generator=g).unbind(0)

    def model(**inputs):  # trl feeds [chosen; rejected] as one batch and splits the logits in two
        return SimpleNamespace(logits=torch.cat([chosen, rejected])[:, None])

    stub = trl_stub(args=SimpleNamespace(center_rewards_coefficient=None))
    inputs = {"input_ids": torch.zeros(16, 3, dtype=torch.long)}
    theirs = trl.RewardTrainer.compute_loss(stub, model, dict(inputs))
    theirs_margin = trl.RewardTrainer.compute_loss(stub, model, {**inputs, "margin": margin})
    torch.testing.assert_close(reward_loss(chosen, rejected), theirs)
    torch.testing.assert_close(reward_loss(chosen, rejected, margin=margin), theirs_margin)


def test_reward_is_read_at_the_last_real_token_whatever_the_padding():
    rm = RewardModel(tiny_gpt(llama_config)).eval()
    rows = [[5, 6, 7, 8, 9], [3, 4], [11, 12, 13]]
    with torch.no_grad():
        alone = torch.stack([rm(torch.tensor([row]))[0] for row in rows])
        T = 5
        right = torch.tensor([row + [EOS] * (T - len(row)) for row in rows])
        right_mask = torch.tensor([[1] * len(row) + [0] * (T - len(row)) for row in rows])
        left, left_mask = collate_prompts(rows, pad_id=EOS)
        torch.testing.assert_close(rm(right, right_mask), alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rm(left, left_mask), alone, rtol=1e-5, atol=1e-5)
        junk = right.masked_fill(right_mask == 0, 17)  # whatever sits in the padding
        torch.testing.assert_close(rm(junk, right_mask), alone, rtol=1e-5, atol=1e-5)
        per_token = rm(right, right_mask, per_token=True)
        torch.testing.assert_close(per_token[torch.arange(3), torch.tensor([4, 1, 2])], rm(right, right_mask))
    assert last_token_index(right_mask).tolist() == [4, 1, 2]
    assert last_token_index(left_mask).tolist() == [4, 4, 4]


def test_reward_model_equals_transformers_sequence_classification():
    from transformers import LlamaForSequenceClassification

    rm = RewardModel(tiny_gpt(llama_config)).eval()
    causal = to_hf(rm.gpt)
    config = copy.deepcopy(causal.config)
    config.num_labels, config.pad_token_id = 1, 39  # a pad id that no row uses: transformers finds the
    hf = LlamaForSequenceClassification(config).eval()  # last token with ids != pad (the pad=EOS trap)
    hf.load_state_dict(causal.state_dict(), strict=False)
    with torch.no_grad():
        hf.score.weight.copy_(rm.score.weight)
        ids = torch.tensor([[5, 6, 7, 8, 9], [3, 4, 39, 39, 39], [11, 12, 13, 39, 39]])
        mask = (ids != 39).long()
        torch.testing.assert_close(rm(ids, mask), hf(ids, attention_mask=mask).logits[:, 0], rtol=1e-5,
                                   atol=1e-5)


def test_reward_bad_input_names_the_argument():
    rm = RewardModel(tiny_gpt())
    with pytest.raises(ValueError, match="rejected"):
        reward_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="chosen"):
        reward_loss(torch.zeros(3, dtype=torch.long), torch.zeros(3))
    with pytest.raises(ValueError, match="margin"):
        reward_loss(torch.zeros(3), torch.zeros(3), margin=torch.zeros(2))
    with pytest.raises(TypeError, match="margin"):
        reward_loss(torch.zeros(3), torch.zeros(3), margin="1")
    with pytest.raises(ValueError, match="attention_mask"):
        rm(torch.ones(2, 4, dtype=torch.long), torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="attention_mask"):
        rm(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="gpt"):
        RewardModel(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------ DPO
def logps(B=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (-10 * torch.rand(4, B, generator=g, dtype=torch.float64)).unbind(0)


def test_dpo_loss_is_equation_7_of_the_paper():
    pc, pr, rc, rr = logps()
    beta = 0.3
    h = (pc - rc) - (pr - rr)
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(loss, torch.log1p(torch.exp(-beta * h)).mean())
    torch.testing.assert_close(chosen_rewards, beta * (pc - rc))
    torch.testing.assert_close(rejected_rewards, beta * (pr - rr))
    eps = 0.2  # cDPO: the label is flipped with probability eps
    smoothed = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)[0]
    torch.testing.assert_close(smoothed, ((1 - eps) * torch.log1p(torch.exp(-beta * h))
                                          + eps * torch.log1p(torch.exp(beta * h))).mean())


def test_dpo_is_the_reward_loss_of_its_implicit_rewards_and_its_gradient_is_the_papers():
    pc, pr, rc, rr = logps()
    pc, pr = pc.clone().requires_grad_(True), pr.clone().requires_grad_(True)
    beta = 0.5
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=beta)
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad
    torch.testing.assert_close(loss, reward_loss(chosen_rewards, rejected_rewards))
    loss.backward()
    # Rafailov et al. §4: the gradient weighs each pair by σ(r_rejected − r_chosen), how wrong it is
    weight = torch.sigmoid(rejected_rewards - chosen_rewards)
    torch.testing.assert_close(pc.grad, -beta * weight / 8)
    torch.testing.assert_close(pr.grad, beta * weight / 8)
    at_reference = dpo_loss(rc, rr, rc, rr)[0]  # policy == reference: log 2 whatever beta
    torch.testing.assert_close(at_reference, torch.tensor(math.log(2), dtype=torch.float64))


def test_dpo_loss_equals_trls_dpo_trainer():
    """trl 1.16 has no standalone DPO loss (`DPOTrainer.dpo_loss` is gone and `trl.losses` is not released):
    its formula lives inside DPOTrainer._compute_loss, which is run here on a stub with precomputed
    reference log-probs and a model whose per-token log-probs sum to the test's sequence log-probs."""
    trl = checked_trl()
    pc, pr, rc, rr = (x.float() for x in logps())
    B, T, beta = 8, 5, 0.2
    per_token = torch.zeros(2 * B, T - 1)
    per_token[:, 0] = torch.cat([pc, pr])  # a sum over the completion == the sequence log-prob

    def model(**kwargs):
        zeros = torch.zeros(2 * B, T - 1)
        return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    stub = trl_stub(beta=beta, precompute_ref_logps=True, ld_alpha=None, f_divergence_type="reverse_kl",
                    loss_types=["sigmoid"], loss_weights=[1.0], aux_loss_enabled=False, label_smoothing=0.0,
                    use_weighting=False)
    inputs = {"input_ids": torch.zeros(2 * B, T, dtype=torch.long), "completion_mask": torch.ones(2 * B, T),
              "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    theirs = trl.DPOTrainer._compute_loss(stub, model, inputs, return_outputs=False)
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(loss, theirs)
    logged = stub._metrics["eval"]
    assert logged["rewards/chosen"][0] == pytest.approx(chosen_rewards.mean().item(), rel=1e-6)
    assert logged["rewards/rejected"][0] == pytest.approx(rejected_rewards.mean().item(), rel=1e-6)


def test_dpo_bad_input_names_the_argument():
    pc, pr, rc, rr = logps()
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, beta=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(pc, pr, rc, rr, label_smoothing=0.5)
    with pytest.raises(ValueError, match="ref_rejected_logps"):
        dpo_loss(pc, pr, rc, rr[:3])
    with pytest.raises(TypeError, match="policy_rejected_logps"):
        dpo_loss(pc, pr.long(), rc, rr)


# ------------------------------------------------------------------------------------------ KL and PPO
def two_categoricals(K=6, spread=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(K, generator=g, dtype=torch.float64)
    q = torch.log_softmax(logits, -1)  # the policy π (samples come from it)
    p = torch.log_softmax(logits + spread * torch.randn(K, generator=g, dtype=torch.float64), -1)  # π_ref
    return q, p, (q.exp() * (q - p)).sum()  # log π, log π_ref, exact KL(π ‖ π_ref)


def test_kl_estimates_are_schulmans_formulas():
    logp, ref = torch.randn(2, 5, 7, dtype=torch.float64).unbind(0)
    log_ratio = ref - logp
    k = kl_estimates(logp, ref)
    torch.testing.assert_close(k["k1"], -log_ratio)
    torch.testing.assert_close(k["k2"], log_ratio ** 2 / 2)
    torch.testing.assert_close(k["k3"], log_ratio.exp() - 1 - log_ratio)
    assert (k["k3"] >= 0).all() and (k["k2"] >= 0).all() and (k["k1"] < 0).any()


def test_k1_and_k3_are_unbiased_and_k2_is_not():
    q, p, exact = two_categoricals()
    k = kl_estimates(q, p)  # one entry per category: the expectation under π is exact
    torch.testing.assert_close((q.exp() * k["k1"]).sum(), exact)
    torch.testing.assert_close((q.exp() * k["k3"]).sum(), exact)
    assert abs((q.exp() * k["k2"]).sum() - exact) > 0.05 * exact  # biased when π and π_ref differ
    # Monte-Carlo: 200k samples from π, within 4 standard errors of the exact KL
    g = torch.Generator().manual_seed(1)
    x = torch.multinomial(q.exp(), 200_000, replacement=True, generator=g)
    samples = kl_estimates(q[x], p[x])
    for name in ("k1", "k3"):
        se = samples[name].std() / math.sqrt(x.numel())
        assert abs(samples[name].mean() - exact) < 4 * se, name
    # close distributions: k3 keeps the mean with far less variance than k1, and never goes negative
    q, p, exact = two_categoricals(spread=0.1)
    close = kl_estimates(q[x], p[x])
    assert close["k3"].var() < 0.1 * close["k1"].var() and (close["k1"] < 0).float().mean() > 0.2


def test_kl_penalized_rewards_put_the_score_on_the_last_response_token():
    g = torch.Generator().manual_seed(0)
    logp, ref = torch.randn(2, 3, 6, generator=g).unbind(0)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0]]).bool()
    scores = torch.tensor([2.0, -1.0, 0.5])
    for estimator in ("k1", "k3"):
        rewards = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.1, estimator=estimator)
        kl = kl_estimates(logp, ref)[estimator]
        for b in range(3):
            last = max(t for t in range(6) if mask[b, t])
            for t in range(6):
                expected = (-0.1 * kl[b, t] + (scores[b] if t == last else 0)) if mask[b, t] else 0.0
                assert rewards[b, t].item() == pytest.approx(float(expected), abs=1e-6)
    free = kl_penalized_rewards(scores, logp, ref, mask, kl_coef=0.0)
    assert free.sum(dim=1).tolist() == pytest.approx(scores.tolist())


def gae_by_hand(rewards, values, mask, gamma, lam):
    """The recursion, one row and one step at a time, on each row's response tokens alone."""
    advantages = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        steps = [t for t in range(rewards.shape[1]) if mask[b, t]]
        running = 0.0
        for i in reversed(range(len(steps))):
            t = steps[i]
            next_value = values[b, steps[i + 1]].item() if i + 1 < len(steps) else 0.0
            delta = rewards[b, t].item() + gamma * next_value - values[b, t].item()
            running = delta + gamma * lam * running
            advantages[b, t] = running
    return advantages


def test_gae_equals_the_recursion_and_its_closed_forms():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(2, 3, 7, generator=g, dtype=torch.float64).unbind(0)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [0, 0, 1, 1, 1, 0, 0]]).bool()
    for gamma, lam in ((1.0, 0.95), (0.9, 0.8), (0.99, 1.0), (1.0, 0.0)):
        advantages, returns = gae(rewards, values, mask, gamma=gamma, lam=lam)
        torch.testing.assert_close(advantages, gae_by_hand(rewards, values, mask, gamma, lam))
        torch.testing.assert_close(returns, torch.where(mask, advantages + values, 0.0))
    r, v = torch.where(mask, rewards, 0.0), torch.where(mask, values, 0.0)
    # lam = 1: the discounted sum of the rewards still to come, minus V (Monte Carlo)
    discount = 0.9 ** (torch.arange(7)[None, :] - torch.arange(7)[:, None]).clamp(min=0).double()
    to_go = (r[:, None, :] * discount * (torch.arange(7)[None, :] >= torch.arange(7)[:, None])).sum(-1)
    torch.testing.assert_close(gae(rewards, values, mask, gamma=0.9, lam=1.0)[0],
                               torch.where(mask, to_go - v, 0.0))
    # lam = 0: the one-step TD error r_t + γ V_{t+1} − V_t (V = 0 after the last token)
    next_v = torch.cat([v[:, 1:], torch.zeros(3, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(gae(rewards, values, mask, gamma=0.9, lam=0.0)[0],
                               torch.where(mask, r + 0.9 * next_v - v, 0.0))


def test_ppo_policy_loss_clips_in_the_direction_of_the_advantage():
    ratios = torch.tensor([[0.5, 0.9, 1.1, 1.5], [0.5, 0.9, 1.1, 1.5]])
    advantages = torch.tensor([[1.0] * 4, [-1.0] * 4])
    old = torch.full((2, 4), -2.0)
    logp = (old + ratios.log()).requires_grad_(True)
    mask = torch.ones(2, 4, dtype=torch.bool)
    loss, stats = ppo_policy_loss(logp, old, advantages, mask, clip_range=0.2, return_stats=True)
    per_token = torch.tensor([[-0.5, -0.9, -1.1, -1.2], [0.8, 0.9, 1.1, 1.5]])  # max(−A r, −A clip(r))
    torch.testing.assert_close(loss, per_token.mean())
    loss.backward()
    moving = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]]).bool()  # clipped tokens: no gradient
    assert (logp.grad[~moving] == 0).all() and (logp.grad[moving] != 0).all()
    torch.testing.assert_close(logp.grad[moving], (-advantages * ratios)[moving] / 8)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 8)
    # at the rollout policy: −mean advantage, only the masked tokens count
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool()
    g = torch.Generator().manual_seed(0)
    adv = torch.randn(2, 4, generator=g)
    torch.testing.assert_close(ppo_policy_loss(old, old, adv, mask), -adv[mask].mean())


def test_value_loss_is_trls_clipped_squared_error():
    g = torch.Generator().manual_seed(0)
    values, old, returns = torch.randn(3, 2, 5, generator=g).unbind(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    clipped = old + (values - old).clamp(-0.2, 0.2)
    expected = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)[mask].mean()
    torch.testing.assert_close(value_loss(values, old, returns, mask), expected)
    torch.testing.assert_close(value_loss(values, old, returns, mask, clip_range_value=None),
                               0.5 * ((values - returns) ** 2)[mask].mean())


def test_masked_whiten_and_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64) * 3 + 2
    mask = torch.rand(3, 6, generator=g) > 0.3
    w = masked_whiten(x, mask)
    torch.testing.assert_close(masked_mean(x, mask), x[mask].mean())
    torch.testing.assert_close(w[mask], (x[mask] - x[mask].mean()) / x[mask].std(), rtol=1e-6, atol=1e-6)
    assert (w[~mask] == 0).all()


def test_ppo_with_a_kl_penalty_finds_the_known_optimum_of_a_bandit():
    """One-token responses: the KL-regularised optimum is π*(a) ∝ π_ref(a) exp(r(a) / kl_coef) (the closed
    form DPO starts from). The pieces — k1-shaped rewards, GAE with a learned baseline, whitening, the
    clipped losses — must walk the policy there from π_ref."""
    g = torch.Generator().manual_seed(0)
    K, kl_coef, batch = 6, 0.5, 256
    ref_logits = torch.randn(K, generator=g)
    score = torch.randn(K, generator=g)
    target = torch.log_softmax(ref_logits + score / kl_coef, -1)  # log π*
    policy = ref_logits.clone().requires_grad_(True)
    baseline = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([policy, baseline], lr=0.05)
    mask = torch.ones(batch, 1, dtype=torch.bool)
    ref_logp = torch.log_softmax(ref_logits, -1)
    for _ in range(150):
        with torch.no_grad():  # rollout
            actions = torch.multinomial(torch.softmax(policy, -1), batch, replacement=True, generator=g)
            old_logp = torch.log_softmax(policy, -1)[actions][:, None]
            rewards = kl_penalized_rewards(score[actions], old_logp, ref_logp[actions][:, None], mask,
                                           kl_coef=kl_coef)
            old_values = baseline.expand(batch, 1).clone()
            advantages, returns = gae(rewards, old_values, mask)
            advantages = masked_whiten(advantages, mask)
        for _ in range(2):  # a few PPO epochs on the same rollout
            logp = torch.log_softmax(policy, -1)[actions][:, None]
            loss = ppo_policy_loss(logp, old_logp, advantages, mask) \
                + value_loss(baseline.expand(batch, 1), old_values, returns, mask, clip_range_value=None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    final = torch.log_softmax(policy.detach(), -1)
    kl_to_optimum = (final.exp() * (final - target)).sum()
    kl_from_start = (ref_logp.exp() * (ref_logp - target)).sum()
    assert kl_to_optimum < 0.02 and kl_to_optimum < kl_from_start / 10


def test_value_head_and_per_token_reward_model_give_one_value_per_token():
    gpt = tiny_gpt()
    ids = torch.randint(1, V, (2, 7))
    _, hidden = final_hidden(gpt, ids)
    head = ValueHead(32)
    assert head(hidden).shape == (2, 7)
    assert RewardModel(gpt)(ids, per_token=True).shape == (2, 7)
    with pytest.raises(ValueError, match="hidden"):
        head(torch.zeros(2, 7, 16))


def test_rl_bad_input_names_the_argument():
    x = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="ref_logprobs"):
        kl_estimates(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="estimator"):
        kl_penalized_rewards(torch.zeros(2), x, x, mask, kl_coef=0.1, estimator="k4")
    with pytest.raises(ValueError, match="kl_coef"):
        kl_penalized_rewards(torch.zeros(2), x, x, mask, kl_coef=-1)
    with pytest.raises(ValueError, match="scores"):
        kl_penalized_rewards(torch.zeros(3), x, x, mask, kl_coef=0.1)
    with pytest.raises(ValueError, match="mask"):
        kl_penalized_rewards(torch.zeros(2), x, x, torch.tensor([[1, 1, 1], [0, 0, 0]]).bool(), kl_coef=0.1)
    with pytest.raises(TypeError, match="mask"):
        gae(x, x, x)
    with pytest.raises(ValueError, match="lam"):
        gae(x, x, mask, lam=1.5)
    with pytest.raises(ValueError, match="values"):
        gae(x, torch.zeros(2, 2), mask)
    with pytest.raises(ValueError, match="clip_range"):
        ppo_policy_loss(x, x, x, mask, clip_range=0)
    with pytest.raises(ValueError, match="advantages"):
        ppo_policy_loss(x, x, torch.zeros(3), mask)
    with pytest.raises(ValueError, match="clip_range_value"):
        value_loss(x, x, x, mask, clip_range_value=-0.1)


# ------------------------------------------------------------------------------------------------
# the demo's data (data.py) and its own pieces (experiments.py)


def test_data_is_deterministic_and_answers_come_from_the_story():
    from llmlab.finetuning_rlhf import data as D

    a, b = D.make_examples(6, 3), D.make_examples(6, 3)
    assert a == b and len(a) == 6 * len(D.FAMILIES)
    assert [e.family for e in a[: len(D.FAMILIES)]] == list(D.FAMILIES)
    for e in a:
        if e.family in ("who", "thing", "other"):
            assert e.answer in e.context  # the answer is in the sentence asked about
        assert e.wrong != e.answer
        if e.family == "pronoun":
            assert e.answer in D.PRONOUNS
        if e.family == "kind":
            assert e.answer in ("girl", "boy")
    assert {e.family for e in D.make_examples(2, 0, D.HELD_IN)} == set(D.HELD_IN)
    assert not set(D.HELD_IN) & set(D.HELD_OUT)
    with pytest.raises(ValueError, match="families"):
        D.make_examples(2, 0, ("nope",))
    with pytest.raises(ValueError, match="n_per_family"):
        D.make_examples(0, 0)


def test_render_formats_and_preferences_and_true_quality():
    from llmlab.finetuning_rlhf import data as D

    e = D.make_examples(1, 0, ("who",))[0]
    for fmt in D.FORMATS:
        prompt, response = D.render(e, fmt)
        assert response == f" {e.answer}" and e.context in prompt
    assert D.render(e, "qa")[0].endswith("\nA:")
    assert D.render(e, "instruction")[0].startswith("### Instruction:")
    with pytest.raises(ValueError, match="fmt"):
        D.render(e, "chat")
    pairs = D.make_preferences(D.make_examples(2, 0, ("who", "thing")))
    assert [p[3] for p in pairs] == ["wrong", "rambling", "wrong", "rambling"]
    examples = D.make_examples(2, 0, ("who", "thing"))
    for (_, chosen, rejected, kind), ex in zip(pairs, examples):
        assert D.true_quality(chosen, ex) == 1.0
        assert D.true_quality(rejected, ex) == (0.0 if kind == "wrong" else 0.5)
    assert D.true_quality(" nothing", e) == 0.0


def test_sft_batch_fn_masks_prompt_and_the_pad_is_eos_bug_masks_the_eos():
    from llmlab.finetuning_rlhf import experiments as ex

    pairs = [([5, 6, 7], [8, 9]), ([5, 6], [8])]
    g = torch.Generator().manual_seed(0)
    x, y = ex.sft_batch_fn(pairs, 4, eos_id=3)(g)
    assert x.shape == y.shape and (y == 3).any()  # the EOS is a target
    assert not ((y == 5) | (y == 6) | (y == 7)).any()  # no prompt token is a target
    _, y_bug = ex.sft_batch_fn(pairs, 4, eos_id=3, pad_is_eos=True)(torch.Generator().manual_seed(0))
    assert not (y_bug == 3).any()  # the classic bug: the EOS label is gone
    _, y_all = ex.sft_batch_fn(pairs, 4, eos_id=3, prompt_mask=False)(torch.Generator().manual_seed(0))
    assert ((y_all == 6) | (y_all == 7)).any()


def test_spearman_and_lora_model_trainable_counts():
    from llmlab.finetuning_rlhf import experiments as ex

    assert ex.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert ex.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert ex.spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)
    assert math.isnan(ex.spearman([1, 1], [1, 2]))
    base = GPT(gpt2_config(vocab_size=64, block_size=16, n_layer=1, d_model=16, n_head=2))
    m1, m4 = ex.lora_model(base, 1), ex.lora_model(base, 4)
    assert ex.trainable(m4) == 4 * ex.trainable(m1) > 0
    assert all(p.requires_grad for p in base.parameters())  # the base was copied, not frozen


def test_demo_quick_with_break_flags(tmp_path):
    from llmlab.finetuning_rlhf import demo

    results = demo.main(["--quick", "--out", str(tmp_path), "--no-prompt-mask", "--pad-is-eos",
                         "--kl-coef", "0.5", "--beta", "0.5"])
    assert list(results["ppo"]["runs"]) == ["0.5"] and results["dpo"]["beta"] == 0.5
    assert results["config"]["pad_is_eos"] and results["config"]["no_mask"]
    assert (tmp_path / "results.json").exists() and len(list(tmp_path.glob("*.png"))) == 5
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--beta", "0"])
