"""The model runner: one forward pass of the lab GPT over a scheduled batch, its K/V kept in the paged pool.

The lab GPT's own forward assumes one cache whose rows all hold the same number of tokens. A continuous
batch mixes sequences of different lengths, some with a cached prefix, so the runner drives the GPT's
modules itself — its embeddings and positions, each block's norms, attention projections and
feed-forward block, the final norm and lm_head (no copy of the model) — and swaps only the attention's
cache access for the paged one:

    per layer:   q, k, v = projections of the new tokens (RoPE at their absolute positions)
                 write k, v into the pool at their slots          (slot mapping from the block tables)
                 out = paged attention of q over each sequence's blocks   (prefill: causal, with offset)

A batch is a (B, Tq) grid: row b holds the tokens sequence b computes in this step (its uncached prompt
tokens at prefill, its last token at decode), right-padded to the longest row. Only the last real token
of each row goes through lm_head: one logit row per sequence, sampled with lesson 05's `sample`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmlab.inference_stacks.paged_attention import (
    KVPool,
    paged_attention,
    paged_prefill_attention,
    slot_mapping,
    write_kv,
)
from llmlab.inference_stacks.sequence import Sequence
from llmlab.positional_embeddings import apply_rotary  # lesson 02
from llmlab.sampling import sample  # lesson 05: temperature / top-k / top-p / min-p; 0 = argmax
from llmlab.transformer_block import GPT
from llmlab.utils.exercises import exercise

__all__ = ["ModelRunner"]


class ModelRunner:
    """Runs `model` on lists of Sequences against the pool. run(seqs, is_prefill) -> one new token per seq."""

    def __init__(self, model: GPT, pool: KVPool) -> None:
        self.model = model
        self.pool = pool
        self.block_size = pool.block_size
        self.device = next(model.parameters()).device

    def prepare(self, seqs: list[Sequence]) -> dict[str, Tensor | int]:
        """Host-side bookkeeping, then one transfer per tensor: ids and positions (B, Tq), the slots of
        the real tokens, the block tables (B, max_blocks), context and query lengths (B,)."""
        query_lens = [len(s) - s.num_cached_tokens for s in seqs]
        Tq = max(query_lens)
        max_blocks = max(len(s.block_table) for s in seqs)
        ids, positions, slots, rows, tables = [], [], [], [], []
        for b, (seq, n) in enumerate(zip(seqs, query_lens)):
            start, end = seq.num_cached_tokens, len(seq)
            pad = [0] * (Tq - n)
            ids.append(seq.token_ids[start:end] + pad)
            positions.append(list(range(start, end)) + pad)
            slots += slot_mapping(seq.block_table, start, end, self.block_size)
            rows += range(b * Tq, b * Tq + n)
            tables.append(seq.block_table + [0] * (max_blocks - len(seq.block_table)))  # pad: any valid id

        def tensor(x):
            return torch.tensor(x, dtype=torch.long, device=self.device)

        return dict(ids=tensor(ids), positions=tensor(positions), slots=tensor(slots),
                    rows=None if len(rows) == len(seqs) * Tq else tensor(rows),
                    block_tables=tensor(tables), context_lens=tensor([len(s) for s in seqs]),
                    query_lens=tensor(query_lens), max_position=max(len(s) for s in seqs) - 1)

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], is_prefill: bool) -> list[int]:
        """One step: the logits of each sequence's last token, then one sampled token per sequence (a
        single read back to the host: the scheduler needs the tokens to decide the next step)."""
        batch = self.prepare(seqs)
        if self.model.training:  # dropout off for this step only (walking the modules costs ~1 ms)
            self.model.eval()
            try:
                logits = self.forward(batch, is_prefill)  # (B, vocab)
            finally:
                self.model.train()
        else:
            logits = self.forward(batch, is_prefill)
        return self.sample(logits, seqs).tolist()

    def forward(self, batch: dict, is_prefill: bool) -> Tensor:
        """-> logits (B, vocab) of each row's last real token."""
        m, cfg = self.model, self.model.config
        ids, positions, last = batch["ids"], batch["positions"], batch["max_position"]
        x = m.tok_emb(ids)  # (B, Tq, d_model)
        if cfg.embedding_scale != 1.0:
            x = x * cfg.embedding_scale
        pos_vectors = m._absolute_positions(positions, last)  # learned / sinusoidal, else None (lesson 04)
        if pos_vectors is not None:
            x = x + pos_vectors
        rope = m.rotary(positions, max_position=last) if m.rotary is not None else None  # (B, Tq, D) each
        for layer, block in enumerate(m.blocks):
            def attend(h: Tensor, block=block, layer=layer) -> Tensor:
                return self.attention(block.attn, layer, h, rope, batch, is_prefill)
            if cfg.prenorm:  # TransformerBlock.forward with the paged attention in place of the cached one
                x = block.add(x, attend(block.norm1(x)))
                x = block.add(x, block.ffn(block.norm2(x)))
            else:
                x = block.norm1(block.add(x, attend(x)))
                x = block.norm2(block.add(x, block.ffn(x)))
        B = x.shape[0]
        x = x[torch.arange(B, device=x.device), batch["query_lens"] - 1]  # (B, d_model): last real token
        return m.lm_head(m.norm_f(x))  # (B, vocab)

    @exercise(7, "project h to q, k, v and split the heads; rotate q and k when rope is given; write the"
              " real tokens' K/V to this layer's pool at the slots; paged prefill or decode "
              "attention; merge the heads, o_proj, dropout")
    def attention(self, attn, layer: int, h: Tensor, rope, batch: dict, is_prefill: bool) -> Tensor:
        """The GPT layer's GroupedQueryAttention with its K/V read from and written to the paged pool."""
        B, T, _ = h.shape
        H, H_kv, D = attn.n_head, attn.n_kv_head, attn.head_dim
        q = attn.q_proj(h).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = attn.k_proj(h).view(B, T, H_kv, D).transpose(1, 2)  # (B, H_kv, T, D)
        v = attn.v_proj(h).view(B, T, H_kv, D).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # keys cached already rotated
        k_new = k.transpose(1, 2).reshape(B * T, H_kv, D)  # (B·T, H_kv, D): one row per token
        v_new = v.transpose(1, 2).reshape(B * T, H_kv, D)
        if batch["rows"] is not None:  # drop the padding: only real tokens get a slot
            k_new, v_new = k_new.index_select(0, batch["rows"]), v_new.index_select(0, batch["rows"])
        k_cache, v_cache = self.pool.k[layer], self.pool.v[layer]
        write_kv(k_cache, v_cache, k_new, v_new, batch["slots"])
        kw = dict(scale=attn.attn_scale, kernels=attn.kernels)
        if is_prefill:
            out = paged_prefill_attention(q, k_cache, v_cache, batch["block_tables"], batch["context_lens"],
                                          batch["query_lens"], **kw)  # (B, H, T, D)
        else:  # T == 1: the decode kernel
            out = paged_attention(q[:, :, 0], k_cache, v_cache, batch["block_tables"], batch["context_lens"],
                                  **kw)[:, :, None]  # (B, H, 1, D)
        out = out.transpose(1, 2).reshape(B, T, H * D)  # (B, T, H·D): heads side by side
        return attn.resid_dropout(attn.o_proj(out))  # (B, T, d_model)

    @staticmethod
    def sample(logits: Tensor, seqs: list[Sequence]) -> Tensor:
        """One token per row: greedy rows by argmax in one call, sampled rows one by one, each with its
        own knobs and generator (a seeded request draws the same tokens whatever its batch)."""
        if all(s.params.greedy for s in seqs):
            return sample(logits, temperature=0.0)  # (B,)
        tokens = torch.empty(len(seqs), dtype=torch.long, device=logits.device)
        for b, seq in enumerate(seqs):
            p = seq.params
            tokens[b] = sample(logits[b:b + 1], temperature=p.temperature, top_k=p.top_k, top_p=p.top_p,
                               min_p=p.min_p, generator=seq.generator)[0]
        return tokens
