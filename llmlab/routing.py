"""Routers choose which deployment answers a request, and say why.

A router's ``decide(request)`` is a generator, like the pipeline: most routers decide from the
request alone and yield nothing, but :class:`ClassifierRouter` asks a cheap model for a label
by yielding a :class:`~llmlab.effects.Call`.  The pipeline prices and records that call like
any other.  Routers compose: :class:`PlanRouter` maps plans to deployments *or* to other
routers, so "paid users get complexity routing, free users get the small model" is one line.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Mapping, Protocol, Sequence, Union

from . import _validate as v
from ._fastinit import fast_frozen_init
from .effects import Call, Deployment, Effect
from .errors import ConfigError, InvalidRequest
from .request import Request

AcceptCheck = Callable[[str, Request], bool]


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a request goes.  ``deployment`` is None when ``answer`` is a rule's $0 answer.

    ``cascade`` lists deployments to escalate to, in order, when ``accept`` rejects an answer.
    """

    deployment: str | None
    tier: str
    reason: str
    answer: str | None = None
    cascade: tuple[str, ...] = ()
    accept: AcceptCheck | None = None


class Router(Protocol):
    def decide(self, request: Request) -> Generator[Effect, Any, RouteDecision]: ...

    # optional: ``decide_now(request) -> RouteDecision | None``, the decision at once when it needs
    # no call (None: the pipeline runs ``decide``) — a generator that never yields costs a frame,
    # a StopIteration and its catch per request (StaticRouter and PlanRouter have it)

    def targets(self) -> set[str]:
        """Every deployment name this router may choose (validated by the gateway)."""
        ...


Target = Union[str, "Router"]


def _decide_target(target: Target, request: Request, tier: str, reason: str) -> Generator[Effect, Any, RouteDecision]:
    if isinstance(target, str):
        return RouteDecision(target, tier, reason)
    inner = yield from target.decide(request)
    return RouteDecision(inner.deployment, inner.tier, f"{reason}; {inner.reason}", inner.answer,
                         inner.cascade, inner.accept)


def _check_target(field: str, target: Any) -> None:
    """A route's target is a deployment name or a router (checked here: the gateway would find
    out only by calling ``targets()`` on it)."""
    if isinstance(target, str) and target:
        return
    if not isinstance(target, str) and callable(getattr(target, "decide", None)) \
            and callable(getattr(target, "targets", None)):
        return
    raise ConfigError(field, target, "a deployment name or a router (e.g. llmlab.ComplexityRouter())")


def _targets_of(target: Target) -> set[str]:
    return {target} if isinstance(target, str) else target.targets()


def bind_targets(targets: Iterable[Target | None], deployments: Mapping[str, Deployment]) -> None:
    """Hand ``deployments`` down to the routers among ``targets`` that bind (a classifier resolves
    its deployment): the gateway binds only the router it is given, and a classifier nested in a
    plan router failed every request it routed ("a deployment bound by the Gateway")."""
    _each_router(targets, "bind", deployments)


def check_nested(targets: Iterable[Target | None], request: Request) -> None:
    """Run ``check_request`` of the routers among ``targets`` that have one: the gateway checks only
    the router it is given, and a plan router nested in a classifier's route failed a request of an
    unlisted plan as an internal error — after its classification was paid for."""
    _each_router(targets, "check_request", request)


def _each_router(targets: Iterable[Target | None], method: str, *args: Any) -> None:
    """Call ``method(*args)`` on each router among ``targets`` that has it (not on deployment names)."""
    for target in targets:
        call = getattr(target, method, None) if target is not None and not isinstance(target, str) else None
        if callable(call):
            call(*args)


def answer_targets(router: Any) -> set[str]:
    """Deployments a router may send a user's answer to: ``targets()`` without the ones a router
    only calls to decide (a classifier's), for routers that say so with ``answer_targets()``."""
    own = getattr(router, "answer_targets", None)
    return set(own()) if callable(own) else set(router.targets())


