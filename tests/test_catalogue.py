"""The synthetic datasets (intent catalogue, labelled pairs, example trace) and their loader."""
from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from llmlab.catalogue import (CATEGORIES, DOMAINS, HARD_NEGATIVE_KINDS, LANGS, PAIR_KINDS, Catalogue,
                              CatalogueFormatError, Intent, Pair, RenderedQuery, dataset_path, load_catalogue,
                              load_pairs)
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"
SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
OUTPUTS = ("intents.jsonl", "pairs.jsonl", "traces/example_trace.csv")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def pairs() -> list[Pair]:
    return load_pairs()


@pytest.fixture(scope="module")
def generator():
    return load_script("generate_catalogue", DATASETS / "generate_catalogue.py")


# ------------------------------------------------------------------------------ catalogue

def test_default_paths_resolve_to_the_repository_datasets():
    assert dataset_path("intents.jsonl") == DATASETS / "intents.jsonl"
    assert dataset_path("pairs.jsonl") == DATASETS / "pairs.jsonl"


def test_catalogue_size_languages_domains_categories(cat):
    assert len(cat) >= 120
    assert all(isinstance(i, Intent) for i in cat.intents)
    by_lang = Counter(i.lang for i in cat)
    assert set(by_lang) == set(LANGS) and min(by_lang.values()) >= 50
    assert {i.domain for i in cat} == set(DOMAINS)
    for lang in LANGS:
        for domain in DOMAINS:
            assert len(cat.select(lang=lang, domain=domain)) >= 25
    share = {c: n / len(cat) for c, n in Counter(i.category for i in cat).items()}
    assert set(share) == set(CATEGORIES)
    assert 0.40 <= share["faq"] <= 0.60 and 0.25 <= share["general"] <= 0.45 and 0.10 <= share["complex"] <= 0.20


def test_every_intent_is_well_formed(cat):
    vocab = cat.entity_vocabulary()
    prefix = {"ecommerce": "ecom", "saas": "saas"}
    for it in cat:
        assert it.id == f"{prefix[it.domain]}.{it.family}.{it.lang}"
        assert len(it.templates) >= 5 and len(set(it.templates)) == len(it.templates), it.id
        for t in it.templates:
            # declared, and used by every template: equal slot values => the same question
            assert set(SLOT.findall(t)) == set(it.slots), (it.id, t)
        assert set(SLOT.findall(it.answer)) <= set(it.slots), it.id
        assert all(t in vocab for t in it.slots.values()), it.id
        assert it.answer.strip()
        assert 150 <= it.prompt_tokens <= 900 and 40 <= it.answer_tokens <= 600, it.id
        for other in it.opposites:
            assert other in cat and it.id in cat.by_id(other).opposites and cat.by_id(other).lang == it.lang
    complex_answers = [i.answer_tokens for i in cat if i.category == "complex"]
    faq_answers = [i.answer_tokens for i in cat if i.category == "faq"]
    assert min(complex_answers) > max(faq_answers)


def test_popularity_ranks_are_unique_and_ordered(cat):
    assert [i.popularity_rank for i in cat] == list(range(1, len(cat) + 1))


def test_korean_is_really_korean_and_particles_fit_any_slot_value(cat):
    hangul = re.compile(r"[가-힣]")
    variable_particle = re.compile(r"\}(?:은|는|이|가|을|를|으로|로|과|와|랑|나|야|여)")
    for it in cat.select(lang="ko"):
        for t in it.templates:
            assert hangul.search(t), t
            assert not variable_particle.search(t), t
    for it in cat.select(lang="en"):
        assert not any(hangul.search(t) for t in it.templates), it.id


def test_opposite_and_confusable_families_exist(cat):
    for lang in LANGS:
        assert f"saas.subscription_upgrade.{lang}" in cat.by_id(f"saas.subscription_cancel.{lang}").opposites
        assert f"saas.twofa_disable.{lang}" in cat.by_id(f"saas.twofa_enable.{lang}").opposites
        assert f"saas.username_recover.{lang}" in cat.by_id(f"saas.password_reset.{lang}").opposites
    assert "비밀번호를 잊어버렸어요." in cat.by_id("saas.password_reset.ko").templates
    assert "아이디를 잊어버렸어요." in cat.by_id("saas.username_recover.ko").templates
    assert any("해지" in t for t in cat.by_id("saas.subscription_cancel.ko").templates)
    assert any("업그레이드" in t for t in cat.by_id("saas.subscription_upgrade.ko").templates)
    assert any("비활성화" in t for t in cat.by_id("saas.twofa_disable.ko").templates)
    assert any("활성화" in t and "비활성화" not in t for t in cat.by_id("saas.twofa_enable.ko").templates)


