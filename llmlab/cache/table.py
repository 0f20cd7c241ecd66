"""Similarities within a fixed vocabulary, computed once per query text: the simulator's fast path.

A simulation draws every query from a catalogue of a few thousand texts, and the semantic
cache stores thousands of namespaces (tenant × context × parameters) holding the same texts
again and again.  Searching a namespace is a matrix–vector product over its rows; with
thousands of namespaces those rows are cold in the CPU caches (≈ 15 MB for 10k entries at
dim 384), and the product costs ≈ 16 µs for 100 rows where the same product on warm rows costs
≈ 2.5 µs.  But a namespace's rows are catalogue vectors, so the similarity of a query to each
of them is already known once the query's row of the catalogue's Gram matrix is: gathering
``n`` numbers from that row costs ≈ 1 µs.

:class:`SimilarityTable` holds the catalogue's unit vectors and computes that row the first
time a query text is looked up (with its neighbours: one product of a block of the catalogue
with the whole of it). The semantic cache uses it only for vectors the table itself handed out
(checked by identity, so a caller's own vector for a known text is never mistaken for the
table's) and only in namespaces whose every row came from the table; anything else takes the
ordinary product. The thresholds, ranking, ties, guard, TTL and LRU are the cache's own code
either way.

A similarity from the table is the float32 dot product of the same two unit vectors, summed in
the order BLAS uses for a product of a block of the catalogue with the whole of it; the
ordinary path sums in the order it uses for the namespace's matrix, which for about 1 % of
pairs differs in the last bit (≈ 6e-8). Only a similarity within that distance of the
threshold could be decided differently.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["MAX_TABLE_TEXTS", "SimilarityTable"]

#: Above this many texts the table is not built (its rows would grow to n² floats; a replayed
#: trace with a hashed prompt per request has no catalogue to exploit).
MAX_TABLE_TEXTS = 8_192


class SimilarityTable:
    """Unit vectors of ``texts`` and their pairwise similarities, one memoised row per text.

    ``rows`` are the arrays the embedding layer hands out for each text — settled unit vectors
    of shape ``(1, dim)`` or ``(dim,)`` — and must not be written to afterwards.
    """

    def __init__(self, texts: Sequence[str], rows: Sequence[np.ndarray]) -> None:
        if len(texts) != len(rows):
            raise ConfigError("rows", f"{len(rows)} rows for {len(texts)} texts", "one row per text")
        if len(texts) > MAX_TABLE_TEXTS:
            raise ConfigError("texts", len(texts), f"at most {MAX_TABLE_TEXTS} texts")
        self._ids = {t: i for i, t in enumerate(texts)}
        if len(self._ids) != len(texts):
            raise ConfigError("texts", "duplicates", "distinct texts")
        self._rows = list(rows)
        self.matrix = (np.vstack([np.asarray(r, dtype=np.float32).reshape(1, -1) for r in rows]) if rows
                       else np.zeros((0, 1), dtype=np.float32))
        self.matrix.flags.writeable = False
        self.dim = int(self.matrix.shape[1])
        self._units = [self.matrix[i] for i in range(len(texts))]
        self._sims: list[np.ndarray | None] = [None] * len(texts)

    def __len__(self) -> int:
        return len(self._rows)

    def id_of(self, text: str, vector: Any) -> int | None:
        """The id of ``text`` when ``vector`` is the table's own row for it (or a view of it), else None."""
        i = self._ids.get(text)
        if i is None:
            return None
        row = self._rows[i]
        if vector is row or getattr(vector, "base", None) is row:
            return i
        return None

    def unit(self, i: int) -> np.ndarray:
        """Text ``i``'s unit vector, shape ``(dim,)`` (read-only)."""
        return self._units[i]

    BLOCK = 128

    def similarities(self, i: int) -> np.ndarray:
        """Similarities of text ``i`` to every text of the table (float32, read-only).

        Rows are computed a block of ``BLOCK`` texts at a time: one matrix product over the
        catalogue costs about what two matrix–vector products do, and neighbouring ids are
        usually needed too (a run looks up most of its catalogue)."""
        sims = self._sims[i]
        if sims is None:
            start = i - i % self.BLOCK
            block = self.matrix[start:start + self.BLOCK].dot(self.matrix.T)
            block.flags.writeable = False
            for j in range(len(block)):
                if self._sims[start + j] is None:
                    self._sims[start + j] = block[j]
            sims = self._sims[i]
        return sims
