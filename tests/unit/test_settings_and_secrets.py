"""Configuration comes only from the environment; secrets are validated without echoing them."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from provisioning.errors import ConfigurationError
from provisioning.providers import PROVIDERS
from provisioning.providers.palenca.client import PalencaSecret
from provisioning.secrets import SecretSource
from provisioning.settings import Settings


def test_settings_read_the_interface_variables_with_documented_defaults():
    settings = Settings.from_env(
        {"USERS_TABLE": "users", "IDEMPOTENCY_TABLE": "idem", "PALENCA_SECRET_ID": "s"}
    )

    assert settings.users_table == "users"
    assert settings.base_url("palenca") == "https://api.palenca.com"
    assert settings.base_url("trust") == "https://atenea.trust.lat"
    assert settings.base_url("palm") == "https://api.getpalm.com"
    assert settings.base_url("validic") == "https://api.validic.com"
    assert settings.secret_id("palenca") == "s"
    assert settings.budget("palenca") == (120, 60)
    assert settings.idempotency_ttl_seconds == 3600
    assert settings.workers == 8  # 512 MB


@pytest.mark.parametrize("info", PROVIDERS, ids=lambda info: info.name)
def test_every_registered_provider_is_configured_by_its_own_variables(info):
    env = {
        "USERS_TABLE": "u",
        "IDEMPOTENCY_TABLE": "i",
        info.secret_id_variable: f"{info.name}-secret",
        info.base_url_variable: "http://127.0.0.1:9/x/",
    }
    if info.budget:
        env[info.budget.setting] = "7"
    settings = Settings.from_env(env)

    assert settings.secret_id(info.name) == f"{info.name}-secret"
    assert settings.base_url(info.name) == "http://127.0.0.1:9/x"
    assert settings.budget(info.name) == ((7, info.budget.window_seconds) if info.budget else None)
    defaults = Settings.from_env({"USERS_TABLE": "u", "IDEMPOTENCY_TABLE": "i"})
    assert defaults.base_url(info.name) == info.default_base_url
    with pytest.raises(ConfigurationError, match=info.secret_id_variable):
        defaults.secret_id(info.name)
    if info.budget:
        with pytest.raises(ConfigurationError, match=info.budget.setting):
            Settings.from_env({**env, info.budget.setting: "0"})


def test_idempotency_ttl_and_record_concurrency_come_from_settings():
    settings = Settings.from_env(
        {
            "USERS_TABLE": "u",
            "IDEMPOTENCY_TABLE": "i",
            "IDEMPOTENCY_TTL_SECONDS": "60",
            "RECORD_CONCURRENCY": "3",
        }
    )
    assert (settings.idempotency_ttl_seconds, settings.workers) == (60, 3)
    small = Settings.from_env(
        {"USERS_TABLE": "u", "IDEMPOTENCY_TABLE": "i", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}
    )
    assert small.workers == 2
    with pytest.raises(ConfigurationError, match="RECORD_CONCURRENCY"):
        Settings.from_env({"USERS_TABLE": "u", "IDEMPOTENCY_TABLE": "i", "RECORD_CONCURRENCY": "0"})


def test_missing_or_bad_variables_are_named():
    with pytest.raises(ConfigurationError, match="USERS_TABLE"):
        Settings.from_env({"IDEMPOTENCY_TABLE": "idem"})
    with pytest.raises(ConfigurationError, match="PALENCA_BASE_URL"):
        Settings.from_env({"USERS_TABLE": "u", "IDEMPOTENCY_TABLE": "i", "PALENCA_BASE_URL": "ftp://x"})
    with pytest.raises(ConfigurationError, match="TRUST_SECRET_ID"):
        Settings.from_env({"USERS_TABLE": "u", "IDEMPOTENCY_TABLE": "i"}).secret_id("trust")


def test_malformed_secret_is_a_configuration_error_that_does_not_echo_it():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="p", SecretString=json.dumps({"api_key": "TOPSECRET", "widget_id": "nope"}))
        client.create_secret(Name="q", SecretString="not json TOPSECRET")
        source = SecretSource(max_age=0)

        with pytest.raises(ConfigurationError) as raised:
            source.get("p", PalencaSecret)
        assert "widget_id" in raised.value.message
        assert "TOPSECRET" not in raised.value.message
        assert "nope" not in raised.value.message
        with pytest.raises(ConfigurationError) as raised:
            source.get("q", PalencaSecret)
        assert "TOPSECRET" not in raised.value.message
        with pytest.raises(ConfigurationError):
            source.get("missing", PalencaSecret)


def test_secret_is_fetched_once_per_cache_period():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(
            Name="p",
            SecretString=json.dumps({"api_key": "k", "widget_id": "feecb679-a3cc-47ef-8fd4-600799f12a39"}),
        )
        from aws_lambda_powertools.utilities import parameters

        provider = parameters.SecretsProvider()
        original_get = provider._get
        fetched = []
        provider._get = lambda name, **kw: fetched.append(name) or original_get(name, **kw)
        source = SecretSource(max_age=300, provider=provider)
        for _ in range(5):
            source.get("p", PalencaSecret)
        assert fetched == ["p"]


def test_a_missing_secret_names_the_secret_and_the_reason():
    with mock_aws():
        with pytest.raises(ConfigurationError) as raised:
            SecretSource(max_age=0).get("provisioner/palenca", PalencaSecret)
    assert raised.value.message == (
        "secret provisioner/palenca could not be read: it does not exist "
        "(create it, or fix the function's secret id) (ResourceNotFoundException)"
    )
    assert "NoneType" not in raised.value.message


def _counting_source(max_age: int = 300) -> tuple[SecretSource, list[str], list[float]]:
    from aws_lambda_powertools.utilities import parameters

    provider = parameters.SecretsProvider()
    original_get = provider._get
    fetched: list[str] = []
    provider._get = lambda name, **kw: fetched.append(name) or original_get(name, **kw)
    now = [1000.0]
    return SecretSource(max_age=max_age, provider=provider, clock=lambda: now[0]), fetched, now


def test_a_refresh_bypasses_the_cache_once_for_a_burst_of_refusals():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        widget = "feecb679-a3cc-47ef-8fd4-600799f12a39"
        client.create_secret(Name="p", SecretString=json.dumps({"api_key": "old", "widget_id": widget}))
        source, fetched, now = _counting_source()
        assert source.get("p", PalencaSecret).api_key.get_secret_value() == "old"
        client.put_secret_value(
            SecretId="p", SecretString=json.dumps({"api_key": "new", "widget_id": widget})
        )
        now[0] += 1

        assert source.get("p", PalencaSecret).api_key.get_secret_value() == "old"  # cached
        assert source.get("p", PalencaSecret, refresh=True).api_key.get_secret_value() == "new"
        for _ in range(5):  # the other records of the batch, refused with the old key
            assert source.get("p", PalencaSecret, refresh=True).api_key.get_secret_value() == "new"

    assert fetched == ["p", "p"]