def test_vocabulary(cat):
    vocab = cat.entity_vocabulary()
    assert {"order_id", "city", "product", "plan", "month"} <= set(vocab)
    assert all(isinstance(v, frozenset) for v in vocab.values())
    for en, ko in [("Seoul", "서울"), ("Busan", "부산"), ("Incheon", "인천"), ("Daegu", "대구"), ("Daejeon", "대전"),
                   ("Gwangju", "광주"), ("Jeju", "제주")]:
        assert {en, ko} <= vocab["city"]
    assert {"Free", "Starter", "Pro", "Enterprise", "무료", "스타터", "프로", "엔터프라이즈"} <= vocab["plan"]
    assert len(cat.vocabulary["product"]) >= 12 and len(cat.vocabulary["order_id"]) >= 20
    assert vocab["paid_plan"] < vocab["plan"]


def test_by_id_and_select(cat):
    it = cat.by_id("ecom.refund_status.en")
    assert it.family == "refund_status" and it.action == "refund" and dict(it.slots) == {"order_id": "order_id"}
    with pytest.raises(KeyError, match="no.such"):
        cat.by_id("no.such.intent")
    assert all(i.category == "complex" and i.lang == "ko" for i in cat.select(lang="ko", category="complex"))


# ------------------------------------------------------------------------------ render

def test_render_is_deterministic_for_a_seeded_rng(cat):
    for it in cat:
        one, two = it.render(random.Random(42)), it.render(random.Random(42))
        assert one == two and one.text == two.text and dict(one.slots) == dict(two.slots)
        assert isinstance(one, RenderedQuery) and one.intent_id == it.id
        assert "{" not in one.text and "{" not in one.answer
        assert set(one.slots) == set(it.slots)
        for name, value in one.slots.items():
            assert value in it.slot_choices[name]
    rng = random.Random(3)
    texts = {cat.by_id("ecom.order_status.en").render(rng).text for _ in range(40)}
    assert len(texts) > 10


def test_render_fixed_values_template_and_language(cat):
    it = cat.by_id("ecom.delivery_time.ko")
    q = it.render(random.Random(0), {"city": "부산"}, template=0)
    assert q.text == "부산까지 배송 얼마나 걸려요?" and q.slots == {"city": "부산"} and "부산" in q.answer
    assert q.answer_key == "ecom.delivery_time.ko|city=부산"
    # unfixed slots use the intent's language
    assert cat.by_id("ecom.delivery_time.en").render(random.Random(0)).slots["city"] in {
        e["en"] for e in cat.vocabulary["city"]}
    # two slots of one type never get the same value
    comparison = cat.by_id("saas.plan_comparison.en")
    for seed in range(30):
        s = comparison.render(random.Random(seed)).slots
        assert s["plan_a"] != s["plan_b"]
    assert comparison.render(random.Random(1), {"plan_a": "Pro"}).slots["plan_b"] != "Pro"
    with pytest.raises(ValueError, match="no slot"):
        it.render(random.Random(0), {"order_id": "123"})
    with pytest.raises(IndexError):
        it.render(random.Random(0), template=99)


def test_documented_examples_render_as_documented(cat):
    # datasets/README.md and the llmlab.catalogue docstring show these exact outputs
    q = cat.by_id("saas.subscription_cancel.ko").render(random.Random(1))
    assert (q.text, q.answer_key) == ("저희 엔터프라이즈 플랜 구독 해지하고 싶어요.", "saas.subscription_cancel.ko|plan=엔터프라이즈")
    q = cat.by_id("ecom.refund_status.en").render(random.Random(7))
    assert q.text == "When will I receive the refund for order 2866391?"
    assert q.answer_key == "ecom.refund_status.en|order_id=2866391"


