"""bench/contaminate.py (issue 26): the kinds as specified, labels aligned with records, f respected, seeded
and nested; bench/health.py's checks."""

import collections
import importlib.util
import json
import random
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import contaminate  # noqa: E402
import health  # noqa: E402


@pytest.fixture(scope="module")
def pool():
    demo = json.loads((ROOT / "examples" / "alpaca_demo.json").read_text(encoding="utf-8"))
    return demo[:140]


def test_fraction_labels_and_equal_shares(pool):
    out, labels = contaminate.contaminate(pool, 0.5, seed=3)
    assert len(out) == len(labels) == len(pool)
    assert [lab["position"] for lab in labels] == list(range(len(pool)))
    counts = collections.Counter(lab["label"] for lab in labels)
    assert sum(v for k, v in counts.items() if k != "clean") == 70  # round(0.5 * 140)
    # Equal shares to within one record, but for wrong-numbers: only records with a number can have it.
    shares = [counts[k] for k in contaminate.KINDS if k != "wrong-numbers"]
    assert set(counts) == {"clean", *contaminate.KINDS} and max(shares) - min(shares) <= 1
    assert 0 < counts["wrong-numbers"] <= max(shares)
    for record, new, lab in zip(pool, out, labels):
        if lab["label"] == "clean":
            assert new == record
        elif lab["label"] != "flood":  # every other kind keeps the instruction and changes the answer
            assert (new["instruction"], new["input"]) == (record["instruction"], record["input"])
            assert new["output"] != record["output"]


def test_seeded_and_nested(pool):
    assert contaminate.contaminate(pool, 0.3, seed=1) == contaminate.contaminate(pool, 0.3, seed=1)
    assert contaminate.contaminate(pool, 0.3, seed=1) != contaminate.contaminate(pool, 0.3, seed=2)
    low, low_labels = contaminate.contaminate(pool, 0.3, seed=1)
    high, high_labels = contaminate.contaminate(pool, 0.6, seed=1)
    for i, lab in enumerate(low_labels):
        if lab["label"] != "clean":  # the junk of 0.3 is junk of 0.6, the same record
            assert high_labels[i] == lab and high[i] == low[i]
    assert contaminate.contaminate(pool, 0.0)[0] == pool


def test_each_kind_is_what_it_says(pool):
    out, labels = contaminate.contaminate(pool, 0.9, seed=0)
    sources = {lab["source"] for lab in labels if lab["label"] == "flood"}
    assert 1 <= len(sources) <= contaminate.FLOOD_SOURCES
    for record, new, lab in zip(pool, out, labels):
        kind, answer = lab["label"], new["output"]
        if kind == "swap":
            assert lab["source"] != lab["position"] and answer == pool[lab["source"]]["output"]
        elif kind == "flood":
            assert labels[lab["source"]]["label"] == "clean"  # the copied record stays, clean
            src = pool[lab["source"]]
            assert new["instruction"] == src["instruction"] and answer != src["output"]
            assert len(answer.split()) == len(src["output"].split()) or len(src["output"].split()) == 1
        elif kind == "wrong-numbers":
            old, now = contaminate.numbers(record["output"]), contaminate.numbers(answer)
            assert len(old) == len(now) >= 1 and all(a.group(0) != b.group(0) for a, b in zip(old, now))
        elif kind == "mojibake":
            assert health.MOJIBAKE.search(answer)
        elif kind == "low-effort":
            assert answer in contaminate.LOW_EFFORT
        elif kind == "template":
            assert health.TEMPLATE.search(answer)
        elif kind == "cutoff":
            words, cut = record["output"].split(), answer.split()
            assert record["output"].startswith(answer) and 0.5 * len(words) - 2 <= len(cut) < len(words)
            assert answer[-1] not in ".!?:;"


def test_defects_on_known_text():
    rng = random.Random(0)
    assert contaminate.wrong_numbers("1. Car\n2. Bus seats 40", rng).startswith("1. Car\n2. Bus seats ")
    assert "40" not in contaminate.wrong_numbers("It seats 40.", rng)
    assert contaminate.wrong_number("1,250", rng).count(",") == 1 and contaminate.wrong_number("3.5", rng) != "3.5"
    broken = contaminate.mojibake("It's a \"test\" - done...", random.Random(1))
    assert "â€™" in broken and "â€œ" in broken
    assert not contaminate.applicable("wrong-numbers", {"output": "No numbers here."})
    assert not contaminate.applicable("cutoff", {"output": "Too short."})


