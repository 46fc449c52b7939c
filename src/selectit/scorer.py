"""Score records: every record x every rating prompt x every model, then the three levels of the math.

Prompts are tokenized once, sorted by length and batched, so padding stays small; results are put
back by index, so a record's score never depends on its neighbours or on batch order.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from selectit import reflection
from selectit.backends import Backend, load_backend
from selectit.config import ScoringConfig
from selectit.errors import ConfigError
from selectit.labels import resolve_label_ids
from selectit.plan import plan_batches
from selectit.prompts import choose_prompts, labels_for_scale, rating_text, read_prompts
from selectit.records import Record
from selectit.store import ScoreStore, model_key, prompt_key, record_key
from selectit.truncation import fit_prompt

Progress = Callable[[float], None]


@dataclass
class ModelRun:
    """One model's results. Shapes: n records, P prompts, S labels."""

    name: str
    num_parameters: int
    label_ids: list[int]
    probs: np.ndarray  # (n, P, S) raw label probabilities
    label_mass: np.ndarray  # (n, P)
    token: np.ndarray  # (n, P) token-level scores
    sentence: np.ndarray  # (n,) sentence-level scores
    truncated: np.ndarray  # (n,) bool: some prompt of this record was truncated
    tokens: int  # prompt tokens processed
    seconds: float
    errors: dict = field(default_factory=dict)  # (record, prompt) -> why the model failed on it


@dataclass
class Scores:
    """Everything scoring produced. ``final`` is (n,), in input order."""

    config: ScoringConfig
    prompts: list[str]
    labels: list[str]
    runs: list[ModelRun]
    weights: np.ndarray  # (M,)
    final: np.ndarray  # (n,)
    ids: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # column -> (n,) values a baseline writes to scores.jsonl
    info: dict = field(default_factory=dict)  # what a baseline reports in config.json ("method_info")


def rate(
    backend: Backend, records: Sequence[Record], prompts: Sequence[str], labels: Sequence[str],
    config: ScoringConfig, progress: Progress | None = None, store: ScoreStore | None = None,
) -> ModelRun:
    """Run one model over every (record, prompt) pair and apply the token and sentence levels.

    Identical (record, prompt) pairs are run once. With a ``store``, pairs already stored are not run
    again and every computed batch is stored as one transaction, so a killed run resumes where it
    stopped; the batch plan depends only on the data, so a resumed run computes every batch exactly
    as an uninterrupted one would.
    """
    start = time.perf_counter()
    probe = rating_text(prompts[0], records[0], config.layout)
    label_ids = resolve_label_ids(
        lambda suffix: backend.encode(probe, suffix), backend.decode, labels, context=probe
    )
    max_length = min(config.max_length or backend.max_length, backend.max_length)
    n, P = len(records), len(prompts)
    rkeys = [record_key(r) for r in records]
    items = _Items.build(backend, records, rkeys, prompts, config, max_length)
    groups = _groups(items, rkeys, P, config.layout)
    keys, cut = items.keys, items.cut
    batches = plan_batches(items.ids, groups, batch_size=config.batch_size, batch_tokens=config.batch_tokens,
                           share_prefix=config.prefix_cache)
    mkey = model_key({**backend.fingerprint, "layout": config.layout, "max_length": max_length,
                      "overlong": config.overlong, "label_ids": label_ids})
    stored = store.load(mkey, keys) if store is not None else {}
    probs = np.empty((len(items.ids), len(labels)))
    errors: dict[int, str] = {}
    per_item = n / len(items.ids)  # progress is counted in records
    for batch in batches:
        if all(keys[k] in stored for k in batch.rows):
            for k in batch.rows:
                probs[k] = stored[keys[k]][0]
        else:
            rows = [items.ids[k] for k in batch.rows]
            probs[batch.rows], failed = _label_probs(backend, rows, label_ids, batch.shared)
            errors.update({batch.rows[r]: msg for r, msg in failed.items()})
            if store is not None:
                store.put(mkey, [(*keys[k], probs[k], cut[k]) for r, k in enumerate(batch.rows) if r not in failed])
        if progress:
            progress(len(batch.rows) * per_item)
    grid = probs[items.of]  # (n, P, S)
    token = reflection.token_scores(grid, mode=config.mode)
    truncated = np.asarray(cut, dtype=bool)[items.of].any(axis=1)
    return ModelRun(
        name=backend.name, num_parameters=int(backend.num_parameters), label_ids=label_ids, probs=grid,
        label_mass=reflection.label_mass(grid), token=token,
        sentence=reflection.sentence_scores(token, alpha=config.alpha), truncated=truncated,
        tokens=sum(len(x) for x in items.ids), seconds=time.perf_counter() - start,
        errors={(int(i), int(j)): errors[k] for (i, j), k in np.ndenumerate(items.of) if k in errors} if errors else {},
    )


