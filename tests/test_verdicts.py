"""Shared verdicts (llmlab.utils.verdicts): a gap inside the noise band names no winner, no noise estimate
decides nothing, and each demo's sentence follows the numbers (DESIGN §8, issue 8 §6)."""

import math

import pytest

from llmlab.utils.verdicts import (
    COLLAPSE_RULE,
    NO_DIFFERENCE,
    claim_mark,
    compare,
    effect,
    load_verdict,
    paired_effect,
    verdict_sentence,
)


@pytest.mark.parametrize("a, b, noise, expected", [
    (3.00, 3.50, 0.10, "a"),  # a lower loss by more than the noise
    (3.50, 3.00, 0.10, "b"),
    (5.85, 5.82, 0.05, "tie"),  # lesson 04's "'no residual' is worst, 5.85 vs 5.82": inside the band
    (3.00, 3.10, 0.10, "tie"),  # exactly on the edge of the band is still inside it
    (3.00, 3.00, 0.0, "tie"),
    (3.00, 3.001, 0.0, "a"),  # zero noise: every gap counts
    (3.00, 9.00, None, "inconclusive"),  # no estimate: even a large gap decides nothing
    (3.00, 9.00, math.inf, "inconclusive"),
    (3.00, 9.00, math.nan, "inconclusive"),
    (math.nan, 3.00, 0.1, "inconclusive"),  # a measurement that failed
    (math.inf, 3.00, 0.1, "b"),  # a diverged run loses
    (math.inf, math.inf, 0.1, "tie"),
])
def test_compare_names_a_winner_only_beyond_the_noise(a, b, noise, expected):
    assert compare(a, b, noise) == expected


def test_compare_flips_when_higher_is_better_and_is_antisymmetric():
    assert compare(0.9, 0.8, 0.05, lower_is_better=False) == "a"
    assert compare(0.8, 0.9, 0.05, lower_is_better=False) == "b"
    assert compare(0.86, 0.84, 0.05, lower_is_better=False) == "tie"
    swap = {"a": "b", "b": "a", "tie": "tie", "inconclusive": "inconclusive"}
    for a, b, noise in [(1.0, 2.0, 0.5), (2.0, 1.0, 0.5), (1.0, 1.2, 0.5), (1.0, 5.0, None)]:
        assert compare(b, a, noise) == swap[compare(a, b, noise)]


@pytest.mark.parametrize("delta, noise, expected", [
    (-0.2, 0.05, "better"), (0.2, 0.05, "worse"), (0.03, 0.05, "tie"), (-0.05, 0.05, "tie"),
    (0.6, None, "inconclusive"),
])
def test_effect_judges_a_change_against_the_baseline(delta, noise, expected):
    assert effect(delta, noise) == expected
    flipped = {"better": "worse", "worse": "better"}.get(expected, expected)
    assert effect(delta, noise, lower_is_better=False) == flipped


@pytest.mark.parametrize("diffs, expected", [
    ([-0.30, -0.25], "better"),  # same sign, both larger than their move 0.05
    ([0.30, 0.25], "worse"),
    ([-0.30, 0.25], "tie"),  # the sign flips with the seed
    ([-0.10, -0.30], "tie"),  # same sign, but 0.10 < the move 0.20
    (None, "inconclusive"),
    ([math.nan, 0.1], "inconclusive"),
    ([0.30, 0.25, 0.28], "worse"),  # three seeds: one sign, each larger than the spread 0.05
    ([0.30, 0.25, 0.02], "tie"),  # the third seed moves it by 0.28 > 0.02
    ([-0.30, -0.25, 0.01], "tie"),
])
def test_paired_effect_needs_one_sign_larger_than_its_own_move(diffs, expected):
    assert paired_effect(diffs) == expected


def test_verdict_sentence_quotes_the_numbers_and_never_names_a_winner_inside_the_noise():
    tie = verdict_sentence("no residual", 5.85, "baseline", 5.82, 0.05)
    assert tie.startswith(NO_DIFFERENCE) and "5.850" in tie and "5.820" in tie and "0.050" in tie
    assert "better" not in tie and "worse" not in tie
    win = verdict_sentence("MoE", 3.10, "dense", 3.40, 0.05)
    assert win.startswith("MoE is better than dense") and "beyond the noise (0.050)" in win
    loss = verdict_sentence("MoE", 3.40, "dense", 3.10, 0.05)
    assert loss.startswith("dense is better than MoE")
    unknown = verdict_sentence("MoE", 3.40, "dense", 3.10, None)
    assert unknown.startswith("inconclusive") and "no noise estimate" in unknown
    assert "better" not in unknown
    speed = verdict_sentence("torch", 13.1, "lab", 15.3, 0.5, unit="ms", digits=1)
    assert speed == "torch is better than lab: torch 13.1 vs lab 15.3 ms, beyond the noise (0.5)"


