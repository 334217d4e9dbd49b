"""Functions loaded in this process as fresh containers, with the environment template.yaml gives
them on the local stack; and the AWS calls they make."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from provisioner_cli.lambda_runtime import Handler, LambdaContext, load_handler
from provisioner_cli.local import FAKE_CREDENTIALS, StackState
from provisioner_cli.template import Template

# What the bench process sets before any function is loaded: no metrics, errors only in the logs,
# and the local stack's fake credentials.
PROCESS_ENVIRONMENT = {
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
PROCESS_DEFAULTS = {"POWERTOOLS_METRICS_NAMESPACE": "ProvisionerBench", **FAKE_CREDENTIALS}


def prepare_process() -> None:
    os.environ.update(PROCESS_ENVIRONMENT)
    for key, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)


@dataclass
class LoadedFunction:
    """One container of a function: call it with an event, as Lambda would."""

    logical_id: str
    environment: dict[str, str]
    handler: Handler
    timeout_s: float
    functions: Functions = field(repr=False)

    def __call__(self, event: dict[str, Any]) -> Any:
        self.functions.apply(self.environment)
        return self.handler(event, LambdaContext(function_name=self.logical_id, timeout_s=self.timeout_s))


class Functions:
    """Loads functions in this process, each load a fresh container (a fresh module, so fresh
    settings: a function reads its environment once, as a container does)."""

    def __init__(self, template: Template, state: StackState) -> None:
        self.template = template
        self.state = state
        self._process = dict(os.environ)
        self._applied: dict[str, str] = {}

    def environment(self, logical_id: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The function's environment on the local stack, with ``overrides``."""
        env: dict[str, str] = self.state.function_environment(self.template, logical_id)
        env.update(overrides or {})
        return env

    def process_environment(
        self, logical_id: str, overrides: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The whole environment of a process running the function: this process's own variables
        (as they were before any function was loaded) and the function's."""
        return {**self._process, **self.environment(logical_id, overrides)}

    def load(
        self, logical_id: str, overrides: Mapping[str, str] | None = None, *, timeout_s: float | None = None
    ) -> LoadedFunction:
        """A fresh container of the function, its environment with ``overrides``."""
        env = self.environment(logical_id, overrides)
        self.apply(env)
        function = self.template.function(logical_id)
        handler = load_handler(function.code_uri, function.handler, function.layers)
        return LoadedFunction(logical_id, env, handler, timeout_s or function.timeout, self)

    def apply(self, env: dict[str, str]) -> None:
        """This process's environment as the function sees it: the process's own variables, and
        the function's; what the function loaded before declared and this one does not is removed
        (changing nothing when the same function's containers alternate)."""
        for key in self._applied.keys() - env.keys():
            if key in self._process:
                os.environ[key] = self._process[key]
            else:
                os.environ.pop(key, None)
        os.environ.update(env)
        self._applied = env


class AwsCalls(Counter[str]):
    """Calls by ``service:Operation``; ``by_table``: DynamoDB calls by (Operation, table name)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_table: Counter[tuple[str, str]] = Counter()


@contextmanager
def counting_aws_calls() -> Iterator[AwsCalls]:
    """Counts every boto3 call made in this process, by ``service:Operation`` (DynamoDB calls also
    by table)."""
    import botocore.client

    counts = AwsCalls()
    # A private method of botocore's clients (not in its stubs): every API call goes through it.
    client_class: Any = botocore.client.BaseClient
    original = client_class._make_api_call

    def counted(self: Any, operation: str, params: Any) -> Any:
        service = self.meta.service_model.service_name
        counts[f"{service}:{operation}"] += 1
        if service == "dynamodb" and isinstance(params, Mapping) and "TableName" in params:
            counts.by_table[(operation, str(params["TableName"]))] += 1
        return original(self, operation, params)

    client_class._make_api_call = counted
    try:
        yield counts
    finally:
        client_class._make_api_call = original
