"""Columnar containers through pyarrow: parquet, CSV, and a Hugging Face ``datasets`` folder
(``Dataset.save_to_disk``: Arrow stream files listed in its state.json).

Read in Arrow batches, one batch of rows at a time as dicts (memory stays one batch), yielding the
same (object, original text, where, problem) items as the JSON containers; ``where`` is 'row N'
(0-based). CSV cells are read as text, never type-guessed (an output "5" stays the string "5";
an empty cell is ""). The selection is written with the input's own schema (CSV: its columns).

pyarrow is imported here only (``pip install selectit[columnar]``); ``datasets`` only to write a
datasets folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from selectit.errors import optional_import
from selectit.records import DataError

BATCH_ROWS = 4096  # rows per Arrow batch read; the memory one read holds
_HF_STATE = "state.json"


def _pyarrow():
    return optional_import("pyarrow", "parquet, CSV and datasets folders need pyarrow", "columnar", DataError)


def detect_hf(path: Path) -> str:
    """'hf' for a folder written by ``Dataset.save_to_disk``; a clear error for any other folder."""
    if (path / _HF_STATE).is_file():
        return "hf"
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        raise DataError(f"{path}: is a DatasetDict with splits {splits}; pass one split's folder, e.g. {path / 'train'}")
    raise DataError(f"{path}: is a directory, expected a data file (.json, .jsonl, .parquet, .csv) "
                    "or a folder written by datasets' save_to_disk")


def _hf_files(path: Path) -> list[Path]:
    state = json.loads((path / _HF_STATE).read_text(encoding="utf-8"))
    return [path / f["filename"] for f in state.get("_data_files", [])]


def _batches(path: Path, container: str, start: int) -> Iterator[tuple[int, object]]:
    """(index of the batch's first row, RecordBatch) from the batch that holds row ``start`` on."""
    pa = _pyarrow()
    if container == "parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path)
        first, groups = 0, []
        for g in range(f.num_row_groups):
            rows = f.metadata.row_group(g).num_rows
            if first + rows > start or groups:
                groups.append(g)
            else:
                first += rows
        if groups:
            for batch in f.iter_batches(batch_size=BATCH_ROWS, row_groups=groups):
                yield first, batch
                first += batch.num_rows
        return
    if container == "csv":
        yield from _csv_batches(path)
        return
    first = 0
    for file in _hf_files(path):
        with pa.memory_map(str(file)) as source:
            for batch in pa.ipc.open_stream(source):
                yield first, batch
                first += batch.num_rows


def _csv_batches(path: Path) -> Iterator[tuple[int, object]]:
    pa = _pyarrow()
    import pyarrow.csv as pcsv

    with path.open(encoding="utf-8", newline="") as f:
        try:
            header = next(csv.reader(f), None)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start}); re-encode the file as UTF-8") from None
    if not header:
        raise DataError(f"{path}: empty CSV file (expected a header row, e.g. instruction,input,output)")
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
    first = 0
    with pcsv.open_csv(path, convert_options=options, read_options=pcsv.ReadOptions(block_size=1 << 22)) as reader:
        for batch in reader:
            yield first, batch
            first += batch.num_rows


def read_columnar(path: Path, container: str, start: int = 0) -> Iterator[tuple[int, tuple]]:
    """(row index, (object, None, 'row N', None)) for every row from ``start`` on."""
    pa = _pyarrow()
    try:
        for first, batch in _batches(path, container, start):
            if first + batch.num_rows <= start:
                continue
            skip = max(0, start - first)
            for i, obj in enumerate(batch.slice(skip).to_pylist(), start=first + skip):
                yield i, (obj, None, f"row {i}", None)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: cannot read as {container}: {str(e).splitlines()[0]}") from None


def schema_of(path: Path, container: str):
    """The Arrow schema rows are written back with."""
    _pyarrow()
    if container == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(path)
    return next(_batches(path, container, 0))[1].schema


def write_columnar(objs: Iterable[dict], path: Path, container: str, *, like: Path | None) -> None:
    """Write row dicts with the schema of ``like`` (the input), BATCH_ROWS at a time, atomically."""
    pa = _pyarrow()
    if like is None:
        raise DataError(f"writing {container} needs the input it came from (its schema)")
    schema = schema_of(like, container)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if container == "parquet":
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(tmp, schema)
    elif container == "csv":
        import pyarrow.csv as pcsv

        writer = pcsv.CSVWriter(str(tmp), schema)
    else:
        tmp.mkdir(exist_ok=True)
        writer = pa.ipc.new_stream(str(tmp / "data.arrow"), schema)
    with writer:
        rows: list[dict] = []
        for obj in objs:
            rows.append(obj)
            if len(rows) == BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        if rows or container == "csv":  # a CSV with no rows still gets its header
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    if container == "hf":
        _save_hf(tmp, like, path)
        return
    os.replace(tmp, path)


def _save_hf(tmp: Path, like: Path, path: Path) -> None:
    """Turn the Arrow file in ``tmp`` into a ``save_to_disk`` folder at ``path`` with the input's features."""
    datasets = optional_import("datasets", "writing a datasets folder needs datasets", "columnar", DataError)
    info = datasets.DatasetInfo.from_directory(str(like))
    final = path.with_name(path.name + ".new")
    shutil.rmtree(final, ignore_errors=True)
    datasets.Dataset.from_file(str(tmp / "data.arrow"), info=info, in_memory=False).save_to_disk(str(final))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(final, path)
    shutil.rmtree(tmp, ignore_errors=True)
