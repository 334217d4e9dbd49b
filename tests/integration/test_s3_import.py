"""The S3 import (ImportFunction on ImportBucket): an object put under imports/ is validated, then
sent to the provider queues, streaming from S3 under the function's own role; its summary is written
beside it; nothing is sent while a row is invalid; a file replaced between the passes is refused; the
import stops in time before the deadline and says how far it got; no row's values are logged."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections import Counter
from typing import Any

import boto3
import pytest

from provisioner_cli.local import REGION, StackState
from provisioning import s3_import
from provisioning.imports import BatchClient
from provisioning.s3_import import SUMMARY_SUFFIX, Clock, ImportIncomplete, Options, S3Object, import_object
from tests.conftest import ROOT
from tests.integration.conftest import drain_bodies
from tests.logs import texts
from tests.people import COLUMNS

FUNCTION = "ImportFunction"
PUT_EVENT = json.loads((ROOT / "events" / "import_file" / "put.json").read_text())
QUEUES = {
    "palenca": "PalencaCreateUserQueue",
    "trust": "TrustCreateUserQueue",
    "palm": "PalmCreateUserQueue",
    "validic": "ValidicProvisionUserQueue",
    "validic_inform": "ValidicInformProvisionUserQueue",
}


def people_csv(rows: int, bad_line: int | None = None, providers: str = "palenca|palm") -> bytes:
    """People to import (to Palenca and Palm); the row at ``bad_line`` has a phone that is not E.164."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for n in range(1, rows + 1):
        phone = "555-0199" if n + 1 == bad_line else f"+52155{n:08d}"
        writer.writerow(
            [f"s3-{n}", f"person{n}@example.test", "Ana", f"Perez{n}", phone, "1990-04-01", "MX", providers]
        )
    return out.getvalue().encode()


def people_jsonl(rows: int) -> bytes:
    return b"".join(
        json.dumps(
            {
                "external_id": f"s3j-{n}",
                "email": f"jperson{n}@example.test",
                "first_name": "Luz",
                "last_name": f"Rios{n}",
                "phone": f"+52166{n:08d}",
                "date_of_birth": "1988-02-03",
                "country": "MX",
            }
        ).encode()
        + b"\n"
        for n in range(1, rows + 1)
    )


@pytest.fixture
def bucket(stack: StackState) -> str:
    return stack.refs["ImportBucket"]


def put(aws: Any, bucket: str, key: str, body: bytes, **metadata: str) -> S3Object:
    answer = aws("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
    return S3Object(bucket, key, answer["ETag"].strip('"'), answer.get("VersionId"))


def put_event(obj: S3Object, size: int) -> dict[str, Any]:
    """events/import_file/put.json, for this object (its key URL-encoded, as S3 sends it)."""
    from urllib.parse import quote_plus

    event = copy.deepcopy(PUT_EVENT)
    record = event["Records"][0]["s3"]
    record["bucket"]["name"] = obj.bucket
    record["bucket"]["arn"] = f"arn:aws:s3:::{obj.bucket}"
    record["object"].update(
        key=quote_plus(obj.key, safe="/"), eTag=obj.etag, size=size, versionId=obj.version_id
    )
    return event


def summary_of(aws: Any, obj: S3Object) -> dict[str, Any]:
    body = aws("s3").get_object(Bucket=obj.bucket, Key=obj.key + SUMMARY_SUFFIX)["Body"].read()
    return json.loads(body)  # type: ignore[no-any-return]


def drain(aws: Any, stack: StackState, provider: str) -> list[dict[str, Any]]:
    return drain_bodies(aws("sqs"), stack.refs[QUEUES[provider]])


def external_ids(bodies: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(b.get("external_id") or b.get("uid")) for b in bodies)


def role_clients(stack: StackState) -> tuple[Any, Any]:
    """S3 and SQS clients with ImportFunction's own role (as the function has them)."""
    credentials = stack.credentials[FUNCTION]
    session = boto3.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        region_name=REGION,
    )
    return session.client("s3"), BatchClient(session, 8)


