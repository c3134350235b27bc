"""``fer-ros bag record``: record live topics into a new rosbag2 bag.

QoS: a topic is subscribed best effort when any of its publishers is best effort (a
reliable subscriber would not match it), else reliable; transient local when every
publisher is. The publishers' offered QoS goes into the metadata, as ``ros2 bag record``
stores it, so ``play`` can offer the same. Storage and metadata version: see bag.py.
With ``anonymize`` every image is written with its faces pixelated (bag_anonymize.py).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer

from fer_ros.rosless.bag import ANONYMIZE_MIN_FACE_SIZE as MIN_FACE_SIZE
from fer_ros.rosless.bag import (
    WRITE_VERSION,
    BagError,
    declare_metadata_version,
    ensure_type,
    make_typestore,
    message_class,
    to_bag_qos,
)
from fer_ros.rosless.bag_anonymize import (
    IMAGE_BACKLOG,
    IMAGE_TYPES,
    BagAnonymizer,
    refused_with_anonymize,
)
from fer_ros.rosless.bag_session import BagSession, StopFlag

SUBSCRIBE_DEPTH = 100
DISCOVERY_POLL_S = 0.1
STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@dataclass
class RecordOptions:
    topics: list[str]
    output: str
    storage: str = "mcap"
    duration: float | None = None
    max_messages: int | None = None
    anonymize: bool = False
    device: str = "cpu"  # of the face detector, with anonymize
    min_face_size: int = MIN_FACE_SIZE


def subscribe_qos(offered: Sequence[Any]) -> QoSProfile:
    """The QoS that matches every publisher that offers ``offered`` (module docstring)."""
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SUBSCRIBE_DEPTH,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    if any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in offered):
        qos.reliability = ReliabilityPolicy.BEST_EFFORT
    if offered and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered):
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    return qos


def record(options: RecordOptions) -> int:
    output = Path(options.output)
    if output.exists():
        raise BagError(f"{output} exists already")
    if options.storage not in STORAGE_PLUGINS:
        raise BagError(f"unknown storage {options.storage!r}")
    # The detector is loaded before anything is subscribed: no image waits for it.
    anonymizer = (BagAnonymizer(options.device, options.min_face_size)
                  if options.anonymize else None)
    writer = Writer(output, version=WRITE_VERSION, storage_plugin=STORAGE_PLUGINS[options.storage])
    with StopFlag() as stop:
        session = BagSession("fer_ros_bag_recorder")
        executor = SingleThreadedExecutor(context=session.context)
        executor.add_node(session.node)
        writer.open()
        recorder = Recorder(session, writer, options, anonymizer)
        try:
            recorder.spin(executor, stop)
        finally:
            writer.close()  # writes the index and metadata.yaml: the bag stays readable
            executor.shutdown()
            session.close()
    declare_metadata_version(output)
    print(f"Recorded {recorder.count} messages to {output}"
          + (f" ({anonymizer.summary()})" if anonymizer else ""), file=sys.stderr, flush=True)
    return 0


class Recorder:
    """Subscribes to each topic once a publisher shows up, and writes what arrives."""

    def __init__(self, session: BagSession, writer: Writer, options: RecordOptions,
                 anonymizer: BagAnonymizer | None = None) -> None:
        self.node = session.node
        self.anonymizer = anonymizer
        self.writer = writer
        self.options = options
        self.typestore = make_typestore()
        self.pending = list(dict.fromkeys("/" + t.lstrip("/") for t in options.topics))
        self.count = 0
        self._write_lock = threading.Lock()  # the executor and the anonymizing worker
        # Images wait here for the anonymizer's worker, so other topics are written as
        # they come (the executor never waits for a face search).
        self._images: deque[tuple[Any, str, bytes, int]] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._worker: threading.Thread | None = None
        if anonymizer is not None:
            self._worker = threading.Thread(target=self._anonymize, name="anonymize",
                                            daemon=True)
            self._worker.start()

    @property
    def full(self) -> bool:
        return self.options.max_messages is not None and self.count >= self.options.max_messages

    def spin(self, executor: SingleThreadedExecutor, stop: StopFlag) -> None:
        print(f"Recording to {self.options.output} ({self.options.storage}); waiting for "
              f"{', '.join(self.pending)}", file=sys.stderr, flush=True)
        end = time.monotonic() + self.options.duration if self.options.duration else None
        next_poll = 0.0
        while not stop.stopped and not self.full:
            now = time.monotonic()
            if end is not None and now >= end:
                break
            if self.pending and now >= next_poll:
                next_poll = now + DISCOVERY_POLL_S
                self.subscribe_new()
            executor.spin_once(timeout_sec=0.05)
        self._finish_images()

    def subscribe_new(self) -> None:
        """Subscribe to the pending topics that now have a publisher (with its QoS)."""
        known = dict(self.node.get_topic_names_and_types())
        still = []
        for topic in self.pending:
            types = known.get(topic)
            offered = [info.qos_profile
                       for info in self.node.get_publishers_info_by_topic(topic)] \
                if types else []
            if not offered:  # unknown, or only subscribers so far: wait for a publisher
                still.append(topic)
                continue
            msgtype = types[0]
            ensure_type(self.typestore, msgtype)
            if self.anonymizer is not None and refused_with_anonymize(self.typestore, msgtype):
                print(f"Not recording '{topic}' ({msgtype}): it may carry images that "
                      f"--anonymize cannot pixelate", file=sys.stderr, flush=True)
                continue
            connection = self.writer.add_connection(
                topic, msgtype, typestore=self.typestore,
                offered_qos_profiles=[to_bag_qos(p) for p in offered])
            self.node.create_subscription(message_class(msgtype), topic,
                                          self._writer_for(connection, msgtype),
                                          subscribe_qos(offered), raw=True)
            print(f"Subscribed to topic '{topic}' ({msgtype})", file=sys.stderr, flush=True)
        self.pending = still

    def _writer_for(self, connection: Any, msgtype: str) -> Callable[[bytes], None]:
        def callback(data: bytes) -> None:
            received = time.time_ns()  # the message's time in the bag: when it came
            if self.anonymizer is not None and msgtype in IMAGE_TYPES:
                with self._wake:
                    if len(self._images) >= IMAGE_BACKLOG:
                        self._images.popleft()  # fell behind: the oldest waits no longer
                        self.anonymizer.behind += 1
                    self._images.append((connection, msgtype, data, received))
                    self._wake.notify()
                return
            self._write(connection, received, data)
        return callback

    def _write(self, connection: Any, received: int, data: bytes) -> None:
        with self._write_lock:
            if not self.full:
                self.writer.write(connection, received, data)
                self.count += 1

    def _anonymize(self) -> None:
        """The worker: each waiting image, anonymized (or left out), then written."""
        while True:
            with self._wake:
                while not self._images and not self._closing:
                    self._wake.wait()
                if not self._images:
                    return
                connection, msgtype, data, received = self._images.popleft()
            out = self.anonymizer(msgtype, data)
            if out is not None:  # None: it could not be anonymized, so it is left out
                self._write(connection, received, out)

    def _finish_images(self) -> None:
        """The images that came before the end are written before the bag is closed."""
        if self._worker is None:
            return
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._worker.join()
