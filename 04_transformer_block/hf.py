"""Conversion between the lab GPT and transformers' GPT2LMHeadModel / LlamaForCausalLM, with identical
logits both ways (the tests prove it): a map of every parameter name, and the configs that each
architecture can represent (the rest raises naming the fields)."""

from __future__ import annotations

import dataclasses

import torch

from llmlab.transformer_block.config import GPTConfig, gpt2_config, llama_config
from llmlab.transformer_block.model import GPT

__all__ = ["from_hf", "to_hf"]


# what each transformers architecture fixes, as (field, required value); the rest maps onto its config
_GPT2_NEEDS = (("norm", "layernorm"), ("pos", "learned"), ("prenorm", True), ("residual", True),
               ("bias", True), ("n_kv_head == n_head", True), ("causal", True), ("attn_scale", None),
               ("n_experts", 0))
_LLAMA_NEEDS = (("norm", "rmsnorm"), ("pos", "rope"), ("prenorm", True), ("residual", True),
                ("causal", True), ("attn_scale", None), ("n_experts", 0))
_GPT2_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}
_LLAMA_ACT = {"swiglu": "silu", "geglu": "gelu"}  # Llama's MLP is gated: act(gate_proj(x)) * up_proj(x)


def _field(config: GPTConfig, field: str) -> object:
    return config.kv_heads == config.n_head if field == "n_kv_head == n_head" else getattr(config, field)


def _mismatches(config: GPTConfig, needs: tuple, activations: dict) -> list[str]:
    bad = [f"{f}={v!r} (got {_field(config, f)!r})" for f, v in needs if _field(config, f) != v]
    if config.activation not in activations:
        bad.append(f"activation in {sorted(activations)} (got {config.activation!r})")
    return bad


def _architecture(config: GPTConfig) -> str:
    """'gpt2' or 'llama': the transformers architecture that represents this config exactly."""
    gpt2_bad = _mismatches(config, _GPT2_NEEDS, _GPT2_ACT)
    llama_bad = _mismatches(config, _LLAMA_NEEDS, _LLAMA_ACT)
    if not gpt2_bad:
        return "gpt2"
    if not llama_bad:
        return "llama"
    raise ValueError(
        "config cannot be represented by transformers' GPT-2 or Llama: GPT-2 needs "
        + ", ".join(gpt2_bad) + "; Llama needs " + ", ".join(llama_bad)
    )


def _weight_map(config: GPTConfig, arch: str) -> list[tuple[str, tuple[str, ...], bool]]:
    """Every transformers parameter as (its name, our parameter names, transposed?).

    Several of our names are concatenated along dim 0 (GPT-2 fuses q, k, v into one c_attn), and GPT-2's
    Conv1D stores weights as (in, out), the transpose of nn.Linear's (out, in).
    """
    rows: list[tuple[str, tuple[str, ...], bool]] = []
    if arch == "gpt2":
        rows.append(("transformer.wte.weight", ("tok_emb.weight",), False))
        rows.append(("transformer.wpe.weight", ("pos_emb.weight",), False))
        for i in range(config.n_layer):
            h, b = f"transformer.h.{i}.", f"blocks.{i}."
            q_k_v = [f"{b}attn.{n}_proj" for n in "qkv"]
            rows += [
                (h + "ln_1.weight", (b + "norm1.weight",), False),
                (h + "ln_1.bias", (b + "norm1.bias",), False),
                (h + "attn.c_attn.weight", tuple(f"{m}.weight" for m in q_k_v), True),
                (h + "attn.c_attn.bias", tuple(f"{m}.bias" for m in q_k_v), False),
                (h + "attn.c_proj.weight", (b + "attn.o_proj.weight",), True),
                (h + "attn.c_proj.bias", (b + "attn.o_proj.bias",), False),
                (h + "ln_2.weight", (b + "norm2.weight",), False),
                (h + "ln_2.bias", (b + "norm2.bias",), False),
                (h + "mlp.c_fc.weight", (b + "ffn.up_proj.weight",), True),
                (h + "mlp.c_fc.bias", (b + "ffn.up_proj.bias",), False),
                (h + "mlp.c_proj.weight", (b + "ffn.down_proj.weight",), True),
                (h + "mlp.c_proj.bias", (b + "ffn.down_proj.bias",), False),
            ]
        rows += [("transformer.ln_f.weight", ("norm_f.weight",), False),
                 ("transformer.ln_f.bias", ("norm_f.bias",), False)]
    else:  # llama: the same Linear layout and the same names, only the module paths differ
        rows.append(("model.embed_tokens.weight", ("tok_emb.weight",), False))
        params = ["weight", "bias"] if config.bias else ["weight"]
        for i in range(config.n_layer):
            h, b = f"model.layers.{i}.", f"blocks.{i}."
            rows += [(h + "input_layernorm.weight", (b + "norm1.weight",), False),
                     (h + "post_attention_layernorm.weight", (b + "norm2.weight",), False)]
            for p in params:
                rows += [(f"{h}self_attn.{n}_proj.{p}", (f"{b}attn.{n}_proj.{p}",), False) for n in "qkvo"]
                rows += [(f"{h}mlp.{n}_proj.{p}", (f"{b}ffn.{n}_proj.{p}",), False)
                         for n in ("gate", "up", "down")]
        rows.append(("model.norm.weight", ("norm_f.weight",), False))
    if not config.tie_embeddings:
        rows.append(("lm_head.weight", ("lm_head.weight",), False))
    return rows


