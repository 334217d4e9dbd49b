"""ValidicProvisionUserFunction: POST /validic/users and ValidicProvisionUserQueue."""

from provisioning.providers.validic.client import CREATE_USER
from provisioning.runtime import CreateUserFunction
from provisioning.snapstart import register

handler = CreateUserFunction(CREATE_USER)
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
