"""Censor behaviours, one module each; the registry is ``censorscope.lab.censor.registry``."""
