"""The report's plots (plotly figures; plotly is imported here, only when a report is written).

Every function takes numbers already computed by ``stats`` and returns a ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selectit.report.stats import histogram

ALL, SELECTED, REST = "#9aa5b1", "#2b6cb0", "#cbd2d9"
SCATTER_POINTS = 3000  # score-vs-length shows at most this many records (a fixed-seed sample), to keep the page light


def _go():
    import plotly.graph_objects as go

    return go


def _layout(fig, title: str, x: str, y: str, height: int = 320):
    fig.update_layout(title=dict(text=title, x=0.01, y=0.98, yanchor="top", font=dict(size=14)),
                      template="plotly_white", height=height, margin=dict(l=55, r=15, t=70, b=45),
                      xaxis_title=x, yaxis_title=y,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1.0),
                      font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12))
    return fig


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def _bars(fig, edges: np.ndarray, counts: np.ndarray, **kw):
    """A histogram already binned by ``stats.histogram``, as bars (the page holds counts, not values)."""
    centers = (edges[:-1] + edges[1:]) / 2
    fig.add_bar(x=np.round(centers, 6).tolist(), y=counts.tolist(), width=float(edges[1] - edges[0]),
                customdata=np.round(np.c_[edges[:-1], edges[1:]], 4).tolist(),
                hovertemplate="%{customdata[0]} to %{customdata[1]}: %{y}<extra>%{fullData.name}</extra>", **kw)


def score_histogram(score: np.ndarray, selected: np.ndarray):
    """Final scores, not selected vs selected, stacked. score: (n,), selected: (n,) bool."""
    go = _go()
    fig = go.Figure()
    edges, _ = histogram(score)
    _bars(fig, edges, histogram(score[~selected], edges=edges)[1], name="not selected", marker_color=REST)
    _bars(fig, edges, histogram(score[selected], edges=edges)[1], name="selected", marker_color=SELECTED)
    fig.update_layout(barmode="stack", bargap=0)
    return _layout(fig, "Final score", "score", "records")


def level_histograms(levels: dict[str, np.ndarray]):
    """One histogram per level name (e.g. 'token: model', 'sentence: model', 'final'), side by side."""
    from plotly.subplots import make_subplots

    names = list(levels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.06)
    for i, name in enumerate(names, start=1):
        edges, counts = histogram(levels[name])
        _bars(fig, edges, counts, name=name, marker_color=ALL if i < len(names) else SELECTED, showlegend=False,
              row=1, col=i)
    fig.update_layout(bargap=0)
    fig.update_annotations(font_size=12)
    return _layout(fig, "Each level of the score (token, sentence, model)", "", "records")


def mass_histogram(record_mass: dict[str, np.ndarray], threshold: float):
    """Label mass per record (mean over prompts), one trace per model, with the low-mass line."""
    go = _go()
    fig = go.Figure()
    edges = np.linspace(0.0, 1.0, 51)
    for name, m in record_mass.items():
        _bars(fig, edges, histogram(m, edges=edges)[1], name=name, opacity=0.75)
    fig.add_vline(x=threshold, line_dash="dash", line_color="#c53030", annotation_text=f"low: {threshold:g}",
                  annotation_position="top right")
    fig.update_layout(barmode="overlay", bargap=0, xaxis_range=[0, 1])
    return _layout(fig, "Label mass per record (probability on the ratings, mean over prompts)", "label mass",
                   "records")


def prompt_bars(prompt_labels: Sequence[str], values: dict[str, np.ndarray], title: str, y: str,
                threshold: float | None = None):
    """One bar per prompt and model: values {model: (P,)}."""
    go = _go()
    fig = go.Figure()
    for name, v in values.items():
        fig.add_bar(x=list(prompt_labels), y=np.asarray(v, dtype=np.float64).tolist(), name=name)
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="#c53030")
    fig.update_layout(barmode="group")
    return _layout(fig, title, "prompt", y)


def std_histogram(stds: dict[str, np.ndarray]):
    """The prompts' disagreement per record (std of token scores over prompts), per model."""
    go = _go()
    fig = go.Figure()
    edges, _ = histogram(np.concatenate([_finite(s) for s in stds.values()]) if stds else np.zeros(0))
    for name, s in stds.items():
        _bars(fig, edges, histogram(s, edges=edges)[1], name=name, opacity=0.75)
    fig.update_layout(barmode="overlay", bargap=0)
    return _layout(fig, "Prompt disagreement per record (std of token scores)", "std over prompts", "records")