def test_claim_marks():
    assert [claim_mark(s) for s in (True, False, None, "partly")] == [
        "supported", "NOT supported", "inconclusive", "partly supported"]
    for bad in (1, 0, "yes"):
        with pytest.raises(ValueError, match="supported"):
            claim_mark(bad)


@pytest.mark.parametrize("max_share, n_experts, expected", [
    (0.25, 4, "balanced"), (0.31, 4, "balanced"), (0.40, 4, "imbalanced"), (0.62, 4, "imbalanced"),
    (0.63, 4, "collapsed"), (1.0, 4, "collapsed"),
    (0.5, 2, "balanced"), (0.74, 2, "imbalanced"), (0.76, 2, "collapsed"),
    (0.99, 8, "collapsed"), (0.125, 8, "balanced"),
])
def test_load_verdict_decides_collapse_from_the_busiest_experts_share(max_share, n_experts, expected):
    assert load_verdict(max_share, n_experts) == expected
    assert "(1 + 1/E) / 2" in COLLAPSE_RULE  # the threshold the demo prints


@pytest.mark.parametrize("call, error, name", [
    (lambda: compare(1.0, 2.0, -0.1), ValueError, "noise"),
    (lambda: compare("1", 2.0, 0.1), TypeError, "a"),
    (lambda: compare(1.0, None, 0.1), TypeError, "b"),
    (lambda: compare(1.0, 2.0, "0.1"), TypeError, "noise"),
    (lambda: compare(1.0, 2.0, 0.1, lower_is_better=1), TypeError, "lower_is_better"),
    (lambda: paired_effect([0.1]), ValueError, "diffs"),
    (lambda: load_verdict(0.1, 4), ValueError, "max_share"),
    (lambda: load_verdict(1.2, 4), ValueError, "max_share"),
    (lambda: load_verdict(0.9, 1), ValueError, "n_experts"),
])
def test_bad_input_is_refused_naming_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()


# ----------------------------------------------------------------------------------------------------
# the demos' sentences and titles, from made-up numbers


def test_lesson_04_bar_chart_title_names_a_variant_only_beyond_the_noise():
    from llmlab.transformer_block.demo import final_loss_title

    def runs(**losses):
        return {name.replace("_", " "): {"final_val_loss": loss} for name, loss in losses.items()}

    inside = final_loss_title(runs(baseline=5.82, no_residual=5.85, no_norm=5.80), 5.82, 0.05)
    assert "no measurable difference" in inside and "worst" not in inside and "best" not in inside
    worst = final_loss_title(runs(baseline=5.82, no_residual=6.40, no_norm=5.80), 5.82, 0.05)
    assert "'no residual' is worst" in worst and "6.40" in worst
    best = final_loss_title(runs(baseline=5.82, no_residual=5.85, no_norm=5.50), 5.82, 0.05)
    assert "'no norm' is best" in best
    unknown = final_loss_title(runs(baseline=5.82, no_residual=6.40), 5.82, None)
    assert "no seed-noise estimate" in unknown and "worst" not in unknown


@pytest.mark.parametrize("a, b, aux_coef, says, never", [
    (1.10, 3.50, 0.01, "prevents the collapse", "no collapse"),
    (1.05, 1.10, 0.01, "no collapse measured", "prevents"),
    (1.10, 2.20, 0.01, "evens the load", "prevents"),
    (3.60, 3.90, 0.01, "collapses with and without", "no collapse"),
    # --aux-coef 0, every token on one expert in both runs: never "no collapse" nor "with the balancing loss"
    (3.95, 3.90, 0.0, "not measured", "no collapse"),
])
def test_lesson_08_load_balance_verdict_follows_the_flag_and_the_measured_load(a, b, aux_coef, says, never):
    from llmlab.moe.demo import load_balance_sentence, with_balancing

    sentence = load_balance_sentence(a, b, 4, aux_coef)
    assert says in sentence and never not in sentence
    if aux_coef == 0:
        assert "with the balancing loss" not in sentence and "collapsed" in sentence
        assert "with the balancing loss" not in with_balancing(0.0)
    else:
        assert with_balancing(aux_coef) == "with the balancing loss (coef 0.01)"