def _hf_config(config: GPTConfig, arch: str):
    from transformers import GPT2Config, LlamaConfig

    # eager attention: the plain softmax(QK^T)V, for an exact comparison; no special token ids, since
    # the lab vocabularies are tiny and GPT-2's default 50256 would be out of range
    common = dict(vocab_size=config.vocab_size, tie_word_embeddings=config.tie_embeddings,
                  bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation="eager")
    if arch == "gpt2":
        return GPT2Config(
            n_positions=config.block_size, n_embd=config.d_model, n_layer=config.n_layer,
            n_head=config.n_head, n_inner=config.ffn_dim, activation_function=_GPT2_ACT[config.activation],
            layer_norm_epsilon=config.norm_eps, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.dropout, **common,
        )
    # HF Llama has attention dropout only; our embedding/residual dropout has no counterpart (eval: none)
    return LlamaConfig(
        hidden_size=config.d_model, intermediate_size=config.ffn_dim, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        max_position_embeddings=config.block_size, rms_norm_eps=config.norm_eps,
        hidden_act=_LLAMA_ACT[config.activation], rope_theta=config.rope_base, attention_bias=config.bias,
        mlp_bias=config.bias, attention_dropout=config.dropout, **common,
    )


def to_hf(model: GPT):
    """A transformers GPT2LMHeadModel (GPT-2-style configs) or LlamaForCausalLM (Llama-style configs)
    with our weights and the same logits, in float32 and eval mode, on the model's device.

    Raises ValueError naming the fields when neither architecture can represent the config
    (e.g. pos='alibi', post-norm, no residual, GQA with LayerNorm, n_experts > 0).
    """
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    config = model.config
    arch = _architecture(config)
    hf_class = GPT2LMHeadModel if arch == "gpt2" else LlamaForCausalLM
    hf = hf_class(_hf_config(config, arch)).float()
    ours = model.state_dict()
    hf_params = dict(hf.named_parameters())  # tied matrices appear once
    rows = _weight_map(config, arch)
    if {name for name, _, _ in rows} != set(hf_params):  # every transformers parameter, exactly once
        raise RuntimeError(f"weight map out of date for {hf_class.__name__}: {sorted(hf_params)}")
    with torch.no_grad():
        for hf_name, our_names, transposed in rows:
            tensor = torch.cat([ours[n].float().cpu() for n in our_names], dim=0)  # (out, in) stacked
            hf_params[hf_name].copy_(tensor.T if transposed else tensor)
    return hf.to(model.tok_emb.weight.device).eval()


def _simplest(config: GPTConfig) -> GPTConfig:
    """The same config with n_kv_head / d_ff back to None where they equal their defaults."""
    if config.n_kv_head == config.n_head:
        config = dataclasses.replace(config, n_kv_head=None)
    if config.d_ff == dataclasses.replace(config, d_ff=None).ffn_dim:
        config = dataclasses.replace(config, d_ff=None)
    return config