class StaticRouter:
    """Base for routers that decide from the request alone (no effects)."""

    def choose(self, request: Request) -> RouteDecision:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, request: Request) -> Generator[Effect, Any, RouteDecision]:
        return self.choose(request)
        yield  # unreachable: makes this function a generator

    def decide_now(self, request: Request) -> RouteDecision | None:
        """:meth:`choose`, called by the pipeline without the generator protocol (None when a
        subclass decides in a ``decide`` of its own)."""
        return self.choose(request) if type(self).decide is StaticRouter.decide else None

    def targets(self) -> set[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class FixedRouter(StaticRouter):
    """Always the same deployment (the baseline policy)."""

    def __init__(self, deployment: str) -> None:
        if not isinstance(deployment, str) or not deployment:
            raise ConfigError("fixed_router.deployment", deployment, "a deployment name")
        self.deployment = deployment

    def choose(self, request: Request) -> RouteDecision:
        return RouteDecision(self.deployment, "fixed", f"fixed route to {self.deployment}")

    def __repr__(self) -> str:
        return f"FixedRouter({self.deployment!r})"

    def targets(self) -> set[str]:
        return {self.deployment}


class ComplexityRouter(StaticRouter):
    """The lecture's heuristic: prompt length decides the tier.

    < ``thresholds[0]`` characters → low, < ``thresholds[1]`` → medium, else high.  Length is a
    crude proxy for difficulty — cheap, explainable, and a baseline the classifier and cascade
    routers must beat.
    """

    DEFAULT_MODELS = {"low": "gpt-4o-mini", "medium": "gpt-4o", "high": "claude-sonnet-4-20250514"}

    def __init__(self, thresholds: Sequence[int] = (100, 500), models: Mapping[str, str] | None = None) -> None:
        if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence) or len(thresholds) != 2:
            raise ConfigError("complexity.thresholds", thresholds, "two character counts (low/medium, medium/high)")
        lo = v.integer("complexity.thresholds[0]", thresholds[0], lo=1)
        hi = v.integer("complexity.thresholds[1]", thresholds[1], lo=lo + 1)
        self.thresholds = (lo, hi)
        if models is not None and not isinstance(models, Mapping):
            raise ConfigError("complexity.models", models, "a mapping with keys 'low', 'medium', 'high'")
        self.models = dict(self.DEFAULT_MODELS if models is None else models)
        # exactly the three tiers: an extra key (a misspelt "hihg" beside "high") was never routed to
        if set(self.models) != {"low", "medium", "high"} \
                or not all(isinstance(m, str) and m for m in self.models.values()):
            raise ConfigError("complexity.models", self.models, "a mapping with keys 'low', 'medium', 'high'")

    def __repr__(self) -> str:
        return f"ComplexityRouter(thresholds={self.thresholds}, models={self.models})"

    def tier_of(self, text: str) -> str:
        n = len(text)
        return "low" if n < self.thresholds[0] else "medium" if n < self.thresholds[1] else "high"

    def choose(self, request: Request) -> RouteDecision:
        tier = self.tier_of(request.text)
        return RouteDecision(self.models[tier], tier,
                             f"complexity: {len(request.text)} chars → {tier} (thresholds {self.thresholds})")

    def targets(self) -> set[str]:
        return set(self.models.values())


