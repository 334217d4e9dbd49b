"""TrustCreateUserFunction: POST /trust/users and TrustCreateUserQueue."""

from provisioning.providers.trust.client import CREATE_USER
from provisioning.runtime import CreateUserFunction
from provisioning.snapstart import register

handler = CreateUserFunction(CREATE_USER)
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
