"""Governance: what a run may do and how it recovers.

``policy`` (which models a task may use, checked before every use; ``policy_types`` and
``policy_engine`` hold the policy itself and the check), ``remediation`` (what to do when
something fails), ``validators`` (the deterministic gate an output passes; the pytest
``sandbox`` in its own module) and ``config`` (all three from a project file's sections
and ``--policy FILE``, read by the one loader, :mod:`orchestrator.config`).
"""
