"""Where training text comes from: a grammar, a model, a rewrite of existing text, or the real world —
and how to damage it on purpose.

Synthetic data is text that a program wrote. Three programs here, from most to least controlled:

    template synthesis   the story grammar of `llmlab.utils.stories`: every fact is known
    paraphrase           existing text rewritten by swapping phrases for synonyms: facts kept,
                         surface changed (a near-duplicate by construction)
    model synthesis      samples of a trained model (lesson 06's `generate` with temperature/top-p):
                         the distribution the model learned, tails cut by top-p — the input of
                         "model collapse" (Shumailov et al. 2024, Nature, "AI models collapse when
                         trained on recursively generated data")

and one corpus that no program here wrote: `real_documents`, the Python standard library's
docstrings (or any text file). `add_noise` injects character edits at a stated rate, measured by the
optimal-string-alignment edit distance (`edit_distance`): substitutions, deletions, insertions and
adjacent swaps each count 1 (Damerau 1964), so edits / len(text) ≈ rate.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np
import torch

from llmlab.kv_cache import generate  # lesson 06: cached sampling with temperature / top-k / top-p
from llmlab.transformer_block import GPT
from llmlab.utils.checks import check_int, check_number, describe
from llmlab.utils.data import load_corpus
from llmlab.utils.exercises import exercise
from llmlab.utils.stories import StoryFacts, generate_story_with_facts

__all__ = [
    "CHAR_EDITS",
    "SYNONYMS",
    "add_noise",
    "edit_distance",
    "model_samples",
    "paraphrase",
    "real_documents",
    "template_stories",
]

CHAR_EDITS = ("substitute", "delete", "insert", "swap")


# ----------------------------------------------------------------------------------- edit distance
@exercise(7, "an empty string costs the other's length; row by row over a (keep the two previous rows "
          "for swaps): substitution/deletion from the row above, a swap from two rows up, then "
          "insertions with a running minimum of tmp - j, plus j")
def edit_distance(a: str, b: str) -> int:
    """The optimal-string-alignment distance: the fewest substitutions, deletions, insertions and swaps
    of two adjacent characters that turn `a` into `b` (no substring edited twice).

    Row by row over `a`, each row vectorised over `b`: with d the previous row,
        tmp[j] = min(d[j] + 1, d[j-1] + [a_i != b_j], d2[j-2] + 1 if a_i a_(i-1) = b_(j-1) b_j swapped)
        row[j] = min over k <= j of tmp[k] + (j − k)  (insertions) = cummin(tmp − j) + j
    O(len(a)·len(b)) work in O(len(a)) numpy calls.
    Raises TypeError unless a and b are strs.
    """
    if not isinstance(a, str) or not isinstance(b, str):
        bad, value = ("a", a) if not isinstance(a, str) else ("b", b)
        raise TypeError(f"{bad} must be a str, got {describe(value)}")
    if not a or not b:
        return len(a) + len(b)
    x = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)  # code points, (n,)
    y = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)  # (m,)
    j = np.arange(len(y) + 1)
    before, row = None, j.copy()  # rows i-2 and i-1
    for i in range(1, len(x) + 1):
        tmp = np.empty(len(y) + 1, dtype=np.int64)
        tmp[0] = i
        tmp[1:] = np.minimum(row[1:] + 1, row[:-1] + (y != x[i - 1]))
        if before is not None and len(y) >= 2:
            swapped = (x[i - 1] == y[:-1]) & (x[i - 2] == y[1:])  # (m-1,): a_i = b_(j-1), a_(i-1) = b_j
            tmp[2:] = np.where(swapped, np.minimum(tmp[2:], before[:-2] + 1), tmp[2:])
        before, row = row, np.minimum.accumulate(tmp - j) + j
    return int(row[-1])


# ----------------------------------------------------------------------------------------- noise
def add_noise(text: str, *, rate: float, kinds: Sequence[str] = CHAR_EDITS, word_drop: float = 0.0,
              alphabet: str | None = None, seed: int | None = None) -> str:
    """`text` with about `rate`·len(text) character edits and a fraction `word_drop` of its words dropped.

    First each word (with the whitespace after it) is dropped with probability `word_drop`; then the
    characters are walked left to right and each is edited with a probability chosen so that the
    expected number of edits per character is `rate` (a swap uses up the next character too, so the
    per-character probability is rate / (1 − rate·q), q the share of swaps). The edit is drawn
    uniformly from `kinds`:
        substitute   the character becomes another one of `alphabet`
        delete       the character is removed
        insert       a character of `alphabet` is added after it
        swap         it trades places with the next character (another kind when they are equal)
    Each is one edit of `edit_distance`, so `edit_distance(text, noisy) / len(text)` ≈ rate; above
    rate ≈ 0.2 edits start to overlap and the distance counts a little less than was done.
    alphabet: the characters that substitutions and insertions draw from; default the distinct
        non-space characters of `text` itself, so noise never brings in a character that a tokenizer
        built on the clean text lacks.
    seed: an int for a reproducible result; None draws fresh randomness.
    rate 0 and word_drop 0 return `text` unchanged.
    Raises TypeError/ValueError naming the argument for bad input.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {describe(text)}")
    rate = check_number("rate", rate, low=0.0, high=1.0)
    word_drop = check_number("word_drop", word_drop, low=0.0, high=1.0)
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise TypeError(f"kinds must be a non-empty sequence of {CHAR_EDITS}, got {describe(kinds)}")
    for kind in kinds:
        if kind not in CHAR_EDITS:
            raise ValueError(f"kinds must hold only {', '.join(CHAR_EDITS)}, got {kind!r}")
    if seed is not None:
        seed = check_int("seed", seed)
    if alphabet is None:
        alphabet = "".join(sorted(set(text) - set(" \t\n\r\f\v"))) or "abcdefghijklmnopqrstuvwxyz"
    elif not isinstance(alphabet, str) or not alphabet:
        raise ValueError(f"alphabet must be a non-empty str, got {alphabet!r}")
    symbols = sorted(set(alphabet))
    if "substitute" in kinds and len(symbols) < 2:
        raise ValueError(f"alphabet must hold at least 2 distinct characters to substitute, got {alphabet!r}")
    rng = random.Random(seed)

    if word_drop > 0:  # words with their trailing whitespace; leading whitespace stays
        pieces = re.findall(r"\s+|\S+\s*", text)
        text = "".join(p for p in pieces if p.isspace() or rng.random() >= word_drop)
    if rate == 0:
        return text

    swap_share = kinds.count("swap") / len(kinds)
    p_edit = min(1.0, rate / (1.0 - rate * swap_share))
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if rng.random() >= p_edit:
            out.append(char)
            i += 1
            continue
        kind = kinds[rng.randrange(len(kinds))]
        if kind == "swap" and (i + 1 >= n or text[i + 1] == char):  # a swap would change nothing
            others = [k for k in kinds if k != "swap"]
            if not others:
                out.append(char)
                i += 1
                continue
            kind = others[rng.randrange(len(others))]
        if kind == "substitute":
            new = char
            while new == char:
                new = symbols[rng.randrange(len(symbols))]
            out.append(new)
        elif kind == "insert":
            out.append(char)
            out.append(symbols[rng.randrange(len(symbols))])
        elif kind == "swap":
            out.append(text[i + 1])
            out.append(char)
            i += 1  # the next character has moved: it is not edited again
        i += 1  # "delete" appends nothing
    return "".join(out)


