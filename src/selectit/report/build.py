"""Assemble the report: numbers from ``stats``, plots from ``figures``, HTML from ``page``."""

from __future__ import annotations

import json
import math
import time

import numpy as np

from selectit.selection import diversity
from selectit.version import __version__
from selectit.report import figures, page, stats
from selectit.report.load import RunView

TOP_BOTTOM = 10  # records shown with their per-prompt ratings at each end
SNIPPET = 160  # characters of instruction and response kept in the all-records table (and searched)
TEXT_SHOWN = 400  # characters of instruction and response shown for the top and bottom records
CLUSTERS_SHOWN = 20  # duplicate clusters listed
MAP_POINTS = 3000  # records in the embedding map and the nearest-neighbour figures (a fixed-seed sample beyond)


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    return f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.1f}%"


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class _Figures:
    """Renders figures to HTML; plotly.js goes inline into the first one only."""

    def __init__(self):
        self.count = 0

    def __call__(self, fig) -> str:
        self.count += 1
        return '<div class="fig">' + fig.to_html(
            full_html=False, include_plotlyjs=self.count == 1, div_id=f"fig-{self.count}",
            config={"displaylogo": False, "responsive": True}) + "</div>"


class _Derived:
    """Per-record numbers the sections share. n records."""

    def __init__(self, run: RunView):
        self.sel = run.selected_mask  # (n,) bool
        self.mass = {m: stats.nanmean_rows(run.mass[m]) for m in run.models}  # model -> (n,)
        self.std = {m: stats.prompt_std(run.token[m]) for m in run.models}  # model -> (n,)
        all_mass = np.stack([run.mass[m] for m in run.models], axis=1).reshape(run.n, -1) if run.models \
            else np.full((run.n, 1), np.nan)
        self.low = stats.low_mass_records(all_mass)  # (n,) bool
        self.mean_mass = stats.nanmean_rows(all_mass)  # (n,)
        self.has_text = run.instructions is not None
        if self.has_text:
            self.ilen = stats.word_counts(run.instructions)
            self.rlen = stats.word_counts(run.responses)
            self.calc = np.array([stats.involves_calculation(i, r) for i, r in zip(run.instructions, run.responses)])
            self.types = [stats.task_type(i) for i in run.instructions]


def overview(run: RunView, d: _Derived) -> str:
    cfg = run.config
    params = (cfg.get("config") or {}).get("method", {})
    scored = int(np.isfinite(run.score).sum())
    seconds = float(cfg.get("seconds") or 0.0)
    tokens = sum(m.get("tokens") or 0 for m in cfg.get("models", []))
    measuring = sum(m.get("seconds") or 0.0 for m in cfg.get("models", []))  # model load excluded
    done = max((run.n - (m.get("stored") or 0) for m in cfg.get("models", [])), default=0)  # not found stored
    templates = ", ".join(dict.fromkeys(m.get("template") or "?" for m in cfg.get("models", []))) or "–"
    items = [
        ("records", _fmt(run.n)), ("scored", _fmt(scored)), ("selected", _fmt(len(run.selected))),
        ("prompts (P)", _fmt(len(cfg.get("prompts", [])))), ("alpha", f"{params.get('alpha', float('nan')):g}"),
        ("method / template", f"{cfg.get('method', '?')} / {templates}"),
        ("time taken", f"{seconds:.1f} s"),
        ("records / s (measuring)", _fmt(done / measuring, 2) if done and measuring > 0 else "–"),
        ("tokens / s (measuring)", _fmt(tokens / measuring, 0) if tokens and measuring > 0 else "–"),
        ("mean label mass", _fmt(float(np.nanmean(d.mean_mass)) if np.isfinite(d.mean_mass).any() else None, 3)),
        (f"low label mass (< {stats.LOW_MASS:g})", _fmt(int(d.low.sum()))),
        ("truncated records", _fmt(int(run.truncated.sum()))),
        ("failed prompts", _fmt(int(run.failed.sum()))),
    ]
    out = [page.cards(items), f'<p>Selection: <b>{page.esc(run.policy)}</b>.</p>']
    models = cfg.get("models", [])
    if models:
        out.append(page.table(
            ["model", "parameters", "weight", "load s", "measure s", "tokens", "mean label mass", "truncated",
             "failed prompts"],
            [[m["name"], _fmt(m.get("num_parameters")), _fmt(m.get("weight"), 3), _fmt(m.get("load_seconds"), 1),
              _fmt(m.get("seconds"), 1), _fmt(m.get("tokens")), _fmt(m.get("mean_label_mass"), 3),
              _fmt(m.get("truncated_records")), _fmt(m.get("failed_prompts"))] for m in models],
            numeric={1, 2, 3, 4, 5, 6, 7, 8}))
    info = cfg.get("input")
    if info:
        out.append(f'<p class="muted">Input: {page.esc(info.get("path"))} ({page.esc(info.get("format"))}, '
                   f'{page.esc(info.get("container"))}; sha256 {page.esc(str(info.get("sha256"))[:16])}…; '
                   f'{_fmt(info.get("rejected", 0))} rejected record(s))</p>')
    if run.input_problem:
        out.append(f'<div class="note"><b>The records\' text is not shown:</b> {page.esc(run.input_problem)}. '
                   "Scores, label mass and the selection below come from scores.jsonl alone.</div>")
    return "".join(out)


