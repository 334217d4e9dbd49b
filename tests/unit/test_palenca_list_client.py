"""Palenca's list answer as documented (palenca-list-users.md), read by the client."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import SecretStr

from provisioning.errors import ProviderRejected
from provisioning.http import ProviderHttp, new_session
from provisioning.providers.palenca.client import PalencaClient, PalencaSecret
from tests.support import Recorded, recorded_server

LISTED = {
    "success": True,
    "error": None,
    "data": {
        "users": [
            {
                "user_id": "9334389a-c93c-4183-9894-ea8eb72f82e8",
                "external_id": "e69bdbc2-495c-4356-be5f-13c55644a80b",
                "widget_id": "feecb679-a3cc-47ef-8fd4-600799f12a39",
            },
            {
                "user_id": "91d2e527-f24f-4910-94b6-e575de7e98e4",
                "external_id": "e9445f5e-746e-4331-a2d7-fa6e678b37e6",
                "widget_id": "feecb679-a3cc-47ef-8fd4-600799f12a39",
            },
        ]
    },
    "pagination": {"page": 1, "items_per_page": 50, "total_items": 200, "total_pages": 4},
}
SECRET = PalencaSecret(api_key=SecretStr("k"), widget_id="feecb679-a3cc-47ef-8fd4-600799f12a39")


def _client(url):
    return PalencaClient(ProviderHttp("palenca", url, new_session()), lambda refresh=False: SECRET)


def test_search_sends_palencas_inverted_window_and_reads_users_and_pagination():
    with recorded_server([Recorded(200, LISTED)]) as (url, seen):
        page = _client(url).search_users(date(2022, 12, 31), date(2022, 1, 1), page=1, items_per_page=50)

    assert seen[0].path == "/v1/users/search"
    assert seen[0].body == {
        "start_date": "2022-12-31",
        "end_date": "2022-01-01",
        "options": {"items_per_page": 50, "page": 1},
    }
    assert page.users[0].user_id == "9334389a-c93c-4183-9894-ea8eb72f82e8"
    assert page.pagination.total_pages == 4


def test_search_error_with_the_mistake_field():
    body = {
        "success": False,
        "mistake": {"error_code": "bad_request", "message": "Invalid dates"},
        "data": None,
    }
    with recorded_server([Recorded(422, body)]) as (url, _), pytest.raises(ProviderRejected) as raised:
        _client(url).search_users(date(2022, 12, 31), date(2022, 1, 1))
    assert "Invalid dates" not in raised.value.message  # free text stays behind; the code travels
    assert raised.value.provider_code == "bad_request"
