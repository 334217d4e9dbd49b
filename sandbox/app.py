"""Builds the sandbox with every provider emulator: one per registered provider
(``provisioning.providers``), listed here."""

from __future__ import annotations

from provisioner_sandbox.palenca import PalencaEmulator
from provisioner_sandbox.palm import PalmEmulator
from provisioner_sandbox.server import ProviderEmulator, Sandbox
from provisioner_sandbox.trust import TrustEmulator
from provisioner_sandbox.validic import ValidicEmulator
from provisioner_sandbox.validic_inform import ValidicInformEmulator

# Adding a provider: its emulator module beside these, and its class here.
EMULATORS: tuple[type[ProviderEmulator], ...] = (
    PalencaEmulator,
    TrustEmulator,
    PalmEmulator,
    ValidicEmulator,
    ValidicInformEmulator,
)


def build_emulators() -> list[ProviderEmulator]:
    """A fresh emulator of every provider, with the sandbox's own credentials."""
    return [emulator() for emulator in EMULATORS]


def build_sandbox(host: str = "127.0.0.1", port: int = 0) -> Sandbox:
    return Sandbox(build_emulators(), host=host, port=port)


def sandbox_credentials() -> dict[str, dict[str, str]]:
    """Each provider's secret as the sandbox accepts it, by provider name."""
    return {emulator.name: emulator.credentials() for emulator in build_emulators()}
