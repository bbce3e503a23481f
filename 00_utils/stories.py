"""The built-in `stories` corpus: simple English short stories generated from a small grammar.

A language model can only learn structure that its data contains, so this corpus is built to have
the structure that the curriculum measures: each story introduces a named character in its first
sentence ("Once upon a time, there was a girl named Mia who lived near the river."), refers back to
her with pronouns that agree with her (she/her/herself, he/him/his, they/them/their for a pair of
children) and with her name again, brings in a second character who talks and helps, introduces
things with "a" and refers back to them with "the", links events by cause ("Because it was raining,
Tom took his umbrella.") and ends by resolving the story's problem with the main character's name
in the last sentence. These long-range dependencies are what attention heads find and what the
long-context lessons stretch; the small vocabulary is what lets a tiny model learn it in a minute.

    corpus = story_1 + "\\n\\n" + story_2 + "\\n\\n" + ...   (each story 300-1200 ASCII characters)

The grammar is a set of story arcs (a lost object, a trip, a new friend, a storm, a lesson learned,
a competition, helping an animal, a misunderstanding, a fear overcome, a gift), each a sequence of
steps with several sentence templates per step, filled with names, places, things and weather.
The templates are data, in `story_arcs.json` next to this module; the code here is the engine
(casting, slots, pronoun agreement, "a" then "the", quotes with speech tags) and the arcs' order
and conditions. An arc names each step by the opening of its first template, so that it reads as
an outline of the story: `s.add("{A} threw the {obj} too hard, ...")`; the data file lists the
step's variants, of which one is drawn.

It is in the spirit of TinyStories (Eldan & Li, 2023, "TinyStories: How Small Can Language Models
Be and Still Speak Coherent English?", arXiv:2305.07759), which used an LLM instead of a grammar;
a grammar is deterministic, needs no download and can state the facts that tests check:
`generate_story_with_facts` returns, next to the text, every character with their pronouns, the
things introduced with "a", and for each sentence the characters it refers to.
"""

from __future__ import annotations

import functools
import json
import numbers
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIN_STORY_CHARS, MAX_STORY_CHARS = 300, 1200

GIRL_NAMES = (
    "Mia", "Lily", "Emma", "Ava", "Zoe", "Lucy", "Nora", "Ella", "Rosa", "Maya", "Sara", "Anna",
    "Ruby", "Ivy", "Hana", "Amara", "Chloe", "Leah", "Nina", "Olivia", "Sophie", "Priya", "Aisha",
    "Clara", "Elsa", "Daisy", "Fatima", "Yuki",
)
BOY_NAMES = (
    "Tom", "Ben", "Leo", "Max", "Sam", "Jack", "Noah", "Finn", "Omar", "Ravi", "Hugo", "Theo",
    "Liam", "Kai", "Eli", "Oscar", "Jonah", "Felix", "Arjun", "Mateo", "Luca", "Ethan", "Pablo",
    "Kofi", "Ivan", "Ali", "Danny", "Toby",
)
STORY_NAMES = GIRL_NAMES + BOY_NAMES
# The grown-ups are called by what the children call them, as in most children's stories.
GROWN_UPS = (
    ("Mom", "female"), ("Dad", "male"), ("Grandma", "female"), ("Grandpa", "male"),
    ("Granny", "female"), ("Aunt May", "female"), ("Uncle Joe", "male"), ("Papa", "male"),
)

# Pronouns and the verb forms that must agree with them; "plural" is a pair of children.
PRONOUNS = {
    "female": dict(he="she", him="her", his="her", hers="hers", self="herself", was="was",
                   wasnt="wasn't", I="I", me="me", my="my", mine="mine", am="am", Im="I'm",
                   Ill="I'll", Ive="I've", myself="myself", Iwas="I was"),
    "male": dict(he="he", him="him", his="his", hers="his", self="himself", was="was",
                 wasnt="wasn't", I="I", me="me", my="my", mine="mine", am="am", Im="I'm",
                 Ill="I'll", Ive="I've", myself="myself", Iwas="I was"),
    "plural": dict(he="they", him="them", his="their", hers="theirs", self="themselves", was="were",
                   wasnt="weren't", I="we", me="us", my="our", mine="ours", am="are", Im="we're",
                   Ill="we'll", Ive="we've", myself="ourselves", Iwas="we were"),
}
_KINDS = {
    "female": (("a girl", "girl"), ("a little girl", "girl"), ("a young girl", "girl")),
    "male": (("a boy", "boy"), ("a little boy", "boy"), ("a young boy", "boy")),
}
_GROUP_KINDS = (  # (how they are introduced, how they are called later, gender of both names)
    ("two sisters", "sisters", "female"), ("two brothers", "brothers", "male"),
    ("twins", "twins", None), ("two friends", "friends", None),
)
_RELATIONS = {
    "female": ("best friend", "friend", "neighbor", "cousin", "little sister", "big sister"),
    "male": ("best friend", "friend", "neighbor", "cousin", "little brother", "big brother"),
    "plural": ("best friends", "friends", "neighbors", "cousins"),
}

COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "silver", "golden", "white")
_LOOKS = COLORS + ("shiny", "little", "old", "new", "striped", "spotted", "bright", "tiny", "wooden")
# A thing a child can lose and how it gets lost: blown away, rolled away, dropped, or left behind.
OBJECTS = (
    ("kite", "wind"), ("hat", "wind"), ("balloon", "wind"), ("paper plane", "wind"), ("scarf", "wind"),
    ("ball", "roll"), ("marble", "roll"), ("toy car", "roll"), ("toy train", "roll"), ("hoop", "roll"),
    ("bracelet", "drop"), ("key", "drop"), ("whistle", "drop"), ("ring", "drop"), ("necklace", "drop"),
    ("teddy bear", "forget"), ("book", "forget"), ("lunch box", "forget"), ("doll", "forget"),
    ("toy robot", "forget"), ("drum", "forget"), ("backpack", "forget"), ("notebook", "forget"),
)
PETS = (
    ("dog", "barked", "wagged its tail"), ("puppy", "barked", "wagged its tail"),
    ("cat", "meowed", "purred"), ("kitten", "meowed", "purred"), ("rabbit", "thumped its foot",
    "twitched its nose"), ("parrot", "squawked", "flapped its wings"), ("goat", "bleated",
    "shook its head"), ("duck", "quacked", "flapped its wings"),
)
_PET_LOOKS = ("little brown", "fluffy white", "small black", "big friendly", "clever", "happy", "old")

# name, "at", "to", three things to see there, three spots where something can hide there.
PLACES = (
    ("park", "in the park", "to the park", ("the swings", "the big oak tree", "the duck pond"),
     ("under a bench", "behind the big oak tree", "in the flower bed")),
    ("river", "by the river", "to the river", ("the old bridge", "the tall reeds", "the smooth stones"),
     ("between the tall reeds", "under the old bridge", "next to a mossy rock")),
    ("beach", "on the beach", "to the beach", ("the waves", "the sand dunes", "the rock pools"),
     ("behind the sand dunes", "in a rock pool", "under a pile of seaweed")),
    ("forest", "in the forest", "to the forest", ("the tall pine trees", "the little stream", "the ferns"),
     ("under the ferns", "inside a hollow log", "beside the little stream")),
    ("garden", "in the garden", "to the garden", ("the apple tree", "the roses", "the vegetable patch"),
     ("under the roses", "in the vegetable patch", "behind the watering can")),
    ("meadow", "in the meadow", "to the meadow", ("the wild flowers", "the tall grass", "the old fence"),
     ("in the tall grass", "by the old fence", "among the wild flowers")),
    ("lake", "by the lake", "to the lake", ("the wooden dock", "the lily pads", "the sandy shore"),
     ("under the wooden dock", "among the lily pads", "on the sandy shore")),
    ("hill", "on the hill", "up the hill", ("the windmill", "the big rock", "the sheep"),
     ("behind the big rock", "near the windmill", "in a patch of clover")),
    ("farm", "on the farm", "to the farm", ("the red barn", "the hay bales", "the chicken coop"),
     ("inside the chicken coop", "between the hay bales", "behind the red barn")),
    ("market", "at the market", "to the market", ("the fruit stalls", "the flower stand", "the cheese shop"),
     ("under the fruit stall", "behind a crate of apples", "next to the flower stand")),
    ("playground", "at the playground", "to the playground", ("the slide", "the sandbox", "the seesaw"),
     ("in the sandbox", "under the slide", "behind the seesaw")),
    ("harbor", "at the harbor", "to the harbor", ("the fishing boats", "the long pier", "the lighthouse"),
     ("behind a coil of rope", "under the long pier", "near the lighthouse")),
    ("village square", "in the village square", "to the village square",
     ("the fountain", "the bakery", "the clock tower"),
     ("beside the fountain", "under a cafe table", "by the bakery door")),
)
HOMES = (
    "in a small house by the sea", "on a farm at the edge of the forest", "in a busy town",
    "in a cottage on a green hill", "in a tall building in the city", "in a quiet village near a river",
    "in a yellow house next to a park", "in a little town in the mountains", "on a houseboat",
    "in a blue house with a red door", "above a bakery on Maple Street", "in a village by a lake",
)
HOBBIES = (
    "painting pictures", "singing songs", "climbing trees", "reading stories about dragons",
    "building towers of blocks", "baking cookies", "watching the clouds", "collecting shiny stones",
    "playing hide and seek", "drawing animals", "dancing", "counting the stars", "riding bikes",
    "making up riddles", "digging in the sand", "planting flowers", "playing the piano", "jumping rope",
    "splashing in puddles", "telling jokes",
)
TRAITS = (
    "kind", "curious", "brave", "shy", "cheerful", "clever", "gentle", "funny", "busy", "helpful",
    "friendly", "quiet", "playful", "careful", "thoughtful",
)

