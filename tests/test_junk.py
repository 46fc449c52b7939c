"""--drop-junk and --sample (issue 26): the end token's loss, the junk tests, the seeded draw, the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

import selectit
from conftest import DEMO, score_file
from selectit.backends.fake import FakeBackend
from selectit.config import SelectOptions
from selectit.errors import ConfigError
from selectit.records import Record
from selectit.selection import junk
from selectit.selection.policy import sample


def test_the_end_loss_is_the_end_tokens_cross_entropy_after_the_response(tiny_model_dir):
    """On the tiny model in float32: the stored end loss is -log p(end | Alpaca prompt + response), computed
    here by hand from the model's logits; and it is the last token of the likelihood term's own pass."""
    import torch

    from selectit.backends.hf import HFBackend
    from selectit.measures.alpaca import instruction_context
    from selectit.measures.losses import END_LOSS, GIVEN, TEXTS

    records = json.loads(DEMO.read_text())[:3]
    backend = HFBackend.load(str(tiny_model_dir), dtype="float32")
    scores = selectit.score(records, backends=[backend], num_prompts=1)
    got = scores.runs[0].end_loss
    for r, loss, given in zip(records, got, scores.runs[0].response_loss):
        record = Record(0, r["instruction"] + ("\n" + r["input"] if r["input"] else ""), r["output"], r)
        context, target = TEXTS[END_LOSS.removesuffix("+end")](record)
        assert target == "" and context == instruction_context(record) + r["output"]
        ids = backend.encode_plain(context) + [backend.end_token()]
        with torch.no_grad():
            logits = backend.model(torch.tensor([ids])).logits[0].double()
        nll = torch.nn.functional.cross_entropy(logits[-2:-1], torch.tensor(ids[-1:]))
        assert loss == pytest.approx(float(nll), abs=1e-5)
        # GIVEN's mean over the response tokens and the end token holds this same end-token loss
        start = len(backend.encode_plain(instruction_context(record)))
        each = torch.nn.functional.cross_entropy(logits[start - 1 : -1], torch.tensor(ids[start:]), reduction="none")
        assert float(each[-1]) == pytest.approx(loss, abs=1e-5)
        assert given == pytest.approx(float(each.mean()), abs=1e-4)
    assert GIVEN.endswith("+end")


def test_the_default_and_information_methods_write_the_end_loss():
    records = json.loads(DEMO.read_text())[:6]
    for method in ("selectit", "information"):
        s = selectit.score(records, method=method, backends=[FakeBackend()])
        end = s.runs[0].end_loss
        assert end.shape == (6,) and np.isfinite(end).all() and (end > 0).all()


def test_junk_reasons_follow_their_thresholds_and_nan_is_never_a_reason():
    info = np.array([0.2, 0.01, 0.2, np.nan, 0.2])
    end = np.array([1.0, 1.0, 12.0, np.nan, np.nan])
    broken = np.array([False, False, False, False, True])
    reasons = junk.junk_reasons(info, end, broken, min_information=0.05, max_end_loss=8)
    assert reasons["no_information"].tolist() == [False, True, False, False, False]
    assert reasons["cut_off"].tolist() == [False, False, True, False, False]
    assert junk.junk(reasons).tolist() == [False, True, True, False, True]
    with pytest.raises(ValueError, match="shape"):
        junk.junk_reasons(info, end[:2], broken)


@pytest.mark.parametrize("text, bad", [
    ("A plain answer, with an accent: café, naïve.", False),
    ("Tabs\tand\nnew lines\r\nare fine.", False),
    ("Chinese: 你好，世界。 Emoji: 🙂", False),
    ("Itâ€™s broken â€” mojibake.", True),  # UTF-8 read as cp1252
    ("A stray control\x07 character.", True),
    ("DEL\x7f too.", True),
])
def test_broken_text(text, bad):
    assert junk.broken_text(text) is bad


def test_the_draw_is_seeded_uniform_and_keeps_the_ranked_order():
    ranked = np.array([7, 3, 9, 1, 4, 0, 8, 2, 6, 5])
    a, b = sample(ranked, 4, seed=1), sample(ranked, 4, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 4 and set(a) <= set(ranked)
    where = [list(ranked).index(x) for x in a]
    assert where == sorted(where)  # best first, as drawn from the ranking
    assert not np.array_equal(sample(ranked, 4, seed=2), a) or not np.array_equal(sample(ranked, 4, seed=3), a)
    np.testing.assert_array_equal(sample(ranked, 20, seed=0), ranked)  # a budget over what is left: all
    counts = np.zeros(10)
    for seed in range(2000):
        counts[sample(np.arange(10), 3, seed)] += 1
    assert counts.min() > 0.8 * 600 and counts.max() < 1.2 * 600  # each position drawn ~3/10 of the time


def _pool(tmp_path):
    records = json.loads(DEMO.read_text())[:40]
    records[1]["output"] = "Itâ€™s a broken answer â€” from a scrape."
    records[2]["output"] = records[2]["output"] + "\x01"
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(records))
    return path, records


def test_select_drop_junk_leaves_out_broken_text_and_counts_each_reason(tmp_path):
    path, records = _pool(tmp_path)
    score_file(path, tmp_path / "run", backend="fake")
    sel = selectit.jobs.select_run(tmp_path / "run", fraction=1.0,
                                   options=SelectOptions(drop_junk=True, junk_min_information=-1e9))
    assert 1 not in sel.indices and 2 not in sel.indices and len(sel.indices) == 38
    assert sel.steps["junk"] == {"no_information": 0, "cut_off": 0, "broken_text": 2, "records": 2,
                                 "min_information": -1e9, "max_end_loss": 8.0}
    # the thresholds read the run's own columns
    rows = [json.loads(x) for x in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    info = np.array([r["likelihood"]["fake"] for r in rows])
    cut = np.median(info)
    sel = selectit.jobs.select_run(tmp_path / "run", fraction=1.0,
                                   options=SelectOptions(drop_junk=True, junk_min_information=float(cut)))
    assert set(sel.indices) == {i for i in range(40) if info[i] >= cut and i not in (1, 2)}
    written = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert written["steps"]["junk"]["no_information"] == int((info < cut).sum())


def test_select_sample_is_a_seeded_draw_from_what_is_left(tmp_path):
    path, _ = _pool(tmp_path)
    score_file(path, tmp_path / "run", backend="fake")
    runs, errs = [], []
    for seed in (0, 0, 1):
        done = subprocess.run([sys.executable, "-m", "selectit", "select", str(tmp_path / "run"), "--fraction", "0.25",
                               "--drop-junk", "--junk-min-information", "-1e9", "--sample", "--sample-seed", str(seed),
                               "--keep-order"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads((tmp_path / "run" / "selection.json").read_text())["indices"])
        errs.append(done.stderr)
    assert runs[0] == runs[1] != runs[2]
    assert all(len(r) == 10 and 1 not in r and 2 not in r and r == sorted(r) for r in runs)
    assert "junk never selected: 2 (no information 0, cut off 0, broken text 2)" in errs[2]
    assert "drawn at random (seed 1) from the 38 records" in errs[2]


def test_refusals_are_one_line(tmp_path):
    score_file(DEMO, tmp_path / "paper", backend="fake", method="paper")
    with pytest.raises(ConfigError, match="needs the information term"):
        selectit.jobs.select_run(tmp_path / "paper", fraction=0.2, options=SelectOptions(drop_junk=True))
    score_file(DEMO, tmp_path / "run", backend="fake")
    with pytest.raises(ConfigError, match="--threshold keeps every record"):
        selectit.jobs.select_run(tmp_path / "run", threshold=1.0, options=SelectOptions(sample=True))
    with pytest.raises(ConfigError, match="--sample draws at random and --diversity ranks"):
        SelectOptions(sample=True, diversity=0.1)
    # a run scored before the end token's loss was measured: no end_loss column
    rows = (tmp_path / "run" / "scores.jsonl").read_text().splitlines()
    old = [json.dumps({k: v for k, v in json.loads(r).items() if k != "end_loss"}) for r in rows]
    (tmp_path / "run" / "scores.jsonl").write_text("\n".join(old) + "\n")
    with pytest.raises(ConfigError, match="before selectit measured the end token's loss: score the input again"):
        selectit.jobs.select_run(tmp_path / "run", fraction=0.2, options=SelectOptions(drop_junk=True))


@pytest.mark.parametrize("embed", [False, True])
def test_the_likelihood_pass_stores_the_end_loss_its_own_pass_would(tiny_model_dir, embed):
    """GIVEN's pass stores END_LOSS (the last token of its rows read whole) equal to END_LOSS's own pass
    (tiny model, float32, 1e-5); a record cut by --max-length gets NaN from both; the default run then
    runs no pass of its own for it."""
    from selectit.backends.hf import HFBackend
    from selectit.measures.losses import END_LOSS, GIVEN, text_losses
    from selectit.store import ScoreStore, record_key

    raw = json.loads(DEMO.read_text())[:6]
    raw[5] = {**raw[5], "output": raw[5]["output"] * 40}  # cut by max_length 1200 below
    records = [Record(i, r["instruction"] + ("\n" + r["input"] if r["input"] else ""), r["output"], r)
               for i, r in enumerate(raw)]
    backend = HFBackend.load(str(tiny_model_dir), dtype="float32")
    own, folded = ScoreStore(), ScoreStore()
    text_losses(backend, records, END_LOSS, 4, 1200, own, "k")
    text_losses(backend, records, GIVEN, 4, 1200, folded, "k", embed="pooled" if embed else None)
    keys = [record_key(r) for r in records]
    a, b = own.load_losses("k", END_LOSS, keys), folded.load_losses("k", END_LOSS, keys)
    assert set(a) == set(b) == set(keys)
    for k in keys[:5]:
        assert b[k] == pytest.approx(a[k], abs=1e-5)
    assert np.isnan(a[keys[5]]) and np.isnan(b[keys[5]])
    before = backend.tokens_computed
    assert text_losses(backend, records, END_LOSS, 4, 1200, folded, "k").stored == 6  # nothing left to run
    assert backend.tokens_computed == before


class _NoEnds(FakeBackend):
    """A backend that gives no last-token losses: the end loss takes a pass of its own."""

    def __getattribute__(self, name):
        if name == "losses_and_ends":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_a_default_run_reads_the_end_loss_from_the_likelihood_pass():
    records = json.loads(DEMO.read_text())[:8]
    folded, own = FakeBackend(), _NoEnds()
    assert not hasattr(own, "losses_and_ends")
    a, b = selectit.score(records, backends=[folded]), selectit.score(records, backends=[own])
    np.testing.assert_allclose(a.runs[0].end_loss, b.runs[0].end_loss, rtol=1e-12)
    np.testing.assert_allclose(a.final, b.final, rtol=1e-12)
    # the saving is exactly the end loss's own pass: each record's prompt, response and end token
    from selectit.backends.base import response_ids
    from selectit.measures.alpaca import instruction_context

    recs = [Record(i, r["instruction"] + ("\n" + r["input"] if r["input"] else ""), r["output"], r)
            for i, r in enumerate(records)]
    end_pass = sum(len(response_ids(own.encode_plain, instruction_context(r) + r.response, "", 4096, 0)[0])
                   for r in recs)
    assert own.tokens_computed - folded.tokens_computed == end_pass
