"""Score records: every record x every rating prompt x every model, then the three levels of the math.

Prompts are tokenized once, sorted by length and batched, so padding stays small; results are put
back by index, so a record's score never depends on its neighbours or on batch order.
"""

from __future__ import annotations

import gc
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from selectit import likelihood, reflection
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
# Content-free inputs for calibration (Zhao et al. 2021 use "N/A", "[MASK]" and "").
CONTENT_FREE = tuple(Record(id=f"content-free:{x}", instruction=x, response=x, raw={}) for x in ("N/A", "[MASK]", "..."))


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
    content_free: np.ndarray | None  # (P, S) mean label probabilities on content-free inputs (calibrate)
    tokens: int  # prompt tokens processed
    seconds: float
    errors: dict = field(default_factory=dict)  # (record, prompt) -> why the model failed on it
    losses: tuple[np.ndarray, np.ndarray] | None = None  # (given (n,), blank (n,)) with --likelihood-weight
    likelihood: np.ndarray | None = None  # (n,) reflection.likelihood_scores of those losses
    template: str = ""  # the template it was scored with ('auto' resolved)


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


@dataclass(frozen=True)
class ModelSetup:
    """What scoring with one loaded model needs besides the records; the same on every worker."""

    label_ids: list[int]
    max_length: int
    key: str  # the store's model key (see store.model_key)
    loss_key: str = ""  # the store's model key for response losses (see likelihood.loss_key)
    template: str = ""  # the template the model is scored with ('auto' resolved)


def setup_model(backend: Backend, probe: Record, prompts: Sequence[str], labels: Sequence[str],
                config: ScoringConfig) -> ModelSetup:
    """Resolve the rating-label token ids (in the template's position, on ``probe``, the first record).
    Fails here, before any scoring, when the backend cannot do what ``config`` asks."""
    if config.likelihood_weight > 0 and not likelihood.has_losses(backend):
        raise ConfigError(f"--likelihood-weight needs response losses; the {config.backend} backend has none: "
                          "use --backend hf, or --likelihood-weight 0")
    text = rating_text(prompts[0], probe, config.layout)
    label_ids = resolve_label_ids(lambda suffix: backend.encode(text, suffix), backend.decode, labels, context=text)
    max_length = min(config.max_length or backend.max_length, backend.max_length)
    key = model_key({**backend.fingerprint, "layout": config.layout, "max_length": max_length,
                     "overlong": config.overlong, "label_ids": label_ids})
    return ModelSetup(label_ids=label_ids, max_length=max_length, key=key,
                      loss_key=likelihood.loss_key(backend, config.max_length),
                      template=str(getattr(backend, "template", config.template)))


@dataclass
class Shard:
    """Label probabilities of a shard's k distinct (record, prompt) items. n records, P prompts, S labels.

    probs (k, S); keys[k]: (prompt key, record key); cut[k]: truncated; of (n, P): the item of each
    record and prompt; errors: item -> why the model failed on it (its probs are NaN, not stored)."""

    probs: np.ndarray
    keys: list[tuple[str, str]]
    cut: list[bool]
    of: np.ndarray
    errors: dict[int, str]
    tokens: int


def score_items(backend: Backend, setup: ModelSetup, records: Sequence[Record], prompts: Sequence[str],
                config: ScoringConfig, store: ScoreStore | None = None, progress: Progress | None = None) -> Shard:
    """Run one model over every (record, prompt) pair of ``records``; the unit of work of every runner.

    Identical (record, prompt) pairs are run once. With a ``store``, batches whose pairs are all
    stored are not run again and every computed batch is stored as one transaction, so a killed run
    resumes where it stopped; the batch plan depends only on the records, so a resumed run computes
    every batch exactly as an uninterrupted one would.
    """
    n = len(records)
    rkeys = [record_key(r) for r in records]
    items = _Items.build(backend, records, rkeys, prompts, config, setup.max_length)
    groups = _groups(items, rkeys, len(prompts), config.layout)
    keys, cut = items.keys, items.cut
    batches = plan_batches(items.ids, groups, batch_size=config.batch_size, batch_tokens=config.batch_tokens,
                           share_prefix=config.prefix_cache)
    stored = store.load(setup.key, keys) if store is not None else {}
    probs = np.empty((len(items.ids), len(setup.label_ids)))
    errors: dict[int, str] = {}
    per_item = n / len(items.ids)  # progress is counted in records
    for batch in batches:
        if all(keys[k] in stored for k in batch.rows):
            for k in batch.rows:
                probs[k] = stored[keys[k]][0]
        else:
            rows = [items.ids[k].tolist() for k in batch.rows]
            probs[batch.rows], failed = _label_probs(backend, rows, setup.label_ids, batch.shared)
            errors.update({batch.rows[r]: msg for r, msg in failed.items()})
            if store is not None:
                store.put(setup.key, [(*keys[k], probs[k], cut[k]) for r, k in enumerate(batch.rows) if r not in failed])
        if progress:
            progress(len(batch.rows) * per_item)
    return Shard(probs=probs, keys=keys, cut=cut, of=items.of, errors=errors, tokens=sum(len(x) for x in items.ids))


