"""A rate limit shared by every container and function that calls one provider.

Palenca allows 120 requests per minute for the whole account. Each request first takes a slot
in a fixed one-minute window counted in DynamoDB (one conditional ``UpdateItem``: atomic across
containers). When the window is full the request is not sent: ``RateLimited`` says how long until
the next window, so a queued record is handed back to SQS to come back then, instead of sleeping
past the function's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from provisioning.errors import RateLimited


class SharedRateLimiter:
    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        provider: str,
        requests_per_minute: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        self._dynamodb = dynamodb
        self._table = table_name
        self.provider = provider
        self.limit = requests_per_minute
        self._clock = clock

    def acquire(self) -> None:
        """Take one slot in the current minute or raise RateLimited (nothing is sent then)."""
        now = self._clock()
        window = int(now // 60)
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"id": {"S": f"ratelimit#{self.provider}#{window}"}},
                UpdateExpression="ADD #used :one SET #expiration = if_not_exists(#expiration, :expires)",
                ConditionExpression="attribute_not_exists(#used) OR #used < :limit",
                ExpressionAttributeNames={"#used": "used", "#expiration": "expiration"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(self.limit)},
                    ":expires": {"N": str((window + 2) * 60)},
                },
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            wait = (window + 1) * 60 - now
            raise RateLimited(
                f"{self.provider} request budget of {self.limit}/min is used up",
                provider=self.provider,
                retry_after=wait,
            ) from None

    def used(self, now: float | None = None) -> int:
        window = int((self._clock() if now is None else now) // 60)
        item = self._dynamodb.get_item(
            TableName=self._table,
            Key={"id": {"S": f"ratelimit#{self.provider}#{window}"}},
            ConsistentRead=True,
        ).get("Item")
        return int(item["used"]["N"]) if item else 0
