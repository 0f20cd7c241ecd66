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
