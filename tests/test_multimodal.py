"""Requests with images: held at what their model can bill for them, and cached per image.

A short ``https://`` link used to be held as ~70 prompt tokens while gpt-4o bills up to 1,445 for
the image (a tenant went past its cap), and a 2 MB ``data:`` URL as 2.7M tokens (a tenant with a
$1 cap could send no image at all).  Each test's provider bills images the way OpenAI's does at
its largest image: 1,445 tokens on gpt-4o, 85 at ``detail: low``.

The semantic cache compares the text of the last user turn only, so the same question about
another image was answered from the cache with the first image's answer.
"""
from __future__ import annotations

import base64
import os
import struct
import time
import zlib

import pytest

from llmlab import (BudgetPolicy, CacheOutcome, CallResult, ClassifierRouter, Deployment, FixedRouter, Gateway,
                    RateLimit, RateLimiter)
from llmlab.cache.embedders import HashedNgramEmbedder
from llmlab.cache.keys import CacheKeyPolicy
from llmlab.cache.semantic import SemanticCache
from llmlab.errors import ConfigError, InvalidRequest
from llmlab.image_tokens import DEFAULT_IMAGE_TOKENS_MAX, image_details, image_token_bound, images_bound
from llmlab.testing.bodies import IMAGE_TOKENS
from llmlab.tokens import count_message_tokens, max_message_tokens

LINK = "https://cdn.example.com/receipts/7781.png"
GPT4O = Deployment("gpt-4o", "gpt-4o")


def png_url(width: int, height: int, payload: int = 0) -> str:
    """A ``data:`` URL of a PNG of this size: its header (what litellm reads the size from), and
    ``payload`` bytes of image data after it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk + b"\0" * payload).decode()


def image_message(url: str = LINK, detail: str | None = None, text: str = "What does this receipt say?") -> list:
    image = {"url": url} if detail is None else {"url": url, "detail": detail}
    return [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": image}]}]


def bills_images_as_gpt4o(call) -> CallResult:
    """The prompt's text, each image as gpt-4o bills its largest image, and a whole answer."""
    images = sum(IMAGE_TOKENS["low" if d == "low" else "other"] for d in image_details(call.messages))
    return CallResult("The receipt is for two coffees. " * 10, count_message_tokens(call.messages) + images,
                      call.params["max_tokens"], 0.1, 0.05)


def capped(make_gateway, cap: float, **kw) -> Gateway:
    kw.setdefault("deployments", [GPT4O])
    return make_gateway(router=FixedRouter(kw["deployments"][0].name), fallbacks={},
                        budget=BudgetPolicy(caps={"acme": cap}), **kw)


def money_holds(gw: Gateway, cap: float) -> None:
    now = gw.clock()
    assert gw.budgets.overshoot_usd == 0.0  # no call cost more than its hold
    assert gw.budgets.spent("acme", now) <= cap + 1e-12
    assert gw.budgets.reserved("acme", now) == 0.0


# ----------------------------------------------------------------------------- the bounds
FAMILIES = ["gpt-4o", "openai/gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-5", "gpt-5.1",
            "gpt-5.2", "gpt-5.4", "gpt-5.4-mini", "gpt-5.5", "o1", "o3", "claude-sonnet-4-5-20250929",
            "anthropic/claude-opus-4-7"]
