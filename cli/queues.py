"""The queues the day-two commands read (``provisioner status``, ``provisioner dlq``): logical ids of
the queues that are not a provider's (a provider's queue and DLQ are in its registry entry,
``ProviderInfo.create``), and how deep a queue is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SIGNUP_DLQ = "SignupEventsDLQ"  # signup events EventBridge could not deliver to a provider's queue
SYNC_DLQ = "PalencaSyncDLQ"  # scheduled syncs that failed for good (``provisioner sync`` reruns one)
# Cognito signups that could not be mapped to a person, or that the bus never took
SIGNUP_FALLBACK_DLQ = "SignupFallbackDLQ"

# SQS's attribute for each part of a queue's depth.
DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


@dataclass
class QueueDepth:
    visible: int = 0
    in_flight: int = 0
    delayed: int = 0

    @property
    def total(self) -> int:
        """Every record the queue holds: visible, in flight and waiting (delayed)."""
        return self.visible + self.in_flight + self.delayed


def queue_depth(sqs: Any, url: str) -> QueueDepth:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(DEPTHS.values()))["Attributes"]
    return QueueDepth(**{name: int(attrs.get(attr, 0)) for name, attr in DEPTHS.items()})


__all__ = ["DEPTHS", "SIGNUP_DLQ", "SIGNUP_FALLBACK_DLQ", "SYNC_DLQ", "QueueDepth", "queue_depth"]
