"""Lesson 04 specification: the lab GPT is GPT-2 and Llama exactly (same logits as transformers after a
weight copy, both ways), never looks at the future, gives the same logits with and without a KV cache,
learns, and says clearly which configurations it refuses."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from llmlab.kv_cache import generate  # lesson 06: generation lives outside the model
from llmlab.transformer_block import (
    GPT,
    CausalSelfAttention,
    GPTConfig,
    TransformerBlock,
    attention_maps,
    from_hf,
    gpt2_config,
    llama_config,
    logit_lens,
    residual_norms,
    to_hf,
    trace,
)
from llmlab.transformer_block.config import MODEL_VERSION, POSITIONS
from llmlab.transformer_block.model import make_attention

TINY = dict(vocab_size=61, block_size=16, n_layer=2, n_head=4, d_model=32)


def tiny(preset=gpt2_config, **overrides) -> GPTConfig:
    return preset(**{**TINY, **overrides})


def randomized(model: GPT, seed: int = 0) -> GPT:
    """Perturb every parameter, so norms (init 1) and biases (init 0) differ from any default and a
    conversion that forgets one of them is caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def token_ids(config: GPTConfig, B: int = 2, T: int | None = None, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (B, T or config.block_size), generator=g)


class ReferenceCache:
    """The smallest KV cache: per layer, append the new keys/values to the old ones along time."""

    def __init__(self):
        self.keys, self.values = {}, {}

    @property
    def length(self):  # tokens cached so far
        return self.keys[0].shape[2] if self.keys else 0

    def attended_length(self, T_new):  # keys the next T_new queries will see
        return self.length + T_new

    def update(self, layer_idx, k, v):
        if layer_idx in self.keys:
            k = torch.cat([self.keys[layer_idx], k], dim=2)  # (B, n_kv_head, T_past + T_new, head_dim)
            v = torch.cat([self.values[layer_idx], v], dim=2)
        self.keys[layer_idx], self.values[layer_idx] = k, v
        return k, v


# ----------------------------------------------------------------------------------------------------
# the same maths as transformers


GPT2_VARIANTS = [dict(), dict(tie_embeddings=False, activation="gelu"), dict(activation="relu", d_ff=48)]
LLAMA_VARIANTS = [dict(), dict(n_kv_head=2), dict(n_kv_head=1),
                  dict(n_kv_head=2, bias=True, tie_embeddings=True, activation="geglu", rope_base=500.0)]


@pytest.mark.parametrize("overrides", GPT2_VARIANTS)
def test_gpt2_config_logits_match_transformers_gpt2lmheadmodel(overrides):
    model = randomized(GPT(tiny(gpt2_config, **overrides)))
    hf = to_hf(model)
    assert isinstance(hf, GPT2LMHeadModel) and not hf.training
    idx = token_ids(model.config)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", LLAMA_VARIANTS)
def test_llama_config_logits_match_transformers_llamaforcausallm(overrides):
    model = randomized(GPT(tiny(llama_config, **overrides)))
    hf = to_hf(model)
    assert isinstance(hf, LlamaForCausalLM) and not hf.training
    assert hf.config.num_key_value_heads == model.config.kv_heads
    idx = token_ids(model.config)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)


ALL_VARIANTS = [(gpt2_config, o) for o in GPT2_VARIANTS] + [(llama_config, o) for o in LLAMA_VARIANTS]


@pytest.mark.parametrize("preset, overrides", ALL_VARIANTS)
def test_from_hf_of_to_hf_is_the_same_model(preset, overrides):
    model = randomized(GPT(tiny(preset, **overrides)))
    back = from_hf(to_hf(model))
    assert back.config == model.config
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    idx = token_ids(model.config)
    with torch.no_grad():
        assert torch.equal(model(idx)[0], back(idx)[0])


def test_from_hf_reads_models_built_by_transformers():
    common = dict(vocab_size=61, bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_positions=16, n_embd=32, n_layer=2, n_head=4, **common)).eval()
    llama = LlamaForCausalLM(LlamaConfig(
        hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=16, rope_theta=1000.0, **common,
    )).eval()
    idx = torch.randint(0, 61, (2, 16))
    for hf in (gpt2, llama):
        model = from_hf(hf)
        with torch.no_grad():
            torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)
    assert from_hf(llama).config.rope_base == 1000.0 and from_hf(llama).config.n_kv_head == 2


