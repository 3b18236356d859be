"""The key agent that runs beside the application: Vault → key file, kept current.

Standalone (interval polling, SIGHUP to refresh now) outside Kubernetes, or driven by
its ``CaptchaKeyBinding`` through kopf in a pod. What this package exports imports
neither kopf nor aiohttp (the health server is :mod:`agent.sidecar.health`): the
injected agent writes its first key before it loads them.
"""

from agent.sidecar.loop import KeyAgent
from agent.sidecar.refresher import KeyRefresher, KeyTarget

__all__ = ["KeyAgent", "KeyRefresher", "KeyTarget"]
