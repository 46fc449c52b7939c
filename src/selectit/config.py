"""The run configuration, split by what each part is (and so by what changing it costs).

- :class:`ModelOptions`: which models, and how they are loaded. Changing it needs the models again.
- :class:`MeasureSpec`: what the models are asked (rating prompts, template, layout, length limit):
  it keys the score store, so changing it needs the models again for what is not stored yet.
- :class:`MethodParams`: how stored measurements become one score per record (method, alpha, likelihood
  weight, ...): recomputable without any model (``selectit rescore``).
- :class:`Execution`: how the work runs (batching, chunks, runner, store); it never changes a score
  (beyond float rounding).
- :class:`InputOptions`: how the input file is read.
- :class:`SelectOptions`: what selection does about duplicates and diversity (``select`` and ``run``);
  never a score.

Each field is declared once, here, with its help, allowed values and default (:func:`opt`). The command
line is generated from these fields (selectit.cli), config files (YAML, or a finished run's config.json)
are read into them (:func:`load_file`), and a preset (a method's fixed settings, such as ``--paper``)
is applied in one place (:func:`build`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from selectit.errors import ConfigError, read_text
from selectit.formats import SCHEMAS
from selectit.formats.containers import CONTAINERS
from selectit.prompts import LAYOUTS, TEMPLATES, choose_prompts, labels_for_scale, read_prompts
from selectit.reflection import LIKELIHOOD_TERMS

# Each list of allowed values is written once: here, or by its owner below config (formats, prompts,
# reflection) and imported; an owner above config (backends, measures, the proxy) imports it from here.
BACKENDS = ("hf", "llamacpp", "vllm", "fake")
DTYPES = ("auto", "float32", "bfloat16", "float16")
RUNNERS = ("local", "ray")
OVERLONG = ("truncate", "error")
RATINGS = ("expected", "argmax")
PROMPT_WEIGHTS = ("equal", "mass")
FORMATS = SCHEMAS
EMBEDDINGS = ("auto", "on", "off")  # selectit.measures.embeddings
PROXY_FEATURES = ("ngrams", "token-embeddings", "early", "hidden", "early-likelihood", "likelihood")  # selectit.measures.features
PROXY_REGRESSORS = ("ridge", "lightgbm")  # selectit.proxy.fit
DEFAULT_NUM_PROMPTS = 4  # P of our methods: issue 27's frontier (bench/frontier.py) chose the first 4 of 5
PUBLISHED_NUM_PROMPTS = 5  # P of the published method (--paper, --method reference)
MAX_LENGTH = 4096  # tokens the model reads of a record by default; what it cuts: bench/length_cap.py
EMBEDDED = "embedded"  # --model value of the embedded SmolLM2-135M-Instruct (the default)
JUNK_MIN_INFORMATION = 0.05  # --drop-junk: nats per 100 response characters (selectit.selection.junk)
JUNK_MAX_END_LOSS = 8.0  # --drop-junk: nats, the end token's loss after the response


def opt(default: Any, help: str, *, choices: tuple | None = None, low: float | None = None,
        above: float | None = None, flag: str | None = None, panel: str = "", kind: str = "") -> Any:
    """A configuration field: its default, one line of help, what values it allows (``choices``;
    ``low``: at least; ``above``: greater than), its command-line flag (default ``--field-name``), the
    help panel it is listed in, and a ``kind`` for values the command line spells differently
    ("models": repeated or comma-separated; "floats": comma-separated numbers)."""
    meta = {"help": help, "choices": choices, "low": low, "above": above, "flag": flag, "panel": panel,
            "kind": kind}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed")
    return field(default=default, metadata=meta)


def flag_of(f) -> str:
    """The command-line flag of a configuration field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _check_field(f, value) -> Any:
    """``value`` converted to the field's type and checked against its allowed values."""
    meta, flag = f.metadata, flag_of(f)
    if value is None:
        if f.default is not None:
            raise ConfigError(f"{flag} needs a value")
        return None
    expected = f.default
    if meta.get("kind") == "models":
        if isinstance(value, str):
            value = [value]
        value = tuple(EMBEDDED if v in (None, "") else str(v) for v in value)
        if not value:
            raise ConfigError("need at least one model")
        return value
    if meta.get("kind") == "floats":
        if isinstance(value, str):
            value = value.split(",")
        try:
            value = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} must be comma-separated numbers, got {value!r}") from None
        if any(not v > 0 or not math.isfinite(v) for v in value):
            raise ConfigError(f"{flag} must all be > 0, got {list(value)}")
        return value
    value = _coerce(flag, value, type_of(f, expected))
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{flag} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta.get("low") is not None and not value >= meta["low"]:
        raise ConfigError(f"{flag} must be >= {meta['low']:g}, got {value}")
    if meta.get("above") is not None and not value > meta["above"]:
        raise ConfigError(f"{flag} must be > {meta['above']:g}, got {value}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{flag} must be a finite number, got {value}")
    return value


