"""Builds the sandbox with every provider emulator."""

from __future__ import annotations

from provisioner_sandbox.palenca import PalencaEmulator
from provisioner_sandbox.palm import PalmEmulator
from provisioner_sandbox.server import Sandbox
from provisioner_sandbox.trust import TrustEmulator
from provisioner_sandbox.validic import ValidicEmulator
from provisioner_sandbox.validic_inform import ValidicInformEmulator


def build_sandbox(host: str = "127.0.0.1", port: int = 0) -> Sandbox:
    return Sandbox(
        [PalencaEmulator(), TrustEmulator(), PalmEmulator(), ValidicEmulator(), ValidicInformEmulator()],
        host=host,
        port=port,
    )
