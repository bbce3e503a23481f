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
It is in the spirit of TinyStories (Eldan & Li, 2023, "TinyStories: How Small Can Language Models
Be and Still Speak Coherent English?", arXiv:2305.07759), which used an LLM instead of a grammar;
a grammar is deterministic, needs no download and can state the facts that tests check:
`generate_story_with_facts` returns, next to the text, every character with their pronouns, the
things introduced with "a", and for each sentence the characters it refers to.
"""

from __future__ import annotations

import functools
import numbers
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

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

    def add(self, *templates: str) -> None:
        """Write one sentence from one of the templates."""
        text, roles = self.fill(self.pick(templates))
        self._append(_capitalize(text), roles)

    def maybe(self, p: float, *templates: str) -> None:
        if self.chance(p):
            self.add(*templates)

    def say(self, speaker: str, *lines: str, to: str | None = None) -> None:
        """A line of dialogue in quotes, with a speech tag before or after it.

        Lines use first-person slots for the speaker ({I}, {my}, {am}, {Im}, ... become "we", "our",
        "are", "we're" for a pair) and {L} for the listener's name.
        """
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
    s.add("Once upon a time, there {A_was} {A_a_kind} named {A} who lived {home}.",
          "Once upon a time, {A_a_kind} named {A} lived {home}.",
          "There once {A_was} {A_a_kind} called {A}, who lived {home}.",
          "{A} {A_was} {A_a_kind} who lived {home}.",
          "Long ago, {A_a_kind} named {A} lived {home} with {C}.",
          "Not so long ago, {home}, there lived {A_a_kind} named {A}.",
          "Once there {A_was} {A_a_kind} named {A}, and {A_he} lived {home}.")
    s.maybe(0.8, "{A_he} loved {hobby} more than anything.",
            "{A_he} {A_was} {trait} and loved {hobby}.",
            "Everyone knew {A} because {A_he} {A_was} so {trait}.",
            "{A_his} favorite color was {color}, and {A_his} favorite thing to do was {hobby}.",
                        "Every day after school, {A} liked {hobby}.")


def _introduce_pet(s: _Story) -> None:
    noun, sound, action = s.pick(PETS)
    s.thing("pet", noun, s.pick(_PET_LOOKS))
    s.slots.update(pet_sound=sound, pet_action=action)
    s.add("{A} had {a_pet} that followed {A_him} everywhere.",
          "{A} lived with {a_pet}, and the {pet} was {A_his} best helper.",
          "{A_he} had {a_pet}, who {pet_action} whenever {A_he} came home.",
          "{A_his} favorite companion was {a_pet}.",
          "{A} also had {a_pet}, and wherever {A_he} went, the {pet} went too.")


def _introduce_friend(s: _Story) -> None:
    s.add("{A_his} {B_rel}, {B}, lived just down the road.",
          "{A} often played with {A_his} {B_rel}, {B}.",
          "{B}, {A_his} {B_rel}, {B_was} always ready for an adventure.",
          "{A_his} {B_rel} {B} came over to play almost every day.",
          "{A} and {A_his} {B_rel} {B} did almost everything together.")


def _weather(s: _Story, kind: str) -> None:
    """One sentence of weather and what the character does because of it."""
    s.add(*{
        "rain": ("Because it was raining, {A} took {A_his} umbrella.",
                 "It was raining, so {A} put on {A_his} rain boots.",
                 "Because the sky was gray and wet, {A} wore {A_his} raincoat.",
                 "The rain was falling softly, so {A} took {A_his} umbrella with {A_him}."),
        "cold": ("Because it was cold, {A} wore {A_his} warm coat.",
                 "The wind was cold, so {A} put on {A_his} woolly gloves.",
                 "It was a frosty morning, so {A} wrapped up warm before going out."),
        "hot": ("Because it was a hot day, {A} took a bottle of water.",
                "The sun was very hot, so {A} wore {A_his} sun cap.",
                "It was so warm that {A} put on {A_his} sandals."),
        "wind": ("It was a windy day, and the trees were swaying.",
                 "The wind was blowing hard, so {A} held on tight to everything.",
                 "Because it was windy, the leaves were dancing in the air."),
        "sun": ("The sun was shining, so {A} decided to go outside.",
                "It was a bright and sunny day, and the birds were singing.",
                "Because the weather was lovely, {A} wanted to play outside all day."),
    }[kind])


# ---------------------------------------------------------------------------------------------
# The arcs. Each one writes a whole story whose last sentence names the main character.


def _lost_object(s: _Story) -> None:
    noun, mode = s.pick(OBJECTS)
    s.thing("obj", noun, s.pick(_LOOKS))
    _introduce_main(s)
    has_pet = s.chance(0.4)
    if has_pet:
        _introduce_pet(s)
    s.add("{A_his} favorite toy was {a_obj} that {C} had given {A_him}.",
          "For {A_his} birthday, {C} gave {A} {a_obj}.",
          "{A} had {a_obj}, and {A_he} took it everywhere.",
          "More than anything, {A} loved {a_obj} that {A_he} had found at a yard sale.",
          "{A} had just made {a_obj} with {C}, and {A_he} {A_was} very proud of it.")
    _weather(s, "wind" if mode == "wind" else s.pick(("sun", "sun", "cold", "hot")))
    s.add("{one_day}, {A} and {A_his} {B_rel} {B} went to play {at_place}.",
          "{one_day}, {A} took the {obj} {to_place} to show {A_his} {B_rel}, {B}.",
          "{one_day}, {A} went {to_place} with {B}, {A_his} {B_rel}, and brought the {obj_full} along.")
    if mode == "wind":
        s.add("Suddenly, a strong gust of wind blew the {obj} out of {A_his} hands.",
              "Then the wind grew stronger and carried the {obj} far away, over {sight}.",
              "Without warning, the wind lifted the {obj} high into the air, and it was gone.")
    elif mode == "roll":
        s.add("{A} threw the {obj} too hard, and it rolled away.",
              "The {obj} bounced off a stone and rolled far away, past {sight}.",
              "{B} kicked the {obj} by accident, and it rolled down the slope and out of sight.")
    elif mode == "drop":
        s.add("While {A_he} {A_was} running, the {obj} slipped out of {A_his} pocket.",
              "{A} bent down to look at a beetle, and the {obj} fell into the grass without a sound.",
              "When {A} waved to {B}, the {obj} slipped off and fell.")
    else:
        s.add("{A} put the {obj} down near {sight} and ran off to play.",
              "{A} left the {obj} on a bench while {A_he} played with {B}.",
              "{A} set the {obj} down for just a moment to help {B}.")
        s.add("When it was time to go home, {A} could not find the {obj} anywhere.",
              "Later, when {A} came back, the {obj} was not there.")
    s.add("The {obj} was gone, so {A} felt {sad}.",
          "{A_his} eyes filled with tears, because the {obj} was {A_his} favorite.",
          "{A} sat down on the ground and started to cry.",
          "{A} looked everywhere, but the {obj} was nowhere to be seen.")
    s.say("A", "oh no! {I} lost {my} {obj}!", "{my} {obj} is gone! What will {I} do?",
          "where did {my} {obj} go?", "{I} will never find {my} {obj} now.", to="B")
    s.say("B", "don't cry, {L}. We will find it together.", "don't worry, {L}. {Ill} help you look.",
          "where did you see it last?", "let's look for it. Two pairs of eyes are better than one!", to="A")
    s.add("{A} and {B} looked near {sight1}, near {sight2} and everywhere else.",
          "{AB_they} searched for a long time, but the {obj} was nowhere to be found.",
          "{A} looked high and {B} looked low, and {AB_they} called to each other as {AB_they} searched.",
          "{B} held {A_his} hand, and together {AB_they} walked slowly back along the path.")
    finder = s.pick(("pet", "pet", "B", "C")) if has_pet else s.pick(("B", "B", "C", "A"))
    if has_pet and finder != "pet":
        s.add("Even the {pet} helped, sniffing under every bush.", "The {pet} ran around in circles.")
    if finder == "pet":
        if s.chance(0.4):  # cause and effect across two sentences, as in "The ball rolled ..., so ..."
            s.add("The {obj} was {spot}, so {A} {A_was} worried.", "The {obj} was stuck {spot}, so {A} could"
                  " not reach it.")
            s.add("Then the {pet} ran over and brought it back, and {A_he} smiled.",
                  "Then the {pet} squeezed in and pulled it out, and {A} laughed.")
        else:
            s.add("Then the {pet} {pet_sound} and ran off, and soon it came back with the {obj}.",
                  "Suddenly, the {pet} {pet_sound} and started to dig {spot}, and there was the {obj}!")
    elif finder == "B":
        s.add("Then {B} pointed at something {spot} and shouted, \"Look! There it is!\"",
              "At last, {B} found the {obj} {spot}.",
              "{B} spotted something {color} {spot}, and it was the {obj}!")
    elif finder == "C":
        s.add("When {AB_they} told {C}, {C} helped {AB_them} look, and {C} found the {obj} {spot}.",
              "{C} came to help, and {C} found the {obj} {spot} in no time.")
    else:
        s.add("Then {A} remembered where {A_he} had been, and {A_he} found the {obj} {spot}.",
              "{A} looked one more time, and there was the {obj}, {spot}!")
    s.add("{A} {A_was} so {happy} that {A_he} jumped up and down.",
          "{A} hugged the {obj} tight, and {A_his} tears turned into a big smile.",
          "{A} laughed with joy and held the {obj} close.")
    s.say("A", "thank you, {L}! You are the best!", "thank you so much, {L}!",
          "{Im} so glad you were here, {L}.", to="B")
    s.add("From that day on, {A} took good care of the {obj} and never lost it again.",
          "That night, {A} put the {obj} next to {A_his} bed and fell asleep with a smile.",
          "After that, whenever {A} went out to play, {A_he} kept the {obj} safe in {A_his} bag, and {A} and"
          " {B} laughed about {AB_their} big search.",
          "{A} learned to be more careful, and {A} and {B} went home together, happy and tired.")


_TRIP_ACTIVITIES = {
    "park": ("played on the swings", "fed the ducks", "had a picnic on the grass"),
    "river": ("threw pebbles into the water", "watched the fish", "crossed the old bridge"),
    "beach": ("built a big sandcastle", "looked for shells", "splashed in the waves"),
    "forest": ("followed a narrow path", "listened to the birds", "found tiny mushrooms"),
    "garden": ("picked strawberries", "watered the roses", "chased butterflies"),
    "meadow": ("picked wild flowers", "rolled down the grass", "watched the clouds"),
    "lake": ("skipped stones on the water", "sat on the wooden dock", "watched the frogs"),
    "hill": ("climbed to the top", "looked at the whole valley", "counted the sheep"),
    "farm": ("fed the chickens", "rode on the tractor", "visited the cows in the red barn"),
    "market": ("tasted sweet peaches", "looked at the flowers", "listened to a man playing a fiddle"),
    "playground": ("went down the slide", "played on the seesaw", "dug in the sandbox"),
    "harbor": ("watched the fishing boats", "walked along the long pier", "looked at the lighthouse"),
    "village square": ("threw coins in the fountain", "bought warm bread at the bakery",
                       "watched the clock tower"),
}


def _trip(s: _Story) -> None:
    _introduce_main(s)
    _introduce_friend(s)
    s.add("{one_day}, {C} said that {A} and {B} could go {to_place}.",
          "{one_day}, {C} decided to take {A} and {B} {to_place}.",
          "{one_day}, {A} asked {C} for a trip {to_place}, and {C} said yes.")
    s.say("A", "hooray! {Im} going {to_place}!", "{I} can't wait!", "can we leave right now?",
          "this will be the best day ever!")
    problem = s.pick(("lost", "rain", "hungry"))
    _weather(s, "sun" if problem == "rain" else s.pick(("rain", "cold", "hot", "sun")))
    s.add("{AB_they} went by bus, and {A} looked out of the window the whole way.",
          "{AB_they} rode {AB_their} bikes along the road, and {C} rode behind {AB_them}.",
          "{AB_they} walked along a long path, singing songs as {AB_they} went.",
          "{AB_they} took the little train, and {A} counted the cows in the fields.")
    doings = list(_TRIP_ACTIVITIES[s.slots["place"]])
    s.rng.shuffle(doings)
    s.slots["do1"], s.slots["do2"] = doings[0], doings[1]
    s.add("{at_place}, {A} and {B} {do1}.", "First, {A} and {B} {do1}.",
          "When {AB_they} arrived, {AB_they} {do1}.")
    s.add("Then {AB_they} {do2}.", "After that, {A} and {B} {do2}.", "Later, {B} and {A} {do2}.")
    if problem == "lost":
        s.add("{later}, {A} looked around and could not see {C} anywhere.",
              "{A} followed a butterfly, and when {A_he} looked up, {C} was gone.")
        s.add("{A} felt scared, because everything looked strange.",
              "{A_his} heart beat fast, because {A_he} did not know the way back.")
        s.say("B", "don't be afraid. Let's go back to {sight} and wait there.",
              "{I} remember the way. Follow me!", "let's stay together and call for {C}.", to="A")
        s.add("{A} and {B} went back to {sight}, and there was {C}, waving at {AB_them}.",
              "So {AB_they} called {C} as loudly as {AB_they} could, and soon {C} came running.")
        s.say("C", "there you are! Always stay close to me.", "{Iwas} looking for you everywhere!")
        moral = "{A} learned to always stay close to {C}"
    elif problem == "rain":
        s.add("Suddenly, dark clouds covered the sun and it began to rain.",
              "{later}, the sky turned gray, and big drops of rain started to fall.")
        s.add("Because the rain was so heavy, {A} and {B} ran to hide under {sight}.",
              "{AB_they} ran to find shelter, and {C} opened a big blanket over {AB_their} heads.")
        s.say("A", "{I} hope the rain stops soon.", "will the rain ever stop?", to="B")
        s.add("After a few minutes, the rain stopped, and a rainbow appeared in the sky.",
              "Soon the sun came out again, and everything was shiny and wet.")
        s.say("B", "look, a rainbow!", "the rain is gone! Let's play again!", to="A")
        moral = "{A} learned that a little rain cannot ruin a good day"
    else:
        s.add("{later}, {A} felt very hungry, but {A_he} had left {A_his} lunch at home.",
              "At lunch time, {A} opened {A_his} bag and saw that {A_his} lunch was not there.")
        s.add("{A} {A_was} {sad}, because {A_his} tummy was rumbling.",
              "{A} did not say anything, but {A_he} looked at the ground.")
        s.say("B", "you can share {my} sandwiches, {L}. {Ive} got plenty!",
              "here, take half of {my} apple, {L}.", "don't worry, {L}. We can share.", to="A")
        s.add("{A} and {B} shared the food, and it tasted better than ever.",
              "So {AB_they} sat on the grass and shared everything.")
        moral = "{A} learned that sharing makes a small lunch feel like a feast"
    s.add("When the sun began to set, {AB_they} went home, tired and {happy}.",
          "In the evening, {C} took {A} and {B} home.")
    s.add("On the way home, {A} fell asleep, dreaming about the day {at_place}.",
          "That night, {A} told everyone about the trip, and {A_he} could not wait to go back {to_place}.",
          moral + ", and {A} never forgot that day {at_place}.",
          "{A} smiled all the way home, because {A_he} had had the best day with {B}.")


_FRIEND_OBJECTS = (("kite", "wind"), ("ball", "roll"), ("hoop", "roll"), ("toy boat", "float"),
                   ("skipping rope", "jump"), ("drum", "play"), ("puzzle", "play"), ("jigsaw", "play"))


def _new_friend(s: _Story) -> None:
    noun, _ = s.pick(_FRIEND_OBJECTS)
    s.thing("obj", noun, s.pick(_LOOKS))
    s.add("Once upon a time, {A_a_kind} named {A} moved to a new town with {C}.",
          "{A} {A_was} {A_a_kind} who had just moved to a new home with {C}.",
          "Once there {A_was} {A_a_kind} named {A}, who {A_was} new in town.",
          "Not long ago, {A_a_kind} called {A} came to live {home}.")
    s.add("{A} did not know anyone, so {A_he} felt lonely.",
          "Every day, {A} played alone {at_place}, because {A_he} had no friends yet.",
          "{A} missed {A_his} old friends very much.",
          "Because {A_he} {A_was} new, {A} did not know who to play with.")
    s.maybe(0.6, "{A_he} loved {hobby}, but it was not much fun all alone.",
            "{A_he} {A_was} {trait}, but also a little shy.")
    _weather(s, s.pick(("sun", "cold", "hot")))
    s.add("{one_day}, {A} saw {B_a_kind} named {B} {at_place}.",
          "{one_day}, {A} went {to_place} and saw {B_a_kind} named {B} playing near {sight}.",
          "{one_day}, {C} took {A} {to_place}, and there {A_he} saw {B_a_kind} named {B}.")
    s.add("{B} had {a_obj}, but {B_he} {B_was} playing with it all alone.",
          "{B} {B_was} trying to play with {a_obj}, but it was hard to play alone.",
          "{B} {B_was} holding {a_obj} and looking around, as if looking for someone to play with.")
    s.add("{A} wanted to say hello, but {A_he} {A_was} too shy.",
          "{A_his} heart beat fast, and {A_he} did not know what to say.",
          "{A} stood still for a long time, because {A_he} {A_was} afraid {B} would say no.")
    if s.chance(0.5):
        s.say("C", "go on, {L}. Just say hello.", "why don't you ask if you can play?", to="A")
    s.add("At last, {A} took a deep breath and walked over.", "Then {A} gathered all {A_his} courage.",
          "Slowly, {A} walked up to {B}.")
    s.say("A", "hello! {Im} {name}. Can {I} play too?", "hi! {my} name is {name}. What are you doing?",
          "{I} like your {obj}. Can {I} play with you?", to="B")
    s.say("B", "yes! {I} would love a friend.", "of course! {Im} {name}. Let's play together!",
          "sure! It is much more fun with two.", to="A")
    s.add("{A} and {B} played with the {obj} all afternoon.",
          "{AB_they} took turns with the {obj} and laughed a lot.",
          "{B} showed {A} a game with the {obj_full}, and {A} showed {B} a new trick.")
    s.maybe(0.7, "{B} told {A} about {B_his} favorite places in town.",
            "{A} told {B} that {A_he} loved {hobby}, and {B} loved it too.",
            "When it started to get dark, {C} came to get {A}.")
    s.say("B", "will you come back tomorrow?", "see you tomorrow, {L}!", "you are really fun, {L}!", to="A")
    s.add("From that day on, {A} and {B} were the best of friends.",
          "{A} {A_was} not lonely anymore, because {A_he} had a new friend.",
          "That night, {A} told {C} all about {B}, and {A_he} could not stop smiling.",
          "And every afternoon after that, {A} and {B} played with the {obj} together.")


def _storm(s: _Story) -> None:
    _introduce_main(s)
    has_pet = s.chance(0.6)
    if has_pet:
        _introduce_pet(s)
    _introduce_friend(s)
    s.add("{one_day}, {A} and {B} were playing {at_place}.",
          "{one_day}, {A} went {to_place} with {B} to play.",
          "One evening, {A} and {B} were playing together {at_place}.")
    s.add("The sky turned dark, and the wind began to howl.",
          "Big gray clouds rolled over {sight}, and the air felt heavy.",
          "Suddenly, there was a flash of lightning, and thunder rumbled far away.")
    s.add("Because a storm was coming, {C} called {A} and {B} inside.",
          "Thunder boomed, so {A} and {B} ran home as fast as {AB_they} could.",
          "Because the rain began to pour, {AB_they} hurried back to the house.")
    s.add("{A} {A_was} scared of the thunder.", "{A} hid under a blanket, because the storm was so loud.",
          "The windows rattled, and {A} held on to {B}.")
    s.say("A", "{I} don't like storms.", "{Im} scared. What if the storm never stops?",
          "is the house going to blow away?")
    if has_pet:
        s.add("Then {A} noticed that the {pet} was not there.",
              "Suddenly, {A} saw that the {pet} was missing.")
        s.say("A", "where is the {pet}? It must be so scared!", "the {pet} is lost in the storm!")
        s.add("{B} looked under the bed and found the {pet}, shaking with fear.",
              "{C} opened the door, and the {pet} ran in, all wet and muddy.",
              "{A} and {B} looked in every room and found the {pet} hiding in a basket.")
        s.add("{A} dried the {pet} with a towel and held it close.",
              "The {pet} {pet_action} as {A} stroked it gently.")
    else:
        s.add("Then the lights went out, and the house was completely dark.",
              "Suddenly, the power went out, and {AB_they} could not see a thing.")
        s.add("{C} lit some candles, and the room filled with a warm glow.",
              "{C} found a flashlight and made shadow animals on the wall.")
        s.say("C", "storms are loud, but we are safe inside.", "let's tell stories until the storm passes.")
        s.add("So {A} and {B} sat close to {C} and listened to a story about a brave little boat.",
              "{AB_they} played guessing games, and soon {A} forgot about the thunder.")
    s.add("{later}, the thunder grew quieter and quieter.", "Little by little, the storm moved away.")
    s.add("By morning, the storm had passed, and a bright rainbow stretched across the sky.",
          "The next day, the sun was shining, and the puddles sparkled like mirrors.",
          "When the storm was over, the air smelled fresh and clean.")
    s.say("B", "see? The storm is gone!", "look outside, {L}! Everything is fine.", to="A")
    s.add("{A} {A_was} not afraid of storms anymore, because {A_he} knew that every storm ends.",
          "{A} smiled, and {A} and {B} ran outside to jump in the puddles.",
          "From then on, whenever there was thunder, {A} remembered that night and felt brave.",
          "{A} learned that being together makes even a big storm feel small, and {A} hugged {B}.")


_BREAKABLES = ("vase", "cup", "plate", "jar", "lamp", "teapot", "bowl")
_FLOWERS = ("sunflower", "tulip", "rose", "daisy", "bean plant", "pumpkin", "tomato plant")


def _lesson(s: _Story) -> None:
    lesson = s.pick(("sharing", "honesty", "patience"))
    _introduce_main(s)
    if lesson == "sharing":
        noun, _ = s.pick(OBJECTS)
        s.thing("obj", noun, s.pick(_LOOKS))
        _introduce_friend(s)
        s.add("{one_day}, {C} gave {A} {a_obj}.", "For {A_his} birthday, {A} got {a_obj}.",
              "{one_day}, {A} found {a_obj} in the attic.")
        s.add("{A} loved the {obj} so much that {A_he} would not let anyone touch it.",
              "{A} played with the {obj} all day and did not want to put it down.")
        s.add("When {B} came over, {B_he} asked if {B_he} could play with the {obj} too.",
              "{B} saw the {obj_full} and {B_his} eyes lit up.")
        s.say("B", "can {I} try, {L}? Just for a minute?", "please can {I} play with it too?", to="A")
        s.say("A", "no! It is {mine}!", "no, it is {mine} and nobody else can have it!", to="B")
        s.add("{B} looked {sad} and went home.", "{B_his} face fell, and {B} walked away slowly.")
        s.add("{A} played alone with the {obj}, but it was not fun anymore.",
              "Without {B}, the {obj} did not seem so special.")
        s.add("When {C} heard what had happened, {C} sat down next to {A}.",
              "{C} saw that {A} looked {sad} and asked what was wrong.")
        s.say("C", "toys are more fun when we share them.",
              "how would you feel if {B} did not share with you?",
              "a friend is worth more than any toy.", to="A")
        s.add("{A} thought about it and knew that {C} was right.", "{A} felt a little ashamed.")
        s.add("So {A} ran to {B}'s house with the {obj}.", "The next morning, {A} went to find {B}.")
        s.say("A", "{Im} sorry, {L}. Do you want to play with {my} {obj}?",
              "{Iwas} wrong. Let's play with the {obj} together.", to="B")
        s.add("{B} smiled, and {A} and {B} played together until dinner.",
              "{AB_they} took turns, and it was much more fun than playing alone.")
        s.add("{A} learned that sharing makes everyone {happy}, and {A} shared the {obj} with {B} often.",
              "From that day on, {A} always shared {A_his} toys, and {A_he} had more fun than ever.",
              "{A} learned that a toy is more fun with a friend, and {A} never said no to {B} again.")
    elif lesson == "honesty":
        s.thing("obj", s.pick(_BREAKABLES), s.pick(COLORS + ("beautiful", "old", "painted")))
        s.add("{C} had {a_obj} that {C} loved very much.",
              "On a high shelf in the kitchen, there was {a_obj} that belonged to {C}.")
        _introduce_friend(s)
        s.add("{one_day}, {A} and {B} were playing ball inside the house.",
              "{one_day}, {A} {A_was} running around the kitchen, even though {C} had said not to.")
        s.add("Crash! The {obj} fell to the floor and broke into pieces.",
              "{A} bumped into the shelf, and the {obj} fell down and broke.")
        s.say("B", "oh no! What will we do?", "{C} will be so sad!", to="A")
        s.add("{A} {A_was} scared, so {A_he} hid the pieces under the sofa.",
              "{A} quickly swept up the pieces and said nothing.")
        s.add("When {C} came home, {C} looked everywhere for the {obj}.",
              "That evening, {C} noticed that the {obj} was missing.")
        s.say("C", "do you know what happened to {my} {obj}?", "has anyone seen {my} {obj}?", to="A")
        s.say("A", "no, {I} don't know.", "maybe the wind knocked it over.", to="C")
        s.add("That night, {A} could not sleep, because {A_he} felt bad about the lie.",
              "{A} felt a heavy feeling in {A_his} tummy all evening.")
        s.add("In the morning, {A} went to {C} and told the truth.",
              "At last, {A} could not keep the secret.")
        s.say("A", "{I} broke the {obj}. {Im} really sorry.", "it was {me}. {I} broke it, and {I} lied.",
              to="C")
        s.add("{C} hugged {A} and said that telling the truth was very brave.",
              "{C} was sad about the {obj}, but {C} was glad that {A} had told the truth.")
        s.add("Together, {A} and {C} glued the pieces back, and the {obj} looked almost new.",
              "{A} helped {C} fix the {obj} with glue.")
        s.add("{A} learned that telling the truth is always better than hiding it.",
              "From that day on, {A} always told the truth, even when it was hard.",
              "{A} felt light and happy again, and {A_he} never told a lie to {C} after that.")
    else:
        s.thing("seed", "seed", s.pick(("tiny", "small", "round", "little", "brown")))
        s.slots["plant"] = s.pick(_FLOWERS)
        s.add("{one_day}, {C} gave {A} {a_seed} and a little pot of soil.",
              "{one_day}, {A} found {a_seed} in {A_his} pocket and decided to plant it.")
        s.add("{A} planted the {seed} and watered it carefully.",
              "{A} pushed the {seed} into the soil and gave it some water.")
        s.add("The next morning, {A} ran to look, but nothing had happened.",
              "Every hour, {A} checked the pot, but there was only soil.")
        s.say("A", "why isn't it growing? {Ive} waited forever!", "this {seed} is broken!")
        s.add("{A} {A_was} so impatient that {A_he} dug up the {seed} to see what was wrong.",
              "{A} almost gave up and threw the pot away.")
        _introduce_friend(s)
        s.say("B", "seeds need time, {L}. You have to wait.",
              "{my} grandma says plants grow when nobody is watching.", to="A")
        s.add("So {A} planted the {seed} again and waited.",
              "{A} put the {seed} back and decided to be patient.")
        s.add("Every day, {A} gave it water and sunshine, and {A_he} did not dig it up again.",
              "Days went by, and {A} watered the pot every morning.")
        s.add("At last, a tiny green shoot came out of the soil.",
              "One morning, {A} saw two small green leaves peeking out.")
        s.add("Weeks later, it grew into a beautiful {plant}.",
              "By summer, there was a tall {plant} in the pot.")
        s.add("{A} learned that good things take time, and {A_he} smiled at the {plant} every morning.",
              "{A} showed the {plant} to {B}, and {A} knew that waiting had been worth it.",
              "From then on, whenever {A} felt impatient, {A_he} thought of the little {seed}.")


_CONTESTS = (  # the contest, what practice looks like, what the day looks like
    ("running race", "ran around the park every morning", "all the children lined up at the start"),
    ("baking contest", "baked a cake every afternoon", "the tables were full of pies and cakes"),
    ("drawing contest", "drew a picture every evening", "paper and crayons lay on every table"),
    ("kite contest", "practiced flying a kite on the hill", "the sky was full of colorful kites"),
    ("singing contest", "sang in front of the mirror every night", "a big stage stood ready"),
    ("sandcastle contest", "built castles in the sandbox every day", "the beach was full of children"),
    ("spelling bee", "read the dictionary before bed", "the hall was full of chairs"),
    ("swimming race", "swam at the lake every morning", "the water was cool and calm"),
)


def _competition(s: _Story) -> None:
    contest, practice, scene = s.pick(_CONTESTS)
    s.slots.update(contest=contest, practice=practice, scene=scene)
    _introduce_main(s)
    _introduce_friend(s)
    s.add("{one_day}, {C} told {A} about a big {contest} {at_place}.",
          "{one_day}, {A} saw a poster for a {contest} {at_place}.",
          "{one_day}, the whole town was talking about the {contest} that would be held {at_place}.")
    s.say("A", "{I} will win the {contest}!", "{I} want to win more than anything!",
          "do you think {I} can win, {L}?", to="C")
    s.add("So every day, {A} {practice}.", "For two whole weeks, {A} {practice}.",
          "{A} practiced very hard, and {A_he} {practice}.")
    s.add("{B} {B_was} in the {contest} too.", "{B} decided to join the {contest} as well.",
          "{B} wanted to win the {contest} too, so {B_he} practiced with {A}.")
    s.add("On the day of the {contest}, {scene}.", "At last, the day of the {contest} came, and {scene}.")
    s.maybe(0.6, "{A_his} hands were shaking, because {A_he} {A_was} so nervous.",
            "{A} felt butterflies in {A_his} tummy.", "{A} looked at {C}, and {C} gave {A_him} a thumbs up.")
    ending = s.pick(("help", "win", "lose"))
    if ending == "help":
        s.add("In the middle of the {contest}, {B} tripped and hurt {B_his} knee.",
              "Halfway through, {B} had an accident and started to cry.")
        s.add("{A} could have kept going, but {A_he} stopped to help {B}.",
              "{A} saw that {B} needed help, so {A_he} stopped right away.")
        s.say("A", "are you all right, {L}? {Ill} help you.", "don't worry, {L}. {Im} here.", to="B")
        s.add("Because {A} stopped, {A_he} did not win the {contest}.",
              "Another child won the {contest}, but {A} did not mind.")
        s.add("But the judges gave {A} a special prize for kindness.",
              "Everyone cheered for {A}, because {A_he} had been so kind.")
        s.say("C", "you did not win, but {Im} very proud of you.",
              "that was the kindest thing {Ive} ever seen.",
              to="A")
        s.add("{A} learned that being kind matters more than winning.",
              "{A} and {B} walked home arm in arm, and {A} felt like a real winner.")
    elif ending == "win":
        s.add("{A} did {A_his} very best, and when it was over, the judges called {A_his} name.",
              "{A} remembered all the practice and did even better than before.")
        s.add("{A} won first prize!", "{A} won, and {B} came second!")
        s.say("B", "well done, {L}! You deserve it.", "congratulations, {L}!", to="A")
        s.add("{A} shared the prize with {B}, because {B} had helped {A_him} practice.",
              "{A} thanked {B} and {C} for helping {A_him}.")
        s.add("{A} learned that hard work pays off, and {A_he} kept practicing every day after that.",
              "{A} {A_was} proud, and {A_he} put the prize on the shelf above {A_his} bed.")
    else:
        s.add("{A} tried {A_his} best, but {B} won the {contest}.",
              "{A} made a small mistake at the end, and {A_he} did not win.")
        s.add("At first, {A} felt {sad}.", "{A} {A_was} disappointed, and a tear rolled down {A_his} cheek.")
        s.say("C", "what matters is that you tried your best.", "you were so brave to try.", to="A")
        s.add("{A} thought about it and smiled, because {A_he} had had fun.",
              "{A} went to {B} and said well done.")
        s.add("{A} learned that trying matters more than winning, and {A_he} {A_was} already excited about"
              " next year.", "Next year, {A} entered the {contest} again, and {A_he} had even more fun.")


_ANIMALS = (  # noun, how it is found, how it is helped, how it leaves
    ("bird", "with a hurt wing", "made a soft nest in a shoebox and gave it water",
     "flapped its wings and flew up into the sky"),
    ("kitten", "stuck high up in a tree", "brought a ladder and lifted it down gently",
     "ran home to its owner"),
    ("duckling", "that had lost its mother", "followed the quacking sound to the pond",
     "swam happily to its mother"),
    ("turtle", "lying on its back", "gently turned it over", "crawled slowly into the water"),
    ("puppy", "with a red collar and no owner", "read the name on its collar and found its home",
     "licked everyone and wagged its tail"),
    ("hedgehog", "tangled in an old net", "carefully cut the net away", "waddled off into the bushes"),
    ("butterfly", "caught in a spider web", "freed it with a soft brush", "fluttered away over the flowers"),
    ("lamb", "stuck behind a fence", "opened the gate", "ran back to the flock"),
)


def _help_animal(s: _Story) -> None:
    noun, found, fix, leave = s.pick(_ANIMALS)
    s.slots.update(found=found, fix=fix, leave=leave)
    _introduce_main(s)
    _introduce_friend(s)
    _weather(s, s.pick(("sun", "cold", "hot")))
    s.add("{one_day}, {A} and {B} went for a walk {at_place}.",
          "{one_day}, {A} and {B} were playing near {sight}.",
          "{one_day}, {A} went {to_place} with {B}.")
    s.add("Suddenly, {A} heard a soft little sound.", "{A} heard something crying near {sight}.",
          "{B} stopped and pointed at something that was moving.")
    s.thing("animal", noun, s.pick(("little", "tiny", "small", "young", "poor")))
    s.add("It was {a_animal} {found}.", "There was {a_animal} {found}.")
    s.say("A", "poor little {animal}! We have to help it.", "look! The {animal} needs help!",
          "what should we do, {L}?", to="B")
    if s.chance(0.5):
        s.add("{A} and {B} ran to get {C}.", "{B} ran home and came back with {C}.")
        s.say("C", "you did the right thing. Let's help it together.", "be gentle, and don't scare it.")
        s.add("Together, {A}, {B} and {C} {fix}.", "{C} showed {AB_them} what to do, and {AB_they} {fix}.")
    else:
        s.add("{A} thought for a moment, and then {A_he} had an idea.", "{A} stayed calm and thought hard.")
        s.add("{A} and {B} {fix}.", "Very slowly, {AB_they} {fix}.")
    s.maybe(0.5, "{A} {A_was} worried, because the {animal} was so small.",
            "{A} stayed next to the {animal} and spoke softly to it.",
            "{B} said it would be all right, and {A} hoped {B} {B_was} right.")
    s.add("At last, the {animal} {leave}.", "{later}, the {animal} {leave}.")
    s.say("B", "we did it, {L}!", "you saved it, {L}!", to="A")
    s.add("{A} waved goodbye to the {animal}, and {A_he} felt warm inside.",
          "{A} and {B} smiled at each other, because {A} and {B} had helped a friend in need.",
          "That night, {A} told {C} all about the {animal}, and {A_he} dreamed of it until morning.",
          "{A} learned that even small hands can do a big kindness, and {A_he} never forgot the {animal}.")


def _misunderstanding(s: _Story) -> None:
    _introduce_main(s)
    _introduce_friend(s)
    if s.chance(0.5):  # a missing thing blamed on a friend
        noun, _ = s.pick(OBJECTS)
        s.thing("obj", noun, s.pick(_LOOKS))
        has_pet = s.chance(0.5)
        if has_pet:
            _introduce_pet(s)
        s.add("{A} had {a_obj} that {A_he} kept on {A_his} shelf.", "{C} had given {A} {a_obj}.")
        s.add("{one_day}, {B} came to play, and {B} held the {obj} for a while.",
              "{one_day}, {B} visited and looked at the {obj} for a long time.")
        s.add("The next morning, the {obj} was gone!",
              "When {B} had left, {A} saw that the {obj} was missing.")
        s.add("{A} thought that {B} had taken it, so {A_he} went straight to {B}.",
              "Because {B} had been the last one to touch it, {A} {A_was} sure that {B} had taken it.")
        s.say("A", "you took {my} {obj}! Give it back!", "why did you take {my} {obj}?", to="B")
        s.say("B", "{I} did not take it! {I} would never do that.", "but {I} put it back on the shelf!",
              to="A")
        s.add("{B} went home {sad}, and {A} felt angry all day.",
              "{B} looked hurt and walked away without another word.")
        if has_pet:
            s.add("That evening, {A} saw the {pet} sleeping in its bed, and next to it was the {obj}!",
                  "Later, the {pet} trotted into the room, carrying the {obj} in its mouth.")
        else:
            s.add("That evening, {A} found the {obj} under {A_his} own pillow.",
                  "Later, {C} found the {obj} behind the sofa, where it had fallen.")
        s.add("{A} felt terrible, because {B} had not taken it after all.",
              "{A} realized that {A_he} had blamed {B} for nothing.")
        s.say("A", "{Im} so sorry, {L}. {I} should have asked first.",
              "{Iwas} wrong, {L}. Can you forgive {me}?", to="B")
        s.say("B", "that's all right. {Im} glad you found it.", "of course! Friends make mistakes.", to="A")
        s.add("{A} learned not to blame a friend without knowing the truth, and {A} and {B} stayed friends.",
              "{A} and {B} laughed about it, and {A} promised to always ask before getting angry.")
    else:  # a secret that looks like unkindness
        s.thing("gift", s.pick(("cake", "card", "kite", "scrapbook", "picture", "puppet")),
                s.pick(("big", "beautiful", "homemade", "colorful", "special")))
        s.add("For days, {B} and {C} had been whispering to each other.",
              "{A} noticed that {B} kept talking quietly with {C}.")
        s.add("Whenever {A} came close, {B} and {C} stopped talking.",
              "When {A} asked what was going on, {B} just said it was nothing.")
        s.add("{A} felt left out, so {A_he} went to {A_his} room and sat alone.",
              "{A} thought that {B} did not want to be friends anymore, and {A_he} felt {sad}.")
        s.say("A", "why won't anyone tell {me} anything?", "what did {I} do wrong?")
        s.add("Then, on the morning of {A_his} birthday, {B} knocked on the door.",
              "{later}, {C} called {A} into the kitchen.")
        s.add("{B} {B_was} holding {a_gift} with {A}'s name on it.",
              "On the table was {a_gift} just for {A}.")
        s.say("B", "surprise! {Ive} been making it for weeks!", "happy birthday, {L}! That was our secret.",
              to="A")
        s.add("{A} laughed, because all the whispering had been for the {gift}.",
              "Now {A} understood why {B} and {C} had been whispering.")
        s.add("{A} hugged {B} and said it was the best {gift} ever, and {A} never doubted {B} again.",
              "{A} learned that a secret is sometimes a happy surprise, and {A} kept the {gift} forever.")


_FEARS = (  # what, how it starts, the help, the success
    ("the dark", "could not sleep when the lights were off", "a little lamp shaped like a moon",
     "slept all night without being scared"),
    ("deep water", "stayed on the shore when the others went swimming", "a pair of bright orange armbands",
     "swam all the way to the wooden raft"),
    ("the big slide", "always walked past the big slide", "a hand to hold on the ladder",
     "whooshed down the slide, laughing"),
    ("climbing", "never climbed the old apple tree", "a sturdy rope ladder",
     "climbed to the highest branch and waved"),
    ("big dogs", "crossed the street whenever a dog came by", "a handful of dog treats",
     "patted the neighbor's big dog on the head"),
    ("the first day of school", "could not eat breakfast on the first day of school",
     "a lucky pebble to keep in a pocket", "walked into the classroom with a smile"),
)


def _fear(s: _Story) -> None:
    fear, sign, helper, success = s.pick(_FEARS)
    s.slots.update(fear=fear, sign=sign, helper=helper, success=success)
    _introduce_main(s)
    s.add("But {A} {A_was} afraid of {fear}.", "There was one thing that scared {A}: {fear}.",
          "{A} {A_was} brave about most things, but not about {fear}.")
    s.add("{A} {sign}.", "Because {A_he} {A_was} scared, {A} {sign}.")
    _introduce_friend(s)
    s.add("{one_day}, {B} noticed that {A} looked worried.", "{one_day}, {B} asked {A} what was wrong.")
    s.say("A", "{Im} scared of {fear}.", "{I} wish {Iwas} not so scared of {fear}.", to="B")
    s.say("B", "{I} used to be scared too. {I} can help you.", "everyone is scared of something, {L}.",
          to="A")
    s.add("{B} came back with {helper}.", "The next day, {B} brought {helper}.",
          "{C} and {B} gave {A} {helper}.")
    s.add("{A} tried a little bit at first, and nothing bad happened.",
          "With {B} beside {A_him}, {A} tried once, very slowly.")
    s.add("Then {A} tried again, and it was not so scary after all.",
          "Each day, {A} tried a little more, and {A_he} felt a little braver.")
    s.say("C", "look at you! {Im} so proud of you.", "you are braver than you think, {L}.", to="A")
    s.add("At last, {A} {success}.", "One day, {A} {success}.")
    s.add("{A} {A_was} not afraid of {fear} anymore, and {A} thanked {B} with a big hug.",
          "{A} felt proud of {A_self}, and {A_he} helped other children who were scared too.",
          "From then on, {A} knew that being brave means trying even when you are scared.")


def _gift(s: _Story) -> None:
    s.thing("gift", s.pick(("card", "bracelet", "portrait", "cake", "clay pot", "paper crown", "poem")),
            s.pick(("lovely", "bright", "special", "homemade", "colorful", "little")))
    _introduce_main(s)
    s.add("Soon it would be {C}'s birthday, and {A} wanted to give {C} something special.",
          "{C}'s birthday was coming, and {A} thought hard about a present.")
    s.add("But {A} had no money, so {A_he} decided to make {a_gift}.",
          "Because {A_he} had no money, {A} decided to make {a_gift} all by {A_self}.")
    _introduce_friend(s)
    s.say("B", "{Ill} help you, {L}!", "can {I} help make the {gift}, {L}?", to="A")
    s.add("{A} and {B} worked on the {gift} every afternoon.",
          "{AB_they} worked hard on the {gift} and kept it a secret from {C}.")
    s.add("But then something went wrong.", "The day before the birthday, there was a problem.")
    s.add("{A} spilled water all over the {gift}, and it was ruined.",
          "The {gift} fell off the table and was ruined.", "The {gift} did not look the way {A} wanted.")
    s.add("{A} {A_was} so {sad} that {A_he} wanted to give up.", "{A} sat down and cried.")
    s.say("B", "we can make it again, and it will be even better.", "don't give up, {L}. We still have time!",
          to="A")
    s.add("So {A} and {B} worked late into the evening to fix it.",
          "{AB_they} started again, and this time {AB_they} were extra careful.")
    s.add("On {C}'s birthday, {A} gave {C} the {gift}.", "The next morning, {A} gave the {gift} to {C}.")
    s.say("C", "this is the best present {Ive} ever had!", "you made this for {me}? Thank you!", to="A")
    s.add("{C} hugged {A} and {B}, and {C} kept the {gift} in a special place.",
          "{C} smiled so much that {C}'s eyes filled with happy tears.")
    s.add("{A} learned that the best presents come from the heart, and {A_he} smiled all day.",
          "{A} felt proud, and {A_he} started planning a gift for {B}'s birthday too.",
          "{A} learned that a mistake is not the end, and {A} thanked {B} for not giving up.")


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
    """One story and its facts (characters, pronouns, things, sentences with the roles they mention)."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    while True:  # the few stories (about 1 in 200) outside the length bounds are drawn again
        s = _Story(rng)
        _cast(s)
        arc = s.pick(tuple(ARCS))
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