SHAPES = [(1, 1), (300, 200), (512, 512), (768, 2048), (2048, 768), (2000, 768), (1092, 1092), (1568, 1000),
          (3000, 3000), (4000, 3000), (10_000, 200), (200, 10_000), (8000, 8000), (65_535, 65_535)]


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("detail", ["low", "high", "auto", "original"])
def test_no_image_is_billed_past_its_bound_by_litellms_own_count(model, detail):
    """litellm 1.110 sizes an image from its header by each provider's policy: whatever the image's
    shape (and for a link, whose size it cannot know), the hold is at least that."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from litellm.litellm_core_utils.token_counter import estimate_image_tokens

    bound = image_token_bound(model, detail)
    billed = {shape: estimate_image_tokens(model, png_url(*shape), detail) for shape in SHAPES}
    billed["link"] = estimate_image_tokens(model, LINK, detail)
    assert bound is not None and all(tokens <= bound for tokens in billed.values()), (bound, billed)
    # and not loose for nothing: the bound is what some image is billed, or litellm does not know the detail
    assert bound in billed.values() or detail == "original" or model.startswith("claude-sonnet-4-5")


def test_published_figures_and_the_fallbacks():
    assert [image_token_bound("gpt-4o", d) for d in ("low", "high", "auto")] == [85, 1445, 1445]
    assert image_token_bound("gpt-4o-mini") == 48_169  # 2,833 + 8 tiles × 5,667
    assert image_token_bound("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0") == 1_600
    assert image_token_bound("claude-sonnet-4-20250514") == 1_600  # the date is not a minor version
    assert image_token_bound("gemini/gemini-2.0-flash") == DEFAULT_IMAGE_TOKENS_MAX
    assert image_token_bound("gpt-4o", "ultra") == 1445  # an unknown detail: the model's largest
    # a policy with no budget (gpt-6-astra's default 'original') is held at the context window
    astra = Deployment("astra", "gpt-6-astra", context_window=400_000)
    assert image_token_bound("gpt-6-astra") is None and images_bound(astra, ("auto", "low")) == 400_000 + 308
    assert images_bound(Deployment("g", "gemini/gemini-2.0-flash", image_tokens_max=20_000), ("low",) * 3) == 60_000
    # an Azure deployment's model string is its own name: the price model says which model it is
    azure_mini = Deployment("mini", "azure/support-prod-mini", price_model="azure/gpt-4o-mini-2024-07-18")
    assert images_bound(azure_mini, ("auto",)) == 48_169
    assert images_bound(Deployment("x", "azure/support-prod"), ("auto",)) == DEFAULT_IMAGE_TOKENS_MAX


def test_image_parts_are_found_with_their_detail_and_their_url_bytes_are_not_text():
    messages = image_message(png_url(4000, 3000, payload=200_000), "low") + image_message(LINK)
    assert image_details(messages) == ("low", "auto")
    assert image_details([{"role": "user", "content": "a photo of https://x/y.png"}]) == ()
    text_only = [{"role": "user", "content": "What does this receipt say?"}] * 2
    assert max_message_tokens(messages) == max_message_tokens(text_only)  # the 270 kB URL is not 270k tokens
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG" * 50}}]}]
    assert max_message_tokens(audio) > 200  # other media keep their JSON bytes


# ----------------------------------------------------------------------------- holds
@pytest.mark.parametrize("detail", [None, "low"])
def test_a_linked_image_is_held_at_what_it_bills(make_gateway, driver, detail):
    driver.default = bills_images_as_gpt4o
    probe = capped(make_gateway, 1.0)
    request = probe.request(image_message(detail=detail), tenant="acme", max_tokens=50)
    text_only = probe.pipeline.worst_case_cost([GPT4O], max_message_tokens(request.messages), 50)
    with_image = probe.pipeline.worst_case_cost([GPT4O], max_message_tokens(request.messages), 50,
                                                images=image_details(request.messages))
    assert with_image == pytest.approx(text_only + 2.5e-6 * (85 if detail == "low" else 1445))
    # a cap the text fits in but the image does not: refused before the call, nothing spent
    gw = capped(make_gateway, (text_only + with_image) / 2)
    out = gw.complete(image_message(detail=detail), tenant="acme", max_tokens=50)
    assert out.error is not None and out.error.code == "budget_exceeded" and driver.calls == []
    # room for one whole request: it is answered, billed its image, and the cap holds
    gw = capped(make_gateway, with_image * 1.5)
    out = gw.complete(image_message(detail=detail), tenant="acme", max_tokens=50)
    assert out.ok and out.prompt_tokens > (85 if detail == "low" else 1445)
    out = gw.complete(image_message(detail=detail), tenant="acme", max_tokens=50, cache=False)
    assert out.error is not None and out.error.code == "budget_exceeded"  # the second does not fit what is left
    money_holds(gw, with_image * 1.5)


def test_a_large_inline_image_is_not_held_at_its_bytes(make_gateway, driver):
    driver.default = bills_images_as_gpt4o
    gw = capped(make_gateway, 0.01)  # $0.01: ~3,000 gpt-4o prompt tokens with a short answer
    out = gw.complete(image_message(png_url(4000, 3000, payload=2_000_000)), tenant="acme", max_tokens=50)
    assert out.ok, out.error  # was held as 2.7M tokens ($6.7) and refused
    money_holds(gw, 0.01)


def test_each_deployment_of_a_chain_holds_its_own_images(make_gateway, driver):
    """gpt-4o-mini bills an image 33× gpt-4o's tokens: a fallback to it must be held at that."""
    driver.default = bills_images_as_gpt4o
    mini = Deployment("gpt-4o-mini", "gpt-4o-mini")
    gw = make_gateway(deployments=[GPT4O, mini], router=FixedRouter("gpt-4o"), fallbacks={"gpt-4o": ["gpt-4o-mini"]},
                      budget=BudgetPolicy(caps={"acme": 1.0}))
    pipe = gw.pipeline
    messages = gw.request(image_message(), max_tokens=50).messages
    chain_cost = pipe.worst_case_cost(pipe.chain_for("gpt-4o"), max_message_tokens(messages), 50,
                                      images=image_details(messages))
    mini_cost = pipe.worst_case_cost([mini], max_message_tokens(messages), 50, images=image_details(messages))
    assert chain_cost == mini_cost and mini_cost > 0.15e-6 * 48_169  # the dearest deployment's image


