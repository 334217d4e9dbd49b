"""SignupTriggerFunction: a Cognito user pool's PostConfirmation trigger, and SignupFallbackQueue."""

from provisioning.signups import SignupTriggerFunction

handler = SignupTriggerFunction()
