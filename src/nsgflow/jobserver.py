"""A local job server: jobs run in forks of one process that has already imported nsgflow's libraries.

Each job of a local run is a new Python process, and its imports (numpy,
pandas, sep, scipy, astropy, matplotlib and nsgflow itself) cost the same
whatever the frame's size: more than a small frame's whole work (commit
172c1bb has the measurements). For a local run the workflow starts one
server (:func:`start`, from the Snakefile's ``onstart``) that imports them
once and then waits on a Unix socket in a private temporary folder. A job's
script sends it the stage to run and its arguments (:func:`run_step`); the
server forks, and the fork runs the stage with the job's working folder,
environment, standard output and error, and exits with the stage's status,
which the job's process then exits with.
Snakemake still starts, times and tracks one process per job, and every file
is written as it is without a server.

The job runs the stage itself when there is no server (cluster
jobs, ``NSGFLOW_JOBSERVER=off``, a run from another tool, a server that did
not start), when the job's Python environment or nsgflow source differs
from the server's (:func:`fingerprint`), or when the arguments are not plain
data. If the job's process ends (Snakemake stops it), the server kills the
fork; if the server ends, it kills its forks, and their jobs fail.

Snakemake's ``benchmark`` files time a job's process: their wall times are
right, but memory and CPU are those of the waiting process, so a fork logs its
own peak memory and CPU time as its last line.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

__all__ = ["fingerprint", "run_step", "serve", "start", "stop"]

#: Environment variable holding the server's socket path; set for the jobs of a local run. Set it to
#: ``off`` before a run to run every job in its own process, without a server.
SOCKET_ENV = "NSGFLOW_JOBSERVER"
#: Seconds :func:`start` waits for the server to listen.
START_TIMEOUT_S = 60.0
#: Modules the server imports before it listens: those of every stage and of the graphs.
PRELOAD = (
    "nsgflow.pipeline",
    "nsgflow.diagnostics",
    "nsgflow.provenance",
    "nsgflow.summary",
    "nsgflow.blink",
    "astropy.io.fits",
    "scipy.spatial",
    "scipy.optimize",
    "scipy.signal",  # 0.8 s to import: a third of a matched-photometry job
)
#: One thread per library, as Snakemake gives a one-thread job; forks must not inherit thread pools.
SINGLE_THREAD = {
    key: "1" for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
}
_HEADER = struct.Struct("!I")


def fingerprint() -> str:
    """The Python environment and nsgflow's source files (sizes, modification times).

    A server runs only the jobs with the same: not those of a ``--use-conda``
    environment, which has its own libraries, nor those of an edited nsgflow.
    """
    folder = Path(__file__).parent
    parts = [sys.prefix, sys.version, str(folder)]
    for path in sorted(folder.glob("*.py")):
        info = path.stat()
        parts.append(f"{path.name}:{info.st_size}:{info.st_mtime_ns}")
    return "|".join(parts)


def _framed(message: dict) -> bytes:
    """A message as sent: its JSON's length, then the JSON. TypeError if it is not plain data."""
    body = json.dumps(message).encode()
    return _HEADER.pack(len(body)) + body


def _read(conn: socket.socket, size: int, fds: list[int] | None = None) -> bytes:
    """Exactly ``size`` bytes (fewer if the peer closed); the first read also takes up to 2 descriptors."""
    data = b""
    while len(data) < size:
        if fds is not None and not data:
            chunk, received, _, _ = socket.recv_fds(conn, size, 2)
            fds.extend(received)
        else:
            chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _receive(conn: socket.socket, fds: list[int] | None = None) -> dict | None:
    """One message; None if the peer closed first. ``fds`` gets the descriptors sent with it."""
    head = _read(conn, _HEADER.size, fds)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    body = _read(conn, size)
    return json.loads(body) if len(body) == size else None


def run_step(log_path: str, step: str, *args: Any, **kwargs: Any) -> None:
    """Run stage ``step`` (``"module.function"``) as :func:`nsgflow.pipeline.run_step` does, in the server.

    Exits with the stage's status when the server ran it; runs it in this
    process when the server cannot (see the module's description).
    """
    path = os.environ.get(SOCKET_ENV, "off")
    if path != "off":
        status = _ask(path, {"log": str(log_path), "step": step, "args": args, "kwargs": kwargs})
        if status is not None:
            if status:
                sys.exit(status)
            return
    _run_here(str(log_path), step, args, kwargs)


