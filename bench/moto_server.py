"""moto's server for the benchmarks, with Secrets Manager lookups by name in O(1).

moto 5's ``SecretsStore`` answers every lookup (``secrets[name]``, ``name in
secrets``) by scanning all secrets for a matching ARN or name. With the 10,000
secrets of ``bench/rotation.py`` that scan costs moto milliseconds per call,
so the benchmark measured moto, not keyops; and the scan is not safe against
concurrent creates (``RuntimeError: dictionary changed size during
iteration``, answered as HTTP 500). Real Secrets Manager has neither problem.
The store is keyed by name, so this wrapper answers a name from the
dictionary and leaves ARNs (full or partial, ``arn:...``) to moto's own scan:
the answers are unchanged. Only the benchmarks use it; the tests run moto as it is.

    python bench/moto_server.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

from typing import Any

from moto.secretsmanager import models
from moto.server import main

_store = models.SecretsStore
_scan_get = _store.__getitem__
_scan_contains = _store.__contains__
_scan_lookup = _store.get


def _getitem(self: Any, key: str) -> Any:
    return dict.__getitem__(self, key) if not key.startswith("arn:") else _scan_get(self, key)


def _contains(self: Any, key: str) -> bool:
    return dict.__contains__(self, key) if not key.startswith("arn:") else _scan_contains(self, key)


def _get(self: Any, key: str) -> Any:
    return dict.get(self, key) if not key.startswith("arn:") else _scan_lookup(self, key)


_store.__getitem__ = _getitem  # type: ignore[method-assign]
_store.__contains__ = _contains  # type: ignore[method-assign]
_store.get = _get  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
