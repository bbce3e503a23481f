"""Lesson 11 specification: the objectives' losses equal F.cross_entropy on the right positions and
transformers' labels convention; BERT masking is bit-identical to transformers' collator with the same
generator and has the stated statistics; the prefix-LM mask has its closed form and the causality it
promises on the lab GPT; span corruption loses nothing; whole words stay whole; bad input is refused."""

import inspect
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmlab.pretraining_objectives import (
    causal_lm_loss,
    mask_tokens,
    masked_lm_loss,
    prefix_lm_loss,
    prefix_lm_mask,
    span_corrupt,
    span_noise_mask,
    whole_word_mask,
)
from llmlab.transformer_block import GPT, gpt2_config

transformers = pytest.importorskip("transformers")
from transformers import DataCollatorForLanguageModeling, GPT2Config, GPT2LMHeadModel  # noqa: E402

CHECKED_TRANSFORMERS = "5.25.0"  # the version whose collator these draws were compared with


def random_logits(B=3, T=9, V=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, V, generator=g), torch.randint(V, (B, T), generator=g)


# ------------------------------------------------------------------------------------ causal LM
def test_causal_lm_loss_is_cross_entropy_of_the_shifted_targets():
    logits, ids = random_logits()
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 17), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(causal_lm_loss(logits, ids), expected)


def test_causal_lm_loss_equals_transformers_labels_convention():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(50, (2, 12))
    labels = ids.clone()
    labels[0, :5] = -100  # a prompt that carries no loss
    with torch.no_grad():
        plain = model(ids, labels=ids)
        prompted = model(ids, labels=labels)
    torch.testing.assert_close(causal_lm_loss(plain.logits, ids), plain.loss)
    torch.testing.assert_close(causal_lm_loss(prompted.logits, labels), prompted.loss)


# ------------------------------------------------------------------------------------ masked LM
class StubTokenizer:
    """What the collator reads from a tokenizer when special_tokens_mask is given."""

    mask_token = "[MASK]"
    is_fast = True

    def __init__(self, vocab_size, mask_token_id):
        self.vocab_size, self.mask_token_id = vocab_size, mask_token_id

    def convert_tokens_to_ids(self, token):
        return self.mask_token_id

    def __len__(self):
        return self.vocab_size


def _collator_draw_order_is_ours() -> str | None:
    """None when the installed collator draws as mask_tokens does, else why not."""
    version = transformers.__version__
    source = inspect.getsource(DataCollatorForLanguageModeling.torch_mask_tokens)
    draws = re.findall(r"torch\.(bernoulli|randint)\(", source)
    same = (draws == ["bernoulli", "bernoulli", "bernoulli", "randint"]
            and "self.mask_replace_prob == 1 or self.random_replace_prob == 0" in source
            and "generator=self.generator" in source)
    if not same:
        return (f"transformers {version}: DataCollatorForLanguageModeling.torch_mask_tokens draws its random "
                f"numbers in another order ({draws}) than mask_tokens implements (checked against "
                f"transformers {CHECKED_TRANSFORMERS})")
    return None


def collator_mask(ids, specials, seed, *, whole_word=False, offsets=None, **rates):
    collator = DataCollatorForLanguageModeling(tokenizer=StubTokenizer(rates.pop("vocab_size"),
                                                                       rates.pop("mask_token_id")),
                                               whole_word_mask=whole_word, **rates)
    collator.generator = torch.Generator().manual_seed(seed)
    special = torch.isin(ids, torch.tensor(specials))
    return collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special.long(), offset_mapping=offsets)


