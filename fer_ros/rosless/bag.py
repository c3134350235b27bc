"""rosbag2 bags without ``ros2 bag``: locating, type definitions, metadata and ``info``.

The bags are standard rosbag2 directories (metadata.yaml plus one MCAP or sqlite3 file,
written and read by the ``rosbags`` library), so ``ros2 bag info``/``ros2 bag play`` open
what ``fer-ros bag record`` writes and the other way round. Messages are moved as raw CDR
bytes (bag_play, bag_record), so any message type whose Python package is installed
works, our own included.

What we write, and why it opens in Humble as well as Jazzy and Kilted:
- Storage plugin: MCAP by default (``--storage mcap``), or sqlite3 (``--storage
  sqlite3``), Humble's default plugin; Humble reads MCAP only with the separate
  ros-humble-rosbag2-storage-mcap package.
- Metadata version: rosbags writes only versions 8 (Iron/Jazzy) and 9 (Kilted). Version
  9 stores each topic's offered QoS as a YAML list, which Humble's parser (version 5,
  QoS as a YAML string) cannot read. Version 8 keeps the QoS string of version 5 and only
  adds keys that older parsers never look at (type_description_hash, custom_data,
  ros_distro). So we write version 8 and then declare it ``version: 5`` in metadata.yaml
  (see ``declare_metadata_version``): every rosbag2 from Humble on reads a version-5 file
  (newer ones read old versions), and rosbags still finds the type hashes by key.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

# What rosbags writes (8 or 9) and what we then declare in metadata.yaml (module docstring).
WRITE_VERSION = 8
DECLARED_VERSION = 5
BAG_SUFFIXES = {".mcap", ".db3"}
# `bag record --anonymize`'s smallest face: below the node's 40 px, since a face left in a
# recording costs more than search time.
ANONYMIZE_MIN_FACE_SIZE = 20
PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}


class BagError(RuntimeError):
    """A user-facing failure: printed without a traceback."""


def resolve_bag(path: str) -> Path:
    """The bag directory of ``path`` (the directory itself or its .mcap/.db3 file)."""
    bag = Path(path)
    if bag.is_file() and bag.suffix in BAG_SUFFIXES:
        bag = bag.parent
    if not (bag / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 bag (no metadata.yaml)")
    return bag


def message_class(msgtype: str) -> type:
    """The rclpy message class of 'pkg/msg/Name' (as rosidl_runtime_py.get_message)."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise BagError(f"bad message type name {msgtype!r}")
    pkg, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not installed ({exc})") from exc


# ---------------------------------------------------------------------------- typestore

def make_typestore() -> Any:
    return get_typestore(Stores.ROS2_KILTED)


def _msg_file(msgtype: str) -> Path | None:
    pkg, kind, name = msgtype.split("/")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)  # the venv build installs every interface here
    for prefix in prefixes:
        path = Path(prefix, "share", pkg, kind, f"{name}.msg")
        if path.is_file():
            return path
    return None


def _field_types(text: str, pkg: str) -> Iterator[str]:
    """Full names of the non-primitive types the fields of a .msg text use."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        # Constants are always of primitive types, so the first token is all we need.
        base = re.sub(r"\[.*\]$", "", line.split()[0])
        base = re.sub(r"<=\d+$", "", base)
        if base in PRIMITIVES:
            continue
        if base == "Header":
            yield "std_msgs/msg/Header"
        elif "/" in base:
            dep_pkg, dep_name = base.split("/")[0], base.split("/")[-1]
            yield f"{dep_pkg}/msg/{dep_name}"
        else:
            yield f"{pkg}/msg/{base}"


def ensure_type(typestore: Any, msgtype: str) -> None:
    """Register ``msgtype`` (and what it uses) in a rosbags typestore from its .msg file."""
    if msgtype in typestore.fielddefs:
        return
    path = _msg_file(msgtype)
    if path is None:
        raise BagError(f"no definition of {msgtype}: {msgtype.split('/')[0]} is not in "
                       "AMENT_PREFIX_PATH (source its setup script)")
    text = path.read_text()
    for dep in _field_types(text, msgtype.split("/")[0]):
        ensure_type(typestore, dep)
    typestore.register(get_types_from_msg(text, msgtype))


# ---------------------------------------------------------------------------- metadata

def to_bag_qos(profile: Any) -> Qos:
    """An rclpy QoSProfile as the rosbags Qos stored in metadata.yaml."""

    def span(duration: Any) -> QosTime:
        sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
        return QosTime(sec, nsec)

    def enum(cls: Any, value: Any) -> Any:
        try:
            return cls(int(value))
        except ValueError:
            return cls.UNKNOWN

    return Qos(history=enum(QosHistory, profile.history), depth=int(profile.depth),
               reliability=enum(QosReliability, profile.reliability),
               durability=enum(QosDurability, profile.durability),
               deadline=span(profile.deadline), lifespan=span(profile.lifespan),
               liveliness=enum(QosLiveliness, profile.liveliness),
               liveliness_lease_duration=span(profile.liveliness_lease_duration),
               avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions))


def declare_metadata_version(bag: Path) -> None:
    """Declare the version-8 metadata.yaml rosbags wrote as version 5 (module docstring)."""
    path = bag / "metadata.yaml"
    text, count = re.subn(rf"(?m)^(\s*version:) {WRITE_VERSION}$",
                          rf"\g<1> {DECLARED_VERSION}", path.read_text())
    if count != 1:
        raise BagError(f"{path}: expected one 'version: {WRITE_VERSION}' line")
    path.write_text(text)


# ---------------------------------------------------------------------------- info

def info(path: str) -> int:
    """``fer-ros bag info``: files, size, duration and per-topic counts (as ros2 bag info)."""
    bag = resolve_bag(path)
    with Reader(bag) as reader:
        size = sum(f.stat().st_size for f in bag.iterdir() if f.is_file())
        start, end = reader.start_time, reader.end_time
        if reader.message_count == 0:
            start = end = 0
        files = sorted(f.name for f in bag.iterdir() if f.suffix in BAG_SUFFIXES)
        storage = "mcap" if any(f.endswith(".mcap") for f in files) else "sqlite3"
        print(f"Files:             {', '.join(files)}")
        print(f"Bag size:          {size / 1024:.1f} KiB")
        print(f"Storage id:        {storage}")
        print(f"Duration:          {reader.duration / 1e9:.3f} s")
        print(f"Start:             {start / 1e9:.3f}")
        print(f"End:               {end / 1e9:.3f}")
        print(f"Messages:          {reader.message_count}")
        print("Topic information:")
        for connection in reader.connections:
            print(f"  Topic: {connection.topic} | Type: {connection.msgtype} | "
                  f"Count: {connection.msgcount} | "
                  f"Serialization Format: {connection.ext.serialization_format}")
    return 0
