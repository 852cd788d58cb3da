"""JSON Schemas of every public message, generated from the models.

`python -m shared.schema` rewrites `shared/schemas/`; a test fails when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from shared.execs import ExecEvent
from shared.files import FileNamed, FileRecord, FileWrite, SealingKey
from shared.kept import KeptLogs
from shared.messages import (
    Dispatch,
    EndpointsQuery,
    Heartbeat,
    ListQuery,
    LogsQuery,
    Result,
    TaskQuery,
    TaskUpdate,
)
from shared.models import (
    JobRecord,
    JobRequest,
    JobRow,
    ManagerInfo,
    NodeRecord,
    NodeRequest,
    NodeSettings,
    OrphanList,
    OrphansRequest,
    Removed,
    RemoveRequest,
    Reply,
    ScaleRequest,
    ServiceEndpoints,
    ServiceRecord,
    StopRequest,
    TaskRecord,
    TaskSpec,
    UpdateRequest,
    VolumeRequest,
)
from shared.sessions import SessionOpen, StreamFrame, StreamInput
from shared.volumes import VolumeRecord

SCHEMA_DIR = Path(__file__).parent / "schemas"

MESSAGES: dict[str, Any] = {
    "task-spec": TaskSpec,  # kube.commands task.submit
    "stop-request": StopRequest,  # kube.commands task.stop
    "scale-request": ScaleRequest,  # kube.commands service.scale
    "update-request": UpdateRequest,  # kube.commands service.update
    "node-settings": NodeSettings,  # kube.commands node.set
    "node-request": NodeRequest,  # kube.commands node.cordon, .uncordon, .drain, .remove
    "remove-request": RemoveRequest,  # kube.commands task.remove
    "removed": Removed,  # the result of task.remove and node.remove replies
    "orphans-request": OrphansRequest,  # kube.commands orphans.remove, orphans.adopt
    "orphan-list": OrphanList,  # query.orphans, and the result of orphans.remove replies
    "service-record": ServiceRecord,  # query.services rows
    "job-request": JobRequest,  # kube.commands job.remove, job.run
    "job-record": JobRecord,  # kube.events job.created, .updated, .skipped, .removed
    "job-row": JobRow,  # query.jobs rows
    "reply": Reply,  # answers to requests with reply_to
    "kept-logs": KeptLogs,  # the result of query.logs when the output shown was kept
    "task-query": TaskQuery,  # kube.commands query.task
    "list-query": ListQuery,  # kube.commands query.tasks, query.nodes
    "logs-query": LogsQuery,  # kube.commands query.logs
    "endpoints-query": EndpointsQuery,  # kube.commands query.endpoints
    "session-open": SessionOpen,  # kube.commands query.stream.open
    "stream-input": StreamInput,  # kube.commands query.stream.input; manager to worker
    "stream-frame": StreamFrame,  # to a session's reply_to; worker to manager
    "service-endpoints": ServiceEndpoints,  # kube.events service.endpoints, query.endpoints
    "file-write": FileWrite,  # kube.commands secret.create/update, config.create/update
    "file-named": FileNamed,  # kube.commands secret.remove, config.remove
    "file-record": FileRecord,  # query.secrets, query.configs (a list of them)
    "sealing-key": SealingKey,  # query.sealing-key
    "exec-event": ExecEvent,  # kube.events task.exec
    "task-record": TaskRecord,  # kube.events task.<state>
    "node-record": NodeRecord,  # kube.events node.<what>
    "manager-info": ManagerInfo,  # kube.events manager.leader, query.managers
    "dispatch": Dispatch,  # kube.dispatch, manager to worker
    "result": Result,  # kube.results, worker to manager
    "task-update": TaskUpdate,
    "heartbeat": Heartbeat,
    "volume-request": VolumeRequest,  # kube.commands volume.remove
    "volume-record": VolumeRecord,  # query.volumes rows, the result of volume.remove replies
}


def _require_discriminators(schema: dict[str, Any]) -> dict[str, Any]:
    """A tagged union's tag is required on the wire, though each model has a default for
    it (Python code may leave it out): pydantic's schema leaves it optional, and a client
    that follows that is refused with "Unable to extract tag"."""
    union = schema.get("discriminator")
    if union is not None:
        for ref in union["mapping"].values():
            target = schema["$defs"][ref.rsplit("/", 1)[1]]
            target["required"] = sorted({*target.get("required", ()), union["propertyName"]})
    return schema


def render(name: str) -> str:
    schema = _require_discriminators(TypeAdapter(MESSAGES[name]).json_schema())
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": name, **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in MESSAGES:
        path = directory / f"{name}.schema.json"
        path.write_text(render(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write():
        print(written, file=sys.stderr)
