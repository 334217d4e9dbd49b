"""``provisioner import``: validation of every row first, SendMessageBatch in tens, per-provider
routing of persons, retries of failed entries without duplicates, bounded memory."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner_cli.bulk import BatchSender, Planned, send_file, validate_file
from provisioner_cli.main import cli
from provisioning.providers.palm.client import PalmCreateUserRequest
from provisioning.providers.trust.client import TrustCreateUserRequest
from tests.integration.conftest import drain_bodies, queue_depth
from tests.people import COLUMNS

QUEUES = {
    "palenca": "PalencaCreateUserQueue",
    "trust": "TrustCreateUserQueue",
    "palm": "PalmCreateUserQueue",
    "validic": "ValidicProvisionUserQueue",
}


def write_csv(path: Path, rows: int, bad_line: int | None = None, targeted: bool = False) -> Path:
    """People; with ``targeted``, every 5th targets only Palenca and Palm."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(1, rows + 1):
            providers = "palenca|palm" if targeted and n % 5 == 0 else ""
            phone = "555-0199" if n + 1 == bad_line else f"+52155{n:08d}"
            writer.writerow(
                [
                    f"imp-{n}",
                    f"person{n}@example.test",
                    "Ana",
                    f"Perez{n}",
                    phone,
                    "1990-04-01",
                    "MX",
                    providers,
                ]
            )
    return path


@pytest.fixture
def sqs(stack, aws):
    client = aws("sqs")
    client.calls = []  # type: ignore[attr-defined]
    client.meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch",
        lambda params, **kw: client.calls.append(len(params["Entries"])),  # type: ignore[attr-defined]
    )
    return client