@pytest.mark.parametrize("rates", [
    dict(mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1),
    dict(mlm_probability=0.4, mask_replace_prob=0.5, random_replace_prob=0.4),
    dict(mlm_probability=0.3, mask_replace_prob=1.0, random_replace_prob=0.0),
    dict(mlm_probability=0.5, mask_replace_prob=0.0, random_replace_prob=1.0),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_mask_tokens_is_bit_identical_to_transformers_collator(rates, seed):
    reason = _collator_draw_order_is_ours()
    if reason:
        pytest.skip(reason)
    g = torch.Generator().manual_seed(100 + seed)
    ids = torch.randint(4, 300, (6, 40), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    ids[0, 20:] = 0  # padding
    specials = [0, 1, 2]
    gen = torch.Generator().manual_seed(seed)
    args = dict(vocab_size=300, mask_token_id=3, special_token_ids=specials, generator=gen, **rates)
    ours = mask_tokens(ids, **args)
    theirs = collator_mask(ids, specials, seed, vocab_size=300, mask_token_id=3, **rates)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    # two calls in a row: the generator is left in the same state as the collator leaves it
    again = mask_tokens(ids, **args)
    collator = DataCollatorForLanguageModeling(tokenizer=StubTokenizer(300, 3), **rates)
    collator.generator = torch.Generator().manual_seed(seed)
    special = torch.isin(ids, torch.tensor(specials)).long()
    collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    second = collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    assert torch.equal(again[0], second[0]) and torch.equal(again[1], second[1])


def test_mask_tokens_invariants_and_input_untouched():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 100, (8, 64), generator=g)
    ids[:, 0], ids[:, -5:] = 1, 0  # specials: [CLS] and padding
    before = ids.clone()
    inputs, labels = mask_tokens(ids, vocab_size=100, mask_token_id=2, special_token_ids=[0, 1],
                                 mlm_probability=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, before)  # untouched
    selected = labels != -100
    assert selected.any()
    assert torch.equal(labels[selected], ids[selected])  # the original token is the target
    assert torch.equal(inputs[~selected], ids[~selected])  # off-selection inputs unchanged
    special = (ids == 0) | (ids == 1)
    assert not selected[special].any()  # specials are never selected


def _binomial_ok(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_mask_tokens_statistics_are_15_percent_then_80_10_10():
    V, mask_id = 1000, 3
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, V, (200, 500), generator=g)  # 100 000 tokens, none equal to [MASK]
    ids[:, 0] = 1
    inputs, labels = mask_tokens(ids, vocab_size=V, mask_token_id=mask_id, special_token_ids=[1],
                                 generator=torch.Generator().manual_seed(1))
    n = int((ids != 1).sum())
    selected = labels != -100
    S = int(selected.sum())
    assert _binomial_ok(S, n, 0.15), S / n
    masked = int((selected & (inputs == mask_id)).sum())  # (+ random draws of [MASK]: 0.1/V, negligible)
    kept = int((selected & (inputs == ids)).sum())
    randomized = S - masked - kept
    assert _binomial_ok(masked, S, 0.8), masked / S
    assert _binomial_ok(kept, S, 0.1), kept / S
    assert _binomial_ok(randomized, S, 0.1), randomized / S


def test_masked_lm_loss_is_cross_entropy_on_the_selected_positions_only():
    logits, ids = random_logits(V=17)
    _, labels = mask_tokens(ids, vocab_size=17, mask_token_id=0, mlm_probability=0.4,
                            generator=torch.Generator().manual_seed(0))
    selected = labels != -100
    expected = F.cross_entropy(logits[selected], labels[selected])
    torch.testing.assert_close(masked_lm_loss(logits, labels), expected)
    torch.testing.assert_close(masked_lm_loss(logits, labels),
                               F.cross_entropy(logits.reshape(-1, 17), labels.reshape(-1), ignore_index=-100))


# ---------------------------------------------------------------------------- whole-word masking
def _words(word_starts_row):
    words, current = [], []
    for t, start in enumerate(word_starts_row.tolist()):
        if start and current:
            words.append(current)
            current = []
        current.append(t)
    return words + [current]


def test_whole_word_mask_never_splits_a_word():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 200, (10, 50), generator=g)
    starts = torch.rand(10, 50, generator=g) < 0.4
    starts[:, 0] = True
    for seed in range(5):
        inputs, labels = whole_word_mask(ids, starts, vocab_size=200, mask_token_id=3, mlm_probability=0.3,
                                         mask_replace_prob=0.8, random_replace_prob=0.1,
                                         generator=torch.Generator().manual_seed(seed))
        selected = labels != -100
        assert selected.any()
        for b in range(10):
            for word in _words(starts[b]):
                assert selected[b, word].all() or not selected[b, word].any(), (b, word)
        assert torch.equal(labels[selected], ids[selected])
        assert torch.equal(inputs[~selected], ids[~selected])


def _offsets(word_starts, special):
    """Character offsets for the collator: contiguous inside a word, a one-character gap before a word."""
    B, T = word_starts.shape
    offsets = torch.zeros(B, T, 2, dtype=torch.long)
    for b in range(B):
        c = 0
        for t in range(T):
            if special[b, t]:
                offsets[b, t] = torch.tensor([0, 0])
                continue
            if word_starts[b, t] and t:
                c += 1
            offsets[b, t] = torch.tensor([c, c + 1])
            c += 1
    return offsets


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_word_mask_is_bit_identical_to_transformers_collator(seed):
    reason = _collator_draw_order_is_ours()
    if reason:
        pytest.skip(reason)
    if not hasattr(DataCollatorForLanguageModeling, "_calc_word_ids_and_prob_mask"):
        pytest.skip(f"transformers {transformers.__version__}: whole-word masking reads no offset_mapping "
                    f"(checked against transformers {CHECKED_TRANSFORMERS})")
    g = torch.Generator().manual_seed(10 + seed)
    ids = torch.randint(4, 100, (4, 30), generator=g)
    ids[:, 0], ids[:, -1], ids[1, 12] = 1, 2, 2  # specials inside a row too
    starts = torch.rand(4, 30, generator=g) < 0.5
    starts[2, 13] = False  # a continuation right after a special token starts a new word
    special = torch.isin(ids, torch.tensor([1, 2]))
    ours = whole_word_mask(ids, starts, vocab_size=100, mask_token_id=3, mlm_probability=0.4,
                           special_token_ids=[1, 2], generator=torch.Generator().manual_seed(seed))
    theirs = collator_mask(ids, [1, 2], seed, whole_word=True, offsets=_offsets(starts, special),
                           vocab_size=100, mask_token_id=3, mlm_probability=0.4)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


# ------------------------------------------------------------------------------------ prefix LM
def test_prefix_lm_mask_closed_form():
    T = 7
    mask = prefix_lm_mask(torch.tensor([0, 3, 7]), T)
    assert mask.shape == (3, T, T) and mask.dtype == torch.bool
    for b, prefix in enumerate([0, 3, 7]):
        for i in range(T):
            for j in range(T):
                assert mask[b, i, j] == (j <= i or j < prefix)
    assert torch.equal(mask[0], torch.ones(T, T, dtype=torch.bool).tril())  # prefix 0: causal
    assert mask[2].all()  # the whole sequence as prefix: bidirectional


def test_prefix_lm_loss_is_the_mean_over_suffix_positions():
    logits, ids = random_logits(B=3, T=9)
    prefixes = [0, 4, 9]
    terms = [F.cross_entropy(logits[b, t - 1], ids[b, t], reduction="sum")
             for b, p in enumerate(prefixes) for t in range(max(p, 1), 9)]
    torch.testing.assert_close(prefix_lm_loss(logits, ids, prefixes), torch.stack(terms).mean())
    torch.testing.assert_close(prefix_lm_loss(logits, ids, [1, 1, 1]), causal_lm_loss(logits, ids))
    torch.testing.assert_close(prefix_lm_loss(logits, ids, [0, 0, 0]), causal_lm_loss(logits, ids))


@pytest.fixture(scope="module")
def lab_gpt():
    torch.manual_seed(0)
    return GPT(gpt2_config(vocab_size=61, block_size=16, n_layer=2, n_head=4, d_model=32)).eval()


def test_lab_gpt_with_prefix_mask_is_causal_after_the_prefix_and_bidirectional_inside(lab_gpt):
    T, prefix = 12, 5
    ids = torch.randint(61, (1, T), generator=torch.Generator().manual_seed(0))
    mask = prefix_lm_mask([prefix], T)
    with torch.no_grad():
        base = lab_gpt(ids, attn_mask=mask)[0]
        causal = lab_gpt(ids)[0]
        # prefix 0 is the model's own causal mask
        torch.testing.assert_close(lab_gpt(ids, attn_mask=prefix_lm_mask([0], T))[0], causal)
        for t in range(prefix, T):  # a suffix token: nothing before it moves
            changed = ids.clone()
            changed[0, t] = (changed[0, t] + 1) % 61
            out = lab_gpt(changed, attn_mask=mask)[0]
            torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=0)
            assert not torch.allclose(out[:, t:], base[:, t:])
        changed = ids.clone()
        changed[0, 3] = (changed[0, 3] + 1) % 61  # a prefix token: earlier prefix positions see it
        out = lab_gpt(changed, attn_mask=mask)[0]
        for t in range(3):
            assert not torch.allclose(out[0, t], base[0, t]), t
        out_causal = lab_gpt(changed)[0]  # while a causal model's earlier positions never do
        torch.testing.assert_close(out_causal[:, :3], causal[:, :3], rtol=0, atol=0)