def type_of(f, default) -> type:
    """The Python type of a field's values (from its default, else its annotation)."""
    if default is not None:
        return type(default)
    text = str(f.type)
    return int if "int" in text else float if "float" in text else str


def _coerce(flag: str, value, kind: type):
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{flag} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{flag} must be a whole number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{flag} must be a whole number, got {value!r}") from None
        if number != int(number):
            raise ConfigError(f"{flag} must be a whole number, got {value!r}")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{flag} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} must be a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{flag} must be text, got {value!r}")
    return value


class _Section:
    """Checks every field against its declaration after construction."""

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _check_field(f, getattr(self, f.name)))


@dataclass(frozen=True, kw_only=True)
class ModelOptions(_Section):
    models: tuple[str, ...] = opt(
        (EMBEDDED,), "Model: hub id, local folder or .gguf file; repeat (or comma-separate) for several. "
        "Default: the embedded SmolLM2-135M-Instruct.", flag="--model", panel="Model", kind="models")
    """Models to rate with (hub id, local folder or .gguf file); "embedded" is the embedded SmolLM2-135M."""
    backend: str = opt("hf", "hf (transformers), llamacpp (GGUF as shipped), vllm (GPUs) or fake "
                       "(deterministic, for tests).", choices=BACKENDS, panel="Model")
    """Backend name; heavy libraries are imported only by the chosen one."""
    dtype: str = opt("auto", "auto (bfloat16 where the hardware runs it natively, else float32; --paper: float32), "
                     "float32 (exact), bfloat16 or float16.", choices=DTYPES, panel="Model")
    """Model weights and activations (the output head stays float32); auto: selectit.backends.precision."""
    device: str = opt("auto", "auto (cuda when available), cpu, cuda, cuda:N.", panel="Model")
    """Where the model runs."""
    tensor_parallel_size: int = opt(1, "GPUs to split one model over (--backend vllm).", low=1, panel="Model")
    """GPUs that one model is split over (vllm backend only), for models that do not fit one GPU."""
    trust_remote_code: bool = opt(False, "Let model repositories run their own code.", panel="Model")
    """Allow model repositories to run their own code when loading (off by default)."""
    allow_pickle: bool = opt(False, "Allow PyTorch .bin (pickle) weights.", panel="Model")
    """Allow PyTorch pickle weights, which can run code when loaded; by default only safetensors and GGUF."""


