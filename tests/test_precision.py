"""--dtype auto (issue 17): bfloat16 where the hardware runs it natively, float32 elsewhere; the
published method float32 whatever the hardware; config.json says what was chosen and why."""

import json

import pytest

from conftest import score_file
from selectit.backends import precision


def test_auto_on_a_cpu_with_and_without_native_bfloat16():
    assert precision.choose("cpu", flags={"avx2", "avx512f", "avx512_bf16"})[0] == "bfloat16"
    assert precision.choose("cpu", flags={"amx_bf16", "amx_tile"}) == (
        "bfloat16", "the CPU has amx_bf16 (native bfloat16 matrix products)")
    dtype, why = precision.choose("cpu", flags={"avx2", "avx512f"})
    assert dtype == "float32" and "no AVX512-BF16 or AMX" in why
    assert precision.choose("cpu", flags=set())[0] == "float32"


def test_auto_on_a_gpu_and_the_override():
    assert precision.choose("cuda", cuda_bf16=True)[0] == "bfloat16"
    assert precision.choose("cuda", cuda_bf16=False)[0] == "float32"
    assert precision.choose("cpu", flags={"avx2"}, env="1") == ("bfloat16", "SELECTIT_BF16=1")
    assert precision.choose("cpu", flags={"avx512_bf16"}, env="0")[0] == "float32"
    assert precision.choose("cpu", flags={"avx512_bf16"}, env="maybe")[0] == "bfloat16"  # not 0/1: detected


def test_cpu_flags_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx512_bf16 avx2\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(info) == {"fpu", "sse", "avx512_bf16", "avx2"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


def test_explicit_dtypes_and_the_published_method():
    assert precision.resolve("bfloat16", "cpu") == ("bfloat16", "--dtype bfloat16")
    from selectit.methods import METHODS

    assert [name for name, m in METHODS.items() if m.exact] == ["paper", "reference"]  # the published computations
    assert precision.for_method("auto", "paper", True) == ("float32", "--method paper is the published computation: float32")
    assert precision.for_method("auto", "selectit", False) == ("auto", None)
    assert precision.for_method("bfloat16", "paper", True) == ("bfloat16", None)  # asked for: honoured


@pytest.mark.parametrize("flag, want", [("1", "bfloat16"), ("0", "float32")])
def test_config_json_says_what_auto_chose_and_why(tmp_path, tiny_model_dir, monkeypatch, flag, want):
    monkeypatch.setenv("SELECTIT_BF16", flag)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi there."}) + "\n")
    score_file(data, tmp_path / "run", models=(str(tiny_model_dir),), num_prompts=2)
    model = json.loads((tmp_path / "run" / "config.json").read_text())["models"][0]
    assert model["dtype"] == want and model["dtype_reason"] == f"SELECTIT_BF16={flag}"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["model"]["dtype"] == "auto"
    score_file(data, tmp_path / "paper", models=(str(tiny_model_dir),), method="paper", num_prompts=2)
    paper = json.loads((tmp_path / "paper" / "config.json").read_text())["models"][0]
    assert paper["dtype"] == "float32" and "published computation" in paper["dtype_reason"]
