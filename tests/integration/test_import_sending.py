"""``provisioner import``'s sending: several SendMessageBatch calls in flight, entries SQS refuses
resent, and nothing ever sent twice by the command (against moto, a loopback SQS endpoint that
refuses entries, and clients that fail mid-call)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from bench.sqs_endpoint import instant_sqs
from provisioner_cli.bulk import BatchSender, Planned, sqs_client
from provisioning.imports import BULK, BatchClient
from provisioning.waiting import PRIORITY
from tests.integration.conftest import drain_bodies


def planned(count: int, provider: str = "palenca") -> list[Planned]:
    return [Planned(provider, f"s-{n}", json.dumps({"external_id": f"s-{n}"})) for n in range(count)]


def send(sender: BatchSender, items: list[Planned]) -> None:
    for item in items:
        sender.add(item)
    sender.flush()


def test_refused_entries_are_resent_until_accepted_and_none_is_queued_twice():
    # every third body is refused the first time it is offered, as SQS does under load
    def refuse(body: str, offered: int) -> bool:
        return offered == 0 and int(json.loads(body)["external_id"][2:]) % 3 == 0

    items = planned(1000)
    with instant_sqs(refuse) as server:
        client = sqs_client(boto3.client, 8, endpoint_url=server.url, region_name="us-east-1")
        sender = BatchSender(client, {"palenca": f"{server.url}/q"}, sleep=lambda s: None, concurrency=8)
        send(sender, items)

    bodies = {item.body for item in items}
    assert set(server.accepted) == bodies
    assert set(server.accepted.values()) == {1}  # each accepted exactly once
    refused = sum(1 for n in range(1000) if n % 3 == 0)
    assert sum(server.offered.values()) == 1000 + refused  # only the refused ones were offered again
    assert sender.report.sent["palenca"] == 1000
    assert not sender.report.failed
    assert sender.report.calls["palenca"] == server.calls


def test_calls_in_flight_never_exceed_the_concurrency():
    class Slow:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.now = self.most = 0

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.02)
            with self.lock:
                self.now -= 1
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    client = Slow()
    sender = BatchSender(client, {"palenca": "url"}, concurrency=4)
    send(sender, planned(400))
    assert client.most == 4
    assert sender.report.sent["palenca"] == 400


def test_a_call_whose_answer_was_lost_is_not_resent_and_fails_the_import():
    class LostAnswer:
        calls = 0

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.calls += 1
            raise ReadTimeoutError(endpoint_url=QueueUrl)

    client = LostAnswer()
    sender = BatchSender(client, {"palenca": "url"}, sleep=lambda s: None)
    send(sender, planned(10))
    assert client.calls == 1  # the entries may be queued: never offered again
    assert sender.report.unconfirmed["palenca"] == 10
    assert sender.report.failed["palenca"] == 10
    assert sender.report.sent["palenca"] == 0


def test_a_call_that_never_reached_sqs_is_resent():
    class Unreachable:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.batches.append([e["MessageBody"] for e in Entries])
            if len(self.batches) == 1:
                raise EndpointConnectionError(endpoint_url=QueueUrl)
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    client = Unreachable()
    sender = BatchSender(client, {"palenca": "url"}, sleep=lambda s: None)
    send(sender, planned(10))
    assert len(client.batches) == 2
    assert client.batches[0] == client.batches[1]
    assert sender.report.sent["palenca"] == 10
    assert not sender.report.failed


def test_concurrent_sending_queues_each_request_once_on_moto(stack, aws):
    sqs = aws("sqs")
    url = stack.refs["PalencaCreateUserQueue"]
    items = planned(250)
    sender = BatchSender(sqs, {"palenca": url}, concurrency=8)
    send(sender, items)
    assert sender.report.calls["palenca"] == 25
    ids = [body["external_id"] for body in drain_bodies(sqs, url)]
    assert sorted(ids) == sorted(item.external_id for item in items)


def test_a_call_refused_before_sending_is_neither_resent_nor_unconfirmed():
    class NoCredentials:
        calls = 0

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.calls += 1
            raise NoCredentialsError()

    client = NoCredentials()
    sender = BatchSender(client, {"palenca": "url"}, sleep=lambda s: None)
    send(sender, planned(10))
    assert client.calls == 1
    assert sender.report.failed["palenca"] == 10
    assert not sender.report.unconfirmed
    assert sender.report.reasons == {"NoCredentialsError": 10}


def test_cli_concurrency_option_sends_every_row_once(tmp_path, stack, aws, monkeypatch, admin_session):
    from click.testing import CliRunner

    from provisioner_cli import bulk
    from provisioner_cli.main import cli
    from provisioner_cli.stack import StackTarget
    from tests.integration.test_import import write_csv

    path = write_csv(tmp_path / "people.csv", 45)
    monkeypatch.setattr(bulk, "resolve_target", lambda **kw: StackTarget(dict(stack.refs), admin_session))
    result = CliRunner().invoke(
        cli, ["import", str(path), "--provider", "palenca", "--local", "--concurrency", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "palenca  sent      45 in 5 SendMessageBatch calls" in result.output
    url = stack.refs["PalencaCreateUserQueue"]
    ids = sorted(body["external_id"] for body in drain_bodies(aws("sqs"), url))
    assert ids == sorted(f"imp-{n}" for n in range(1, 46))
    refused = CliRunner().invoke(cli, ["import", str(path), "--provider", "palenca", "--concurrency", "0"])
    assert refused.exit_code == 2
    assert "--concurrency" in refused.output


def bench_session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")


def test_the_signed_client_resends_refused_entries_and_never_acknowledged_ones():
    # every fourth body is refused twice, then accepted
    def refuse(body: str, offered: int) -> bool:
        return offered < 2 and int(json.loads(body)["external_id"][2:]) % 4 == 0

    items = planned(500)
    with instant_sqs(refuse) as server:
        client = BatchClient(bench_session(), 8, endpoint_url=server.url)
        sender = BatchSender(client, {"palenca": f"{server.url}/q"}, sleep=lambda s: None, concurrency=8)
        send(sender, items)

    assert set(server.accepted) == {item.body for item in items}
    assert set(server.accepted.values()) == {1}
    refused = sum(1 for n in range(500) if n % 4 == 0)
    assert sum(server.offered.values()) == 500 + 2 * refused
    assert sender.report.sent["palenca"] == 500
    assert sender.report.calls["palenca"] == server.calls
    assert not sender.report.failed


def test_the_signed_client_reports_entries_refused_every_time_without_sending_them_more():
    items = planned(30)
    with instant_sqs(lambda body, offered: body == items[7].body) as server:
        client = BatchClient(bench_session(), 2, endpoint_url=server.url)
        sender = BatchSender(client, {"palenca": f"{server.url}/q"}, attempts=3, sleep=lambda s: None)
        send(sender, items)
    assert server.offered[items[7].body] == 3
    assert items[7].body not in server.accepted
    assert sender.report.sent["palenca"] == 29
    assert sender.report.failed["palenca"] == 1
    assert sender.report.reasons == {"InternalError": 1}


def test_the_signed_client_queues_on_moto_with_the_bulk_priority(stack, aws, admin_session):
    url = stack.refs["PalencaCreateUserQueue"]
    client = BatchClient(admin_session, 4)
    answer = client.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(n), "MessageBody": json.dumps({"external_id": f"m-{n}"}), "MessageAttributes": BULK}
            for n in range(10)
        ],
    )
    assert sorted(entry["Id"] for entry in answer["Successful"]) == sorted(str(n) for n in range(10))
    assert answer["Failed"] == []
    sqs, received = aws("sqs"), []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        received.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    assert sorted(json.loads(m["Body"])["external_id"] for m in received) == sorted(
        f"m-{n}" for n in range(10)
    )
    assert {m["MessageAttributes"][PRIORITY]["StringValue"] for m in received} == {"bulk"}


@pytest.mark.parametrize("case", ["missing queue", "wrong secret"])
def test_the_signed_client_fails_as_boto3_does_on_moto(stack, admin_session, case):
    url = stack.refs["PalencaCreateUserQueue"]
    session = admin_session
    if case == "missing queue":
        url = url.rsplit("/", 1)[0] + "/no-such-queue"
    else:
        frozen = admin_session.get_credentials().get_frozen_credentials()
        session = boto3.Session(
            aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key + "x",
            region_name=admin_session.region_name,
        )
    entries = [{"Id": "0", "MessageBody": "{}"}]
    with pytest.raises(ClientError) as ours:
        BatchClient(session, 1).send_message_batch(QueueUrl=url, Entries=entries)
    with pytest.raises(ClientError) as boto3s:
        session.client("sqs").send_message_batch(QueueUrl=url, Entries=entries)
    assert ours.value.response["Error"]["Code"] == boto3s.value.response["Error"]["Code"]
    assert (
        ours.value.response["ResponseMetadata"]["HTTPStatusCode"]
        == (boto3s.value.response["ResponseMetadata"]["HTTPStatusCode"])
    )


def test_the_signed_client_never_resends_a_call_whose_connection_closed_before_the_answer():
    # an endpoint that reads each whole request, then hangs up without answering: the entries may
    # have been queued, so they are reported as unconfirmed and never offered again
    requests: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:]
                )
                while len(body) < length:
                    body += conn.recv(65536)
                requests.append(body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        client = BatchClient(bench_session(), 2, endpoint_url=url)
        sender = BatchSender(client, {"palenca": f"{url}/q"}, sleep=lambda s: None, concurrency=2)
        send(sender, planned(20))
    finally:
        listener.close()
    assert len(requests) == 2  # one call per batch of ten, none repeated
    assert sorted(entry["Id"] for body in requests for entry in json.loads(body)["Entries"]) == sorted(
        [str(n) for n in range(10)] * 2
    )
    assert sender.report.unconfirmed["palenca"] == 20
    assert sender.report.failed["palenca"] == 20
    assert sender.report.sent["palenca"] == 0


def test_the_signed_client_goes_through_the_proxy_boto3_would_use(monkeypatch):
    from botocore.exceptions import ProxyConnectionError

    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: a proxy that refuses connections
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    entries = [{"Id": "0", "MessageBody": "{}"}]
    url = "http://sqs.example.invalid"
    ours = BatchClient(bench_session(), 1, endpoint_url=url)
    with pytest.raises(ProxyConnectionError):
        ours.send_message_batch(QueueUrl=f"{url}/q", Entries=entries)
    with pytest.raises(ProxyConnectionError):
        sqs_client(bench_session().client, 1, endpoint_url=url).send_message_batch(
            QueueUrl=f"{url}/q", Entries=entries
        )


# -- from worker processes (provisioner import --processes) -----------------------------------------


def test_worker_processes_resend_refused_entries_and_queue_each_request_once():
    from provisioner_cli.import_workers import ProcessSender

    def refuse(body: str, offered: int) -> bool:  # every third body refused the first time
        return offered == 0 and int(json.loads(body)["external_id"][2:]) % 3 == 0

    items = planned(600)
    with instant_sqs(refuse) as server:
        client = BatchClient(bench_session(), 8, endpoint_url=server.url)
        sender = ProcessSender(client, {"palenca": f"{server.url}/q"}, processes=2, concurrency=8)
        send(sender, items)

    assert set(server.accepted) == {item.body for item in items}
    assert set(server.accepted.values()) == {1}
    refused = sum(1 for n in range(600) if n % 3 == 0)
    assert sum(server.offered.values()) == 600 + refused  # only the refused ones were offered again
    assert sender.report.sent["palenca"] == 600
    assert sender.report.calls["palenca"] == server.calls
    assert not sender.report.failed


def test_a_worker_process_that_stops_leaves_its_requests_unconfirmed_and_nothing_is_sent_after():
    import multiprocessing

    from provisioner_cli.import_workers import ProcessSender

    items = planned(400)
    release, hung = threading.Event(), threading.Event()

    def hang(body: str, offered: int) -> bool:  # the first calls hang until the workers are gone
        hung.set()
        release.wait(30)
        return False

    before = set(multiprocessing.active_children())
    with instant_sqs(hang) as server:
        client = BatchClient(bench_session(), 4, endpoint_url=server.url)
        sender = ProcessSender(client, {"palenca": f"{server.url}/q"}, processes=2, concurrency=4)
        sending = threading.Thread(target=send, args=(sender, items))
        sending.start()
        assert hung.wait(30)
        for worker in set(multiprocessing.active_children()) - before:  # as the OOM killer would
            worker.kill()
        sending.join(30)
        release.set()
        assert not sending.is_alive()

    report = sender.report
    assert report.sent["palenca"] + report.failed["palenca"] == 400  # every request accounted for
    assert report.unconfirmed["palenca"] > 0  # those in the stopped workers' hands
    assert report.reasons["a worker process stopped (unconfirmed)"] == report.unconfirmed["palenca"]
    assert (
        report.failed["palenca"] - report.unconfirmed["palenca"]
        == report.reasons["a worker process stopped (not sent)"]
    )
    assert set(server.offered.values()) <= {1}  # nothing offered twice


def test_cli_processes_option_sends_every_row_once_from_worker_processes(tmp_path):
    from click.testing import CliRunner

    from provisioner_cli.main import cli
    from tests.integration.test_import import write_csv

    path = write_csv(tmp_path / "people.csv", 95)
    with instant_sqs() as server:
        target = ["--queue-url", f"{server.url}/q", "--endpoint-url", server.url]
        result = CliRunner().invoke(
            cli,
            ["import", str(path), "--provider", "palenca", *target, "--processes", "2", "--concurrency", "4"],
        )
    assert result.exit_code == 0, result.output
    assert "sending from 2 processes, 4 calls in flight" in result.output
    assert "palenca  sent      95 in 10 SendMessageBatch calls" in result.output
    ids = sorted(json.loads(body)["external_id"] for body in server.accepted)
    assert ids == sorted(f"imp-{n}" for n in range(1, 96))
    assert set(server.accepted.values()) == {1}


def test_the_import_picks_worker_processes_only_for_large_imports(monkeypatch):
    from provisioner_cli import import_workers

    monkeypatch.setattr(import_workers.os, "process_cpu_count", lambda: 8)
    assert import_workers.auto_processes(import_workers.PROCESSES_FROM - 1) == 1
    assert import_workers.auto_processes(import_workers.PROCESSES_FROM) == import_workers.MAX_PROCESSES
    monkeypatch.setattr(import_workers.os, "process_cpu_count", lambda: 2)
    assert import_workers.auto_processes(1_000_000) == 2


def test_workers_get_static_credentials_and_resolve_refreshable_ones_from_the_same_profile(
    tmp_path, monkeypatch
):
    from provisioner_cli.import_workers import ClientSpec

    config = tmp_path / "config"
    config.write_text(  # an assumed role: refreshable credentials (STS is not called until they are used)
        "[profile base]\naws_access_key_id = base\naws_secret_access_key = base\n"
        "[profile ops]\nregion = eu-west-1\nsource_profile = base\n"
        "role_arn = arn:aws:iam::123456789012:role/importer\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)

    static = ClientSpec.of(BatchClient(bench_session(), 2, endpoint_url="http://127.0.0.1:9"), 2)
    assert static.credentials == ("test", "test", None)
    assert static.profile is None
    assert static.client().session.get_credentials().access_key == "test"

    profiled = ClientSpec.of(
        BatchClient(boto3.Session(profile_name="ops"), 2, endpoint_url="http://127.0.0.1:9"), 2
    )
    assert profiled.credentials is None  # never frozen into the worker: it refreshes them itself
    assert profiled.profile == "ops"
    assert profiled.region == "eu-west-1"
