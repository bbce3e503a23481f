"""Verdicts: the few rules that turn measured numbers into the words a demo prints.

Two measurements differ only when the gap between them is larger than the noise, the amount by which
the same measurement moves between runs that should agree (another seed, another set of windows). A
gap inside that band names no winner: it is "no measurable difference" (DESIGN §8). Without a noise
estimate (quick mode, a single seed) nothing can be decided: the verdict is "inconclusive".

    compare(a, b, noise)  ->  "a" if a beats b by more than noise, "b" if b beats a by more than noise,
                              "tie" if |a - b| <= noise, "inconclusive" if noise is unknown

Every demo that decides "better", "worse", "tie", "supported" or "collapsed" calls these functions, so
the rule is written once and tested once (tests/test_verdicts.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

__all__ = [
    "COLLAPSE_RULE",
    "CLAIM_MARKS",
    "NO_DIFFERENCE",
    "claim_mark",
    "compare",
    "effect",
    "load_verdict",
    "paired_effect",
    "verdict_sentence",
]

NO_DIFFERENCE = "no measurable difference"
CLAIM_MARKS = {True: "supported", False: "NOT supported", None: "inconclusive", "partly": "partly supported"}
COLLAPSE_RULE = ("collapsed = the busiest expert takes more than halfway from its fair share 1/E to all "
                 "of the assignments, i.e. a share above (1 + 1/E) / 2")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def _noise(noise: object) -> float | None:
    """The noise band's half-width, or None when there is no estimate (None, NaN or infinite)."""
    if noise is None:
        return None
    noise = _number("noise", noise)
    if math.isnan(noise) or math.isinf(noise):
        return None
    if noise < 0:
        raise ValueError(f"noise must be >= 0 (a half-width), got {noise}")
    return noise


def compare(a: float, b: float, noise: float | None, *, lower_is_better: bool = True) -> str:
    """Which of two measurements is better: "a", "b", "tie" (|a - b| <= noise) or "inconclusive".

    noise: how much the measurement moves between runs that should agree; None, NaN or inf = no
    estimate, and then nothing is decided ("inconclusive"), however large the gap. A NaN measurement
    (a run that failed) is "inconclusive" too; an infinite loss (a diverged run) loses.
    lower_is_better: True for losses and times, False for accuracies and speeds.
    Raises TypeError for a, b or noise that are not real numbers or a non-bool lower_is_better, ValueError
    for noise < 0.
    """
    a, b = _number("a", a), _number("b", b)
    if not isinstance(lower_is_better, bool):
        raise TypeError(f"lower_is_better must be a bool, got {lower_is_better!r}")
    noise = _noise(noise)
    if noise is None or math.isnan(a) or math.isnan(b):
        return "inconclusive"
    if a == b:  # also two equal infinities
        return "tie"
    # on the edge of the band counts as inside; 1e-12 relative: 3.1 - 3.0 is 0.10000000000000009
    if math.isfinite(a - b) and abs(a - b) <= noise + 1e-12 * max(abs(a), abs(b)):
        return "tie"
    a_lower = a < b
    return "a" if a_lower == lower_is_better else "b"


def effect(delta: float, noise: float | None, *, lower_is_better: bool = True) -> str:
    """A change, delta = variant - baseline, judged against the noise: "better", "worse", "tie" or
    "inconclusive" (compare(variant, baseline, noise) in words about the variant)."""
    outcome = compare(delta, 0.0, noise, lower_is_better=lower_is_better)
    return {"a": "better", "b": "worse"}.get(outcome, outcome)


def paired_effect(diffs: Sequence[float] | None, *, lower_is_better: bool = True) -> str:
    """A difference variant - baseline measured at two or more seeds, each seed pairing both sides on the
    same data and initialisation: it counts ("better"/"worse") only when it has the same sign at every
    seed and each is larger than how much it moves across them, max(diffs) - min(diffs) (its noise);
    otherwise "tie". None or a NaN difference (not measured) is "inconclusive".
    Raises ValueError for fewer than two diffs, TypeError for values that are not real numbers or for
    a non-bool lower_is_better.
    """
    if diffs is None:
        return "inconclusive"
    if len(diffs) < 2:
        raise ValueError(f"diffs must hold the difference at two or more seeds, got {len(diffs)} values")
    values = [_number("diffs", d) for d in diffs]
    if any(math.isnan(d) for d in values):
        return "inconclusive"
    moves = max(values) - min(values)
    if (all(d > 0 for d in values) or all(d < 0 for d in values)) and min(map(abs, values)) > moves:
        return effect(values[0], 0.0, lower_is_better=lower_is_better)
    return "tie"


def verdict_sentence(a_name: str, a: float, b_name: str, b: float, noise: float | None, *,
                     lower_is_better: bool = True, unit: str = "nats", digits: int = 3) -> str:
    """compare(a, b, noise) as a sentence that quotes the numbers; a gap inside the noise band says
    "no measurable difference", and no noise estimate says "inconclusive"."""
    outcome = compare(a, b, noise, lower_is_better=lower_is_better)
    f = f"{{:.{digits}f}}"
    numbers = f"{a_name} {f.format(a)} vs {b_name} {f.format(b)} {unit}".rstrip()
    noise = _noise(noise)
    if outcome == "inconclusive":
        why = "no noise estimate" if noise is None else "a measurement is missing"
        return f"inconclusive: {numbers} ({why})"
    if outcome == "tie":
        return f"{NO_DIFFERENCE}: {numbers}, within the noise ({f.format(noise)})"
    winner, loser = (a_name, b_name) if outcome == "a" else (b_name, a_name)
    return f"{winner} is better than {loser}: {numbers}, beyond the noise ({f.format(noise)})"


def claim_mark(supported: bool | str | None) -> str:
    """The tag printed before a curriculum claim: True, False, None (inconclusive) or "partly".

    Raises ValueError unless supported is True, False, None or 'partly'.
    """
    if not (supported is True or supported is False or supported is None or supported == "partly"):
        raise ValueError(f"supported must be True, False, None or 'partly', got {supported!r}")
    return CLAIM_MARKS[supported]


def load_verdict(max_share: float, n_experts: int) -> str:
    """Routing load from the busiest expert's share of the assignments (0..1) among n_experts:
    "collapsed" above (1 + 1/E) / 2 (more than halfway from fair to everything on one expert),
    "balanced" up to 1.25 / E (within 25% of its fair share), "imbalanced" in between.
    Raises ValueError unless n_experts is an int >= 2 and max_share is in [1/n_experts, 1].
    """
    if isinstance(n_experts, bool) or not isinstance(n_experts, int) or n_experts < 2:
        raise ValueError(f"n_experts must be an int >= 2, got {n_experts!r}")
    share = _number("max_share", max_share)
    fair = 1.0 / n_experts
    if not fair - 1e-9 <= share <= 1.0 + 1e-9:  # the busiest of E experts holds at least 1/E
        raise ValueError(f"max_share must be in [1/n_experts, 1] = [{fair:.3f}, 1], got {share}")
    if share > (1.0 + fair) / 2:
        return "collapsed"
    if share <= 1.25 * fair:
        return "balanced"
    return "imbalanced"
