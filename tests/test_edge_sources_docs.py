"""The configuration examples of docs/edge-sources.md are valid: each builds its source."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from kuzet_edge.events import CameraRef
from kuzet_edge.sources import frigate, onvif

DOC = Path(__file__).resolve().parents[1] / "docs" / "edge-sources.md"
CAMERAS = {
    "bar": CameraRef(key="bar", name="Bar", host="10.0.0.5", username="kuzet"),
    "door": CameraRef(key="door", name="Door", host="10.0.0.5", username="kuzet"),
}


def examples() -> list[dict[str, object]]:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    tables = [table for block in blocks for table in tomllib.loads(block)["sources"]]
    assert [t["type"] for t in tables] == ["onvif", "frigate"]
    return tables


def test_the_documented_examples_build(tmp_path: Path) -> None:
    onvif_table, frigate_table = examples()
    source = onvif.build(onvif_table, cameras=CAMERAS, state_dir=tmp_path)
    assert [c.key for c in source.cameras] == ["bar", "door"]
    assert source.config.classes["motion"].kind == "fight"

    certificate = tmp_path / "frigate.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")
    frigate_table["ca_file"] = str(certificate)  # the documented path is on the box, not here
    built = frigate.build(frigate_table, cameras=CAMERAS, state_dir=tmp_path)
    assert built.config.cameras == {"bar_cam": "bar", "door_cam": "door"}
    assert [rule.kind for rule in built.config.rules] == ["fight", "weapon"]
