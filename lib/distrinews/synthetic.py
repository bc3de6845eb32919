"""A built-in synthetic stand-in for AG News, so smoke runs work offline.

``generate_news`` writes short "title description" news items for the four AG
News classes from templates and word banks. It is not meant to be realistic,
only shaped like the real thing: similar lengths, a vocabulary shared by all
classes, and some deliberately ambiguous items, so that a small model learns it
quickly but cannot score a perfect 100%.
"""

import random

from .labels import LABEL_NAMES

# Topical phrases per class, in label order (World, Sports, Business, Sci/Tech).
# Every template slot named after a bank ("who", "did", "what", "where") is filled
# from one of these; the banks are disjoint so any overlap comes from mixing.
TOPICAL: tuple[dict[str, tuple[str, ...]], ...] = (
    {  # World
        "who": ("the prime minister", "rebel leaders", "the foreign minister", "a UN envoy",
                "peacekeepers", "insurgents", "opposition lawmakers", "the military junta",
                "diplomats", "the parliament", "Palestinian leaders", "the Kremlin"),
        "did": ("condemned", "rejected", "endorsed", "threatened", "postponed", "called for",
                "pulled out of", "agreed to", "warned against", "demanded"),
        "what": ("a ceasefire", "the peace talks", "the election results", "a UN resolution",
                 "the nuclear program", "the hostage crisis", "border security", "the referendum",
                 "a military offensive", "the refugee crisis", "the coalition government"),
        "where": ("Baghdad", "Gaza", "Kabul", "Darfur", "Tehran", "Kashmir", "Beirut",
                  "Jerusalem", "Pyongyang", "Najaf"),
    },
    {  # Sports
        "who": ("the Yankees", "the Red Sox", "the head coach", "the quarterback", "Tiger Woods",
                "the Olympic champion", "the midfielder", "the Lakers", "the goalkeeper",
                "the defending champions", "the ace pitcher", "Manchester United"),
        "did": ("clinched", "won", "lost", "defended", "celebrated", "reached", "secured",
                "missed out on", "battled for", "chased"),
        "what": ("the championship", "the pennant", "a playoff berth", "the gold medal",
                 "the Ryder Cup", "the batting title", "the World Series", "a hat trick",
                 "the season opener", "the league title", "a winning streak"),
        "where": ("Yankee Stadium", "Fenway Park", "Augusta", "Wimbledon", "Old Trafford",
                  "the Olympic pool", "the NFL", "the Premier League", "the playoffs", "overtime"),
    },
    {  # Business
        "who": ("shareholders", "the Federal Reserve", "Wal-Mart", "the chief executive",
                "investors", "the airline", "the retailer", "oil producers", "the insurer",
                "the automaker", "the SEC", "hedge funds"),
        "did": ("acquired", "cut", "raised", "reported", "forecast", "sold", "bought",
                "slashed", "posted", "boosted"),
        "what": ("quarterly earnings", "the merger", "interest rates", "profit forecasts",
                 "a stock buyback", "its credit rating", "crude oil futures", "the takeover bid",
                 "retail sales", "the dividend", "bond yields"),
        "where": ("the Nasdaq", "the New York Stock Exchange", "Wall Street", "the bond market",
                  "the eurozone", "the retail sector", "the oil market", "Frankfurt",
                  "the Tokyo exchange", "the mortgage market"),
    },
    {  # Sci/Tech
        "who": ("Microsoft", "Google", "NASA", "researchers", "Apple", "Intel",
                "software developers", "hackers", "scientists", "IBM", "astronomers",
                "the Linux community"),
        "did": ("unveiled", "launched", "released", "patched", "tested", "developed",
                "upgraded", "discovered", "demonstrated", "open-sourced"),
        "what": ("a new processor", "the software update", "a security patch", "the search engine",
                 "the Mars rover", "a spam filter", "the operating system", "broadband service",
                 "a space probe", "the genome study", "the web browser"),
        "where": ("Silicon Valley", "the International Space Station", "low Earth orbit",
                  "the lab", "Redmond", "the Kennedy Space Center", "cyberspace",
                  "open-source projects", "online forums", "the chip industry"),
    },
)

# Shared by every class, so these words carry no label information on their own.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NEUTRAL: dict[str, tuple[str, ...]] = {
    "time": ("this week", "last week", "earlier this month", "overnight",
             *(f"on {day}" for day in _DAYS)),
    "source": ("officials said", "sources said", "a spokesman said", "Reuters reported",
               "the Associated Press reported", "people familiar with the matter said"),
    "num": ("two", "three", "four", "five", "ten", "several"),
    "year": ("1999", "2001", "2002", "2003"),
}