# ----------------------------------------------------------------------------- template synthesis
def template_stories(n: int, *, seed: int = 0,
                     with_facts: bool = False) -> list[str] | list[tuple[str, StoryFacts]]:
    """`n` stories of the lab's grammar (`llmlab.utils.stories`), deterministic in `seed`; with_facts:
    (text, StoryFacts) pairs — the characters, things and sentences each story is made of.

    Raises TypeError/ValueError unless n is an int >= 0, TypeError unless seed is an int."""
    n = check_int("n", n, minimum=0)
    seed = check_int("seed", seed)
    rng = random.Random(seed)
    stories = [generate_story_with_facts(rng) for _ in range(n)]
    return stories if with_facts else [text for text, _ in stories]


# -------------------------------------------------------------------------------------- paraphrase
# Interchangeable phrases of the story grammar's English. Each group's phrases replace one another.
# Left out on purpose: words that are facts (names, things, places, colours), and swaps that read
# wrong somewhere in the corpus ("happy birthday" -> "glad birthday", "big sister" -> "large
# sister", "not so long ago" -> "not so once upon a time", "there it is" -> "there it's").
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("suddenly", "all of a sudden"), ("at last", "finally"), ("almost", "nearly"),
    ("often", "frequently"), ("softly", "quietly"), ("happily", "joyfully"),
    ("everyone", "everybody"), ("anyone", "anybody"), ("someone", "somebody"),
    ("sad", "unhappy"), ("scared", "frightened"), ("laughed", "giggled"), ("smiled", "grinned"),
    ("shouted", "yelled"), ("whispered", "murmured"), ("ran", "dashed"), ("began", "started"),
    ("loved", "adored"), ("hugged", "embraced"),
    ("did not", "didn't"), ("could not", "couldn't"), ("do not", "don't"), ("was not", "wasn't"),
    ("were not", "weren't"), ("is not", "isn't"), ("cannot", "can't"), ("i am", "i'm"),
)
_ALTERNATIVES = {phrase: tuple(p for p in group if p != phrase) for group in SYNONYMS for phrase in group}
_PHRASE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(_ALTERNATIVES, key=len, reverse=True))
                     + r")\b", re.IGNORECASE)