class PlanRouter:
    """Route by the tenant's plan: ``{"paid": "gpt-4o", "free": "gpt-4o-mini"}`` by default.

    A plan may map to another router, e.g. ``{"paid": ComplexityRouter(), "free": "gpt-4o-mini"}``.
    """

    def __init__(self, plans: Mapping[str, Target] | None = None, default: Target | None = None) -> None:
        if plans is not None and not isinstance(plans, Mapping):
            raise ConfigError("plan_router.plans", plans, "a mapping of plan → deployment or router")
        self.plans = dict(plans) if plans is not None else {"paid": "gpt-4o", "free": "gpt-4o-mini"}
        if not self.plans:
            raise ConfigError("plan_router.plans", plans, "at least one plan")
        for plan, target in self.plans.items():
            v.key_name("plan_router.plans", plan, "a plan name")
            _check_target(f"plan_router.plans[{plan!r}]", target)
        if default is not None:
            _check_target("plan_router.default", default)
        self.default = default
        self._decisions: dict[str, RouteDecision] = {}  # per plan routed to a deployment (decide_now)

    def __repr__(self) -> str:
        default = "" if self.default is None else f", default={self.default!r}"
        return f"PlanRouter({self.plans!r}{default})"

    def bind(self, deployments: Mapping[str, Deployment]) -> None:
        """Called by the gateway: the routers a plan maps to are bound too."""
        bind_targets([*self.plans.values(), self.default], deployments)

    def check_request(self, request: Request) -> None:
        """A plan with no route is the caller's mistake: InvalidRequest up front, not an internal
        error (in the router the plan's route leads to as well)."""
        if request.plan not in self.plans and self.default is None:
            raise InvalidRequest("plan", request.plan, "one of " + ", ".join(map(repr, self.plans)))
        check_nested([self.plans.get(request.plan, self.default)], request)

    def decide(self, request: Request) -> Generator[Effect, Any, RouteDecision]:
        target = self.plans.get(request.plan, self.default)
        if target is None:
            raise ConfigError("request.plan", request.plan, "one of " + ", ".join(map(repr, self.plans)))
        return (yield from _decide_target(target, request, request.plan, f"plan {request.plan!r}"))

    def decide_now(self, request: Request) -> RouteDecision | None:
        """:meth:`decide` at once for a plan routed to a deployment, the same decision each time
        (kept per listed plan: decisions are immutable); None for a plan routed to a router, or
        none (:meth:`decide` runs, and raises), and in a subclass with a ``decide`` of its own."""
        plan = request.plan
        target = self.plans.get(plan, self.default)
        if not isinstance(target, str) or type(self).decide is not PlanRouter.decide:
            return None
        decision = self._decisions.get(plan)
        if decision is None or decision.deployment != target:  # plans may be edited after construction
            decision = RouteDecision(target, plan, f"plan {plan!r}")
            if plan in self.plans:  # a bounded memo: unlisted plans (to the default) are the callers'
                self._decisions[plan] = decision
        return decision

    def targets(self) -> set[str]:
        out: set[str] = set()
        for t in [*self.plans.values(), *([self.default] if self.default is not None else [])]:
            out |= _targets_of(t)
        return out


LABELS = ("faq", "general", "complex")

CLASSIFIER_PROMPT = (
    "Classify the user's message for a customer-support assistant. Answer with exactly one word: "
    "FAQ (a common question with a standard answer), GENERAL (needs a normal answer) or COMPLEX "
    "(multi-step reasoning, analysis, long writing)."
)


_WORDS = re.compile(r"[a-z]+")


def parse_label(text: str) -> str | None:
    """The classifier's label: the first word that is one, markup and quotes aside, else a first
    word that starts with one ("Complexity").  Words split at spaces only missed ``**FAQ**`` and
    ``"faq"`` (the request fell to ``fallback_label``), and a label anywhere beat one at the start
    (``COMPLEX or FAQ`` read as faq)."""
    words = _WORDS.findall(text.lower())
    for word in words:
        if word in LABELS:
            return word
    return next((label for label in LABELS if words and words[0].startswith(label)), None)


