"""``fer-ros bag play``: publish a bag's messages with their timing, and lose none.

QoS: each topic is offered what the bag recorded for it (reliable only when every
recorded publisher was reliable, transient local only when every one was, the largest
recorded depth but at least 10), else reliable, volatile, keep last 10, as ros2 bag play.

Why a reliable subscriber that exists when we start gets every message:
1. Before the first message we wait for subscriptions: up to --start-delay seconds for one
   on every topic, or with --wait-for-subscribers N until every topic has N. Discovery on
   one machine can take seconds (measured up to 3 s with shared-memory transport: a
   missed participant announcement waits for the next, 3 s later). With the former 1 s
   default, a third of the plays to an existing subscriber began before either side had
   found the other, and it got nothing; the default is now 5 s (the wait ends as soon as
   every topic has a subscriber).
2. A subscription we see (get_subscription_count) means OUR writer has matched THEIR
   reader. Fast DDS matches the two sides independently, so their reader may not know our
   writer yet, and it drops what an unknown writer sends; what it missed meanwhile is
   resent only while our writer still holds it (keep last N). A sleep after the match only
   makes that window rarer. Instead the first message of each topic is a handshake: we
   publish it and wait (--ack-timeout) until every matched reader has acknowledged it
   (wait_for_all_acked). A reader acknowledges only a writer it has matched, and our
   reliable writer owes that sample to every reader it had matched when writing it
   (volatile or not), so it resends it until acknowledged: when the wait returns, the
   reader knows our writer for the rest. The bag's timing starts after the handshake.
   One case remains: a VOLATILE reader that finds our writer only after the handshake
   was written treats it as history it did not ask for and acknowledges it without
   delivering it (DDS volatile semantics; seen once in a whole-suite run on Jazzy on a
   busy machine: 7 of 8 messages on each topic, the first missing). A reader that must
   get every message subscribes TRANSIENT_LOCAL; the player offers that for topics whose
   recorded publishers all offered it (the module's first paragraph), and then a late
   reader gets the history too.
3. Before we exit, every message must be acknowledged (--ack-timeout again): a writer that
   goes away takes unacknowledged messages with it. Topics where that failed are reported.
Best-effort publishers have no acknowledgements: wait_for_all_acked returns at once.

A reader acknowledges when a writer's heartbeat asks, and Fast DDS sends one every 3 s
by default, so steps 2 and 3 each took up to 3 s (measured). Unless you have Fast DDS
XML profiles of your own, the player gives its writers a 100 ms heartbeat period
(``fast_heartbeats``): the waits then take about 0.1 s. That changes how soon we learn
that messages arrived, not whether they do.

Remapping: --remap FROM:=TO goes to rcl as ``--ros-args -r FROM:=TO``, as ros2 bag play
does, so names resolve exactly as for any node.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from fer_ros.rosless.bag import BagError, message_class, resolve_bag
from fer_ros.rosless.bag_session import BagSession, StopFlag

DEFAULT_DEPTH = 10
POLL_S = 0.05
ACK_POLL_S = 0.1  # wait_for_all_acked blocks in C: short slices keep Ctrl-C responsive
# A default Fast DDS data-writer profile: heartbeats every 100 ms (module docstring).
HEARTBEAT_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <data_writer profile_name="fer_ros_bag_play" is_default_profile="true">
      <times>
        <heartbeat_period><sec>0</sec><nanosec>100000000</nanosec></heartbeat_period>
      </times>
    </data_writer>
  </profiles>
</dds>
"""
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_FILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")  # in cwd


@dataclass
class PlayOptions:
    bag: str
    rate: float = 1.0
    loop: bool = False
    topics: list[str] | None = None
    remaps: list[str] = field(default_factory=list)  # FROM:=TO
    start_delay: float = 5.0
    wait_for_subscribers: int = 0
    clock_hz: float | None = None
    ack_timeout: float = 5.0


