"""``fer-ros bag``: play, record and inspect rosbag2 bags without ``ros2 bag``.

The bags are standard rosbag2 directories (metadata.yaml plus one MCAP or sqlite3 file,
written by the ``rosbags`` library), so ``ros2 bag info``/``ros2 bag play`` open what
``fer-ros bag record`` writes and the other way round. Messages are moved as raw CDR
bytes: rclpy publishes serialized bytes and raw subscriptions hand them over untouched,
so any message type whose Python package is installed works, our own included.

QoS: ``play`` offers what the bag recorded for a topic (reliable only when every recorded
publisher was reliable, transient local only when every one was), else reliable, volatile,
keep last 10. ``record`` subscribes best effort when any publisher of a topic is best
effort (a reliable subscriber would not match it), else reliable, and stores the
publishers' offered QoS in the metadata, as ``ros2 bag record`` does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DEFAULT_DEPTH = 10
MATCH_GRACE_S = 0.3
PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}


class BagError(RuntimeError):
    """A user-facing failure: printed without a traceback."""


# ---------------------------------------------------------------------------- arguments

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bag_command", metavar="ACTION", required=True)

    play = sub.add_parser("play", help="publish the messages of a bag with their timing")
    play.add_argument("bag", help="bag directory (or its .mcap/.db3 file)")
    play.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0)")
    play.add_argument("-l", "--loop", action="store_true", help="play again and again")
    play.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics")
    play.add_argument("--start-delay", type=float, default=1.0, metavar="S",
                      help="wait up to S seconds for subscribers before the first message "
                           "(ends 0.3 s after every topic has one; default 1.0)")
    play.add_argument("--remap", nargs="+", action="extend", default=[], metavar="FROM:=TO",
                      help="publish topic FROM as TO")
    play.add_argument("--clock", type=float, nargs="?", const=40.0, default=None, metavar="HZ",
                      help="publish the bag time on /clock at HZ (default 40) for use_sim_time")

    record = sub.add_parser("record", help="record topics into a new bag")
    record.add_argument("topics", nargs="+", metavar="TOPIC")
    record.add_argument("-o", "--output", required=True, help="bag directory to create")
    record.add_argument("-s", "--storage", choices=["mcap", "sqlite3"], default="mcap")
    record.add_argument("-d", "--duration", type=float, metavar="S",
                        help="stop after S seconds")
    record.add_argument("--max-messages", type=int, metavar="N",
                        help="stop after N messages in all")

    info = sub.add_parser("info", help="print a bag's topics, counts and duration")
    info.add_argument("bag")


def run(args: argparse.Namespace) -> int:
    try:
        if args.bag_command == "play":
            return play(args)
        if args.bag_command == "record":
            return record(args)
        return info(args)
    except BagError as exc:
        print(f"fer-ros bag: error: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------- helpers

class StopFlag:
    """Ctrl-C/SIGTERM set a flag instead of raising, so a bag is never closed mid-write."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    def sleep_until(self, deadline: float, tick: float = 0.05) -> bool:
        """Sleep until monotonic ``deadline``; False when stopped meanwhile."""
        while not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.event.wait(min(left, tick))
        return False


def _resolve_bag(path: str) -> Path:
    bag = Path(path)
    if bag.is_file() and bag.suffix in {".mcap", ".db3"}:
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
    from rosbags.typesys import get_types_from_msg

    path = _msg_file(msgtype)
    if path is None:
        raise BagError(f"no definition of {msgtype}: {msgtype.split('/')[0]} is not in "
                       "AMENT_PREFIX_PATH (source its setup script)")
    text = path.read_text()
    for dep in _field_types(text, msgtype.split("/")[0]):
        ensure_type(typestore, dep)
    typestore.register(get_types_from_msg(text, msgtype))


def make_typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _init_rclpy(name: str) -> tuple[Any, Any]:
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    # Our own signal handling (StopFlag) decides when to stop; rclpy's would race it.
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(name, context=context, start_parameter_services=False)
    return context, node


def _shutdown_rclpy(context: Any, node: Any) -> None:
    import rclpy

    node.destroy_node()
    rclpy.try_shutdown(context=context)


