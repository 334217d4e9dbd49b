"""Where the day-two commands lived before ``status`` and ``dlq`` got a module each: the names other
code imported from here (``queue_depth`` in bench/ and the reliability tests), kept so those imports
still work. New code imports from :mod:`provisioner_cli.queues`, :mod:`provisioner_cli.status` and
:mod:`provisioner_cli.dlq`.
"""

from __future__ import annotations

from provisioner_cli.dlq import dlq, mask, max_receive_count, peek, redrive
from provisioner_cli.queues import QueueDepth, queue_depth
from provisioner_cli.status import stack_status, status

__all__ = [
    "QueueDepth",
    "dlq",
    "mask",
    "max_receive_count",
    "peek",
    "queue_depth",
    "redrive",
    "stack_status",
    "status",
]