def test_render_accepts_a_numpy_generator(cat):
    np = pytest.importorskip("numpy")
    it = cat.by_id("saas.cost_forecast.en")
    assert it.render(np.random.default_rng(5)) == it.render(np.random.default_rng(5))


# ------------------------------------------------------------------------------ pairs

def test_pairs_counts_kinds_and_languages(pairs):
    assert len(pairs) >= 1000
    kinds = Counter(p.kind for p in pairs)
    assert set(kinds) == set(PAIR_KINDS)
    assert sum(p.hard_negative for p in pairs) / len(pairs) >= 0.30
    assert HARD_NEGATIVE_KINDS == {"slot_swap", "opposite_action", "neighbour_intent"}
    langs = Counter(p.lang for p in pairs)
    assert set(langs) == set(LANGS) and min(langs.values()) / len(pairs) >= 0.4
    for lang in LANGS:
        assert {p.kind for p in pairs if p.lang == lang} == set(PAIR_KINDS)
    positives = sum(p.label for p in pairs) / len(pairs)
    assert 0.30 <= positives <= 0.50


def test_pairs_agree_with_the_catalogue(cat, pairs):
    seen = set()
    for p in pairs:
        assert p.a != p.b and (p.a, p.b) not in seen and (p.b, p.a) not in seen
        seen.add((p.a, p.b))
        ia, ib = cat.by_id(p.intent_a), cat.by_id(p.intent_b)
        assert ia.lang == ib.lang == p.lang
        assert p.label == (1 if p.kind == "paraphrase" else 0)
        if p.kind in ("paraphrase", "slot_swap"):
            assert ia.id == ib.id
        else:
            assert ia.family != ib.family
        if p.kind == "opposite_action":
            assert ib.id in ia.opposites
        if p.kind == "slot_swap":
            assert ia.slots


# ------------------------------------------------------------------------------ generator

