"""Validic (v1, legacy): provision user, its per-user token sealed with KMS (``client.py``)."""

from provisioning.registry import CreateFunction, ProviderInfo

INFO = ProviderInfo(
    name="validic",
    title="Validic",
    default_base_url="https://api.validic.com",
    create=CreateFunction(
        function="ValidicProvisionUserFunction",
        queue="ValidicProvisionUserQueue",
        dead_letter_queue="ValidicProvisionUserDLQ",
        route="/validic/users",
        folder="validic_provision_user",
        spec="provisioning.providers.validic.client:CREATE_USER",
    ),
    credentials=frozenset({"access_token"}),
    secret_keys=("organization_id", "access_token"),
)
