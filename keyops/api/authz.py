"""``/v1/authz`` (and any path under it, any method): forward-auth for the
gateways people already run.

NGINX ``auth_request``, Traefik ``ForwardAuth`` and Envoy ``ext_authz`` (HTTP
mode) send the client's request headers, without the body, to an auth
service and decide on its status alone: 2xx lets the request through (and
copies chosen response headers onto the upstream request), anything else
refuses it. So the answer here is the status plus headers:

- 200 and ``X-Keyops-Key-Id``, ``-Key-Name``, ``-Owner``, ``-Profile``,
  ``RateLimit-Limit/-Remaining/-Reset``, and ``X-Keyops-Client-Ip`` when a
  trusted proxy forwarded the caller's address;
- 401 ``WWW-Authenticate: Bearer error="invalid_token"`` for a missing,
  malformed or unknown key (NGINX copies that header to the client);
  ``error="invalid_request"`` for a request that must not be answered at all:
  two different keys, an oversized key header, a key in the query string;
- 403 for a suspended, revoked or expired key (the body and ``X-Keyops-Code``
  name the code);
- 429 with ``Retry-After`` when rate-limited, or 403 (``authz.rate_limited_status``)
  because NGINX turns any status but 2xx, 401 and 403 into 500;
- 500 when the gateway itself is not authorized (a keyops token with scope
  ``verify`` in ``authz.token_header``, or a peer in ``authz.allowed_peers``):
  an operator's mistake must not look like the client's key being wrong.

A decision goes through ``keyops.api.verify.judge``, the same code as
``POST /v1/keys/verify``: the same counters, last use and bucket. A refused
request (gateway not authorized, bad input) reaches none of them. Served as
a bare ASGI callable like verify's fast path: one pass over the headers,
no Request object. The query string is only read for keys to refuse; keyops
never logs it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from keyops.api.cache import Hit
from keyops.api.ratelimit import Decision
from keyops.api.state import ApiState
from keyops.api.verify import Judgement, judge
from keyops.config import AuthzSettings

PREFIX = "/v1/authz"
#: Longer than any key keyops issues (prefix + 33 + 6 + separators), with room.
MAX_KEY_HEADER = 512
#: Query parameters that carry keys by convention; refused whatever they hold.
QUERY_KEY_NAMES = frozenset({"key", "api_key", "api-key", "apikey", "x-api-key", "access_token", "token", "auth"})
# The tail of any keyops key (random part, separator, checksum), whatever its prefix.
_KEY_SHAPE = re.compile(r"[0-9A-Za-z]{33}_[0-9A-Za-z]{6}")

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
log = logging.getLogger("keyops.api.authz")

_JSON = (b"content-type", b"application/json")
_EMPTY = (b"content-length", b"0")
_INVALID_TOKEN = (b"www-authenticate", b'Bearer error="invalid_token"')
_INVALID_REQUEST = (b"www-authenticate", b'Bearer error="invalid_request"')
_MESSAGES = {
    "MISSING": "no key: send Authorization: Bearer <key> (or x-api-key: <key>)",
    "MALFORMED": "the key is not a well-formed keyops key",
    "NOT_FOUND": "unknown key",
    "REVOKED": "the key is revoked",
    "EXPIRED": "the key has expired",
    "SUSPENDED": "the key is suspended",
    "RATE_LIMITED": "rate limit exceeded; retry after Retry-After seconds",
    "SEVERAL_KEYS": "the request carries more than one key; send exactly one",
    "OVERSIZED": f"a key header is longer than {MAX_KEY_HEADER} bytes",
    "KEY_IN_QUERY": "keys are refused in the query string (it ends up in logs): send it in a header",
}


class AddressSet:
    """Addresses and CIDR ranges, with a bounded memo per peer string (a
    gateway's few addresses are looked up once)."""

    def __init__(self, ranges: list[str]) -> None:
        self.networks = [ipaddress.ip_network(r, strict=False) for r in ranges]
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: str) -> bool:
        known = self._memo.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            inside = False
        else:
            inside = any(ip in net for net in self.networks)
        if len(self._memo) < 4096:
            self._memo[address] = inside
        return inside


