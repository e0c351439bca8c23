"""Content-addressed activation cache (safetensors + manifest, atomic publish, LRU eviction)."""

from .store import ActivationCache, CachedEntry, CacheStats, cache_key, default_cache_dir

__all__ = ["ActivationCache", "CachedEntry", "CacheStats", "cache_key", "default_cache_dir"]