def test_parameter_counts_match_transformers():
    for config in (tiny(gpt2_config), tiny(llama_config, n_kv_head=2)):
        model = GPT(config)
        hf = to_hf(model)
        assert model.num_parameters() == hf.num_parameters()
        # transformers leaves out nn.Embedding tables; Kaplan's N also leaves out an untied output layer
        untied_head = 0 if config.tie_embeddings else config.vocab_size * config.d_model
        expected = hf.num_parameters(exclude_embeddings=True) - untied_head
        assert model.num_parameters(non_embedding=True) == expected


@pytest.mark.parametrize("overrides, field", [
    (dict(pos="alibi"), "pos"),
    (dict(prenorm=False), "prenorm"),
    (dict(residual=False), "residual"),
    (dict(n_kv_head=2), "n_kv_head"),
    (dict(bias=False), "bias"),
    (dict(activation="swiglu"), "activation"),
])
def test_to_hf_refuses_configs_neither_architecture_can_represent(overrides, field):
    with pytest.raises(ValueError, match=field):
        to_hf(GPT(tiny(gpt2_config, **overrides)))


def test_from_hf_refuses_what_the_lab_gpt_cannot_represent():
    config = GPT2Config(vocab_size=61, n_positions=16, n_embd=32, n_layer=1, n_head=4, bos_token_id=None,
                        eos_token_id=None, scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf(GPT2LMHeadModel(config))
    with pytest.raises(TypeError, match="hf_model"):
        from_hf(torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------------------------------
# properties of a causal language model


@pytest.mark.parametrize("pos", POSITIONS)
def test_changing_a_future_token_never_changes_past_logits(pos):
    model = randomized(GPT(tiny(pos=pos, kernels="lab")))
    idx = token_ids(model.config, B=1)
    with torch.no_grad():
        logits = model(idx)[0]
        for t in (0, 5, 15):
            changed = idx.clone()
            changed[0, t] = (idx[0, t] + 1) % model.config.vocab_size
            new = model(changed)[0]
            torch.testing.assert_close(new[:, :t], logits[:, :t], atol=1e-6, rtol=0)
            assert not torch.allclose(new[:, t], logits[:, t])  # the changed token itself matters


@pytest.mark.parametrize("kernels", ["lab", "torch"])
def test_without_the_causal_mask_past_logits_see_the_future(kernels):
    """causal=False (lesson 03's --no-mask ablation) really removes the mask, in both kernel paths."""
    model = randomized(GPT(tiny(causal=False, kernels=kernels)))
    idx = token_ids(model.config, B=1)
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % model.config.vocab_size
    with torch.no_grad():
        assert not torch.allclose(model(changed)[0][:, :10], model(idx)[0][:, :10])


@pytest.mark.parametrize("kernels", ["lab", "torch"])
def test_attn_scale_replaces_one_over_sqrt_head_dim(kernels):
    base = randomized(GPT(tiny(kernels=kernels)))
    same = GPT(dataclasses.replace(base.config, attn_scale=base.config.head_dim ** -0.5)).eval()
    other = GPT(dataclasses.replace(base.config, attn_scale=1.0)).eval()
    same.load_state_dict(base.state_dict())
    other.load_state_dict(base.state_dict())
    idx = token_ids(base.config)
    with torch.no_grad():
        torch.testing.assert_close(same(idx)[0], base(idx)[0], atol=1e-6, rtol=0)
        assert not torch.allclose(other(idx)[0], base(idx)[0], atol=1e-3)


def test_loss_is_the_cross_entropy_of_the_logits_ignoring_minus_100():
    model = randomized(GPT(tiny()))
    idx, targets = token_ids(model.config, seed=1), token_ids(model.config, seed=2)
    targets[0, :5] = -100
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    assert model(idx)[1] is None


@pytest.mark.parametrize("preset", [gpt2_config, llama_config])
def test_a_tiny_model_overfits_one_batch_and_every_parameter_learns(preset):
    model = GPT(tiny(preset, vocab_size=16, n_kv_head=2 if preset is llama_config else None))
    # every row a shift of one permutation: no token repeats and the first tokens differ, so every
    # prefix is distinguishable (a RoPE model cannot tell the context [a] from [a, a]: the values agree)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    idx = torch.stack([perm.roll(row) for row in range(4)])  # (4, 16)
    targets = token_ids(model.config, B=4, seed=4)  # random next tokens: pure memorisation
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for step in range(100):
        _, loss = model(idx, targets)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            first = loss.item()
            no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert no_grad == []
        optimizer.step()
    assert first > math.log(16) - 0.5  # starts near chance
    assert loss.item() < 0.05


@pytest.mark.parametrize("preset, overrides", [
    (gpt2_config, {}),
    (llama_config, {}),
    (llama_config, dict(n_kv_head=1)),
    (llama_config, dict(n_kv_head=2, kernels="lab")),
    (gpt2_config, dict(pos="alibi", n_kv_head=2)),
    (gpt2_config, dict(pos="sinusoidal", prenorm=False)),
])
def test_cached_logits_equal_uncached_logits(preset, overrides):
    model = randomized(GPT(tiny(preset, **overrides)))
    config = model.config
    idx = token_ids(config)
    cache = ReferenceCache()
    with torch.no_grad():
        full = model(idx)[0]
        # prefill 7 tokens, then a chunk of 2 (several new queries against cached keys), then one at a time
        pieces, start = [], 0
        for end in [7, 9, *range(10, config.block_size + 1)]:
            positions = torch.arange(start, end)
            pieces.append(model(idx[:, start:end], positions=positions, kv_cache=cache)[0])
            start = end
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    assert cache.keys[0].shape == (2, config.kv_heads, config.block_size, config.head_dim)


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("n_kv_head", [None, 2])
@pytest.mark.parametrize("norm, activation", [("layernorm", "gelu_tanh"), ("rmsnorm", "swiglu"),
                                              ("layernorm", "geglu"), ("rmsnorm", "relu")])
def test_torch_kernels_equal_the_lab_code(pos, n_kv_head, norm, activation):
    lab = randomized(GPT(tiny(pos=pos, n_kv_head=n_kv_head, norm=norm, activation=activation,
                              kernels="lab")))
    fast = GPT(dataclasses.replace(lab.config, kernels="torch")).eval()
    fast.load_state_dict(lab.state_dict())
    idx = token_ids(lab.config)
    with torch.no_grad():
        torch.testing.assert_close(fast(idx)[0], lab(idx)[0], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------
# the block's variants and the context-length rule


@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_block_computes_its_equation(prenorm, residual):
    config = tiny(prenorm=prenorm, residual=residual)
    block = TransformerBlock(config, layer_idx=0).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 8, config.d_model)
    attn = lambda h: block.attn(h)[0]
    with torch.no_grad():
        if prenorm and residual:
            h = x + attn(block.norm1(x))
            expected = h + block.ffn(block.norm2(h))
        elif prenorm:
            expected = block.ffn(block.norm2(attn(block.norm1(x))))
        elif residual:
            h = block.norm1(x + attn(x))
            expected = block.norm2(h + block.ffn(h))
        else:
            expected = block.norm2(block.ffn(block.norm1(attn(x))))
        torch.testing.assert_close(block(x)[0], expected)


@pytest.mark.parametrize("overrides", [
    dict(prenorm=False),
    dict(residual=False),
    dict(prenorm=False, residual=False, norm="rmsnorm"),
    dict(norm="none"),
])
def test_post_norm_no_residual_and_no_norm_variants_train(overrides):
    model = GPT(tiny(**overrides))
    idx = token_ids(model.config)
    logits, loss = model(idx, idx)
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_post_norm_keeps_every_block_output_at_norm_sqrt_d():
    # LayerNorm with weight 1, bias 0 outputs vectors of mean 0 and variance 1, so of length sqrt(d)
    model = GPT(tiny(prenorm=False))
    assert isinstance(model.norm_f, torch.nn.Identity)  # the last block already ends in a norm
    norms = residual_norms(model, token_ids(model.config))
    expected = torch.full((model.config.n_layer,), math.sqrt(model.config.d_model))
    torch.testing.assert_close(norms[1:], expected, atol=1e-3, rtol=0)


def test_learned_positions_refuse_sequences_longer_than_block_size():
    model = GPT(tiny())
    idx = token_ids(model.config, T=17)
    for allow_longer in (False, True):
        with pytest.raises(ValueError, match="block_size"):
            model(idx, allow_longer=allow_longer)


@pytest.mark.parametrize("pos", ["sinusoidal", "rope", "alibi", "none"])
def test_other_encodings_run_past_block_size_only_on_request(pos):
    model = randomized(GPT(tiny(pos=pos)))
    idx = token_ids(model.config, T=4 * 16)
    with pytest.raises(ValueError, match="block_size"):
        model(idx)
    with torch.no_grad():
        long_logits = model(idx, allow_longer=True)[0]
        # the first block_size positions do not depend on what follows
        torch.testing.assert_close(long_logits[:, :16], model(idx[:, :16])[0], atol=1e-5, rtol=0)


def test_generate_appends_tokens_greedily_and_refuses_to_run_past_block_size():
    """The model has no sampler: lesson 06's generate, here recomputing the whole context each step."""
    model = randomized(GPT(tiny()))
    prompt = token_ids(model.config, B=2, T=10)
    out = generate(model, prompt, 6, use_cache=False, temperature=0)
    assert out.shape == (2, 16) and torch.equal(out[:, :10], prompt)
    with torch.no_grad():
        for t in (10, 15):
            assert torch.equal(out[:, t], model(out[:, :t])[0][:, -1].argmax(-1))
    with pytest.raises(ValueError, match="block_size"):  # never a silent truncation of the context
        generate(model, prompt, 20, use_cache=False)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = generate(model, prompt, 5, use_cache=False, temperature=1.0, top_k=3, generator=g1)
    assert torch.equal(a, generate(model, prompt, 5, use_cache=False, temperature=1.0, top_k=3, generator=g2))


def test_generate_with_top_k_samples_only_the_k_most_likely_tokens():
    model = randomized(GPT(tiny()))
    prompt = token_ids(model.config, B=1, T=8).expand(200, 8)
    with torch.no_grad():
        top3 = set(model(prompt[:1])[0][0, -1].topk(3).indices.tolist())
    sampled = generate(model, prompt, 1, use_cache=False, temperature=1.0, top_k=3,
                       generator=torch.Generator().manual_seed(0))[:, -1]
    assert set(sampled.tolist()) <= top3 and len(set(sampled.tolist())) > 1


# ----------------------------------------------------------------------------------------------------
# construction: init, tying, GQA shapes, dropout


def test_gpt2_init_is_002_with_residual_projections_scaled_by_one_over_sqrt_two_n_layer():
    model = GPT(gpt2_config(n_layer=8, init="gpt2"))
    for name, p in model.named_parameters():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            assert p.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1), name
        elif name.endswith(("q_proj.weight", "up_proj.weight", "tok_emb.weight")):
            assert p.std().item() == pytest.approx(0.02, rel=0.1), name
    assert model.lm_head.weight is model.tok_emb.weight
    assert GPT(llama_config()).lm_head.weight is not GPT(llama_config()).tok_emb.weight


@pytest.mark.parametrize("preset", [gpt2_config, llama_config])
def test_fan_in_init_keeps_unit_variance_through_every_layer_whatever_the_width(preset):
    model = GPT(preset(n_layer=8, d_model=256, n_head=4, n_experts=0))
    assert model.config.init == "fan_in"
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        fan_in = p.shape[1] if "emb" not in name else model.config.d_model
        depth = 1 / math.sqrt(16) if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
        assert p.std().item() == pytest.approx(fan_in ** -0.5 * depth, rel=0.1), name
    with torch.no_grad():  # tied logits of normalised inputs start at unit variance
        logits = torch.randn(4096, 256) @ GPT(gpt2_config(d_model=256)).tok_emb.weight.T
        assert logits.std().item() == pytest.approx(1.0, rel=0.05)


def test_sinusoidal_positions_scale_the_token_embeddings_by_sqrt_d_model():
    config = gpt2_config(pos="sinusoidal", d_model=64, n_head=4)
    assert config.embedding_scale == 8.0 and gpt2_config().embedding_scale == 1.0
    assert gpt2_config(scale_embeddings=True).embedding_scale == math.sqrt(128)  # d_model 128
    model = GPT(config).eval()
    unscaled = GPT(dataclasses.replace(config, scale_embeddings=False)).eval()
    unscaled.load_state_dict(model.state_dict())
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        scaled_in = trace(model, idx)[1].hidden[0]
        plain_in = trace(unscaled, idx)[1].hidden[0]
        table = model.pos_table[:16]
    torch.testing.assert_close(scaled_in - table, 8.0 * (plain_in - table))


def test_grouped_kv_heads_shrink_the_key_value_projections():
    config = tiny(llama_config, n_kv_head=2)
    attn = make_attention(config)
    assert isinstance(attn, CausalSelfAttention)  # lesson 09's GroupedQueryAttention
    assert attn.q_proj.out_features == 4 * config.head_dim
    assert attn.k_proj.out_features == attn.v_proj.out_features == 2 * config.head_dim


def test_dropout_is_random_in_training_and_off_in_eval():
    model = GPT(tiny(dropout=0.2))
    idx = token_ids(model.config)
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


def test_config_resolves_none_defaults_from_the_current_fields():
    config = gpt2_config(d_model=64)
    assert config.ffn_dim == 256 and config.kv_heads == config.n_head and config.head_dim == 16
    assert dataclasses.replace(config, d_model=128).ffn_dim == 512
    assert llama_config(d_model=96).ffn_dim == 256  # 2/3 of 4·96, a multiple of 8: SwiGLU at equal parameters


# ----------------------------------------------------------------------------------------------------
# analysis tools


def test_analysis_tools_shapes_and_the_logit_lens_ends_at_the_logits():
    model = randomized(GPT(tiny(n_layer=3)))
    model.train()  # the tools switch dropout off themselves and restore the mode
    idx = token_ids(model.config, B=2, T=12)
    lens = logit_lens(model, idx)
    assert lens.shape == (4, 2, 12, 61) and model.training
    model.eval()
    with torch.no_grad():
        logits = model(idx)[0]
        embedded = model.tok_emb(idx) + model.pos_emb(torch.arange(12))
    torch.testing.assert_close(lens[-1], logits)
    norms = residual_norms(model, idx)
    assert norms.shape == (4,)
    torch.testing.assert_close(norms[0], embedded.norm(dim=-1).mean())
    # the residual stream, block by block, computed here without the tools
    with torch.no_grad():
        x, streams = embedded, [embedded]
        for block in model.blocks:
            x = block(x)[0]
            streams.append(x)
    for layer, stream in enumerate(streams):
        torch.testing.assert_close(norms[layer], stream.norm(dim=-1).mean())
        torch.testing.assert_close(lens[layer], model.lm_head(model.norm_f(stream)))
    maps = attention_maps(model, idx)
    assert len(maps) == 3 and all(m.shape == (2, 4, 12, 12) for m in maps)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 4, 12))
        assert (m.triu(diagonal=1) == 0).all()  # nobody attends to the future