def queue_urls(stack: StackState) -> dict[str, str]:
    return {name: stack.refs[queue] for name, queue in QUEUES.items()}


def test_a_valid_csv_put_queues_every_row_once_and_writes_its_summary(invoke, stack, aws, bucket):
    body = people_csv(120)
    obj = put(aws, bucket, "imports/people 2026-11.csv", body)  # a space: URL-encoded in the event

    result = invoke(put_event(obj, len(body)))

    assert result["imports"][0]["status"] == "done", summary_of(aws, obj)
    for provider in ("palenca", "palm"):
        ids = external_ids(drain(aws, stack, provider))
        assert set(ids) == {f"s3-{n}" for n in range(1, 121)}, provider
        assert set(ids.values()) == {1}, f"{provider}: a row was queued twice"
    assert drain(aws, stack, "trust") == []
    summary = summary_of(aws, obj)
    assert summary["status"] == "done"
    assert (summary["rows"], summary["valid"], summary["invalid"]) == (120, 120, 0)
    assert summary["per_provider"]["palenca"] == {
        "planned": 120,
        "sent": 120,
        "failed": 0,
        "unconfirmed": 0,
        "calls": 12,
    }
    assert summary["per_provider"]["trust"]["planned"] == 0
    assert summary["etag"] == obj.etag
    assert summary["version_id"] == obj.version_id
    assert summary["sent_through_line"] == 121
    assert summary["duration_seconds"] >= 0


def test_an_invalid_row_sends_nothing_and_the_summary_names_its_line_and_field_without_values(
    invoke, stack, aws, bucket, every_record, capsys
):
    body = people_csv(30, bad_line=17)
    obj = put(aws, bucket, "imports/with-a-bad-row.csv", body)
    every_record.records.clear()  # the harness's own calls: not the function's

    every_record.around(invoke)(put_event(obj, len(body)))

    assert all(drain(aws, stack, provider) == [] for provider in QUEUES)
    summary = summary_of(aws, obj)
    assert summary["status"] == "rejected"
    assert summary["invalid"] == 1
    assert [(row["line"], row["field"]) for row in summary["invalid_rows"]] == [(17, "phone")]
    assert summary["per_provider"]["palenca"]["sent"] == 0
    text = json.dumps(summary)
    output = capsys.readouterr()
    logged = [t for record in every_record.records for t in texts(record)]
    assert logged, "the import logs what it did"
    for value in ("555-0199", "s3-16", "person16@example.test", "Perez16", "+5215500000001"):
        assert value not in text
        assert value not in output.out + output.err
        for line in logged:
            assert value not in line, line[:200]


def test_json_lines_of_people_reach_every_provider_they_target(invoke, stack, aws, bucket):
    body = people_jsonl(25)  # no providers: every provider
    obj = put(aws, bucket, "imports/people.jsonl", body)

    invoke(put_event(obj, len(body)))

    for provider in QUEUES:
        ids = external_ids(drain(aws, stack, provider))
        assert ids == Counter({f"s3j-{n}": 1 for n in range(1, 26)}), provider
    summary = summary_of(aws, obj)
    assert (summary["status"], summary["format"], summary["rows"]) == ("done", "jsonl", 25)
    assert {name: c["sent"] for name, c in summary["per_provider"].items()} == dict.fromkeys(QUEUES, 25)


def test_provider_and_skip_invalid_come_from_the_objects_metadata(invoke, stack, aws, bucket):
    body = people_csv(20, bad_line=5, providers="")
    obj = put(aws, bucket, "imports/palm-only.csv", body, provider="palm", **{"skip-invalid": "true"})

    invoke(put_event(obj, len(body)))

    assert len(drain(aws, stack, "palm")) == 19
    assert drain(aws, stack, "palenca") == []
    summary = summary_of(aws, obj)
    assert (summary["status"], summary["providers"], summary["skip_invalid"]) == ("done", ["palm"], True)
    assert summary["invalid_rows"][0]["line"] == 5


