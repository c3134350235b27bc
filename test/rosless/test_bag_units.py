"""`fer-ros bag play`'s parts in-process (fer_ros/rosless/bag_play.py): the schedule at a
rate, the QoS it offers, --remap, topic selection. test_bag.py plays real bags through
the command; these pin the arithmetic exactly, where `make mutate` can see them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from fer_ros.rosless import bag_play
from fer_ros.rosless.bag import BagError
from fer_ros.rosless.bag_play import Schedule, _select, play_qos, remap_arguments

pytestmark = pytest.mark.rosless


@pytest.fixture
def clock(monkeypatch) -> SimpleNamespace:
    """A monotonic clock the test moves by hand."""
    now = SimpleNamespace(t=100.0)
    monkeypatch.setattr(bag_play.time, "monotonic", lambda: now.t)
    return now


def test_schedule_divides_bag_time_by_the_rate(clock) -> None:
    for rate, expected in ((1.0, 102.0), (2.0, 101.0), (0.5, 104.0)):
        schedule = Schedule(start_bag=5_000_000_000, rate=rate, clock_hz=None)
        assert schedule.due(5_000_000_000) == 100.0
        assert schedule.due(7_000_000_000) == expected  # exact: 2 s of bag time


def test_schedule_shift_delays_what_follows(clock) -> None:
    schedule = Schedule(start_bag=0, rate=1.0, clock_hz=10.0)
    assert schedule.clock_period == pytest.approx(0.1) and schedule.next_clock == 100.0
    schedule.shift(0.25)  # a handshake took 0.25 s
    assert schedule.due(1_000_000_000) == pytest.approx(101.25)
    assert schedule.next_clock == pytest.approx(100.25)


def test_schedule_bag_now_runs_at_the_rate(clock) -> None:
    schedule = Schedule(start_bag=3_000_000_000, rate=2.0, clock_hz=None)
    assert schedule.clock_period is None
    clock.t = 101.5
    assert schedule.bag_now() == 6_000_000_000


def recorded(reliability=QosReliability.RELIABLE, durability=QosDurability.VOLATILE,
             depth: int = 10) -> SimpleNamespace:
    return SimpleNamespace(reliability=reliability, durability=durability, depth=depth)


def test_play_qos_defaults_to_reliable_volatile_keep_last_10() -> None:
    qos = play_qos([])
    assert (qos.reliability, qos.durability, qos.depth) == (
        ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE, 10)


def test_play_qos_follows_the_recorded_publishers() -> None:
    qos = play_qos([recorded(), recorded(reliability=QosReliability.BEST_EFFORT, depth=3)])
    assert qos.reliability == ReliabilityPolicy.BEST_EFFORT  # one best effort: all of us
    assert qos.durability == DurabilityPolicy.VOLATILE and qos.depth == 10
    durable = [recorded(durability=QosDurability.TRANSIENT_LOCAL, depth=25),
               recorded(durability=QosDurability.TRANSIENT_LOCAL, depth=1)]
    qos = play_qos(durable)
    assert qos.durability == DurabilityPolicy.TRANSIENT_LOCAL  # only when every one was
    assert qos.reliability == ReliabilityPolicy.RELIABLE and qos.depth == 25
    qos = play_qos([*durable, recorded()])
    assert qos.durability == DurabilityPolicy.VOLATILE


def test_remap_arguments() -> None:
    assert remap_arguments([]) == []
    assert remap_arguments(["/a:=/b", "c:=d"]) == ["-r", "/a:=/b", "-r", "c:=d"]
    for bad in ("/a", "/a:=", ":=/b"):
        with pytest.raises(BagError, match="--remap wants FROM:=TO"):
            remap_arguments([bad])


def test_select_picks_topics_and_names_the_missing(tmp_path: Path) -> None:
    typestore = get_typestore(Stores.ROS2_KILTED)
    bag = tmp_path / "bag"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for name in ("/a", "/b", "/Xray"):
            writer.add_connection(name, "std_msgs/msg/String", typestore=typestore)
    with Reader(bag) as reader:
        assert sorted(c.topic for c in _select(reader, None)) == ["/Xray", "/a", "/b"]
        assert [c.topic for c in _select(reader, ["b"])] == ["/b"]
        assert [c.topic for c in _select(reader, ["Xray"])] == ["/Xray"]
        with pytest.raises(BagError, match="not in the bag: /c, /d"):
            _select(reader, ["/a", "/d", "c"])