# ----------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("field, value, error", [
    ("vocab_size", 0, ValueError),
    ("block_size", 2.5, TypeError),
    ("n_layer", -1, ValueError),
    ("n_head", 3, ValueError),  # 32 channels do not split into 3 heads
    ("n_kv_head", 3, ValueError),  # 4 query heads do not split into 3 groups
    ("d_ff", 0, ValueError),
    ("norm", "batchnorm", ValueError),
    ("norm_eps", 0.0, ValueError),
    ("activation", "tanh", ValueError),
    ("pos", "relative", ValueError),
    ("rope_base", -1.0, ValueError),
    ("prenorm", 1, TypeError),
    ("dropout", 1.0, ValueError),
    ("kernels", "flash", ValueError),
    ("tie_embeddings", "yes", TypeError),
    ("causal", "yes", TypeError),
    ("attn_scale", 0.0, ValueError),
])
def test_bad_config_values_raise_naming_the_field(field, value, error):
    with pytest.raises(error, match=field):
        tiny(**{field: value})


def test_rope_needs_an_even_head_dim():
    with pytest.raises(ValueError, match="head_dim"):
        tiny(llama_config, d_model=36, n_head=4)


def test_bad_forward_arguments_raise_naming_the_argument():
    model = GPT(tiny())
    idx = token_ids(model.config)
    with pytest.raises(TypeError, match="idx"):
        model(idx.float())
    with pytest.raises(ValueError, match="idx"):
        model(idx[0])
    with pytest.raises(ValueError, match="vocab_size"):
        model(idx + 100)
    with pytest.raises(ValueError, match="targets"):
        model(idx, idx[:, :-1])
    with pytest.raises(ValueError, match="positions"):
        model(idx, positions=torch.arange(3))
    with pytest.raises(ValueError, match="attention_mask"):
        model(idx, attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="attn_mask"):
        model(idx, attn_mask=torch.ones(16, 16))  # float, not bool
    with pytest.raises(ValueError, match="attn_mask"):
        model(idx[:, :4], attn_mask=torch.ones(4, 4, dtype=torch.bool), kv_cache=ReferenceCache())
    with pytest.raises(TypeError, match="validate"):
        model(idx, validate=1)
    with pytest.raises(TypeError, match="kv_cache"):
        model(idx, positions=torch.arange(16), kv_cache=object())
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, idx[:, :4], -1)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, idx[:, :4], 1, temperature=-1.0)
    with pytest.raises(TypeError, match="model"):
        residual_norms(torch.nn.Linear(2, 2), idx)
    with pytest.raises(TypeError, match="config"):
        GPT({"vocab_size": 10})


