"""Lesson 16 specification: MinHash is bit-identical to datasketch's legacy scheme and estimates Jaccard
with error ≈ 1/√K; the LSH picks datasketch's (bands, rows) and returns its candidates; the S-curve
is what Monte Carlo measures; near-dedup finds the planted near-duplicates that brute force finds and
keeps every unique document; exact dedup keeps first occurrences; the 13-gram check flags exactly the
leaked documents; noise edits the stated fraction of characters; paraphrases keep a story's facts;
model synthesis is deterministic in its seed; bad input is refused by name."""

import math
import random
import re

import numpy as np
import pytest
import torch

from llmlab.synthetic_data import (
    CHAR_EDITS,
    MinHash,
    MinHashLSH,
    add_noise,
    candidate_pairs,
    contaminated,
    edit_distance,
    exact_dedup,
    jaccard,
    model_samples,
    near_dedup,
    ngram_overlap,
    optimal_lsh_params,
    paraphrase,
    real_documents,
    s_curve,
    shingles,
    similar_pairs,
    template_stories,
    words,
)
from llmlab.transformer_block import GPT, gpt2_config
from llmlab.utils.data import CharTokenizer

datasketch = pytest.importorskip("datasketch")
from datasketch.lsh import _optimal_param  # noqa: E402

# compared with datasketch 2.0.0 (its scheme="legacy" is the only scheme of the versions before it)


def _legacy(items, num_perm=128, seed=1):
    """datasketch's MinHash of a set, with the pre-2.0 scheme that ours reproduces."""
    try:
        minhash = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    except TypeError:  # datasketch < 2.0: no `scheme` argument, legacy was the only scheme
        minhash = datasketch.MinHash(num_perm=num_perm, seed=seed)
    for item in items:
        minhash.update(item)
    return minhash


@pytest.fixture(scope="module")
def stories():
    return template_stories(40, seed=3)


def sets_with_jaccard(size: int, overlap: int) -> tuple[set, set]:
    """Two sets of `size` elements sharing `overlap`: J = overlap / (2·size − overlap)."""
    a = {f"x{i}".encode() for i in range(size)}
    b = {f"x{i}".encode() for i in range(size - overlap, 2 * size - overlap)}
    return a, b


# ------------------------------------------------------------------------------------------ MinHash
@pytest.mark.parametrize("num_perm", [1, 16, 128, 257])
@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1])
def test_minhash_hashvalues_are_bit_identical_to_datasketch_legacy(num_perm, seed, stories):
    texts = [stories[0], stories[1], "", "Ünïcode wörds — and ümlauts, twice: ümlauts"]
    for text in texts:
        items = shingles(text, 3)
        ours = MinHash.from_set(items, num_perm, seed)
        theirs = _legacy(items, num_perm, seed)
        assert ours.hashvalues.dtype == np.uint64
        np.testing.assert_array_equal(ours.hashvalues, theirs.hashvalues)
    a, b = MinHash(num_perm, seed).permutations
    np.testing.assert_array_equal(a, theirs.permutations[0])
    np.testing.assert_array_equal(b, theirs.permutations[1])


def test_minhash_update_one_at_a_time_equals_update_batch():
    items = [f"item {i}".encode() for i in range(50)]
    one, batch = MinHash(64, 5), MinHash(64, 5)
    for item in items:
        one.update(item)
    batch.update_batch(items)
    assert one == batch
    np.testing.assert_array_equal(one.hashvalues, _legacy(items, 64, 5).hashvalues)
    assert MinHash(64, 5).is_empty() and not one.is_empty()


