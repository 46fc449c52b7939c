"""--method information: the information term alone, a method with a per-model column of its own."""

import json

import numpy as np

import selectit
from conftest import DEMO, score_file
from selectit.backends.fake import FakeBackend


def test_information_follows_its_definition(alpaca_records):
    """(blank - given) x response characters / 200 per model, parameter-weighted over models: computed by
    hand from the losses the default method reports for the same records."""
    records = alpaca_records[:12]
    models = lambda: [FakeBackend(name="s", num_parameters=1), FakeBackend(name="b", num_parameters=3)]  # noqa: E731
    s = selectit.score(records, method="information", backends=models())
    default = selectit.score(records, backends=models())  # the information term is its likelihood term
    for run, ref in zip(s.runs, default.runs):
        want = (ref.blank_loss - ref.response_loss) * np.array([len(r["output"]) for r in records]) / 200
        np.testing.assert_allclose(run.information, want, rtol=1e-12)
        np.testing.assert_allclose(run.information, ref.likelihood, rtol=1e-12)
    np.testing.assert_allclose(s.weights, [0.25, 0.75])
    np.testing.assert_allclose(s.final, 0.25 * s.runs[0].information + 0.75 * s.runs[1].information)


def test_information_writes_its_column(tmp_path):
    run = score_file(DEMO, tmp_path / "run", backend="fake", method="information")
    rows = [json.loads(line) for line in (tmp_path / "run" / "scores.jsonl").read_text().splitlines()]
    assert list(rows[0]) == ["id", "score", "token_scores", "sentence_scores", "label_mass", "label_probs",
                             "truncated", "information", "end_loss"]
    assert rows[0]["token_scores"] == {} and rows[0]["score"] == rows[0]["information"]["fake"]
    assert run.config["models"][0]["weight"] == 1.0 and not run.config["prompts"]
