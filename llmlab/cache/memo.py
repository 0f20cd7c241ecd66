"""A persistent memo of embeddings, so no process embeds the same text twice.

:class:`EmbeddingMemo` wraps an embedder and satisfies the same protocol (same ``name``,
``dim``, ``latency_hint_s``), so the simulator, calibration and notebooks can use it wherever
an embedder is expected.  Vectors live in one SQLite file keyed by ``(embedder name, SHA-256
of the text)``; WAL mode lets several processes (a sweep's workers, a notebook and a CLI run)
read and write the same file at once.  A bounded in-process dict sits in front of the file.

Location: ``$LLMLAB_CACHE_DIR/embeddings/`` when the variable is set, else
``$XDG_CACHE_HOME/llmlab/embeddings/`` (``~/.cache/llmlab/embeddings/``).  ``path=":memory:"``
keeps everything in the process.  If the directory cannot be written, the memo warns once and
falls back to memory rather than failing a request.

``cost_usd`` and ``latency_hint_s`` are the wrapped embedder's: they model what the embedding
costs in the system being simulated, not what this notebook's memo saves.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .embedders import check_texts, l2_normalise

__all__ = ["EmbeddingMemo", "default_cache_dir"]

log = logging.getLogger("llmlab.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    embedder TEXT NOT NULL,
    key BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vec BLOB NOT NULL,
    PRIMARY KEY (embedder, key)
) WITHOUT ROWID
"""
_CHUNK = 500  # parameters per IN (...) query, well under SQLite's limit


def default_cache_dir() -> Path:
    """Where llmlab keeps on-disk caches (``LLMLAB_CACHE_DIR`` overrides)."""
    env = os.environ.get("LLMLAB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "llmlab"


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingMemo:
    """Memoising wrapper around an embedder; persistent and safe across processes."""

    def __init__(self, embedder: Any, path: str | os.PathLike[str] | None = None, *,
                 memory_items: int = 100_000) -> None:
        self.embedder = embedder
        self.name: str = embedder.name
        if path is None:
            path = default_cache_dir() / "embeddings" / "embeddings.sqlite3"
        self.path = str(path)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_items = int(memory_items)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.memory_hits = 0
        self.disk_hits = 0
        self.misses = 0

    # the protocol, delegated -------------------------------------------------
    @property
    def dim(self) -> int:
        return self.embedder.dim

    @property
    def latency_hint_s(self) -> float:
        return self.embedder.latency_hint_s

    def cost_usd(self, texts: Sequence[str]) -> float:
        return self.embedder.cost_usd(texts)

    # storage -------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """One connection per process (reopened after a fork), created on first use."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        target = self.path
        if target != ":memory:":
            try:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(target, timeout=30.0, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                log.warning("embedding memo %s unusable (%s); keeping vectors in memory only", target, exc)
                self.path = target = ":memory:"
        if target == ":memory:":
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            conn.execute(_SCHEMA)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _remember(self, text: str, vec: np.ndarray) -> None:
        self._memory[text] = vec
        self._memory.move_to_end(text)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)

    def _read(self, conn: sqlite3.Connection, texts: list[str]) -> dict[str, np.ndarray]:
        by_key = {_key(t): t for t in texts}
        keys = list(by_key)
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            rows = conn.execute(
                f"SELECT key, dim, vec FROM vectors WHERE embedder = ? AND key IN ({','.join('?' * len(chunk))})",
                [self.name, *chunk]).fetchall()
            for key, dim, blob in rows:
                if len(blob) != dim * 4 or (self.embedder.dim and dim != self.embedder.dim):
                    continue  # a vector from an older model of the same name: recompute it
                found[by_key[bytes(key)]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _write(self, conn: sqlite3.Connection, texts: list[str], matrix: np.ndarray) -> None:
        rows = [(self.name, _key(t), int(matrix.shape[1]), matrix[i].tobytes()) for i, t in enumerate(texts)]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO vectors (embedder, key, dim, vec) VALUES (?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # a full disk must not fail a request: the vectors are still returned
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.warning("embedding memo write failed (%s); continuing without persisting", exc)

    # the work --------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        with self._lock:
            vectors: dict[str, np.ndarray] = {}
            missing: list[str] = []
            for t in dict.fromkeys(items):
                v = self._memory.get(t)
                if v is not None:
                    vectors[t] = v
                    self.memory_hits += 1
                else:
                    missing.append(t)
            if missing:
                conn = self._connection()
                disk = self._read(conn, missing)
                self.disk_hits += len(disk)
                for t, v in disk.items():
                    vectors[t] = v
                    self._remember(t, v)
                todo = [t for t in missing if t not in disk]
                if todo:
                    self.misses += len(todo)
                    fresh = l2_normalise(self.embedder.embed(todo))
                    self._write(conn, todo, fresh)
                    for i, t in enumerate(todo):
                        v = fresh[i].copy()
                        vectors[t] = v
                        self._remember(t, v)
        if not items:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.stack([vectors[t] for t in items]).astype(np.float32, copy=False)

    def __len__(self) -> int:
        """Vectors stored on disk for this embedder."""
        with self._lock:
            return int(self._connection().execute(
                "SELECT COUNT(*) FROM vectors WHERE embedder = ?", (self.name,)).fetchone()[0])

    @property
    def stats(self) -> dict[str, int]:
        return {"memory_hits": self.memory_hits, "disk_hits": self.disk_hits, "misses": self.misses}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"EmbeddingMemo({self.embedder!r}, path={self.path!r})"
