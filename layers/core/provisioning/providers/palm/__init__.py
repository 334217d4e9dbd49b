"""Palm: create user, and the search that finds a person a lost answer created (``client.py``)."""

from provisioning.registry import CreateFunction, ProviderInfo

INFO = ProviderInfo(
    name="palm",
    title="Palm",
    default_base_url="https://api.getpalm.com",
    create=CreateFunction(
        function="PalmCreateUserFunction",
        queue="PalmCreateUserQueue",
        dead_letter_queue="PalmCreateUserDLQ",
        route="/palm/users",
        folder="palm_create_user",
        spec="provisioning.providers.palm.client:CREATE_USER",
    ),
    secret_keys=("api_key",),
)
