"""Typed access to llmlab's synthetic query datasets: the intent catalogue and labelled pairs.

The catalogue (``datasets/intents.jsonl``) is the lab's query pool: 128 support questions in
English and Korean, each with paraphrase templates, slot types, a canned answer and typical
token counts.  The pairs (``datasets/pairs.jsonl``) say which two queries a semantic cache may
treat as the same question (label 1) and which it must not (label 0), including the hard
negatives that defeat embedders: another order number, the opposite action, a neighbouring
intent.  ``datasets/README.md`` documents both formats; ``datasets/generate_catalogue.py``
writes them.

Standard library only (numpy is never imported here; ``render`` also accepts a
``numpy.random.Generator``)::

    import random
    from llmlab.catalogue import load_catalogue, load_pairs

    cat = load_catalogue()
    q = cat.by_id("ecom.refund_status.en").render(random.Random(7))
    q.text, q.answer_key               # "When will I receive the refund for order 2866391?",
                                       # "ecom.refund_status.en|order_id=2866391"
    cat.entity_vocabulary()["city"]    # frozenset({"Seoul", "서울", "Busan", "부산", ...})
    pairs = load_pairs()               # [Pair(a, b, label, lang, kind, intent_a, intent_b), ...]
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import LLMLabError

__all__ = [
    "CATEGORIES", "DOMAINS", "HARD_NEGATIVE_KINDS", "LANGS", "PAIR_KINDS", "Catalogue", "CatalogueFormatError",
    "Intent", "Pair", "RenderedQuery", "dataset_path", "load_catalogue", "load_pairs",
]

LANGS = ("en", "ko")
DOMAINS = ("ecommerce", "saas")
CATEGORIES = ("faq", "general", "complex")
PAIR_KINDS = ("paraphrase", "slot_swap", "opposite_action", "neighbour_intent", "random_other")
HARD_NEGATIVE_KINDS = frozenset({"slot_swap", "opposite_action", "neighbour_intent"})

#: Environment variable naming a folder that holds ``intents.jsonl`` / ``pairs.jsonl``.
DATASETS_ENV = "LLMLAB_DATASETS"

_SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


class CatalogueFormatError(LLMLabError, ValueError):
    """A dataset line is malformed.  ``path`` and ``line`` (1-based) say where."""

    def __init__(self, path: str | os.PathLike[str], line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        super().__init__(f"{self.path}, line {line}: {message}")


@dataclass(frozen=True)
class RenderedQuery:
    """One concrete user query made from an intent template.

    Two rendered queries deserve the same cached answer exactly when ``intent_id`` and
    ``slots`` are equal (``answer_key`` is that identity as a string).
    """

    text: str
    intent_id: str
    slots: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    answer: str = ""

    @property
    def answer_key(self) -> str:
        """``intent_id|slot=value|…`` (slots sorted): the same format as the example trace."""
        return "|".join([self.intent_id, *(f"{k}={self.slots[k]}" for k in sorted(self.slots))])


@dataclass(frozen=True)
class Intent:
    """One support question in one language, with its paraphrase templates.

    ``slots`` maps a slot name used in the templates (``{order_id}``) to its vocabulary type;
    ``slot_choices`` gives, per slot name, the values in this intent's language.
    ``opposites`` are ids of same-language intents asking for the opposite action.
    """

    id: str
    domain: str
    lang: str
    family: str
    category: str
    action: str | None
    templates: tuple[str, ...]
    slots: Mapping[str, str] = field(hash=False)
    answer: str
    prompt_tokens: int
    answer_tokens: int
    popularity_rank: int
    opposites: tuple[str, ...] = ()
    slot_choices: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_mapping, hash=False, compare=False,
                                                        repr=False)

    def render(self, rng: Any, slot_values: Mapping[str, Any] | None = None, *,
               template: int | None = None) -> RenderedQuery:
        """Fill one paraphrase template (chosen with ``rng`` unless ``template`` is an index).

        ``rng`` is a ``random.Random`` or a ``numpy.random.Generator``; the same seed gives the
        same query.  ``slot_values`` fixes some or all slots (used verbatim); the rest are drawn
        from ``slot_choices``, distinct from each other within a slot type.  Draw order: the
        template first, then unfixed slots in sorted name order.
        """
        if template is None:
            index = _randbelow(rng, len(self.templates))
        else:
            index = int(template)
            if not 0 <= index < len(self.templates):
                raise IndexError(f"{self.id} has {len(self.templates)} templates, not index {template}")
        fixed = dict(slot_values or {})
        unknown = sorted(set(fixed) - set(self.slots))
        if unknown:
            raise ValueError(f"{self.id} has no slot(s) {unknown}; its slots are {sorted(self.slots)}")
        values: dict[str, str] = {}
        for name in sorted(self.slots):
            if name in fixed:
                values[name] = str(fixed[name])
                continue
            slot_type = self.slots[name]
            taken = {values[n] for n in values if self.slots[n] == slot_type}
            taken |= {str(fixed[n]) for n in fixed if self.slots[n] == slot_type}
            choices = [v for v in self.slot_choices.get(name, ()) if v not in taken]
            if not choices:
                raise ValueError(f"{self.id}: no value left for slot {name!r} of type {slot_type!r}")
            values[name] = choices[_randbelow(rng, len(choices))]
        return RenderedQuery(
            text=_fill(self.templates[index], values),
            intent_id=self.id,
            slots=MappingProxyType(values),
            answer=_fill(self.answer, values),
        )


@dataclass(frozen=True)
class Pair:
    """Two queries and whether a cached answer for ``a`` is right for ``b`` (``label`` 1)."""

    a: str
    b: str
    label: int
    lang: str
    kind: str
    intent_a: str | None = None
    intent_b: str | None = None

    @property
    def hard_negative(self) -> bool:
        return self.kind in HARD_NEGATIVE_KINDS


class Catalogue:
    """The intent catalogue: intents in popularity order plus the slot vocabulary."""

    def __init__(self, intents: tuple[Intent, ...], vocabulary: Mapping[str, tuple[Mapping[str, str], ...]],
                 path: Path | None = None) -> None:
        self.intents: tuple[Intent, ...] = tuple(intents)
        #: slot type -> entities; each entity maps a language code to its name.
        self.vocabulary = MappingProxyType(dict(vocabulary))
        self.path = path
        self._by_id = {i.id: i for i in self.intents}

    def __len__(self) -> int:
        return len(self.intents)

    def __iter__(self) -> Iterator[Intent]:
        return iter(self.intents)

    def __contains__(self, intent_id: object) -> bool:
        return intent_id in self._by_id

    def __repr__(self) -> str:
        return f"Catalogue({len(self.intents)} intents from {self.path})"

    def by_id(self, intent_id: str) -> Intent:
        """The intent with this id; ``KeyError`` naming the id if there is none."""
        try:
            return self._by_id[intent_id]
        except KeyError:
            raise KeyError(f"no intent {intent_id!r} in the catalogue") from None

    def select(self, *, lang: str | None = None, domain: str | None = None,
               category: str | None = None) -> tuple[Intent, ...]:
        """Intents matching every given filter, in popularity order."""
        return tuple(i for i in self.intents
                     if (lang is None or i.lang == lang) and (domain is None or i.domain == domain)
                     and (category is None or i.category == category))

    def entity_vocabulary(self) -> dict[str, frozenset[str]]:
        """Slot type -> every surface name of its values, all languages together.

        e.g. ``{"city": {"Seoul", "서울", …}, "product": {…}, "plan": {"Free", "무료", …}, …}``;
        useful for masking entities or spotting a slot swap between two queries.
        """
        return {t: frozenset(name for entity in entities for name in entity.values())
                for t, entities in self.vocabulary.items()}


def dataset_path(name: str) -> Path:
    """Where the default copy of dataset file ``name`` lives.

    Looked up, in order: ``$LLMLAB_DATASETS/name``; ``llmlab/data/name`` (data shipped inside
    the package); ``datasets/name`` beside the package in a source checkout (what
    ``pip install -e .`` gives).
    """
    here = Path(__file__).resolve().parent
    candidates = []
    if os.environ.get(DATASETS_ENV):
        candidates.append(Path(os.environ[DATASETS_ENV]) / name)
    candidates += [here / "data" / name, here.parent / "datasets" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"dataset {name!r} not found; looked in: " + ", ".join(str(c) for c in candidates))


def load_catalogue(path: str | os.PathLike[str] | None = None) -> Catalogue:
    """Read an intent catalogue (JSON lines; the ``_vocabulary`` line first).

    Raises :class:`CatalogueFormatError` (a ``ValueError``) naming the file and line of the
    first malformed record.
    """
    source = Path(path) if path is not None else dataset_path("intents.jsonl")
    vocab_raw: dict[str, Any] | None = None
    vocab_line = 1
    records: list[tuple[int, dict[str, Any]]] = []
    for lineno, obj in json_lines(source):
        if "_vocabulary" in obj:
            if vocab_raw is not None:
                raise CatalogueFormatError(source, lineno, "a second _vocabulary line")
            if records:
                raise CatalogueFormatError(source, lineno, "the _vocabulary line must come before the intents")
            vocab_raw, vocab_line = obj["_vocabulary"], lineno
            continue
        records.append((lineno, obj))
    if vocab_raw is None:
        raise CatalogueFormatError(source, 1, "no _vocabulary line (expected as the first line)")
    vocabulary = _parse_vocabulary(source, vocab_raw, vocab_line)
    intents: list[Intent] = []
    seen: dict[str, int] = {}
    for lineno, obj in records:
        intent = _parse_intent(source, lineno, obj, vocabulary)
        if intent.id in seen:
            raise CatalogueFormatError(source, lineno,
                                       f"duplicate intent id {intent.id!r} (first on line {seen[intent.id]})")
        seen[intent.id] = lineno
        intents.append(intent)
    for lineno, intent in zip((ln for ln, _ in records), intents):
        for other in intent.opposites:
            if other not in seen:
                raise CatalogueFormatError(source, lineno, f"opposite {other!r} is not an intent in this file")
    intents.sort(key=lambda i: (i.popularity_rank, i.id))
    return Catalogue(tuple(intents), vocabulary, source)


def load_pairs(path: str | os.PathLike[str] | None = None) -> list[Pair]:
    """Read labelled pairs (one JSON object a line); malformed lines raise :class:`CatalogueFormatError`."""
    source = Path(path) if path is not None else dataset_path("pairs.jsonl")
    pairs: list[Pair] = []
    for lineno, obj in json_lines(source):
        def need(key: str, kind: type) -> Any:
            if key not in obj:
                raise CatalogueFormatError(source, lineno, f"missing field {key!r}")
            value = obj[key]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise CatalogueFormatError(source, lineno, f"field {key!r} must be {kind.__name__}, got {value!r}")
            return value

        a, b = need("a", str), need("b", str)
        label = need("label", int)
        if label not in (0, 1):
            raise CatalogueFormatError(source, lineno, f"label must be 0 or 1, got {label!r}")
        lang, kind = need("lang", str), need("kind", str)
        if lang not in LANGS:
            raise CatalogueFormatError(source, lineno, f"lang must be one of {LANGS}, got {lang!r}")
        if kind not in PAIR_KINDS:
            raise CatalogueFormatError(source, lineno, f"kind must be one of {PAIR_KINDS}, got {kind!r}")
        if (kind == "paraphrase") != (label == 1):
            raise CatalogueFormatError(source, lineno, f"kind {kind!r} contradicts label {label}")
        intent_a, intent_b = obj.get("intent_a"), obj.get("intent_b")
        for key, value in (("intent_a", intent_a), ("intent_b", intent_b)):
            if value is not None and not isinstance(value, str):
                raise CatalogueFormatError(source, lineno, f"field {key!r} must be a string or absent")
        pairs.append(Pair(a, b, label, lang, kind, intent_a, intent_b))
    return pairs


# ------------------------------------------------------------------------------------ helpers

def _randbelow(rng: Any, n: int) -> int:
    if hasattr(rng, "integers"):        # numpy.random.Generator
        return int(rng.integers(n))
    if hasattr(rng, "randrange"):       # random.Random
        return rng.randrange(n)
    raise TypeError(f"rng must be a random.Random or numpy.random.Generator, not {type(rng).__name__}")


def _fill(template: str, values: Mapping[str, str]) -> str:
    return _SLOT_RE.sub(lambda m: values[m.group(1)], template)


def json_lines(source: Path, error: type[CatalogueFormatError] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file.

    A line that is not a JSON object raises ``error`` (a :class:`CatalogueFormatError`
    subclass) naming the file and the line, so every JSONL reader reports bad input the same way.
    """
    error = error or CatalogueFormatError
    with open(source, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:  # by line, so that a byte that is not UTF-8 is reported with its line (a BOM is fine)
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise error(source, lineno, f"not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(source, lineno, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise error(source, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _parse_vocabulary(source: Path, raw: Any, lineno: int) -> dict[str, tuple[Mapping[str, str], ...]]:
    if not isinstance(raw, dict) or not raw:
        raise CatalogueFormatError(source, lineno, "_vocabulary must be a non-empty object of slot type -> values")
    vocabulary: dict[str, tuple[Mapping[str, str], ...]] = {}
    for slot_type, values in raw.items():
        if not isinstance(values, list) or not values:
            raise CatalogueFormatError(source, lineno, f"_vocabulary[{slot_type!r}] must be a non-empty list")
        entities = []
        for value in values:
            if isinstance(value, str):
                entities.append(MappingProxyType({lang: value for lang in LANGS}))
            elif (isinstance(value, dict) and set(value) >= set(LANGS)
                  and all(isinstance(v, str) for v in value.values())):
                entities.append(MappingProxyType(dict(value)))
            else:
                raise CatalogueFormatError(
                    source, lineno, f"_vocabulary[{slot_type!r}] value {value!r}: expected a string or "
                                    f"an object with {' and '.join(LANGS)} names")
        vocabulary[slot_type] = tuple(entities)
    return vocabulary


def _parse_intent(source: Path, lineno: int, obj: dict[str, Any],
                  vocabulary: Mapping[str, tuple[Mapping[str, str], ...]]) -> Intent:
    def fail(message: str) -> CatalogueFormatError:
        where = f"intent {obj['id']!r}: " if isinstance(obj.get("id"), str) else ""
        return CatalogueFormatError(source, lineno, where + message)

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in obj:
            raise fail(f"missing field {key!r}")
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise fail(f"field {key!r} has the wrong type ({type(value).__name__})")
        return value

    intent_id = need("id", str)
    domain, lang, category = need("domain", str), need("lang", str), need("category", str)
    for key, value, allowed in (("domain", domain, DOMAINS), ("lang", lang, LANGS), ("category", category, CATEGORIES)):
        if value not in allowed:
            raise fail(f"{key} must be one of {allowed}, got {value!r}")
    action = obj.get("action")
    if action is not None and not isinstance(action, str):
        raise fail("field 'action' must be a string or null")
    templates = need("templates", list)
    if not templates or not all(isinstance(t, str) and t.strip() for t in templates):
        raise fail("templates must be a non-empty list of non-empty strings")
    slots = need("slots", dict)
    for name, slot_type in slots.items():
        if not isinstance(slot_type, str) or slot_type not in vocabulary:
            raise fail(f"slot {name!r} has type {slot_type!r}, which is not in the _vocabulary")
    for template in templates:
        undeclared = sorted(set(_SLOT_RE.findall(template)) - set(slots))
        if undeclared:
            raise fail(f"template {template!r} uses undeclared slot(s) {undeclared}")
    answer = need("answer", str)
    undeclared = sorted(set(_SLOT_RE.findall(answer)) - set(slots))
    if undeclared:
        raise fail(f"answer uses undeclared slot(s) {undeclared}")
    numbers = {key: need(key, int) for key in ("prompt_tokens", "answer_tokens", "popularity_rank")}
    for key, value in numbers.items():
        if value <= 0:
            raise fail(f"{key} must be positive, got {value}")
    opposites = obj.get("opposites", [])
    if not isinstance(opposites, list) or not all(isinstance(o, str) for o in opposites):
        raise fail("opposites must be a list of intent ids")
    choices = {name: tuple(entity[lang] for entity in vocabulary[slot_type]) for name, slot_type in slots.items()}
    return Intent(
        id=intent_id, domain=domain, lang=lang, family=need("family", str), category=category, action=action,
        templates=tuple(templates), slots=MappingProxyType(dict(slots)), answer=answer,
        prompt_tokens=numbers["prompt_tokens"], answer_tokens=numbers["answer_tokens"],
        popularity_rank=numbers["popularity_rank"], opposites=tuple(opposites),
        slot_choices=MappingProxyType(choices),
    )
