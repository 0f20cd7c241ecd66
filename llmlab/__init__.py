"""llmlab — the engineering around LLM calls: a gateway and a lab to test it in.

``import llmlab`` is cheap: litellm, pandas, SimPy and the embedders load on first use.
"""
from __future__ import annotations

from .admission import Admission
from .budgets import BudgetPolicy, MemoryBudgets
from .coalescing import Coalesce
from .effects import (Admit, Attempt, CachedAnswer, CacheOutcome, Call, CallError, CallResult, Deployment, Embed,
                      ErrorKind, JoinFlight, Outcome, OutcomeKind, Race, RaceDecided, RaceResult, Sleep)
from .errors import (AllProvidersFailed, BudgetExceeded, BudgetUnavailable, ClientDisconnected, ConfigError, GatewayError, GuardrailBlocked,
                     InvalidRequest, LLMLabError, Overloaded, ProviderRejected, RateLimited, UnknownModelPrice)
from .fallback import CircuitBreaker, RetryPolicy
from .gateway import Gateway
from .hedging import Hedge
from .ledger import Ledger
from .pricing import LECTURE_PRICES, ModelPrice, PriceBook, monthly_cost
from .ratelimit import RateLimit, RateLimiter
from .request import Request
from .runloop import Driver
from .routing import (CascadeRouter, ClassifierRouter, ComplexityRouter, FixedRouter, PlanRouter, RouteDecision,
                      default_acceptance)
from .stream import StreamReset, StreamResponse
from .tokens import count_message_tokens, count_tokens

__version__ = "0.1.0"

__all__ = [
    "Admission", "Admit", "AllProvidersFailed", "Attempt", "BudgetExceeded", "BudgetUnavailable", "BudgetPolicy", "ClientDisconnected", "CacheOutcome", "CachedAnswer", "Call",
    "CallError", "CallResult", "CascadeRouter", "CircuitBreaker", "ClassifierRouter", "Coalesce", "ComplexityRouter",
    "ConfigError", "Deployment", "Driver", "Embed", "ErrorKind", "FixedRouter", "Gateway", "GatewayError", "GuardrailBlocked",
    "Hedge", "InvalidRequest", "JoinFlight", "LECTURE_PRICES", "LLMLabError", "Ledger", "MemoryBudgets", "ModelPrice", "Outcome",
    "OutcomeKind", "Overloaded", "PlanRouter", "PriceBook", "ProviderRejected", "Race", "RaceDecided", "RaceResult", "RateLimit", "RateLimited",
    "RateLimiter", "Request", "RetryPolicy", "RouteDecision", "Sleep", "StreamReset", "StreamResponse", "UnknownModelPrice",
    "count_message_tokens", "count_tokens", "default_acceptance", "monthly_cost",
]
