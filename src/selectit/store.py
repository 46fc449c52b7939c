"""The resumable score store: SQLite in WAL mode, keyed by content, never by position.

Why SQLite: one file, in the standard library, atomic transactions (a batch is stored whole or not at
all, even on SIGKILL or power loss), readers never block the writer (WAL), and a lookup by key is an
index probe, so resuming a 5M-record run does not rescan files. Append-only files with renames would
need our own compaction and index.

A row holds the raw label probabilities of one (model, prompt, record):
- model: a hash of everything that changes the model's output (model identity, dtype, template,
  layout, max length, overlong policy, rating token ids): see ``model_key``;
- prompt: a hash of the rating prompt's text (after ``{max}``);
- record: a hash of what the model rates (instruction and response), so duplicates are scored once
  and a record keeps its scores when the file is reordered or other records are added.
The math (token, sentence, model level) is recomputed from these on every run: changing alpha, mode
or selection never needs the model again.

A second table holds response losses (selectit.measures.losses: the likelihood term, perplexity,
IFD, r-IFD), one per (model, kind, record): kind names what was scored in which context (a hash of the
context template, or the text alone), so methods that need the same loss share its rows.

A third table keeps the (model, prompt, record) ratings the model failed on, with the reason: they
are not scores (a rerun retries them), but a rescore must tell them from ratings never computed.

A fourth holds vectors, one per (model, kind, record), as raw bytes of a numpy dtype the kind names:
pooled embeddings (float16, selectit.measures.embeddings) and MinHash signatures (uint32,
selectit.measures.minhash; their "model" is the signature's parameters, no model is involved).

A fifth holds what the likelihood losses read of each record (selectit.measures.reading: characters of
its own text and of its response, and whether it was read whole), one per (model, record).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from selectit.errors import ConfigError
from selectit.records import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS probs (
    model TEXT NOT NULL, prompt TEXT NOT NULL, record TEXT NOT NULL,
    probs BLOB NOT NULL, truncated INTEGER NOT NULL,
    PRIMARY KEY (model, prompt, record)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS losses (
    model TEXT NOT NULL, kind TEXT NOT NULL, record TEXT NOT NULL, loss REAL,
    PRIMARY KEY (model, kind, record)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL, kind TEXT NOT NULL, record TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (model, kind, record)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS views (
    model TEXT NOT NULL, record TEXT NOT NULL, context INTEGER NOT NULL, response INTEGER NOT NULL,
    whole INTEGER NOT NULL,
    PRIMARY KEY (model, record)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    model TEXT NOT NULL, prompt TEXT NOT NULL, record TEXT NOT NULL, message TEXT NOT NULL,
    truncated INTEGER NOT NULL,
    PRIMARY KEY (model, prompt, record)
) WITHOUT ROWID
"""
TABLES = ("probs", "losses", "failures", "vectors", "views")  # every table, for merging stores (runners/ray.py)
MEMORY = ":memory:"
LOOKUP_ROWS = 500  # keys per lookup query (SQLite allows 32766 parameters; small queries stay quick)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:32]


def record_key(record: Record) -> str:
    return _hash(["record", record.instruction, record.response])


def prompt_key(prompt: str) -> str:
    return _hash(["prompt", prompt])


def model_key(fingerprint: dict) -> str:
    return _hash(["model", fingerprint])


class _Rows(list):
    """A query's rows, with what callers use of a cursor."""

    def __init__(self, rows, rowcount: int):
        super().__init__(rows)
        self.rowcount = rowcount

    def fetchone(self):
        return self[0] if self else None

    def fetchall(self) -> list:
        return list(self)


