"""OutcomeEventsFunction: the users table's stream -> PersonProvisioned / ProvisioningFailed events."""

from provisioning.outcomes import OutcomeEventsFunction

handler = OutcomeEventsFunction()
