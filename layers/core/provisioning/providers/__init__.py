"""The providers the hub provisions people at: one folder each, listed here.

Adding a provider: create ``providers/<name>/`` (its ``__init__.py`` declares ``INFO``, a
:class:`~provisioning.registry.ProviderInfo`; ``client.py`` holds its client, secret model,
operation, Person mapping and ``CREATE_USER`` spec) and add it to ``PROVIDERS`` below.
"""

from __future__ import annotations

from provisioning.providers import palenca, palm, trust, validic, validic_inform
from provisioning.registry import ProviderInfo

PROVIDERS: tuple[ProviderInfo, ...] = (palenca.INFO, trust.INFO, palm.INFO, validic.INFO, validic_inform.INFO)
NAMES: tuple[str, ...] = tuple(p.name for p in PROVIDERS)
BY_NAME: dict[str, ProviderInfo] = {p.name: p for p in PROVIDERS}
BY_FUNCTION: dict[str, ProviderInfo] = {p.create.function: p for p in PROVIDERS}


def provider(name: str) -> ProviderInfo:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r} (known: {', '.join(NAMES)})") from None


__all__ = ["BY_FUNCTION", "BY_NAME", "NAMES", "PROVIDERS", "ProviderInfo", "provider"]
