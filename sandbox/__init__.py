"""Provider sandbox: HTTP servers on loopback that speak each provider's documented API.

For local development and tests only; never deployed.
"""
