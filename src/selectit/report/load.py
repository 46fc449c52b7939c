"""Read a run directory into arrays for the report: scores, the selection and (when still there) the texts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selectit.errors import USER_ERRORS
from selectit.rundir import ids_digest, read_run, read_selection, scored_input
from selectit.selection.policy import choose
from selectit.selection.steps import load_embeddings, store_path

DEFAULT_FRACTION = 0.2


@dataclass
class RunView:
    """One scored run. n records, P prompts, S ratings, per model name."""

    path: Path
    config: dict  # config.json as written
    ids: list
    score: np.ndarray  # (n,) final score, NaN when unscored
    token: dict[str, np.ndarray]  # model -> (n, P)
    sentence: dict[str, np.ndarray]  # model -> (n,)
    mass: dict[str, np.ndarray]  # model -> (n, P)
    probs: dict[str, np.ndarray]  # model -> (n, P, S)
    truncated: np.ndarray  # (n,) bool: some model truncated this record
    failed: np.ndarray  # (n,) int: prompts some model failed on
    selected: np.ndarray  # input positions of the selection, best first
    policy: str  # how the selection was made, in words
    instructions: list[str] | None = None  # None when the input could not be read again
    responses: list[str] | None = None
    input_problem: str | None = None  # why the texts are missing
    models: list[str] = field(default_factory=list)
    steps: dict | None = None  # what the last `selectit select` excluded (selection.json "steps")
    embeddings: np.ndarray | None = None  # (n, H) float16 record embeddings, when the run stored them
    embedding_problem: str | None = None  # why they are not shown

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def selected_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[self.selected] = True
        return mask


def _floats(rows: list[dict], key: str, model: str) -> np.ndarray:
    return np.array([np.nan if r[key].get(model) is None else r[key][model] for r in rows], dtype=np.float64)


def load_run(run_dir: str | Path, *, fraction: float | None = None, top: int | None = None,
             threshold: float | None = None) -> RunView:
    """Read ``run_dir``. The selection: the given policy; else the last `selectit select` on this run
    (DIR/selection.json); else the best ``DEFAULT_FRACTION``. A missing or changed input is not an error:
    the report then says why and shows scores without texts."""
    path = Path(run_dir)
    cfg, rows = read_run(path)
    rated = list(rows[0]["token_scores"]) if rows else []  # the models that rated (a loss-only method has none)
    models = [m["name"] for m in cfg.get("models", []) if m["name"] in rated] or sorted(rated)
    score = np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=np.float64)
    view = RunView(
        path=path, config=cfg, ids=[r["id"] for r in rows], score=score, models=models,
        token={m: _floats(rows, "token_scores", m) for m in models},
        sentence={m: _floats(rows, "sentence_scores", m) for m in models},
        mass={m: _floats(rows, "label_mass", m) for m in models},
        probs={m: _floats(rows, "label_probs", m) for m in models if all("label_probs" in r for r in rows)},
        truncated=np.array([any(r.get("truncated", {}).values()) for r in rows], dtype=bool),
        failed=np.array([sum(len(e) for e in r.get("errors", {}).values()) for r in rows], dtype=np.int64),
        selected=np.zeros(0, dtype=np.int64), policy="",
    )
    for m in models:  # a run with no rows still needs 2-d arrays
        view.token[m] = view.token[m].reshape(len(rows), -1)
        view.mass[m] = view.mass[m].reshape(len(rows), -1)
    view.selected, view.policy, view.steps = _selection(path, score, fraction, top, threshold)
    try:
        source = scored_input(path, cfg, len(rows), ids_digest(r["id"] for r in rows),
                              "the report shows scores without the records' text")
        records = list(source.records())
        view.instructions = [r.instruction for r in records]
        view.responses = [r.response for r in records]
    except USER_ERRORS as e:
        view.input_problem = str(e)
        source = None
    if source is not None:
        try:
            view.embeddings = load_embeddings(source, cfg, store_path(path, cfg))
        except USER_ERRORS as e:
            view.embedding_problem = str(e)
    return view


def _selection(path: Path, score: np.ndarray, fraction, top, threshold) -> tuple[np.ndarray, str, dict | None]:
    """(input positions selected, the policy in words, what the selection steps did). A policy given
    here ranks by score alone (no duplicate or diversity step)."""
    if fraction is None and top is None and threshold is None:
        record = read_selection(path)
        if record is not None:
            indices = np.asarray(record.get("indices", []), dtype=np.int64)
            if indices.size == 0 or (indices.min() >= 0 and indices.max() < len(score)):
                steps = record.get("steps")
                return (indices, f"{_policy_words(steps is not None, **record.get('policy', {}))}, as the last "
                        "`selectit select` chose", steps)
        fraction = DEFAULT_FRACTION
    return (choose(score, fraction=fraction, top=top, threshold=threshold),
            _plain_policy(fraction=fraction, top=top, threshold=threshold), None)


def _policy_words(with_steps: bool, fraction=None, top=None, threshold=None, keep_duplicates=False,
                  dedup_threshold=None, diversity=None, length_neutral=False, drop_junk=False, sample=False,
                  sample_seed=0, **_thresholds) -> str:
    """The policy in words, and the selection steps when the selection ran them (``with_steps``);
    selection.json's other options (the junk thresholds) are in the step's own figures."""
    words = _plain_policy(fraction, top, threshold, sample=sample)
    steps = ([] if keep_duplicates else ["exact copies excluded"]) + \
        (["junk excluded"] if drop_junk else []) + \
        ([f"near duplicates (Jaccard >= {dedup_threshold:g}) collapsed"] if dedup_threshold else []) + \
        (["ranked for response length"] if length_neutral else []) + \
        ([f"diversity {diversity:g}"] if diversity else []) + \
        ([f"drawn at random (seed {sample_seed})"] if sample else [])
    return f"{words}; {', '.join(steps)}" if with_steps and steps else words


def _plain_policy(fraction=None, top=None, threshold=None, sample=False) -> str:
    if sample and fraction is not None:
        return f"a random {100 * fraction:g}% of the records that can be selected (--fraction {fraction:g} --sample)"
    if sample and top is not None:
        return f"{top} records drawn at random from those that can be selected (--top {top} --sample)"
    if fraction is not None:
        return f"the best {100 * fraction:g}% of records (--fraction {fraction:g})"
    if top is not None:
        return f"the best {top} records (--top {top})"
    if threshold is not None:
        return f"records scoring at least {threshold:g} (--threshold {threshold:g})"
    return "unknown policy"
