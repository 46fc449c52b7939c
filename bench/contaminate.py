"""A contaminated pool: a clean pool with a share of its records replaced by realistic defects (issue 26).

    python bench/contaminate.py POOL.json --fraction 0.3 --out OUT.json      # OUT.json + OUT.labels.jsonl

Every record keeps its position; a label file says for each position whether the record is ``clean`` or
which defect replaced it. Kinds (equal shares; none is a kind of ``bench/damage.py``, which tuned the
default, except ``swap``):

- ``swap``: the answer of another record of the pool (the reference code's misalignment bug);
- ``wrong-numbers``: every number in the answer changed to a plausible wrong one (only records whose
  answer has a number get this kind);
- ``mojibake``: the answer typeset (curly quotes, dashes, non-breaking spaces), encoded as UTF-8 and
  decoded as cp1252 (latin-1 for the bytes cp1252 lacks), plus a few stray control characters: what a
  broken scrape pipeline produces;
- ``low-effort``: a short generic answer ("Sure.", "I don't know.", ...);
- ``template``: the artifacts Alpaca itself carries (``<No Output>``, ``<noinput>``, an answer that is
  only a URL, "Here is the picture:");
- ``flood``: a near-copy of one of a few clean records of the pool (one or two words changed), the
  duplicate flood of synthetic data; the copied records stay in the pool, clean;
- ``cutoff``: the answer stopped by a generation limit: cut mid-sentence after 50-80% of its words
  (only answers of at least ``CUTOFF_MIN_WORDS`` words).

Seeded and nested: the positions are walked in one seeded order and the first round(f * n) are
contaminated, each with a kind chosen along that walk (the kind with the fewest records so far among
those the record allows, ties in ``KINDS`` order) and content drawn from a generator seeded by the
position alone. So at a larger f the junk of a smaller f is the same records with the same content,
and each kind's share is equal to within one record where every record allows it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

KINDS = ("swap", "wrong-numbers", "mojibake", "low-effort", "template", "flood", "cutoff")
CLEAN = "clean"
CUTOFF_MIN_WORDS = 6  # a shorter answer cut at 50-80% is one or two words: low-effort, not a cut
FLOOD_SOURCES = 5  # "a few" records, each copied many times
LOW_EFFORT = ("Sure.", "Yes, that is correct.", "I don't know.", "No.", "Yes.", "OK.", "That depends.",
              "Good question!", "I'm not sure.", "It is what it is.", "See above.", "Thanks!")
TEMPLATE = ("<No Output>", "<noinput>", "<nooutput>", "Here is the picture:", "See the attached image.",
            "https://www.example.com/", "https://en.wikipedia.org/wiki/{word}", "http://bit.ly/{code}")
CONTROL = "\x00\x01\x02\x03\x07\x08\x0b\x0c\x0e\x1b\x7f"
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?!\w)")
LIST_MARKER = re.compile(r"^\s*\d+[.)](\s|$)", re.M)  # "1. " or "2) " at a line's start: no number to get wrong


def applicable(kind: str, record: dict) -> bool:
    """Whether ``kind`` can be made from ``record`` (an Alpaca record)."""
    if kind == "wrong-numbers":
        return bool(numbers(record["output"]))
    if kind == "cutoff":
        return len(record["output"].split()) >= CUTOFF_MIN_WORDS
    return True


# ---------------------------------------------------------------- the defects (pure, given their rng)

def wrong_number(token: str, rng: random.Random) -> str:
    """A plausible wrong value for a number as written: the same shape (digits, separators, decimals),
    a different value; a single digit becomes another digit, a larger number moves by 10-60%."""
    plain = token.replace(",", "")
    decimals = len(plain.split(".")[1]) if "." in plain else 0
    value = float(plain)
    if value < 10 and decimals == 0:
        new = rng.choice([d for d in range(10) if d != int(value)])
    else:
        factor = 1 + rng.choice((-1, 1)) * rng.uniform(0.1, 0.6)
        new = round(value * factor, decimals)
        if new == value:
            new = value + 10 ** -decimals if decimals else value + 1
    text = f"{new:.{decimals}f}" if decimals else str(int(new))
    if "," in token and decimals == 0 and "." not in token:  # 1,234 stays grouped
        text = f"{int(new):,}"
    return text


def numbers(answer: str) -> list[re.Match]:
    """The numbers of an answer (integers, decimals, 1,234-style groups), list markers left out."""
    markers = {m.start() + len(m.group(0)) - len(m.group(0).lstrip()) for m in LIST_MARKER.finditer(answer)}
    return [m for m in NUMBER.finditer(answer) if m.start() not in markers]


def wrong_numbers(answer: str, rng: random.Random) -> str:
    """Every number of the answer (``numbers``) changed to a wrong one."""
    out, at = [], 0
    for m in numbers(answer):
        out += [answer[at:m.start()], wrong_number(m.group(0), rng)]
        at = m.end()
    return "".join(out) + answer[at:]


def _typeset(text: str, rng: random.Random) -> str:
    """Typographic characters where a word processor or a web page would have them: curly apostrophes and
    quotes, en dashes, ellipses, and a non-breaking space for about one space in six."""
    text = re.sub(r"(\w)'(\w)", "\\1\u2019\\2", text)
    text = re.sub(r'"([^"]*)"', "\u201c\\1\u201d", text)
    text = text.replace(" - ", " \u2013 ").replace("...", "\u2026")
    return "".join("\u00a0" if c == " " and rng.random() < 1 / 6 else c for c in text)


def _as_cp1252(data: bytes) -> str:
    """Bytes read as cp1252, with latin-1 for the five bytes cp1252 leaves undefined."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in data)


