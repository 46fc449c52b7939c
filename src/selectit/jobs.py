"""The jobs behind the commands: score a file into a run directory, rescore a run without the model,
select from a run, and score in-memory records (the Python API). All of them go through the one engine
(selectit.engine): measure into the store, then a method maps the stored measurements to scores.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from selectit import engine, formats, rundir
from selectit.proxy import job as proxy_job
from selectit.selection import steps
from selectit.config import RunConfig, SelectOptions, flag_for, flat_options, section_of, spelled
from selectit.errors import ConfigError
from selectit.formats import MemorySource
from selectit.measures import MissingMeasurement, ModelInfo
from selectit.methods import METHODS, Method, configure, rates
from selectit.records import Record
from selectit.results import Scores, concat
from selectit.selection.policy import Policy
from selectit.store import MEMORY, ScoreStore

RESCORABLE = ("method", "num_prompts")  # sections (and fields) a rescore may change without the model


@dataclass
class Scored:
    """What a scoring job did: the input read, the models as measured, the figures of config.json."""

    source: formats.Source
    models: list[ModelInfo]
    totals: rundir.Totals
    prompts: list[str]
    method: Method
    config: dict = field(default_factory=dict)  # config.json as written
    removed: list = field(default_factory=list)  # files of an earlier input's run removed from the directory


def score_file(input_path: str | Path, out_dir: str | Path, config: RunConfig, method: Method, *,
               progress: bool = True) -> Scored:
    """Score every record of ``input_path`` with ``method``; write ``out_dir``/scores.jsonl and config.json.

    Streamed: the input is checked in one pass, measured chunk by chunk (``chunk_size`` records, on the
    configured runner) into the score store (default ``out_dir``/store.sqlite), and scores.jsonl is
    written in a last pass that reads the input again and maps each chunk's stored measurements to
    scores. Memory holds one chunk, never the file. Every computed batch is stored at once, so running
    the same command again after a kill continues where it stopped. With ``skip_bad``, records that
    cannot be read are left out and listed with their reason in ``out_dir``/rejects.jsonl."""
    with rundir.locked(out_dir, "selectit score") as out:
        start = time.perf_counter()
        opts = config.input
        source = formats.scan(input_path, schema=opts.format, container=opts.container, skip_bad=opts.skip_bad,
                              chunk_size=config.execution.chunk_size)
        rundir.write_rejects(out, source.rejects)
        store_path = rundir.store_path(out, config.execution.store)
        prompts = _prompts(config, method)
        previous = rundir.previous_input(out)
        if config.proxy.proxy:
            scored = _score_with_proxy(source, out, config, method, prompts, store_path, start, progress)
            scored.removed = rundir.forget_selection(out, previous)
            return scored
        models = engine.measure(source, config, method, prompts, store_path, progress=progress,
                                known=_known_models(out, config))
        db = ScoreStore(store_path)
        try:
            totals = rundir.write_scores(out, engine.score_chunks(source.chunks(), config, method, prompts, models, db))
        finally:
            db.close()
        record = _config_record(config, method, prompts, models, totals, source, time.perf_counter() - start,
                                extra={"measured_prompts": prompts})
        rundir.write_config(out, record)
        removed = rundir.forget_selection(out, previous)
    return Scored(source=source, models=models, totals=totals, prompts=prompts, method=method, config=record,
                  removed=removed)


def _score_with_proxy(source, out: Path, config: RunConfig, method: Method, prompts: list[str], store_path: Path,
                      start: float, progress: bool) -> Scored:
    """score_file with --proxy (selectit.proxy.job): the full method on a sample, predicted scores elsewhere.
    A refused proxy (held-out Spearman under the bound) writes no scores: nothing can be selected."""
    if not method.needs(config, prompts):
        raise ConfigError(f"--proxy predicts a model-based score; --method {method.name} needs no model and is "
                          "as fast without it: drop --proxy")
    run, sample = proxy_job.measure(source, config, method, prompts, store_path, progress=progress,
                                  known=_known_models(out, config))
    rundir.forget_selection(out)
    db = ScoreStore(store_path)
    try:
        totals = rundir.write_scores(out, proxy_job.score_chunks(source, sample, run, config, method, prompts, db))
    except proxy_job.ProxyRefused:
        (out / rundir.SCORES).unlink(missing_ok=True)  # no scores a later `select` could read as the method's
        raise
    finally:
        db.close()
    seconds = time.perf_counter() - start
    run.figures["seconds"]["total"] = round(seconds, 3)
    record = _config_record(config, method, prompts, run.models, totals, source, seconds,
                            extra={"measured_prompts": prompts, "proxy": run.figures,
                                   "proxy_models": [m.to_dict() for m in run.feature_models]})
    rundir.write_config(out, record)
    return Scored(source=source, models=run.models, totals=totals, prompts=prompts, method=method, config=record)


def _known_models(out: Path, config: RunConfig) -> list[ModelInfo] | None:
    """The models of the run already in ``out``, if it measured with the same model and measure
    configuration (so its store keys are this run's): a rerun that finds everything stored needs no model."""
    try:
        cfg = rundir.read_config(out)
    except ConfigError:
        return None
    now = config.to_dict()
    if any(cfg["config"].get(section) != now[section] for section in ("model", "measure")):
        return None
    models = [ModelInfo.from_dict(m) for m in cfg.get("models", [])]
    if [m.spec for m in models] != list(config.model.models):
        return None
    return models


def _prompts(config: RunConfig, method: Method) -> list[str]:
    """The rating prompts, where the method rates (else none: the prompts file is not even read)."""
    return config.measure.prompts(method.num_prompts) if rates(config, method) else []


def _config_record(config: RunConfig, method: Method, prompts: list[str], models: list[ModelInfo],
                   totals: rundir.Totals, source, seconds: float, extra: dict | None = None) -> dict:
    entries = []
    for i, info in enumerate(models):
        entry = info.to_dict()
        entry["tokens_per_second"] = round(info.tokens / info.seconds, 1) if info.seconds > 0 else None
        entries.append({**entry, **(totals.models[i] if i < len(totals.models) else {})})
    labels = config.measure.labels() if prompts else []
    extra = {"embeddings": engine.embeddings_record(config, method, prompts, models), **(extra or {})}
    return rundir.config_record(config=config.to_dict(), prompts=prompts, labels=labels, models=entries,
                                totals=totals, source=source, seconds=seconds, method=method.name, extra=extra)


def rescore_run(run_dir: str | Path, overrides: Mapping, *, given: Collection[str] | None = None,
                source_flag: str | None = None) -> Scored:
    """Recompute a run's scores.jsonl from its stored measurements with other method parameters
    (``overrides`` by field name: the method section, or fewer prompts), without loading a model. A
    measurement the new parameters need but the run did not compute is a one-line error naming it."""
    with rundir.locked(run_dir, "selectit rescore") as out:
        start = time.perf_counter()
        cfg = rundir.read_config(out)
        if (cfg.get("proxy") or {}).get("predicted"):
            raise ConfigError(f"{out} predicted {cfg['proxy']['predicted']} scores with --proxy, and a rescore "
                              "needs every record's measurements; score it again with the new options and --proxy "
                              "(the sample's measurements and the features are stored: only the fit runs again)")
        old = flat_options(cfg)
        for key in overrides:
            if section_of(key) != "method" and key not in RESCORABLE:
                raise ConfigError(f"{flag_for(key)} changes what the model measured; score again with it "
                                  "(`selectit score` reuses what is stored)")
        given = set(overrides) if given is None else set(given)
        config, method = configure({**old, **overrides}, given=given, source=source_flag)
        _check_same_measurements(config, cfg, method)
        stored = list(cfg.get("measured_prompts") or cfg.get("prompts") or [])
        count = config.measure.num_prompts if "num_prompts" in overrides else len(cfg.get("prompts") or [])
        if count is not None and count > len(stored):
            raise ConfigError(f"--num-prompts {count} asks for more prompts than the {len(stored)} this run rated")
        rating = rates(config, method)
        before = cfg.get("method") or "selectit"
        if ("num_prompts" not in overrides and rating and method.exact and method.name != before and before in METHODS
                and len(stored) == METHODS[before].num_prompts < method.num_prompts):
            # the run rated its own method's default P, fewer than the published method rates
            raise ConfigError(f"--method {method.name} rates with {method.num_prompts} prompts, this run rated "
                              f"{len(stored)}: score the input with it (`selectit score` reuses what is stored), "
                              f"or add --num-prompts {len(stored)}")
        prompts = stored[:count] if rating else []
        if prompts:  # config.json records the P it rescored with (the method's own P is what a new score uses)
            config = replace(config, measure=replace(config.measure, num_prompts=len(prompts)))
        models = [ModelInfo.from_dict(m) for m in cfg.get("models", [])]
        needs = method.needs(config, prompts)
        if needs and not models:
            raise MissingMeasurement(f"--method {method.name} needs a model's measurements; this run loaded no "
                                     f"model (it was --method {cfg.get('method')}): score the input with it")
        scores, digest = rundir.score_column(out)
        source = rundir.scored_input(out, cfg, len(scores), digest, "rescoring needs the records")
        store_path = rundir.store_path(out, config.execution.store)
        db = ScoreStore(store_path)
        try:
            try:
                totals = rundir.write_scores(out, engine.score_chunks(source.chunks(), config, method, prompts,
                                                                      models, db))
            except MissingMeasurement as e:
                raise MissingMeasurement(f"{e}; score it with `selectit score {source.path} --out {out} "
                                         f"--method {method.name} ...` (what is stored is reused)") from None
        finally:
            db.close()
        record = _config_record(config, method, prompts, models, totals, source, float(cfg.get("seconds") or 0.0),
                                extra={"measured_prompts": stored, **_embeddings_kept(cfg),
                                       "rescored": {"seconds": round(time.perf_counter() - start, 3),
                                                    "from_method": cfg.get("method")}})
        rundir.write_config(out, record)
        rundir.forget_selection(out)
    return Scored(source=source, models=models, totals=totals, prompts=prompts, method=method, config=record)


def _embeddings_kept(cfg: dict) -> dict:
    """A rescore keeps the embeddings the scoring made (the method it rescores with may measure others); a
    config.json from before the field gets them from the new configuration, as selection did then."""
    return {"embeddings": cfg["embeddings"]} if "embeddings" in cfg else {}


def _check_same_measurements(config: RunConfig, cfg: dict, method: Method) -> None:
    """A rescore may not ask for measurements under another model or measure configuration (a method's
    preset can: --method paper rates with the plain template). A template is the same when every model
    was scored with it ('auto' resolved, as config.json records per model)."""
    run = cfg.get("config") or {}
    resolved = {m.get("template") for m in cfg.get("models", [])}
    for section in ("model", "measure"):
        before, now = run.get(section, {}), config.to_dict()[section]
        differ = [k for k in now if k != "num_prompts" and k in before and before[k] != now[k]
                  and not (k == "template" and resolved == {now[k]})]
        if differ:
            k = differ[0]
            raise ConfigError(f"--method {method.name} needs {spelled(k, now[k])}, this run measured with "
                              f"{spelled(k, before[k])}; score the input with it (`selectit score` reuses "
                              "what is stored)")


# ---------------------------------------------------------------- selection

@dataclass
class Selection:
    indices: np.ndarray  # positions in the input, best first
    scores: np.ndarray  # (n,) final scores of every record
    output: Path
    total: int
    steps: dict = field(default_factory=dict)  # what the selection steps did (selectit.selection.steps)


def select_run(run_dir: str | Path, *, fraction: float | None = None, top: int | None = None,
               threshold: float | None = None, output: str | Path | None = None,
               keep_order: bool = False, options: SelectOptions | None = None) -> Selection:
    """Pick records from a scored run and write them in the input's own format, unchanged.

    Written best first, or in input order with ``keep_order``. Default output: DIR/selected<ext>.
    ``options``: duplicates and diversity (selectit.selection.steps; default: exact copies are not selected).
    Streamed: only the score column is held ((n,) floats, and what the steps need); the input is read
    again to find copies and to write the chosen records (checking that its ids are those of
    scores.jsonl). The choice is recorded in DIR/selection.json (the report shows it).
    """
    rundir.check_scored(run_dir)
    with rundir.locked(run_dir, "selectit select", BUSY):  # not from scores another command is replacing
        cfg = rundir.read_config(run_dir)
        scores, digest = rundir.score_column(run_dir)
        policy = Policy(fraction, top, threshold)  # a bad policy fails before reading
        source = rundir.scored_input(run_dir, cfg, len(scores), digest, "cannot write the selection")
        chosen = steps.choose_run(source, cfg, scores, options or SelectOptions(), steps.store_path(run_dir, cfg),
                                  policy, Path(run_dir))
        indices = np.sort(chosen.indices) if keep_order else chosen.indices
        out = Path(output) if output else Path(run_dir) / f"selected{formats.selection_suffix(source)}"
        formats.write_selection(source, indices, out)
        policy = {"fraction": fraction, "top": top, "threshold": threshold, **asdict(options or SelectOptions())}
        rundir.write_selection_record(run_dir, policy, out, indices, chosen.info)
    return Selection(indices=indices, scores=scores, output=out, total=len(scores), steps=chosen.info)


BUSY = "wait for it to finish, then run this again"  # what select and report say to a directory in use


# ---------------------------------------------------------------- in memory (the Python API)

def score_records(records: Sequence[Record], config: RunConfig, method: Method, *, backends=None,
                  store: ScoreStore | None = None, progress: bool = False) -> Scores:
    """Scores of in-memory ``records`` (the Python API): the same engine as a file, with the given
    ``store`` (default: one in memory) and, optionally, already loaded ``backends`` (one per model)."""
    from selectit.runners.local import measure_with

    if not records:
        raise ConfigError("no records to score")
    source = MemorySource(records, config.execution.chunk_size)
    prompts = _prompts(config, method)
    db = store if store is not None else ScoreStore()
    try:
        pools = backends is None or all(hasattr(b, "pooled_losses") and hasattr(b, "pooled_label_probs")
                                        for b in backends)  # an API user's own backend may give no hidden states
        needs = engine.run_needs(config, method, prompts, embeds=pools)
        if backends is None:
            ray = config.execution.runner == "ray"
            if ray and str(db.path) == MEMORY:
                raise ConfigError("--runner ray needs a score store on disk: pass store=PATH")
            models = engine.measure(source, config, method, prompts, db.path if ray else db, progress=progress)
        else:
            for b in backends:
                check_backend(b)
                if config.measure.template not in ("auto", b.template):
                    raise ConfigError(f"backend {b.name!r} encodes with the {b.template} template, but the options ask "
                                      f"for --template {config.measure.template}: load it with that template")
            if method.models == "one" and len(backends) != 1:
                raise ConfigError(f"--method {method.name} uses one model; got {len(backends)}")
            models = [measure_with(b, b.name, source, config, needs, db, progress=progress,
                                   desc=f"model {m + 1}/{len(backends)}") for m, b in enumerate(backends)] if needs else []
            engine.unique_names(models)
        scores = concat(list(engine.score_chunks(source.chunks(), config, method, prompts, models, db)))
        for run, info in zip(scores.runs, models):  # what measuring cost, per model
            run.tokens, run.seconds = info.tokens, info.seconds
        return scores
    finally:
        if store is None:
            db.close()


def check_backend(backend) -> None:
    """Refuse, in one line, an object that does not implement the whole Backend protocol."""
    from selectit.backends.base import MEMBERS

    members = [n for n in MEMBERS if not hasattr(backend, n)]
    if members:
        raise ConfigError(f"backend {getattr(backend, 'name', backend)!r} does not implement the Backend protocol "
                          f"(selectit.backends.base.Backend): it lacks {', '.join(sorted(members))}")