def prompts_section(run: RunView, d: _Derived) -> str:
    prompts = run.config.get("prompts", [])
    rows = []
    pmass = {m: stats.prompt_mass(run.mass[m]) for m in run.models}
    ptok = {m: stats.nanmean_rows(run.token[m].T) for m in run.models}
    for j, text in enumerate(prompts):
        cells = [f"P{j + 1}", page.esc(text)]
        for m in run.models:
            pm = pmass[m][j] if j < len(pmass[m]) else float("nan")
            flag = '<span class="pill low">low mass</span> ' if not pm >= stats.LOW_MASS else ""
            cells += [flag + _fmt(pm, 3), _fmt(ptok[m][j] if j < len(ptok[m]) else None, 3)]
        rows.append(cells)
    head = ["", "rating prompt"] + [h for m in run.models for h in (f"mean label mass: {m}", f"mean token score: {m}")]
    nums = set(range(2, len(head)))
    return page.table(head, rows, numeric=nums, raw=set(range(len(head))), wide={1})


def distributions(run: RunView, d: _Derived, fig: _Figures) -> str:
    labels = [f"P{j + 1}" for j in range(len(run.config.get("prompts", [])))]
    levels = {f"token: {m}": run.token[m] for m in run.models}
    levels.update({f"sentence: {m}": run.sentence[m] for m in run.models})
    levels["final (model level)"] = run.score
    first = fig(figures.level_histograms(levels))  # plotly.js goes into the first figure rendered: keep it first
    parts = [fig(figures.score_histogram(run.score, d.sel)), fig(figures.mass_histogram(d.mass, stats.LOW_MASS)),
             fig(figures.prompt_bars(labels, {m: stats.prompt_mass(run.mass[m]) for m in run.models},
                                     "Mean label mass per prompt", "label mass", stats.LOW_MASS)),
             fig(figures.std_histogram(d.std))]
    for m in list(run.probs)[:2]:
        parts.append(fig(figures.rating_bars(labels, stats.rating_counts(run.probs[m]), run.config.get("labels", []), m)))
    grid = '<div class="grid2">' + "".join(parts) + "</div>"
    low = int(d.low.sum())
    note = (f'<p class="warn">{low:,} record(s) have a mean label mass under {stats.LOW_MASS:g}: the model put '
            "little probability on any rating for them, so their scores rest on little evidence.</p>" if low else "")
    return first + grid + note


