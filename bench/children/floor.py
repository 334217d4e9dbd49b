"""The cold-start floor, in the fresh Python process this program runs in: ``import boto3`` and the
clients a function creates, and no code of ours.

    python floor.py [--libraries] SERVICE...

``--libraries`` adds what every function imports besides boto3 before any code of ours runs. Prints
``BENCH_RESULT`` and a JSON object (seconds, peak memory) on its last line.
"""

import json
import sys
import time


def peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


libraries = "--libraries" in sys.argv[1:]
services = [arg for arg in sys.argv[1:] if arg != "--libraries"]

started = time.perf_counter()
import boto3  # noqa: E402

if libraries:
    import requests  # noqa: F401
    from aws_lambda_powertools import Logger, Metrics  # noqa: F401
    from aws_lambda_powertools.utilities import parameters  # noqa: F401
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: F401
        DynamoDBPersistenceLayer,
        idempotent_function,
    )
    from pydantic import BaseModel

    class Request(BaseModel):  # the first model class loads the rest of pydantic
        external_id: str


for service in services:
    boto3.client(service)  # type: ignore[call-overload]
result = {"floor": time.perf_counter() - started, "rss_kb": peak_kb()}
print("BENCH_RESULT " + json.dumps(result))
