"""PalmCreateUserFunction: POST /palm/users and PalmCreateUserQueue."""

from provisioning.providers.palm.client import CREATE_USER
from provisioning.runtime import CreateUserFunction

handler = CreateUserFunction(CREATE_USER)
