"""Starting (or joining) Ray for edgevit's scale-out commands."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from edgevit.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError("edgevit matrix/evaluate run on Ray, which is not installed; install it with "
                                     "pip install 'edgevit[scale]' (or pass --inline to run in this process, "
                                     "one cell or shard after another)") from e
    return ray


def local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[object]:
    """Yield the ``ray`` module, connected: to ``address`` (a running cluster, ``ray start --head``) or to a new
    local Ray started here with ``num_cpus`` CPUs (and shut down afterwards; ``address="local"``, because a bare
    ``ray.init()`` joins whatever cluster ``RAY_ADDRESS`` or the machine's last ``ray start`` names, and refuses
    ``num_cpus`` there). A session the caller already started is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except ConnectionError as e:
        raise ConfigError(
            f"could not connect to the Ray cluster at {address}: {e}. Either no cluster runs there (start one with "
            "`ray start --head` and pass the address it prints, or drop --address for a local Ray), or it uses "
            "token authentication (RAY_AUTH_MODE=token) and this machine lacks its token or has another one "
            "(\"InvalidAuthToken\" in the log above): run `ray get-auth-token` on the head node and set "
            "RAY_AUTH_TOKEN to it here, or copy the head's ~/.ray/auth_token") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def node_name() -> str:
    """The machine a task runs on, as the report shows it."""
    import socket

    return socket.gethostname()
