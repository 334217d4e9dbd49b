"""The local stack's DynamoDB stream event source mapping (``drain_stream``), on moto's stream:
Lambda's record shape, checkpoints per shard, batch item failures, bisection of a failing batch
and the OnFailure record once the retries are exhausted."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws

from provisioner_cli.lambda_runtime import drain_stream
from provisioner_cli.local import REGION


@pytest.fixture
def table() -> Any:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        answer = dynamodb.create_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        streams = boto3.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
        )
        yield dynamodb, streams, answer["TableDescription"]["LatestStreamArn"]


def put(dynamodb: Any, *keys: str) -> None:
    for key in keys:
        dynamodb.put_item(TableName="t", Item={"k": {"S": key}, "b": {"B": b"\x00\x01"}})


def keys_of(event: dict[str, Any]) -> list[str]:
    return [record["dynamodb"]["Keys"]["k"]["S"] for record in event["Records"]]


def test_records_have_lambda_s_shape_and_a_second_drain_reads_only_new_ones(table):
    dynamodb, streams, arn = table
    put(dynamodb, "a", "b")
    seen: list[dict[str, Any]] = []
    checkpoints: dict[str, str] = {}

    def handler(event):
        seen.append(event)
        return {"batchItemFailures": []}

    drain_stream(streams, arn, handler, checkpoints=checkpoints)
    put(dynamodb, "c")
    drain_stream(streams, arn, handler, checkpoints=checkpoints)

    assert [keys_of(e) for e in seen] == [["a", "b"], ["c"]]
    record = seen[0]["Records"][0]
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventName"] == "INSERT"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION
    change = record["dynamodb"]
    assert isinstance(change["ApproximateCreationDateTime"], int)
    assert change["NewImage"]["b"] == {"B": "AAE="}, "binary values base64-encoded, as in Lambda's events"
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert {"SequenceNumber", "SizeBytes", "Keys"} <= set(change)


def test_a_reported_failure_resumes_from_the_lowest_failed_record(table):
    dynamodb, streams, arn = table
    put(dynamodb, "a", "b", "c", "d")
    calls: list[list[str]] = []

    def handler(event):
        calls.append(keys_of(event))
        if len(calls) == 1:  # b and d failed: Lambda resumes from b
            failed = [event["Records"][1], event["Records"][3]]
            return {
                "batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in failed]
            }
        return {"batchItemFailures": []}

    report = drain_stream(streams, arn, handler)

    assert calls == [["a", "b", "c", "d"], ["b", "c", "d"]]
    assert report.retries == 1
    assert report.failures == []


def test_a_record_that_always_crashes_is_isolated_by_bisection_and_given_up_with_an_on_failure_record(table):
    dynamodb, streams, arn = table
    put(dynamodb, *"abcdefgh")
    calls: list[list[str]] = []
    sent: list[dict[str, Any]] = []
    checkpoints: dict[str, str] = {}

    def handler(event):
        calls.append(keys_of(event))
        if "c" in keys_of(event):
            raise RuntimeError("poison")
        return {"batchItemFailures": []}

    report = drain_stream(
        streams, arn, handler, maximum_retry_attempts=5, on_failure=sent.append, checkpoints=checkpoints
    )

    # Halved while it fails; the half that passes moves the checkpoint; the rest starts again.
    expected = ["abcdefgh", "abcd", "ab", "cdefgh", "cde", "cd", "c", "c", "c", "defgh"]
    assert calls == [list(keys) for keys in expected]
    [failure] = sent
    assert failure == report.failures[0]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["responseContext"]["functionError"] == "Unhandled"
    info = failure["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1, "bisected down to the poison record"
    assert info["streamArn"] == arn
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert drain_stream(streams, arn, handler, checkpoints=checkpoints).invocations == 0, "past it for good"


def test_a_poller_dying_mid_batch_leaves_the_checkpoint_where_it_was(table):
    dynamodb, streams, arn = table
    put(dynamodb, "a")
    checkpoints: dict[str, str] = {}

    class Died(BaseException):
        pass

    def dies(event):
        raise Died

    with pytest.raises(Died):
        drain_stream(streams, arn, dies, checkpoints=checkpoints)
    again: list[list[str]] = []
    drain_stream(streams, arn, lambda event: again.append(keys_of(event)), checkpoints=checkpoints)

    assert checkpoints
    assert again == [["a"]]


def test_filter_criteria_pass_over_records_no_pattern_matches_and_the_checkpoint_moves_past_them(table):
    dynamodb, streams, arn = table
    put(dynamodb, "a", "keep", "b")
    pattern = '{"dynamodb": {"NewImage": {"k": {"S": ["keep"]}}}}'
    seen: list[list[str]] = []
    checkpoints: dict[str, str] = {}

    def handler(event):
        seen.append(keys_of(event))
        return {"batchItemFailures": []}

    report = drain_stream(streams, arn, handler, checkpoints=checkpoints, filters=[pattern])
    again = drain_stream(streams, arn, handler, checkpoints=checkpoints, filters=[pattern])

    assert seen == [["keep"]]
    assert report.filtered == 2
    assert again.invocations == 0
    assert again.filtered == 0, "the filtered records after the last one invoked are not read again"
