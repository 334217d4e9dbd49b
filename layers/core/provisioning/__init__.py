"""Shared code of the provisioning hub: adapters, operations, provider clients and the link store."""

from provisioning import lazy_packages

# Powertools' event handler, OpenAPI, data classes and parameters packages run their __init__ (every
# resolver, every event's data class, every parameter provider) only when a name of their own is
# asked for: the REST resolver, the Secrets Manager provider load alone (see lazy_packages).
lazy_packages.install()
