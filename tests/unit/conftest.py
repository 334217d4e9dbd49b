"""Fixtures of the unit tests: the users table alone in moto, created as template.yaml declares it
(keys and index), for tests of the DynamoDB link store that need no stack, roles or sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from provisioner_cli.local import REGION
from provisioner_cli.template import Template
from provisioning.store import LinkStore

USERS_TABLE = "UsersTable"


@pytest.fixture
def users_table(template: Template) -> Iterator[tuple[Any, str]]:
    """(DynamoDB client, table name) of the users table in moto, keys and GSI as template.yaml has them."""
    props = template.of_type("AWS::DynamoDB::Table")[USERS_TABLE]["Properties"]
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName=USERS_TABLE,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client, USERS_TABLE


@pytest.fixture
def dynamodb_store(users_table: tuple[Any, str]) -> LinkStore:
    return LinkStore(*users_table)
