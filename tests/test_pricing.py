import subprocess
import sys

import pytest

from llmlab import PriceBook, UnknownModelPrice, monthly_cost, ConfigError
from llmlab.pricing import litellm_price_file


def test_lecture_prices_are_shipped_as_overrides():
    book = PriceBook.default()
    assert book.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert book.cost("gpt-4o", 0, 1_000_000) == pytest.approx(10.00)
    assert book.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    # litellm's map lacks this model and would price it at $0; the override prices it
    assert book.cost("claude-sonnet-4-20250514", 1_000_000, 1_000_000) == pytest.approx(18.0)


def test_litellm_map_is_read_directly_and_prefix_is_stripped():
    assert litellm_price_file() is not None
    book = PriceBook.default()
    assert "claude-sonnet-4-5" in book  # from litellm's bundled map, not the overrides
    assert book.cost("openai/gpt-4o", 1000, 0) == book.cost("gpt-4o", 1000, 0)


def test_unknown_model_is_a_typed_error_naming_the_model_and_fix():
    with pytest.raises(UnknownModelPrice) as info:
        PriceBook.default().cost("my-finetune-v3", 10, 10)
    assert info.value.model == "my-finetune-v3"
    assert "with_overrides" in str(info.value) and "my-finetune-v3" in str(info.value)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(UnknownModelPrice):
        PriceBook({}, include_litellm=False).cost("claude-sonnet-4-20250514", 1, 1)


def test_overrides_and_explicit_zero_price_for_self_hosted():
    book = PriceBook.default().with_overrides({"llama-ft": (0.0, 0.0), "gpt-4o": (5.0, 20.0)})
    assert book.cost("llama-ft", 10_000, 10_000) == 0.0
    assert book.cost("gpt-4o", 1_000_000, 0) == pytest.approx(5.0)
    assert book.cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(0.15)


def test_monthly_cost_formula():
    # daily × 30 × (in × P_in + out × P_out)
    expected = 10_000 * 30 * (500 * 2.5e-6 + 200 * 10e-6)
    assert monthly_cost(10_000, 500, 200, "gpt-4o") == pytest.approx(expected)
    assert PriceBook.default().monthly_cost(10_000, 500, 200, "gpt-4o") == pytest.approx(expected)
    with pytest.raises(ConfigError) as info:
        monthly_cost(-1, 500, 200, "gpt-4o")
    assert info.value.field == "daily_requests"


def test_embedding_calls_are_priced():
    book = PriceBook.default()
    assert book.embedding_cost("text-embedding-3-small", 1_000_000) == pytest.approx(0.02)


def test_pricing_does_not_import_litellm():
    code = "import llmlab, sys; llmlab.PriceBook.default().cost('gpt-4o', 1, 1); print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_bad_price_override_names_its_model():
    """Before: input_usd_per_1m=-1 is invalid — without saying which of the overrides it was."""
    with pytest.raises(ConfigError) as info:
        PriceBook({"gpt-4o": (2.5, 10.0), "my-ft": (0.3, -1.2)})
    assert info.value.field == "prices['my-ft'].output_usd_per_1m" and info.value.value == -1.2


@pytest.mark.parametrize("overrides, field", [(None, "prices"), ([("gpt-4o", (1, 2))], "prices"), ({123: (1, 2)}, "prices")])
def test_overrides_that_are_no_mapping_of_names_are_config_errors(overrides, field):
    from llmlab.errors import ConfigError
    from llmlab.pricing import PriceBook

    with pytest.raises(ConfigError) as info:  # raised TypeError
        PriceBook.default().with_overrides(overrides)
    assert info.value.field == field
