"""PeopleFunction: GET /people/{external_id}, one person at every provider."""

from provisioning.people_api import PeopleFunction

handler = PeopleFunction()
