"""SignupWebhookFunction: POST /signups/webhook, signed signup webhooks (Standard Webhooks, Svix, Clerk)."""

from provisioning.snapstart import register
from provisioning.webhooks import SignupWebhookFunction

handler = SignupWebhookFunction()
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
