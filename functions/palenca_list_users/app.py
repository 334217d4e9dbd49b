"""PalencaListUsersFunction: POST /palenca/users/search and the scheduled Palenca sync."""

from provisioning.listing import PalencaListUsersFunction
from provisioning.snapstart import register

handler = PalencaListUsersFunction()
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