@dataclass(frozen=True, kw_only=True)
class MeasureSpec(_Section):
    prompts_file: str | None = opt(None, "Rating prompts file, one per line (default: the packaged prompts).",
                                   flag="--prompts", panel="Method")
    """File with one rating prompt per line; None uses the packaged default prompts."""
    num_prompts: int | None = opt(None, f"P: how many rating prompts (default {DEFAULT_NUM_PROMPTS}; --paper: "
                                  f"{PUBLISHED_NUM_PROMPTS}; or every prompt of a shorter --prompts file).", low=1,
                                  panel="Method")
    """P: the first P prompts of the file; None: the method's P (selectit.methods.configure resolves it and
    config.json records it), or all of a file with fewer."""
    scale: int = opt(5, "S: ratings 1..S (2-9).", low=2, panel="Method")
    """S: ratings are 1..S."""
    template: str = opt("auto", "auto (chat if the model has a chat template, else plain), plain (the published "
                        "template) or chat.", choices=TEMPLATES, panel="Method")
    """'plain': the published template byte for byte; 'chat': the model's chat template around it."""
    layout: str = opt("prompt-first", "prompt-first (published), record-first (the record, then each rating "
                      "prompt) or record-once (the record read once per model, its response loss from the same "
                      "pass, the rating prompts as later turns; fastest). Changes the scores.", choices=LAYOUTS, panel="Method")
    """'record-first' puts the record before the rating prompt, so one record's P prompts share its tokens;
    'record-once' also takes the likelihood term's loss given the instruction from the record's pass
    (selectit.measures.record_once)."""
    max_length: int = opt(MAX_LENGTH, "Longest prompt in tokens (never over the model's context).", low=16,
                          panel="Method")
    """Longest prompt (and response-loss sequence) in tokens, clamped to the model's context size."""
    overlong: str = opt("truncate", "Prompts over --max-length: truncate (flagged) or error.", choices=OVERLONG,
                        panel="Method")
    """'truncate' cuts the response's end, then the instruction's; 'error' stops the run."""
    embeddings: str = opt("auto", "Store each record's pooled hidden state (float16) for --diversity: auto (from a "
                          "pass the method runs anyway, hf and fake backends), on (a pass of its own if needed) or "
                          "off.", choices=EMBEDDINGS, panel="Method")
    """Record embeddings (selectit.measures.embeddings): 'auto' pools them in the response-loss pass, or the
    first rating prompt's pass (prompt-first layout), where the backend gives hidden states."""

    def __post_init__(self) -> None:
        super().__post_init__()
        labels_for_scale(self.scale)

    def all_prompts(self) -> list[str]:
        """Every prompt of the prompts file (or the packaged defaults)."""
        return read_prompts(self.prompts_file)

    def prompts(self, default: int = DEFAULT_NUM_PROMPTS) -> list[str]:
        """The P rating prompts, ``{max}`` filled in (P: ``num_prompts``, else ``default`` or all of a
        shorter file)."""
        found = self.all_prompts()
        count = self.num_prompts if self.num_prompts is not None else min(default, len(found))
        return choose_prompts(found, count, self.scale)

    def labels(self) -> list[str]:
        return labels_for_scale(self.scale)


@dataclass(frozen=True, kw_only=True)
class MethodParams(_Section):
    method: str = opt("selectit", "How records are scored (see the methods table in the README).",
                      panel="Method")
    """A method of selectit.methods; 'paper' and 'reference' fix the settings they stand for."""
    alpha: float = opt(0.2, "Penalty on the prompts' disagreement (std).", low=0, panel="Method")
    """Weight of the prompts' disagreement (std) in the sentence-level score; >= 0."""
    rating: str = opt("expected", "Token level: expected (expected rating) or argmax (the paper).",
                      choices=RATINGS, panel="Method")
    """'expected': sum_k k p'_k, in [1, S]; 'argmax': the top rating weighted by its margin (the paper)."""
    calibrate: bool = opt(False, "Divide out the model's rating bias on content-free inputs (Zhao et al. 2021).",
                          panel="Method")
    """Contextual calibration: 3 content-free inputs per rating prompt and model, not per record."""
    prompt_weights: str = opt("equal", "Sentence level: equal (the paper) or mass (prompts weighted by label mass).",
                              choices=PROMPT_WEIGHTS, panel="Method")
    """'mass' weights each prompt's token score by the label mass of that record, in the mean and std."""
    likelihood_weight: float = opt(2.0, "Rating points per unit of the likelihood term (--likelihood-term); 0: the "
                                   "paper. 2 more passes per record.", low=0, panel="Method")
    """Sentence level: add this many rating points per unit of the likelihood term (selectit.reflection:
    information_scores or likelihood_scores). 0 is the paper's method; 2 (default) measured best with the
    information term on bench/discrimination.py (issue 19). Costs 2 forward passes per record and model."""
    likelihood_term: str = opt("information", "information (what the instruction tells about the response, in "
                               "total) or per-token (fluency + relevance per token; selectit's default until 2026-11-28).",
                               choices=LIKELIHOOD_TERMS, panel="Method")
    """What the likelihood weight multiplies (selectit.reflection): 'information', (blank loss - given loss)
    x response characters / 200; 'per-token', fluency + relevance per token (-given + blank - given)."""
    model_weights: tuple[float, ...] | None = opt(None, "Comma-separated weight per model (default: parameter "
                                                  "counts).", panel="Method", kind="floats")
    """Override the model-level weights (one per model; normalised to sum 1)."""
    seed: int = opt(0, "Seed of --method random.", panel="Method")
    """Seed of the 'random' method."""


