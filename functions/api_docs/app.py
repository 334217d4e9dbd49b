"""ApiDocsFunction: GET /docs, the OpenAPI document and Swagger UI (only where EnableApiDocs)."""

from provisioning.apidocs import ApiDocsFunction

handler = ApiDocsFunction()
