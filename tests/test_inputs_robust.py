"""Inputs users have (issue 20, cases 4-8 and 10): compressed files, a byte-order mark, JSON Lines in a
.json file, CRLF line endings, null fields, and a selection named for another container."""

import bz2
import csv
import gzip
import io
import json

import numpy as np
import pytest

from selectit import formats
from selectit.records import DataError

try:
    import zstandard
except ImportError:
    zstandard = None
try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    pa = pq = None

needs_zstd = pytest.mark.skipif(zstandard is None, reason="needs zstandard")
needs_arrow = pytest.mark.skipif(pa is None, reason="needs pyarrow (pip install 'selectit[columnar]')")
KINDS = ["gzip", "bz2", pytest.param("zstd", marks=needs_zstd)]
TEXT_CONTAINERS = ["json", "jsonl", pytest.param("csv", marks=needs_arrow)]

ALPACA = [{"instruction": f"Task {i}: name a fruit – é.", "input": "" if i % 2 else f"x{i}", "output": f"Apple {i}."}
          for i in range(10)]
SHAREGPT = [{"id": "c1", "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]}]
COMPRESS = {"gzip": (".gz", gzip.compress, gzip.decompress),
            "bz2": (".bz2", bz2.compress, bz2.decompress),
            "zstd": (".zst", lambda b: zstandard.ZstdCompressor().compress(b),
                     lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b))}
BOM = b"\xef\xbb\xbf"


def _bytes(objs, container):
    if container == "json":
        return json.dumps(objs, indent=2, ensure_ascii=False).encode()
    if container == "jsonl":
        return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode()
    sink = io.StringIO()
    writer = csv.DictWriter(sink, fieldnames=list(objs[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(objs)
    return sink.getvalue().encode()


def _raws(source):
    return [r.raw for r in source.records()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("container", TEXT_CONTAINERS)
def test_compressed_input_is_read_in_chunks_and_written_back_compressed(tmp_path, kind, container):
    """Case 4: a compressed file reads as its plain twin, any chunk on its own (a cursor is an offset into
    the decompressed bytes), and the selection is written with the same compression and container."""
    suffix, compress, decompress = COMPRESS[kind]
    plain = tmp_path / f"d.{container}"
    plain.write_bytes(_bytes(ALPACA, container))
    packed = tmp_path / f"d.{container}{suffix}"
    packed.write_bytes(compress(plain.read_bytes()))
    a, b = formats.scan(plain, chunk_size=3), formats.scan(packed, chunk_size=3)
    assert (b.container, b.schema, len(b)) == (container, "alpaca", 10) and _raws(b) == _raws(a)
    for k in range(len(b.starts)):
        assert [r.raw for r in b.chunk(k)] == [r.raw for r in a.chunk(k)]
    assert formats.selection_suffix(b) == f".{container}{suffix}"
    picked = np.array([7, 2, 5])
    formats.write_selection(a, picked, tmp_path / f"sel.{container}")
    formats.write_selection(b, picked, tmp_path / f"sel{formats.selection_suffix(b)}")
    written = (tmp_path / f"sel.{container}{suffix}").read_bytes()
    assert written[:4].startswith(formats.compression.MAGIC[kind])
    assert decompress(written) == (tmp_path / f"sel.{container}").read_bytes()


def test_compressed_input_whatever_its_name_or_container_flag(tmp_path):
    """Case 4: compression is told by the file's first bytes: --container jsonl on a .gz reads it (it
    said "not UTF-8"), and a .gz without an inner suffix is sniffed; a plain file named .gz reads too."""
    data = _bytes(ALPACA, "jsonl")
    (tmp_path / "data.bin").write_bytes(gzip.compress(data))
    assert len(formats.read(tmp_path / "data.bin", container="jsonl")) == 10
    (tmp_path / "data.gz").write_bytes(gzip.compress(data))
    assert formats.read(tmp_path / "data.gz").container == "jsonl"
    (tmp_path / "plain.jsonl.gz").write_bytes(data)
    assert len(formats.read(tmp_path / "plain.jsonl.gz")) == 10
    (tmp_path / "arr.json.bz2").write_bytes(bz2.compress(_bytes(ALPACA, "json")))
    assert formats.read(tmp_path / "arr.json.bz2").container == "json"


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_compressed_input_is_one_line(tmp_path, kind):
    suffix, compress, _ = COMPRESS[kind]
    path = tmp_path / f"d.jsonl{suffix}"
    whole = compress(_bytes(ALPACA * 50, "jsonl"))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=f"d.jsonl{suffix}: the {kind} stream is damaged or cut short") as e:
        formats.scan(path)
    assert "\n" not in str(e.value)


@needs_arrow
def test_compressed_parquet_is_refused_in_and_out(tmp_path):
    pq.write_table(pa.Table.from_pylist(ALPACA), tmp_path / "d.parquet")
    (tmp_path / "d.parquet.gz").write_bytes(gzip.compress((tmp_path / "d.parquet").read_bytes()))
    with pytest.raises(DataError, match="compressed parquet file; .* decompress it first"):
        formats.scan(tmp_path / "d.parquet.gz")
    source = formats.scan(tmp_path / "d.parquet")
    with pytest.raises(DataError, match="parquet output cannot be gzip-compressed"):
        formats.write_selection(source, np.array([0]), tmp_path / "sel.parquet.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet", "d.parquet.gz"]


@pytest.mark.parametrize("container", TEXT_CONTAINERS)
def test_byte_order_mark_is_accepted_and_kept(tmp_path, container):
    """Case 5: a UTF-8 byte-order mark before JSON, JSON Lines or a CSV header is not part of the first
    record (JSON said "Expecting value, line 1 column 1"); a selection in the same container keeps it."""
    path = tmp_path / f"bom.{container}"
    path.write_bytes(BOM + _bytes(ALPACA, container))
    ds = formats.read(path)
    assert [r.raw for r in ds.records] == ALPACA
    assert not (ds.records[0].raw_text or "").startswith("\ufeff")
    formats.write(ds, [0, 1], tmp_path / f"sel.{container}")
    assert (tmp_path / f"sel.{container}").read_bytes().startswith(BOM)
    assert [r.raw for r in formats.read(tmp_path / f"sel.{container}").records] == ALPACA[:2]
    formats.write(ds, [0, 1], tmp_path / "other.jsonl" if container != "jsonl" else tmp_path / "other.json")
    other = next(p for p in tmp_path.iterdir() if p.stem == "other")
    assert not other.read_bytes().startswith(BOM)  # another container: the mark was the input's


def test_bom_does_not_shift_json_error_columns(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(BOM + b"[{}")
    with pytest.raises(DataError, match="line 1 column 4"):
        formats.read(path)


def test_json_lines_in_a_json_file(tmp_path):
    """Case 6: JSON Lines named .json is read as JSON Lines (its first line is a whole object), and its
    selection under the same suffix stays JSON Lines, byte for byte; what cannot be told says which flag."""
    path = tmp_path / "data.json"
    path.write_bytes(_bytes(ALPACA, "jsonl"))
    source = formats.scan(path)
    assert source.container == "jsonl" and len(source) == 10
    formats.write_selection(source, np.array([3, 1]), tmp_path / f"sel{formats.selection_suffix(source)}")
    lines = path.read_bytes().splitlines(keepends=True)
    assert (tmp_path / "sel.json").read_bytes() == lines[3] + lines[1]

    path.write_text('{\n  "instruction": "a",\n  "output": "b"\n}\n')  # one object, not an array
    with pytest.raises(DataError, match="expected a JSON array of records, got a JSON dict; .* --container jsonl"):
        formats.read(path)
    path.write_bytes(_bytes(ALPACA, "jsonl"))
    with pytest.raises(DataError, match="--container jsonl"):
        formats.read(path, container="json")
    arr = tmp_path / "arr.jsonl"
    arr.write_bytes(_bytes(ALPACA, "json"))
    with pytest.raises(DataError, match="looks like a JSON array: pass --container json"):
        formats.read(arr)


def test_crlf_lines_survive_selection_byte_for_byte(tmp_path):
    """Case 7: each JSON Lines record is copied with its own line ending; a last line without one gets
    the ending of the line before it."""
    lines = [json.dumps(o, ensure_ascii=False).encode() for o in ALPACA[:4]]
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(lines[0] + b"\r\n" + lines[1] + b"\r\n\r\n" + lines[2] + b"\n" + lines[3])
    source = formats.scan(path)
    formats.write_selection(source, np.array([3, 0, 2, 1]), tmp_path / "sel.jsonl")
    assert (tmp_path / "sel.jsonl").read_bytes() == (lines[3] + b"\n" + lines[0] + b"\r\n" + lines[2] + b"\n"
                                                     + lines[1] + b"\r\n")
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(line + b"\r\n" for line in lines))
    formats.write(formats.read(whole), range(4), tmp_path / "all.jsonl")
    assert (tmp_path / "all.jsonl").read_bytes() == whole.read_bytes()


def test_json_array_elements_are_copied_byte_for_byte(tmp_path):
    """Case 7: a JSON array's elements keep their spacing, escapes and number spelling; the array around
    them follows the input's indentation, so all records in order give the input back (plus a newline)."""
    objs = [{"instruction": 'café "q"', "output": "x", "n": "1.0"}] + ALPACA[:3]
    # ASCII escapes (\u00e9) and a number spelt as json.dumps(ensure_ascii=False) would never write them
    text = json.dumps(objs, indent=4).replace('"1.0"', "1.0e0")
    path = tmp_path / "a.json"
    path.write_text(text)
    ds = formats.read(path)
    formats.write(ds, range(4), tmp_path / "all.json")
    assert (tmp_path / "all.json").read_text() == text + "\n"
    formats.write(ds, [2, 0], tmp_path / "two.json")
    elements = [text[text.index("{", 1):text.index("}") + 1]]
    assert elements[0] in (tmp_path / "two.json").read_text() and "1.0e0" in elements[0]
    compact = tmp_path / "c.json"
    compact.write_text(json.dumps(objs, separators=(",", ":")))
    formats.write(formats.read(compact), range(4), tmp_path / "c_all.json")
    assert (tmp_path / "c_all.json").read_text() == compact.read_text() + "\n"


@pytest.mark.parametrize("obj,reason", [
    ({"instruction": "x", "output": None}, "field 'output' is null"),
    ({"instruction": None, "output": "y"}, "field 'instruction' is null"),
    ({"instruction": "x", "input": "y"}, "has no 'output' field"),
    ({"conversations": None}, "field 'conversations' is null"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": None}]},
     "turn 1 field 'value' is null"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt"}]}, "turn 1 has no 'value' field"),
    ({"messages": [{"role": None, "content": "hi"}]}, "turn 0 field 'role' is null"),
])
def test_null_fields_are_called_null(obj, reason):
    """Case 8: a null field is named null, a missing one missing; a null ``input`` is an empty one."""
    schema = "alpaca" if "instruction" in obj else None  # a lone instruction cannot tell its format
    with pytest.raises(DataError, match=reason):
        formats.from_dicts([obj], schema=schema)
    assert formats.from_dicts([{"instruction": "x", "input": None, "output": "y"}])[0].instruction == "x"


def _read_back(path):
    return [r.raw for r in formats.read(path).records]


@needs_arrow
@needs_zstd
def test_selection_is_written_in_the_container_its_name_asks_for(tmp_path):
    """Case 10: from a JSON Lines input, sel.csv is CSV, sel.parquet parquet, sel.json a JSON array,
    sel.jsonl.gz compressed JSON Lines; a name that names no container keeps the input's."""
    path = tmp_path / "d.jsonl"
    path.write_bytes(_bytes(ALPACA, "jsonl"))
    source, picked = formats.scan(path), np.array([4, 1, 8])
    want = [ALPACA[i] for i in picked]
    for name in ("sel.csv", "sel.parquet", "sel.json", "sel.jsonl.gz", "sel.csv.zst"):
        formats.write_selection(source, picked, tmp_path / name)
        assert _read_back(tmp_path / name) == want, name
    assert pq.read_table(tmp_path / "sel.parquet").column_names == ["instruction", "input", "output"]
    formats.write_selection(source, picked, tmp_path / "sel.txt")
    assert formats.read(tmp_path / "sel.txt", container="jsonl").records[0].raw == want[0]
    formats.write_selection(source, picked, tmp_path / "forced.out", container="json")
    assert json.loads((tmp_path / "forced.out").read_text()) == want


@needs_arrow
def test_columnar_inputs_convert_to_json_and_between_themselves(tmp_path):
    pq.write_table(pa.Table.from_pylist(SHAREGPT * 3), tmp_path / "c.parquet")
    source = formats.scan(tmp_path / "c.parquet")
    formats.write_selection(source, np.array([2, 0]), tmp_path / "c.jsonl")
    assert _read_back(tmp_path / "c.jsonl") == SHAREGPT * 2
    (tmp_path / "d.csv").write_bytes(_bytes(ALPACA, "csv"))
    formats.write_selection(formats.scan(tmp_path / "d.csv"), np.array([0, 9]), tmp_path / "d.parquet")
    assert _read_back(tmp_path / "d.parquet") == [ALPACA[0], ALPACA[9]]


@needs_arrow
def test_what_cannot_be_written_faithfully_is_refused_before_writing(tmp_path):
    """Case 10: conversations are not CSV; a field of two types is not parquet; binary values are not
    JSON; a datasets folder only comes from one. One line each, naming the output; nothing written."""
    path = tmp_path / "c.jsonl"
    path.write_bytes(_bytes(SHAREGPT * 2, "jsonl"))
    source = formats.scan(path)
    with pytest.raises(DataError, match=r"sel.csv: CSV holds flat text fields, and field 'conversations' .* is nested"):
        formats.write_selection(source, np.array([1, 0]), tmp_path / "sel.csv")
    mixed = tmp_path / "m.jsonl"
    mixed.write_text(json.dumps({"id": 1, **ALPACA[0]}) + "\n" + json.dumps({"id": "b", **ALPACA[1]}) + "\n")
    with pytest.raises(DataError, match="sel.parquet: the records cannot be written as parquet"):
        formats.write_selection(formats.scan(mixed), np.array([0, 1]), tmp_path / "sel.parquet")
    pq.write_table(pa.Table.from_pylist([{**ALPACA[0], "blob": b"\x00\x01"}]), tmp_path / "b.parquet")
    with pytest.raises(DataError, match="sel.jsonl: a record cannot be written as JSON"):
        formats.write_selection(formats.scan(tmp_path / "b.parquet"), np.array([0]), tmp_path / "sel.jsonl")
    with pytest.raises(DataError, match="a datasets folder can be written from a datasets folder only"):
        formats.write_selection(source, np.array([0]), tmp_path / "sel", container="hf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.parquet", "c.jsonl", "m.jsonl"]