class ClassifierRouter:
    """A cheap model labels the request FAQ / general / complex (the lecture's tiering diagram).

    FAQ requests are answered by a rule at $0 when ``rules`` has an answer (a callable of the
    request returning text or None); otherwise they go to ``routes["faq"]``.  If the classifier
    call fails or answers nonsense, the request is treated as ``fallback_label`` and the reason
    says so — a broken classifier degrades routing, never availability.
    """

    DEFAULT_ROUTES = {"faq": "gpt-4o-mini", "general": "gpt-4o-mini", "complex": "gpt-4o"}

    def __init__(self, classifier: str = "gpt-4o-mini", routes: Mapping[str, Target] | None = None,
                 rules: Callable[[Request], str | None] | None = None, fallback_label: str = "general",
                 prompt: str = CLASSIFIER_PROMPT) -> None:
        if not isinstance(classifier, str) or not classifier:
            raise ConfigError("classifier.classifier", classifier, "a deployment name (the model that labels requests)")
        self.classifier = classifier
        if routes is not None and not isinstance(routes, Mapping):
            raise ConfigError("classifier.routes", routes, "a mapping with keys 'faq', 'general', 'complex'")
        self.routes = dict(routes or self.DEFAULT_ROUTES)
        if set(self.routes) != set(LABELS):
            raise ConfigError("classifier.routes", self.routes, "a mapping with keys 'faq', 'general', 'complex'")
        for label, target in self.routes.items():
            _check_target(f"classifier.routes[{label!r}]", target)
        if rules is not None and not callable(rules):  # called per FAQ request: a str failed there, quietly
            raise ConfigError("classifier.rules", rules, "a callable rules(request) -> answer text or None, or None")
        self.rules = rules
        self.fallback_label = v.choice("classifier.fallback_label", fallback_label, LABELS)
        if not isinstance(prompt, str) or not prompt.strip():  # sent as the classifier's system message
            raise ConfigError("classifier.prompt", prompt, "the classifier's instructions (text)")
        self.prompt = prompt
        self._deployment: Deployment | None = None

    def __repr__(self) -> str:
        rules = "" if self.rules is None else f", rules={getattr(self.rules, '__name__', type(self.rules).__name__)}"
        return f"ClassifierRouter(classifier={self.classifier!r}, routes={self.routes!r}{rules})"

    def bind(self, deployments: Mapping[str, Deployment]) -> None:
        """Called by the gateway: resolve the classifier's deployment, and bind the routers a label maps to.

        A router given to several gateways is bound to the last one; each gateway's pipeline sends
        the call to its own deployment of the same name (its ``api_base``, its key)."""
        self._deployment = deployments[self.classifier]
        bind_targets(self.routes.values(), deployments)

    def check_request(self, request: Request) -> None:
        """The routers a label maps to check ``request`` up front (any label may be chosen): a plan
        router there must route its plan before the classification is paid for."""
        check_nested(self.routes.values(), request)

    def decide(self, request: Request) -> Generator[Effect, Any, RouteDecision]:
        if self._deployment is None:
            raise ConfigError("classifier.classifier", self.classifier, "a deployment bound by the Gateway")
        if not request.text.strip():  # an image-only turn: nothing the classifier could read
            reason = f"no text to classify (an image-only turn) → {self.fallback_label}"
            return (yield from _decide_target(self.routes[self.fallback_label], request, self.fallback_label, reason))
        result = yield Call(self._deployment,
                            ({"role": "system", "content": self.prompt}, {"role": "user", "content": request.text}),
                            {"max_tokens": 3, "temperature": 0}, purpose="classify", metadata=request.metadata)
        label = parse_label(result.text) if result.ok else None
        if label is None:
            why = result.message if not result.ok else f"unparseable label {result.text[:20]!r}"
            label, reason = self.fallback_label, f"classifier failed ({why}) → {self.fallback_label}"
        else:
            reason = f"classifier {self.classifier} labelled {label}"
        if label == "faq" and self.rules is not None:
            try:
                answer = self.rules(request)
            except Exception as exc:  # a user rule must not crash the gateway
                # its type only, as for an acceptance check: the message may quote the request's
                # metadata or the customer record the rule looked up, and the reason is in the ledger
                answer, reason = None, f"{reason}; rule raised {type(exc).__name__}"
            if answer:
                return RouteDecision(None, "faq", f"{reason}; answered by rule at $0", answer=answer)
        return (yield from _decide_target(self.routes[label], request, label, reason))

    def targets(self) -> set[str]:
        return self.answer_targets() | {self.classifier}

    def answer_targets(self) -> set[str]:
        """The deployments that may answer: the routes' (the classifier's own only labels, and
        when it fails the router takes its fallback label's route)."""
        out: set[str] = set()
        for t in self.routes.values():
            out |= _targets_of(t)
        return out


