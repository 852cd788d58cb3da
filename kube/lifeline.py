"""A child of `kube up` dies with it, even when `kube up` is killed with SIGKILL.

`kube up` stops its children itself on every ending it sees (signals, a closed pipe, its
own exceptions), but SIGKILL (or the OOM killer) gives it no chance. For that one the
kernel does it: each child asks, between fork and exec, to be sent SIGKILL when its
parent dies (Linux's PR_SET_PDEATHSIG, kept across exec). The kernel's word needs no
thread polling getppid() in the manager and the workers, and reaches a child stuck in a
blocking call. SIGKILL rather than SIGTERM: no one is left to escalate if a child's
graceful stop hangs, and the manager and workers are built to survive being killed
(their broker deliveries are redelivered, the store is transactional).

The death signal is sent when the *thread* that forked the child ends, so the children
must be started from the main thread (`kube up` does). Elsewhere than Linux, nothing
is done: the children then notice only the closed pipe of their output.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for Popen that ties the child's life to this process; None where the
    platform has no way. Popen must be called while no other thread runs: a preexec_fn
    in a process with threads may deadlock in the child (the Python docs' warning)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def tie() -> None:  # runs in the child, after fork, before exec
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)  # the tie is not made: a child that could outlive us must not run
        if os.getppid() != parent:  # the parent died before the tie was made
            os._exit(1)

    return tie