def client_address(peer: str, forwarded: bytes | None, proxies: AddressSet) -> str:
    """The caller: the peer, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy
    (entries to its left could be written by anyone). A malformed entry
    stops the walk at the last good address."""
    if forwarded is None or not proxies or peer not in proxies:
        return peer
    address = peer
    for item in reversed(forwarded.decode("latin-1").split(",")):
        candidate = item.strip()
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return address
        address = candidate
        if candidate not in proxies:
            return candidate
    return address


def key_in_query(uri: bytes) -> bool:
    """Whether the query string of ``uri`` holds something that is, or is
    named like, a key."""
    _, mark, query = uri.partition(b"?")
    if not mark or not query:
        return False
    text = query.decode("latin-1")
    if _KEY_SHAPE.search(text):
        return True
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name.lower() in QUERY_KEY_NAMES or _KEY_SHAPE.search(value):
            return True
    return False


def _header_value(text: str) -> bytes:
    """A header-safe value: printable ASCII as is, anything else
    percent-encoded (no CR/LF can reach the gateway)."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return quote(text, safe=" !#$&'()*+,-./:;=?@[]^_`{|}~").encode("ascii")


def _refused(status: int, code: str, extra: tuple[bytes, bytes] | None) -> Answer:
    headers = [(b"x-keyops-code", code.encode("ascii"))]
    if extra is not None:
        headers.append(extra)
    return status, headers, orjson.dumps({"code": code, "error": _MESSAGES[code]})


_GATEWAY_REFUSED: Answer = (
    500,
    [(b"x-keyops-code", b"GATEWAY_UNAUTHORIZED")],
    orjson.dumps(
        {
            "code": "GATEWAY_UNAUTHORIZED",
            "error": "the gateway is not authorized to ask keyops: send a token with scope verify "
            "in the authz.token_header header, or add the gateway's address to authz.allowed_peers",
        }
    ),
)


class AuthzFastPath:
    """The ASGI callable for every request under ``/v1/authz``."""

    def __init__(self, state: ApiState, settings: AuthzSettings, trusted_proxies: list[str]) -> None:
        self.state = state
        self.order = {name.lower().encode("latin-1"): i for i, name in enumerate(settings.key_headers)}
        self.token_header = settings.token_header.lower().encode("latin-1")
        self.peers = AddressSet(settings.allowed_peers)
        self.proxies = AddressSet(trusted_proxies)
        self.limited_status = settings.rate_limited_status
        # Memos for the hot path: gateway tokens that pass (per token table),
        # key id -> (its cached Hit, its identity headers); a Hit is replaced,
        # never changed, when its key changes, so an identity check suffices.
        self._gateways: dict[bytes, bool] = {}
        self._gateways_for: object = None
        self._identities: dict[str, tuple[Hit, list[tuple[bytes, bytes]]]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            result = self.answer(scope)
            status, headers, body = result if isinstance(result, tuple) else await result
        except Exception:
            log.exception("authz failed")
            status, headers, body = 500, [], b'{"code":"ERROR","error":"internal error (logged); retry"}'
        if body:
            headers.append(_JSON)
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        else:
            headers.append(_EMPTY)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def answer(self, scope: Any) -> Answer | Awaitable[Answer]:
        token: bytes | None = None
        tokens = 0
        keys: list[tuple[int, bytes]] = []
        forwarded: bytes | None = None
        original: bytes | None = None
        order = self.order
        for name, value in scope["headers"]:
            if name == self.token_header:
                token, tokens = value, tokens + 1
            elif name in order:
                if name == b"authorization":
                    scheme, _, value = value.partition(b" ")
                    if scheme.lower() != b"bearer":
                        continue  # Basic and others are for the upstream, not a key
                    value = value.strip()
                keys.append((order[name], value))
            elif name == b"x-original-uri":
                original = value
            elif name == b"x-forwarded-uri":
                if original is None:
                    original = value
            elif name == b"x-forwarded-for":
                forwarded = value if forwarded is None else forwarded + b"," + value
        client = scope.get("client")
        peer = client[0] if client else ""
        if not self._gateway_allowed(token if tokens == 1 else None, peer):
            return _GATEWAY_REFUSED[0], list(_GATEWAY_REFUSED[1]), _GATEWAY_REFUSED[2]
        query: bytes = scope.get("query_string") or b""
        if (query and key_in_query(b"?" + query)) or (original is not None and key_in_query(original)):
            return _refused(401, "KEY_IN_QUERY", _INVALID_REQUEST)
        if not keys:
            return _refused(401, "MISSING", _INVALID_TOKEN)
        for _, value in keys:
            if len(value) > MAX_KEY_HEADER:
                return _refused(401, "OVERSIZED", _INVALID_REQUEST)
        if len(keys) > 1:
            if len({value for _, value in keys}) > 1:
                return _refused(401, "SEVERAL_KEYS", _INVALID_REQUEST)
            keys.sort()
        # Named only when a trusted proxy forwarded it: otherwise the caller
        # is the gateway itself, which the upstream knows already.
        address = ""
        if forwarded is not None and self.proxies and peer in self.proxies:
            address = client_address(peer, forwarded, self.proxies)
        judged = judge(self.state, keys[0][1].decode("latin-1"), 1)
        if isinstance(judged, tuple):
            return self._render(judged, address)
        return self._render_later(judged, address)

    def _gateway_allowed(self, token: bytes | None, peer: str) -> bool:
        if token is not None:
            callers = self.state.sync.callers
            if callers is not self._gateways_for:
                self._gateways, self._gateways_for = {}, callers
            if token in self._gateways:
                return True
            text = token.decode("latin-1").strip()
            if not text.lower().startswith("bearer "):
                text = "Bearer " + text
            if self.state.check(text, "verify") is None:
                # Only tokens that pass are remembered: junk cannot fill the memo.
                if len(self._gateways) < 4096:
                    self._gateways[token] = True
                return True
        return bool(self.peers) and peer in self.peers

    async def _render_later(self, pending: Awaitable[Judgement], address: str) -> Answer:
        return self._render(await pending, address)

    def _render(self, judged: Judgement, address: str) -> Answer:
        code, hit, decision = judged
        if hit is None:
            return _refused(401, code, _INVALID_TOKEN)
        if code == "VALID":
            known = self._identities.get(hit.key_id)
            if known is not None and known[0] is hit:
                identity = known[1]
            else:
                identity = [
                    (b"x-keyops-key-id", hit.key_id.encode("ascii")),
                    (b"x-keyops-key-name", _header_value(hit.name)),
                    (b"x-keyops-owner", _header_value(hit.owner)),
                    (b"x-keyops-profile", _header_value(hit.profile)),
                ]
                if len(self._identities) >= 65536:
                    self._identities.clear()
                self._identities[hit.key_id] = (hit, identity)
            headers = identity.copy()
            if address:
                headers.append((b"x-keyops-client-ip", address.encode("ascii", "replace")))
            if decision is not None:
                _limit_headers(headers, decision)
            return 200, headers, b""
        if code == "RATE_LIMITED" and decision is not None:
            status, headers, body = _refused(self.limited_status, code, None)
            _limit_headers(headers, decision)
            headers.append((b"retry-after", str(self._retry_after(hit, decision)).encode("ascii")))
            return status, headers, body
        return _refused(403, code, None)

    def _retry_after(self, hit: Hit, decision: Decision) -> int:
        """Seconds until the bucket holds one token again (at least 1)."""
        limit = self.state.sync.limits.get(hit.profile)
        if limit is None or limit.rate <= 0:
            return max(1, decision.reset)
        return max(1, math.ceil((1 - decision.remaining) / limit.rate))


def _limit_headers(headers: list[tuple[bytes, bytes]], decision: Decision) -> None:
    headers.append((b"ratelimit-limit", str(decision.limit).encode("ascii")))
    headers.append((b"ratelimit-remaining", str(decision.remaining).encode("ascii")))
    headers.append((b"ratelimit-reset", str(decision.reset).encode("ascii")))
