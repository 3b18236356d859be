"""captcha-key-agent: CaptchaAI API keys delivered from Vault to Kubernetes workloads.

This package is the key agent, the operator and the CLI; it runs in their containers.
Applications import :mod:`captchakeys` (the ``captchakeys-reader`` distribution in
``readers/python``, which needs only ``watchdog``) and never this package. Everything
here needs the ``agent`` or ``operator`` extras and is not imported here.
"""

__version__ = "0.1.0"