@dataclass
class _Items:
    """The distinct (record, prompt) pairs to run, tokenized once. Duplicated records map to one item.

    ids[k]: token ids; keys[k]: (prompt key, record key); cut[k]: truncated; owner[k]: the first
    (record, prompt) it came from; of: (n, P) item of each record and prompt."""

    ids: list[list[int]]
    keys: list[tuple[str, str]]
    cut: list[bool]
    owner: list[tuple[int, int]]
    of: np.ndarray

    @classmethod
    def build(cls, backend: Backend, records: Sequence[Record], rkeys: Sequence[str], prompts: Sequence[str],
              config: ScoringConfig, max_length: int) -> _Items:
        pkeys = [prompt_key(p) for p in prompts]
        items = cls(ids=[], keys=[], cut=[], owner=[], of=np.empty((len(records), len(prompts)), dtype=np.int64))
        slot: dict[tuple[str, str], int] = {}
        for i, (record, rkey) in enumerate(zip(records, rkeys)):
            for j, prompt in enumerate(prompts):
                key = (pkeys[j], rkey)
                if key not in slot:
                    ids, cut = fit_prompt(backend.encode, prompt, record, max_length, config.overlong, config.layout)
                    slot[key] = len(items.ids)
                    items.ids.append(ids)
                    items.keys.append(key)
                    items.cut.append(cut)
                    items.owner.append((i, j))
                items.of[i, j] = slot[key]
        return items


def _groups(items: _Items, rkeys: Sequence[str], P: int, layout: str) -> list[list[int]]:
    """Items that share a token prefix: one group per record (record-first) or per prompt."""
    if layout == "record-first":
        by: dict[str, list[int]] = {}
        for k, (i, _) in enumerate(items.owner):
            by.setdefault(rkeys[i], []).append(k)
        return list(by.values())
    return [[k for k, (_, j) in enumerate(items.owner) if j == jj] for jj in range(P)]


def _label_probs(backend: Backend, rows: list[list[int]], label_ids: list[int], shared: int
                 ) -> tuple[np.ndarray, dict[int, str]]:
    """backend.label_probs for one batch: (probs (B, S), {row: error}).

    Out of memory: the batch is split in halves and retried, never skipped. Any other failure: the
    rows are retried one by one, and a row that still fails gets NaN and its error, for that row alone
    (the published scripts skipped it, shifting every later score onto the wrong record).
    """
    try:
        return backend.label_probs(rows, label_ids, shared), {}
    except MemoryError:
        if len(rows) == 1:
            raise ConfigError(
                f"one prompt of {len(rows[0])} tokens does not fit in memory; lower --max-length, "
                "use --dtype bfloat16, or a smaller model"
            ) from None
        half = len(rows) // 2
        (a, ea), (b, eb) = (_label_probs(backend, rows[:half], label_ids, shared),
                            _label_probs(backend, rows[half:], label_ids, shared))
        return np.concatenate([a, b]), {**ea, **{half + r: m for r, m in eb.items()}}
    except Exception as e:  # noqa: BLE001 - any backend failure is isolated to its rows
        if len(rows) > 1:
            out, errors = np.empty((len(rows), len(label_ids))), {}
            for r, row in enumerate(rows):
                out[r : r + 1], err = _label_probs(backend, [row], label_ids, shared)
                if err:
                    errors[r] = err[0]
            return out, errors
        return np.full((1, len(label_ids)), np.nan), {0: f"{type(e).__name__}: {e}"}


def combine(runs: Sequence[ModelRun], config: ScoringConfig) -> tuple[np.ndarray, np.ndarray]:
    """Model level: (weights (M,), final scores (n,))."""
    if config.model_weights is not None:
        weights = reflection.model_weights(config.model_weights)
    elif config.mode == "reference":
        try:
            weights = reflection.reference_model_weights(len(runs))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    else:
        weights = reflection.model_weights([r.num_parameters for r in runs])
    sentence = np.stack([r.sentence for r in runs], axis=1)  # (n, M)
    return weights, reflection.model_scores(sentence, weights)


def _unique_names(runs: Sequence[ModelRun]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
        if seen[r.name] > 1:
            r.name = f"{r.name}#{seen[r.name]}"


def score_records(
    records: Sequence[Record], config: ScoringConfig | None = None, *,
    backends: Sequence[Backend] | None = None, progress: bool = True, store: ScoreStore | None = None,
) -> Scores:
    """Score ``records`` with every model of ``config`` (or the given, already loaded ``backends``).

    Models are loaded one at a time and released before the next, so memory holds one model.
    ``store``: where label probabilities are kept and looked up (resume; see selectit.store).
    """
    config = config or ScoringConfig()
    if not records:
        raise ConfigError("no records to score")
    labels = labels_for_scale(config.scale)
    prompts = choose_prompts(read_prompts(config.prompts_file), config.num_prompts, config.scale)
    specs = backends if backends is not None else config.models
    runs = []
    for m, spec in enumerate(specs):
        backend = spec if backends is not None else load_backend(
            config.backend, spec, template=config.template, dtype=config.dtype, device=config.device,
            max_length=config.max_length, trust_remote_code=config.trust_remote_code,
            prefix_cache=config.prefix_cache, allow_pickle=config.allow_pickle,
        )
        bar = _progress_bar(len(records), f"model {m + 1}/{len(specs)} {backend.name}") if progress else None
        try:
            runs.append(rate(backend, records, prompts, labels, config, bar.update if bar else None, store))
        finally:
            if bar:
                bar.close()
        del backend
        gc.collect()
    _unique_names(runs)
    weights, final = combine(runs, config)
    return Scores(config=config, prompts=prompts, labels=labels, runs=runs, weights=weights, final=final,
                  ids=[r.id for r in records])


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rec", bar_format=(
        "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
    ))
