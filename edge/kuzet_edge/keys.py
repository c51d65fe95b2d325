"""The box's credentials in its state directory, each file 0600: the box key, and each camera's key and id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kuzet_edge.config import CameraConfig, check_private, write_private


@dataclass
class Keys:
    state_dir: Path
    box_key: str | None = None
    camera_keys: dict[str, str] = field(default_factory=dict)
    camera_ids: dict[str, str] = field(default_factory=dict)

    @property
    def box_file(self) -> Path:
        return self.state_dir / "box.key"

    @property
    def cameras_file(self) -> Path:
        return self.state_dir / "cameras.json"

    @classmethod
    def load(cls, state_dir: Path, cameras: list[CameraConfig]) -> Keys:
        keys = cls(state_dir)
        if keys.box_file.exists():
            check_private(keys.box_file)
            keys.box_key = keys.box_file.read_text().strip() or None
        if keys.cameras_file.exists():
            check_private(keys.cameras_file)
            stored = json.loads(keys.cameras_file.read_text())
            keys.camera_keys = {k: v["camera_key"] for k, v in stored.items() if v.get("camera_key")}
            keys.camera_ids = {k: v["camera_id"] for k, v in stored.items() if v.get("camera_id")}
        for camera in cameras:  # the config's own key files win (a camera made with `kuzet admin create-camera`)
            if camera.camera_key_file is not None:
                check_private(camera.camera_key_file)
                keys.camera_keys[camera.key] = camera.camera_key_file.read_text().strip()
            if camera.camera_id is not None:
                keys.camera_ids[camera.key] = camera.camera_id
        return keys

    def save_box(self, box_key: str, box: dict[str, str]) -> None:
        write_private(self.box_file, box_key + "\n")
        write_private(self.state_dir / "box.json", json.dumps(box, indent=2) + "\n")
        self.box_key = box_key

    def save_cameras(self) -> None:
        stored = {
            k: {"camera_id": self.camera_ids.get(k), "camera_key": self.camera_keys.get(k)}
            for k in sorted(set(self.camera_ids) | set(self.camera_keys))
        }
        write_private(self.cameras_file, json.dumps(stored, indent=2) + "\n")
