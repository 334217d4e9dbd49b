"""What a function's first invocation asks of AWS and of its provider, recorded in the process that
makes it, for the floor (floor.py) to ask the same with plain boto3 and requests.

Records every botocore client created (its service) and every API call (service, operation, the
parameters as given, the error code AWS answered), and every HTTP request sent through requests
(method, URL, headers, body, and the status and body of the answer), each with its thread.
Imported only by a recording run, never by a timed one.
"""

from __future__ import annotations

import copy
import pickle
import sys
import threading
from typing import Any

CLIENTS: list[str] = []
CALLS: list[dict[str, Any]] = []


def install() -> None:
    import botocore.client
    import botocore.exceptions
    import botocore.session
    import requests.adapters

    # Private methods (not in the stubs): every client and every API call go through them.
    session_class: Any = botocore.session.Session
    client_class: Any = botocore.client.BaseClient
    adapter_class: Any = requests.adapters.HTTPAdapter
    create_client, make_api_call, send = (
        session_class.create_client,
        client_class._make_api_call,
        adapter_class.send,
    )

    def created(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        CLIENTS.append(service_name)
        _record_lean_sends(botocore.exceptions.ClientError)
        return create_client(self, service_name, *args, **kwargs)

    def called(self: Any, operation: str, params: Any) -> Any:
        call = {
            "kind": "aws",
            "thread": threading.get_ident(),
            "service": self.meta.service_model.service_name,
            "operation": operation,
            "params": copy.deepcopy(params),
            "error": None,
        }
        CALLS.append(call)
        try:
            return make_api_call(self, operation, params)
        except botocore.exceptions.ClientError as exc:
            call["error"] = exc.response.get("Error", {}).get("Code")
            raise

    def sent(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        call = {
            "kind": "http",
            "thread": threading.get_ident(),
            "method": request.method,
            "url": request.url,
            "headers": dict(request.headers),
            "body": request.body,
            "status": None,
            "answer": b"",
        }
        CALLS.append(call)
        response = send(self, request, *args, **kwargs)
        call["status"] = response.status_code
        # Read now: requests then serves the caller's own reads (content, iter_content) from it.
        call["answer"] = response.content
        return response

    session_class.create_client = created
    client_class._make_api_call = called
    adapter_class.send = sent


def _record_lean_sends(client_error: type[Exception]) -> None:
    """``provisioning.imports.BatchClient`` signs and sends ``SendMessageBatch`` itself, without
    botocore's API call: once it is loaded (it makes its SQS client then), each of its calls is
    recorded as the SendMessageBatch it is, for the floor to make with a plain boto3 client."""
    lean: Any = getattr(sys.modules.get("provisioning.imports"), "BatchClient", None)
    if lean is None or getattr(lean, "_recorded", False):
        return
    original = lean.send_message_batch

    def send(self: Any, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        call = {
            "kind": "aws",
            "thread": threading.get_ident(),
            "service": "sqs",
            "operation": "SendMessageBatch",
            "params": copy.deepcopy({"QueueUrl": QueueUrl, "Entries": Entries}),
            "error": None,
        }
        CALLS.append(call)
        try:
            return original(self, QueueUrl, Entries)
        except client_error as exc:
            call["error"] = getattr(exc, "response", {}).get("Error", {}).get("Code")
            raise

    lean.send_message_batch = send
    lean._recorded = True


def save(path: str) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"clients": CLIENTS, "calls": CALLS}, handle)