def model_run(name: str, num_parameters: int, label_ids: list[int], grid: np.ndarray, truncated: np.ndarray,
              errors: dict, config: ScoringConfig, *, tokens: int, seconds: float,
              content_free: np.ndarray | None = None, losses: tuple[np.ndarray, np.ndarray] | None = None,
              template: str = "") -> ModelRun:
    """The token and sentence levels of one model. grid: (n, P, S) label probabilities; truncated: (n,);
    content_free: (P, S) mean label probabilities on the content-free inputs (needed with calibrate);
    losses: (given (n,), blank (n,)) response losses (needed with a likelihood weight)."""
    lik = reflection.likelihood_scores(*losses) if losses is not None else None
    token, sentence = levels(grid, content_free, config, lik)
    return ModelRun(
        name=name, num_parameters=int(num_parameters), label_ids=label_ids, probs=grid,
        label_mass=reflection.label_mass(grid), token=token, sentence=sentence, truncated=truncated,
        content_free=content_free, tokens=tokens, seconds=seconds, errors=errors, losses=losses, likelihood=lik,
        template=template,
    )


def rate(
    backend: Backend, records: Sequence[Record], prompts: Sequence[str], labels: Sequence[str],
    config: ScoringConfig, progress: Progress | None = None, store: ScoreStore | None = None,
) -> ModelRun:
    """Run one model over every (record, prompt) pair (see :func:`score_items`), then apply the token
    and sentence levels. With ``config.calibrate`` the content-free inputs are scored along with them."""
    start = time.perf_counter()
    n = len(records)
    setup = setup_model(backend, records[0], prompts, labels, config)
    rating_share, loss_share = work_shares(len(prompts), config)
    shard = score_items(backend, setup, with_content_free(records, config), prompts, config, store,
                        scaled(progress, rating_share))
    losses = (likelihood.likelihood_losses(backend, records, config, store, scaled(progress, loss_share))
              if config.likelihood_weight > 0 else None)
    errors = shard.errors
    grid = shard.probs[shard.of]  # (n [+ content-free], P, S)
    return model_run(
        backend.name, backend.num_parameters, setup.label_ids, grid[:n],
        np.asarray(shard.cut, dtype=bool)[shard.of[:n]].any(axis=1),
        {(int(i), int(j)): errors[k] for (i, j), k in np.ndenumerate(shard.of[:n]) if k in errors} if errors else {},
        config, tokens=shard.tokens, seconds=time.perf_counter() - start,
        content_free=grid[n:].mean(axis=0) if config.calibrate else None, losses=losses, template=setup.template,
    )


def work_shares(P: int, config: ScoringConfig) -> tuple[float, float]:
    """The shares of a record's forward passes that rate it (P prompts) and that take its response
    losses (2 with a likelihood weight): progress bars count records, split this way."""
    extra = 2 if config.likelihood_weight > 0 else 0
    return P / (P + extra), extra / (P + extra)


def scaled(progress: Progress | None, share: float) -> Progress | None:
    return (lambda done: progress(done * share)) if progress else None


def with_content_free(records: Sequence[Record], config: ScoringConfig) -> Sequence[Record]:
    """``records``, plus the content-free inputs when ``config.calibrate`` (they are scored and stored
    like any record; in a file scored chunk by chunk, every chunk carries them and the store runs them once)."""
    return [*records, *CONTENT_FREE] if config.calibrate else records


def levels(probs: np.ndarray, content_free: np.ndarray | None, config: ScoringConfig,
           likelihood: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token and sentence level of one model as ``config`` asks: (token (n, P), sentence (n,)).

    probs: (n, P, S) raw label probabilities; content_free: (P, S), needed when config.calibrate;
    likelihood: (n,) reflection.likelihood_scores, needed when config.likelihood_weight > 0."""
    dist = reflection.calibrate(probs, content_free) if config.calibrate else probs
    if config.rating == "expected":
        token = reflection.expected_scores(dist)
    else:
        token = reflection.token_scores(dist, mode=config.mode)
    weights = reflection.label_mass(probs) if config.prompt_weights == "mass" else None
    sentence = reflection.sentence_scores(token, alpha=config.alpha, weights=weights)
    if config.likelihood_weight > 0:
        if likelihood is None:
            raise ValueError("a likelihood weight needs the records' likelihood scores")
        sentence = reflection.with_likelihood(sentence, likelihood, config.likelihood_weight)
    return token, sentence


@dataclass
class _Items:
    """The distinct (record, prompt) pairs to run, tokenized once. Duplicated records map to one item.

    ids[k]: token ids (compact arrays); keys[k]: (prompt key, record key); cut[k]: truncated; owner[k]: the first
    (record, prompt) it came from; of: (n, P) item of each record and prompt."""

    ids: list[array]
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
                    items.ids.append(array("i", ids))  # 4 bytes a token, not an 8-byte pointer to an int object
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


def unique_names(runs: Sequence[ModelRun]) -> None:
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
        backend = spec if backends is not None else load_model(config, spec)
        bar = _progress_bar(len(records), f"model {m + 1}/{len(specs)} {backend.name}") if progress else None
        try:
            runs.append(rate(backend, records, prompts, labels, config, bar.update if bar else None, store))
        finally:
            if bar:
                bar.close()
        del backend
        gc.collect()
    unique_names(runs)
    weights, final = combine(runs, config)
    return Scores(config=config, prompts=prompts, labels=labels, runs=runs, weights=weights, final=final,
                  ids=[r.id for r in records])


def load_model(config: ScoringConfig, spec: str | None) -> Backend:
    """Load one model of ``config`` with its backend and options."""
    return load_backend(
        config.backend, spec, template=config.template, dtype=config.dtype, device=config.device,
        max_length=config.max_length, trust_remote_code=config.trust_remote_code,
        prefix_cache=config.prefix_cache, allow_pickle=config.allow_pickle,
        tensor_parallel_size=config.tensor_parallel_size,
    )


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="rec", bar_format=(
        "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"
    ))
