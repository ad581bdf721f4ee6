"""Worker processes of ``bastion serve --workers N`` end with the process that started them.

uvicorn's supervisor starts the workers and restarts those that die, but a worker does not
watch its supervisor: when the supervisor is killed with SIGKILL (the OOM killer, ``kill -9``
of the main pid by a process manager that does not kill the whole group), its workers go on
serving on the inherited socket, unsupervised, holding their database connections, and a
restarted ``bastion serve`` cannot bind the port they hold. On Linux each worker therefore asks
the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and shuts down gracefully
like any stopped worker. Elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

from bastion.logs import get_logger

log = get_logger("bastion.serve")
_PR_SET_PDEATHSIG = 1


def end_with_supervisor() -> None:
    """In a worker process: SIGTERM this process when its parent dies (Linux), also when the
    parent died before the request was made."""
    parent = multiprocessing.parent_process()
    if sys.platform != "linux" or parent is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0
    except (OSError, AttributeError):
        failed = True
    if failed:
        log.warning(
            "this worker cannot ask to be stopped with its supervisor (prctl failed): if the "
            "supervisor is killed, stop the workers yourself (kill the process group)"
        )
        return
    if os.getppid() != parent.pid:  # the supervisor died before the request
        os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["end_with_supervisor"]
