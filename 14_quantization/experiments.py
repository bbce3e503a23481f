"""Lesson 14's measurements on the trained lab Llama: functions that return numbers (demo.py prints them and
figures.py draws them).

Quality is measured on fixed held-out windows of the lab model's validation tokens: perplexity
exp(mean next-token loss) and top-1 agreement (the share of positions where the quantized model's most
likely next token is the float model's). The noise of a comparison between two models comes from the
windows themselves: the windows are cut into chunks, the difference is measured on each chunk, and
`paired_effect` calls it only when every chunk agrees in sign by more than the spread (lesson 00's rule).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmlab.quantization import (
    QuantizedLinear,
    dequantize,
    export_gguf,
    fake_quantize,
    load_gguf,
    quantize,
    quantize_model,
    record_inputs,
)
from llmlab.utils.checks import check_int

SKIP = ("lm_head",)  # the output layer stays float, as GPTQ, AWQ and llama.cpp keep it


def target_linears(model: nn.Module) -> list[str]:
    """The nn.Linear layers that quantize_model quantizes (every one but the output layer), in order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name not in SKIP]


def granularity_kwargs(granularity: str) -> dict:
    """"tensor" / "channel" / "group N" -> the axis / group_size arguments of `quantize`."""
    if granularity == "tensor":
        return dict(axis=None, group_size=None)
    if granularity == "channel":
        return dict(axis=0, group_size=None)
    if granularity.startswith("group "):
        return dict(axis=None, group_size=int(granularity.split()[1]))
    raise ValueError(f"granularity must be 'tensor', 'channel' or 'group N', got {granularity!r}")


# --------------------------------------------------------------------------- data and evaluation
def val_windows(val_data: Tensor, n: int, block_size: int) -> Tensor:
    """n consecutive, non-overlapping windows (n, block_size + 1) from the start of the held-out tokens."""
    check_int("n", n, minimum=1)
    if n * (block_size + 1) > len(val_data):
        raise ValueError(f"n={n} windows of {block_size + 1} tokens need more than {len(val_data)} tokens")
    return val_data[: n * (block_size + 1)].view(n, block_size + 1)


def calibration_ids(train_data: Tensor, n: int, block_size: int, seed: int) -> Tensor:
    """n random training windows (n, block_size): what GPTQ and AWQ see (never the held-out tokens)."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(train_data) - block_size, (n,), generator=g)
    return torch.stack([train_data[s: s + block_size] for s in starts.tolist()])


@torch.no_grad()
def evaluate(model: nn.Module, windows: Tensor, reference: Tensor | None = None, *, batch_size: int = 8,
             n_chunks: int = 4) -> tuple[dict, Tensor]:
    """({perplexity, mean_nll, chunk_nll, agreement}, argmax predictions (n, T)) of `model` (forward(idx)
    -> (logits, ...)) on the windows; agreement = share of positions whose argmax equals `reference`'s."""
    model.eval()
    nll, preds = [], []
    for i in range(0, len(windows), batch_size):
        w = windows[i: i + batch_size]
        logits = model(w[:, :-1])[0].float()  # (B, T, V)
        ce = F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="none")
        nll.append(ce.view(len(w), -1).mean(1))
        preds.append(logits.argmax(-1))
    nll, preds = torch.cat(nll), torch.cat(preds)
    chunks = [float(c.mean()) for c in nll.chunk(min(n_chunks, len(nll)))]
    out = dict(mean_nll=float(nll.mean()), perplexity=math.exp(float(nll.mean())), chunk_nll=chunks)
    if reference is not None:
        out["agreement"] = float((preds == reference).float().mean())
    return out, preds


def chunk_diffs(a: dict, b: dict) -> list[float]:
    """b - a mean loss per chunk of windows (paired: the same tokens), for `paired_effect`."""
    return [y - x for x, y in zip(a["chunk_nll"], b["chunk_nll"])]


