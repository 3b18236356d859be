"""Task types: each one knows the ``in.php`` parameters that describe it.

Why a task renders its own parameters: everything else about solving (the key, the
submit and poll protocol, waiting, errors) is the same for every CAPTCHA type, so a new
type (an image CAPTCHA, hCaptcha, Turnstile ...) is one small frozen dataclass here and
nothing more. The client adds ``key`` and ``json`` itself; tasks never see the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["RecaptchaV2", "Task"]


class Task(Protocol):
    """Anything that can describe itself to ``in.php``."""

    def submit_params(self) -> dict[str, str]:
        """The form fields for ``in.php``, without ``key`` and ``json``."""
        ...


@dataclass(frozen=True)
class RecaptchaV2:
    """A reCAPTCHA v2 checkbox or invisible challenge on ``pageurl``."""

    sitekey: str
    pageurl: str

    def submit_params(self) -> dict[str, str]:
        return {"method": "userrecaptcha", "googlekey": self.sitekey, "pageurl": self.pageurl}
