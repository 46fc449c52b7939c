"""Compare scored runs of one input (``selectit compare DIR...``): do the methods pick the same records?

For every pair of runs: the size of each selection, their overlap (count, Jaccard = |A & B| / |A | B|),
and the Spearman rank correlation of the two score columns (over the records both scored; ties get
their average rank). Selections are made from each run's scores.jsonl with the same policy as
``selectit select`` (default: the best 20%), so runs are compared at equal size.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from selectit.atomic import atomic_write
from selectit.errors import ConfigError
from selectit.rundir import read_run
from selectit.report.stats import overlap, spearman


@dataclass
class Pair:
    a: str
    b: str
    selected_a: int
    selected_b: int
    overlap: int
    jaccard: float
    spearman: float
    scored_both: int


def load_runs(dirs: list[Path]) -> tuple[list[str], list[np.ndarray]]:
    """(labels, score arrays (n,)) of the run directories; they must have scored the same records."""
    if len(dirs) < 2:
        raise ConfigError("compare needs at least two run directories")
    labels, scores, first_ids, first_input = [], [], None, None
    for d in dirs:
        cfg, rows = read_run(d)
        ids = [r["id"] for r in rows]
        source = (cfg.get("input") or {}).get("sha256")
        if first_ids is None:
            first_ids, first_input = ids, source
        elif ids != first_ids or source != first_input:
            raise ConfigError(f"{d} did not score the same input as {dirs[0]}; compare runs of one input file")
        scores.append(np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=np.float64))
        labels.append(cfg.get("method") or "?")
    names = distinct_names(dirs)
    return [name if method in name else f"{name} ({method})" for name, method in zip(names, labels)], scores


def distinct_names(dirs: list[Path]) -> list[str]:
    """The shortest path suffix of each directory that tells it from the others ('a/out', 'b/out' for
    runs/a/out and runs/b/out; just the name where names differ); a path given twice keeps its whole spelling."""
    parts = [Path(d).resolve().parts for d in dirs]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(d) for d in dirs]


def compare(dirs: list[Path], choose) -> list[Pair]:
    """Every pair of runs. ``choose(scores (n,)) -> selected positions`` is the selection policy."""
    labels, scores = load_runs(dirs)
    chosen = [set(choose(s).tolist()) for s in scores]
    pairs = []
    for i, j in itertools.combinations(range(len(dirs)), 2):
        a, b = chosen[i], chosen[j]
        shared, jaccard = overlap(a, b)
        both = int((np.isfinite(scores[i]) & np.isfinite(scores[j])).sum())
        pairs.append(Pair(labels[i], labels[j], len(a), len(b), shared, jaccard, spearman(scores[i], scores[j]), both))
    return pairs


def table(pairs: list[Pair]) -> str:
    """A plain-text table, one line per pair."""
    head = ["run A", "run B", "sel A", "sel B", "overlap", "jaccard", "spearman", "scored both"]
    body = [[p.a, p.b, str(p.selected_a), str(p.selected_b), str(p.overlap), f"{p.jaccard:.3f}",
             f"{p.spearman:+.3f}", str(p.scored_both)] for p in pairs]
    widths = [max(len(r[k]) for r in [head, *body]) for k in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, body)])


def write_csv(pairs: list[Pair], path: Path) -> None:
    """One row per pair, the columns of :class:`Pair` (written atomically)."""

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow([fl.name for fl in fields(Pair)])
        w.writerows(astuple(p) for p in pairs)

    atomic_write(Path(path), write)
