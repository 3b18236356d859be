"""The key agent that runs beside the application: Vault → key file, kept current.

Standalone (interval polling, SIGHUP to refresh now) outside Kubernetes, or driven by
its ``CaptchaKeyBinding`` through kopf in a pod.
"""

from agent.sidecar.agent import KeyAgent
from agent.sidecar.health import serve_health
from agent.sidecar.refresher import KeyRefresher, KeyTarget

__all__ = ["KeyAgent", "KeyRefresher", "KeyTarget", "serve_health"]
