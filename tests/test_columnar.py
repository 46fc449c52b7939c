"""Parquet, CSV and datasets folders: read, score, select, written back in their own format; and the
streamed pipeline: chunked scoring gives the same bytes as one chunk, chunks of a file read alone."""

import json

import pytest

pa = pytest.importorskip("pyarrow")
import pyarrow.csv as pcsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from conftest import DEMO  # noqa: E402
from selectit import formats  # noqa: E402
from conftest import score_file  # noqa: E402
from selectit.jobs import select_run  # noqa: E402
from selectit.records import DataError  # noqa: E402

ALPACA = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hi in French.", "input": "", "output": "Bonjour – salut! ü"},
    {"instruction": "Name a colour, \"quoted\", with a comma\nand a newline.", "input": "", "output": "Blue"},
]
SHAREGPT = [
    {"id": "a1", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]},
    {"id": "a2", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"},
                                   {"from": "gpt", "value": "4"}]},
]


def _save(objs, path, container):
    table = pa.Table.from_pylist(objs)
    if container == "parquet":
        pq.write_table(table, path, row_group_size=2)  # several row groups: reads start mid-file
    elif container == "csv":
        pcsv.write_csv(table, path)
    else:
        import datasets

        datasets.Dataset(table).save_to_disk(str(path))
    return path


def _rows(path, container):
    return [r.raw for r in formats.read(path, container=container).records]


@pytest.mark.parametrize("container,name", [("parquet", "in.parquet"), ("csv", "in.csv"), ("hf", "in_ds")])
def test_round_trip(tmp_path, container, name):
    src = _save(ALPACA, tmp_path / name, container)
    ds = formats.read(src)
    assert (ds.container, ds.schema, len(ds)) == (container, "alpaca", 3)
    assert ds.records[0].instruction == "Add the numbers.\n2 and 3" and ds.records[0].response == "5"
    assert ds.records[2].instruction == ALPACA[2]["instruction"]  # quotes, comma, newline survive CSV
    out = tmp_path / f"out_{name}"
    formats.write(ds, [2, 0], out)
    assert _rows(out, container) == [ALPACA[2], ALPACA[0]]


@pytest.mark.parametrize("container,name", [("parquet", "c.parquet"), ("hf", "c_ds")])
def test_nested_conversations_round_trip(tmp_path, container, name):
    src = _save(SHAREGPT, tmp_path / name, container)
    ds = formats.read(src)
    assert ds.schema == "sharegpt" and [r.id for r in ds.records] == ["a1", "a2"]
    assert ds.records[1].response == "4"
    formats.write(ds, [1], tmp_path / f"out_{name}")
    assert _rows(tmp_path / f"out_{name}", container) == [SHAREGPT[1]]


def test_csv_cells_stay_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,input,output\nCount.,,12\n"Say ""hi"".",x,007\n', encoding="utf-8")
    recs = formats.read(path).records
    assert [r.raw for r in recs] == [{"instruction": "Count.", "input": "", "output": "12"},
                                     {"instruction": 'Say "hi".', "input": "x", "output": "007"}]


def test_bad_rows_are_named(tmp_path):
    rows = [ALPACA[0], {"instruction": "x", "input": "", "output": None}, ALPACA[1]]
    path = _save(rows, tmp_path / "bad.parquet", "parquet")
    with pytest.raises(DataError, match=r"1 bad record\(s\) as alpaca: record 1 \(row 1\) field 'output' is null"):
        formats.read(path)
    assert len(formats.read(path, skip_bad=True)) == 2


def test_folders_that_are_not_a_dataset(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ALPACA)})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="DatasetDict with splits"):
        formats.read(tmp_path / "dd")
    assert len(formats.read(tmp_path / "dd" / "train")) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        formats.read(tmp_path / "empty")
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(DataError, match="empty CSV"):
        formats.read(tmp_path / "x.csv")


def _demo(n):
    return json.loads(DEMO.read_text())[:n]