@dataclass(frozen=True, kw_only=True)
class Execution(_Section):
    batch_size: int = opt(16, "Most prompts per forward pass.", low=1, panel="Performance")
    """Most prompts per forward pass."""
    batch_tokens: int | None = opt(None, "Most padded tokens per forward pass; batches then adapt to length.",
                                   low=1, panel="Performance")
    """Most padded tokens per forward pass (rows x longest row); None: only batch_size limits."""
    prefix_cache: bool = opt(True, "Compute the shared prompt prefix once (same scores, less work).",
                             panel="Performance")
    """Compute the tokens a group of prompts shares once and reuse their keys/values."""
    chunk_size: int = opt(10_000, "Records read and scored together (memory holds one chunk).", low=1,
                          panel="Performance")
    """Records read, planned and scored together: memory holds one chunk, never the file."""
    runner: str = opt("local", "local (this process) or ray (Ray Data; pip install selectit[ray]).",
                      choices=RUNNERS, panel="Scale-out")
    """Where chunks are scored."""
    ray_address: str | None = opt(None, "Ray cluster to join (default: start a local one).", panel="Scale-out")
    """Address of a running Ray cluster (--runner ray)."""
    workers: int | None = opt(None, "Ray scorer actors, one model each (default 2).", low=1, panel="Scale-out")
    """Ray actors (--runner ray); None: 2."""
    store: str | None = opt(None, "Score store (SQLite) to resume from and add to (default: DIR/store.sqlite).",
                            panel="Output")
    """Path of the score store; None: the run directory's store.sqlite."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.runner == "local" and (self.ray_address is not None or self.workers is not None):
            raise ConfigError("--ray-address and --workers apply to --runner ray only")


@dataclass(frozen=True, kw_only=True)
class InputOptions(_Section):
    format: str | None = opt(None, "alpaca, sharegpt or messages (default: detected).", choices=FORMATS,
                             panel="Input")
    """Record schema; None: detected from the first record."""
    container: str | None = opt(None, "json, jsonl, parquet, csv or hf (a datasets folder) (default: from the "
                                "name).", choices=CONTAINERS, panel="Input")
    """File container; None: from the file name."""
    skip_bad: bool = opt(False, "Leave out records that cannot be read; list them in DIR/rejects.jsonl.",
                         panel="Input")
    """Leave out bad records (listed in rejects.jsonl) instead of stopping."""


@dataclass(frozen=True, kw_only=True)
class SelectOptions(_Section):
    keep_duplicates: bool = opt(False, "Let exact copies (same instruction, input and response up to case and "
                                "whitespace) be selected; by default only the first in input order can be.",
                                panel="Selection")
    """Turn off exact-duplicate removal (selectit.selection.dedup): by default a copy's later occurrences are
    never selected."""
    dedup_threshold: float | None = opt(None, "Near duplicates: records whose word 3-grams have Jaccard >= J "
                                        "(MinHash LSH) form clusters; only each cluster's best-scored record can be "
                                        "selected. pip install 'selectit[dedup]'.", above=0, panel="Selection")
    """J in (0, 1]: near-duplicate clusters (selectit.selection.dedup); None: off."""
    diversity: float | None = opt(None, "Walk records best first and take one only if its embedding's cosine "
                                  "similarity to every record taken is below 1 - D (DEITA). pip install "
                                  "'selectit[dedup]'.", above=0, panel="Selection")
    """D in (0, 1]: diversity-aware selection (selectit.selection.diversity); None: off. Needs the run's embeddings."""
    length_neutral: bool = opt(False, "Rank records by score minus the median score of records of like response "
                               "length (10 quantile bins), so the selection keeps the pool's range of answer lengths "
                               "rather than its longest answers.", panel="Selection")
    """Length-neutral ranking (selectit.selection.length); --threshold still compares the score itself."""
    drop_junk: bool = opt(False, "Never select a record the scoring model or the text says is broken: the "
                          "instruction tells the model nothing about the answer, the model would not end the "
                          "answer where it ends (cut off), or mojibake and control characters. Needs the "
                          "information term (the default method, or --method information).", panel="Selection")
    """The junk tests of selectit.selection.junk, before the ranking; selection.json counts each reason."""
    junk_min_information: float = opt(JUNK_MIN_INFORMATION, "--drop-junk: a record whose information term is "
                                      "below this (nats per 100 response characters) is junk.", panel="Selection")
    """selectit.selection.junk.junk_reasons' min_information."""
    junk_max_end_loss: float = opt(JUNK_MAX_END_LOSS, "--drop-junk: a record whose end-of-text loss after the "
                                   "response is above this (nats) is junk (cut off).", above=0, panel="Selection")
    """selectit.selection.junk.junk_reasons' max_end_loss."""
    sample: bool = opt(False, "Draw the --fraction or --top budget uniformly at random from the records that can "
                       "be selected (after the duplicate and junk steps) instead of taking the best-scored.",
                       panel="Selection")
    """A seeded uniform draw (selectit.selection.policy.sample); written best first."""
    sample_seed: int = opt(0, "Seed of --sample.", panel="Selection")
    """numpy.random.default_rng seed of the draw."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("dedup_threshold", "diversity"):
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ConfigError(f"{flag_for(name)} must be in (0, 1], got {value}")
        if self.sample and (self.diversity is not None or self.length_neutral):
            other = "--diversity" if self.diversity is not None else "--length-neutral"
            raise ConfigError(f"--sample draws at random and {other} ranks: use one of them")


@dataclass(frozen=True, kw_only=True)
class ProxyOptions(_Section):
    proxy: bool = opt(False, "Score a random sample in full, learn the full score from cheap features on it, and "
                      "predict the other records (for 100k+ records). pip install 'selectit[proxy]'.", panel="Proxy")
    """The learned proxy (selectit.proxy.fit, issue 18): scores.jsonl says which scores are full and which predicted."""
    proxy_sample: float | None = opt(None, "Records scored in full: a count N, or a fraction F < 1 (default 5%, at "
                                     "least 2,000).", above=0, panel="Proxy")
    """Sample size: >= 1 a count, < 1 a fraction; None: 5% with at least 2,000 (selectit.proxy.fit.sample_size)."""
    proxy_features: str = opt("likelihood", "What the proxy learns from: ngrams (no model), token-embeddings "
                              "(a table lookup), early (the first --proxy-layers layers), hidden (one pass), "
                              "early-likelihood (the likelihood term's 2 passes through the first "
                              "--proxy-layers layers) or likelihood (the likelihood term exactly: 2 passes).", choices=PROXY_FEATURES,
                              panel="Proxy")
    """The feature rung (selectit.measures.features); the default is the cheapest that held --proxy-min-spearman
    on bench/proxy.py."""
    proxy_layers: int = opt(4, "Layers of the early-exit passes (--proxy-features early, early-likelihood).", low=1,
                            panel="Proxy")
    """k: the early rung pools the hidden state after the model's first k layers; early-likelihood reads its
    two losses there (the logit lens)."""
    proxy_regressor: str = opt("ridge", "ridge (cross-validated strength) or lightgbm.", choices=PROXY_REGRESSORS,
                               panel="Proxy")
    """The regressor from features to the full score (selectit.proxy.fit.make_regressor)."""
    proxy_min_spearman: float = opt(0.8, "Refuse to select (exit 2) when the proxy's held-out Spearman is below "
                                    "this.", low=-1, panel="Proxy")
    """The bound on the held-out Spearman below which the run stops with an error instead of predicting."""
    proxy_seed: int = opt(0, "Seed of the sample and of the held-out split.", panel="Proxy")
    """Seed of the sample (the same records on a resumed run) and of the held-out split."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proxy_min_spearman > 1:
            raise ConfigError(f"--proxy-min-spearman must be in [-1, 1], got {self.proxy_min_spearman}")


