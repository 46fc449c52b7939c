"""Command line (the contract in README.md, "Command line"): thin, it parses flags and calls the library.

    selectit score INPUT --out DIR [options]            measure and score every record
    selectit select DIR (--fraction F | --top N | --threshold T) [--output FILE] [--dedup-threshold J] [--drop-junk] [--sample] [--length-neutral] [--diversity D]
    selectit run INPUT --out DIR [--fraction F] [options] [--no-report]
    selectit rescore DIR [method options]               new scores from the stored measurements, no model
    selectit report DIR [DIR2 ...] [--output FILE] [--fraction F | --top N | --threshold T]
    selectit compare DIR DIR... [--fraction F | --top N | --threshold T] [--csv PATH]

The scoring options are generated from the configuration's fields (selectit.config): one declaration
each, with its help, default and allowed values; a YAML file (or a finished run's config.json) can
give them too (``--config``), flags win over the file. Bad input or configuration: a one-line reason on
stderr and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from selectit.config import all_fields, flag_of, load_file, type_of
from selectit.errors import USER_ERRORS, ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Select instruction-tuning data with the model's own uncertainty (SelectIT).")


class Command(TyperCommand):
    """A command whose unknown-flag error suggests the flags it begins (``--dedup``: ``--dedup-threshold``)
    or, failing that, the nearest ones, instead of click's few look-alikes; and whose ``--help`` is listed
    in its Output panel when every other option has a panel (not alone in a panel of its own)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        panels = [getattr(p, "rich_help_panel", None) for p in self.params
                  if p.param_type_name == "option" and not getattr(p, "hidden", False)]
        if option is not None and panels and all(panels):
            option.rich_help_panel = "Output" if "Output" in panels else panels[0]
        return option

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except Exception as e:  # click's NoSuchOption (typer vendors its own click: matched by name)
            if type(e).__name__ != "NoSuchOption":
                raise
            import difflib

            flags = [o for p in self.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
            name = e.option_name.split("=")[0]
            e.possibilities = [o for o in flags if o.startswith(name)][:3] or \
                difflib.get_close_matches(name, flags, n=2) or None
            raise


Input = Annotated[Path, typer.Argument(
    help="Dataset: Alpaca, ShareGPT or messages; .json, .jsonl, .parquet, .csv or a datasets save_to_disk folder "
         "(a file: standard input, -, is not read; save it to a file first).")]
Out = Annotated[Path, typer.Option("--out", help="Run directory for scores.jsonl and config.json.",
                                   rich_help_panel="Output")]
RunDir = Annotated[Path, typer.Argument(help="A run directory written by `selectit score`.")]
Fraction = Annotated[Optional[float], typer.Option(help="Keep this fraction of records, in (0, 1].",
                                                   rich_help_panel="Selection")]
Top = Annotated[Optional[int], typer.Option(help="Keep the N best records.", rich_help_panel="Selection")]
Threshold = Annotated[Optional[float], typer.Option(help="Keep records scoring at least T.",
                                                    rich_help_panel="Selection")]
Output = Annotated[Optional[Path], typer.Option("--output", help="Selected records (default: DIR/selected.<ext>).",
                                                rich_help_panel="Selection")]
KeepOrder = Annotated[bool, typer.Option("--keep-order/--no-keep-order", metavar="", help="Write the selection in input order, not best first.",
                                         rich_help_panel="Selection")]
Report = Annotated[bool, typer.Option("--report/--no-report", metavar="", help="Write DIR/report.html at the end.",
                                      rich_help_panel="Output")]
ConfigFile = Annotated[Optional[Path], typer.Option(
    "--config", help="Options from a YAML file or a finished run's config.json (flags win).", rich_help_panel="Input")]
Paper = Annotated[bool, typer.Option("--paper", metavar="", help="The published method: --method paper (plain template, argmax "
                                     "rating, no likelihood term).", rich_help_panel="Method")]
Mode = Annotated[Optional[str], typer.Option(hidden=True, help="Old spelling: --mode reference is --method reference.")]
Quiet = Annotated[bool, typer.Option("--quiet", metavar="", help="Print only errors.", rich_help_panel="Output")]
Verbose = Annotated[bool, typer.Option("--verbose", metavar="", help="Also show the libraries' own messages and warnings.",
                                       rich_help_panel="Output")]


def _user_errors(fn):
    """Errors the user can fix become one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            typer.echo(f"selectit: error: {e}", err=True)
            raise typer.Exit(2) from None
        except OSError as e:  # a path the user gave that cannot be read or written (nothing is left behind)
            where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
            typer.echo(f"selectit: error: {where + ': ' if where else ''}{e.strerror or e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("selectit: interrupted; run the same command again to resume (what was computed is "
                       "stored)", err=True)
            raise typer.Exit(130) from None

    return wrapper


# ---------------------------------------------------------------- options generated from the config fields

def _field_parameter(f) -> inspect.Parameter:
    """A command-line option for one configuration field. Every option defaults to None (not given), so
    a config file's value or the field's default applies; the help shows the field's default."""
    meta, flag = f.metadata, flag_of(f)
    help_text = meta["help"].replace("[", "\\[")  # rich markup: "selectit[ray]" is text, not a style
    if f.name == "method":
        from selectit.methods import METHODS

        help_text += f" One of: {', '.join(METHODS)}."
    shown = _shown_default(f.default)
    if shown:
        help_text += f" \\[default: {shown}]"
    common = {"help": help_text, "rich_help_panel": meta.get("panel") or None, "show_default": False}
    if meta.get("kind") == "models":
        annotation = Annotated[Optional[list[str]], typer.Option(flag, metavar="MODEL", **common)]
    elif isinstance(f.default, bool):  # an on-by-default switch can be turned off; the others only on
        spelled = f"{flag}/--no-{flag[2:]}" if f.default else flag
        annotation = Annotated[Optional[bool], typer.Option(spelled, metavar="", **common)]  # a switch takes no value
    else:
        kind = str if meta.get("kind") == "floats" else type_of(f, f.default)
        choices = "|".join(meta.get("choices") or ())
        shape = {"metavar": choices} if choices and len(choices) <= CHOICES_SHOWN else {}  # <str> says less
        annotation = Annotated[Optional[kind], typer.Option(flag, **shape, **common)]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


CHOICES_SHOWN = 24  # an option's choices up to this many characters are its placeholder in --help


def _shown_default(default) -> str:
    if default is None:
        return ""
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default)
    return str(default).lower() if isinstance(default, bool) else str(default)


