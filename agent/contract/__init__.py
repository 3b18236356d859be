"""The contracts between processes, each defined once and used by both sides.

The operator writes what the key agent reads (the pod's annotations, the agent's
arguments) and reads what the agent serves (``/status``); the rotate CLI reads the
binding status the operator writes. Both sides import the one definition here, so a
name cannot drift between them. Standard library only, and the key file's format
from the application side's own package (``captchakeys.keyfile``), which the reader
and the agent's writer share.
"""
