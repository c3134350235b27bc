"""QoS profiles chosen by name from a string parameter (`qos: sensor_data`)."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_system_default,
)

QOS_CHOICES = ("sensor_data", "reliable", "system_default")


def qos_profile(name: str) -> QoSProfile:
    """A fresh QoSProfile for `name`; ValueError naming the choices otherwise.

    sensor_data: best effort, keep last 5 (rclpy.qos.qos_profile_sensor_data): the usual
      camera profile; a late frame is worth less than the next one.
    reliable: reliable, keep last 10: nothing lost while the reader keeps up (recording,
      tests, slow links where retransmission is cheaper than a gap).
    system_default: whatever the RMW's defaults are.
    A best-effort publisher reaches reliable and best-effort subscribers alike, but a
    reliable subscriber does not match a best-effort publisher.
    """
    if name == "sensor_data":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                          reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    if name == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if name == "system_default":
        base = qos_profile_system_default
        return QoSProfile(history=base.history, depth=base.depth,
                          reliability=base.reliability, durability=base.durability,
                          lifespan=base.lifespan, deadline=base.deadline,
                          liveliness=base.liveliness,
                          liveliness_lease_duration=base.liveliness_lease_duration)
    raise ValueError(f"unknown QoS profile {name!r}: choose one of {', '.join(QOS_CHOICES)}")