# --------------------------------------------------------------------------- 1. weights and activations
@torch.no_grad()
def weight_activation_stats(model: nn.Module, calibration: Tensor, bits: int,
                            granularities: list[str]) -> dict:
    """Per quantized layer: how far the weights' largest value sits from their spread (max|w| / std), how
    unequal the output channels' ranges are (max / median of the per-row absmax), how unequal the input
    channels' activations are (max / median of mean|x| per channel), and the relative weight error
    ||W - Ŵ|| / ||W|| of `bits`-bit round-to-nearest at each granularity."""
    layers = {}
    for name in target_linears(model):
        W = model.get_submodule(name).weight.detach().float()  # (out, in)
        X = record_inputs(model, name, calibration)  # (n, in)
        row_absmax = W.abs().amax(1)
        x_mean = X.abs().mean(0)  # (in,)
        errors = {g: float((W - dequantize(quantize(W, bits, **granularity_kwargs(g)))).norm() / W.norm())
                  for g in granularities}
        layers[name] = dict(weight_absmax_over_std=float(W.abs().max() / W.std()),
                            row_absmax_max_over_median=float(row_absmax.max() / row_absmax.median()),
                            activation_max_over_median=float(x_mean.max() / x_mean.median()),
                            weight_error=errors)
    worst_act = max(layers, key=lambda n: layers[n]["activation_max_over_median"])
    worst_w = max(layers, key=lambda n: layers[n]["weight_absmax_over_std"])
    X = record_inputs(model, worst_act, calibration)
    return dict(layers=layers, outlier_activation_layer=worst_act, outlier_weight_layer=worst_w,
                activation_channel_mean=X.abs().mean(0).tolist(),
                outlier_weights=model.get_submodule(worst_w).weight.detach().flatten().tolist(),
                mean_weight_error={g: statistics.fmean(v["weight_error"][g] for v in layers.values())
                                   for g in granularities})


# --------------------------------------------------------------------------- 2. perplexity vs bits
def fake_quantized_copy(model: nn.Module, bits: int, granularity: str) -> nn.Module:
    """A copy whose quantized layers hold dequantize(quantize(W)) as float weights (any granularity,
    per tensor included; for per channel / group it computes what QuantizedLinear computes)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name in target_linears(model):
            linear = model.get_submodule(name)
            linear.weight.copy_(dequantize(quantize(linear.weight, bits, **granularity_kwargs(granularity))))
    return model


def quantized(model: nn.Module, bits: int, granularity: str, method: str, calibration: Tensor | None,
              **options) -> nn.Module:
    """The model with `bits`-bit weights: round-to-nearest, GPTQ or AWQ (QuantizedLinear layers) at
    "channel" or "group N"; "tensor" only by round-to-nearest (a fake-quantized float copy)."""
    if granularity == "tensor":
        if method != "rtn":
            raise ValueError(f"{method} quantizes per channel or per group, not per tensor")
        return fake_quantized_copy(model, bits, granularity)
    group_size = granularity_kwargs(granularity)["group_size"]
    return quantize_model(model, bits=bits, group_size=group_size, method=method,
                          calibration=None if method == "rtn" else calibration, **options)


# --------------------------------------------------------------------------- 3. quantization-aware training
class FakeQuantLinear(nn.Module):
    """A Linear whose forward uses fake_quantize(W) — the weight the quantized model will hold — while
    the float W is what the optimizer updates (through the straight-through estimator, or not)."""

    def __init__(self, linear: nn.Linear, bits: int, group_size: int | None, ste: bool = True) -> None:
        super().__init__()
        self.linear, self.bits, self.group_size, self.ste = linear, bits, group_size, ste

    def forward(self, x: Tensor) -> Tensor:
        w = fake_quantize(self.linear.weight, self.bits, axis=None if self.group_size else 0,
                          group_size=self.group_size, ste=self.ste)
        return F.linear(x, w, self.linear.bias)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def with_fake_quant(model: nn.Module, bits: int, group_size: int | None, ste: bool = True) -> nn.Module:
    """A copy of the model with every quantized layer wrapped in FakeQuantLinear."""
    model = copy.deepcopy(model)
    for name in target_linears(model):
        _set(model, name, FakeQuantLinear(model.get_submodule(name), bits, group_size, ste))
    return model


def without_fake_quant(model: nn.Module) -> nn.Module:
    """The model with its FakeQuantLinear wrappers replaced by their (trained) float Linears, in place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, FakeQuantLinear):
            _set(model, name, module.linear)
    return model


