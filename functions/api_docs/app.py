"""ApiDocsFunction: GET /docs, the OpenAPI document and Swagger UI (only where EnableApiDocs).

It serves the generated document shipped beside it (openapi.json, a copy of docs/openapi.json)."""

from pathlib import Path

from provisioning.apidocs import ApiDocsFunction
from provisioning.snapstart import register

handler = ApiDocsFunction(document=Path(__file__).with_name("openapi.json"))
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
