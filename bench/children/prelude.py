"""What both timed children (cold_start.py and floor.py) import before their clocks start, so that
each timed part starts from the same interpreter.

The floor needs ``pickle``, ``re``, ``secrets``, ``threading`` and ``typing`` to read its inputs
before its clock starts; the function's child needs ``uuid``; both need ``json``. A module one child
loaded before its clock and the other inside it would count against the second only (these came to
about 2.7% of a floor's executed instructions). ``importlib.util`` is here too: Lambda's runtime has
it loaded before it imports a handler.
"""

import importlib.util
import json
import pickle
import re
import secrets
import sys
import threading
import time
import typing
import uuid

__all__ = ["importlib", "json", "pickle", "re", "secrets", "sys", "threading", "time", "typing", "uuid"]
