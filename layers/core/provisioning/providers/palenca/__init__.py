"""Palenca: create user (``client.py``), list users and the scheduled sync (``provisioning.listing``)."""

from provisioning.registry import Budget, CreateFunction, ProviderInfo

INFO = ProviderInfo(
    name="palenca",
    title="Palenca",
    default_base_url="https://api.palenca.com",
    create=CreateFunction(
        function="PalencaCreateUserFunction",
        queue="PalencaCreateUserQueue",
        dead_letter_queue="PalencaCreateUserDLQ",
        route="/palenca/users",
        folder="palenca_create_user",
        spec="provisioning.providers.palenca.client:CREATE_USER",
    ),
    # Palenca's account-wide limit, in fixed one-minute windows.
    budget=Budget(requests=120, window_seconds=60, setting="PALENCA_REQUESTS_PER_MINUTE"),
    not_personal=frozenset({"widget_id"}),
    published_details=frozenset({"widget_id"}),  # the widget a client opens next
    secret_keys=("api_key", "widget_id"),
)