def test_metadata_that_makes_no_sense_is_refused_naming_its_key(invoke, stack, aws, bucket):
    body = people_csv(3)
    obj = put(aws, bucket, "imports/odd.csv", body, provider="nobody")

    invoke(put_event(obj, len(body)))

    summary = summary_of(aws, obj)
    assert summary["status"] == "rejected"
    assert summary["reason"].startswith("metadata provider:")
    assert drain(aws, stack, "palenca") == []


def test_an_object_replaced_since_its_event_is_not_imported(invoke, stack, aws, bucket):
    old = put(aws, bucket, "imports/replaced.csv", people_csv(5))
    put(aws, bucket, "imports/replaced.csv", people_csv(6))  # its own event imports it

    invoke(put_event(old, 10))

    assert drain(aws, stack, "palenca") == []
    summary = summary_of(aws, old)
    assert summary["status"] == "changed"
    assert summary["etag"] == old.etag


def test_a_file_changed_between_the_passes_is_refused(stack, aws, bucket):
    """Pass 2 reads the object at the ETag pass 1 validated: the replacement is not sent."""
    obj = put(aws, bucket, "imports/changing.csv", people_csv(10))
    s3, sqs = role_clients(stack)
    reads = []

    class ReplacedAfterValidation:
        def get_object(self, **kw: Any) -> Any:
            reads.append(kw)
            if len(reads) == 2:  # pass 1 is done: the file changes now
                put(aws, bucket, obj.key, people_csv(10, bad_line=3))
            return s3.get_object(**kw)

    summary = import_object(ReplacedAfterValidation(), sqs, obj, queue_urls(stack))

    assert summary.status == "changed"
    assert summary.sent == 0
    assert [r["IfMatch"] for r in reads] == [f'"{obj.etag}"'] * 2
    assert drain(aws, stack, "palenca") == []


class Countdown:
    """A deadline that comes after ``looks`` looks at the clock."""

    def __init__(self, looks: int) -> None:
        self.looks = looks

    def __call__(self) -> float:
        self.looks -= 1
        return 600.0 if self.looks >= 0 else 1.0


def test_the_deadline_while_sending_leaves_a_summary_of_how_far_it_got_and_a_rerun_continues(
    stack, aws, bucket, monkeypatch
):
    monkeypatch.setattr(s3_import, "DEADLINE_CHECK_EVERY", 10)
    obj = put(aws, bucket, "imports/long.csv", people_csv(100, providers="palenca"))
    s3, sqs = role_clients(stack)
    # Validation looks at the clock 10 times (100 rows, every 10); sending 3 times, then stops.
    summary = import_object(s3, sqs, obj, queue_urls(stack), clock=Clock(Countdown(10 + 3), margin=30))

    assert summary.status == "incomplete"
    through = summary.sent_through_line
    assert through == 40  # the rows before the 4th look: lines 2..40
    assert f"through line {through}" in summary.reason
    first = external_ids(drain(aws, stack, "palenca"))
    assert first == Counter({f"s3-{n}": 1 for n in range(1, through)})

    rerun = import_object(
        s3, sqs, obj, queue_urls(stack), options=Options(["palenca"], start_after_line=through)
    )

    assert rerun.status == "done"
    second = external_ids(drain(aws, stack, "palenca"))
    assert not set(first) & set(second)
    assert set(first) | set(second) == {f"s3-{n}" for n in range(1, 101)}


def test_an_import_that_stops_early_writes_its_summary_then_fails_the_invocation(
    invoke, stack, aws, bucket, monkeypatch
):
    """Lambda then sends the event to ImportDLQ (OnFailure) and the Errors alarm fires."""
    monkeypatch.setenv("IMPORT_DEADLINE_MARGIN_SECONDS", "900")  # the deadline is already here
    body = people_csv(300, providers="palenca")
    obj = put(aws, bucket, "imports/too-long.csv", body)

    with pytest.raises(ImportIncomplete, match=r"imports/too-long\.csv: incomplete"):
        invoke(put_event(obj, len(body)))

    summary = summary_of(aws, obj)
    assert summary["status"] == "incomplete"
    assert summary["validated_through_line"] == 256
    assert "nothing was sent" in summary["reason"]
    assert drain(aws, stack, "palenca") == []


