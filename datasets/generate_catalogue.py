#!/usr/bin/env python3
"""Generate llmlab's synthetic datasets: intent catalogue, labelled pairs, example trace.

Run ``python datasets/generate_catalogue.py`` (from anywhere) to rewrite, byte for byte:

* ``datasets/intents.jsonl`` — line 1 is ``{"_vocabulary": ..., "_meta": ...}`` (slot values,
  English and Korean); every further line is one intent (see ``datasets/README.md``);
* ``datasets/pairs.jsonl`` — labelled query pairs for tuning and judging a semantic cache;
* ``datasets/traces/example_trace.csv`` — a one-hour request log for trace replay.

Everything is written by hand below (the support questions, in English and natively in
Korean) and combined with fixed seeds, sorted iteration and integer arithmetic only, so the
output does not depend on the machine, ``PYTHONHASHSEED`` or the time of day.  Standard
library only: the script must run before llmlab (or anything else) is installed.

Korean templates never put a particle whose form depends on the preceding sound
(은/는, 이/가, 을/를, (으)로, 과/와, (이)랑 …) directly after a ``{slot}``: a slot value may
end with or without a final consonant, so templates attach particles to a following noun
("{plan} 요금제를") or use invariant ones (에, 의, 도, 까지, 하고).  ``check_catalogue``
enforces this.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED = 20250304
SCHEMA_VERSION = 1
HERE = Path(__file__).resolve().parent

LANGS = ("en", "ko")
DOMAIN_PREFIX = {"ecommerce": "ecom", "saas": "saas"}
CATEGORIES = ("faq", "general", "complex")

# --------------------------------------------------------------------------------------------
# Slot vocabulary.  A value is either one string used in every language (order numbers, seat
# counts) or {"en": ..., "ko": ...}.  "paid_plan" is the subset of "plan" that can be
# cancelled, upgraded to or priced per seat (nobody upgrades *to* Free).
# --------------------------------------------------------------------------------------------

CITIES = [
    ("Seoul", "서울"), ("Busan", "부산"), ("Incheon", "인천"), ("Daegu", "대구"),
    ("Daejeon", "대전"), ("Gwangju", "광주"), ("Jeju", "제주"), ("Ulsan", "울산"),
    ("Suwon", "수원"), ("Tokyo", "도쿄"), ("Osaka", "오사카"), ("Singapore", "싱가포르"),
    ("New York", "뉴욕"), ("London", "런던"), ("Sydney", "시드니"),
]
PRODUCTS = [
    ("AirFlow X2 headphones", "에어플로우 X2 헤드폰"),
    ("NovaBook 14 laptop", "노바북 14 노트북"),
    ("PulseFit smartwatch", "펄스핏 스마트워치"),
    ("Trailrunner 5 running shoes", "트레일러너 5 러닝화"),
    ("BrewMaster espresso machine", "브루마스터 에스프레소 머신"),
    ("CloudRest memory-foam pillow", "클라우드레스트 메모리폼 베개"),
    ("Lumi LED desk lamp", "루미 LED 데스크 램프"),
    ("AquaPure water filter", "아쿠아퓨어 정수 필터"),
    ("Merino crew-neck sweater", "메리노 크루넥 스웨터"),
    ("SnapCam 4K action camera", "스냅캠 4K 액션캠"),
    ("ZenGrip yoga mat", "젠그립 요가 매트"),
    ("VoltGo 20000mAh power bank", "볼트고 20000mAh 보조배터리"),
]
PLANS = [("Free", "무료"), ("Starter", "스타터"), ("Pro", "프로"), ("Enterprise", "엔터프라이즈")]
MONTHS = [
    ("January", "1월"), ("February", "2월"), ("March", "3월"), ("April", "4월"), ("May", "5월"),
    ("June", "6월"), ("July", "7월"), ("August", "8월"), ("September", "9월"),
    ("October", "10월"), ("November", "11월"), ("December", "12월"),
]
APPS = [
    ("Slack", "슬랙"), ("Salesforce", "세일즈포스"), ("HubSpot", "허브스팟"), ("Jira", "지라"),
    ("Google Drive", "구글 드라이브"), ("Notion", "노션"), ("Zendesk", "젠데스크"),
    ("Microsoft Teams", "마이크로소프트 팀즈"),
]
SEATS = ["10", "15", "25", "40", "60", "75", "120", "250"]


def order_ids() -> list[str]:
    """Thirty seven-digit order numbers, fixed by the seed."""
    rng = random.Random(SEED + 1)
    ids: list[str] = []
    while len(ids) < 30:
        value = str(rng.randrange(1_000_000, 10_000_000))
        if value not in ids:
            ids.append(value)
    return ids


def vocabulary() -> dict[str, list]:
    def both(rows):
        return [{"en": en, "ko": ko} for en, ko in rows]

    return {
        "order_id": order_ids(),
        "city": both(CITIES),
        "product": both(PRODUCTS),
        "plan": both(PLANS),
        "paid_plan": both(PLANS[1:]),
        "month": both(MONTHS),
        "app": both(APPS),
        "seats": list(SEATS),
    }


def localized(vocab: dict, slot_type: str, lang: str) -> list[str]:
    return [v if isinstance(v, str) else v[lang] for v in vocab[slot_type]]


# --------------------------------------------------------------------------------------------
# The catalogue content.  One family = one question, asked in English and in Korean.
# tokens = (typical prompt tokens incl. system prompt, typical answer tokens) for English;
# Korean costs more tokens with common tokenizers (see ko_tokens).
# --------------------------------------------------------------------------------------------

FAMILIES: list[dict] = []


def F(domain, family, category, action, slots, pop, tokens, en_answer, en, ko_answer, ko, opposites=()):
    FAMILIES.append(dict(domain=domain, family=family, category=category, action=action, slots=slots,
                         pop=pop, tokens=tokens, opposites=tuple(opposites),
                         en=(en_answer, en), ko=(ko_answer, ko)))


ORDER = {"order_id": "order_id"}
CITY = {"city": "city"}
PRODUCT = {"product": "product"}

# ------------------------------------------------------------------ ecommerce: faq
F("ecommerce", "order_status", "faq", "track", ORDER, 100, (220, 70),
  "Order {order_id} can be tracked under My Orders > Track shipment. Orders leave our warehouse within "
  "1-2 business days and the tracking link is emailed as soon as the parcel is handed to the courier.",
  ["Where is my order {order_id}?",
   "Can you tell me the status of order #{order_id}?",
   "What's the current status of my order number {order_id}?",
   "i want to track order {order_id}",
   "Could you check where order #{order_id} is right now?",
   "Any update on the delivery of order {order_id}?"],
  "주문 {order_id}의 배송 현황은 '마이페이지 > 주문/배송 조회'에서 확인하실 수 있습니다. 결제 후 1~2영업일 "
  "안에 출고되며, 출고되면 운송장 번호를 문자로 보내드려요.",
  ["주문번호 {order_id} 배송 어디쯤 왔나요?",
   "{order_id} 주문 건 지금 어떤 상태인지 알려주세요.",
   "주문 {order_id} 배송 조회 부탁드립니다.",
   "제 주문 {order_id} 지금 어디까지 왔는지 확인해 주실 수 있나요?",
   "주문번호 {order_id} 배송 현황 좀 봐주세요",
   "{order_id}번 주문 배송 상태 궁금해요"])

F("ecommerce", "order_cancel", "faq", "cancel", ORDER, 92, (230, 80),
  "Order {order_id} can be cancelled free of charge until it ships: open My Orders, select the order and "
  "choose Cancel order. If it has already shipped, refuse the delivery or start a return instead.",
  ["I want to cancel order {order_id}.",
   "How do I cancel my order #{order_id}?",
   "Please cancel order number {order_id} for me.",
   "Can I still cancel order {order_id}? I changed my mind.",
   "cancel my order {order_id} pls",
   "I'd like to call off order #{order_id} before it ships."],
  "출고 전이라면 '마이페이지 > 주문 내역'에서 주문 {order_id} 선택 후 '주문 취소'를 누르시면 무료로 "
  "취소됩니다. 이미 출고된 경우에는 수령을 거부하시거나 반품을 신청해 주세요.",
  ["주문번호 {order_id} 취소하고 싶어요.",
   "{order_id} 주문 취소 어떻게 하나요?",
   "주문 {order_id} 취소 부탁드립니다.",
   "마음이 바뀌어서 그런데 주문 {order_id} 아직 취소 가능한가요?",
   "{order_id}번 주문 취소해 주세요",
   "주문번호 {order_id} 출고 전에 취소할 수 있을까요?"])

F("ecommerce", "refund_request", "faq", "refund", ORDER, 90, (240, 90),
  "To request a refund for order {order_id}, go to My Orders > Return or refund and pick the items and a "
  "reason. Once the return is approved, the money goes back to your original payment method.",
  ["I want a refund for order {order_id}.",
   "How do I get my money back for order #{order_id}?",
   "Please refund order number {order_id}.",
   "Can I request a refund on order {order_id}?",
   "i need to get refunded for order {order_id}",
   "What do I do to claim a refund for my order #{order_id}?"],
  "주문 {order_id} 환불은 '마이페이지 > 취소/반품/환불'에서 상품과 사유를 선택해 신청하실 수 있습니다. "
  "반품이 승인되면 원래 결제 수단으로 환불돼요.",
  ["주문번호 {order_id} 환불 받고 싶어요.",
   "{order_id} 주문 환불 신청은 어떻게 하나요?",
   "주문 {order_id} 환불해 주세요.",
   "주문 {order_id} 환불 요청하려면 어디서 해야 돼요?",
   "{order_id}번 주문 돈 돌려받을 수 있나요?",
   "주문번호 {order_id} 환불 접수 부탁드립니다"])

F("ecommerce", "refund_status", "faq", "refund", ORDER, 88, (230, 80),
  "Refunds are issued within 3 business days of the return being approved; your bank may take another "
  "3-7 days to show it. See where the refund for order {order_id} stands under My Orders > Refund status.",
  ["Where is my refund for order {order_id}?",
   "I returned order #{order_id} but haven't got my money back yet. What's the status?",
   "When will I receive the refund for order {order_id}?",
   "Has the refund for order number {order_id} been processed?",
   "refund status for order {order_id}?",
   "How long until the refund on order #{order_id} shows up on my card?"],
  "반품 승인 후 3영업일 안에 환불이 처리되며, 카드사에 따라 실제 반영까지 3~7일이 더 걸릴 수 있습니다. "
  "주문 {order_id}의 환불 진행 상황은 '마이페이지 > 환불 현황'에서 확인하세요.",
  ["주문번호 {order_id} 환불 언제 들어오나요?",
   "{order_id} 주문 반품했는데 아직 환불이 안 됐어요. 어떻게 된 건가요?",
   "주문 {order_id} 환불 처리됐는지 확인 부탁드려요.",
   "주문 {order_id} 환불 진행 상황 알려주세요.",
   "{order_id}번 주문 환불금 카드로 언제 들어와요?",
   "주문번호 {order_id} 환불 완료됐나요?"])

F("ecommerce", "address_change", "faq", "change", ORDER, 75, (220, 70),
  "You can change the delivery address for order {order_id} under My Orders > Edit address as long as it "
  "hasn't shipped. After dispatch, request a redirect on the courier's tracking page.",
  ["How do I change the delivery address for order {order_id}?",
   "I need to update the shipping address on order #{order_id}.",
   "Can I send order {order_id} to a different address?",
   "I moved, please change the address for order number {order_id}.",
   "wrong address on order {order_id}, can i fix it?",
   "Is it possible to edit where order #{order_id} gets delivered?"],
  "출고 전이라면 '마이페이지 > 주문 내역 > 배송지 변경'에서 주문 {order_id}의 주소를 바꾸실 수 있습니다. "
  "이미 출고됐다면 택배사 조회 페이지에서 배송지 변경을 요청해 주세요.",
  ["주문번호 {order_id} 배송지 변경하고 싶어요.",
   "{order_id} 주문 주소 잘못 입력했는데 수정 가능한가요?",
   "주문 {order_id} 다른 주소로 받을 수 있을까요?",
   "이사를 해서 그러는데 주문 {order_id} 배송 주소 바꿔 주세요.",
   "{order_id}번 주문 배송지 수정 어떻게 해요?",
   "주문번호 {order_id} 받는 주소 변경 부탁드립니다"])

F("ecommerce", "delivery_time", "faq", None, CITY, 85, (200, 60),
  "Standard delivery to {city} takes 1-3 business days after dispatch; express arrives the next business "
  "day if you order before 2 pm. International addresses take 5-10 business days.",
  ["How long does delivery to {city} take?",
   "When will my package arrive if I ship to {city}?",
   "What's the delivery time for {city}?",
   "How many days does shipping to {city} usually take?",
   "delivery time to {city}?",
   "If I order today, how soon can it get to {city}?"],
  "{city} 지역은 출고 후 보통 1~3영업일 안에 도착하며, 오후 2시 전에 주문하시면 빠른배송으로 다음 "
  "영업일에 받으실 수 있습니다. 해외 주소는 5~10영업일이 걸립니다.",
  ["{city}까지 배송 얼마나 걸려요?",
   "{city} 지역 배송 기간이 어떻게 되나요?",
   "{city}에서 받으면 며칠 만에 도착하나요?",
   "오늘 주문하면 {city}에 언제쯤 도착할까요?",
   "{city} 배송 보통 며칠 걸리나요?",
   "{city}까지 배송 소요 기간 알려주세요"])

F("ecommerce", "shipping_cost", "faq", None, CITY, 82, (200, 60),
  "Shipping to {city} is free on orders over $50; below that, standard shipping is $4.99 and express is "
  "$9.99. International shipping is calculated by weight at checkout.",
  ["How much is shipping to {city}?",
   "What does it cost to ship an order to {city}?",
   "Is delivery to {city} free, or how much do you charge?",
   "What are the shipping fees for {city}?",
   "shipping cost to {city}?",
   "Do you charge for delivery to {city}, and how much?"],
  "{city} 지역은 5만 원 이상 구매 시 무료배송이고, 그 미만은 일반배송 3,000원, 빠른배송 6,000원입니다. "
  "해외 배송비는 무게에 따라 결제 단계에서 계산됩니다.",
  ["{city}까지 배송비 얼마예요?",
   "{city} 지역 배송비가 어떻게 되나요?",
   "{city}도 무료배송 되나요? 아니면 배송비 얼마예요?",
   "{city}에 보내면 택배비 얼마 나와요?",
   "{city} 배송 요금 알려주세요.",
   "{city}까지 보내는 데 배송비 따로 드나요?"])

F("ecommerce", "return_policy", "faq", "return", {}, 86, (210, 90),
  "You can return most items within 30 days of delivery if they are unused and in their original "
  "packaging. Start the return under My Orders; return shipping is free for defective items and $4.99 "
  "otherwise.",
  ["What is your return policy?",
   "How many days do I have to return an item?",
   "Can I return something I bought if I don't like it?",
   "What are the rules for returning a product?",
   "return policy?",
   "Is there a time limit on returns, and what condition does the item need to be in?"],
  "대부분의 상품은 수령 후 30일 이내, 미사용·원래 포장 상태라면 반품하실 수 있습니다. '마이페이지 > 반품 "
  "신청'에서 접수하시면 되고, 불량은 반품비 무료, 단순 변심은 3,000원입니다.",
  ["반품 규정이 어떻게 되나요?",
   "반품은 며칠 안에 해야 하나요?",
   "단순 변심으로도 반품 가능한가요?",
   "상품 반품 조건 알려주세요.",
   "반품 정책 궁금해요",
   "반품 기한이랑 조건이 어떻게 돼요?"])

F("ecommerce", "exchange_size", "faq", "exchange", ORDER, 70, (220, 80),
  "Size exchanges for order {order_id} are free within 30 days: choose Exchange under My Orders and pick "
  "the new size, and we ship it as soon as the courier collects the original item.",
  ["I need a different size for the item in order {order_id}.",
   "Can I exchange the size on order #{order_id}?",
   "The item from order {order_id} doesn't fit. How do I swap it for another size?",
   "How do I exchange order number {order_id} for a different size?",
   "size exchange for order {order_id} please",
   "I'd like to swap the size of what I got in order #{order_id}."],
  "주문 {order_id}의 사이즈 교환은 수령 후 30일 이내 무료입니다. '마이페이지 > 교환 신청'에서 원하는 "
  "사이즈를 선택하시면 기존 상품을 회수한 뒤 바로 보내드려요.",
  ["주문번호 {order_id} 사이즈 교환하고 싶어요.",
   "{order_id} 주문 상품 사이즈가 안 맞는데 다른 치수로 바꿀 수 있나요?",
   "주문 {order_id} 사이즈 교환 어떻게 하나요?",
   "주문 {order_id} 받은 옷이 안 맞아요. 사이즈 교환 가능할까요?",
   "{order_id}번 주문 다른 사이즈로 교환 부탁드려요",
   "주문번호 {order_id} 치수 교환 신청하려면 어떻게 해요?"])

F("ecommerce", "coupon_invalid", "faq", None, {}, 78, (210, 70),
  "Coupons fail when they have expired, the cart is below the minimum spend or the items are excluded "
  "(for example sale items). Check the conditions under My Coupons; if it still fails, send us the code.",
  ["My coupon code isn't working.",
   "Why won't my discount code apply at checkout?",
   "The promo code says invalid, what's wrong?",
   "I can't use my coupon on my order, can you help?",
   "coupon not working",
   "Checkout rejects my voucher code. Why?"],
  "쿠폰은 유효기간이 지났거나, 최소 주문 금액에 못 미치거나, 할인 제외 상품이 담겨 있으면 적용되지 "
  "않습니다. '마이페이지 > 쿠폰함'에서 사용 조건을 확인해 보시고, 그래도 안 되면 쿠폰 코드를 알려주세요.",
  ["쿠폰이 적용이 안 돼요.",
   "할인 코드 입력했는데 유효하지 않다고 나와요.",
   "결제할 때 쿠폰이 안 먹히는데 왜 그런가요?",
   "쿠폰 사용이 안 되는데 확인 좀 해주세요.",
   "쿠폰 등록했는데 사용이 안 돼요 ㅠㅠ",
   "프로모션 코드가 안 들어가요. 이유가 뭘까요?"])

F("ecommerce", "payment_failed", "faq", None, {}, 80, (220, 80),
  "A failed payment is usually a declined card, an authentication step that timed out or a billing "
  "address mismatch. Nothing is charged for a failed attempt: try again or use another payment method, "
  "and contact your bank if it keeps failing.",
  ["My payment failed, what should I do?",
   "Why was my card declined at checkout?",
   "I can't complete the payment, it keeps failing.",
   "The payment didn't go through. Was I charged?",
   "payment error at checkout",
   "Checkout says the transaction failed. How do I fix it?"],
  "결제 실패는 대부분 카드 승인 거절, 본인 인증 시간 초과, 청구지 정보 불일치 때문입니다. 실패한 결제는 "
  "청구되지 않으니 다시 시도하시거나 다른 결제 수단을 이용해 주시고, 계속 실패하면 카드사에 문의해 주세요.",
  ["결제가 실패했어요. 어떻게 해야 하나요?",
   "카드 결제가 자꾸 거절돼요.",
   "결제 진행이 안 되는데 왜 그런가요?",
   "결제 오류 났는데 돈 빠져나간 건 아니죠?",
   "결제하는데 에러 떠요",
   "주문하려는데 결제 단계에서 계속 실패합니다."])

F("ecommerce", "gift_card_balance", "faq", None, {}, 55, (190, 50),
  "Check a gift card's balance under My Account > Gift cards by entering its 16-digit code, or at checkout "
  "when you apply it. Gift cards are valid for 5 years from purchase.",
  ["How do I check my gift card balance?",
   "How much money is left on my gift card?",
   "Where can I see the balance of a gift card?",
   "gift card balance check",
   "Can you tell me how to find out what's remaining on my gift card?",
   "I have a gift card. How do I see how much credit it still has?"],
  "기프트카드 잔액은 '마이페이지 > 기프트카드'에서 16자리 번호를 입력하시거나 결제 단계에서 카드를 "
  "적용하면 확인하실 수 있습니다. 기프트카드 유효기간은 구매일로부터 5년입니다.",
  ["기프트카드 잔액 확인은 어떻게 하나요?",
   "상품권 잔액이 얼마나 남았는지 알고 싶어요.",
   "기프트카드 남은 금액 어디서 봐요?",
   "기프트카드 잔액 조회",
   "선물 받은 기프트카드 잔액 확인 방법 알려주세요.",
   "상품권 얼마 남았는지 어떻게 확인해요?"])

F("ecommerce", "product_stock", "faq", None, PRODUCT, 83, (200, 60),
  "Live stock for the {product} is shown on its product page. If it's sold out, tap Notify me and we'll "
  "email you as soon as it is back, usually within 2 weeks.",
  ["Is the {product} in stock?",
   "Do you have the {product} available right now?",
   "Can I still buy the {product}, or is it sold out?",
   "Is the {product} available to order?",
   "{product} in stock?",
   "Do you still have the {product} in stock?"],
  "{product} 재고는 상품 페이지에서 실시간으로 확인하실 수 있어요. 품절이라면 '재입고 알림'을 신청해 "
  "주세요. 보통 2주 안에 재입고되며 입고되면 바로 알려드립니다.",
  ["{product} 재고 있나요?",
   "{product} 지금 구매 가능한가요?",
   "{product} 품절인가요, 아직 살 수 있나요?",
   "{product} 아직 살 수 있어요?",
   "{product} 재고 확인 부탁드려요.",
   "{product} 주문 가능한지 알려주세요"])

F("ecommerce", "warranty_period", "faq", None, PRODUCT, 60, (210, 70),
  "The {product} comes with a 1-year manufacturer warranty from the delivery date, covering defects but "
  "not accidental damage. Register the product under My Account to make claims faster.",
  ["What's the warranty on the {product}?",
   "How long is the {product} covered by warranty?",
   "Does the {product} come with a warranty, and for how long?",
   "warranty period for {product}?",
   "If my {product} breaks, how long am I covered?",
   "What does the {product} warranty cover and for how long?"],
  "{product} 제품에는 배송일로부터 1년간 제조사 보증이 적용되며, 제품 결함은 보장되지만 사용자 과실로 "
  "인한 파손은 제외됩니다. 마이페이지에서 제품을 등록해 두시면 보증 접수가 더 빨라요.",
  ["{product} 보증 기간이 어떻게 되나요?",
   "{product} 무상 A/S 기간 얼마예요?",
   "{product} 워런티 있나요? 기간은요?",
   "{product} 고장 나면 언제까지 보증돼요?",
   "{product} 품질 보증 기간 알려주세요.",
   "{product} 보증 범위랑 기간이 궁금합니다"])

F("ecommerce", "newsletter_subscribe", "faq", "subscribe", {}, 30, (180, 45),
  "To get our newsletter and deals, tick Marketing emails under My Account > Notifications, or enter your "
  "email in the box at the bottom of any page. You can opt out at any time.",
  ["How do I sign up for your newsletter?",
   "I want to subscribe to your marketing emails.",
   "Please add me to your mailing list.",
   "How can I start getting emails about sales and deals?",
   "subscribe to newsletter",
   "Where do I opt in to promotional emails?"],
  "'마이페이지 > 알림 설정'에서 '마케팅 정보 수신'을 켜시거나 페이지 하단에 이메일을 입력하시면 "
  "뉴스레터와 할인 소식을 받아보실 수 있습니다. 언제든 수신을 거부하실 수 있어요.",
  ["뉴스레터 구독하고 싶어요.",
   "할인 소식 메일로 받으려면 어떻게 하나요?",
   "마케팅 이메일 수신 신청은 어디서 해요?",
   "이벤트 알림 메일 받고 싶은데 신청 방법 알려주세요.",
   "뉴스레터 신청",
   "프로모션 메일 수신 동의하려면 어떻게 해야 돼요?"],
  opposites=["newsletter_unsubscribe"])

F("ecommerce", "newsletter_unsubscribe", "faq", "unsubscribe", {}, 45, (180, 45),
  "To stop marketing emails, click Unsubscribe at the bottom of any of our emails or untick Marketing "
  "emails under My Account > Notifications. Order and delivery emails will still be sent.",
  ["How do I unsubscribe from your newsletter?",
   "Please stop sending me marketing emails.",
   "Take me off your mailing list.",
   "How can I stop getting emails about sales and deals?",
   "unsubscribe from newsletter",
   "Where do I opt out of promotional emails?"],
  "메일 하단의 '수신 거부'를 누르시거나 '마이페이지 > 알림 설정'에서 '마케팅 정보 수신'을 끄시면 됩니다. "
  "주문·배송 안내 메일은 계속 발송됩니다.",
  ["뉴스레터 구독 취소하고 싶어요.",
   "할인 소식 메일 그만 받으려면 어떻게 하나요?",
   "마케팅 이메일 수신 거부는 어디서 해요?",
   "광고 메일 좀 그만 보내 주세요.",
   "뉴스레터 수신 거부",
   "프로모션 메일 수신 동의 철회하려면 어떻게 해야 돼요?"],
  opposites=["newsletter_subscribe"])

F("ecommerce", "points_balance", "faq", None, {}, 50, (190, 50),
  "Your reward points balance is under My Account > Points. You earn 1 % of each purchase in points, can "
  "spend them from 1,000 points, and they expire 12 months after they are earned.",
  ["How many reward points do I have?",
   "Where can I check my points balance?",
   "How do I see my loyalty points?",
   "points balance?",
   "I want to know how many membership points I've collected.",
   "Can you tell me where to find my rewards points total?"],
  "적립금(포인트)은 '마이페이지 > 포인트'에서 확인하실 수 있습니다. 구매 금액의 1%가 적립되고 "
  "1,000포인트부터 사용 가능하며, 적립일로부터 12개월 후 소멸됩니다.",
  ["제 포인트 얼마나 있어요?",
   "적립금 잔액 어디서 확인하나요?",
   "멤버십 포인트 조회는 어떻게 해요?",
   "포인트 확인",
   "지금까지 쌓인 적립금 보고 싶어요.",
   "보유 포인트 확인 방법 알려주세요."])

# ------------------------------------------------------------------ ecommerce: general
F("ecommerce", "product_specs", "general", None, PRODUCT, 68, (280, 180),
  "The full specifications of the {product} (dimensions, weight, materials, battery or power details and "
  "what's in the box) are under the Specs tab on its product page, where the manual is also available as "
  "a PDF.",
  ["What are the specs of the {product}?",
   "Can you give me the technical details for the {product}?",
   "Tell me the specifications of the {product}.",
   "{product} specs",
   "I'd like the full spec sheet for the {product}: size, weight, materials.",
   "What are the dimensions and technical specs of the {product}?"],
  "{product} 제품의 상세 사양(크기, 무게, 소재, 배터리/전원 정보, 구성품)은 상품 페이지의 '상세 스펙' 탭에 "
  "정리되어 있고, 사용 설명서 PDF도 같은 곳에서 내려받으실 수 있습니다.",
  ["{product} 스펙 알려주세요.",
   "{product} 상세 사양이 어떻게 되나요?",
   "{product} 크기랑 무게, 소재 정보 궁금해요.",
   "{product} 제품 사양 정리해 주세요",
   "{product} 기술 사양 좀 알 수 있을까요?",
   "{product} 스펙표 볼 수 있나요?"])

F("ecommerce", "damaged_item", "general", "claim", ORDER, 62, (300, 160),
  "Sorry that order {order_id} arrived damaged. Send photos of the item and the box via My Orders > Report "
  "a problem within 7 days; we'll ship a free replacement or refund you in full, and the courier collects "
  "the damaged item.",
  ["The item in order {order_id} arrived broken.",
   "My order #{order_id} came damaged, what can you do?",
   "I received order {order_id} and the product is damaged. Please sort it out.",
   "order {order_id} arrived smashed",
   "The box for order number {order_id} was crushed and the item inside is broken. What now?",
   "What should I do about a damaged item in order #{order_id}?"],
  "주문 {order_id} 상품이 파손되어 도착해 죄송합니다. 수령 후 7일 이내에 '마이페이지 > 문제 신고'로 상품과 "
  "박스 사진을 보내 주시면 무료 교환 또는 전액 환불해 드리며, 파손 상품은 택배 기사가 회수합니다.",
  ["주문번호 {order_id} 상품이 파손돼서 왔어요.",
   "{order_id} 주문 받았는데 제품이 깨져 있어요. 어떻게 해야 하나요?",
   "주문 {order_id} 박스가 찌그러져서 안에 물건도 망가졌어요.",
   "주문 {order_id} 배송 중에 파손된 것 같아요. 처리 부탁드려요.",
   "{order_id}번 주문 물건 부서져서 왔어요",
   "주문번호 {order_id} 파손 상품 접수하려면 어떻게 하나요?"])

F("ecommerce", "missing_package", "general", "claim", ORDER, 64, (290, 150),
  "If tracking shows order {order_id} as delivered but you can't find it, check with neighbours and your "
  "building's mailroom and wait 24 hours, as couriers sometimes scan early. Then report it under My Orders "
  "> Report a problem and we'll open a courier investigation and reship or refund.",
  ["Tracking says order {order_id} was delivered but I never got it.",
   "My order #{order_id} shows delivered, but there's no package.",
   "Order {order_id} is marked as delivered and it's not here.",
   "package for order {order_id} missing even though it says delivered",
   "I can't find my parcel for order number {order_id} although tracking says it arrived.",
   "What do I do if order #{order_id} says delivered but I didn't receive it?"],
  "주문 {order_id} 건이 배송 완료로 표시됐는데 받지 못하셨다면 경비실, 이웃, 택배함을 먼저 확인해 주시고, "
  "택배사가 미리 완료 처리하는 경우가 있으니 24시간 기다려 주세요. 그래도 없으면 '마이페이지 > 문제 신고'로 "
  "접수해 주시면 택배사 조사 후 재발송 또는 환불해 드립니다.",
  ["주문번호 {order_id} 배송 완료라고 뜨는데 물건을 못 받았어요.",
   "{order_id} 주문 배송 완료로 나오는데 택배가 없어요.",
   "주문 {order_id} 도착했다고 하는데 어디에도 없습니다.",
   "{order_id}번 주문 분실된 것 같아요. 배송 완료인데 못 받았어요.",
   "주문 {order_id} 받은 적이 없는데 배송 완료 처리됐어요.",
   "주문번호 {order_id} 배송 완료인데 택배가 안 왔어요. 어떻게 해야 하나요?"])

F("ecommerce", "card_save", "general", "add", {}, 40, (220, 90),
  "To save a card, go to My Account > Payment methods > Add card and enter the card details. It is stored "
  "by our PCI-certified payment provider and you can pick it at checkout next time.",
  ["How do I save my credit card for future purchases?",
   "I want to add a new card to my account.",
   "Can I store my card details so I don't have to type them every time?",
   "add a payment card",
   "Where do I register a card as a saved payment method?",
   "How can I keep my card on file for faster checkout?"],
  "'마이페이지 > 결제 수단 관리 > 카드 등록'에서 카드 정보를 입력하시면 저장됩니다. 카드 정보는 PCI 인증을 "
  "받은 결제 대행사에 안전하게 보관되며 다음 결제 때 바로 선택하실 수 있어요.",
  ["카드 등록하려면 어떻게 해야 돼요?",
   "결제할 때마다 입력하기 귀찮은데 카드 저장할 수 있나요?",
   "새 신용카드 추가하고 싶어요.",
   "결제 수단에 카드 등록",
   "간편결제용 카드 등록은 어디서 하나요?",
   "다음에 빨리 결제하려고 카드 정보 저장해 두고 싶어요."],
  opposites=["card_delete"])

F("ecommerce", "card_delete", "general", "remove", {}, 35, (220, 80),
  "To remove a saved card, go to My Account > Payment methods, select the card and choose Delete. A card "
  "linked to an active subscription has to be replaced first.",
  ["How do I delete my saved credit card?",
   "I want to remove a card from my account.",
   "Can I erase my stored card details?",
   "remove a payment card",
   "Where do I unregister a saved payment card?",
   "How can I take my card off file?"],
  "'마이페이지 > 결제 수단 관리'에서 카드를 선택한 뒤 '삭제'를 누르시면 됩니다. 정기결제에 연결된 카드는 "
  "다른 카드로 먼저 변경해야 삭제할 수 있어요.",
  ["등록된 카드 삭제하려면 어떻게 해야 돼요?",
   "저장된 카드 정보 지우고 싶어요.",
   "예전 신용카드 등록 해제하고 싶어요.",
   "결제 수단에서 카드 삭제",
   "간편결제에 등록한 카드 빼는 건 어디서 하나요?",
   "더 이상 안 쓰는 카드 정보 삭제 부탁드려요."],
  opposites=["card_save"])

F("ecommerce", "receipt_request", "general", None, ORDER, 48, (230, 90),
  "A receipt for order {order_id} can be downloaded as a PDF under My Orders > Order details > Receipt. "
  "For a VAT invoice with your company details, choose Request tax invoice on the same page.",
  ["Can I get a receipt for order {order_id}?",
   "Where do I download the receipt for order #{order_id}?",
   "I need a receipt for order number {order_id} for my expenses.",
   "receipt for order {order_id}",
   "Please send me a proof of purchase for order {order_id}.",
   "How do I print the receipt for my order #{order_id}?"],
  "주문 {order_id}의 영수증은 '마이페이지 > 주문 상세 > 영수증'에서 PDF로 내려받으실 수 있습니다. 사업자 "
  "정보가 들어간 세금계산서가 필요하시면 같은 화면에서 '세금계산서 신청'을 눌러 주세요.",
  ["주문번호 {order_id} 영수증 받을 수 있나요?",
   "{order_id} 주문 영수증 어디서 출력해요?",
   "주문 {order_id} 구매 영수증 필요해요. 비용 처리용이에요.",
   "{order_id}번 주문 영수증 발급 부탁드립니다",
   "주문 {order_id} 결제 증빙 서류 받고 싶어요.",
   "주문번호 {order_id} 영수증 다운로드 방법 알려주세요"])

F("ecommerce", "pickup_point", "general", None, CITY, 42, (220, 90),
  "We have pickup lockers and partner stores in {city}: choose Pick up at checkout and enter a postcode to "
  "see the nearest points and their opening hours. Parcels wait 5 days before they are returned.",
  ["Are there any pickup points in {city}?",
   "Can I collect my order from a pickup location in {city}?",
   "Where can I pick up parcels in {city}?",
   "pickup locations {city}",
   "Is click-and-collect available in {city}?",
   "Do you have parcel lockers in {city} where I can get my order?"],
  "{city}에는 무인 택배함과 제휴 매장 픽업 장소가 있습니다. 결제 단계에서 '픽업'을 선택하고 우편번호를 "
  "입력하시면 가까운 장소와 운영 시간을 볼 수 있어요. 도착 후 5일 동안 보관됩니다.",
  ["{city}에 픽업 가능한 곳 있나요?",
   "{city}에서 매장 픽업해서 받을 수 있어요?",
   "{city} 택배 보관함 픽업 되나요?",
   "{city} 픽업 장소 알려주세요",
   "{city} 근처에서 직접 찾아갈 수 있는 픽업 지점이 있을까요?",
   "{city}에서 주문한 거 직접 수령할 수 있는 곳 있어요?"])

F("ecommerce", "product_care", "general", None, PRODUCT, 38, (260, 170),
  "For the {product}: wipe it with a soft, slightly damp cloth, avoid solvents and the dishwasher, let it "
  "dry fully before storing it and keep it out of direct sunlight. The care guide on the product page has "
  "model-specific tips.",
  ["How do I clean the {product}?",
   "What's the best way to take care of my {product}?",
   "Any maintenance tips for the {product}?",
   "cleaning instructions {product}",
   "How should I look after the {product} so it lasts longer?",
   "What are the care instructions for the {product}?"],
  "{product} 관리 방법입니다. 부드럽고 살짝 젖은 천으로 닦아 주시고, 세제나 식기세척기는 피해 주세요. "
  "보관 전에 완전히 말리고 직사광선을 피하시면 됩니다. 상품 페이지의 관리 가이드에 모델별 팁이 있어요.",
  ["{product} 세척은 어떻게 하나요?",
   "{product} 관리 방법 알려주세요.",
   "{product} 오래 쓰려면 어떻게 관리해야 해요?",
   "{product} 청소 방법",
   "{product} 관리할 때 주의할 점 있나요?",
   "{product} 손질법 궁금해요"])

F("ecommerce", "review_help", "general", "write", PRODUCT, 25, (300, 220),
  "Here's a draft review of the {product}: what you bought it for, what worked well, one honest drawback "
  "and who you'd recommend it to. Add a photo and you earn 500 reward points once it's published.",
  ["Help me write a review for the {product}.",
   "Can you draft a product review of the {product} for me?",
   "Write a short honest review of my {product}.",
   "review for {product} pls",
   "I want to post a review of the {product}; can you write one?",
   "Could you put together a customer review of the {product}?"],
  "{product} 리뷰 초안입니다. 구매 이유, 좋았던 점, 솔직한 아쉬운 점 하나, 추천하고 싶은 사람 순서로 "
  "정리했어요. 사진을 함께 올리시면 리뷰 게시 후 500포인트가 적립됩니다.",
  ["{product} 리뷰 쓰는 것 좀 도와주세요.",
   "{product} 상품평 초안 써 주실 수 있나요?",
   "{product} 사용 후기 짧게 써 줘.",
   "{product} 리뷰 작성 부탁해요",
   "{product} 구매 후기 하나 대신 써 줄래요?",
   "{product} 솔직한 리뷰 문구 만들어 주세요"])

F("ecommerce", "gift_suggestion", "general", "recommend", {}, 33, (280, 220),
  "Popular gifts right now: the AirFlow X2 headphones for music lovers, the PulseFit smartwatch for "
  "runners, the BrewMaster espresso machine for coffee fans, and a gift card when in doubt. Gift wrapping "
  "and a message card are free at checkout.",
  ["Can you recommend a good gift?",
   "What would make a nice present from your store?",
   "I need gift ideas, what do you suggest?",
   "gift recommendations?",
   "Which of your products make good gifts?",
   "Help me pick a present for a friend from your shop."],
  "요즘 인기 있는 선물은 음악 좋아하는 분께 에어플로우 X2 헤드폰, 러너에게 펄스핏 스마트워치, 커피 "
  "애호가에게 브루마스터 에스프레소 머신이고, 고민되시면 기프트카드도 좋아요. 선물 포장과 메시지 카드는 "
  "결제 단계에서 무료로 추가됩니다.",
  ["선물 추천해 주세요.",
   "선물하기 좋은 상품 뭐가 있나요?",
   "친구 선물 고르는데 뭐가 좋을까요?",
   "선물 뭐 사지? 추천 좀",
   "여기서 선물용으로 괜찮은 상품 알려주세요.",
   "선물로 괜찮은 거 몇 개 골라 주실래요?"])

# ------------------------------------------------------------------ ecommerce: complex
F("ecommerce", "product_comparison", "complex", "compare",
  {"product_a": "product", "product_b": "product"}, 36, (650, 480),
  "Comparing the {product_a} and the {product_b}: a side-by-side table of price, specs, warranty and "
  "customer ratings, the use each suits best, and a recommendation for daily use with the reasons.",
  ["Compare the {product_a} and the {product_b} in detail (price, build quality, warranty and reviews) "
   "and tell me which one is better value.",
   "I'm torn between the {product_a} and the {product_b}. Can you lay out the pros and cons of each and "
   "recommend one?",
   "Give me a thorough side-by-side comparison of the {product_a} versus the {product_b}, then a "
   "recommendation.",
   "Which should I buy, the {product_a} or the {product_b}? Walk me through the trade-offs in specs, "
   "durability and price.",
   "Please analyse the differences between the {product_a} and the {product_b} and tell me which one "
   "fits someone who will use it every day.",
   "Weigh up the {product_a} against the {product_b}: features, warranty, return terms, customer "
   "ratings. Which wins and why?"],
  "{product_a}, {product_b} 비교입니다. 가격, 사양, 보증, 고객 평점을 표로 정리하고 각각 어떤 용도에 잘 "
  "맞는지, 매일 쓰는 경우 어느 쪽을 추천하는지 이유와 함께 말씀드릴게요.",
  ["{product_a}, {product_b} 가격, 품질, 보증, 리뷰까지 자세히 비교해서 어떤 게 더 가성비 좋은지 "
   "알려주세요.",
   "{product_a}하고 {product_b} 중에 고민 중인데 각각 장단점 정리해서 하나 추천해 주세요.",
   "{product_a} 대 {product_b} 항목별로 꼼꼼하게 비교한 다음 추천해 줘.",
   "{product_a}, {product_b} 중에 뭘 사야 할까요? 스펙, 내구성, 가격 면에서 차이를 하나씩 설명해 주세요.",
   "매일 쓸 건데 {product_a}하고 {product_b} 차이를 분석해서 어떤 게 맞는지 알려주세요.",
   "{product_a}, {product_b}의 기능, 보증, 반품 조건, 고객 평점을 비교해서 어느 쪽이 나은지 이유와 함께 "
   "알려주세요."])

F("ecommerce", "complaint_escalation", "complex", "escalate", ORDER, 28, (700, 520),
  "I'm sorry about order {order_id}. Under our policy a delivery more than 7 days late earns a shipping "
  "refund, a missing item is reshipped or refunded, and a rejected refund can be appealed. Below is a "
  "timeline of the case, what you're entitled to and a complaint you can send to a supervisor.",
  ["Order {order_id} arrived two weeks late, one item was missing and my refund request was rejected. "
   "Explain what I'm entitled to under your policies and draft a complaint I can send to a supervisor.",
   "My order #{order_id} came two weeks late with an item missing, and then you rejected my refund. What "
   "am I entitled to, and can you write a complaint for a supervisor?",
   "Please help me escalate order {order_id}: it was two weeks late, an item was missing and the refund "
   "was turned down. Tell me my rights under your policy and draft the escalation message.",
   "Two weeks late, one item missing, refund refused: that's order number {order_id}. Work out what "
   "compensation I'm owed under your terms and write a complaint to a manager.",
   "I want to escalate order {order_id} (two weeks late, missing item, refund rejected). Summarise which "
   "policies apply, what I should ask for, and draft the letter to a supervisor.",
   "Can you analyse my case for order #{order_id} (delivered two weeks late, one item missing, refund "
   "request denied) and prepare a formal complaint to your management?"],
  "주문 {order_id} 건으로 불편을 드려 죄송합니다. 규정상 7일 넘게 지연되면 배송비를 환불해 드리고, 누락 "
  "상품은 재발송 또는 환불되며, 거절된 환불은 재심을 요청하실 수 있습니다. 아래에 경위, 받으실 수 있는 "
  "보상, 상급자에게 보낼 민원 초안을 정리했습니다.",
  ["주문 {order_id} 2주나 늦게 왔고 상품 하나가 빠져 있었는데 환불 요청까지 거절당했어요. 규정상 제가 받을 "
   "수 있는 보상이 뭔지 정리하고 상급자에게 보낼 민원 글을 써 주세요.",
   "주문번호 {order_id} 건, 배송 2주 지연에 상품 누락, 환불 거절까지 당했습니다. 정책상 제 권리가 뭔지 "
   "알려주시고 책임자 앞으로 보낼 항의문 초안을 부탁드려요.",
   "주문 {order_id} 문제를 상급자에게 올리고 싶어요. 2주 늦게 도착했고 한 개가 빠졌고 환불은 거절됐어요. "
   "적용되는 규정과 요구할 보상을 정리해서 민원 글을 작성해 주세요.",
   "{order_id} 주문: 2주 지연, 상품 누락, 환불 거절. 약관 기준으로 받을 수 있는 보상을 따져 보고 관리자에게 "
   "보낼 정식 항의문 써 줘.",
   "주문 {order_id} 배송이 2주 늦었고 상품 하나가 없었는데 환불 신청도 반려됐어요. 제가 어떤 보상을 요구할 "
   "수 있는지 분석하고 책임자에게 보낼 글을 작성해 주세요.",
   "2주 지연 배송, 누락 상품, 환불 거절까지 겹친 주문 {order_id} 건에 대해 규정상 권리를 정리하고 정식 "
   "민원서를 써 주실 수 있나요?"])

F("ecommerce", "bulk_order_quote", "complex", "quote", {"product": "product", "city": "city"}, 22, (620, 450),
  "For 200 units of the {product} delivered to {city} within three weeks: volume pricing drops 12 % above "
  "100 units, freight is quoted per pallet, stock can be reserved today for delivery in about 10 business "
  "days, and we invoice your company with 30-day payment terms. Full breakdown below.",
  ["We need 200 units of the {product} delivered to {city} within three weeks for a corporate event. "
   "Estimate the total cost with volume discounts, the delivery timeline and how invoicing works.",
   "Can you put together a quote for 200 units of the {product} shipped to {city} in the next three weeks? "
   "Include bulk pricing, shipping, lead time and payment terms.",
   "Our company wants to order 200 units of the {product} for an event in {city} three weeks from now. "
   "Break down the unit price at that volume, the delivery schedule and the invoice options.",
   "I'm planning a corporate purchase: 200 units of the {product}, delivered to {city}, deadline three "
   "weeks. What will it cost in total, and can you meet the date?",
   "Please prepare a bulk order estimate for 200 units of the {product} to {city} within three weeks, with "
   "discount tiers, shipping cost, timeline and how we'd be invoiced.",
   "For a corporate event we need 200 units of the {product} in {city} in three weeks. Walk me through "
   "pricing, delivery feasibility and the invoicing process."],
  "{product} 200개를 3주 안에 {city}까지 납품하는 조건입니다. 100개 이상은 단가가 12% 할인되고, 운송비는 "
  "팔레트 단위로 산정되며, 오늘 재고를 확보하면 약 10영업일 뒤 도착합니다. 법인 앞으로 세금계산서를 발행하고 "
  "결제는 30일 후불입니다. 자세한 내역은 아래와 같습니다.",
  ["3주 안에 {city}에서 열리는 기업 행사용으로 {product} 200개가 필요합니다. 대량 할인 적용한 총비용, 배송 "
   "일정, 세금계산서 처리 방법을 정리해 주세요.",
   "{product} 200개를 3주 안에 {city}까지 받아야 하는데 견적 내 주실 수 있나요? 대량 구매 단가, 배송비, "
   "소요 기간, 결제 조건 포함해서요.",
   "회사 행사 때문에 {product} 200개를 {city}에서 3주 안에 납품받으려고 합니다. 수량 기준 단가, 배송 일정, "
   "청구 방식 알려주세요.",
   "법인 구매 문의입니다. {product} 200개, 배송지 {city}, 기한 3주. 총 금액이 얼마인지, 일정 맞출 수 "
   "있는지 검토 부탁드려요.",
   "{product} 200개 {city} 배송, 3주 이내 조건으로 대량 주문 견적서 만들어 주세요. 할인 구간, 배송비, "
   "일정, 정산 방법까지요.",
   "기업 행사에 쓸 {product} 200개를 3주 안에 {city}에서 받아야 해요. 가격, 납기 가능 여부, 계산서 발행 "
   "절차를 차례로 설명해 주세요."])

F("ecommerce", "home_office_plan", "complex", "plan", {}, 20, (680, 560),
  "Here is a home office under budget built from our catalogue, prioritising ergonomics and video calls: "
  "the NovaBook 14 laptop, the AirFlow X2 headphones for calls, the Lumi LED desk lamp for even lighting "
  "on camera and the CloudRest pillow as lumbar support, each with its price, the reason it is included "
  "and the total.",
  ["I'm setting up a home office with a $1,500 budget. Using products from your store, put together a "
   "complete setup that prioritises ergonomics and video calls, with prices and a short reason for each "
   "item.",
   "Plan a full home-office kit from your catalogue for under $1,500, focused on comfort and good video "
   "calls. List each item, its price and why it's included.",
   "With $1,500 to spend, what home office setup would you build from your shop? I care most about "
   "ergonomics and video-call quality; justify each pick and give the total.",
   "Help me design a home office from your products: budget $1,500, priorities are ergonomic comfort and "
   "video calls. Give me an itemised list with prices and reasoning.",
   "Put together a home office shopping list under $1,500 from your store that is good for long work days "
   "and video meetings, explaining each choice and the total cost.",
   "Recommend a complete work-from-home setup from your catalogue within $1,500, optimised for ergonomics "
   "and video calls, item by item with prices and a total."],
  "예산 안에서 인체공학과 화상회의를 우선한 홈오피스 구성입니다. 노바북 14 노트북, 통화용 에어플로우 X2 "
  "헤드폰, 화면에 얼굴이 고르게 나오게 하는 루미 LED 데스크 램프, 허리 받침용 클라우드레스트 베개를 품목별 "
  "가격, 고른 이유, 합계와 함께 정리했습니다.",
  ["150만 원 예산으로 재택근무 공간을 꾸미려고 해요. 이 쇼핑몰 상품으로 인체공학과 화상회의를 우선해서 전체 "
   "구성을 짜 주시고 품목별 가격과 이유도 알려주세요.",
   "150만 원 안에서 재택근무용 홈오피스 세트를 구성해 주세요. 편안함과 화상회의 품질이 중요하고, 품목, "
   "가격, 고른 이유를 정리해 주세요.",
   "예산 150만 원으로 홈오피스 꾸밀 건데 이 몰에서 뭘 사면 좋을지 추천해 주세요. 인체공학이랑 화상회의가 "
   "제일 중요하고, 합계 금액도 알려주세요.",
   "이 쇼핑몰 상품으로 재택근무 환경 설계 좀 도와주세요. 예산 150만 원, 우선순위는 자세 편안함과 "
   "화상회의예요. 품목별 가격과 이유를 목록으로 주세요.",
   "하루 종일 일하고 화상회의도 많은데, 150만 원 이하로 살 수 있는 홈오피스 쇼핑 리스트를 이유와 총액까지 "
   "포함해 만들어 주세요.",
   "150만 원 한도에서 인체공학과 화상회의에 최적화된 재택근무 세트를 이 몰 상품으로 하나하나 가격과 함께 "
   "추천해 주세요."])

F("ecommerce", "membership_value", "complex", None, {}, 26, (600, 420),
  "At about 24 orders a year you'd save roughly $84 in express shipping and earn about $72 in points "
  "against the $49 fee, so premium membership pays for itself after about 8 orders. The calculation, "
  "step by step, is below.",
  ["I order about twice a month, around $60 each time. Would your $49-a-year premium membership (free "
   "express shipping, 5 % points) actually save me money? Show the calculation.",
   "Is the $49 annual premium membership worth it for me? I place roughly two orders a month at about $60 "
   "each. Work through the numbers on shipping and points.",
   "Do the maths for me: two orders a month, about $60 per order. Does the premium membership at $49 a "
   "year with free express delivery and 5 % points pay for itself?",
   "Analyse whether I should buy the premium membership ($49/year, free express shipping, 5 % back in "
   "points) given I spend about $60 per order, twice a month.",
   "With around 24 orders a year at roughly $60 each, compare what I pay now with what I'd pay on the $49 "
   "premium membership, and tell me if it's worth it.",
   "Should I get the premium membership? It's $49 a year for free express shipping and 5 % points, and I "
   "order about $60 twice a month. Break down the savings."],
  "연 24회 주문 기준으로 빠른배송비 약 14만 원을 아끼고 적립금 약 9만 6천 원을 받으니, 연회비 5만 원을 "
  "빼도 이득이며 8회 정도 주문하면 본전입니다. 단계별 계산은 아래와 같습니다.",
  ["한 달에 두 번 정도, 한 번에 8만 원쯤 주문해요. 연회비 5만 원짜리 프리미엄 멤버십(빠른배송 무료, 5% "
   "적립)이 실제로 이득인지 계산해서 보여 주세요.",
   "월 2회, 회당 8만 원 정도 구매하는데 연 5만 원 프리미엄 멤버십 가입할 가치가 있을까요? 배송비랑 "
   "적립금 기준으로 따져 주세요.",
   "계산 좀 해 주세요. 한 달에 두 번, 한 번에 8만 원 정도 사는데 연회비 5만 원에 빠른배송 무료, 5% "
   "적립이면 본전 뽑나요?",
   "회당 8만 원, 월 2회 주문 기준으로 프리미엄 멤버십(연 5만 원, 무료 빠른배송, 5% 포인트 적립)에 "
   "가입해야 할지 분석해 주세요.",
   "1년에 24번 정도, 한 번에 8만 원쯤 주문하는데 지금 내는 비용과 연 5만 원 프리미엄 멤버십 가입 시 "
   "비용을 비교해서 가입할 만한지 알려주세요.",
   "프리미엄 멤버십 가입할까 고민이에요. 연 5만 원에 빠른배송 무료, 5% 적립인데 저는 월 2회 8만 원씩 "
   "주문해요. 얼마나 아낄 수 있는지 정리해 주세요."])

# ------------------------------------------------------------------ saas: faq
PAID_PLAN = {"plan": "paid_plan"}

F("saas", "subscription_cancel", "faq", "cancel", PAID_PLAN, 91, (260, 90),
  "You can cancel your {plan} subscription under Settings > Billing > Cancel subscription. It stays "
  "active until the end of the current billing period, then the workspace moves to the Free plan; your "
  "data is kept for 90 days.",
  ["How do I cancel my {plan} subscription?",
   "I want to cancel our {plan} plan.",
   "Please help me cancel the {plan} subscription.",
   "cancel {plan} subscription",
   "We no longer need the {plan} plan. How do we stop the subscription?",
   "Where can I terminate my {plan} subscription?"],
  "{plan} 요금제 해지는 '설정 > 결제 > 구독 해지'에서 하실 수 있습니다. 현재 결제 주기가 끝날 때까지는 "
  "그대로 이용 가능하고, 이후 무료 요금제로 전환되며 데이터는 90일간 보관됩니다.",
  ["{plan} 요금제 해지하려면 어떻게 해야 하나요?",
   "저희 {plan} 플랜 구독 해지하고 싶어요.",
   "{plan} 구독 취소 방법 알려주세요.",
   "{plan} 요금제 해지",
   "{plan} 플랜 더 이상 필요 없어서 그런데 구독 끊으려면 어디서 해요?",
   "{plan} 구독 해지 좀 도와주세요."],
  opposites=["subscription_upgrade"])

F("saas", "subscription_upgrade", "faq", "upgrade", PAID_PLAN, 84, (260, 90),
  "To upgrade to {plan}, go to Settings > Billing > Change plan and select {plan}. The upgrade takes "
  "effect immediately and you're charged a prorated amount for the rest of the billing period.",
  ["How do I upgrade to the {plan} plan?",
   "I want to upgrade our subscription to {plan}.",
   "Please move our workspace up to the {plan} plan.",
   "upgrade to {plan}",
   "We've outgrown our current plan. How do we switch up to {plan}?",
   "Where can I upgrade my subscription to {plan}?"],
  "'설정 > 결제 > 요금제 변경'에서 {plan} 요금제를 선택하시면 바로 업그레이드됩니다. 남은 결제 기간만큼 "
  "일할 계산된 금액이 청구됩니다.",
  ["{plan} 요금제로 업그레이드하려면 어떻게 하나요?",
   "구독을 {plan} 플랜으로 업그레이드하고 싶어요.",
   "저희 워크스페이스 {plan} 요금제로 올려 주세요.",
   "{plan} 업그레이드",
   "지금 요금제로는 부족해서 {plan} 플랜으로 올리고 싶은데 어디서 해요?",
   "{plan} 요금제로 상향하는 방법 알려주세요."],
  opposites=["subscription_cancel", "subscription_downgrade"])

F("saas", "subscription_downgrade", "faq", "downgrade", PAID_PLAN, 65, (260, 90),
  "To downgrade from {plan}, go to Settings > Billing > Change plan and pick a lower tier. The change "
  "applies at the next renewal; anything above the new plan's limits becomes read-only.",
  ["How do I downgrade from the {plan} plan?",
   "I want to move our subscription down from {plan} to a cheaper plan.",
   "Please downgrade our workspace from {plan}.",
   "downgrade from {plan}",
   "{plan} is more than we need. How do we switch to a lower tier?",
   "Where can I downgrade my {plan} subscription?"],
  "'설정 > 결제 > 요금제 변경'에서 하위 요금제를 선택하시면 {plan} 요금제에서 다운그레이드됩니다. 변경은 "
  "다음 갱신일부터 적용되며, 새 요금제 한도를 넘는 항목은 읽기 전용으로 바뀝니다.",
  ["{plan} 요금제에서 다운그레이드하려면 어떻게 하나요?",
   "지금 쓰는 {plan} 플랜을 더 저렴한 요금제로 내리고 싶어요.",
   "저희 워크스페이스 {plan} 요금제에서 낮춰 주세요.",
   "{plan} 다운그레이드",
   "{plan} 플랜까지는 필요 없어서 하위 요금제로 바꾸려는데 어디서 해요?",
   "{plan} 구독을 더 낮은 요금제로 변경하는 방법 알려주세요."],
  opposites=["subscription_upgrade"])

F("saas", "password_reset", "faq", "reset", {}, 98, (200, 60),
  "Click Forgot password? on the sign-in page and enter your work email; we'll send a reset link valid "
  "for 30 minutes. If it doesn't arrive, check spam or ask your workspace admin to send a reset.",
  ["How do I reset my password?",
   "I forgot my password and can't log in.",
   "Can you help me set a new password? I can't remember mine.",
   "password reset",
   "I need a new password for my account, how do I get one?",
   "Where's the option to reset a forgotten password?"],
  "로그인 화면에서 '비밀번호를 잊으셨나요?'를 누르고 회사 이메일을 입력하시면 30분간 유효한 재설정 링크를 "
  "보내드립니다. 메일이 안 오면 스팸함을 확인하시거나 워크스페이스 관리자에게 재설정을 요청해 주세요.",
  ["비밀번호를 잊어버렸어요.",
   "비밀번호 재설정 어떻게 하나요?",
   "비번이 기억 안 나서 로그인을 못 하고 있어요.",
   "비밀번호 초기화",
   "비밀번호 새로 설정하고 싶은데 방법 알려주세요.",
   "로그인 비밀번호 찾기는 어디서 해요?"],
  opposites=["username_recover"])

F("saas", "username_recover", "faq", "recover", {}, 58, (200, 60),
  "Your username is your work email address. If you're not sure which email you used, click Forgot "
  "username? on the sign-in page and we'll email a reminder to any address with an account, or ask your "
  "workspace admin.",
  ["I forgot my username.",
   "What's my username? I can't remember which one I used.",
   "How do I recover my login ID?",
   "forgot username",
   "I don't remember my account ID, how can I find it?",
   "Where can I look up the username for my account?"],
  "아이디는 가입하신 회사 이메일 주소입니다. 어떤 이메일로 가입했는지 모르시겠다면 로그인 화면의 '아이디 "
  "찾기'를 눌러 주세요. 계정이 있는 주소로 안내 메일을 보내드리며, 워크스페이스 관리자에게 문의하셔도 됩니다.",
  ["아이디를 잊어버렸어요.",
   "제 아이디가 뭐였는지 기억이 안 나요.",
   "아이디 찾기 어떻게 하나요?",
   "아이디 찾기",
   "로그인 아이디가 생각이 안 나는데 확인할 수 있을까요?",
   "가입한 계정 아이디 조회는 어디서 해요?"],
  opposites=["password_reset"])

F("saas", "twofa_enable", "faq", "enable", {}, 60, (220, 80),
  "Turn on two-factor authentication under Profile > Security > Two-factor authentication: scan the QR "
  "code with an authenticator app, enter the 6-digit code and keep your backup codes somewhere safe.",
  ["How do I turn on two-factor authentication?",
   "I want to enable 2FA on my account.",
   "Can you help me set up two-step verification?",
   "enable 2fa",
   "Where do I activate two-factor login?",
   "How can I start using an authenticator code when I log in?"],
  "'프로필 > 보안 > 2단계 인증'에서 인증 앱으로 QR 코드를 스캔하고 6자리 코드를 입력하시면 활성화됩니다. "
  "백업 코드는 안전한 곳에 보관해 두세요.",
  ["2단계 인증 켜려면 어떻게 해요?",
   "계정에 2FA 설정하고 싶어요.",
   "2단계 인증 활성화 방법 알려주세요.",
   "이중 인증 활성화",
   "OTP 인증 앱 연결해서 로그인 보안 강화하려면 어디서 해요?",
   "로그인할 때 인증 코드 받는 기능 켜고 싶어요."],
  opposites=["twofa_disable"])

F("saas", "twofa_disable", "faq", "disable", {}, 40, (220, 80),
  "Turn off two-factor authentication under Profile > Security > Two-factor authentication > Disable; "
  "you'll need a current code or a backup code. If your admin enforces 2FA for the workspace, only they "
  "can lift it.",
  ["How do I turn off two-factor authentication?",
   "I want to disable 2FA on my account.",
   "Can you help me remove two-step verification?",
   "disable 2fa",
   "Where do I deactivate two-factor login?",
   "How can I stop being asked for an authenticator code when I log in?"],
  "'프로필 > 보안 > 2단계 인증 > 해제'에서 끄실 수 있으며, 현재 인증 코드나 백업 코드가 필요합니다. "
  "관리자가 워크스페이스 전체에 2단계 인증을 강제했다면 관리자만 해제할 수 있어요.",
  ["2단계 인증 끄려면 어떻게 해요?",
   "계정 2FA 해제하고 싶어요.",
   "2단계 인증 비활성화 방법 알려주세요.",
   "이중 인증 비활성화",
   "OTP 인증 앱 연결 끊어서 로그인 인증 빼려면 어디서 해요?",
   "로그인할 때 인증 코드 받는 기능 끄고 싶어요."],
  opposites=["twofa_enable"])

F("saas", "user_invite", "faq", "invite", {}, 72, (210, 70),
  "Admins can invite people under Settings > Members > Invite: enter their email addresses and choose a "
  "role. Invitations expire after 7 days, and each accepted invite uses a paid seat.",
  ["How do I invite a new user to our workspace?",
   "I want to add a teammate to our account.",
   "Can you show me how to invite colleagues?",
   "invite user",
   "Where do I send an invitation to a new team member?",
   "How can I give a coworker access to our workspace?"],
  "관리자는 '설정 > 멤버 > 초대'에서 이메일 주소를 입력하고 역할을 선택해 초대할 수 있습니다. 초대는 7일 후 "
  "만료되며, 초대를 수락하면 유료 좌석이 하나씩 사용됩니다.",
  ["워크스페이스에 새 사용자 초대하려면 어떻게 하나요?",
   "팀원을 계정에 추가하고 싶어요.",
   "동료 초대하는 방법 알려주세요.",
   "사용자 초대",
   "새로 온 팀원한테 초대 메일 보내는 건 어디서 해요?",
   "다른 직원도 워크스페이스 쓸 수 있게 권한 주고 싶어요."],
  opposites=["user_remove"])

F("saas", "user_remove", "faq", "remove", {}, 47, (210, 70),
  "Admins can remove someone under Settings > Members: open the member's menu and choose Remove from "
  "workspace. Their content stays, ownership can be transferred and the seat is freed at once.",
  ["How do I remove a user from our workspace?",
   "I want to delete a teammate from our account.",
   "Can you show me how to take away a colleague's access?",
   "remove user",
   "Where do I remove a member who has left the company?",
   "How can I revoke a former coworker's access to our workspace?"],
  "관리자는 '설정 > 멤버'에서 해당 멤버 메뉴를 열고 '워크스페이스에서 내보내기'를 선택하면 됩니다. 작성한 "
  "콘텐츠는 남아 있고 소유권을 이전할 수 있으며, 좌석은 즉시 반환됩니다.",
  ["워크스페이스에서 사용자 내보내려면 어떻게 하나요?",
   "팀원을 계정에서 삭제하고 싶어요.",
   "동료 접근 권한 회수하는 방법 알려주세요.",
   "사용자 삭제",
   "퇴사한 팀원을 멤버 목록에서 빼는 건 어디서 해요?",
   "더 이상 안 쓰는 직원 계정의 워크스페이스 권한을 없애고 싶어요."],
  opposites=["user_invite"])

F("saas", "invoice_download", "faq", None, {"month": "month"}, 70, (220, 70),
  "Invoices are under Settings > Billing > Invoices: find the {month} invoice and click Download PDF. "
  "Admins can also have every invoice emailed to the billing address automatically.",
  ["Where can I download our invoice for {month}?",
   "I need the {month} invoice.",
   "Can you send me the invoice for {month}?",
   "{month} invoice",
   "How do I get a PDF of the {month} invoice?",
   "Our finance team is asking for the {month} invoice. Where do I find it?"],
  "'설정 > 결제 > 청구서'에서 {month} 청구서를 찾아 'PDF 다운로드'를 누르시면 됩니다. 관리자는 모든 "
  "청구서가 결제 담당 이메일로 자동 발송되도록 설정할 수도 있어요.",
  ["{month} 청구서 어디서 다운로드해요?",
   "{month} 인보이스 필요해요.",
   "{month} 청구서 보내 주실 수 있나요?",
   "{month} 청구서",
   "{month} 인보이스 PDF로 받으려면 어떻게 하나요?",
   "재무팀에서 {month} 청구서를 달라는데 어디서 찾을 수 있나요?"])

F("saas", "billing_email_change", "faq", "change", {}, 46, (200, 60),
  "An admin can change the billing email under Settings > Billing > Billing contact. Invoices and payment "
  "receipts go to the new address from the next billing cycle.",
  ["How do I change the billing email address?",
   "I want invoices to go to a different email.",
   "Can we update the email that receives our bills?",
   "change billing email",
   "Our finance contact changed; how do I update the billing email for invoices?",
   "Where do I set which email gets the payment receipts?"],
  "관리자는 '설정 > 결제 > 결제 담당자'에서 결제용 이메일을 바꿀 수 있습니다. 다음 결제 주기부터 청구서와 "
  "영수증이 새 주소로 발송됩니다.",
  ["결제 이메일 주소 변경하려면 어떻게 해요?",
   "청구서를 다른 이메일로 받고 싶어요.",
   "청구서 받는 메일 주소 바꿀 수 있나요?",
   "결제 담당 이메일 변경",
   "재무 담당자가 바뀌어서 청구서 수신 메일을 수정하고 싶어요.",
   "결제 영수증 받을 이메일은 어디서 설정해요?"])

F("saas", "api_rate_limit", "faq", None, {"plan": "plan"}, 55, (260, 100),
  "The {plan} plan's API limit is listed per workspace in requests per minute under Settings > API. "
  "Requests above it get HTTP 429 with a Retry-After header: back off and retry, or upgrade for higher "
  "limits.",
  ["What are the API rate limits on the {plan} plan?",
   "How many API requests per minute do we get on {plan}?",
   "What's the API quota for {plan} workspaces?",
   "{plan} api rate limit",
   "We keep hitting 429s. What's the request limit for the {plan} plan?",
   "Is there a cap on API calls with the {plan} plan, and what is it?"],
  "{plan} 요금제의 API 호출 한도는 '설정 > API'에 워크스페이스당 분당 요청 수로 안내되어 있습니다. 한도를 "
  "넘으면 Retry-After 헤더와 함께 HTTP 429가 반환되니 잠시 후 재시도하시거나 상위 요금제로 올려 주세요.",
  ["{plan} 요금제 API 호출 한도가 어떻게 되나요?",
   "{plan} 플랜에서 분당 API 요청 몇 번까지 가능해요?",
   "{plan} 워크스페이스 API 사용량 제한 알려주세요.",
   "{plan} API 레이트 리밋",
   "429 에러가 계속 나는데 {plan} 요금제 요청 한도가 얼마예요?",
   "{plan} 플랜에도 API 호출 횟수 제한이 있나요? 있다면 얼마인가요?"])

F("saas", "data_export", "faq", "export", {}, 52, (230, 90),
  "Admins can export all workspace data under Settings > Data > Export as CSV or JSON. Large exports run "
  "in the background, and a download link valid for 7 days is emailed when ready.",
  ["How do I export all our data?",
   "I want to download a full export of our workspace.",
   "Can we get our data out as CSV or JSON?",
   "export data",
   "Is there a way to back up everything in our account to a file?",
   "Where's the data export option?"],
  "관리자는 '설정 > 데이터 > 내보내기'에서 전체 데이터를 CSV 또는 JSON으로 내보낼 수 있습니다. 용량이 크면 "
  "백그라운드로 처리되고, 준비되면 7일간 유효한 다운로드 링크를 메일로 보내드려요.",
  ["데이터 전체 내보내기는 어떻게 하나요?",
   "워크스페이스 데이터 전부 다운로드하고 싶어요.",
   "데이터를 CSV나 JSON으로 받을 수 있나요?",
   "데이터 내보내기",
   "계정에 있는 데이터를 파일로 백업할 방법 있을까요?",
   "데이터 익스포트 기능은 어디 있어요?"])

F("saas", "trial_extend", "faq", "extend", {}, 38, (210, 70),
  "Trials last 14 days. Workspace owners can request a one-time 7-day extension from the banner in "
  "Settings > Billing; for a longer evaluation, contact sales.",
  ["Can I extend my free trial?",
   "Our trial is about to end. Is it possible to get more time?",
   "How do I get a trial extension?",
   "extend trial",
   "We need a few more days to evaluate, can the trial be extended?",
   "Is there a way to lengthen the free trial period?"],
  "무료 체험은 14일이며, 워크스페이스 소유자는 '설정 > 결제'의 배너에서 7일 연장을 한 번 신청할 수 "
  "있습니다. 더 긴 검토가 필요하시면 영업팀에 문의해 주세요.",
  ["무료 체험 기간 연장할 수 있나요?",
   "체험판 곧 끝나는데 기간 더 받을 수 있을까요?",
   "트라이얼 연장 신청은 어떻게 해요?",
   "체험 기간 연장",
   "검토할 시간이 좀 더 필요한데 무료 체험 늘려 주실 수 있나요?",
   "무료 체험 기간을 늘리는 방법이 있나요?"])

F("saas", "payment_method_update", "faq", "change", {}, 50, (210, 70),
  "Update the card under Settings > Billing > Payment method > Replace card. The new card is used for the "
  "next charge; if a payment has failed, we retry it on the new card within an hour.",
  ["How do I update the credit card on our subscription?",
   "Our card expired, how do I change the payment method?",
   "I need to replace the card we pay with.",
   "update payment method",
   "Where can I put in a new card for billing?",
   "Can I switch the card that gets charged for our plan?"],
  "'설정 > 결제 > 결제 수단 > 카드 교체'에서 변경하실 수 있습니다. 다음 결제부터 새 카드로 청구되며, 결제가 "
  "실패한 상태였다면 1시간 안에 새 카드로 다시 시도합니다.",
  ["구독 결제 카드 변경하려면 어떻게 해요?",
   "카드 유효기간이 지나서 결제 수단을 바꿔야 해요.",
   "결제하는 카드를 다른 카드로 교체하고 싶어요.",
   "결제 수단 변경",
   "새 카드 등록해서 요금 결제하려면 어디서 하나요?",
   "요금제 결제되는 카드를 바꿀 수 있나요?"])

F("saas", "seat_add", "faq", "add", {}, 44, (210, 70),
  "Admins can buy more seats under Settings > Billing > Seats > Add seats. New seats are available "
  "immediately and charged pro rata for the rest of the billing period.",
  ["How do I add more seats to our plan?",
   "We need extra licences for new hires, how do we buy them?",
   "Can I increase the number of seats on our subscription?",
   "add seats",
   "Where do I purchase additional user seats?",
   "Our team is growing. How do we get more seats?"],
  "관리자는 '설정 > 결제 > 좌석 > 좌석 추가'에서 구매할 수 있습니다. 추가한 좌석은 바로 사용 가능하며 남은 "
  "결제 기간만큼 일할 계산되어 청구됩니다.",
  ["요금제에 좌석 추가하려면 어떻게 해요?",
   "신규 입사자 때문에 라이선스가 더 필요한데 어떻게 구매하나요?",
   "구독 좌석 수 늘릴 수 있나요?",
   "좌석 추가",
   "사용자 좌석 추가 구매는 어디서 하나요?",
   "팀이 커져서 좌석을 더 늘려야 해요. 방법 알려주세요."])

# ------------------------------------------------------------------ saas: general
F("saas", "sso_setup", "general", "setup", {}, 48, (380, 250),
  "SSO (SAML 2.0 or OIDC) is available on Enterprise. In Settings > Security > SSO, copy our ACS URL and "
  "entity ID into your identity provider (Okta, Azure AD, Google Workspace), upload its metadata, test "
  "with one account, then enforce SSO for everyone.",
  ["How do I set up SSO for our workspace?",
   "Can you walk me through configuring single sign-on with our identity provider?",
   "We want to enable SAML SSO. What are the steps?",
   "sso setup",
   "How do we connect Okta or Azure AD so people log in with single sign-on?",
   "What do I need to do to turn on single sign-on for our team?"],
  "SSO(SAML 2.0 또는 OIDC)는 엔터프라이즈 요금제에서 제공됩니다. '설정 > 보안 > SSO'에서 ACS URL과 엔티티 "
  "ID를 IdP(Okta, Azure AD, Google Workspace)에 입력하고 메타데이터를 업로드한 뒤, 계정 하나로 테스트하고 "
  "전체에 SSO를 적용하세요.",
  ["워크스페이스에 SSO 설정하려면 어떻게 하나요?",
   "저희 IdP로 싱글 사인온 구성하는 과정 알려주세요.",
   "SAML SSO 적용하려고 하는데 절차가 어떻게 되나요?",
   "SSO 설정",
   "옥타나 애저 AD 연동해서 SSO로 로그인하게 하려면 어떻게 해요?",
   "팀 전체에 통합 로그인(SSO) 켜려면 뭘 해야 하나요?"])

F("saas", "webhook_failing", "general", None, {}, 42, (420, 280),
  "Open Settings > Developers > Webhooks > Delivery log to see the failing responses: endpoints must "
  "answer 2xx within 10 seconds over HTTPS, and signatures must be checked with the current signing "
  "secret. Failed deliveries are retried with backoff for 24 hours, then the endpoint is paused.",
  ["Our webhook keeps failing, how do I debug it?",
   "Webhook deliveries to our endpoint are erroring out. What should I check?",
   "Why are our webhooks not being delivered?",
   "webhook failing",
   "Our endpoint stopped receiving webhook events. How do we troubleshoot this?",
   "The webhook shows failed deliveries in the dashboard. How do I fix it?"],
  "'설정 > 개발자 > 웹훅 > 전송 기록'에서 실패한 응답을 확인하세요. 엔드포인트는 HTTPS로 10초 안에 2xx를 "
  "응답해야 하고, 서명은 현재 서명 시크릿으로 검증해야 합니다. 실패한 전송은 24시간 동안 백오프하며 "
  "재시도되고, 그 뒤에는 엔드포인트가 일시 중지됩니다.",
  ["웹훅이 계속 실패하는데 어떻게 디버깅하나요?",
   "저희 엔드포인트로 웹훅 전송이 에러가 나요. 뭘 확인해야 하나요?",
   "웹훅이 왜 전달이 안 될까요?",
   "웹훅 실패",
   "엔드포인트에서 웹훅 이벤트를 더 이상 못 받고 있어요. 원인 찾는 방법 알려주세요.",
   "대시보드에 웹훅 전송 실패가 찍혀 있는데 어떻게 고치나요?"])

F("saas", "integration_setup", "general", "connect", {"app": "app"}, 56, (350, 200),
  "To connect {app}, go to Settings > Integrations, find {app} and click Connect, then sign in to {app} "
  "and approve the permissions. Choose which projects to sync; changes appear within a minute.",
  ["How do I connect {app} to our workspace?",
   "Can you help me set up the {app} integration?",
   "I want to integrate {app} with our account.",
   "{app} integration setup",
   "What are the steps to link {app}?",
   "Where do I enable the {app} integration?"],
  "'설정 > 연동'에서 {app} 항목의 '연결'을 누르고 {app}에 로그인해 권한을 승인하시면 됩니다. 동기화할 "
  "프로젝트를 선택하면 1분 안에 변경 사항이 반영됩니다.",
  ["워크스페이스에 {app} 연동하려면 어떻게 하나요?",
   "{app} 연동 설정 도와주세요.",
   "저희 계정에 {app} 연결하고 싶어요.",
   "{app} 연동 설정",
   "{app} 연결하는 절차가 어떻게 되나요?",
   "{app} 연동 기능은 어디서 켜요?"],
  opposites=["integration_disconnect"])

F("saas", "integration_disconnect", "general", "disconnect", {"app": "app"}, 31, (300, 150),
  "To disconnect {app}, go to Settings > Integrations > {app} and click Disconnect; syncing stops "
  "immediately. Data already synced stays in both tools, and you can also revoke our access from {app}'s "
  "own settings.",
  ["How do I disconnect {app} from our workspace?",
   "Can you help me remove the {app} integration?",
   "I want to unlink {app} from our account.",
   "{app} integration removal",
   "What are the steps to disconnect {app}?",
   "Where do I turn off the {app} integration?"],
  "'설정 > 연동 > {app}'에서 '연결 해제'를 누르시면 동기화가 바로 중단됩니다. 이미 동기화된 데이터는 양쪽에 "
  "남아 있으며, {app} 설정에서 저희 앱 권한을 직접 회수하셔도 됩니다.",
  ["워크스페이스에서 {app} 연동 해제하려면 어떻게 하나요?",
   "{app} 연동 삭제 도와주세요.",
   "저희 계정에서 {app} 연결 끊고 싶어요.",
   "{app} 연동 해제",
   "{app} 연결 해제하는 절차가 어떻게 되나요?",
   "{app} 연동 기능은 어디서 꺼요?"],
  opposites=["integration_setup"])

F("saas", "api_key_rotate", "general", "rotate", {}, 36, (330, 200),
  "Under Settings > API > Keys, create a new key, deploy it to your services, then revoke the old one; "
  "both work until you revoke, so there's no downtime. If a key leaked, revoke it immediately and check "
  "the audit log.",
  ["How do I rotate our API key?",
   "I think our API key leaked. How do I replace it?",
   "Can I generate a new API key and revoke the old one?",
   "rotate api key",
   "What's the safest way to swap out an API key without downtime?",
   "Where do I regenerate the API key for our workspace?"],
  "'설정 > API > 키'에서 새 키를 만들어 서비스에 배포한 뒤 예전 키를 폐기하세요. 폐기 전까지는 두 키가 모두 "
  "동작해서 중단 시간이 없습니다. 키가 유출됐다면 즉시 폐기하고 감사 로그를 확인해 주세요.",
  ["API 키 교체는 어떻게 하나요?",
   "API 키가 유출된 것 같아요. 어떻게 바꾸죠?",
   "새 API 키 발급하고 예전 키는 폐기할 수 있나요?",
   "API 키 교체",
   "서비스 중단 없이 API 키 바꾸는 안전한 방법 알려주세요.",
   "워크스페이스 API 키 재발급은 어디서 해요?"])

F("saas", "audit_log_access", "general", None, {}, 27, (300, 160),
  "Audit logs are on the Enterprise plan under Settings > Security > Audit log. They record sign-ins, "
  "permission changes, exports and API key events for 1 year, and can be filtered, exported as CSV or "
  "streamed to your SIEM.",
  ["Where can I see the audit log?",
   "How do I check who changed permissions in our workspace?",
   "Do you have audit logs, and how do I access them?",
   "audit log",
   "I need a record of user sign-ins and admin actions. Where is it?",
   "How can our security team review account activity logs?"],
  "감사 로그는 엔터프라이즈 요금제에서 '설정 > 보안 > 감사 로그'에 있습니다. 로그인, 권한 변경, 내보내기, "
  "API 키 이벤트가 1년간 기록되며 필터링, CSV 내보내기, SIEM 연동이 가능합니다.",
  ["감사 로그는 어디서 볼 수 있나요?",
   "워크스페이스 권한을 누가 바꿨는지 확인하려면 어떻게 해요?",
   "감사 로그 기능이 있나요? 어떻게 들어가요?",
   "감사 로그",
   "사용자 로그인 기록이랑 관리자 작업 이력을 보고 싶어요.",
   "보안팀에서 계정 활동 로그를 검토하려면 어디를 봐야 하나요?"])

F("saas", "seat_pricing", "general", None, PAID_PLAN, 54, (280, 140),
  "{plan} is billed per active seat, monthly or annually (annual saves 20 %). The current per-seat price "
  "and volume discounts are on the pricing page; you only pay for members who have accepted an invite.",
  ["How much does the {plan} plan cost per user?",
   "What's the per-seat price on {plan}?",
   "How is {plan} priced for a team?",
   "{plan} price per seat",
   "If we go with {plan}, what do we pay for each user?",
   "Can you explain the {plan} pricing per seat, monthly vs annual?"],
  "{plan} 요금제는 활성 좌석 수 기준으로 월간 또는 연간 청구되며, 연간 결제 시 20% 할인됩니다. 좌석당 현재 "
  "가격과 대량 할인은 요금 안내 페이지에 있고, 초대를 수락한 멤버에 대해서만 요금이 부과됩니다.",
  ["{plan} 요금제 사용자 1명당 가격이 얼마예요?",
   "{plan} 플랜 좌석당 요금 알려주세요.",
   "{plan} 요금제 팀 단위 가격은 어떻게 책정되나요?",
   "{plan} 좌석당 가격",
   "{plan} 플랜 쓰면 사용자마다 얼마씩 내야 해요?",
   "{plan} 요금제 1인당 월간, 연간 요금 차이 설명해 주세요."])

F("saas", "usage_overage", "general", None, {"month": "month"}, 41, (360, 220),
  "Your {month} invoice includes usage above your plan's allowance (extra API calls, storage, or seats "
  "added mid-cycle). Settings > Billing > Usage breaks it down by day; set a usage alert to be warned "
  "before you go over again.",
  ["Why was our {month} bill higher than usual?",
   "Our invoice for {month} is bigger than expected. What are the extra charges?",
   "Can you explain the overage charges on the {month} invoice?",
   "{month} bill higher than normal why",
   "We were charged more in {month}. What caused it?",
   "What's behind the increase on our {month} invoice?"],
  "{month} 청구서에는 요금제 기본 제공량을 넘은 사용량(추가 API 호출, 저장 공간, 결제 주기 중간에 추가한 "
  "좌석)이 포함되어 있습니다. '설정 > 결제 > 사용량'에서 일별 내역을 보실 수 있고, 사용량 알림을 설정하면 "
  "한도를 넘기 전에 알려드려요.",
  ["{month} 요금이 왜 평소보다 많이 나왔나요?",
   "{month} 청구서 금액이 예상보다 커요. 추가 요금이 뭐예요?",
   "{month} 청구서에 있는 초과 사용 요금 설명해 주세요.",
   "{month} 요금 왜 많이 나옴?",
   "{month}에 요금이 더 청구됐는데 원인이 뭔가요?",
   "{month} 인보이스 금액이 늘어난 이유가 궁금해요."])

F("saas", "role_permissions", "general", None, {}, 34, (320, 200),
  "There are three roles: Owner (billing and deleting the workspace), Admin (members, integrations, "
  "security settings) and Member (their own projects). Change a role under Settings > Members; custom "
  "roles are available on Enterprise.",
  ["What's the difference between admin and member roles?",
   "Can you explain the user roles and what each one can do?",
   "Which permissions does an admin have compared with a regular member?",
   "user roles explained",
   "What roles are available in a workspace and what are they allowed to do?",
   "How do permissions differ between owner, admin and member?"],
  "역할은 세 가지입니다. 소유자(결제, 워크스페이스 삭제), 관리자(멤버, 연동, 보안 설정), 멤버(본인 "
  "프로젝트)이며, '설정 > 멤버'에서 역할을 바꿀 수 있습니다. 사용자 지정 역할은 엔터프라이즈 요금제에서 "
  "제공됩니다.",
  ["관리자 권한이랑 일반 멤버 권한 차이가 뭐예요?",
   "사용자 역할별로 할 수 있는 일이 뭔지 설명해 주세요.",
   "관리자는 일반 멤버에 비해 어떤 권한이 있나요?",
   "사용자 역할 설명",
   "워크스페이스에서 쓸 수 있는 역할 종류랑 각각의 권한 알려주세요.",
   "소유자, 관리자, 멤버 권한이 어떻게 다른가요?"])

F("saas", "data_retention", "general", None, {}, 24, (330, 200),
  "Workspace data is kept for as long as your subscription runs. After cancellation it is retained for "
  "90 days and then permanently deleted; backups are purged within a further 35 days. Enterprise can set "
  "custom retention periods.",
  ["How long do you keep our data?",
   "What is your data retention policy?",
   "What happens to our data after we cancel, and how long is it stored?",
   "data retention period?",
   "For how long is customer data stored on your servers?",
   "Can you explain how long our information is retained and when it gets deleted?"],
  "구독 기간 동안에는 워크스페이스 데이터가 계속 보관됩니다. 해지 후에는 90일간 보관한 뒤 영구 삭제하며, "
  "백업은 그 뒤 35일 안에 파기됩니다. 엔터프라이즈 요금제는 보존 기간을 직접 정할 수 있습니다.",
  ["저희 데이터는 얼마나 보관하나요?",
   "데이터 보존 정책이 어떻게 되나요?",
   "해지하면 데이터는 언제까지 남아 있고 언제 삭제돼요?",
   "데이터 보관 기간",
   "고객 데이터를 서버에 얼마 동안 저장하시나요?",
   "정보가 얼마나 오래 보관되고 언제 파기되는지 설명해 주세요."])

F("saas", "account_delete", "general", "delete", {}, 32, (300, 160),
  "The workspace owner can delete the workspace under Settings > General > Delete workspace after "
  "cancelling any paid plan. Deletion becomes permanent after a 14-day grace period; export your data "
  "first if you need it.",
  ["How do I delete our workspace permanently?",
   "I want to close our account and delete everything.",
   "Can you delete my company's workspace for good?",
   "delete workspace",
   "What are the steps to permanently remove our account?",
   "Where's the option to shut down and erase our workspace?"],
  "워크스페이스 소유자는 유료 요금제를 해지한 뒤 '설정 > 일반 > 워크스페이스 삭제'에서 삭제할 수 있습니다. "
  "14일의 유예 기간이 지나면 영구 삭제되니 필요한 데이터는 먼저 내보내 주세요.",
  ["워크스페이스를 영구 삭제하려면 어떻게 하나요?",
   "계정 탈퇴하고 데이터도 전부 지우고 싶어요.",
   "저희 회사 워크스페이스 완전히 삭제해 주실 수 있나요?",
   "워크스페이스 삭제",
   "계정을 영구적으로 없애는 절차가 어떻게 되나요?",
   "워크스페이스 폐쇄하고 전부 지우는 기능은 어디 있어요?"])

# ------------------------------------------------------------------ saas: complex
F("saas", "plan_comparison", "complex", "compare",
  {"plan_a": "plan", "plan_b": "plan", "seats": "seats"}, 30, (700, 520),
  "For {seats} seats with SSO and audit logs, here is {plan_a} against {plan_b}: features, API limits and "
  "annual cost side by side. SSO and audit logs need Enterprise, so the recommendation follows from that "
  "requirement, with the yearly total for each option.",
  ["Compare the {plan_a} and {plan_b} plans for a {seats}-seat team that needs SSO and audit logs, and "
   "recommend one with the annual cost of each.",
   "We're a team of {seats} and need SSO plus audit logs. Lay out {plan_a} versus {plan_b} (features, "
   "limits and yearly price) and tell us which to pick.",
   "Give me a detailed comparison of {plan_a} and {plan_b} for {seats} users who require SSO and audit "
   "logging, including total annual cost, then a recommendation.",
   "Which is the better fit for {seats} seats with SSO and audit log requirements: {plan_a} or {plan_b}? "
   "Walk through the differences and the yearly cost.",
   "For {seats} people, SSO and audit logs are must-haves. Analyse {plan_a} against {plan_b} on features, "
   "API limits and annual price, and recommend one.",
   "Please evaluate the {plan_a} plan versus the {plan_b} plan for our {seats}-person team (SSO and audit "
   "logs required) and justify a recommendation with annual costs."],
  "{seats}명, SSO와 감사 로그 필수 조건으로 {plan_a} 요금제와 {plan_b} 요금제의 기능, API 한도, 연간 비용을 "
  "나란히 비교했습니다. SSO와 감사 로그는 엔터프라이즈에서만 제공되므로 이 조건을 기준으로 추천드리며, 각 "
  "선택지의 연간 총액도 함께 정리했습니다.",
  ["SSO와 감사 로그가 필요한 {seats}명 팀 기준으로 {plan_a} 요금제하고 {plan_b} 요금제를 비교하고, 각각 연간 "
   "비용과 함께 하나를 추천해 주세요.",
   "저희는 {seats}명이고 SSO랑 감사 로그가 꼭 필요해요. {plan_a} 대 {plan_b} 기능, 한도, 연간 가격을 "
   "정리해서 어떤 걸 골라야 할지 알려주세요.",
   "SSO랑 감사 로그가 필수인 사용자 {seats}명 기준으로 {plan_a}, {plan_b} 요금제를 자세히 비교하고 연간 "
   "총비용과 추천을 주세요.",
   "{seats}명에 SSO와 감사 로그가 필요하면 {plan_a} 요금제와 {plan_b} 요금제 중 어느 쪽이 더 맞나요? "
   "차이점과 연간 비용을 하나씩 설명해 주세요.",
   "{seats}명 규모에 SSO와 감사 로그가 반드시 필요합니다. 기능, API 한도, 연간 가격 측면에서 {plan_a} "
   "요금제하고 {plan_b} 요금제를 분석하고 추천해 주세요.",
   "SSO와 감사 로그가 필요한 {seats}명 팀이에요. {plan_a} 플랜과 {plan_b} 플랜을 평가해서 연간 비용 근거와 "
   "함께 추천해 주세요."])

F("saas", "migration_plan", "complex", "migrate", {"seats": "seats"}, 18, (750, 580),
  "A four-phase plan for moving {seats} users and three years of project history with under a day of "
  "downtime: inventory and mapping, a full trial import, a delta sync before cut-over, and a weekend "
  "cut-over with a read-only fallback to the old tool. Risks and the rollback path are listed per phase.",
  ["We're moving {seats} users and three years of project history to your platform from another tool. "
   "Draft a migration plan with phases, risks and a rollback option, keeping downtime under one day.",
   "Plan our migration: {seats} people, three years of project data, and we can't be down for more than "
   "a day. Give me phases, risks and how we'd roll back.",
   "Can you write a step-by-step plan to migrate a {seats}-user team with three years of history onto "
   "your product with less than a day of downtime, including risks and rollback?",
   "How should we migrate {seats} users and three years of projects to you without more than one day of "
   "downtime? Lay out phases, risks and a rollback plan.",
   "I need a migration plan for bringing {seats} users and three years of project history over to your "
   "platform: under a day of downtime, with risks and a fallback.",
   "Design a phased migration for our {seats}-person team and three years of project data, with a risk "
   "list, a rollback path and at most one day of downtime."],
  "사용자 {seats}명과 3년 치 프로젝트 이력을 하루 미만의 다운타임으로 옮기는 4단계 계획입니다. 현황 파악과 "
  "매핑, 전체 시험 이관, 전환 직전 변경분 동기화, 기존 툴을 읽기 전용으로 남겨 두는 주말 전환 순서이며, "
  "단계별 위험 요소와 롤백 경로를 함께 정리했습니다.",
  ["다른 툴에서 사용자 {seats}명과 3년 치 프로젝트 이력을 옮기려고 합니다. 다운타임 하루 이내로 단계, 위험 "
   "요소, 롤백 방안을 포함한 마이그레이션 계획을 짜 주세요.",
   "마이그레이션 계획 세워 주세요. {seats}명, 3년 치 프로젝트 데이터이고 서비스 중단은 하루를 넘으면 안 "
   "돼요. 단계별 진행, 리스크, 롤백 방법까지요.",
   "3년 치 이력이 있는 {seats}명 팀을 하루 미만의 다운타임으로 이전하는 단계별 계획을 리스크와 롤백 포함해서 "
   "작성해 주실 수 있나요?",
   "사용자 {seats}명하고 3년 치 프로젝트를 다운타임 하루 이내로 옮기려면 어떻게 해야 할까요? 단계, 위험 "
   "요소, 롤백 계획을 정리해 주세요.",
   "{seats}명 사용자와 3년 치 프로젝트 이력을 이쪽 플랫폼으로 가져오는 마이그레이션 계획이 필요합니다. "
   "다운타임은 하루 미만, 리스크와 대안 포함해서요.",
   "{seats}명 팀과 3년 치 프로젝트 데이터를 단계적으로 이전하는 방안을 설계해 주세요. 위험 목록, 롤백 경로 "
   "포함, 다운타임은 최대 하루입니다."])

F("saas", "security_review", "complex", None, {}, 16, (800, 600),
  "Summary for your vendor review: data is encrypted in transit (TLS 1.2+) and at rest (AES-256); a SOC 2 "
  "Type II report is available under NDA; data can be hosted in the EU, US or Korea; the subprocessor "
  "list is published and changes are notified 30 days ahead; security incidents are acknowledged within "
  "1 hour and customers notified within 72 hours. Details per point follow.",
  ["Our security team needs answers for a vendor review: encryption at rest and in transit, SOC 2 "
   "status, data residency options, subprocessors and incident response times. Summarise each point in "
   "detail.",
   "Please fill in our vendor security questionnaire: how you encrypt data at rest and in transit, your "
   "SOC 2 report, where data can be hosted, your subprocessors and your incident response commitments.",
   "We're doing a security assessment of your service. Explain encryption (at rest and in transit), SOC 2 "
   "compliance, data residency, subprocessors and incident response SLAs.",
   "For our procurement security review, give a thorough write-up covering encryption, SOC 2, data "
   "residency choices, the list of subprocessors and how fast you respond to incidents.",
   "Can you prepare detailed answers to a vendor risk assessment: encryption at rest and in transit, "
   "SOC 2, data location options, subprocessors, incident response?",
   "Walk our security team through your controls: data encryption in transit and at rest, SOC 2 "
   "attestation, where data is stored, which subprocessors you use and your incident response process."],
  "벤더 심사용 요약입니다. 데이터는 전송 구간(TLS 1.2 이상)과 저장 시(AES-256) 모두 암호화되고, SOC 2 Type "
  "II 보고서는 NDA 체결 후 제공됩니다. 데이터는 EU, 미국, 한국 중에서 저장 위치를 고를 수 있고, 하위 처리자 "
  "목록은 공개되어 있으며 변경 시 30일 전에 알려드립니다. 보안 사고는 1시간 안에 접수 확인하고 72시간 안에 "
  "고객에게 통지합니다. 항목별 상세 내용은 아래와 같습니다.",
  ["보안팀 벤더 심사용으로 답변이 필요합니다. 저장·전송 구간 암호화, SOC 2 인증 현황, 데이터 저장 위치 "
   "선택지, 하위 처리자, 보안 사고 대응 시간을 항목별로 자세히 정리해 주세요.",
   "저희 벤더 보안 설문 작성 부탁드립니다. 저장 데이터와 전송 데이터 암호화 방식, SOC 2 보고서, 데이터 "
   "호스팅 위치, 하위 처리자, 침해 사고 대응 약속까지요.",
   "서비스 보안 평가를 진행 중입니다. 암호화(저장 시·전송 시), SOC 2 준수, 데이터 레지던시, 하위 처리자, "
   "사고 대응 SLA를 설명해 주세요.",
   "구매 전 보안 검토를 위해 암호화, SOC 2, 데이터 저장 지역 옵션, 하위 처리자 목록, 사고 대응 속도를 "
   "빠짐없이 정리해 주세요.",
   "벤더 리스크 평가 항목(저장·전송 암호화, SOC 2, 데이터 보관 위치, 하위 처리자, 사고 대응)에 대한 상세 "
   "답변을 준비해 주실 수 있나요?",
   "보안팀이 귀사 통제 항목을 검토하려고 합니다. 전송·저장 데이터 암호화, SOC 2 인증, 데이터 저장 위치, "
   "사용하는 하위 처리자, 사고 대응 절차를 설명해 주세요."])

F("saas", "rate_limit_architecture", "complex", "design", {"plan": "plan"}, 14, (820, 600),
  "To sync 50,000 records a night within the {plan} limits: use the bulk endpoint with batches of 100, "
  "feed them from a queue drained by a token bucket set just under your per-minute limit, retry 429s "
  "after Retry-After with jittered exponential backoff, and checkpoint progress so a rerun resumes. At "
  "that pace the job fits in the two-hour window.",
  ["Our nightly job syncs 50,000 records through your API and keeps hitting 429s on the {plan} plan. "
   "Design a batching, queueing and backoff strategy that respects Retry-After and finishes within two "
   "hours.",
   "We sync 50,000 records every night via your API on {plan} and get rate-limited. How should we "
   "restructure it (batch sizes, a queue, exponential backoff honouring Retry-After) to finish in under "
   "two hours?",
   "Help me architect our nightly 50,000-record sync against your API so it stays within the {plan} rate "
   "limits, uses Retry-After correctly and completes within two hours.",
   "On the {plan} plan our 50k-record nightly sync fails with 429 errors. Propose a design with batching, "
   "a work queue and backoff that finishes in two hours or less.",
   "Please design a rate-limit-aware sync for 50,000 records a night on {plan}: batching, queueing, "
   "exponential backoff with Retry-After, and a two-hour completion target.",
   "What's the right architecture for pushing 50,000 records nightly through your API on {plan} without "
   "hitting 429s? Cover batching, a queue, Retry-After backoff and the two-hour window."],
  "{plan} 요금제 한도 안에서 매일 밤 5만 건을 동기화하려면 벌크 엔드포인트로 100건씩 묶고, 분당 한도보다 "
  "약간 낮게 맞춘 토큰 버킷으로 큐를 비우며, 429가 나면 Retry-After 이후 지터를 섞은 지수 백오프로 재시도하고, "
  "진행 상황을 체크포인트로 남겨 재실행 시 이어서 처리하세요. 이 속도면 2시간 안에 끝납니다.",
  ["매일 밤 API로 레코드 5만 건을 동기화하는데 {plan} 요금제에서 429 에러가 계속 나요. Retry-After를 "
   "지키면서 2시간 안에 끝나도록 배치, 큐, 백오프 전략을 설계해 주세요.",
   "{plan} 플랜에서 야간에 5만 건을 API로 동기화하다가 호출 제한에 걸립니다. 배치 크기, 큐, Retry-After를 "
   "따르는 지수 백오프까지 포함해서 2시간 안에 끝나게 구조를 바꾸려면 어떻게 해야 하나요?",
   "{plan} 요금제 호출 한도를 넘지 않으면서 Retry-After를 제대로 처리하고 2시간 안에 끝나는 5만 건 야간 "
   "동기화 구조를 같이 설계해 주세요.",
   "{plan} 요금제에서 5만 건짜리 야간 동기화가 429로 실패합니다. 배치, 작업 큐, 백오프를 활용해서 2시간 "
   "이내에 끝나는 설계를 제안해 주세요.",
   "{plan} 기준으로 하룻밤 5만 건을 동기화하는 레이트 리밋 대응 설계를 부탁드립니다. 배치, 큐잉, "
   "Retry-After 기반 지수 백오프, 2시간 완료 목표까지요.",
   "{plan} 요금제에서 429 없이 매일 밤 5만 건을 API로 밀어 넣으려면 어떤 아키텍처가 맞을까요? 배치, 큐, "
   "Retry-After 백오프, 2시간 제한을 모두 고려해 주세요."])

F("saas", "cost_forecast", "complex", "forecast", {"plan": "paid_plan", "seats": "seats"}, 20, (700, 500),
  "A 12-month forecast for {plan} starting at {seats} seats and doubling: seats added month by month, "
  "the monthly bill under monthly and annual billing (annual saves 20 %), and the month in which a "
  "different plan becomes cheaper, with the break-even shown.",
  ["We have {seats} users on {plan} and expect to double headcount over the next 12 months. Forecast our "
   "cost month by month, compare monthly and annual billing, and flag when another plan would be "
   "cheaper.",
   "Project our spend for the next year: {seats} seats on {plan} today, doubling over 12 months. Show "
   "monthly vs annual billing and when switching plans would save money.",
   "Can you model our {plan} costs for 12 months starting at {seats} seats and growing to twice that? "
   "Compare monthly and annual billing and point out any break-even with another plan.",
   "Our team of {seats} on the {plan} plan will double within a year. Build a 12-month cost forecast, "
   "with monthly versus annual billing, and tell us if a different plan becomes cheaper.",
   "Forecast a year of {plan} subscription costs for {seats} users growing to double, comparing monthly "
   "and annual billing and identifying when another plan makes more sense.",
   "Starting from {seats} seats on {plan} and doubling over the next 12 months, what will we pay each "
   "month? Compare billing options and flag the point where changing plans pays off."],
  "{plan} 요금제 {seats}석에서 시작해 두 배로 늘어나는 12개월 예측입니다. 월별 좌석 증가, 월간·연간 결제(연간 "
  "20% 할인)별 월 청구액, 다른 요금제가 더 저렴해지는 시점과 손익분기점을 정리했습니다.",
  ["현재 {plan} 요금제에 사용자 {seats}명이고 12개월 안에 인원이 두 배가 될 예정입니다. 월별 비용을 예측하고 "
   "월간, 연간 결제를 비교해서 다른 요금제가 더 저렴해지는 시점을 알려주세요.",
   "앞으로 1년 비용 전망 부탁드려요. 지금 {plan} 요금제 {seats}석이고 12개월 동안 두 배로 늘어납니다. 월간 "
   "결제와 연간 결제 비교, 요금제 변경이 이득인 시점까지요.",
   "{seats}석에서 시작해 두 배로 늘어나는 12개월 동안 {plan} 요금제 비용을 모델링해 주실 수 있나요? 월간과 "
   "연간 결제를 비교하고 다른 요금제와의 손익분기점도 짚어 주세요.",
   "{plan} 플랜을 쓰는 {seats}명 팀이 1년 안에 두 배가 됩니다. 12개월 비용 예측표를 만들고 월간, 연간 결제 "
   "비교와 더 싼 요금제로 바꿔야 할 시점을 알려주세요.",
   "{seats}명에서 두 배로 늘어나는 경우 {plan} 구독 1년 비용을 월간, 연간 결제로 나눠 예측하고 다른 요금제가 "
   "더 나아지는 시점을 찾아 주세요.",
   "{plan} 요금제 {seats}석으로 시작해서 12개월 동안 두 배가 되면 매달 얼마를 내게 될까요? 결제 방식별로 "
   "비교하고 요금제를 바꾸는 게 이득인 시점도 알려주세요."])


# --------------------------------------------------------------------------------------------
# Catalogue assembly and checks
# --------------------------------------------------------------------------------------------

SLOT_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Particles whose form depends on whether the preceding syllable ends in a consonant.
KO_VARIABLE_PARTICLE_RE = re.compile(r"\}(?:은|는|이|가|을|를|으로|로|과|와|랑|나|야|여)")
KO_PROMPT_FACTOR = (6, 5)   # Korean prompts cost ~1.2x the English tokens (system prompt dominates)
KO_ANSWER_FACTOR = (13, 10)  # Korean answers ~1.3x
PROMPT_RANGE = (150, 900)
ANSWER_RANGE = (40, 600)


def scaled(value: int, factor: tuple[int, int], bounds: tuple[int, int]) -> int:
    num, den = factor
    return max(bounds[0], min(bounds[1], (value * num + den // 2) // den))


def intent_id(domain: str, family: str, lang: str) -> str:
    return f"{DOMAIN_PREFIX[domain]}.{family}.{lang}"


def build_intents() -> list[dict]:
    """The catalogue as a list of intent dicts, ranked by popularity (1 = most asked)."""
    ordered = sorted(FAMILIES, key=lambda f: (-f["pop"], f["domain"], f["family"]))
    intents: list[dict] = []
    for fam in ordered:
        ptok, atok = fam["tokens"]
        for lang in LANGS:
            answer, templates = fam[lang]
            intents.append({
                "id": intent_id(fam["domain"], fam["family"], lang),
                "domain": fam["domain"],
                "lang": lang,
                "family": fam["family"],
                "category": fam["category"],
                "action": fam["action"],
                "templates": list(templates),
                "slots": dict(sorted(fam["slots"].items())),
                "answer": answer,
                "prompt_tokens": ptok if lang == "en" else scaled(ptok, KO_PROMPT_FACTOR, PROMPT_RANGE),
                "answer_tokens": atok if lang == "en" else scaled(atok, KO_ANSWER_FACTOR, ANSWER_RANGE),
                "popularity_rank": len(intents) + 1,
                "opposites": [intent_id(fam["domain"], o, lang) for o in sorted(fam["opposites"])],
            })
    return intents


def check_catalogue(intents: list[dict], vocab: dict) -> None:
    """Fail loudly on content mistakes; the tests re-check the written files independently."""
    ids = {i["id"] for i in intents}
    assert len(ids) == len(intents), "duplicate intent id"
    seen_templates: dict[str, str] = {}
    for it in intents:
        assert it["category"] in CATEGORIES, it["id"]
        assert len(it["templates"]) >= 5, it["id"]
        assert len(set(it["templates"])) == len(it["templates"]), f"repeated template in {it['id']}"
        declared = set(it["slots"])
        for slot_type in it["slots"].values():
            assert slot_type in vocab, f"{it['id']}: unknown slot type {slot_type}"
        for t in it["templates"]:
            used = set(SLOT_RE.findall(t))
            # Every template of an intent uses *all* its slots: two templates with equal slot
            # values then ask exactly the same question (what a positive pair needs).
            assert used == declared, f"{it['id']}: template slots {sorted(used)} != {sorted(declared)}: {t!r}"
            key = " ".join(t.lower().split())
            assert key not in seen_templates, f"template shared by {seen_templates.get(key)} and {it['id']}: {t!r}"
            seen_templates[key] = it["id"]
            if it["lang"] == "ko":
                assert not KO_VARIABLE_PARTICLE_RE.search(t), f"{it['id']}: sound-dependent particle after slot: {t!r}"
        assert set(SLOT_RE.findall(it["answer"])) <= declared, f"{it['id']}: answer uses an undeclared slot"
        if it["lang"] == "ko":
            assert not KO_VARIABLE_PARTICLE_RE.search(it["answer"]), f"{it['id']}: particle after slot in answer"
        for o in it["opposites"]:
            assert o in ids, f"{it['id']}: unknown opposite {o}"
        assert PROMPT_RANGE[0] <= it["prompt_tokens"] <= PROMPT_RANGE[1], it["id"]
        assert ANSWER_RANGE[0] <= it["answer_tokens"] <= ANSWER_RANGE[1], it["id"]
    by_id = {i["id"]: i for i in intents}
    for it in intents:  # opposites are symmetric
        for o in it["opposites"]:
            assert it["id"] in by_id[o]["opposites"], f"{it['id']} <-> {o} not symmetric"


# --------------------------------------------------------------------------------------------
# Rendering (the same rule as llmlab.catalogue.Intent.render, kept dependency-free here)
# --------------------------------------------------------------------------------------------

def fill(template: str, values: dict[str, str]) -> str:
    return SLOT_RE.sub(lambda m: values[m.group(1)], template)


def pick_values(rng: random.Random, intent: dict, vocab: dict, fixed: dict[str, str] | None = None) -> dict[str, str]:
    """Slot values for an intent; slots of the same type get distinct values."""
    values: dict[str, str] = {}
    for name, slot_type in sorted(intent["slots"].items()):
        if fixed and name in fixed:
            values[name] = fixed[name]
            continue
        taken = {values[n] for n, t in intent["slots"].items() if t == slot_type and n in values}
        choices = [v for v in localized(vocab, slot_type, intent["lang"]) if v not in taken]
        values[name] = rng.choice(choices)
    return values


# --------------------------------------------------------------------------------------------
# Labelled pairs
# --------------------------------------------------------------------------------------------

# Per language; both languages get the same quotas.  Hard negatives = slot_swap +
# opposite_action + neighbour_intent = 40 % of the pairs; positives 40 %.
PAIR_QUOTA = {"paraphrase": 480, "slot_swap": 180, "opposite_action": 120, "neighbour_intent": 180,
              "random_other": 240}
PAIR_KINDS = tuple(PAIR_QUOTA)
WORD_RE = re.compile(r"[0-9A-Za-z가-힣]+")


EN_STOPWORDS = frozenset("""
    about and any are can could did does don for from get have help how into its just like more much need
    our please should tell than that the their them there this use want was way what when where which who
    why will with would you your
