"""The learned proxy (issue 18): the regressor on synthetic features with a known relation, the seeded
sample (stable across a rerun), the held-out refusal, the scored_by column with the full scores of the
sampled records equal to a plain run's, the feature passes of the tiny model against a plain forward."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from conftest import DEMO, score_file  # noqa: E402
from selectit.proxy import fit as proxy  # noqa: E402
from selectit.backends.hf import HFBackend  # noqa: E402
from selectit.errors import ConfigError  # noqa: E402
from selectit.measures.features import lengths, ngram_features, record_text  # noqa: E402
from selectit.proxy.job import ProxyRefused  # noqa: E402
from selectit.records import Record  # noqa: E402


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in json.loads(DEMO.read_text())[:120]))
    return path


# ---------------------------------------------------------------- the math

def test_ridge_recovers_a_linear_relation_and_judges_it_on_records_it_did_not_see():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 20))
    y = X @ rng.standard_normal(20) + 0.05 * rng.standard_normal(400)
    fit = proxy.fit(X, y, regressor="ridge", seed=3)
    assert (fit.sample, fit.trained_on, fit.held_out) == (400, 320, 80)
    assert fit.spearman > 0.99 and fit.top_overlap > 0.9
    assert len(fit.held_full) == len(fit.held_predicted) == 80
    np.testing.assert_allclose(fit.predict(X), y, atol=0.3)  # refitted on the whole sample
    noise = proxy.fit(X, rng.standard_normal(400), regressor="ridge", seed=3)
    assert abs(noise.spearman) < 0.3  # no relation: no held-out correlation


def test_lightgbm_learns_a_relation_ridge_cannot():
    pytest.importorskip("lightgbm")
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (600, 3))
    y = np.abs(X[:, 0]) + 0.02 * rng.standard_normal(600)  # symmetric: no linear signal
    trees = proxy.fit(X, y, regressor="lightgbm", seed=0)
    line = proxy.fit(X, y, regressor="ridge", seed=0)
    assert trees.spearman > 0.9 > 0.3 > abs(line.spearman)


def test_unscored_records_are_left_out_of_the_fit():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 4))
    y = X[:, 0].copy()
    y[:10] = np.nan
    assert proxy.fit(X, y, seed=0).sample == 40
    with pytest.raises(ConfigError, match="at least 4 scored"):
        proxy.fit(X[:3], y[10:13], seed=0)


def test_sample_size_and_seeded_positions():
    assert proxy.sample_size(1_000_000, None) == 50_000  # 5%
    assert proxy.sample_size(10_000, None) == 2000  # at least 2,000
    assert proxy.sample_size(500, None) == 500  # never more than there are
    assert proxy.sample_size(1000, 0.1) == 100 and proxy.sample_size(1000, 250) == 250
    with pytest.raises(ConfigError, match="whole number"):
        proxy.sample_size(1000, 2.5)
    a = proxy.sample_positions(1000, 100, seed=7)
    assert np.array_equal(a, proxy.sample_positions(1000, 100, seed=7)) and np.array_equal(a, np.sort(a))
    assert len(set(a.tolist())) == 100 and not np.array_equal(a, proxy.sample_positions(1000, 100, seed=8))


def test_overlap_and_spearman():
    full = np.arange(10.0)
    assert proxy.top_overlap(full, full) == 1.0 and proxy.top_overlap(full, -full) == 0.0
    assert proxy.spearman(full, full ** 3) == pytest.approx(1.0)
    assert np.isnan(proxy.spearman(full, np.ones(10)))


def test_ngram_features_are_stateless_and_carry_lengths():
    recs = [Record(id=0, instruction="Name a colour.", response="Blue.", raw={}),
            Record(id=1, instruction="Name a colour.", response="Red, a warm colour.", raw={})]
    X = ngram_features(recs)
    assert X.shape[0] == 2 and (ngram_features(recs[:1]) != X[:1]).nnz == 0  # a record's row alone = in a batch
    np.testing.assert_allclose(X[:, -4:].toarray(), lengths(recs))
    assert lengths(recs)[1, 3] == pytest.approx(np.log1p(4))


# ---------------------------------------------------------------- feature passes (tiny model)

@pytest.mark.parametrize("packed", [True, False])
def test_record_states_equal_a_plain_forward(tiny_model, tiny_tokenizer, packed):
    import torch

    backend = HFBackend(tiny_model, tiny_tokenizer, name="tiny", packed=packed)
    texts = ["Give three tips.\n\nEat, sleep, move.", "What is 2+2?\n\n4", "x"]
    table = backend.record_states(texts, 0)
    last = backend.record_states(texts, 2)  # every layer of the tiny model
    first = backend.record_states(texts, 1)
    for i, text in enumerate(texts):
        ids = torch.tensor([tiny_tokenizer(text)["input_ids"]])
        with torch.no_grad():
            want = tiny_model.model(ids).last_hidden_state[0].double().mean(0).numpy()
            lookup = tiny_model.model.embed_tokens(ids)[0].double().mean(0).numpy()
        np.testing.assert_allclose(last[i], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(table[i], lookup, rtol=1e-6, atol=1e-6)
        assert not np.allclose(first[i], last[i])  # the early exit stops earlier
    assert len(tiny_model.model.layers) == 2  # the stack is whole again
    with pytest.raises(ConfigError, match="--proxy-layers"):
        backend.record_states(texts, 3)


@pytest.mark.parametrize("packed", [True, False])
def test_early_exit_losses_are_the_logit_lens_and_all_layers_the_full_losses(tiny_model, tiny_tokenizer, packed):
    """Losses after k layers = the final norm and head on the k-th hidden state (float32, 1e-5); k = all
    layers = the full pass exactly; the stack, and the cached shared prefix, whole again after."""
    import torch

    backend = HFBackend(tiny_model, tiny_tokenizer, name="tiny", packed=packed)
    blank = "### Instruction:\n\n\n### Response:\n"
    pairs = [(blank, "Eat, sleep, move."), (blank, "4"), (blank, "A longer answer with several more words in it.")]
    full = backend.response_losses(pairs, end=True)
    with backend.early_exit(2):  # every layer of the tiny model
        np.testing.assert_array_equal(backend.response_losses(pairs, end=True), full)
    with backend.early_exit(1):
        early = backend.response_losses(pairs, end=True)
    np.testing.assert_array_equal(backend.response_losses(pairs, end=True), full)  # no early cache reused
    assert len(tiny_model.model.layers) == 2 and not np.allclose(early, full)
    for (context, response), want in zip(pairs, early):
        ctx = tiny_tokenizer(context)["input_ids"]
        ids = tiny_tokenizer(context + response)["input_ids"] + [tiny_tokenizer.eos_token_id]
        with torch.no_grad():
            states = tiny_model.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
            logits = tiny_model.lm_head(tiny_model.model.norm(states)).float()
            nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
        assert want == pytest.approx(nll[len(ctx) - 1 :].double().mean().item(), rel=1e-5)
    with pytest.raises(ConfigError, match="--proxy-layers"):
        with backend.early_exit(3):
            pass


def test_the_early_likelihood_rung_keeps_its_own_losses(tmp_path, data):
    """EarlyLosses are stored under their own kind (never the full pass's, never an end loss), read back
    as features (the term and both losses), and the rung runs as a proxy; a backend without an early
    exit is refused."""
    from selectit import formats
    from selectit.backends.fake import FakeBackend
    from selectit.config import Execution
    from selectit.measures import ModelInfo
    from selectit.measures.features import features, rung_measures
    from selectit.measures.losses import END_LOSS, GIVEN, EarlyLosses
    from selectit.store import ScoreStore

    run = score_file(data, tmp_path / "plain", backend="fake")
    records = list(formats.scan(data).records())
    info = ModelInfo.from_dict(run.config["models"][0])
    store = ScoreStore(tmp_path / "plain" / "store.sqlite")
    key = info.keys["losses"]
    before = {kind: store.load_losses(key, kind, {r.id for r in records}) for kind in (GIVEN, END_LOSS)}
    for m in rung_measures("early-likelihood", 2):
        m.compute(FakeBackend(), info, records, store, Execution(batch_size=16))
    for kind, found in before.items():  # the full pass's losses untouched
        assert store.load_losses(key, kind, {r.id for r in records}) == found
    X = features("early-likelihood", 2, records, [info], store)
    full = features("likelihood", 2, records, [info], store)
    assert X.shape == (120, 3 + 4)
    given = EarlyLosses(GIVEN, 2).load(info, records, store)
    np.testing.assert_allclose(X[:, 1], given)
    plain = np.array([r["response_loss"]["fake"] for r in _rows(tmp_path / "plain" / "scores.jsonl")])
    np.testing.assert_allclose(given, plain + 0.2, rtol=1e-9)  # the fake model: +0.1 per token per layer left out
    np.testing.assert_allclose(X[:, 0], full[:, 0], atol=1e-9)  # the fake's offset is the same in both losses
    fit = score_file(data, tmp_path / "proxy", backend="fake", proxy=True, proxy_sample=60,
                     proxy_features="early-likelihood", proxy_layers=3, proxy_min_spearman=-1.0).config["proxy"]
    assert fit["features"] == "early-likelihood" and fit["layers"] == 3
    with pytest.raises(ValueError, match="no early-exit loss"):
        EarlyLosses(GIVEN, 0)
    with pytest.raises(ConfigError, match="needs --backend hf"):  # a backend that cannot stop early
        EarlyLosses(GIVEN, 2).compute(object(), info, records, store, Execution(batch_size=16))


# ---------------------------------------------------------------- the job

def test_proxy_run_keeps_the_full_scores_of_the_sample_and_predicts_the_rest(tmp_path, data):
    score_file(data, tmp_path / "plain", backend="fake")
    plain = {r["id"]: r for r in _rows(tmp_path / "plain" / "scores.jsonl")}
    run = score_file(data, tmp_path / "proxy", backend="fake", proxy=True, proxy_sample=40, proxy_features="hidden",
                     proxy_min_spearman=-1.0)
    rows = _rows(tmp_path / "proxy" / "scores.jsonl")
    assert [r["id"] for r in rows] == list(plain)  # input order, every record
    full = [r for r in rows if r["scored_by"] == "full"]
    assert len(full) == 40 and sum(r["scored_by"] == "proxy" for r in rows) == 80
    for r in full:  # the sampled records: exactly the plain run's scores and columns
        assert {k: v for k, v in r.items() if k != "scored_by"} == plain[r["id"]]
    predicted = [r for r in rows if r["scored_by"] == "proxy"]
    assert all(np.isfinite(r["score"]) and r["sentence_scores"] == {"fake": None} for r in predicted)
    assert all(list(r) == list(full[0]) and r["likelihood_chars"] == {"fake": None} for r in predicted)
    figures = run.config["proxy"]
    assert (figures["records"], figures["full"], figures["predicted"], figures["held_out"]) == (120, 40, 80, 8)
    assert len(figures["held_out_pairs"]["full"]) == 8 and figures["regressor"] == "ridge"
    positions = [i for i, r in enumerate(rows) if r["scored_by"] == "full"]
    assert positions == proxy.sample_positions(120, 40, 0).tolist()


def test_a_rerun_draws_the_same_sample_and_computes_nothing(tmp_path, data):
    first = score_file(data, tmp_path / "run", backend="fake", proxy=True, proxy_sample=0.25,
                       proxy_features="token-embeddings", proxy_min_spearman=-1.0)
    before = (tmp_path / "run" / "scores.jsonl").read_bytes()
    again = score_file(data, tmp_path / "run", backend="fake", proxy=True, proxy_sample=0.25,
                       proxy_features="token-embeddings", proxy_min_spearman=-1.0)
    assert (tmp_path / "run" / "scores.jsonl").read_bytes() == before
    assert first.config["proxy"]["full"] == 30
    assert again.config["models"][0]["stored"] == 30  # the sample's measurements were all stored
    assert again.config["proxy_models"][0]["stored"] == 120 and again.config["proxy_models"][0]["tokens"] == 0


def test_a_proxy_under_the_bound_is_refused_and_leaves_no_scores(tmp_path, data):
    score_file(data, tmp_path / "run", backend="fake")  # an earlier run's scores must not survive the refusal
    with pytest.raises(ProxyRefused, match=r"held-out Spearman is .* below --proxy-min-spearman 0.99"):
        score_file(data, tmp_path / "run", backend="fake", proxy=True, proxy_sample=40, proxy_features="ngrams",
                   proxy_min_spearman=0.99)
    assert not (tmp_path / "run" / "scores.jsonl").exists()


def test_proxy_user_errors(tmp_path, data):
    from selectit.jobs import rescore_run

    score_file(data, tmp_path / "p", backend="fake", proxy=True, proxy_sample=40, proxy_features="hidden",
               proxy_min_spearman=-1.0)
    with pytest.raises(ConfigError, match="predicted 80 scores with --proxy"):
        rescore_run(tmp_path / "p", {"alpha": 0.5})
    with pytest.raises(ConfigError, match="needs no model"):
        score_file(data, tmp_path / "a", method="length", proxy=True)
    with pytest.raises(ConfigError, match="--backend hf or fake"):
        score_file(data, tmp_path / "b", backend="llamacpp", proxy=True, proxy_features="early")


def test_cli_exit_code_and_selection_from_a_proxy_run(tmp_path, data):
    from typer.testing import CliRunner

    from selectit.cli import app

    cli = CliRunner()
    refused = cli.invoke(app, ["score", str(data), "--out", str(tmp_path / "r"), "--backend", "fake", "--proxy",
                               "--proxy-sample", "40", "--proxy-features", "ngrams", "--proxy-min-spearman", "0.99"])
    assert refused.exit_code == 2 and "--proxy-min-spearman" in refused.output and "Traceback" not in refused.output
    ok = cli.invoke(app, ["run", str(data), "--out", str(tmp_path / "ok"), "--backend", "fake", "--proxy",
                          "--proxy-sample", "40", "--proxy-features", "hidden", "--proxy-min-spearman", "-1",
                          "--no-report"])
    assert ok.exit_code == 0, ok.output
    assert "proxy: ridge held-out Spearman" in ok.output and "selected 24 of 120" in ok.output


def test_record_text_is_instruction_then_response():
    assert record_text(Record(id=0, instruction="Q", response="A", raw={})) == "Q\n\nA"


def test_the_report_shows_the_proxy_and_its_calibration(tmp_path, data):
    from selectit.report import write_report

    score_file(data, tmp_path / "proxy", backend="fake", proxy=True, proxy_sample=40, proxy_features="hidden",
               proxy_min_spearman=-1.0)
    html = Path(write_report([tmp_path / "proxy"])).read_text()
    assert 'id="proxy"' in html and "Proxy calibration" in html and "held-out Spearman" in html
    score_file(data, tmp_path / "plain", backend="fake")
    assert 'id="proxy"' not in Path(write_report([tmp_path / "plain"])).read_text()


def test_the_likelihood_rung_carries_the_methods_own_term(tmp_path, data):
    """The likelihood rung's term column is exactly the default method's likelihood term (scores.jsonl)."""
    from selectit import formats
    from selectit.measures import ModelInfo
    from selectit.measures.features import features
    from selectit.store import ScoreStore

    run = score_file(data, tmp_path / "plain", backend="fake")
    records = list(formats.scan(data).records())
    info = ModelInfo.from_dict(run.config["models"][0])
    X = features("likelihood", 4, records, [info], ScoreStore(tmp_path / "plain" / "store.sqlite"))
    want = [r["likelihood"]["fake"] for r in _rows(tmp_path / "plain" / "scores.jsonl")]
    assert X.shape == (120, 1 + 4)
    np.testing.assert_allclose(X[:, 0], want, rtol=1e-12)
    fit = score_file(data, tmp_path / "proxy", backend="fake", proxy=True, proxy_sample=60,
                     proxy_min_spearman=-1.0).config["proxy"]
    assert fit["features"] == "likelihood"  # the default rung