class _Guarded:
    """A connection whose damaged-file errors (not SQLite, or a damaged database) are one-line ConfigErrors
    naming the store and what to do, wherever they surface (on opening, or at the first damaged page)."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self._db, self._path = db, path

    def _call(self, run, *args):
        try:
            return run(*args)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):  # locked, busy, disk I/O: not the file's content
                raise
            raise ConfigError(f"the score store {self._path} is not a readable selectit store ({e}); if it is one, "
                              "it is damaged: delete it (or give --store a new path) and score again, what it held "
                              "is computed again") from None

    def execute(self, *args):
        """The rows, read at once (a damaged page raises here, not later in a loop), and the rowcount."""
        def run():
            cursor = self._db.execute(*args)
            return _Rows(cursor.fetchall(), cursor.rowcount)
        return self._call(run)

    def executemany(self, *args):
        return self._call(self._db.executemany, *args)

    def executescript(self, *args):
        return self._call(self._db.executescript, *args)

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self._db.__enter__()

    def __exit__(self, *exc):
        return self._db.__exit__(*exc)


class ScoreStore:
    """Label probabilities by (model, prompt, record) key. Open one per process."""

    def __init__(self, path: str | Path = MEMORY):
        """Open (or create) the store at ``path``; MEMORY: a store that lives as long as this object."""
        self.path = Path(path)
        if str(path) != MEMORY:
            if self.path.is_dir():
                raise ConfigError(f"the score store {self.path} is a directory; give --store a file path "
                                  f"(e.g. {self.path / 'store.sqlite'})")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # check_same_thread off: a Ray actor may run its calls on another thread than the one that opened it
            self.db = _Guarded(sqlite3.connect(str(path), isolation_level=None, timeout=60, check_same_thread=False),
                               self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise
            raise ConfigError(f"cannot open the score store {self.path} ({e}); give --store a writable file "
                              "path") from None

    def load(self, model: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[np.ndarray, bool]]:
        """The stored (probs (S,), truncated) of the given (prompt, record) keys, where present.
        Index probes on the primary key, LOOKUP_ROWS keys per query: cost grows with the keys asked
        for, not with the rows stored."""
        return {k: (np.frombuffer(blob, dtype=np.float64).copy(), bool(t)) for k, (blob, t) in self._lookup(
            "SELECT record, probs, truncated FROM probs WHERE model = ? AND prompt = ?", model, keys).items()}

    def _lookup(self, query: str, model: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
        """Rows of ``query`` (selecting record, then values) for (prompt, record) keys, by key."""
        by_prompt: dict[str, list[str]] = {}
        for prompt, record in set(keys):
            by_prompt.setdefault(prompt, []).append(record)
        found = {}
        for prompt, records in by_prompt.items():
            for i in range(0, len(records), LOOKUP_ROWS):
                part = records[i : i + LOOKUP_ROWS]
                for record, *values in self.db.execute(
                        f"{query} AND record IN ({','.join('?' * len(part))})", (model, prompt, *part)):
                    found[(prompt, record)] = tuple(values)
        return found

    def put(self, model: str, rows: Sequence[tuple[str, str, np.ndarray, bool]]) -> None:
        """Store (prompt, record, probs, truncated) rows in one transaction: all or nothing."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR REPLACE INTO probs VALUES (?, ?, ?, ?, ?)",
                [(model, p, r, np.asarray(v, dtype=np.float64).tobytes(), int(t)) for p, r, v, t in rows],
            )

    def put_failures(self, model: str, rows: Sequence[tuple[str, str, str, bool]]) -> None:
        """Store (prompt, record, message, truncated) rows of ratings the model failed on."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                                [(model, p, r, m, int(t)) for p, r, m, t in rows])

    def load_failures(self, model: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, bool]]:
        """The stored (message, truncated) of the given (prompt, record) keys the model failed on."""
        return {k: (m, bool(t)) for k, (m, t) in self._lookup(
            "SELECT record, message, truncated FROM failures WHERE model = ? AND prompt = ?", model, keys).items()}

    def load_losses(self, model: str, kind: str, records: Iterable[str]) -> dict[str, float]:
        """The stored mean response loss of the given record keys, where present (NaN: no response token)."""
        wanted, found = list(set(records)), {}
        for i in range(0, len(wanted), LOOKUP_ROWS):  # index probes, as in load()
            part = wanted[i : i + LOOKUP_ROWS]
            found.update((r, float("nan") if v is None else v) for r, v in self.db.execute(
                "SELECT record, loss FROM losses WHERE model = ? AND kind = ? "
                f"AND record IN ({','.join('?' * len(part))})", (model, kind, *part)))
        return found

    def put_losses(self, model: str, kind: str, rows: Sequence[tuple[str, float]]) -> None:
        """Store (record, loss) rows in one transaction: all or nothing."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO losses VALUES (?, ?, ?, ?)",
                                [(model, kind, r, None if v != v else float(v)) for r, v in rows])

    def load_vectors(self, model: str, kind: str, records: Iterable[str], dtype) -> dict[str, np.ndarray]:
        """The stored vectors (``dtype``, 1-d) of the given record keys, where present."""
        wanted, found = list(set(records)), {}
        for i in range(0, len(wanted), LOOKUP_ROWS):  # index probes, as in load()
            part = wanted[i : i + LOOKUP_ROWS]
            found.update((r, np.frombuffer(v, dtype=dtype)) for r, v in self.db.execute(
                "SELECT record, data FROM vectors WHERE model = ? AND kind = ? "
                f"AND record IN ({','.join('?' * len(part))})", (model, kind, *part)))
        return found

    def put_vectors(self, model: str, kind: str, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store (record, vector) rows in one transaction: all or nothing (the vector's bytes as they are)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                                [(model, kind, r, np.ascontiguousarray(v).tobytes()) for r, v in rows])

    def load_views(self, model: str, records: Iterable[str]) -> dict[str, tuple[int, int, bool]]:
        """The stored (context, response, whole) of the given record keys, where present."""
        wanted, found = list(set(records)), {}
        for i in range(0, len(wanted), LOOKUP_ROWS):  # index probes, as in load()
            part = wanted[i : i + LOOKUP_ROWS]
            found.update((r, (c, n, bool(w))) for r, c, n, w in self.db.execute(
                "SELECT record, context, response, whole FROM views WHERE model = ? "
                f"AND record IN ({','.join('?' * len(part))})", (model, *part)))
        return found

    def put_views(self, model: str, rows: Sequence[tuple[str, int, int, bool]]) -> None:
        """Store (record, context, response, whole) rows in one transaction: all or nothing."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO views VALUES (?, ?, ?, ?, ?)",
                                [(model, r, int(c), int(n), int(w)) for r, c, n, w in rows])

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self.db.execute("SELECT COUNT(*) FROM probs").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM probs WHERE model = ?", (model,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()