SECTIONS: dict[str, type] = {"model": ModelOptions, "measure": MeasureSpec, "method": MethodParams,
                             "execution": Execution, "input": InputOptions, "selection": SelectOptions,
                             "proxy": ProxyOptions}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, by role (see the module docstring)."""

    model: ModelOptions = field(default_factory=ModelOptions)
    measure: MeasureSpec = field(default_factory=MeasureSpec)
    method: MethodParams = field(default_factory=MethodParams)
    execution: Execution = field(default_factory=Execution)
    input: InputOptions = field(default_factory=InputOptions)
    selection: SelectOptions = field(default_factory=SelectOptions)
    proxy: ProxyOptions = field(default_factory=ProxyOptions)

    def __post_init__(self) -> None:
        weights = self.method.model_weights
        if weights is not None and len(weights) != len(self.model.models):
            raise ConfigError(f"--model-weights gives {len(weights)} weight(s) for {len(self.model.models)} model(s)")

    def to_dict(self) -> dict:
        """Nested by section; a valid input of :func:`build` (lists for tuples)."""
        return json.loads(json.dumps({name: asdict(getattr(self, name)) for name in SECTIONS}))

    def with_options(self, **options) -> RunConfig:
        """A copy with some fields changed (by field name), checked like :func:`build`."""
        parts = {name: {} for name in SECTIONS}
        for key, value in options.items():
            parts[section_of(key)][key] = value
        return replace(self, **{n: replace(getattr(self, n), **v) for n, v in parts.items() if v})


def all_fields() -> list[tuple[str, Any]]:
    """(section name, dataclass field) of every configuration field, in declaration order."""
    return [(name, f) for name, cls in SECTIONS.items() for f in fields(cls)]


def section_of(name: str) -> str:
    for section, f in all_fields():
        if f.name == name:
            return section
    import difflib

    near = difflib.get_close_matches(str(name), [f.name for _, f in all_fields()], n=1)
    hint = f"did you mean {near[0]!r}?" if near else "the options are the flags' names with _ for -"
    raise ConfigError(f"unknown option {name!r}; {hint}")


def flat_options(data: Mapping) -> dict:
    """Options by field name from a config mapping: nested by section (as config.json writes it,
    possibly under a top-level "config" key) or flat; unknown names are errors."""
    if "config" in data and isinstance(data["config"], Mapping):  # a finished run's config.json
        data = data["config"]
    out = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for k, v in value.items():
                if section_of(k) != key:
                    raise ConfigError(f"option {k!r} belongs to section {section_of(k)!r}, not {key!r}")
                out[k] = v
        else:
            section_of(key)
            out[key] = value
    return out


def load_file(path: str | Path) -> dict:
    """Options from a YAML file or a finished run's config.json (see :func:`flat_options`)."""
    p = Path(path)
    text = read_text(p, "config file")
    try:
        import yaml

        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {p} must hold a mapping of options, got a {type(data).__name__}")
    return flat_options(data)