def finetune(model: nn.Module, train_data: Tensor, *, steps: int, batch_size: int, block_size: int,
             lr: float, seed: int) -> dict:
    """AdamW (no weight decay, so that a weight without gradient stays put) for `steps` steps on random
    training windows, in place: {losses, seconds, weight_grad_norm (the gradient reaching the quantized
    layers' weights at the first step)}."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    weights = [m.linear.weight if isinstance(m, FakeQuantLinear) else m.weight
               for n, m in model.named_modules() if isinstance(m, (FakeQuantLinear, nn.Linear))
               and n not in SKIP and not n.endswith(".linear")]
    losses, grad_norm = [], None
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        starts = torch.randint(len(train_data) - block_size - 1, (batch_size,), generator=g)
        batch = torch.stack([train_data[s: s + block_size + 1] for s in starts.tolist()])  # (B, T + 1)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            grad_norm = float(torch.stack([w.grad.norm() if w.grad is not None else torch.zeros(())
                                           for w in weights]).norm())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return dict(losses=losses, seconds=time.perf_counter() - start, weight_grad_norm=grad_norm)


# --------------------------------------------------------------------------- 4. memory and speed
def tensor_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer the model holds (a tied tensor counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def quantized_layer_bytes(model: nn.Module) -> int:
    """Bytes held by the quantized layers (QuantizedLinear.memory_bytes, or a float Linear's weight)."""
    total = 0
    quantized_names = [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]
    for name in target_linears(model) + quantized_names:
        m = model.get_submodule(name)
        total += m.memory_bytes() if isinstance(m, QuantizedLinear) else tensor_bytes(m)
    return total


@torch.no_grad()
def forward_times(models: dict[str, nn.Module], ids: Tensor, reps: int) -> dict[str, float]:
    """Median seconds of model(ids) per model, the models timed in turn (round-robin: a machine whose
    load changes slows every variant alike; the order rotates every round, so that none is always first).
    One warm-up call each."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m(ids)
    names = list(models)
    for rep in range(reps):
        for k in names[rep % len(names):] + names[: rep % len(names)]:
            m = models[k]
            start = time.perf_counter()
            m(ids)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.no_grad()
def dequantize_seconds(model: nn.Module, reps: int) -> float:
    """Median seconds to dequantize every QuantizedLinear's weight once (what each forward pays)."""
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for m in layers:
            m.dequantized_weight()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --------------------------------------------------------------------------- 5. GGUF files
class _HFAdapter(nn.Module):
    """A transformers causal LM with the lab GPT's forward(idx) -> (logits, None)."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, idx: Tensor):
        return self.hf(idx).logits, None


def gguf_round_trip(model: nn.Module, tokenizer, folder: Path, qtype: str, windows: Tensor,
                    float_logits: Tensor, reference: Tensor) -> dict:
    """Export `model` as a `qtype` GGUF file, load it with transformers (and with load_gguf) and compare:
    file bytes, bits per quantized weight, transformers' logits vs the float model's and vs ours read
    from the same file, perplexity and top-1 agreement of transformers' model."""
    import gguf
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    path = export_gguf(model, folder / f"lab-llama-{qtype}.gguf", qtype=qtype, tokenizer=tokenizer)
    reader = gguf.GGUFReader(path)
    quantized_tensors = [t for t in reader.tensors if len(t.shape) == 2 and t.name != "token_embd.weight"
                         and t.name != "output.weight"]
    weights = sum(int(t.n_elements) for t in quantized_tensors)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=path.name,
                                              dtype=torch.float32).eval()
    ours = load_gguf(path)
    ids = windows[:8, :-1]
    with torch.no_grad():
        hf_logits = hf(ids).logits
        our_logits = ours(ids)[0]
    metrics, _ = evaluate(_HFAdapter(hf), windows, reference)
    return dict(file_bytes=path.stat().st_size,
                tensor_bytes=sum(int(t.n_bytes) for t in reader.tensors),
                bits_per_weight=8 * sum(int(t.n_bytes) for t in quantized_tensors) / weights,
                max_abs_vs_our_reader=float((hf_logits - our_logits).abs().max()),
                max_abs_vs_float=float((hf_logits - float_logits).abs().max()),
                rel_error_vs_float=float((hf_logits - float_logits).norm() / float_logits.norm()),
                perplexity=metrics["perplexity"], agreement=metrics["agreement"], path=path.name)
