"""The ``CaptchaKeyBinding`` resource: its spec model, the schema its CRD is generated
from, and the platform policy that bounds where a binding may send a pod's token.

The operator validates bindings with it and the key agent acts on them with it, so
both apply the same rules.
"""
