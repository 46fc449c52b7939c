"""Every format round-trips: read, select, write, and each written record equals its input."""

import json

import pytest

from selectit import formats
from selectit.records import DataError

ALPACA = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "extra": [1, {"k": "v"}]},
    {"instruction": "Say hi in French.", "input": "", "output": "Bonjour – salut! ü"},
    {"instruction": "Name a colour.", "output": "Blue"},
]
SHAREGPT = [
    {"id": "a1", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]},
    {"id": "a2", "conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"},
        {"from": "gpt", "value": "4"}, {"from": "human", "value": "and 3+3?"}, {"from": "gpt", "value": "6"}]},
]
MESSAGES = [
    {"messages": [{"role": "user", "content": "Capital of Peru?"}, {"role": "assistant", "content": "Lima."}]},
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hey."}], "meta": {"src": "x"}},
]


def _dump(objs, path, container):
    if container == "json":
        path.write_text(json.dumps(objs, indent=1, ensure_ascii=False))
    else:  # odd spacing on purpose: JSONL lines are copied byte for byte
        path.write_text("".join(json.dumps(o, ensure_ascii=False, separators=(", ", ":")) + "\n" for o in objs))


@pytest.mark.parametrize("objs,schema", [(ALPACA, "alpaca"), (SHAREGPT, "sharegpt"), (MESSAGES, "messages")])
@pytest.mark.parametrize("container", ["json", "jsonl"])
def test_round_trip(tmp_path, objs, schema, container):
    src = tmp_path / f"in.{container}"
    _dump(objs, src, container)
    ds = formats.read(src)
    assert (ds.schema, ds.container, len(ds)) == (schema, container, len(objs))
    picked = [len(objs) - 1, 0]
    out = tmp_path / f"out.{container}"
    formats.write(ds, picked, out)
    if container == "json":
        assert json.loads(out.read_text()) == [objs[i] for i in picked]
    else:
        src_lines = src.read_text().splitlines()
        assert out.read_text().splitlines() == [src_lines[i] for i in picked]


def test_record_fields():
    recs = formats.from_dicts(ALPACA)
    assert [r.id for r in recs] == [0, 1, 2]
    assert recs[0].instruction == "Add the numbers.\n2 and 3"  # input appended after a newline
    assert recs[1].instruction == "Say hi in French."  # empty input: nothing appended
    conv = formats.from_dicts(SHAREGPT)
    assert conv[0].id == "a1" and conv[0].instruction == "Hi?" and conv[0].response == "Hello."
    assert conv[1].response == "6"
    assert conv[1].instruction == "System: Be brief.\n\nUser: 2+2?\n\nAssistant: 4\n\nUser: and 3+3?"
    msgs = formats.from_dicts(MESSAGES)
    assert msgs[0].instruction == "Capital of Peru?" and msgs[1].instruction.startswith("System: You are terse.")


def test_real_alpaca_demo_reads(alpaca_records):
    recs = formats.from_dicts(alpaca_records)
    assert len(recs) == 200 and all(r.response for r in recs)


@pytest.mark.parametrize("obj,reason", [
    ({"instruction": "x"}, "output"),
    ({"instruction": "x", "output": ""}, "empty"),
    ({"instruction": "x", "output": 5}, "expected a string"),
    ({"conversations": [{"from": "human", "value": "hi"}]}, "no response"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}, "empty response"),
])
def test_bad_records_name_the_record_and_reason(obj, reason):
    with pytest.raises(DataError, match=reason) as e:
        formats.from_dicts([{"instruction": "ok", "output": "fine"}, obj] if "instruction" in obj else [obj])
    assert "record" in str(e.value)


@pytest.mark.parametrize("name,content,match", [
    ("empty.json", b"[]", "empty"),
    ("data.json", json.dumps([{"question": "a", "answer": "b"}]).encode(), "cannot tell the record format"),
    ("bad.jsonl", b'{"instruction": "a", "output": "b"}\n{oops\n', "line 2"),
    ("latin.jsonl", b'{"instruction": "caf\xe9", "output": "b"}\n', "UTF-8"),
    ("data.txt", b"hello", "unknown format"),
])
def test_file_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        formats.read(path)


def test_missing_file_and_unknown_format_flag(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        formats.read(tmp_path / "missing.json")
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    with pytest.raises(DataError, match="unknown format"):
        formats.read(path, schema="csv")


@pytest.mark.parametrize("block", [3, 7, 1 << 20])
def test_json_array_streams_and_resumes_at_any_element(tmp_path, monkeypatch, block):
    """A JSON array is read element by element (blocks as small as 3 bytes here, so values, numbers and
    UTF-8 characters cross block edges); a read can start again at any element's cursor."""
    from selectit.formats.containers import read_positioned
    from selectit.formats.jsonarray import _JsonArray

    monkeypatch.setattr(_JsonArray, "BLOCK", block)
    objs = [{"i": i, "t": "é✓" * (i % 4), "n": 12345678901234 + i} for i in range(30)] + [[1, 2], 5]
    path = tmp_path / "a.json"
    for indent in (None, 2):
        path.write_text(json.dumps(objs, indent=indent, ensure_ascii=False), encoding="utf-8")
        items = list(read_positioned(path, "json"))
        assert [obj for _, (obj, *_) in items[:30]] == objs[:30]
        assert [json.loads(text) for _, (_, text, *_) in items] == objs  # each element's own text, cut nowhere
        assert [item[3] for _, item in items[30:]] == ["is a JSON list, expected an object",
                                                       "is a JSON int, expected an object"]
        for k in (1, 17, 31):
            assert [item for _, item in read_positioned(path, "json", items[k][0])] == [item for _, item in items[k:]]


@pytest.mark.parametrize("text,match", [
    ("", "Expecting value, line 1 column 1"), ("[{}", "line 1 column 4"), ("[{},]", "Expecting value, line 1 column 5"),
    ("[] x", "Extra data, line 1 column 4"), ('[\n{"a": tru}]', "line 2 column 7"),
    ('{\n  "a": 1\n}', "expected a JSON array of records, got a JSON dict; .* pass --container jsonl"),
])
def test_json_array_errors_name_the_place(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        formats.read(path)
