"""PalencaListUsersFunction: POST /palenca/users/search and the scheduled Palenca sync."""

from provisioning.listing import PalencaListUsersFunction

handler = PalencaListUsersFunction()
