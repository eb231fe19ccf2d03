"""The built-in multiple-choice check: about three hundred questions in the style of knowledge and reasoning
benchmarks (facts, arithmetic, units, word meaning, order), written for this project and shipped with it.

Hand-written fact tables (capitals, element symbols, opposites, science facts) and seeded arithmetic make the
items, so the set is the same on every machine and needs no download. Each item has four options; the distractors of
a fact come from the same table (other capitals for a capital), so guessing by form does not help. Items are scored
like lm-evaluation-harness scores ARC or MMLU's "acc": the model's log-likelihood of each option's text after the
question, the likeliest option is its answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SEED = 20261201
OPTIONS = 4


@dataclass(frozen=True)
class Item:
    question: str
    options: tuple[str, ...]
    answer: int
    """Index of the right option."""
    family: str

    def context(self) -> str:
        return f"Question: {self.question}\nAnswer:"


CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"), ("Russia", "Moscow"), ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasilia"),
    ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Greece", "Athens"), ("Turkey", "Ankara"), ("Ireland", "Dublin"),
    ("Netherlands", "Amsterdam"), ("Belgium", "Brussels"), ("Hungary", "Budapest"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("Iran", "Tehran"),
    ("Nigeria", "Abuja"), ("Morocco", "Rabat"), ("Cuba", "Havana"), ("Colombia", "Bogota"),
    ("New Zealand", "Wellington"),
)

ELEMENTS = (
    ("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"), ("sodium", "Na"),
    ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"),
    ("chlorine", "Cl"), ("potassium", "K"), ("calcium", "Ca"), ("iron", "Fe"), ("copper", "Cu"), ("zinc", "Zn"),
    ("silver", "Ag"), ("gold", "Au"), ("tin", "Sn"), ("lead", "Pb"), ("mercury", "Hg"), ("uranium", "U"),
    ("neon", "Ne"), ("argon", "Ar"), ("nickel", "Ni"), ("platinum", "Pt"), ("iodine", "I"), ("fluorine", "F"),
    ("lithium", "Li"),
)

OPPOSITES = (
    ("hot", "cold"), ("tall", "short"), ("early", "late"), ("open", "closed"), ("full", "empty"), ("fast", "slow"),
    ("heavy", "light"), ("wet", "dry"), ("rich", "poor"), ("young", "old"), ("hard", "soft"), ("loud", "quiet"),
    ("wide", "narrow"), ("strong", "weak"), ("clean", "dirty"), ("happy", "sad"), ("safe", "dangerous"),
    ("cheap", "expensive"), ("thick", "thin"), ("inside", "outside"), ("above", "below"), ("win", "lose"),
    ("buy", "sell"), ("arrive", "leave"), ("begin", "end"), ("accept", "refuse"), ("increase", "decrease"),
    ("remember", "forget"), ("push", "pull"), ("ancient", "modern"),
)

SCIENCE = (
    ("Which planet is closest to the Sun?", "Mercury", ("Venus", "Mars", "Jupiter")),
    ("Which planet is known as the red planet?", "Mars", ("Venus", "Saturn", "Neptune")),
    ("What is the largest planet in the solar system?", "Jupiter", ("Saturn", "Earth", "Uranus")),
    ("What gas do plants take in from the air to make sugar?", "carbon dioxide", ("oxygen", "nitrogen", "helium")),
    ("What gas do animals need to breathe?", "oxygen", ("carbon dioxide", "hydrogen", "argon")),
    ("At what temperature in degrees Celsius does water freeze at sea level?", "0", ("100", "32", "-10")),
    ("At what temperature in degrees Celsius does water boil at sea level?", "100", ("0", "50", "212")),
    ("What part of the body pumps blood?", "the heart", ("the lungs", "the liver", "the stomach")),
    ("Which organ do humans use to breathe?", "the lungs", ("the heart", "the kidneys", "the brain")),
    ("What is the hardest natural material?", "diamond", ("gold", "iron", "quartz")),
    ("What force pulls objects towards the Earth?", "gravity", ("magnetism", "friction", "electricity")),
    ("How many legs does an insect have?", "six", ("four", "eight", "ten")),
    ("How many legs does a spider have?", "eight", ("six", "four", "ten")),
    ("What do bees make?", "honey", ("milk", "silk", "wax paper")),
    ("Which animal is a mammal?", "the whale", ("the shark", "the trout", "the octopus")),
    ("What is the main source of light for the Earth?", "the Sun", ("the Moon", "the stars", "volcanoes")),
    ("What is frozen water called?", "ice", ("steam", "fog", "dew")),
    ("Which of these is a source of renewable energy?", "wind", ("coal", "oil", "natural gas")),
    ("What travels faster, light or sound?", "light", ("sound", "both the same", "neither")),
    ("What is the chemical formula of water?", "H2O", ("CO2", "O2", "NaCl")),
    ("How many continents are there on Earth?", "seven", ("five", "six", "nine")),
    ("Which ocean is the largest?", "the Pacific", ("the Atlantic", "the Indian", "the Arctic")),
    ("What is the longest bone in the human body?", "the femur", ("the spine", "the rib", "the skull")),
    ("Which season comes after winter?", "spring", ("autumn", "summer", "winter")),
    ("Which instrument measures temperature?", "a thermometer", ("a barometer", "a ruler", "a compass")),
    ("Which instrument shows which way is north?", "a compass", ("a thermometer", "a clock", "a scale")),
    ("What do caterpillars turn into?", "butterflies", ("beetles", "spiders", "worms")),
    ("What is the boiling point of water in degrees Fahrenheit at sea level?", "212", ("100", "180", "32")),
)

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def _place(rng: random.Random, right: str, wrong: list[str], question: str, family: str) -> Item:
    options = [right, *wrong[:OPTIONS - 1]]
    rng.shuffle(options)
    return Item(question, tuple(options), options.index(right), family)


def _from_table(rng: random.Random, table: tuple[tuple[str, str], ...], question: str, family: str) -> list[Item]:
    items = []
    answers = [answer for _, answer in table]
    for index, (subject, answer) in enumerate(table):
        others = [item for item in answers if item != answer]
        rng.shuffle(others)
        items.append(_place(rng, answer, others, question.format(subject), family))
    return items


def _numbers(rng: random.Random, right: int, spread: list[int]) -> list[str]:
    wrong: list[int] = []
    for offset in spread:
        candidate = right + offset
        if candidate != right and candidate not in wrong and candidate >= 0:
            wrong.append(candidate)
    rng.shuffle(wrong)
    return [str(value) for value in wrong]


def build_items() -> list[Item]:
    """Every item of the set, in a fixed order (the same on every machine)."""
    rng = random.Random(SEED)
    items = _from_table(rng, CAPITALS, "What is the capital of {}?", "capitals")
    items += _from_table(rng, ELEMENTS, "What is the chemical symbol of {}?", "elements")
    items += _from_table(rng, OPPOSITES, "What is the opposite of '{}'?", "opposites")
    for question, right, wrong in SCIENCE:
        items.append(_place(rng, right, list(wrong), question, "science"))
    for _ in range(50):
        first, second = rng.randint(11, 89), rng.randint(11, 89)
        total = first + second
        items.append(_place(rng, str(total), _numbers(rng, total, [1, -1, 10, -10, 2]),
                            f"What is {first} + {second}?", "addition"))
    for _ in range(30):
        first, second = rng.randint(30, 99), rng.randint(2, 29)
        difference = first - second
        items.append(_place(rng, str(difference), _numbers(rng, difference, [1, -1, 10, -10, 2]),
                            f"What is {first} - {second}?", "subtraction"))
    for _ in range(40):
        first, second = rng.randint(2, 12), rng.randint(2, 12)
        product = first * second
        items.append(_place(rng, str(product), _numbers(rng, product, [first, -first, second, 1, -1]),
                            f"What is {first} times {second}?", "multiplication"))
    for hours in range(1, 13):
        minutes = hours * 60
        items.append(_place(rng, str(minutes), _numbers(rng, minutes, [-30, 30, 60, -60, 100]),
                            f"How many minutes are there in {hours} hours?", "units"))
    for metres in range(1, 13):
        centimetres = metres * 100
        items.append(_place(rng, str(centimetres), _numbers(rng, centimetres, [-10 * metres, 900 * metres, 50, -50]),
                            f"How many centimetres are there in {metres} metres?", "units"))
    for index, day in enumerate(DAYS):
        others = [item for item in DAYS if item != DAYS[(index + 1) % 7]]
        rng.shuffle(others)
        items.append(_place(rng, DAYS[(index + 1) % 7], others, f"Which day comes after {day}?", "order"))
    for index, month in enumerate(MONTHS):
        right = MONTHS[(index + 1) % 12]
        others = [item for item in MONTHS if item != right]
        rng.shuffle(others)
        items.append(_place(rng, right, others, f"Which month comes after {month}?", "order"))
    for _ in range(20):
        values = rng.sample(range(10, 1000), OPTIONS)
        largest = max(values)
        items.append(_place(rng, str(largest), [str(value) for value in values if value != largest],
                            "Which of these numbers is the largest: " + ", ".join(map(str, values)) + "?",
                            "comparison"))
    return items


ITEMS: tuple[Item, ...] = tuple(build_items())