def selected_vs_all(run: RunView, d: _Derived, fig: _Figures) -> str:
    rows = [["final score", *(_fmt(v) for v in stats.share_selected(run.score, d.sel))],
            ["label mass (mean over prompts and models)", *(_fmt(v, 3) for v in stats.share_selected(d.mean_mass, d.sel))]]
    for m in run.models[:3]:
        rows.append([f"prompt disagreement (std): {m}", *(_fmt(v) for v in stats.share_selected(d.std[m], d.sel))])
    if not d.has_text:
        return page.table(["", "all", "selected", "not selected"], rows, numeric={1, 2, 3}) + \
            '<p class="muted">Lengths, calculation share and task types need the records\' text (see above).</p>'
    rows[:0] = [["instruction length (words)", *(_fmt(v, 1) for v in stats.share_selected(d.ilen, d.sel))],
                ["response length (words)", *(_fmt(v, 1) for v in stats.share_selected(d.rlen, d.sel))],
                ["involves calculation", *(_pct(v) for v in stats.share_selected(d.calc, d.sel))]]
    hover = [page.esc(_clip(f"{run.ids[i]}: {run.instructions[i]}", 80)) for i in range(run.n)]
    calc_rule = ("<p class=\"muted\">Involves calculation: an arithmetic expression between numbers (3 + 4, 12*7, "
                 "15%) in the instruction or response, or a math word (calculate, sum, average, how many, ...) with "
                 "a digit in the instruction. Task type: the instruction's first word (questions grouped). "
                 "Lengths: whitespace-separated words.</p>")
    return (page.table(["", "all", "selected", "not selected"], rows, numeric={1, 2, 3}) + calc_rule +
            '<div class="grid2">' + fig(figures.type_mix_bars(stats.type_mix(d.types, d.sel, top=20))) +
            fig(figures.score_vs_length(run.score, d.rlen.astype(np.float64), d.sel, hover)) + "</div>")


def duplicates_diversity(run: RunView, d: _Derived, fig: _Figures) -> str:
    """What the selection steps excluded (selection.json), the duplicate clusters, and the embeddings:
    a 2-D map and how far apart the selected records are."""
    out, steps = [], run.steps or {}
    if run.steps is not None:
        walk, junk = steps.get("diversity") or {}, steps.get("junk")
        out.append(page.cards([("exact copies excluded", _fmt(steps.get("exact_duplicates", 0))),
                               ("junk excluded", _fmt(junk["records"]) if junk else "off"),
                               ("near duplicates excluded", _fmt(steps.get("near_duplicates", 0))),
                               ("diversity D", f"{walk['d']:g}" if walk else "off"),
                               ("passed over as too similar", _fmt(walk.get("too_similar")) if walk else "–"),
                               *([("drawn at random from", _fmt(steps["sample"]["from"]))] if steps.get("sample") else [])]))
        if junk:
            out.append(f'<p class="muted">Junk (--drop-junk): {_fmt(junk["no_information"])} with no information '
                       f'(below {junk["min_information"]:g} nats per 100 characters), {_fmt(junk["cut_off"])} cut off '
                       f'(end-of-text loss above {junk["max_end_loss"]:g} nats), {_fmt(junk["broken_text"])} with '
                       "broken text (mojibake, control characters); a record may fail several.</p>")
        rows = []
        for c in steps.get("clusters", [])[:CLUSTERS_SHOWN]:
            kept = c.get("kept")
            examples = "<br>".join(
                f"{'<b>kept</b> ' if i == kept else ''}{page.esc(run.ids[i])}: "
                f"{page.esc(_clip(run.instructions[i], 90)) if d.has_text else ''}" for i in c["members"][:3])
            rows.append([_fmt(c["size"]), page.esc(run.ids[kept]) if kept is not None else "–", examples])
        if rows:
            out.append("<h3>Duplicate clusters collapsed, largest first</h3>" + page.table(
                ["records", "the one that can be selected", "examples"], rows, numeric={0}, raw={1, 2}, wide={2}))
        else:
            out.append('<p class="muted">No duplicates were found.</p>')
    else:
        out.append('<p class="muted">The selection shown did not run the duplicate and diversity steps (`selectit '
                   "select` runs them; a --fraction/--top/--threshold given to the report ranks by score alone).</p>")
    if run.embeddings is None:
        out.append(f'<p class="muted">No record embeddings: {page.esc(run.embedding_problem or "none stored")}.</p>')
        return "".join(out)
    rng = np.random.default_rng(0)
    pick = lambda idx: np.sort(rng.choice(idx, MAP_POINTS, replace=False)) if len(idx) > MAP_POINTS else idx  # noqa: E731
    every, chosen = pick(np.arange(run.n)), pick(np.flatnonzero(d.sel))
    near_all = 1 - diversity.nearest_similarity(run.embeddings, every)
    near_sel = 1 - diversity.nearest_similarity(run.embeddings, chosen)
    summary = lambda x: [_fmt(float(np.mean(x)) if len(x) else None),  # noqa: E731
                         _fmt(float(np.median(x)) if len(x) else None), _fmt(len(x))]
    out.append("<h3>How far apart</h3>" + page.table(
        ["records", "mean cosine distance to the nearest other record", "median", "records compared"],
        [["all", *summary(near_all)], ["selected", *summary(near_sel)]], numeric={1, 2, 3}))
    out.append(f'<p class="muted">Nearest neighbour within the same set (at most {MAP_POINTS:,} records each, a '
               "fixed-seed sample). Embeddings: the scoring model's last hidden state, mean-pooled over the record's "
               "own tokens.</p>")
    _, usable = diversity.unit_rows(run.embeddings[every])
    shown = every[usable]
    hover = [page.esc(_clip(f"{run.ids[i]}: {run.instructions[i]}" if d.has_text else str(run.ids[i]), 80))
             for i in range(run.n)] if len(shown) else []
    if len(shown):
        xy = stats.pca_2d(run.embeddings[shown])
        out.append(fig(figures.embedding_map(xy, shown, d.sel, hover, len(every) < run.n)))
    return "".join(out)