def apply_preset(options: dict, preset: Mapping, *, given: Collection[str], source: str) -> dict:
    """``options`` with the ``preset``'s values; an option the user ``given`` a different value is an
    error naming ``source`` (what set the preset, e.g. "--paper")."""
    clash = [k for k, v in preset.items() if k in given and k in options and options[k] != v]
    if clash:
        flags = ", ".join(spelled(k, options[k]) for k in clash)
        raise ConfigError(f"{source} uses the published method; drop {flags}")
    return {**options, **preset}


def _field(name: str):
    return next(f for _, f in all_fields() if f.name == name)


def flag_for(name: str) -> str:
    """The command-line flag of the field called ``name``."""
    section_of(name)  # an unknown name is a one-line error
    return flag_of(_field(name))


def spelled(name: str, value) -> str:
    """The command-line words that give the field called ``name`` this value: ``--dtype float16``, a switch
    ``--trust-remote-code``, a switch turned off ``--no-prefix-cache``."""
    flag = flag_for(name)
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {value}"


def build(options: Mapping | None = None, *, given: Collection[str] | None = None, preset: Mapping | None = None,
          preset_source: str = "") -> RunConfig:
    """A checked RunConfig from options by field name (unknown names are errors). ``given``: the options
    the user set (default: every key of ``options``), which a ``preset`` may not contradict."""
    options = dict(options or {})
    given = set(options) if given is None else set(given)
    if preset:
        options = apply_preset(options, preset, given=given, source=preset_source)
    parts: dict[str, dict] = {name: {} for name in SECTIONS}
    for key, value in options.items():
        parts[section_of(key)][key] = value
    return RunConfig(**{name: SECTIONS[name](**values) for name, values in parts.items()})



__all__ = ["BACKENDS", "RunConfig", "ModelOptions", "MeasureSpec", "MethodParams", "Execution", "InputOptions",
           "ProxyOptions", "SelectOptions", "SECTIONS", "all_fields", "apply_preset", "build", "flag_for", "flag_of", "spelled", "flat_options",
           "load_file",
           "opt", "section_of"]
