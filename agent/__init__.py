"""captcha-key-agent: CaptchaAI API keys delivered from Vault to Kubernetes workloads.

Applications import :mod:`agent.reader` (it needs only ``watchdog``). Everything else
(the Vault client, the in-pod key agent, the operator, the CLI) needs the ``agent``
or ``operator`` extras and is not imported here, so ``import agent.reader`` stays light.
"""

__version__ = "0.1.0"