def play(options: PlayOptions) -> int:
    if options.rate <= 0:
        raise BagError("--rate must be positive")
    bag = resolve_bag(options.bag)
    ros_args = remap_arguments(options.remaps)
    with Reader(bag) as reader, fast_heartbeats():
        connections = _select(reader, options.topics)
        with StopFlag() as stop:
            session = BagSession("fer_ros_bag_player", ros_args)
            try:
                return Player(reader, connections, session.node, options, stop).run()
            finally:
                session.close()


@contextmanager
def fast_heartbeats() -> Iterator[None]:
    """Our writers get HEARTBEAT_PROFILE, unless the user has Fast DDS profiles or RMW."""
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if "fastrtps" not in rmw or any(os.environ.get(v) for v in PROFILE_VARIABLES) \
            or any(Path(name).is_file() for name in PROFILE_FILES):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="fer_ros_bag_play_") as tmp:
        path = Path(tmp) / "fastdds_profiles.xml"
        path.write_text(HEARTBEAT_PROFILE)
        os.environ[PROFILE_VARIABLES[0]] = str(path)  # read when rclpy.init makes the participant
        try:
            yield
        finally:
            del os.environ[PROFILE_VARIABLES[0]]


def remap_arguments(remaps: Sequence[str]) -> list[str]:
    """``--remap`` items as rcl arguments (``-r FROM:=TO`` each)."""
    args: list[str] = []
    for item in remaps:
        src, _, dst = item.partition(":=")
        if not src or not dst:
            raise BagError(f"--remap wants FROM:=TO, got {item!r}")
        args += ["-r", item]
    return args


def _select(reader: Reader, topics: list[str] | None) -> list[Any]:
    wanted = {"/" + t.lstrip("/") for t in topics} if topics else None
    connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
    if wanted is not None and (missing := wanted - {c.topic for c in connections}):
        raise BagError(f"not in the bag: {', '.join(sorted(missing))}")
    for connection in connections:
        message_class(connection.msgtype)  # fail before starting anything
    return connections


def play_qos(profiles: Sequence[Any]) -> QoSProfile:
    """The QoS to offer for a topic whose recorded publishers offered ``profiles``."""
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


class Schedule:
    """Bag time to wall time at ``rate``; shifted by the time spent in handshakes."""

    def __init__(self, start_bag: int, rate: float, clock_hz: float | None) -> None:
        self.start_bag = start_bag
        self.rate = rate
        self.start_wall = time.monotonic()
        self.clock_period = 1.0 / clock_hz if clock_hz else None
        self.next_clock = self.start_wall

    def due(self, timestamp: int) -> float:
        return self.start_wall + (timestamp - self.start_bag) / 1e9 / self.rate

    def bag_now(self) -> int:
        return self.start_bag + int((time.monotonic() - self.start_wall) * self.rate * 1e9)

    def shift(self, seconds: float) -> None:
        self.start_wall += seconds
        self.next_clock += seconds


