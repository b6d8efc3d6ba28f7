"""Writes entropy_jax/data/mcqa_demo.jsonl (package data): the offline multiple-choice demo set of Chapter 3.

    python data/make_mcqa_demo.py                 # → entropy_jax/data/mcqa_demo.jsonl
    python data/make_mcqa_demo.py --out /tmp/x.jsonl

Two strata of 240 questions each, 4 options per question:

- "knowledge": one fact looked up from the tables below (capitals, continents, element symbols,
  SI units, planets, authors). No computation helps; the model knows the fact or not. The
  `rationale` states that fact in one sentence.
- "reasoning": arithmetic, algebra, unit-conversion, ordering-logic and clock/calendar problems
  generated from seeded templates. Each answer is computed twice, once step by step (which also
  writes the `rationale`) and once by an independent method (brute force, simulation, `datetime`
  or exact fractions); the script stops if they disagree. Distractors are the results of typical
  slips (a skipped step, an off-by-one, the wrong quantity asked for).

Deterministic: seeded `random.Random` only, no set iteration, no network. Each stratum's correct
answers are spread exactly evenly over positions A-D. Every row is validated by
`entropy_jax.data.mcqa.Question` before it is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import random
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from entropy_jax.data.mcqa import Question, save_jsonl

OUT = Path(__file__).resolve().parents[1] / "entropy_jax" / "data" / "mcqa_demo.jsonl"
SEED = 20250301
N_PER_STRATUM = 240
N_OPTIONS = 4
MAX_QUESTION_WORDS = 45  # keeps prompts well under ~120 tokens for a 135M chat model

# ---------------------------------------------------------------------------------------------
# Knowledge tables. Countries whose capital is disputed, split or recently moved (Netherlands,
# Bolivia, South Africa, Switzerland, Israel, Indonesia, Kazakhstan, Sri Lanka, Tanzania, Côte
# d'Ivoire, Myanmar, Benin, Sudan) and the name-clash Georgia are left out on purpose.

# (country, capital, well-known non-capital cities used as near-miss distractors)
CAPITALS: list[tuple[str, str, tuple[str, ...]]] = [
    ("France", "Paris", ("Lyon", "Marseille")),
    ("Germany", "Berlin", ("Munich", "Hamburg")),
    ("Italy", "Rome", ("Milan", "Naples")),
    ("Spain", "Madrid", ("Barcelona", "Seville")),
    ("Portugal", "Lisbon", ("Porto",)),
    ("the United Kingdom", "London", ("Manchester",)),
    ("Ireland", "Dublin", ("Cork",)),
    ("Belgium", "Brussels", ("Antwerp",)),
    ("Austria", "Vienna", ("Salzburg",)),
    ("Poland", "Warsaw", ("Krakow",)),
    ("the Czech Republic", "Prague", ("Brno",)),
    ("Hungary", "Budapest", ()),
    ("Greece", "Athens", ("Thessaloniki",)),
    ("Sweden", "Stockholm", ("Gothenburg",)),
    ("Norway", "Oslo", ("Bergen",)),
    ("Denmark", "Copenhagen", ("Aarhus",)),
    ("Finland", "Helsinki", ()),
    ("Russia", "Moscow", ("Saint Petersburg",)),
    ("Ukraine", "Kyiv", ("Kharkiv",)),
    ("Romania", "Bucharest", ()),
    ("Bulgaria", "Sofia", ()),
    ("Serbia", "Belgrade", ()),
    ("Croatia", "Zagreb", ("Split",)),
    ("Slovakia", "Bratislava", ()),
    ("Slovenia", "Ljubljana", ()),
    ("Estonia", "Tallinn", ()),
    ("Latvia", "Riga", ()),
    ("Lithuania", "Vilnius", ()),
    ("Iceland", "Reykjavik", ()),
    ("Belarus", "Minsk", ()),
    ("Albania", "Tirana", ()),
    ("Malta", "Valletta", ()),
    ("Turkey", "Ankara", ("Istanbul",)),
    ("Japan", "Tokyo", ("Osaka", "Kyoto")),
    ("China", "Beijing", ("Shanghai",)),
    ("South Korea", "Seoul", ("Busan",)),
    ("North Korea", "Pyongyang", ()),
    ("India", "New Delhi", ("Mumbai",)),
    ("Pakistan", "Islamabad", ("Karachi", "Lahore")),
    ("Bangladesh", "Dhaka", ()),
    ("Nepal", "Kathmandu", ()),
    ("Afghanistan", "Kabul", ()),
    ("Iran", "Tehran", ()),
    ("Iraq", "Baghdad", ("Basra",)),
    ("Saudi Arabia", "Riyadh", ("Jeddah",)),
    ("Qatar", "Doha", ()),
    ("the United Arab Emirates", "Abu Dhabi", ("Dubai",)),
    ("Oman", "Muscat", ()),
    ("Syria", "Damascus", ("Aleppo",)),
    ("Lebanon", "Beirut", ()),
    ("Jordan", "Amman", ()),
    ("Thailand", "Bangkok", ()),
    ("Vietnam", "Hanoi", ("Ho Chi Minh City",)),
    ("the Philippines", "Manila", ()),
    ("Cambodia", "Phnom Penh", ()),
    ("Laos", "Vientiane", ()),
    ("Mongolia", "Ulaanbaatar", ()),
    ("Armenia", "Yerevan", ()),
    ("Azerbaijan", "Baku", ()),
    ("Uzbekistan", "Tashkent", ("Samarkand",)),
    ("Kyrgyzstan", "Bishkek", ()),
    ("Egypt", "Cairo", ("Alexandria",)),
    ("Kenya", "Nairobi", ("Mombasa",)),
    ("Nigeria", "Abuja", ("Lagos",)),
    ("Ghana", "Accra", ("Kumasi",)),
    ("Ethiopia", "Addis Ababa", ()),
    ("Morocco", "Rabat", ("Casablanca", "Marrakesh")),
    ("Algeria", "Algiers", ("Oran",)),
    ("Tunisia", "Tunis", ()),
    ("Senegal", "Dakar", ()),
    ("Uganda", "Kampala", ()),
    ("Zimbabwe", "Harare", ()),
    ("Zambia", "Lusaka", ()),
    ("Angola", "Luanda", ()),
    ("Libya", "Tripoli", ()),
    ("Rwanda", "Kigali", ()),
    ("Madagascar", "Antananarivo", ()),
    ("Mozambique", "Maputo", ()),
    ("Namibia", "Windhoek", ()),
    ("the United States", "Washington, D.C.", ("New York City", "Los Angeles")),
    ("Canada", "Ottawa", ("Toronto", "Vancouver")),
    ("Mexico", "Mexico City", ("Guadalajara",)),
    ("Brazil", "Brasilia", ("Rio de Janeiro", "Sao Paulo")),
    ("Argentina", "Buenos Aires", ("Cordoba",)),
    ("Chile", "Santiago", ()),
    ("Peru", "Lima", ("Cusco",)),
    ("Colombia", "Bogota", ("Medellin",)),
    ("Venezuela", "Caracas", ()),
    ("Ecuador", "Quito", ("Guayaquil",)),
    ("Uruguay", "Montevideo", ()),
    ("Paraguay", "Asuncion", ()),
    ("Cuba", "Havana", ()),
    ("Jamaica", "Kingston", ()),
    ("Australia", "Canberra", ("Sydney", "Melbourne")),
    ("New Zealand", "Wellington", ("Auckland",)),
]

CONTINENTS = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")
# Transcontinental countries and the Caribbean/Central America (counted differently by different
# continent models) are left out.
COUNTRY_CONTINENT: list[tuple[str, str]] = [
    ("Brazil", "South America"), ("Argentina", "South America"), ("Peru", "South America"),
    ("Chile", "South America"), ("Colombia", "South America"), ("Uruguay", "South America"),
    ("Kenya", "Africa"), ("Nigeria", "Africa"), ("Ghana", "Africa"), ("Ethiopia", "Africa"),
    ("Senegal", "Africa"), ("Angola", "Africa"),
    ("Japan", "Asia"), ("India", "Asia"), ("Vietnam", "Asia"), ("Thailand", "Asia"),
    ("Mongolia", "Asia"), ("Nepal", "Asia"),
    ("France", "Europe"), ("Poland", "Europe"), ("Sweden", "Europe"), ("Portugal", "Europe"),
    ("Hungary", "Europe"), ("Ireland", "Europe"),
    ("Canada", "North America"), ("Mexico", "North America"), ("the United States", "North America"),
    ("New Zealand", "Oceania"),
]

# (name, symbol); IUPAC names.
ELEMENTS: list[tuple[str, str]] = [
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("beryllium", "Be"), ("boron", "B"),
    ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"), ("fluorine", "F"), ("neon", "Ne"),
    ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"), ("phosphorus", "P"),
    ("sulfur", "S"), ("chlorine", "Cl"), ("argon", "Ar"), ("potassium", "K"), ("calcium", "Ca"),
    ("scandium", "Sc"), ("titanium", "Ti"), ("vanadium", "V"), ("chromium", "Cr"), ("manganese", "Mn"),
    ("iron", "Fe"), ("cobalt", "Co"), ("nickel", "Ni"), ("copper", "Cu"), ("zinc", "Zn"),
    ("gallium", "Ga"), ("germanium", "Ge"), ("arsenic", "As"), ("selenium", "Se"), ("bromine", "Br"),
    ("krypton", "Kr"), ("strontium", "Sr"), ("silver", "Ag"), ("cadmium", "Cd"), ("tin", "Sn"),
    ("antimony", "Sb"), ("iodine", "I"), ("xenon", "Xe"), ("barium", "Ba"), ("tungsten", "W"),
    ("platinum", "Pt"), ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"), ("radon", "Rn"),
    ("radium", "Ra"), ("uranium", "U"), ("plutonium", "Pu"),
]
# The elements asked in reverse ("Which element has the symbol Fe?"): mostly symbols that do not
# start with the name's first letter, where recall and guessing differ most.
REVERSE_SYMBOLS = ("Na", "K", "Fe", "Cu", "Ag", "Au", "Hg", "Pb", "Sn", "Sb", "W", "Zn",
                   "He", "Ne", "Mg", "Cl", "Ca", "Si", "Ni", "Pt")

# (quantity as asked, unit); base quantities are asked as "SI base unit" so that the degree
# Celsius (a derived SI unit of temperature) is not also correct.
SI_BASE = [
    ("length", "metre"), ("mass", "kilogram"), ("time", "second"), ("electric current", "ampere"),
    ("temperature", "kelvin"), ("amount of substance", "mole"), ("luminous intensity", "candela"),
]
SI_DERIVED = [
    ("force", "newton"), ("energy", "joule"), ("power", "watt"), ("pressure", "pascal"),
    ("frequency", "hertz"), ("electric charge", "coulomb"), ("voltage", "volt"),
    ("electrical resistance", "ohm"), ("capacitance", "farad"), ("inductance", "henry"),
    ("magnetic flux", "weber"), ("magnetic flux density", "tesla"), ("electrical conductance", "siemens"),
    ("radioactivity", "becquerel"), ("absorbed radiation dose", "gray"), ("equivalent radiation dose", "sievert"),
    ("catalytic activity", "katal"), ("illuminance", "lux"), ("luminous flux", "lumen"),
    ("plane angle", "radian"), ("solid angle", "steradian"),
]
SI_REVERSE = ("newton", "joule", "watt", "pascal", "hertz", "coulomb", "volt", "ohm", "ampere",
              "kelvin", "metre", "kilogram", "second", "farad", "tesla", "becquerel")

PLANETS = ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
# (question, answer, the fact that answers it: the stratum's `rationale`)
PLANET_FACTS = [
    ("Which planet is closest to the Sun?", "Mercury", "Mercury orbits closest to the Sun."),
    ("Which planet is farthest from the Sun?", "Neptune", "Neptune is the outermost of the eight planets."),
    ("Which is the largest planet in the Solar System?", "Jupiter", "Jupiter is the largest planet by mass and size."),
    ("Which is the smallest planet in the Solar System?", "Mercury", "Mercury is the smallest of the eight planets."),
    ("Which planet is known as the Red Planet?", "Mars", "Iron oxide on its surface makes Mars look red."),
    ("On which planet is the Great Red Spot?", "Jupiter", "The Great Red Spot is a giant storm on Jupiter."),
]

# (title, author); "Which writer wrote ...?"
BOOKS: list[tuple[str, str]] = [
    ("Romeo and Juliet", "William Shakespeare"), ("Hamlet", "William Shakespeare"),
    ("Pride and Prejudice", "Jane Austen"), ("Emma", "Jane Austen"),
    ("Nineteen Eighty-Four", "George Orwell"), ("Animal Farm", "George Orwell"),
    ("War and Peace", "Leo Tolstoy"), ("Anna Karenina", "Leo Tolstoy"),
    ("Crime and Punishment", "Fyodor Dostoevsky"), ("Oliver Twist", "Charles Dickens"),
    ("A Christmas Carol", "Charles Dickens"), ("Great Expectations", "Charles Dickens"),
    ("Don Quixote", "Miguel de Cervantes"), ("Moby-Dick", "Herman Melville"),
    ("The Odyssey", "Homer"), ("The Iliad", "Homer"),
    ("Frankenstein", "Mary Shelley"), ("Dracula", "Bram Stoker"),
    ("The Old Man and the Sea", "Ernest Hemingway"), ("Adventures of Huckleberry Finn", "Mark Twain"),
    ("The Adventures of Tom Sawyer", "Mark Twain"), ("The Divine Comedy", "Dante Alighieri"),
    ("Les Miserables", "Victor Hugo"), ("Jane Eyre", "Charlotte Bronte"),
    ("Wuthering Heights", "Emily Bronte"), ("The Great Gatsby", "F. Scott Fitzgerald"),
    ("The Hobbit", "J. R. R. Tolkien"), ("Alice's Adventures in Wonderland", "Lewis Carroll"),
    ("Madame Bovary", "Gustave Flaubert"), ("The Metamorphosis", "Franz Kafka"),
    ("Ulysses", "James Joyce"), ("Brave New World", "Aldous Huxley"),
    ("To Kill a Mockingbird", "Harper Lee"), ("The Catcher in the Rye", "J. D. Salinger"),
    ("Robinson Crusoe", "Daniel Defoe"), ("Gulliver's Travels", "Jonathan Swift"),
    ("The Picture of Dorian Gray", "Oscar Wilde"), ("Treasure Island", "Robert Louis Stevenson"),
    ("The Jungle Book", "Rudyard Kipling"), ("Around the World in Eighty Days", "Jules Verne"),
    ("The Time Machine", "H. G. Wells"), ("Eugene Onegin", "Alexander Pushkin"),
    ("Paradise Lost", "John Milton"), ("The Canterbury Tales", "Geoffrey Chaucer"),
    ("Lord of the Flies", "William Golding"), ("Fahrenheit 451", "Ray Bradbury"),
    ("Of Mice and Men", "John Steinbeck"), ("Little Women", "Louisa May Alcott"),
    ("The Three Musketeers", "Alexandre Dumas"), ("Heart of Darkness", "Joseph Conrad"),
]

# One item before option placement: (question, answer, distractor pool in preference order, number of
# leading pool entries that are near misses, subject, rationale). A knowledge item's rationale states
# the fact from its table (the "teacher" of the Chapter 4 demo); a reasoning item's works it out.
Item = tuple[str, str, list[str], int, str, str]


def _knowledge_items() -> list[Item]:
    items: list[Item] = []
    capitals = [c for _, c, _ in CAPITALS]
    for country, capital, near in CAPITALS:
        others = [c for c in capitals if c != capital]
        items.append((f"What is the capital of {country}?", capital, [*near, *others], len(near), "geography",
                      f"{capital} is the capital of {country}."))
    for country, continent in COUNTRY_CONTINENT:
        others = [c for c in CONTINENTS if c != continent]
        items.append((f"On which continent is {country}?", continent, others, 0, "geography",
                      f"{country[0].upper() + country[1:]} lies in {continent}."))
    symbols = [s for _, s in ELEMENTS]
    for name, symbol in ELEMENTS:
        # Near misses: letters of the name that look like a symbol, and real symbols with the same
        # first letter.
        fake = [name[0].upper() + c for c in name[1:4]]
        same = [s for s in symbols if s[0] == symbol[0] or s[0] == name[0].upper()]
        pool = _unique([p for p in [*fake, *same] if p != symbol])
        rest = [s for s in symbols if s != symbol and s not in pool]
        items.append((f"What is the chemical symbol for {name}?", symbol, [*pool, *rest], len(pool), "chemistry",
                      f"The chemical symbol for {name} is {symbol}."))
    by_symbol = {s: n for n, s in ELEMENTS}
    names = [n for n, _ in ELEMENTS]
    for symbol in REVERSE_SYMBOLS:
        name = by_symbol[symbol]
        near = [n for n in names if n != name and n[0].upper() == symbol[0]]
        rest = [n for n in names if n != name and n not in near]
        items.append((f"Which element has the chemical symbol {symbol}?", name, [*near, *rest], len(near),
                      "chemistry", f"{symbol} is the chemical symbol for {name}."))
    units = [u for _, u in SI_BASE + SI_DERIVED]
    for quantity, unit in SI_BASE:
        others = [u for _, u in SI_BASE if u != unit]
        items.append((f"What is the SI base unit of {quantity}?", unit, [*others, *units], len(others), "physics",
                      f"The SI base unit of {quantity} is the {unit}."))
    for quantity, unit in SI_DERIVED:
        others = [u for u in units if u != unit]
        items.append((f"What is the SI unit of {quantity}?", unit, others, 0, "physics",
                      f"The SI unit of {quantity} is the {unit}."))
    quantity_of = {u: q for q, u in SI_BASE + SI_DERIVED}
    quantities = [q for q, _ in SI_BASE + SI_DERIVED]
    for unit in SI_REVERSE:
        q = quantity_of[unit]
        others = [x for x in quantities if x != q]
        items.append((f"The {unit} is the SI unit of which quantity?", q, others, 0, "physics",
                      f"The {unit} is the SI unit of {q}."))
    for k, planet in enumerate(PLANETS):
        near = [PLANETS[j] for j in (k - 1, k + 1, k - 2, k + 2) if 0 <= j < len(PLANETS)]
        rest = [p for p in PLANETS if p != planet and p not in near]
        items.append((f"Which is the {ORDINALS[k]} planet from the Sun?", planet, [*near, *rest], len(near),
                      "astronomy", f"Counting outward from the Sun the planets are {', '.join(PLANETS[:-1])} and "
                                   f"{PLANETS[-1]}, so the {ORDINALS[k]} is {planet}."))
    for text, planet, fact in PLANET_FACTS:
        items.append((text, planet, [p for p in PLANETS if p != planet], 0, "astronomy", fact))
    authors = _unique([a for _, a in BOOKS])
    for title, author in BOOKS:
        items.append((f"Who wrote {title}?", author, [a for a in authors if a != author], 0, "literature",
                      f"{title} was written by {author}."))
    return items


def _unique(xs: list[str]) -> list[str]:
    return list(dict.fromkeys(xs))


def _pick_distractors(rng: random.Random, answer: str, pool: list[str], n_near: int) -> list[str]:
    """Three distinct distractors: up to two near misses, the rest drawn from the whole pool."""
    pool = _unique([p for p in pool if p != answer])
    near = pool[:n_near]
    chosen = rng.sample(near, min(2, len(near)))
    rest = [p for p in pool if p not in chosen]
    chosen += rng.sample(rest, N_OPTIONS - 1 - len(chosen))
    rng.shuffle(chosen)  # near misses must not sit in predictable slots
    return chosen


# ---------------------------------------------------------------------------------------------
# Reasoning templates. Each returns (question, answer, candidate distractors, rationale, subject,
# format) with the answer already checked against an independent computation.

NAMES = ("Amy", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kim", "Leo", "Mia",
         "Nora", "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vic", "Zoe")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ITEMS = (("pen", "pens"), ("notebook", "notebooks"), ("apple", "apples"), ("cup", "cups"),
         ("ticket", "tickets"), ("sandwich", "sandwiches"), ("ball", "balls"), ("book", "books"))

Reasoning = tuple[str, object, list, str, str, Callable[[object], str]]


def _money(x) -> str:
    return f"${x}"


def _plain(x) -> str:
    return str(x)


def _shopping(rng: random.Random) -> Reasoning:
    name = rng.choice(NAMES)
    (_, a2), (_, b2) = rng.sample(ITEMS, 2)
    pa, pb = rng.sample(range(2, 10), 2)
    na, nb = rng.randint(2, 6), rng.randint(2, 5)
    ta, tb = na * pa, nb * pb
    coupon = rng.randint(2, (ta + tb) // 2)
    total = ta + tb
    ans = total - coupon
    assert sum([pa] * na + [pb] * nb) - coupon == ans
    q = (f"{a2.capitalize()} cost ${pa} each and {b2} cost ${pb} each. {name} buys {na} {a2} and "
         f"{nb} {b2} and uses a ${coupon} coupon. How much does {name} pay?")
    r = (f"{na} {a2} cost {na} * ${pa} = ${ta}. {nb} {b2} cost {nb} * ${pb} = ${tb}. "
         f"Together: ${ta} + ${tb} = ${total}. With the coupon: ${total} - ${coupon} = ${ans}.")
    cands = [total, total + coupon, ans - pa, ans + pb, ta - coupon, ans + pa]
    return q, ans, cands, r, "arithmetic", _money


def _discount(rng: random.Random) -> Reasoning:
    name = rng.choice(NAMES)
    thing = rng.choice(("jacket", "lamp", "chair", "bike", "watch", "backpack", "game"))
    pct = rng.choice((10, 20, 25, 50))
    price = rng.choice([p for p in range(20, 201, 10) if p * pct % 100 == 0])
    k = rng.randint(2, 4)
    off = price * pct // 100
    each = price - off
    ans = each * k
    assert Fraction(price) * k * (1 - Fraction(pct, 100)) == ans
    q = f"A {thing} costs ${price} and is on sale at {pct}% off. {name} buys {k} of them. How much does {name} pay?"
    r = (f"The discount is {pct}% of ${price} = ${off}. One {thing} costs ${price} - ${off} = ${each}. "
         f"{k} of them cost {k} * ${each} = ${ans}.")
    cands = [price * k, off * k, price * k - off, each, ans + each]
    return q, ans, cands, r, "arithmetic", _money


def _change(rng: random.Random) -> Reasoning:
    name = rng.choice(NAMES)
    (_, a2), (b1, _) = rng.sample(ITEMS, 2)
    n, p, extra = rng.randint(2, 6), rng.randint(2, 6), rng.randint(3, 12)
    cost = n * p + extra
    bill = next(b for b in (20, 50, 100) if b > cost)
    ans = bill - cost
    left = bill
    for _ in range(n):
        left -= p
    left -= extra
    assert left == ans
    q = (f"{name} buys {n} {a2} at ${p} each and one {b1} for ${extra}. {name} pays with a ${bill} bill. "
         f"How much change does {name} get?")
    r = (f"The {a2} cost {n} * ${p} = ${n * p}. Adding the {b1}: ${n * p} + ${extra} = ${cost}. "
         f"Change: ${bill} - ${cost} = ${ans}.")
    cands = [bill - n * p, cost, bill - p - extra, ans + p, ans - p]
    return q, ans, cands, r, "arithmetic", _money


def _ages_sum(rng: random.Random) -> Reasoning:
    a, b = rng.sample(NAMES, 2)
    young = rng.randint(4, 30)
    gap = rng.randint(2, 12)
    years = rng.randint(2, 10)
    total = (young + years) + (young + gap + years)
    ans = young
    now_sum = total - 2 * years
    assert [m for m in range(0, 120) if (m + years) + (m + gap + years) == total] == [ans]
    q = f"{a} is {gap} years older than {b}. In {years} years, the sum of their ages will be {total}. How old is {b} now?"
    r = (f"In {years} years each is {years} years older, so their ages now add up to {total} - {2 * years} = "
         f"{now_sum}. If {b} is x, {a} is x + {gap}, so 2x + {gap} = {now_sum}. Then 2x = {now_sum - gap} "
         f"and x = {ans}.")
    cands = [ans + gap, ans + years, ans + gap + years, ans + 1, ans - 1, now_sum // 2]
    return q, ans, cands, r, "algebra", _plain


def _ages_ratio(rng: random.Random) -> Reasoning:
    parent, child, his, he = rng.choice((("mother", "son", "her", "she"), ("mother", "daughter", "her", "she"),
                                         ("father", "son", "his", "he"), ("father", "daughter", "his", "he")))
    while True:
        s, t, j = rng.randint(2, 15), rng.randint(2, 20), rng.randint(2, 3)
        if (j * (s + t) - t) % s:
            continue
        k = (j * (s + t) - t) // s
        if j < k <= 7 and 20 <= k * s <= 60:
            break
    ans = s
    assert [x for x in range(1, 100) if k * x + t == j * (x + t)] == [ans]
    times = {2: "twice", 3: "three times"}[j]
    q = (f"A {parent} is {k} times as old as {his} {child}. In {t} years, {he} will be {times} as old as the "
         f"{child}. How old is the {child} now?")
    r = (f"Let the {child} be x, so the {parent} is {k}x. In {t} years: {k}x + {t} = {j}(x + {t}) = {j}x + {j * t}. "
         + (f"So x = {j * t} - {t} = {ans}." if k - j == 1 else f"So {k - j}x = {j * t - t} and x = {ans}."))
    cands = [k * s, s + t, k * s + t, ans + 1, ans - 1]
    return q, ans, cands, r, "algebra", _plain


# (question template, first factor and unit, second factor and unit, start unit, end unit)
_CONVERSIONS = (
    ("How many minutes are in {n} days?", (24, "hours"), (60, "minutes"), "day", "minute"),
    ("How many seconds are in {n} hours?", (60, "minutes"), (60, "seconds"), "hour", "second"),
    ("How many hours are in {n} weeks?", (7, "days"), (24, "hours"), "week", "hour"),
    ("How many minutes are in {n} weeks?", (7 * 24, "hours"), (60, "minutes"), "week", "minute"),
    ("How many centimetres are in {n} kilometres?", (1000, "metres"), (100, "centimetres"), "km", "cm"),
    ("How many millimetres are in {n} kilometres?", (1000, "metres"), (1000, "millimetres"), "km", "mm"),
    ("How many milligrams are in {n} kilograms?", (1000, "grams"), (1000, "milligrams"), "kg", "mg"),
)
# Sizes in a common base unit (seconds, millimetres, milligrams) for the independent check.
_BASE = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800,
         "mm": 1, "cm": 10, "km": 1_000_000, "mg": 1, "kg": 1_000_000}


def _convert(rng: random.Random) -> Reasoning:
    template, (f1, u1), (f2, u2), start, end = rng.choice(_CONVERSIONS)
    n = rng.randint(2, 9)
    step = n * f1
    ans = step * f2
    assert n * _BASE[start] == ans * _BASE[end]
    q = template.format(n=n)
    r = f"{n} * {f1} = {step} {u1}. Then {step} * {f2} = {ans} {u2}."
    wrong_f2 = 100 if f2 != 100 else 1000
    cands = [step, step * wrong_f2, n * f2, ans * 10, ans // 10, (n + 1) * f1 * f2]
    return q, ans, cands, r, "unit conversion", _plain


def _speed(rng: random.Random) -> Reasoning:
    vehicle = rng.choice(("A train", "A car", "A bus", "A cyclist", "A ship"))
    v = rng.randint(3, 12) * 10 if vehicle != "A cyclist" else rng.randint(12, 25)
    h, t = rng.sample(range(2, 8), 2)
    d = v * h
    ans = v * t
    assert Fraction(d, h) * t == ans
    q = f"{vehicle} travels {d} km in {h} hours. At the same speed, how far does it travel in {t} hours?"
    r = f"Speed: {d} km / {h} h = {v} km per hour. In {t} hours: {t} * {v} = {ans} km."
    cands = [v, d * t, ans - v, ans + v, d]
    return q, ans, cands, r, "unit conversion", lambda x: f"{x} km"


_RELATIONS = (("taller", "shorter", "tallest", "shortest"), ("older", "younger", "oldest", "youngest"),
              ("faster", "slower", "fastest", "slowest"))


def _ordering(rng: random.Random) -> Reasoning:
    names = rng.sample(NAMES, 4)  # names[0] has the most of the quality
    more, less, most, least = rng.choice(_RELATIONS)
    facts = []  # (a, relation, b) for "a is <relation> than b"
    for hi, lo in zip(names, names[1:]):
        facts.append((hi, more, lo) if rng.random() < 0.5 else (lo, less, hi))
    rng.shuffle(facts)
    which = rng.randrange(4)
    asked = (most, least, f"second {most}", f"second {least}")[which]
    rank = (0, 3, 1, 2)[which]
    ans = names[rank]

    # Independent check: from the stated facts alone, the only ordering (most first) consistent
    # with all of them.
    def consistent(order):
        pos = {n: i for i, n in enumerate(order)}
        return all((pos[a] < pos[b]) == (rel == more) for a, rel, b in facts)

    orders = [o for o in itertools.permutations(sorted(names)) if consistent(o)]
    assert len(orders) == 1 and orders[0][rank] == ans
    q = " ".join(f"{a} is {rel} than {b}." for a, rel, b in facts) + f" Who is the {asked}?"
    r = f"Chaining the facts, from {most} to {least}: {', '.join(names)}. The {asked} is {ans}."
    return q, ans, [n for n in names if n != ans], r, "logic", _plain


def _weekday(rng: random.Random) -> Reasoning:
    today = rng.randrange(7)
    n = rng.choice([x for x in range(8, 61) if x % 7])
    later = rng.random() < 0.6
    sign = 1 if later else -1
    ans = DAYS[(today + sign * n) % 7]
    # Independent check with real dates: find a date on `today`'s weekday and step by n days.
    d0 = next(dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(7)
              if (dt.date(2024, 1, 1) + dt.timedelta(days=i)).weekday() == today)
    assert DAYS[(d0 + dt.timedelta(days=sign * n)).weekday()] == ans
    w, rest = divmod(n, 7)
    if later:
        q = f"Today is {DAYS[today]}. What day of the week will it be in {n} days?"
        move = "later"
    else:
        q = f"Today is {DAYS[today]}. What day of the week was it {n} days ago?"
        move = "earlier"
    weeks = f"{w} week{'s' if w > 1 else ''}"
    r = (f"{n} days = {weeks} and {rest} day{'s' if rest > 1 else ''}. After whole weeks it is {DAYS[today]} again; "
         f"{rest} day{'s' if rest > 1 else ''} {move} it is {ans}.")
    cands = [DAYS[(today + sign * (n + 1)) % 7], DAYS[(today + sign * (n - 1)) % 7], DAYS[today],
             DAYS[(today - sign * n) % 7]]
    return q, ans, cands, r, "modular arithmetic", _plain


def _clock(rng: random.Random) -> Reasoning:
    h = rng.randint(1, 12)
    n = rng.choice([x for x in range(13, 61) if x % 12])
    ans = (h - 1 + n) % 12 + 1
    hour = h
    for _ in range(n):
        hour = 1 if hour == 12 else hour + 1
    assert hour == ans
    w, rest = divmod(n, 12)
    q = f"A 12-hour clock shows {h} o'clock. What will it show {n} hours later?"
    r = (f"Every 12 hours the clock returns to the same time. {n} = {w} * 12 + {rest}, so move {rest} hours "
         f"from {h} o'clock: {h} + {rest} = {h + rest}" + (f", which is {ans} o'clock." if h + rest > 12 else " o'clock."))
    wrap = lambda x: (x - 1) % 12 + 1  # noqa: E731
    cands = [wrap(ans + 1), wrap(ans - 1), wrap(h + n % 24), h, wrap(ans + 2)]
    return q, ans, cands, r, "modular arithmetic", lambda x: f"{x} o'clock"


def _packing(rng: random.Random) -> Reasoning:
    name = rng.choice(NAMES)
    while True:
        trays, per, bag = rng.randint(3, 8), rng.choice((6, 8, 10, 12)), rng.choice((4, 5, 6, 8, 9))
        made = trays * per
        if made - 2 * bag < made // 4:
            continue
        sold = rng.randint(made // 4, made - 2 * bag)
        if (made - sold) % bag == 0:
            break
    rest = made - sold
    ans = rest // bag
    cookies, bags = made - sold, 0
    while cookies >= bag:
        cookies -= bag
        bags += 1
    assert bags == ans and cookies == 0
    q = (f"{name} bakes {trays} trays of {per} cookies, sells {sold} cookies, and packs the rest in bags of {bag}. "
         f"How many bags does {name} fill?")
    r = f"{trays} * {per} = {made} cookies. {made} - {sold} = {rest} are left. {rest} / {bag} = {ans} bags."
    cands = [made // bag, rest, ans + 1, ans - 1, ans + 2]
    return q, ans, cands, r, "arithmetic", _plain


def _savings(rng: random.Random) -> Reasoning:
    name = rng.choice(NAMES)
    start, weekly, weeks = rng.randint(1, 9) * 5, rng.randint(2, 8) * 5, rng.randint(3, 9)
    goal = start + weekly * weeks
    ans = weeks
    money, count = start, 0
    while money < goal:
        money += weekly
        count += 1
    assert count == ans and money == goal
    q = f"{name} has ${start} and saves ${weekly} each week. After how many weeks will {name} have ${goal}?"
    r = f"{name} still needs ${goal} - ${start} = ${goal - start}. At ${weekly} a week: {goal - start} / {weekly} = {ans} weeks."
    cands = [ans + 1, ans - 1, ans + 2, goal - start, goal // weekly]
    return q, ans, cands, r, "arithmetic", _plain


def _average(rng: random.Random) -> Reasoning:
    while True:
        mean, x, y = rng.randint(8, 30), rng.randint(3, 40), rng.randint(3, 40)
        ans = 3 * mean - x - y
        if ans > 0 and ans not in (x, y, mean):
            break
    assert [z for z in range(1, 200) if Fraction(x + y + z, 3) == mean] == [ans]
    q = f"The average of three numbers is {mean}. Two of them are {x} and {y}. What is the third number?"
    r = f"The three numbers add up to 3 * {mean} = {3 * mean}. The third is {3 * mean} - {x} - {y} = {ans}."
    cands = [mean, 2 * mean - x - y, ans + 1, ans - 1, 3 * mean - x]
    return q, ans, cands, r, "arithmetic", _plain


def _consecutive(rng: random.Random) -> Reasoning:
    k = rng.choice((3, 5))
    smallest = rng.randint(4, 60)
    total = sum(range(smallest, smallest + k))
    pos = rng.choice(("smallest", "largest"))
    middle = total // k
    ans = smallest if pos == "smallest" else smallest + k - 1
    sols = [a for a in range(0, 200) if sum(range(a, a + k)) == total]
    assert len(sols) == 1 and (sols[0] if pos == "smallest" else sols[0] + k - 1) == ans
    word = {3: "three", 5: "five"}[k]
    q = f"The sum of {word} consecutive whole numbers is {total}. What is the {pos} of them?"
    half = (k - 1) // 2
    r = (f"The middle number is the average: {total} / {k} = {middle}. The numbers run from {middle - half} to "
         f"{middle + half}, so the {pos} is {ans}.")
    other = smallest + k - 1 if pos == "smallest" else smallest
    cands = [middle, other, ans + (1 if pos == "largest" else -1), ans - (1 if pos == "largest" else -1), ans + 2]
    return q, ans, cands, r, "arithmetic", _plain


def _rows(rng: random.Random) -> Reasoning:
    name = rng.choice(NAMES)
    while True:
        rows, per, fruit, box = rng.randint(3, 9), rng.randint(4, 12), rng.randint(5, 20), rng.choice((10, 20, 25, 50))
        trees = rows * per
        total = trees * fruit
        if total % box == 0 and total >= 2 * box:
            break
    ans = total // box
    assert sum(fruit for _ in range(rows) for _ in range(per)) == ans * box
    q = (f"{name} has {rows} rows of {per} apple trees. Each tree gives {fruit} apples. "
         f"{name} packs all the apples in boxes of {box}. How many boxes does {name} fill?")
    r = f"{rows} * {per} = {trees} trees. {trees} * {fruit} = {total} apples. {total} / {box} = {ans} boxes."
    cands = [total, trees, (rows * fruit * per) // box + 1, ans - 1, ans + rows]
    return q, ans, cands, r, "arithmetic", _plain


TEMPLATES: tuple[Callable[[random.Random], Reasoning], ...] = (
    _shopping, _discount, _change, _ages_sum, _ages_ratio, _convert, _speed, _ordering,
    _weekday, _clock, _packing, _savings, _average, _consecutive, _rows,
)


def _reasoning_items(rng: random.Random, n: int) -> list[Item]:
    per, extra = divmod(n, len(TEMPLATES))
    items: list[Item] = []
    seen: set[str] = set()
    for t, make in enumerate(TEMPLATES):
        made = 0
        while made < per + (t < extra):
            q, ans, cands, rationale, subject, fmt = make(rng)
            if q in seen:
                continue
            seen.add(q)
            answer = fmt(ans)
            pool = _unique([fmt(c) for c in cands if not (isinstance(c, int) and c < 1) and fmt(c) != answer])
            # Too few distinct slips: pad with neighbours of the numeric answer.
            d = 1
            while isinstance(ans, int) and len(pool) < N_OPTIONS - 1:
                for c in (ans + d, ans - d):
                    if c >= 1 and fmt(c) != answer and fmt(c) not in pool:
                        pool.append(fmt(c))
                d += 1
            assert len(pool) >= N_OPTIONS - 1, q
            items.append((q, answer, pool, len(pool), subject, rationale))  # type: ignore[arg-type]
            made += 1
    return items


def _place(rng: random.Random, items: list, prefix: str, stratum: str) -> list[Question]:
    """Shuffles item order, balances the answer position exactly over A-D, builds Questions."""
    assert len(items) % N_OPTIONS == 0, (prefix, len(items))
    items = list(items)
    rng.shuffle(items)
    positions = [i % N_OPTIONS for i in range(len(items))]
    rng.shuffle(positions)
    out = []
    for i, (item, pos) in enumerate(zip(items, positions), 1):
        q, answer, pool, n_near, subject, *rest = item
        distractors = _pick_distractors(rng, answer, pool, n_near)
        options = list(distractors)
        options.insert(pos, answer)
        assert len(set(options)) == N_OPTIONS and options[pos] == answer, (q, options)
        assert len(q.split()) <= MAX_QUESTION_WORDS, q
        out.append(Question(id=f"{prefix}-{i:04d}", question=q, options=tuple(options), answer=pos,
                            subject=subject, stratum=stratum, rationale=rest[0]))
    return out


def build() -> list[Question]:
    """The demo set: knowledge and reasoning questions interleaved (know-0001, reas-0001, ...),
    so that any prefix (`load("demo", limit=k)`) holds both strata."""
    knowledge = _knowledge_items()
    assert len(knowledge) >= N_PER_STRATUM, len(knowledge)
    # The tables hold a few more facts than needed; a seeded subset keeps the strata equal in size.
    krng = random.Random(SEED)
    keep = sorted(krng.sample(range(len(knowledge)), N_PER_STRATUM))
    know = _place(krng, [knowledge[i] for i in keep], "know", "knowledge")
    rrng = random.Random(SEED + 1)
    reas = _place(rrng, _reasoning_items(rrng, N_PER_STRATUM), "reas", "reasoning")
    questions = [q for pair in zip(know, reas) for q in pair]
    texts = [q.question for q in questions]
    assert len(set(texts)) == len(texts), "duplicate question text"
    return questions


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output JSONL (default {OUT})")
    args = parser.parse_args(argv)
    questions = build()
    path = save_jsonl(questions, args.out)
    counts: dict[str, int] = {}
    for q in questions:
        counts[f"{q.stratum}/{q.subject}"] = counts.get(f"{q.stratum}/{q.subject}", 0) + 1
    print(f"wrote {len(questions)} questions to {path}", file=sys.stderr)
    for key in sorted(counts):
        print(f"  {key}: {counts[key]}", file=sys.stderr)
    return path


if __name__ == "__main__":
    main()
