"""A stop the user asked for (Ctrl-C, SIGTERM), remembered until the command ends.

The signal's exception is raised wherever the main thread happens to be. Inside a finalizer (an object's
``__del__``, a generator being closed, a garbage-collection callback) Python prints it as "Exception ignored" and
carries on (after printing a traceback), so the command would run on as if never asked to stop. The handler
therefore also remembers the stop, the finetune loop asks here every step (``check``) and raises it again, and the
swallowed one is not printed: the command still ends with its one line.
"""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import NoReturn


class Terminated(BaseException):
    """SIGTERM, turned into an exception so a command ends like it does on Ctrl-C. A BaseException, as
    KeyboardInterrupt is: a library's ``except Exception`` (a fallback, a logging handler) must not swallow it and
    let the command run on."""


_asked: type[BaseException] | None = None


def _on_signal(signum, frame):
    global _asked
    _asked = KeyboardInterrupt if signum == signal.SIGINT else Terminated
    raise _asked()


def check() -> None:
    """Raise the stop that was asked for, if any (a no-op outside ``handled``: a Ray worker, a library call)."""
    if _asked is not None:
        raise _asked()


@contextlib.contextmanager
def handled():
    """SIGTERM and Ctrl-C raise (Terminated, KeyboardInterrupt) and are remembered for ``check``; on leaving, the
    caller's handlers are put back and the stop is forgotten (a command run in-process: tests, a notebook). Ctrl-C
    keeps the caller's handler unless it is Python's own (a runner that ignores SIGINT keeps ignoring it)."""
    global _asked
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous_hook = sys.unraisablehook

    def unraisable(u):  # a stop swallowed in a finalizer: raised again by ``check``, not printed
        if _asked is None or not isinstance(u.exc_value, (KeyboardInterrupt, Terminated)):
            previous_hook(u)

    sys.unraisablehook = unraisable
    signal.signal(signal.SIGTERM, _on_signal)
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = previous_hook
        _asked = None


def exit_with(code: int) -> NoReturn:
    """End the command with ``code`` after a handled stop. A Ctrl-C that passed through code run by ``PyRun_*``
    (an extension module evaluating Python in its import, pybind11's ``exec``) leaves CPython believing the
    KeyboardInterrupt went unhandled, however it was handled since, and CPython then ends the process by SIGINT
    instead of the code (Modules/main.c, ``_Py_UnhandledKeyboardInterrupt``; seen here as -2 instead of 130). Any
    ``PyRun_*`` call clears that flag before it runs, so an empty one does."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"")
    except (ImportError, AttributeError):  # not CPython: no such flag
        pass
    raise SystemExit(code)
