"""EC2 instance power states as EC2 shows them, in front of moto (which shows none in between).

moto stops and starts an instance at once: `StopInstances` answers `stopping` but the next
`DescribeInstances` says `stopped`, so a caller never meets an instance on its way down or up. It
also stops and starts what EC2 refuses to (an instance-store-backed instance, a `pending` one, a
terminated one, which moto even brings back to `running`), and reports every instance's root
device as `ebs`. The AWS proxy (`proxy.AwsFaultProxy`) asks `PowerModel` to answer as EC2 does:

- after a stop, the instance shows `stopping` (code 64) for `stop_seconds`, then `stopped`; after
  a start, `pending` (code 0) for `start_seconds`, then `running`; the `instance-state-name`
  filter of `DescribeInstances` matches what is shown;
- `StopInstances` of a `pending`, `shutting-down` or `terminated` instance, and `StartInstances`
  of a `stopping`, `shutting-down` or `terminated` one, are refused with EC2's
  `IncorrectInstanceState` (the whole call, as EC2 does); `StopInstances` of an instance whose
  image's root device is instance-store is refused with `UnsupportedOperation`;
- `rootDeviceType` is the image's (moto ships one instance-store AMI among its Amazon images).

Stopping an instance that is `stopping` is allowed, as on EC2 (that is what `Force` is for).
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from gameday.lab.emulator import ApiError, Request, Response

CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64,
         "stopped": 80}
_NOT_STOPPABLE = ("pending", "shutting-down", "terminated")
_NOT_STARTABLE = ("stopping", "shutting-down", "terminated")

Forward = Callable[[Request], Response]


@dataclass(frozen=True)
class Shown:
    """An instance as described: its state as EC2 would show it, and its image."""

    state: str
    image: str


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in node if _local(c.tag) == name), None)


def _text(node: ET.Element, name: str) -> str:
    found = _child(node, name)
    return (found.text or "") if found is not None else ""


def _serialise(root: ET.Element) -> bytes:
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if namespace:
        ET.register_namespace("", namespace)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)


def form_of(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.body.decode(errors="replace"), keep_blank_values=True) \
        if request.body else dict(request.query)


def with_form(request: Request, form: dict[str, list[str]]) -> Request:
    body = urlencode([(k, v) for k, values in form.items() for v in values]).encode()
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    return Request(method="POST", path=request.path, query={}, headers=headers, body=body)


class PowerModel:
    """Which instances are between two power states, until when; and EC2's refusals."""

    def __init__(self, stop_seconds: float = 1.0, start_seconds: float = 1.0):
        self.stop_seconds = stop_seconds
        self.start_seconds = start_seconds
        self._until: dict[str, tuple[str, float]] = {}
        self._roots: dict[str, str] = {}
        self.lock = threading.Lock()
        """Held across a power call's state check and the call: no state changes in between."""

    def reset(self) -> None:
        with self.lock:
            self._until.clear()

    def shown(self, instance_id: str, moto_state: str) -> str:
        """The state EC2 would show for an instance moto has in `moto_state`."""
        passing = self._until.get(instance_id)
        if passing is None:
            return moto_state
        state, until = passing
        if time.monotonic() >= until or moto_state in ("shutting-down", "terminated"):
            self._until.pop(instance_id, None)
            return moto_state
        return state

    # --- the calls -------------------------------------------------------------------------

    def power_call(self, action: str, request: Request, forward: Forward) -> Response:
        """`StopInstances` or `StartInstances`, refused or forwarded as EC2 would, its answer's
        states as EC2 shows them, and the instances' transitions begun."""
        form = form_of(request)
        ids = [v[0] for k, v in sorted(form.items()) if k.startswith("InstanceId.")]
        stop = action == "StopInstances"
        with self.lock:
            before = self._describe(request, ids, forward)
            for instance_id in ids:
                found = before.get(instance_id)
                if found is None:
                    continue  # moto answers InvalidInstanceID.NotFound
                if found.state in (_NOT_STOPPABLE if stop else _NOT_STARTABLE):
                    verb = "stopped" if stop else "started"
                    raise ApiError(400, "IncorrectInstanceState",
                                   f"This instance '{instance_id}' is not in a state from which "
                                   f"it can be {verb}.")
                if stop and self._root(request, found.image, forward) == "instance-store":
                    raise ApiError(400, "UnsupportedOperation",
                                   f"The instance '{instance_id}' does not have an 'ebs' root "
                                   "device type and cannot be stopped.")
            response = forward(request)
            if response.status != 200:
                return response
            now = time.monotonic()
            for instance_id, found in before.items():
                if stop and found.state == "running":
                    self._until[instance_id] = ("stopping", now + self.stop_seconds)
                elif not stop and found.state == "stopped":
                    self._until[instance_id] = ("pending", now + self.start_seconds)
            return self._answer(response, before, stop)

    def _answer(self, response: Response, before: dict[str, Shown], stop: bool) -> Response:
        root = ET.fromstring(response.body)
        for item in root.iter():
            if _local(item.tag) != "item" or _child(item, "currentState") is None:
                continue
            previous = before.get(_text(item, "instanceId"))
            if previous is None:
                continue
            moving = {"running": "stopping", "stopping": "stopping"} if stop else \
                {"stopped": "pending", "pending": "pending"}
            current = moving.get(previous.state, previous.state)
            for name, state in (("previousState", previous.state), ("currentState", current)):
                node = _child(item, name)
                assert node is not None
                for part, value in (("code", str(CODES[state])), ("name", state)):
                    leaf = _child(node, part)
                    if leaf is not None:
                        leaf.text = value
        return Response(response.status, _serialise(root), response.headers)

    def describe_instances(self, request: Request, forward: Forward) -> Response:
        """`DescribeInstances` with each instance's state and root device as EC2 shows them; an
        `instance-state-name` filter matches the states shown."""
        form, wanted = _without_state_filter(form_of(request))
        response = forward(with_form(request, form) if wanted is not None else request)
        if response.status != 200:
            return response
        root = ET.fromstring(response.body)
        with self.lock:
            for reservations in [n for n in root.iter() if _local(n.tag) == "reservationSet"]:
                for reservation in list(reservations):
                    instances = _child(reservation, "instancesSet")
                    if instances is None:
                        continue
                    for instance in list(instances):
                        if not self._rewrite(request, instance, forward, wanted):
                            instances.remove(instance)
                    if not len(instances):
                        reservations.remove(reservation)
        return Response(response.status, _serialise(root), response.headers)

    def _rewrite(self, request: Request, instance: ET.Element, forward: Forward,
                 wanted: set[str] | None) -> bool:
        """Show the instance as EC2 would; False when the state filter leaves it out."""
        state_node = _child(instance, "instanceState")
        if state_node is None:
            return True
        moto_state = _text(state_node, "name")
        state = self.shown(_text(instance, "instanceId"), moto_state)
        if wanted is not None and state not in wanted:
            return False
        for part, value in (("code", str(CODES.get(state, 0))), ("name", state)):
            leaf = _child(state_node, part)
            if leaf is not None:
                leaf.text = value
        root_type = _child(instance, "rootDeviceType")
        if root_type is not None:
            root_type.text = self._root(request, _text(instance, "imageId"), forward) or \
                root_type.text
        return True

    # --- reads from moto ---------------------------------------------------------------------

    def _describe(self, request: Request, ids: list[str], forward: Forward) -> dict[str, Shown]:
        """The instances among `ids` as EC2 would show them now (under `lock`)."""
        if not ids:
            return {}
        form = {"Action": ["DescribeInstances"], "Version": ["2016-11-15"],
                "Filter.1.Name": ["instance-id"]}
        form.update({f"Filter.1.Value.{n}": [i] for n, i in enumerate(ids, 1)})
        answer = forward(with_form(_signed(request), form))
        found: dict[str, Shown] = {}
        for node in ET.fromstring(answer.body).iter():
            if _local(node.tag) == "item" and _child(node, "instanceState") is not None:
                state_node = _child(node, "instanceState")
                assert state_node is not None
                instance_id = _text(node, "instanceId")
                found[instance_id] = Shown(self.shown(instance_id, _text(state_node, "name")),
                                           _text(node, "imageId"))
        return found

    def _root(self, request: Request, image_id: str, forward: Forward) -> str:
        """The root device type of an image ("" when moto does not know it); images never change
        it, so each is asked once."""
        if not image_id:
            return ""
        if image_id not in self._roots:
            form = {"Action": ["DescribeImages"], "Version": ["2016-11-15"],
                    "ImageId.1": [image_id]}
            answer = forward(with_form(_signed(request), form))
            root = ""
            if answer.status == 200:
                for node in ET.fromstring(answer.body).iter():
                    if _local(node.tag) == "rootDeviceType":
                        root = node.text or ""
            self._roots[image_id] = root
        return self._roots[image_id]


def _without_state_filter(form: dict[str, list[str]]) -> tuple[dict[str, list[str]], set[str] | None]:
    """The form without its `instance-state-name` filter (the others renumbered from 1, as moto
    reads them), and the states that filter asks for (None: no such filter)."""
    filters: dict[int, dict[str, list[str]]] = {}
    kept: dict[str, list[str]] = {}
    for key, values in form.items():
        parts = key.split(".", 2)
        if parts[0] == "Filter" and len(parts) == 3 and parts[1].isdigit():
            filters.setdefault(int(parts[1]), {})[parts[2]] = values
        else:
            kept[key] = values
    wanted: set[str] | None = None
    number = 0
    for _, fields in sorted(filters.items()):
        if fields.get("Name") == ["instance-state-name"]:
            asked = {v[0] for k, v in fields.items() if k.startswith("Value.")}
            wanted = asked if wanted is None else wanted & asked
            continue
        number += 1
        kept.update({f"Filter.{number}.{k}": v for k, v in fields.items()})
    return kept, wanted


def _signed(request: Request) -> Request:
    """A request carrying the caller's headers (moto reads the account and region from them)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return Request(method="POST", path="/", query={}, headers=headers, body=b"")