def test_the_uint64_wraparound_of_a_times_h_matters():
    """a·h + b overflows 2^64 for most permutations: computing it exactly (Python ints) gives other values,
    so bit-identity with datasketch proves the wrap-around is reproduced."""
    item = b"the quick brown fox jumps"
    ours = MinHash.from_set([item], 32, 1)
    a, b = ours.permutations
    h = int.from_bytes(__import__("hashlib").sha1(item).digest()[:4], "little")
    exact = np.array([((int(ak) * h + int(bk)) % (2**61 - 1)) & (2**32 - 1) for ak, bk in zip(a, b)],
                     dtype=np.uint64)
    assert np.count_nonzero(exact != ours.hashvalues) > 16
    np.testing.assert_array_equal(ours.hashvalues, _legacy([item], 32, 1).hashvalues)


def test_jaccard_estimate_equals_datasketch_and_its_error_is_about_one_over_sqrt_k():
    a, b = sets_with_jaccard(200, 120)  # J = 120 / 280
    exact = jaccard(a, b)
    assert exact == pytest.approx(120 / 280)
    K, trials = 64, 150
    estimates = []
    for seed in range(trials):
        ma, mb = MinHash.from_set(a, K, seed), MinHash.from_set(b, K, seed)
        estimates.append(ma.jaccard(mb))
        if seed < 5:
            assert ma.jaccard(mb) == _legacy(a, K, seed).jaccard(_legacy(b, K, seed))
    estimates = np.array(estimates)
    sigma = math.sqrt(exact * (1 - exact) / K)  # a binomial proportion over K permutations: < 0.5/√K
    assert abs(estimates.mean() - exact) < 4 * sigma / math.sqrt(trials)
    assert estimates.std() == pytest.approx(sigma, rel=0.2)
    assert sigma <= 0.5 / math.sqrt(K)


# -------------------------------------------------------------------------------------------- LSH
@pytest.mark.parametrize("num_perm", [16, 64, 128, 250])
def test_optimal_params_equal_datasketch(num_perm):
    for threshold in (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
        for weights in ((0.5, 0.5), (0.2, 0.8), (0.9, 0.1)):
            assert optimal_lsh_params(threshold, num_perm, weights) == \
                _optimal_param(threshold, num_perm, *weights), (threshold, weights)
    lsh = MinHashLSH(0.8, num_perm)
    theirs = datasketch.MinHashLSH(threshold=0.8, num_perm=num_perm)
    assert lsh.params == (theirs.b, theirs.r)


def test_the_closed_form_error_areas_equal_numerical_integration():
    """∫_0^t (1 − s^r)^b ds = (1/r)·B(1/r, b+1)·I_{t^r}(1/r, b+1): the identity the parameter search uses."""
    from scipy.integrate import quad
    from scipy.special import beta, betainc

    for b, r, t in [(20, 5, 0.5), (9, 13, 0.8), (1, 1, 0.3), (128, 1, 0.9)]:
        numeric = quad(lambda s, b=b, r=r: (1 - s**r) ** b, 0.0, t)[0]
        closed = beta(1 / r, b + 1) / r * betainc(1 / r, b + 1, t**r)
        assert closed == pytest.approx(numeric, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("threshold,num_perm", [(0.5, 64), (0.8, 128)])
def test_lsh_candidates_equal_datasketch_query_results(threshold, num_perm, stories):
    docs = stories[:25] + [add_noise(s, rate=0.03, seed=i) for i, s in enumerate(stories[:15])] \
        + [paraphrase(s, seed=i) for i, s in enumerate(stories[:10])]
    ours = MinHashLSH(threshold, num_perm)
    theirs = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
    signatures = []
    for key, doc in enumerate(docs):
        items = shingles(doc)
        signatures.append((MinHash.from_set(items, num_perm), _legacy(items, num_perm)))
        ours.insert(key, signatures[-1][0])
        theirs.insert(key, signatures[-1][1])
    n_found = 0
    for mine, reference in signatures:
        found = ours.query(mine)
        assert set(found) == set(theirs.query(reference))
        assert found == sorted(found)  # insertion order
        n_found += len(found)
    assert n_found > len(docs)  # more than each document finding itself


@pytest.mark.parametrize("bands,rows", [(8, 4), (16, 2)])
def test_s_curve_matches_monte_carlo(bands, rows):
    trials = 300
    for overlap in (10, 40, 60, 80, 95):  # J = 0.05, 0.25, 0.43, 0.67, 0.90
        a, b = sets_with_jaccard(100, overlap)
        s = jaccard(a, b)
        hits = 0
        for seed in range(trials):
            ma = MinHash.from_set(a, bands * rows, seed)
            mb = MinHash.from_set(b, bands * rows, seed)
            bands_a = ma.hashvalues.reshape(bands, rows)
            bands_b = mb.hashvalues.reshape(bands, rows)
            hits += bool(np.any(np.all(bands_a == bands_b, axis=1)))
        p = s_curve(s, bands, rows)
        assert hits / trials == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / trials) + 0.01), s
    s = np.linspace(0, 1, 11)
    curve = s_curve(s, 20, 5)
    assert curve[0] == 0 and curve[-1] == 1 and np.all(np.diff(curve) > 0)
    assert s_curve((1 / 20) ** (1 / 5), 20, 5) == pytest.approx(1 - (1 - 1 / 20) ** 20)  # the knee


