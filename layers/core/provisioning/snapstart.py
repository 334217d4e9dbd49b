"""Lambda SnapStart: what each function does before its snapshot is taken and after a restore.

With ``EnableSnapStart``, Lambda initializes a function when a version is published, runs the
before-snapshot hooks, snapshots the memory, and restores new execution environments from that
snapshot. Everything the hooks leave in memory is shared by every environment restored from it, so:

- **before the snapshot** the hooks only load code and build what is the same in every environment:
  every module any path needs (the REST event handler included: an API answer after idle is the
  latency that SnapStart is for), the pydantic models and the REST app with its validation, the
  configuration read from the environment, and boto3's service models and endpoint rules (a client
  made with placeholder credentials, then dropped). They never fetch a secret, call KMS, a provider or
  any AWS API, never open a connection and never resolve credentials: on SnapStart the role's
  credentials come from Lambda's credentials endpoint, an HTTP call whose token would be frozen in the
  snapshot. The function's own boto3 clients are made after the restore, from the models already
  loaded (a few milliseconds each);
- **after a restore** they reseed ``random``, close and drop any pooled connection (the ``requests``
  session, boto3 clients), so connections are opened by this environment, and empty every secret
  cache, so secrets are fetched after the restore.

Each ``functions/<name>/app.py`` registers its hooks with one line: ``snapstart.register(handler)``.
``snapshot_restore_py`` is provided by Lambda's Python runtime (3.12 and later); the development
environment pins the same package, so the hooks run in tests exactly as Lambda runs them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from snapshot_restore_py import register_after_restore, register_before_snapshot

from provisioning.observability import logger

# The AWS services any function of the hub calls: their models are loaded before the snapshot.
SERVICES = ("dynamodb", "sqs", "secretsmanager", "kms", "events")
# What a handler caches that is computed from its code and environment alone: the Cognito trigger's
# configuration, the API docs' OpenAPI document.
_PURE = ("settings", "mapping", "_spec")
# Attributes a handler caches that hold connections, clients or secrets: dropped after a restore.
_CONNECTED = ("session", "events", "sqs")
_SECRET_CACHES = ("secrets",)
# Credentials of the clients that load the models: never sent (those clients make no call).
PLACEHOLDER = "not-a-credential"


def _load_service_models(services: Iterable[str]) -> None:
    """Loads boto3's default session and each service's model, endpoint rules and client class,
    as creating a client does, but without resolving credentials or opening a connection (the
    placeholder credentials are never sent: the client is dropped unused)."""
    import boto3  # imported here: a function without clients (the API docs) never loads it

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session: Any = boto3.DEFAULT_SESSION  # the session the functions' clients are made from
    for service in services:
        session.client(service, aws_access_key_id=PLACEHOLDER, aws_secret_access_key=PLACEHOLDER)


def _build(handler: Any) -> None:
    """What a handler builds once per container, short of anything that calls out: its settings
    (read from the environment), its REST app (routes, OpenAPI validation, pydantic models)."""
    import netrc  # noqa: F401  (requests reads ~/.netrc on a session's first request)

    # The REST event handler (the API path), signup events' Person, shared budgets' limiter and the
    # settings models (ImportFunction reads its own at its first invocation): loaded lazily, by the
    # paths that need them.
    from provisioning import person, ratelimit, rest, settings  # noqa: F401

    deps = getattr(handler, "deps", None)
    if deps is not None:
        deps.settings  # noqa: B018  (reads and validates the environment)
    for name in _PURE:
        if name in type(handler).__dict__:
            getattr(handler, name)
    if callable(getattr(handler, "build_app", None)):
        with suppress(NotImplementedError):  # a function without an API
            handler.app  # noqa: B018  (builds the resolver and its routes' validation models)
    from provisioning.models import build_deferred_models

    build_deferred_models()  # our models' validators, which are otherwise built on first use


def before_snapshot(handler: Any, services: Iterable[str] = SERVICES) -> None:
    """Runs in the initialized environment, just before Lambda snapshots it."""
    _build(handler)
    _load_service_models(services)
    logger.info("primed for the snapshot")


def _close(value: Any) -> None:
    close: Callable[[], None] | None = getattr(value, "close", None)
    if close is not None:
        close()


def after_restore(handler: Any) -> None:
    """Runs in each environment restored from the snapshot, before its first invocation."""
    random.seed()  # from os.urandom: every restored environment draws its own numbers
    for owner in (handler, getattr(handler, "deps", None)):
        cached = getattr(owner, "__dict__", None)
        if cached is None:
            continue
        for name in _CONNECTED:
            if name in cached:
                _close(cached.pop(name))
        for name in _SECRET_CACHES:
            cached.pop(name, None)
        clients = cached.get("_clients")
        if isinstance(clients, dict):
            for client in clients.values():
                _close(client)
            clients.clear()
        limiters = cached.get("_limiters")
        if isinstance(limiters, dict):
            limiters.clear()  # each holds a DynamoDB client
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]  # Powertools' own providers' caches (the handlers keep none there)


def register(handler: Any) -> Any:
    """Registers ``handler``'s SnapStart hooks (they run only where SnapStart is on); returns it."""
    register_before_snapshot(before_snapshot, handler)
    register_after_restore(after_restore, handler)
    return handler


__all__ = ["SERVICES", "after_restore", "before_snapshot", "register"]