def test_lesson_10_verdicts_name_no_winner_inside_the_noise_or_without_an_estimate():
    from llmlab.normalization.demo import _status
    from llmlab.normalization.experiments_grid import _paired_verdict, _verdict

    args = ("SwiGLU better", "SwiGLU worse")
    assert _verdict(0.61, 0.10, False, *args).startswith("SwiGLU worse, by 6.1x")
    assert _verdict(-0.61, 0.10, False, *args).startswith("SwiGLU better")
    assert _verdict(0.05, 0.10, False, *args).endswith("no measurable difference")
    for no_estimate in (math.nan, math.inf):  # it used to say "SwiGLU worse, but ... no seed-noise estimate"
        said = _verdict(0.61, no_estimate, False, *args)
        assert said.startswith("inconclusive") and "worse" not in said
    assert _verdict(0.61, 0.10, True, *args).startswith("inconclusive: quick mode")
    assert _verdict(math.nan, 0.10, False, *args).startswith("not measured")

    assert "w at every seed" in _paired_verdict([0.30, 0.25], [0, 1], False, "b", "w")
    three = _paired_verdict([0.30, 0.25, 0.28], [0, 1, 2], False, "b", "w")
    assert "+0.280 at seed 2 -> w at every seed" in three
    assert _paired_verdict([0.30, -0.25], (0, 1), False, "b", "w").endswith("no measurable difference")
    assert "inconclusive: quick mode" in _paired_verdict([0.30, 0.25], (0, 1), True, "b", "w")
    assert _status([-0.30, -0.25], False) == "supported"
    assert _status([0.30, 0.25], False).startswith("NOT supported")
    assert _status([0.30, -0.25], False) == "not shown (within seed noise)"
    assert _status([0.30, 0.25], True) == "inconclusive" and _status(None, False) == "not measured"


def test_lesson_09_decode_sentence_comes_from_the_measured_times_per_kernel():
    from llmlab.gqa.demo import model_kernel_sentence

    lab = model_kernel_sentence("lab", {8: 54.9, 4: 210.2, 2: 125.3, 1: 36.5}, 8, 2048)
    assert "4 K/V heads 3.8x SLOWER" in lab and "1 K/V heads 1.5x faster" in lab and "repeat_kv copies" in lab
    torch_ = model_kernel_sentence("torch", {8: 15.3, 4: 13.1, 2: 14.8, 1: 10.0}, 8, 2048)
    assert "SLOWER" not in torch_ and "4 K/V heads 1.2x faster" in torch_
    assert "2 K/V heads no measurable difference" in torch_ and "in place" in torch_
    # a torch run that IS slower says so, and does not claim the in-place read saved it
    slow = model_kernel_sentence("torch", {8: 10.0, 4: 20.0, 2: 10.5, 1: 9.0}, 8, 2048)
    assert "4 K/V heads 2.0x SLOWER" in slow and "in place" not in slow


def test_lesson_02_extrapolation_title_names_a_best_encoding_only_beyond_the_error_bars():
    from llmlab.positional_embeddings.demo import extrapolation_title

    def row(ratio, ci=0.02):
        return dict(ratio=ratio, excess_ci95=ci, inside_late=1.0)

    apart = {"alibi": row(1.03), "none": row(1.09), "rope": row(2.26)}
    assert extrapolation_title(apart, list(apart)) == \
        "Past the training length: alibi is best (1.03x vs none 1.09x)"
    close = {"alibi": row(1.03), "none": row(1.05), "rope": row(2.26)}  # 0.02 apart, bars of ±0.02 each
    title = extrapolation_title(close, list(close))
    assert "no measurable difference" in title and "best" not in title


def test_lesson_10_curves_title_names_best_and_worst_only_beyond_the_seed_noise():
    from llmlab.normalization.experiments_grid import extremes_text

    def run(norm, activation, loss):
        return dict(norm=norm, activation=activation, prenorm=True, final_val_loss=loss)

    working = [run("layernorm", "gelu", 3.17), run("rmsnorm", "gelu", 3.19), run("layernorm", "relu", 3.50),
               run("none", "swiglu", 3.90)]
    tight = extremes_text(working, 0.05)
    assert "best" not in tight and "no measurable difference" in tight and "worst working" in tight
    assert "best" in extremes_text(working, 0.01)
    unknown = extremes_text(working, math.nan)
    assert "best" not in unknown and "worst" not in unknown and "no seed-noise estimate" in unknown