# ---------------------------------------------------------------------------------------- dedup
def planted_corpus(seed: int = 0):
    """Unique stories, then near-copies of some of them (noise, paraphrase, a dropped sentence), shuffled.
    Returns (docs, groups): groups[i] = the index of the original story that document i copies."""
    rng = random.Random(seed)
    originals = template_stories(60, seed=100 + seed)
    docs, groups = list(originals), list(range(len(originals)))
    for k in range(20):
        source = originals[k]
        if k % 3 == 0:
            variant = add_noise(source, rate=0.002, seed=k)
        elif k % 3 == 1:
            variant = paraphrase(source, rate=0.3, seed=k)
        else:
            variant = source.split(". ", 1)[1]  # the first sentence dropped
        docs.append(variant)
        groups.append(k)
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [docs[i] for i in order], [groups[i] for i in order]


def test_near_dedup_finds_the_pairs_that_brute_force_finds_and_keeps_every_unique_document():
    docs, groups = planted_corpus()
    threshold = 0.5
    kept, clusters = near_dedup(docs, threshold=threshold)
    truth = similar_pairs([shingles(d) for d in docs], threshold)
    planted = {(i, j) for i in range(len(docs)) for j in range(i + 1, len(docs)) if groups[i] == groups[j]}
    assert set(truth) == planted  # the grammar makes no other pair this similar
    # the planted pairs are far enough above the threshold that LSH should miss none of them: by the
    # S-curve, the expected number of misses is below 1e-3
    bands, rows = optimal_lsh_params(threshold, 128)
    similarity = [jaccard(shingles(docs[i]), shingles(docs[j])) for i, j in planted]
    assert sum(1 - s_curve(s, bands, rows) for s in similarity) < 1e-3
    found = {(c[a], c[b]) for c in clusters for a in range(len(c)) for b in range(a + 1, len(c))}
    precision = len(found & planted) / len(found)
    recall = len(found & planted) / len(planted)
    assert (precision, recall) == (1.0, 1.0)
    assert sorted(i for c in clusters for i in c) == list(range(len(docs)))  # a partition
    assert kept == sorted(c[0] for c in clusters)
    assert len(kept) == 60 and sorted({groups[i] for i in kept}) == list(range(60))  # one per story
    # the candidates are a small part of all pairs: that is what LSH is for
    signatures = [MinHash.from_set(shingles(d)) for d in docs]
    assert len(candidate_pairs(signatures, threshold=threshold)) < 0.05 * len(docs) ** 2 / 2


