"""Word lists shared by the task generators and the zoo's training corpus.

The zoo tokenizers are built so that every word here is a single token (with and without a leading
space for the GPT family), so the task generators and the corpus must draw from the same lists.
"""

from __future__ import annotations

# IOI (Wang et al. 2023): single-token first names, places and objects.
NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "David", "Emma",
    "Paul", "Laura", "Mark", "Kate", "Peter", "Lisa", "Jack", "Amy", "Sam", "Rose",
    "Mike", "Jane", "Dan", "Lucy", "Ben", "Grace", "Adam", "Ella", "Max", "Ruth",
    "Carl", "Nina", "Eric", "Helen", "Fred", "Julia", "Greg", "Sophie", "Ian", "Claire",
    "Joe", "Diana", "Tim", "Alex", "Rachel", "Kevin", "Linda", "Steve",
)
PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
    "park", "library", "market", "beach",
)
OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack",
    "book", "letter", "gift", "flower",
)

# IOI templates: {A} is the indirect object, {B} the subject who repeats. BABA order names the
# subject first; ABBA names the indirect object first. The answer follows the final "to".
IOI_TEMPLATES_BABA: tuple[str, ...] = (
    "When {B} and {A} went to the {PLACE}, {B} gave a {OBJECT} to",
    "Then, {B} and {A} went to the {PLACE}. {B} gave a {OBJECT} to",
    "After {B} and {A} arrived at the {PLACE}, {B} handed a {OBJECT} to",
    "While {B} and {A} were at the {PLACE}, {B} passed a {OBJECT} to",
    "Once {B} and {A} left the {PLACE}, {B} brought a {OBJECT} to",
    "Then, {B} and {A} had a long talk at the {PLACE}, and afterwards {B} gave a {OBJECT} to",
    "Friends {B} and {A} found a {OBJECT} at the {PLACE}. {B} gave the {OBJECT} to",
)
IOI_TEMPLATES_ABBA: tuple[str, ...] = tuple(
    t.replace("{B} and {A}", "{A} and {B}") for t in IOI_TEMPLATES_BABA
)

# Numerical sequence continuation (Lan, Torr & Barez 2024): five clauses, four members.
SEQ_NOUNS: tuple[str, ...] = (
    "Van", "Hat", "Ring", "Desk", "Sun", "Cup", "Box", "Car", "Door", "Lamp",
    "Bag", "Pen", "Key", "Bed", "Map", "Bell", "Coat", "Shoe", "Fan", "Drum",
)
SEQ_VERBS: dict[str, str] = {"done": "done", "lost": "lost", "names": "born"}
NUMERALS: tuple[str, ...] = tuple(str(i) for i in range(1, 13))
NUMBER_WORDS: tuple[str, ...] = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
)
MONTHS: tuple[str, ...] = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
SEQ_MEMBERS: dict[str, tuple[str, ...]] = {
    "numerals": NUMERALS,
    "numwords": NUMBER_WORDS,
    "months": MONTHS,
}

# Synthetic facts for the zoo QA task ("The capital of Velm is Tarro."). Invented single-token
# words, so the facts can only be known by having learned them.
QA_COUNTRIES: tuple[str, ...] = (
    "Velm", "Orra", "Kesh", "Tamb", "Vorn", "Lisk", "Dray", "Pelt", "Quon", "Zarn",
    "Brim", "Cloy", "Frin", "Gask", "Hume", "Jorl", "Krev", "Lume", "Mosk", "Nurl",
    "Oban", "Prax", "Rilk", "Sorn", "Tuvo", "Ulma", "Vask", "Wend", "Yarl", "Zeph",
    "Ardo", "Bexa", "Cirn", "Dulo", "Embr", "Fask", "Glim", "Hosk", "Ivra", "Jesk",
    "Kolb", "Lorn", "Mirv", "Nesk", "Olva", "Pirn", "Quel", "Rask", "Selv", "Torv",
    "Umbo", "Varn", "Wisk", "Xelo", "Ymir", "Zolt", "Aska", "Brev", "Coru", "Dalv",
    "Eska", "Forn", "Gulm", "Harv",
)
QA_CAPITALS: tuple[str, ...] = (
    "Tarro", "Penna", "Dovik", "Marlo", "Sitka", "Belun", "Corvo", "Halda", "Nerin", "Obrik",
    "Pavro", "Quiro", "Rendo", "Salvi", "Tovar", "Ulrik", "Valdo", "Wirro", "Yanko", "Zerba",
    "Albin", "Borka", "Calvo", "Dunmo", "Elvar", "Fidor", "Galen", "Hovra", "Istra", "Jovan",
    "Kirno", "Lembo", "Mordo", "Navik", "Ostra", "Pelko", "Rivna", "Sarko", "Tilda", "Umbra",
    "Vesna", "Wolde", "Yorik", "Zanda", "Arvik", "Belko", "Cerno", "Dravo", "Eldan", "Forta",
    "Grova", "Helmo", "Irvik", "Jalko", "Korva", "Lunda", "Mirko", "Nolda", "Orvik", "Pirka",
    "Rolda", "Selma", "Tirvo", "Ulvar",
)
assert len(QA_COUNTRIES) == len(QA_CAPITALS) == len(set(QA_CAPITALS))
ZOO_FACTS: tuple[tuple[str, str], ...] = tuple(zip(QA_COUNTRIES, QA_CAPITALS))

# A small real-world set for hub models (gpt2, distilgpt2, ...): answers that are single GPT-2
# tokens with a leading space.
WORLD_FACTS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Norway", "Oslo"),
    ("Poland", "Warsaw"), ("Thailand", "Bangkok"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
    ("Cuba", "Havana"), ("England", "London"), ("China", "Beijing"), ("Canada", "Ottawa"),
    ("Sweden", "Stockholm"), ("Denmark", "Copenhagen"), ("Hungary", "Budapest"),
    ("Finland", "Helsinki"), ("Belgium", "Brussels"), ("India", "Delhi"), ("Iran", "Tehran"),
    ("Syria", "Damascus"), ("Chile", "Santiago"), ("Israel", "Jerusalem"),
)