def _run_here(log_path: str, step: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Stage ``step`` (``"module.function"``) in this process, by :func:`nsgflow.pipeline.run_step`."""
    from nsgflow.pipeline import run_step as run_stage

    module, name = step.rsplit(".", 1)
    run_stage(log_path, getattr(import_module(module), name), *args, **kwargs)


def _ask(path: str, request: dict) -> int | None:
    """The status of the stage the server ran; None if it did not start it."""
    try:
        data = _framed({**request, "fingerprint": fingerprint(), "cwd": os.getcwd(), "env": dict(os.environ)})
    except (TypeError, ValueError):  # not plain data
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(path)
            socket.send_fds(conn, [data], [1, 2])  # the job's stdout and stderr go with the request
            reply = _receive(conn)
        except OSError:
            return None
        if not reply or "started" not in reply:
            return None
        try:
            reply = _receive(conn)
        except OSError:
            reply = None
    if reply is None or "status" not in reply:
        print("nsgflow: the job server stopped during this job; run the workflow again", file=sys.stderr)
        return 1
    return int(reply["status"])


def _run_fork(request: dict, fds: list[int]) -> int:
    """In the fork: the job's folder, environment and output, then the stage; its exit status."""
    import logging
    import resource

    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for target, fd in zip((1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({**request["env"], **SINGLE_THREAD})
    status = 0
    try:
        _run_here(request["log"], request["step"], request["args"], request["kwargs"])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        print(f"nsgflow job server: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    logging.getLogger("nsgflow").info(
        "job process (forked by the job server): peak RSS %.0f MB, CPU %.2f s",
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def serve(path: str, parent: int, idle_s: float = 600.0) -> None:
    """Import :data:`PRELOAD`; run jobs in forks until ``parent`` ends or nothing comes for ``idle_s``."""
    os.environ.update(SINGLE_THREAD)
    for module in PRELOAD:
        import_module(module)
    _draw_once()
    gc.freeze()  # the forks' garbage collections leave the server's objects, and their memory pages, alone
    own = fingerprint()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    os.rename(path + ".new", path)  # clients see the socket once it listens
    listener.listen(16)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, ("listener", None))
    selector.register(os.pidfd_open(parent), selectors.EVENT_READ, ("parent", None))
    running: dict[int, tuple[socket.socket, int]] = {}  # pid -> (client connection, pidfd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            events = selector.select(timeout=idle_s)
            if not events and not running:
                return
            for key, _ in events:
                kind, pid = key.data
                if kind == "parent":
                    return
                if kind == "listener":
                    _accept(listener, selector, running, own)
                elif kind == "child":
                    conn, pidfd = running.pop(pid)
                    selector.unregister(pidfd)
                    if conn in selector.get_map():  # not if the job's process ended first
                        selector.unregister(conn)
                    os.close(pidfd)
                    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                    with contextlib.suppress(OSError):  # the job's process may have ended
                        conn.sendall(_framed({"status": status if status >= 0 else 1}))
                    conn.close()
                elif kind == "client" and not key.fileobj.recv(1, socket.MSG_PEEK):
                    selector.unregister(key.fileobj)
                    os.kill(pid, signal.SIGKILL)  # the job's process ended: so does its fork
    finally:
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        listener.close()
        Path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder start() made, if empty: e.g. Snakemake was killed
            os.rmdir(os.path.dirname(path))


def _draw_once() -> None:
    """Draw and encode a small graph, so that matplotlib's first-use setup (fonts, renderer) is done once."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    axes = fig.add_subplot()
    axes.plot([0, 1], [0, 1], "o", label="x")
    axes.set_title("x")
    axes.legend()
    fig.savefig(io.BytesIO(), format="png")


def _accept(listener: socket.socket, selector: selectors.BaseSelector, running: dict, own: str) -> None:
    conn, _ = listener.accept()
    conn.settimeout(10)
    fds: list[int] = []
    try:
        request = _receive(conn, fds)
    except (OSError, ValueError):
        request = None
    if not request or request.get("fingerprint") != own or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        conn.close()  # the job runs the stage itself
        return
    pid = os.fork()
    if pid == 0:  # the fork: never back into the server's loop
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for other in [*selector.get_map().values()]:  # the server's descriptors: not the fork's
                os.close(other.fd)
            conn.close()
            status = _run_fork(request, fds)
        finally:
            os._exit(status)
    for fd in fds:
        os.close(fd)
    conn.settimeout(None)
    try:
        conn.sendall(_framed({"started": pid}))
    except OSError:
        os.kill(pid, signal.SIGKILL)
    pidfd = os.pidfd_open(pid)
    running[pid] = (conn, pidfd)
    selector.register(pidfd, selectors.EVENT_READ, ("child", pid))
    selector.register(conn, selectors.EVENT_READ, ("client", pid))


#: The server :func:`start` started in this process (Snakemake's), if any, and its socket's path.
_SERVER: tuple[subprocess.Popen, str] | None = None


def start(local: bool) -> None:
    """Start a server for this run's jobs if they run on this machine (``local``); call from ``onstart``.

    Returns once the server listens (its imports take a second or two), so
    that every job of the run goes through it; the socket's path goes in
    :data:`SOCKET_ENV`, which the jobs inherit. If the server does not start
    within :data:`START_TIMEOUT_S`, the jobs run in their own processes.
    """
    global _SERVER
    if (
        not local
        or _SERVER is not None
        or os.environ.get(SOCKET_ENV) == "off"
        or not hasattr(os, "pidfd_open")
    ):
        return
    folder = tempfile.mkdtemp(prefix="nsgflow-jobs-")  # private: only this user can connect
    path = os.path.join(folder, "socket")
    server = subprocess.Popen(
        [sys.executable, "-m", "nsgflow.jobserver", path, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **SINGLE_THREAD},
    )
    _SERVER = server, path
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(path):
        if server.poll() is not None or time.monotonic() > deadline:
            print("nsgflow: the job server did not start; every job runs in its own process", file=sys.stderr)
            stop()
            return
        time.sleep(0.02)
    os.environ[SOCKET_ENV] = path


def stop() -> None:
    """Stop the server :func:`start` started, if any, and remove its folder.

    Call from ``onsuccess`` and ``onerror``.
    """
    global _SERVER
    if _SERVER is None:
        return
    server, path = _SERVER
    _SERVER = None
    os.environ.pop(SOCKET_ENV, None)
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
