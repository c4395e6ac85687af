"""Embedded word lists for the offline generators: the task generators (codeift.tasks), the small
world's IFT conversations (codeift.data.small_world) and the tiny bases' pretraining corpus
(codeift.models.pretrain) draw from the same lists, so the IFT data and the tasks share nouns.
It sits below every stage, which all import it downward.

Generators must run without downloads, so their words live here. Names avoid ordinary
English words ("Mark", "Grace", "Ruby") so that a name never reads as an attribute or a colour.
"""

from __future__ import annotations

FEMALE_NAMES: tuple[str, ...] = tuple(
    """
    Alice Emma Olivia Sophia Mia Chloe Lily Hannah Zoe Nora Clara Ella Anna Julia Laura Maria
    Sara Nina Eva Leah Maya Paula Rachel Helen Irene Diana Fiona Gwen Jane Karen Linda Megan
    Naomi Olga Petra Rita Sofia Tina Uma Vera Wendy Yara Zelda Beth Carla Dora Erin Gina Heidi
    Iris Joan Kate Lucy Mary Nancy Ada Bella Cora Edith Flora Greta Hilda Ingrid Judith Lena
    Martha Nadia Ophelia Priya Rosalind Selma Thea Ursula Vivian Wilma Agnes Brenda Celia Daphne
    """.split()
)

MALE_NAMES: tuple[str, ...] = tuple(
    """
    Bob Charlie David Ethan Frank George Henry Isaac Jack Kevin Liam Mason Noah Oscar Peter Ryan
    Samuel Thomas Victor William Adam Ben Carl Dennis Edward Felix Gary Hugo Ivan James Karl Leo
    Martin Nathan Owen Paul Robert Steven Tony Walter Xavier Zack Aaron Brian Colin Daniel Eric
    Fred Greg Harry Jason Kyle Lucas Neil Oliver Patrick Roger Simon Tyler Albert Boris Cedric
    Dmitri Elliot Gordon Howard Ignatius Julian Kenneth Lionel Marcus Norman Philip Quentin
    """.split()
)

ALL_NAMES: tuple[str, ...] = FEMALE_NAMES + MALE_NAMES

# Concrete nouns with no repeated entries, for letter concatenation and list reversal.
WORDS: tuple[str, ...] = tuple(
    """
    apple anchor arrow basket bottle bridge button candle carpet castle cherry cloud compass
    cotton desert dragon drum eagle engine feather fence forest fountain garden glove guitar
    hammer harbor helmet island jacket jungle kettle kitten ladder lantern lemon library lizard
    magnet marble meadow mirror monkey needle notebook ocean orange oyster paddle parrot pencil
    pepper pillow planet pocket potato puzzle quilt rabbit radio river robot rocket saddle
    sandal shovel silver spider spoon stone sugar table teapot ticket tiger tomato tower tractor
    tunnel turtle umbrella valley vase velvet violin wagon walnut whistle window winter wizard
    yogurt zebra acorn badge barrel blanket boulder cabin canyon cereal chimney clover copper
    crayon dolphin elbow falcon garlic ginger goblet granite hazel iceberg igloo jigsaw kayak
    lobster mango meteor muffin napkin nickel olive orchid panda peanut pebble penguin pirate
    quartz raisin ribbon salmon scarf sparrow squash thimble thunder trumpet tulip vessel walrus
    """.split()
)

# Plural noun phrases counted in the arithmetic stories.
COUNTABLES: tuple[str, ...] = (
    "apples",
    "marbles",
    "stickers",
    "cookies",
    "books",
    "pencils",
    "stamps",
    "trading cards",
    "seashells",
    "balloons",
    "cupcakes",
    "beads",
    "crayons",
    "oranges",
    "postcards",
    "buttons",
    "toy cars",
    "candles",
    "notebooks",
    "plums",
)

# (singular, plural) for bAbI deduction; the plurals must agree with scoring.PLURAL_FORMS.
ANIMALS: tuple[tuple[str, str], ...] = (
    ("mouse", "mice"),
    ("cat", "cats"),
    ("wolf", "wolves"),
    ("sheep", "sheep"),
    ("lion", "lions"),
    ("rabbit", "rabbits"),
    ("fox", "foxes"),
    ("bear", "bears"),
    ("snake", "snakes"),
    ("hawk", "hawks"),
)

# Species and colours for bAbI induction (singular species names).
SPECIES: tuple[str, ...] = ("swan", "lion", "frog", "rhino", "elephant", "hippo", "parrot", "owl")
COLOURS: tuple[str, ...] = (
    "white",
    "gray",
    "yellow",
    "green",
    "red",
    "blue",
    "black",
    "brown",
    "pink",
    "purple",
)

# Adjectives for ProofWriter-style theories; none is the negation of another.
ATTRIBUTES: tuple[str, ...] = tuple(
    """
    big blue cold furry green kind nice quiet red rough round smart young white strong calm
    happy shiny loud soft
    """.split()
)


def article(word: str) -> str:
    """The indefinite article for `word` ("an elephant", "a swan")."""
    return "an" if word[0].lower() in "aeiou" else "a"
