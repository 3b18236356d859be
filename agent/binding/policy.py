"""Where a binding may send its consumers' service-account tokens: the platform's allow-lists.

The webhook checks a binding against this policy at admission, and every injected key
agent checks it again with the same code (the operator passes the policy to the agent
through the environment variables of its ``--allowed-*`` options, named in
:mod:`agent.contract.agentargs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.binding.schema import InvalidBindingError
from agent.contract import agentargs
from agent.contract.agentargs import AgentOption

__all__ = ["VaultPolicy", "normalized_address"]


@dataclass(frozen=True)
class VaultPolicy:
    """Where a binding may send its consumers' service-account tokens, and for whom.

    Every consumer pod's agent logs in to the binding's ``vault.address`` with a token
    whose audience is the binding's ``vault.auth.audience``: whoever may write a binding
    could otherwise collect fresh tokens at a server of their choice, with the API
    server's audience even usable against Kubernetes as the workload. The platform team
    lists what is allowed (chart values); the webhook refuses anything else at admission
    and each agent refuses it again, so a binding edited later, or a cluster without the
    webhook, still cannot redirect a token. ``addresses`` are compared as scheme, host and
    port; an empty ``vault.address`` means the operator's own address, which is trusted.
    """

    addresses: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ("vault",)
    allow_http: bool = False

    def check(self, address: str | None, audience: str) -> None:
        """Raise :class:`InvalidBindingError` saying which value is not allowed, and why."""
        if address is not None:
            self._check_address(address)
        if audience not in self.audiences:
            raise InvalidBindingError(
                f"spec.vault.auth.audience {audience!r} is not allowed: use one of "
                f"{', '.join(self.audiences)} (the chart's vault.allowedAudiences), so the "
                "pods' tokens are only good for Vault"
            )

    def _check_address(self, address: str) -> None:
        if urlsplit(address).scheme != "https" and not self.allow_http:
            raise InvalidBindingError(
                f"spec.vault.address {address!r} is not allowed: use https (plain http would "
                "send the pods' tokens in the clear; the chart's vault.allowInsecureHttp "
                "allows it for development only)"
            )
        if normalized_address(address) not in {normalized_address(a) for a in self.addresses}:
            listed = ", ".join(self.addresses) or "none"
            raise InvalidBindingError(
                f"spec.vault.address {address!r} is not allowed: the platform team allows "
                f"{listed} (the chart's vault.allowedAddresses); leave it empty for the "
                "operator's own Vault"
            )

    def as_env(self) -> list[dict[str, str]]:
        """The sidecar's environment that carries this policy to ``captchakey agent``."""
        return [
            agentargs.env(AgentOption.ALLOWED_VAULT_ADDRS, self.addresses),
            agentargs.env(AgentOption.ALLOWED_AUDIENCES, self.audiences),
            agentargs.env(AgentOption.ALLOW_INSECURE_HTTP, self.allow_http),
        ]

    @classmethod
    def from_lists(cls, addresses: str, audiences: str, allow_http: bool) -> VaultPolicy:
        """The policy from the comma-separated lists :meth:`as_env` writes."""
        return cls(
            addresses=tuple(a.strip() for a in addresses.split(",") if a.strip()),
            audiences=tuple(a.strip() for a in audiences.split(",") if a.strip()),
            allow_http=allow_http,
        )


def normalized_address(address: str) -> str:
    """``scheme://host:port`` with the scheme's default port filled in, lowercase."""
    parts = urlsplit(address.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    except ValueError:
        return address
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"