FIELDS = {f.name: (section, f) for section, f in all_fields()}
SCORE_SECTIONS = ("model", "measure", "method", "execution", "input", "proxy")


def _command(fn, fixed: list[inspect.Parameter], names: list[str]):
    """``fn`` with a signature of its ``fixed`` parameters plus one option per configuration field in
    ``names`` (typer reads the signature)."""
    params = [*fixed, *(_field_parameter(FIELDS[n][1]) for n in names)]

    @functools.wraps(fn)
    def command(**kwargs):
        return fn(**kwargs)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _param(name: str, annotation, default=inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _typed(kwargs: dict) -> dict:
    """The configuration options the user typed (None: not typed), as the config expects them."""
    out = {}
    for name, value in kwargs.items():
        if name not in FIELDS or value is None:
            continue
        if FIELDS[name][1].metadata.get("kind") == "models":
            value = tuple(m.strip() for v in value for m in v.split(",") if m.strip())
        out[name] = value
    return out


def _resolve(kwargs: dict, config_file: Path | None, paper: bool, mode: str | None, base: dict | None = None):
    """(options, given, source of the preset): the config file's options under the typed ones; --paper
    and the old --mode reference pick their method."""
    options = {**(base or {}), **(load_file(config_file) if config_file else {})}
    typed = _typed(kwargs)
    given = set(options) - set(base or {}) | set(typed)
    options.update(typed)
    source = None
    for flag, method, wanted in (("--paper", "paper", paper),
                                 ("--mode reference (the authors' scripts)", "reference", mode == "reference")):
        if wanted:
            if "method" in typed and typed["method"] != method:
                raise ConfigError(f"{flag.split(' (')[0]} is --method {method}; drop --method {typed['method']}")
            options["method"], source = method, flag
            given.add("method")
    if mode not in (None, "paper", "reference"):
        raise ConfigError(f"--mode must be paper or reference, got {mode!r} (use --method)")
    return options, given, source


# ---------------------------------------------------------------- commands

def _score_job(input, out, config_file, paper, mode, quiet, verbose, kwargs):
    from selectit.jobs import score_file
    from selectit.methods import configure
    from selectit.noise import quiet_libraries

    quiet_libraries(verbose)
    options, given, source = _resolve(kwargs, config_file, paper, mode)
    config, method = configure(options, given=given, source=source)
    scored = score_file(input, out, config, method, progress=not quiet)
    if not quiet:
        _summary(scored, input, out)


def _summary(scored, input, out) -> None:
    """What the run did, on stderr: per model, load and measuring time, throughput of the work done."""
    from selectit.summary import summary_lines

    for line in summary_lines(scored, input, out):
        typer.echo(line, err=True)


def score_command(*, input, out, config_file=None, paper=False, mode=None, quiet=False, verbose=False, **kwargs):
    """Score every record of INPUT; write DIR/scores.jsonl and DIR/config.json."""
    _score_job(input, out, config_file, paper, mode, quiet, verbose, kwargs)


def run_command(*, input, out, fraction=None, top=None, threshold=None, output=None, keep_order=False, report=True,
                config_file=None, paper=False, mode=None, quiet=False, verbose=False, **kwargs):
    """Score INPUT and select from it in one go (default: the best 20%); write DIR/report.html."""
    from selectit.selection.policy import Policy

    if top is not None or threshold is not None:
        fraction = None
    elif fraction is None:
        fraction = 0.2
    Policy(fraction, top, threshold)  # a bad policy fails before scoring
    picked = {k: kwargs.pop(k) for k in SELECT_FIELDS}
    options = _select_options(picked, config_file)  # fail before scoring
    _score_job(input, out, config_file, paper, mode, quiet, verbose, kwargs)
    _select(out, fraction, top, threshold, output, keep_order, quiet, options)
    if report:
        _report([out], None, None, None, None, quiet)


def rescore_command(*, run_dir, paper=False, quiet=False, **kwargs):
    """Recompute DIR/scores.jsonl from the stored measurements with other method options (no model);
    says which measurement is missing, if one is."""
    from selectit.jobs import rescore_run

    options, given, source = _resolve(kwargs, None, paper, None)
    scored = rescore_run(run_dir, options, given=given, source_flag=source)
    if not quiet:
        seconds = scored.config.get("rescored", {}).get("seconds", 0.0)
        typer.echo(f"rescored {scored.totals.records} records with --method {scored.method.name} in {seconds:.1f}s "
                   f"-> {Path(run_dir) / 'scores.jsonl'}", err=True)
        if scored.totals.unscored:
            typer.echo(scored.method.unscored_note(scored.totals.unscored, scored.totals.unscored_why), err=True)


SCORE_FIXED = [
    _param("input", Input), _param("out", Out), _param("config_file", ConfigFile, None), _param("paper", Paper, False),
    _param("mode", Mode, None), _param("quiet", Quiet, False), _param("verbose", Verbose, False)]
SCORE_FIELDS = ["method", *(n for n, (s, _) in FIELDS.items() if s in SCORE_SECTIONS and n != "method")]
RUN_FIXED = [*SCORE_FIXED[:2], _param("fraction", Fraction, None), _param("top", Top, None),
             _param("threshold", Threshold, None), _param("output", Output, None),
             _param("keep_order", KeepOrder, False), _param("report", Report, True), *SCORE_FIXED[2:]]
RESCORE_FIELDS = [n for n, (s, _) in FIELDS.items() if s == "method"] + ["num_prompts"]
SELECT_FIELDS = [n for n, (s, _) in FIELDS.items() if s == "selection"]

app.command("score", cls=Command)(_user_errors(_command(score_command, SCORE_FIXED, SCORE_FIELDS)))
app.command("run", cls=Command)(_user_errors(_command(run_command, RUN_FIXED, SCORE_FIELDS + SELECT_FIELDS)))
app.command("rescore", cls=Command)(_user_errors(_command(
    rescore_command, [_param("run_dir", RunDir), _param("paper", Paper, False), _param("quiet", Quiet, False)],
    RESCORE_FIELDS)))


def _select_options(kwargs: dict, config_file: Path | None = None):
    """The selection options typed (over a config file's), checked."""
    from selectit.config import SelectOptions

    given = {k: v for k, v in (load_file(config_file) if config_file else {}).items() if k in SELECT_FIELDS}
    return SelectOptions(**{**given, **_typed(kwargs)})


def _select(run_dir, fraction, top, threshold, output, keep_order, quiet=False, options=None):
    from selectit.jobs import select_run

    sel = select_run(run_dir, fraction=fraction, top=top, threshold=threshold, output=output, keep_order=keep_order,
                     options=options)
    if not quiet:
        typer.echo(f"selected {len(sel.indices)} of {sel.total} records -> {sel.output}", err=True)
        for line in _step_lines(sel.steps):
            typer.echo(line, err=True)
    if len(sel.indices) == 0 and not quiet:
        typer.echo("warning: the selection is empty", err=True)


def _step_lines(info: dict) -> list[str]:
    """What the selection steps left out, in words."""
    lines = []
    if info.get("exact_duplicates"):
        lines.append(f"exact duplicates never selected: {info['exact_duplicates']} (--keep-duplicates keeps them)")
    j = info.get("junk")
    if j:
        lines.append(f"junk never selected: {j['records']} (no information {j['no_information']}, cut off "
                     f"{j['cut_off']}, broken text {j['broken_text']})")
    if info.get("near_duplicates"):
        lines.append(f"near duplicates never selected: {info['near_duplicates']} (only the best of each cluster "
                     "can be)")
    ln = info.get("length_neutral")
    if ln:
        lines.append(f"length-neutral: ranked by score minus the median score of its response-length bin ({ln['bins']} "
                     f"bin{'s' if ln['bins'] != 1 else ''})")
    if info.get("sample"):
        lines.append(f"sample: drawn at random (seed {info['sample']['seed']}) from the {info['sample']['from']} "
                     "records that could be selected")
    d = info.get("diversity")
    if d:
        lines.append(f"diversity {d['d']:g}: walked {d['walked']} records, passed over {d['too_similar']} too similar "
                     "to one already taken")
        if "budget" in d:
            meet = (f"--diversity {d['would_meet']:g} would fill it" if d["would_meet"] is not None else
                    f"no --diversity down to {d['d'] / 64:g} fills it")
            lines.append(f"warning: {d['walked'] - d['too_similar']} selected, not the {d['budget']} asked for: every "
                         f"other record is too similar to one already taken at --diversity {d['d']:g}; {meet}")
    return lines


def select_command(*, run_dir, fraction=None, top=None, threshold=None, output=None, keep_order=False, quiet=False,
                   **kwargs) -> None:
    """Pick the best records of a scored run and write them in the input's own format."""
    _select(run_dir, fraction, top, threshold, output, keep_order, quiet, _select_options(kwargs))


SELECT_FIXED = [_param("run_dir", RunDir), _param("fraction", Fraction, None), _param("top", Top, None),
                _param("threshold", Threshold, None), _param("output", Output, None),
                _param("keep_order", KeepOrder, False), _param("quiet", Quiet, False)]
app.command("select", cls=Command)(_user_errors(_command(select_command, SELECT_FIXED, SELECT_FIELDS)))


def _report(run_dirs, output, fraction, top, threshold, quiet=False):
    import time

    from selectit.report import write_report

    start = time.perf_counter()
    path = write_report(run_dirs, output=output, fraction=fraction, top=top, threshold=threshold)
    if not quiet:
        typer.echo(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.1f}s)",
                   err=True)


