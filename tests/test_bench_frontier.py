"""bench/frontier.py: a variant computed from the default's stored measurements is what a run scored that
way computes (the tiny model, float32), and the bench runs at a toy size."""

import importlib.util
import json
import sys

import numpy as np
import pytest

from conftest import DEMO, ROOT


def _bench():
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("frontier_bench", ROOT / "bench" / "frontier.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_a_variant_from_the_stored_run_equals_a_run_scored_that_way(tmp_path, tiny_model_dir):
    import selectit
    from selectit.methods import configure

    bench = _bench()
    data = [{"instruction": r["instruction"], "output": r["output"]} for r in json.loads(DEMO.read_text())[:12]]
    chars = np.array([len(r["output"]) for r in data], dtype=np.float64)
    model = {"models": (str(tiny_model_dir),), "dtype": "float32"}
    every = {"num_prompts": 5}  # the frontier measures every packaged prompt once, then scores subsets
    config, _ = configure({**model, **every})
    full = selectit.score(data, config, store=str(tmp_path / "store.sqlite"))
    run = full.runs[0]
    prompts = config.measure.prompts()
    assert run.probs.shape[1] == len(prompts) == 5
    # all five prompts at the default weight: the old default's (--num-prompts 5) final score
    np.testing.assert_allclose(bench.variant_scores(run, config, chars, tuple(range(5)), 2.0), full.final,
                               rtol=1e-5, atol=1e-5)
    # the first four: today's default, as scored with no --num-prompts
    default = selectit.score(data, configure(model)[0], store=str(tmp_path / "store.sqlite"))
    assert default.runs[0].probs.shape[1] == 4
    np.testing.assert_allclose(bench.variant_scores(run, config, chars, tuple(range(4)), 2.0), default.final,
                               rtol=1e-5, atol=1e-5)
    # a subset: a run asked only those prompts (a prompts file holding them)
    subset = (1, 3)
    (tmp_path / "two.txt").write_text("\n".join(config.measure.all_prompts()[j] for j in subset) + "\n")
    two = selectit.score(data, configure({**model, "prompts_file": str(tmp_path / "two.txt"), "num_prompts": 2})[0])
    np.testing.assert_allclose(bench.variant_scores(run, config, chars, subset, 2.0), two.final, rtol=1e-5, atol=1e-5)
    # no prompt: the information term alone, as --method information scores it
    info = selectit.score(data, method="information", store=str(tmp_path / "store.sqlite"), **model)
    np.testing.assert_allclose(bench.variant_scores(run, config, chars, (), 2.0), info.final, rtol=1e-5, atol=1e-5)
    # ratings alone (weight 0): the paper's sentence level of the same prompts
    ratings = selectit.score(data, configure({**model, **every, "likelihood_weight": 0.0})[0])
    np.testing.assert_allclose(bench.variant_scores(run, config, chars, tuple(range(5)), 0.0), ratings.final,
                               rtol=1e-5, atol=1e-5)
    # record-once: a subset from its five-prompt run is a record-once run asked only those prompts
    once_config, _ = configure({**model, **every, "layout": "record-once"})
    once = selectit.score(data, once_config, store=str(tmp_path / "once.sqlite"))
    once_two = selectit.score(data, configure({**model, "layout": "record-once", "prompts_file": str(tmp_path / "two.txt"),
                                               "num_prompts": 2})[0])
    np.testing.assert_allclose(bench.variant_scores(once.runs[0], once_config, chars, subset, 2.0), once_two.final,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bench.variant_scores(once.runs[0], once_config, chars, tuple(range(5)), 2.0),
                               once.final, rtol=1e-5, atol=1e-5)
    # record-first: the same
    first_config, _ = configure({**model, **every, "layout": "record-first"})
    first = selectit.score(data, first_config, store=str(tmp_path / "first.sqlite"))
    first_two = selectit.score(data, configure({**model, "layout": "record-first", "num_prompts": 2,
                                                "prompts_file": str(tmp_path / "two.txt")})[0])
    np.testing.assert_allclose(bench.variant_scores(first.runs[0], first_config, chars, subset, 2.0), first_two.final,
                               rtol=1e-5, atol=1e-5)


def test_the_rule_takes_the_cheapest_row_near_the_best_with_no_weak_kind():
    bench = _bench()
    kinds = {k: 0.9 for k in bench.KINDS}
    rows = [{"variant": "full", "overall": 0.920, "tokens_after_prefix": 800, **kinds},
            {"variant": "cheap but weak", "overall": 0.918, "tokens_after_prefix": 200, **kinds, "swap": 0.80},
            {"variant": "cheap", "overall": 0.916, "tokens_after_prefix": 400, **kinds},
            {"variant": "too far", "overall": 0.914, "tokens_after_prefix": 100, **kinds}]
    assert bench.choose(rows)["variant"] == "cheap"
    assert bench.choose([{**rows[1]}]) == {}


@pytest.mark.bench
def test_frontier_bench_toy(tmp_path, tiny_model_dir, bench_data, capsys):
    bench = _bench()
    out = tmp_path / "frontier.json"
    bench.main(["--alpaca", "3", "--seed-tasks", "2", "--dev-alpaca", "2", "--dev-seed-tasks", "2",
                "--data", str(bench_data), "--model", str(tiny_model_dir), "--cache", str(tmp_path / "cache"),
                "--json", str(out), "--plot", str(tmp_path / "frontier.png")])
    printed = capsys.readouterr().out
    assert "P = 0 (information alone)" in printed and "ratings alone, P = 5" in printed and "chosen" in printed
    assert "record-once P = 5" in printed and "record-first P = 5" in printed
    figures = json.loads(out.read_text())
    rows = figures["rows"]
    assert [r["passes"] for r in rows] == [2, 3, 4, 5, 6, 7, 5, 2, 6, 7] + [2] * 5 + [3] * 5
    assert [r["blank"] for r in rows] == ["blank"] * 7 + ["alone"] * 3 + ["blank"] * 10
    assert [r["layout"] for r in rows] == ["prompt-first"] * 10 + ["record-once"] * 5 + ["record-first"] * 5
    assert figures["tokens"]["alone"][0] < figures["tokens"]["blank"][0]  # the shorter context
    assert all(len(figures["dev_subsets"][str(k)]) == k for k in range(1, 6))
    assert all(len(figures[f"dev_subsets_{name}"][str(k)]) == k for k in range(1, 6)
               for name in ("record_once", "record_first"))
    tokens = [r["tokens"] for r in rows[:6]]
    assert tokens == sorted(tokens) and all(r["tokens_after_prefix"] <= r["tokens"] for r in rows)
    for start in (10, 15):  # a turn or a tail costs less than a prompt with the record
        other = [r["tokens"] for r in rows[start:start + 5]]
        assert other == sorted(other) and other[-1] < rows[5]["tokens"]
    assert all(0 <= r["overall"] <= 1 for r in rows)
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cache" / "frontier-held-3-2-1-record-once.sqlite").is_file()


def test_the_blank_from_the_response_alone_is_its_mean_loss_read_alone_with_its_end_token(tmp_path, tiny_model_dir):
    import torch

    from selectit.backends.hf import HFBackend

    bench = _bench()
    records = [{"id": str(i), "instruction": r["instruction"], "response": r["output"]}
               for i, r in enumerate(json.loads(DEMO.read_text())[:4])]
    backend = HFBackend.load(str(tiny_model_dir), dtype="float32")
    args = bench.parse_args(["--cache", str(tmp_path)])
    got = bench.alone_losses(args, backend, records, "toy")
    model = backend.model
    for r, loss in zip(records, got):
        ids = backend.encode_plain(r["response"]) + [backend.end_token()]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        # the first token has nothing before it (no BOS here): tokens 1.. are predicted from those before
        nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="mean")
        assert loss == pytest.approx(float(nll), abs=1e-5)
    assert (tmp_path / "frontier-toy.sqlite").is_file()
    np.testing.assert_array_equal(bench.alone_losses(args, backend, records, "toy"), got)  # read back from the store
