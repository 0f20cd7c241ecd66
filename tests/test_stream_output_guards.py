"""A streamed answer reaches the caller through the output guards: a leaked key or a blocked term
is never shown, however the provider cut its chunks, and what was shown is the outcome's text."""
from __future__ import annotations

import asyncio
import random

import pytest

from llmlab import Deployment, FixedRouter, Gateway, StreamReset
from llmlab.guardrails import OutputFilterGuard
from llmlab.scripted import FakeClock, ScriptedDriver

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
PEM = ("-----BEGIN PRIVATE KEY-----\n" + "\n".join("MIIEv" + "Q" * 59 for _ in range(12))
       + "\n-----END PRIVATE KEY-----")
ANSWER = (f"Sure. The key is {KEY} and, for the record, password: hunter2hunter2 is old. "
          f"Project Falcon ships soon; 폭탄주 is a drink. Here is the file:\n{PEM}\nThat is all.")
SECRETS = (KEY, "hunter2hunter2", "MIIEvQQQQ", "Falcon")


class Chunked(ScriptedDriver):
    """Streams each answer in the pieces ``cut(text)`` makes (a provider's chunking)."""

    cut = staticmethod(lambda text: [text[i:i + 3] for i in range(0, len(text), 3)])

    def stream_call(self, call):
        result = self.perform(call)
        for piece in self.cut(result.text):
            yield piece
        return result


def _gateway(driver, **filter_options) -> Gateway:
    return Gateway([Deployment("m", "gpt-4o-mini")], router=FixedRouter("m"), driver=driver, clock=driver.clock,
                   output_guards=[OutputFilterGuard(**filter_options)])


def _random_cuts(seed: int):
    rng = random.Random(seed)

    def cut(text: str) -> list[str]:
        pieces, i = [], 0
        while i < len(text):
            n = rng.choice((1, 1, 2, 3, 5, 8, 40))
            pieces.append(text[i:i + n])
            i += n
        return pieces

    return cut


@pytest.mark.parametrize("seed", range(12))
def test_a_stream_shows_no_secret_and_ends_as_the_outcome_says(seed):
    driver = Chunked(clock=FakeClock(), default=ANSWER)
    driver.cut = _random_cuts(seed)
    reply = _gateway(driver, blocked_terms=["Project Falcon", "폭탄"], term_action="redact").stream("tell me")
    chunks = list(reply)
    shown = "".join(c for c in chunks if isinstance(c, str))
    after_reset = "".join(c for c in chunks[max((i for i, c in enumerate(chunks) if isinstance(c, StreamReset)),
                                                 default=-1) + 1:])
    assert not any(secret in shown for secret in SECRETS)
    assert reply.outcome.kind.value == "model" and after_reset == reply.outcome.text
    assert "[REDACTED:openai_key]" in reply.outcome.text and "폭탄주" in reply.outcome.text  # not the term 폭탄


def test_a_blocked_term_stops_the_stream_before_it(seed=3):
    driver = Chunked(clock=FakeClock(), default="All good. The codename is Bluebird, keep it quiet.")
    driver.cut = _random_cuts(seed)
    reply = _gateway(driver, blocked_terms=["Bluebird"]).stream("codename?")
    shown = "".join(c for c in reply if isinstance(c, str))
    assert "Bluebird" not in shown and "All good." in shown
    assert reply.outcome.error.code == "guardrail_blocked"


def test_an_async_stream_is_guarded_too():
    driver = Chunked(clock=FakeClock(), default=f"Use {KEY} to log in.")
    gw = _gateway(driver)

    async def read() -> tuple[str, object]:
        reply = gw.astream("key?")
        return "".join([c async for c in reply if isinstance(c, str)]), reply.outcome

    shown, outcome = asyncio.run(read())
    assert KEY not in shown and shown == outcome.text == "Use [REDACTED:openai_key] to log in."


def test_text_streams_word_by_word_rather_than_at_the_end():
    driver = Chunked(clock=FakeClock(), default="one two three four")
    driver.cut = lambda text: text.split(" ") and [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
    chunks = [c for c in _gateway(driver).stream("count") if isinstance(c, str)]
    assert chunks == ["one ", "two ", "three ", "four"]


def test_a_guard_of_ones_own_sees_the_whole_answer_once_before_the_caller_does():
    from llmlab.guardrails.base import OutputVerdict

    class Moderation:  # calls a service per check: not asked about every word
        name = "moderation"
        checked: list[str] = []

        def check_output(self, text):
            self.checked.append(text)
            return OutputVerdict(text.replace("darn", "d**n"))

    driver = Chunked(clock=FakeClock(), default="well darn it, the parcel is late again")
    gw = Gateway([Deployment("m", "gpt-4o-mini")], router=FixedRouter("m"), driver=driver, clock=driver.clock,
                 output_guards=[Moderation()])
    chunks = [c for c in gw.stream("where is it") if isinstance(c, str)]
    assert chunks == ["well d**n it, the parcel is late again"]
    assert Moderation.checked == ["well darn it, the parcel is late again"] * 2  # the view's, the outcome's
