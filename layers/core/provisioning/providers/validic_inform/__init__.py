"""Validic Inform (API v2): provision user, its marketplace and mobile tokens sealed with KMS
(``client.py``); the organization token travels in the query string, so no URL is ever logged."""

from provisioning.registry import Budget, CreateFunction, ProviderInfo

INFO = ProviderInfo(
    name="validic_inform",
    title="Validic Inform",
    default_base_url="https://api.v2.validic.com",
    create=CreateFunction(
        function="ValidicInformProvisionUserFunction",
        queue="ValidicInformProvisionUserQueue",
        dead_letter_queue="ValidicInformProvisionUserDLQ",
        route="/validic-inform/users",
        folder="validic_inform_provision_user",
        spec="provisioning.providers.validic_inform.client:CREATE_USER",
    ),
    # 2,000 requests per organization token per hour, counted on our side (no rate-limit headers).
    budget=Budget(requests=2000, window_seconds=3600, setting="VALIDIC_INFORM_REQUESTS_PER_HOUR"),
    credentials=frozenset({"marketplace_token", "marketplace_url", "mobile_token", "token"}),
    not_personal=frozenset({"timezone", "country_code"}),
    published_credentials=frozenset({"marketplace_url"}),  # the page a person opens next
    secret_keys=("organization_id", "token"),
)
