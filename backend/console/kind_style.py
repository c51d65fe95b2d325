"""The console's per-kind colours, made from the kind registry (``backend.incidents.kinds``): chart
bars (``.k-<kind>``) and legend swatches. A new kind gets its colour from its registry entry."""

from __future__ import annotations

import re
from typing import Final

from litestar import Response, get
from litestar.datastructures import CacheControlHeader

from backend.incidents import kinds

OTHER_COLOR: Final = "#78909c"  # bars and swatches that are not a kind (rejected by the model)


def stylesheet() -> str:
    colors = {name: kind.color for name, kind in kinds.KINDS.items()} | {"other": OTHER_COLOR}
    for name, color in colors.items():  # registry constants, checked before they become CSS
        if not re.fullmatch(r"[a-z_]+", name) or not re.fullmatch(r"#[0-9a-f]{6}", color):
            raise ValueError(f"kind {name!r}: a colour must be #rrggbb, got {color!r}")
    return "".join(
        f".k-{name} {{ fill: {color}; }}\n.legend i.k-{name} {{ background: {color}; }}\n"
        for name, color in colors.items()
    )


_CSS: Final = stylesheet()


@get(
    "/kinds.css",
    include_in_schema=False,
    media_type="text/css",
    cache_control=CacheControlHeader(max_age=3600, private=True),
    sync_to_thread=False,
)
def kinds_css() -> Response[str]:
    return Response(_CSS, media_type="text/css")