def _play_qos(profiles: Sequence[Any]) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability, QosReliability

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEFAULT_DEPTH,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    if profiles:
        if any(p.reliability == QosReliability.BEST_EFFORT for p in profiles):
            qos.reliability = ReliabilityPolicy.BEST_EFFORT
        if all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles):
            qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
        qos.depth = max([DEFAULT_DEPTH] + [int(p.depth) for p in profiles])
    return qos


def _parse_remaps(items: Sequence[str]) -> dict[str, str]:
    remaps = {}
    for item in items:
        if ":=" not in item:
            raise BagError(f"--remap wants FROM:=TO, got {item!r}")
        src, dst = item.split(":=", 1)
        remaps["/" + src.lstrip("/")] = dst if dst.startswith("/") else "/" + dst
    return remaps


# ---------------------------------------------------------------------------- play

def play(args: argparse.Namespace) -> int:
    from rosbags.rosbag2 import Reader

    if args.rate <= 0:
        raise BagError("--rate must be positive")
    bag = _resolve_bag(args.bag)
    remaps = _parse_remaps(args.remap)
    wanted = {"/" + t.lstrip("/") for t in args.topics} if args.topics else None
    with Reader(bag) as reader:
        connections = [c for c in reader.connections
                       if wanted is None or c.topic in wanted]
        if wanted is not None and (missing := wanted - {c.topic for c in connections}):
            raise BagError(f"not in the bag: {', '.join(sorted(missing))}")
        for connection in connections:
            message_class(connection.msgtype)  # fail before starting anything
        with StopFlag() as stop:
            context, node = _init_rclpy("fer_ros_bag_player")
            try:
                return _play(reader, connections, node, remaps, args, stop)
            finally:
                _shutdown_rclpy(context, node)


def _play(reader: Any, connections: list[Any], node: Any, remaps: dict[str, str],
          args: argparse.Namespace, stop: StopFlag) -> int:
    publishers: dict[int, Any] = {}
    by_topic: dict[str, Any] = {}
    for connection in connections:
        topic = remaps.get(connection.topic, connection.topic)
        if topic not in by_topic:
            by_topic[topic] = node.create_publisher(
                message_class(connection.msgtype), topic,
                _play_qos(connection.ext.offered_qos_profiles))
        publishers[connection.id] = by_topic[topic]
    clock_pub = None
    if args.clock:
        from rosgraph_msgs.msg import Clock

        clock_pub = node.create_publisher(Clock, "/clock", DEFAULT_DEPTH)

    # Discovery: late-matched subscribers of a volatile topic would miss the first messages.
    # A publisher that sees a subscriber may still be unknown to that subscriber, which then
    # drops what it sends: once all are matched, allow a short grace for the other side.
    deadline = time.monotonic() + max(0.0, args.start_delay)
    while time.monotonic() < deadline:
        if all(p.get_subscription_count() > 0 for p in by_topic.values()):
            deadline = min(deadline, time.monotonic() + MATCH_GRACE_S)
            break
        if not stop.sleep_until(min(deadline, time.monotonic() + 0.05)):
            return 0
    if not stop.sleep_until(deadline):
        return 0
    print(f"Playing {args.bag}: {reader.message_count} messages on "
          f"{len(by_topic)} topics at rate {args.rate:g}", file=sys.stderr, flush=True)

    sent = 0
    while True:
        start_wall = time.monotonic()
        start_bag = reader.start_time
        next_clock = start_wall
        for connection, timestamp, data in reader.messages(connections=connections):
            due = start_wall + (timestamp - start_bag) / 1e9 / args.rate
            while clock_pub is not None and next_clock < due:
                # Keep /clock ticking through gaps between messages.
                if not stop.sleep_until(next_clock):
                    return 0
                _publish_clock(clock_pub, start_bag, start_wall, args.rate)
                next_clock += 1.0 / args.clock
            if not stop.sleep_until(due):
                return 0
            if clock_pub is not None:
                _publish_clock(clock_pub, start_bag, start_wall, args.rate)
            publishers[connection.id].publish(bytes(data))
            sent += 1
        if not args.loop or stop.stopped:
            break
    # Reliable subscribers must acknowledge the last messages before our writers go away.
    from rclpy.duration import Duration

    for publisher in by_topic.values():
        publisher.wait_for_all_acked(Duration(seconds=2.0))
    print(f"Played {sent} messages", file=sys.stderr, flush=True)
    return 0


