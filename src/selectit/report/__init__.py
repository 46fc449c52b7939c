"""The HTML report: ``write_report(DIR, ...)`` writes DIR/report.html, one self-contained page that opens
offline (plots, tables, the run's configuration; several runs are also compared).

Modules, one job each: ``load`` (run directory -> arrays), ``stats`` (pure statistics), ``figures``
(plotly figures), ``page`` (HTML, CSS and the table's script), ``build`` (puts the sections together).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from selectit.atomic import atomic_write
from selectit.errors import ConfigError
from selectit.rundir import REPORT, check_scored, reading


def write_report(run_dirs: str | Path | Sequence[str | Path], *, output: str | Path | None = None,
                 fraction: float | None = None, top: int | None = None, threshold: float | None = None) -> Path:
    """Write the report of ``run_dirs`` (the first is described in full; with several, their selections'
    overlap and score correlations are compared) to ``output`` (default: first DIR/report.html).

    The selection shown: the given policy (at most one of fraction, top, threshold); else each run's last
    `selectit select` (DIR/selection.json); else the best 20%. Returns the path written."""
    from selectit.report.build import render
    from selectit.report.load import load_run

    dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    if not dirs:
        raise ConfigError("give at least one run directory")
    if sum(x is not None for x in (fraction, top, threshold)) > 1:
        raise ConfigError("give at most one of --fraction, --top, --threshold")
    out = Path(output) if output else Path(dirs[0]) / REPORT
    if out.is_dir():
        raise ConfigError(f"--output {out} is a directory; give a file name (e.g. {out / REPORT})")
    for d in dirs:
        check_scored(d)
    with ExitStack() as held:  # not from scores another command is replacing (the lock names it)
        for d in dict.fromkeys(Path(d).resolve() for d in dirs):
            held.enter_context(reading(d, "selectit report", "wait for it to finish, then run this again"))
        runs = [load_run(d, fraction=fraction, top=top, threshold=threshold) for d in dirs]
        text = render(runs)
        atomic_write(out, lambda f: f.write(text))
    return out


__all__ = ["REPORT", "write_report"]
