"""The copy-paste curl of docs/webhooks.md signs requests the way the webhook verifies them: its
signing lines, run with bash and openssl, make signatures the ``standardwebhooks`` library accepts
(so the documentation cannot drift from the verification)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from provisioner_cli.local import new_webhook_secret
from tests.conftest import ROOT

DOC = ROOT / "docs" / "webhooks.md"
OUTPUT = 'printf "%s\\n" "$ID" "$TS" "$SIG" "$BODY"'


def _curl_snippet() -> str:
    """The documented bash block that signs and sends a request."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (snippet,) = [block for block in blocks if "openssl dgst" in block and "curl " in block]
    return str(snippet)


def _run_signing_lines(secret: str) -> tuple[str, dict[str, str]]:
    """The snippet up to its curl, with SECRET set: the body and the headers it would send."""
    signing = _curl_snippet().split("\ncurl ", 1)[0]
    assert re.search(r'^SECRET="whsec_[^"]*"$', signing, flags=re.MULTILINE), "the snippet sets SECRET"
    script = re.sub(r'^SECRET=".*"$', f'SECRET="{secret}"', signing, flags=re.MULTILINE)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"{script}\n{OUTPUT}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    webhook_id, timestamp, signature, body = done.stdout.split("\n", 3)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }
    return body.removesuffix("\n"), headers


@pytest.mark.parametrize(
    "secret",
    [
        new_webhook_secret(),  # 32 bytes: base64 with padding, as the local stack makes them
        "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),  # 24 bytes: Svix's and Clerk's
        "whsec_" + base64.b64encode(b"\xfb\xff\xbf" * 8).decode(),  # "+" and "/" in the key
    ],
    ids=["32-bytes", "24-bytes", "plus-slash"],
)
def test_the_documented_curl_signs_what_the_library_verifies(secret):
    body, headers = _run_signing_lines(secret)

    Webhook(secret).verify(body, headers)  # raises when it does not match
    assert json.loads(body)["type"] == "user.created"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)


def test_the_documented_curl_sends_the_signed_headers_and_the_body_as_signed():
    curl = "curl " + _curl_snippet().split("\ncurl ", 1)[1]
    for header in ("webhook-id: ${ID}", "webhook-timestamp: ${TS}", "webhook-signature: v1,${SIG}"):
        assert header in curl
    assert '--data-binary "$BODY"' in curl, "the body must be sent byte for byte as it was signed"