def test_generator_is_deterministic_and_matches_the_committed_files(generator, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    summary = generator.generate(first)
    generator.generate(second)
    assert summary["intents"] >= 120 and summary["pairs"] >= 1000
    for rel in OUTPUTS:
        data = (first / rel).read_bytes()
        assert data == (second / rel).read_bytes(), rel
        assert data == (DATASETS / rel).read_bytes(), f"{rel} is stale: run python datasets/generate_catalogue.py"
    assert load_catalogue(first / "intents.jsonl").intents == load_catalogue().intents


def test_generator_script_runs_standalone(tmp_path):
    result = subprocess.run([sys.executable, "-I", str(DATASETS / "generate_catalogue.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=True)
    assert "pairs_by_kind_lang" in result.stderr
    assert (tmp_path / "pairs.jsonl").read_bytes() == (DATASETS / "pairs.jsonl").read_bytes()


def test_loader_does_not_import_pandas_or_numpy():
    code = ("import sys, llmlab; before = set(sys.modules); import llmlab.catalogue as c; c.load_catalogue(); "
            "new = set(sys.modules) - before; print(sorted(m for m in new if m.split('.')[0] in ('pandas', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ malformed input

def _intent_line(**overrides) -> str:
    obj = {"id": "ecom.x.en", "domain": "ecommerce", "lang": "en", "family": "x", "category": "faq",
           "action": None, "templates": ["Where is order {order_id}?"] * 5, "slots": {"order_id": "order_id"},
           "answer": "Here.", "prompt_tokens": 200, "answer_tokens": 50, "popularity_rank": 1}
    obj.update(overrides)
    return json.dumps(obj)


VOCAB_LINE = json.dumps({"_vocabulary": {"order_id": ["123", "456"], "city": [{"en": "Seoul", "ko": "서울"}]}})


@pytest.mark.parametrize("bad_line, message", [
    ('{"id": "ecom.y.en", "domain": ', "invalid JSON"),
    ("[1, 2]", "JSON object"),
    (_intent_line(id="ecom.y.en", templates=["Where is {order_id} going to {city_name}?"] * 5), "undeclared slot"),
    (_intent_line(id="ecom.y.en", slots={"order_id": "order_number"}), "not in the _vocabulary"),
    (_intent_line(id="ecom.y.en", lang="fr"), "lang must be"),
    (_intent_line(id="ecom.y.en", prompt_tokens="many"), "prompt_tokens"),
    (_intent_line(), "duplicate intent id"),
])
def test_malformed_catalogue_lines_name_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "intents.jsonl"
    path.write_text("\n".join([VOCAB_LINE, _intent_line(), bad_line]) + "\n", encoding="utf-8")
    with pytest.raises(CatalogueFormatError, match=message) as info:
        load_catalogue(path)
    assert info.value.line == 3 and info.value.path == str(path)
    assert f"{path}, line 3" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_catalogue_without_vocabulary_is_rejected(tmp_path):
    path = tmp_path / "intents.jsonl"
    path.write_text(_intent_line(slots={}, templates=["Where?"] * 5) + "\n", encoding="utf-8")
    with pytest.raises(CatalogueFormatError, match="_vocabulary"):
        load_catalogue(path)


@pytest.mark.parametrize("bad, message", [
    ("not json", "invalid JSON"),
    ('{"a": "x", "b": "y", "label": 2, "lang": "en", "kind": "paraphrase"}', "label"),
    ('{"a": "x", "b": "y", "label": 0, "lang": "de", "kind": "slot_swap"}', "lang"),
    ('{"a": "x", "b": "y", "label": 0, "lang": "en", "kind": "near_miss"}', "kind"),
    ('{"a": "x", "label": 1, "lang": "en", "kind": "paraphrase"}', "missing field 'b'"),
    ('{"a": "x", "b": "y", "label": 0, "lang": "en", "kind": "paraphrase"}', "contradicts"),
])
def test_malformed_pair_lines_name_file_and_line(tmp_path, bad, message):
    good = json.dumps({"a": "x", "b": "y", "label": 1, "lang": "en", "kind": "paraphrase"})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join([good, "", bad]) + "\n", encoding="utf-8")
    with pytest.raises(CatalogueFormatError, match=message) as info:
        load_pairs(path)
    assert info.value.line == 3 and f"{path}, line 3" in str(info.value)


# ------------------------------------------------------------------------------ example trace

def test_example_trace(cat):
    with open(DATASETS / "traces" / "example_trace.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert 250 <= len(rows) <= 350
    assert list(rows[0]) == ["timestamp", "tenant", "plan", "prompt", "prompt_hash", "prompt_tokens",
                             "output_tokens", "intent", "answer_key"]
    from datetime import datetime
    times = [datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in rows]
    assert times == sorted(times) and (times[-1] - times[0]).total_seconds() <= 3600
    text_rows = [r for r in rows if r["prompt"]]
    hash_rows = [r for r in rows if not r["prompt"]]
    assert len(text_rows) >= 50 and len(hash_rows) >= 50
    for r in hash_rows:
        assert re.fullmatch(r"[0-9a-f]{64}", r["prompt_hash"]) and int(r["prompt_tokens"]) > 0
    for r in text_rows:
        assert r["prompt_hash"] == ""
    assert {r["plan"] for r in rows} == {"paid", "free"}
    assert len({r["tenant"] for r in rows}) >= 3
    for r in rows:
        it = cat.by_id(r["intent"])
        assert r["answer_key"].split("|")[0] == it.id
        if r["output_tokens"]:
            assert int(r["output_tokens"]) > 0
    # repeats exist, so exact and semantic caches both have something to hit
    assert len({r["prompt"] or r["prompt_hash"] for r in rows}) < len(rows)


def test_a_jsonl_line_that_is_not_utf8_is_reported_with_its_line(tmp_path):
    from llmlab.catalogue import CatalogueFormatError, load_pairs

    good = '{"a": "hi", "b": "hello", "label": 1, "lang": "en", "kind": "paraphrase"}\n'
    path = tmp_path / "pairs.jsonl"
    path.write_bytes("\ufeff".encode() + good.encode() + good.replace("hello", "h\xffo").encode("latin-1"))
    with pytest.raises(CatalogueFormatError, match=r"pairs\.jsonl, line 2: not UTF-8 text"):
        load_pairs(path)  # was a bare UnicodeDecodeError; the first line's BOM is fine
    path.write_bytes("\ufeff".encode() + good.encode())
    assert len(load_pairs(path)) == 1