def test_summaries_never_trigger_an_import(template, invoke, aws, bucket):
    """The bucket's notifications match imports/*.csv and imports/*.jsonl only: a summary
    (<key>.summary.json) matches neither; were one delivered, it is not imported."""
    events = template.function(FUNCTION).events.values()
    filters = []
    for event in events:
        assert event["Type"] == "S3"
        assert event["Properties"]["Bucket"] == {"Ref": "ImportBucket"}
        rules = {r["Name"]: r["Value"] for r in event["Properties"]["Filter"]["S3Key"]["Rules"]}
        filters.append((rules["prefix"], rules["suffix"]))
    assert sorted(filters) == [("imports/", ".csv"), ("imports/", ".jsonl")]
    summary_key = "imports/people.csv" + SUMMARY_SUFFIX
    assert not any(summary_key.startswith(p) and summary_key.endswith(s) for p, s in filters)

    obj = put(aws, bucket, summary_key, b"{}")
    assert invoke(put_event(obj, 2)) == {"imports": []}
    assert aws("s3").list_objects_v2(Bucket=bucket, Prefix=summary_key)["KeyCount"] == 1


@pytest.fixture
def cli_stack(stack, admin_session, monkeypatch):
    """``provisioner import``'s target: the test stack, as the harness (an administrator)."""
    from provisioner_cli import s3import
    from provisioner_cli.stack import StackTarget

    target = StackTarget(dict(stack.refs), admin_session, local_state=stack)
    monkeypatch.setattr(s3import, "resolve_target", lambda **kw: target)
    return target


def test_the_cli_imports_an_s3_object_with_the_callers_credentials(cli_stack, stack, aws, bucket):
    from click.testing import CliRunner

    from provisioner_cli.main import cli

    put(aws, bucket, "imports/from-cli.csv", people_csv(35, providers="palenca"))

    result = CliRunner().invoke(cli, ["import", f"s3://{bucket}/imports/from-cli.csv", "--provider", "all"])

    assert result.exit_code == 0, result.output
    assert "35 rows read, 35 valid, 0 invalid" in result.output
    assert "palenca  sent      35 in 4 SendMessageBatch calls" in result.output
    assert external_ids(drain(aws, stack, "palenca")) == Counter({f"s3-{n}": 1 for n in range(1, 36)})


def test_the_cli_reports_an_s3_objects_invalid_rows_by_line_and_field_and_sends_nothing(
    cli_stack, stack, aws, bucket
):
    from click.testing import CliRunner

    from provisioner_cli.main import cli

    put(aws, bucket, "imports/bad.csv", people_csv(10, bad_line=4))

    result = CliRunner().invoke(cli, ["import", f"s3://{bucket}/imports/bad.csv", "--provider", "all"])

    assert result.exit_code == 1
    assert "line 4: phone:" in result.output
    assert "555-0199" not in result.output
    assert "nothing sent" in result.output
    assert drain(aws, stack, "palenca") == []


def test_in_cloud_puts_the_file_in_the_import_bucket_and_prints_its_summary(
    cli_stack, stack, aws, bucket, invoke, monkeypatch, tmp_path
):
    """On the local stack (no S3 notifications) the CLI runs ImportFunction with S3's put event."""
    from click.testing import CliRunner

    from provisioner_cli import s3import
    from provisioner_cli.main import cli

    monkeypatch.setattr(s3import, "_invoke_locally", lambda target, event: invoke(event))
    path = tmp_path / "people.csv"
    path.write_bytes(people_csv(12, providers=""))

    result = CliRunner().invoke(cli, ["import", str(path), "--provider", "palm", "--in-cloud"])

    assert result.exit_code == 0, result.output
    assert "palm     sent      12 in 2 SendMessageBatch calls" in result.output
    (key,) = [
        o["Key"]
        for o in aws("s3").list_objects_v2(Bucket=bucket, Prefix="imports/")["Contents"]
        if o["Key"].endswith("-people.csv")
    ]
    assert aws("s3").head_object(Bucket=bucket, Key=key)["Metadata"]["provider"] == "palm"
    assert len(drain(aws, stack, "palm")) == 12
