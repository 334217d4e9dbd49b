"""ValidicInformProvisionUserFunction: POST /validic-inform/users and ValidicInformProvisionUserQueue."""

from provisioning.providers.validic_inform.client import CREATE_USER
from provisioning.runtime import CreateUserFunction

handler = CreateUserFunction(CREATE_USER)