@pytest.mark.parametrize("container,name", [("parquet", "d.parquet"), ("csv", "d.csv"), ("hf", "d_ds")])
def test_score_and_select_columnar_like_jsonl(tmp_path, container, name):
    """The same records as JSONL and as parquet/CSV/datasets give the same scores.jsonl, byte for byte;
    the selection is written in the input's own format."""
    data = _demo(25)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps(o) + "\n" for o in data))
    src = _save(data, tmp_path / name, container)
    config = dict(backend="fake", num_prompts=3)
    score_file(jsonl, tmp_path / "ref", **config)
    score_file(src, tmp_path / "col", **config)
    assert (tmp_path / "col" / "scores.jsonl").read_bytes() == (tmp_path / "ref" / "scores.jsonl").read_bytes()
    sel = select_run(tmp_path / "col", fraction=0.2)
    ref = select_run(tmp_path / "ref", fraction=0.2)
    assert sel.output.name == ("selected" if container == "hf" else f"selected{src.suffix}")
    assert _rows(sel.output, container) == [data[i] for i in ref.indices]
    assert [json.loads(line) for line in ref.output.read_text().splitlines()] == [data[i] for i in ref.indices]


@pytest.mark.parametrize("container", ["jsonl", "json", "parquet"])
def test_chunked_scoring_is_byte_identical(tmp_path, container):
    """Scoring 7 records at a time gives the scores.jsonl of one chunk; a record repeated across chunks
    is run once (found in the store); blank lines and skipped bad records keep ids and alignment."""
    data = _demo(40)
    data = data + data[:5]  # duplicates in later chunks
    if container == "jsonl":
        src = tmp_path / "d.jsonl"
        lines = [json.dumps(o) for o in data]
        lines[10:10] = ["", '{"instruction": "no output"}']  # a blank line and a bad record
        src.write_text("\n".join(lines) + "\n")
    elif container == "json":
        src = tmp_path / "d.json"
        src.write_text(json.dumps(data[:10] + [{"instruction": "no output"}] + data[10:]))
    else:
        src = _save(data[:10] + [{"instruction": "no output", "output": None}] + data[10:], tmp_path / "d.parquet",
                    "parquet")
    a = score_file(src, tmp_path / "a", backend="fake", num_prompts=3, skip_bad=True)
    b = score_file(src, tmp_path / "b", backend="fake", num_prompts=3, chunk_size=7, skip_bad=True)
    assert (tmp_path / "a" / "scores.jsonl").read_bytes() == (tmp_path / "b" / "scores.jsonl").read_bytes()
    assert len(b.source.starts) == 7 and len(b.source) == 45 and len(b.source.rejects) == 1
    assert a.source.duplicate_ids == b.source.duplicate_ids == 0  # ids are positions here
    ids = [json.loads(line)["id"] for line in (tmp_path / "b" / "scores.jsonl").read_text().splitlines()]
    assert ids == list(range(10)) + list(range(11, 46))  # the bad record keeps its position
    # any chunk reads alone, from its own start
    assert [r.id for r in b.source.chunk(3)] == list(range(21, 28))
    from selectit.store import ScoreStore

    assert ScoreStore(tmp_path / "b" / "store.sqlite").count() == 40 * 3  # duplicates stored once


@pytest.mark.parametrize("keep_order", [False, True])
def test_streamed_selection_matches_in_memory_write(tmp_path, keep_order):
    data = _demo(30)
    for container in ("json", "jsonl"):
        src = tmp_path / f"d.{container}"
        src.write_text(json.dumps(data, indent=1) if container == "json"
                       else "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in data))
        score_file(src, tmp_path / container, backend="fake", chunk_size=4)
        sel = select_run(tmp_path / container, fraction=0.5, keep_order=keep_order)
        expect = tmp_path / f"expect.{container}"
        formats.write(formats.read(src), sel.indices.tolist(), expect)
        assert sel.output.read_bytes() == expect.read_bytes()


def test_cli_parquet_run_with_chunks_and_container_override(tmp_path):
    import subprocess
    import sys

    data = _demo(12)
    src = _save(data, tmp_path / "data.bin", "parquet")  # an unknown suffix: --container says what it is
    res = subprocess.run([sys.executable, "-m", "selectit", "run", src, "--out", tmp_path / "run", "--backend", "fake",
                          "--container", "parquet", "--chunk-size", "5", "--top", "3"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "selected 3 of 12" in res.stderr
    assert len(_rows(tmp_path / "run" / "selected.parquet", "parquet")) == 3
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["config"]["execution"]["chunk_size"] == 5 and cfg["input"]["container"] == "parquet"
    res = subprocess.run([sys.executable, "-m", "selectit", "score", src, "--out", tmp_path / "x", "--backend", "fake",
                          "--chunk-size", "0"], capture_output=True, text=True)
    assert res.returncode == 2 and "--chunk-size must be >= 1" in res.stderr
