"""rosbag2 folders that every ROS 2 distribution reads, and their repair after a crash (no rclpy).

:mod:`rosbags` writes rosbag2 metadata version 8 or 9 only. Humble's rosbag2 refuses metadata
newer than version 5, while Jazzy and Kilted read every older version. :func:`downgrade_metadata`
therefore rewrites a finished bag's ``metadata.yaml`` as version 5: the same fields minus those
added later (``type_description_hash`` in 8, ``custom_data`` in 6, ``ros_distro`` in 7), with the
QoS profiles as the YAML string versions 4-8 use (rosbag2 ``metadata_io``'s history: v4 added
``offered_qos_profiles``, v5 ``relative_file_paths``/``files`` as written here).

A recorder killed with SIGKILL leaves an MCAP file without its summary and footer and no
``metadata.yaml``. :func:`repair` reads the file record by record with the ``mcap`` stream
reader up to the last complete record (chunks included), writes a complete MCAP beside it and the
version-5 metadata, and keeps the damaged file as ``*.mcap.damaged``. Messages still in the
recorder's memory at the kill (its open chunk) are lost.
"""

from __future__ import annotations

from pathlib import Path

import yaml

#: rosbag2 metadata version written (Humble reads <= 5; Jazzy and Kilted read it too).
METADATA_VERSION = 5
_LATER_TOPIC_KEYS = ("type_description_hash",)
_LATER_KEYS = ("custom_data", "ros_distro")


def downgrade_metadata(bag_dir: str | Path) -> dict:
    """Rewrite ``bag_dir/metadata.yaml`` (written by rosbags, version 8) as version 5.

    Returns:
        The new ``rosbag2_bagfile_information`` mapping.

    Raises:
        FileNotFoundError: Without a ``metadata.yaml``.
        ValueError: If the metadata is not a rosbag2 bag or has string-less QoS profiles
            (version 9: write version 8 first).
    """
    path = Path(bag_dir) / "metadata.yaml"
    data = yaml.safe_load(path.read_text())
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not rosbag2 metadata")
    info["version"] = METADATA_VERSION
    for key in _LATER_KEYS:
        info.pop(key, None)
    for t in info.get("topics_with_message_count", []):
        meta = t["topic_metadata"]
        for key in _LATER_TOPIC_KEYS:
            meta.pop(key, None)
        if not isinstance(meta.get("offered_qos_profiles", ""), str):
            raise ValueError("QoS profiles must be the version-4..8 YAML string")
    path.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    return info


def _metadata(mcap_name: str, topics: list[dict], start_ns: int, end_ns: int, count: int) -> dict:
    duration = max(0, end_ns - start_ns) if count else 0
    start_ns = start_ns if count else 0
    return {
        "rosbag2_bagfile_information": {
            "version": METADATA_VERSION,
            "storage_identifier": "mcap",
            "relative_file_paths": [mcap_name],
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": start_ns},
            "message_count": count,
            "topics_with_message_count": topics,
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": mcap_name,
                    "starting_time": {"nanoseconds_since_epoch": start_ns},
                    "duration": {"nanoseconds": duration},
                    "message_count": count,
                }
            ],
        }
    }


def repair(bag_dir: str | Path) -> int:
    """Recover a bag whose recorder was killed: a complete MCAP and version-5 metadata.

    Args:
        bag_dir: The rosbag2 folder holding one ``*.mcap`` file.

    Returns:
        The number of messages recovered.

    Raises:
        FileNotFoundError: If the folder holds no ``*.mcap`` file.
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import Writer

    bag = Path(bag_dir)
    files = sorted(bag.glob("*.mcap"))
    if not files:
        raise FileNotFoundError(f"no .mcap file in {bag}")
    src = files[0]
    damaged = src.with_suffix(".mcap.damaged")
    src.rename(damaged)
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    counts: dict[int, int] = {}
    messages: list[Message] = []
    with damaged.open("rb") as f:
        try:
            for record in StreamReader(f, emit_chunks=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    messages.append(record)
        except (McapError, EOFError, ValueError, OSError):
            pass  # the truncated tail: keep every complete record before it
    with src.open("wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="safevla_ros.bag.repair")
        for s in schemas.values():
            writer.register_schema(s.name, s.encoding, s.data)
        ids = {}
        for c in channels.values():
            ids[c.id] = writer.register_channel(
                c.topic, c.message_encoding, c.schema_id, dict(c.metadata)
            )
        for m in messages:
            if m.channel_id in ids:
                writer.add_message(
                    ids[m.channel_id], m.log_time, m.data, m.publish_time, m.sequence
                )
                counts[m.channel_id] = counts.get(m.channel_id, 0) + 1
        writer.finish()
    topics = [
        {
            "topic_metadata": {
                "name": c.topic,
                "type": schemas[c.schema_id].name if c.schema_id in schemas else "",
                "serialization_format": c.message_encoding,
                "offered_qos_profiles": c.metadata.get("offered_qos_profiles", ""),
            },
            "message_count": counts.get(c.id, 0),
        }
        for c in channels.values()
    ]
    times = [m.log_time for m in messages if m.channel_id in ids]
    meta = _metadata(src.name, topics, min(times, default=0), max(times, default=0), len(times))
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return len(times)


def main(argv: list[str] | None = None) -> int:
    """``python -m safevla_ros.bag repair BAG_DIR``: recover a killed recorder's bag."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["repair"])
    ap.add_argument("bag_dir")
    args = ap.parse_args(argv)
    n = repair(args.bag_dir)
    print(f"recovered {n} messages into {args.bag_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