def _config_from_hf(hf_config) -> tuple[GPTConfig, str]:
    name = type(hf_config).__name__
    common = dict(vocab_size=hf_config.vocab_size, tie_embeddings=bool(hf_config.tie_word_embeddings))
    if hf_config.model_type == "gpt2":
        acts = {v: k for k, v in _GPT2_ACT.items()} | {"gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}
        if hf_config.activation_function not in acts:
            raise ValueError(
                f"{name}.activation_function={hf_config.activation_function!r} is not one of {sorted(acts)}"
            )
        for field, supported in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                                 ("add_cross_attention", False)):
            if getattr(hf_config, field, supported) != supported:
                value = getattr(hf_config, field)
                raise ValueError(f"{name}.{field}={value!r} is not supported, it must be {supported}")
        config = gpt2_config(
            block_size=hf_config.n_positions, n_layer=hf_config.n_layer, n_head=hf_config.n_head,
            d_model=hf_config.n_embd, d_ff=hf_config.n_inner or 4 * hf_config.n_embd,
            activation=acts[hf_config.activation_function], norm_eps=hf_config.layer_norm_epsilon,
            dropout=float(hf_config.resid_pdrop), **common,
        )
        return _simplest(config), "gpt2"
    if hf_config.model_type == "llama":
        acts = {v: k for k, v in _LLAMA_ACT.items()} | {"swish": "swiglu"}
        if hf_config.hidden_act not in acts:
            raise ValueError(f"{name}.hidden_act={hf_config.hidden_act!r} is not one of {sorted(acts)}")
        rope = getattr(hf_config, "rope_parameters", None) or {  # transformers 5 / 4
            "rope_type": "default", "rope_theta": getattr(hf_config, "rope_theta", 10000.0)}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"{name}.rope_parameters: rope_type={rope['rope_type']!r}, only 'default' works")
        n_head, d_model = hf_config.num_attention_heads, hf_config.hidden_size
        head_dim = getattr(hf_config, "head_dim", None) or d_model // n_head
        if head_dim * n_head != d_model:
            raise ValueError(f"{name}.head_dim={head_dim} must equal hidden_size / num_attention_heads")
        if hf_config.attention_bias != hf_config.mlp_bias:
            raise ValueError(f"{name}.attention_bias and mlp_bias must agree (our config has one bias flag)")
        config = llama_config(
            block_size=hf_config.max_position_embeddings, n_layer=hf_config.num_hidden_layers,
            n_head=n_head, n_kv_head=hf_config.num_key_value_heads, d_model=d_model,
            d_ff=hf_config.intermediate_size, activation=acts[hf_config.hidden_act],
            norm_eps=hf_config.rms_norm_eps, rope_base=float(rope["rope_theta"]),
            bias=bool(hf_config.attention_bias), dropout=float(hf_config.attention_dropout), **common,
        )
        return _simplest(config), "llama"
    raise ValueError(f"hf_model must be a GPT-2 or Llama model, got model_type={hf_config.model_type!r}")


def from_hf(hf_model) -> GPT:
    """Our GPT with the weights of a transformers GPT2LMHeadModel or LlamaForCausalLM (float32, on the
    same device, in the same train/eval mode): from_hf(to_hf(model)) has the logits of model.

    Raises TypeError unless hf_model is a GPT2LMHeadModel or LlamaForCausalLM, ValueError for a config field
    that our GPT cannot represent."""
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    if not isinstance(hf_model, (GPT2LMHeadModel, LlamaForCausalLM)):
        kind = type(hf_model).__name__
        raise TypeError(f"hf_model must be a GPT2LMHeadModel or LlamaForCausalLM, got {kind}")
    config, arch = _config_from_hf(hf_model.config)
    hf_params = dict(hf_model.named_parameters())
    model = GPT(config)
    state = {}
    for hf_name, our_names, transposed in _weight_map(config, arch):
        tensor = hf_params[hf_name].detach().float().cpu()
        tensor = tensor.T if transposed else tensor  # (out, in) stacked
        sizes = [model.get_parameter(n).shape[0] for n in our_names]
        state.update(zip(our_names, torch.split(tensor, sizes, dim=0)))
    if config.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state, strict=True)  # strict: a parameter the map forgot is an error
    return model.to(next(iter(hf_params.values())).device).train(hf_model.training)
