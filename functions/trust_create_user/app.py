"""TrustCreateUserFunction: POST /trust/users and TrustCreateUserQueue."""

from provisioning.providers.trust.client import CREATE_USER
from provisioning.runtime import CreateUserFunction

handler = CreateUserFunction(CREATE_USER)
