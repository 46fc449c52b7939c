"""bench/proxy.py at a toy size: a reference run of the tiny model (the default method), then the feature
ladder, the fits, the timing and the worst records all run and write their figures."""

import importlib.util
import json
import sys

import pytest

from conftest import DEMO, ROOT, score_file

pytest.importorskip("sklearn")


@pytest.mark.bench
def test_proxy_bench_toy(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(o) + "\n" for o in json.loads(DEMO.read_text())[:60]))
    score_file(data, tmp_path / "ref", models=(str(tiny_model_dir),), num_prompts=2)
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("proxy_bench", ROOT / "bench" / "proxy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--ref", str(tmp_path / "ref"), "--samples", "0.3,0.5", "--timing", "6", "--discrimination", "",
                "--seeds", "2", "--layers", "1"])
    out = capsys.readouterr().out
    assert "proxy vs the full default on 60 records" in out and "full default" in out and "most wrong" in out
    figures = json.loads((tmp_path / "ref" / "proxy_bench.json").read_text())
    assert set(figures["rungs"]) == {"ngrams", "token-embeddings", "early", "hidden", "early-likelihood", "likelihood"}
    assert -1 <= figures["term_spearman"]["early-likelihood"] <= 1
    assert figures["rungs"]["early"]["0.5"]["sample"] == 30 and len(figures["worst"]) == 8
    assert figures["seconds_per_record"]["full default"] > figures["seconds_per_record"]["token-embeddings"]
