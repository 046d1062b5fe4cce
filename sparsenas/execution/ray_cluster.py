"""The Ray cluster a search runs on: a private local Ray (`LocalRay`) or a running cluster joined at
`execution.address` (checked first with `_probe`), the resources a trial needs checked against its live nodes,
and how many workers fit there. Used by the `ray` and `tune` executors.

Without `execution.address` a private local Ray is started (see `LocalRay`: loopback only, token auth, its
own temp dir) and shut down by its `stop()`; with `--address HOST:PORT` the driver joins that cluster, after
checking within `execution.start_timeout_s` that a Ray GCS answers there, and leaves it running. If Ray is
already initialised in this process (e.g. by a test), it is used as is. `execution.workers` unset (None):
as many workers as trials fit on the cluster's live nodes at once.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import socket
import tempfile

import grpc
import ray
from ray._private import ray_constants
from ray._private.grpc_utils import init_grpc_channel
from ray._raylet import AuthenticationTokenLoader, Config
from ray.core.generated.gcs_service_pb2 import GetClusterIdRequest
from ray.core.generated.gcs_service_pb2_grpc import NodeInfoGcsServiceStub

from ..errors import ConfigError

QUIET = {"logging_level": logging.WARNING, "log_to_driver": True}
LOOPBACK = "127.0.0.1"


def connect(execution: dict) -> "LocalRay | None":
    """Initialise Ray for this driver and check that a trial fits on some node; the `LocalRay` this call
    started (the caller stops it), else None. Every start failure is a ConfigError (one line) that leaves no
    Ray started by this call."""
    if ray.is_initialized():
        local = None
    elif execution.get("address"):
        local = _join(execution["address"], execution.get("start_timeout_s", 60.0))
    else:
        need = math.ceil((execution.get("workers") or 0) * execution["cpus_per_trial"])
        local = LocalRay(max(os.cpu_count() or 1, need))
    try:
        check_resources(execution)
    except ConfigError:
        if local is not None:
            local.stop()
        raise
    return local


STALE_PREFIX = "snray-"  # short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes


class LocalRay:
    """A private Ray on this machine for one search.

    Started with `address="local"` (RAY_ADDRESS and the `ray_current_cluster` file are ignored) in a temp
    dir of its own inside a 0700 one (Ray makes its temp dir world-writable; removed by `stop`, or by the next
    local Ray once its search was killed: `remove_stale_dirs`). Its node address is 127.0.0.1, which Ray swaps
    for the host's address; with that swap off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the macOS/Windows
    default) every Ray gRPC server (GCS, raylet and object manager, this driver, the workers) and the
    runtime-env agent listen on loopback only. No dashboard. Token auth is on explicitly
    (RAY_AUTH_MODE=token) with a fresh token in a 0600 file of the temp dir (RAY_AUTH_TOKEN_PATH), never
    `~/.ray/auth_token`. These variables are set in this process for the life of the local Ray (the Ray
    processes inherit them) and restored by `stop`."""

    def __init__(self, num_cpus: int):
        remove_stale_dirs()
        self.dir = tempfile.mkdtemp(prefix=f"{STALE_PREFIX}{os.getpid()}-")
        token = os.path.join(self.dir, "auth_token")
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token, "RAY_AUTH_TOKEN": None,
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self._saved_env = {key: os.environ.get(key) for key in env}
        self._saved_cluster_flag = ray_constants.ENABLE_RAY_CLUSTER
        _set_env(env)
        ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: the driver keeps 127.0.0.1 too
        _reload_auth()
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK,
                     _temp_dir=os.path.join(self.dir, "r"), **QUIET)
        except Exception as e:  # noqa: BLE001 — any start failure is one line
            self.stop()
            raise ConfigError(f"cannot start a local Ray: {first_line(e)}") from None

    def stop(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        _set_env(self._saved_env)
        ray_constants.ENABLE_RAY_CLUSTER = self._saved_cluster_flag
        _reload_auth()
        shutil.rmtree(self.dir, ignore_errors=True)



def remove_stale_dirs(root: str | None = None) -> list[str]:
    """Remove the temp dirs (auth token, Ray session files) that local Rays of this user left when their search
    was killed (`stop` never ran): those whose driver process is gone. Returns what was removed."""
    root = root or tempfile.gettempdir()
    removed = []
    for name in os.listdir(root):
        pid, dash, _ = name.removeprefix(STALE_PREFIX).partition("-")
        path = os.path.join(root, name)
        if not (name.startswith(STALE_PREFIX) and dash and pid.isdigit()) or os.stat(path).st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except PermissionError:
            pass  # alive (another user's pid namespace entry): keep
    return removed


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _reload_auth() -> None:
    """Make this process's Ray core read RAY_AUTH_MODE and the token again (both are cached)."""
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _join(address: str, timeout: float) -> None:
    """Connect this driver to the cluster at `address`; ConfigError unless a Ray GCS answers within
    `timeout` seconds (ray.init alone retries for minutes against a service that is not Ray)."""
    _probe(address, timeout)
    try:
        ray.init(address=address, **QUIET)
    except Exception as e:  # noqa: BLE001 — e.g. AuthenticationError, ConnectionError, TimeoutError
        if ray.is_initialized():
            ray.shutdown()
        raise ConfigError(f"cannot join the Ray cluster at {address}: {first_line(e)}") from None