# ------------------------------------------------------------------------------- span corruption
def reconstruct(inputs, targets, sentinels):
    """Put each sentinel's span back where the sentinel stands in the inputs."""
    spans, current = {}, None
    for token in targets.tolist():
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out = []
    for token in inputs.tolist():
        out.extend(spans[token] if token in sentinels else [token])
    return out


@pytest.mark.parametrize(("length", "density", "mean_span"),
                         [(100, 0.15, 3.0), (37, 0.15, 3.0), (64, 0.5, 2.0), (20, 0.3, 1.0), (2, 0.15, 3.0),
                          (50, 0.9, 8.0), (100, 0.15, 4.0), (512, 0.15, 3.0)])  # 15/4, 77/3: round up
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_span_corruption_reconstructs_the_original_with_the_stated_counts(length, density, mean_span, seed):
    sentinels = list(range(1000, 1100))
    ids = torch.randint(0, 500, (length,), generator=torch.Generator().manual_seed(seed))
    before = ids.clone()
    inputs, targets = span_corrupt(ids, noise_density=density, mean_span_length=mean_span,
                                   sentinel_ids=sentinels, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ids, before)
    assert reconstruct(inputs, targets, set(sentinels)) == ids.tolist()
    noise = min(max(round(length * density), 1), length - 1)
    spans = min(max(round(noise / mean_span), 1), noise, length - noise)
    used = [t for t in inputs.tolist() if t in sentinels]
    assert used == sentinels[:spans]  # the k-th span gets sentinel_ids[k], in order
    assert [t for t in targets.tolist() if t in sentinels] == used
    assert len(targets) - spans == noise
    assert len(inputs) == length - noise + spans
    assert targets[0].item() == sentinels[0]  # targets open with a sentinel, no closing one


