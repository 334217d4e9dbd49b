"""A create operation's POST is answered without Powertools' REST resolver (``adapters.create_answer``:
a cold start skips the resolver's import and its first route). Its answers must be the resolver's:
each test builds the operation's REST app (``rest.build_rest_app``, which still documents the route
and answers every other request) and asks both the same API Gateway events, with a provisioning
step that succeeds or fails as chosen."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning import adapters, rest
from provisioning.errors import (
    Conflict,
    InProgress,
    InvalidRequest,
    ProviderRejected,
    ProviderTimeout,
    ProvisioningError,
    RateLimited,
)
from provisioning.models import CreateRequest, ProvisionResult
from provisioning.providers.palenca.client import CREATE_USER as PALENCA
from provisioning.providers.trust.client import CREATE_USER as TRUST
from provisioning.runtime import CreateUserFunction
from tests.conftest import api_event

Provision = Callable[[Any], ProvisionResult]
NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"


class Context:
    function_name = "create"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:create"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def created(request: CreateRequest) -> ProvisionResult:
    return ProvisionResult(
        provider="palenca", external_id=request.external_id, provider_user_id="p-1", outcome="created"
    )


def failing(error: Exception) -> Provision:
    def provision(request: CreateRequest) -> ProvisionResult:
        raise error

    return provision


def both(
    route: str, model: type[CreateRequest], provision: Provision, event: dict[str, Any]
) -> tuple[Any, Any]:
    """(the resolver's answer, the direct answer) to ``event``."""
    app = rest.build_rest_app(route, model, provision, "create")
    through_resolver = rest.answer(app, json.loads(json.dumps(event)), Context())  # type: ignore[arg-type]
    direct = adapters.create_answer(json.loads(json.dumps(event)), model, provision)
    return through_resolver, direct


def raw(path: str, text: str | None, *, base64_encoded: bool = False) -> dict[str, Any]:
    event = api_event(path, None, raw=text or "")
    if text is None:
        event["body"] = None
    elif base64_encoded:
        event["body"], event["isBase64Encoded"] = base64.b64encode(text.encode()).decode(), True
    return event


BODIES = {
    "valid": '{"external_id": "u-1"}',
    "valid, with unknown field": '{"external_id": "u-1", "extra": 1}',
    "external_id missing": "{}",
    "external_id empty": '{"external_id": ""}',
    "external_id with a space": '{"external_id": "a b"}',
    "external_id a number": '{"external_id": 12}',
    "external_id an e-mail": '{"external_id": "ana@example.com"}',
    "a list": "[1, 2]",
    "an empty list": "[]",
    "a string": '"x"',
    "a number": "0",
    "false": "false",
    "null": "null",
    "empty": "",
    "no body": None,
    "not JSON": "{",
    "NaN": '{"external_id": NaN}',
    "a huge integer": '{"external_id": ' + "1" * 4301 + "}",
    "deep nesting": "[" * 5000 + "]" * 5000,
    "too large": '{"external_id": "' + "a" * 17_000 + '"}',
}


@pytest.mark.parametrize("encoded", [False, True], ids=["text", "base64"])
@pytest.mark.parametrize("name", BODIES)
def test_every_body_is_answered_as_the_rest_resolver_answers_it(name: str, encoded: bool) -> None:
    event = raw(PALENCA.route, BODIES[name], base64_encoded=encoded)

    through_resolver, direct = both(PALENCA.route, PALENCA.request_model, created, event)

    assert direct == through_resolver


@pytest.mark.parametrize(
    "body",
    [
        {"external_id": "t-1", "email": "abeta@example.test", "name": "Alfa", "last_name": "Beta"},
        {"external_id": "t-1", "email": "not-an-email", "name": "Alfa", "last_name": "Beta"},
        {"external_id": "t-1", "name": "Alfa"},
        {"external_id": "t-1", "email": "abeta@example.test", "name": "A" * 3000, "last_name": "Beta"},
    ],
    ids=["valid", "bad e-mail", "fields missing", "name too long"],
)
def test_a_request_with_several_fields_is_answered_the_same(body: dict[str, Any]) -> None:
    through_resolver, direct = both(TRUST.route, TRUST.request_model, created, api_event(TRUST.route, body))

    assert direct == through_resolver


@pytest.mark.parametrize(
    "error",
    [
        Conflict("same person, another payload"),
        InProgress("being provisioned right now"),
        RateLimited("slow down", provider="palenca", retry_after=7),
        ProviderTimeout("timed out", provider="palenca"),
        ProviderRejected("refused", provider="palenca", status=422),
        InvalidRequest([]),
        ProvisioningError("configuration missing"),
        RuntimeError("a bug with ana@example.com inside"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_failed_provisioning_is_answered_the_same_with_its_status_and_headers(error: Exception) -> None:
    event = api_event(PALENCA.route, {"external_id": "u-1"})

    through_resolver, direct = both(PALENCA.route, PALENCA.request_model, failing(error), event)

    assert direct == through_resolver
    assert "ana@example.com" not in direct["body"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "APPLICATION/JSON; charset=utf-8"]
)
def test_a_content_type_is_judged_the_same(content_type: str) -> None:
    event = api_event(PALENCA.route, {"external_id": "u-1"})
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    event["multiValueHeaders"] = {"Content-Type": [content_type]}

    through_resolver, direct = both(PALENCA.route, PALENCA.request_model, created, event)

    assert direct == through_resolver


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["external_id", "email", "name", "last_name", "phone", "x"]), json_values, max_size=5
    )
    | json_values
)
def test_any_json_object_is_answered_the_same_and_anything_else_is_refused(body: Any) -> None:
    through_resolver, direct = both(TRUST.route, TRUST.request_model, created, api_event(TRUST.route, body))

    if isinstance(body, dict):
        assert direct == through_resolver
    else:
        assert direct["statusCode"] == 422
        fields = json.loads(direct["body"])["error"]["fields"]
        assert fields == [{"field": "body", "message": NOT_AN_OBJECT}] or body is None


def test_a_list_is_refused_where_the_resolver_would_take_its_first_element() -> None:
    event = raw(PALENCA.route, '[{"external_id": "u-1"}, {"external_id": "u-2"}]')

    through_resolver, direct = both(PALENCA.route, PALENCA.request_model, created, event)

    assert through_resolver["statusCode"] == 201  # Powertools reads a list as its first element
    assert direct["statusCode"] == 422
    assert json.loads(direct["body"])["error"]["fields"] == [{"field": "body", "message": NOT_AN_OBJECT}]


def test_the_function_answers_its_post_without_loading_the_rest_resolver_and_the_rest_with_it() -> None:
    function = CreateUserFunction(PALENCA)
    function._provision_now = created  # type: ignore[assignment, method-assign]

    answer = function.api(api_event(PALENCA.route + "/", {"external_id": "u-1"}), Context())  # type: ignore[arg-type]

    assert answer["statusCode"] == 201
    assert json.loads(answer["body"])["provider_user_id"] == "p-1"
    assert "app" not in vars(function)  # the resolver was not built
    other = function.api(api_event("/elsewhere", {"external_id": "u-1"}), Context())  # type: ignore[arg-type]
    assert other["statusCode"] == 404
    assert "app" in vars(function)
