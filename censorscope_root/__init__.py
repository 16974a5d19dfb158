"""censorscope: network censorship measurement toolkit.

Subpackages (each a top-level folder of the repository):

- ``censorscope.probes``   probes: one module per technique, returning observations
- ``censorscope.probes.wire``  sans-IO protocol codecs
- ``censorscope.measure``  targets, campaigns, runner, store, control helper, schedule, CLI
- ``censorscope.analysis`` load, verdicts, aggregation, reports
- ``censorscope.lab``      simulated censored network used for ground-truth tests
- ``censorscope.data``     shipped data files
"""

__version__ = "0.1.0"