""".split())


def template_words(intent: dict) -> set[str]:
    """Content words of an (English) intent's templates, for the neighbour heuristic."""
    words: set[str] = set()
    for t in intent["templates"]:
        for w in WORD_RE.findall(SLOT_RE.sub(" ", t).lower()):
            if len(w) > 2 and w not in EN_STOPWORDS:
                words.add(w)
    return words


def neighbours(intents: list[dict]) -> dict[str, list[str]]:
    """Per intent: same-language intents that are close but ask something else.

    Close means sharing the family prefix (``refund_request`` / ``refund_status``, in any
    domain), or being in the same domain with the largest overlap of content words in the
    English templates (top 3; the Korean intent of a family gets the same neighbours as the
    English one).  Opposites are excluded: they get their own kind.
    """
    english = {i["family"]: i for i in intents if i["lang"] == "en"}
    words = {fam: template_words(i) for fam, i in english.items()}
    near_family: dict[str, list[str]] = {}
    for fam, it in sorted(english.items()):
        opposite_families = {o.split(".")[1] for o in it["opposites"]}
        others = [o for o in english.values() if o["family"] != fam and o["family"] not in opposite_families]
        prefix = fam.split("_")[0]
        chosen = {o["family"] for o in others if o["family"].split("_")[0] == prefix}
        scored = sorted((-(1000 * len(words[fam] & words[o["family"]])) // max(1, len(words[fam] | words[o["family"]])),
                         o["family"]) for o in others if o["domain"] == it["domain"])
        chosen.update(f for _, f in scored[:3])
        near_family[fam] = sorted(chosen)
    return {i["id"]: [intent_id(english[f]["domain"], f, i["lang"]) for f in near_family[i["family"]]]
            for i in intents}