@app.command(cls=Command)
@_user_errors
def report(run_dirs: Annotated[list[Path], typer.Argument(help="Run directories; the first is described in full, "
                                                                "several are compared.")],
           output: Annotated[Optional[Path], typer.Option("--output", help="Report file (default: DIR/report.html).",
                                                                rich_help_panel="Output")]
           = None,
           fraction: Annotated[Optional[float], typer.Option(help="Show this selection instead of the run's last "
                                                             "(default: the last `select`, else 0.2).",
                                                             rich_help_panel="Selection")] = None,
           top: Top = None, threshold: Threshold = None, quiet: Quiet = False) -> None:
    """Write an HTML report of scored runs: one self-contained page that opens offline."""
    _report(run_dirs, output, fraction, top, threshold, quiet)


@app.command(cls=Command)
@_user_errors
def compare(run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories of the same input.")],
            fraction: Fraction = None, top: Top = None, threshold: Threshold = None,
            csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the table as CSV.",
                                                         rich_help_panel="Output")] = None) -> None:
    """Pairwise overlap of the selections (default: best 20%) and Spearman correlation of the scores."""
    from selectit.compare import compare as compare_runs
    from selectit.compare import table, write_csv
    from selectit.selection.policy import Policy

    if fraction is None and top is None and threshold is None:
        fraction = 0.2
    policy = Policy(fraction, top, threshold)  # a bad policy fails before reading
    pairs = compare_runs(run_dirs, policy.choose)
    typer.echo(table(pairs))
    if csv is not None:
        write_csv(pairs, csv)
        typer.echo(f"csv: {csv}", err=True)


def _version(value: bool) -> None:
    if value:
        from selectit.version import __version__

        typer.echo(f"selectit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                       help="Show the version and exit.")] = False) -> None:
    """Select instruction-tuning data with the model's own uncertainty (SelectIT)."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