def test_written_pool_and_labels(tmp_path, pool):
    out, labels = contaminate.contaminate(pool[:20], 0.5)
    contaminate.write(out, labels, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8")) == out
    assert contaminate.read_labels(tmp_path / "p.json") == [lab["label"] for lab in labels]


@pytest.mark.parametrize("answer,found", [
    ("", {"empty", "short"}), ("Sure.", {"short"}),
    ("The cat sat on the mat and the cat sat on the mat and the cat sat on the mat.", {"repeats"}),
    ("It\u00e2\u20ac\u2122s a fine day for a walk in the park.", {"mojibake"}),
    ("A fine day\x07 for a walk in the park.", {"mojibake"}),
    ("<No Output> for this one, sorry about that.", {"template"}), ("https://example.com/a", {"short", "template"}),
    ("Paris is the capital and largest city of France.", set()),
])
def test_health_checks(answer, found):
    assert health.problems(answer) == found


def test_health_shares():
    s = health.shares(["", "Paris is the capital and largest city of France."])
    assert s["empty"] == 0.5 and s["unhealthy"] == 0.5 and s["mojibake"] == 0.0


def load_proof():
    spec = importlib.util.spec_from_file_location("proof", ROOT / "bench" / "proof.py")
    proof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(proof)
    return proof


def test_auroc_and_bootstrap():
    import numpy as np

    proof = load_proof()
    s = np.array([3.0, 2.0, 1.0, np.nan])
    assert proof.auroc(s, np.array([True, True, False, False])) == 1.0
    assert proof.auroc(s, np.array([False, False, True, True])) == 0.0
    assert proof.auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    a, b, c = np.full(50, 2.0), np.full(50, 1.5), np.full(50, 1.0)
    out = proof.bootstrap(a, b, c, reps=200)
    assert out["diff"] == pytest.approx(0.5) and out["R"] == pytest.approx(0.5)
    assert out["diff_ci"] == pytest.approx([0.5, 0.5]) and out["R_ci"] == pytest.approx([0.5, 0.5])


@pytest.mark.embedded
@pytest.mark.bench
def test_proof_toy_runs_every_stage_and_resumes(tmp_path, bench_data, capsys):
    """Purity and fine-tune stages at toy size on the embedded model; a second run does no new work."""
    pytest.importorskip("if_verifiable", reason="needs the bench extra: pip install -e .[bench]")
    proof = load_proof()
    common = ["--toy", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "res"), "--data", str(bench_data)]
    proof.main(["purity", *common])
    purity = proof.read_rows(tmp_path / "res" / "proof_purity.jsonl")
    assert [(r["pool"], r["level"], r["method"]) for r in purity] == [(12, 0.5, m) for m in ("selectit", "length", "random")]
    for r in purity:
        assert r["selected"] == 2 and 0 <= r["junk"] <= 1 and 0 <= r["auroc"] <= 1
        assert sum(r["kinds"].values()) == pytest.approx(r["junk"])
    proof.main(["finetune", *common])
    rows = proof.read_rows(tmp_path / "res" / "proof_finetune.jsonl")
    assert sorted((r["arm"], r["seed"]) for r in rows) == [
        ("base", 0), ("full", 0), ("oracle", 0), ("random", 0), ("random", 1), ("selectit", 0)]
    by = {(r["arm"], r["seed"]): r for r in rows}
    assert by[("oracle", 0)]["junk"] == 0 and by[("full", 0)]["junk"] == 0.5 and by[("full", 0)]["selected"] == 12
    assert by[("random", 0)]["positions"] != by[("random", 1)]["positions"]
    for r in rows:
        assert len(r["per_item"]["heldout_alpaca"]) == 4 and set(r["eval"]["health"]) == {*health.CHECKS, "unhealthy"}
    assert "pre-registered test" in capsys.readouterr().out
    before = [(p.name, p.stat().st_mtime_ns) for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()]
    proof.main(["finetune", *common])
    proof.main(["purity", *common])
    after = [(p.name, p.stat().st_mtime_ns) for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()]
    assert after == before  # nothing scored, trained or written again
    assert len(proof.read_rows(tmp_path / "res" / "proof_finetune.jsonl")) == 6
    assert len(proof.read_rows(tmp_path / "res" / "proof_purity.jsonl")) == 3
    # the fifth step's arm: the default's scores (already scored) through select --length-neutral --dedup
    args = proof.parse_args(["finetune", *common])
    chosen = proof.arm_selection(args, "selectit-neutral", 0, 0.5)
    assert len(chosen) == len(set(chosen)) == 2 and set(chosen) <= set(range(12))
    policy = json.loads((tmp_path / "out" / "runs" / "pool12_f0.5" / "selectit" / "selection.json").read_text())["policy"]
    assert policy["length_neutral"] is True and policy["dedup_threshold"] == 0.5


def test_length_matched_selection_keeps_the_pools_lengths():
    import numpy as np

    proof = load_proof()
    lengths = np.arange(100)  # strata of 20: lengths 0-19, 20-39, ...
    scores = lengths.astype(float)  # the longest would win a plain top-k
    scores[5] = np.nan
    chosen = proof.length_matched(scores, lengths, 10)
    assert len(chosen) == 10 and 5 not in chosen
    assert sorted(chosen) == [18, 19, 38, 39, 58, 59, 78, 79, 98, 99]  # two of each stratum, its best
    assert chosen[0] == 99  # best first


def test_the_post_hoc_arm_is_accepted_by_name_and_not_run_by_default():
    proof = load_proof()
    assert proof.parse_args(["finetune", "--arms", "selectit-lenmatched"]).arms == ["selectit-lenmatched"]
    assert "selectit-lenmatched" not in proof.parse_args(["finetune"]).arms
    with pytest.raises(SystemExit):
        proof.parse_args(["finetune", "--arms", "selectit-lenmatch"])


def test_a_further_seed_of_a_scored_arm_trains_on_its_first_rows_positions():
    proof = load_proof()
    rows = [{"level": 0.3, "arm": "selectit", "seed": 0, "positions": [4, 1]},
            {"level": 0.3, "arm": "selectit", "seed": 1, "positions": [4, 2]},
            {"level": 0.6, "arm": "selectit-neutral", "seed": 0, "positions": [3]},
            {"level": 0.3, "arm": "random", "seed": 0, "positions": [0, 1]},
            {"level": 0.3, "arm": "oracle", "seed": 0, "positions": [5, 6]},
            {"level": 0.0, "arm": "base", "seed": 0}]
    assert proof.first_positions(rows) == {(0.3, "selectit"): [4, 1], (0.6, "selectit-neutral"): [3]}