def test_an_image_counts_against_a_token_rate_limit(make_gateway, driver):
    gw = make_gateway(deployments=[GPT4O], fallbacks={},
                      rate_limiter=RateLimiter(per_tenant={"acme": RateLimit(rpm=100, tpm=1000)}), default_max_tokens=100)
    assert gw.complete("What does this receipt say?", tenant="acme", max_tokens=50).ok
    out = gw.complete(image_message(), tenant="acme", max_tokens=50)  # 1,445 tokens of image > 1,000 a minute
    assert out.error is not None and out.error.code == "rate_limited" and len(driver.calls) == 1


def test_image_tokens_max_is_checked(make_gateway):
    for bad in (0, -5, 2.5, "many"):
        with pytest.raises(ConfigError) as info:
            make_gateway(deployments=[Deployment("gpt-4o", "gpt-4o", image_tokens_max=bad)], fallbacks={})
        assert info.value.field == "deployments[0].image_tokens_max"


# ----------------------------------------------------------------------------- live, through litellm
def test_live_image_request_through_the_fake_stays_under_its_cap():
    """End to end over HTTP: litellm sends the image part to the loopback fake, which bills it
    (1,445 tokens); the hold covered it, and the next request that no longer fits is refused."""
    from llmlab.testing import FakeProvider

    with FakeProvider(reply="Two coffees, $7.40.") as fp:
        dep = Deployment("gpt-4o", "openai/gpt-4o", {"api_base": fp.base_url, "api_key": "sk-test-not-real"},
                         price_model="gpt-4o")
        probe = Gateway([dep], router=FixedRouter("gpt-4o"), fallbacks={})
        messages = probe.request(image_message(), max_tokens=50).messages
        hold = probe.pipeline.worst_case_cost([dep], max_message_tokens(messages), 50, images=image_details(messages))
        cap = hold * 1.5
        gw = Gateway([dep], router=FixedRouter("gpt-4o"), fallbacks={}, budget=BudgetPolicy(caps={"acme": cap}))
        first = gw.complete(image_message(), tenant="acme", max_tokens=50)
        second = gw.complete(image_message(), tenant="acme", max_tokens=50, cache=False)
        sent = fp.requests[0].body["messages"][0]["content"]
    assert first.ok and first.prompt_tokens > IMAGE_TOKENS["other"]
    assert {"type": "image_url", "image_url": {"url": LINK}} in sent  # the image reached the provider
    assert second.error is not None and second.error.code == "budget_exceeded" and len(fp.requests) == 1
    now = time.time()
    assert gw.budgets.overshoot_usd == 0.0 and gw.budgets.spent("acme", now) <= cap