def test_n_experts_swaps_the_ffn_for_lesson_08s_moe_layer_and_to_hf_refuses_it():
    from llmlab.moe import MoELayer

    dense = GPT(llama_config(vocab_size=32, block_size=8, n_layer=2, n_head=2, d_model=16))
    assert dense.config.n_experts == 0 and not any(isinstance(b.ffn, MoELayer) for b in dense.blocks)
    moe = GPT(llama_config(vocab_size=32, block_size=8, n_layer=2, n_head=2, d_model=16, n_experts=3,
                           moe_top_k=1, moe_capacity_factor=1.5))
    for block in moe.blocks:
        assert isinstance(block.ffn, MoELayer)
        assert (block.ffn.n_experts, block.ffn.top_k, block.ffn.capacity_factor) == (3, 1, 1.5)
        assert block.ffn.d_ff == moe.config.ffn_dim  # each expert is as wide as the dense FFN
    moe.train()
    _, loss = moe(torch.randint(0, 32, (2, 8)), torch.randint(0, 32, (2, 8)))
    assert loss.dim() == 0 and moe.moe_aux_loss() > 0 and float(dense.moe_aux_loss()) == 0.0
    with pytest.raises(ValueError, match="n_experts"):
        to_hf(moe)
    with pytest.raises(ValueError, match="moe_top_k"):
        GPTConfig(n_experts=2, moe_top_k=3)