# The arcs' words live in story_arcs.json next to this file; the arcs below say in what order and
# under which conditions a story uses them. STEPS[section][step] is the list of templates that a
# step picks one from (section "shared" or an arc's name; a step is named by the opening of its
# first template); TABLES[arc][name] holds the rows that an arc draws (an animal and how to help it).
with open(Path(__file__).with_name("story_arcs.json"), encoding="utf-8") as _f:
    _ARC_DATA = json.load(_f)
STEPS: dict[str, dict[str, list[str]]] = _ARC_DATA["steps"]
TABLES: dict[str, dict] = _ARC_DATA["tables"]

_FIRST_PERSON = ("I", "me", "my", "mine", "am", "Im", "Ill", "Ive", "myself", "Iwas")
_FIELD = re.compile(r"\{(\w+)\}")
_SENTENCE_START = re.compile(r"(^|[.!?] )([a-z])")


@dataclass(frozen=True)
class Character:
    """A named character of one story and the pronouns that must agree with them."""

    role: str  # "A" main character, "B" second child, "C" grown-up
    name: str
    gender: str  # "female", "male" or "plural" (a pair of children)
    pronouns: tuple[str, ...]  # subject, object, possessive, possessive pronoun, reflexive


@dataclass(frozen=True)
class StoryFacts:
    """What a story is made of: a ground truth that tests check the text against."""

    arc: str
    characters: tuple[Character, ...]  # characters[0] is the main character
    things: tuple[str, ...]  # nouns introduced with "a"/"an" and referred back to with "the"
    sentences: tuple[str, ...]  # " ".join(sentences) is the story
    # per sentence, the roles ("A", "B", "C") of the characters it refers to: by name, by pronoun, as
    # the speaker of its quote, or by name inside the quote
    sentence_roles: tuple[tuple[str, ...], ...]


# ---------------------------------------------------------------------------------------------
# Filling templates: "{A} lost {A_his} {obj}." -> "Mia lost her kite.", remembering that the
# sentence refers to character A. A slot whose value is a tuple picks one option at each use.


