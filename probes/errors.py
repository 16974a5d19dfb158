"""The one exception tree of censorscope.

Network failures are *data*: a probe records them as failure strings (see
``censorscope.probes.failures``) and never raises them. Exceptions are only for
work that could not run at all::

    CensorscopeError
     ├── ProbeError             a probe could not run
     │    ├── InvalidTarget     the target cannot be parsed or is not allowed
     │    ├── MissingPrivilege  raw sockets / root needed and absent
     │    └── UnknownProbe      no probe registered under that name
     ├── ConfigError            a campaign file, list or option is wrong (CLI exit 2)
     ├── StoreError             results cannot be written or read
     └── LabError               the lab cannot be built or driven
          └── NotRoot           the lab needs root (CLI exit 2)

The CLI maps ``ConfigError``/``InvalidTarget``/``UnknownProbe``/``NotRoot`` to
exit code 2 (usage) and every other ``CensorscopeError`` to exit code 1.
"""

from __future__ import annotations


class CensorscopeError(Exception):
    """Base of every exception censorscope raises on purpose."""

    exit_code = 1


class ProbeError(CensorscopeError):
    """A probe could not run (as opposed to: the network failed)."""


class InvalidTarget(ProbeError):
    """The target is malformed, or names something a probe refuses to measure."""

    exit_code = 2


class MissingPrivilege(ProbeError):
    """The operation needs a privilege (raw sockets, root) the process lacks."""


class UnknownProbe(ProbeError):
    """No probe is registered under the requested name."""

    exit_code = 2


class ConfigError(CensorscopeError):
    """A campaign file, target list or command-line option is invalid."""

    exit_code = 2


class StoreError(CensorscopeError):
    """Results could not be written or read back."""


class LabError(CensorscopeError):
    """The simulated censored network could not be built or driven."""


class NotRoot(LabError):
    """The lab needs root privileges (network namespaces, nftables)."""

    exit_code = 2