def test_cache_key_names_only_the_fields_that_differ_from_the_defaults():
    assert GPTConfig().cache_key() == {"model_version": MODEL_VERSION}
    key = llama_config(n_layer=2).cache_key()
    assert key["n_layer"] == 2 and key["norm"] == "rmsnorm" and "dropout" not in key
    assert gpt2_config(n_kv_head=2).cache_key() != gpt2_config().cache_key()


# ----------------------------------------------------------------------------------------------------
# left padding, custom masks, sliding windows, half precision


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("kernels", ["lab", "torch"])
def test_a_left_padded_batch_computes_what_each_row_computes_alone(pos, kernels):
    preset = llama_config if pos == "rope" else gpt2_config
    model = randomized(GPT(tiny(preset, pos=pos, kernels=kernels))).eval()
    lengths = [16, 9, 3]  # real tokens per row; the rest is left padding
    rows = [token_ids(model.config, B=1, T=n, seed=10 + n) for n in lengths]
    idx = torch.zeros(len(rows), 16, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), 16, dtype=torch.long)
    for b, row in enumerate(rows):
        idx[b, 16 - row.shape[1]:] = row[0]
        attention_mask[b, 16 - row.shape[1]:] = 1
    with torch.no_grad():
        batched = model(idx, attention_mask=attention_mask)[0]  # (3, 16, vocab)
        for b, row in enumerate(rows):
            alone = model(row)[0][0]  # (n, vocab)
            torch.testing.assert_close(batched[b, 16 - row.shape[1]:], alone, atol=1e-5, rtol=1e-5)
        assert torch.isfinite(batched).all()  # padded queries see themselves: no NaN rows


