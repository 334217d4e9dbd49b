"""SignupTriggerFunction: a Cognito user pool's PostConfirmation trigger, and SignupFallbackQueue."""

from provisioning.signups import SignupTriggerFunction
from provisioning.snapstart import register

handler = SignupTriggerFunction()
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