def mojibake(answer: str, rng: random.Random) -> str:
    """The typeset answer's UTF-8 bytes read as cp1252, and 1-3 stray control characters. Always differs
    from the answer: an answer with no space and no typographic character still gets its control characters."""
    typeset = _typeset(answer, rng)
    if typeset.isascii() and " " in typeset:  # at least one broken character besides the control ones
        spaces = [i for i, c in enumerate(typeset) if c == " "]
        at = rng.choice(spaces)
        typeset = typeset[:at] + "\u00a0" + typeset[at + 1:]
    broken = list(_as_cp1252(typeset.encode("utf-8")))
    for _ in range(rng.randint(1, 3)):
        broken.insert(rng.randrange(len(broken) + 1), rng.choice(CONTROL))
    return "".join(broken)


def low_effort(rng: random.Random) -> str:
    return rng.choice(LOW_EFFORT)


def template(rng: random.Random, words: list[str]) -> str:
    code = "".join(rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(7))
    return rng.choice(TEMPLATE).format(word=rng.choice(words).capitalize(), code=code)


def cutoff(answer: str, rng: random.Random) -> str:
    """The answer cut after 50-80% of its words, not at a sentence end (the cut lands mid-sentence: if the
    last kept word ends a sentence, one more word is kept, or one fewer). Line breaks before the cut stay."""
    spans = [m.span() for m in re.finditer(r"\S+", answer)]
    keep = max(1, min(len(spans) - 1, round(len(spans) * rng.uniform(0.5, 0.8))))
    ends_sentence = lambda k: answer[spans[k - 1][1] - 1] in ".!?:;"  # noqa: E731
    for k in (keep, keep + 1, keep - 1, keep + 2, keep - 2):
        if 1 <= k < len(spans) and not ends_sentence(k):
            keep = k
            break
    return answer[: spans[keep - 1][1]]


