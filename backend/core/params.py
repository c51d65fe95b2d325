"""What route handlers take, declared once: the request's connection (``db``), the signed-in user
(``me``), a UUID from the path; and the dependency and OpenAPI security of a signed-in route.

    class LiveViewController(Controller):
        dependencies = SIGNED_IN
        security = BEARER

        @get("/{grant_id:uuid}")
        async def get_grant(self, db: Db, me: Me, state: State, grant_id: PathId) -> Grant: ...

The aliases are the very types Litestar reads (``NamedDependency[...]``, ``FromPath[...]``), so the
routes and their OpenAPI description are the same as when written out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeAlias

from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from backend.core.auth import Principal, provide_principal
from backend.core.db import Conn

__all__ = ["BEARER", "SIGNED_IN", "Db", "Me", "PathId"]

Db: TypeAlias = NamedDependency[Conn]
Me: TypeAlias = NamedDependency[Principal]
PathId: TypeAlias = FromPath[uuid.UUID]

SIGNED_IN: Mapping[str, Provide] = MappingProxyType({"me": Provide(provide_principal)})
"""``dependencies`` of a route for a signed-in user of any role (``me``; 401 without a valid token)."""

BEARER: tuple[dict[str, list[str]], ...] = ({"BearerAuth": []},)
"""``security`` of such a route in the OpenAPI description."""
