"""The native issuer: keyops mints its own keys (``keyops.domain.keyformat``).

Nothing lives outside keyops: the key is valid exactly while the inventory
says so (verify reads the inventory), so deactivating or deleting is the
inventory's state change and these hooks have nothing to do.
"""

from __future__ import annotations

from keyops.domain import keyformat
from keyops.errors import InvalidInputError
from keyops.issuers.base import Issuer, IssuerContext, Minted


class NativeIssuer(Issuer):
    name = "native"

    def __init__(self, prefix: str) -> None:
        self._prefix = keyformat.validate_prefix(prefix)

    def mint(self, ctx: IssuerContext) -> Minted:
        fresh = keyformat.generate(self._prefix)
        return Minted(material=fresh.plaintext, secret_hash=fresh.secret_hash, display_prefix=fresh.display_prefix)

    def hash(self, material: str) -> str:
        return keyformat.hash_key(material)

    def test(self, ctx: IssuerContext, material: str) -> None:
        if not keyformat.is_well_formed(material):
            raise InvalidInputError(f"the new material of {ctx.key_name} is not a well-formed keyops key")

    def deactivate(self, ctx: IssuerContext, external_id: str | None) -> None:
        return None

    def delete(self, ctx: IssuerContext, external_id: str | None) -> None:
        return None