def paraphrase(text: str, *, rate: float = 1.0, seed: int | None = None) -> str:
    """`text` with each phrase of `SYNONYMS` replaced, with probability `rate`, by another of its group
    (a capital first letter stays capital): "Suddenly, Mia could not find her kite." ->
    "All of a sudden, Mia couldn't find her kite."

    Names, things, places and the order of sentences are never touched, so a story keeps its facts
    (`StoryFacts`) and its causal order; reordering sentences would break both ("Because it was
    raining, Tom took his umbrella" must come after the rain). The result is a near-duplicate by
    construction: the lesson measures how far its shingles move. Raises TypeError/ValueError.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {describe(text)}")
    rate = check_number("rate", rate, low=0.0, high=1.0)
    if seed is not None:
        seed = check_int("seed", seed)
    rng = random.Random(seed)

    def swap(match: re.Match) -> str:
        found = match.group(0)
        if rng.random() >= rate:
            return found
        options = _ALTERNATIVES[found.lower()]
        new = options[rng.randrange(len(options))]
        return new[0].upper() + new[1:] if found[0].isupper() else new

    return _PHRASE.sub(swap, text)


# ------------------------------------------------------------------------------------- real text
def real_documents(corpus: str = "python-docs", *, max_chars: int | None = 200_000, min_chars: int = 300,
                   seed: int = 0) -> list[str]:
    """Documents of a corpus that no grammar wrote: `load_corpus(corpus, max_chars)` (the standard
    library's docstrings by default, or any UTF-8 file) cut at blank lines into paragraphs, consecutive
    paragraphs joined until a document holds at least `min_chars` characters (the stories' size).
    A last piece shorter than `min_chars` is dropped.

    Raises ValueError for corpus='stories', TypeError/ValueError unless min_chars is an int >= 1, and what
    load_corpus raises for a bad corpus or max_chars.
    """
    if corpus == "stories":
        raise ValueError("corpus must not be 'stories': real_documents is the text that is not the grammar; "
                         "use template_stories for it")
    min_chars = check_int("min_chars", min_chars, minimum=1)
    text = load_corpus(corpus, max_chars, seed=seed)
    docs, current = [], []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        current.append(paragraph)
        if sum(len(p) + 2 for p in current) - 2 >= min_chars:
            docs.append("\n\n".join(current))
            current = []
    return docs


# -------------------------------------------------------------------------------- model synthesis
def model_samples(model, tokenizer, n: int, *, prompt: str, max_new_tokens: int | None = None,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  stop: str | None = None, batch_size: int = 32, seed: int = 0) -> list[str]:
    """`n` texts sampled from a lab GPT: `prompt` + what the model writes after it.

    tokenizer: anything with `encode(str) -> list[int]` and `decode(list[int]) -> str` (a
        `CharTokenizer`, a `BPETokenizer`).
    max_new_tokens: default, as many as the context holds after the prompt (block_size − prompt).
    temperature, top_k, top_p: lesson 05's sampling knobs, through lesson 06's cached `generate`
        (temperature 0 = greedy: every sample is the same).
    stop: cut each text at the first `stop` after the prompt (e.g. "\\n\\n", the end of a story).
    seed: a `torch.Generator` on the model's device, seeded once: the same seed gives the same texts.
    Raises TypeError/ValueError naming the argument; lesson 06 raises for prompt + max_new_tokens past
    block_size.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lab GPT (llmlab.transformer_block.GPT), got {describe(model)}")
    if not (hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")):
        raise TypeError(f"tokenizer must have encode and decode methods, got {describe(tokenizer)}")
    n = check_int("n", n, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty str, got {prompt!r}")
    if stop is not None and (not isinstance(stop, str) or not stop):
        raise ValueError(f"stop must be a non-empty str or None, got {stop!r}")
    prompt_ids = list(tokenizer.encode(prompt))
    if not prompt_ids:
        raise ValueError(f"prompt must encode to at least one token, got {prompt!r}")
    if max_new_tokens is None:
        max_new_tokens = model.config.block_size - len(prompt_ids)
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    texts: list[str] = []
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        ids = torch.tensor([prompt_ids] * rows, dtype=torch.long, device=device)  # (rows, T)
        out = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       generator=generator)  # (rows, T + max_new_tokens)
        for row in out[:, len(prompt_ids):].tolist():
            new = tokenizer.decode(row)
            if stop is not None and stop in new:
                new = new[:new.index(stop)]
            texts.append(prompt + new)
    return texts
