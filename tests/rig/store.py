"""The API server's object store: what a write may change, and what it changes on its own.

kmock's ``KubernetesEmulator`` merges whatever a client sends into its objects. Real kopf
depends on the rules a real API server applies, so the store applies them instead, in
kmock's own ``ObjectsArray`` (so ``kube.objects[...].history`` shows every version):

- every object gets ``uid``, ``creationTimestamp``, ``generation`` and a cluster-wide,
  monotonic ``resourceVersion``; ``generation`` moves only when something other than
  metadata (and status, for resources with a status subresource) changes; a write that
  changes nothing changes no resourceVersion and sends no watch event;
- merge-patch and JSON-patch; a failed JSON-patch ``test`` is a 422, a stale
  ``resourceVersion`` a 409, as kopf expects;
- the ``status`` subresource: writes to ``.../status`` change only status, writes to the
  object itself leave status alone;
- ``generateName``, finalizers and ``deletionTimestamp``; DELETED once the last
  finalizer is gone.

Every change goes to a :class:`~tests.rig.watch.ChangeLog` for the watches.
"""

from __future__ import annotations

import copy
import datetime
import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import jsonpatch
import jsonpointer
import kmock

from tests.rig.errors import api_error, json_body
from tests.rig.selectors import Scope
from tests.rig.watch import ChangeLog

__all__ = ["Key", "ObjectStore", "group_version", "merge_patch"]

Key = tuple[kmock.resource, str | None, str]  # how kmock's ObjectsArray files objects

# Fields the API server owns: clients cannot set or change them through writes.
_SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName
_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def group_version(resource: kmock.resource) -> str:
    """The ``apiVersion`` of a resource's objects: ``v1`` or ``group/version``."""
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without_system_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in _SYSTEM_METADATA}


def _json_object(candidate: Any) -> dict[str, Any]:
    """``candidate`` if it is an object with an object (or no) metadata; 400 otherwise."""
    if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata", {}), dict):
        raise api_error(400, "BadRequest", "the object must be a JSON object")
    return candidate


def _name(body: dict[str, Any]) -> str:
    """The name a new object gets: its own, or one generated from ``generateName``."""
    meta = body.get("metadata") or {}
    name = meta.get("name")
    if not name and meta.get("generateName"):
        suffix = "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
        name = f"{meta['generateName']}{suffix}"
    if not name or not _NAME.match(name):
        raise api_error(422, "Invalid", f"metadata.name: invalid or missing: {name!r}")
    return str(name)


def _patched(old: dict[str, Any], patch: Any, content_type: str) -> Any:
    """``old`` with a merge-patch or a JSON-patch applied (a copy)."""
    if content_type == _MERGE_PATCH:
        return merge_patch(copy.deepcopy(old), patch)
    if content_type != _JSON_PATCH:
        raise api_error(415, "UnsupportedMediaType", f"the rig cannot apply {content_type!r}")
    try:
        return jsonpatch.apply_patch(copy.deepcopy(old), patch)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise api_error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from None


def _refuse_stale(old: dict[str, Any], candidate: dict[str, Any]) -> None:
    """A write that names a resourceVersion must name the current one (optimistic locking)."""
    given = candidate.get("metadata", {}).get("resourceVersion")
    if given not in (None, old["metadata"]["resourceVersion"]):
        raise api_error(409, "Conflict", "the object has been modified; please apply your changes")


