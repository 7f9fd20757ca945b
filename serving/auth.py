"""API keys: resolved once where the service is launched, handed on as SHA-256 digests only.

Sources (the shared contract; all that are given are combined):

- ``--api-keys-file PATH`` on ``lift-critic serve``, or env ``LIFT_CRITIC_API_KEYS_FILE``:
  one key per line (blank lines and ``#`` comments skipped) -- the k8s Secret is mounted so;
- env ``LIFT_CRITIC_API_KEYS``: comma-separated keys.

Keys never enter a Serve config, a deployment's arguments or a log: ``lift-critic serve``
resolves them in its own process and deploys their digests (``ingress.api_key_digests``),
so auth stays on whichever Ray cluster it joins. ``build_app`` (``serve run`` / RayService,
where the YAML is deployed as is) resolves the same sources in the process that builds the
application and adds their digests. A named source that cannot be read, or names no key,
is an error at launch: protection is never silently off.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from contract.errors import InvalidParameterError

KEYS_FILE_ENV = "LIFT_CRITIC_API_KEYS_FILE"
KEYS_ENV = "LIFT_CRITIC_API_KEYS"
ANONYMOUS = "anonymous"


class AuthConfigError(InvalidParameterError):
    """An API-key source was named but gives no usable key (the CLI exits 2 with one line)."""


def key_digest(key: str) -> str:
    """Hex SHA-256 of a key: what the service stores and compares."""
    return hashlib.sha256(key.encode()).hexdigest()


def _read_keys_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise AuthConfigError(f"cannot read the API keys file {path!r}: {e.strerror}") from None
    keys = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not keys:
        raise AuthConfigError(f"the API keys file {path!r} holds no key")
    return keys


def resolve_api_keys(keys_file: str | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """Every key from ``keys_file``, ``$LIFT_CRITIC_API_KEYS_FILE`` and ``$LIFT_CRITIC_API_KEYS``."""
    env = os.environ if env is None else env
    keys: list[str] = []
    for path in dict.fromkeys(p for p in (keys_file, env.get(KEYS_FILE_ENV)) if p):
        keys += _read_keys_file(path)
    if KEYS_ENV in env:
        listed = [k.strip() for k in env[KEYS_ENV].split(",") if k.strip()]
        if env[KEYS_ENV].strip() and not listed:
            raise AuthConfigError(f"${KEYS_ENV} is set but names no key")
        keys += listed
    return keys


def resolve_digests(keys_file: str | None = None, env: Mapping[str, str] | None = None) -> list[str]:
    """The digests of ``resolve_api_keys``, sorted and deduplicated."""
    return sorted({key_digest(k) for k in resolve_api_keys(keys_file, env)})


class Authorizer:
    """Checks ``Authorization: Bearer <key>`` against digests in constant time per digest.

    ``caller`` returns a stable identity for the key (a prefix of its digest, never the key),
    used to scope request ids; with no digests configured every caller is ``anonymous``.
    """

    def __init__(self, digests: list[str]):
        self._digests = [bytes.fromhex(d) for d in digests]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def caller(self, authorization: str | None) -> str | None:
        """The caller's identity, or None when keys are configured and this one is not among them."""
        if not self._digests:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        got = hashlib.sha256(token.strip().encode()).digest()
        ok = False
        for d in self._digests:  # no early exit: the time does not tell which digest matched
            ok |= hmac.compare_digest(got, d)
        return f"key:{got.hex()[:16]}" if ok and scheme.lower() == "bearer" else None
