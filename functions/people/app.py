"""PeopleFunction: GET /people/{external_id}, one person at every provider."""

from provisioning.people_api import PeopleFunction
from provisioning.snapstart import register

handler = PeopleFunction()
register(handler)  # SnapStart: what is primed before the snapshot, reset after a restore