def test_attn_mask_replaces_the_causal_mask():
    model = randomized(GPT(tiny(llama_config))).eval()
    idx = token_ids(model.config)
    T = idx.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    with torch.no_grad():
        torch.testing.assert_close(model(idx, attn_mask=causal)[0], model(idx)[0])
        prefix = causal.clone()
        prefix[:, :5] = True  # a prefix LM: the first 5 tokens see each other
        out = model(idx, attn_mask=prefix)[0]
        changed = idx.clone()
        changed[:, 4] = (changed[:, 4] + 1) % model.config.vocab_size
        moved = model(changed, attn_mask=prefix)[0]
        changed_suffix = idx.clone()
        changed_suffix[:, 9] = (changed_suffix[:, 9] + 1) % model.config.vocab_size
        after = model(changed_suffix, attn_mask=prefix)[0]
    assert not torch.allclose(moved[:, 0], out[:, 0])  # a prefix token changes an earlier prefix position
    torch.testing.assert_close(after[:, :9], out[:, :9])  # a suffix token never changes an earlier one


@pytest.mark.parametrize("pos", ["rope", "alibi", "learned"])
def test_the_sliding_window_field_equals_a_banded_attn_mask(pos):
    model = randomized(GPT(tiny(pos=pos))).eval()
    windowed = GPT(dataclasses.replace(model.config, sliding_window=4)).eval()
    windowed.load_state_dict(model.state_dict())
    idx = token_ids(model.config)
    T = idx.shape[1]
    band = torch.ones(T, T, dtype=torch.bool).tril() & ~torch.ones(T, T, dtype=torch.bool).tril(-4)
    with torch.no_grad():
        torch.testing.assert_close(windowed(idx)[0], model(idx, attn_mask=band)[0])
        assert not torch.allclose(windowed(idx)[0], model(idx)[0])
    with pytest.raises(ValueError, match="sliding_window"):
        tiny(sliding_window=0)
    with pytest.raises(ValueError, match="causal"):
        tiny(sliding_window=4, causal=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpt_generate_on_a_half_precision_model_at_tiny_temperature_is_greedy(dtype):
    model = randomized(GPT(tiny(llama_config)))
    prompt = token_ids(model.config, B=2, T=4)
    greedy = generate(model.to(dtype), prompt, 6, use_cache=False, temperature=0)
    tiny_t = generate(model, prompt, 6, use_cache=False, temperature=1e-4,
                      generator=torch.Generator().manual_seed(0))
    assert torch.equal(tiny_t, greedy)


def test_trace_records_the_stream_through_hooks_and_leaves_none_behind():
    model = GPT(gpt2_config(**TINY)).eval()
    idx = torch.randint(0, 61, (2, 10))
    logits, recorded = trace(model, idx, attn=True)
    torch.testing.assert_close(logits, model(idx)[0])
    assert len(recorded.hidden) == 3 and len(recorded.attn) == 2
    # after the embeddings: token + learned position vectors; the last stream is what norm_f reads
    torch.testing.assert_close(recorded.hidden[0], model.tok_emb(idx) + model.pos_emb.weight[:10])
    torch.testing.assert_close(model.lm_head(model.norm_f(recorded.hidden[-1])), logits)
    assert recorded.attn[0].shape == (2, 4, 10, 10)
    torch.testing.assert_close(recorded.attn[1].sum(-1), torch.ones(2, 4, 10))
    assert not trace(model, idx)[1].attn  # weights only on request
    hooks = lambda: sum(len(b._forward_hooks) + len(b._forward_pre_hooks) for b in model.blocks)  # noqa: E731
    assert hooks() == 0
    with pytest.raises(ValueError, match="idx holds token id 99"):
        trace(model, torch.full((1, 4), 99))
    assert hooks() == 0  # removed when the forward raises too
    # gradients flow through the recorded stream (lesson 12's reward head reads it)
    model.train()
    _, recorded = trace(model, idx)
    recorded.hidden[-1].sum().backward()
    assert model.tok_emb.weight.grad is not None and model.tok_emb.weight.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="model must be a GPT"):
        trace(torch.nn.Linear(2, 2), idx)
    with pytest.raises(TypeError, match="attn must be a bool"):
        trace(model, idx, attn=1)
