"""What the console's handlers share: the parameters each one takes (the request; the request's
connection, the signed-in user and a UUID from the path as the API declares them in
``backend.core.params``) and the answer to a form that worked (Post/Redirect/Get).

A console handler reads as one line of signature and a few of work::

    @post("/venues", status_code=303)
    async def create_venue(self, request: ConsoleRequest, db: Db, me: Me) -> Redirect:
        require(me, "admin")
        venue = await venues.create_venue(db, me, await forms.read(request, VenueCreate))
        return see_other(f"/console/admin/venues/{venue.id}")
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlencode

from litestar import Request
from litestar.datastructures import State
from litestar.response import Redirect

from backend.core.params import Db, Me, PathId

__all__ = ["ConsoleRequest", "Db", "Me", "PathId", "see_other"]

ConsoleRequest: TypeAlias = Request[Any, Any, State]


def see_other(path: str, **query: str) -> Redirect:
    """303 to the page that shows the result; ``query`` adds its parameters (``done=`` picks a notice)."""
    return Redirect(path=f"{path}?{urlencode(query)}" if query else path, status_code=303)
