"""Governance: what a run may do and how it recovers.

``policy`` (which models a task may use, checked before every use), ``remediation``
(what to do when something fails), ``validators`` (the deterministic gate an output
passes; the pytest ``sandbox`` in its own module) and ``config`` (all three from a
project file's sections and ``--policy FILE``).
"""
