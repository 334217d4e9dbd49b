"""Least privilege, measured: every grant that template.yaml gives a function is used by a call some
test saw that function make, or it is justified below. Runs last, over the calls of the whole run
(moto records each call a function's role was allowed)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from provisioner_cli import iam
from tests.conftest import ROOT
from tests.integration.test_iam import TEST_SESSION

# Granted, though no test can see the call: (function or "*", action, logical resource) -> why.
JUSTIFIED: dict[tuple[str, str, str], str] = {
    ("*", "kms:GenerateDataKey", "DataEncryptionKey"): (
        "the queues are encrypted with the hub key: in AWS, SendMessage to an SSE-KMS queue (by the "
        "function, or by Lambda for its OnFailure destination) needs kms:GenerateDataKey on its key; "
        "moto's SQS does not call KMS"
    ),
    ("*", "kms:Decrypt", "DataEncryptionKey"): (
        "SendMessage to an SSE-KMS queue also needs kms:Decrypt on its key (to reuse the data key); "
        "moto's SQS does not call KMS"
    ),
    ("PalencaListUsersFunction", "sqs:SendMessage", "PalencaSyncDLQ"): (
        "a sync that failed all its async attempts is sent to PalencaSyncDLQ by Lambda itself, with the "
        "function's role (EventInvokeConfig's OnFailure destination), not by the function's code"
    ),
    ("ImportFunction", "sqs:SendMessage", "ImportDLQ"): (
        "an import that failed (or stopped at its deadline) is sent to ImportDLQ by Lambda itself, with "
        "the function's role (EventInvokeConfig's OnFailure destination), not by the function's code"
    ),
}
WHOLE_RUN_MARKS = {"", "not backlog", "not slow and not backlog"}


def _whole_run(config: pytest.Config) -> bool:
    """Only a run of the whole suite saw every call (the backlog and SAM CLI tests exercise no
    function call the others do not)."""
    arguments = [Path(argument).resolve() for argument in config.args]
    return (
        arguments in ([], [ROOT / "tests"], [ROOT])
        and not config.option.keyword
        and config.option.markexpr in WHOLE_RUN_MARKS
    )


def _justified(function: str, action: str, resource: str) -> str | None:
    for (who, granted, logical_id), why in JUSTIFIED.items():
        if fnmatchcase(function, who) and action == granted and iam.CALLS.logical_id(resource) == logical_id:
            return why
    return None


def test_unused_grants_are_found():
    """The comparison itself: a grant no call used is reported, one a call used is not."""
    role = iam.FunctionRole("F", "FRole")
    role.policies["p"] = {
        "Statement": [
            {"Effect": "Allow", "Action": ["sqs:SendMessage*", "sqs:DeleteMessage"], "Resource": "arn:q"},
            {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:t/index/*"},
        ]
    }
    calls = {("sqs:SendMessageBatch", "arn:q"), ("dynamodb:GetItem", "arn:t")}

    assert iam.unused_grants(role, calls) == {
        ("sqs:DeleteMessage", "arn:q"),
        ("dynamodb:GetItem", "arn:t/index/*"),
    }


@pytest.mark.least_privilege
def test_every_grant_is_called_by_some_test_or_justified(request, stack, translated):
    if not _whole_run(request.config):
        pytest.skip("compares the roles with the calls of the whole suite: run make test")
    roles = iam.function_roles(translated, stack.resolver())
    report, unused = [], []
    for function, role in sorted(roles.items()):
        calls = iam.CALLS.calls.get(function, set())
        report.append(f"{function}: granted {len(role.grants())}, saw {len(calls)} distinct calls")
        report.extend(
            f"    called {action} on {iam.CALLS.logical_id(resource)}" for action, resource in sorted(calls)
        )
        for action, resource in sorted(iam.unused_grants(role, calls, iam.CALLS.logical_id)):
            why = _justified(function, action, resource)
            report.append(f"    granted, never called: {action} on {resource}" + (f" ({why})" if why else ""))
            if not why:
                unused.append(f"{function}: {action} on {resource}")
    print("\n".join(report))
    assert not unused, "granted but never called (remove, or justify in JUSTIFIED):\n" + "\n".join(unused)


@pytest.mark.least_privilege
def test_no_call_was_denied_to_a_function(request):
    """A denial the code swallowed (a fallback path) is a grant missing from the template."""
    if not _whole_run(request.config):
        pytest.skip("looks at the calls of the whole suite: run make test")
    denied = {f: calls for f, calls in iam.CALLS.denied.items() if f != TEST_SESSION}
    assert not denied, denied