_REFUSALS = ("i don't know", "i do not know", "i'm not sure", "i am not sure", "cannot help", "can't help",
             "모르겠", "잘 모르")


def default_acceptance(text: str, request: Request) -> bool:
    """A deliberately simple check: a non-trivial answer that is not a refusal.

    Non-trivial is 20 columns, a wide (CJK) character counting two as on screen: in characters a
    Korean answer is about half its English one, and complete short answers ("설정 메뉴에서 변경할
    수 있습니다.", 19 characters) were all rejected and escalated."""
    t = text.strip().lower()
    return (len(t) >= 20 or _columns(t) >= 20) and not any(r in t for r in _REFUSALS)


def _columns(text: str) -> int:
    """The width of ``text`` on screen: a wide or full-width character (Hangul, CJK) counts two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cascade_tier(stage: int) -> str:
    """A cascade's ``route_tier``: ``cascade-0`` as routed, the answering stage's once it escalated."""
    return f"cascade-{stage}"


class CascadeRouter:
    """Cheap model first; escalate when ``accept(answer, request)`` says no (FrugalGPT-style).

    ``accept`` is pluggable (a grader model, a regex, a JSON-schema check).  If it raises, the
    pipeline records the exception as an attempt outcome and escalates.  A stage whose fallback
    chain fails for a reason of its own (an outage, params it cannot take) escalates too; the
    request's own fault (auth, a bad request) does not.  The last stage's answer is final.
    """

    def __init__(self, stages: Sequence[str] = ("gpt-4o-mini", "gpt-4o"), accept: AcceptCheck | None = None) -> None:
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or len(stages) < 2 \
                or not all(isinstance(x, str) and x for x in stages):
            raise ConfigError("cascade.stages", stages, "a list of at least two deployment names, cheapest first")
        if len(set(stages)) != len(stages):  # a repeated stage pays twice for the answer it rejected
            raise ConfigError("cascade.stages", list(stages), "distinct deployment names, cheapest first")
        if accept is not None and not callable(accept):
            raise ConfigError("cascade.accept", accept, "a callable accept(answer, request) -> bool, or None")
        self.stages = tuple(stages)
        self.accept = accept or default_acceptance

    def __repr__(self) -> str:
        return f"CascadeRouter(stages={list(self.stages)!r}, accept={getattr(self.accept, '__name__', 'custom')})"

    def decide(self, request: Request) -> Generator[Effect, Any, RouteDecision]:
        return RouteDecision(self.stages[0], cascade_tier(0), f"cascade: try {self.stages[0]} first, escalate on rejection",
                             cascade=self.stages[1:], accept=self.accept)
        yield  # unreachable: makes this function a generator

    def targets(self) -> set[str]:
        return set(self.stages)


def answer_routes(router: Any) -> list[tuple[str, ...]]:
    """Every way ``router`` may answer, each as the deployments one answer may call in turn: a
    cascade's stages together (a reservation holds their sum), any other target alone.  What a
    hold taken before routing (a classification) must be priced against."""
    if isinstance(router, CascadeRouter):
        return [tuple(router.stages)]
    if isinstance(router, ClassifierRouter):
        nested: list[Any] = list(router.routes.values())
    elif isinstance(router, PlanRouter):
        nested = [*router.plans.values(), *([router.default] if router.default is not None else [])]
    else:
        return [(t,) for t in sorted(answer_targets(router))]
    out: list[tuple[str, ...]] = []
    for target in nested:
        out.extend([(target,)] if isinstance(target, str) else answer_routes(target))
    return out
