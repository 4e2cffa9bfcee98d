"""The TLS context of every connection the agent makes to the cloud.

``wss://`` is verified against the system's CA certificates, or against
``--ca-file`` alone when it is given (a private CA, or the certificate of an
SLB or Ingress signed by one). ``--client-cert-file`` and ``--client-key-file``
present a client certificate where the server asks for one (mutual TLS). The
WebSocket and, later, the agent's HTTP calls (file uploads, downloads) take
their context from ``client_context``, so they trust and present the same.

Built again for every connection: a CA bundle or client certificate rotated on
disk (a mounted Kubernetes Secret) is picked up at the next reconnect.
"""

from __future__ import annotations

import ssl

from edgefleet.agent.settings import AgentSettings, SettingsError


def uses_tls(url: str) -> bool:
    return url.startswith(("wss://", "https://"))


def client_context(settings: AgentSettings) -> ssl.SSLContext | None:
    """The context for ``settings.server`` (None for plain ``ws://``); a file that
    cannot be read or used is a ``SettingsError`` naming its flag."""
    if not uses_tls(settings.server):
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"--ca-file {settings.ca_file}: {_reason(exc)}") from exc
    if settings.client_cert_file:
        try:
            context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
        except (OSError, ssl.SSLError) as exc:
            files = " and ".join(
                f"{flag} {path}"
                for flag, path in (
                    ("--client-cert-file", settings.client_cert_file),
                    ("--client-key-file", settings.client_key_file),
                )
                if path
            )
            raise SettingsError(f"{files}: {_reason(exc)}") from exc
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
