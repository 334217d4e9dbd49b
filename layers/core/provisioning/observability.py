"""The one Powertools logger and metrics object every module of the layer uses.

A single logger (not child loggers) keeps keys such as the SQS message id consistent across
modules and threads. Every log line passes through ``redact_log_line``: log lines are never meant
to hold personal data or credentials, and this masks any that would slip in.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics

from provisioning.privacy import redact_log_line


def _safe_json(record: Any) -> str:
    return redact_log_line(json.dumps(record, default=str, separators=(",", ":")))


logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "provisioner"), json_serializer=_safe_json)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Provisioner"))
