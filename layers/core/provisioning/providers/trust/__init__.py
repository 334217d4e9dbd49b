"""Trust (Atenea): create user, with the OAuth client-credentials token (``client.py``)."""

from provisioning.registry import CreateFunction, ProviderInfo

INFO = ProviderInfo(
    name="trust",
    title="Trust",
    default_base_url="https://atenea.trust.lat",
    create=CreateFunction(
        function="TrustCreateUserFunction",
        queue="TrustCreateUserQueue",
        dead_letter_queue="TrustCreateUserDLQ",
        route="/trust/users",
        folder="trust_create_user",
        spec="provisioning.providers.trust.client:CREATE_USER",
    ),
    not_personal=frozenset({"company_uid", "role", "load_uuid", "invitation"}),
    published_details=frozenset({"company_uid"}),
    secret_keys=("client_id", "client_secret"),
)
