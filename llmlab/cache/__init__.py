"""Caches: exact / prompt+parameters keys, a TTL+LRU store, and the semantic cache.

Heavy pieces (embedders, vector index) live in submodules imported on demand.
"""
from .keys import CacheKeyPolicy, context_fingerprint, normalize_text
from .store import KeyValueStore, MemoryStore, StoreHit

__all__ = ["CacheKeyPolicy", "KeyValueStore", "MemoryStore", "StoreHit", "context_fingerprint", "normalize_text"]
