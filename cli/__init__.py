"""The ``provisioner`` command: local stack, Docker-free invoke, links and operations tooling.

For development and operations only; never deployed.
"""
