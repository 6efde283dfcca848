"""Snapshots of what the robot sees: both cameras of a house as PNG files.

``python -m safevla_core.sim.snapshot --house HOUSE.json --out DIR`` resets the embedded
simulator (:class:`~safevla_core.sim.mujoco_backend.MujocoBackend`) in a house and writes
``DIR/nav_rgb.png`` and ``DIR/manip_rgb.png`` with :func:`write_png`, a PNG writer with no
dependency beyond the standard library (the PNG specification, W3C 2003: signature, IHDR, one
zlib IDAT of filter-0 rows, IEND, each chunk with its CRC-32).
"""

from __future__ import annotations

import argparse
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from safevla_core.sim.mujoco_backend import MujocoBackend


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 image as an 8-bit RGB PNG (stdlib zlib, no dependency).

    Raises:
        ValueError: On a wrong shape or dtype.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))  # filter type 0 per row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + tag
            + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


def main(argv: Sequence[str] | None = None) -> int:
    """Render both cameras of a house to ``OUT/nav_rgb.png`` and ``OUT/manip_rgb.png``."""
    parser = argparse.ArgumentParser(
        prog="python -m safevla_core.sim.snapshot", description=main.__doc__
    )
    parser.add_argument("--house", required=True, help="house JSON file (ProcTHOR schema)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start pose")
    parser.add_argument("--width", type=int, default=None, help="image width, pixels")
    parser.add_argument("--height", type=int, default=None, help="image height, pixels")
    args = parser.parse_args(argv)
    house = json.loads(Path(args.house).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = MujocoBackend(width=args.width, height=args.height)
    try:
        state = backend.reset(house, seed=args.seed)
        for cam, img in backend.render().items():
            write_png(out / f"{cam}.png", img)
        print(
            f"robot pose {np.round(state.robot_pose, 3).tolist()}, "
            f"visible {sorted(state.visible_ids)} -> {out}"
        )
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
