"""Which image the perception node's ``enroll`` service enrols from.

The newest processed image of each stream is kept (with how many faces it held). A
request names a stream, or none: then the stream answered last. A stream that is not
served, or has no processed image yet, is refused with a message that says which
streams there are; the models are never run for a request that cannot succeed.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np


class EnrolRefused(Exception):
    """The request cannot be served; the message is the service's answer."""


class LatestImages:
    """The newest processed image of each stream (written by the inference thread)."""

    def __init__(self) -> None:
        self._images: dict[str, tuple[np.ndarray, int]] = {}
        self._last: str | None = None

    def processed(self, stream: str, image: np.ndarray, faces: int) -> None:
        self._images[stream] = (image, faces)
        self._last = stream

    def forget(self, stream: str) -> None:
        """The stream is not served any more: never enrol from its old image."""
        self._images.pop(stream, None)
        if self._last == stream:
            self._last = None

    def clear(self) -> None:
        self._images.clear()
        self._last = None

    def for_enrolment(self, requested: str, served: Collection[str]
                      ) -> tuple[np.ndarray, int]:
        """(image, faces in it) to enrol from; EnrolRefused says why not."""
        stream = requested or self._last
        if stream is None:
            raise EnrolRefused("refused: no image received yet")
        if stream not in served:
            raise EnrolRefused(f"refused: no stream {stream!r} (streams: "
                               f"{', '.join(map(repr, served))})")
        latest = self._images.get(stream)
        if latest is None:
            raise EnrolRefused(f"refused: no image received yet on stream {stream!r}")
        return latest
