"""
The fault soak of issue 18: mosquitto with persistence, two gateway instances,
a paho backend and a few hundred charge points, with faults injected from a
seeded schedule; an exact ledger is checked after a quiet settle period.

``python -m tests.soak --seconds N [--seed S]`` (``make soak``) runs it;
tests/integration/test_soak.py runs a short one.  The modules:

- :mod:`tests.soak.ledger`: the recorded events and the invariants, pure
  functions over them (tests/unit/test_soak_ledger.py);
- :mod:`tests.soak.faults`: the fault schedule, a pure function of the seed;
- :mod:`tests.soak.run`: the processes, the backend, the charge points and the
  injector.

No module here is named ``test_*``: neither the unit nor the integration run
collects the long soak.
"""
