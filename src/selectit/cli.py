"""Command line (SPEC 3): thin, it parses flags and calls the library.

    selectit score INPUT --out DIR [--model M ...] [--backend hf] [--prompts FILE] [--num-prompts P]
                   [--alpha A] [--batch-size B] [--max-length L] ...
    selectit select DIR (--fraction F | --top N | --threshold T) [--output FILE]
    selectit run INPUT --out DIR [--fraction F] ... [--no-report]
    selectit report DIR [DIR2 ...] [--output FILE] [--fraction F | --top N | --threshold T]
    selectit compare DIR DIR... [--fraction F | --top N | --threshold T] [--csv PATH]

Bad input or configuration: a one-line reason on stderr and exit code 2.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from selectit.errors import USER_ERRORS, ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Select instruction-tuning data with the model's own uncertainty (SelectIT).")

Input = Annotated[Path, typer.Argument(
    help="Dataset: Alpaca, ShareGPT or messages; .json, .jsonl, .parquet, .csv or a datasets save_to_disk folder.")]
Out = Annotated[Path, typer.Option("--out", help="Run directory for scores.jsonl and config.json.")]
Models = Annotated[Optional[list[str]], typer.Option(
    "--model", help="Model: hub id, local folder or .gguf file; repeat (or comma-separate) for several. "
    "Default: the embedded SmolLM2-135M-Instruct.")]
Backend = Annotated[str, typer.Option(
    help="Backend: hf (transformers), llamacpp (GGUF as shipped; pip install selectit\\[llamacpp]), "
    "vllm (GPUs; pip install selectit\\[vllm]) or fake (deterministic, for tests).")]
Prompts = Annotated[Optional[Path], typer.Option("--prompts", help="Rating prompts file, one per line.")]
NumPrompts = Annotated[int, typer.Option(help="P: how many rating prompts to use.")]
Scale = Annotated[int, typer.Option(help="S: ratings 1..S (2-9).")]
Alpha = Annotated[float, typer.Option(help="Penalty on the prompts' disagreement (std).")]
Mode = Annotated[str, typer.Option(help="paper (published formulas) or reference (the authors' scripts; implies "
    "--paper).")]
Template = Annotated[str, typer.Option(
    help="auto (chat if the model has a chat template, else plain), plain (published template) or chat.")]
Rating = Annotated[str, typer.Option(help="Token level: expected (expected rating) or argmax (the paper).")]
Calibrate = Annotated[bool, typer.Option(
    "--calibrate/--no-calibrate", help="Divide out the model's rating bias on content-free inputs (Zhao et al. 2021).")]
PromptWeights = Annotated[str, typer.Option(
    help="Sentence level: equal (the paper) or mass (prompts weighted by their label mass).")]
LikelihoodWeight = Annotated[float, typer.Option(
    help="Add this many rating points per nat of the model's likelihood of the response (fluency + relevance "
    "to the instruction); 0: the paper. 2 more forward passes per record (any value > 0).")]
Paper = Annotated[bool, typer.Option(
    "--paper", help="The published method: --template plain --rating argmax --likelihood-weight 0 "
    "(no calibration, equal prompt weights).")]
BatchSize = Annotated[int, typer.Option(help="Most prompts per forward pass.")]
BatchTokens = Annotated[Optional[int], typer.Option(
    help="Most padded tokens per forward pass; batches then adapt to prompt length.")]
Layout = Annotated[str, typer.Option(help="prompt-first (published) or record-first (faster; changes the prompt).")]
PrefixCache = Annotated[bool, typer.Option("--prefix-cache/--no-prefix-cache",
                                          help="Compute the shared prompt prefix once (same scores, less work).")]
MaxLength = Annotated[Optional[int], typer.Option(help="Longest prompt in tokens (default: the model's).")]
Overlong = Annotated[str, typer.Option(help="Prompts over --max-length: truncate (flagged) or error.")]
Dtype = Annotated[str, typer.Option(help="float32 (exact), bfloat16 or float16.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")]
TensorParallel = Annotated[int, typer.Option(help="GPUs to split one model over (--backend vllm).")]
Weights = Annotated[Optional[str], typer.Option(
    "--model-weights", help="Comma-separated weight per model (default: parameter counts).")]
Format = Annotated[Optional[str], typer.Option("--format", help="alpaca, sharegpt or messages (default: detected).")]
Container = Annotated[Optional[str], typer.Option(
    "--container", help="json, jsonl, parquet, csv or hf (a datasets folder) (default: from the name).")]
ChunkSize = Annotated[int, typer.Option(help="Records read and scored together (memory holds one chunk).")]
Runner = Annotated[str, typer.Option(help="local (this process) or ray (Ray Data; pip install selectit\\[ray]).")]
RayAddress = Annotated[Optional[str], typer.Option(help="Ray cluster to join (default: start a local one).")]
Workers = Annotated[Optional[int], typer.Option(help="Ray scorer actors, one model each (default 2).")]
Trust = Annotated[bool, typer.Option("--trust-remote-code", help="Let model repositories run their own code.")]
Store = Annotated[Optional[Path], typer.Option(
    "--store", help="Score store (SQLite) to resume from and add to (default: DIR/store.sqlite).")]
SkipBad = Annotated[bool, typer.Option(
    "--skip-bad", help="Leave out records that cannot be read; list them in DIR/rejects.jsonl.")]
Pickle = Annotated[bool, typer.Option("--allow-pickle", help="Allow PyTorch .bin (pickle) weights.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
Fraction = Annotated[Optional[float], typer.Option(help="Keep this fraction of records, in (0, 1].")]
Top = Annotated[Optional[int], typer.Option(help="Keep the N best records.")]
Threshold = Annotated[Optional[float], typer.Option(help="Keep records scoring at least T.")]
Output = Annotated[Optional[Path], typer.Option("--output", help="Selected records (default: DIR/selected.<ext>).")]
Method = Annotated[str, typer.Option(
    help="selectit (full method), token, sentence, model (one level), or a baseline: random, length, "
    "perplexity, ifd.")]
Seed = Annotated[int, typer.Option(help="Seed of --method random.")]
KeepOrder = Annotated[bool, typer.Option("--keep-order", help="Write the selection in input order, not best first.")]
Report = Annotated[bool, typer.Option("--report/--no-report", help="Write DIR/report.html at the end.")]


def _user_errors(fn):
    """Errors the user can fix become one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            typer.echo(f"selectit: error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("selectit: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _models(values: list[str] | None) -> tuple[str | None, ...]:
    if not values:
        return (None,)
    return tuple(m.strip() for v in values for m in v.split(",") if m.strip())


def _weights(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        raise ConfigError(f"--model-weights must be comma-separated numbers, got {text!r}") from None


def _config(model, backend, prompts, num_prompts, scale, alpha, mode, template, batch_size, max_length,
            overlong, dtype, device, model_weights, trust_remote_code, layout, batch_tokens, prefix_cache,
            allow_pickle, rating, calibrate, prompt_weights, tensor_parallel_size, chunk_size, method, seed,
            likelihood_weight, paper, typed=()):
    """The ScoringConfig of the command's flags; ``typed``: the flags the user typed (not left at their default)."""
    from selectit.config import PAPER, ScoringConfig
    from selectit.prompts import choose_prompts, read_prompts

    if paper or mode == "reference":  # the published method; a flag typed with it that says otherwise clashes
        values = {"template": template, "rating": rating, "calibrate": calibrate, "prompt_weights": prompt_weights,
                  "likelihood_weight": likelihood_weight}
        clash = [k for k in values if k in typed and values[k] != PAPER[k]]
        if clash:
            flags = ", ".join(f"--{k.replace('_', '-')} {values[k]}" for k in clash)
            why = "--paper uses" if paper else "--mode reference (the authors' scripts) uses"
            raise ConfigError(f"{why} the published method; drop {flags}")
        template, rating, calibrate, prompt_weights, likelihood_weight = (PAPER[k] for k in values)

    config = ScoringConfig(
        models=_models(model), backend=backend, prompts_file=str(prompts) if prompts else None,
        num_prompts=num_prompts, scale=scale, alpha=alpha, mode=mode, template=template,
        batch_size=batch_size, max_length=max_length, overlong=overlong, dtype=dtype, device=device,
        model_weights=_weights(model_weights), trust_remote_code=trust_remote_code, layout=layout,
        batch_tokens=batch_tokens, prefix_cache=prefix_cache, allow_pickle=allow_pickle, rating=rating,
        calibrate=calibrate, prompt_weights=prompt_weights, tensor_parallel_size=tensor_parallel_size,
        chunk_size=chunk_size, method=method, seed=seed, likelihood_weight=likelihood_weight,
    )
    choose_prompts(read_prompts(config.prompts_file), config.num_prompts, config.scale)  # fail before loading
    return config


_CONFIG_FLAGS = ("model", "backend", "prompts", "num_prompts", "scale", "alpha", "mode", "template", "batch_size",
                 "max_length", "overlong", "dtype", "device", "model_weights", "trust_remote_code", "layout",
                 "batch_tokens", "prefix_cache", "allow_pickle", "rating", "calibrate", "prompt_weights",
                 "tensor_parallel_size", "chunk_size", "method", "seed", "likelihood_weight", "paper")


def _score(ctx, input, out, fmt, quiet, store, skip_bad, container, runner, ray_address, workers, **args):
    """Score with the flags of `score` or `run` (``args``: the command's own arguments)."""
    from selectit.pipeline import score_file

    typed = {n for n in _CONFIG_FLAGS if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"}
    config = _config(**{name: args[name] for name in _CONFIG_FLAGS}, typed=typed)
    scored = score_file(input, out, config, schema=fmt, container=container, progress=not quiet, store=store,
                        skip_bad=skip_bad, runner=runner, ray_address=ray_address, workers=workers)
    dataset = scored.source
    if dataset.rejects:
        typer.echo(f"warning: left out {len(dataset.rejects)} bad record(s), listed in {Path(out) / 'rejects.jsonl'}",
                   err=True)
    if dataset.duplicate_ids:
        typer.echo(f"warning: {dataset.duplicate_ids} duplicate id(s) in {input}; scores.jsonl "
                   "keeps input order, so rows stay aligned with records", err=True)
    for run in scored.totals.models:
        mass = np.nan if run["mean_label_mass"] is None else run["mean_label_mass"]
        seconds = max(run["seconds"], 1e-9)
        typer.echo(f"{run['name']} ({run['template']} template): {len(dataset)} records x {len(scored.prompts)} "
                   f"prompts in {seconds:.1f}s "
                   f"({len(dataset) / seconds:.2f} rec/s, {run['prompt_tokens'] / seconds:.0f} tok/s); "
                   f"mean label mass {mass:.3f}; truncated {run['truncated_records']}", err=True)
        if mass < 0.1:
            typer.echo(f"warning: {run['name']} puts only {mass:.1%} of its next-token probability on the rating "
                       "labels; the template may not suit it (try --template chat)", err=True)
    if config.method != "selectit" and not scored.totals.models:
        typer.echo(f"{config.method}: {len(dataset)} records in {scored.info.get('seconds', 0):.1f}s", err=True)
    for run in scored.totals.models:
        if run["failed_prompts"]:
            typer.echo(f"warning: {run['name']} failed on {run['failed_prompts']} prompt(s) (see 'errors' in "
                       "scores.jsonl); run the same command again to retry them", err=True)
    unscored = scored.totals.unscored
    if unscored and config.method == "ifd":
        typer.echo(f"note: {unscored} record(s) have IFD > 1 (or no response token) and are never selected, "
                   "as in Li et al. (2024)", err=True)
    elif unscored:
        typer.echo(f"warning: {unscored} record(s) got no score (zero label mass); they are never selected", err=True)
    typer.echo(f"scores: {Path(out) / 'scores.jsonl'}", err=True)


def _select(run_dir, fraction, top, threshold, output, keep_order):
    from selectit.pipeline import select_run

    sel = select_run(run_dir, fraction=fraction, top=top, threshold=threshold, output=output,
                     keep_order=keep_order)
    typer.echo(f"selected {len(sel.indices)} of {sel.total} records -> {sel.output}", err=True)
    if len(sel.indices) == 0:
        typer.echo("warning: the selection is empty", err=True)


@app.command()
@_user_errors
def score(ctx: typer.Context, input: Input, out: Out, model: Models = None, backend: Backend = "hf",
          prompts: Prompts = None, num_prompts: NumPrompts = 5, scale: Scale = 5, alpha: Alpha = 0.2, mode: Mode = "paper",
          template: Template = "auto", batch_size: BatchSize = 16, max_length: MaxLength = None,
          overlong: Overlong = "truncate", dtype: Dtype = "float32", device: Device = "auto",
          model_weights: Weights = None, fmt: Format = None, trust_remote_code: Trust = False,
          quiet: Quiet = False, layout: Layout = "prompt-first", batch_tokens: BatchTokens = None,
          prefix_cache: PrefixCache = True, store: Store = None, skip_bad: SkipBad = False,
          allow_pickle: Pickle = False, rating: Rating = "expected", calibrate: Calibrate = False,
          prompt_weights: PromptWeights = "equal", tensor_parallel_size: TensorParallel = 1,
          container: Container = None, chunk_size: ChunkSize = 10_000, runner: Runner = "local",
          ray_address: RayAddress = None, workers: Workers = None, method: Method = "selectit",
          seed: Seed = 0, likelihood_weight: LikelihoodWeight = 1.0, paper: Paper = False) -> None:
    """Score every record of INPUT; write DIR/scores.jsonl and DIR/config.json."""
    _score(**locals())


@app.command()
@_user_errors
def select(run_dir: Annotated[Path, typer.Argument(help="A run directory written by `selectit score`.")],
           fraction: Fraction = None, top: Top = None, threshold: Threshold = None, output: Output = None,
           keep_order: KeepOrder = False) -> None:
    """Pick the best records of a scored run and write them in the input's own format."""
    _select(run_dir, fraction, top, threshold, output, keep_order)


@app.command()
@_user_errors
def run(ctx: typer.Context, input: Input, out: Out, fraction: Fraction = 0.2, top: Top = None,
        threshold: Threshold = None, output: Output = None, keep_order: KeepOrder = False, model: Models = None, backend: Backend = "hf",
        prompts: Prompts = None, num_prompts: NumPrompts = 5, scale: Scale = 5, alpha: Alpha = 0.2,
        mode: Mode = "paper", template: Template = "auto", batch_size: BatchSize = 16,
        max_length: MaxLength = None, overlong: Overlong = "truncate", dtype: Dtype = "float32",
        device: Device = "auto", model_weights: Weights = None, fmt: Format = None,
        trust_remote_code: Trust = False, quiet: Quiet = False, layout: Layout = "prompt-first",
        batch_tokens: BatchTokens = None, prefix_cache: PrefixCache = True, store: Store = None,
        skip_bad: SkipBad = False, allow_pickle: Pickle = False, rating: Rating = "expected",
        calibrate: Calibrate = False, prompt_weights: PromptWeights = "equal", report: Report = True,
        tensor_parallel_size: TensorParallel = 1, container: Container = None,
        chunk_size: ChunkSize = 10_000, runner: Runner = "local", ray_address: RayAddress = None,
        workers: Workers = None, method: Method = "selectit", seed: Seed = 0,
        likelihood_weight: LikelihoodWeight = 1.0, paper: Paper = False) -> None:
    """Score INPUT and select from it in one go (default: the best 20%); write DIR/report.html."""
    if top is not None or threshold is not None:
        fraction = None
    from selectit.pipeline import choose

    choose(np.zeros(1), fraction=fraction, top=top, threshold=threshold)  # fail before scoring
    flags = dict(locals())
    for name in ("fraction", "top", "threshold", "output", "keep_order", "choose", "report"):
        flags.pop(name)
    _score(**flags)
    _select(out, fraction, top, threshold, output, keep_order)
    if report:
        _report([out], None, None, None, None)


def _report(run_dirs, output, fraction, top, threshold):
    import time

    from selectit.report import write_report

    start = time.perf_counter()
    path = write_report(run_dirs, output=output, fraction=fraction, top=top, threshold=threshold)
    typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.1f}s)", err=True)


@app.command()
@_user_errors
def report(run_dirs: Annotated[list[Path], typer.Argument(help="Run directories; the first is described in full, "
                                                                "several are compared.")],
           output: Annotated[Optional[Path], typer.Option("--output", help="Report file (default: DIR/report.html).")]
           = None,
           fraction: Annotated[Optional[float], typer.Option(help="Show this selection instead of the run's last "
                                                             "(default: the last `select`, else 0.2).")] = None,
           top: Top = None, threshold: Threshold = None) -> None:
    """Write an HTML report of scored runs: one self-contained page that opens offline."""
    _report(run_dirs, output, fraction, top, threshold)


@app.command()
@_user_errors
def compare(run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories of the same input.")],
            fraction: Fraction = None, top: Top = None, threshold: Threshold = None,
            csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the table as CSV.")] = None) -> None:
    """Pairwise overlap of the selections (default: best 20%) and Spearman correlation of the scores."""
    from selectit.compare import compare as compare_runs
    from selectit.compare import table, write_csv
    from selectit.pipeline import choose

    if fraction is None and top is None and threshold is None:
        fraction = 0.2
    choose(np.zeros(1), fraction=fraction, top=top, threshold=threshold)  # fail before reading
    pairs = compare_runs(run_dirs, lambda s: choose(s, fraction=fraction, top=top, threshold=threshold))
    typer.echo(table(pairs))
    if csv is not None:
        write_csv(pairs, csv)
        typer.echo(f"csv: {csv}", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
