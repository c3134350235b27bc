"""Names of the perception node's /diagnostics statuses, formed as diagnostic_updater
forms them ("<node name>: <task>"), so two perception nodes on one robot are told apart:
"perception: perception" for a node named perception, "perception: perception cam1" for its
stream cam1."""

from __future__ import annotations

TASK = "perception"


def status_name(node_name: str, stream: str = "") -> str:
    return f"{node_name}: {TASK} {stream}".rstrip()


def stream_of(name: str) -> str | None:
    """The stream a perception status is about ("" for a node's only, unnamed stream);
    None for any other status."""
    node, colon, task = name.partition(": ")
    if not (node and colon):
        return None
    if task == TASK:
        return ""
    if task.startswith(TASK + " "):
        return task[len(TASK) + 1:]
    return None