def proxy_section(run: RunView, fig: _Figures) -> str:
    """A --proxy run: how many scores are full and predicted, the held-out figures, the calibration plot."""
    p = run.config.get("proxy")
    if not p:
        return ""
    secs = p.get("seconds", {})
    rows = [["records scored by the full method (the sample)", f"{p['full']:,}"],
            ["records whose score the proxy predicted", f"{p['predicted']:,}"],
            ["features", p["features"] + (f" ({p['layers']} layers)" if "layers" in p else "")],
            ["seconds: full method on the sample / features / fit / predict",
             " / ".join(f"{secs.get(k, 0):.1f}" for k in ("full_method", "features", "fit", "predict"))]]
    if "regressor" not in p:
        return page.table(["", ""], rows) + '<p class="muted">The sample is every record: nothing was predicted.</p>'
    rows += [["regressor", p["regressor"] + (f" (alpha {p['ridge_alpha']:g})" if p.get("ridge_alpha") else "")],
             ["held-out Spearman (predicted vs full)", _fmt(p.get("held_out_spearman"), 3)],
             ["held-out overlap of the best 20%", _fmt(p.get("held_out_top20_overlap"), 3)],
             ["held-out records (not seen by the fitted copy) / trained on", f"{p['held_out']} / {p['trained_on']}"]]
    pairs = p.get("held_out_pairs") or {}
    full = np.array([np.nan if v is None else v for v in pairs.get("full", [])], dtype=np.float64)
    predicted = np.array([np.nan if v is None else v for v in pairs.get("predicted", [])], dtype=np.float64)
    note = ('<p class="muted">The held-out figures are those of a copy of the regressor fitted on the rest of the '
            "sample; the scores of the other records come from the regressor fitted on the whole sample. "
            "scores.jsonl marks each score: scored_by \"full\" or \"proxy\".</p>")
    return page.table(["", ""], rows) + note + (fig(figures.proxy_calibration(full, predicted)) if len(full) else "")


