"""The lab censor: a user-space NFQUEUE program plus iptables/tc rules in the censor namespace.

Entry points: ``python -m censorscope.lab.censor --config FILE.json`` (the daemon,
``daemon.py``) and ``censorscope.lab.censor.config.load_config`` (validation).
Behaviours live one per module in ``behaviours/`` and are listed in
``registry.py``. Reference: docs/censor.md.
"""
