"""Lesson 12's built-in data: instructions and preference pairs whose answers the story generator fixes.

`generate_story_with_facts` (lesson 00) returns each story with its ground truth: the characters (name,
gender, pronouns), the things introduced with "a", and the sentences. Every example here is a question
about ONE sentence of a story (the lab GPT's context is 128 tokens) whose answer is in those facts, so
exact-match accuracy and a response's true quality are computed against the truth, not against a model.

Task families (the held-out ones are never trained on: "generalisation to new tasks"):
    who      "Who is the story about?"                 -> the main character's name   (held in)
    thing    "What thing is in the sentence?"          -> the thing ("kite")           (held in)
    pronoun  "Which pronoun is used for Mia?"          -> "she" / "he" / "they"        (held in)
    other    "Who is with Mia in the sentence?"        -> the other character's name   (held out)
    kind     "Is Mia a girl or a boy?"                 -> "girl" / "boy"               (held out)
Formats: plain (a cloze sentence continued), qa ("Q: ... A:"), instruction (an Alpaca-style template).
Preference pairs (qa prompts): chosen = the right answer; rejected = a wrong answer of the same type
("wrong") or the right answer followed by rambling ("rambling"); `true_quality` scores any response.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from llmlab.utils.stories import STORY_NAMES, generate_story_with_facts

FAMILIES = ("who", "thing", "pronoun", "other", "kind")
HELD_IN = ("who", "thing", "pronoun")
HELD_OUT = ("other", "kind")
FORMATS = ("plain", "qa", "instruction")
PRONOUNS = ("she", "he", "they")
EOS_TEXT = "\n\n"  # the stories' separator: the lab GPT's natural end of a document

__all__ = ["EOS_TEXT", "FAMILIES", "FORMATS", "HELD_IN", "HELD_OUT", "Example", "make_examples",
           "make_preferences", "render", "true_quality"]


@dataclass(frozen=True)
class Example:
    """One question about one sentence: the answer and a wrong answer of the same type (for preferences)."""

    family: str
    context: str
    question: str
    cloze: str  # the plain format's statement to continue
    answer: str
    wrong: str


def _words(sentence: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", sentence)


def _story_examples(facts, rng: random.Random, things: list[str]) -> list[Example]:
    """Every family's example that this story can give (a family needs its kind of sentence)."""
    main = facts.characters[0]
    first = facts.sentences[0]
    out = []
    if main.name in first:
        others = [n for n in STORY_NAMES if n not in main.name]
        out.append(Example("who", first, "Who is the story about?", "This story is about", main.name,
                           rng.choice(others)))
        pronoun = main.pronouns[0]
        out.append(Example("pronoun", first, f"Which pronoun is used for {main.name}?",
                           f"The pronoun for {main.name} is", pronoun,
                           rng.choice([p for p in PRONOUNS if p != pronoun])))
        if main.gender in ("female", "male"):
            kind = "girl" if main.gender == "female" else "boy"
            out.append(Example("kind", first, f"Is {main.name} a girl or a boy?", f"{main.name} is a", kind,
                               "boy" if kind == "girl" else "girl"))
    for thing in facts.things:
        sentence = next((s for s in facts.sentences if thing in _words(s)), None)
        if sentence is not None and len(sentence) < 110:
            wrong = rng.choice([t for t in things if t != thing] or ["ball"])
            out.append(Example("thing", sentence, "What thing is in the sentence?",
                               "The thing in the sentence is the", thing, wrong))
            break
    for other in facts.characters[1:]:
        sentence = next((s for s in facts.sentences if main.name in s and other.name in s
                         and len(s) < 110), None)
        if sentence is not None:
            out.append(Example("other", sentence, f"Who is with {main.name} in the sentence?",
                               f"Besides {main.name}, the sentence names", other.name, main.name))
            break
    return out


def make_examples(n_per_family: int, seed: int, families: tuple[str, ...] = FAMILIES) -> list[Example]:
    """`n_per_family` examples of each family from stories drawn with `seed` (deterministic), interleaved.

    Raises ValueError unless n_per_family is an int >= 1 and families a non-empty subset of FAMILIES.
    """
    if isinstance(n_per_family, bool) or not isinstance(n_per_family, int) or n_per_family < 1:
        raise ValueError(f"n_per_family must be an int >= 1, got {n_per_family!r}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families!r}")
    rng = random.Random(seed)
    by_family: dict[str, list[Example]] = {f: [] for f in families}
    things: list[str] = ["ball", "kite", "hat"]
    while any(len(v) < n_per_family for v in by_family.values()):
        _, facts = generate_story_with_facts(rng)
        things.extend(facts.things)
        for example in _story_examples(facts, rng, things):
            if example.family in by_family and len(by_family[example.family]) < n_per_family:
                by_family[example.family].append(example)
    return [by_family[f][i] for i in range(n_per_family) for f in families]


def render(example: Example, fmt: str) -> tuple[str, str]:
    """(prompt text, response text) of `example` in format `fmt`; the response starts with a space.

    Raises ValueError unless fmt is one of FORMATS.
    """
    if fmt == "plain":
        return f"{example.context} {example.cloze}", f" {example.answer}"
    if fmt == "qa":
        return f"{example.context}\nQ: {example.question}\nA:", f" {example.answer}"
    if fmt == "instruction":
        return (f"### Instruction:\n{example.question}\n### Input:\n{example.context}\n### Response:",
                f" {example.answer}")
    raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")


def make_preferences(examples: list[Example]) -> list[tuple[str, str, str, str]]:
    """(qa prompt, chosen, rejected, kind) per example, alternating kind "wrong" and "rambling"."""
    pairs = []
    for i, ex in enumerate(examples):
        prompt, chosen = render(ex, "qa")
        if i % 2 == 0:
            pairs.append((prompt, chosen, f" {ex.wrong}", "wrong"))
        else:
            pairs.append((prompt, chosen, f" {ex.answer} and {ex.wrong} and the {ex.answer} was", "rambling"))
    return pairs


def true_quality(response: str, example: Example) -> float:
    """The ground truth's score of a response: 1 = exactly the answer, 0.5 = the answer among other words
    (right but rambling), 0 = the answer missing."""
    text = response.strip()
    if text == example.answer:
        return 1.0
    return 0.5 if example.answer in _words(text) or example.answer in text else 0.0
