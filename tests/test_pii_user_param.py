"""OpenAI's ``user`` param names the end user to the provider: with the PII masker on, an e-mail
or phone number there is masked like the same value in the messages."""
from __future__ import annotations

import pytest

from llmlab import ClassifierRouter, InvalidRequest

EMAIL = "kim.minsu@example.com"


def test_an_email_as_the_user_param_is_masked_before_the_call(make_gateway, driver):
    out = make_gateway().complete(f"My address is {EMAIL}, is my order shipped?", user=EMAIL)
    sent = driver.calls[-1]
    assert sent.params["user"] == "[EMAIL_1]" and EMAIL not in sent.messages[-1]["content"]  # one placeholder
    assert out.ok


def test_a_user_param_alone_gets_a_placeholder_and_an_opaque_id_passes(make_gateway, driver):
    gw = make_gateway()
    gw.complete("hello", user="+82 10-1234-5678")
    assert driver.calls[-1].params["user"] == "[PHONE_1]"
    gw.complete("hello again", user="u-4f9a2c")  # what OpenAI asks for: an id, or a hash
    assert driver.calls[-1].params["user"] == "u-4f9a2c"


def test_routers_see_the_masked_user(make_gateway, driver):
    seen = []

    def rules(request):
        seen.append(request.params.get("user"))
        return None

    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini", routes={"faq": "gpt-4o-mini", "general": "gpt-4o-mini",
                                                                      "complex": "gpt-4o"}, rules=rules))
    driver.script("gpt-4o-mini", "faq")
    gw.complete("how do refunds work?", user=EMAIL)
    assert seen == ["[EMAIL_1]"] and all(EMAIL not in str(c.params) for c in driver.calls)


def test_without_a_masker_the_user_param_is_sent_as_given(make_gateway, driver):
    make_gateway(input_guards=()).complete("hello", user=EMAIL)
    assert driver.calls[-1].params["user"] == EMAIL


def test_a_user_param_that_is_not_a_string_is_refused_by_its_shape(make_gateway, driver):
    with pytest.raises(InvalidRequest) as info:  # it went to the provider unmasked, and a 400 came back
        make_gateway().complete("hello", user={"email": EMAIL})
    assert info.value.field == "params.user" and EMAIL not in str(info.value) and driver.calls == []
