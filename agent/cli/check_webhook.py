"""``captchakey check-webhook``: prove the operator's mutating webhook answers, and allows."""

from __future__ import annotations

from typing import Any

import click

from agent.cli.shared import needs_extra

__all__ = ["check_webhook_command"]


@click.command("check-webhook")
@click.option(
    "--url", required=True, help="The mutating webhook's URL, e.g. https://svc.ns.svc/mutate-pods."
)
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA that signed it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    help="Seconds to wait for the webhook's answer.",
)
def check_webhook_command(url: str, ca_file: str | None, timeout: float) -> None:
    """Post a harmless AdmissionReview (a pod that did not opt in); exit 0 if it is allowed.

    Used by the chart's `helm test` hook: proves the Service, TLS and the server work.
    """
    import uuid

    uid = str(uuid.uuid4())
    with needs_extra("check-webhook", "agent"):
        answer = _post_review(url, _review(uid), ca_file, timeout)
    if answer.get("uid") != uid or not answer.get("allowed"):
        raise click.ClickException(f"the webhook at {url} answered unexpectedly: {answer}")
    click.echo(f"webhook at {url} answered and allowed a pod that did not opt in")


def _review(uid: str) -> dict[str, Any]:
    """An AdmissionReview of creating a pod that did not opt in: any webhook must allow it."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "check", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    request = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "namespace": "default",
        "userInfo": {"username": "captchakey-check-webhook"},
        "object": pod,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _post_review(
    url: str, review: dict[str, Any], ca_file: str | None, timeout: float
) -> dict[str, Any]:
    """POST the review; every way it can fail becomes one line saying what to check."""
    import requests

    trusted = ca_file or "the system's trusted CAs"
    try:
        response = requests.post(url, json=review, verify=ca_file or True, timeout=timeout)
    except requests.exceptions.SSLError as exc:
        raise click.ClickException(
            f"TLS with the webhook at {url} failed: its certificate is not signed by "
            f"{trusted} or does not name that host ({_root_cause(exc)}); check that --ca-file "
            "is the ca.crt of the webhook's TLS Secret and that the certificate is current"
        ) from None
    except requests.Timeout:
        raise click.ClickException(
            f"the webhook at {url} did not answer within {timeout:g}s: is the operator "
            "overloaded, or a NetworkPolicy dropping the traffic?"
        ) from None
    except requests.ConnectionError as exc:
        raise click.ClickException(
            f"cannot connect to the webhook at {url} ({_root_cause(exc)}): is the operator "
            "running and ready, and does the webhook Service select its pods?"
        ) from None
    if response.status_code != 200:
        raise click.ClickException(
            f"the webhook at {url} answered HTTP {response.status_code}: {response.text[:200]!r}"
        )
    try:
        answer = response.json()["response"]
    except (ValueError, KeyError, TypeError):
        raise click.ClickException(
            f"the webhook at {url} did not answer with an AdmissionReview: {response.text[:200]!r}"
        ) from None
    if not isinstance(answer, dict):
        raise click.ClickException(f"the webhook at {url} answered unexpectedly: {answer!r}")
    return answer


def _root_cause(exc: BaseException) -> str:
    """The innermost reason (e.g. 'certificate verify failed'), not urllib3's whole chain."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.split("] ", 1)[-1] if text.startswith("[") else text