def _status_written(old: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """A write to ``.../status``: the candidate's status, everything else as it was."""
    new = {k: v for k, v in old.items() if k != "status"}
    if "status" in candidate:
        new["status"] = candidate["status"]
    return new


def _object_written(
    old: dict[str, Any], candidate: dict[str, Any], *, with_status: bool
) -> dict[str, Any]:
    """A write to the object: the candidate, but the server's fields (and status) kept."""
    new = {k: v for k, v in candidate.items() if not (with_status and k == "status")}
    if with_status and "status" in old:
        new["status"] = old["status"]
    old_meta = old["metadata"]
    kept = {k: old_meta[k] for k in _SYSTEM_METADATA if k in old_meta}
    new["metadata"] = _without_system_fields(candidate.get("metadata", {})) | kept
    new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
    return new


def _spec_changed(old: dict[str, Any], new: dict[str, Any], *, with_status: bool) -> bool:
    """Anything but metadata (and a status subresource) changed: the generation moves."""
    ignored = {"metadata", "status"} if with_status else {"metadata"}

    def content(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ignored}

    return content(new) != content(old)


def _deletion_completes(obj: dict[str, Any]) -> bool:
    """Marked for deletion and no finalizer left to hold it."""
    return bool(obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"))


class ObjectStore:
    """Objects by the API server's rules, kept in kmock's array and its discovery."""

    def __init__(self, objects: kmock.ObjectsArray, resources: kmock.ResourcesArray) -> None:
        self.objects = objects
        self.resources = resources
        self.changes = ChangeLog()
        self._rv = 0

    # -- what a request may ask for ---------------------------------------------------

    def info(self, request: kmock.Request, verb: str) -> kmock.ResourceInfo:
        """The resource a request is about, if it exists and serves ``verb``; 404/405 if not."""
        resource = request.resource
        if resource is None or resource not in self.resources:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        info = self.resources[resource]
        if verb not in info.verbs:
            raise api_error(
                405, "MethodNotAllowed", f"{verb} is not supported on {resource.plural}"
            )
        if request.subresource not in (None, "status"):
            raise api_error(404, "NotFound", f"the rig serves no {request.subresource} subresource")
        if request.subresource == "status" and "status" not in info.subresources:
            raise api_error(404, "NotFound", f"{resource.plural} has no status subresource")
        if request.namespace is not None and not info.namespaced:
            raise api_error(404, "NotFound", f"{resource.plural} is not namespaced")
        return info

    def existing(self, request: kmock.Request, verb: str) -> tuple[Key, dict[str, Any]]:
        """The object a request names, with its key; 404 if there is none (or no more)."""
        self.info(request, verb)
        assert request.resource is not None  # info() answered 404 otherwise
        key = (request.resource, request.namespace, request.name or "")
        if key not in self.objects or self.objects[key].deleted:
            raise api_error(404, "NotFound", f"{request.name!r} not found")
        return key, self.objects[key].raw

    # -- reads -----------------------------------------------------------------------

    def fetch(self, request: kmock.Request) -> dict[str, Any]:
        """GET of one object."""
        return self.existing(request, "get")[1]

    def selected(self, resource: kmock.resource, scope: Scope) -> Iterator[tuple[Key, Any]]:
        """The live objects of ``resource`` in ``scope``, in the store's order."""
        for key, obj in self.objects.items():
            if key[0] == resource and not obj.deleted and scope.matches(obj.raw):
                yield key, obj.raw

    def list(self, request: kmock.Request) -> dict[str, Any]:
        """A List by namespace and name, with the resourceVersion a watch resumes from."""
        info = self.info(request, "list")
        assert request.resource is not None
        selected = self.selected(request.resource, Scope.of(request))
        ordered = sorted(selected, key=lambda item: (item[0][1] or "", item[0][2]))
        return {
            "apiVersion": group_version(request.resource),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": [obj for _, obj in ordered],
        }

    # -- writes ----------------------------------------------------------------------

    def create(self, request: kmock.Request) -> dict[str, Any]:
        """A new object: named (or its name generated), stamped, and announced as ADDED."""
        info = self.info(request, "create")
        assert request.resource is not None
        body = json_body(request)
        if not isinstance(body, dict):
            raise api_error(400, "BadRequest", "the object must be a JSON object")
        namespace = self._namespace_of_new(request, info, body)
        key = (request.resource, namespace, _name(body))
        if key in self.objects and not self.objects[key].deleted:
            raise api_error(
                409, "AlreadyExists", f"{request.resource.plural} {key[2]!r} already exists"
            )
        obj = self._stamped(key, info, body)
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self.changes.record(key[0], self._rv, "ADDED", obj, None)
        return obj

    def patch(self, request: kmock.Request) -> dict[str, Any]:
        """PATCH: a merge-patch or a JSON-patch, then the rules of every write."""
        key, old = self.existing(request, "patch")
        patch = json_body(request)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        return self._write(request, key, old, _patched(old, patch, content_type))

    def replace(self, request: kmock.Request) -> dict[str, Any]:
        """PUT: the whole object, by the rules of every write."""
        key, old = self.existing(request, "update")
        return self._write(request, key, old, json_body(request))

    def delete(self, request: kmock.Request) -> dict[str, Any]:
        """DELETE: gone at once, or marked for deletion while finalizers hold it."""
        key, old = self.existing(request, "delete")
        meta = old["metadata"]
        if meta.get("deletionTimestamp") and meta.get("finalizers"):
            return old  # already marked, still held
        if meta.get("finalizers"):
            marked = copy.deepcopy(old)
            marked["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            return self._store_version(key, old, marked)
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key].delete()
        self.changes.record(key[0], self._rv, "DELETED", gone, old)
        return gone

    # -- the rules of every write ------------------------------------------------------

    def _namespace_of_new(
        self, request: kmock.Request, info: kmock.ResourceInfo, body: dict[str, Any]
    ) -> str | None:
        """A namespaced object is created in its namespace's URL, and names no other."""
        if not info.namespaced:
            return None
        if request.namespace is None:
            raise api_error(404, "NotFound", "a namespaced object is created in a namespace URL")
        if (body.get("metadata") or {}).get("namespace") not in (None, request.namespace):
            raise api_error(400, "BadRequest", "the object's namespace does not match the URL's")
        return request.namespace

    def _stamped(self, key: Key, info: kmock.ResourceInfo, body: dict[str, Any]) -> dict[str, Any]:
        """A new object as stored: the server's metadata, and no status through a create."""
        resource, namespace, name = key
        obj = {**body, "apiVersion": group_version(resource), "kind": info.kind}
        if "status" in info.subresources:
            obj.pop("status", None)
        identity = {"name": name, "namespace": namespace} if namespace else {"name": name}
        obj["metadata"] = {
            **_without_system_fields(body.get("metadata") or {}),
            **identity,
            "uid": str(uuid.uuid4()),
            "creationTimestamp": _now(),
            "generation": 1,
            "resourceVersion": self._next_rv(),
        }
        return obj

    def _write(
        self, request: kmock.Request, key: Key, old: dict[str, Any], candidate: Any
    ) -> dict[str, Any]:
        """Store a PATCH/PUT result by the API server's rules; return what it answers."""
        candidate = _json_object(candidate)
        _refuse_stale(old, candidate)
        with_status = "status" in self.resources[key[0]].subresources
        if request.subresource == "status":
            new = _status_written(old, candidate)
        else:
            new = _object_written(old, candidate, with_status=with_status)
        if new == old:
            return old  # nothing changed: no new resourceVersion, no event
        if _spec_changed(old, new, with_status=with_status):
            generation = old["metadata"]["generation"] + 1
            new["metadata"] = {**new["metadata"], "generation": generation}
        return self._store_version(key, old, new)

    def _store_version(self, key: Key, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """``new`` as the next version under a new resourceVersion, or its deletion."""
        new["metadata"] = {**new["metadata"], "resourceVersion": self._next_rv()}
        if _deletion_completes(new):
            self.objects[key].delete()  # the last finalizer is gone: the deletion completes
            self.changes.record(key[0], self._rv, "DELETED", new, old)
        else:
            self.objects[key].history.append(new)
            self.changes.record(key[0], self._rv, "MODIFIED", new, old)
        return new

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)