def test_span_noise_mask_runs_start_with_kept_tokens_and_are_deterministic():
    mask = span_noise_mask(100, generator=torch.Generator().manual_seed(3))
    again = span_noise_mask(100, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    assert not mask[0] and int(mask.sum()) == 15
    assert int((mask[1:] & ~mask[:-1]).sum()) == 5  # 5 spans


# ------------------------------------------------------------------------------------ bad input
IDS = torch.randint(5, 50, (2, 8))
LOGITS = torch.randn(2, 8, 50)
MASK_ARGS = dict(vocab_size=50, mask_token_id=4)


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: mask_tokens(IDS, **MASK_ARGS, mlm_probability=1.5), ValueError, "mlm_probability"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, mlm_probability=-0.1), ValueError, "mlm_probability"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, mask_replace_prob=1.2), ValueError, "mask_replace_prob"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, random_replace_prob=-1), ValueError, "random_replace_prob"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, mask_replace_prob=0.8, random_replace_prob=0.3), ValueError,
     "random_replace_prob"),
    (lambda: mask_tokens(IDS, vocab_size=50, mask_token_id=50), ValueError, "mask_token_id"),
    (lambda: mask_tokens(IDS, vocab_size=50, mask_token_id=-1), ValueError, "mask_token_id"),
    (lambda: mask_tokens(IDS, vocab_size=50, mask_token_id=4.0), TypeError, "mask_token_id"),
    (lambda: mask_tokens(IDS, vocab_size=10, mask_token_id=4), ValueError, "ids"),
    (lambda: mask_tokens(IDS.float(), **MASK_ARGS), TypeError, "ids"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, special_token_ids=[99]), ValueError, "special_token_ids"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, special_token_ids=3), TypeError, "special_token_ids"),
    (lambda: mask_tokens(IDS, **MASK_ARGS, generator=0), TypeError, "generator"),
    (lambda: whole_word_mask(IDS, torch.ones(2, 7).bool(), **MASK_ARGS), ValueError, "word_starts"),
    (lambda: whole_word_mask(IDS, torch.ones(2, 8), **MASK_ARGS), TypeError, "word_starts"),
    (lambda: whole_word_mask(IDS, IDS > 9, **MASK_ARGS, mlm_probability=2), ValueError, "mlm_probability"),
    (lambda: causal_lm_loss(LOGITS, IDS[:, :7]), ValueError, "ids"),
    (lambda: causal_lm_loss(LOGITS.long(), IDS), TypeError, "logits"),
    (lambda: causal_lm_loss(LOGITS[:, :1], IDS[:, :1]), ValueError, "ids"),
    (lambda: masked_lm_loss(LOGITS, IDS.float()), TypeError, "labels"),
    (lambda: prefix_lm_mask([3, 9], 8), ValueError, "prefix_lengths"),
    (lambda: prefix_lm_mask([-1], 8), ValueError, "prefix_lengths"),
    (lambda: prefix_lm_mask([1.5], 8), TypeError, "prefix_lengths"),
    (lambda: prefix_lm_mask([1], 0), ValueError, "seq_len"),
    (lambda: prefix_lm_loss(LOGITS, IDS, [2, 9]), ValueError, "prefix_lengths"),
    (lambda: prefix_lm_loss(LOGITS, IDS, [2]), ValueError, "prefix_lengths"),
    (lambda: span_corrupt(IDS[0], sentinel_ids=[]), ValueError, "sentinel_ids"),
    (lambda: span_corrupt(torch.arange(100), mean_span_length=1.0, sentinel_ids=[1, 2]), ValueError,
     "sentinel_ids"),
    (lambda: span_corrupt(IDS[0], noise_density=1.5, sentinel_ids=[1]), ValueError, "noise_density"),
    (lambda: span_corrupt(IDS[0], mean_span_length=0.5, sentinel_ids=[1]), ValueError, "mean_span_length"),
    (lambda: span_corrupt(IDS, sentinel_ids=[1]), ValueError, "ids"),
    (lambda: span_corrupt(IDS[0, :1], sentinel_ids=[1]), ValueError, "ids"),
    (lambda: span_corrupt(IDS[0], sentinel_ids=[1.0]), TypeError, "sentinel_ids"),
])
def test_bad_input_raises_naming_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()


