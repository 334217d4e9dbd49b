"""What a cold start loads: each function imports only what its trigger's path needs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

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
# Our own modules a create function loads only on the path that needs them: the Person model for a
# queued signup event, and the shared-budget limiter for a provider that has a budget (at its first
# request, not at import).
CREATE_PATH_ONLY_WHEN_NEEDED = ("provisioning.person", "provisioning.ratelimit")


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
    assert [m for m in loaded if m in CREATE_PATH_ONLY_WHEN_NEEDED] == []


def test_importing_the_outcome_events_function_loads_no_heavy_module_nor_a_provider_client():
    loaded = _modules_after_import("outcome_events")

    assert "provisioning.outcomes" in loaded
    assert [m for m in loaded if m.startswith(ONLY_WHEN_NEEDED)] == []
    assert [m for m in loaded if m.startswith("provisioning.providers.") and m.endswith(".client")] == []


def test_the_api_docs_function_serves_its_shipped_document_without_building_the_operations():
    """Its first request reads the shipped document: no operation function's module is loaded to
    generate it, nor any AWS or HTTP client library (it makes no call)."""
    paths = [str(ROOT / "layers" / "core"), str(ROOT / "functions" / "api_docs")]
    code = (
        "import json, sys\n"
        f"sys.path[:0] = {paths!r}\n"
        f"event = json.load(open({str(ROOT / 'events' / 'api_docs' / 'api.json')!r}))\n"
        "import app\n"
        "class Context:\n"
        "    function_name, memory_limit_in_mb, aws_request_id = 'docs', 128, 'r'\n"
        "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:docs'\n"
        "answer = app.handler(event, Context())\n"
        "title = json.loads(answer['body'])['info']['title']\n"
        "print(json.dumps([answer['statusCode'], title, sorted(sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    status, title, loaded = json.loads(out.stdout.splitlines()[-1])

    assert (status, title) == (200, "Provisioning hub API")
    operations = ("provisioning.people_api", "provisioning.listing", "provisioning.webhooks")
    assert [m for m in loaded if m in operations] == []
    assert [m for m in loaded if m.split(".")[0] in ("boto3", "requests", "urllib3")] == []
    assert [m for m in loaded if m in OTHER_RESOLVERS] == []


@pytest.mark.parametrize("function_folder", [*CREATE_FUNCTIONS, "outcome_events", "people", "signup_trigger"])
def test_importing_a_function_builds_none_of_the_request_and_answer_models(function_folder):
    """Our models are built on first use (defer_build): an import builds none of them (the settings
    are read by every first invocation)."""
    paths = [str(ROOT / "layers" / "core"), str(ROOT / "functions" / function_folder)]
    code = (
        "import json, sys\n"
        f"sys.path[:0] = {paths!r}\n"
        "import app\n"
        "from provisioning import models\n"
        "from pydantic import BaseModel\n"
        "found, pending = [], [BaseModel]\n"
        "while pending:\n"
        "    for model in pending.pop().__subclasses__():\n"
        "        pending.append(model)\n"
        "        if model.__module__.startswith('provisioning.') and 'settings' not in model.__module__:\n"
        "            found.append([model.__qualname__, model.__pydantic_complete__])\n"
        "print(json.dumps([found, models.external_id_adapter.cache_info().currsize]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    found, adapters = json.loads(out.stdout.splitlines()[-1])

    assert "CreateRequest" in [name for name, _ in found]
    assert [name for name, built in found if built] == []
    assert adapters == 0


# -- Powertools' packages whose __init__ loads far more than the hub uses (provisioning.lazy_packages)
OTHER_RESOLVERS = (
    "asyncio",
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.event_handler.bedrock_agent",
    "aws_lambda_powertools.event_handler.vpc_lattice",
    "aws_lambda_powertools.event_handler.openapi.merge",
    "aws_lambda_powertools.utilities.data_classes.s3_event",
    "aws_lambda_powertools.utilities.data_classes.sqs_event",
    "aws_lambda_powertools.utilities.parameters.ssm",
)


def _run(code: str, *paths: str) -> Any:
    """What ``code`` prints last (JSON), run in a fresh interpreter with ``paths`` first."""
    prelude = f"import json, sys\nsys.path[:0] = {[str(ROOT / p) for p in paths]!r}\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_each_name_a_lazy_package_takes_from_a_submodule_is_the_one_its_init_exports():
    """Checked against the packages imported as usual (no ``provisioning``): a Powertools upgrade
    that moves a class fails here, not in a function."""
    from provisioning.lazy_packages import EXPORTS

    code = (
        "import importlib\n"
        f"exports = {EXPORTS!r}\n"
        "def defined(package, name, sub):\n"
        "    return getattr(importlib.import_module(f'{package}.{sub}'), name)\n"
        "wrong = [f'{p}.{n}' for p, names in exports.items() for n, sub in names.items()\n"
        "         if getattr(importlib.import_module(p), n) is not defined(p, n, sub)]\n"
        "print(json.dumps([wrong, 'provisioning' in sys.modules]))\n"
    )
    wrong, ours_loaded = _run(code)

    assert ours_loaded is False
    assert wrong == []


def test_a_lazy_package_is_whole_once_any_other_name_of_its_init_is_asked_for():
    code = (
        "import provisioning\n"
        "from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver\n"
        "from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider\n"
        f"before = [m for m in {OTHER_RESOLVERS!r} if m in sys.modules]\n"
        "import aws_lambda_powertools.event_handler as handlers\n"
        "from aws_lambda_powertools.event_handler import AppSyncResolver, APIGatewayRestResolver as Rest\n"
        "from aws_lambda_powertools.utilities.data_classes import *\n"
        "from aws_lambda_powertools.utilities import parameters\n"
        "import aws_lambda_powertools.event_handler.openapi as openapi\n"
        "missing = hasattr(handlers, 'NoSuchResolver')\n"
        "print(json.dumps([before, AppSyncResolver.__module__, Rest is APIGatewayRestResolver,\n"
        "    S3Event.__name__, set(handlers.__all__) <= set(dir(handlers)),\n"
        "    parameters.get_parameter.__module__, parameters.SecretsProvider is SecretsProvider,\n"
        "    openapi.OpenAPIMerge.__module__, missing, type(handlers.__spec__.loader).__name__]))\n"
    )
    before, appsync, same, s3_event, complete, ssm, same_provider, merge, missing, loader = _run(
        code, "layers/core"
    )

    assert before == []  # the submodules alone loaded nothing else
    assert appsync == "aws_lambda_powertools.event_handler.appsync"
    assert same is True
    assert same_provider is True
    assert s3_event == "S3Event"
    assert complete is True
    assert ssm == "aws_lambda_powertools.utilities.parameters.ssm"
    assert merge == "aws_lambda_powertools.event_handler.openapi.merge"
    assert missing is False
    assert loader == "SourceFileLoader"  # a normally imported package from then on


@pytest.mark.parametrize("function_folder", CREATE_FUNCTIONS)
def test_a_post_to_a_create_function_loads_no_rest_resolver_and_another_path_only_its_own(function_folder):
    """An invalid body (refused before any AWS call) is answered without the REST event handler;
    a request to another path is answered by the function's resolver, no other."""
    code = (
        f"event = json.load(open({str(ROOT / 'events' / function_folder / 'api.json')!r}))\n"
        "event['body'] = '{}'\n"
        "import app\n"
        "class Context:\n"
        "    function_name, memory_limit_in_mb, aws_request_id = 'create', 128, 'r'\n"
        "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:create'\n"
        "    def get_remaining_time_in_millis(self): return 30000\n"
        "answer = app.handler(event, Context())\n"
        "before = sorted(sys.modules)\n"
        "event['path'] = '/elsewhere'\n"
        "other = app.handler(event, Context())\n"
        "print(json.dumps([answer['statusCode'], before, other['statusCode'], sorted(sys.modules)]))\n"
    )
    status, loaded, other_status, loaded_after = _run(code, "layers/core", f"functions/{function_folder}")

    assert status == 422
    assert [m for m in loaded if m.startswith(ONLY_WHEN_NEEDED) or m == "provisioning.rest"] == []
    assert other_status == 404
    assert "aws_lambda_powertools.event_handler.middlewares.openapi_validation" in loaded_after
    assert [m for m in loaded_after if m in OTHER_RESOLVERS] == []


