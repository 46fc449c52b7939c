"""Columnar containers through pyarrow: parquet, CSV, and a Hugging Face ``datasets`` folder
(``Dataset.save_to_disk``: Arrow stream files listed in its state.json).

Read in Arrow batches, one batch of rows at a time as dicts (memory stays one batch), yielding the
same (object, original text, where, problem) items as the JSON containers; ``where`` is 'row N'
(0-based). CSV cells are read as text, never type-guessed (an output "5" stays the string "5";
an empty cell is ""). The selection is written with the input's own schema (CSV: its columns), or
with one inferred from the records when they come from JSON (see writers.py). A CSV file may be
compressed (read through compression.py); parquet may not.

pyarrow is imported here only (``pip install selectit[columnar]``); ``datasets`` only to write a
datasets folder.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from selectit.atomic import atomic_dir, atomic_open
from selectit.errors import optional_import
from selectit.formats import compression
from selectit.records import DataError

if TYPE_CHECKING:
    from selectit.formats.writers import Target

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
        raise DataError(f"{path}: is a DatasetDict with splits {splits}; "
                        f"pass one split's folder, e.g. {path / 'train'}")
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

        if compression.detect(path):
            raise DataError(f"{path}: a compressed parquet file; parquet compresses its own columns and needs "
                            "random access: decompress it first")
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


def _csv_header(path: Path) -> list[str]:
    """The header row (a byte-order mark before it is not part of the first name)."""
    with io.TextIOWrapper(compression.open_read(path), encoding="utf-8-sig", newline="") as f:
        try:
            header = next(csv.reader(f), None)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start}); re-encode the file as UTF-8") from None
    if not header:
        raise DataError(f"{path}: empty CSV file (expected a header row, e.g. instruction,input,output)")
    return header


def _csv_batches(path: Path) -> Iterator[tuple[int, object]]:
    pa = _pyarrow()
    import pyarrow.csv as pcsv

    header = _csv_header(path)
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in header}, strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
    first = 0
    # a file object, not the path: pyarrow would guess compression from the name, we read the magic number
    with compression.open_read(path) as f, \
            pcsv.open_csv(f, convert_options=options, read_options=pcsv.ReadOptions(block_size=1 << 22)) as reader:
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


def write_columnar(objs: Callable[[], Iterable[dict]], target: Target, *, bom: bool = False) -> None:
    """Write the row dicts ``objs()`` gives to ``target``, BATCH_ROWS at a time,
    atomically, with the input's schema (or one inferred from the rows: see :func:`output_schema`);
    ``bom``: start a CSV file with a UTF-8 byte-order mark, as its input did."""
    pa = _pyarrow()
    schema = output_schema(objs, target)
    if target.container == "hf":
        target.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".selectit-", dir=target.path.parent) as tmp, \
                atomic_dir(target.path) as folder:
            with pa.ipc.new_stream(str(Path(tmp) / "data.arrow"), schema) as writer:
                _write_rows(writer, objs(), schema, target)
            _save_hf(Path(tmp) / "data.arrow", target.like, folder)
        return
    with atomic_open(target.path, binary=True) as raw, compression.open_write(raw, target.compression) as out:
        if target.container == "parquet":
            import pyarrow.parquet as pq

            writer = pq.ParquetWriter(out, schema)
        else:
            import pyarrow.csv as pcsv

            if bom:
                out.write(compression.BOM)
            writer = pcsv.CSVWriter(out, schema)
        with writer:
            _write_rows(writer, objs(), schema, target)


def _write_rows(writer, objs: Iterable[dict], schema, target: Target) -> None:
    pa = _pyarrow()
    rows: list[dict] = []
    try:
        for obj in objs:
            rows.append(obj)
            if len(rows) == BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        if rows or target.container == "csv":  # a CSV with no rows still gets its header
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise _cannot(target, e) from None


def _cannot(target: Target, e: Exception) -> DataError:
    return DataError(f"{target.path}: the records cannot be written as {target.container} "
                     f"({str(e).splitlines()[0][:200]}); write them as {target.like_container}, like the input")


def output_schema(objs: Callable[[], Iterable[dict]], target: Target):
    """The Arrow schema rows are written with: the input's when it is columnar; else inferred from
    the rows (one pass; types that differ between records are widened where Arrow can, e.g. int and
    float to float). CSV takes flat fields only."""
    pa = _pyarrow()
    if target.like_container in ("parquet", "csv", "hf"):
        schema = schema_of(target.like, target.like_container)
    else:
        schema = _infer_schema(objs(), target)
    if target.container == "csv":
        nested = [f"'{f.name}' ({f.type})" for f in schema if pa.types.is_nested(f.type)]
        if nested:
            raise DataError(f"{target.path}: CSV holds flat text fields, and field {nested[0]} is nested; "
                            "write the selection as .jsonl, .json or .parquet")
    return schema


def _infer_schema(objs: Iterable[dict], target: Target):
    pa = _pyarrow()
    schema, rows = pa.schema([]), []
    try:
        for obj in objs:
            rows.append(obj)
            if len(rows) == BATCH_ROWS:
                schema, rows = pa.unify_schemas([schema, pa.Table.from_pylist(rows).schema],
                                                promote_options="permissive"), []
        if rows:
            schema = pa.unify_schemas([schema, pa.Table.from_pylist(rows).schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise _cannot(target, e) from None
    return schema


def _save_hf(arrow: Path, like: Path, folder: Path) -> None:
    """Save the Arrow file ``arrow`` as a ``save_to_disk`` folder ``folder`` with the input's features."""
    datasets = optional_import("datasets", "writing a datasets folder needs datasets", "columnar", DataError)
    info = datasets.DatasetInfo.from_directory(str(like))
    datasets.Dataset.from_file(str(arrow), info=info, in_memory=False).save_to_disk(str(folder))