def top_bottom(run: RunView, d: _Derived) -> str:
    order = np.argsort(np.where(np.isfinite(run.score), -run.score, np.inf), kind="stable")
    scored = order[: int(np.isfinite(run.score).sum())]
    P = len(run.config.get("prompts", []))
    head = ["rank", "id", "score"] + [f"P{j + 1}" for j in range(P)] + ["mass", "instruction", "response"]

    def rows(indices):
        out = []
        for i in indices:
            rank = int(np.flatnonzero(order == i)[0]) + 1
            per_prompt = []
            for j in range(P):
                bits = []
                for m in run.models:
                    t = run.token[m][i, j] if j < run.token[m].shape[1] else float("nan")
                    rating = ""
                    if m in run.probs and np.isfinite(run.probs[m][i, j]).all() and run.probs[m][i, j].sum() > 0:
                        rating = f' <span class="pill">{int(np.argmax(run.probs[m][i, j])) + 1}</span>'
                    bits.append(_fmt(t, 3) + rating)
                per_prompt.append("<br>".join(bits))
            text = ([page.esc(_clip(run.instructions[i], TEXT_SHOWN)), page.esc(_clip(run.responses[i], TEXT_SHOWN))]
                    if d.has_text else ['<span class="muted">(input not available)</span>'] * 2)
            out.append([rank, page.esc(run.ids[i]), _fmt(run.score[i]), *per_prompt, _fmt(d.mean_mass[i], 3), *text])
        return out

    explain = ('<p class="muted">Per prompt: the token-level score (one line per model) and, in blue, the rating the '
               "model chose (argmax of the label probabilities).</p>")
    raw = set(range(len(head)))
    tbl = lambda idx: page.table(head, rows(idx), numeric={0, 2, *range(3, 3 + P + 1)}, raw=raw,  # noqa: E731
                                 wide={len(head) - 2, len(head) - 1})
    return (explain + f"<h3>Top {min(TOP_BOTTOM, len(scored))}</h3>" + tbl(scored[:TOP_BOTTOM]) +
            f"<h3>Bottom {min(TOP_BOTTOM, len(scored))}</h3>" + tbl(scored[::-1][:TOP_BOTTOM]))


def all_records(run: RunView, d: _Derived) -> str:
    order = np.argsort(np.where(np.isfinite(run.score), -run.score, np.inf), kind="stable")
    rank = np.empty(run.n, dtype=np.int64)
    rank[order] = np.arange(1, run.n + 1)
    first = run.models[0] if run.models else None
    columns = ["rank", "id", "score", "selected", "label mass", "std (P)"]
    if d.has_text:
        columns += ["instr. words", "resp. words", "calc", "task type", "instruction", "response"]
    rows = []
    for i in range(run.n):
        row = [int(rank[i]), str(run.ids[i]), _num(run.score[i]), int(d.sel[i]), _num(d.mean_mass[i], 4),
               _num(d.std[first][i], 4) if first else None]
        if d.has_text:
            row += [int(d.ilen[i]), int(d.rlen[i]), "yes" if d.calc[i] else "", d.types[i],
                    _clip(run.instructions[i], SNIPPET), _clip(run.responses[i], SNIPPET)]
        rows.append(row)
    numeric = [0, 2, 4, 5] + ([6, 7] if d.has_text else [])
    text = [1, 9, 10, 11] if d.has_text else [1]
    return ('<p class="muted">Click a column to sort; the search matches the id, task type and the first '
            f"{SNIPPET} characters of instruction and response. Selected rows have a blue edge.</p>" +
            page.records_table(columns, rows, text=text, numeric=numeric, wide=[10, 11] if d.has_text else [],
                               selected_col=3))


