"""Child processes that never outlive their parent: own session (Ctrl-C reaches only the parent,
which stops them in order) plus PR_SET_PDEATHSIG, so the kernel sends SIGTERM if the parent dies."""

from __future__ import annotations

import ctypes
import signal
import subprocess

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the parent's signal handlers still stop children
        pass


def spawn(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **kw)