def _probe(address: str, timeout: float) -> None:
    """ConfigError unless a Ray GCS at HOST:PORT answers GetClusterId within `timeout` s with this
    process's auth settings; other address forms ("auto", "ray://...") are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"no Ray cluster at {address} ({e.strerror or e}); start one with 'ray start --head'") \
            from None
    token_auth = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    if token_auth and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        raise ConfigError(f"RAY_AUTH_MODE=token but no Ray auth token here for {address}: copy the cluster's "
                          "token to ~/.ray/auth_token (or set RAY_AUTH_TOKEN_PATH)")
    channel = init_grpc_channel(address)
    try:
        NodeInfoGcsServiceStub(channel).GetClusterId(GetClusterIdRequest(), timeout=timeout)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            how = "its token does not match" if token_auth else "set RAY_AUTH_MODE=token and copy its token here"
            raise ConfigError(f"the Ray cluster at {address} requires token auth: {how}") from None
        raise ConfigError(f"{address} does not answer as a Ray cluster within execution.start_timeout_s="
                          f"{timeout:g} s ({e.code().name})") from None
    finally:
        channel.close()


def check_resources(execution: dict) -> None:
    """ConfigError when no live node could ever hold one trial's CPUs and GPUs."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for key, res in (("cpus_per_trial", "CPU"), ("gpus_per_trial", "GPU")):
        want = execution[key]
        have = max((n.get(res, 0.0) for n in nodes), default=0.0)
        if want > have:
            raise ConfigError(f"execution.{key}={want:g} but the largest Ray node has {have:g} {res}")


def workers(execution: dict) -> int:
    """`execution.workers`, or when it is None as many trials as fit at once on the live nodes (each node:
    its CPUs // cpus_per_trial, and its GPUs // gpus_per_trial when trials take GPUs), at least 1."""
    if execution.get("workers"):
        return execution["workers"]
    fits = 0
    for node in (n["Resources"] for n in ray.nodes() if n.get("Alive")):
        per_node = [node.get(res, 0.0) / execution[key] for key, res in
                    (("cpus_per_trial", "CPU"), ("gpus_per_trial", "GPU")) if execution[key] > 0]
        fits += math.floor(min(per_node) + 1e-9)
    return max(1, fits)


def worker_id() -> str:
    """This Ray worker as `host/node-id:pid` (node id shortened to 12 hex digits)."""
    node = ray.get_runtime_context().get_node_id()
    return f"{socket.gethostname()}/{node[:12]}:{os.getpid()}"


def node_of(worker: str) -> str:
    """The node id part of a `worker_id()` string."""
    return worker.rsplit(":", 1)[0].rsplit("/", 1)[-1]


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__



__all__ = ["LocalRay", "connect", "check_resources", "workers", "worker_id", "node_of", "first_line"]
