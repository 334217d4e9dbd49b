"""ImportFunction: imports a file put under imports/ in ImportBucket (see docs/imports.md)."""

from provisioning.s3_import import ImportFunction
from provisioning.snapstart import register

handler = ImportFunction()
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