TITLES = (
    "{who} {did} {what}", "{who} {did} {what} in {where}", "{where}: {who} {did} {what}",
    "Report: {who} {did} {what}", "{who} and {who2} clash over {what}",
    "{what} tops agenda in {where}", "{who} {did} {what} {time}",
    "after {num} weeks, {who} {did} {what}", "{who} under pressure over {what}",
    "why {who} {did} {what}", "{what} worries grow in {where}", "{who} set sights on {what}",
)
# A description opens with a lead that tells the story; follow-ups add context.
LEADS = (
    "{who} {did} {what} in {where} {time}, {source}.",
    "{who} {did} {what} after {num} weeks of uncertainty over {what2}, {source}.",
    "In {where}, {who} {did} {what} for the first time since {year}.",
    "{source} that {who} {did} {what} and could soon turn to {what2}.",
    "According to a report released {time}, {who} {did} {what} in {where}.",
    "{who} told reporters in {where} that {what} remained the top priority.",
    "{who} {did} {what} {time} and said {what2} would be next, {source}.",
)
FOLLOW_UPS = (
    "The move came as {who} {did} {what} {time}, raising fresh questions about {what2}.",
    "{who} also {did} {what2}, a step few had expected before {year}.",
    "It was not immediately clear whether {what} would affect {what2} in {where}.",
    "Critics said {who} {did} {what} too quickly, but {who2} welcomed the decision.",
    "{num} days after {who} {did} {what}, attention shifted to {what2} in {where}.",
    "{who} declined to comment.", "Details of {what} were not disclosed.",
    "{who} {did} {what} {time}.", "The decision surprised {who}.",
)
WIRE_PREFIXES = ("", "", "", "AP - ", "Reuters - ", "AFP - ")

# Which classes plausibly bleed into which: trade and sanctions (World/Business),
# team sales and sponsorship (Sports/Business), tech companies (Sci/Tech/Business).
NEIGHBOURS = {0: (2, 1), 1: (2, 0), 2: (3, 0, 1), 3: (2,)}
MIXED_RATE, HARD_RATE = 0.12, 0.03  # share of items with some / mostly foreign topical words
MIXED_SHARE, HARD_SHARE = 0.3, 0.85  # chance each topical slot is foreign in those items


class _SlotFiller(dict):
    """Draws a fresh phrase for every slot occurrence (format_map calls __missing__)."""

    def __init__(self, rng: random.Random, label: int, other: int, foreign_share: float):
        super().__init__()
        self.rng, self.label, self.other, self.foreign_share = rng, label, other, foreign_share

    def __missing__(self, slot: str) -> str:
        bank = slot.rstrip("0123456789")
        if bank in NEUTRAL:
            return self.rng.choice(NEUTRAL[bank])
        source = self.other if self.rng.random() < self.foreign_share else self.label
        return self.rng.choice(TOPICAL[source][bank])


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def write_title(rng: random.Random, filler: _SlotFiller) -> str:
    # Redraw rather than truncate, so every title is a complete phrase of 4-9 words.
    while True:
        words = rng.choice(TITLES).format_map(filler).split()
        if 4 <= len(words) <= 9:
            return " ".join(capitalise(word) for word in words)


def write_description(rng: random.Random, filler: _SlotFiller) -> str:
    # Zero to two follow-ups (rarely two) give a skewed hump of lengths with a long tail.
    extra = rng.choices((0, 1, 2), weights=(40, 50, 10))[0]
    templates = [rng.choice(LEADS)] + [rng.choice(FOLLOW_UPS) for _ in range(extra)]
    return rng.choice(WIRE_PREFIXES) + " ".join(capitalise(t.format_map(filler)) for t in templates)


def choose_foreign_share(rng: random.Random) -> float:
    # Most items are pure; a few borrow words from a neighbour, and a rare few are
    # mostly about the neighbour's topic, which keeps accuracy below 100%.
    roll = rng.random()
    if roll < HARD_RATE:
        return HARD_SHARE
    return MIXED_SHARE if roll < HARD_RATE + MIXED_RATE else 0.0


def write_item(rng: random.Random, label: int) -> str:
    filler = _SlotFiller(rng, label, rng.choice(NEIGHBOURS[label]), choose_foreign_share(rng))
    return f"{write_title(rng, filler)} {write_description(rng, filler)}"


def generate_news(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Return n synthetic news texts ("title description", like AG News) and their labels 0..3."""
    if n < 0:
        raise ValueError(f"n must be a non-negative number of examples, got {n}")
    rng = random.Random(seed)
    # Equal counts, shuffled, so every class is within one of n/4 without a fixed pattern.
    labels = [i % len(LABEL_NAMES) for i in range(n)]
    rng.shuffle(labels)
    return [write_item(rng, label) for label in labels], labels