def test_near_dedup_clusters_chain_and_keep_the_first():
    base = " ".join(f"word{i}" for i in range(40))
    docs = ["something else entirely, nothing in common with the rest", base,
            base.replace("word39", "changed"), base.replace("word39", "changed").replace("word0 ", "x ")]
    kept, clusters = near_dedup(docs, threshold=0.8, ngram=3)
    assert clusters == [[0], [1, 2, 3]]
    assert kept == [0, 1]
    assert near_dedup([], threshold=0.8) == ([], [])


def test_exact_dedup_keeps_first_occurrences_ignoring_case_and_whitespace():
    docs = ["The cat sat.", "a dog", "the  CAT sat.\n", "The cat sat!", "A dog ", "\tthe cat sat."]
    assert exact_dedup(docs) == [0, 1, 3]
    assert exact_dedup([]) == []


def test_shingles_are_word_ngrams_as_bytes():
    assert shingles("The cat, the CAT!", 2) == {b"the cat", b"cat the"}
    assert shingles("one two three four five six", 5) == {b"one two three four five",
                                                          b"two three four five six"}
    assert shingles("too short", 5) == {b"too short"}  # shorter than n: one shingle
    assert shingles("", 5) == set() and shingles("...", 5) == set()
    assert words("Don't RUN!") == ["don", "t", "run"]


# ------------------------------------------------------------------------------------ leak check
def test_ngram_overlap_on_hand_made_examples():
    train = ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
             "alpha beta gamma"]
    test = [
        "ONE two three, four five six seven eight nine ten eleven twelve thirteen!",  # 13-gram, case/punct
        "zero one two three four five six seven eight nine ten eleven twelve",  # only 12 shared words
        "two three four five six seven eight nine ten eleven twelve thirteen fourteen and more",  # shifted
        "alpha beta gamma",  # a short document has no 13-gram
    ]
    assert contaminated(train, test) == [True, False, True, False]
    assert ngram_overlap(train, test) == 0.5
    assert ngram_overlap(train, test, n=3) == 1.0
    assert ngram_overlap(train[1:], test) == 0.0


def test_ngram_overlap_catches_leaked_stories_and_the_grammars_stock_phrases():
    """A leaked story (verbatim or paraphrased) is flagged. So are many fresh stories of the same grammar:
    its templates share 13-word stock phrases ("the sky turned dark and the wind began to howl ..."),
    which the check cannot tell from a leak; none shares a 50-gram."""
    train = template_stories(30, seed=7)
    fresh = template_stories(20, seed=8)
    leaked = [train[3], paraphrase(train[5], seed=0)]
    assert contaminated(train, leaked) == [True, True]
    assert ngram_overlap(train, fresh) > 0.2
    assert ngram_overlap(train, fresh, n=50) == 0.0
    assert ngram_overlap(train, [train[3]], n=50) == 1.0


