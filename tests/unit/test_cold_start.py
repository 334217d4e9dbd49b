"""What a cold start loads: each function imports only what its trigger's path needs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from provisioning.providers import PROVIDERS
from tests.conftest import ROOT

CREATE_FUNCTIONS = [p.create.folder for p in PROVIDERS]
# Heavy modules only some paths use: the REST event handler (API Gateway events), Powertools'
# event data classes, and the X-Ray SDK (Lambda's active tracing needs no SDK).
ONLY_WHEN_NEEDED = (
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.data_classes",
    "aws_xray_sdk",
)


def _modules_after_import(function_folder: str) -> list[str]:
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'layers' / 'core')!r}, {str(ROOT / 'functions' / function_folder)!r}]\n"
        "import app\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("function_folder", CREATE_FUNCTIONS)
def test_importing_a_create_function_loads_no_heavy_module_a_queued_record_does_not_need(function_folder):
    loaded = _modules_after_import(function_folder)

    assert "provisioning.runtime" in loaded  # the handler really was imported
    assert [m for m in loaded if m.startswith(ONLY_WHEN_NEEDED)] == []


def test_importing_the_outcome_events_function_loads_no_heavy_module_nor_a_provider_client():
    loaded = _modules_after_import("outcome_events")

    assert "provisioning.outcomes" in loaded
    assert [m for m in loaded if m.startswith(ONLY_WHEN_NEEDED)] == []
    assert [m for m in loaded if m.startswith("provisioning.providers.") and m.endswith(".client")] == []
