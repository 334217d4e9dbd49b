"""``sam build`` (no Docker) produces a layer and functions holding everything the handlers import."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner_cli.template import Template
from tests.conftest import ROOT

SAM_BIN = ROOT / ".venv-sam" / "bin"
# Provided by the Lambda Python runtime itself.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "dateutil", "awslambdaric", "snapshot_restore_py"}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type checkers only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sam-build")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{SAM_BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(SAM_BIN / "sam"), "build", "--template", str(ROOT / "template.yaml"), "--build-dir", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_build_contains_everything_the_handlers_import(build_dir):
    template = Template(ROOT / "template.yaml")
    layer = build_dir / "CoreLayer" / "python"
    assert (layer / "provisioning" / "runtime.py").exists()
    shipped = {p.name.removesuffix(".py") for p in layer.iterdir()}

    sources = list((layer / "provisioning").rglob("*.py"))
    for logical_id in template.functions():
        built = build_dir / logical_id
        assert (built / "app.py").exists(), f"{logical_id} has no handler in the build"
        sources.append(built / "app.py")
    missing: dict[str, set[str]] = {}
    for source in sources:
        for name in _top_level_imports(source):
            if name in sys.stdlib_module_names or name in RUNTIME_PROVIDED or name in shipped:
                continue
            missing.setdefault(name, set()).add(source.name)
    assert not missing, f"imported but not in the build: {missing}"
    for dependency in ("aws_lambda_powertools", "pydantic", "pydantic_core", "requests", "urllib3"):
        assert dependency in shipped


@pytest.mark.slow
def test_build_layer_is_built_for_arm64(build_dir):
    cores = list((build_dir / "CoreLayer" / "python" / "pydantic_core").glob("_pydantic_core*.so"))
    assert cores
    assert all("aarch64" in so.name for so in cores)


@pytest.mark.slow
def test_build_keeps_dev_tools_out_of_the_layer(build_dir):
    shipped = {p.name for p in (build_dir / "CoreLayer" / "python").iterdir()}
    for dev_only in (
        "moto",
        "pytest",
        "provisioner_cli",
        "provisioner_sandbox",
        "boto3",
        "snapshot_restore_py",
    ):
        assert dev_only not in shipped
