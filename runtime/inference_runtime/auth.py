"""API keys: off by default; when configured, every protected route needs ``Authorization: Bearer <key>``.

Keys come from ``$API_KEYS`` (comma-separated) and/or a file with one key per line (what a mounted
Kubernetes Secret looks like). A line is ``id:key`` or a bare key; a bare key's id is a short hash,
so logs and metrics can say which key was used without ever showing it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from inference_runtime.errors import Unauthorized


class KeyRing:
    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._keys: list[tuple[str, bytes]] = []
        for raw in entries:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key_id, sep, key = line.partition(":")
            if not sep or not key_id or not key:
                key, key_id = line, hashlib.sha256(line.encode()).hexdigest()[:8]
            self._keys.append((key_id[:64], key.encode()))

    @classmethod
    def from_sources(cls, keys: Iterable[str], path: Path | None) -> KeyRing:
        lines = list(keys)
        if path is not None:
            lines += path.read_text(encoding="utf-8").splitlines()
        return cls(lines)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def identify(self, authorization: str | None) -> str:
        """The key id of a request: ``-`` while keys are off, else what :meth:`check` says."""
        return self.check(authorization) if self.enabled else "-"

    def check(self, authorization: str | None) -> str:
        """The key id for a valid ``Authorization`` header; raises Unauthorized otherwise.

        Every configured key is compared (in constant time), so timing tells nothing about which
        key, or how much of one, matched.
        """
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
        found = None
        for key_id, key in self._keys:
            if hmac.compare_digest(presented, key) and presented:
                found = key_id
        if found is None:
            raise Unauthorized()
        return found