def build_pairs(intents: list[dict], vocab: dict) -> list[dict]:
    near = neighbours(intents)
    by_id = {i["id"]: i for i in intents}
    pairs: list[dict] = []
    for lang_index, lang in enumerate(LANGS):
        rng = random.Random(SEED + 100 + lang_index)
        pool = [i for i in intents if i["lang"] == lang]
        seen: set[tuple[str, str]] = set()

        def add(kind: str, a: str, b: str, ia: dict, ib: dict) -> bool:
            if a == b or (a, b) in seen or (b, a) in seen:
                return False
            seen.add((a, b))
            if rng.randrange(2):
                a, b, ia, ib = b, a, ib, ia
            pairs.append({"a": a, "b": b, "label": 1 if kind == "paraphrase" else 0, "lang": lang,
                          "kind": kind, "intent_a": ia["id"], "intent_b": ib["id"]})
            return True

        def paraphrase() -> bool:
            it = rng.choice(pool)
            t1, t2 = rng.sample(range(len(it["templates"])), 2)
            values = pick_values(rng, it, vocab)
            return add("paraphrase", fill(it["templates"][t1], values), fill(it["templates"][t2], values), it, it)

        slotted = [i for i in pool if i["slots"]]

        def slot_swap() -> bool:
            it = rng.choice(slotted)
            template = rng.choice(it["templates"])
            values = pick_values(rng, it, vocab)
            name = rng.choice(sorted(it["slots"]))
            other = dict(values)
            taken = set(values.values())
            other[name] = rng.choice([v for v in localized(vocab, it["slots"][name], lang) if v not in taken])
            return add("slot_swap", fill(template, values), fill(template, other), it, it)

        with_opposites = [i for i in pool if i["opposites"]]

        def opposite_action() -> bool:
            it = rng.choice(with_opposites)
            other = by_id[rng.choice(it["opposites"])]
            values = pick_values(rng, it, vocab)
            other_values = pick_values(rng, other, vocab, fixed=values)
            return add("opposite_action", fill(rng.choice(it["templates"]), values),
                       fill(rng.choice(other["templates"]), other_values), it, other)

        def neighbour_intent() -> bool:
            it = rng.choice(pool)
            other = by_id[rng.choice(near[it["id"]])]
            values = pick_values(rng, it, vocab)
            other_values = pick_values(rng, other, vocab, fixed=values)
            return add("neighbour_intent", fill(rng.choice(it["templates"]), values),
                       fill(rng.choice(other["templates"]), other_values), it, other)

        def random_other() -> bool:
            it, other = rng.sample(pool, 2)
            if other["id"] in near[it["id"]] or other["id"] in it["opposites"] or other["family"] == it["family"]:
                return False
            return add("random_other", fill(rng.choice(it["templates"]), pick_values(rng, it, vocab)),
                       fill(rng.choice(other["templates"]), pick_values(rng, other, vocab)), it, other)

        makers = {"paraphrase": paraphrase, "slot_swap": slot_swap, "opposite_action": opposite_action,
                  "neighbour_intent": neighbour_intent, "random_other": random_other}
        for kind in PAIR_KINDS:
            made = 0
            attempts = 0
            while made < PAIR_QUOTA[kind]:
                attempts += 1
                if attempts > 50 * PAIR_QUOTA[kind]:
                    raise RuntimeError(f"could not make {PAIR_QUOTA[kind]} distinct {kind} pairs for {lang}")
                made += bool(makers[kind]())
    random.Random(SEED + 200).shuffle(pairs)
    return pairs


