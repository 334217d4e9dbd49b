"""PalencaCreateUserFunction: POST /palenca/users and PalencaCreateUserQueue."""

from provisioning.providers.palenca.client import CREATE_USER
from provisioning.runtime import CreateUserFunction

handler = CreateUserFunction(CREATE_USER)
