"""The API's OpenAPI document: the one ApiDocsFunction serves, merged from every operation's
Powertools routes (see provisioning.apidocs)."""

from __future__ import annotations

from typing import Any

from provisioning.apidocs import openapi_document, render


def build_openapi() -> dict[str, Any]:
    return openapi_document()


__all__ = ["build_openapi", "render"]