class RecordingSqs:
    """Records SendMessageBatch calls and answers like SQS (every entry queued)."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, str]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_ten_thousand_rows_are_one_thousand_batches_per_provider(tmp_path):
    path = write_csv(tmp_path / "people.csv", 10_000)
    sqs = RecordingSqs()
    sender = BatchSender(sqs, {p: f"https://queue/{p}" for p in ("trust", "validic")})

    checked = validate_file(path, "csv", ["trust", "validic"], report=pytest.fail)
    report = send_file(path, "csv", ["trust", "validic"], sender)

    assert checked.invalid == 0
    assert dict(report.calls) == {"trust": 1000, "validic": 1000}
    assert [len(batch) for batch in sqs.batches] == [10] * 2000
    ids = [json.loads(e["MessageBody"])["external_id"] for batch in sqs.batches for e in batch]
    assert len(ids) == 20_000
    assert len(set(ids)) == 10_000  # each person once per provider


def test_rows_reach_the_queue_on_moto(tmp_path, stack, sqs):
    path = write_csv(tmp_path / "people.csv", 500)
    url = stack.refs["TrustCreateUserQueue"]

    report = send_file(path, "csv", ["trust"], BatchSender(sqs, {"trust": url}))

    assert report.calls["trust"] == 50
    assert sqs.calls == [10] * 50
    bodies = drain_bodies(sqs, url)
    assert sorted(b["external_id"] for b in bodies) == sorted(f"imp-{n}" for n in range(1, 501))
    for body in bodies[:50]:
        TrustCreateUserRequest.model_validate(body)


def test_all_providers_honour_each_persons_target_list(tmp_path, stack, sqs):
    path = write_csv(tmp_path / "people.csv", 200, targeted=True)
    urls = {provider: stack.refs[queue] for provider, queue in QUEUES.items()}

    report = send_file(path, "csv", list(QUEUES), BatchSender(sqs, urls))

    # every 5th person targets palenca and palm only
    assert dict(report.sent) == {"palenca": 200, "trust": 160, "palm": 200, "validic": 160}
    trust_bodies = drain_bodies(sqs, urls["trust"])
    assert len(trust_bodies) == 160
    assert len({b["external_id"] for b in trust_bodies}) == 160
    for body in trust_bodies:
        TrustCreateUserRequest.model_validate(body)
    palm_bodies = drain_bodies(sqs, urls["palm"])
    assert PalmCreateUserRequest.model_validate(palm_bodies[0]).vault.email == "person1@example.test"


def test_one_bad_row_sends_nothing_and_is_named(tmp_path, stack, sqs):
    path = write_csv(tmp_path / "people.csv", 50, bad_line=27)
    result = CliRunner().invoke(
        cli, ["import", str(path), "--provider", "trust", "--queue-url", stack.refs["TrustCreateUserQueue"]]
    )

    assert result.exit_code == 1
    assert "line 27: phone:" in result.output
    assert "555-0199" not in result.output, "row values are personal data and are never echoed"
    assert "nothing sent" in result.output
    assert sqs.calls == []
    assert queue_depth(sqs, stack.refs["TrustCreateUserQueue"]) == 0


def test_skip_invalid_sends_the_other_rows(tmp_path, stack, sqs):
    path = write_csv(tmp_path / "people.csv", 50, bad_line=27)
    result = CliRunner().invoke(
        cli,
        [
            "import",
            str(path),
            "--provider",
            "trust",
            "--skip-invalid",
            "--queue-url",
            stack.refs["TrustCreateUserQueue"],
        ],
    )

    assert result.exit_code == 0, result.output
    assert "trust    sent      49 in 5 SendMessageBatch calls" in result.output
    assert queue_depth(sqs, stack.refs["TrustCreateUserQueue"]) == 49


def test_duplicates_and_missing_fields_are_reported_per_provider(tmp_path):
    path = tmp_path / "people.jsonl"
    lines = [
        {"external_id": "d-1", "email": "a@example.test", "first_name": "A", "last_name": "B"},
        {"external_id": "d-2"},  # no e-mail or names: invalid for trust only
        {"external_id": "d-1", "email": "a@example.test", "first_name": "A", "last_name": "B"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\nnot json\n")
    reported: list[str] = []

    checked = validate_file(path, "jsonl", ["palenca", "trust"], reported.append)

    assert checked.invalid == 3
    assert "line 2: email: is required by trust" in reported
    assert "line 3: external_id: repeats line 1 for palenca" in reported
    assert "line 3: external_id: repeats line 1 for trust" in reported
    assert "line 5: row: is not valid JSON" in reported
    # d-2 still goes to Palenca when invalid parts are skipped
    assert dict(checked.per_provider) == {"palenca": 2, "trust": 1}


def test_provider_shaped_json_lines(tmp_path, stack, sqs):
    path = tmp_path / "palm.jsonl"
    body = {"external_id": "pm-1", "display_name": "Ana", "vault": {"identity.email": "ana@example.test"}}
    path.write_text(json.dumps(body) + "\n")
    url = stack.refs["PalmCreateUserQueue"]

    result = CliRunner().invoke(cli, ["import", str(path), "--provider", "palm", "--queue-url", url])

    assert result.exit_code == 0, result.output
    (queued,) = drain_bodies(sqs, url)
    assert queued == {**body, "metadata": {}}
    mixed = CliRunner().invoke(cli, ["import", str(path), "--provider", "all", "--dry-run"])
    assert mixed.exit_code == 1
    assert "line 1: display_name: is not a Person field" in mixed.output


def test_failed_entries_are_retried_once_each_and_never_duplicated(stack, sqs):
    url = stack.refs["PalencaCreateUserQueue"]
    real = sqs.send_message_batch
    answers = iter([{"Failed": [{"Id": "3", "Code": "InternalError", "SenderFault": False}]}])

    def flaky(QueueUrl, Entries):
        answer = real(QueueUrl=QueueUrl, Entries=Entries)
        injected = next(answers, None)
        if injected is None:
            return answer
        # pretend entry 3 was not queued: remove it again so the queue holds what SQS reported
        failed_id = injected["Failed"][0]["Id"]
        kept = [e for e in Entries if e["Id"] != failed_id]
        drain_bodies(sqs, QueueUrl)
        real(QueueUrl=QueueUrl, Entries=kept)
        return injected

    class Flaky:
        send_message_batch = staticmethod(flaky)

    sender = BatchSender(Flaky(), {"palenca": url}, sleep=lambda seconds: None)
    for n in range(10):
        sender.add(Planned("palenca", f"r-{n}", json.dumps({"external_id": f"r-{n}"})))
    sender.flush()

    assert sender.report.calls["palenca"] == 2
    assert sender.report.sent["palenca"] == 10
    ids = sorted(b["external_id"] for b in drain_bodies(sqs, url))
    assert ids == sorted(f"r-{n}" for n in range(10))


def test_sender_faults_are_not_retried_and_fail_the_import(stack):
    class Refusing:
        calls = 0

        def send_message_batch(self, QueueUrl, Entries):
            self.calls += 1
            return {
                "Failed": [
                    {"Id": e["Id"], "Code": "InvalidMessageContents", "SenderFault": True} for e in Entries
                ]
            }

    client = Refusing()
    sender = BatchSender(client, {"palenca": "url"}, sleep=lambda seconds: None)
    sender.add(Planned("palenca", "x", "{}"))
    sender.flush()
    assert client.calls == 1
    assert sender.report.failed["palenca"] == 1


def test_cli_against_the_stack_shows_progress_and_summary(tmp_path, stack, sqs, monkeypatch, admin_session):
    path = write_csv(tmp_path / "people.csv", 30, targeted=True)
    dry = CliRunner().invoke(cli, ["import", str(path), "--provider", "all", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would send      30 to palenca" in dry.output
    assert sqs.calls == []

    from provisioner_cli import bulk
    from provisioner_cli.stack import StackTarget

    monkeypatch.setattr(bulk, "resolve_target", lambda **kw: StackTarget(dict(stack.refs), admin_session))
    result = CliRunner().invoke(cli, ["import", str(path), "--provider", "all", "--local"])
    assert result.exit_code == 0, result.output
    assert "sending" in result.output
    assert "palenca  sent      30 in 3 SendMessageBatch calls" in result.output
    assert "trust    sent      24 in 3 SendMessageBatch calls" in result.output


@pytest.mark.slow
def test_a_hundred_thousand_rows_validate_in_bounded_memory(tmp_path):
    path = write_csv(tmp_path / "big.csv", 100_000)
    tracemalloc.start()
    try:
        checked = validate_file(path, "csv", ["palenca"], report=pytest.fail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checked.rows == 100_000
    # the file is ~8 MB and is never held; what grows is one set of external_ids per provider
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