# --------------------------------------------------------------------------------------------
# Example trace
# --------------------------------------------------------------------------------------------

TRACE_START = datetime(2025, 3, 4, 9, 0, 0, tzinfo=timezone.utc)
TRACE_ROWS = 300
TRACE_COLUMNS = ["timestamp", "tenant", "plan", "prompt", "prompt_hash", "prompt_tokens", "output_tokens",
                 "intent", "answer_key"]
# tenant, plan, domain, language weights (per 10), logging ("text" or "hash"), traffic share (per 100)
TENANTS = [
    ("hanbit-mall", "paid", "ecommerce", {"ko": 9, "en": 1}, "text", 28),
    ("acme-store", "paid", "ecommerce", {"en": 10}, "text", 22),
    ("pixel-goods", "free", "ecommerce", {"en": 7, "ko": 3}, "hash", 12),
    ("nimbus-crm", "paid", "saas", {"en": 8, "ko": 2}, "hash", 23),
    ("saessak-labs", "free", "saas", {"ko": 10}, "text", 15),
]
BURST = (1800_000, 2100_000, 45)  # a flash sale: 45 extra hanbit-mall requests in minutes 30-35


def weighted_index(rng: random.Random, weights: list[int]) -> int:
    pick = rng.randrange(sum(weights))
    for index, weight in enumerate(weights):
        if pick < weight:
            return index
        pick -= weight
    raise AssertionError("unreachable")