def rating_bars(prompt_labels: Sequence[str], counts: np.ndarray, labels: Sequence[str], model: str):
    """How often each rating was the model's choice, per prompt. counts: (P, S)."""
    go = _go()
    fig = go.Figure()
    for k, label in enumerate(labels):
        fig.add_bar(x=list(prompt_labels), y=counts[:, k].tolist(), name=f"rating {label}")
    fig.update_layout(barmode="stack")
    return _layout(fig, f"Rating chosen (argmax) per prompt: {model}", "prompt", "records")


def score_vs_length(score: np.ndarray, length: np.ndarray, selected: np.ndarray, hover: Sequence[str]):
    """Scatter of final score against response length; at most SCATTER_POINTS records (fixed-seed sample)."""
    go = _go()
    idx = np.flatnonzero(np.isfinite(score))
    sampled = len(idx) > SCATTER_POINTS
    if sampled:
        idx = np.sort(np.random.default_rng(0).choice(idx, SCATTER_POINTS, replace=False))
    fig = go.Figure()
    for mask, name, color in ((~selected[idx], "not selected", REST), (selected[idx], "selected", SELECTED)):
        pick = idx[mask]
        fig.add_scatter(x=length[pick].tolist(), y=np.round(score[pick], 5).tolist(), mode="markers", name=name,
                        marker=dict(color=color, size=5, opacity=0.7), text=[hover[i] for i in pick],
                        hovertemplate="%{text}<br>length %{x}<br>score %{y}<extra></extra>")
    title = "Score vs response length" + (f" (a sample of {SCATTER_POINTS} records)" if sampled else "")
    return _layout(fig, title, "response length (words)", "score")


def type_mix_bars(mix: list[tuple[str, float, float]]):
    """Share of each task type among all and selected records."""
    go = _go()
    names = [t for t, _, _ in mix]
    fig = go.Figure()
    fig.add_bar(x=names, y=[100 * a for _, a, _ in mix], name="all", marker_color=ALL)
    fig.add_bar(x=names, y=[100 * s for _, _, s in mix], name="selected", marker_color=SELECTED)
    fig.update_layout(barmode="group")
    return _layout(fig, "Task type (first word of the instruction)", "", "% of records")


def pair_scatter(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str):
    """Scores of the same records in two runs (at most SCATTER_POINTS, fixed-seed sample)."""
    go = _go()
    idx = np.flatnonzero(np.isfinite(a) & np.isfinite(b))
    if len(idx) > SCATTER_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(idx, SCATTER_POINTS, replace=False))
    fig = go.Figure()
    fig.add_scatter(x=np.round(a[idx], 5).tolist(), y=np.round(b[idx], 5).tolist(), mode="markers",
                    marker=dict(color=SELECTED, size=4, opacity=0.6), showlegend=False)
    return _layout(fig, f"Scores: {name_a} vs {name_b}", name_a, name_b)


def embedding_map(xy: np.ndarray, idx: np.ndarray, selected: np.ndarray, hover: Sequence[str], sampled: bool):
    """The records' embeddings in 2-D (``xy`` (m, 2) for input positions ``idx``), selected vs not."""
    go = _go()
    fig = go.Figure()
    for mask, name, color in ((~selected[idx], "not selected", REST), (selected[idx], "selected", SELECTED)):
        fig.add_scatter(x=np.round(xy[mask, 0], 4).tolist(), y=np.round(xy[mask, 1], 4).tolist(), mode="markers",
                        name=name, marker=dict(color=color, size=5, opacity=0.7),
                        text=[hover[i] for i in idx[mask]], hovertemplate="%{text}<extra></extra>")
    title = "Record embeddings, first two principal components" + (f" (a sample of {len(idx)})" if sampled else "")
    return _layout(fig, title, "PC 1", "PC 2", height=420)


def proxy_calibration(full: np.ndarray, predicted: np.ndarray):
    """The proxy on the held-out part of its sample: predicted vs full score, with the diagonal."""
    go = _go()
    fig = go.Figure()
    fig.add_scatter(x=np.round(full, 5).tolist(), y=np.round(predicted, 5).tolist(), mode="markers",
                    name="held-out record", marker=dict(color=SELECTED, size=5, opacity=0.6))
    both = _finite(np.concatenate([full, predicted]))
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = full",
                        line=dict(color=REST, dash="dash"))
    return _layout(fig, "Proxy calibration: held-out records of the sample", "full score", "predicted score")
