"""Deduplication and leak checks: exact hashing, MinHash, locality-sensitive hashing, n-gram overlap.

Two documents are near-duplicates when their sets of word n-grams ("shingles") overlap a lot:
Jaccard J(A, B) = |A ∩ B| / |A ∪ B|. Comparing every pair costs O(N²); MinHash and LSH make it
close to O(N):

    MinHash   h_k(A) = min over x in A of  pi_k(x),  k = 1..K random permutations
              P[h_k(A) = h_k(B)] = J(A, B)   so   J ≈ (1/K) · #{k : h_k(A) = h_k(B)},  error ≈ 1/√K
    LSH       cut the K values into b bands of r rows; A and B become candidates when all r values
              of at least one band agree:  P[candidate] = 1 − (1 − J^r)^b   (the S-curve)

A candidate pair is then verified with the exact Jaccard of the shingle sets, and the verified pairs
are joined into clusters (union-find); `near_dedup` keeps the first document of each cluster.

Papers: Broder 1997, "On the resemblance and containment of documents" (shingles, MinHash);
Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets" ch. 3 (banding, the S-curve); Lee et al.
2022, "Deduplicating Training Data Makes Language Models Better" (MinHash dedup of C4, 10× less
memorised output); Brown et al. 2020, "Language Models are Few-Shot Learners" (GPT-3) appendix C
(a test example is "dirty" when it shares a 13-gram with the training data).

`MinHash` reproduces datasketch's `MinHash(num_perm, seed, scheme="legacy")` bit for bit (the only
scheme before datasketch 2.0; 2.0 defaults to "affine32"): the same SHA-1 32-bit input hash, the
same permutations drawn from `numpy.random.RandomState(seed)`, and the same arithmetic
((a·h + b) mod 2^61 − 1, with a·h + b wrapping around 2^64 first, then the low 32 bits).
`MinHashLSH` picks the same (bands, rows) as datasketch's `MinHashLSH` for a threshold.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from llmlab.utils.checks import check_int, check_number, check_str, describe
from llmlab.utils.exercises import exercise

__all__ = [
    "MinHash",
    "MinHashLSH",
    "candidate_pairs",
    "contaminated",
    "exact_dedup",
    "jaccard",
    "near_dedup",
    "ngram_overlap",
    "normalize",
    "optimal_lsh_params",
    "s_curve",
    "sha1_hash32",
    "shingles",
    "similar_pairs",
    "words",
]

MERSENNE_PRIME = (1 << 61) - 1  # the modulus of the universal hash family a·h + b
MAX_HASH = (1 << 32) - 1  # hash values are 32 bits; an empty MinHash holds MAX_HASH everywhere
_WORD = re.compile(r"\w+")


# ---------------------------------------------------------------------------------------- checks
def _check_docs(name: str, docs: object) -> list[str]:
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
        raise TypeError(f"{name} must be a sequence of str, got {describe(docs)}")
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise TypeError(f"{name}[{i}] must be a str, got {describe(doc)}")
    return list(docs)


# ---------------------------------------------------------------------------------- exact dedup
def normalize(text: str) -> str:
    """Case-folded, with every run of whitespace turned into one space and the ends stripped.

    Two documents that differ only in case or spacing normalise to the same string.
    Raises TypeError unless text is a str.
    """
    return " ".join(check_str("text", text).casefold().split())


def exact_dedup(docs: Sequence[str]) -> list[int]:
    """Indices of the documents to keep: the first occurrence of each normalised text, in order.

    Each normalised document is reduced to a 16-byte BLAKE2b digest and only the digests are kept in
    memory, as a pipeline over terabytes does (a collision needs ~2^64 documents).
    Raises TypeError unless docs is a sequence of str.
    """
    docs = _check_docs("docs", docs)
    seen: set[bytes] = set()
    kept = []
    for i, doc in enumerate(docs):
        digest = hashlib.blake2b(normalize(doc).encode("utf-8"), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            kept.append(i)
    return kept


# ------------------------------------------------------------------------------------- shingles
def words(text: str) -> list[str]:
    """The words of a text, case-folded, punctuation dropped (`\\w+` runs): "Don't run!" ->
    ["don", "t", "run"]. The normalisation of both shingles and the 13-gram check.

    Raises TypeError unless text is a str."""
    return _WORD.findall(check_str("text", text).casefold())


def _ngrams(tokens: list[str], n: int) -> Iterable[str]:
    return (" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def shingles(text: str, n: int = 5) -> set[bytes]:
    """The set of word n-grams of `text` (see `words`), each as UTF-8 bytes ("the cat sat ...").

    A text of fewer than n words (but at least one) is one shingle of all its words, so that short
    documents still compare; an empty text has no shingles.
    Raises TypeError unless text is a str, ValueError for n < 1.
    """
    tokens = words(text)
    n = check_int("n", n, minimum=1)
    if 0 < len(tokens) < n:
        return {" ".join(tokens).encode("utf-8")}
    return {gram.encode("utf-8") for gram in _ngrams(tokens, n)}


@exercise(1, "size of the intersection over size of the union; mind the case where both sets are empty")
def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|, the exact resemblance of two sets; two empty sets are identical (1.0).

    Raises TypeError unless a and b are sets (set or frozenset).
    """
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, (set, frozenset)):
            raise TypeError(f"{name} must be a set, got {describe(value)}")
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