def zipf_weights(n: int, scale: int = 10_000) -> list[int]:
    return [scale // (k + 1) for k in range(n)]


def iso_ms(ms: int) -> str:
    t = TRACE_START + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def build_trace(intents: list[dict], vocab: dict) -> list[dict]:
    rng = random.Random(SEED + 300)
    base = TRACE_ROWS - BURST[2]
    arrivals = [(rng.randrange(0, 3600_000), weighted_index(rng, [t[5] for t in TENANTS])) for _ in range(base)]
    arrivals += [(rng.randrange(BURST[0], BURST[1]), 0) for _ in range(BURST[2])]
    arrivals.sort()
    rows: list[dict] = []
    for ms, tenant_index in arrivals:
        name, plan, domain, lang_weights, logging, _ = TENANTS[tenant_index]
        langs = sorted(lang_weights)
        lang = langs[weighted_index(rng, [lang_weights[x] for x in langs])]
        pool = sorted((i for i in intents if i["domain"] == domain and i["lang"] == lang),
                      key=lambda i: i["popularity_rank"])
        it = pool[weighted_index(rng, zipf_weights(len(pool)))]
        template = it["templates"][weighted_index(rng, zipf_weights(len(it["templates"])))]
        values: dict[str, str] = {}
        for slot, slot_type in sorted(it["slots"].items()):
            choices = [v for v in localized(vocab, slot_type, lang) if v not in values.values()]
            values[slot] = choices[weighted_index(rng, zipf_weights(len(choices)))]
        prompt = fill(template, values)
        prompt_tokens = it["prompt_tokens"] + rng.randrange(-20, 21) + len(prompt) // 8
        output_tokens = it["answer_tokens"] * rng.randrange(80, 121) // 100
        row = {
            "timestamp": iso_ms(ms), "tenant": name, "plan": plan, "prompt": "", "prompt_hash": "",
            "prompt_tokens": str(prompt_tokens), "output_tokens": str(output_tokens), "intent": it["id"],
            "answer_key": "|".join([it["id"]] + [f"{k}={values[k]}" for k in sorted(values)]),
        }
        if logging == "text":
            row["prompt"] = prompt
            if rng.randrange(4) == 0:   # some text rows leave the token count to the replayer
                row["prompt_tokens"] = ""
        else:
            row["prompt_hash"] = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
        if rng.randrange(10) == 0:      # output_tokens is optional
            row["output_tokens"] = ""
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def render_outputs() -> tuple[dict[str, bytes], dict]:
    """All output files (relative path -> bytes) and a summary, without touching the disk."""
    vocab = vocabulary()
    intents = build_intents()
    check_catalogue(intents, vocab)
    header = {"_vocabulary": vocab,
              "_meta": {"schema_version": SCHEMA_VERSION, "seed": SEED, "generator": "datasets/generate_catalogue.py",
                        "licence": "MIT (synthetic data written for llmlab)"}}
    intents_text = "".join(dumps(x) + "\n" for x in [header, *intents])
    pairs = build_pairs(intents, vocab)
    pairs_text = "".join(dumps(p) + "\n" for p in pairs)
    trace = build_trace(intents, vocab)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TRACE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(trace)
    outputs = {
        "intents.jsonl": intents_text.encode("utf-8"),
        "pairs.jsonl": pairs_text.encode("utf-8"),
        "traces/example_trace.csv": buf.getvalue().encode("utf-8"),
    }
    summary = summarise(intents, pairs, trace)
    return outputs, summary


def summarise(intents: list[dict], pairs: list[dict], trace: list[dict]) -> dict:
    def count(items, key):
        out: dict[str, int] = {}
        for x in items:
            k = key(x)
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    return {
        "intents": len(intents),
        "intents_by_lang_domain": count(intents, lambda i: f"{i['lang']}/{i['domain']}"),
        "intents_by_category": count(intents, lambda i: i["category"]),
        "templates": sum(len(i["templates"]) for i in intents),
        "pairs": len(pairs),
        "pairs_by_kind_lang": count(pairs, lambda p: f"{p['kind']}/{p['lang']}"),
        "pairs_by_label": count(pairs, lambda p: str(p["label"])),
        "trace_rows": len(trace),
        "trace_rows_with_text": sum(1 for r in trace if r["prompt"]),
        "trace_rows_hash_only": sum(1 for r in trace if r["prompt_hash"]),
    }


def generate(out_dir: str | Path | None = None) -> dict:
    """Write every output under ``out_dir`` (default: this script's folder); return the summary."""
    out = Path(out_dir) if out_dir is not None else HERE
    outputs, summary = render_outputs()
    for rel, data in outputs.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    summary = generate(args.out)
    print(f"wrote {args.out}: {summary['intents']} intents, {summary['templates']} templates, "
          f"{summary['pairs']} pairs, {summary['trace_rows']} trace rows", file=sys.stderr)
    for key in ("intents_by_lang_domain", "intents_by_category", "pairs_by_kind_lang", "pairs_by_label"):
        print(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in summary[key].items()), file=sys.stderr)
    print(f"  trace: {summary['trace_rows_with_text']} rows with prompt text, "
          f"{summary['trace_rows_hash_only']} with hash + token counts only", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