def _publish_clock(publisher: Any, start_bag: int, start_wall: float, rate: float) -> None:
    from rosgraph_msgs.msg import Clock

    now = start_bag + int((time.monotonic() - start_wall) * rate * 1e9)
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(now, 1_000_000_000)
    publisher.publish(msg)


# ---------------------------------------------------------------------------- record

def _to_bag_qos(profile: Any) -> Any:
    """An rclpy QoSProfile as the rosbags Qos stored in metadata.yaml."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

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


def _subscribe_qos(offered: Sequence[Any]) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    if any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in offered):
        qos.reliability = ReliabilityPolicy.BEST_EFFORT
    if offered and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered):
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    return qos


def record(args: argparse.Namespace) -> int:
    from rclpy.executors import SingleThreadedExecutor
    from rosbags.rosbag2 import StoragePlugin, Writer

    output = Path(args.output)
    if output.exists():
        raise BagError(f"{output} exists already")
    topics = list(dict.fromkeys("/" + t.lstrip("/") for t in args.topics))
    typestore = make_typestore()
    plugin = StoragePlugin.MCAP if args.storage == "mcap" else StoragePlugin.SQLITE3
    # Version 8 metadata: read by ros2 bag of Jazzy and Kilted alike.
    writer = Writer(output, version=8, storage_plugin=plugin)

    with StopFlag() as stop:
        context, node = _init_rclpy("fer_ros_bag_recorder")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        writer.open()
        count = 0
        pending = list(topics)
        try:
            print(f"Recording to {output} ({args.storage}); waiting for "
                  f"{', '.join(topics)}", file=sys.stderr, flush=True)
            started = time.monotonic()
            end = started + args.duration if args.duration else None

            def on_message(connection: Any) -> Any:
                def callback(data: bytes) -> None:
                    nonlocal count
                    if args.max_messages is not None and count >= args.max_messages:
                        return
                    writer.write(connection, time.time_ns(), data)
                    count += 1
                return callback

            next_poll = 0.0
            while not stop.stopped:
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if args.max_messages is not None and count >= args.max_messages:
                    break
                if pending and now >= next_poll:
                    next_poll = now + 0.1
                    pending = _subscribe_new(node, writer, typestore, pending, on_message)
                executor.spin_once(timeout_sec=0.05)
        finally:
            writer.close()  # writes the index and metadata.yaml: the bag stays readable
            executor.shutdown()
            _shutdown_rclpy(context, node)
    print(f"Recorded {count} messages to {output}", file=sys.stderr, flush=True)
    return 0


def _subscribe_new(node: Any, writer: Any, typestore: Any, pending: list[str],
                   on_message: Any) -> list[str]:
    known = dict(node.get_topic_names_and_types())
    still = []
    for topic in pending:
        types = known.get(topic)
        if not types:
            still.append(topic)
            continue
        msgtype = types[0]
        ensure_type(typestore, msgtype)
        offered = [info.qos_profile for info in node.get_publishers_info_by_topic(topic)]
        if not offered:
            still.append(topic)  # only subscribers so far: wait for a publisher's QoS
            continue
        connection = writer.add_connection(
            topic, msgtype, typestore=typestore,
            offered_qos_profiles=[_to_bag_qos(p) for p in offered])
        node.create_subscription(message_class(msgtype), topic, on_message(connection),
                                 _subscribe_qos(offered), raw=True)
        print(f"Subscribed to topic '{topic}' ({msgtype})", file=sys.stderr, flush=True)
    return still


# ---------------------------------------------------------------------------- info

def info(args: argparse.Namespace) -> int:
    from rosbags.rosbag2 import Reader

    bag = _resolve_bag(args.bag)
    with Reader(bag) as reader:
        size = sum(f.stat().st_size for f in bag.iterdir() if f.is_file())
        start, end = reader.start_time, reader.end_time
        if reader.message_count == 0:
            start = end = 0
        files = sorted(f.name for f in bag.iterdir() if f.suffix in {".mcap", ".db3"})
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