# -------------------------------------------------------------------------------------- MinHash
def sha1_hash32(data: bytes) -> int:
    """The first 4 bytes of SHA-1(data) read as a little-endian unsigned int: the input hash."""
    return int.from_bytes(hashlib.sha1(data).digest()[:4], "little")


@functools.lru_cache(maxsize=32)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The K hash functions pi_k(h) = ((a_k·h + b_k) mod p) mod 2^32, p = 2^61 − 1.

    a_k in [1, p), b_k in [0, p), drawn in the order (a_1, b_1, a_2, b_2, ...) from
    RandomState(seed) — the order of datasketch's legacy scheme, which its hash values depend on.
    """
    rng = np.random.RandomState(seed)
    params = np.empty((num_perm, 2), dtype=np.uint64)
    for k in range(num_perm):
        params[k, 0] = rng.randint(1, MERSENNE_PRIME, dtype=np.uint64)
        params[k, 1] = rng.randint(0, MERSENNE_PRIME, dtype=np.uint64)
    a, b = params[:, 0].copy(), params[:, 1].copy()
    a.flags.writeable = b.flags.writeable = False  # shared by every MinHash of this (num_perm, seed)
    return a, b


class MinHash:
    """A MinHash signature of a set of byte strings: K = num_perm minimum hash values.

    `update(data)` adds one element; `jaccard(other)` estimates the Jaccard similarity of the two sets
    as the fraction of equal values. Bit-identical to `datasketch.MinHash(num_perm, seed,
    scheme="legacy")` (`hashvalues`: uint64 array of values below 2^32).
    Raises TypeError/ValueError for a num_perm < 1 or a seed outside [0, 2^32).
    """

    def __init__(self, num_perm: int = 128, seed: int = 1):
        self.num_perm = check_int("num_perm", num_perm, minimum=1)
        self.seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)  # RandomState's seed range
        self.hashvalues = np.full(self.num_perm, MAX_HASH, dtype=np.uint64)  # (K,)

    @property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b), each (num_perm,) uint64."""
        return _permutations(self.num_perm, self.seed)

    @exercise(4, "broadcast hashes (N, 1) against a, b (1, K): a·h + b in uint64, letting it wrap mod "
              "2^64 (ignore numpy's overflow warning), then mod p, then keep the low 32 bits")
    def _permuted(self, hashes: np.ndarray) -> np.ndarray:
        """hashes (N,) uint64 -> pi_k(hash) for every k, (N, K)."""
        a, b = self.permutations
        # uint64 arithmetic wraps around 2^64: a·h reaches 2^93, so the value that is reduced mod p
        # is (a·h + b) mod 2^64, not a·h + b. datasketch computes it this way; so must we, to match.
        with np.errstate(over="ignore"):
            mixed = hashes[:, None] * a[None, :] + b[None, :]  # (N, K)
        return (mixed % np.uint64(MERSENNE_PRIME)) & np.uint64(MAX_HASH)

    def update(self, data: bytes) -> None:
        """Add one element (bytes) to the set.

        Raises TypeError unless data is bytes, bytearray or memoryview.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {describe(data)}; encode text first, e.g. "
                            "s.encode('utf-8')")
        self.update_batch([data])

    def update_batch(self, items: Iterable[bytes]) -> None:
        """Add many elements at once (one numpy operation for all of them).

        Raises TypeError for an item that is not bytes, bytearray or memoryview.
        """
        hashes = []
        for i, data in enumerate(items):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"items[{i}] must be bytes, got {describe(data)}")
            hashes.append(sha1_hash32(bytes(data)))
        if hashes:
            permuted = self._permuted(np.array(hashes, dtype=np.uint64))  # (N, K)
            self.hashvalues = np.minimum(self.hashvalues, permuted.min(axis=0))

    @classmethod
    def from_set(cls, items: Iterable[bytes], num_perm: int = 128, seed: int = 1) -> MinHash:
        """The MinHash of a whole set (e.g. `shingles(text)`)."""
        minhash = cls(num_perm, seed)
        minhash.update_batch(items)
        return minhash

    def _check_compatible(self, other: object) -> MinHash:
        if not isinstance(other, MinHash):
            raise TypeError(f"other must be a MinHash, got {describe(other)}")
        if (other.num_perm, other.seed) != (self.num_perm, self.seed):
            raise ValueError(f"other must have the same num_perm and seed, got num_perm={other.num_perm}, "
                             f"seed={other.seed} against num_perm={self.num_perm}, seed={self.seed}")
        return other

    def jaccard(self, other: MinHash) -> float:
        """Estimated Jaccard similarity: the fraction of the K hash values that agree.

        Raises TypeError unless other is a MinHash, ValueError unless it has the same num_perm and seed.
        """
        other = self._check_compatible(other)
        return float(np.count_nonzero(self.hashvalues == other.hashvalues)) / self.num_perm

    def is_empty(self) -> bool:
        return bool(np.all(self.hashvalues == MAX_HASH))

    def __len__(self) -> int:
        return self.num_perm

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MinHash) and (other.num_perm, other.seed) == (self.num_perm, self.seed)
                and bool(np.array_equal(self.hashvalues, other.hashvalues)))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"MinHash(num_perm={self.num_perm}, seed={self.seed})"


# ------------------------------------------------------------------------------------------ LSH
@exercise(2, "a band matches with probability s^rows; no band matches with (1 - s^rows)^bands; return a "
          "float for a scalar s, an array otherwise")
def s_curve(s, bands: int, rows: int):
    """P[two sets of Jaccard s share at least one band] = 1 − (1 − s^rows)^bands (float or array).

    Raises TypeError/ValueError unless bands and rows are ints >= 1, ValueError unless every s is in [0, 1].
    """
    bands = check_int("bands", bands, minimum=1)
    rows = check_int("rows", rows, minimum=1)
    s_array = np.asarray(s, dtype=float)
    if np.any((s_array < 0) | (s_array > 1)) or np.any(np.isnan(s_array)):
        raise ValueError(f"s must be in [0, 1], got {s}")
    p = 1.0 - (1.0 - s_array**rows) ** bands
    return float(p) if p.ndim == 0 else p


@exercise(5, "enumerate every (b, r) with b·r <= num_perm in datasketch's order; whole = B(1/r, b+1) / "
          "r, below = whole · I_{t^r}(1/r, b+1); FP = t - below, FN = whole - below; the first argmin"
          " of the weighted sum")
def optimal_lsh_params(threshold: float, num_perm: int,
                       weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) with bands·rows <= num_perm that minimise the weighted areas of error

        false positives  FP(b, r) = ∫_0^t  1 − (1 − s^r)^b  ds   (pairs below t that collide)
        false negatives  FN(b, r) = ∫_t^1  (1 − s^r)^b      ds   (pairs above t that do not)

    as datasketch's `MinHashLSH` does (it integrates numerically with scipy's `quad`). Here the
    integrals are in closed form: with u = s^r, ∫_0^t (1 − s^r)^b ds = (1/r)·B(1/r, b+1)·I_{t^r}(1/r, b+1),
    I the regularised incomplete beta function, so every (b, r) is scored in one vectorised call.
    Ties (never seen in practice) go to the smallest b, then the smallest r, as in datasketch's loop.
    Raises TypeError/ValueError unless threshold is a number in [0, 1] and num_perm an int >= 2, ValueError
    unless weights is a pair of numbers in [0, 1] summing to 1.
    """
    from scipy.special import beta, betainc

    threshold = check_number("threshold", threshold, low=0.0, high=1.0)
    num_perm = check_int("num_perm", num_perm, minimum=2)
    if (not isinstance(weights, (tuple, list)) or len(weights) != 2
            or not all(isinstance(w, (int, float)) and 0.0 <= w <= 1.0 for w in weights)
            or not math.isclose(sum(weights), 1.0)):
        raise ValueError(f"weights must be (false_positive_weight, false_negative_weight) in [0, 1] "
                         f"summing to 1, got {weights!r}")
    # every (b, r) with b·r <= num_perm, in datasketch's loop order: b ascending, then r ascending
    b = np.concatenate([np.full(num_perm // k, k) for k in range(1, num_perm + 1)]).astype(float)
    r = np.concatenate([np.arange(1, num_perm // k + 1) for k in range(1, num_perm + 1)]).astype(float)
    whole = beta(1.0 / r, b + 1.0) / r  # ∫_0^1 (1 − s^r)^b ds
    below = whole * betainc(1.0 / r, b + 1.0, threshold**r)  # ∫_0^t (1 − s^r)^b ds
    false_positive = threshold - below
    false_negative = whole - below
    error = weights[0] * false_positive + weights[1] * false_negative
    best = int(np.argmin(error))  # the first minimum
    return int(b[best]), int(r[best])


class MinHashLSH:
    """An index of MinHash signatures that returns the keys likely to be above a Jaccard threshold.

    The signature is cut into `bands` bands of `rows` values (chosen for the threshold by
    `optimal_lsh_params`, or given as `params`); each band is a key into its own hash table, and a
    query returns every key that shares at least one whole band with it. Candidates, not answers:
    verify them with the exact Jaccard (`near_dedup` does).
    Raises ValueError for a threshold outside [0, 1], num_perm < 2, bands·rows > num_perm or
    bands < 2 (one band is plain exact matching of r values; datasketch refuses it too).
    """

    def __init__(self, threshold: float = 0.9, num_perm: int = 128, *,
                 weights: tuple[float, float] = (0.5, 0.5), params: tuple[int, int] | None = None):
        self.threshold = check_number("threshold", threshold, low=0.0, high=1.0)
        self.num_perm = check_int("num_perm", num_perm, minimum=2)
        if params is None:
            self.bands, self.rows = optimal_lsh_params(self.threshold, self.num_perm, weights)
        else:
            if not isinstance(params, (tuple, list)) or len(params) != 2:
                raise TypeError(f"params must be a (bands, rows) pair, got {describe(params)}")
            self.bands = check_int("params[0] (bands)", params[0], minimum=1)
            self.rows = check_int("params[1] (rows)", params[1], minimum=1)
            if self.bands * self.rows > self.num_perm:
                raise ValueError(f"params must have bands·rows <= num_perm={self.num_perm}, got "
                                 f"{self.bands}·{self.rows} = {self.bands * self.rows}")
        if self.bands < 2:
            raise ValueError(f"threshold={self.threshold} with num_perm={self.num_perm} gives bands="
                             f"{self.bands} (< 2): lower the threshold or raise num_perm")
        self._tables: list[dict[bytes, list[Hashable]]] = [{} for _ in range(self.bands)]
        self._keys: dict[Hashable, int] = {}  # key -> its insertion number
        self._seed: int | None = None

    @property
    def params(self) -> tuple[int, int]:
        return self.bands, self.rows

    def _band_keys(self, minhash: object) -> list[bytes]:
        if not isinstance(minhash, MinHash):
            raise TypeError(f"minhash must be a MinHash, got {describe(minhash)}")
        if minhash.num_perm != self.num_perm:
            raise ValueError(f"minhash must have num_perm={self.num_perm}, got {minhash.num_perm}")
        if self._seed is not None and minhash.seed != self._seed:
            raise ValueError(f"minhash must have the seed of the indexed signatures ({self._seed}), got "
                             f"{minhash.seed}: different permutations never collide")
        values = minhash.hashvalues
        return [values[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def insert(self, key: Hashable, minhash: MinHash) -> None:
        """Index `minhash` under `key`. Raises ValueError for a key already in the index."""
        band_keys = self._band_keys(minhash)
        try:
            if key in self._keys:
                raise ValueError(f"key {key!r} is already in the index")
        except TypeError:
            raise TypeError(f"key must be hashable, got {describe(key)}") from None
        self._seed = minhash.seed
        self._keys[key] = len(self._keys)
        for table, band in zip(self._tables, band_keys):
            table.setdefault(band, []).append(key)

    def query(self, minhash: MinHash) -> list[Hashable]:
        """The keys that share at least one band with `minhash`, in insertion order."""
        found: set[Hashable] = set()
        for table, band in zip(self._tables, self._band_keys(minhash)):
            found.update(table.get(band, ()))
        return sorted(found, key=self._keys.__getitem__)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return (f"MinHashLSH(threshold={self.threshold}, num_perm={self.num_perm}, bands={self.bands}, "
                f"rows={self.rows}, size={len(self)})")


# ----------------------------------------------------------------------------------- near dedup
def similar_pairs(sets: Sequence[set], threshold: float) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, with exact Jaccard >= threshold: the O(N²) ground truth.

    Raises TypeError/ValueError unless threshold is a number in [0, 1], TypeError for an element of sets that
    is not a set.
    """
    threshold = check_number("threshold", threshold, low=0.0, high=1.0)
    return [(i, j) for i in range(len(sets)) for j in range(i + 1, len(sets))
            if jaccard(sets[i], sets[j]) >= threshold]


def candidate_pairs(signatures: Sequence[MinHash], *, threshold: float = 0.8,
                    params: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, that an LSH index for `threshold` puts in a common bucket, sorted.

    Each signature queries the index of the ones before it, then joins it: every pair once.
    Raises TypeError unless signatures is a sequence of MinHash, and what MinHashLSH raises for a bad
    threshold or params.
    """
    if isinstance(signatures, MinHash) or not isinstance(signatures, Sequence):
        raise TypeError(f"signatures must be a sequence of MinHash, got {describe(signatures)}")
    if not signatures:
        return []
    index = MinHashLSH(threshold, signatures[0].num_perm, params=params)
    pairs = []
    for j, signature in enumerate(signatures):
        pairs.extend((i, j) for i in index.query(signature))
        index.insert(j, signature)
    return sorted(pairs)


def _clusters(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the graph with these edges (union-find), each sorted, by first member."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the smallest index is the root
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


@exercise(6, "shingle each document, MinHash each shingle set, take the LSH candidate pairs, keep those "
          "whose exact Jaccard reaches the threshold, cluster them (_clusters), keep each cluster's "
          "first")
def near_dedup(docs: Sequence[str], *, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5,
               seed: int = 1) -> tuple[list[int], list[list[int]]]:
    """Near-duplicate removal: shingles -> MinHash -> LSH candidates -> exact Jaccard -> clusters.

    Returns (kept, clusters): `clusters` partitions range(len(docs)) into groups joined by verified
    pairs (exact Jaccard of the `ngram`-shingle sets >= threshold), each sorted, ordered by first
    member; `kept` is the first document of each cluster, ascending. Clusters are transitive (A~B,
    B~C puts A, B, C together even when J(A, C) < threshold), as in the dedup pipelines of C4-scale
    corpora. A pair that LSH never proposes is missed: the S-curve says how often.
    Raises TypeError unless docs is a sequence of str, ValueError for bad parameters.
    """
    docs = _check_docs("docs", docs)
    threshold = check_number("threshold", threshold, low=0.0, high=1.0)
    num_perm = check_int("num_perm", num_perm, minimum=2)
    ngram = check_int("ngram", ngram, minimum=1)
    sets = [shingles(doc, ngram) for doc in docs]
    signatures = [MinHash.from_set(s, num_perm, seed) for s in sets]
    verified = [(i, j) for i, j in candidate_pairs(signatures, threshold=threshold)
                if jaccard(sets[i], sets[j]) >= threshold]
    clusters = _clusters(len(docs), verified)
    return [cluster[0] for cluster in clusters], clusters


# ------------------------------------------------------------------------------ n-gram overlap
@exercise(3, "collect the hashes of every word n-gram (_ngrams of words) of the training documents into "
          "a set; a test document is flagged if any of its n-grams is in it")
def contaminated(train_docs: Sequence[str], test_docs: Sequence[str], *, n: int = 13) -> list[bool]:
    """For each test document: does it share at least one word n-gram with any training document?

    GPT-3's check (Brown et al. 2020, appendix C): lower-cased words, punctuation dropped (`words`).
    A test document of fewer than n words has no n-gram and is never flagged — GPT-3 used a smaller
    N (down to 8) for benchmarks of short examples; pass a smaller n for those.
    The training n-grams are kept as Python hashes of their text (64 bits: a false match needs about
    2^32 distinct n-grams to become likely).
    Raises TypeError unless train_docs and test_docs are sequences of str, TypeError/ValueError unless n is an
    int >= 1.
    """
    train_docs = _check_docs("train_docs", train_docs)
    test_docs = _check_docs("test_docs", test_docs)
    n = check_int("n", n, minimum=1)
    train_grams = {hash(gram) for doc in train_docs for gram in _ngrams(words(doc), n)}
    return [any(hash(gram) in train_grams for gram in _ngrams(words(doc), n)) for doc in test_docs]


def ngram_overlap(train_docs: Sequence[str], test_docs: Sequence[str], *, n: int = 13) -> float:
    """The fraction of test documents that share an n-gram with the training documents (`contaminated`).

    Raises TypeError for non-str documents, ValueError for no test documents or n < 1.
    """
    flags = contaminated(train_docs, test_docs, n=n)
    if not flags:
        raise ValueError("test_docs must hold at least one document, got 0")
    return sum(flags) / len(flags)