@pytest.mark.parametrize("function_folder", ["outcome_events", "people", "signup_trigger", "signup_webhook"])
def test_a_function_that_creates_no_user_loads_neither_the_create_assembly_nor_secrets_at_import(
    function_folder,
):
    loaded = _modules_after_import(function_folder)

    assert "provisioning.handler" in loaded or function_folder == "signup_trigger"
    create_assembly = ("provisioning.runtime", "provisioning.provision", "provisioning.secrets")
    assert [m for m in loaded if m in create_assembly] == []
    assert [m for m in loaded if m.startswith("aws_lambda_powertools.utilities.parameters")] == []


def test_the_s3_import_loads_neither_the_create_assembly_nor_every_event_data_class():
    """ImportFunction queues rows: it never loads what a create function provisions with, and it
    reads its S3 event with the S3 data class alone (the package's __init__ loads every event's)."""
    code = (
        f"event = json.load(open({str(ROOT / 'events' / 'import_file' / 'put.json')!r}))\n"
        "import app\n"
        "at_import = sorted(sys.modules)\n"
        "from provisioning.s3_import import objects_of\n"
        "keys = [obj.key for obj in objects_of(event)]\n"
        "print(json.dumps([at_import, keys, sorted(sys.modules)]))\n"
    )
    at_import, keys, loaded = _run(code, "layers/core", "functions/import_file")

    assert "provisioning.s3_import" in at_import
    create_assembly = ("provisioning.runtime", "provisioning.dependencies", "provisioning.provision")
    assert [m for m in at_import if m in create_assembly or m.startswith(ONLY_WHEN_NEEDED)] == []
    assert keys == ["imports/people 2026-11.csv"]  # URL-decoded
    data_classes = "aws_lambda_powertools.utilities.data_classes."
    assert data_classes + "s3_event" in loaded
    assert [m for m in loaded if m.startswith((data_classes + "sqs", data_classes + "bedrock"))] == []


def test_reading_a_functions_settings_builds_that_settings_model_alone():
    code = (
        "from provisioning import settings\n"
        "env = {'PALENCA_IMPORT_QUEUE_URL': 'https://sqs.us-east-1.amazonaws.com/123456789012/q'}\n"
        "read = settings.ImportSettings.from_env(env)\n"
        "models = [settings.ImportSettings, settings.Settings, settings.ProviderSettings,\n"
        "          settings.SignupSettings]\n"
        "print(json.dumps([sorted(read.queue_urls), [m.__pydantic_complete__ for m in models]]))\n"
    )
    queues, built = _run(code, "layers/core")

    assert queues == ["palenca"]
    assert built == [True, False, False, False]


def test_snapstart_priming_builds_the_settings_model_the_s3_import_reads():
    """ImportFunction imports its settings at its first invocation: a snapshot has them built."""
    code = (
        "import app\n"
        "from provisioning import snapstart\n"
        "snapstart._build(app.handler)\n"
        "from provisioning.settings import ImportSettings\n"
        "print(json.dumps(ImportSettings.__pydantic_complete__))\n"
    )
    assert _run(code, "layers/core", "functions/import_file") is True