def _num(x, digits: int = 6):
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def comparison(runs: list[RunView], fig: _Figures) -> str:
    names = [_name(r, runs) for r in runs]
    summary = [[names[k], _fmt(r.n), ", ".join(r.models), _fmt(len(r.selected)), r.policy,
                _fmt(float(np.nanmean(r.score)) if np.isfinite(r.score).any() else None)] for k, r in enumerate(runs)]
    out = [page.table(["run", "records", "models", "selected", "selection", "mean score"], summary, numeric={1, 3, 5})]
    pairs, scatters = [], []
    for a in range(len(runs)):
        for b in range(a + 1, len(runs)):
            match = _match(runs[a], runs[b])
            if match is None:
                pairs.append([names[a], names[b], "–", "–", "–", "–", "records do not match (different inputs, "
                              "no unique ids in common)"])
                continue
            ia, ib, how = match
            sa = {int(i) for i in np.flatnonzero(runs[a].selected_mask[ia])}
            sb = {int(i) for i in np.flatnonzero(runs[b].selected_mask[ib])}
            both, jac = stats.overlap(sa, sb)
            rho = stats.spearman(runs[a].score[ia], runs[b].score[ib])
            pairs.append([names[a], names[b], _fmt(len(ia)), f"{both:,} of {len(sa):,} / {len(sb):,}",
                          _fmt(jac, 3), _fmt(rho, 3), how])
            if a == 0 and len(scatters) < 4:
                scatters.append(fig(figures.pair_scatter(runs[a].score[ia], runs[b].score[ib], names[a], names[b])))
    out.append("<h3>Pairwise</h3>" + page.table(
        ["run A", "run B", "records in common", "selected in both (of A / B)", "Jaccard", "Spearman (scores)", "matched by"],
        pairs, numeric={2, 4, 5}))
    out.append('<p class="muted">Jaccard: selected in both / selected in either. Spearman: rank correlation of the '
               "final scores over records both runs scored (ties get average ranks).</p>")
    if scatters:
        out.append('<div class="grid2">' + "".join(scatters) + "</div>")
    return "".join(out)


def _name(run: RunView, runs: list[RunView]) -> str:
    names = [r.path.name for r in runs]
    return run.path.name if names.count(run.path.name) == 1 else str(run.path)


def _match(a: RunView, b: RunView):
    """Positions in a and in b of the same records: (ia, ib, how) or None."""
    sha = lambda r: (r.config.get("input") or {}).get("sha256")  # noqa: E731
    if sha(a) and sha(a) == sha(b) and a.ids == b.ids:
        return np.arange(a.n), np.arange(b.n), "same input"
    ka, kb = [repr(i) for i in a.ids], [repr(i) for i in b.ids]
    if len(set(ka)) != len(ka) or len(set(kb)) != len(kb):
        return None
    where_b = {k: j for j, k in enumerate(kb)}
    common = [(i, where_b[k]) for i, k in enumerate(ka) if k in where_b]
    if not common:
        return None
    ia, ib = (np.array(x, dtype=np.int64) for x in zip(*common))
    return ia, ib, "id"


def render(runs: list[RunView]) -> str:
    """The whole page for ``runs`` (the first is described in full, the others compared with it)."""
    run = runs[0]
    d = _Derived(run)
    fig = _Figures()
    sections = [("overview", "Run", overview(run, d)),
                ("prompts", "Rating prompts", prompts_section(run, d)),
                ("distributions", "Distributions", distributions(run, d, fig)),
                ("selected", "Selected vs all", selected_vs_all(run, d, fig)),
                ("duplicates", "Duplicates and diversity", duplicates_diversity(run, d, fig)),
                ("proxy", "Learned proxy", proxy_section(run, fig)),
                ("top-bottom", "Top and bottom records", top_bottom(run, d)),
                ("records", "All records", all_records(run, d))]
    sections = [s for s in sections if s[0] != "proxy" or s[2]]  # only a --proxy run has that section
    if len(runs) > 1:
        sections.append(("compare", f"Comparing {len(runs)} runs", comparison(runs, fig)))
    sections.append(("config", "Resolved configuration",
                     f"<details><summary>config.json</summary><pre>{page.esc(json.dumps(run.config, indent=2))}</pre>"
                     "</details>"))
    subtitle = (f"{run.path.resolve()} · {run.n:,} records · selectit {__version__} · report written "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    return page.document(f"selectit report: {run.path.resolve().name}", subtitle, sections)