# ------------------------------------------------------------------------------------- generation
def _osa(a: str, b: str) -> int:
    """Textbook optimal-string-alignment distance, one cell at a time."""
    d = [[max(i, j) if min(i, j) == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def test_edit_distance_is_the_optimal_string_alignment_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("ab", "ba") == 1  # a swap is one edit
    assert edit_distance("ca", "abc") == 3  # OSA edits no substring twice (true Damerau: 2)
    assert edit_distance("", "abc") == 3 and edit_distance("same", "same") == 0
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abc") for _ in range(rng.randrange(9)))
        b = "".join(rng.choice("abc") for _ in range(rng.randrange(9)))
        assert edit_distance(a, b) == _osa(a, b), (a, b)


@pytest.fixture(scope="module")
def clean_text():
    return " ".join(template_stories(6, seed=11))  # ~4,000 characters


@pytest.mark.parametrize("kinds,rate", [(CHAR_EDITS, 0.02), (CHAR_EDITS, 0.1), (CHAR_EDITS, 0.2),
                                        (("substitute",), 0.1), (("delete",), 0.1), (("insert",), 0.1),
                                        (("swap",), 0.1)])
def test_add_noise_edits_the_stated_fraction_of_characters(kinds, rate, clean_text):
    noisy = add_noise(clean_text, rate=rate, kinds=kinds, seed=1)
    measured = edit_distance(clean_text, noisy) / len(clean_text)
    sigma = math.sqrt(rate * (1 - rate) / len(clean_text))
    assert abs(measured - rate) < 4 * sigma + 0.002, measured


def test_add_noise_is_deterministic_in_its_seed_and_rate_zero_is_identity(clean_text):
    noisy = add_noise(clean_text, rate=0.1, seed=3)
    assert noisy == add_noise(clean_text, rate=0.1, seed=3)
    assert noisy != add_noise(clean_text, rate=0.1, seed=4)
    assert set(noisy) <= set(clean_text)  # the default alphabet is the text's own characters
    assert add_noise(clean_text, rate=0.0, seed=3) == clean_text
    assert add_noise(clean_text, rate=0.0) == clean_text
    assert set(add_noise("aaaa", rate=1.0, kinds=("insert",), alphabet="xy", seed=0)[1::2]) <= {"x", "y"}


def test_add_noise_drops_the_stated_fraction_of_words(clean_text):
    n_words = len(clean_text.split())
    dropped = add_noise(clean_text, rate=0.0, word_drop=0.2, seed=0)
    fraction = 1 - len(dropped.split()) / n_words
    assert fraction == pytest.approx(0.2, abs=4 * math.sqrt(0.2 * 0.8 / n_words))
    kept_words = dropped.split()  # the survivors, in order, untouched
    it = iter(clean_text.split())
    assert all(any(w == x for x in it) for w in kept_words)


def test_template_stories_are_deterministic_and_carry_their_facts():
    assert template_stories(5, seed=1) == template_stories(5, seed=1)
    assert template_stories(5, seed=1) != template_stories(5, seed=2)
    for text, facts in template_stories(5, seed=1, with_facts=True):
        assert text == " ".join(facts.sentences)


def test_paraphrase_changes_the_words_and_keeps_the_facts():
    changed = 0
    for i, (text, facts) in enumerate(template_stories(30, seed=5, with_facts=True)):
        new = paraphrase(text, seed=i)
        assert new == paraphrase(text, seed=i)
        assert paraphrase(text, rate=0.0, seed=i) == text
        for name in [c.name for c in facts.characters] + list(facts.things):
            mentions = re.compile(rf"\b{re.escape(name)}\b")
            assert len(mentions.findall(new)) == len(mentions.findall(text))
        assert len(re.findall(r"[.!?]", new)) == len(re.findall(r"[.!?]", text))  # same sentences
        changed += new != text
    assert changed >= 25
    assert paraphrase("Suddenly, Mia could not find her kite.", seed=0) == \
        "All of a sudden, Mia couldn't find her kite."
    assert paraphrase("I'm scared.", seed=0) == "I am frightened."


def test_real_documents_are_prose_that_the_grammar_did_not_write(tmp_path):
    docs = real_documents(max_chars=30_000)
    assert len(docs) >= 20
    assert all(len(d) >= 300 for d in docs)
    assert not any("Once upon a time" in d for d in docs)
    story_words = {w for s in template_stories(50, seed=0) for w in words(s)}
    doc_words = {w for d in docs for w in words(d)}
    assert len(doc_words - story_words) > len(doc_words) / 2  # mostly another vocabulary
    path = tmp_path / "mine.txt"
    path.write_text("First paragraph, long enough to stand alone.\n\nA second one.\n\n"
                    "And a third, to finish.\n")
    assert real_documents(str(path), min_chars=35) == [
        "First paragraph, long enough to stand alone.",
        "A second one.\n\nAnd a third, to finish.",
    ]


def test_model_samples_shapes_and_determinism():
    tokenizer = CharTokenizer.from_text("abcdefgh \n")
    torch.manual_seed(0)
    model = GPT(gpt2_config(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=1, n_head=2, d_model=16))
    texts = model_samples(model, tokenizer, 5, prompt="ab", max_new_tokens=10, batch_size=2, seed=0)
    assert len(texts) == 5 and all(t.startswith("ab") and len(t) == 12 for t in texts)
    assert texts == model_samples(model, tokenizer, 5, prompt="ab", max_new_tokens=10, batch_size=2, seed=0)
    assert texts != model_samples(model, tokenizer, 5, prompt="ab", max_new_tokens=10, batch_size=2, seed=1)
    assert len(set(texts)) > 1
    greedy = model_samples(model, tokenizer, 3, prompt="ab", max_new_tokens=10, temperature=0.0)
    assert len(set(greedy)) == 1
    full = model_samples(model, tokenizer, 2, prompt="abc", top_p=0.9, seed=2)
    assert all(len(t) == 24 for t in full)  # the whole context by default
    for text in model_samples(model, tokenizer, 8, prompt="ab", max_new_tokens=20, stop=" ", seed=3):
        assert " " not in text[2:]
    assert model_samples(model, tokenizer, 0, prompt="a") == []


# ---------------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_by_name():
    tokenizer = CharTokenizer.from_text("ab")
    model = GPT(gpt2_config(vocab_size=2, block_size=8, n_layer=1, n_head=2, d_model=16))
    cases = [
        (lambda: exact_dedup("not a list"), TypeError, "docs"),
        (lambda: exact_dedup(["ok", 3]), TypeError, r"docs\[1\]"),
        (lambda: shingles(b"bytes"), TypeError, "text"),
        (lambda: shingles("a b", n=0), ValueError, "n"),
        (lambda: MinHash(num_perm=0), ValueError, "num_perm"),
        (lambda: MinHash(seed=-1), ValueError, "seed"),
        (lambda: MinHash(seed=2**32), ValueError, "seed"),
        (lambda: MinHash().update("text"), TypeError, "data"),
        (lambda: MinHash(16).jaccard(MinHash(32)), ValueError, "other"),
        (lambda: MinHash(16, 1).jaccard(MinHash(16, 2)), ValueError, "other"),
        (lambda: MinHashLSH(1.5, 128), ValueError, "threshold"),
        (lambda: MinHashLSH(0.5, 1), ValueError, "num_perm"),
        (lambda: MinHashLSH(0.99, 4), ValueError, "bands"),
        (lambda: MinHashLSH(0.5, 16, params=(5, 4)), ValueError, "params"),
        (lambda: MinHashLSH(0.5, 16, weights=(0.6, 0.6)), ValueError, "weights"),
        (lambda: MinHashLSH(0.5, 16).insert(0, MinHash(32)), ValueError, "minhash"),
        (lambda: MinHashLSH(0.5, 16).query("sig"), TypeError, "minhash"),
        (lambda: s_curve(1.2, 4, 4), ValueError, "s"),
        (lambda: s_curve(0.5, 0, 4), ValueError, "bands"),
        (lambda: near_dedup(["a"], threshold=-0.1), ValueError, "threshold"),
        (lambda: near_dedup(["a"], ngram=0), ValueError, "ngram"),
        (lambda: ngram_overlap(["a"], []), ValueError, "test_docs"),
        (lambda: ngram_overlap("train", ["a"]), TypeError, "train_docs"),
        (lambda: ngram_overlap(["a"], ["b"], n=0), ValueError, "n"),
        (lambda: jaccard([1], {1}), TypeError, "a"),
        (lambda: add_noise("text", rate=1.5), ValueError, "rate"),
        (lambda: add_noise("text", rate=0.1, kinds=("typo",)), ValueError, "kinds"),
        (lambda: add_noise("text", rate=0.1, kinds="swap"), TypeError, "kinds"),
        (lambda: add_noise("text", rate=0.1, word_drop=-1), ValueError, "word_drop"),
        (lambda: add_noise("text", rate=0.1, alphabet="a"), ValueError, "alphabet"),
        (lambda: add_noise(5, rate=0.1), TypeError, "text"),
        (lambda: edit_distance("a", None), TypeError, "b"),
        (lambda: paraphrase("text", rate=2), ValueError, "rate"),
        (lambda: template_stories(-1), ValueError, "n"),
        (lambda: real_documents("stories"), ValueError, "corpus"),
        (lambda: model_samples("model", tokenizer, 1, prompt="a"), TypeError, "model"),
        (lambda: model_samples(model, "tok", 1, prompt="a"), TypeError, "tokenizer"),
        (lambda: model_samples(model, tokenizer, 1, prompt=""), ValueError, "prompt"),
        (lambda: model_samples(model, tokenizer, 1, prompt="a", stop=""), ValueError, "stop"),
        (lambda: model_samples(model, tokenizer, 1, prompt="a", max_new_tokens=20), ValueError, "block_size"),
        (lambda: model_samples(model, tokenizer, 1, prompt="a", top_p=1.5), ValueError, "top_p"),
    ]
    for call, error, name in cases:
        with pytest.raises(error, match=name):
            call()


# ------------------------------------------------------------------------------------ the demo's parts
@pytest.fixture(scope="module")
def real_docs():
    return real_documents(max_chars=40_000)


def test_duplicated_corpus_keeps_the_size_and_dedup_removes_exactly_the_copies(real_docs):
    from llmlab.synthetic_data import experiments as ex

    docs = real_docs[:40]
    corpus, sources = ex.duplicated_corpus(docs, 0.5, n_sources=2, seed=0)
    assert len(corpus) == len(docs) and sources == docs[:2]
    kept, counts = ex.dedup_corpus(corpus, threshold=0.5, num_perm=128)
    assert counts["removed_exact"] >= 9  # 20 slots: 2 sources + 18 copies, half of them exact
    assert counts["removed_exact"] + counts["removed_near"] == 18
    assert len(kept) == 22 and set(docs[2:22]) <= set(kept)  # every single document survives
    representatives = [d for d in kept if d not in docs[2:22]]  # one per source: the first in corpus order
    assert sorted(max(range(2), key=lambda i: jaccard(shingles(d), shingles(sources[i])))
                  for d in representatives) == [0, 1]
    assert ex.duplicated_corpus(docs, 0.0, n_sources=2, seed=0)[0] == docs


def test_cross_split_dedup_finds_the_leaked_copies_and_keeps_the_clean_documents(real_docs):
    from llmlab.synthetic_data import experiments as ex

    data = dict(train=real_docs[:30], val=real_docs[30:50])
    val, leaked = ex.leaked_split(data, 0.25, seed=0)
    assert len(val) == 20 and sum(leaked) == 5
    found = ex.cross_split_dedup(data["train"], val, threshold=0.5, num_perm=128, ngram=5)
    train_sets = [shingles(d) for d in data["train"]]
    brute = [any(jaccard(shingles(d), t) >= 0.5 for t in train_sets) for d in val]
    assert found == brute  # LSH + verification = brute force here
    assert all(k for f, k in zip(found, leaked) if f) and sum(found) >= 4  # only leaked copies, most of them
    flags13 = ex.ngram_flags(data["train"], val, 13)
    assert all(f for f, k in zip(flags13, leaked) if k)  # a copy shares 13-grams with its original


def test_detection_against_brute_force_on_planted_copies(real_docs):
    from llmlab.synthetic_data import experiments as ex

    docs = ex.planted_near_duplicates(real_docs[:30], 12, [0.001, 0.01, 0.04], seed=0)
    out = ex.detection(docs, threshold=0.7, num_perm=128, ngram=5)
    assert out["all_pairs"] == 42 * 41 // 2 and out["true_pairs"] >= 4
    assert out["verified"]["precision"] == 1.0  # verification by exact Jaccard admits no false pair
    assert out["candidates"]["recall"] == out["verified"]["recall"] >= 0.75
    assert sum(b["pairs"] for b in out["s_curve"]) <= out["all_pairs"]
    assert all(0 <= b["measured"] <= 1 and 0 <= b["predicted"] <= 1 for b in out["s_curve"])
    t = ex.timing(docs, [10, 20, 40], threshold=0.7, num_perm=64, ngram=5)
    assert len(t["brute_s"]) == len(t["lsh_s"]) == 3


def test_text_stats_on_a_hand_example():
    from collections import Counter

    from llmlab.synthetic_data import experiments as ex

    stats = ex.text_stats("a b a b", Counter({"a": 1000, " ": 1000, "b": 1}), n_words=10)
    assert stats["distinct_words"] == 2 and stats["words"] == 4
    assert stats["word_entropy"] == pytest.approx(1.0)
    assert stats["rare_char_share"] == pytest.approx(2 / 7)  # "b" is rare in the reference
    expected = -(3 / 7) * math.log2(3 / 7) - 2 * (2 / 7) * math.log2(2 / 7)
    assert stats["char_entropy"] == pytest.approx(expected)


def test_text_loss_is_the_models_loss_on_consecutive_windows():
    from llmlab.synthetic_data import experiments as ex

    tok = CharTokenizer.from_text("abcdef \n")
    torch.manual_seed(0)
    model = GPT(gpt2_config(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, d_model=16)).eval()
    docs = ["abc def", "fed cba abc"]
    ids = ex.ids_of(docs, tok)
    assert tok.decode(ids.tolist()) == "abc def\n\nfed cba abc\n\n"
    n = (len(ids) - 1) // 8
    with torch.no_grad():
        _, expected = model(ids[: n * 8].view(n, 8), ids[1: n * 8 + 1].view(n, 8))
    assert ex.text_loss(model, docs, tok, 8, batch=1) == pytest.approx(float(expected), rel=1e-5)
    assert ex.text_loss(model, docs, tok, 8, input_docs=docs) == ex.text_loss(model, docs, tok, 8)
    noisy = [add_noise(d, rate=0.3, kinds=("substitute",), seed=i) for i, d in enumerate(docs)]
    assert ex.text_loss(model, docs, tok, 8, input_docs=noisy) != ex.text_loss(model, docs, tok, 8)
    with pytest.raises(ValueError, match="input_docs"):
        ex.text_loss(model, docs, tok, 8, input_docs=["abc", "fed"])
    memo = ex.memorisation(model, ["abcdefabcdef"], tok, prompt_chars=4, new_chars=4, per_doc=2)
    assert memo["prompts"] == 2 and 0.0 <= memo["verbatim"] <= memo["char_match"] <= 1.0


def test_demo_break_flags_run(tmp_path):
    from llmlab.synthetic_data import demo

    results = demo.main(["--quick", "--out", str(tmp_path), "--no-dedup", "--dup-rate", "0.9",
                         "--noise-rate", "0", "--generations", "1"])
    dup = results["duplication"]
    assert dup["rates"] == [0.0, 0.9] and "after" not in dup["90%"]
    assert results["leakage"]["removed"] == 0
    assert results["leakage"]["after_dedup"] == results["leakage"]["contaminated_val"]
    assert results["noise"]["noisy_minus_clean_on_noisy_test"] == [0.0, 0.0]  # rate 0: the same training
    assert [len(rows) for rows in results["collapse"]["chains"].values()] == [2, 2]
    assert "dedup" not in results["key_insights"]
    assert len(list(tmp_path.glob("*.png"))) == 6
    for bad in (["--corpus", "stories"], ["--dup-rate", "1.5"], ["--generations", "0"]):
        with pytest.raises(SystemExit):
            demo.main(["--quick", *bad])