# ------------------------------------------------------------------------------------ the demo's parts
def _tiny(objective="clm", n_layer=1, **recipe):
    from llmlab.pretraining_objectives import experiments as ex

    cfg = dict(block_size=16, n_layer=n_layer, n_head=2, d_model=16)
    rec = ex.Recipe(objective, **recipe)
    torch.manual_seed(0)
    gpt = GPT(ex.model_config(cfg, 30, rec)).eval()
    return ex, dict(gpt=gpt, recipe=rec), cfg


def test_mask_token_is_added_after_the_merges_and_changes_no_other_id():
    from llmlab.pretraining_objectives.experiments import MASK, with_mask_token
    from llmlab.tokenization import BPETokenizer

    base = BPETokenizer.train("the cat sat on the mat. " * 20, 270)
    tok = with_mask_token(base)
    n = len(base.vocab)  # 256 bytes + the merges the text allows
    assert tok.special_tokens[MASK] == n and len(tok.vocab) == n + 1
    text = "the cat sat"
    assert tok.encode(text) == base.encode(text)
    assert tok.encode(f"{text}{MASK}", allowed_special="all") == base.encode(text) + [n]


def test_objective_model_losses_are_the_objectives():
    ex, run, _ = _tiny("prefix")
    ids = torch.randint(29, (3, 16))
    prefix = torch.tensor([1, 5, 15])
    logits, loss = ex.ObjectiveModel(run["gpt"], run["recipe"])(ids, prefix)
    expected_logits, _ = run["gpt"](ids, attn_mask=prefix_lm_mask(prefix, 16))
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, prefix_lm_loss(expected_logits, ids, prefix))


