"""OutcomeEventsFunction: the users table's stream -> PersonProvisioned / ProvisioningFailed events."""

from provisioning.outcomes import OutcomeEventsFunction
from provisioning.snapstart import register

handler = OutcomeEventsFunction()
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
