"""Shared code of the provisioning hub: adapters, operations, provider clients and the link store."""