def near_copy(record: dict, rng: random.Random, words: list[str]) -> dict:
    """The record with one or two words of its answer replaced by other words of the pool (a word the
    answer does not have at that place); an answer of one word gets a word added."""
    spans = [m.span() for m in re.finditer(r"[A-Za-z]+", record["output"])]
    text = record["output"]
    if not spans:
        return {**record, "output": f"{text} {rng.choice(words)}"}
    for start, end in sorted(rng.sample(spans, min(len(spans), rng.randint(1, 2))), reverse=True):
        old = text[start:end]
        new = rng.choice([w for w in words if w.lower() != old.lower()] or [old + "s"])
        text = text[:start] + (new.capitalize() if old[0].isupper() else new) + text[end:]
    return {**record, "output": text}


# ---------------------------------------------------------------- the pool

def contaminate(records: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(the contaminated pool, one label per position). ``records``: Alpaca records (instruction, input,
    output). A label: {"position", "label": "clean" or a kind, "source": the position copied by swap and
    flood, else None}. round(fraction * n) records are contaminated; see the module's docstring."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n = len(records)
    order = random.Random(f"contaminate-{seed}").sample(range(n), n)
    n_junk = round(fraction * n)
    # Flood sources: the last positions of the walk, clean at every fraction this pool can take.
    sources = order[-FLOOD_SOURCES:] if n > 2 * FLOOD_SOURCES else order[-1:]
    words = sorted({w.lower() for r in records for w in re.findall(r"[A-Za-z]{4,}", r["output"])}) or ["word"]
    counts = dict.fromkeys(KINDS, 0)
    pool = [dict(r) for r in records]
    labels = [{"position": i, "label": CLEAN, "source": None} for i in range(n)]
    for p in order[:n_junk]:
        kind = min((k for k in KINDS if applicable(k, records[p])), key=lambda k: (counts[k], KINDS.index(k)))
        counts[kind] += 1
        rng = random.Random(f"contaminate-{seed}-{p}")
        source = None
        if kind == "swap":
            source = rng.choice([q for q in range(n) if q != p])
            pool[p]["output"] = records[source]["output"]
        elif kind == "flood":
            source = rng.choice(sources)
            pool[p] = near_copy(records[source], rng, words)
        else:
            answer = records[p]["output"]
            pool[p]["output"] = {"wrong-numbers": lambda: wrong_numbers(answer, rng),
                                 "mojibake": lambda: mojibake(answer, rng),
                                 "low-effort": lambda: low_effort(rng),
                                 "template": lambda: template(rng, words),
                                 "cutoff": lambda: cutoff(answer, rng)}[kind]()
        labels[p].update(label=kind, source=source)
    return pool, labels


def write(pool: list[dict], labels: list[dict], out: Path) -> Path:
    """OUT (the pool, a JSON array) and OUT's labels beside it (``labels_path``); returns the labels' path."""
    out.write_text(json.dumps(pool, ensure_ascii=False, indent=1), encoding="utf-8")
    path = labels_path(out)
    path.write_text("".join(json.dumps(label) + "\n" for label in labels), encoding="utf-8")
    return path


def labels_path(pool_path: Path) -> Path:
    return pool_path.with_suffix(".labels.jsonl")


def read_labels(pool_path: Path) -> list[str]:
    """The label of each position of a contaminated pool, in order."""
    rows = [json.loads(x) for x in labels_path(pool_path).read_text(encoding="utf-8").splitlines()]
    assert [r["position"] for r in rows] == list(range(len(rows))), "labels out of order"
    return [r["label"] for r in rows]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pool", type=Path, help="an Alpaca JSON array (instruction, input, output)")
    p.add_argument("--fraction", type=float, required=True, help="share of records replaced, in [0, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    records = json.loads(args.pool.read_text(encoding="utf-8"))
    pool, labels = contaminate(records, args.fraction, args.seed)
    path = write(pool, labels, args.out)
    kinds = {k: sum(lab["label"] == k for lab in labels) for k in (CLEAN, *KINDS)}
    print(f"{args.out}: {len(pool)} records, {kinds}; labels: {path}")


if __name__ == "__main__":
    main()
