"""Data-parallel training of the lab GPT on several processes: DDP, or FSDP2 with --fsdp.

When one device is not enough, every process (a "rank") holds the model, takes its own slice of each
global batch, and the ranks average their gradients before every optimizer step, so that all of them
take the step that one process would take on the whole global batch:

    global batch (B, T) -> rank r trains on rows [r·B/W, (r+1)·B/W)      W = world size (processes)
    g = (1/W) · sum_r g_r = gradient of the mean loss over the global batch    (equal slices)

DistributedDataParallel (DDP; Li et al. 2020, "PyTorch Distributed") keeps a full copy of the weights
and of the optimizer state on every rank and all-reduces the gradients in buckets while the backward
pass runs. FSDP2 (`torch.distributed.fsdp.fully_shard`, Zhao et al. 2023, "PyTorch FSDP"; ZeRO stage 3,
Rajbhandari et al. 2020) shards weights, gradients and optimizer state over the ranks: each layer's
weights are all-gathered just before it runs and freed after, gradients are reduce-scattered, so each
rank stores 1/W of the 16 bytes per parameter of mixed-precision AdamW (scaling.training_memory).

    torchrun --nproc-per-node=2 13_scaling_laws/train_ddp.py                 # DDP on 2 CPU processes
    torchrun --nproc-per-node=2 13_scaling_laws/train_ddp.py --fsdp --check  # FSDP2, checked
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \
        13_scaling_laws/train_ddp.py                                         # 2 machines x 8 GPUs

The backend is gloo on CPU and nccl when CUDA is present (one GPU per process, cuda:LOCAL_RANK); the
script is otherwise the same. The global batches depend only on --seed and the step, never on the
number of processes. --check then trains the plain model in one process on the same global batches
with the same optimizer and exits with status 1 if any weight differs by more than --tolerance: the
ranks sum their gradients in another order than one process does, so the two agree up to rounding
(~1e-13 with --dtype float64; in float32 up to ~1e-4, see TOLERANCES).
--break-sharding makes every rank train on the first slice (the bug of a sampler that forgets the
rank): training still runs and the loss still falls, and only the check sees it.
The model is tiny on purpose: this is the mechanics, not a speed-up on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from llmlab.transformer_block import GPT, GPTConfig, gpt2_config
from llmlab.utils import CharTokenizer, TrainConfig, encode, get_batch, load_corpus, lr_at, make_optimizer
from llmlab.utils.cli import nonneg_int, positive_float, positive_int

# max |w_distributed - w_single| that float rounding explains after a few dozen steps. Not ~1e-7 in
# float32: some gradients are exactly 0 in exact arithmetic (the key projection's bias: softmax ignores a
# shift shared by all keys) and pure rounding noise in practice, which Adam divides by its own tiny
# size, so they take steps of up to ~lr in a direction that depends on the summation order.
TOLERANCES = {"float32": 1e-3, "float64": 1e-9}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdp", action="store_true", help="shard with FSDP2 fully_shard instead of DDP")
    parser.add_argument("--steps", type=positive_int, default=20, help="optimizer steps (default 20)")
    parser.add_argument("--global-batch", type=positive_int, default=16,
                        help="sequences per step over all ranks; a multiple of the world size (default 16)")
    parser.add_argument("--block-size", type=positive_int, default=64,
                        help="tokens per sequence (default 64)")
    parser.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="seed of the weights and batches")
    parser.add_argument("--corpus-chars", type=positive_int, default=50_000,
                        help="characters of the stories corpus to train on (default 50000)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="the weights' dtype (float64: rounding differences ~1e9 x smaller)")
    parser.add_argument("--check", action="store_true",
                        help="compare the weights with a one-process run on the same global batches")
    parser.add_argument("--tolerance", type=positive_float, default=None,
                        help="largest weight difference --check accepts (default: "
                             + ", ".join(f"{tol:g} in {name}" for name, tol in TOLERANCES.items()) + ")")
    parser.add_argument("--break-sharding", action="store_true",
                        help="break: every rank trains on the first slice of the global batch")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here (rank 0)")
    return parser.parse_args(argv)


def tiny_config(vocab_size: int, block_size: int) -> GPTConfig:
    """A GPT-2-style model of ~0.1M parameters: big enough to learn, small enough for 2 CPU processes."""
    return gpt2_config(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, d_model=64)


def global_batch(data: torch.Tensor, step: int, *, batch_size: int, block_size: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of one step, (batch_size, block_size) x and y: the same on every rank and for any
    number of ranks (a generator seeded by seed and step alone)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return get_batch(data, batch_size, block_size, generator=generator)


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch that rank `rank` of `world_size` trains on: consecutive, equal slices.

    Equal sizes make the average of the ranks' mean losses the mean loss of the global batch, which is
    what averaging the gradients computes. Raises ValueError unless world_size divides batch_size and
    0 <= rank < world_size.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if batch_size % world_size:
        raise ValueError(f"the global batch ({batch_size}) must be a multiple of the world size "
                         f"({world_size})")
    local = batch_size // world_size
    return slice(rank * local, (rank + 1) * local)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The recipe of both runs: the lab's AdamW (decay on matrices), warmup + cosine, clipping at 1."""
    return TrainConfig(steps=args.steps, batch_size=args.global_batch, block_size=args.block_size, lr=args.lr,
                       warmup_steps=max(1, args.steps // 10))


def build_model(config: GPTConfig, seed: int, device: torch.device,
                dtype: torch.dtype = torch.float32) -> GPT:
    torch.manual_seed(seed)  # the same initial weights in every process
    return GPT(config).to(device=device, dtype=dtype)


def train_steps(model: nn.Module, data: torch.Tensor, args: argparse.Namespace, device: torch.device, *,
                rows: slice | None = None, on_step=None) -> list[float]:
    """args.steps optimizer steps of `model` (plain, DDP or FSDP) on rows `rows` of each global batch
    (None: all of it); returns the loss of each step as this process saw it."""
    recipe = train_config(args)
    optimizer = make_optimizer(model, recipe)
    losses = []
    for step in range(args.steps):
        x, y = global_batch(data, step, batch_size=args.global_batch, block_size=args.block_size,
                            seed=args.seed)
        if rows is not None:
            x, y = x[rows], y[rows]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        _, loss = model(x.to(device), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces, FSDP reduce-scatters the gradients here: averaged over ranks
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)  # DTensor-aware for FSDP
        optimizer.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, loss)
    return losses


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """name -> the whole weight on the CPU; a sharded FSDP2 weight (a DTensor) is all-gathered (every
    rank must call this). Tied weights appear once."""
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    weights = {}
    for name, param in module.named_parameters():
        tensor = param.full_tensor() if hasattr(param, "full_tensor") else param
        weights[name] = tensor.detach().cpu()
    return weights


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest |a - b| over all weights. Raises ValueError if the names or shapes differ."""
    if a.keys() != b.keys():
        raise ValueError(f"the models' parameters differ: {sorted(a.keys() ^ b.keys())}")
    for name in a:
        if a[name].shape != b[name].shape:
            raise ValueError(f"{name}: shape {tuple(a[name].shape)} vs {tuple(b[name].shape)}")
    return max((a[name] - b[name]).abs().max().item() for name in a)


def load_data(corpus_chars: int) -> tuple[torch.Tensor, int]:
    text = load_corpus("stories", corpus_chars)
    tokenizer = CharTokenizer.from_text(text)
    return encode(text, tokenizer), tokenizer.vocab_size


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tolerance is None:
        args.tolerance = TOLERANCES[args.dtype]
    if "RANK" not in os.environ:
        print("train_ddp.py runs under torchrun, e.g.\n"
              "  torchrun --nproc-per-node=2 13_scaling_laws/train_ddp.py --check", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        status = run(args, device, backend)
        # FSDP's modules sit in reference cycles that hold tensors the gloo worker threads still refer to;
        # freed only at interpreter shutdown, they made 1 run in ~15 abort ("terminate called without an
        # active exception"). Collect them now, while the process group is alive.
        gc.collect()
        dist.barrier()  # no rank tears the group down while another still talks to it
        return status
    finally:
        dist.destroy_process_group()


def run(args: argparse.Namespace, device: torch.device, backend: str) -> int:
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        rows = rank_slice(args.global_batch, 0 if args.break_sharding else rank, world)
    except ValueError as err:
        if rank == 0:
            print(f"train_ddp.py: {err}", file=sys.stderr)
        return 2
    data, vocab_size = load_data(args.corpus_chars)
    config = tiny_config(vocab_size, args.block_size)
    model = build_model(config, args.seed, device, getattr(torch, args.dtype))
    n_params = sum(p.numel() for p in model.parameters())
    if args.fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (world,))
        for block in model.blocks:  # one all-gather per block, freed after use: peak = one block's weights
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)  # the rest: embeddings (tied to the LM head), final norm
        wrapped = model
    else:
        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    mode = "FSDP2" if args.fsdp else "DDP"
    if rank == 0:
        print(f"{mode} on {world} process(es), backend {backend}, device {device.type}: GPT of {n_params:,} "
              f"parameters, global batch {args.global_batch} x {args.block_size} tokens "
              f"({args.global_batch // world} sequences per rank)"
              + (", BROKEN sharding: every rank trains on slice 0" if args.break_sharding else ""))

    global_losses = []

    def log(step: int, loss: torch.Tensor) -> None:
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # the global batch's mean loss: every rank's slice has the same size
        global_losses.append(mean.item() / world)
        if rank == 0 and (step % max(1, args.steps // 5) == 0 or step == args.steps - 1):
            print(f"  step {step:4d}  loss {global_losses[-1]:.4f}")

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    start = time.perf_counter()
    train_steps(wrapped, data, args, device, rows=rows, on_step=log)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = torch.tensor(time.perf_counter() - start)
    dist.all_reduce(wall, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
    tokens = args.steps * args.global_batch * args.block_size
    seconds = wall.item()
    results = dict(mode=mode, world_size=world, backend=backend, device=device.type, steps=args.steps,
                   global_batch=args.global_batch, block_size=args.block_size, dtype=args.dtype,
                   params=n_params, broken_sharding=args.break_sharding, losses=global_losses, wall_s=seconds,
                   tokens_per_s_total=tokens / seconds, tokens_per_s_per_process=tokens / seconds / world)
    if rank == 0:
        print(f"  {tokens:,} tokens in {seconds:.2f} s: {results['tokens_per_s_total']:,.0f} tokens/s in "
              f"all, {results['tokens_per_s_per_process']:,.0f} per process")

    status = 0
    if args.check:
        weights = full_weights(wrapped)  # a collective under FSDP: every rank takes part
        verdict = torch.zeros(1)
        if rank == 0:
            reference = build_model(config, args.seed, device, getattr(torch, args.dtype))
            train_steps(reference, data, args, device)  # one process, the whole global batch
            try:
                verdict[0] = max_abs_diff(weights, full_weights(reference))
            except ValueError as err:  # not the same model at all: fail, but let the other ranks finish
                print(f"  check: {err}", file=sys.stderr)
                verdict[0] = float("inf")
        dist.broadcast(verdict, src=0)
        diff = verdict.item()
        passed = diff <= args.tolerance
        results.update(max_abs_diff=diff, tolerance=args.tolerance, check_passed=passed)
        if rank == 0:
            print(f"  check: max |w_{mode} - w_single| = {diff:.3g} "
                  f"({'<=' if passed else '>'} tolerance {args.tolerance:g}): "
                  f"{'the same training' if passed else 'NOT the same training'}")
        status = 0 if passed else 1
    if rank == 0 and args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
