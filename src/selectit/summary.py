"""What a scoring run did, in a few lines for the terminal (the same figures as config.json)."""

from __future__ import annotations

from pathlib import Path

LOW_MASS = 0.1  # below this mean label mass the template probably does not suit the model


def summary_lines(scored, input_path, out_dir) -> list[str]:
    """Per model: load time apart from measuring time, and the throughput of the work actually done
    (records found in the store are not counted as done); then warnings and where the scores are."""
    source, record = scored.source, scored.config
    lines = []
    if source.rejects:
        lines.append(f"warning: left out {len(source.rejects)} bad record(s), listed in "
                     f"{Path(out_dir) / 'rejects.jsonl'}")
    if source.duplicate_ids:
        lines.append(f"warning: {source.duplicate_ids} duplicate id(s) in {input_path}; scores.jsonl keeps input "
                     "order, so rows stay aligned with records")
    proxy = record.get("proxy")
    sampled = proxy["full"] if proxy else len(source)
    for entry in record.get("models", []):
        lines.extend(_model_lines(entry, sampled, len(scored.prompts)))
    if proxy:
        lines.extend(_proxy_lines(proxy, record.get("proxy_models", [])))
    if not record.get("models"):
        lines.append(f"{scored.method.name}: {len(source)} records in {record.get('seconds', 0):.1f}s (no model)")
    if scored.totals.unscored:
        lines.append(scored.method.unscored_note(scored.totals.unscored, scored.totals.unscored_why))
    if getattr(scored, "removed", None):
        lines.append(f"removed what the directory held of its earlier input {_names(scored.removed)} (made from "
                     "scores this run replaced)")
    lines.append(f"scores: {Path(out_dir) / 'scores.jsonl'}")
    return lines


def _model_lines(m: dict, n: int, prompts: int) -> list[str]:
    name, stored, seconds = m["name"], m.get("stored", 0), max(m.get("seconds") or 0.0, 1e-9)
    done = n - stored
    head = f"{name} ({m.get('template')} template): "
    if done <= 0 and not m.get("load_seconds"):
        head += f"every measurement of the {n} records was already stored; the model was not loaded"
    elif done <= 0:
        head += f"loaded in {m.get('load_seconds', 0):.1f}s; all {n} records were already stored, nothing computed"
    else:
        head += f"loaded in {m.get('load_seconds', 0):.1f}s; "
        head += (f"measured {done} records{f' x {prompts} prompts' if prompts else ''} in {seconds:.1f}s "
                 f"({done / seconds:.2f} rec/s, {m.get('tokens', 0) / seconds:.0f} tok/s)")
        if stored:
            head += f"; {stored} were already stored"
    mass = m.get("mean_label_mass")
    if mass is not None:
        head += f"; mean label mass {mass:.3f}; truncated {m.get('truncated_records', 0)}"
    lines = [head]
    if mass is not None and mass < LOW_MASS:
        lines.append(f"warning: {name} puts only {mass:.1%} of its next-token probability on the rating labels; "
                     "the template may not suit it (try --template chat)")
    if m.get("failed_prompts"):
        lines.append(f"warning: {name} failed on {m['failed_prompts']} prompt(s) (see 'errors' in scores.jsonl); "
                     "run the same command again to retry them")
    return lines


def _proxy_lines(p: dict, feature_models: list[dict]) -> list[str]:
    """The proxy: how many records each way, the features' cost, the held-out figures."""
    secs = p.get("seconds", {})
    head = f"proxy: full method on {p['full']} of {p['records']} records ({secs.get('full_method', 0):.1f}s)"
    if "regressor" not in p:
        return [head + "; the sample is every record, nothing predicted"]
    done = sum(p["records"] - m.get("stored", 0) for m in feature_models)
    cost = f"{secs.get('features', 0):.1f}s" + (f" for {done} records" if done else "")
    if feature_models and not done:
        cost = "every feature was stored already"
    if p["predicted"]:
        head += (f"; {p['predicted']} predicted from {p['features']} features ({cost}, "
                 f"predicting {secs.get('predict', 0):.1f}s)")
    else:
        head += f"; no record was left to predict ({p['features']} features: {cost})"
    return [head,
            f"proxy: {p['regressor']} held-out Spearman {_fig(p.get('held_out_spearman'))}, top-20% overlap "
            f"{_fig(p.get('held_out_top20_overlap'))} on {p['held_out']} records it did not see (trained on "
            f"{p['trained_on']}); scores.jsonl says which scores are full ('scored_by')"]


def _names(paths) -> str:
    return ", ".join(Path(p).name for p in paths)


def _fig(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
