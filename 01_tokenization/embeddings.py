"""Token embeddings: from one-hot vectors to learned vectors in which similar tokens are close.

A token id is only a name. As a one-hot vector every token is equally far from every other (all
cosines 0), so the model can share nothing between " dog" and " cat". A learned embedding table
gives each token a dense row of d numbers; trained to predict the next token, tokens that occur in
similar contexts receive similar gradients and end up with similar rows (the distributional
hypothesis: "you shall know a word by the company it keeps", Firth 1957).

    one-hot:     x_i = e_i in R^V          cos(e_i, e_j) = 0 for i != j
    embedding:   x_i = e_i E = E[i] in R^d  (a table lookup is a one-hot times a matrix)
    cosine:      cos(u, v) = u . v / (|u| |v|)

Papers: Bengio, Ducharme, Vincent & Jauvin, "A Neural Probabilistic Language Model" (JMLR 2003),
whose model (concatenate the embeddings of the previous tokens, a tanh layer, a softmax over the
vocabulary) is `EmbeddingLM` below; Mikolov et al., "Efficient Estimation of Word Representations
in Vector Space" (2013) for the nearest-neighbour view of embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmlab.utils.checks import check_int
from llmlab.utils.exercises import exercise

PROJECTIONS = ("pca", "tsne")


def one_hot(ids: torch.Tensor | Sequence[int], vocab_size: int) -> torch.Tensor:
    """Ids (any shape) -> float one-hot vectors (..., vocab_size): row i of the identity matrix.

    Raises TypeError/ValueError unless vocab_size is an int >= 1, TypeError for non-integer ids,
    ValueError for ids outside [0, vocab_size).
    """
    check_int("vocab_size", vocab_size, minimum=1)
    ids = torch.as_tensor(ids)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids must be in [0, vocab_size={vocab_size}), got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    return torch.eye(vocab_size)[ids.long()]  # (..., V)


def cosine_similarity_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """(N, d) -> (N, N) with entry (i, j) = cos(vectors[i], vectors[j])."""
    vectors = _as_matrix(vectors, "vectors").float()
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (N, d), each row of length 1
    return unit @ unit.T  # (N, N)


def nearest_neighbours(
    embeddings: torch.Tensor, query_id: int, k: int = 5, *, candidates: Sequence[int] | None = None
) -> list[tuple[int, float]]:
    """The k rows most cosine-similar to row `query_id` (itself excluded), as (id, cosine), best first.

    `candidates` restricts the search to some ids (e.g. the frequent tokens, whose vectors are trained).
    Raises TypeError/ValueError for embeddings that are not (N, d), a query_id outside [0, N), k < 1 or
    candidates outside [0, N).
    """
    embeddings = _as_matrix(embeddings, "embeddings").float()
    n = embeddings.shape[0]
    if not isinstance(query_id, int) or not 0 <= query_id < n:
        raise ValueError(f"query_id must be an int in [0, {n}), got {query_id!r}")
    check_int("k", k, minimum=1)
    pool = torch.arange(n) if candidates is None else torch.as_tensor(list(candidates), dtype=torch.long)
    if pool.numel() and (pool.min() < 0 or pool.max() >= n):
        raise ValueError(f"candidates must be ids in [0, {n})")
    pool = pool[pool != query_id]
    sims = F.cosine_similarity(embeddings[query_id][None, :], embeddings[pool], dim=1)  # (len(pool),)
    top = sims.topk(min(k, pool.numel()))
    return [(int(pool[i]), float(s)) for s, i in zip(top.values, top.indices)]


def project_2d(vectors: torch.Tensor, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """(N, d) -> (N, 2) for plotting: PCA (a linear view: the two directions of largest variance) or
    t-SNE (a non-linear view that keeps neighbours together; distances between clusters mean little).
    Raises ValueError for an unknown method or fewer than 3 rows, TypeError/ValueError for vectors that
    are not (N, d).
    """
    vectors = _as_matrix(vectors, "vectors").float().numpy()
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}")
    if vectors.shape[0] < 3:
        raise ValueError(f"vectors must have at least 3 rows to project, got {vectors.shape[0]}")
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    # A few hundred points need one thread; more threads only wait for each other when the cores are
    # shared (t-SNE of 30 points: 0.5 s on one thread, 35 s on two busy cores, measured).
    with threadpool_limits(limits=1):
        if method == "pca":
            return PCA(n_components=2, random_state=seed).fit_transform(vectors)
        perplexity = min(30.0, (vectors.shape[0] - 1) / 3)  # t-SNE needs perplexity < number of points
        return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                    random_state=seed).fit_transform(vectors)


def group_similarity(embeddings: torch.Tensor, groups: dict[str, Sequence[int]]) -> dict[str, float]:
    """How much closer tokens of one group (e.g. colours, names) are to each other than to other groups.

    Returns the mean cosine within groups, between groups, their difference, and the fraction of
    tokens whose nearest neighbour (among all grouped tokens) is in their own group.
    Raises ValueError unless groups hold at least two groups and two tokens in all.
    """
    ids = [i for members in groups.values() for i in members]
    labels = torch.tensor([g for g, members in enumerate(groups.values()) for _ in members])
    if len(ids) < 2 or len(groups) < 2:
        raise ValueError("groups must hold at least two groups and two tokens in all")
    sims = cosine_similarity_matrix(torch.as_tensor(embeddings)[ids])  # (N, N)
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(ids), dtype=torch.bool)
    within = sims[same & off_diagonal].mean().item() if (same & off_diagonal).any() else float("nan")
    between = sims[~same].mean().item()
    nearest = sims.masked_fill(~off_diagonal, -2.0).argmax(dim=1)  # (N,)
    return {"within": within, "between": between, "gap": within - between,
            "nn_same_group": (labels[nearest] == labels).float().mean().item()}


class EmbeddingLM(nn.Module):
    """Bengio et al.'s neural LM: the embeddings of the last `context_size` tokens -> tanh -> logits.

    With `one_hot=True` the table is the frozen identity (dim = vocab_size): the same model reading
    one-hot vectors, the baseline that learned embeddings are compared with.
    Raises TypeError/ValueError unless vocab_size, dim, context_size and hidden are ints >= 1.
    """

    def __init__(self, vocab_size: int, dim: int = 32, *, context_size: int = 3, hidden: int = 128,
                 one_hot: bool = False):
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=1)
        check_int("context_size", context_size, minimum=1)
        check_int("hidden", hidden, minimum=1)
        if one_hot:
            dim = vocab_size
        check_int("dim", dim, minimum=1)
        self.vocab_size, self.dim, self.context_size = vocab_size, dim, context_size
        self.embedding = nn.Embedding(vocab_size, dim)
        if one_hot:
            self.embedding.weight.data.copy_(torch.eye(vocab_size))
            self.embedding.weight.requires_grad_(False)
        self.hidden = nn.Linear(context_size * dim, hidden)
        self.out = nn.Linear(hidden, vocab_size)

    @exercise(5, "embed idx; for k = 0..context_size-1 shift the embeddings right by k along T with "
              "zeros before the start; concatenate, tanh of the hidden layer, output layer; cross-"
              "entropy over the flattened B*T rows when targets are given")
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) -> logits (B, T, V); position t sees tokens t - context_size + 1 .. t only.

        Raises ValueError unless idx has shape (B, T).
        """
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        B, T = idx.shape
        x = self.embedding(idx)  # (B, T, D)
        # the k-th previous token's vector at every position: shift right by k, zeros before the start
        context = [F.pad(x, (0, 0, k, 0))[:, :T] for k in range(self.context_size)]  # each (B, T, D)
        h = torch.tanh(self.hidden(torch.cat(context, dim=-1)))  # (B, T, hidden)
        logits = self.out(h)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss


def _as_matrix(value, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or array of shape (N, d), got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {tuple(value.shape)}")
    return value.detach().cpu()
