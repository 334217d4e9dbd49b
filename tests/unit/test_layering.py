"""Dependencies point down: a provider module is built on the HTTP layer, the models and the
errors, never on the Lambda assembly (boto3 clients, Powertools idempotency)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROVIDERS_DIR = ROOT / "layers" / "core" / "provisioning" / "providers"
PROVIDER_MODULES = sorted(
    "provisioning.providers."
    + ".".join(path.relative_to(PROVIDERS_DIR).with_suffix("").parts).removesuffix(".__init__")
    for path in PROVIDERS_DIR.glob("*/*.py")
)
ASSEMBLY = ("provisioning.runtime", "boto3", "aws_lambda_powertools.utilities.idempotency")


def _loaded_by(module: str) -> set[str]:
    """The modules importing ``module`` loads, in a fresh interpreter."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    layer = str(ROOT / "layers" / "core")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": layer}
    )
    return set(json.loads(result.stdout))


def test_every_provider_module_is_found():
    assert len(PROVIDER_MODULES) >= 8  # each provider's registration and client


@pytest.mark.parametrize("module", [*PROVIDER_MODULES, "provisioning.spec"])
def test_a_provider_module_does_not_load_the_lambda_assembly(module):
    loaded = _loaded_by(module)
    assert module in loaded
    assert not [name for name in ASSEMBLY if name in loaded]


def test_the_import_core_loads_no_command_line():
    loaded = _loaded_by("provisioning.imports")
    assert "provisioning.imports" in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("click", "provisioner_cli")]
