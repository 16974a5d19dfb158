"""censorscope.lab: a simulated censored network on one Linux machine (network namespaces).

``topology`` builds the namespaces, ``servers`` runs real DNS/web daemons in them,
``censor`` is the censoring router, ``scenario`` reads the declarative scenario files
and ``lab.Lab`` ties them together; ``cli`` is ``censorscope lab``. See docs/lab.md.
"""