def test_batches_are_the_same_windows_for_every_objective():
    ex, _, cfg = _tiny()
    cfg = dict(cfg, batch_size=4)
    data = torch.randint(29, (500,))
    batches = {o: ex.batch_fn(data, cfg, ex.Recipe(o), 30, 29)(torch.Generator().manual_seed(1))
               for o in ("clm", "mlm", "prefix")}
    torch.testing.assert_close(batches["clm"][0], batches["prefix"][0])
    mlm_inputs, labels = batches["mlm"]
    selected = labels != -100
    torch.testing.assert_close(labels[selected], batches["clm"][0][selected])  # labels = the window's tokens
    assert ((1 <= batches["prefix"][1]) & (batches["prefix"][1] < 16)).all()


def test_mlm_left_to_right_never_sees_the_future():
    ex, run, _ = _tiny("mlm")
    ids = torch.randint(29, (2, 16))
    changed = ids.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 29
    with torch.no_grad():
        a, _ = ex.mlm_left_to_right(run["gpt"], ids, 29, [3, 8])
        b, _ = ex.mlm_left_to_right(run["gpt"], changed, 29, [3, 8])
        c, _ = ex.mlm_left_to_right(run["gpt"], changed, 29, [12])
        d, _ = ex.mlm_left_to_right(run["gpt"], ids, 29, [12])
    torch.testing.assert_close(a, b)
    assert not torch.allclose(c, d)  # the guard is not vacuous: a visible change does change the loss


def test_greedy_continuation_of_the_causal_lm_equals_lesson_06_generate():
    from llmlab.kv_cache import generate

    ex, run, _ = _tiny("clm")
    prompt = [3, 7, 1, 4]
    ours = ex.continue_greedy(run, prompt, 6, mask_id=29)
    reference = generate(run["gpt"], torch.tensor([prompt]), 6, temperature=0.0)[0, 4:].tolist()
    assert ours == reference


def test_sentence_features_do_not_depend_on_the_padding_of_the_batch():
    for objective in ("clm", "mlm"):
        ex, run, _ = _tiny(objective)
        sentences = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]
        together = ex.sentence_features(run, sentences, 16)
        alone = [ex.sentence_features(run, [s], 16)[0] for s in sentences]
        torch.testing.assert_close(torch.tensor(together), torch.tensor(np.array(alone)), rtol=1e-4,
                                   atol=1e-5)


def test_prefix_sweep_with_an_empty_prefix_is_the_causal_loss():
    ex, run, _ = _tiny("prefix", n_layer=2)
    windows = torch.randint(29, (3, 16))
    out = ex.prefix_sweep(run, windows, [0, 1, 6])
    assert out["bidirectional"][0] == pytest.approx(out["causal"][0], rel=1e-5)
    assert out["bidirectional"][1] == pytest.approx(out["causal"][1], rel=1e-5)  # a 1-token prefix: same mask
    assert out["bidirectional"][2] != pytest.approx(out["causal"][2], rel=1e-4)


def test_one_layer_cannot_use_a_bidirectional_prefix():
    """With one layer, the suffix's logits read the embeddings of the same keys under both masks (query
    P-1 sees keys 0..P-1 either way): the prefix's bidirectionality pays only from the second layer on."""
    ex, run, _ = _tiny("prefix", n_layer=1)
    out = ex.prefix_sweep(run, torch.randint(29, (3, 16)), [6, 10])
    assert out["bidirectional"] == pytest.approx(out["causal"], rel=1e-5)


def test_demo_break_flags_run(tmp_path):
    from llmlab.pretraining_objectives import demo

    results = demo.main(["--quick", "--out", str(tmp_path), "--objective", "mlm", "--causal-mlm",
                         "--no-random-replace", "--mask-rate", "0.3", "--steps", "4"])
    expected = dict(objective="mlm", mask_rate=0.3, mask_replace_prob=1.0, causal=True)
    assert results["config"]["mlm"] == expected
    assert "generation_vs_encoding" not in results["key_insights"] and "prefix" not in results
    assert (tmp_path / "mask_rate.png").exists()
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--mask-rate", "1.0"])
