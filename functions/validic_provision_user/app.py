"""ValidicProvisionUserFunction: POST /validic/users and ValidicProvisionUserQueue."""

from provisioning.providers.validic.client import CREATE_USER
from provisioning.runtime import CreateUserFunction

handler = CreateUserFunction(CREATE_USER)