class Player:
    def __init__(self, reader: Reader, connections: list[Any], node: Node,
                 options: PlayOptions, stop: StopFlag) -> None:
        self.reader = reader
        self.connections = connections
        self.options = options
        self.stop = stop
        self.by_topic: dict[str, Publisher] = {}
        self.publishers: dict[int, Publisher] = {}  # connection id -> its topic's publisher
        for connection in connections:
            if connection.topic not in self.by_topic:
                self.by_topic[connection.topic] = node.create_publisher(
                    message_class(connection.msgtype), connection.topic,
                    play_qos(connection.ext.offered_qos_profiles))
            self.publishers[connection.id] = self.by_topic[connection.topic]
        self.clock = node.create_publisher(Clock, "/clock", DEFAULT_DEPTH) \
            if options.clock_hz else None
        self.handshaken: set[Publisher] = set()
        self.sent = 0

    def run(self) -> int:
        if not self.wait_for_subscribers():
            return 0
        print(f"Playing {self.options.bag}: {self.reader.message_count} messages on "
              f"{len(self.by_topic)} topics at rate {self.options.rate:g}",
              file=sys.stderr, flush=True)
        while self.play_once() and self.options.loop:
            pass
        if self.stop.stopped:
            return 0
        self.wait_all_acknowledged()
        print(f"Played {self.sent} messages", file=sys.stderr, flush=True)
        return 0

    def wait_for_subscribers(self) -> bool:
        """Step 1 of the module docstring; False when stopped meanwhile."""
        need = max(1, self.options.wait_for_subscribers)
        deadline = None if self.options.wait_for_subscribers > 0 else \
            time.monotonic() + max(0.0, self.options.start_delay)
        if deadline is None:
            print(f"Waiting for {need} subscriber(s) on {', '.join(self.by_topic)}",
                  file=sys.stderr, flush=True)
        while not all(p.get_subscription_count() >= need for p in self.by_topic.values()):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                missing = [t for t, p in self.by_topic.items() if p.get_subscription_count() < 1]
                print(f"fer-ros bag play: warning: no subscriber on {', '.join(missing)} after "
                      f"{self.options.start_delay:g} s; playing anyway (--wait-for-subscribers "
                      f"N waits for them)", file=sys.stderr, flush=True)
                break  # whoever subscribes later gets what follows
            wake = now + POLL_S if deadline is None else min(deadline, now + POLL_S)
            if not self.stop.sleep_until(wake):
                return False
        return not self.stop.stopped

    def play_once(self) -> bool:
        """The whole bag once, in its timing; False when stopped."""
        schedule: Schedule | None = None
        for connection, timestamp, data in self.reader.messages(connections=self.connections):
            if schedule is None:  # from the first message in hand, not before reading it
                schedule = Schedule(self.reader.start_time, self.options.rate,
                                    self.options.clock_hz)
            due = schedule.due(timestamp)
            if not self._clock_until(schedule, due) or not self.stop.sleep_until(due):
                return False
            if self.clock is not None:
                self._publish_clock(schedule)
            schedule.shift(self._publish(self.publishers[connection.id], data))
            if self.stop.stopped:
                return False
        return True

    def _publish(self, publisher: Publisher, data: Any) -> float:
        """Publish raw CDR; the first message of a topic is the handshake (docstring, 2).

        Returns the seconds spent waiting for the handshake.
        """
        publisher.publish(bytes(data))
        self.sent += 1
        if publisher in self.handshaken:
            return 0.0
        self.handshaken.add(publisher)
        start = time.monotonic()
        if not self._acknowledged(publisher, start + self.options.ack_timeout) \
                and not self.stop.stopped:
            print(f"fer-ros bag play: warning: the first message on {publisher.topic_name} "
                  f"was not acknowledged by every subscriber within "
                  f"{self.options.ack_timeout:g} s; playing on", file=sys.stderr, flush=True)
        return time.monotonic() - start

    def _acknowledged(self, publisher: Publisher, deadline: float) -> bool:
        """wait_for_all_acked until monotonic ``deadline``, in slices (Ctrl-C stays live)."""
        while not self.stop.stopped:
            left = deadline - time.monotonic()
            if publisher.wait_for_all_acked(Duration(seconds=max(0.0, min(left, ACK_POLL_S)))):
                return True
            if left <= ACK_POLL_S:
                return False
        return False

    def wait_all_acknowledged(self) -> None:
        """Step 3 of the module docstring: report topics not acknowledged in time."""
        deadline = time.monotonic() + self.options.ack_timeout
        late = [topic for topic, publisher in self.by_topic.items()
                if not self._acknowledged(publisher, deadline)]
        if late and not self.stop.stopped:
            print(f"fer-ros bag play: warning: not every subscriber acknowledged the messages "
                  f"on {', '.join(late)} within {self.options.ack_timeout:g} s",
                  file=sys.stderr, flush=True)

    def _clock_until(self, schedule: Schedule, due: float) -> bool:
        """Keep /clock ticking through gaps between messages; False when stopped."""
        if self.clock is None or schedule.clock_period is None:
            return True
        while schedule.next_clock < due:
            if not self.stop.sleep_until(schedule.next_clock):
                return False
            self._publish_clock(schedule)
            schedule.next_clock += schedule.clock_period
        return True

    def _publish_clock(self, schedule: Schedule) -> None:
        assert self.clock is not None
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(schedule.bag_now(), 1_000_000_000)
        self.clock.publish(msg)
