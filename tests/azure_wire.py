"""A small local server speaking Azure OpenAI's chat completions
(``POST /openai/deployments/<deployment>/chat/completions?api-version=...``), for tests of the
live path against Azure's wire format: its ``prompt_filter_results`` / ``content_filter_results``,
an answer stopped with ``finish_reason: "content_filter"``, a prompt refused with a 400 whose code
is ``content_filter``, its 429 bodies with ``retry-after`` / ``retry-after-ms``, and the 400 an
API version before 2024-09-01 answers to ``stream_options``.

litellm's ``azure/<deployment>`` with ``api_base="http://127.0.0.1:<port>"`` and an
``api_version`` posts there through the openai client's AzureOpenAI, as against a real resource.
Replies are canned per deployment, served in turn (the last repeats); a reply's body is a dict
(JSON) or a list of chunk dicts (SSE, then ``[DONE]``), or an :class:`Either` of both.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from canned_http import CannedServer, openai_frames, send_events, send_json

from llmlab import Deployment

API_VERSION = "2024-10-21"
SAFE = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
FILTERED = {**SAFE, "violence": {"filtered": True, "severity": "high"}}


def completion(text: str | None, prompt_tokens: int = 11, completion_tokens: int = 7, finish: str = "stop",
               filters: dict = SAFE) -> dict:
    return {"id": "chatcmpl-az", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}],
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None},
                         "content_filter_results": filters}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def chunks(*pieces: str, prompt_tokens: int = 11, completion_tokens: int = 7, finish: str = "stop",
           filters: dict = SAFE) -> list[dict]:
    """Azure's stream: a first chunk with no choices (the prompt's filter results), the text, a
    chunk with ``finish`` and its filter results, then the usage chunk."""
    base = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06"}
    out: list[dict] = [{**base, "id": "", "model": "", "created": 0, "choices": [],
                        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}]}]
    out.append({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None, "content_filter_results": {}}]})
    for piece in pieces:
        out.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None,
                                         "content_filter_results": SAFE}]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish,
                                     "content_filter_results": filters}]})
    out.append({**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                                 "total_tokens": prompt_tokens + completion_tokens}})
    return out


def filtered_prompt() -> dict:
    """The 400 Azure answers when its filter refuses the prompt itself."""
    return {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                 "management policy. Please modify your prompt and retry.",
                      "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                      "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": FILTERED}}}


def rate_limited(seconds: int) -> dict:
    return {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI "
                      f"API version {API_VERSION} have exceeded token rate limit of your current OpenAI S0 pricing "
                      f"tier. Please retry after {seconds} seconds."}}


class AzureServer(CannedServer):
    """Serves, per deployment, ``(status, headers, body)`` replies in turn; ``hits`` counts
    requests per deployment, ``queries`` keeps each request's query string."""

    def __init__(self) -> None:
        self.replies: dict[str, list[tuple[int, dict, Any]]] = {}
        self.hits: dict[str, int] = {}
        self.queries: list[dict] = []
        self.rejected = 0  # requests refused for stream_options under an API version before 2024-09-01
        super().__init__()

    def reply_to(self, handler: Any, body: Any) -> None:
        url = urlsplit(handler.path)
        self.queries.append(parse_qs(url.query))
        deployment = url.path.split("/deployments/", 1)[1].split("/", 1)[0]
        version = parse_qs(url.query).get("api-version", [""])[0]
        if "stream_options" in body and version[:10] < "2024-09-01":  # as Azure answers it
            self.rejected += 1
            send_json(handler, 400, {}, {"error": {"message": "Unrecognized request argument supplied: stream_options",
                                                   "type": "invalid_request_error", "param": None, "code": None}})
            return
        status, headers, reply = self.next_reply(self.replies, self.hits, deployment, body)
        if isinstance(reply, list):
            send_events(handler, status, {}, openai_frames(reply))
        else:
            send_json(handler, status, headers, reply)

    def deployment(self, name: str, *replies: tuple[int, dict, Any], api_version: str = API_VERSION,
                   **kw: Any) -> Deployment:
        """A Deployment calling ``azure/<name>`` here, served ``replies`` in turn."""
        self.replies[name] = list(replies)
        self.hits.pop(name, None)
        kw.setdefault("timeout_s", 5.0)
        kw.setdefault("price_model", "gpt-4o")
        return Deployment(name, f"azure/{name}", {"api_base": self.base_url, "api_key": "az-test-key-123456",
                                                  "api_version": api_version}, **kw)
