"""An error's attributes hide what its message hides: applications log them, and a sweep's
worker pickles errors to its parent."""
from __future__ import annotations

import pickle

import pytest

from llmlab import ConfigError, Gateway

KEY = "sk-proj-0123456789abcdefSECRETKEY"


def test_a_config_errors_value_hides_the_credentials_its_message_hides():
    with pytest.raises(ConfigError) as info:
        Gateway([{"name": "m", "model": "gpt-4o-mini", "api_key": KEY}])
    error = pickle.loads(pickle.dumps(info.value))  # as a sweep's worker hands it to its parent
    assert KEY not in str(error) and KEY not in repr(vars(error)) and error.value == {"name": "m",
                                                                                     "model": "gpt-4o-mini",
                                                                                     "api_key": "***"}


def test_a_rule_that_raises_leaves_only_its_type_in_the_route_reason(make_gateway, driver):
    from llmlab import ClassifierRouter

    def rules(request):  # a lookup by the caller's metadata that failed, quoting it
        raise LookupError(f"no account for {request.metadata['email']}")

    gw = make_gateway(router=ClassifierRouter("gpt-4o-mini", routes={"faq": "gpt-4o-mini", "general": "gpt-4o-mini",
                                                                      "complex": "gpt-4o"}, rules=rules))
    driver.script("gpt-4o-mini", "faq")
    out = gw.complete("how do refunds work?", metadata={"email": "kim.minsu@example.com"})
    assert out.ok and "rule raised LookupError" in out.route_reason and "kim.minsu" not in out.route_reason