# ----------------------------------------------------------------------------- caches
def test_the_same_question_about_another_image_is_not_a_cache_hit(make_gateway, driver):
    answers = iter(f"answer {i}" for i in range(1, 100))
    driver.default = lambda call: next(answers)
    gw = make_gateway(deployments=[GPT4O], fallbacks={}, semantic_cache=SemanticCache(HashedNgramEmbedder()))
    first = gw.complete(image_message("https://x/a.png"))
    other = gw.complete(image_message("https://x/b.png"))
    assert (first.text, other.text, other.cache) == ("answer 1", "answer 2", CacheOutcome.MISS)
    again = gw.complete(image_message("https://x/a.png"))
    reworded = gw.complete(image_message("https://x/a.png", text="what does the receipt say"))
    reworded_other = gw.complete(image_message("https://x/b.png", text="what does the receipt say"))
    assert (again.text, again.cache) == ("answer 1", CacheOutcome.EXACT_HIT)
    assert (reworded.text, reworded.cache) == ("answer 1", CacheOutcome.SEMANTIC_HIT)  # same image, reworded
    assert reworded_other.text == "answer 2"  # b's own answer, never a's
    assert len(driver.calls) == 2


@pytest.mark.parametrize("mode", ["prompt_params", "exact"])
def test_cache_keys_cover_images_and_do_not_memoise_their_urls(mode, monkeypatch):
    from llmlab.cache import keys

    policy = CacheKeyPolicy(mode)
    a, b = image_message(png_url(800, 600, payload=3000)), image_message(png_url(800, 601, payload=3000))
    assert policy.key(a, {}) != policy.key(b, {})
    assert policy.key(a, {}) == policy.key(image_message(png_url(800, 600, payload=3000)), {})
    plain = [{"role": "user", "content": "What does this receipt say?"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "What does this receipt say?"}]}]
    # a text-only list asks what the string asks; the exact mode keeps the shape apart
    assert (policy.key(plain, {}) == policy.key(parts, {})) is (mode == "prompt_params")
    memoised: list[int] = []  # the memos keep their keys: a megabyte URL must not become one
    for name in ("_text_digest", "_long_text_digest"):
        real = getattr(keys, name)
        monkeypatch.setattr(keys, name, lambda role, text, norm, real=real: memoised.append(len(text)) or real(role, text, norm))
    big = image_message(png_url(4000, 3000, payload=1_000_000))
    assert policy.key(big, {}) != policy.key(image_message(png_url(4000, 3001, payload=1_000_000)), {})
    assert memoised and max(memoised) < 100


# ----------------------------------------------------------------------------- image-only turns
def only_image(url: str) -> list:
    return [{"role": "system", "content": "Read the receipt the user sends and list its items."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


def test_an_image_only_turn_is_served_and_cached_per_image(make_gateway, driver):
    """A turn with only an image asks what the system prompt says (OCR, say): it was refused as
    empty.  It is served, held for its image, and cached by its image."""
    answers = iter(f"answer {i}" for i in range(1, 100))
    driver.default = lambda call: next(answers)
    gw = make_gateway(deployments=[GPT4O], fallbacks={}, semantic_cache=SemanticCache(HashedNgramEmbedder()),
                      budget=BudgetPolicy(caps={"acme": 1.0}))
    a, b, again = (gw.complete(only_image(u), tenant="acme") for u in ("https://x/a.png", "https://x/b.png",
                                                                      "https://x/a.png"))
    assert (a.text, b.text, again.text, again.cache) == ("answer 1", "answer 2", "answer 1", CacheOutcome.EXACT_HIT)
    assert a.cache == b.cache == CacheOutcome.MISS and len(driver.calls) == 2
    with pytest.raises(InvalidRequest) as info:  # still no empty turn
        gw.complete([{"role": "user", "content": [{"type": "text", "text": " "}]}])
    assert info.value.field == "prompt"


def test_the_classifier_is_not_asked_about_an_image_only_turn(make_gateway, driver):
    mini = Deployment("gpt-4o-mini", "gpt-4o-mini")
    gw = make_gateway(deployments=[GPT4O, mini], fallbacks={},
                      router=ClassifierRouter("gpt-4o-mini", routes={"faq": "gpt-4o-mini", "complex": "gpt-4o",
                                                                     "general": "gpt-4o"}))
    out = gw.complete(only_image("https://x/a.png"))
    assert out.ok and [c.purpose for c in driver.calls] == ["answer"]  # no classify call
    assert out.deployment == "gpt-4o" and "no text to classify" in out.route_reason
