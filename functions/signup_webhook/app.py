"""SignupWebhookFunction: POST /signups/webhook, signed signup webhooks (Standard Webhooks, Svix, Clerk)."""

from provisioning.webhooks import SignupWebhookFunction

handler = SignupWebhookFunction()