@functools.cache
def _parse(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    parts = _FIELD.split(template)  # literal, field, literal, field, ..., literal
    return tuple(parts[0::2]), tuple(parts[1::2])


@functools.cache
def _key_roles(key: str) -> frozenset[str]:
    """The characters a slot refers to: "A_his" -> {A}, "AB_they" -> {A, B}, "obj" -> {}."""
    prefix = key.split("_", 1)[0]
    return frozenset(prefix) if prefix and set(prefix) <= {"A", "B", "C"} else frozenset()


def _capitalize(sentence: str) -> str:
    i = 1 if sentence.startswith('"') else 0
    return sentence[:i] + sentence[i].upper() + sentence[i + 1:]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class _Story:
    """The story being written: its slots, its sentences and the characters each one refers to."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.steps: dict[str, list[str]] = STEPS["shared"]  # the arc's own steps are added once it is drawn
        self.slots: dict[str, str | tuple[str, ...]] = {}
        self.sentences: list[str] = []
        self.roles: list[tuple[str, ...]] = []
        self.characters: list[Character] = []
        self.things: list[str] = []

    def pick(self, options):
        return options[self.rng.randrange(len(options))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def character(self, role: str, name: str, gender: str, a_kind: str, kind: str, rel: str) -> None:
        forms = PRONOUNS[gender]
        self.slots[role] = name
        for key, value in forms.items():
            self.slots[f"{role}_{key}"] = value
        self.slots.update({f"{role}_a_kind": a_kind, f"{role}_kind": kind, f"{role}_rel": rel})
        pronouns = (forms["he"], forms["him"], forms["his"], forms["hers"], forms["self"])
        self.characters.append(Character(role, name, gender, pronouns))

    def thing(self, key: str, noun: str, look: str) -> None:
        """A thing introduced as {a_key} ("a red kite"), then {key} ("kite") or {key_full}."""
        self.slots.update({key: noun, f"{key}_full": f"{look} {noun}", f"a_{key}": _a(f"{look} {noun}")})
        self.things.append(noun)

    def fill(self, template: str, local: dict[str, tuple[str, str]] | None = None) -> tuple[str, set[str]]:
        literals, fields = _parse(template)
        out, roles = [literals[0]], set()
        for field, literal in zip(fields, literals[1:]):
            if local is not None and field in local:
                value, role = local[field]
                roles.update(role)
            else:
                value = self.slots[field]
                roles.update(_key_roles(field))
            out.append(value if isinstance(value, str) else self.pick(value))
            out.append(literal)
        return "".join(out), roles

    def add(self, step: str, **inline: str) -> None:
        """Write one sentence from one of the step's templates.

        `inline` text replaces its {key} in the templates before they are filled, so it may hold slots.
        """
        templates = self.steps[step]
        for key, text in inline.items():
            templates = [template.replace(f"{{{key}}}", text) for template in templates]
        text, roles = self.fill(self.pick(templates))
        self._append(_capitalize(text), roles)

    def maybe(self, p: float, step: str) -> None:
        if self.chance(p):
            self.add(step)

    def say(self, speaker: str, step: str, to: str | None = None) -> None:
        """A line of dialogue in quotes (one of the step's lines), with a speech tag before or after it.

        Lines use first-person slots for the speaker ({I}, {my}, {am}, {Im}, ... become "we", "our",
        "are", "we're" for a pair) and {L} for the listener's name.
        """
        lines = self.steps[step]
        local = {k: (self.slots[f"{speaker}_{k}"], speaker) for k in _FIRST_PERSON}
        local["name"] = (self.slots[speaker], speaker)
        if to is not None:
            local["L"] = (self.slots[to], to)
        line, roles = self.fill(self.pick(lines), local)
        line = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), line)
        body, mark = line[:-1], line[-1]
        verb = self.pick({"?": ("asked", "asked", "wondered"),
                          "!": ("shouted", "cried", "said", "called out", "laughed"),
                          ".": ("said", "said", "said", "whispered", "replied", "said softly")}[mark])
        name, pronoun = self.slots[speaker], self.slots[f"{speaker}_he"]
        end = "," if mark == "." else mark
        form = self.rng.randrange(5)
        if form == 1 and not any(speaker in roles for roles in self.roles):
            form = 0  # a character's first appearance names them: "she said" would refer to no one
        if form == 0:
            text = f'"{body}{end}" {verb} {name}.'
        elif form == 1:
            text = f'"{body}{end}" {pronoun} {verb}.'
        elif form == 2:
            text = f'{name} {verb}, "{body}{mark}"'
        elif form == 3:
            text = f'"{body}{end}" {name} {verb}.'
        else:  # a tag with an action: "Mia smiled. "..."" is two sentences, keep it one
            action = self.pick(("smiled", "nodded", "looked up", "took a deep breath",
                               "thought for a moment"))
            text = f'{name} {action} and {verb}, "{body}{mark}"'
        self._append(_capitalize(text), roles | {speaker})

    def _append(self, sentence: str, roles: set[str]) -> None:
        self.sentences.append(sentence)
        self.roles.append(tuple(sorted(roles)))


# ---------------------------------------------------------------------------------------------
# Casting: who is in the story, where it happens and what it is about.


def _cast(s: _Story) -> None:
    rng = s.rng
    girls, boys = list(GIRL_NAMES), list(BOY_NAMES)
    rng.shuffle(girls)
    rng.shuffle(boys)

    def child(role: str, plural_p: float) -> None:
        if s.chance(plural_p):
            a_kind, kind, gender = s.pick(_GROUP_KINDS)
            pool = {"female": (girls, girls), "male": (boys, boys)}.get(gender, (girls, boys))
            first, second = pool[0].pop(), (pool[1] if s.chance(0.5) else pool[0]).pop()
            s.character(role, f"{first} and {second}", "plural", a_kind, kind, s.pick(_RELATIONS["plural"]))
        else:
            gender = s.pick(("female", "male"))
            a_kind, kind = s.pick(_KINDS[gender])
            name = (girls if gender == "female" else boys).pop()
            s.character(role, name, gender, a_kind, kind, s.pick(_RELATIONS[gender]))

    child("A", 0.15)
    child("B", 0.12)
    name, gender = s.pick(GROWN_UPS)
    s.character("C", name, gender, "a grown-up", "grown-up", "")
    s.slots["AB_they"], s.slots["AB_them"], s.slots["AB_their"] = "they", "them", "their"
    s.slots["AB_selves"] = "themselves"

    place, at, to, sights, spots = s.pick(PLACES)
    s.slots.update(place=place, at_place=at, to_place=to, sight=sights, spot=spots)
    s.slots["sight1"], s.slots["sight2"] = rng.sample(sights, 2)
    s.slots.update(home=s.pick(HOMES), hobby=s.pick(HOBBIES), trait=s.pick(TRAITS),
                   color=s.pick(COLORS))
    s.slots["one_day"] = ("One day", "One morning", "One sunny afternoon", "One Saturday",
                          "Early one morning", "One bright day", "One summer day", "One autumn morning")
    s.slots["later"] = ("After a while", "Soon", "A little later", "Before long", "Just then")
    s.slots["sad"] = ("sad", "very sad", "upset", "unhappy", "sad and worried")
    s.slots["happy"] = ("happy", "very happy", "glad", "so happy", "full of joy")


# ---------------------------------------------------------------------------------------------
# Steps that many arcs share.


def _introduce_main(s: _Story) -> None:
    s.add("Once upon a time, there {A_was} ...")
    s.maybe(0.8, "{A_he} loved {hobby} more than ...")


def _introduce_pet(s: _Story) -> None:
    noun, sound, action = s.pick(PETS)
    s.thing("pet", noun, s.pick(_PET_LOOKS))
    s.slots.update(pet_sound=sound, pet_action=action)
    s.add("{A} had {a_pet} that followed ...")


def _introduce_friend(s: _Story) -> None:
    s.add("{A_his} {B_rel}, {B}, lived just ...")


def _weather(s: _Story, kind: str) -> None:
    """One sentence of weather and what the character does because of it."""
    s.add(f"weather: {kind}")


# ---------------------------------------------------------------------------------------------
# The arcs. Each one writes a whole story whose last sentence names the main character.


def _lost_object(s: _Story) -> None:
    noun, mode = s.pick(OBJECTS)
    s.thing("obj", noun, s.pick(_LOOKS))
    _introduce_main(s)
    has_pet = s.chance(0.4)
    if has_pet:
        _introduce_pet(s)
    s.add("{A_his} favorite toy was {a_obj} ...")
    _weather(s, "wind" if mode == "wind" else s.pick(("sun", "sun", "cold", "hot")))
    s.add("{one_day}, {A} and {A_his} {B_rel} ...")
    if mode == "wind":
        s.add("Suddenly, a strong gust of wind ...")
    elif mode == "roll":
        s.add("{A} threw the {obj} too hard, ...")
    elif mode == "drop":
        s.add("While {A_he} {A_was} running, ...")
    else:
        s.add("{A} put the {obj} down near {sight} ...")
        s.add("When it was time to go home, ...")
    s.add("The {obj} was gone, so {A} felt ...")
    s.say("A", "oh no! {I} lost {my} {obj}! ...", to="B")
    s.say("B", "don't cry, {L}. We will find ...", to="A")
    s.add("{A} and {B} looked near {sight1}, ...")
    finder = s.pick(("pet", "pet", "B", "C")) if has_pet else s.pick(("B", "B", "C", "A"))
    if has_pet and finder != "pet":
        s.add("Even the {pet} helped, sniffing ...")
    if finder == "pet":
        if s.chance(0.4):  # cause and effect across two sentences, as in "The ball rolled ..., so ..."
            s.add("The {obj} was {spot}, so {A} ...")
            s.add("Then the {pet} ran over and brought ...")
        else:
            s.add("Then the {pet} {pet_sound} and ...")
    elif finder == "B":
        s.add("Then {B} pointed at something ...")
    elif finder == "C":
        s.add("When {AB_they} told {C}, {C} ...")
    else:
        s.add("Then {A} remembered where {A_he} ...")
    s.add("{A} {A_was} so {happy} that {A_he} ...")
    s.say("A", "thank you, {L}! You are the best! ...", to="B")
    s.add("From that day on, {A} took good ...")


def _trip(s: _Story) -> None:
    _introduce_main(s)
    _introduce_friend(s)
    s.add("{one_day}, {C} said that {A} ...")
    s.say("A", "hooray! {Im} going {to_place}! ...")
    problem = s.pick(("lost", "rain", "hungry"))
    _weather(s, "sun" if problem == "rain" else s.pick(("rain", "cold", "hot", "sun")))
    s.add("{AB_they} went by bus, and {A} ...")
    doings = list(TABLES["trip"]["activities"][s.slots["place"]])
    s.rng.shuffle(doings)
    s.slots["do1"], s.slots["do2"] = doings[0], doings[1]
    s.add("{at_place}, {A} and {B} {do1}. ...")
    s.add("Then {AB_they} {do2}. ...")
    if problem == "lost":
        s.add("{later}, {A} looked around and ...")
        s.add("{A} felt scared, because everything ...")
        s.say("B", "don't be afraid. Let's go back ...", to="A")
        s.add("{A} and {B} went back to {sight}, ...")
        s.say("C", "there you are! Always stay close ...")
    elif problem == "rain":
        s.add("Suddenly, dark clouds covered ...")
        s.add("Because the rain was so heavy, ...")
        s.say("A", "{I} hope the rain stops soon. ...", to="B")
        s.add("After a few minutes, the rain ...")
        s.say("B", "look, a rainbow! ...", to="A")
    else:
        s.add("{later}, {A} felt very hungry, ...")
        s.add("{A} {A_was} {sad}, because {A_his} ...")
        s.say("B", "you can share {my} sandwiches, ...", to="A")
        s.add("{A} and {B} shared the food, ...")
    s.add("When the sun began to set, {AB_they} ...")
    s.add("On the way home, {A} fell asleep, ...", moral=TABLES["trip"]["morals"][problem])


def _new_friend(s: _Story) -> None:
    noun, _ = s.pick(TABLES["new friend"]["objects"])
    s.thing("obj", noun, s.pick(_LOOKS))
    s.add("Once upon a time, {A_a_kind} ...")
    s.add("{A} did not know anyone, so {A_he} ...")
    s.maybe(0.6, "{A_he} loved {hobby}, but it ...")
    _weather(s, s.pick(("sun", "cold", "hot")))
    s.add("{one_day}, {A} saw {B_a_kind} ...")
    s.add("{B} had {a_obj}, but {B_he} {B_was} ...")
    s.add("{A} wanted to say hello, but ...")
    if s.chance(0.5):
        s.say("C", "go on, {L}. Just say hello. ...", to="A")
    s.add("At last, {A} took a deep breath ...")
    s.say("A", "hello! {Im} {name}. Can {I} play ...", to="B")
    s.say("B", "yes! {I} would love a friend. ...", to="A")
    s.add("{A} and {B} played with the {obj} ...")
    s.maybe(0.7, "{B} told {A} about {B_his} favorite ...")
    s.say("B", "will you come back tomorrow? ...", to="A")
    s.add("From that day on, {A} and {B} ...")


def _storm(s: _Story) -> None:
    _introduce_main(s)
    has_pet = s.chance(0.6)
    if has_pet:
        _introduce_pet(s)
    _introduce_friend(s)
    s.add("{one_day}, {A} and {B} were playing ...")
    s.add("The sky turned dark, and the ...")
    s.add("Because a storm was coming, {C} ...")
    s.add("{A} {A_was} scared of the thunder. ...")
    s.say("A", "{I} don't like storms. ...")
    if has_pet:
        s.add("Then {A} noticed that the {pet} ...")
        s.say("A", "where is the {pet}? It must be ...")
        s.add("{B} looked under the bed and ...")
        s.add("{A} dried the {pet} with a towel ...")
    else:
        s.add("Then the lights went out, and ...")
        s.add("{C} lit some candles, and the ...")
        s.say("C", "storms are loud, but we are safe ...")
        s.add("So {A} and {B} sat close to {C} ...")
    s.add("{later}, the thunder grew quieter ...")
    s.add("By morning, the storm had passed, ...")
    s.say("B", "see? The storm is gone! ...", to="A")
    s.add("{A} {A_was} not afraid of storms ...")


def _lesson(s: _Story) -> None:
    lesson = s.pick(("sharing", "honesty", "patience"))
    _introduce_main(s)
    if lesson == "sharing":
        noun, _ = s.pick(OBJECTS)
        s.thing("obj", noun, s.pick(_LOOKS))
        _introduce_friend(s)
        s.add("{one_day}, {C} gave {A} {a_obj}. ...")
        s.add("{A} loved the {obj} so much that ...")
        s.add("When {B} came over, {B_he} asked ...")
        s.say("B", "can {I} try, {L}? Just for a ...", to="A")
        s.say("A", "no! It is {mine}! ...", to="B")
        s.add("{B} looked {sad} and went home. ...")
        s.add("{A} played alone with the {obj}, ...")
        s.add("When {C} heard what had happened, ...")
        s.say("C", "toys are more fun when we share ...", to="A")
        s.add("{A} thought about it and knew ...")
        s.add("So {A} ran to {B}'s house with ...")
        s.say("A", "{Im} sorry, {L}. Do you want ...", to="B")
        s.add("{B} smiled, and {A} and {B} played ...")
        s.add("{A} learned that sharing makes ...")
    elif lesson == "honesty":
        breakable = s.pick(TABLES["lesson learned"]["breakables"])
        s.thing("obj", breakable, s.pick(COLORS + ("beautiful", "old", "painted")))
        s.add("{C} had {a_obj} that {C} loved ...")
        _introduce_friend(s)
        s.add("{one_day}, {A} and {B} were playing ...")
        s.add("Crash! The {obj} fell to the ...")
        s.say("B", "oh no! What will we do? ...", to="A")
        s.add("{A} {A_was} scared, so {A_he} ...")
        s.add("When {C} came home, {C} looked ...")
        s.say("C", "do you know what happened to ...", to="A")
        s.say("A", "no, {I} don't know. ...", to="C")
        s.add("That night, {A} could not sleep, ...")
        s.add("In the morning, {A} went to {C} ...")
        s.say("A", "{I} broke the {obj}. {Im} really ...",
              to="C")
        s.add("{C} hugged {A} and said that ...")
        s.add("Together, {A} and {C} glued the ...")
        s.add("{A} learned that telling the ...")
    else:
        s.thing("seed", "seed", s.pick(("tiny", "small", "round", "little", "brown")))
        s.slots["plant"] = s.pick(TABLES["lesson learned"]["flowers"])
        s.add("{one_day}, {C} gave {A} {a_seed} ...")
        s.add("{A} planted the {seed} and watered ...")
        s.add("The next morning, {A} ran to ...")
        s.say("A", "why isn't it growing? {Ive} waited ...")
        s.add("{A} {A_was} so impatient that ...")
        _introduce_friend(s)
        s.say("B", "seeds need time, {L}. You have ...", to="A")
        s.add("So {A} planted the {seed} again ...")
        s.add("Every day, {A} gave it water ...")
        s.add("At last, a tiny green shoot came ...")
        s.add("Weeks later, it grew into a beautiful ...")
        s.add("{A} learned that good things ...")


def _competition(s: _Story) -> None:
    contest, practice, scene = s.pick(TABLES["competition"]["contests"])
    s.slots.update(contest=contest, practice=practice, scene=scene)
    _introduce_main(s)
    _introduce_friend(s)
    s.add("{one_day}, {C} told {A} about ...")
    s.say("A", "{I} will win the {contest}! ...", to="C")
    s.add("So every day, {A} {practice}. ...")
    s.add("{B} {B_was} in the {contest} ...")
    s.add("On the day of the {contest}, ...")
    s.maybe(0.6, "{A_his} hands were shaking, because ...")
    ending = s.pick(("help", "win", "lose"))
    if ending == "help":
        s.add("In the middle of the {contest}, ...")
        s.add("{A} could have kept going, but ...")
        s.say("A", "are you all right, {L}? {Ill} ...", to="B")
        s.add("Because {A} stopped, {A_he} did ...")
        s.add("But the judges gave {A} a special ...")
        s.say("C", "you did not win, but {Im} very ...",
              to="A")
        s.add("{A} learned that being kind matters ...")
    elif ending == "win":
        s.add("{A} did {A_his} very best, and ...")
        s.add("{A} won first prize! ...")
        s.say("B", "well done, {L}! You deserve it. ...", to="A")
        s.add("{A} shared the prize with {B}, ...")
        s.add("{A} learned that hard work pays ...")
    else:
        s.add("{A} tried {A_his} best, but {B} ...")
        s.add("At first, {A} felt {sad}. ...")
        s.say("C", "what matters is that you tried ...", to="A")
        s.add("{A} thought about it and smiled, ...")
        s.add("{A} learned that trying matters ...")


def _help_animal(s: _Story) -> None:
    noun, found, fix, leave = s.pick(TABLES["helping an animal"]["animals"])
    s.slots.update(found=found, fix=fix, leave=leave)
    _introduce_main(s)
    _introduce_friend(s)
    _weather(s, s.pick(("sun", "cold", "hot")))
    s.add("{one_day}, {A} and {B} went for ...")
    s.add("Suddenly, {A} heard a soft little ...")
    s.thing("animal", noun, s.pick(("little", "tiny", "small", "young", "poor")))
    s.add("It was {a_animal} {found}. ...")
    s.say("A", "poor little {animal}! We have ...", to="B")
    if s.chance(0.5):
        s.add("{A} and {B} ran to get {C}. ...")
        s.say("C", "you did the right thing. Let's ...")
        s.add("Together, {A}, {B} and {C} {fix}. ...")
    else:
        s.add("{A} thought for a moment, and ...")
        s.add("{A} and {B} {fix}. ...")
    s.maybe(0.5, "{A} {A_was} worried, because ...")
    s.add("At last, the {animal} {leave}. ...")
    s.say("B", "we did it, {L}! ...", to="A")
    s.add("{A} waved goodbye to the {animal}, ...")


def _misunderstanding(s: _Story) -> None:
    _introduce_main(s)
    _introduce_friend(s)
    if s.chance(0.5):  # a missing thing blamed on a friend
        noun, _ = s.pick(OBJECTS)
        s.thing("obj", noun, s.pick(_LOOKS))
        has_pet = s.chance(0.5)
        if has_pet:
            _introduce_pet(s)
        s.add("{A} had {a_obj} that {A_he} kept ...")
        s.add("{one_day}, {B} came to play, ...")
        s.add("The next morning, the {obj} was ...")
        s.add("{A} thought that {B} had taken ...")
        s.say("A", "you took {my} {obj}! Give it ...", to="B")
        s.say("B", "{I} did not take it! {I} would ...",
              to="A")
        s.add("{B} went home {sad}, and {A} ...")
        if has_pet:
            s.add("That evening, {A} saw the {pet} ...")
        else:
            s.add("That evening, {A} found the {obj} ...")
        s.add("{A} felt terrible, because {B} ...")
        s.say("A", "{Im} so sorry, {L}. {I} should ...", to="B")
        s.say("B", "that's all right. {Im} glad you ...", to="A")
        s.add("{A} learned not to blame a friend ...")
    else:  # a secret that looks like unkindness
        s.thing("gift", s.pick(("cake", "card", "kite", "scrapbook", "picture", "puppet")),
                s.pick(("big", "beautiful", "homemade", "colorful", "special")))
        s.add("For days, {B} and {C} had been ...")
        s.add("Whenever {A} came close, {B} ...")
        s.add("{A} felt left out, so {A_he} ...")
        s.say("A", "why won't anyone tell {me} anything? ...")
        s.add("Then, on the morning of {A_his} ...")
        s.add("{B} {B_was} holding {a_gift} ...")
        s.say("B", "surprise! {Ive} been making it ...",
              to="A")
        s.add("{A} laughed, because all the ...")
        s.add("{A} hugged {B} and said it was ...")


def _fear(s: _Story) -> None:
    fear, sign, helper, success = s.pick(TABLES["fear"]["fears"])
    s.slots.update(fear=fear, sign=sign, helper=helper, success=success)
    _introduce_main(s)
    s.add("But {A} {A_was} afraid of {fear}. ...")
    s.add("{A} {sign}. ...")
    _introduce_friend(s)
    s.add("{one_day}, {B} noticed that {A} ...")
    s.say("A", "{Im} scared of {fear}. ...", to="B")
    s.say("B", "{I} used to be scared too. {I} ...",
          to="A")
    s.add("{B} came back with {helper}. ...")
    s.add("{A} tried a little bit at first, ...")
    s.add("Then {A} tried again, and it ...")
    s.say("C", "look at you! {Im} so proud of ...", to="A")
    s.add("At last, {A} {success}. ...")
    s.add("{A} {A_was} not afraid of {fear} ...")


def _gift(s: _Story) -> None:
    s.thing("gift", s.pick(("card", "bracelet", "portrait", "cake", "clay pot", "paper crown", "poem")),
            s.pick(("lovely", "bright", "special", "homemade", "colorful", "little")))
    _introduce_main(s)
    s.add("Soon it would be {C}'s birthday, ...")
    s.add("But {A} had no money, so {A_he} ...")
    _introduce_friend(s)
    s.say("B", "{Ill} help you, {L}! ...", to="A")
    s.add("{A} and {B} worked on the {gift} ...")
    s.add("But then something went wrong. ...")
    s.add("{A} spilled water all over the ...")
    s.add("{A} {A_was} so {sad} that {A_he} ...")
    s.say("B", "we can make it again, and it ...",
          to="A")
    s.add("So {A} and {B} worked late into ...")
    s.add("On {C}'s birthday, {A} gave {C} ...")
    s.say("C", "this is the best present {Ive} ...", to="A")
    s.add("{C} hugged {A} and {B}, and {C} ...")
    s.add("{A} learned that the best presents ...")


ARCS: dict[str, Callable[[_Story], None]] = {
    "lost object": _lost_object,
    "trip": _trip,
    "new friend": _new_friend,
    "storm": _storm,
    "lesson learned": _lesson,
    "competition": _competition,
    "helping an animal": _help_animal,
    "misunderstanding": _misunderstanding,
    "fear": _fear,
    "gift": _gift,
}


# ---------------------------------------------------------------------------------------------
# The public functions.


def generate_story_with_facts(rng: random.Random) -> tuple[str, StoryFacts]:
    """One story and its facts (characters, pronouns, things, sentences with the roles they mention).

    Raises TypeError unless rng is a random.Random.
    """
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    while True:  # the few stories (about 1 in 200) outside the length bounds are drawn again
        s = _Story(rng)
        _cast(s)
        arc = s.pick(tuple(ARCS))
        s.steps = {**STEPS["shared"], **STEPS[arc]}
        ARCS[arc](s)
        text = " ".join(s.sentences)
        if MIN_STORY_CHARS <= len(text) <= MAX_STORY_CHARS:
            break
    used = {role for roles in s.roles for role in roles}
    facts = StoryFacts(
        arc=arc,
        characters=tuple(c for c in s.characters if c.role in used),
        things=tuple(s.things),
        sentences=tuple(s.sentences),
        sentence_roles=tuple(s.roles),
    )
    return text, facts


def generate_story(rng: random.Random) -> str:
    """One story (ASCII, one paragraph, no blank line), drawn with `rng`."""
    return generate_story_with_facts(rng)[0]


def generate_stories(n_chars: int, seed: int = 0) -> str:
    """Exactly `n_chars` characters of stories separated by blank lines, deterministic in `seed`.

    Whole stories are generated until the text reaches at least `n_chars`, then the text is cut to
    exactly `n_chars` characters, so the last story is usually cut short. The same seed gives the
    same text, and a longer text starts with the shorter one.
    Raises TypeError unless n_chars and seed are ints, ValueError for n_chars < 0.
    """
    if isinstance(n_chars, bool) or not isinstance(n_chars, numbers.Integral):
        raise TypeError(f"n_chars must be an int, got {type(n_chars).__name__}")
    if n_chars < 0:
        raise ValueError(f"n_chars must be >= 0, got {n_chars}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rng = random.Random(int(seed))  # never the global RNG: the corpus depends on the seed alone
    stories, total = [], 0
    while total < n_chars:
        story = generate_story(rng)
        stories.append(story)
        total += len(story) + 2  # + the "\n\n" that separates it from the next one
    return "\n\n".join(stories)[:n_chars]
