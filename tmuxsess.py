#!/bin/sh
"""exec" "${TMUXSESS_PYTHON:-python3}" -S -c \
"import sys;s=open(sys.argv[1],'rb').read();exec(s[s.rindex(b'#: boot\n'):]);_boot(s)" "$0" "$@"
tmuxsess: drive interactive terminal programs inside tmux, exactly.

Create a session, send it input, know when the program has answered, read
exactly what it said, check its health, clean it up::

    tmuxsess.py create -n calc --python          # returns once ">>>" is shown
    tmuxsess.py run -s calc -c 'import math; math.factorial(20)'
    2432902008176640000
    tmuxsess.py create -n db --kind sqlite --cmd 'sqlite3 app.db'
    tmuxsess.py run -s db -c 'select count(*) from users;'
    tmuxsess.py capture -s calc -n 20
    tmuxsess.py attach -s calc                   # watch it yourself
    tmuxsess.py kill -s calc
    tmuxsess.py --host box run -s calc -c '6*7'  # on box, through ssh: the same file there

The same operations are methods of an :class:`Engine`, which holds the
settings (state dir, socket dir, tmux binary, lock timeout); the module's
functions use a default engine built from the environment once::

    engine = tmuxsess.Engine(state_dir="/tmp/st", socket_dir="/tmp/so")
    engine.create_session("calc", kind="python")
    r = engine.run("x = 6 * 7\\nprint(x)", session="calc")
    assert r.output == "42\\n" and r.exit_status == 0
    engine.kill_session(session="calc")

Each kind of program is one entry of the table ``PROFILES``: how it starts,
how its prompts are marked, how code is cut into units, what its
continuation prompt is. ``create --kind KIND`` picks one:

    shell   bash; a command's own exit status
    zsh     zsh (the user's rc files, themes); a command's own exit status
    fish    fish (the user's config, prompts); a command's own exit status
    python  python3 REPL; status 1 if it raised; breakpoint() goes to pdb
    ipython IPython; status 1 if a cell raised; blocks are one cell
    pdb     the debugger inside a python session, at (Pdb)
    gdb     gdb, quiet, no pagination
    node    node REPL; status 1 if it threw
    psql    psql; status from its ERROR variable
    sqlite  sqlite3; status 1 for an error sqlite3 logged
    command any other program (--cmd); run needs --prompt REGEX

How it stays exact where shell snippets guess:

* Text goes in through a paste buffer private to each call, so no byte of it is
  read as a tmux key name, flag or command separator.
* Every session this tool creates writes a *transcript*: ``pipe-pane`` copies all
  the program's output to a private file, so "output after this send" is a byte
  offset, never a guess from the screen, and nothing scrolls away.
* Its programs print invisible OSC 133 prompt marks (with the command's status
  and a per-session token so that marks printed by anything else do not
  count), so the tool knows when the program is back at its prompt, how the
  command ended, and when it waits at a continuation prompt.
* Runs on one session queue up behind a lock; sends never wait, so ``-k C-c``
  always gets through.

The file reads top to bottom: the operations as module functions; records
and errors; settings; the transport (``Host``: every tmux call, process and
terminal question, transcript file); the program profiles (``PROFILES``);
the registry; reading output; the engine's parts (``Engine`` is a thin front
over them); the table of operations (``OPERATIONS``), from which both front
ends, MCP and the command line, are built and in whose terms each words its
errors; the section that takes a command to another machine (``relay_main``,
loaded alone for it); the start (``_boot``). No process of the tool's own
outlives a command.

Requires tmux 3.0 or newer and Python 3.8 or newer; standard library only.
"""

from __future__ import annotations  # annotations name argparse, imported only by the CLI

# The docstring's first lines are for /bin/sh (see _boot): not documentation.
__doc__ = __doc__[__doc__.index("tmuxsess: drive"):]

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time

# Names for the type checker only. A command imports what its own path uses
# and no more: typing alone would cost every start about 3 ms, dataclasses 8.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import (IO, Any, Callable, ClassVar, Dict, Iterator, List, Literal, Mapping,
                        NoReturn, Optional, Sequence, Tuple, Type, TypeVar, Union)
    from typing import dataclass_transform  # novermin: read by mypy, never run
else:
    def dataclass_transform() -> "Callable[[type], type]":
        return lambda cls: cls

__version__ = "1.1.0"

__all__ = [
    # the engine and its settings
    "Engine", "Settings", "default_engine",
    # operations on the default engine
    "create_session", "list_sessions", "pane_health", "kill_session",
    "cleanup_sessions", "find_sessions", "repair", "capture", "capture_screen",
    "read_transcript", "attach_command", "send", "wait_for_text", "run", "skill",
    # the table of operations
    "OPERATIONS", "Operation", "Param", "Action",
    # records
    "Session", "Health", "Pane", "SessionStatus", "RunResult", "WaitResult",
    "FoundSession", "Capture", "CreatedSession", "SendResult", "KillResult", "CleanupItem",
    "RepairResult", "Profile", "PROFILES", "Registry", "Server", "Host",
    # errors
    "TmuxsessError", "UsageError", "NameTakenError", "TargetError", "MissingPaneError",
    "TmuxError",
    "NoServerError", "SendError", "NotReadyError", "RegistryError",
    "CorruptRegistryError", "LockTimeoutError", "StateFileError", "UnhealthyError",
    "PaneDeadError", "BusyError",
    # helpers
    "parse_duration", "validate_name", "render", "python_unit", "serve_mcp", "main",
    "relay_main", "RelayError",
]

if __name__ == "__main__":
    # Ctrl-C while this file is still loading: exit 130 quietly, as later on.
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

SESSION_TYPES = ("shell", "python-repl", "debugger", "command")
REGISTRY_VERSION = "1.0"
NAME_RE = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z"
PANE_WIDTH, PANE_HEIGHT = 200, 50
DEFAULT_LOCK_TIMEOUT = 10.0


# ---------------------------------------------------------------------------
# The operations as functions on a default engine
# ---------------------------------------------------------------------------
# Each repeats the Engine method's signature and docstring and calls it on an
# engine made from the environment the first time one is needed. Defaults
# that are numbers live here, once.

READY_TIMEOUT = 15.0   # seconds create waits for the first prompt
RUN_TIMEOUT = 30.0     # seconds a run waits for the prompt
SEND_TIMEOUT = 30.0    # seconds a send's wait waits
WAIT_TIMEOUT = 15.0    # seconds a wait waits
SEND_RETRIES = 3       # retries of a failed delivery
RETRY_INTERVAL = 0.5   # seconds before the first retry; doubled each time
WAIT_LINES = 1000      # lines a whole-pane wait searches
CAPTURE_LINES = 200    # lines a capture returns
MAX_OUTPUT = 1 << 20   # bytes of output a run keeps, the newest

_default: Optional["Engine"] = None


def default_engine() -> "Engine":
    """The engine the module functions use: settings from the environment, read
    the first time it is needed."""
    global _default
    if _default is None:
        _default = Engine()
    return _default


def create_session(name: str, kind: Optional[str] = None, command: Optional[str] = None, *,
                   prompt: Optional[str] = None, socket: Optional[str] = None,
                   window: str = "shell", cwd: Optional[str] = None,
                   env: Optional[Dict[str, str]] = None, norc: bool = False,
                   register: bool = True, wait: bool = True,
                   ready_timeout: float = READY_TIMEOUT) -> "CreatedSession":
    """Start a program in a new detached session; return its record.

    ``kind`` names a profile (``PROFILES``: shell, python, gdb, node, ...);
    ``command`` is a command line to run under it, or without a kind, any
    program (then ``prompt``, a regex of its prompt line, lets ``run`` work
    with it). Returns once the program shows its first prompt (unless
    ``wait`` is false). See ``Engine.create_session``.
    """
    return default_engine().create_session(
        name, kind, command, prompt=prompt, socket=socket, window=window, cwd=cwd, env=env,
        norc=norc, register=register, wait=wait, ready_timeout=ready_timeout)


def list_sessions() -> List["SessionStatus"]:
    """Every registered session with its status: one tmux query per socket."""
    return default_engine().list_sessions()


def pane_health(*, session: Optional[str] = None, socket: Optional[str] = None,
                socket_name: Optional[str] = None, target: Optional[str] = None) -> "Health":
    """The health of one pane: healthy, dead, missing, zombie or server_not_running."""
    return default_engine().pane_health(session=session, socket=socket,
                                        socket_name=socket_name, target=target)


def kill_session(*, dry_run: bool = False, session: Optional[str] = None,
                 socket: Optional[str] = None, socket_name: Optional[str] = None,
                 target: Optional[str] = None) -> "KillResult":
    """Kill the tmux session and remove its registry entry as one operation."""
    return default_engine().kill_session(dry_run=dry_run, session=session, socket=socket,
                                         socket_name=socket_name, target=target)


def cleanup_sessions(*, all: bool = False, older_than: Optional[float] = None,
                     idle: Optional[float] = None, dry_run: bool = False
                     ) -> List["CleanupItem"]:
    """Remove unhealthy sessions (and with ``all``, or ``older_than`` or ``idle``
    seconds, old or idle ones) from the registry, killing those still alive."""
    return default_engine().cleanup_sessions(all=all, older_than=older_than, idle=idle,
                                             dry_run=dry_run)


def find_sessions(*, socket: Optional[str] = None, socket_name: Optional[str] = None,
                  all_sockets: bool = False, query: Optional[str] = None
                  ) -> List["FoundSession"]:
    """tmux sessions on one server, or on every socket the tool knows; registered
    or not."""
    return default_engine().find_sessions(socket=socket, socket_name=socket_name,
                                          all_sockets=all_sockets, query=query)


def repair() -> "RepairResult":
    """Rebuild a corrupt (or lost) registry from the live tmux sessions."""
    return default_engine().repair()


def capture(*, lines: int = CAPTURE_LINES, all: bool = False, ansi: bool = False,
            session: Optional[str] = None, socket: Optional[str] = None,
            socket_name: Optional[str] = None, target: Optional[str] = None) -> str:
    """The pane's text (its last ``lines`` lines, or ``all``), wrapped lines
    joined, trailing blank lines dropped; works on a dead pane."""
    return default_engine().capture(lines=lines, all=all, ansi=ansi, session=session,
                                    socket=socket, socket_name=socket_name, target=target)


def capture_screen(*, lines: int = CAPTURE_LINES, all: bool = False, ansi: bool = False,
                   session: Optional[str] = None, socket: Optional[str] = None,
                   socket_name: Optional[str] = None, target: Optional[str] = None
                   ) -> "Capture":
    """``capture``'s text with what the screen is: the alternate screen or not,
    the cursor, the command running in the pane."""
    return default_engine().capture_screen(lines=lines, all=all, ansi=ansi, session=session,
                                           socket=socket, socket_name=socket_name,
                                           target=target)


def read_transcript(*, raw: bool = False, session: Optional[str] = None,
                    socket: Optional[str] = None, socket_name: Optional[str] = None,
                    target: Optional[str] = None) -> Iterator[str]:
    """Everything the pane's program wrote since create, in chunks, streamed."""
    return default_engine().read_transcript(raw=raw, session=session, socket=socket,
                                            socket_name=socket_name, target=target)


def attach_command(*, session: Optional[str] = None, socket: Optional[str] = None,
                   socket_name: Optional[str] = None, target: Optional[str] = None
                   ) -> List[str]:
    """The ``tmux attach`` command line that shows a session to a person."""
    return default_engine().attach_command(session=session, socket=socket,
                                           socket_name=socket_name, target=target)


def send(text: Optional[str] = None, keys: Sequence[str] = (), *, enter: bool = True,
         multiline: bool = False, delivery: str = "auto", wait: Optional[str] = None,
         fixed: bool = False, stable: float = 0.0, not_pattern: Optional[str] = None,
         timeout: float = SEND_TIMEOUT, retries: int = SEND_RETRIES,
         interval: float = RETRY_INTERVAL, session: Optional[str] = None,
         socket: Optional[str] = None, socket_name: Optional[str] = None,
         target: Optional[str] = None, cancel: Optional["threading.Event"] = None,
         on_retry: Optional[Callable[[str], None]] = None) -> "SendResult":
    """Send text exactly as given (and/or keys); optionally wait for a pattern in
    the output that follows. See ``Engine.send``."""
    return default_engine().send(
        text, keys, enter=enter, multiline=multiline, delivery=delivery, wait=wait,
        fixed=fixed, stable=stable, not_pattern=not_pattern, timeout=timeout,
        retries=retries, interval=interval, session=session, socket=socket,
        socket_name=socket_name, target=target, cancel=cancel, on_retry=on_retry)


def wait_for_text(pattern: Optional[str] = None, *, fixed: bool = False, stable: float = 0.0,
                  not_pattern: Optional[str] = None, timeout: float = WAIT_TIMEOUT,
                  interval: Optional[float] = None, lines: int = WAIT_LINES,
                  whole_pane: bool = False, session: Optional[str] = None,
                  socket: Optional[str] = None, socket_name: Optional[str] = None,
                  target: Optional[str] = None, cancel: Optional["threading.Event"] = None
                  ) -> "WaitResult":
    """Wait until ``pattern`` appears in the output since the last send (or in
    the whole pane). See ``Engine.wait_for_text``."""
    return default_engine().wait_for_text(
        pattern, fixed=fixed, stable=stable, not_pattern=not_pattern, timeout=timeout,
        interval=interval, lines=lines, whole_pane=whole_pane, session=session,
        socket=socket, socket_name=socket_name, target=target, cancel=cancel)


def run(code: Optional[str] = None, *, answer: Optional[str] = None,
        timeout: float = RUN_TIMEOUT, prompt: Optional[str] = None,
        max_output: int = MAX_OUTPUT, ansi: bool = False, session: Optional[str] = None,
        socket: Optional[str] = None, socket_name: Optional[str] = None,
        target: Optional[str] = None, cancel: Optional["threading.Event"] = None,
        on_output: Optional[Callable[[str], None]] = None) -> "RunResult":
    """Type code, wait until the program is back at its prompt, return exactly
    its output and status; or ``answer`` a program that waits for input. See
    ``Engine.run``."""
    return default_engine().run(
        code, answer=answer, timeout=timeout, prompt=prompt, max_output=max_output, ansi=ansi,
        session=session, socket=socket, socket_name=socket_name, target=target, cancel=cancel,
        on_output=on_output)


# ---------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------

@dataclass_transform()
class Record:
    """A small record, as a dataclass is, without importing dataclasses: its
    fields are the annotations of its class (and of the records it extends),
    in order, given by position or by name; a field left out takes the class's
    value (a list or dict is copied, never shared)."""

    _fields: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        cls._fields = tuple(name for klass in reversed(cls.__mro__)
                            for name, kind in vars(klass).get("__annotations__", {}).items()
                            if not str(kind).startswith("ClassVar"))

    def __init__(self, *values: Any, **named: Any) -> None:
        fields = self._fields
        if len(values) > len(fields):
            raise TypeError("%s has %d fields, not %d" % (type(self).__name__, len(fields),
                                                          len(values)))
        named.update(zip(fields, values))
        for name in fields:
            if name in named:
                value = named.pop(name)
            elif hasattr(type(self), name):
                value = getattr(type(self), name)
                value = type(value)(value) if isinstance(value, (list, dict)) else value
            else:
                raise TypeError("%s needs %s" % (type(self).__name__, name))
            setattr(self, name, value)
        if named:
            raise TypeError("%s has no field %s" % (type(self).__name__, ", ".join(named)))

    def as_dict(self) -> Dict[str, Any]:
        """The fields and their values, in order: what --json prints."""
        return {name: getattr(self, name) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and (
            self.as_dict() == other.as_dict())

    __hash__ = None  # type: ignore[assignment]  # records change (a wait sets elapsed)

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % item for item in self.as_dict().items()))


if TYPE_CHECKING:
    HealthStatus = Literal["healthy", "dead", "missing", "zombie", "server_not_running"]
    # The same states in listings, as the old scripts print them.
    ListStatus = Literal["alive", "dead", "missing", "zombie", "server"]
    # Why a wait or a run stopped.
    Ending = Literal["done", "timeout", "dead", "server", "missing", "cancelled",
                     "continuation", "debugger", "input", "prompt", "refused"]


class Session(Record):
    """One registry entry: where a session lives and what runs in it."""

    name: str
    socket: str
    target: str
    pane_id: str = ""
    type: str = "shell"
    pid: int = 0
    created_at: str = ""
    last_active: str = ""
    transcript: str = ""
    prompt: str = ""
    kind: str = ""  # the profile; "" in entries of older versions (type says it)
    token: str = ""  # in its prompt marks: lets a run start without asking tmux first
    tty: str = ""  # its pane's terminal: whether the program waits for input
    extra: Dict[str, Any] = {}

    _KNOWN = ("socket", "target", "pane_id", "type", "pid", "created_at",
              "last_active", "transcript", "prompt", "kind", "token", "tty")
    _ALWAYS = ("socket", "target", "type", "pid", "created_at", "last_active")

    @property
    def identity(self) -> Tuple[str, str, str, str]:
        """What tells this session from a later one of the same name."""
        return (self.socket, self.pane_id, self.target, self.created_at)

    @classmethod
    def from_json(cls, name: str, entry: Dict[str, Any]) -> "Session":
        known = {k: entry[k] for k in cls._KNOWN if k in entry}
        extra = {k: v for k, v in entry.items() if k not in cls._KNOWN}
        if not isinstance(known.get("pid", 0), int):  # Registry.load lets through
            known["pid"] = int(known["pid"] or 0)     # digits, "" and null
        return cls(name=name, extra=extra, **known)

    def to_json(self) -> Dict[str, Any]:
        entry = dict(self.extra)
        for k in self._KNOWN:
            value = getattr(self, k)
            if value or k in self._ALWAYS:
                entry[k] = value
        return entry


class Health(Record):
    """What ``pane-health`` reports."""

    status: HealthStatus
    server_running: bool = False
    session_exists: bool = False
    pane_exists: bool = False
    pane_dead: bool = False
    pid: Optional[int] = None
    process_running: bool = False
    exit_status: Optional[int] = None
    exit_signal: Optional[int] = None  # the signal that killed a dead pane's program
    # What the screen is, for a pane that exists: in the alternate screen (a
    # full-screen program: vim, less, htop), where the cursor is, what runs.
    alternate_screen: Optional[bool] = None
    cursor_x: Optional[int] = None
    cursor_y: Optional[int] = None
    current_command: Optional[str] = None

    @property
    def short(self) -> ListStatus:
        """The one-word status used in listings."""
        return {"healthy": "alive", "dead": "dead", "missing": "missing",
                "zombie": "zombie", "server_not_running": "server"}[self.status]  # type: ignore

    @property
    def ended(self) -> str:
        """How a dead pane's program ended: "exited with status 1", "was killed by ..."."""
        how = "exited"
        if self.exit_status is not None:
            how = "exited with status %d" % self.exit_status
        elif self.exit_signal:
            how = "was killed by signal %d" % self.exit_signal
            with contextlib.suppress(ValueError):
                how += " (%s)" % signal.Signals(self.exit_signal).name
        return how

    def sentence(self, name: str) -> str:
        return {
            "healthy": "Session %s is healthy: pid %s is running." % (name, self.pid),
            "dead": "Session %s is dead: its program %s." % (name, self.ended),
            "zombie": "Session %s is a zombie: the pane exists but pid %s is not running."
                      % (name, self.pid),
            "missing": "Session %s is missing: the tmux server runs but has no such pane."
                       % name,
            "server_not_running": "Session %s has no tmux server running." % name,
        }[self.status]

    def said(self, name: str, then: str) -> str:
        """The health sentence as an error line: "session x is dead: ...; THEN"."""
        said = self.sentence(name)
        return said[0].lower() + said[1:-1] + "; " + then


HEALTH_EXIT = {"healthy": 0, "dead": 1, "missing": 2, "zombie": 3,
               "server_not_running": 4}


class Pane(Record):
    """A resolved target: the server, the pane, and what the tool knows of it."""

    server: "Server"
    pane_id: str
    target: str
    session: str
    kind: str = ""  # the profile's name; "" for a pane the tool did not make
    transcript: str = ""
    prompt: str = ""
    registered: bool = False
    pid: int = 0
    dead: bool = False
    dead_status: Optional[int] = None
    sent: str = ""
    server_pid: int = 0
    piped: bool = False
    line: int = 0  # absolute line of the cursor: history size + cursor row
    token: str = ""  # in every prompt mark the session's program prints
    marked: bool = False  # its program prints the tool's prompt marks
    command: str = ""  # what tmux says runs in the pane now (python3, vim, ...)
    tty: str = ""  # the pane's terminal device
    unverified: bool = False  # known from the registry alone: the delivery checks it
    alternate: bool = False  # in the alternate screen: a full-screen program
    screen: str = ""  # @tmuxsess-screen: how the screen looked at the last send
    screen_state: Optional["ScreenState"] = None  # as tmux described it when resolved
    tmux_only: bool = False  # its pids are not this host's kernel's: tmux alone says (_Lifeline)

    @property
    def label(self) -> str:
        return self.session or self.target

    @property
    def where(self) -> Dict[str, str]:
        """How a command names this pane: its session, or its server and id."""
        if self.registered and re.match(NAME_RE, self.session):
            return {"session": self.session}
        server = ({"socket": self.server.socket} if self.server.socket else
                  {"socket_name": self.server.name} if self.server.name else {})
        return dict(server, target=self.pane_id or self.target)

    @property
    def profile(self) -> "Profile":
        """The profile the tool made the pane with; for a pane it did not make,
        the one whose program runs there now (``send -m`` into a python3)."""
        return PROFILES.get(self.kind) or profile_of_command(self.command)


class SessionStatus(Record):
    """A row of ``list-sessions``."""

    name: str
    socket: str
    target: str
    status: ListStatus
    pid: int
    created_at: str
    last_active: str
    type: str = ""
    kind: str = ""
    alternate_screen: Optional[bool] = None
    cursor_x: Optional[int] = None
    cursor_y: Optional[int] = None
    current_command: Optional[str] = None


class RunResult(Record):
    """What ``run`` returns: exactly the program's output and how it ended.

    ``waiting_for_input`` is set when the program stopped at a prompt other
    than the one the run expects: a continuation prompt (an unfinished
    statement: ``prompt`` is "continuation") or a debugger that took over
    (``prompt`` names it, e.g. "pdb"). ``truncated`` says that earlier output
    was left out to keep within ``max_output``.
    """

    output: str
    exit_status: Optional[int]
    timed_out: bool = False
    elapsed: float = 0.0
    pane_died: bool = False
    truncated: bool = False
    server_gone: bool = False  # the tmux server went away (so did the program)
    waiting_for_input: bool = False
    prompt: str = ""  # where it waits: continuation, a debugger's name, or input
    cancelled: bool = False
    question: str = ""  # waiting at a question: its line ("Continue? ")
    echo_off: bool = False  # ... and the terminal does not echo (a password?)
    lossy: bool = False  # bytes of the output were not UTF-8: shown as U+FFFD


class WaitResult(Record):
    """What a wait found: the match, or why it stopped without one."""

    found: bool
    match: str = ""
    # "", or an Ending: timeout, dead, server, missing, cancelled; input (the
    # program waits for input), prompt (it is back at its prompt)
    reason: str = ""
    exit_status: Optional[int] = None
    tail: str = ""
    elapsed: float = 0.0
    waiting_for_input: bool = False
    question: str = ""
    echo_off: bool = False


class Capture(Record):
    """What ``capture --json`` reports: the text, and what the screen is."""

    text: str
    lines: int
    alternate_screen: bool   # a full-screen program (vim, less, htop) drew it
    cursor_x: int
    cursor_y: int            # the cursor's row on the visible screen, from 0
    current_command: str     # what runs in the pane now, as tmux names it
    session: str = ""
    pane_id: str = ""


class FoundSession(Record):
    """A tmux session seen on a socket, registered or not."""

    name: str
    socket: str
    windows: int
    attached: bool
    created_at: str
    status: ListStatus
    registered: bool
    type: str = ""
    kind: str = ""


class CreatedSession(Record):
    """What ``create_session`` returns: the registry entry, plus ``registered``."""

    name: str
    socket: str
    target: str
    pane_id: str
    type: str
    kind: str
    pid: int
    created_at: str
    last_active: str
    transcript: str
    prompt: str
    registered: bool


class SendResult(Record):
    """What ``send`` returns, with what its wait found (``wait``: None when it
    did not wait; ``as_dict`` gives the wait's fields beside the others)."""

    session: str
    pane_id: str
    sent: bool
    bytes: int
    keys: List[str]
    typed: bool             # the text went in as keys (send-keys -l), not as a paste
    enter_presses: int = 0  # a checked submit: how many times Enter was pressed
    wait: Optional["WaitResult"] = None

    def as_dict(self) -> Dict[str, Any]:
        fields = super().as_dict()
        wait = fields.pop("wait")
        return dict(fields, **wait.as_dict()) if wait is not None else fields


class KillResult(Record):
    """What ``kill_session`` did (or, with ``dry_run``, would do)."""

    name: str
    killed: bool
    deregistered: bool
    registered: bool
    dry_run: bool
    socket: str
    status: ListStatus


class CleanupItem(Record):
    """One session ``cleanup_sessions`` chose, and what became of it."""

    name: str
    reason: str
    status: ListStatus
    killed: bool
    removed: bool
    dry_run: bool


class RepairResult(Record):
    """What ``repair`` found and did."""

    corrupt: bool
    missing: bool
    problem: str = ""
    moved_to: str = ""
    sessions: List[str] = []


# ---------------------------------------------------------------------------
# Errors: one class per failure; the CLI maps each to its exit codes
# ---------------------------------------------------------------------------

class Action(Record):
    """A next step an error suggests, as data: an operation (by its name in
    ``OPERATIONS``) and its arguments. The command line words it as a command
    to type, MCP as a tool call. A value in capitals (TEXT, PATTERN) stands
    for what the user fills in."""

    op: str
    why: str                  # what it is for, as a hint says it: "interrupt it"
    args: Dict[str, Any] = {}
    on_target: bool = True    # on the error's target (else on ``args`` alone)


class TmuxsessError(Exception):
    """An expected failure, as data: what happened (``message``), what to know
    (``hint``), what to do next (``actions``), and the pane it is about
    (``target``: ``{"session": NAME}``, or a socket and a pane).

    The message and hint name parameters as ``{timeout}``: each front end
    spells them its own way (``-T``, ``timeout``), as it words the actions.
    ``kind`` names the failure for the exit-code tables of the command line
    (``EXIT_CODES``) and for programs that prefer a word to a class.
    """

    kind = "error"

    def __init__(self, message: str, hint: str = "", actions: Sequence[Action] = (),
                 target: Optional[Dict[str, str]] = None) -> None:
        super().__init__(re.sub(r"\{(\w+)\}", r"\1", message))
        self.message = message
        self.hint = hint
        self.actions = list(actions)
        self.target = dict(target or {})

    def as_dict(self) -> Dict[str, Any]:
        """The failure as data (``failure`` in what --json prints)."""
        return {"kind": self.kind, "message": self.message, "hint": self.hint,
                "actions": [a.as_dict() for a in self.actions], "target": self.target}


class UsageError(TmuxsessError):
    """Bad arguments: nothing was done."""
    kind = "usage"


class NameTakenError(TmuxsessError):
    """A session of that name exists already (in the registry or in tmux)."""
    kind = "taken"


class TargetError(TmuxsessError):
    """No session or pane to act on, or more than one to choose from."""
    kind = "target"


class MissingPaneError(TargetError):
    """The server runs, but has no pane the target names: nothing was done."""
    kind = "missing"


class TmuxError(TmuxsessError):
    """tmux is missing or failed; ``transient`` when a retry may succeed."""
    kind = "tmux"

    def __init__(self, message: str, hint: str = "", transient: bool = False) -> None:
        super().__init__(message, hint)
        self.transient = transient


class NoServerError(TmuxError):
    """No tmux server runs on that socket."""
    kind = "no-server"


class SendError(TmuxError):
    """Text or keys could not be delivered (after the retries)."""
    kind = "send"


class NotReadyError(TmuxsessError):
    """A new session's program did not show its first prompt in time."""
    kind = "not-ready"


class RegistryError(TmuxsessError):
    """The registry (or the state dir holding it) cannot be read or written."""
    kind = "registry"


class CorruptRegistryError(RegistryError):
    """The registry file is damaged; ``repair`` can rebuild it from tmux."""


class LockTimeoutError(TmuxsessError):
    """The registry lock stayed held by another process past the wait."""
    kind = "lock"


class StateFileError(TmuxsessError):
    """A transcript or another private file of the tool cannot be made or read."""
    kind = "file"


class UnhealthyError(TmuxsessError):
    """The pane is missing, a zombie, or its server is gone: nothing was typed."""
    kind = "unhealthy"


class PaneDeadError(TmuxsessError):
    """The pane's program has exited: nothing was typed."""
    kind = "dead"


class BusyError(TmuxsessError):
    """The program is not at a prompt it can take input at: nothing was typed."""
    kind = "busy"


# ---------------------------------------------------------------------------
# Settings and places
# ---------------------------------------------------------------------------

class Settings(Record):
    """Where the tool keeps its state and sockets, which tmux it runs, how long
    it waits for the registry lock. Read from the environment once."""

    state_dir: str
    socket_dir: str
    tmux: str = "tmux"
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    proc: bool = True  # ask /proc whether a program waits for input (TMUXSESS_NO_PROC=1: no)

    @classmethod
    def from_environment(cls, environ: Optional[Dict[str, str]] = None, **overrides: Any
                         ) -> "Settings":
        """The settings the environment gives (``TMUXSESS_STATE_DIR``,
        ``CLAUDE_TMUX_SOCKET_DIR``, ``TMUXSESS_TMUX``, ``TMUXSESS_LOCK_TIMEOUT``),
        with ``overrides`` that are not None taking precedence."""
        env = os.environ if environ is None else environ
        given = {k: v for k, v in overrides.items() if v is not None}
        state = given.get("state_dir") or env.get("TMUXSESS_STATE_DIR") or os.path.join(
            env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                      "state"), "claude-tmux")
        sockets = given.get("socket_dir") or env.get("CLAUDE_TMUX_SOCKET_DIR") or (
            os.path.join(env.get("TMPDIR") or "/tmp", "claude-tmux-%d" % os.geteuid()))
        timeout = given.get("lock_timeout")
        if timeout is None:
            timeout = _lock_timeout_from(env.get("TMUXSESS_LOCK_TIMEOUT") or "")
        return cls(state_dir=os.path.abspath(state), socket_dir=os.path.abspath(sockets),
                   tmux=given.get("tmux") or env.get("TMUXSESS_TMUX") or "tmux",
                   lock_timeout=float(timeout),
                   proc=given.get("proc", env.get("TMUXSESS_NO_PROC", "") in ("", "0")))

    @property
    def default_socket(self) -> str:
        return os.path.join(self.socket_dir, "claude.sock")

    @property
    def registry_path(self) -> str:
        return os.path.join(self.state_dir, ".sessions.json")

    def state_subdir(self, name: str) -> str:
        """A private directory in the (private) state dir: transcripts, locks, ..."""
        return private_dir(os.path.join(private_dir(self.state_dir, "state dir"), name),
                           "state dir")

    def checked_socket(self, path: str) -> str:
        """A socket in the tool's own socket dir is used only while that dir is private.

        Otherwise someone else could have swapped in a server of their own. Sockets
        elsewhere (``-S``, recorded in the registry) are used as given.
        """
        if (path and os.path.dirname(os.path.abspath(path)) == self.socket_dir
                and os.path.lexists(self.socket_dir)):
            private_dir(self.socket_dir, "socket dir")
        return path


def _lock_timeout_from(text: str) -> float:
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    with contextlib.suppress(ValueError):
        if float(text) >= 0:  # also refuses nan
            return float(text)
    raise UsageError("TMUXSESS_LOCK_TIMEOUT must be a number of seconds, not %r" % text)


def private_dir(path: str, what: str) -> str:
    """Create ``path`` 0700 if needed; refuse one that others could tamper with.

    A symlink, a directory owned by someone else, or one that group or others
    may write to could let another user read or plant sockets and transcripts.
    """
    try:
        if not os.path.lexists(path):  # never makedirs through a planted symlink
            os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise RegistryError("cannot create %s %s: %s" % (what, path, e.strerror))
    problem = ""
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif st.st_uid != os.geteuid():
        problem = "is owned by uid %d, not by you" % st.st_uid
    elif st.st_mode & 0o022:
        problem = "is writable by group or others (mode %o)" % stat.S_IMODE(st.st_mode)
    if problem:
        raise RegistryError("refusing %s %s: it %s" % (what, path, problem),
                            "remove it, or point %s at a private directory" % (
                                "CLAUDE_TMUX_SOCKET_DIR" if what == "socket dir"
                                else "TMUXSESS_STATE_DIR"))
    return path


def _write_private(path: str, text: str) -> str:
    """Write a small file atomically, 0600, unless it already holds ``text``."""
    data = text.encode("utf-8")
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            if f.read() == data:
                return path
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise StateFileError("cannot write %s: %s" % (path, e.strerror))
    return path


def _random_id(digits: int) -> str:
    """Random hex digits for names no one else picks (temp files, buffers, tokens)."""
    return os.urandom((digits + 1) // 2).hex()[:digits]


def _utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _parse_time(text: str) -> Optional[float]:
    try:
        from datetime import datetime, timezone
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``2h``, ``1d`` or bare seconds, as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise UsageError("bad duration %r: use 30s, 15m, 2h, 1d or seconds" % text)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _seconds(value: float, name: str) -> float:
    """A timeout or interval: a positive, finite number of seconds (nan never ends)."""
    if not 0 < value < float("inf"):
        raise UsageError("{%s} must be a positive number of seconds, not %g" % (name, value))
    return value


def _at_least(value: int, least: int, name: str) -> int:
    if value < least:
        raise UsageError("{%s} must be at least %d, not %d" % (name, least, value))
    return value


def validate_name(name: str) -> str:
    """Session names: 1-64 of ``A-Z a-z 0-9 _ -``, not starting with ``-``."""
    if not isinstance(name, str) or not re.match(NAME_RE, name):
        raise UsageError("invalid session name %r" % (name,),
                         "use 1-64 characters of A-Z a-z 0-9 _ -, not starting with -")
    return name


# ---------------------------------------------------------------------------
# Transport: every tmux call, process and terminal question, transcript file
# ---------------------------------------------------------------------------

class Server(Record):
    """A tmux server: a socket path (``-S``), a socket name (``-L``), or the default."""

    socket: str = ""
    name: str = ""

    def args(self) -> List[str]:
        if self.socket:
            return ["-S", self.socket]
        if self.name:
            return ["-L", self.name]
        return []

    @property
    def label(self) -> str:
        return self.socket or (("-L " + self.name) if self.name else "default server")


class PaneRow(Record):
    """One pane as tmux describes it; fields are tmux format variables, and
    ``tmuxsess_X`` the pane's ``@tmuxsess-X`` user option (see ``_tmux_name``)."""

    session_name: str
    window_index: str
    pane_index: str
    pane_id: str
    pane_pid: str
    pane_dead: str
    pane_dead_status: str
    pane_dead_signal: str
    session_created: str
    session_windows: str
    session_attached: str
    pid: str
    pane_pipe: str
    history_size: str
    pane_height: str
    history_limit: str
    cursor_x: str
    cursor_y: str
    window_activity: str      # when the window last had output (seconds since the epoch)
    alternate_on: str
    pane_current_command: str
    pane_tty: str
    tmuxsess_kind: str
    tmuxsess_type: str
    tmuxsess_transcript: str
    tmuxsess_sent: str
    tmuxsess_created: str
    tmuxsess_token: str
    tmuxsess_registered: str
    tmuxsess_active: str  # last_active, set by every delivery: the registry is not rewritten
    tmuxsess_screen: str  # "ALT ID": the last send began in the alternate screen; its look
    tmuxsess_prompt: str  # last: a regex may hold a tab, which split() leaves here

    @property
    def target(self) -> str:
        return "%s:%s.%s" % (self.session_name, self.window_index, self.pane_index)

    @property
    def kind(self) -> str:
        """The profile the pane runs, also for sessions older versions made."""
        return self.tmuxsess_kind or _KIND_OF_TYPE.get(self.tmuxsess_type, "")

    @property
    def dead(self) -> bool:
        return self.pane_dead == "1"

    @property
    def program_pid(self) -> int:
        return int(self.pane_pid or 0)

    @property
    def line(self) -> int:
        """The cursor's absolute line: history size + cursor row."""
        return int(self.history_size or 0) + int(self.cursor_y or 0)

    @property
    def screen_state(self) -> "ScreenState":
        return ScreenState(self.pane_dead, self.pane_dead_status, self.history_size,
                           self.pane_height, self.history_limit, self.alternate_on,
                           self.cursor_x, self.cursor_y)

    @property
    def screen(self) -> Dict[str, Any]:
        """What the screen is, as Health and list report it."""
        return {"alternate_screen": self.alternate_on == "1",
                "cursor_x": int(self.cursor_x or 0), "cursor_y": int(self.cursor_y or 0),
                "current_command": self.pane_current_command}


class ScreenState(Record):
    """What a look at the screen needs besides its text."""

    pane_dead: str
    pane_dead_status: str
    history_size: str
    pane_height: str
    history_limit: str
    alternate_on: str
    cursor_x: str
    cursor_y: str


if TYPE_CHECKING:
    Row = TypeVar("Row", "PaneRow", "ScreenState")


def _tmux_name(field_name: str) -> str:
    if field_name.startswith("tmuxsess_"):
        return "@tmuxsess-" + field_name[len("tmuxsess_"):]
    return field_name


def row_format(row: Type[Row]) -> str:
    """The ``-F`` format that asks tmux for every field of ``row`` at once."""
    return "\t".join("#{%s}" % _tmux_name(n) for n in row._fields)


def parse_rows(row: Type[Row], output: str) -> List[Row]:
    """tmux's answer to ``row_format(row)``, one record per line, by name."""
    count = len(row._fields)
    rows = []
    for line in output.splitlines():
        parts = line.split("\t", count - 1)
        if len(parts) == count:
            rows.append(row(*parts))
    return rows


PANE_FORMAT = row_format(PaneRow)
SCREEN_FORMAT = row_format(ScreenState)

TRANSIENT_TMUX = (r"(?i)lost server|server exited unexpectedly|"
                  r"resource temporarily unavailable|interrupted")
NO_SERVER = r"(?i)no server running|error connecting to|server exited unexpectedly"
# How a tmux older than 3.2 refuses new-session -e.
OLD_NEW_SESSION = r"unknown flag -e|usage: new-session"
# How tmux says a target names no pane.
BAD_TARGET = r"can't find|no current|no marked"


def _tmux_failure(server: Server, message: str, killed: bool = False) -> TmuxError:
    """The error for what tmux said when a command failed."""
    cls = NoServerError if re.search(NO_SERVER, message) else TmuxError
    return cls("tmux: %s (%s)" % (message, server.label),
               transient=bool(re.search(TRANSIENT_TMUX, message)) or killed)


def _escape_arg(arg: str) -> str:
    # tmux splits command sequences at an argument that ends in ";" and turns a
    # final "\;" into ";"; this keeps every argument exactly as given.
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


class Terminal(Record):
    """A pane's terminal as the kernel has it."""

    reads: str                # who reads it: "plain", "multiplexed", "unknown" or "none"
    canonical: Optional[bool]  # line editing by the terminal (ICANON)
    echo: Optional[bool]      # the terminal echoes what is typed (ECHO)
    flags: Dict[str, bool]    # ICANON, ECHO, IEXTEN, ISIG, ICRNL, IXON, ...
    chars: Dict[str, int]     # VEOF, VLNEXT, VINTR, ...: the byte, 0 when disabled
    how: str                  # the facts that decided ``reads``

    @property
    def waiting(self) -> Optional[bool]:
        """The kernel's word alone: True a plain read of the terminal, False
        nothing reads it; None: only the screen can tell (see ``asks``)."""
        return True if self.reads == "plain" else False if self.reads == "none" else None

    @property
    def password(self) -> bool:
        """Line editing without echo: how a password prompt sets the terminal."""
        return self.canonical is True and self.echo is False


# Terminal facts, Linux first: see Host.terminal and _terminal_readers.
_MACHINE = os.uname().machine  # which syscall numbers _WAIT_CALLS holds
_WAIT_CALLS = {  # the calls a process waits for input in, by what their arguments say;
    # "busy": a thread that sleeps here is busy with something else (a timer, a
    # child, a socket, a blocked write): see _Reader.verdict
    "x86_64": {0: "read", 17: "read", 19: "read", 295: "read", 327: "read",
               7: "poll", 271: "poll", 23: "select", 270: "select",
               232: "epoll", 281: "epoll", 441: "epoll",
               35: "busy", 230: "busy", 61: "busy", 247: "busy", 42: "busy", 43: "busy",
               288: "busy", 44: "busy", 45: "busy", 46: "busy", 47: "busy", 299: "busy",
               1: "busy", 20: "busy"},
    "aarch64": {63: "read", 65: "read", 67: "read", 69: "read", 286: "read",
                73: "poll", 72: "select", 22: "epoll", 441: "epoll",
                101: "busy", 115: "busy", 260: "busy", 95: "busy", 202: "busy", 242: "busy",
                203: "busy", 206: "busy", 207: "busy", 211: "busy", 212: "busy",
                243: "busy", 64: "busy", 66: "busy"},
}
# /proc/PID/stat from field 3 on, by proc(5)'s names.
_STAT_FIELDS = (
    "state", "ppid", "pgrp", "session", "tty_nr", "tpgid", "flags", "minflt", "cminflt",
    "majflt", "cmajflt", "utime", "stime", "cutime", "cstime", "priority", "nice",
    "num_threads", "itrealvalue", "starttime", "vsize", "rss", "rsslim", "startcode",
    "endcode", "startstack", "kstkesp", "kstkeip", "signal", "blocked", "sigignore",
    "sigcatch", "wchan", "nswap", "cnswap", "exit_signal", "processor", "rt_priority",
    "policy", "delayacct_blkio_ticks", "guest_time", "cguest_time", "start_data",
    "end_data", "start_brk", "arg_start", "arg_end", "env_start", "env_end", "exit_code")
# Signals a person or the terminal sends: a signalfd for these alone wakes no
# one who is not also waiting for the person (SIGCHLD, SIGALRM, ... do).
_PERSON_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
                   signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
                   signal.SIGWINCH}
_READ_WCHANS = ("n_tty_read", "wait_woken")
_POLL_WCHANS = ("poll_schedule_timeout", "do_select", "do_sys_poll", "core_sys_select")
_EPOLL_WCHANS = ("do_epoll_wait", "ep_poll")
_TTY_FLAGS = {"ICANON": "l", "ECHO": "l", "IEXTEN": "l", "ISIG": "l", "ICRNL": "i",
              "IGNCR": "i", "INLCR": "i", "ISTRIP": "i", "IXON": "i", "PARMRK": "i",
              "IUCLC": "i"}
_TTY_CHARS = ("VEOF", "VEOL", "VEOL2", "VLNEXT", "VERASE", "VKILL", "VWERASE", "VINTR",
              "VQUIT", "VSUSP", "VREPRINT", "VDISCARD", "VSTART", "VSTOP")


def _tty_modes(tty: str) -> Optional[Tuple[Dict[str, bool], Dict[str, int]]]:
    """The termios flags and special characters of a terminal; None if it cannot
    be opened (another user's)."""
    import termios
    try:
        fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        iflag, _o, _c, lflag, _i, _s, cc = termios.tcgetattr(fd)
    except termios.error:
        return None
    finally:
        os.close(fd)
    flags = {name: bool((lflag if kind == "l" else iflag) & getattr(termios, name, 0))
             for name, kind in _TTY_FLAGS.items()}
    chars = {}
    for name in _TTY_CHARS:
        value = cc[getattr(termios, name)]
        chars[name] = value if isinstance(value, int) else ord(value)
    return flags, chars


def _proc_read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", "replace")
    except OSError:
        return None


def _proc_stat(pid: int) -> Dict[str, str]:
    """/proc/PID/stat by field name (``_STAT_FIELDS``); {} when there is none."""
    text = _proc_read("/proc/%d/stat" % pid) or ""
    if ")" not in text:
        return {}
    return dict(zip(_STAT_FIELDS, text[text.rfind(")") + 2:].split()))


# Who reads a pane's terminal. Every process under the pane's program that has
# the terminal open is looked at, whatever its session or process group (a
# reader under `su -c` or `setsid` is in a session of its own), and each of its
# threads asleep in a call that waits for input is sorted by what can wake it:
#   plain        read(2) of the terminal, or select/poll/epoll on the terminal
#                and nothing else that can wake it (a disarmed timerfd, a
#                signalfd for the signals a person sends, a file, /dev/null);
#   multiplexed  select/poll/epoll on the terminal and on something else that
#                can wake it: a socket (ssh), a pipe or eventfd (an event loop's
#                self-pipe, a child's output), an armed timer, another terminal
#                (a relay: script, tmux, docker exec -it), inotify, ...;
#   unknown      the kernel does not say: another user's process, one that is
#                not dumpable, a call Yama's ptrace_scope hides with no wchan
#                and open fds to tell by, no /proc;
#   none         nothing waits to read the terminal: it sleeps, computes,
#                waits for a child, a pipe, a socket, or is stopped; or it is
#                in the terminal's own session but not in its foreground group
#                (the kernel stops such a reader: SIGTTIN).
# A process of several threads is judged by all of them: one that reads the
# terminal plainly while another is busy (runs, or waits on a socket, a pipe,
# a timer, a child: a Go relay such as docker or kubectl exec reads the
# terminal in one thread and the connection in another) is multiplexed.
# The pane's verdict is the first of these that any process has. Only "plain"
# is the kernel's word that the program waits for input; for "multiplexed" and
# "unknown" the screen must say so (asks). Costs: a stat and a children read
# per process; a syscall read per thread; fds, fdinfo and /proc/PID/mem only
# for a process that waits in read, select, poll or epoll (see NOTES).
_RANK = {"plain": 3, "multiplexed": 2, "unknown": 1, "none": 0, "busy": 0}


def _terminal_readers(pane_pid: int, tty: str) -> Tuple[str, str]:
    """Whether any process under the pane reads its terminal, and how (above):
    (verdict, the facts that decided it)."""
    try:
        rdev = os.stat(tty).st_rdev
    except OSError:
        return "unknown", "the terminal %s cannot be looked at" % tty
    best, facts, found = "none", [], False
    for pid, fields in _descendants(pane_pid, rdev):
        found = True
        verdict, how = _Reader(pid, fields, tty, rdev).verdict()
        if verdict != "none":
            facts.append(how)
        if _RANK[verdict] > _RANK[best]:
            best = verdict
        if best == "plain":
            return best, how  # nothing outranks it
    if not found:
        return "unknown", "no process %d" % pane_pid
    if not facts:
        return best, "no process under pid %d waits on its terminal" % pane_pid
    return best, "; ".join(facts[:6])


def _descendants(root: int, rdev: int) -> Iterator[Tuple[int, Dict[str, str]]]:
    """The pane's program and every process under it, with their stat: found
    through /proc/PID/task/TID/children, which anyone may read; and the
    terminal's foreground group's leader and the processes under it, should
    it have left the pane's tree."""
    stack, seen = [root], set()
    while stack:
        pid = stack.pop()
        fields = {} if pid in seen else _proc_stat(pid)
        seen.add(pid)
        if not fields:
            continue
        yield pid, fields
        if pid == root and fields.get("tty_nr") == str(rdev) and fields.get(
                "tpgid", "-1").isdigit() and int(fields["tpgid"]) not in (0, root):
            stack.append(int(fields["tpgid"]))
        tasks = [str(pid)]
        if int(fields.get("num_threads", "1")) > 1:
            with contextlib.suppress(OSError):
                tasks = os.listdir("/proc/%d/task" % pid)
        for task in tasks:
            text = _proc_read("/proc/%d/task/%s/children" % (pid, task)) or ""
            stack.extend(int(c) for c in text.split())


class _Reader:
    """One process: whether it waits to read the terminal (see _terminal_readers).
    Its fds are read once, and only when a call it sleeps in needs them."""

    def __init__(self, pid: int, stat: Dict[str, str], tty: str, rdev: int) -> None:
        self.pid, self.stat, self.tty, self.rdev = pid, stat, tty, rdev
        self._fds: Optional[Dict[int, str]] = None
        self._ttys: Optional[List[int]] = None
        self._listed = False

    def verdict(self) -> Tuple[str, str]:
        state = self.stat.get("state", "?")
        if state in "ZXTtx":
            return "none", "pid %d is %s" % (self.pid, state)
        if self.stat.get("tty_nr") == str(self.rdev) and (
                self.stat.get("pgrp") != self.stat.get("tpgid")):
            return "none", "pid %d is in the background" % self.pid
        tasks = [self.pid]
        if int(self.stat.get("num_threads", "1")) > 1:
            with contextlib.suppress(OSError):
                tasks = sorted(int(t) for t in os.listdir("/proc/%d/task" % self.pid))
        best: Tuple[str, str] = ("none", "pid %d waits on no terminal" % self.pid)
        busy = ""
        for task in tasks:
            said = self._task(task)
            if _RANK[said[0]] > _RANK[best[0]]:
                best = said
            busy = busy or (said[1] if said[0] == "busy" else "")
        if best[0] == "plain" and busy:
            return "multiplexed", "%s, while a thread of it is busy (%s)" % (best[1], busy)
        return best

    # -- what it has open ------------------------------------------------------
    def fds(self) -> Optional[Dict[int, str]]:
        """fd -> what it is (readlink); None when they cannot be read."""
        if not self._listed:
            self._listed = True
            try:
                names = os.listdir("/proc/%d/fd" % self.pid)
            except OSError:
                return None
            self._fds = {}
            for name in names:
                with contextlib.suppress(OSError):
                    self._fds[int(name)] = os.readlink("/proc/%d/fd/%s" % (self.pid, name))
        return self._fds

    def is_tty(self, fd: int, target: str) -> bool:
        """Whether an open file is the pane's terminal: by name, /dev/tty for a
        process whose controlling terminal it is, or by device number for a
        terminal named otherwise (another mount of /dev)."""
        if target == self.tty:
            return True
        if target == "/dev/tty":
            return self.stat.get("tty_nr") == str(self.rdev)
        if target.startswith(("/dev/pts/", "/dev/tty", "/dev/console")) or (
                "/pts/" in target):
            try:
                return os.stat("/proc/%d/fd/%d" % (self.pid, fd)).st_rdev == self.rdev
            except OSError:
                return False
        return False

    def ttys(self) -> List[int]:
        if self._ttys is None:
            self._ttys = [fd for fd, target in (self.fds() or {}).items()
                          if self.is_tty(fd, target)]
        return self._ttys

    def source(self, fd: int) -> str:
        """What else an fd in a wait's set is, if it can wake the waiter; "" if
        it cannot (or is always ready, so the waiter would not sleep)."""
        target = (self.fds() or {}).get(fd, "")
        if fd in self.ttys():
            return ""
        if target.startswith("anon_inode:"):
            return self._anon_source(fd, target[11:].strip("[]"))
        for prefix, what in (("socket:", "socket"), ("pipe:", "pipe"),
                             ("/dev/ptmx", "a terminal's master (a relay)"),
                             ("/dev/pts/", "another terminal " + target),
                             ("/dev/tty", "another terminal " + target)):
            if target.startswith(prefix):
                return what
        if target in ("", "/dev/null", "/dev/zero", "/dev/full") or not target.startswith(
                "/dev/"):
            return ""  # gone, or a file: always ready
        return target

    def _anon_source(self, fd: int, kind: str) -> str:
        info = _proc_read("/proc/%d/fdinfo/%d" % (self.pid, fd)) or ""
        if kind == "timerfd":
            armed = re.search(r"it_value:\s*\((\d+),\s*(\d+)\)", info)
            return "" if armed and armed.groups() == ("0", "0") else "an armed timerfd"
        if kind == "signalfd":
            mask = re.search(r"sigmask:\s*([0-9a-f]+)", info)
            bits = int(mask.group(1), 16) if mask else -1
            wakes = [n for n in range(1, 65) if bits >> (n - 1) & 1
                     and n not in _PERSON_SIGNALS]
            return "a signalfd for signal %s" % wakes[0] if bits < 0 or wakes else ""
        return kind  # eventfd, inotify, pidfd, io_uring, ...: another source

    # -- what one thread waits in -----------------------------------------------
    def _task(self, task: int) -> Tuple[str, str]:
        base = "/proc/%d/task/%d/" % (self.pid, task)
        words = (_proc_read(base + "syscall") or "").split()
        calls = _WAIT_CALLS.get(_MACHINE, {})
        if words[:1] == ["running"]:
            return "busy", "pid %d runs" % self.pid
        if len(words) < 4 or not words[0].lstrip("-").isdigit() or not calls:
            return self._by_wchan(base)  # hidden (Yama, another user's), or no table
        kind = calls.get(int(words[0]))
        if kind is None:  # futex, pause, ...: waits on its own threads or a signal
            return "none", "pid %d in syscall %s" % (self.pid, words[0])
        if kind == "busy":
            return "busy", "pid %d in syscall %s" % (self.pid, words[0])
        if self.fds() is None:
            return "unknown", "pid %d: its fds are not readable" % self.pid
        args = [int(w, 16) for w in words[1:6]]
        if kind == "read":
            if args[0] in self.ttys():
                return "plain", "pid %d reads the terminal (fd %d)" % (self.pid, args[0])
            source = self.source(args[0])
            return ("busy" if source else "none"), "pid %d reads fd %d (%s)" % (
                self.pid, args[0], source or "a file")
        waited = self._waited(kind, args)
        if waited is None:  # the set is in memory it may not read: what is open tells
            return self._by_open_fds("%s, its set not readable" % kind)
        return self._judge(kind, waited)

    def _judge(self, kind: str, waited: List[Tuple[int, bool]]) -> Tuple[str, str]:
        """A wait on ``waited``: (fd, for input) pairs, nested epolls flattened."""
        ttys = set(self.ttys())
        others = sorted({s for s in (self.source(fd) for fd, _ in waited if fd not in ttys)
                         if s})
        if not any(fd in ttys and inp for fd, inp in waited):
            return ("busy" if others else "none"), "pid %d %s on %s" % (
                self.pid, kind, ", ".join(others) or "nothing that wakes it")
        if others:
            return "multiplexed", "pid %d %s on the terminal and %s" % (
                self.pid, kind, ", ".join(others))
        return "plain", "pid %d %s on the terminal alone" % (self.pid, kind)

    def _waited(self, kind: str, args: List[int]) -> Optional[List[Tuple[int, bool]]]:
        """The fds a select, poll or epoll waits on, and whether for input."""
        if kind == "epoll":
            return self._epoll(args[0], 0)
        try:
            with open("/proc/%d/mem" % self.pid, "rb") as mem:
                if kind == "poll":
                    return self._poll_set(mem, args[0], args[1])
                return self._select_set(mem, args)
        except (OSError, ValueError, OverflowError):
            return None

    def _poll_set(self, mem: IO[bytes], at: int, count: int) -> List[Tuple[int, bool]]:
        if count <= 0 or count > 8192:
            return []
        mem.seek(at)
        raw = mem.read(8 * count)
        out: List[Tuple[int, bool]] = []
        for i in range(0, len(raw) - 7, 8):
            fd = int.from_bytes(raw[i:i + 4], "little", signed=True)
            events = int.from_bytes(raw[i + 4:i + 6], "little")
            if fd >= 0 and events & 0x2007:  # POLLIN, POLLPRI, POLLOUT, POLLRDHUP
                out.extend(self._expand(fd, bool(events & 3)))
        return out

    def _select_set(self, mem: IO[bytes], args: List[int]) -> List[Tuple[int, bool]]:
        count = args[0]
        if count <= 0 or count > 65536:
            return []
        out: List[Tuple[int, bool]] = []
        for which, at in enumerate(args[1:4]):  # readfds, writefds, exceptfds
            if not at:
                continue
            mem.seek(at)
            raw = mem.read((count + 63) // 64 * 8)
            for fd in range(count):
                if fd // 8 < len(raw) and raw[fd // 8] >> (fd % 8) & 1:
                    out.extend(self._expand(fd, which == 0))
        return out

    def _expand(self, fd: int, for_input: bool) -> List[Tuple[int, bool]]:
        """An fd of a set; an epoll fd in it stands for what it watches."""
        if (self.fds() or {}).get(fd) == "anon_inode:[eventpoll]":
            return self._epoll(fd, 1) or []
        return [(fd, for_input)]

    def _epoll(self, epfd: int, depth: int) -> Optional[List[Tuple[int, bool]]]:
        """What an epoll instance watches (its fdinfo), nested ones flattened."""
        text = _proc_read("/proc/%d/fdinfo/%d" % (self.pid, epfd))
        if text is None:
            return None
        out: List[Tuple[int, bool]] = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[0] != "tfd:" or parts[2] != "events:":
                continue
            fd, events = int(parts[1]), int(parts[3], 16)
            if not events & 0x2007:  # EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLRDHUP
                continue
            if (self.fds() or {}).get(fd) == "anon_inode:[eventpoll]" and depth < 4:
                out.extend(self._epoll(fd, depth + 1) or [])
            else:
                out.append((fd, bool(events & 3)))
        return out

    # -- when the call is hidden ---------------------------------------------------
    def _by_wchan(self, base: str) -> Tuple[str, str]:
        """The call is hidden (Yama's ptrace_scope, another user's process): the
        kernel function it sleeps in and its open fds tell what they can."""
        wchan = (_proc_read(base + "wchan") or "").strip()
        fds = self.fds()
        if fds is None or wchan in ("", "0"):
            return "unknown", "pid %d: its call is hidden%s" % (
                self.pid, "" if fds is None else " (wchan %r)" % wchan)
        if not self.ttys():
            return "none", "pid %d has no terminal open" % self.pid
        if wchan.startswith(_EPOLL_WCHANS):
            waited = [pair for fd, t in fds.items() if t == "anon_inode:[eventpoll]"
                      for pair in self._epoll(fd, 1) or []]
            return self._judge("epoll (wchan)", waited)
        if wchan.startswith(_READ_WCHANS + _POLL_WCHANS):
            return self._by_open_fds("wchan %s" % wchan)
        return "none", "pid %d sleeps in %s" % (self.pid, wchan)

    def _by_open_fds(self, why: str) -> Tuple[str, str]:
        """A wait whose set is hidden: plain if nothing it has open but the
        terminal could wake it, else unknown."""
        ttys = set(self.ttys())
        others = sorted({s for s in (self.source(fd) for fd in (self.fds() or {})
                                     if fd not in ttys) if s})
        if not ttys:
            return "none", "pid %d has no terminal open" % self.pid
        if others:
            return "unknown", "pid %d (%s) has the terminal and %s open" % (
                self.pid, why, ", ".join(others))
        return "plain", "pid %d (%s) has nothing but the terminal open" % (self.pid, why)


# A terminal in canonical mode edits the line before the program reads it: it
# acts on some bytes (erase, kill, interrupt, end of file, ...) and keeps at
# most 4095 bytes of a line. Those bytes go in quoted by VLNEXT (^V); a longer
# line goes in as pieces, each handed to the reader by VEOF (^D), which ends a
# read without ending the line.
CANON_LINE_MAX = 4095


def _acted_on(flags: Dict[str, bool], chars: Dict[str, int]) -> Dict[int, str]:
    """The bytes a canonical terminal acts on rather than stores, by name (as
    Linux's n_tty does: a disabled character is 0; LF ends the line)."""
    names = ["VERASE", "VKILL", "VEOF", "VEOL"]
    if flags.get("IEXTEN"):
        names += ["VWERASE", "VLNEXT", "VEOL2"] + (["VREPRINT"] if flags.get("ECHO") else [])
    if flags.get("ISIG"):
        names += ["VINTR", "VQUIT", "VSUSP"]
    if flags.get("IXON"):
        names += ["VSTART", "VSTOP"]
    acted = {chars[n]: n for n in names if chars.get(n)}
    if flags.get("ICRNL") or flags.get("IGNCR"):
        acted[0x0D] = "IGNCR" if flags.get("IGNCR") else "ICRNL"
    acted.pop(0x0A, None)
    return acted


def _never_data(byte: int, flags: Dict[str, bool]) -> str:
    """Why a byte cannot reach a canonical reader as data at all; "" if it can."""
    if byte >= 0x80 and flags.get("ISTRIP"):
        return "the terminal strips the 8th bit (ISTRIP)"
    if byte == 0xFF and flags.get("PARMRK"):
        return "the terminal doubles 0xff (PARMRK)"
    if 0x41 <= byte <= 0x5A and flags.get("IUCLC") and flags.get("IEXTEN"):
        return "the terminal lowers upper case (IUCLC)"
    if byte == 0x0A and flags.get("INLCR"):
        return "the terminal turns LF into CR (INLCR)"
    return ""


def canonical_stream(data: bytes, term: Terminal) -> bytes:
    """The keystrokes that make a canonical-mode reader receive exactly ``data``.

    Raises UsageError, before anything is typed, for a byte that cannot arrive
    as data (the error names it and why).
    """
    acted = _acted_on(term.flags, term.chars)
    quote = term.chars.get("VLNEXT", 0) if term.flags.get("IEXTEN") else 0
    eof = term.chars.get("VEOF", 0)
    for byte in sorted(set(data)):
        why = _never_data(byte, term.flags) or (
            "it is the terminal's %s and VLNEXT is off" % acted[byte]
            if byte in acted and not quote else "")
        if why:
            raise UsageError("byte 0x%02x at offset %d cannot reach the program as data: %s; "
                             "nothing was sent" % (byte, data.index(bytes([byte])), why),
                             "a program that reads raw bytes (a raw-mode terminal) takes it")
    pattern = re.compile(b"([" + b"".join(re.escape(bytes([c])) for c in sorted(acted)) + b"])")
    lines = []
    for line in data.split(b"\n"):
        pieces = [line[i:i + CANON_LINE_MAX] for i in range(0, len(line), CANON_LINE_MAX)]
        if len(pieces) > 1 and not eof:
            raise UsageError("a line of %d bytes is longer than the terminal keeps (%d), and "
                             "its VEOF is off; nothing was sent" % (len(line), CANON_LINE_MAX))
        if acted:
            pieces = [pattern.sub(bytes([quote]) + b"\\1", p) for p in pieces]
        lines.append(bytes([eof]).join(pieces))
    stream = b"\n".join(lines)
    stop = [term.chars.get(n, 0) for n in ("VSTART", "VSTOP") if term.flags.get("IXON")]
    if len(stream) > CANON_LINE_MAX and any(c and bytes([c]) in data for c in stop):
        # Quoted, they still stop the terminal once its input buffer is full.
        raise UsageError("^S or ^Q in more than %d bytes for a terminal with flow control "
                         "(IXON); nothing was sent" % CANON_LINE_MAX,
                         "send it in pieces, or turn flow control off: stty -ixon")
    return stream


class _Inotify:
    """inotify instances (Linux; via ctypes, loaded on first use), pooled for the
    life of the process: closing an instance that has watched a file costs the
    kernel ~15-20 ms (an RCU grace period), removing its watch does not. Each
    watch has an instance to itself, so its events are its own."""

    lock = threading.Lock()
    libc: Any = None
    looked = False
    free: List[int] = []

    @classmethod
    def watch(cls, path: str, mask: int) -> Tuple[int, int]:
        """(instance fd, watch descriptor) watching ``path``; (-1, -1) if none."""
        with cls.lock:
            if not cls.looked:
                cls.looked = True
                if sys.platform.startswith("linux"):
                    with contextlib.suppress(ImportError, OSError, AttributeError):
                        import ctypes
                        libc = ctypes.CDLL(None, use_errno=True)
                        if all(hasattr(libc, name) for name in (
                                "inotify_init1", "inotify_add_watch", "inotify_rm_watch")):
                            cls.libc = libc
            if cls.libc is None:
                return -1, -1
            fd = cls.free.pop() if cls.free else cls.libc.inotify_init1(
                os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return -1, -1
        wd = cls.libc.inotify_add_watch(fd, os.fsencode(path), mask)
        if wd < 0:
            cls.give_back(fd, -1)
            return -1, -1
        return fd, wd

    @classmethod
    def give_back(cls, fd: int, wd: int) -> None:
        if wd >= 0:
            cls.libc.inotify_rm_watch(fd, wd)
        with contextlib.suppress(OSError):  # its last events, and IN_IGNORED
            while os.read(fd, 65536):
                pass
        with cls.lock:
            cls.free.append(fd)


class _FileWatch:
    """Sleeps until a file is written to or for the time given, whichever is first.

    Linux: an inotify watch, so a wait wakes the moment the transcript grows and
    costs nothing while it does not; elsewhere a plain sleep, the caller polling.
    """

    MASK = 0x2 | 0x4 | 0x400 | 0x800  # IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF

    def __init__(self, path: str) -> None:
        self.poll: Optional[Any] = None
        self.fd, self.wd = _Inotify.watch(path, self.MASK)
        if self.fd >= 0:
            import select
            self.poll = select.poll()
            self.poll.register(self.fd, select.POLLIN)

    @property
    def wakes(self) -> bool:
        """Whether wait() returns as soon as the file changes (else it just sleeps)."""
        return self.poll is not None

    def wait(self, seconds: float) -> None:
        if self.poll is None:
            time.sleep(seconds)
            return
        if self.poll.poll(max(seconds, 0.0) * 1000):
            with contextlib.suppress(OSError):  # drained: the next write wakes us again
                while os.read(self.fd, 65536):
                    pass

    def close(self) -> None:
        if self.poll is not None:
            self.poll = None
            _Inotify.give_back(self.fd, self.wd)


class Host:
    """The machine the panes run on: the single home of every tmux call, every
    question about a process, and every transcript file opened.
    """

    def __init__(self, tmux: str = "tmux", proc: bool = True) -> None:
        self.binary = tmux
        # Ask /proc about processes (Linux); off: as where there is none.
        self.proc = proc and os.path.isdir("/proc/self/fd")

    # -- tmux ----------------------------------------------------------------
    def tmux(self, server: Server, *commands: Sequence[str], stdin: Optional[bytes] = None,
             config: bool = False) -> str:
        """Run one tmux client with one or more commands; return its stdout.

        Commands are argument lists, joined into one command sequence so a whole
        step costs one process. ``config=True`` adds ``-f /dev/null`` so a server
        started by this call reads no user configuration.
        """
        argv = self._client_argv(server, config)
        for i, command in enumerate(commands):
            if i:
                argv.append(";")
            argv.extend(_escape_arg(a) for a in command)
        try:
            proc = subprocess.run(argv, input=stdin,
                                  stdin=subprocess.DEVNULL if stdin is None else None,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise TmuxError("tmux not found (looked for %r)" % argv[0],
                            "install tmux 3.0 or newer, or set TMUXSESS_TMUX to its path")
        except OSError as e:
            raise TmuxError("cannot run tmux: %s" % e.strerror)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            message = err[-1] if err else "tmux exited with status %d" % proc.returncode
            raise _tmux_failure(server, message, proc.returncode < 0)
        return proc.stdout.decode("utf-8", "replace")

    def _client_argv(self, server: Server, config: bool) -> List[str]:
        """A tmux client's first words. -u: a client in a locale that is not UTF-8
        (LC_ALL=C) would get every tab and non-ASCII byte of an answer as "_", and
        no row would parse."""
        return [self.binary, "-u"] + (["-f", "/dev/null"] if config else []) + server.args()

    def panes(self, server: Server) -> Optional[List[PaneRow]]:
        """Every pane on a server in one call, or None when no server runs there."""
        try:
            return parse_rows(PaneRow, self.tmux(server, ["list-panes", "-a", "-F",
                                                          PANE_FORMAT]))
        except NoServerError:
            return None

    def pane(self, server: Server, target: str) -> Optional[List[PaneRow]]:
        """The pane ``target`` names: [row], [] if none, None if no server runs."""
        try:
            # display-message falls back to the current pane when its target names
            # none; send-keys without keys sends nothing and fails on a bad target,
            # so a wrong -t never reaches another pane.
            return parse_rows(PaneRow, self.tmux(
                server, ["send-keys", "-t", target],
                ["display-message", "-p", "-t", target, "-F", PANE_FORMAT]))
        except NoServerError:
            return None
        except TmuxError as e:
            if not re.search(BAD_TARGET, e.message):
                # tmux missing or failing is not a missing pane: saying so would let
                # kill and cleanup deregister sessions that are still running.
                raise
            return []

    def server_runs(self, server: Server) -> bool:
        """Whether a tmux server answers on ``server`` (one call; starts none)."""
        try:
            self.tmux(server, ["display-message", "-p", "#{pid}"])
            return True
        except TmuxError:
            return False

    def has_session(self, server: Server, name: str) -> bool:
        try:
            self.tmux(server, ["has-session", "-t", "=" + name])
            return True
        except TmuxError:
            return False

    # -- processes -------------------------------------------------------------
    def process_state(self, pid: int) -> str:
        """``running``, ``zombie`` or ``gone`` for a process id."""
        if pid <= 0:
            return "gone"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            return "running"
        return "zombie" if _proc_stat(pid).get("state") in ("Z", "X") else "running"

    def alive(self, pid: int) -> bool:
        return bool(pid) and self.process_state(pid) == "running"

    def remind_to_reap(self, server: Server) -> None:
        """Have tmux reap the children it missed: a tmux built with utempter
        (Debian's) ignores SIGCHLD while its helper runs, as it does when a pane
        closes, and reaps a program that exited then only when another child of
        its own exits. A job that ends at once is one."""
        with contextlib.suppress(TmuxsessError):
            self.tmux(server, ["run-shell", "-b", "true"])

    def zombie_exit(self, pid: int) -> Tuple[Optional[int], Optional[int]]:
        """(exit status, signal) of an exited, not yet reaped process; Nones if unknown.

        tmux marks a pane dead when its pty closes, which can be well before it
        reaps the program (seconds on a busy server, or until another child exits
        when it missed the SIGCHLD); until then it reports neither. The zombie
        still holds its wait status in /proc (Linux).
        """
        fields = _proc_stat(pid) if pid > 0 else {}
        if fields.get("state") != "Z" or "exit_code" not in fields:
            return None, None
        with contextlib.suppress(ValueError):
            code = int(fields["exit_code"])  # in waitpid(2) form
            if os.WIFEXITED(code):
                return os.WEXITSTATUS(code), None
            if os.WIFSIGNALED(code):
                return None, os.WTERMSIG(code)
        return None, None

    def ended(self, pane: "Pane") -> Tuple[bool, Optional[int], Optional[int]]:
        """(the pane is still there, exit status, signal) of a pane's program that
        has just exited. tmux may not know it yet (see zombie_exit): it is given
        a second at most."""
        deadline, reminded = time.monotonic() + 1.0, False
        while True:
            try:
                rows = parse_rows(PaneRow, self.tmux(pane.server, [
                    "display-message", "-p", "-t", pane.pane_id, "-F", PANE_FORMAT]))
            except TmuxsessError:
                return False, None, None
            if rows:
                # tmux knows the status once it reaped the program, which may be
                # before it marks the pane dead (it first pipes out what is left).
                status, signum = self.dead_exit(rows[0])
                if status is not None or signum:
                    return True, status, signum
                if rows[0].dead and not reminded:
                    self.remind_to_reap(pane.server)
                    reminded = True
            if time.monotonic() >= deadline:
                return bool(rows), None, None
            time.sleep(0.01)

    def dead_exit(self, row: PaneRow) -> Tuple[Optional[int], Optional[int]]:
        """How a dead pane's program ended: (exit status, signal); None if unknown."""
        if row.pane_dead_status.lstrip("-").isdigit():
            return int(row.pane_dead_status), None
        if row.pane_dead_signal.isdigit() and int(row.pane_dead_signal):
            return None, int(row.pane_dead_signal)
        return self.zombie_exit(row.program_pid)

    def health(self, row: Optional[PaneRow], session_up: bool = True) -> Health:
        """The health of a pane tmux described (None: no such pane, server up)."""
        if row is None:
            return Health("missing", server_running=True, session_exists=session_up)
        pid = row.program_pid
        screen = row.screen
        if row.dead:
            status, sig = self.dead_exit(row)
            return Health("dead", True, True, True, pane_dead=True, pid=pid or None,
                          exit_status=status, exit_signal=sig, **screen)
        state = self.process_state(pid)
        # A kernel that knows neither the pane's pid nor the server's numbers
        # tmux's processes otherwise (see _Lifeline): tmux's word is all there is.
        if state == "running" or state == "gone" and not self.alive(int(row.pid or 0)):
            return Health("healthy", True, True, True, pid=pid, process_running=True,
                          **screen)
        return Health("zombie", True, True, True, pid=pid, **screen)

    # -- terminals ---------------------------------------------------------------
    def terminal(self, pane: Pane, proc: bool = True) -> "Terminal":
        """What the kernel says of a pane's terminal: its modes (termios), and
        (``proc``) who of the processes under the pane's program reads it, and
        how (``reads``: see _terminal_readers; /proc, Linux).

        Where /proc cannot tell (macOS, pids of another kernel's:
        ``pane.tmux_only``) ``reads`` is "unknown" and the modes are all
        there is; so it is for a reader whose process is another user's or
        not dumpable, unless another reader is plain.
        """
        tty = pane.tty
        modes = _tty_modes(tty) if tty else None
        if not (self.proc and proc and not pane.tmux_only and tty):
            reads, how = "unknown", "no /proc" if tty else "no terminal"
        else:
            reads, how = _terminal_readers(pane.pid, tty)
        flags, chars = modes if modes is not None else ({}, {})
        return Terminal(reads, flags.get("ICANON"), flags.get("ECHO"), flags, chars,
                        how if modes is not None else how + "; no termios")

    # -- transcripts -----------------------------------------------------------
    @staticmethod
    def new_transcript(path: str) -> None:
        """Create an empty 0600 file; never through a symlink, never over a file."""
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600))
        except OSError as e:
            raise StateFileError("cannot create transcript %s: %s" % (path, e.strerror))

    @staticmethod
    def open_transcript(path: str) -> IO[bytes]:
        try:
            return open(path, "rb")
        except OSError as e:
            raise StateFileError("cannot read transcript %s: %s" % (path, e.strerror))

    @staticmethod
    def watch_transcript(path: str) -> _FileWatch:
        """A way to sleep until the transcript grows (see _FileWatch)."""
        return _FileWatch(path)

    @staticmethod
    def transcript_size(path: str) -> int:
        try:
            return os.stat(path).st_size
        except OSError:
            return 0

    def transcript_tail(self, path: str, size: int = 65536) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, self.transcript_size(path) - size))
                return f.read()
        except OSError:
            return b""

    @staticmethod
    def transcript_exists(path: str) -> bool:
        return bool(path) and os.path.exists(path)

    @staticmethod
    def remove_transcript(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    def pipe_command(self, path: str) -> str:
        """The shell command ``pipe-pane`` runs to append a pane's output to ``path``."""
        return "exec cat >> " + _quote(path)

    # -- another machine ---------------------------------------------------------
    @staticmethod
    def there(host: str, args: List[str], data: bytes, cancel: "threading.Event",
              heard: Callable[[bytes], None]) -> str:
        """Run this tool's command ``args`` on ``host`` (``--host HOST``, see
        relay_main) with ``data`` as its input: each line it prints to
        ``heard``, as it comes; what it said on stderr. A cancel interrupts it."""
        import tempfile
        argv = [sys.executable, os.path.abspath(__file__), "--host", host] + args
        env = {k: v for k, v in os.environ.items() if k not in ("TMUXSESS_HOST", "TMUXSESS_VIA")}
        with tempfile.TemporaryFile() as said, subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=said,
                env=env) as p:
            done = threading.Event()

            def interrupt() -> None:
                while not done.is_set():
                    if cancel.wait(0.1):
                        p.send_signal(signal.SIGINT)
                        return
            threading.Thread(target=interrupt, daemon=True).start()
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(data)
            p.stdin.close()
            for line in p.stdout:
                heard(line)
            done.set()
            said.seek(0)
            return said.read().decode("utf-8", "replace").strip()

    # -- handing over the terminal ---------------------------------------------
    def attach(self, argv: List[str]) -> NoReturn:
        env = dict(os.environ)
        env.pop("TMUX", None)  # attaching from inside tmux nests, which works
        os.execvpe(argv[0], argv, env)


class SentRecord(Record):
    """What a send leaves on the pane (``@tmuxsess-sent``) so a later wait knows
    where the output that answers it starts.

    With a transcript: the byte ``offset`` where the send began, the ``lines``
    of echo to skip (or ``cmark``: the shell's C mark starts the output), and
    for text sent without Enter the end of that text (``partial``, hex, and its
    full length): its echo ends the skipping. Without a transcript: the cursor's
    absolute ``row`` on the screen and an ``anchor``, the end of the first line
    sent, to find that row again once tmux drops old history.
    """

    offset: int = -1      # -1: a screen record
    lines: int = 0
    cmark: bool = False
    partial_len: int = 0
    partial: bytes = b""
    row: int = 0
    anchor: str = ""

    VERSION = "2"
    PARTIAL_TAIL = 32  # bytes of unsent text kept

    def encode(self) -> str:
        """The option's value, for ``set-option -F``: a screen record asks tmux to
        fill in the cursor's row at the moment the text goes in."""
        if self.offset < 0:
            return "%s s #{history_size} #{cursor_y} %d %s" % (
                self.VERSION, self.lines, self.anchor.replace("#", "##"))
        return "%s t %d %d %d %d %s" % (self.VERSION, self.offset, self.lines,
                                        int(self.cmark), self.partial_len,
                                        self.partial[-self.PARTIAL_TAIL:].hex() or "-")

    @classmethod
    def decode(cls, text: str) -> Optional["SentRecord"]:
        """The record, or None for none or a damaged one. Reads version 1 too:
        ``OFFSET LINES CMARK [LENGTH HEX]`` and ``line HISTORY CURSOR SKIP ANCHOR``."""
        words = text.split(" ")
        if words[:2] == [cls.VERSION, "s"]:
            words = ["line"] + words[2:]
        elif words[:2] == [cls.VERSION, "t"]:
            words = words[2:5] + ([] if words[6:7] == ["-"] else words[5:7])
        with contextlib.suppress(ValueError, IndexError):
            if words[0] == "line" and len(words) >= 5:
                return cls(row=int(words[1]) + int(words[2]), lines=int(words[3]),
                           anchor=" ".join(words[4:]))
            if len(words) in (3, 5) and all(w.isdigit() for w in words[:3]):
                partial = bytes.fromhex(words[4]) if len(words) == 5 else b""
                return cls(offset=int(words[0]), lines=int(words[1]),
                           cmark=words[2] == "1", partial=partial,
                           partial_len=int(words[3]) if partial else 0)
        return None


# ---------------------------------------------------------------------------
# Program profiles: one table entry per kind of program
# ---------------------------------------------------------------------------
# Every marked prompt prints invisible OSC 133 marks carrying the session's
# token: A a prompt starts (``k=NAME`` for any but the main one), B it ends
# (typing starts), C a command runs, D;STATUS the unit ended.

BASH_RC = r"""# Written by tmuxsess: invisible OSC 133 marks around every prompt and command:
# A prompt starts, B prompt ends (typing starts), C command runs, D;$? it ended.
# Each mark carries the session's token: marks that programs print are not ours.
__tmuxsess_id=";tmuxsess=$TMUXSESS_TOKEN"
unset TMUXSESS_TOKEN
# The startup files an interactive bash reads, unless create said --norc.
if [ -z "$TMUXSESS_NORC" ]; then
    [ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
    [ -f ~/.bashrc ] && . ~/.bashrc
fi
unset TMUXSESS_NORC
# No history expansion: "a!b" would fail before any mark is printed, jamming runs.
set +H
# A is in PS1 itself, so what bash prints between the command and its prompt
# (a job's "[1]+ Done") comes before the prompt, not after it.
PS1='\[\e]133;A'"$__tmuxsess_id"'\a\]\$ \[\e]133;B'"$__tmuxsess_id"'\a\]'
PS2='\[\e]133;A;k=c'"$__tmuxsess_id"'\a\]> '
PS0='\e]133;C'"$__tmuxsess_id"'\a'
__tmuxsess_ps1=$PS1
# D first, with the command's status; then the user's PROMPT_COMMAND (which
# may read $? and set PS1), then the marked prompt again.
__tmuxsess_user_pc=${PROMPT_COMMAND:-:}
__tmuxsess_status() { return "$1"; }
PROMPT_COMMAND='__tmuxsess_s=$?
printf "\033]133;D;%s%s\007" "$__tmuxsess_s" "$__tmuxsess_id"
__tmuxsess_status "$__tmuxsess_s"; eval "$__tmuxsess_user_pc"; PS1=$__tmuxsess_ps1'
unset HISTFILE
"""

PYTHON_STARTUP = r'''# Written by tmuxsess: invisible OSC 133 prompt marks for the Python REPL,
# and for pdb's prompt once something imports pdb (breakpoint() does).
def _tmuxsess_prompts():
    import os
    import sys
    # Each mark carries the session's token: marks that programs print are not ours.
    tag = ";tmuxsess=" + os.environ.pop("TMUXSESS_TOKEN", "")
    # The REPL sets sys.last_traceback for every exception it shows, whatever
    # sys.excepthook prints it: a new one since the last prompt means it raised.
    seen = [getattr(sys, "last_traceback", None)]

    class Prompt(object):
        def __init__(self, text, primary):
            self.text, self.primary = text, primary

        def __str__(self):
            if not self.primary:
                return "\001\033]133;A;k=s%s\007\002%s" % (tag, self.text)
            last = getattr(sys, "last_traceback", None)
            failed = int(last is not seen[0])
            seen[0] = last
            return "\001\033]133;D;%d%s\007\033]133;A%s\007\002%s\001\033]133;B%s\007\002" % (
                failed, tag, tag, self.text, tag)

    def mark_pdb(module):
        init = module.Pdb.__init__

        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            if self.prompt == "(Pdb) ":
                self.prompt = ("\001\033]133;A;k=pdb%s\007\002(Pdb) "
                               "\001\033]133;B%s\007\002" % (tag, tag))
            self.completekey = None  # cmd would bind TAB to completion for good
        module.Pdb.__init__ = __init__

    class PdbFinder(object):
        # Marks pdb's prompt when pdb is first imported; not imported before.
        def find_spec(self, name, path=None, target=None):
            if name != "pdb":
                return None
            sys.meta_path.remove(self)
            import importlib.util
            spec = importlib.util.find_spec("pdb")
            if spec is None or spec.loader is None:
                return spec
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                mark_pdb(module)
            spec.loader.exec_module = exec_module
            return spec

    hook = getattr(sys, "__interactivehook__", None)

    def interactivehook():
        # site's hook binds TAB to completion, which eats tabs in the text
        # sent here; a TAB inserts a TAB, as in Python without that hook.
        if hook is not None:
            hook()
        try:
            import readline
            readline.parse_and_bind("tab: tab-insert")
        except Exception:
            pass

    sys.__interactivehook__ = interactivehook
    if "pdb" in sys.modules:
        mark_pdb(sys.modules["pdb"])
    else:
        sys.meta_path.insert(0, PdbFinder())
    # Prompts the user's own startup file set keep their text.
    sys.ps1 = Prompt(str(getattr(sys, "ps1", ">>> ")), True)
    sys.ps2 = Prompt(str(getattr(sys, "ps2", "... ")), False)


def _tmuxsess_user_startup():
    # The user's own PYTHONSTARTUP runs first, as Python would have run it.
    import os
    path = os.environ.pop("TMUXSESS_PYTHONSTARTUP", "")
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            exec(compile(f.read(), path, "exec"), globals())


_tmuxsess_user_startup()
del _tmuxsess_user_startup
_tmuxsess_prompts()
del _tmuxsess_prompts
'''

GDB_PROMPT = ("set prompt \\001\\033]133;A;tmuxsess={token}\\007\\002(gdb) "
              "\\001\\033]133;B;tmuxsess={token}\\007\\002")


NODE_STARTUP = r'''// Written by tmuxsess: a Node.js REPL whose prompts carry OSC 133 marks.
'use strict';
const repl = require('repl');
const fs = require('fs');
// Each mark carries the session's token: marks that programs print are not ours.
const tag = ';tmuxsess=' + (process.env.TMUXSESS_TOKEN || '');
delete process.env.TMUXSESS_TOKEN;
let failed = 0;
const r = repl.start({
  // No prompt yet: the constructor shows the first one before the marks exist.
  // ignoreUndefined: console.log(42) says 42, not 42 and "undefined".
  prompt: '', useGlobal: true, ignoreUndefined: true, breakEvalOnSigint: true,
  // No eager-evaluation preview under the line, no colours: plain text output.
  preview: false, useColors: false, terminal: true,
});
// Every uncaught error of an evaluation (thrown, rejected top-level await,
// SyntaxError) goes through the REPL's domain before its prompt returns.
r._domain.prependListener('error', () => { failed = 1; });
// The marks are written beside the prompt, not in it: readline redraws its
// prompt (a line that wraps, Ctrl-L) and a redraw must not repeat the marks.
const show = r.prompt;
r.prompt = function (preserveCursor) {
  if (this.getPrompt() === this._initialPrompt) {
    this.output.write('\x1b]133;D;' + failed + tag + '\x07\x1b]133;A' + tag + '\x07');
    failed = 0;
    show.call(this, preserveCursor);
    this.output.write('\x1b]133;B' + tag + '\x07');
  } else {
    this.output.write('\x1b]133;A;k=c' + tag + '\x07');
    show.call(this, preserveCursor);
  }
};
r.setPrompt('> ');
// .tmuxsess_unit FILE: evaluate the whole file as ONE input, with the REPL's
// own eval (top-level await, declarations kept, value shown as the REPL does).
r.defineCommand('tmuxsess_unit', {
  help: 'Evaluate a file as one input (used by tmuxsess)',
  action(file) {
    let code;
    try {
      code = fs.readFileSync(file, 'utf8');
    } catch (e) {
      this.output.write('Failed to load: ' + file + '\n');
      failed = 1;
      this.displayPrompt();
      return;
    }
    this.eval(code + '\n', this.context, 'REPL', (e, ret) => {
      if (e) {  // incomplete input (a Recoverable) counts as an error here
        this._domain.emit('error', e.err || e);
        return;
      }
      if (!this.underscoreAssigned) this.last = ret;
      // As the REPL itself: no "undefined" echo (console.log's value).
      if (ret !== undefined || !this.ignoreUndefined) {
        this.output.write(this.writer(ret) + '\n');
      }
      this.displayPrompt();
    });
  },
});
r.displayPrompt();
'''

# psql marks its prompts itself (%[ %] hide them from readline): D carries
# its ERROR variable (true, false, or "" before the first query).
PSQL_PROMPTS = (
    "PROMPT1=%[%033]133;D;%:ERROR:;tmuxsess={token}%007%033]133;A;tmuxsess={token}%007%]"
    "%/%R%x%# %[%033]133;B;tmuxsess={token}%007%]",
    "PROMPT2=%[%033]133;A;k=c;tmuxsess={token}%007%]%/%R%x%# ",
    "PROMPT3=%[%033]133;A;k=c;tmuxsess={token}%007%]>> ")

# readline, as psql and sqlite3 use it: a paste goes in whole and is echoed
# plainly; no completion, which would eat tabs.
READLINE_INPUTRC = """set enable-bracketed-paste on
set enable-active-region off
set disable-completion on
"""

# sqlite3 cuts prompts at 19 bytes, too short for a mark: readline prints the
# A mark before each of its prompts instead (the mode string), and the visible
# text after it tells the continuation prompt from the main one.
SQLITE_INPUTRC = r"""$if other
set enable-bracketed-paste on
set enable-active-region off
set disable-completion on
set editing-mode emacs
set show-mode-in-prompt on
set emacs-mode-string "\1\e]133;A;tmuxsess={token}\a\2"
$endif
"""

ZSH_ENV = r"""# Written by tmuxsess: invisible OSC 133 marks from zsh's own hooks. D;STATUS
# as a prompt begins (its PROMPT_EOL_MARK, so before PROMPT_SP's padding; else
# precmd), A and B once zle has drawn the prompt, both sides (zle-line-init), C
# as a command starts (preexec). Each mark carries the session's token: marks
# that programs print are not ours. None is in PS1: a theme may set it at will.
# zsh reads this file as $ZDOTDIR/.zshenv. The user's ZDOTDIR comes back at
# once, so zsh then reads the user's own .zshrc, from $ZDOTDIR or ~, as usual.
if [[ -n $TMUXSESS_ZDOTDIR ]]; then
    export ZDOTDIR=$TMUXSESS_ZDOTDIR
else
    unset ZDOTDIR
fi
typeset -g __tmuxsess_id=";tmuxsess=$TMUXSESS_TOKEN"
unset TMUXSESS_ZDOTDIR TMUXSESS_TOKEN
if [[ -n $TMUXSESS_NORC ]]; then
    unset TMUXSESS_NORC
    setopt NO_RCS  # no other startup file: ~/.zshenv, /etc/zsh/zshrc, ~/.zshrc
elif [[ -f ${ZDOTDIR:-$HOME}/.zshenv ]]; then
    source ${ZDOTDIR:-$HOME}/.zshenv
fi
# The D mark as a prompt sequence: %? is the status of the last command.
typeset -g __tmuxsess_d="%{"$'\e]133;D;%?'"$__tmuxsess_id"$'\a'"%}"
typeset -g __tmuxsess_c="%{"$'\e]133;A;k=c'"$__tmuxsess_id"$'\a'"%}"
typeset -g __tmuxsess_eol=""  # the PROMPT_EOL_MARK that carries the D mark
typeset -gi __tmuxsess_set=0
# The hooks run with zsh's own options (emulate -L), whatever the user's are.
__tmuxsess_mark() {  # to the terminal itself, whatever stdout is (instant prompts)
    emulate -L zsh
    local m out=
    for m; do out+=$'\e]133;'$m$__tmuxsess_id$'\a'; done
    builtin print -rn -- $out 2>/dev/null >/dev/tty
}
# First of the precmd hooks (rc files append theirs; zsh gives each hook the
# last command's $?): the D mark, unless PROMPT_EOL_MARK printed it.
__tmuxsess_precmd() {
    local s=$?
    (( __tmuxsess_set )) || __tmuxsess_setup
    __tmuxsess_first $s
}
__tmuxsess_first() {
    emulate -L zsh
    if [[ -z $__tmuxsess_eol || ${PROMPT_EOL_MARK-} != "$__tmuxsess_eol" ]] ||
            [[ ! -o promptsp || ! -o promptcr ]]; then
        __tmuxsess_mark "D;$1"  # PROMPT_SP printed no D mark this time
    fi
    # After every precmd hook: zsh/sched runs what is due just before the
    # prompt. (Else last in the list: zsh runs a copy, so from the next prompt.)
    if (( __tmuxsess_sched )); then
        sched +0 __tmuxsess_last $1
    else
        precmd_functions=(${precmd_functions:#__tmuxsess_last} __tmuxsess_last)
    fi
}
# What themes and plugins set in their precmd hooks stays marked.
__tmuxsess_last() {
    emulate -L zsh
    # The D mark ends the output before zsh pads a partial last line
    # (PROMPT_SP): in front of the user's own end-of-line mark.
    local user=${PROMPT_EOL_MARK-%B%S%#%s%b}
    PROMPT_EOL_MARK=$__tmuxsess_d${user#"$__tmuxsess_d"}
    __tmuxsess_eol=$PROMPT_EOL_MARK
    # A continuation prompt is marked before its text (and again once drawn).
    PS2=$__tmuxsess_c${PS2#"$__tmuxsess_c"}
    # C last: what other preexec hooks print is not the command's output.
    preexec_functions=(${preexec_functions:#__tmuxsess_preexec} __tmuxsess_preexec)
    # A and B come after the user's own zle-line-init (a theme's too).
    [[ ${widgets[zle-line-init]-} == user:__tmuxsess_line_init ]] || __tmuxsess_hook
    return ${1:-0}  # the status the prompt shows (%?)
}
__tmuxsess_preexec() { __tmuxsess_mark C; }
__tmuxsess_line_init() {
    # Called again by a widget it calls (a hook dispatcher that took it in): no more.
    emulate -L zsh
    (( __tmuxsess_busy )) && return 0
    local -i __tmuxsess_busy=1 ret=0
    if (( ${+widgets[__tmuxsess_user_line_init]} )); then
        zle __tmuxsess_user_line_init -- "$@"
        ret=$?
    fi
    case $CONTEXT in
        start) __tmuxsess_mark A B ;;
        cont) __tmuxsess_mark "A;k=c" ;;
    esac
    return ret
}
__tmuxsess_hook() {
    emulate -L zsh
    if (( ${+widgets[zle-line-init]} )); then
        zle -A zle-line-init __tmuxsess_user_line_init
    elif (( ${+widgets[__tmuxsess_user_line_init]} )); then
        zle -D __tmuxsess_user_line_init
    fi
    zle -N zle-line-init __tmuxsess_line_init
}
# Once, after the rc files: what exact runs need, whatever they set.
__tmuxsess_setup() {
    __tmuxsess_set=1
    unset HISTFILE                # no history written to the user's files
    setopt NO_BANG_HIST           # "a!b" means a!b
    setopt INTERACTIVE_COMMENTS   # "# note" lines in a block are comments
    # A pasted block goes in whole (zsh 5.1+), and runs as one.
    (( ${+zle_bracketed_paste} )) || zle_bracketed_paste=($'\e[?2004h' $'\e[?2004l')
}
typeset -gi __tmuxsess_sched=0
zmodload zsh/sched 2>/dev/null && __tmuxsess_sched=1
precmd_functions=(__tmuxsess_precmd $precmd_functions)
(( __tmuxsess_sched )) || precmd_functions+=(__tmuxsess_last)
"""

FISH_INIT = r"""# Written by tmuxsess: invisible OSC 133 marks from fish's own events and prompt
# functions: C as a command starts (fish_preexec), D;STATUS as it ends
# (fish_postexec; at the next prompt when no command ran), A and B at the end
# of the left prompt, and again at the end of the right prompt, which fish
# draws last (but not at all when it shows nothing).
# Each mark carries the session's token: marks that programs print are not ours.
# fish runs this file after the user's config (--init-command).
set -g __tmuxsess_id ";tmuxsess=$TMUXSESS_TOKEN"
set -e TMUXSESS_TOKEN
set -e TMUXSESS_FISH_INIT
set -e TMUXSESS_NORC
set -g __tmuxsess_ended 0
# No greeting, and no history written to the user's files.
function fish_greeting
end
set -g fish_history ''

function __tmuxsess_preexec --on-event fish_preexec
    printf '\e]133;C%s\a' $__tmuxsess_id
end

function __tmuxsess_postexec --on-event fish_postexec
    printf '\e]133;D;%s%s\a' $status $__tmuxsess_id
    set -g __tmuxsess_ended 1
end

function __tmuxsess_prompt --on-event fish_prompt
    set -l s $status  # still the last command's
    test $__tmuxsess_ended = 1; or printf '\e]133;D;%s%s\a' $s $__tmuxsess_id
    set -g __tmuxsess_ended 0
    # The prompt functions in use get the marks, whoever defined them and when
    # (a theme that defines them anew is wrapped again before its next prompt).
    if not string match -q '*__tmuxsess_left_prompt*' -- (functions fish_prompt 2>/dev/null)
        functions -e __tmuxsess_left_prompt
        functions -q fish_prompt; and functions -c fish_prompt __tmuxsess_left_prompt
        or function __tmuxsess_left_prompt
        end
        function fish_prompt
            __tmuxsess_left_prompt $argv
            printf '\e]133;A%s\a\e]133;B%s\a' $__tmuxsess_id $__tmuxsess_id
        end
    end
    if not string match -q '*__tmuxsess_right_prompt*' -- (functions fish_right_prompt 2>/dev/null)
        functions -e __tmuxsess_right_prompt
        functions -q fish_right_prompt; and functions -c fish_right_prompt __tmuxsess_right_prompt
        or function __tmuxsess_right_prompt
        end
        function fish_right_prompt
            __tmuxsess_right_prompt $argv
            printf '\e]133;A%s\a\e]133;B%s\a' $__tmuxsess_id $__tmuxsess_id
        end
    end
    # Enter on an unfinished command line (fish has no continuation prompt)
    # says so, unless the user bound Enter to something else.
    for mode in default insert
        bind -M $mode --user \r >/dev/null 2>&1
        or bind -M $mode \r __tmuxsess_enter
    end
end

function __tmuxsess_enter
    set -l s $status  # kept: an empty line leaves it as it was
    set -l line (commandline | string collect)
    if test -n "$line"
        commandline --is-valid
        switch $status
            case 2  # unfinished: Enter starts a new line of it
                printf '\e]133;A;k=c%s\a' $__tmuxsess_id
            case 1  # a syntax error: fish would keep the line and run nothing;
                # eval says what fish would, and ends with status 123
                set -g __tmuxsess_line $line
                commandline -r 'eval $__tmuxsess_line'
        end
    end
    commandline -f execute
    return $s
end
"""

IPYTHON_STARTUP = r'''# Written by tmuxsess: IPython (--simple-prompt) whose prompts carry OSC 133
# marks: A and B around In [N]:, A;k=c before ...:, A;k=pdb and B around the
# debuggers' prompts (pdb, ipdb); D;STATUS, 1 if a cell raised, as each cell
# ends (post_run_cell; D;0 in the prompt when no cell ran). It runs last (-c):
# after the user's config, startup files and exec_lines, whose prompts it
# keeps and marks.
def _tmuxsess_setup():
    import os
    import re
    import sys
    from IPython import get_ipython
    from IPython.terminal.prompts import Prompts
    from pygments.token import Token

    shell = get_ipython()
    # Each mark carries the session's token: marks that programs print are not ours.
    tag = ";tmuxsess=" + os.environ.pop("TMUXSESS_TOKEN", "")
    norc = os.environ.pop("TMUXSESS_NORC", "")

    def mark(what):
        # \001 \002: invisible to readline, should anything load it
        return "\001\033]133;%s%s\007\002" % (what, tag)

    # The D mark ends a cell's output as the cell ends; the separator IPython
    # prints before each prompt (separate_in) comes after it, in the prompt.
    state = {"ended": False, "separator": shell.separate_in}
    shell.separate_in = ""

    def write(text):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        out = sys.__stdout__
        out.write(text)
        out.flush()

    class Marked(Prompts):
        """The prompts in use, with marks."""

        def __init__(self, inner):
            super().__init__(shell)
            self.inner = inner

        def in_prompt_tokens(self, *args, **kwargs):
            # No cell ran since the last prompt (an empty line, Ctrl-C): D;0 here.
            ended = "" if state["ended"] else mark("D;0")
            state["ended"] = False
            return ([(Token.ZeroWidthEscape, ended), (Token.Prompt, state["separator"]),
                     (Token.ZeroWidthEscape, mark("A"))]
                    + list(self.inner.in_prompt_tokens(*args, **kwargs))
                    + [(Token.ZeroWidthEscape, mark("B"))])

        def continuation_prompt_tokens(self, *args, **kwargs):
            return ([(Token.ZeroWidthEscape, mark("A;k=c"))]
                    + list(self.inner.continuation_prompt_tokens(*args, **kwargs)))

        def rewrite_prompt_tokens(self, *args, **kwargs):
            return self.inner.rewrite_prompt_tokens(*args, **kwargs)

        def out_prompt_tokens(self, *args, **kwargs):
            return self.inner.out_prompt_tokens(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    def marked():
        if not isinstance(shell.prompts, Marked):
            shell.prompts = Marked(shell.prompts)
        if shell.separate_in:
            state["separator"], shell.separate_in = shell.separate_in, ""

    def ended(result):
        failed = int(bool(result.error_before_exec or result.error_in_exec))
        write("\033]133;D;%d%s\007" % (failed, tag))
        state["ended"] = True
        marked()  # prompts (and a separator) a cell set get their marks too

    # First of its kind: what later hooks print is not the cell's output.
    shell.events.callbacks["post_run_cell"].insert(0, ended)
    marked()

    # A block of several lines goes in as one line naming a private file that
    # holds it; this turns that line back into the block, which then runs as
    # ONE cell (blank lines, magics, !commands and ? help as typed).
    unit = re.compile(r"__tmuxsess_cell__\((.+)\)\s*\Z")

    def cell_from_file(lines):
        found = unit.match(lines[0]) if len(lines) == 1 else None
        if found is None:
            return lines
        import ast
        with open(ast.literal_eval(found.group(1)), encoding="utf-8",
                  errors="surrogateescape") as f:
            code = f.read()
        if not code.endswith("\n"):
            code += "\n"
        return code.splitlines(True)
    cell_from_file.has_side_effects = True  # a line it asks check_complete about is one
    shell.input_transformers_cleanup.insert(0, cell_from_file)

    # The debuggers' prompts, pdb's "(Pdb) " and IPython's "ipdb> ", get marks
    # whenever a debugger is made (breakpoint(), %debug, %pdb).
    import pdb

    def get_prompt(self):
        text = self.__dict__.get("_tmuxsess_prompt", "(Pdb) ")
        if text in ("(Pdb) ", "ipdb> "):
            return mark("A;k=pdb") + text + mark("B")
        return text

    def set_prompt(self, text):
        self.__dict__["_tmuxsess_prompt"] = text

    pdb.Pdb.prompt = property(get_prompt, set_prompt)

    # The user's PYTHONSTARTUP, which IPython runs only without -c.
    path = os.environ.get("PYTHONSTARTUP", "")
    if path and not norc and os.path.isfile(path):
        shell.safe_execfile(path, shell.user_ns)


_tmuxsess_setup()
'''

# IPython runs it with -c, after everything else it runs at start-up.
IPYTHON_RUN = ("exec(compile(open(__import__('os').environ.pop('TMUXSESS_IPYTHON_INIT'), "
               "encoding='utf-8').read(), '<tmuxsess>', 'exec'), {'__name__': 'tmuxsess'})")

# sqlite3's own word on errors is its library's error log (.log FILE): a line
# "(CODE) message" for every error, also those of SQL a dot-command runs. Not
# errors: notices (27) and warnings (28: an automatic index), a schema change
# the library retried (17), and the question .import asks before it creates a
# table (does it exist?).
SQLITE_NOT_FAILED = (0, 17, 27, 28)
SQLITE_PROBE = r'no such table: \S+ in "SELECT \* FROM (?:"(?:[^"]|"")*"\.)?"(?:[^"]|"")*""\Z'
# What the shell itself says of a dot-command that failed (.import of a missing
# file, an unknown command): it logs nothing, and says so only in these words,
# which count only in code that holds a dot-command.
SQLITE_DOT_ERROR = r"^(?:Error|ERROR|error): "


def _sqlite_failed(logged: str) -> bool:
    """Whether what sqlite3 wrote to its error log during a unit holds an error."""
    for m in re.finditer(r"^\((\d+)\) (.*)$", logged, re.MULTILINE):
        if int(m.group(1)) & 0xFF not in SQLITE_NOT_FAILED and not re.match(
                SQLITE_PROBE, m.group(2)):
            return True
    return False


def python_unit(code: str) -> str:
    """One REPL line that runs a whole block the way the REPL would, as one unit.

    Blank lines inside indented code cannot end a block early, and values of
    expression statements are still shown.
    """
    return ("exec(compile(__import__('ast').Interactive(compile(%r,'<stdin>','exec',1024)"
            ".body),'<stdin>','single'))" % code)


def _python_line(code: str) -> str:
    """Code as one line for the REPL: as is when it is one complete line with
    nothing readline takes for an editing key (tabs, control characters)."""
    if "\n" not in code and code.isprintable() and _python_line_is_complete(code):
        return code
    return python_unit(code)


def _pdb_line(code: str) -> str:
    """Code as one line for pdb: a debugger command (or one line of Python) as
    it is; a block as one Python statement run in the stopped frame (``!``),
    never fed to pdb line by line."""
    if "\n" not in code.rstrip("\n") and code.rstrip("\n").isprintable():
        return code.rstrip("\n")
    return "!" + python_unit(code)


def _python_line_is_complete(code: str) -> bool:
    return _compiles(code) is not False  # a wrong one too: the REPL says what is wrong


def _compiles(code: str) -> Optional[bool]:
    """Whether ``code`` is a complete interactive Python statement: True, False
    (it wants more lines), or None (it is wrong)."""
    import codeop
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return codeop.compile_command(code, "<stdin>", "single") is not None
        except (SyntaxError, ValueError, OverflowError):
            return None


def _ipython_takes_line(line: str) -> bool:
    """Whether IPython surely runs a line as typed, at once: one complete Python
    statement, short enough for a line-editing terminal. Anything else (a magic,
    a !command, help?, what IPython may take as unfinished) goes as a file."""
    return len(line.encode("utf-8", "surrogateescape")) < 1024 and _compiles(line) is True


def _sql_quoted(path: str) -> str:
    """A path as a psql meta-command argument: single quotes, '' and \\ inside."""
    return "'%s'" % path.replace("\\", "\\\\").replace("'", "''")


def _c_quoted(path: str) -> str:
    """A path as a sqlite3 dot-command argument: double quotes, C escapes."""
    return '"%s"' % path.replace("\\", "\\\\").replace('"', '\\"')


# How a profile cuts code into the units it types: the whole text as one
# line (a shell reads a pasted block whole), line by line, wrapped into one
# line, or (several lines) as a private file the program reads with ``block``.
if TYPE_CHECKING:
    Cut = Literal["whole", "lines", "wrap", "file"]


class Profile(Record):
    """One kind of program: how it starts, how its prompts are marked, how code
    is cut into units, what its continuation prompt is, what a unit's status is."""

    name: str
    type: str                         # the registry's type, as the old scripts know it
    summary: str
    program: Tuple[str, ...] = ()     # its argv; () when it needs --cmd
    args: Tuple[str, ...] = ()        # options it adds, after a --cmd command line too
    env: Tuple[Tuple[str, str], ...] = ()
    startup: str = ""                 # text of its startup file ({startup} in argv, env)
    startup_name: str = ""            # that file's name in the state dir's init/
    marked: bool = False              # its prompts carry the tool's marks
    status: bool = False              # the main prompt's D mark carries the unit's status
    command_mark: bool = False        # output starts at a C mark: no echo to skip
    cut: Cut = "lines"
    block: str = ""                   # cut "file": the line that runs {path}
    block_suffix: str = ""            # that file's extension
    quote: Callable[[str], str] = str  # how ``block`` spells the file's path
    wrap: Optional[Callable[[str], str]] = None  # cut "wrap"
    prefix: str = ""                  # typed before each unit (also before ``block``)
    continuation: Tuple[str, ...] = ()  # k= names of its continuation prompts
    continuation_text: str = ""       # or: what follows a plain A mark there
    failure: str = ""                 # a regex of the lines that say a unit failed;
    #                                   with {path}: only in what ``block`` read
    debuggers: Tuple[str, ...] = ()   # k= names of debugger prompts shown in it
    nested: bool = False              # only ever shows inside another profile's session
    takes_command: bool = True        # --cmd may replace its program
    # Variables of ``env`` whose user value its startup file honours: that value
    # goes in as TMUXSESS_<NAME> (a user's PYTHONSTARTUP runs first).
    chained: Tuple[str, ...] = ()
    commands: str = ""                # its program's name as tmux shows it (a regex)
    norc_args: Tuple[str, ...] = ()   # options it adds for create --norc
    takes_line: Optional[Callable[[str], bool]] = None  # cut "file": a single line
    #                                   it takes as typed (else it goes as a file)
    # It logs errors to a file ({error_log} in its args): what it logged during
    # a unit says whether the unit failed.
    logged_failure: Optional[Callable[[str], bool]] = None
    failure_when: str = ""            # ``failure`` counts only in code this regex finds

    def argv(self, command: Optional[str], env: Dict[str, str], startup: str,
             token: str, inherited: Optional[Dict[str, str]] = None,
             error_log: str = "") -> List[str]:
        """The argument list the pane runs (always several words: tmux then skips
        ``sh -c``); ``command`` is a --cmd command line, run by $SHELL; ``env``
        the variables set for it, ``inherited`` the ones it gets from the caller;
        ``error_log`` the file it logs its errors to."""
        def fill(text: str) -> str:
            return (text.replace("{startup}", startup).replace("{token}", token)
                    .replace("{startup_dir}", os.path.dirname(startup))
                    .replace("{error_log}", self.quote(error_log)))
        words = ["env", "TMUXSESS_TOKEN=" + token]
        for name in self.chained:
            value = env.get(name, (inherited or {}).get(name, ""))
            if value:
                words.append("TMUXSESS_%s=%s" % (name, value))
        words += ["%s=%s" % (k, fill(v)) for k, v in self.env]
        words += ["%s=%s" % kv for kv in env.items() if kv[0] not in self.chained]
        extra = [fill(a) for a in self.args]
        if env.get("TMUXSESS_NORC"):
            extra += [fill(a) for a in self.norc_args]
        if command is None:
            return words + [fill(a) for a in self.program] + extra
        shell = os.environ.get("SHELL") or "/bin/sh"
        if not extra:
            return words + [shell, "-c", command]
        # The profile's options follow the user's words, as "$@".
        return words + [shell, "-c", command + ' "$@"', self.name] + extra

    def startup_text(self, token: str) -> str:
        return self.startup.replace("{token}", token)

    @property
    def startup_per_session(self) -> bool:
        """Whether the startup file holds the session's token (so is the session's)."""
        return "{token}" in self.startup

    def needs_file(self, code: str) -> bool:
        """Whether ``code`` goes in as a private file (``block``): several lines,
        or a line with characters line editing would act on (a tab completes)."""
        line = code.rstrip("\n")
        return self.cut == "file" and ("\n" in line or not line.isprintable() or (
            self.takes_line is not None and not self.takes_line(line)))

    def unit_status(self, status: Optional[int], output: str, path: str = "",
                    logged: str = "", code: str = "") -> Optional[int]:
        """A unit's status from what it logged (``logged``: what its error log
        gained meanwhile), its end mark, its error lines, or none."""
        if self.logged_failure is not None and self.logged_failure(logged):
            return 1
        failure = self.failure.replace("{path}", re.escape(path))
        if failure and (path or failure == self.failure) and (
                not self.failure_when or re.search(self.failure_when, code, re.MULTILINE)
        ) and re.search(failure, output, re.MULTILINE):
            return 1
        if status is None and self.status:
            return 0  # psql before its first query; sqlite3, which has no end mark
        return status

    def units(self, code: str, path: str = "", by_lines: bool = False) -> List[str]:
        """The lines to type for ``code``, one exchange each; ``path`` holds the
        code when ``needs_file``; ``by_lines`` for a prompt given by regex."""
        if path:
            return [self.prefix + self.block.replace("{path}", self.quote(path))]
        if by_lines or self.cut == "lines":
            units = code.split("\n")
            if len(units) > 1 and units[-1] == "":
                units.pop()
            return units
        if self.cut == "wrap" and self.wrap is not None:
            return [self.wrap(code)]
        return [self.prefix + (code[:-1] if code.endswith("\n") else code)]


PROFILES: Dict[str, Profile] = {p.name: p for p in [
    Profile("shell", "shell", "bash; a command's own exit status",
            program=("bash", "--noprofile", "--rcfile", "{startup}", "-i"),
            startup=BASH_RC, startup_name="bashrc", marked=True, status=True,
            command_mark=True, cut="whole", continuation=("c",), takes_command=False),
    Profile("zsh", "shell", "zsh; a command's own exit status",
            program=("zsh", "-i"), env=(("ZDOTDIR", "{startup_dir}"),), startup=ZSH_ENV,
            startup_name=".zshenv", marked=True, status=True, command_mark=True,
            cut="whole", continuation=("c",), chained=("ZDOTDIR",)),
    Profile("fish", "shell", "fish; a command's own exit status",
            program=("fish",), args=("--init-command", 'source "$TMUXSESS_FISH_INIT"'),
            env=(("TMUXSESS_FISH_INIT", "{startup}"),), startup=FISH_INIT,
            startup_name="init.fish", marked=True, status=True, command_mark=True,
            cut="whole", continuation=("c",), norc_args=("--no-config",)),
    Profile("python", "python-repl", "python3 REPL; status 1 if it raised",
            program=("python3", "-q"),
            env=(("PYTHON_BASIC_REPL", "1"), ("PYTHONSTARTUP", "{startup}")),
            startup=PYTHON_STARTUP, startup_name="python_startup.py", marked=True,
            status=True, cut="wrap", wrap=_python_line, continuation=("s",),
            debuggers=("pdb",), chained=("PYTHONSTARTUP",), commands=r"python[0-9.]*"),
    Profile("ipython", "python-repl", "IPython; status 1 if a cell raised",
            program=("ipython",),
            args=("--simple-prompt", "--no-banner", "--no-confirm-exit", "--colors=nocolor",
                  "--HistoryManager.hist_file=:memory:", "-i", "-c", IPYTHON_RUN),
            env=(("TMUXSESS_IPYTHON_INIT", "{startup}"),), startup=IPYTHON_STARTUP,
            startup_name="ipython_startup.py", marked=True, status=True, cut="file",
            block="__tmuxsess_cell__({path})", block_suffix=".py", quote=repr,
            continuation=("c",), debuggers=("pdb",), takes_line=_ipython_takes_line,
            norc_args=("--quick", "--ipython-dir={startup_dir}")),
    Profile("pdb", "debugger", "the debugger inside a python session, at (Pdb)",
            marked=True, cut="wrap", wrap=_pdb_line, nested=True),
    Profile("gdb", "debugger", "gdb, quiet, no pagination, no confirmations",
            program=("gdb",), args=("-q", "-nx", "-iex", "set pagination off", "-iex",
                                    "set confirm off", "-iex", "set width 0", "-iex",
                                    GDB_PROMPT),
            marked=True, cut="file", block="source {path}", block_suffix=".gdb"),
    Profile("node", "command", "node REPL; status 1 if it threw",
            program=("node",), args=("{startup}",), startup=NODE_STARTUP,
            startup_name="node_startup.js", marked=True, status=True, cut="file",
            block=".tmuxsess_unit {path}", block_suffix=".js", continuation=("c",)),
    Profile("psql", "command", "psql; status from its ERROR variable",
            program=("psql",),
            args=("-X", "-P", "pager=off") + tuple(a for p in PSQL_PROMPTS for a in ("-v", p)),
            env=(("INPUTRC", "{startup}"),), startup=READLINE_INPUTRC,
            startup_name="inputrc", marked=True, status=True, cut="file",
            block="\\i {path}", block_suffix=".sql", quote=_sql_quoted,
            # ERROR is only set by SQL: a unit of meta-commands must not show the last one's
            prefix="\\set ERROR false \\\\ ", continuation=("c",),
            failure=r"^psql:{path}:\d+: (?:ERROR|FATAL|PANIC|error): "),
    Profile("sqlite", "command", "sqlite3; status 1 for an error sqlite3 logged",
            program=("sqlite3",), args=("-init", "/dev/null", "-cmd", ".log {error_log}"),
            env=(("INPUTRC", "{startup}"),), startup=SQLITE_INPUTRC,
            startup_name="inputrc", marked=True, status=True, cut="file",
            block=".read {path}", block_suffix=".sql", quote=_c_quoted, continuation=("c",),
            continuation_text="   ...> ", logged_failure=_sqlite_failed,
            failure=SQLITE_DOT_ERROR, failure_when=r"^[ \t]*\."),
    Profile("command", "command", "any program (--cmd); run needs --prompt REGEX"),
]}

# Registry types of older entries, and other names people give the kinds.
_KIND_OF_TYPE = {"shell": "shell", "python-repl": "python", "debugger": "gdb",
                 "command": "command"}
KIND_ALIASES = dict(_KIND_OF_TYPE, bash="shell", python3="python", sqlite3="sqlite",
                    nodejs="node", postgres="psql", ipython3="ipython")


def profile_of_command(command: str) -> Profile:
    """The profile of a program tmux names (``pane_current_command``); else the
    generic one."""
    for profile in PROFILES.values():
        if profile.commands and re.fullmatch(profile.commands, command):
            return profile
    return PROFILES["command"]


def profile_named(kind: str) -> Profile:
    """The profile ``--kind`` names (its name, an alias, or a registry type)."""
    name = kind if kind in PROFILES else KIND_ALIASES.get(kind, kind)
    profile = PROFILES.get(name)
    if profile is None or profile.nested:
        choices = ", ".join(p.name for p in PROFILES.values() if not p.nested)
        raise UsageError("unknown kind %r (one of %s)" % (kind, choices))
    return profile


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

class Registry:
    """The JSON file of registered sessions, changed only under an flock.

    Readers never lock: every write replaces the file atomically, so a reader
    sees the old or the new version, never a mix. The lock dies with the
    process that holds it, so a killed writer never leaves it stuck.
    """

    def __init__(self, directory: Optional[str] = None,
                 lock_timeout: Optional[float] = None) -> None:
        if directory is None or lock_timeout is None:
            settings = Settings.from_environment()
            directory = directory or settings.state_dir
            lock_timeout = settings.lock_timeout if lock_timeout is None else lock_timeout
        self.dir = directory
        self.lock_timeout = lock_timeout
        self.path = os.path.join(self.dir, ".sessions.json")
        self.lock_path = os.path.join(self.dir, ".sessions.lock")

    def load(self) -> Dict[str, Any]:
        """The whole document; an empty one when no file exists yet."""
        raw = self._read()
        if raw is None:
            return {"version": REGISTRY_VERSION, "sessions": {}}
        if not raw.strip():
            raise self._corrupt("the file is empty")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise self._corrupt("it is not UTF-8 text")
        except ValueError as e:
            raise self._corrupt("invalid JSON: %s" % e)
        problem = _document_problem(doc)
        if problem:
            raise self._corrupt(problem)
        return dict(doc)

    def _read(self) -> Optional[bytes]:
        """The file's bytes; None when there is no file."""
        if os.path.lexists(self.dir):  # a registry others could plant is not read
            private_dir(self.dir, "state dir")
        try:
            # O_NONBLOCK: a FIFO planted here must not hang every command.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._corrupt("it is a symlink")
            raise RegistryError("cannot read registry %s: %s" % (self.path, e.strerror))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._corrupt("it is not a regular file")
        with os.fdopen(fd, "rb") as f:
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.fchmod(f.fileno(), 0o600)  # others must not read session details
            try:
                return f.read()
            except OSError as e:
                raise RegistryError("cannot read registry %s: %s" % (self.path, e.strerror))

    def _corrupt(self, problem: str) -> CorruptRegistryError:
        return CorruptRegistryError(
            "registry %s is corrupt: %s" % (self.path, problem),
            "it was left untouched; run 'tmuxsess.py repair' to move it aside and "
            "rebuild it from tmux")

    def sessions(self) -> Dict[str, Session]:
        return {name: Session.from_json(name, entry)
                for name, entry in self.load()["sessions"].items()}

    def safe_sessions(self) -> Dict[str, Session]:
        """The sessions, or none when the registry cannot be read."""
        try:
            return self.sessions()
        except TmuxsessError:
            return {}

    @contextlib.contextmanager
    def lock(self, timeout: Optional[float] = None) -> Iterator[None]:
        """Hold the registry lock; wait at most ``timeout`` seconds for it."""
        private_dir(self.dir, "state dir")
        wait = self.lock_timeout if timeout is None else timeout
        with _flock(self.lock_path, time.monotonic() + wait, lambda: LockTimeoutError(
                "registry lock %s is held by another process; gave up after %gs "
                "without it changing hands" % (self.lock_path, wait),
                "another tmuxsess is stuck? see: fuser %s" % self.lock_path), turns=True):
            yield

    @contextlib.contextmanager
    def transaction(self, timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Lock, load, let the caller change ``doc["sessions"]``, write if changed."""
        with self.lock(timeout):
            doc = self.load()
            before = json.dumps(doc, sort_keys=True)
            yield doc
            if json.dumps(doc, sort_keys=True) != before:
                self.write(doc)

    def write(self, doc: Dict[str, Any]) -> None:
        """Replace the file atomically with ``doc``; the caller holds the lock."""
        data = (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode("utf-8")
        self._sweep_temp_files()
        tmp = "%s.tmp-%d-%s" % (self.path, os.getpid(), _random_id(8))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise RegistryError("cannot write registry %s: %s" % (self.path, e.strerror))

    def _sweep_temp_files(self) -> None:
        # Under the lock every temp file is a leftover of a writer that was killed.
        prefix = os.path.basename(self.path) + ".tmp-"
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir):
                if name.startswith(prefix):
                    os.unlink(os.path.join(self.dir, name))



def _document_problem(doc: Any) -> str:
    """What is wrong with a registry document's shape; "" if nothing is."""
    if not isinstance(doc, dict):
        return "the top level is %s, not an object" % _json_kind(doc)
    version = doc.setdefault("version", REGISTRY_VERSION)
    if not isinstance(version, str) or version.split(".")[0] != "1":
        return "unknown version %r (this tool reads 1.x)" % (version,)
    sessions = doc.setdefault("sessions", {})
    if not isinstance(sessions, dict):
        return '"sessions" is %s, not an object' % _json_kind(sessions)
    for name, entry in sessions.items():
        if not isinstance(entry, dict):
            return 'session %r is %s, not an object' % (name, _json_kind(entry))
        problem = _entry_problem(entry)
        if problem:
            return "session %r: %s" % (name, problem)
    return ""


def _entry_problem(entry: Dict[str, Any]) -> str:
    """What is wrong with a registry entry's known fields; "" if nothing is.

    Unknown fields are a newer version's business and are kept as they are.
    """
    for key in ("socket", "target"):
        if key not in entry:
            return '"%s" is missing' % key
        if entry[key] == "":
            return '"%s" is empty' % key
    for key in Session._KNOWN:
        if key not in entry:
            continue
        value = entry[key]
        if key != "pid":
            if not isinstance(value, str):
                return '"%s" is %s, not a string' % (key, _json_kind(value))
        elif not _is_pid(value):
            shown = json.dumps(value)[:40] if isinstance(value, (int, float, str)) else (
                _json_kind(value))
            return '"pid" is %s, not a process id' % shown
    return ""


def _is_pid(value: Any) -> bool:
    # digits in a string too (jq --arg writes strings); "" or null: unknown
    if isinstance(value, bool):
        return False
    return ((isinstance(value, int) and value >= 0) or value is None
            or (isinstance(value, str) and bool(re.fullmatch(r"[0-9]{0,18}", value))))


def _json_kind(value: Any) -> str:
    """What a JSON value is, as a person would say it."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list"}.get(type(value), "an object")


@contextlib.contextmanager
def _flock(path: str, deadline: float, busy: Callable[[], TmuxsessError],
           turns: bool = False) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (made 0600, never through a symlink).

    Waits until ``deadline`` (monotonic), then raises ``busy()``; with
    ``turns``, the wait goes on while the lock changes hands (see _flock_wait).
    The lock dies with its process: a killed holder never leaves it stuck, so
    there is no stale lock to clean up.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        problem = "it is a symlink" if e.errno == errno.ELOOP else e.strerror
        raise RegistryError("cannot open lock %s: %s" % (path, problem))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _flock_wait(fd, deadline, turns):
                raise busy()
        if turns:  # a turn taken: waiters see the lock is not stuck
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(fd)
        yield
    finally:
        os.close(fd)  # closing releases the flock (once the waiter's copy is closed too)


LOCK_TURNS_PATIENCE = 6  # a moving queue is waited on this many times the timeout at most


def _flock_wait(fd: int, deadline: float, turns: bool) -> bool:
    """Wait for the flock in the kernel's queue until ``deadline``.

    A thread blocks in flock so that the wait can end: woken the moment the
    lock is free, where a poll would sleep through that moment and let a
    newcomer take it, again and again under load. The thread locks a copy of
    ``fd`` (one open file, one lock) and closes it: taken late, the lock goes
    as soon as the caller closes ``fd``. With ``turns``, the deadline is the
    patience for one turn: it starts again each time another holder marks
    the file (a busy queue moves; a stuck holder does not), up to
    LOCK_TURNS_PATIENCE times the first.
    """
    began = time.monotonic()
    patience = deadline - began
    if patience <= 0:
        return False
    latest = began + patience * LOCK_TURNS_PATIENCE if turns else deadline
    turn = os.fstat(fd).st_mtime_ns
    copy = os.dup(fd)
    taken, guard, late = threading.Event(), threading.Lock(), [False]

    def take() -> None:
        try:
            fcntl.flock(copy, fcntl.LOCK_EX)
            with guard:
                if not late[0]:
                    taken.set()
        except OSError:
            pass
        finally:
            os.close(copy)
    threading.Thread(target=take, name="tmuxsess-lock-wait", daemon=True).start()
    while not taken.wait(max(min(deadline - time.monotonic(), 0.2), 0.0)):
        now = time.monotonic()
        marked = os.fstat(fd).st_mtime_ns if turns else turn
        if marked != turn:
            turn, deadline = marked, min(now + patience, latest)
        if now >= deadline:
            break
    with guard:
        late[0] = True
        return taken.is_set()


# ---------------------------------------------------------------------------
# Reading output: rendering, prompt marks, following a transcript
# ---------------------------------------------------------------------------

ESCAPE_RE = (
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"    # OSC, prompt marks among them
    r"|\x1b\[[0-?]*[ -/]*[@-~]"             # CSI: colours, cursor moves
    r"|\x1b[PX^_][^\x1b]*\x1b\\"            # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"                     # two-byte escapes, charsets
    r"|\x1b"                                # a lone escape
    r"|[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")  # other controls
SGR_RE = r"\x1b\[[0-9;:]*m"  # colours and attributes
MARK_RE = rb"\x1b\]133;([A-D])([^\x07\x1b]*)(?:\x07|\x1b\\)"
# What moves the cursor or changes text already written, and what of it moves
# between lines (or clears the screen): a text with none of the latter is
# rendered line by line, and a line with none of the former as it is.
MOVES_RE = r"[\r\b]|\x1b\[[0-9;]*[@A-HJKPXdf`]|\x1b[DEM]"
ACROSS_RE = r"\x1b\[[0-9;]*[ABEFHJdf]|\x1b[DEM]"
_TOKEN_RE = r"(" + ESCAPE_RE + r"|[\r\n\b\t])"
_CONTROLS = "".join(chr(c) for c in range(32) if c not in (9, 10)) + "\x7f"


def _strip_ansi(text: str, colours: bool = False) -> str:
    if colours:
        return re.sub(ESCAPE_RE, lambda m: m.group(0) if re.fullmatch(SGR_RE, m.group(0))
                      else "", text)
    return re.sub(ESCAPE_RE, "", text)


def render(text: str, colours: bool = False) -> str:
    """Terminal output as the screen shows it, as lines of text.

    Carriage returns, backspaces, tabs, cursor moves within and across lines
    (``\\e[A B C D E F G d H``), erasing lines and the screen (``\\e[K``, ``\\e[J``,
    in all modes) and inserting and deleting characters are applied as tmux
    applies them; other escapes show nothing. A line is unbounded: it never
    wraps (as ``capture-pane -J`` joins it). Text the screen would lose stays:
    lines scrolled or cleared away, lines above the one the text began on (it
    is a fragment of a stream, begun anywhere on the screen). Lines nothing
    moves over are returned as written, tabs and all.

    ``colours`` keeps colours and attributes (SGR sequences) with the
    characters they colour, ending each line that has any with a reset so they
    never bleed into the next.
    """
    if "\r" in text:  # a return that nothing follows on its line moves over nothing
        text = re.sub(r"\r+(?=\n|\Z)", "", text)
    if not any(c in text for c in _CONTROLS):  # plain text (a few memchr, not a regex)
        out = text
    elif "\x1b" not in text and "\r" not in text and "\b" not in text:
        out = re.sub(ESCAPE_RE, "", text)
    elif re.search(ACROSS_RE, text):
        out = _Screen(colours).feed(text).text()
    else:
        out = "\n".join(_Screen(colours).feed(line).text() if re.search(MOVES_RE, line)
                        else _strip_ansi(line, colours) for line in text.split("\n"))
    if colours and "\x1b[" in out:
        out = "\n".join(line + "\x1b[0m" if "\x1b[" in line and not line.endswith("\x1b[0m")
                        else line for line in out.split("\n"))
    return out


def _cells(text: str) -> "List[str]":
    """Text as screen cells: a wide character takes two (the second ""), a
    combining one joins the cell before it."""
    if text.isascii():
        return list(text)
    import unicodedata
    cells: "List[str]" = []
    for ch in text:
        if unicodedata.combining(ch) and cells:
            cells[-1] += ch
        else:
            cells.append(ch)
            if unicodedata.east_asian_width(ch) in ("W", "F"):
                cells.append("")
    return cells


class _Screen:
    """A screen with no edges that output draws on, read back as lines.

    Rows are numbered from the line the text begins on; the cursor may go
    above it (the screen's rows there are not in the text, so what is written
    there comes first). Where the screen's top is, the text does not say
    until the program moves to an absolute row (``\\e[H``): that row counts
    from below every line written so far, which drawing never overwrites.
    """

    def __init__(self, colours: bool) -> None:
        self.colours = colours
        self.rows: "Dict[int, List[str]]" = {}
        self.y = self.x = 0
        self.top: "Optional[int]" = None  # the screen's first row, once the output says
        self.sgr = ""  # colours seen and not yet on a character

    def feed(self, text: str) -> "_Screen":
        for i, part in enumerate(re.split(_TOKEN_RE, text)):
            if i % 2 == 0:
                if part:
                    self.put(_cells(part))
            elif part == "\n":
                self.y, self.x = self.y + 1, 0
            elif part == "\r":
                self.x = 0
            elif part == "\b":
                self.x = max(self.x - 1, 0)
            elif part == "\t":
                self.x = self.x // 8 * 8 + 8
            elif part[:2] == "\x1b[" and part[-1] != "m" and part[2:3] not in "<=>?":
                self.csi(part[2:-1], part[-1])
            elif part in ("\x1bD", "\x1bE", "\x1bM"):  # index, next line, reverse index
                self.move(-1 if part == "\x1bM" else 1)
                self.x = 0 if part == "\x1bE" else self.x
            elif self.colours and re.fullmatch(SGR_RE, part):
                self.sgr += part
        return self

    def csi(self, params: str, final: str) -> None:
        args = [min(int(p), 100000) if p.isdigit() else 0 for p in params.split(";")]
        n = max(args[0], 1)  # a count of 0 or none is 1
        if final in "ABEF":
            self.move(-n if final in "AF" else n)
            self.x = 0 if final in "EF" else self.x
        elif final in "CD":
            self.x = max(self.x + (n if final == "C" else -n), 0)
        elif final in "G`":
            self.x = n - 1
        elif final in "Hfd":
            if self.top is None:
                self.top = max(self.rows, default=-1) + 1
            self.y = self.top + n - 1
            self.x = max(args[1], 1) - 1 if final != "d" and len(args) > 1 else (
                self.x if final == "d" else 0)
        elif final == "K" and args[0] <= 2:
            self.erase(self.y, *((self.x, None), (0, self.x + 1), (0, None))[args[0]])
        elif final == "J":
            self.erase_screen(args[0])
        elif final in "@PX":
            row = self.row(self.y)
            if final == "@":
                row[self.x:self.x] = [" "] * n if self.x < len(row) else []
            elif final == "P":
                del row[self.x:self.x + n]
            else:
                self.erase(self.y, self.x, self.x + n)

    def move(self, rows: int) -> None:
        """The cursor down (or up): not above the screen's top, once known."""
        top = self.top if self.top is not None and self.y >= self.top else self.y + rows
        self.y = max(self.y + rows, top)

    def row(self, y: int) -> "List[str]":
        return self.rows.setdefault(y, [])

    def put(self, cells: "List[str]") -> None:
        row = self.row(self.y)
        if self.colours and self.sgr:
            cells[0], self.sgr = self.sgr + cells[0], ""
        end = self.x + len(cells)
        if len(row) < self.x:
            row.extend(" " * (self.x - len(row)))
        if 0 < self.x < len(row) and row[self.x] == "":  # the right half of a wide one
            row[self.x - 1] = " "
        if end < len(row) and row[end] == "":  # a half left alone: blank, or gone at the end
            row[end:end + 1] = [" "] if end + 1 < len(row) else []
        row[self.x:end] = cells
        self.x = end

    def erase(self, y: int, start: int, stop: "Optional[int]") -> None:
        row = self.rows.get(y)
        if row is None:
            return
        if stop is None or stop >= len(row):
            del row[start:]  # cleared cells at a row's end are no text
        else:
            row[start:stop] = [" "] * (stop - start)

    def erase_screen(self, how: int) -> None:
        """\\e[J from the cursor on, \\e[1J up to it, \\e[2J all of it. As
        tmux keeps a cleared screen's lines in its history, the text keeps
        the lines \\e[2J clears: a new screen starts below them (the cursor
        keeps its row on it). \\e[3J clears only the history: nothing here."""
        if how == 0 and (self.y, self.x) == (self.top, 0):
            how = 2  # the whole screen: tmux keeps its lines in the history
        if how == 0:
            self.erase(self.y, self.x, None)
            for y in [y for y in self.rows if y > self.y]:
                del self.rows[y]
        elif how == 1:
            top = self.top if self.top is not None else min(self.rows, default=0)
            for y in range(top, self.y):
                if y in self.rows:
                    self.rows[y] = []
            self.erase(self.y, 0, self.x + 1)
        elif how == 2:
            below = self.y - self.top if self.top is not None and self.y >= self.top else None
            self.top = max(self.rows, default=-1) + 1
            self.y = self.top + below if below is not None else max(self.y, self.top)

    def text(self) -> str:
        """The rows as lines, down to the cursor's."""
        if not self.rows:
            return "\n" * max(self.y, 0) + self.sgr  # only line ends
        first, last = min(min(self.rows), 0), max(max(self.rows), self.y)
        lines = ["".join(self.rows.get(y, ())) for y in range(first, last + 1)]
        return "\n".join(lines) + self.sgr


def _compile_prompt(prompt: str) -> "re.Pattern[str]":
    try:
        return re.compile(prompt)
    except re.error as e:
        raise UsageError("bad prompt regex %r: %s" % (prompt, e))


def _compile_pattern(pattern: str, fixed: bool) -> "re.Pattern[str]":
    if fixed:
        return re.compile(re.escape(pattern))
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise UsageError("bad pattern %r: %s" % (pattern, e))


class Mark:
    """A prompt mark the session's own program printed. (A plain class, not a
    Record: a run reads a dozen of them, and this is the cheaper one.)"""

    __slots__ = ("kind", "args", "match")

    def __init__(self, kind: bytes, args: List[bytes], match: "re.Match[bytes]") -> None:
        self.kind = kind    # A prompt starts, B it ends, C command runs, D it ended
        self.args = args    # its arguments, the session's token left out
        self.match = match  # where it is

    @property
    def prompt(self) -> str:
        """Which prompt an A mark starts: "" the main one, else its ``k=`` name."""
        for arg in self.args:
            if arg.startswith(b"k="):
                return arg[2:].decode("ascii", "replace")
        return ""

    @property
    def status(self) -> Optional[int]:
        """The status a D mark carries: a number, or psql's true/false."""
        value = self.args[0] if self.args else b""
        if value.lstrip(b"-").isdigit():
            return int(value)
        return {b"true": 1, b"false": 0}.get(value)


def _own_mark(m: "re.Match[bytes]", token: str) -> Optional[Mark]:
    """A prompt mark if the session printed it.

    The tool's sessions put their token in every mark; a mark without it was
    printed by something else (a nested shell with its own marks, ssh, a
    stray print) and is not theirs. A session without a token (made by an
    older version) owns every mark, as it did then.
    """
    args = m.group(2).split(b";")[1:]
    if token and b"tmuxsess=" + token.encode() not in args:
        return None
    return Mark(m.group(1), [a for a in args if not a.startswith(b"tmuxsess=")], m)


def _marks(data: Union[bytes, bytearray], token: str, pos: int = 0) -> Iterator[Mark]:
    """The session's own prompt marks in ``data`` from ``pos`` on, in order."""
    for m in re.compile(MARK_RE).finditer(data, pos):
        mark = _own_mark(m, token)
        if mark is not None:
            yield mark


def _last_marks(data: bytes, token: str) -> Iterator[Mark]:
    """The session's own prompt marks in ``data``, last first.

    A prompt is at the end of a transcript: reading back from there finds it
    without going through every mark of the output before it.
    """
    end = len(data)
    while True:
        at = data.rfind(b"\x1b]133;", 0, end)
        if at < 0:
            return
        end = at
        m = re.compile(MARK_RE).match(data, at)
        mark = _own_mark(m, token) if m is not None else None
        if mark is not None:
            yield mark


def prompt_at_end(tail: bytes, token: str, continuation_text: str = "") -> Optional[str]:
    """The prompt a transcript ends at ("" the main one, else its name), or None
    when the program is not waiting at a marked prompt.

    ``continuation_text`` is what follows a plain A mark at a continuation
    prompt, for a program that marks both alike (sqlite3): that one is "c".
    """
    marks = _last_marks(tail, token)
    mark = next(marks, None)
    if mark is not None and mark.kind == b"B":  # the end of the prompt: the prompt is the A
        mark = next(marks, mark)
    if mark is None or mark.kind != b"A" or b"\n" in tail[mark.match.end():]:
        return None
    return _prompt_name(mark, tail, continuation_text) or ""


def _last_prompt_start(tail: bytes, token: str) -> int:
    """Where the last prompt mark (A) begins in ``tail``; -1 if there is none."""
    return next((m.match.start() for m in _last_marks(tail, token) if m.kind == b"A"), -1)


def prompt_under_output(tail: bytes, token: str, since: int = -1) -> Optional[str]:
    """The prompt a program still waits at though it printed more after it (a
    thread, a logger, a job notice), or None.

    That is: the last prompt was shown whole (its B mark came), what follows
    holds a newline (output: typed text has none before Enter), and nothing was
    typed since the prompt appeared (``since``: where in ``tail`` the last send
    began, -1 for none or earlier).
    """
    marks = _last_marks(tail, token)
    end = next(marks, None)
    prompt = next(marks, None)
    if end is None or end.kind != b"B" or prompt is None or prompt.kind != b"A":
        return None
    if since >= prompt.match.start() or b"\n" not in tail[end.match.end():]:
        return None
    return prompt.prompt


def _prompt_name(mark: Mark, data: Union[bytes, bytearray], continuation_text: str
                 ) -> Optional[str]:
    """The name of the prompt an A mark starts; None while the text that tells
    is still to come."""
    if mark.prompt or not continuation_text:
        return mark.prompt
    want = continuation_text.encode()
    after = bytes(data[mark.match.end():mark.match.end() + len(want)])
    if after == want:
        return "c"
    return None if want.startswith(after) and len(after) < len(want) else ""


def _at_regex_prompt(tail: bytes, prompt_re: "re.Pattern[str]") -> bool:
    last = render(tail.decode("utf-8", "replace")).rsplit("\n", 1)[-1]
    return bool(prompt_re.search(last))


def _unsent_text(tail: bytes, token: str) -> str:
    """Text typed on the prompt line but not entered (after the prompt's B mark).

    "" when there is none, or when the prompt has no B mark to tell by (a PS1
    the user changed, a session made by an older version).
    """
    later: List[Mark] = []  # marks after the last prompt, last first
    for mark in _last_marks(tail, token):
        if mark.kind == b"A":
            prompt = mark.match
            break
        later.append(mark)
    else:
        return ""
    end = next((m.match for m in reversed(later) if m.kind == b"B"), None)
    if end is None:
        return ""
    # Rendered from the line's start: readline redraws a line with "\r" and
    # moves over the prompt, which covers the columns of the prompt itself.
    begin = tail.rfind(b"\n", 0, prompt.start()) + 1
    shown = render(tail[begin:end.start()].decode("utf-8", "replace"))
    line = render(tail[begin:].decode("utf-8", "replace"))
    return line[len(shown):].strip()


# Output that draws on the screen instead of writing lines: the alternate
# screen, cursor positioning. Its text is where the cursor put it, which a
# transcript read as lines cannot say: waits then look at the screen too.
DRAWING_RE = rb"\x1b\[\?(?:1049|1047|47)h|\x1b\[[0-9;]*[HfdAB]"
# The screen's word that a program asks, needed where the kernel's is not
# enough (Terminal.reads "multiplexed" or "unknown": ssh, an event loop, another
# user's process, no /proc). After ASKS_QUIET seconds without output, any of:
# the terminal edits lines without echo (a password prompt); the program is in
# the alternate screen (a full-screen program or pager: it waits for keys); the
# output's last line is unfinished and ends like a question or a prompt ("? ",
# ": ", "] ", "> ", "$ ", "# ", a pager's "(END)" or "--More--") or names a
# secret, a yes/no choice or a key to press (QUESTION_RE, ASKING_RE); its last
# finished line ends in "?" or offers a yes/no choice (ASKED_RE). Where the
# output moves the cursor, the screen's line left of the cursor stands for the
# unfinished line. Nothing else is: no output, output that ends a line, a line
# that does not ask.
ASKS_QUIET = 1.0
QUESTION_RE = r"(?i)(?:[?:>\]$#]|\(END\)|--More--(?:\(\d+%\))?)\s*\Z"
_YES_NO = r"[\[(]\s*y(?:es)?\s*/\s*n(?:o)?\s*[\])]"
ASKING_RE = (r"(?i)\b(?:password|passphrase|passcode|PIN)\b|\bpress (?:any key|enter"
             r"|return)\b|" + _YES_NO)
ASKED_RE = r"(?i)\?\s*\Z|" + _YES_NO
ALT_SCREEN_RE = rb"\x1b\[\?(?:1049|1047|47)([hl])"


def asks(tail: bytes, term: "Terminal", alternate: bool = False,
         look: Optional[Callable[[], Optional["Look"]]] = None) -> Tuple[str, str]:
    """What the end of a program's output (``tail``) and its terminal say of a
    question it asks: (why, the line that asks); ("", "") nothing.
    ``alternate``: the pane was in the alternate screen before ``tail`` began.
    ``look``: a look at the screen, taken only when the output draws (moves
    the cursor: prompt_toolkit, a relayed full-screen program), where its
    lines are not what the screen shows."""
    if term.password:
        return "the terminal reads a line without echo (a password prompt)", ""
    switches = re.findall(ALT_SCREEN_RE, tail)
    if (switches[-1] == b"h") if switches else alternate:
        return "a full-screen program in the alternate screen", ""
    lines = render(tail.decode("utf-8", "replace")).rstrip(" ").rsplit("\n", 2)
    last = lines[-1].strip()
    done = lines[-2].strip() if len(lines) > 1 and not last else ""
    if last and (re.search(QUESTION_RE, last) or re.search(ASKING_RE, last)) or (
            done and re.search(ASKED_RE, done)):
        return "its last line asks", last or done
    seen = look() if look is not None and re.search(DRAWING_RE, tail) else None
    if seen is None:
        return "", ""
    if seen.alternate:
        return "a full-screen program in the alternate screen", ""
    row, col = int(seen.state.cursor_y or 0), int(seen.state.cursor_x or 0)
    left = seen.rows[row][:col].strip() if row < len(seen.rows) else ""
    if left and (re.search(QUESTION_RE, left) or re.search(ASKING_RE, left)):
        return "the cursor's line asks", left
    return "", ""


# Bracketed paste asked for (h) or ended (l) by the program in the pane.
BRACKETED_RE = rb"\x1b\[\?2004([hl])"
# One look at the screen: its state, then its visible rows (-N: trailing
# spaces the program wrote are kept, so a prompt's "$ " still ends in a space).
LOOK_STEPS = (["display-message", "-p", "-F", row_format(ScreenState)],
              ["capture-pane", "-p", "-N"])
# How send puts text in: "auto" types it into a program in the alternate
# screen and pastes it elsewhere; "type" and "paste" force either.
DELIVERIES = ("auto", "type", "paste")
TYPE_PIECE = 8192             # bytes of text per send-keys -l (tmux takes 16 KiB a command)
SUBMIT_PRESSES = 4            # Enter presses for one paste, at most
SUBMIT_WINDOW = 0.3           # seconds the first Enter has to show; doubled each time


class Look(Record):
    """One look at a pane's visible screen: its state and its rows, as tmux
    renders them (trailing spaces the program wrote kept)."""

    state: ScreenState
    rows: List[str]

    @property
    def alternate(self) -> bool:
        return self.state.alternate_on == "1"

    @property
    def history(self) -> int:
        return int(self.state.history_size or 0)

    @property
    def cursor(self) -> Tuple[int, int]:
        return int(self.state.cursor_x or 0), int(self.state.cursor_y or 0)

    def encode(self) -> str:
        return "\t".join(self.state.as_dict().values()) + "\n" + "\n".join(self.rows)

    @classmethod
    def decode(cls, text: str) -> Optional["Look"]:
        """A look from ``display-message SCREEN_FORMAT`` and ``capture-pane``
        output (or ``encode``); None if it is not one."""
        head, _, body = text.partition("\n")
        states = parse_rows(ScreenState, head)
        if not states:
            return None
        height = int(states[0].pane_height or 0) if states[0].pane_height.isdigit() else 0
        rows = body.split("\n")
        return cls(states[0], rows[:height] if height else rows)


def _changed_text(before: Optional[Look], now: Look) -> str:
    """The screen's text that changed since ``before``, row by row: a row that
    only grew (typing on a prompt line) counts from where it grew, any other
    changed row counts whole. Rows scrolled into the history are followed in
    the main screen. Without ``before``, the whole screen counts."""
    if before is None:
        return "\n".join(now.rows)
    shift = 0
    if not now.alternate and not before.alternate:
        shift = max(0, now.history - before.history)
    parts = []
    for j, row in enumerate(now.rows):
        i = j + shift
        old = before.rows[i] if 0 <= i < len(before.rows) else ""
        if row == old:
            continue
        parts.append(row[len(old):] if old.strip() and row.startswith(old) else row)
    return "\n".join(parts)


def _search_outside(pattern: "re.Pattern[str]", text: str, echo: Sequence[str]
                    ) -> Optional["re.Match[str]"]:
    """The first match of ``pattern`` in ``text`` that does not lie inside the
    echo of a line that was sent (a full-screen program may show it anywhere)."""
    spans = []
    for line in echo:
        at = text.find(line) if line.strip() else -1
        while at >= 0:
            spans.append((at, at + len(line)))
            at = text.find(line, at + 1)
    for m in pattern.finditer(text):
        if not any(a <= m.start() and m.end() <= b for a, b in spans):
            return m
    return None


def _look_at(host: "Host", pane: Pane) -> Look:
    """One look at a pane's visible screen: one tmux call."""
    target = pane.pane_id or pane.target
    look = Look.decode(host.tmux(pane.server, LOOK_STEPS[0] + ["-t", target],
                                 LOOK_STEPS[1] + ["-t", target]))
    if look is None:
        raise TmuxError("tmux did not describe pane %s" % pane.label)
    return look


def _look_or_none(host: "Host", pane: Pane) -> Optional[Look]:
    """A look at the screen; None when tmux cannot give one."""
    try:
        return _look_at(host, pane)
    except TmuxsessError:
        return None


def _look_of(pane: Pane, rows: str) -> Optional[Look]:
    """A look from ``capture-pane`` rows and the state the pane was found in."""
    state = pane.screen_state
    if state is None or not state.pane_height.isdigit():
        return None
    return Look(state, rows.split("\n")[:int(state.pane_height)])


def _last_rows(look: Look, count: int = 10) -> str:
    """The last non-blank rows of a look, for error messages."""
    rows = [r.rstrip() for r in look.rows]
    while rows and not rows[-1]:
        rows.pop()
    return "\n".join(rows[-count:])


def _echo_lines(text: Optional[str]) -> List[str]:
    """The lines of a sent text as a screen may show them."""
    return [line.strip() for line in (text or "").replace("\r", "\n").split("\n")
            if len(line.strip()) > 1]


def bracketed_paste(tail: bytes) -> Optional[bool]:
    """Whether the program asked for bracketed paste, by its last word on it in
    the transcript's ``tail``; None when the tail does not say."""
    last = None
    for m in re.finditer(BRACKETED_RE, tail):
        last = m
    return None if last is None else last.group(1) == b"h"


if TYPE_CHECKING:
    WatchMode = Literal["marks", "ready", "regex", "pattern", "settle"]


class _Watch(Record):
    """What to wait for after a send, and how to find where the output starts.

    ``marks``: the next marked prompt ends it (a continuation prompt, or one of
    ``debuggers`` other than ``at``, says the program waits for more input);
    ``ready``: any marked prompt; ``regex``: a last line matching ``pattern``;
    ``pattern``: ``pattern`` anywhere in the output; ``settle``: the output
    stopping for a moment.
    """

    mode: WatchMode
    skip_lines: int = 0             # echo lines to skip (programs without a C mark)
    cmark: bool = False             # output starts after the shell's C mark
    partial: bytes = b""            # the end of text sent without Enter (its echo's end)
    partial_len: int = 0            # the length of that text
    pattern: Optional["re.Pattern[str]"] = None
    max_output: int = 0             # 0: keep everything
    continuation: Tuple[str, ...] = ()  # names of continuation prompts
    continuation_text: str = ""         # see prompt_at_end
    debuggers: Tuple[str, ...] = ()     # names of prompts a debugger shows
    at: str = ""                    # the prompt the unit was typed at
    probe: bool = True              # stop when the program waits for input
    refuse: Optional["re.Pattern[str]"] = None  # --not: this ends the wait, failed
    colours: bool = False           # output keeps colours (SGR)

    @classmethod
    def after(cls, record: SentRecord, pattern: "re.Pattern[str]",
              refuse: Optional["re.Pattern[str]"] = None) -> "_Watch":
        """A pattern wait for the output that answers a recorded send."""
        return cls("pattern", skip_lines=record.lines, cmark=record.cmark,
                   partial=record.partial, partial_len=record.partial_len,
                   pattern=pattern, refuse=refuse)


# A look at the screen for a follower: None, or how the wait ends and the match.
if TYPE_CHECKING:
    ScreenCheck = Callable[[], Optional[Tuple[Ending, str]]]


class _Lifeline:
    """Whether a pane's program, or its server, has ended: asked of the kernel
    by pid (no process per look), with tmux, the program's parent, having the
    last word before anyone is told it ended.

    A zombie has ended for certain. A pid the kernel has no process for, tmux
    has reaped, so its pane shows dead at once (a busy server takes a moment).
    If tmux shows the pane running another program (a respawned pane), the one
    followed has ended, unless ``adopt`` (a new session's first prompt, where
    nothing was typed yet): then the one that runs is followed from then on.
    Still running after DOUBT seconds under the same pid, or a server tmux
    answers for while the kernel knows no such pid: this host's kernel numbers
    tmux's processes otherwise (the tool in a container of its own, tmux
    outside it), and only tmux is asked from then on (``pane.tmux_only``), every
    ASK_EVERY seconds. A tmux call that fails says nothing either way; it is
    tried again a moment later.
    """

    DOUBT = 1.0
    ASK_EVERY = 0.25
    RETRY = 0.02  # seconds between calls while tmux is asked to settle a doubt

    def __init__(self, host: "Host", pane: Pane, adopt: bool = False) -> None:
        self.host, self.pane, self.adopt = host, pane, adopt
        self.doubted: Optional[float] = None  # since when the kernel and tmux disagree
        self.asked = 0.0                      # when tmux was last asked

    def ended(self, force: bool = False) -> Optional[Ending]:
        """"server", "dead", or None while both run (or none can tell yet).
        ``force``: a last look, which asks tmux now where it is the one asked."""
        pane = self.pane
        if pane.tmux_only:
            return self._tmux_says(0.0 if force else self.ASK_EVERY)[1]
        if pane.server_pid and not self.host.alive(pane.server_pid):
            return self._server_gone()
        if pane.pid:
            state = self.host.process_state(pane.pid)
            if state == "running":
                self.doubted = None
                return None
            return "dead" if state == "zombie" else self._pid_gone()
        return None

    def _server_gone(self) -> Optional[Ending]:
        asked, said = self._tmux_says(self.RETRY)
        if asked and said is None:  # it answered: its pids are not this kernel's
            self.pane.tmux_only = True
        return said

    def _pid_gone(self) -> Optional[Ending]:
        asked, said = self._tmux_says(self.RETRY)
        if not asked or said is not None:
            return said
        if self.doubted is None and self.host.alive(self.pane.pid):
            return None  # tmux named the pid that runs there now
        now = time.monotonic()
        self.doubted = self.doubted or now
        if now - self.doubted >= self.DOUBT:
            self.pane.tmux_only = True
        return None

    def _tmux_says(self, every: float) -> Tuple[bool, Optional[Ending]]:
        """(whether tmux answered, how it shows the pane: "dead" or gone, "server"
        when none answers, None running), asked at most every ``every`` seconds
        (not asked: False, None). Adopts the pid it names for the pane where
        that one runs and ``adopt`` allows."""
        now = time.monotonic()
        if now - self.asked < every:
            return False, None
        self.asked = now
        try:
            rows = self.host.pane(self.pane.server, self.pane.pane_id)
        except TmuxsessError:
            return False, None  # a failing call says nothing of the pane
        if rows is None:
            return True, "server"
        if not rows or rows[0].dead:
            return True, "dead"
        pid = rows[0].program_pid
        if not self.pane.tmux_only and pid != self.pane.pid and self.host.alive(pid):
            if not self.adopt:
                return True, "dead"  # what it ran was typed into a program that is gone
            self.pane.pid, self.doubted = pid, None
        return True, None


class _Follower:
    """Follows a transcript from an offset and decides when the exchange is done.

    Reads the file (no tmux process per look): polled for the first
    milliseconds, then woken by the file growing (inotify) where the host can,
    else polled with an interval that backs off to ``interval``; asks the host
    by pid whether the program or the server died meanwhile.
    """

    LOOKBACK = 65536

    def __init__(self, host: Host, pane: Pane, offset: int, watch: _Watch,
                 screen: Optional[ScreenCheck] = None, adopt: bool = False) -> None:
        self.host, self.pane, self.watch = host, pane, watch
        self.fresh = offset == 0  # followed from the transcript's start: see pipe_late
        self.screen = screen    # looks at the screen once the output draws on it
        self.drawn = False      # the output drew (alternate screen, cursor moves)
        self.looked = 0.0
        self.look_every = 0.01
        self.file = host.open_transcript(pane.transcript)
        self.file.seek(offset)
        self.buf = bytearray()
        self.start: Optional[int] = None    # where output begins in buf
        self.end: Optional[int] = None      # where output ends (prompt) in buf
        self.status: Optional[int] = None
        self.ended_at = ""                  # the prompt it ended at, by name
        self.reason: Ending = "done"
        self.match = ""
        self.dropped = 0
        self.scanned = 0
        self.seen = ""  # rendered output already scanned (pattern mode)
        self.began = time.monotonic()
        self.terminal: Optional[Terminal] = None  # the last look at it
        self.next_probe = 0.0
        self.suspected: Optional[float] = None  # when it first seemed to wait
        self.asked = ""  # the line the screen's evidence that it asks found
        self.nap: Optional[_FileWatch] = None   # wakes a wait when the file grows
        self.fed = (0.0, 0.0)                   # when the last two reads got output
        self.lifeline = _Lifeline(host, pane, adopt)  # whether the program or server ended

    def close(self) -> None:
        self.file.close()
        if self.nap is not None:
            self.nap.close()

    def __enter__(self) -> "_Follower":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _feed(self) -> bool:
        chunk = self.file.read(1 << 20)
        if not chunk:
            return False
        if self.screen is not None and not self.drawn:
            self.drawn = bool(re.search(DRAWING_RE, bytes(self.buf[-16:]) + chunk))
        self.buf += chunk
        self.fed = (self.fed[1], time.monotonic())
        return True

    def _screen_says(self) -> bool:
        """Once the output draws on the screen, look at the screen now and then
        (a tmux call each time, backing off to a tenth of a second)."""
        now = time.monotonic()
        if self.screen is None or not self.drawn or now - self.looked < self.look_every:
            return False
        self.looked, self.look_every = now, min(self.look_every * 2, 0.1)
        said = self.screen()
        if said is None:
            return False
        self.reason, self.match = said
        return True

    def _find_start(self) -> None:
        if self.watch.cmark:
            self._find_command_start()
        else:
            self._skip_echo()

    def _find_command_start(self) -> None:
        for mark in _marks(self.buf, self.pane.token):
            if mark.kind == b"C":
                self.start = mark.match.end()
                return
            if mark.kind == b"D" or (mark.kind == b"A" and mark.prompt):
                # Nothing ran: an empty line, a comment, a syntax error, or an
                # unfinished line at the continuation prompt. bash (5.1+) ends
                # bracketed paste as it takes the line, zsh just before its
                # newline; what follows is what it said about the line.
                taken = self.buf.find(b"\x1b[?2004l", 0, mark.match.start())
                if taken < 0:
                    self.start = mark.match.start()
                else:
                    line_end = re.compile(rb"\r*\n").match(self.buf, taken + 8)
                    self.start = line_end.end() if line_end else taken + 8
                return

    def _skip_echo(self) -> None:
        w, buf = self.watch, self.buf
        pos = 0
        for _ in range(w.skip_lines):
            nl = buf.find(b"\n", pos)
            if nl < 0:
                return
            pos = nl + 1
        if w.partial:
            # The echo may be coloured or redrawn (bash highlights a paste), but it
            # ends with the text's end, and is not shorter than the text.
            earliest = pos + max(w.partial_len - len(w.partial), 0)
            at = buf.find(w.partial, earliest, earliest + 2 * w.partial_len + 4096)
            if at >= 0:
                pos = at + len(w.partial)
            elif time.monotonic() - self.began < 0.2:
                return  # the echo may still be arriving
        self.start = pos

    def _trim(self) -> None:
        # Keep at most max_output bytes of output in memory: the newest ones.
        # A pattern is only sought in the last LOOKBACK bytes, so a wait keeps
        # no more than that, however much the program prints.
        if self.start is None:
            return
        if self.watch.mode == "pattern":
            keep = self.LOOKBACK
        elif self.watch.max_output:
            keep = self.watch.max_output + self.LOOKBACK
        else:
            return
        excess = len(self.buf) - self.start - keep
        if excess > 0:
            del self.buf[self.start:self.start + excess]
            self.dropped += excess
            self.scanned = max(self.start, self.scanned - excess)
            if self.end is not None:  # an end mark came, its prompt not yet
                self.end = max(self.start, self.end - excess)

    def _check(self) -> bool:
        if self.start is None:
            self._find_start()
            if self.start is None:
                return False
            self.scanned = self.start
        check = {"marks": self._check_marks, "ready": self._check_marks,
                 "regex": self._check_regex, "pattern": self._check_pattern}
        done = check[self.watch.mode]() if self.watch.mode in check else False
        if not done:
            self._trim()
        return done

    def _check_marks(self) -> bool:
        w, buf, start = self.watch, self.buf, self.start or 0
        from_ = max(start, self.scanned - 256)  # a mark cut by a read
        self.scanned = len(buf)
        for mark in _marks(buf, self.pane.token, from_):
            if mark.kind == b"D" and self.end is None:
                self.end = mark.match.start()
                self.status = mark.status
            elif mark.kind == b"A":
                name = _prompt_name(mark, buf, w.continuation_text)
                if name is None:  # which prompt it is comes with the next read
                    self.scanned = mark.match.start()
                    return False
                if self.end is None:
                    self.end = mark.match.start()
                self.ended_at = name
                if w.mode == "marks" and name in w.continuation:
                    self.reason = "continuation"
                elif w.mode == "marks" and name != w.at and name in w.debuggers:
                    self.reason = "debugger"
                return True
        return False

    def _check_regex(self) -> bool:
        buf, start = self.buf, self.start or 0
        nl = buf.rfind(b"\n", start)
        last = render(bytes(buf[nl + 1 if nl >= 0 else start:]).decode("utf-8", "replace"))
        if self.watch.pattern is not None and self.watch.pattern.search(last):
            self.end = nl + 1 if nl >= 0 else start
            return True
        return False

    def _check_pattern(self) -> bool:
        # Render each whole line once; search the last LOOKBACK characters of
        # them plus the line still being written.
        buf = self.buf
        done = buf.rfind(b"\n", self.scanned) + 1
        if done > self.scanned:
            seen = self.seen + render(bytes(buf[self.scanned:done]).decode(
                "utf-8", "replace"))
            if len(seen) > self.LOOKBACK:
                # From a line's start where one is in reach, never past the
                # last line's: a line longer than LOOKBACK keeps its end.
                cut = len(seen) - self.LOOKBACK
                nl = seen.find("\n", cut, len(seen) - 1)
                seen = seen[nl + 1:] if nl >= 0 else seen[cut:]
            self.seen, self.scanned = seen, done
        text = self.seen + render(bytes(buf[self.scanned:]).decode("utf-8", "replace"))
        refused = self.watch.refuse.search(text) if self.watch.refuse is not None else None
        found = refused or (self.watch.pattern.search(text)
                            if self.watch.pattern is not None else None)
        if found:
            self.match = found.group(0)
            self.reason = "refused" if refused else "done"
            return True
        return False

    def follow(self, timeout: float, interval: float = 0.05, settle: float = 0.0,
               silence: float = 0.0, cancel: Optional[Any] = None,
               on_output: Optional[Callable[[str], None]] = None) -> Ending:
        """Wait; return ``done`` (or how the prompt said it is done), ``timeout``,
        ``dead``, ``server`` or ``cancelled`` (``cancel.is_set()``).

        With ``settle``, done means no new output for that long once some
        came, or none at all for ``silence`` (if longer). ``on_output`` gets
        the output so far, at most twice a second, while it grows.
        """
        deadline = self.began + timeout
        delay, quiet_since, told = 0.001, time.monotonic(), 0.0
        while True:
            if self._screen_says():
                return self.reason
            if self._feed():
                quiet_since = time.monotonic()
                delay = 0.001
                if not settle and self._check():
                    return self.reason
                if on_output is not None and quiet_since - told >= 0.5:
                    told = quiet_since
                    on_output(self.output())
                continue
            if not settle and self.start is None and self._check():
                return self.reason  # a partial echo that never came
            now = time.monotonic()
            if settle and now - quiet_since >= (settle if self.buf else max(settle, silence)):
                return "done"
            stopped = self._stopped(now, quiet_since, cancel, settle)
            if stopped is not None:
                return stopped
            if now >= deadline:
                return "timeout"
            self._nap(min(delay, max(deadline - now, 0.0005)), min(interval, deadline - now))
            delay = min(delay * 2, interval)

    def _nap(self, delay: float, longest: float) -> None:
        """Wait for output: ``delay`` polling, or until the transcript is written
        to (``longest`` at most) once a watch on it is set up. The watch is set
        up on the first nap, or in a process's first wait on the first longer
        than a millisecond or two (a quick answer needs no ctypes loaded); the
        file is read again before waiting on it."""
        if self.nap is None:
            if delay < 0.002 and _Inotify.libc is None:  # ctypes not loaded yet: costs more
                time.sleep(delay)
                return
            self.nap = self.host.watch_transcript(self.pane.transcript)
            return  # what was written before the watch is read first
        if not self.nap.wakes:
            time.sleep(delay)
            return
        if self.screen is not None and self.drawn:  # the screen's next look
            longest = min(longest, self.look_every)
        if time.monotonic() - self.fed[0] < 0.003:
            # Output keeps coming: read it a millisecond at a time, not a wake-up
            # per write (a flood would cost a core). What is still to come is
            # read at once after a pause.
            time.sleep(0.001)
        self.nap.wait(max(longest, 0.0005))

    def _stopped(self, now: float, quiet_since: float, cancel: Optional[Any],
                 settle: float) -> Optional[Ending]:
        """Why waiting for output is over, other than output: the program or the
        server died, the caller cancelled, or the program waits for input."""
        gone = self._gone()
        if gone:
            return self._last_words(gone, settle)
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if not settle and self._waits_for_input(now, quiet_since):
            if self.pipe_late() is not False:
                self.suspected = None  # asked again once the transcript caught up
                return None
            tail = bytes(self.buf[-4096:])
            return "prompt" if prompt_at_end(tail, self.pane.token) is not None else "input"
        return None

    def pipe_late(self) -> Optional[bool]:
        """Whether a new pane's transcript has yet to receive what its screen
        shows: it holds no text yet, and the screen does. tmux starts the pipe
        that writes it along with the program, and on a busy machine the
        program can show its prompt, or ask, before the pipe wrote a byte.
        None: the screen could not be looked at. Only asked of a follower from
        the transcript's start: later, a transcript lags by no more than a read
        (and a transcript of 64 KiB holds text, for all that needs knowing).
        """
        if not self.fresh or self.dropped or len(self.buf) > self.LOOKBACK or render(
                bytes(self.buf).decode("utf-8", "replace")).strip():
            return False
        try:
            look = _look_at(self.host, self.pane)
        except TmuxsessError:
            return None
        return any(row.strip() for row in look.rows)

    def _waits_for_input(self, now: float, quiet_since: float) -> bool:
        """Whether the program, quiet for a while, waits for input: twice, with
        no output in between (its question may still have been on its way the
        first time), the kernel says a process sleeps in a plain read of the
        terminal, or (a multiplexed or unknown reader) the screen asks."""
        if (not self.watch.probe or self.start is None or now - quiet_since < 0.25
                or now < self.next_probe or not self.pane.pid):
            return False
        self.next_probe = now + 0.25
        term = self.terminal = self.host.terminal(self.pane)
        if term.reads == "none" or term.reads != "plain" and not (
                now - quiet_since >= ASKS_QUIET and self.asks(term)[0]):
            self.suspected = None
            return False
        if self.suspected is not None and quiet_since <= self.suspected:
            return True
        self.suspected, self.next_probe = now, now + 0.05
        return False

    def asks(self, term: Terminal) -> Tuple[str, str]:
        """The screen's evidence that the program asks (see ``asks``); the
        line that asks is kept for ``question``."""
        start = self.start or 0
        said = asks(bytes(self.buf[max(start, len(self.buf) - self.LOOKBACK):]), term,
                    self.pane.alternate, lambda: _look_or_none(self.host, self.pane))
        self.asked = said[1]
        return said

    def found(self, reason: Ending) -> WaitResult:
        """What a pattern wait that ended for ``reason`` found."""
        waiting = reason in ("input", "prompt")
        return WaitResult(reason == "done", self.match, "" if reason == "done" else reason,
                          tail=self.tail(), elapsed=round(time.monotonic() - self.began, 3),
                          waiting_for_input=waiting, question=self.question if waiting else "",
                          echo_off=waiting and self.echo_off)

    @property
    def question(self) -> str:
        """The line the program asked its question on: the output's last line,
        or the line the screen's evidence found (see ``asks``)."""
        return self.asked or self.output().rstrip("\n").rsplit("\n", 1)[-1].strip()

    @property
    def echo_off(self) -> bool:
        """The terminal reads a line without echoing it: a password prompt."""
        term = self.terminal
        return bool(term is not None and term.canonical and term.echo is False)

    def _last_words(self, gone: Ending, settle: float) -> Ending:
        time.sleep(0.02)  # the pipe may still carry the last output
        while self._feed():
            pass
        if not settle and self._check():
            return self.reason
        # A killed server takes its panes along: by now it is gone too.
        return self._gone() or gone

    def _gone(self) -> Optional[Ending]:
        return self.lifeline.ended()

    @property
    def truncated(self) -> bool:
        """Whether output() leaves out earlier output (to keep within max_output)."""
        return self._cut()[1] > 0

    def _cut(self) -> Tuple[bytes, int]:
        """The output's bytes as returned, and how many earlier ones were left out."""
        if self.start is None:
            return b"", 0
        end = self.end if self.end is not None else len(self.buf)
        data, dropped = bytes(self.buf[self.start:end]), self.dropped
        limit = self.watch.max_output
        if limit and len(data) > limit:
            # _trim keeps a margin for matching; the caller gets at most the
            # newest ``limit`` bytes, from the start of a line where there is one.
            cut = len(data) - limit
            nl = data.find(b"\n", cut - 1, len(data) - 1)
            cut = nl + 1 if nl >= 0 else cut
            data, dropped = data[cut:], dropped + cut
        return data, dropped

    @property
    def lossy(self) -> bool:
        """Whether the output holds bytes that are not UTF-8 (output() replaces them)."""
        try:
            self._cut()[0].decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    def output(self) -> str:
        """The output between the echo and the prompt, as a person reads it."""
        data, dropped = self._cut()
        text = render(data.decode("utf-8", "replace"), self.watch.colours)
        if dropped:
            text = ("[tmuxsess: %d earlier bytes of output omitted; all of it is in "
                    "'capture --transcript']\n" % dropped) + text
        return text

    def tail(self, lines: int = 10) -> str:
        text = render(bytes(self.buf[-self.LOOKBACK:]).decode("utf-8", "replace"))
        return "\n".join(text.rstrip("\n").split("\n")[-lines:])



def screen_text(host: Host, pane: "Pane", lines: Optional[int], ansi: bool = False) -> str:
    """A pane's text as tmux shows it: its last ``lines`` lines (None: all of its
    history), wrapped lines joined, trailing blank lines dropped; with
    ``ansi``, its colours."""
    start = "-" if lines is None else str(-max(lines, 1))
    args = ["capture-pane", "-p", "-J", "-t", pane.pane_id or pane.target, "-S", start]
    if ansi:
        args.insert(2, "-e")
    text = host.tmux(pane.server, args)
    out = [line.rstrip() if not ansi else line for line in text.split("\n")]
    while out and not _strip_ansi(out[-1]).strip():
        out.pop()
    if pane.dead and out:
        # tmux writes "Pane is dead" on the bottom row; close the blank gap above
        # it so the program's last words stay within the last few lines.
        while len(out) > 1 and not _strip_ansi(out[-2]).strip():
            del out[-2]
    if lines is not None:
        out = out[-lines:]
    if ansi:
        # tmux does not reset attributes at the end of a line, so colour would
        # bleed into the next line (and the user's terminal after the last).
        out = [line + "\x1b[0m" if "\x1b[" in line else line for line in out]
    return "\n".join(out) + ("\n" if out else "")


def _transcript_chunks(f: IO[bytes], raw: bool) -> Iterator[str]:
    """A transcript's text in chunks: rendered, or ``raw`` as written."""
    import codecs
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    carry = ""
    while True:
        chunk = f.read(1 << 20)
        text = carry + decoder.decode(chunk, final=not chunk)
        if raw:
            carry = ""
            if text:
                yield text
        else:
            # Render whole lines only; an escape sequence never spans a newline.
            cut = text.rfind("\n") + 1 if chunk else len(text)
            if not cut and len(text) > 1 << 20:
                # A line longer than a chunk goes out in pieces (memory stays
                # bounded); only an unfinished escape sequence waits.
                esc = text.rfind("\x1b", len(text) - 256)
                cut = esc if esc > 0 else len(text)
            carry = text[cut:]
            if cut:
                yield render(text[:cut])
        if not chunk:
            return


# ---------------------------------------------------------------------------
# The engine's parts: each owns one job; the Engine is a thin front over them
# ---------------------------------------------------------------------------

class PaneFiles:
    """The state dir's layout: the single home of every file the tool keeps
    beside the registry.

    ``transcripts/`` a session's transcript (NAME.ID.log), its own startup
    file (.init) and its program's error log (.errors); ``init/`` startup
    files sessions share; ``locks/`` per pane the run lock (.lock) and the
    note of the last text sent (.sent);
    ``screens/`` per pane how the screen looked at the last send; ``tmp/``
    the files a run's blocks are read from.
    """

    def __init__(self, settings: Settings, host: Host) -> None:
        self.settings, self.host = settings, host

    def dir(self, name: str) -> str:
        """A private directory of the (private) state dir, made if needed."""
        return self.settings.state_subdir(name)

    @staticmethod
    def key(server: Server, pane_id: str) -> str:
        """The name of a pane's files: one pane, on any server."""
        where = os.path.abspath(server.socket) if server.socket else server.label
        return _sha256_hex(("%s\0%s" % (where, pane_id)).encode())[:24]

    def _pane_file(self, dir: str, pane: "Pane", suffix: str = "") -> str:
        return os.path.join(self.settings.state_dir, dir,
                            self.key(pane.server, pane.pane_id) + suffix)

    # -- transcripts and startup files ---------------------------------------------
    def new_transcript(self, name: str) -> str:
        """A new, empty, private transcript for session ``name``."""
        path = os.path.join(self.dir("transcripts"), "%s.%s.log" % (name, _random_id(12)))
        self.host.new_transcript(path)
        return path

    def startup_file(self, profile: Profile, token: str, transcript: str) -> str:
        """The startup file a session's program reads: its own (beside its
        transcript) when it holds the session's token, else one all share."""
        if profile.startup_per_session:
            return _write_private(transcript + ".init", profile.startup_text(token))
        if profile.startup:
            return _write_private(os.path.join(self.dir("init"), profile.startup_name),
                                  profile.startup)
        return ""

    @staticmethod
    def error_log(transcript: str) -> str:
        """Where a session's program logs its errors (sqlite3's .log)."""
        return transcript + ".errors"

    @contextlib.contextmanager
    def following(self, pane: "Pane") -> Iterator[bool]:
        """Give a pane without a transcript a temporary one for this exchange;
        False for a pane that pipes its output elsewhere (not ours to replace)."""
        if pane.transcript:
            yield True
            return
        if pane.piped:
            yield False
            return
        path = os.path.join(self.dir("transcripts"), "temp.%s.log" % _random_id(12))
        self.host.new_transcript(path)
        try:
            self.host.tmux(pane.server, ["pipe-pane", "-O", "-t", pane.pane_id,
                                         self.host.pipe_command(path)])
            pane.transcript = path
            try:
                yield True
            finally:
                with contextlib.suppress(TmuxsessError):
                    self.host.tmux(pane.server, ["pipe-pane", "-t", pane.pane_id])
                pane.transcript = ""
        finally:
            self.host.remove_transcript(path)

    @contextlib.contextmanager
    def block_file(self, profile: Profile, code: str) -> Iterator[str]:
        """Several lines as a private file for the profile's ``block``; else "".

        Typed line by line, a block (gdb's define ... end, a multi-line SQL
        statement) is read at continuation prompts, and output would interleave
        with the echo.
        """
        if not profile.needs_file(code):
            yield ""
            return
        path = os.path.join(self.dir("tmp"), "block.%s%s" % (_random_id(12),
                                                             profile.block_suffix))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(code.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise StateFileError("cannot write %s: %s" % (path, e.strerror))
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- the run lock and the last send ------------------------------------------------
    @contextlib.contextmanager
    def run_lock(self, pane: "Pane", deadline: float) -> Iterator[None]:
        """Hold the pane's run lock for a whole exchange; wait for it until ``deadline``.

        Two runs typing into one program at once would read each other's output.
        send takes no lock: C-c, or an answer to an input() a run waits on, must
        always get through.
        """
        self.dir("locks")
        with _flock(self._pane_file("locks", pane, ".lock"), deadline, lambda: BusyError(
                "another run on %s is still going; nothing was run" % pane.label,
                "raise {timeout} to queue up behind it",
                [Action("send", "interrupt it", {"keys": ["C-c"]})], pane.where)):
            yield

    def note_sent(self, pane: "Pane", offset: int, text: bool = True,
                  entered: bool = True) -> None:
        """Remember where in the transcript the last text sent began, and whether
        its Enter went too: a prompt printed before a line entered is not one the
        program waits at, even while the echo of that line is on its way; text
        sent without Enter sits on the prompt's line. Keys alone (C-u, C-c) may
        have done either: forgotten."""
        if not pane.transcript or offset < 0:
            return
        path = self._pane_file("locks", pane, ".sent")
        with contextlib.suppress(OSError, TmuxsessError):
            if not text and not entered:
                os.unlink(path)
                return
            self.dir("locks")
            # Written over in place, one fixed width: truncating a file that
            # holds data costs ext4 a flush (~0.2 ms of every run).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, b"%20d %d\n" % (offset, int(entered)))
            finally:
                os.close(fd)

    def sent_offset(self, pane: "Pane") -> Tuple[int, bool]:
        """Where in the transcript the last text sent began (-1 if unknown), and
        whether its Enter went too."""
        with contextlib.suppress(OSError, ValueError):
            with open(self._pane_file("locks", pane, ".sent")) as f:
                offset, entered = f.read().split()
            return int(offset), entered == "1"
        return -1, True

    # -- the screen at the last send -----------------------------------------------------
    def save_look(self, pane: "Pane", snap: str, look: Optional["Look"], echo: List[str]
                  ) -> None:
        """Keep how the screen looked at a send, for a later wait (``@tmuxsess-screen``
        names it by ``snap``)."""
        if look is None or not pane.pane_id:
            return
        with contextlib.suppress(TmuxsessError):
            self.dir("screens")
            _write_private(self._pane_file("screens", pane), "%s\n%s\n%s" % (
                snap, json.dumps(echo), look.encode()))

    def saved_look(self, pane: "Pane") -> Tuple[Optional["Look"], List[str]]:
        """How the screen looked at the last send, and the lines it sent; None
        and [] when that is not known."""
        snap = pane.screen.partition(" ")[2]
        try:
            with open(self._pane_file("screens", pane), encoding="utf-8") as f:
                saved, echo, look = f.read().split("\n", 2)
            if snap and saved == snap:
                return Look.decode(look), [str(e) for e in json.loads(echo)]
        except (OSError, ValueError):
            pass
        return None, []

    def forget(self, server: Server, pane_id: str, transcript: str) -> None:
        """Remove what the tool kept for a session it no longer has."""
        # Only files in our own transcripts dir: a registry entry must not make us
        # delete anything else.
        if transcript and os.path.dirname(os.path.abspath(transcript)) == os.path.join(
                self.settings.state_dir, "transcripts"):
            for path in (transcript, transcript + ".init", self.error_log(transcript)):
                self.host.remove_transcript(path)
        if pane_id:
            key = self.key(server, pane_id)
            for dir, suffix in (("locks", ".lock"), ("locks", ".sent"), ("screens", "")):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.settings.state_dir, dir, key + suffix))


class Where(Record):
    """Which pane a command names: a registered session, or a tmux server and
    pane (``socket`` or ``socket_name``, with ``target``)."""

    session: Optional[str] = None
    socket: Optional[str] = None
    socket_name: Optional[str] = None
    target: Optional[str] = None


class Targets:
    """Finds the pane a command acts on, from the registry and one tmux query."""

    def __init__(self, settings: Settings, host: Host, registry: Registry) -> None:
        self.settings, self.host, self.registry = settings, host, registry

    def resolve(self, where: Where, changes: bool = False) -> Tuple["Pane", Health]:
        """The pane ``where`` names, and its health, with one tmux query.

        Highest first: ``socket``/``socket_name`` with ``target``; then the
        registered ``session`` (with ``target``: a pane on its server); then the
        only registered session. A command that ``changes`` the pane refuses a
        ``target`` that names no server: it would reach tmux's default server,
        where the user's own sessions live.
        """
        session, socket, socket_name, target = (where.session, where.socket,
                                                where.socket_name, where.target)
        if session is not None:
            validate_name(session)  # even where -t wins: a bad name is refused, not ignored
        if socket and socket_name:
            raise UsageError("give {socket} or {socket_name}, not both")
        if target is not None and session is not None and not (socket or socket_name):
            entry = self.registered(session)
            return self.query(Server(self.settings.checked_socket(entry.socket)),
                              target, Session(name="", socket=entry.socket, target=target))
        if target is not None and changes and not (socket or socket_name):
            raise UsageError("{target} %s names no server: refusing to act on tmux's default "
                             "server" % target,
                             "say which: {socket} or {socket_name} with {target}, or "
                             "{session}")
        if target is not None or socket or socket_name:
            server = Server(socket or "", socket_name or "")
            if target is None:
                if not session:
                    raise UsageError("{socket} needs {target} (or {session})",
                                      "for example %s with {target} mysession"
                                      % self.settings.default_socket)
                target = "=%s:" % session
            return self.query(server, target, Session(name="", socket=server.socket,
                                                      target=target))
        entry = self.registered(session)
        server = Server(self.settings.checked_socket(entry.socket))
        return self.query(server, entry.pane_id or entry.target, entry)

    def registered(self, session: Optional[str]) -> Session:
        """The registry entry of ``session``, or of the only session there is."""
        sessions = self.registry.sessions()
        names = ", ".join(sorted(sessions)) or "none"
        if session is not None:
            if session not in sessions:
                raise TargetError(
                    "session %r is not registered (registered: %s)" % (session, names),
                    actions=[Action("list", "see the registered ones"),
                             Action("find", "see unregistered ones", {"all_sockets": True})])
            return sessions[session]
        if len(sessions) == 1:
            return next(iter(sessions.values()))
        if not sessions:
            raise TargetError("no session is registered",
                              actions=[Action("create", "create one",
                                              {"name": "NAME", "kind": "python"})])
        raise TargetError("%d sessions are registered; say which with {session} (%s)"
                          % (len(sessions), names))

    def query(self, server: Server, target: str, entry: Session) -> Tuple["Pane", Health]:
        """The pane tmux finds for ``target`` on ``server``, known as ``entry``."""
        rows = self.host.pane(server, target)
        registered = bool(entry.name)
        if rows and entry.name and rows[0].session_name != entry.name:
            # The pane id now belongs to another session, or an old "NAME:0.0" target
            # matched another session by prefix (tmux's rule): ours is gone.
            rows = []
        if rows is None:
            return self.pane_of(server, None, entry), Health("server_not_running")
        if not rows or not rows[0].pane_id:
            if not registered:
                raise MissingPaneError("no pane %r on %s" % (target, server.label),
                                  actions=[Action("find", "see the sessions there", (
                                      {"socket": server.socket} if server.socket
                                      else {"all_sockets": True}), on_target=False)])
            return self.pane_of(server, None, entry), self.host.health(
                None, self.host.has_session(server, entry.name))
        health = self.host.health(rows[0])
        pane = self.pane_of(server, rows[0], entry)
        pane.dead_status = health.exit_status
        if not registered:
            pane.registered = pane.pane_id in {
                s.pane_id for s in self.registry.safe_sessions().values()
                if s.socket == server.socket}
        return pane, health

    @staticmethod
    def pane_of(server: Server, row: Optional[PaneRow], entry: Session) -> "Pane":
        """A pane as tmux describes it (``row``) and the registry knows it."""
        kind = entry.kind or _KIND_OF_TYPE.get(entry.type, "") if entry.name else ""
        if row is None:
            return Pane(server=server, pane_id=entry.pane_id, target=entry.target,
                        session=entry.name, kind=kind, transcript=entry.transcript,
                        prompt=entry.prompt, registered=bool(entry.name))
        return Pane(server=server, pane_id=row.pane_id, target=row.target,
                    session=row.session_name, kind=row.kind or kind,
                    transcript=row.tmuxsess_transcript,
                    prompt=row.tmuxsess_prompt or entry.prompt,
                    registered=bool(entry.name), pid=row.program_pid, dead=row.dead,
                    sent=row.tmuxsess_sent, server_pid=int(row.pid or 0),
                    piped=row.pane_pipe == "1", line=row.line, token=row.tmuxsess_token,
                    command=row.pane_current_command, tty=row.pane_tty,
                    alternate=row.alternate_on == "1", screen=row.tmuxsess_screen,
                    screen_state=row.screen_state,
                    marked=bool(row.tmuxsess_transcript and row.kind
                                and PROFILES.get(row.kind, PROFILES["command"]).marked))

    def from_registry(self, where: Where) -> Optional["Pane"]:
        """A registered session's pane as the registry describes it, unverified: the
        delivery checks in the same tmux call that the pane runs the same program
        with the same token. None where the registry cannot say enough, or its
        program is not running."""
        if where.socket or where.socket_name or where.target is not None:
            return None
        if where.session is not None:
            validate_name(where.session)
        entry = self.registered(where.session)
        profile = PROFILES.get(entry.kind)
        if (profile is None or not entry.pane_id or not entry.token or not entry.transcript
                or not entry.tty
                or not re.fullmatch(_TMUX_WORD, entry.pane_id + entry.token)
                or self.host.process_state(entry.pid) != "running"
                or not self.host.transcript_exists(entry.transcript)):
            return None
        return Pane(server=Server(self.settings.checked_socket(entry.socket)),
                    pane_id=entry.pane_id, target=entry.target, session=entry.name,
                    kind=entry.kind, transcript=entry.transcript, prompt=entry.prompt,
                    registered=True, pid=entry.pid, piped=True, token=entry.token,
                    marked=profile.marked, tty=entry.tty, unverified=True)

    def registered_as(self, pane: "Pane") -> str:
        """The name the registry knows the pane by; "" if none."""
        if not pane.registered:
            return ""
        regs = self.registry.sessions()
        if pane.session in regs:
            return pane.session
        return next((n for n, s in regs.items() if s.pane_id == pane.pane_id
                     and s.socket == pane.server.socket), "")


class Starter:
    """Creates sessions: checks what is asked, makes the tmux session in one
    call, registers it, and waits for its program's first prompt."""

    def __init__(self, settings: Settings, host: Host, registry: Registry,
                 files: PaneFiles) -> None:
        self.settings, self.host, self.registry, self.files = settings, host, registry, files

    def create(self, name: str, kind: Optional[str], command: Optional[str],
               prompt: Optional[str], socket: Optional[str], window: str, cwd: Optional[str],
               env: Optional[Dict[str, str]], norc: bool, register: bool, wait: bool,
               ready_timeout: float) -> "CreatedSession":
        """See Engine.create_session."""
        profile = self._checks(name, kind, command, window, cwd, env, prompt)
        if wait:
            _seconds(ready_timeout, "ready_timeout")
        server = Server(self._socket(socket))
        if register and name in self.registry.sessions():  # fail fast, before tmux
            raise _taken_in_registry(name)
        transcript = self.files.new_transcript(name)
        token = _random_id(16)  # in the prompt marks; see _marks
        created = _utcnow()
        env = dict(env or {}, **({"TMUXSESS_NORC": "1"} if norc else {}))

        def steps(inherit: str) -> List[List[str]]:
            return self._steps(name, profile, command, window, cwd, env, transcript, token,
                               created, prompt, register, inherit)
        row = self._start(server, steps, name, transcript)
        record = Session(name=name, socket=server.socket, target=row.target,
                         pane_id=row.pane_id, type=profile.type, pid=row.program_pid,
                         created_at=created, last_active=created, transcript=transcript,
                         prompt=prompt or "", kind=profile.name, token=token,
                         tty=row.pane_tty)
        pane = Pane(server=server, pane_id=row.pane_id, target=row.target, session=name,
                    kind=profile.name, transcript=transcript, prompt=prompt or "",
                    registered=register, pid=row.program_pid, token=token,
                    marked=profile.marked, tty=row.pane_tty, server_pid=int(row.pid or 0))
        try:
            if register:
                with self.registry.transaction() as doc:
                    if name in doc["sessions"]:  # registered meanwhile, on another server
                        raise _taken_in_registry(name)
                    doc["sessions"][name] = record.to_json()
            if wait:
                self._wait_ready(pane, ready_timeout)
        except BaseException as e:
            # A lock that timed out wrote nothing: do not wait for it again.
            self._destroy(pane, deregister=register and not isinstance(e, LockTimeoutError))
            raise
        return CreatedSession(name=name, socket=record.socket, target=record.target,
                              pane_id=record.pane_id, type=record.type, kind=record.kind,
                              pid=record.pid, created_at=created, last_active=created,
                              transcript=transcript, prompt=record.prompt,
                              registered=register)

    @staticmethod
    def _checks(name: str, kind: Optional[str], command: Optional[str], window: str,
                cwd: Optional[str], env: Optional[Dict[str, str]], prompt: Optional[str]
                ) -> Profile:
        validate_name(name)
        # No kind: the profile of a shell, or with a command line, any program.
        profile = profile_named(kind or ("command" if command is not None else "shell"))
        if not profile.program and not command:
            raise UsageError("{command} needs a command line")
        if command is not None and not profile.takes_command:
            raise UsageError("{kind} %s runs its own program; it takes no {command}"
                             % profile.name)
        if not window or "\n" in window or window.endswith(";"):
            raise UsageError("invalid window name %r" % window)
        if cwd is not None and not os.path.isdir(cwd):
            raise UsageError("working directory %s %s" % (
                cwd, "is not a directory" if os.path.exists(cwd) else "does not exist"))
        for key in env or {}:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise UsageError("invalid environment variable name %r" % key)
        if prompt:
            _compile_prompt(prompt)
        return profile

    def _socket(self, socket: Optional[str]) -> str:
        if not socket:
            private_dir(self.settings.socket_dir, "socket dir")
            return self.settings.default_socket
        socket = os.path.abspath(socket)
        if os.path.dirname(socket) == self.settings.socket_dir:
            private_dir(self.settings.socket_dir, "socket dir")
        elif not os.path.isdir(os.path.dirname(socket)):
            # tmux would only print "error creating" and still exit 0
            raise UsageError("the directory of socket %s does not exist" % socket)
        return socket

    def _steps(self, name: str, profile: Profile, command: Optional[str], window: str,
               cwd: Optional[str], env: Dict[str, str], transcript: str, token: str,
               created: str, prompt: Optional[str], register: bool, inherit: str = ""
               ) -> List[List[str]]:
        """The tmux commands that make the session, in one call. A server this
        call starts has the caller's environment already; into a running one it
        goes by ``new-session -e`` (``inherit`` "e", tmux 3.2+) or in the
        program's own ``env`` words ("env")."""
        startup = self.files.startup_file(profile, token, transcript)
        # A running server would give the session its own, older environment.
        # (Never in a command line that starts a server: the server keeps that
        # command line, which anyone on the machine may read.)
        caller = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        # Private from the start: made before the program opens it.
        error_log = (_write_private(self.files.error_log(transcript), "")
                     if profile.logged_failure else "")
        inherited = ["-e%s=%s" % kv for kv in caller.items()] if inherit == "e" else []
        # Pagers wait for a key nobody presses: agents read output, not screens.
        env = {**(caller if inherit == "env" else {}), "PAGER": "cat", "GIT_PAGER": "cat",
               **env}
        target = "=%s:" % name
        options = [("@tmuxsess-transcript", transcript), ("@tmuxsess-type", profile.type),
                   ("@tmuxsess-kind", profile.name), ("@tmuxsess-created", created),
                   ("@tmuxsess-token", token)]
        if prompt:
            options.append(("@tmuxsess-prompt", prompt))
        if register:  # repair adopts only sessions its own registry had
            options.append(("@tmuxsess-registered", self.registry.path))
        return [
            ["new-session", "-d", "-s", name, "-n", window, "-x", str(PANE_WIDTH),
             "-y", str(PANE_HEIGHT), "-P", "-F", PANE_FORMAT] + inherited
            + (["-c", os.path.abspath(cwd)] if cwd else []) + ["--"]
            + profile.argv(command, env, startup, token, caller, error_log),
            ["set-option", "-w", "-t", target, "remain-on-exit", "on"],
            ["pipe-pane", "-O", "-t", target, self.host.pipe_command(transcript)],
        ] + [["set-option", "-t", target, key, value] for key, value in options]

    def _start(self, server: Server, steps: Callable[[str], List[List[str]]], name: str,
               transcript: str) -> PaneRow:
        """Make the tmux session; its pane's row. Undone on any failure."""
        # tmux makes the session outside the registry lock (a busy server must not
        # hold up every other command); tmux itself refuses a duplicate name on
        # one server, and the registry, under its lock, across servers.
        target = "=%s:" % name
        try:
            running = self.host.server_runs(server)
            try:
                out = self._tmux_retrying(server, steps("e" if running else ""))
            except TmuxError as e:
                if not running or not re.search(OLD_NEW_SESSION, e.message):
                    raise
                out = self._tmux_retrying(server, steps("env"))  # tmux 3.0, 3.1
            rows = parse_rows(PaneRow, out)
        except BaseException as e:
            self.files.forget(server, "", transcript)  # the transcript and startup file
            if isinstance(e, TmuxError) and "duplicate session" in e.message:
                raise NameTakenError(
                    "session %r already exists on %s" % (name, server.socket),
                    "pick another name",
                    [Action("kill", "or kill that one", {"socket": server.socket,
                                                         "target": name}, on_target=False)])
            self._undo(server, target, transcript)  # a later step failed
            raise
        if not rows:
            self._undo(server, target, transcript)
            self.files.forget(server, "", transcript)
            raise TmuxError("tmux did not report the new pane")
        return rows[0]

    def _tmux_retrying(self, server: Server, steps: List[List[str]]) -> str:
        for attempt in range(3):
            try:
                return self.host.tmux(server, *steps, config=True)
            except TmuxError as e:
                # Our client reached a server that was exiting (its last session
                # had just ended): nothing was made there; the next try starts one.
                if attempt == 2 or "server exited unexpectedly" not in e.message:
                    raise
                time.sleep(0.05)
        raise AssertionError("not reached")

    def _undo(self, server: Server, target: str, transcript: str) -> None:
        """Kill a session this create made, recognised by its transcript, not by name."""
        with contextlib.suppress(TmuxsessError):
            mine = self.host.tmux(server, ["show-options", "-v", "-t", target,
                                           "@tmuxsess-transcript"])
            if mine.strip() == transcript:
                self.host.tmux(server, ["kill-session", "-t", target])

    def _destroy(self, pane: "Pane", deregister: bool) -> None:
        """Undo a create that did not become ready (or lost the registry race)."""
        with contextlib.suppress(TmuxsessError):
            self.host.tmux(pane.server, ["kill-session", "-t", pane.pane_id])
        if deregister:
            with contextlib.suppress(TmuxsessError):
                with self.registry.transaction() as doc:
                    entry = doc["sessions"].get(pane.session)
                    if entry is not None and (entry.get("pane_id"), entry.get("socket")) == (
                            pane.pane_id, pane.server.socket):
                        del doc["sessions"][pane.session]
        self.files.forget(pane.server, pane.pane_id, pane.transcript)

    def _wait_ready(self, pane: "Pane", timeout: float) -> None:
        """Block until a new session's program shows its first prompt."""
        if pane.prompt:
            watch = _Watch("regex", pattern=_compile_prompt(pane.prompt))
        elif pane.marked:
            watch = _Watch("ready")
        else:
            watch = _Watch("settle")
        with _Follower(self.host, pane, 0, watch, adopt=True) as f:
            # No prompt to know: ready once the first output has settled, or after
            # a second without any (a silent program like cat would wait forever).
            settle = 0.25 if watch.mode == "settle" else 0.0
            reason = f.follow(timeout, settle=settle, silence=min(1.0, timeout))
            if reason == "done" and settle and f.lifeline.ended(force=True):
                reason = "dead"
            late = reason == "timeout" and f.pipe_late()
        if reason != "done":
            raise self._not_ready(pane, timeout, reason, f, late)

    def _not_ready(self, pane: "Pane", timeout: float, reason: "Ending", f: "_Follower",
                   late: Optional[bool]) -> NotReadyError:
        """Why a new session's program did not become ready, in words."""
        if late:  # what it said never reached the transcript
            writable = "is %s writable?" % pane.transcript
            return NotReadyError("the transcript of %s has not received what its screen "
                                 "shows within %gs" % (pane.session, timeout),
                                 "; ".join(filter(None, (self._last_screen(pane), writable))))
        if reason in ("input", "prompt"):
            asks = f.question
            return NotReadyError("%s waits for input before its first prompt%s" % (
                pane.session, ": %r" % asks if asks else ""),
                ("if that is its prompt, {prompt} %r does not match it; else " % pane.prompt
                 if pane.prompt else "")
                + "give it what it asks for up front (an option, an environment variable), "
                "or create it without {wait} and answer it with a send")
        tail = f.tail()
        said = ("last output: " + tail.replace("\n", " | "))[:500] if tail else ""
        if reason == "timeout":
            return NotReadyError("%s did not show its prompt within %gs" % (
                pane.session, timeout),
                said or "it printed nothing; raise {ready_timeout}, or do not {wait}")
        if reason == "server":  # killed, or crashed: its panes went with it
            return NotReadyError("the tmux server of %s (pid %d) went away before the "
                                 "program was ready" % (pane.session, pane.server_pid),
                                 said or "nothing of the session is left; create it again")
        there, status, signum = self.host.ended(pane)
        how = Health("dead", exit_status=status, exit_signal=signum).ended if there else (
            "was killed with its session")  # by someone else: its pane is gone
        if there and not said:
            said = self._last_screen(pane)
        if there and status is None and not signum:
            said = "; ".join(w for w in (said, self._end_facts(pane)) if w)
        return NotReadyError("the program in %s %s before it was ready" % (pane.session, how),
                             said)

    def _end_facts(self, pane: "Pane") -> str:
        """What the kernel and tmux say of a program whose end has no status yet."""
        kernel = ("pid %d is %s here" % (pane.pid, self.host.process_state(pane.pid))
                  if pane.pid else "tmux named no pid for it")
        rows: Optional[List[PaneRow]] = None
        with contextlib.suppress(TmuxsessError):
            rows = self.host.pane(pane.server, pane.pane_id)
        return "%s; tmux shows the pane %s, with no exit status" % (kernel, (
            "dead" if rows[0].dead else "running") if rows else "gone")

    def _last_screen(self, pane: "Pane") -> str:
        """A dead pane's last lines from its screen, for a program whose last words
        have not reached the transcript yet (tmux draws before it pipes)."""
        with contextlib.suppress(TmuxsessError):
            lines = [line for line in screen_text(self.host, pane, 10).split("\n")
                     if line.strip() and not line.startswith("Pane is dead")]
            if lines:
                return ("its screen: " + " | ".join(lines))[:500]
        return ""


def _taken_in_registry(name: str) -> NameTakenError:
    return NameTakenError("session %r already exists in the registry" % name,
                          "pick another name",
                          [Action("kill", "or remove it", {"session": name}, on_target=False)])


def _transcript_kept(host: Host, pane: "Pane") -> List[Action]:
    """The action that reads a gone pane's transcript, where it survives."""
    if host.transcript_exists(pane.transcript):
        return [Action("capture", "its transcript survives", {"source": "transcript"})]
    return []


class Keeper:
    """Keeps the sessions: lists them with their health, kills and cleans them
    up, finds tmux sessions the registry does not know, rebuilds a damaged
    registry from tmux, and reads a pane (its screen, its transcript)."""

    def __init__(self, settings: Settings, host: Host, registry: Registry, files: PaneFiles,
                 targets: Targets) -> None:
        self.settings, self.host, self.registry = settings, host, registry
        self.files, self.targets = files, targets


    def list(self) -> List[SessionStatus]:
        """Every registered session with its status: one tmux query per socket."""
        return [SessionStatus(s.name, s.socket, s.target, health.short,
                              health.pid or s.pid, s.created_at, s.last_active, s.type,
                              s.kind or _KIND_OF_TYPE.get(s.type, ""),
                              health.alternate_screen, health.cursor_x, health.cursor_y,
                              health.current_command)
                for s, health, _row in self._registered_health(self.registry.sessions())]

    def _registered_health(self, sessions: Dict[str, Session]
                           ) -> List[Tuple[Session, Health, Optional[PaneRow]]]:
        """Registered sessions by name, each with its health and pane row: one tmux
        query per socket."""
        panes_by_socket: Dict[str, Optional[List[PaneRow]]] = {}
        result = []
        for s in sorted(sessions.values(), key=lambda s: s.name):
            if s.socket not in panes_by_socket:
                panes_by_socket[s.socket] = self.host.panes(
                    Server(self.settings.checked_socket(s.socket)))
            rows = panes_by_socket[s.socket]
            row: Optional[PaneRow] = None
            if rows is None:
                health = Health("server_not_running")
            else:
                row, session_up = _find_row(rows, s)
                health = self.host.health(row, session_up)
                if row is not None and row.tmuxsess_active > s.last_active:
                    s.last_active = row.tmuxsess_active  # runs and sends set it there
            result.append((s, health, row))
        return result

    def health(self, where: Where) -> Health:
        """The health of one pane: healthy, dead, missing, zombie or server_not_running."""
        return self.targets.resolve(where)[1]

    def kill(self, where: Where, dry_run: bool) -> KillResult:
        """Kill the tmux session and remove its registry entry as one operation."""
        pane, health = self.targets.resolve(where, changes=True)
        registered_as = self.targets.registered_as(pane)
        alive = health.status not in ("missing", "server_not_running")
        result = KillResult(name=pane.label, killed=False, deregistered=False,
                            registered=bool(registered_as), dry_run=dry_run,
                            socket=pane.server.label, status=health.short)
        if dry_run:
            result.killed, result.deregistered = alive, bool(registered_as)
            return result
        # Lock before killing: a busy registry (exit 75) then leaves the session
        # running and registered, never killed but still listed.
        with (self.registry.transaction() if registered_as else _no_transaction()) as doc:
            if alive:
                with contextlib.suppress(NoServerError, TmuxError):
                    # By pane id: the name may belong to a new session by now.
                    self.host.tmux(pane.server, ["kill-session", "-t",
                                                 pane.pane_id or "=" + pane.session])
                    result.killed = True
            if registered_as and doc["sessions"].pop(registered_as, None) is not None:
                result.deregistered = True
        if result.killed or result.deregistered:
            self.files.forget(pane.server, pane.pane_id, pane.transcript)
        return result

    def cleanup(self, all: bool, older_than: Optional[float], idle: Optional[float],
                dry_run: bool) -> List[CleanupItem]:
        """Remove unhealthy sessions (and, widened, old or idle ones) from the registry.

        Selected sessions that are still alive are killed too, so nothing is left
        running untracked.
        """
        now = time.time()
        chosen: List[Tuple[str, Session, Health]] = []
        for s, health, row in self._registered_health(self.registry.sessions()):
            # Activity is what was sent and what the program printed since.
            printed = float(row.window_activity) if row and row.window_activity.isdigit() else 0
            reasons = _cleanup_reasons(s, health, now, all, older_than, idle, printed)
            if reasons:
                chosen.append((", ".join(reasons), s, health))
        removed = []
        # Lock before killing, as kill does: a busy registry changes nothing.
        with (self.registry.transaction() if chosen and not dry_run
              else _no_transaction()) as doc:
            for reason, s, health in chosen:
                item = CleanupItem(name=s.name, reason=reason, status=health.short,
                                   killed=health.status == "healthy", removed=True,
                                   dry_run=dry_run)
                removed.append(item)
                if not dry_run:
                    self._clean_one(doc, s, health, item)
        return removed

    def _clean_one(self, doc: Dict[str, Any], s: Session, health: Health,
                   item: CleanupItem) -> None:
        current = doc["sessions"].get(s.name)
        if current is None or Session.from_json(s.name, current).identity != s.identity:
            item.killed = item.removed = False  # changed since we looked
            return
        if health.status in ("healthy", "dead", "zombie"):
            with contextlib.suppress(TmuxsessError):
                # By pane id: the name may belong to a new session by now.
                self.host.tmux(Server(s.socket), ["kill-session", "-t",
                                                  s.pane_id or "=" + s.name])
        del doc["sessions"][s.name]
        self.files.forget(Server(s.socket), s.pane_id, s.transcript)

    def find(self, socket: Optional[str], socket_name: Optional[str], all_sockets: bool,
             query: Optional[str]) -> List[FoundSession]:
        """tmux sessions on one server, or on every socket in the socket dir (and
        every socket the registry names).

        Sessions are listed whether registered or not: this is how to find what a
        lost registry no longer knows.
        """
        if sum(map(bool, (socket, socket_name, all_sockets))) > 1:
            raise UsageError("give one of {socket}, {socket_name} and {all_sockets}")
        regs = self.registry.safe_sessions()
        if all_sockets:
            servers = [Server(path) for path in self._known_sockets(
                [s.socket for s in regs.values()])]
        elif socket or socket_name:
            servers = [Server(os.path.abspath(socket) if socket else "", socket_name or "")]
        else:
            servers = [Server(self.settings.checked_socket(self.settings.default_socket))]
        found: List[FoundSession] = []
        for server in servers:
            seen = set()
            for row in self.host.panes(server) or []:
                name = row.session_name
                if (query and query.lower() not in name.lower()) or name in seen:
                    continue  # one row per session, from its first pane
                seen.add(name)
                reg = regs.get(name)
                found.append(FoundSession(
                    name=name, socket=server.label, windows=int(row.session_windows or 0),
                    attached=row.session_attached not in ("", "0"),
                    created_at=_iso(row.session_created),
                    status=self.host.health(row).short, type=row.tmuxsess_type,
                    kind=row.kind, registered=bool(reg and reg.socket == server.socket)))
        return found

    def repair(self) -> RepairResult:
        """Rebuild a corrupt (or lost) registry from the live tmux sessions in the socket
        dir, and on the sockets the corrupt file still names.

        The bad file is moved aside as ``.sessions.json.corrupt-<UTC time>``, never
        deleted. Sessions are recognised by the metadata create-session stores on
        them (``@tmuxsess-type`` and friends): tmux is the source of truth, the
        registry a cache. A registry that reads fine is left exactly as it is.
        """
        reg = self.registry
        with reg.lock():
            existed = os.path.lexists(reg.path)
            try:
                doc = reg.load()
                if existed:
                    return RepairResult(corrupt=False, missing=False, moved_to="",
                                        sessions=sorted(doc["sessions"]))
                problem = "there is no registry %s" % reg.path
            except CorruptRegistryError as e:
                problem = e.message
            # Ask tmux first: when that fails, the bad file has not been moved yet.
            # Sessions created with -S elsewhere are found through the sockets the
            # damaged file still names; tmux's own marks decide what is adopted.
            sessions = self._registered_in_tmux(
                _sockets_named_in(reg.path) if existed else ())
            moved = _move_aside(reg.path) if existed else ""
            if existed or sessions:
                reg.write({"version": REGISTRY_VERSION, "sessions": sessions})
        return RepairResult(corrupt=existed, missing=not existed, problem=problem,
                            moved_to=moved, sessions=sorted(sessions))

    def _known_sockets(self, named: Sequence[str]) -> List[str]:
        """The sockets in the socket dir, then those of ``named`` (from the registry,
        which -S may have put anywhere) that exist; each once."""
        # never scan a dir others can plant sockets in
        self.settings.checked_socket(self.settings.default_socket)
        sockets: List[str] = []
        with contextlib.suppress(OSError):
            for item in sorted(os.scandir(self.settings.socket_dir), key=lambda e: e.name):
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(item.stat(follow_symlinks=False).st_mode):
                        sockets.append(item.path)
        for path in sorted({os.path.normpath(p) for p in named if os.path.isabs(p)}):
            with contextlib.suppress(OSError, ValueError):
                if path not in sockets and stat.S_ISSOCK(os.stat(path).st_mode):
                    sockets.append(self.settings.checked_socket(path))
        return sockets

    def _registered_in_tmux(self, named: Sequence[str] = ()) -> Dict[str, Any]:
        """Registry entries for the sessions create-session registered, from tmux itself:
        on the sockets in the socket dir and on those ``named``."""
        sessions: Dict[str, Any] = {}
        for socket in self._known_sockets(named):
            for row in self.host.panes(Server(socket)) or []:  # None: a stale socket
                name = row.session_name
                # Only what the tool registered: not foreign sessions, not --no-register.
                # "1": made by a version that did not record which registry.
                if (row.tmuxsess_registered not in ("1", self.registry.path)
                        or row.tmuxsess_type not in SESSION_TYPES
                        or not re.match(NAME_RE, name) or name in sessions):
                    continue
                created = row.tmuxsess_created or _utcnow()
                sessions[name] = Session(
                    name=name, socket=socket, target=row.target, pane_id=row.pane_id,
                    type=row.tmuxsess_type, pid=row.program_pid, created_at=created,
                    last_active=created, transcript=row.tmuxsess_transcript,
                    prompt=row.tmuxsess_prompt, kind=row.tmuxsess_kind,
                    token=row.tmuxsess_token, tty=row.pane_tty).to_json()
        return sessions

    def capture(self, where: Where, lines: int, all: bool, ansi: bool) -> Capture:
        """``capture``'s text with what the screen is: the alternate screen or
        not, the cursor, the command running in the pane."""
        pane, health = self.targets.resolve(where)
        if health.status in ("missing", "server_not_running"):
            raise TargetError(health.said(pane.label, "nothing to capture"),
                              actions=_transcript_kept(self.host, pane), target=pane.where)
        text = screen_text(self.host, pane, None if all else lines, ansi)
        return Capture(text, text.count("\n"), bool(health.alternate_screen),
                       health.cursor_x or 0, health.cursor_y or 0,
                       health.current_command or "", pane.session, pane.pane_id)

    def transcript(self, where: Where, raw: bool) -> Iterator[str]:
        """Everything the pane's program wrote since create, in chunks, streamed.

        ANSI sequences and prompt marks are removed unless ``raw``; carriage
        returns are resolved the way a terminal shows them.
        """
        pane, _ = self.targets.resolve(where)
        if not pane.transcript:
            raise TargetError("session %s has no transcript (it was not created by "
                              "tmuxsess)" % pane.label,
                              actions=[Action("capture", "read its screen instead", {"all": True})],
                              target=pane.where)
        with self.host.open_transcript(pane.transcript) as f:
            yield from _transcript_chunks(f, raw)

    def attach_command(self, where: Where) -> List[str]:
        """The ``tmux attach`` command line for a session."""
        pane, health = self.targets.resolve(where)
        if health.status in ("missing", "server_not_running"):
            raise TargetError(health.said(pane.label, "nothing to attach to"))
        return [self.host.binary] + pane.server.args() + ["attach", "-t", "=" + pane.session]


def _find_row(rows: List[PaneRow], session: Session) -> Tuple[Optional[PaneRow], bool]:
    """The pane row of a registered session, and whether its session exists."""
    by_session = [r for r in rows if r.session_name == session.name]
    if session.pane_id:
        # Only in its own session: pane ids start again at %0 on a new server.
        for r in by_session:
            if r.pane_id == session.pane_id:
                return r, True
        return None, bool(by_session)
    # Entries written by the older bash scripts know only "NAME:W.P".
    m = re.fullmatch(r"(.*):(\d+)\.(\d+)", session.target or "")
    for r in by_session:
        if not m or (r.window_index, r.pane_index) == (m.group(2), m.group(3)):
            return r, True
    return None, bool(by_session)


def _cleanup_reasons(s: Session, health: Health, now: float, all: bool,
                     older_than: Optional[float], idle: Optional[float],
                     printed: float = 0) -> List[str]:
    """Why cleanup takes a session; none when it stays. ``printed``: when the
    program last printed something."""
    reasons: List[str] = []
    if health.status != "healthy":
        reasons.append("no server" if health.status == "server_not_running"
                       else health.status)
    if all:
        reasons.append("--all")
    created = _parse_time(s.created_at)
    if older_than is not None and created is not None and now - created > older_than:
        reasons.append("created %s ago" % _ago(now - created))
    active = max(_parse_time(s.last_active) or created or 0, printed) or None
    if idle is not None and active is not None and now - active > idle:
        reasons.append("idle for %s" % _ago(now - active))
    return reasons


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def _iso(epoch: str) -> str:
    """tmux's seconds since the epoch as UTC ISO-8601; "" if it gave none."""
    if not epoch.isdigit():
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


@contextlib.contextmanager
def _no_transaction() -> Iterator[Dict[str, Any]]:
    yield {"sessions": {}}


def _sockets_named_in(path: str) -> List[str]:
    """The socket paths a damaged registry file still names, as far as it can be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return []
        raw = f.read(64 << 20)
    named = []
    for m in re.finditer(rb'"socket"\s*:\s*("(?:[^"\\]|\\.)*")', raw):
        with contextlib.suppress(ValueError):
            value = json.loads(m.group(1).decode("utf-8"))
            if isinstance(value, str):
                named.append(value)
    return named


def _move_aside(path: str) -> str:
    """Rename a damaged file to ``PATH.corrupt-<UTC>``; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = "%s.corrupt-%s" % (path, stamp)
    n = 1
    while os.path.lexists(moved):
        n += 1
        moved = "%s.corrupt-%s-%d" % (path, stamp, n)
    try:
        os.rename(path, moved)
    except OSError as e:
        raise RegistryError("cannot move %s aside: %s" % (path, e.strerror))
    return moved




class Waiter:
    """Waits for text in a pane's output: on its transcript where it has one
    (woken as it grows), on its screen for a full-screen program or with no
    transcript (one tmux call per look)."""

    def __init__(self, host: Host, files: PaneFiles, targets: Targets) -> None:
        self.host, self.files, self.targets = host, files, targets


    def wait(self, where: Where, pattern: Optional[str], fixed: bool, stable: float,
             not_pattern: Optional[str], timeout: float, interval: Optional[float],
             lines: int, whole_pane: bool, cancel: Optional["threading.Event"]) -> WaitResult:
        """See Engine.wait_for_text."""
        if pattern is None and not stable:
            raise UsageError("nothing to wait for: give {pattern}, {stable}, or both")
        regex = _compile_pattern(pattern, fixed) if pattern is not None else None
        refused = _compile_pattern(not_pattern, fixed) if not_pattern is not None else None
        _seconds(timeout, "timeout")
        _check_delivery("auto", False, stable)
        if interval is not None:
            _seconds(interval, "interval")
        _at_least(lines, 1, "lines")
        pane, health = self.targets.resolve(where)
        if health.status in ("missing", "server_not_running"):
            return WaitResult(False, reason="server" if health.status == "server_not_running"
                              else "missing")
        record = None if whole_pane else SentRecord.decode(pane.sent)
        before, echo = (None, []) if whole_pane else self.files.saved_look(pane)
        if stable or (not whole_pane and (pane.alternate or pane.screen.startswith("1 "))):
            return self.on_look(pane, regex, refused, before, echo, timeout, stable,
                                      interval, cancel)
        assert regex is not None
        if record is None or record.offset < 0 or not pane.transcript:
            return self.on_screen(pane, regex, timeout, lines,
                                        record if record is not None and record.offset < 0
                                        else None, interval or 0.2, refuse=refused)
        screen = self.screen_check(pane, regex, refused, before, echo)
        with _Follower(self.host, pane, record.offset, _Watch.after(record, regex, refused),
                       screen) as f:
            reason = f.follow(timeout, interval or 0.05, cancel=cancel)
            result = f.found(reason)
        if result.reason == "dead":
            result.exit_status = self.host.ended(pane)[1]
        return result

    def on_look(self, pane: Pane, pattern: Optional["re.Pattern[str]"],
                      refuse: Optional["re.Pattern[str]"], before: Optional[Look],
                      echo: Sequence[str], timeout: float, stable: float = 0.0,
                      interval: Optional[float] = None, cancel: Optional[Any] = None
                      ) -> WaitResult:
        """Wait on the screen a person sees (one tmux call per look): for the
        pattern in the text that changed since ``before``, and with ``stable``
        until the screen has held still that long."""
        began = time.monotonic()
        # Stillness is seen at most a twentieth of a second late.
        longest = min(interval or 0.1, 0.05 if stable else 1.0)
        delay, last, quiet_since = 0.005, None, began
        while True:
            try:
                look = _look_at(self.host, pane)
            except TmuxError as e:
                return WaitResult(False, reason="server" if isinstance(e, NoServerError)
                                  else "dead", elapsed=time.monotonic() - began)
            now = time.monotonic()
            if look != last:
                last, quiet_since = look, now
            result = self._judge_look(look, pattern, refuse, before, echo,
                                      now - quiet_since >= stable)
            if result is None and now - began >= timeout:
                result = WaitResult(False, reason="timeout", tail=_last_rows(look))
            if result is None and cancel is not None and cancel.is_set():
                result = WaitResult(False, reason="cancelled", tail=_last_rows(look))
            if result is not None:
                result.elapsed = round(now - began, 3)
                return result
            time.sleep(min(delay, max(began + timeout - now, 0.001)))
            delay = min(delay * 2, longest)

    @staticmethod
    def _judge_look(look: Look, pattern: Optional["re.Pattern[str]"],
                    refuse: Optional["re.Pattern[str]"], before: Optional[Look],
                    echo: Sequence[str], still: bool) -> Optional[WaitResult]:
        """What one look says: found, refused, the program died, or None: wait on."""
        text = _changed_text(before, look)
        tail = _last_rows(look)
        bad = _search_outside(refuse, text, echo) if refuse is not None else None
        if bad:
            return WaitResult(False, bad.group(0), "refused", tail=tail)
        m = _search_outside(pattern, text, echo) if pattern is not None else None
        if (m or pattern is None) and still:
            return WaitResult(True, m.group(0) if m else "", tail=tail)
        if look.state.pane_dead == "1":
            status = look.state.pane_dead_status
            return WaitResult(False, reason="dead", tail=tail,
                              exit_status=int(status) if status.lstrip("-").isdigit()
                              else None)
        return None

    def on_screen(self, pane: Pane, pattern: "re.Pattern[str]", timeout: float,
                        lines: Optional[int], record: Optional[SentRecord],
                        interval: float = 0.2, refuse: Optional["re.Pattern[str]"] = None
                        ) -> WaitResult:
        """Poll the screen (one tmux call per look) for panes without a transcript.

        With a ``record`` of a send, only text from the row it was sent on, after
        its echo, counts; otherwise the last ``lines`` lines do.
        """
        began = time.monotonic()
        delay = 0.01
        text = ""
        while True:
            try:
                state, text = self._screen(pane, lines, record)
            except TmuxError as e:
                return WaitResult(False, reason="server" if isinstance(e, NoServerError)
                                  else "dead", tail=text, elapsed=time.monotonic() - began)
            bad = refuse.search(text) if refuse is not None else None
            m = bad or pattern.search(text)
            tail = "\n".join(text.rstrip("\n").split("\n")[-10:])
            elapsed = time.monotonic() - began
            if m:
                return WaitResult(not bad, m.group(0), "refused" if bad else "", tail=tail,
                                  elapsed=elapsed)
            if state.pane_dead == "1":
                status = state.pane_dead_status
                return WaitResult(False, reason="dead", tail=tail, elapsed=elapsed,
                                  exit_status=int(status) if status.lstrip("-").isdigit()
                                  else None)
            if elapsed >= timeout:
                return WaitResult(False, reason="timeout", tail=tail, elapsed=elapsed)
            time.sleep(delay)
            delay = min(delay * 2, interval)

    def _screen(self, pane: Pane, lines: Optional[int], record: Optional[SentRecord]
                ) -> Tuple[ScreenState, str]:
        """One look at the screen: its state, and the text that counts."""
        target = pane.pane_id or pane.target
        if record is None:
            captures = [["capture-pane", "-p", "-J", "-t", target, "-S",
                         str(-(lines or 1000))]]
        else:
            # Rows as they are (-N) and with wrapped rows joined (-J), taken in
            # the same instant: the rows say where an absolute row begins in the
            # joined text, which is what patterns are matched against.
            captures = [["capture-pane", "-p", "-N", "-t", target, "-S", "-"],
                        ["capture-pane", "-p", "-J", "-t", target, "-S", "-"]]
        out = self.host.tmux(pane.server, ["display-message", "-p", "-t", target,
                                           SCREEN_FORMAT], *captures)
        head, _, text = out.partition("\n")
        states = parse_rows(ScreenState, head)
        state = states[0] if states else ScreenState("", "", "0", "0", "0", "", "0", "0")
        if record is not None:
            history = int(state.history_size or 0)
            count = history + int(state.pane_height or 0)
            rows = text.split("\n")
            text = _new_screen_text(rows[:count], "\n".join(rows[count:]), record.row,
                                    record.lines, history, int(state.history_limit or 0),
                                    record.anchor)
        return state, text

    def screen_check(self, pane: Pane, pattern: Optional["re.Pattern[str]"],
                      refuse: Optional["re.Pattern[str]"], before: Optional[Look],
                      echo: Sequence[str]) -> ScreenCheck:
        """A look at the screen for a follower: the text that changed since ``before``."""
        def check() -> Optional[Tuple[Ending, str]]:
            try:
                text = _changed_text(before, _look_at(self.host, pane))
            except TmuxError:
                return None
            bad = _search_outside(refuse, text, echo) if refuse is not None else None
            if bad:
                return "refused", bad.group(0)
            m = _search_outside(pattern, text, echo) if pattern is not None else None
            return ("done", m.group(0)) if m else None
        return check


def _new_screen_text(rows: List[str], joined: str, row: int, skip: int,
                     history: int, limit: int, anchor: str) -> str:
    """The joined text from absolute row ``row`` on, after ``skip`` lines.

    ``rows`` are the pane's rows as they are (-N) and ``joined`` the same with
    wrapped rows joined (-J): they differ only by the newlines of wrapped rows.
    """
    offsets, pos = [], 0
    for r in rows:
        offsets.append(pos)
        pos += len(r)
        if joined.startswith("\n", pos):  # not a wrapped row
            pos += 1
    step = max(limit // 10, 1)
    if anchor and history >= limit - step:
        # A full history drops its oldest ``step`` lines at a time, moving every
        # row up by a multiple of that: find the row that holds the echo.
        for candidate in range(row, -1, -step):
            if candidate < len(rows):
                end = joined.find("\n", offsets[candidate])
                line = joined[offsets[candidate]:end if end >= 0 else len(joined)]
                if line.rstrip().endswith(anchor):
                    row = candidate
                    break
    pos = offsets[row] if row < len(offsets) else len(joined)
    for _ in range(skip):  # the echo of the text sent
        nl = joined.find("\n", pos)
        pos = nl + 1 if nl >= 0 else len(joined)
    return joined[pos:]




class Sender:
    """Puts text and keys into a pane exactly, or nothing at all: checks the
    text and the pane first, delivers in one tmux call (a private paste buffer,
    or keys), checks that a pasted prompt was submitted, and can wait for the
    answer (through the Waiter)."""

    def __init__(self, host: Host, files: PaneFiles, targets: Targets, waiter: Waiter) -> None:
        self.host, self.files, self.targets, self.waiter = host, files, targets, waiter


    def send(self, where: Where, text: Optional[str], keys: Sequence[str], enter: bool,
             multiline: bool, delivery: str, wait: Optional[str], fixed: bool, stable: float,
             not_pattern: Optional[str], timeout: float, retries: int, interval: float,
             cancel: Optional["threading.Event"],
             on_retry: Optional[Callable[[str], None]]) -> SendResult:
        """Send text exactly as given (and/or keys); optionally wait for a pattern.

        ``text`` is literal, always: no word in it is a key name. Enter follows it
        unless ``enter`` is false or ``keys`` are given. ``delivery`` says how text
        goes in: ``auto`` types it as keys (``send-keys -l``) into a program in the
        alternate screen (vim, less, htop) and pastes it anywhere else; ``type``
        and ``paste`` force either. A paste into a program that asked for
        bracketed paste (not the tool's own shells and REPLs) is submitted once:
        Enter goes in when the text is on the screen, and again, a bounded number
        of times, while the text sits unchanged in the input line (a program that
        swallowed the Enter). With ``multiline`` the text is pasted as one block
        (for a Python REPL: run as one unit). ``wait`` is matched only in output
        that appears after this send, never in what was on screen before nor in
        the echo of the text; ``refuse`` ends the wait, failed, when it appears;
        ``stable`` waits (after ``wait``, if given) until the screen has not
        changed for that many seconds.
        """
        if text is None and not keys:
            raise UsageError("nothing to send: give {text} or {keys}")
        keys = _check_keys(keys)
        _seconds(timeout, "timeout")
        _seconds(interval, "interval")
        _at_least(retries, 0, "retries")
        _check_delivery(delivery, multiline, stable)
        pattern = _compile_pattern(wait, fixed) if wait is not None else None
        refused = _compile_pattern(not_pattern, fixed) if not_pattern is not None else None
        pane, health = self.targets.resolve(where, changes=True)
        if health.status != "healthy":
            raise UnhealthyError(health.said(pane.label, "nothing was sent"),
                                 actions=_transcript_kept(self.host, pane), target=pane.where)
        enter = enter and not keys
        if text is not None and multiline and pane.profile.wrap is not None:
            # A block for a REPL runs as one unit, and a final Enter ends it.
            text, enter = (pane.profile.wrap(text) if text.strip() else ""), True
        typed = text is not None and (delivery == "type" or (
            delivery == "auto" and pane.alternate and not multiline))
        payload = b"" if text is None else _check_text(text)
        # A terminal that edits lines itself gets them so that they arrive as sent.
        term = self.host.terminal(pane, proc=False) if pane.tty else None
        editing = term is not None and bool(term.canonical) and bool(text) and not typed
        stream = payload if not editing or term is None else canonical_stream(
            payload + (b"\n" if enter else b""), term)
        echo = not (term is not None and term.canonical and term.echo is False)
        plan = _SendPlan(text, payload, stream, editing, echo, keys, enter, typed, pattern,
                         refused, stable, timeout, retries, interval, on_retry, cancel)
        return self._send_to(pane, plan)

    def _send_to(self, pane: Pane, plan: "_SendPlan") -> SendResult:
        started = time.monotonic()
        result = SendResult(session=pane.session, pane_id=pane.pane_id, sent=True,
                            bytes=len(plan.payload), keys=list(plan.keys), typed=plan.typed)
        with contextlib.ExitStack() as stack:
            own = bool(pane.transcript)  # not a temporary one for this call
            following = plan.waits and stack.enter_context(self.files.following(pane))
            record = self.record(pane, plan.payload, plan.text, plan.enter, plan.keys,
                                       echo=plan.echo)
            # Without a transcript of its own, a later wait reads the screen.
            kept = record if own else SentRecord(lines=record.lines, row=pane.line,
                                                 anchor=_echo_anchor(plan.text))
            submit = (plan.enter and not plan.typed and not plan.line_editing
                      and self._confirms_enter(pane, plan))
            snap = _random_id(12)
            # A line-editing terminal's stream holds its newline; else Enter ends it.
            out = self.deliver(pane, plan.stream, plan.keys,
                                plan.enter and not submit and not plan.line_editing,
                                kept.encode(), plan.retries, plan.interval, plan.on_retry,
                                typed=plan.typed, look="%d %s" % (pane.alternate, snap),
                                bracketed=not plan.line_editing)
            if own:
                self.files.note_sent(pane, record.offset, plan.text is not None,
                                plan.enter or any(k in SUBMITTING for k in plan.keys))
            before = _look_of(pane, out)
            self.files.save_look(pane, snap, before, _echo_lines(plan.text))
            if submit:
                result.enter_presses = self._submit(pane, plan.text or "", before)
            if not plan.waits:
                return result
            found = self._send_wait(pane, plan, record, before, bool(following))
        found.elapsed = round(time.monotonic() - started, 3)
        if found.reason == "dead":
            found.exit_status = self.host.ended(pane)[1]
        result.wait = found
        return result

    def _send_wait(self, pane: Pane, plan: "_SendPlan", record: SentRecord,
                   before: Optional[Look], following: bool) -> WaitResult:
        """The wait of ``send -w``: on the screen for a full-screen program (or
        --stable), else on the transcript, looking at the screen once the output
        draws on it."""
        echo = _echo_lines(plan.text)
        if pane.alternate or plan.stable or plan.pattern is None:
            return self.waiter.on_look(pane, plan.pattern, plan.refuse, before, echo,
                                      plan.timeout, plan.stable, cancel=plan.cancel)
        if following and plan.pattern is not None:
            screen = self.waiter.screen_check(pane, plan.pattern, plan.refuse, before, echo)
            with _Follower(self.host, pane, record.offset,
                           _Watch.after(record, plan.pattern, plan.refuse), screen) as f:
                return f.found(f.follow(plan.timeout, cancel=plan.cancel))
        kept = SentRecord(lines=record.lines, row=pane.line, anchor=_echo_anchor(plan.text))
        return self.waiter.on_screen(pane, plan.pattern, plan.timeout, None, kept,
                                    refuse=plan.refuse)

    def _confirms_enter(self, pane: Pane, plan: "_SendPlan") -> bool:
        """Whether a paste's Enter is pressed once the text is shown, and checked.

        For programs that asked for bracketed paste (the transcript says), other
        than the tool's own shells and REPLs, whose line editors take a paste's
        Enter: agent TUIs may swallow an Enter that follows a paste too closely.
        """
        if not plan.payload or pane.marked or pane.alternate or not pane.transcript:
            return False
        return bool(bracketed_paste(self.host.transcript_tail(pane.transcript, 1 << 18)))

    def _submit(self, pane: Pane, text: str, before: Optional[Look]) -> int:
        """Press Enter for pasted text that has reached the screen; press it again
        while the text sits unchanged in the input line, at most SUBMIT_PRESSES
        times in all, each time waiting twice as long for the program to take it.
        Returns how many times Enter was pressed."""
        shown = self._until_shown(pane, text, before)
        row = _input_row(shown, text)
        target = pane.pane_id or pane.target
        window, presses = SUBMIT_WINDOW, 0
        while presses < SUBMIT_PRESSES:
            self.host.tmux(pane.server, ["send-keys", "-t", target, "Enter"])
            presses += 1
            if shown is None or self._taken(pane, shown, row, window):
                break
            window *= 2
        return presses

    def _until_shown(self, pane: Pane, text: str, before: Optional[Look]) -> Optional[Look]:
        """The screen once pasted text has reached it: its last line is shown, or
        the screen changed and then held still (a program that shows a paste
        its own way); what it is after a second and a half otherwise."""
        tail = " ".join(text.rstrip("\n").rsplit("\n", 1)[-1].split())[-20:]
        deadline = time.monotonic() + 1.5
        last: Optional[Look] = None
        delay = 0.005
        while True:
            try:
                look = _look_at(self.host, pane)
            except TmuxError:
                return None
            changed = before is None or look.rows != before.rows
            if changed and (tail and tail in " ".join(" ".join(look.rows).split())
                            or last is not None and last.rows == look.rows and delay >= 0.04):
                return look
            if time.monotonic() >= deadline:
                return look
            last = look
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _taken(self, pane: Pane, shown: Look, row: int, window: float) -> bool:
        """Whether the program took the input within ``window`` seconds: the
        input line changed (or moved: the screen scrolled, the cursor left it)."""
        deadline = time.monotonic() + window
        delay = 0.005
        while True:
            try:
                look = _look_at(self.host, pane)
            except TmuxError:
                return True  # gone: nothing more to press
            if look.state.pane_dead == "1" or look.alternate != shown.alternate:
                return True
            moved = look.history - shown.history if not look.alternate else 0
            now_row = row - moved
            line = look.rows[now_row] if 0 <= now_row < len(look.rows) else None
            if line != shown.rows[row] or look.cursor[1] != shown.cursor[1] - moved:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def record(self, pane: Pane, payload: bytes, text: Optional[str],
                     enter: bool, keys: Sequence[str], echo: bool = True) -> SentRecord:
        """Where the answer to this send will start in the pane's transcript;
        ``echo``: whether the text will be echoed (a password prompt: not)."""
        # Enter pressed through -k (say "-k Up Enter") ends an echoed line too.
        presses = int(enter) + sum(k in ("Enter", "C-m", "KPEnter") for k in keys)
        lines = payload.count(b"\n") + presses if echo else 0
        if not pane.transcript:
            # No transcript to hold an offset: a later wait reads the screen from
            # the cursor's row as it is when the text goes in (tmux fills it in),
            # found again by the echo's end once tmux drops old history lines.
            return SentRecord(lines=lines, anchor=_echo_anchor(text), row=pane.line)
        tail = self.host.transcript_tail(pane.transcript)
        cmark = bool(presses and pane.marked and pane.profile.command_mark
                     and prompt_at_end(tail, pane.token, pane.profile.continuation_text)
                     == "")
        partial = b"" if enter or keys or text is None or not echo else (
            payload.rsplit(b"\n", 1)[-1])
        return SentRecord(offset=self.host.transcript_size(pane.transcript), lines=lines,
                          cmark=cmark, partial_len=len(partial),
                          partial=partial[-SentRecord.PARTIAL_TAIL:])

    def deliver(self, pane: Pane, payload: Optional[bytes], keys: Sequence[str],
                 enter: bool, record: str, retries: int, interval: float,
                on_retry: Optional[Callable[[str], None]] = None, typed: bool = False,
                look: str = "", bracketed: bool = True) -> str:
        """Put text (via a private paste buffer, or ``typed`` as keys) and keys into
        the pane; with ``look`` (``@tmuxsess-screen``'s value), first look at the
        screen in the same tmux call. ``bracketed``: paste as a bracketed paste
        where the program asked for one. Returns what that look saw."""
        buffer = "tmuxsess-%d-%s" % (os.getpid(), _random_id(12))
        calls = _delivery_steps(pane, payload, keys, enter, record, buffer, typed, look,
                                bracketed)
        seen = ""
        for i, steps in enumerate(calls):
            stdin = payload if any(s[:1] == ["load-buffer"] for s in steps) else None
            out = self._tmux_delivering(pane, steps, stdin, buffer, retries, interval, on_retry)
            if pane.unverified:
                _verified(pane, out)
            seen = out if i == 0 else seen
        return seen

    def _tmux_delivering(self, pane: Pane, steps: List[List[str]], stdin: Optional[bytes],
                         buffer: str, retries: int, interval: float,
                         on_retry: Optional[Callable[[str], None]]) -> str:
        attempt = 0
        while True:
            try:
                return self.host.tmux(pane.server, *steps, stdin=stdin)
            except (KeyboardInterrupt, TmuxError) as e:
                if stdin:  # our private buffer must not outlive this call
                    with contextlib.suppress(TmuxsessError):
                        self.host.tmux(pane.server, ["delete-buffer", "-b", buffer])
                if not isinstance(e, TmuxError):
                    raise
                if pane.unverified:
                    raise _StalePane()  # not typed: ask tmux what became of the pane
                if not e.transient or attempt >= retries:
                    raise _send_failure(e, attempt)
                if on_retry is not None:
                    on_retry(e.message)
                time.sleep(interval * (2 ** attempt))
                attempt += 1


def _check_text(text: str) -> bytes:
    if "\0" in text:
        raise UsageError("the text contains a NUL byte, which a terminal cannot carry",
                         "remove it, or send binary data through a file")
    return text.encode("utf-8", "surrogateescape")


class _StalePane(Exception):
    """The registry's idea of a pane did not hold; nothing was typed."""


# What a command string for if-shell may hold unquoted-safe in single quotes.
_TMUX_WORD = r"[\w%@#{}:. /=-]*"
DELIVERED = "tmuxsess-delivered"


def _command_string(commands: List[List[str]]) -> str:
    for word in (w for c in commands for w in c):
        if not re.fullmatch(_TMUX_WORD, word):
            raise ValueError("not a plain tmux word: %r" % word)
    return " ; ".join(" ".join("'%s'" % w for w in c) for c in commands)


def _verified(pane: Pane, out: str) -> None:
    """Read the delivery's answer for a pane known from the registry alone."""
    for line in out.splitlines():
        word = line.split(" ")
        if word[0] == DELIVERED and word[-1].isdigit():
            pane.server_pid, pane.unverified = int(word[-1]), False
            return
    raise _StalePane()


def _delivery_steps(pane: Pane, payload: Optional[bytes], keys: Sequence[str], enter: bool,
                    record: str, buffer: str, typed: bool = False, look: str = "",
                    bracketed: bool = True) -> List[List[List[str]]]:
    """The tmux calls (each a list of commands) that type a payload and keys and
    leave the sent record and the time of activity; with ``look``, the first call
    starts by looking at the screen and leaves ``@tmuxsess-screen``. For an
    unverified pane, they run only if the pane runs the program with the token
    the registry names, and then say so."""
    target = pane.pane_id or pane.target
    calls: List[List[List[str]]] = [[]]
    if look:  # the screen's rows; its state is the one tmux gave when the pane was found
        calls[0].append(LOOK_STEPS[1] + ["-t", target])
    load: List[List[str]] = []
    if payload and typed:
        # Keys, exactly: -l takes the text as characters, never key names; "--"
        # ends the options (a text may start with "-"); Host.tmux escapes a
        # final ";". A tmux command is at most 16 KiB: long text goes in pieces,
        # one tmux call each.
        for i, piece in enumerate(_pieces(payload.decode("utf-8", "surrogateescape"))):
            if i:
                calls.append([])
            calls[-1].append(["send-keys", "-t", target, "-l", "--", piece])
    elif payload:
        # -r: newlines go in as typed (LF), not rewritten; -p: bracketed paste
        # when the program asked for it; -d: the buffer is gone afterwards.
        # The text goes in on stdin, never on a command line (which anyone on
        # the machine may read while tmux runs: `run -c 'export TOKEN=...'`).
        load = [["load-buffer", "-b", buffer, "-"]]
        calls[-1].append(["paste-buffer", "-d", "-r"] + (["-p"] if bracketed else [])
                         + ["-b", buffer, "-t", target])
    steps = calls[-1]
    if enter:
        steps.append(["send-keys", "-t", target, "Enter"])
    if keys:
        steps.append(["send-keys", "-t", target] + list(keys))
    if record and pane.pane_id:
        # A pane option (a session can hold panes the tool did not make); -F
        # lets the record name the cursor's line at the moment of sending.
        steps.append(["set-option", "-p", "-F", "-t", pane.pane_id, "@tmuxsess-sent", record])
        steps.append(["set-option", "-p", "-t", pane.pane_id, "@tmuxsess-active", _utcnow()])
    if look and pane.pane_id:
        steps.append(["set-option", "-p", "-t", pane.pane_id, "@tmuxsess-screen", look])
    if pane.unverified and steps:
        if len(calls) > 1:
            raise _StalePane()  # typed in pieces: not for a pane tmux was not asked about
        return [load + [_if_same_pane(pane, steps, buffer if payload else "")]]
    calls[0][:0] = load
    return [c for c in calls if c]


def _if_same_pane(pane: Pane, steps: List[List[str]], buffer: str) -> List[str]:
    """``steps`` as one if-shell: they run only if the pane still runs the program
    with the token the registry names, and then say so; else the buffer goes."""
    same = "#{&&:#{==:#{pane_pid},%d},#{==:#{@tmuxsess-token},%s}}" % (pane.pid, pane.token)
    then = steps + [["display-message", "-p", "-t", pane.pane_id, DELIVERED + " #{pid}"]]
    try:
        check = ["if-shell", "-F", "-t", pane.pane_id, same, _command_string(then)]
    except ValueError:
        raise _StalePane()
    # Not delivered: the buffer goes too.
    return check + ([_command_string([["delete-buffer", "-b", buffer]])] if buffer else [])


def _pieces(text: str) -> Iterator[str]:
    """``text`` cut into pieces of at most TYPE_PIECE bytes of UTF-8."""
    i = 0
    while i < len(text):
        piece = text[i:i + TYPE_PIECE]
        while len(piece.encode("utf-8", "surrogateescape")) > TYPE_PIECE:
            piece = piece[:len(piece) // 2]
        yield piece
        i += len(piece)


def _check_delivery(delivery: str, multiline: bool, stable: float) -> None:
    if delivery not in DELIVERIES:
        raise UsageError("delivery must be one of %s, not %r" % (", ".join(DELIVERIES),
                                                                delivery))
    if delivery == "type" and multiline:
        raise UsageError("-m pastes a block; it cannot also be typed (--type)")
    if stable:
        _seconds(stable, "--stable")


def _input_row(look: Optional[Look], text: str) -> int:
    """The row pasted text shows in: the last row holding its end, else the cursor's."""
    if look is None:
        return 0
    tail = " ".join(text.rstrip("\n").rsplit("\n", 1)[-1].split())[-20:]
    for i in range(len(look.rows) - 1, -1, -1):
        if tail and tail in " ".join(look.rows[i].split()):
            return i
    return min(look.cursor[1], max(len(look.rows) - 1, 0))


class _SendPlan(Record):
    """What one send does, checked."""

    text: Optional[str]
    payload: bytes
    stream: bytes           # what goes in: the payload, encoded for a line-editing terminal
    line_editing: bool      # the terminal edits lines (canonical): the stream ends the line
    echo: bool              # the terminal will echo the text (not: a password prompt)
    keys: List[str]
    enter: bool
    typed: bool
    pattern: Optional["re.Pattern[str]"]
    refuse: Optional["re.Pattern[str]"]
    stable: float
    timeout: float
    retries: int
    interval: float
    on_retry: Optional[Callable[[str], None]]
    cancel: Optional[Any]

    @property
    def waits(self) -> bool:
        return self.pattern is not None or self.refuse is not None or self.stable > 0


def _send_failure(e: TmuxError, attempts: int) -> TmuxError:
    if isinstance(e, NoServerError):
        return e
    return SendError(e.message + (" (after %d retries)" % attempts if attempts else ""),
                     e.hint)


# tmux's key names (man tmux, KEY BINDINGS), matched without regard to case;
# SHIFTED are the ones tmux 3.3 also knows with S- (S-Tab or S-a it would type).
SHIFTED = (["F%d" % i for i in range(1, 13)] + "IC Insert DC Delete Home End NPage "
           "PageDown PgDn PPage PageUp PgUp Up Down Left Right".split())
KEY_NAMES = {k.lower(): k for k in SHIFTED + "Tab BTab Space BSpace Enter Escape "
             "KPEnter".split() + ["KP" + c for c in "/*-+.0123456789"]}
# What people call keys that tmux names otherwise.
# Keys after which the program's next prompt, if any, comes after them: they
# end the line, or signal (C-c a busy program whose handler carries on must
# not make its old prompt look current). Others edit the line.
SUBMITTING = ("Enter", "KPEnter", "C-m", "C-j", "C-c", "C-d", "C-z", "C-\\")
KEY_WORDS = {"ctrl": "C", "control": "C", "ctl": "C", "alt": "M", "meta": "M",
             "option": "M", "opt": "M", "shift": "S", "esc": "Escape", "return": "Enter",
             "ret": "Enter", "cr": "Enter", "backspace": "BSpace", "bs": "BSpace",
             "del": "DC", "ins": "IC", "pagedn": "PageDown", "spacebar": "Space"}


def _key_name(key: str) -> Optional[str]:
    """``key`` as tmux spells it (C-c, M-x, S-Up, Enter, F12, a); None if tmux
    has no such key and would type the word as text."""
    if re.fullmatch(r"0x[0-9a-fA-F]{1,6}", key):
        return key
    mods, rest = [], key
    if len(rest) > 1 and rest[0] == "^":  # ^c is C-c
        mods, rest = ["C"], rest[1:]
    while len(rest) > 2 and rest[1] == "-" and rest[0] in "CcMmSs":
        mods.append(rest[0].upper())
        rest = rest[2:]
    if len(rest) == 1:
        if not rest.isprintable():
            return None
        if rest.isascii() and "S" in mods:
            return None
        if rest.isascii() and "C" in mods:
            if rest in '$%&*|{}"~':
                return None
            rest = rest.lower() if rest.isalpha() else rest
    elif rest.lower() in KEY_NAMES:
        rest = KEY_NAMES[rest.lower()]
        if "S" in mods and rest not in SHIFTED:
            return None
    else:
        return None
    return "".join(m + "-" for m in mods) + rest


def _check_keys(keys: Sequence[str]) -> List[str]:
    """Key names as tmux spells them; a word tmux does not know is refused (tmux
    would type it, and a typo'd key in a shell becomes a command)."""
    named = []
    for key in keys:
        name = _key_name(key)
        if name is None:
            words = "-".join(KEY_WORDS.get(w.lower(), w)
                             for w in re.split(r"(?<=.)[-+]", key))
            guess = _key_name("BTab" if words.lower() == "s-tab" else words)
            if guess is None and len(key) > 1:
                import difflib
                close = difflib.get_close_matches(key.lower(), KEY_NAMES, 1, 0.7)
                guess = KEY_NAMES[close[0]] if close else None
            raise UsageError("%s: not a tmux key name%s" % (
                json.dumps(key, ensure_ascii=False) if not key.isprintable() or not key
                else key, "; did you mean %s?" % guess if guess else ""),
                "text goes in with -c; keys are named as in tmux: C-c M-x S-Up Enter "
                "Escape Tab BSpace Up F1..F12 (man tmux, KEY BINDINGS)")
        named.append(name)
    return named


def _echo_anchor(text: Optional[str]) -> str:
    """The end of the first line sent, to recognise its echo on the screen."""
    first = (text or "").split("\n", 1)[0].rstrip()[-40:]
    return first if first.isprintable() else ""




class _Exchange:
    """One run: be sure the program takes input, then type each unit and follow
    its output to the next prompt."""

    def __init__(self, runner: "Runner", pane: Pane, prompt_re: Optional["re.Pattern[str]"],
                 deadline: float, max_output: int, cancel: Optional["threading.Event"],
                 on_output: Optional[Callable[[str], None]]) -> None:
        self.host, self.files, self.sender, self.pane = (runner.host, runner.files,
                                                         runner.sender, pane)
        self.prompt_re, self.deadline, self.max_output = prompt_re, deadline, max_output
        self.cancel, self.on_output = cancel, on_output
        self.at = ""  # the prompt the program is at: "" its main one, or a debugger's
        self.profile = pane.profile
        self.colours = False  # output keeps its colours
        self.sent: Optional[Tuple[int, bool]] = None  # _sent_offset, read once

    def _prompt(self, tail: bytes) -> Optional[str]:
        if self.prompt_re is not None:
            return "" if _at_regex_prompt(tail, self.prompt_re) else None
        at = prompt_at_end(tail, self.pane.token, self.pane.profile.continuation_text)
        since, entered = self._since(tail)
        if at is not None and entered and since > _last_prompt_start(tail, self.pane.token):
            return None  # a line went in after that prompt: its echo is on its way
        return at

    def _since(self, tail: bytes) -> Tuple[int, bool]:
        """Where in ``tail`` the last text sent began (-1: none, or earlier), and
        whether its Enter went too."""
        if self.sent is None:  # once: it is asked on every look while waiting
            self.sent = self.files.sent_offset(self.pane)
        offset, entered = self.sent
        base = self.host.transcript_size(self.pane.transcript) - len(tail)
        return (offset - base if offset >= 0 else -1), entered

    def _typed_unsent(self, tail: bytes) -> bool:
        """Whether text the tool sent without Enter sits on the last prompt's line
        (a fact: its echo may not have come yet)."""
        since, entered = self._since(tail)
        return not entered and since > _last_prompt_start(tail, self.pane.token) >= 0

    def _under_output(self, tail: bytes) -> Optional[str]:
        """The prompt the program waits at below output it printed later."""
        return prompt_under_output(tail, self.pane.token, self._since(tail)[0])

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _not_at_prompt(self, why: str, tail: bytes) -> BusyError:
        """Why nothing is typed: the program asks (``input``), or is busy."""
        pane = self.pane
        if why == "timeout":
            return BusyError("%s is not at its prompt (busy, or waiting for input); nothing "
                             "was sent" % pane.label, "if its prompt changed, give {prompt}",
                             [Action("wait", "let it finish", {"pattern": "PATTERN"}),
                              Action("send", "interrupt it", {"keys": ["C-c"]})], pane.where)
        question = render(tail.decode("utf-8", "replace")).rstrip("\n").rsplit(
            "\n", 1)[-1].strip()
        if question[-1:] in ("$", "#", "%", ">"):  # a shell's, or a REPL's
            return BusyError("%s waits for input at %r, which is not the prompt it knows; "
                             "nothing was sent" % (pane.label, question),
                             "%r looks like a prompt (exec, ssh, su, a new prompt): give "
                             "{prompt}, a regex matching it" % question,
                             [Action("send", "or leave it", {"keys": ["C-d"]})], pane.where)
        return BusyError("%s waits for input%s, not at its prompt; nothing was sent" % (
            pane.label, ": %r" % question if question else ""),
            actions=_answer_or_abandon(), target=pane.where)

    def ready(self) -> Optional[RunResult]:
        """Check that the program waits at a prompt that takes a unit; None when
        it does, a result when it died first. Raises BusyError otherwise."""
        pane = self.pane
        if self.prompt_re is not None and not self.host.transcript_size(pane.transcript):
            return None  # a new temporary transcript: nothing to tell by
        tail = self.host.transcript_tail(pane.transcript)
        if self.prompt_re is None and self._typed_unsent(tail):
            raise self._unsent(_unsent_text(tail, pane.token) or "(not shown yet)")
        at = self._prompt(tail)
        if pane.unverified and (at is None or at in pane.profile.continuation
                                or (self.prompt_re is None and _unsent_text(tail, pane.token))):
            # Not plainly ready: decide as for any pane, after asking tmux (for the
            # last send's record, say; it also gives a redraw a send just asked
            # for the moment it takes).
            raise _StalePane()
        under = None if at is not None or self.prompt_re is not None else (
            self._under_output(tail))
        if under is not None:  # output after the prompt is not text typed on it
            self._take(under)
            return None
        if at in self.pane.profile.continuation:
            raise BusyError("%s waits at its continuation prompt (an unfinished statement); "
                            "nothing was sent" % pane.label,
                            actions=_answer_or_abandon(finish=True), target=pane.where)
        if at is None:
            ready = self._await_prompt()
            if ready in ("input", "timeout"):
                raise self._not_at_prompt(ready, tail)
            if ready != "done":
                return RunResult("", self.host.ended(pane)[1], pane_died=True,
                                 server_gone=ready == "server")
            tail = self.host.transcript_tail(pane.transcript)  # the prompt it waited for
            at = self._prompt(tail)
            if at is None:  # at its prompt, below output it printed later
                self._take(self._under_output(tail) or "")
                return None
        unsent = "" if self.prompt_re is not None else _unsent_text(tail, pane.token)
        if unsent:
            raise self._unsent(unsent)
        self._take(at)
        return None

    def _unsent(self, text: str) -> BusyError:
        return BusyError("%s has unsent text on its prompt line: %r; nothing was sent"
                         % (self.pane.label, text[-40:]),
                         actions=[Action("send", "clear it", {"keys": ["C-u"]}),
                                  Action("send", "or finish it", {"text": "REST"})],
                         target=self.pane.where)

    def _take(self, at: str) -> None:
        """Type at prompt ``at``: "" the main one, or a debugger's."""
        self.at = at
        if at and at in PROFILES:
            self.profile = PROFILES[at]

    def _await_prompt(self) -> str:
        """Wait for the program to show its prompt: ``done``, or ``input`` when it
        waits for input somewhere else (the kernel says so twice, 50 ms apart, with
        no output in between), ``dead``, ``server`` or ``timeout``."""
        watch = self.host.watch_transcript(self.pane.transcript)  # wakes as output comes
        try:
            return self._await_prompt_watching(watch)
        finally:
            watch.close()

    def _await_prompt_watching(self, watch: _FileWatch) -> str:
        delay, pane, began = 0.001, self.pane, time.monotonic()
        lifeline = _Lifeline(self.host, pane)
        suspected: Optional[int] = None  # the transcript's size when it seemed to wait
        next_probe = began + 0.1  # the kernel is asked 20 times a second at most
        grown = (-1, began)  # the transcript's size, and since when
        while True:
            tail = self.host.transcript_tail(pane.transcript)
            at = self._prompt(tail)
            if at is not None and at not in pane.profile.continuation:
                return "done"
            if self.prompt_re is None and self._under_output(tail) is not None:
                return "done"
            ended = lifeline.ended()
            if ended is not None:
                return ended
            if self._remaining() <= 0:
                return "timeout"
            now = time.monotonic()
            if now >= next_probe and pane.pid and pane.tty:
                term = self.host.terminal(pane)
                # The screen's word may cost a look at it (a tmux call): 4 a second.
                next_probe = now + (0.05 if term.reads == "plain" else 0.25)
                size = self.host.transcript_size(pane.transcript)
                grown = grown if size == grown[0] else (size, now)
                if self._asks(term, tail, now - grown[1]):
                    if suspected == size:
                        return "input"
                    suspected = size
                else:
                    suspected = None
            # Woken by output where the host can (50 ms at most, for the checks
            # above); else polled, backing off.
            watch.wait(min(0.05 if watch.wakes else delay, max(self._remaining(), 0.001)))
            delay = min(delay * 2, 0.05)

    def _asks(self, term: Terminal, tail: bytes, quiet: float) -> bool:
        """Whether the program waits for input: the kernel's word (a plain read),
        or for a multiplexed or unknown reader quiet for a while, the screen's."""
        if term.reads in ("plain", "none"):
            return term.reads == "plain"
        return quiet >= ASKS_QUIET and bool(asks(tail, term, self.pane.alternate,
                                                 lambda: _look_or_none(self.host, self.pane))[0])

    def run(self, units: List[str], path: str = "", answer: Optional[Terminal] = None,
            typed: bool = False, finishing: bool = False, code: str = "") -> RunResult:
        """Type the units of ``code``; ``path`` is the file a ``block`` unit
        reads; ``finishing``: the answer ends an unfinished command."""
        outputs: List[str] = []
        truncated = lossy = False
        f: Optional[_Follower] = None
        reason: Ending = "done"
        log = (self.files.error_log(self.pane.transcript) if self.pane.profile.logged_failure
               else "")
        since = self.host.transcript_size(log) if log else 0
        for unit in units:
            f, reason = self._one(unit, answer, typed, finishing)
            outputs.append(f.output())
            truncated, lossy = truncated or f.truncated, lossy or f.lossy
            if reason != "done":
                break
        result = self._result(f, reason, "".join(outputs), path,
                              self._logged(log, since), code)
        result.truncated, result.lossy = truncated, lossy
        return result

    def _logged(self, log: str, since: int) -> str:
        """What the program wrote to its error log from offset ``since`` on."""
        if not log or self.host.transcript_size(log) <= since:
            return ""
        with contextlib.suppress(OSError, TmuxsessError), self.host.open_transcript(log) as f:
            f.seek(since)
            return f.read(1 << 20).decode("utf-8", "replace")
        return ""

    def _result(self, f: Optional[_Follower], reason: "Ending", output: str, path: str,
                logged: str = "", code: str = "") -> RunResult:
        """How the run ended, from how its last unit did."""
        if f is not None and reason in ("input", "prompt"):
            return self._asked(f, output)
        if reason == "done" and f is not None and f.ended_at in self.pane.profile.debuggers:
            reason = "debugger"  # typed at the debugger's prompt, and back at it
        if reason in ("done", "continuation", "debugger"):
            waiting = reason != "done"
            status = f.status if f is not None else None
            # A prompt known by regex says nothing of how a command went.
            known = not waiting and self.prompt_re is None
            return RunResult(output, self.profile.unit_status(status, output, path,
                                                              logged, code)
                             if known else None, waiting_for_input=waiting,
                             prompt=("continuation" if reason == "continuation" else
                                     f.ended_at if f is not None else ""))
        if reason in ("timeout", "cancelled"):
            return RunResult(output, None, timed_out=reason == "timeout",
                             cancelled=reason == "cancelled")
        return RunResult(output, self.host.ended(self.pane)[1], pane_died=True,
                         server_gone=reason == "server")

    def _asked(self, f: _Follower, output: str) -> RunResult:
        """A run whose program waits for input: its question is the line that
        asks, which for a full-screen program (vim from git commit) is its last
        row, and its output the screen's rows, not the drawing's bytes."""
        question = f.question
        if re.search(DRAWING_RE, bytes(f.buf)):
            with contextlib.suppress(TmuxsessError):
                look = _look_at(self.host, self.pane)
                if look.alternate:
                    rows = [row.rstrip() for row in look.rows]
                    while rows and not rows[-1]:
                        rows.pop()
                    question = rows[-1].strip() if rows else ""
                    output = "\n".join(rows) + ("\n" if rows else "")
        return RunResult(output, None, waiting_for_input=True, prompt="input",
                         question=question, echo_off=f.echo_off)

    def answer(self, text: str) -> RunResult:
        """Answer a program that waits for input; the rest of its output."""
        pane = self.pane
        tail = self.host.transcript_tail(pane.transcript)
        at = self._prompt(tail)
        if at is not None and at not in pane.profile.continuation:
            raise BusyError("%s is at its prompt: nothing waits for an answer; nothing was "
                            "sent" % pane.label,
                            actions=[Action("run", "run code there", {"code": "CODE"})],
                            target=pane.where)
        term = self.host.terminal(pane)
        if at is None and term.waiting is False:
            raise BusyError("%s is busy, not waiting for input; nothing was sent" % pane.label,
                            actions=[Action("wait", "wait for it", {"pattern": "PATTERN"})],
                            target=pane.where)
        self._take(at if at in PROFILES else "")
        # A full-screen program (vim, less) takes an answer as keys, as a person
        # types it: pasted, ":wq" would land in the text being edited.
        typed = term.canonical is False and _look_at(self.host, pane).alternate
        # No command runs (its last C mark was followed by a D): the answer ends
        # an unfinished one, whose output starts at the shell's C mark.
        last = next((m for m in _last_marks(tail, pane.token) if m.kind in (b"C", b"D")),
                    None)
        return self.run([text], answer=term, typed=typed, code=text,
                        finishing=last is None or last.kind == b"D")

    def _one(self, unit: str, answer: Optional[Terminal] = None, typed: bool = False,
             finishing: bool = False) -> Tuple[_Follower, Ending]:
        """One line (or pasted block) in, its output followed to the next prompt.
        ``answer``: the unit answers a question, at a terminal in that state;
        ``typed``: as keys, not pasted; ``finishing``: it ends an unfinished
        command (which starts with a C mark)."""
        pane, base = self.pane, self.pane.profile
        payload = _check_text(unit)
        offset = self.host.transcript_size(pane.transcript)
        cmark = self.prompt_re is None and self.profile.command_mark and (
            answer is None or finishing)
        lines = 1 if cmark else payload.count(b"\n") + 1
        stream, bracketed = payload, True
        if answer is not None and answer.canonical:
            # Typed into a line-editing terminal: exactly, and echoed only with ECHO.
            stream, bracketed = canonical_stream(payload + b"\n", answer), False
            lines = lines if answer.echo is not False else 0
        watch = _Watch("regex" if self.prompt_re is not None else "marks",
                       skip_lines=lines, cmark=cmark, pattern=self.prompt_re,
                       max_output=self.max_output,
                       continuation=base.continuation + self.profile.continuation,
                       continuation_text=base.continuation_text,
                       debuggers=base.debuggers, at=self.at, colours=self.colours)
        with _Follower(self.host, pane, offset, watch) as f:
            record = SentRecord(offset=offset, lines=lines, cmark=cmark)
            # A line-editing terminal's stream holds its newline; else Enter ends it.
            self.sender.deliver(pane, stream, (), bracketed,
                                record.encode() if pane.kind else "", 0, 0.1,
                                typed=typed, bracketed=bracketed)
            self.files.note_sent(pane, offset)
            reason = f.follow(max(self._remaining(), 0.001), cancel=self.cancel,
                              on_output=self.on_output)
        if f.ended_at in PROFILES and reason == "debugger":
            self.at = f.ended_at
        return f, reason


class _RunJob(Record):
    """What a run was asked to do."""

    code: str
    prompt: Optional[str]
    deadline: float
    max_output: int
    cancel: Optional["threading.Event"]
    on_output: Optional[Callable[[str], None]]
    answer: bool
    ansi: bool


class Runner:
    """Runs code: makes sure the program takes input (or refuses, typing
    nothing), types it unit by unit under the pane's run lock, and follows the
    output to the next prompt."""

    def __init__(self, host: Host, files: PaneFiles, targets: Targets, sender: Sender) -> None:
        self.host, self.files, self.targets, self.sender = host, files, targets, sender

    def run(self, where: Where, code: Optional[str], answer: Optional[str], timeout: float,
            prompt: Optional[str], max_output: int, ansi: bool,
            cancel: Optional["threading.Event"], on_output: Optional[Callable[[str], None]]
            ) -> RunResult:
        """See Engine.run."""
        began = time.monotonic()
        if (code is None) == (answer is None):
            raise UsageError("give {code} or {answer}" + (", not both" if code else ""))
        _seconds(timeout, "timeout")
        _at_least(max_output, 0, "max_output")
        text = code if answer is None else answer
        assert text is not None
        _check_text(text)  # refuse NUL before anything is typed
        job = _RunJob(text, prompt, began + timeout, max_output, cancel, on_output,
                      answer is not None, ansi)
        pane = self.targets.from_registry(where)
        if pane is not None:
            try:  # the one tmux call of the run checks that the pane is still this one
                return self._run_on(pane, Health("healthy", True, True, True, pid=pane.pid,
                                                 process_running=True), job, began)
            except _StalePane:
                pass  # nothing was typed: ask tmux, as for any other target
        return self._run_on(*self.targets.resolve(where, changes=True), job, began)

    def _run_on(self, pane: Pane, health: Health, job: _RunJob, began: float) -> RunResult:
        code, prompt, deadline = job.code, job.prompt, job.deadline
        if health.status == "dead":
            raise PaneDeadError(health.said(pane.label, "nothing was run"),
                                actions=_transcript_kept(self.host, pane)
                                or [Action("capture", "read its screen")], target=pane.where)
        if health.status != "healthy":
            raise UnhealthyError(health.said(pane.label, "nothing was run"), target=pane.where)
        prompt_re = _compile_prompt(prompt or pane.prompt) if prompt or pane.prompt else None
        if prompt_re is None and not pane.marked:
            raise UsageError("tmuxsess does not know the prompt of %s" % pane.label,
                             "give {prompt}: a regex of the program's prompt line")
        exchange = _Exchange(self, pane, prompt_re, deadline, job.max_output, job.cancel,
                             job.on_output)
        exchange.colours = job.ansi
        with self.files.run_lock(pane, deadline), self.files.following(pane) as following:
            if not following:
                raise UnhealthyError("%s already pipes its output elsewhere (pipe-pane); "
                                     "run cannot follow it" % pane.label,
                                     actions=[Action("send", "send with a wait instead",
                                                     {"text": "TEXT", "wait": "PATTERN"}),
                                              Action("capture", "or read its screen")],
                                     target=pane.where)
            if job.answer:
                result = exchange.answer(code)
            else:
                early = exchange.ready()
                if early is not None:
                    return early
                with self.files.block_file(exchange.profile, code) as path:
                    units = exchange.profile.units(code, path, by_lines=prompt_re is not None)
                    result = exchange.run(units, path, code=code)
        result.elapsed = round(time.monotonic() - began, 3)
        return result


def _answer_or_abandon(finish: bool = False) -> List[Action]:
    """How to answer a program that waits (``finish``: give the rest of an
    unfinished statement), and how to abandon it."""
    return [Action("run", "finish it" if finish else "answer it",
                   {"answer": "REST" if finish else "TEXT"}),
            Action("send", "or abandon it", {"keys": ["C-c"]})]


class Engine:
    """Does the work: every operation of the tool, with one set of settings.

    ``Engine()`` takes its settings from the environment, once; arguments that
    are not None override them. Engines with different settings can work side
    by side in one process (and from several threads). The work is done by
    its parts, one job each: ``targets`` finds the pane, ``starter`` creates
    sessions, ``keeper`` keeps them, ``sender`` types, ``waiter`` waits,
    ``runner`` runs; ``files`` owns the state dir.
    """

    def __init__(self, state_dir: Optional[str] = None, socket_dir: Optional[str] = None,
                 tmux: Optional[str] = None, lock_timeout: Optional[float] = None, *,
                 settings: Optional[Settings] = None, host: Optional[Host] = None) -> None:
        self.settings = settings or Settings.from_environment(
            state_dir=state_dir, socket_dir=socket_dir, tmux=tmux, lock_timeout=lock_timeout)
        self.host = host or Host(self.settings.tmux, self.settings.proc)
        self.registry = Registry(self.settings.state_dir, self.settings.lock_timeout)
        self.files = PaneFiles(self.settings, self.host)
        self.targets = Targets(self.settings, self.host, self.registry)
        self.starter = Starter(self.settings, self.host, self.registry, self.files)
        self.keeper = Keeper(self.settings, self.host, self.registry, self.files, self.targets)
        self.waiter = Waiter(self.host, self.files, self.targets)
        self.sender = Sender(self.host, self.files, self.targets, self.waiter)
        self.runner = Runner(self.host, self.files, self.targets, self.sender)

    def create_session(self, name: str, kind: Optional[str] = None,
                       command: Optional[str] = None, *, prompt: Optional[str] = None,
                       socket: Optional[str] = None, window: str = "shell",
                       cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                       norc: bool = False, register: bool = True, wait: bool = True,
                       ready_timeout: float = READY_TIMEOUT) -> "CreatedSession":
        """Start a program in a new detached session; return its record.

        ``kind`` names a profile (``PROFILES``: shell, python, gdb, node, ...);
        ``command`` is a command line to run under it, or without a kind, any
        program (then ``prompt``, a regex of its prompt line, lets ``run`` work
        with it). The program gets this process's environment, then ``env``,
        in ``cwd``. Returns once the program shows its first prompt (unless
        ``wait`` is false; at most ``ready_timeout`` seconds), so input sent
        right after is never typed into a program still starting. ``norc``: the
        program reads no user startup files (~/.bashrc, ~/.zshrc, config.fish,
        IPython's config). ``socket``: a tmux server other than the
        tool's own; ``register``: whether the registry knows it.
        """
        return self.starter.create(name, kind, command, prompt, socket, window, cwd, env,
                                   norc, register, wait, ready_timeout)

    def list_sessions(self) -> List["SessionStatus"]:
        """Every registered session with its status: one tmux query per socket."""
        return self.keeper.list()

    def pane_health(self, *, session: Optional[str] = None, socket: Optional[str] = None,
                    socket_name: Optional[str] = None, target: Optional[str] = None
                    ) -> "Health":
        """The health of one pane: healthy, dead, missing, zombie or server_not_running."""
        return self.keeper.health(Where(session, socket, socket_name, target))

    def kill_session(self, *, dry_run: bool = False, session: Optional[str] = None,
                     socket: Optional[str] = None, socket_name: Optional[str] = None,
                     target: Optional[str] = None) -> "KillResult":
        """Kill the tmux session and remove its registry entry as one operation."""
        return self.keeper.kill(Where(session, socket, socket_name, target), dry_run)

    def cleanup_sessions(self, *, all: bool = False, older_than: Optional[float] = None,
                         idle: Optional[float] = None, dry_run: bool = False
                         ) -> List["CleanupItem"]:
        """Remove unhealthy sessions (and with ``all``, or ``older_than`` or
        ``idle`` seconds, old or idle ones) from the registry. Selected sessions
        that are still alive are killed too, so nothing runs on untracked."""
        return self.keeper.cleanup(all, older_than, idle, dry_run)

    def find_sessions(self, *, socket: Optional[str] = None, socket_name: Optional[str] = None,
                      all_sockets: bool = False, query: Optional[str] = None
                      ) -> List["FoundSession"]:
        """tmux sessions on one server (the tool's own by default), or with
        ``all_sockets`` on every socket in the socket dir and every socket the
        registry names; registered or not. ``query``: names containing it."""
        return self.keeper.find(socket, socket_name, all_sockets, query)

    def repair(self) -> "RepairResult":
        """Rebuild a corrupt (or lost) registry from the live tmux sessions in the
        socket dir, and on the sockets the corrupt file still names. The bad
        file is moved aside, never deleted; a registry that reads fine is left
        exactly as it is."""
        return self.keeper.repair()

    def capture(self, *, lines: int = CAPTURE_LINES, all: bool = False, ansi: bool = False,
                session: Optional[str] = None, socket: Optional[str] = None,
                socket_name: Optional[str] = None, target: Optional[str] = None) -> str:
        """The pane's text (its last ``lines`` lines, or ``all`` of its history),
        wrapped lines joined, trailing blank lines dropped; ``ansi`` keeps
        colours. Works on a dead pane, so a crash can be read after it."""
        return self.capture_screen(lines=lines, all=all, ansi=ansi, session=session,
                                   socket=socket, socket_name=socket_name, target=target).text

    def capture_screen(self, *, lines: int = CAPTURE_LINES, all: bool = False,
                       ansi: bool = False, session: Optional[str] = None,
                       socket: Optional[str] = None, socket_name: Optional[str] = None,
                       target: Optional[str] = None) -> "Capture":
        """``capture``'s text with what the screen is: the alternate screen or
        not, the cursor, the command running in the pane."""
        return self.keeper.capture(Where(session, socket, socket_name, target), lines, all,
                                   ansi)

    def read_transcript(self, *, raw: bool = False, session: Optional[str] = None,
                        socket: Optional[str] = None, socket_name: Optional[str] = None,
                        target: Optional[str] = None) -> Iterator[str]:
        """Everything the pane's program wrote since create, in chunks, streamed:
        rendered as the screen shows it, or ``raw`` as it was written."""
        return self.keeper.transcript(Where(session, socket, socket_name, target), raw)

    def attach_command(self, *, session: Optional[str] = None, socket: Optional[str] = None,
                       socket_name: Optional[str] = None, target: Optional[str] = None
                       ) -> List[str]:
        """The ``tmux attach`` command line that shows a session to a person."""
        return self.keeper.attach_command(Where(session, socket, socket_name, target))

    def send(self, text: Optional[str] = None, keys: Sequence[str] = (), *,
             enter: bool = True, multiline: bool = False, delivery: str = "auto",
             wait: Optional[str] = None, fixed: bool = False, stable: float = 0.0,
             not_pattern: Optional[str] = None, timeout: float = SEND_TIMEOUT,
             retries: int = SEND_RETRIES, interval: float = RETRY_INTERVAL,
             session: Optional[str] = None, socket: Optional[str] = None,
             socket_name: Optional[str] = None, target: Optional[str] = None,
             cancel: Optional["threading.Event"] = None,
             on_retry: Optional[Callable[[str], None]] = None) -> "SendResult":
        """Send text exactly as given (and/or keys); optionally wait for a pattern.

        ``text`` is literal, always: no word in it is a key name. Enter follows it
        unless ``enter`` is false or ``keys`` are given. ``delivery`` says how text
        goes in: ``auto`` types it as keys into a program in the alternate screen
        (vim, less, htop) and pastes it anywhere else; ``type`` and ``paste``
        force either. A paste into a program that asked for bracketed paste (not
        the tool's own shells and REPLs) is submitted once: Enter goes in when
        the text is on the screen, and again, a bounded number of times, while
        the text sits unchanged in the input line (a program that swallowed the
        Enter). With ``multiline`` the text is pasted as one block (for a Python
        REPL: run as one unit). ``wait`` is matched only in output that appears
        after this send, never in what was on screen before nor in the echo of
        the text; ``not_pattern`` ends the wait, failed, when it appears;
        ``stable`` waits (after ``wait``, if given) until the screen has not
        changed for that many seconds. A failed delivery is tried ``retries``
        more times, ``interval`` seconds apart at first (``on_retry`` is told
        why); ``cancel`` (a threading.Event) stops the wait.
        """
        return self.sender.send(Where(session, socket, socket_name, target), text, keys,
                                enter, multiline, delivery, wait, fixed, stable, not_pattern,
                                timeout, retries, interval, cancel, on_retry)

    def wait_for_text(self, pattern: Optional[str] = None, *, fixed: bool = False,
                      stable: float = 0.0, not_pattern: Optional[str] = None,
                      timeout: float = WAIT_TIMEOUT, interval: Optional[float] = None,
                      lines: int = WAIT_LINES, whole_pane: bool = False,
                      session: Optional[str] = None, socket: Optional[str] = None,
                      socket_name: Optional[str] = None, target: Optional[str] = None,
                      cancel: Optional["threading.Event"] = None) -> "WaitResult":
        """Wait until ``pattern`` (a regex, or with ``fixed`` a string) appears in
        the pane's output.

        On a session with a send recorded by this tool only output after that
        send counts; ``whole_pane`` searches the last ``lines`` lines instead.
        A pane in the alternate screen (or sent to there) is waited on as its
        screen shows it: the text that changed since the send. ``stable``
        waits (after the pattern, if one is given) until the screen has not
        changed for that many seconds; ``not_pattern`` ends the wait, failed
        (reason ``refused``), once it appears. Returns early when the program
        waits for input, exits, or the server goes away.
        """
        return self.waiter.wait(Where(session, socket, socket_name, target), pattern, fixed,
                                stable, not_pattern, timeout, interval, lines, whole_pane,
                                cancel)

    def run(self, code: Optional[str] = None, *, answer: Optional[str] = None,
            timeout: float = RUN_TIMEOUT, prompt: Optional[str] = None,
            max_output: int = MAX_OUTPUT, ansi: bool = False, session: Optional[str] = None,
            socket: Optional[str] = None, socket_name: Optional[str] = None,
            target: Optional[str] = None, cancel: Optional["threading.Event"] = None,
            on_output: Optional[Callable[[str], None]] = None) -> "RunResult":
        """Type code, wait until the program is back at its prompt, return its output.

        ``answer`` instead of ``code``: the answer to a program that waits for
        input (a run ended with ``waiting_for_input``), typed as one line; the
        result is the rest of that command's output and its status.

        ``output`` is exactly what the program printed: no echo, no prompt
        (``ansi``: with its colours; at most ``max_output`` bytes of it, the
        newest). ``exit_status`` is the unit's status as the profile says it (a
        shell command's own, 1 if Python raised, psql's ERROR), None when the
        program does not say (gdb, a ``prompt`` given by regex). ``timed_out``
        (after ``timeout`` seconds), ``pane_died``, ``waiting_for_input`` and
        ``cancelled`` say why a run ended early, with the output so far. A run
        that cannot start (a busy program, text left on the prompt line,
        another run going) raises BusyError, having typed nothing. ``cancel``
        (a threading.Event) stops the waiting; ``on_output`` is told the output
        so far while it grows.
        """
        return self.runner.run(Where(session, socket, socket_name, target), code, answer,
                               timeout, prompt, max_output, ansi, cancel, on_output)


# ---------------------------------------------------------------------------
# The table of operations: each declared once, for the command line and MCP
# ---------------------------------------------------------------------------
# A row names an operation, the Engine method behind it, its parameters (by
# the method's keyword, which is also the MCP argument), how the command line
# spells each one, and whether it changes anything. Defaults are the method's
# own. The front ends build their parsers and schemas from it, and word
# errors and hints in their own terms through it.

class Param(Record):
    """One parameter of an operation."""

    name: str                  # the Engine method's keyword; the MCP argument
    kind: str                  # text, flag, int, seconds, duration, keys, env, choice, path
    help: str                  # what it is, in words neither front end owns
    flags: Tuple[str, ...] = ()  # how the command line spells it; () for MCP only
    metavar: str = ""
    choices: Tuple[str, ...] = ()
    # Command-line flags that each set a value: ((flags), value, help).
    switches: Tuple[Tuple[Tuple[str, ...], Any, str], ...] = ()
    mcp: bool = True           # an MCP argument too
    engine: bool = True        # passed to the Engine method (else the front end's own)
    required: bool = False
    from_file: bool = False    # the command line may read it from --file PATH (- = stdin)
    foreign: bool = False      # names a tmux server the tool did not start (MCP: opt-in)


class Operation(Record):
    """One operation: its names, the Engine method, its parameters."""

    name: str                      # the command line's subcommand
    aliases: Tuple[str, ...]       # its other names; the first is the short one
    tool: str                      # the MCP tool; "" for none
    method: str                    # the Engine method; "" for the command line's own
    params: Tuple[Param, ...]
    changes: bool = False          # it types into, starts or kills something
    targets: bool = False          # it acts on one pane: takes the target parameters

    @property
    def short(self) -> str:
        return self.aliases[0] if self.aliases else self.name

    def param(self, name: str) -> Optional[Param]:
        return next((p for p in self.all_params if p.name == name), None)

    @property
    def all_params(self) -> Tuple[Param, ...]:
        return self.params + (TARGET_PARAMS if self.targets else ()) + (
            (HOST,) if self.tool else ())

    def defaults(self) -> Dict[str, Any]:
        """The Engine method's defaults, by keyword: the one place they live."""
        method = getattr(Engine, self.method, None)
        if method is None:
            return {}
        code, positional = method.__code__, method.__defaults__ or ()
        names = code.co_varnames[:code.co_argcount]
        found = dict(zip(names[len(names) - len(positional):], positional))
        found.update(method.__kwdefaults__ or {})
        return found


TARGET_PARAMS = (
    Param("session", "text", "a registered session's name", ("-s", "--session"), "NAME"),
    Param("socket", "path", "the socket of a tmux server the tool did not start",
          ("-S", "--socket"), "PATH", foreign=True),
    Param("socket_name", "text", "a tmux server's socket name (tmux -L), instead of socket",
          ("-L", "--socket-name"), "NAME", foreign=True),
    Param("target", "text", "a tmux target pane on that server, e.g. work:1.0",
          ("-t", "--target"), "TARGET", foreign=True),
)
JSON = Param("json", "flag", "machine-readable output", ("--json",), mcp=False, engine=False)
# The machine the session is on. The command line spells it before the
# subcommand (--host, for every command: see relay_main); MCP, per call.
HOST = Param("host", "text", "the machine the session is on, one this server was started "
             "for (mcp --host NAME); without it, this one", engine=False)
WAITING = (
    Param("fixed", "flag", "the pattern is a fixed string, not a regular expression",
          ("-F", "--fixed")),
    Param("stable", "duration", "then wait until the screen has not changed for this long: "
          "a TUI or agent that has settled", ("--stable",), "DUR"),
    Param("not_pattern", "text", "fail at once when this appears instead (an error message)",
          ("--not",), "PATTERN"),
)

OPERATIONS: Tuple[Operation, ...] = (
    Operation("create-session", ("create",), "create_session", "create_session", (
        Param("name", "text", "the new session's name: 1-64 of A-Z a-z 0-9 _ -, not "
              "starting with -", ("-n", "--name"), required=True),
        Param("kind", "text", "the program's profile; without one, a shell, or with a "
              "command line, any program", ("--kind",), "KIND",
              choices=tuple(n for n, p in PROFILES.items() if not p.nested),
              switches=((("--shell",), "shell", "bash (the default)"),
                        (("--python",), "python", "Python REPL (python3 -q)"),
                        (("--gdb",), "gdb", "gdb, quiet, no pagination"))),
        Param("command", "text", "a command line, run by $SHELL -c: with a kind, run under "
              "that profile (e.g. 'psql mydb'); alone, any program", ("--cmd",), "COMMAND"),
        Param("prompt", "text", "a regex of the program's prompt line, for a program the "
              "tool has no profile for: readiness and run use it", ("--prompt",), "REGEX"),
        Param("socket", "path", "a tmux socket of your own (default: the tool's, in its "
              "socket dir)", ("-S", "--socket"), "PATH", foreign=True),
        Param("window", "text", "the window's name", ("-w", "--window"), "NAME", mcp=False),
        Param("cwd", "path", "the working directory", ("-c", "--cwd"), "DIR"),
        Param("env", "env", "environment variables for the program", ("-e", "--env"), "K=V"),
        Param("norc", "flag", "the program reads no user startup files (bash: ~/.bashrc, "
              "zsh: ~/.zshrc, fish: config.fish, ipython: its config and startup files)",
              ("--norc",)),
        Param("register", "flag", "add it to the registry", mcp=False,
              switches=((("--no-register",), False, "do not add it to the registry"),)),
        Param("wait", "flag", "wait for the first prompt (false: return at once)",
              switches=((("--no-wait",), False, "return without waiting for a prompt"),)),
        Param("ready_timeout", "seconds", "how long to wait for the first prompt",
              ("--ready-timeout",), "SEC"),
    ), changes=True),
    Operation("list-sessions", ("list", "ls"), "list_sessions", "list_sessions", (JSON,)),
    Operation("pane-health", ("health",), "session_health", "pane_health", (
        Param("format", "choice", "how to print it", ("--format",), choices=("json", "text"),
              mcp=False, engine=False),
    ), targets=True),
    Operation("kill-session", ("kill",), "kill_session", "kill_session", (
        Param("dry_run", "flag", "change nothing; say what would be done", ("--dry-run",)),
        Param("verbose", "flag", "say what it found", ("-v", "--verbose"), mcp=False,
              engine=False),
    ), changes=True, targets=True),
    Operation("cleanup-sessions", ("cleanup",), "cleanup_sessions", "cleanup_sessions", (
        Param("dry_run", "flag", "change nothing; list what would be removed", ("--dry-run",)),
        Param("all", "flag", "every registered session", ("--all",)),
        Param("older_than", "duration", "created longer ago than this (30s 15m 2h 1d)",
              ("--older-than",), "DUR"),
        Param("idle", "duration", "no send, run or output for longer than this",
              ("--idle",), "DUR"),
        JSON,
    ), changes=True),
    Operation("find-sessions", ("find",), "", "find_sessions", (
        Param("socket_name", "text", "a tmux server's socket name", ("-L", "--socket-name"),
              "NAME"),
        Param("socket", "path", "a tmux server's socket path", ("-S", "--socket"), "PATH"),
        Param("all_sockets", "flag", "every socket in the socket dir, and every socket the "
              "registry names", ("-A", "--all")),
        Param("query", "text", "names containing this", ("-q", "--query"), "TEXT"),
        JSON,
    )),
    Operation("run", (), "run", "run", (
        Param("code", "text", "code or a command line, exactly as typed (may be several "
              "lines)", ("-c", "--command"), "CODE", from_file=True),
        Param("answer", "text", "instead of code: the answer to a program that waits for "
              "input, typed as one line; the result is the rest of that command's output",
              ("--answer",), "TEXT"),
        Param("timeout", "seconds", "how long to wait for the prompt", ("-T", "--timeout"),
              "SEC"),
        Param("prompt", "text", "a regex of the program's prompt line, for a program whose "
              "prompt the tool does not know", ("--prompt",), "REGEX"),
        Param("max_output", "int", "keep at most this many bytes of output, the newest "
              "(0: all)", ("--max-output",), "BYTES", mcp=False),
        Param("ansi", "flag", "keep colours and attributes", ("--ansi",), mcp=False),
        JSON,
    ), changes=True, targets=True),
    Operation("safe-send", ("send",), "send", "send", (
        Param("text", "text", "literal text: no word in it is a key name",
              ("-c", "--command"), "TEXT", from_file=True),
        Param("keys", "keys", "tmux key names, pressed after the text: C-c, Up Enter, Escape",
              ("-k", "--keys"), "KEY"),
        Param("enter", "flag", "press Enter after the text",
              switches=((("-l", "--literal"), False, "do not press Enter after the text"),)),
        Param("multiline", "flag", "paste the text as one block (Python: run as one unit)",
              ("-m", "--multiline")),
        Param("delivery", "choice", "how the text goes in: typed as keys in the alternate "
              "screen (vim, less, htop), pasted elsewhere; or always typed, or pasted",
              choices=DELIVERIES,
              switches=((("--type",), "type", "type the text as keys"),
                        (("--paste",), "paste", "paste the text"))),
        Param("wait", "text", "wait for this regex in the output that follows",
              ("-w", "--wait"), "PATTERN"),
    ) + WAITING + (
        Param("timeout", "seconds", "how long the wait waits", ("-T", "--timeout"), "SEC"),
        Param("retries", "int", "retries of a failed delivery", ("-r", "--retries"), "N",
              mcp=False),
        Param("interval", "seconds", "the first pause before a retry (it doubles)",
              ("-i", "--interval"), "SEC", mcp=False),
        Param("verbose", "flag", "say what was sent, and each retry", ("-v", "--verbose"),
              mcp=False, engine=False),
        JSON,
    ), changes=True, targets=True),
    Operation("wait-for-text", ("wait",), "wait_for_text", "wait_for_text", (
        Param("pattern", "text", "a Python regex (multiline), or a fixed string with fixed; "
              "needed unless stable is given", ("-p", "--pattern"), "PATTERN"),
    ) + WAITING + (
        Param("timeout", "seconds", "how long to wait", ("-T", "--timeout"), "SEC"),
        Param("interval", "seconds", "the longest pause between looks (default 0.05 on a "
              "transcript, 0.2 on the screen)", ("-i", "--interval"), "SEC", mcp=False),
        Param("lines", "int", "lines searched with whole_pane", ("-l", "--lines"), "N"),
        Param("whole_pane", "flag", "search the whole pane, old output included",
              ("--whole-pane",)),
        JSON,
    ), targets=True),
    Operation("capture", (), "capture", "capture_screen", (
        Param("lines", "int", "the last N lines", ("-n", "--lines"), "N"),
        Param("all", "flag", "all of it", ("--all",)),
        Param("ansi", "flag", "keep colours and attributes (the screen only)", ("--ansi",)),
        Param("source", "choice", "the screen, or the transcript: everything the program "
              "wrote since create", choices=("screen", "transcript"), engine=False,
              switches=((("--transcript",), "transcript",
                         "everything the program wrote since create"),)),
        Param("raw", "flag", "the transcript as written, escapes and all", ("--raw",),
              mcp=False, engine=False),
        JSON,
    ), targets=True),
    Operation("repair", (), "", "repair", (JSON,), changes=True),
    Operation("attach", (), "", "attach_command", (), targets=True),
)


def operation(name: str) -> Operation:
    """The operation of that name, alias or MCP tool."""
    for op in OPERATIONS:
        if name in (op.name, op.tool) + op.aliases:
            return op
    raise KeyError(name)



def unfinished_run(engine: Engine, r: RunResult, timeout: float, where: Dict[str, str]
                   ) -> Optional[TmuxsessError]:
    """What a run that did not end at its prompt says, as data each front end
    words: None for a run that did."""
    if r.timed_out:
        last = r.output.rsplit("\n", 1)[-1].rstrip()
        interrupt = Action("send", "interrupt it", {"keys": ["C-c"]})
        if 0 < len(last) <= 80 and last[-1] in "$#%>":
            # After exec bash, ssh or su the shell's prompt has none of the tool's marks.
            return TmuxsessError(
                "no prompt within %gs; output so far is above" % timeout,
                "%r looks like a prompt without tmuxsess's marks (exec, ssh, su, a new "
                "PROMPT_COMMAND): give {prompt}, a regex matching it; if the program is "
                "still running instead:" % last, [interrupt], where)
        return TmuxsessError("no prompt within %gs; output so far is above" % timeout,
                             "the program is still running; if it shows a prompt of its own "
                             "(exec, ssh, su), give {prompt}, a regex matching it",
                             [interrupt], where)
    if r.pane_died:
        return TmuxsessError(ended_while_waiting(engine, "server" if r.server_gone else "dead",
                                                 r.exit_status, where), target=where)
    if not r.waiting_for_input:
        return None
    if r.prompt == "input" and r.question[-1:] in ("$", "#", "%", ">"):
        # After exec bash, ssh or su the prompt has none of the tool's marks.
        return TmuxsessError("the program waits for input at %r; output so far is above"
                             % r.question, "%r looks like a prompt without tmuxsess's marks "
                             "(exec, ssh, su, a new PROMPT_COMMAND): give {prompt} with a "
                             "regex matching it" % r.question,
                             [Action("run", "or answer it", {"answer": "TEXT"})], where)
    if r.prompt == "input":
        return TmuxsessError("the program waits for input%s%s; output so far is above" % (
            ": %r" % r.question if r.question else "",
            " (echo is off: a password? the answer is not shown)" if r.echo_off else ""),
            "the rest of its output follows the answer", _answer_or_abandon(), where)
    if r.prompt == "continuation":
        return TmuxsessError("the program waits at its continuation prompt: the input is "
                             "unfinished; output so far is above",
                             actions=_answer_or_abandon(finish=True), target=where)
    return TmuxsessError("the program stopped at its debugger prompt (%s); output so far is "
                         "above" % (r.prompt or "debugger"),
                         actions=[Action("run", "inspect it", {"code": "p NAME"}),
                                  Action("run", "continue", {"code": "c"})], target=where)


def unfound(engine: Engine, w: WaitResult, pattern: Optional[str], stable: float,
            timeout: float, where: Dict[str, str]) -> Optional[TmuxsessError]:
    """What a wait (or a send's wait) that did not find its pattern says; None
    when it found it, or was cancelled."""
    if w.found or w.reason == "cancelled":
        return None
    tail = "last lines:\n" + w.tail if w.tail.strip() else ""
    if w.reason == "refused":
        return TmuxsessError("%r appeared ({not_pattern})" % w.match, tail, target=where)
    if w.reason == "timeout":
        if pattern is None:
            said = "the screen did not hold still for %gs within %gs" % (stable, timeout)
        else:
            said = "pattern %r not seen%s within %gs" % (
                pattern, " (and the screen still for %gs)" % stable if stable else "", timeout)
        return TmuxsessError(said, tail, target=where)
    if w.reason == "prompt":
        return TmuxsessError("pattern %r not seen; the program is back at its prompt"
                             % pattern, tail, target=where)
    if w.reason == "input":
        return TmuxsessError("pattern %r not seen; the program waits for input%s" % (
            pattern, ": %r" % w.question if w.question else ""),
            actions=_answer_or_abandon(), target=where)
    return TmuxsessError(ended_while_waiting(engine, w.reason, w.exit_status, where), tail,
                         target=where)


def ended_while_waiting(engine: Engine, reason: str, status: Optional[int],
                        where: Dict[str, str]) -> str:
    """Why a wait ended without its prompt or pattern: how the program ended."""
    if reason == "dead":
        with contextlib.suppress(TmuxsessError):
            if status is None and where:  # killed by a signal? its health says
                health = engine.pane_health(**where)
                if health.status == "dead":
                    return "the program %s while waiting" % health.ended
        return "the program exited%s while waiting" % (
            "" if status is None else " with status %d" % status)
    if reason == "server":
        return "the tmux server went away while waiting"
    return "the pane is %s" % reason


def nothing_killed(r: KillResult) -> Optional[TmuxsessError]:
    """What a kill that found nothing to kill or deregister says; None if it did."""
    if r.killed or r.deregistered:
        return None
    why = {"server": "no tmux server runs on %s" % r.socket,
           "missing": "tmux has no such session"}.get(r.status, "tmux could not kill it")
    return TmuxsessError("nothing to kill: %s is not registered and %s" % (r.name, why))
# ---------------------------------------------------------------------------
# Front end: the MCP server: tmuxsess.py mcp (JSON-RPC 2.0 over stdio, one message a line)
# ---------------------------------------------------------------------------
#
# Legacy revisions open with the initialize handshake; 2026-07-28 is stateless
# (version and client capabilities in every request's _meta, server/discover
# instead of a handshake). This server speaks both ("dual-era"), each request
# in the era it arrives in. Every tools/call runs in its own thread; replies
# go out under one lock, one line each.

MCP_HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MCP_MODERN_VERSIONS = ("2026-07-28",)
MCP_VERSIONS = MCP_MODERN_VERSIONS + tuple(reversed(MCP_HANDSHAKE_VERSIONS))
MCP_BATCH_VERSIONS = ("2025-03-26",)  # the only revision with JSON-RPC batches
MCP_NO_ANNOTATIONS = ("2024-11-05",)  # tool annotations came with 2025-03-26
MCP_NO_STRUCTURED = ("2024-11-05", "2025-03-26")  # outputSchema, structuredContent, title
MCP_KEY = "io.modelcontextprotocol/"
MCP_PARSE_ERROR, MCP_INVALID_REQUEST, MCP_METHOD_NOT_FOUND = -32700, -32600, -32601
MCP_INVALID_PARAMS, MCP_INTERNAL_ERROR, MCP_UNSUPPORTED_VERSION = -32602, -32603, -32022
MCP_FOREIGN_ARGS = ("socket", "socket_name", "target")
MCP_PROGRESS_TAIL = 4000  # characters of output so far in a progress message
MCP_CAPTURE_MAX = 1 << 20  # characters a capture returns at most

MCP_INSTRUCTIONS = """\
Drives interactive terminal programs (bash, zsh, fish, Python, IPython, gdb, node,
psql, sqlite, any command) in tmux sessions and reads exactly what they print. A
program that waits for input is reported at once; answer it with run's answer.
Typical flow:
create_session -> run (code in, exact output and exit status out) -> kill_session.
For programs without a known prompt use send (text or keys) and wait_for_text;
capture reads the screen or the whole transcript. A run that takes long can be
interrupted with send keys ["C-c"]. Sessions outlive this server and are shared
with the tmuxsess.py command line (list_sessions shows them; cleanup_sessions
removes dead ones). A person can watch any session with the attach command that
create_session returns."""




class _McpRpcError(Exception):
    """A JSON-RPC error response: a protocol fault, not a tool failure."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


if TYPE_CHECKING:  # structured result, and the error as MCP words it (None if none)
    Outcome = Tuple[Mapping[str, Any], Optional[TmuxsessError]]


class McpTool(Record):
    """One MCP tool: an operation of the table, in MCP's words (its title and
    description, what it returns), and the function that calls the engine."""

    op: Operation
    title: str
    description: str
    output: Dict[str, Dict[str, Any]]
    output_required: Tuple[str, ...]
    call: Callable[["_McpCall", Dict[str, Any]], "Outcome"]
    idempotent: bool = False
    open_world: bool = False

    @property
    def name(self) -> str:
        return self.op.tool

    @property
    def read_only(self) -> bool:
        return not self.op.changes

    def params(self, allow_foreign: bool, hosts: Sequence[str] = ()) -> List[Param]:
        """The parameters MCP offers: the table's, less the command line's own,
        less those that name foreign servers unless allowed, less host unless
        the server reaches other machines."""
        return [p for p in self.op.all_params if p.mcp and (allow_foreign or not p.foreign)
                and (hosts or p is not HOST)]

    def properties(self, allow_foreign: bool, hosts: Sequence[str] = ()
                   ) -> Dict[str, Dict[str, Any]]:
        defaults = self.op.defaults()
        found = {p.name: _mcp_schema(p, defaults.get(p.name))
                 for p in self.params(allow_foreign, hosts)}
        if hosts:
            found["host"]["enum"] = list(hosts)
        return found

    def required_args(self, allow_foreign: bool) -> List[str]:
        return [p.name for p in self.op.params if p.required] + (
            ["session"] if self.op.targets and not allow_foreign else [])

    def definition(self, version: str, allow_foreign: bool, hosts: Sequence[str] = ()
                   ) -> Dict[str, Any]:
        schema: Dict[str, Any] = {"type": "object",
                                  "properties": self.properties(allow_foreign, hosts),
                                  "additionalProperties": False}
        if self.required_args(allow_foreign):
            schema["required"] = self.required_args(allow_foreign)
        d: Dict[str, Any] = {"name": self.name, "description": self.description,
                             "inputSchema": schema}
        if version not in MCP_NO_ANNOTATIONS:
            d["annotations"] = {"title": self.title, "readOnlyHint": self.read_only,
                                "destructiveHint": not self.read_only,
                                "idempotentHint": self.idempotent,
                                "openWorldHint": self.open_world}
        if version not in MCP_NO_STRUCTURED:
            d["title"] = self.title
            d["outputSchema"] = {"type": "object", "properties": self.output,
                                 "required": list(self.output_required)}
        return d


# A parameter's kind as JSON schema: its type, and bounds MCP states.
_MCP_KINDS: Dict[str, Dict[str, Any]] = {
    "text": {"type": "string"}, "path": {"type": "string"}, "flag": {"type": "boolean"},
    "int": {"type": "integer", "minimum": 0}, "choice": {"type": "string"},
    "seconds": {"type": "number", "exclusiveMinimum": 0},
    "duration": {"type": ["number", "string"]},
    "keys": {"type": "array", "items": {"type": "string"}},
    "env": {"type": "object", "additionalProperties": {"type": "string"}},
}


def _mcp_schema(param: Param, default: Any) -> Dict[str, Any]:
    schema = dict(_MCP_KINDS[param.kind])
    words = param.help[0].upper() + param.help[1:]
    if param.kind == "duration":
        words += ": seconds, or 30s, 15m, 2h, 1d"
    if default is not None and default != () and param.kind != "text":
        words += " (default %s)" % ("%g" % default if isinstance(default, float)
                                    else json.dumps(default))
    schema["description"] = words + "."
    if param.choices:
        schema["enum"] = list(param.choices)
    return schema


def _mcp_words(text: str) -> str:
    """Text with its {parameter} names as the arguments they are."""
    return re.sub(r"\{(\w+)\}", r"the \1 argument", text)


def _mcp_call_text(action: Action, where: Dict[str, str], host: str = "") -> str:
    """An action as the tool call that takes it: ``send {"session": "py", ...}``;
    "" for an operation MCP does not offer. ``host``: the machine the client
    calls this one."""
    op = operation(action.op)
    if not op.tool:
        return ""
    args = dict({"host": host} if host else {}, **dict(where if action.on_target else {},
                                                       **action.args))
    return "%s %s" % (op.tool, json.dumps({k: v for k, v in args.items() if op.param(k)},
                                          ensure_ascii=False))


def _mcp_error_text(e: TmuxsessError, host: str = "") -> str:
    """An error as MCP says it: what happened, then what to do, as tool calls."""
    steps = [_mcp_words(e.hint)] + ["%s: %s" % (x.why, _mcp_call_text(x, e.target, host))
                                    for x in e.actions if _mcp_call_text(x, e.target)]
    hint = "; ".join(s for s in steps if s)
    return "tmuxsess: error: " + _mcp_words(e.message) + ("\nhint: " + hint if hint else "")


def _mcp_json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1,
                      default=lambda record: record.as_dict())


def _mcp_target(c: "_McpCall", a: Dict[str, Any]) -> Dict[str, Any]:
    """The session/socket/target arguments, with the own-sessions-only rule applied."""
    target: Dict[str, Any] = {k: a[k] for k in ("session", "socket", "socket_name", "target")
                              if k in a}
    name = a.get("session")
    if c.server.allow_foreign or not isinstance(name, str):
        return target
    for row in c.server.engine.list_sessions():
        own = os.path.dirname(os.path.abspath(row.socket)) == c.server.socket_dir
        if row.name == name and not own:
            raise TargetError(
                "session %r lives on %s, outside this server's socket dir %s" % (
                    name, row.socket, c.server.socket_dir),
                "the command line can reach it, or an MCP server started to allow "
                "foreign servers")
    return target


def _mcp_engine_args(c: "_McpCall", a: Dict[str, Any]) -> Dict[str, Any]:
    """The tool's arguments as the Engine method's keywords."""
    args = {p.name: a[p.name] for p in c.tool.op.params if p.engine and p.name in a}
    for param in c.tool.op.params:
        if param.kind == "duration" and isinstance(args.get(param.name), str):
            args[param.name] = parse_duration(args[param.name])
    args.update(_mcp_target(c, a))
    return args


def _mcp_create(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    if a.get("socket") and not c.server.allow_foreign:
        raise UsageError("socket is refused: this server starts sessions only in its own "
                         "socket dir", "leave socket out")
    record = c.server.engine.create_session(**_mcp_engine_args(c, a))
    out = {k: getattr(record, k) for k in ("name", "socket", "target", "pane_id", "type",
                                           "kind", "pid", "registered", "created_at")}
    out["attach"] = _attach_line(["tmux", "-S", record.socket, "attach", "-t", record.name])
    return out, None


def _mcp_list(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    rows = [r.as_dict() for r in c.server.engine.list_sessions()]
    alive = sum(1 for r in rows if r["status"] == "alive")
    return {"sessions": rows, "total": len(rows), "alive": alive,
            "dead": len(rows) - alive}, None


def _mcp_health(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    health = c.server.engine.pane_health(**_mcp_target(c, a))
    out = health.as_dict()
    out["sentence"] = health.sentence(a.get("session") or a.get("target") or "")
    return out, None


def _mcp_run(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    if a.get("code") is None and a.get("answer") is None:
        raise UsageError("give code, or answer for a program that waits for input")
    engine = c.server.engine
    r = engine.run(cancel=c.cancel, on_output=c.progress if c.token is not None else None,
                   **_mcp_engine_args(c, a))
    if r.cancelled:
        c.cancelled_run(a.get("session"))
    where = _mcp_target(c, a)
    return r.as_dict(), unfinished_run(engine, r, a.get("timeout", RUN_TIMEOUT), where)


def _mcp_send(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    if a.get("text") is None and not a.get("keys"):
        raise UsageError("nothing to send: give text, keys, or both",
                         'text is typed as it is; keys are tmux key names: ["C-c"], '
                         '["Up", "Enter"]')
    engine = c.server.engine
    r = engine.send(cancel=c.cancel, **_mcp_engine_args(c, a))
    problem = r.wait and unfound(engine, r.wait, a.get("wait"), a.get("stable", 0.0),
                                 a.get("timeout", SEND_TIMEOUT), _mcp_target(c, a))
    return r.as_dict(), problem or None


def _mcp_wait(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    engine = c.server.engine
    args = _mcp_engine_args(c, a)
    r = engine.wait_for_text(cancel=c.cancel, **args)
    return r.as_dict(), unfound(engine, r, a.get("pattern"), args.get("stable", 0.0),
                                a.get("timeout", WAIT_TIMEOUT), _mcp_target(c, a))


def _mcp_tail_lines(chunks: Iterator[str], lines: Optional[int]) -> Tuple[str, int]:
    """The last ``lines`` lines (None: all) of streamed text, and how many there were."""
    import collections
    keep: collections.deque[str] = collections.deque(maxlen=lines)
    carry, total = "", 0
    for chunk in chunks:
        parts = (carry + chunk).split("\n")
        carry = parts.pop()
        keep.extend(parts)
        total += len(parts)
    if carry:
        keep.append(carry)
        total += 1
    return "\n".join(keep) + ("\n" if keep and not carry else ""), total


def _mcp_capture(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    lines = None if a.get("all") else a.get("lines", CAPTURE_LINES)
    if lines is not None:
        _at_least(lines, 1, "lines")
    target = _mcp_target(c, a)
    if a.get("source", "screen") == "transcript":
        text, total = _mcp_tail_lines(c.server.engine.read_transcript(**target), lines)
        screen: Dict[str, Any] = {}
    else:
        shot = c.server.engine.capture_screen(lines=lines or CAPTURE_LINES, all=lines is None,
                                              ansi=a.get("ansi", False), **target)
        text, total = shot.text, shot.text.count("\n")
        screen = {k: getattr(shot, k) for k in ("alternate_screen", "cursor_x", "cursor_y",
                                                "current_command")}
    shown = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    clipped = len(text) > MCP_CAPTURE_MAX
    if clipped:
        text = text[-MCP_CAPTURE_MAX:]
    return dict({"text": text, "source": a.get("source", "screen"), "lines": shown,
                 "truncated": clipped or total > shown}, **screen), None


def _mcp_kill(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    r = c.server.engine.kill_session(**_mcp_engine_args(c, a))
    return r.as_dict(), nothing_killed(r)


def _mcp_cleanup(c: "_McpCall", a: Dict[str, Any]) -> "Outcome":
    removed = c.server.engine.cleanup_sessions(**_mcp_engine_args(c, a))
    return {"removed": [item.as_dict() for item in removed],
            "dry_run": a.get("dry_run", False)}, None


# -- the tools, in MCP's words ---------------------------------------------------

def _T(kind: Any, description: str, **extra: Any) -> Dict[str, Any]:
    return dict({"type": kind, "description": description}, **extra)


_INT_OR_NULL = ["integer", "null"]
MCP_SESSION_OUT = {
    "name": _T("string", "session name"), "socket": _T("string", "tmux socket path"),
    "target": _T("string", "tmux target pane"), "status": _T("string", "alive, dead, missing, "
                                                              "zombie or server"),
    "pid": _T(_INT_OR_NULL, "pid of the pane's program"),
    "created_at": _T("string", "UTC creation time"),
    "last_active": _T("string", "UTC time of the last send or run"),
    "type": _T("string", "shell, python-repl, debugger or command"),
    "kind": _T("string", "the profile: %s" % ", ".join(
        n for n, p in PROFILES.items() if not p.nested)),
    "alternate_screen": _T(["boolean", "null"], "a full-screen program is showing"),
    "cursor_x": _T(_INT_OR_NULL, ""), "cursor_y": _T(_INT_OR_NULL, ""),
    "current_command": _T(["string", "null"], "what runs in the pane now")}
MCP_WAIT_OUT = {
    "found": _T("boolean", "the pattern appeared"), "match": _T("string", "the matched text"),
    "reason": _T("string", "why it stopped without a match: timeout, dead, server, missing, "
                 "cancelled, refused (not_pattern appeared), input (the program waits "
                 "for input), prompt (it is back at its prompt); empty when found"),
    "exit_status": _T(_INT_OR_NULL, "exit status of a program that ended while waiting"),
    "tail": _T("string", "the last lines of output"),
    "elapsed": _T("number", "seconds waited"),
    "waiting_for_input": _T("boolean", "the program waits for input (reason input, prompt)"),
    "question": _T("string", "the line it asks on"),
    "echo_off": _T("boolean", "the terminal does not echo: a password is asked for")}

MCP_TOOLS: Tuple[McpTool, ...] = (
    McpTool(
        operation("create_session"), "Start a program in a new tmux session",
        "Start a shell (bash, zsh, fish), a Python or IPython REPL, gdb, node, psql, sqlite or "
        "any command in a new detached "
        "tmux session (200x50, its output kept in a transcript) and register it. Returns once "
        "the program shows its first prompt, so run/send right after is safe. Use the "
        "session name with every other tool; the attach command lets a person watch.",
        {"name": _T("string", ""), "socket": _T("string", ""), "target": _T("string", ""),
         "pane_id": _T("string", ""), "type": _T("string", ""),
         "kind": _T("string", "the profile the session runs"),
         "pid": _T(_INT_OR_NULL, ""), "registered": _T("boolean", ""),
         "created_at": _T("string", ""),
         "attach": _T("string", "shell command a person runs to watch the session")},
        ("name", "socket", "target", "attach"), _mcp_create, open_world=True),
    McpTool(
        operation("list_sessions"), "List sessions",
        "List the registered sessions with their status (alive, dead, missing, zombie, server "
        "= no tmux server), pid, type and times. Start here to find a session name.",
        {"sessions": _T("array", "one entry per session", items={
            "type": "object", "properties": MCP_SESSION_OUT}),
         "total": _T("integer", ""), "alive": _T("integer", ""), "dead": _T("integer", "")},
        ("sessions", "total", "alive", "dead"), _mcp_list, idempotent=True),
    McpTool(
        operation("session_health"), "Check a session's health",
        "Report whether a session's pane is healthy (its program running), dead (exited: "
        "exit_status says how), missing, zombie, or server_not_running, with a one-line "
        "sentence. Check this when run or send report a problem.",
        {"status": _T("string", "healthy, dead, missing, zombie or server_not_running"),
         "server_running": _T("boolean", ""), "session_exists": _T("boolean", ""),
         "pane_exists": _T("boolean", ""), "pane_dead": _T("boolean", ""),
         "pid": _T(_INT_OR_NULL, ""), "process_running": _T("boolean", ""),
         "exit_status": _T(_INT_OR_NULL, ""), "exit_signal": _T(_INT_OR_NULL, ""),
         "alternate_screen": _T(["boolean", "null"], "a full-screen program is showing"),
         "cursor_x": _T(_INT_OR_NULL, ""), "cursor_y": _T(_INT_OR_NULL, ""),
         "current_command": _T(["string", "null"], "what runs in the pane now"),
         "sentence": _T("string", "the status in words")},
        ("status", "sentence"), _mcp_health, idempotent=True),
    McpTool(
        operation("run"), "Run code and get its exact output",
        "Send code or a command to the session's program, wait until it is back at its "
        "prompt, and return exactly what it printed (no echo, no prompt) with its exit "
        "status: the shell command's own, or for Python, node, psql, sqlite 1 if it failed, "
        "else 0. Multi-line code runs as one unit. When the program stops to wait for input "
        "(a question, a password, an unfinished statement, pdb after breakpoint()) the "
        "result says waiting_for_input with the question: run again with answer (the text "
        "to type) to continue the same command. On timeout the program keeps running: read "
        "the output so far, then wait longer (wait_for_text) or interrupt it (send keys "
        "[\"C-c\"]).",
        {"output": _T("string", "exactly what the program printed"),
         "exit_status": _T(_INT_OR_NULL, "exit status; null when the program does not say"),
         "timed_out": _T("boolean", "no prompt within timeout (program still running)"),
         "elapsed": _T("number", "seconds"),
         "pane_died": _T("boolean", "the program exited"),
         "truncated": _T("boolean", "output was cut to its last MiB"),
         "server_gone": _T("boolean", "the tmux server went away"),
         "waiting_for_input": _T("boolean", "the program waits for input it was not given"),
         "prompt": _T("string", "where it waits: input (a question), continuation (an "
                      "unfinished statement) or a debugger (pdb)"),
         "question": _T("string", "the line it asks on, when it waits at a question"),
         "echo_off": _T("boolean", "the terminal does not echo: a password is asked for"),
         "cancelled": _T("boolean", "the request was cancelled")},
        ("output", "exit_status", "timed_out"), _mcp_run, open_world=True),
    McpTool(
        operation("send"), "Type text or press keys",
        "Type text exactly as given (Enter follows unless enter is false) and/or press tmux "
        "keys: [\"C-c\"] interrupts, [\"Up\", \"Enter\"], [\"Escape\"]. For answering a "
        "prompt, driving a pager, an editor or an agent TUI, or programs run cannot follow. "
        "In a full-screen program (alternate screen: vim, less, htop) text is typed as keys, "
        "so ':wq' saves in vim; elsewhere it is pasted, and into a TUI that asked for "
        "bracketed paste Enter is pressed once the text shows, again if it was swallowed. "
        "With wait, returns once that pattern appears in output after this send (on the "
        "screen for full-screen programs).",
        dict({"session": _T("string", ""), "pane_id": _T("string", ""),
              "sent": _T("boolean", ""), "bytes": _T("integer", "bytes of text typed"),
              "keys": _T("array", "", items={"type": "string"}),
              "typed": _T("boolean", "the text went in as keys, not as a paste"),
              "enter_presses": _T("integer", "a checked submit: Enter presses it took")},
             **MCP_WAIT_OUT),
        ("sent",), _mcp_send, open_world=True),
    McpTool(
        operation("wait_for_text"), "Wait for text in new output",
        "Wait until a regex (or fixed string) appears in the output the program wrote after "
        "the last send (for a full-screen program: on its screen), and/or with stable until "
        "the screen has held still that long; returns at once if the program exits, waits "
        "for input, or not_pattern appears. whole_pane searches the screen and history "
        "instead.",
        MCP_WAIT_OUT, ("found",), _mcp_wait, idempotent=True),
    McpTool(
        operation("capture"), "Read the screen or transcript",
        "Read the session's screen (wrapped lines joined; works on a dead pane) or, with "
        "source transcript, everything the program wrote since create, even what scrolled "
        "away. Returns the last lines (default 200), or all (capped at 1 MiB).",
        {"text": _T("string", ""), "source": _T("string", ""),
         "lines": _T("integer", "lines returned"),
         "truncated": _T("boolean", "older lines were left out"),
         "alternate_screen": _T("boolean", "a full-screen program drew the screen"),
         "cursor_x": _T("integer", "cursor column"),
         "cursor_y": _T("integer", "cursor row on the visible screen"),
         "current_command": _T("string", "what runs in the pane now")},
        ("text", "lines", "truncated"), _mcp_capture, idempotent=True),
    McpTool(
        operation("kill_session"), "Kill a session",
        "Kill the session's tmux session (its program ends) and remove it from the registry, "
        "as one operation. dry_run says what would happen.",
        {"name": _T("string", ""), "killed": _T("boolean", ""),
         "deregistered": _T("boolean", ""), "registered": _T("boolean", ""),
         "dry_run": _T("boolean", ""), "socket": _T("string", ""),
         "status": _T("string", "status before the kill")},
        ("name", "killed", "deregistered"), _mcp_kill, idempotent=True),
    McpTool(
        operation("cleanup_sessions"), "Remove dead or old sessions",
        "Remove sessions that are not healthy (dead, missing, zombie, no server) from the "
        "registry. all, older_than and idle widen the selection; selected sessions still "
        "alive are killed. dry_run lists what would go.",
        {"removed": _T("array", "one entry per session removed", items={
            "type": "object", "properties": {"name": _T("string", ""),
                                             "reason": _T("string", ""),
                                             "killed": _T("boolean", "")}}),
         "dry_run": _T("boolean", "")},
        ("removed", "dry_run"), _mcp_cleanup, idempotent=True),
)


# -- arguments ----------------------------------------------------------------

_MCP_TYPE_WORDS = {"string": "a string", "boolean": "true or false", "integer": "an integer",
                   "number": "a number", "array": "a list of strings",
                   "object": "an object of strings"}


def _mcp_is(kind: str, value: Any) -> bool:
    """Whether a JSON value is of a schema type (a number must be finite)."""
    if kind == "number":
        try:
            return not isinstance(value, bool) and -1e300 < float(value) < 1e300
        except (TypeError, ValueError, OverflowError):
            return False
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 62
    if kind == "array":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == "object":
        return isinstance(value, dict) and all(isinstance(x, str) for x in value.values())
    return isinstance(value, {"string": str, "boolean": bool}[kind])


def _mcp_check_value(tool: str, key: str, schema: Dict[str, Any], value: Any) -> None:
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if not any(_mcp_is(kind, value) for kind in kinds):
        raise UsageError("%s: argument %s must be %s, not %s" % (
            tool, key, " or ".join(_MCP_TYPE_WORDS[k] for k in kinds),
            json.dumps(value)[:60]), schema["description"])
    texts = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else (
        list(value.values()) + list(value) if isinstance(value, dict) else [])
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no terminal can take it
            raise UsageError("%s: argument %s holds text that is not Unicode (a lone "
                             "surrogate, \\u%04x)" % (tool, key, ord(text[next(
                                 i for i, ch in enumerate(text) if 0xD800 <= ord(ch) < 0xE000)])))
    if "enum" in schema and value not in schema["enum"]:
        raise UsageError("%s: argument %s must be one of %s, not %r" % (
            tool, key, ", ".join(schema["enum"]), value), schema["description"])
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if low is not None and (value < low or ("exclusiveMinimum" in schema and value == low)):
        raise UsageError("%s: argument %s must be %s %s, not %r" % (
            tool, key, "more than" if "exclusiveMinimum" in schema else "at least", low,
            value), schema["description"])


def mcp_check_args(tool: McpTool, args: Dict[str, Any], allow_foreign: bool,
                   hosts: Sequence[str] = ()) -> Dict[str, Any]:
    """The arguments checked against the tool's input schema (nulls taken as absent)."""
    props = tool.properties(allow_foreign, hosts)
    args = {k: v for k, v in args.items() if v is not None}
    for key in args:
        if key == "host" and not hosts:
            raise UsageError("%s: argument host is refused: this server reaches no other "
                             "machine" % tool.name, "a server started with mcp --host NAME "
                             "reaches NAME")
        if key in MCP_FOREIGN_ARGS and key not in props:
            raise UsageError(
                "%s: argument %s is refused: this server acts only on sessions in its own "
                "registry and socket dir" % (tool.name, key),
                "name the session (list_sessions has them)")
        if key not in props:
            raise UsageError("%s: unknown argument %r" % (tool.name, key),
                             "it takes: %s" % (", ".join(sorted(props)) or "no arguments"))
    missing = [k for k in tool.required_args(allow_foreign) if k not in args]
    if missing:
        raise UsageError("%s: missing argument %s" % (tool.name, ", ".join(missing)),
                         props[missing[0]]["description"])
    for key, value in args.items():
        _mcp_check_value(tool.name, key, props[key], value)
    return args


# -- one tools/call -------------------------------------------------------------

if TYPE_CHECKING:  # None: send nothing (cancelled)
    Reply = Callable[[Optional[Dict[str, Any]]], None]


class _McpCall:
    """A tools/call in flight: its thread, cancel event and progress token."""

    def __init__(self, server: "_McpServer", rid: Any, tool: McpTool, args: Dict[str, Any],
                 version: str, token: Any, reply: Reply) -> None:
        self.server, self.rid, self.tool, self.args = server, rid, tool, args
        self.version, self.token, self.reply = version, token, reply
        self.cancel = threading.Event()
        self.cancelled = False  # guarded by server.lock, as is done
        self.done = False
        self.sent = 0
        self.last = ""

    def work(self) -> None:
        try:
            response = self.server.result(self.rid, self.tool_result(), self.version)
        except Exception as e:  # a bug, not a user's mistake: say so, keep serving
            import traceback
            traceback.print_exc(file=sys.stderr)
            response = _mcp_rpc_error(self.rid, MCP_INTERNAL_ERROR, "Internal error: %s: %s"
                                      % (type(e).__name__, e))
        self.server.finish(self, response)

    def tool_result(self) -> Dict[str, Any]:
        try:
            args = mcp_check_args(self.tool, self.args, self.server.allow_foreign,
                                  self.server.hosts)
            host = args.pop("host", "")
            if host:
                return self.elsewhere(host, args)
            structured, problem = self.tool.call(self, args)
        except TmuxsessError as e:
            return self.content([_mcp_error_text(e, self.server.host_name)], None, True)
        texts = [_mcp_json_text(structured)] + (
            [_mcp_error_text(problem, self.server.host_name)] if problem else [])
        return self.content(texts, structured, problem is not None)

    def elsewhere(self, host: str, args: Dict[str, Any]) -> Dict[str, Any]:
        """The call answered on ``host`` by an MCP server of this same file,
        started there for it alone (``--host HOST mcp --finish``): its result,
        as it is; its progress, passed on. A cancel interrupts it there."""
        call: Dict[str, Any] = {"name": self.tool.name, "arguments": args}
        if self.token is not None:
            call["_meta"] = {"progressToken": 1}
        asks = [{"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": self.version, "capabilities": {},
                    "clientInfo": {"name": "tmuxsess", "version": __version__}}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}]
        answer: Any = None

        def heard(line: bytes) -> None:
            nonlocal answer
            with contextlib.suppress(ValueError, AttributeError):
                msg = json.loads(line)
                if msg.get("method") == "notifications/progress":
                    self.progress(str(msg.get("params", {}).get("message", "")))
                elif msg.get("id") == 1:
                    answer = msg
        error = self.server.engine.host.there(
            host, ["mcp", "--finish", "--host-name", host] + (
                ["--allow-foreign"] if self.server.allow_foreign else []),
            "".join(json.dumps(m) + "\n" for m in asks).encode(), self.cancel, heard)
        if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
            return dict(answer["result"])
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            raise _McpRpcError(answer["error"].get("code", MCP_INTERNAL_ERROR),
                               str(answer["error"].get("message", "")))
        return self.content([error or "tmuxsess: error: no answer from %s" % host], None, True)

    def content(self, texts: List[str], structured: Optional[Mapping[str, Any]],
                is_error: bool) -> Dict[str, Any]:
        # A cancelled call's reply is never sent: a notice stays for the next call.
        notice = "" if self.cancelled else self.server.take_notice(self.args.get("session"))
        items = [{"type": "text", "text": t} for t in ([notice] if notice else []) + texts]
        result: Dict[str, Any] = {"content": items, "isError": is_error}
        if structured is not None and self.version not in MCP_NO_STRUCTURED:
            result["structuredContent"] = dict(structured)
        return result

    def progress(self, text: str) -> None:
        """on_output: a progress notification with the output so far (when it changed)."""
        if text == self.last:
            return
        with self.server.lock:
            if self.done or self.cancelled:
                return
            self.sent += 1
            self.last = text
        tail = text if len(text) <= MCP_PROGRESS_TAIL else "..." + text[-MCP_PROGRESS_TAIL:]
        self.server.write({"jsonrpc": "2.0", "method": "notifications/progress",
                           "params": {"progressToken": self.token, "progress": self.sent,
                                      "message": tail}})

    def cancelled_run(self, session: Optional[str]) -> None:
        """Say what became of the program: the spec forbids a reply to a cancelled request."""
        label = session or "the session"
        notice = ("notice: a run on %s was cancelled while its program was still busy; the "
                  "program goes on with it (interrupt it: send keys [\"C-c\"])" % label)
        self.server.log("request %s: %s" % (json.dumps(self.rid), notice))
        if session:
            with self.server.lock:
                self.server.notices[session] = notice


# -- the server -----------------------------------------------------------------

def _mcp_rpc_error(rid: Any, code: int, message: str, data: Any = None) -> Dict[str, Any]:
    error: Dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": error}


def _mcp_valid_id(rid: Any) -> bool:
    return isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool))


def _mcp_id_key(rid: Any) -> Tuple[str, Any]:
    return (type(rid).__name__, rid)  # 1 and "1" are different requests


def _mcp_problem(msg: Dict[str, Any]) -> str:
    """Why a JSON object is not a valid JSON-RPC request or notification ("" if it is)."""
    if msg.get("jsonrpc") != "2.0":
        return 'Invalid Request: "jsonrpc" must be "2.0"'
    if not isinstance(msg.get("method"), str):
        return 'Invalid Request: "method" must be a string'
    if "id" in msg and not _mcp_valid_id(msg["id"]):
        return 'Invalid Request: "id" must be a string or an integer'
    return ""


class _McpBatch:
    """Collects the responses to one JSON-RPC batch; writes them as one array."""

    def __init__(self, server: "_McpServer") -> None:
        self.server = server
        self.lock = threading.Lock()
        self.pending = 1  # the loop reading the batch holds one share until it is done
        self.replies: List[Dict[str, Any]] = []

    def expect(self) -> None:
        with self.lock:
            self.pending += 1

    def reply(self, msg: Optional[Dict[str, Any]]) -> None:
        with self.lock:
            if msg is not None:
                self.replies.append(msg)
            self.pending -= 1
            done = self.pending == 0 and bool(self.replies)
        if done:
            self.server.write(self.replies)


class _McpServer:
    """State of one stdio connection: the legacy version, calls in flight, output lock."""

    def __init__(self, engine: "Engine", stdin: "IO[Any]", stdout: "IO[Any]",
                 allow_foreign: bool, read_only: bool, page_size: int,
                 hosts: Sequence[str] = (), finish: bool = False) -> None:
        self.engine, self.stdin, self.stdout = engine, stdin, stdout
        self.allow_foreign, self.read_only, self.page_size = allow_foreign, read_only, page_size
        self.hosts = tuple(hosts)  # the other machines it reaches: a call names one
        self.instructions = MCP_INSTRUCTIONS + (
            " Every tool takes host: %s (other machines, reached through ssh); without it, "
            "a tool acts on this one." % ", ".join(self.hosts) if self.hosts else "")
        self.host_name = ""  # what its client calls this machine (in the calls it suggests)
        self.answer_all = finish  # at the end of input, answer what is in flight
        self.socket_dir = os.path.abspath(engine.settings.socket_dir)
        self.tools = [t for t in MCP_TOOLS if t.read_only or not read_only]
        self.version = ""  # negotiated by initialize (legacy era)
        self.lock = threading.Lock()  # calls, and each call's done/cancelled
        self.out_lock = threading.Lock()
        self.calls: Dict[Tuple[str, Any], _McpCall] = {}
        self.threads: List[threading.Thread] = []
        self.notices: Dict[str, str] = {}
        self.broken = False
        self.info = {"name": "tmuxsess", "version": __version__}

    # output
    def write(self, msg: Any) -> None:
        if msg is None:
            return
        try:
            data = json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n"
        except (TypeError, ValueError) as e:  # a result that is not JSON: a bug
            rid = msg.get("id") if isinstance(msg, dict) else None
            data = json.dumps(_mcp_rpc_error(rid, MCP_INTERNAL_ERROR, "Internal error: "
                                             "unserializable result: %s" % e)) + "\n"
        with self.out_lock:
            if self.broken:
                return
            try:
                self.stdout.write(data if isinstance(self.stdout, io.TextIOBase)
                                  else data.encode("ascii"))
                self.stdout.flush()
            except (OSError, ValueError):
                self.broken = True  # the client is gone; stdin will end too

    def log(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            print("tmuxsess mcp: " + text, file=sys.stderr, flush=True)

    def result(self, rid: Any, result: Dict[str, Any], version: str) -> Dict[str, Any]:
        if version in MCP_MODERN_VERSIONS:
            result = dict(result, resultType="complete")
            result["_meta"] = dict(result.get("_meta") or {},
                                   **{MCP_KEY + "serverInfo": self.info})
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    # input
    def serve(self) -> int:
        while True:
            line = self.stdin.readline()
            if not line:
                break
            if line.strip():
                self.handle_line(line)
        self.shutdown()
        return 0

    def handle_line(self, line: Union[str, bytes]) -> None:
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            self.write(_mcp_rpc_error(None, MCP_PARSE_ERROR, "Parse error: %s" % e))
            return
        try:
            if isinstance(msg, list):
                self.handle_batch(msg)
            else:
                self.handle_message(msg, self.write)
        except Exception as e:  # never let one message end the server
            import traceback
            traceback.print_exc(file=sys.stderr)
            rid = msg.get("id") if isinstance(msg, dict) and _mcp_valid_id(msg.get("id")) else None
            self.write(_mcp_rpc_error(rid, MCP_INTERNAL_ERROR, "Internal error: %s" % e))

    def handle_batch(self, msgs: List[Any]) -> None:
        if not msgs:
            self.write(_mcp_rpc_error(None, MCP_INVALID_REQUEST, "Invalid Request: empty batch"))
            return
        if self.version not in MCP_BATCH_VERSIONS:
            self.write(_mcp_rpc_error(None, MCP_INVALID_REQUEST, "Invalid Request: JSON-RPC "
                                      "batches are not part of MCP %s (only of %s)" % (
                                          self.version or "before initialize",
                                          ", ".join(MCP_BATCH_VERSIONS))))
            return
        batch = _McpBatch(self)
        for msg in msgs:
            batch.expect()
            if not self.handle_message(msg, batch.reply, in_batch=True):
                batch.reply(None)  # a notification: nothing to wait for
        batch.reply(None)

    def handle_message(self, msg: Any, reply: Reply, in_batch: bool = False) -> bool:
        """Handle one message; True if a reply (now or later) goes to ``reply``."""
        if not isinstance(msg, dict):
            reply(_mcp_rpc_error(None, MCP_INVALID_REQUEST,
                                 "Invalid Request: a message is a JSON object"))
            return True
        if "method" not in msg and ("result" in msg or "error" in msg):
            return False  # a response: this server sends no requests, so it ignores them
        problem = _mcp_problem(msg)
        if problem:
            rid = msg.get("id")
            reply(_mcp_rpc_error(rid if _mcp_valid_id(rid) else None, MCP_INVALID_REQUEST,
                                 problem))
            return True
        params = msg.get("params", {})
        if "id" not in msg:
            self.notify(msg["method"], params)
            return False
        self.request(msg["id"], msg["method"], params, reply, in_batch)
        return True

    def notify(self, method: str, params: Any) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            self.cancel(params.get("requestId"), params.get("reason"))
        # notifications/initialized needs nothing; unknown notifications are ignored

    def cancel(self, rid: Any, reason: Any) -> None:
        if not _mcp_valid_id(rid):
            return
        with self.lock:
            call = self.calls.get(_mcp_id_key(rid))
            if call is None or call.done:
                return  # unknown or finished: the spec says ignore it
            call.cancelled = True
        call.cancel.set()
        self.log("request %s (%s) cancelled%s" % (json.dumps(rid), call.tool.name,
                                                  ": %s" % reason if reason else ""))

    def request(self, rid: Any, method: str, params: Any, reply: Reply, in_batch: bool) -> None:
        handlers: Dict[str, Callable[[Any, Dict[str, Any], Reply], None]] = {
            "initialize": self.initialize, "ping": self.ping, "server/discover": self.discover,
            "tools/list": self.list_tools, "tools/call": self.call_tool}
        handler = handlers.get(method)
        try:
            if handler is None:
                raise _McpRpcError(MCP_METHOD_NOT_FOUND, "Method not found: %s" % method)
            if not isinstance(params, dict):
                raise _McpRpcError(MCP_INVALID_PARAMS, "Invalid params: params must be an object")
            if in_batch and method == "initialize":
                raise _McpRpcError(MCP_INVALID_REQUEST, "Invalid Request: initialize must not "
                                   "be part of a batch")
            handler(rid, params, reply)
        except _McpRpcError as e:
            reply(_mcp_rpc_error(rid, e.code, e.message, e.data))

    def era(self, params: Dict[str, Any], required: bool = True) -> str:
        """The protocol version of this request: from its _meta (2026-07-28 and later),
        else the one initialize negotiated."""
        meta = params.get("_meta")
        version = meta.get(MCP_KEY + "protocolVersion") if isinstance(meta, dict) else None
        if version is None or (version == self.version and version):
            if self.version or not required:
                return self.version
            raise _McpRpcError(MCP_INVALID_REQUEST, "Invalid Request: not initialized: send "
                               "initialize first, or (protocol %s) give _meta %sprotocolVersion"
                               % (MCP_MODERN_VERSIONS[-1], MCP_KEY))
        if version not in MCP_MODERN_VERSIONS:
            raise _McpRpcError(MCP_UNSUPPORTED_VERSION, "Unsupported protocol version",
                               {"supported": list(MCP_VERSIONS), "requested": version})
        if not isinstance(meta, dict) or not isinstance(
                meta.get(MCP_KEY + "clientCapabilities"), dict):
            raise _McpRpcError(MCP_INVALID_PARAMS, "Invalid params: _meta %sclientCapabilities "
                               "(an object) is required" % MCP_KEY)
        return str(version)

    # methods
    def initialize(self, rid: Any, params: Dict[str, Any], reply: Reply) -> None:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise _McpRpcError(MCP_INVALID_PARAMS, "Invalid params: initialize needs "
                               "protocolVersion (a string)")
        if self.version:
            raise _McpRpcError(MCP_INVALID_REQUEST, "Invalid Request: already initialized "
                               "(protocol %s)" % self.version)
        supported = requested in MCP_HANDSHAKE_VERSIONS
        self.version = requested if supported else MCP_HANDSHAKE_VERSIONS[-1]
        self.log("initialized: protocol %s%s" % (
            self.version, "" if supported else " (the client asked for %s)" % requested))
        reply(self.result(rid, {"protocolVersion": self.version,
                                "capabilities": {"tools": {"listChanged": False}},
                                "serverInfo": self.info, "instructions": self.instructions}, ""))

    def ping(self, rid: Any, params: Dict[str, Any], reply: Reply) -> None:
        reply(self.result(rid, {}, self.era(params, required=False)))

    def discover(self, rid: Any, params: Dict[str, Any], reply: Reply) -> None:
        version = self.era(params, required=False) or MCP_MODERN_VERSIONS[-1]
        reply(self.result(rid, {"supportedVersions": list(MCP_VERSIONS),
                                "capabilities": {"tools": {"listChanged": False}},
                                "instructions": self.instructions, "ttlMs": 0,
                                "cacheScope": "private"},
                          version if version in MCP_MODERN_VERSIONS else MCP_MODERN_VERSIONS[-1]))

    def list_tools(self, rid: Any, params: Dict[str, Any], reply: Reply) -> None:
        version = self.era(params)
        cursor = params.get("cursor")
        start = 0
        if cursor is not None:
            text = cursor if isinstance(cursor, str) else ""
            digits = text[len("tools:"):]
            if not text.startswith("tools:") or not digits.isdigit():
                raise _McpRpcError(MCP_INVALID_PARAMS, "Invalid params: unknown cursor %s"
                                   % json.dumps(cursor)[:60])
            start = int(digits)
        page = self.tools[start:start + self.page_size]
        result: Dict[str, Any] = {"tools": [
            t.definition(version, self.allow_foreign, self.hosts) for t in page]}
        if start + self.page_size < len(self.tools):
            result["nextCursor"] = "tools:%d" % (start + self.page_size)
        if version in MCP_MODERN_VERSIONS:
            result.update(ttlMs=0, cacheScope="private")
        reply(self.result(rid, result, version))

    def call_tool(self, rid: Any, params: Dict[str, Any], reply: Reply) -> None:
        version = self.era(params)
        name, args = params.get("name"), params.get("arguments")
        tool = next((t for t in self.tools if t.name == name), None)
        if tool is None:
            why = (" (this server runs with --read-only)" if any(
                t.name == name for t in MCP_TOOLS) else "")
            raise _McpRpcError(MCP_INVALID_PARAMS, "Unknown tool: %s%s; tools: %s" % (
                name, why, ", ".join(t.name for t in self.tools)))
        if not isinstance(args, (dict, type(None))):
            raise _McpRpcError(MCP_INVALID_PARAMS, "Invalid params: arguments must be an object")
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        call = _McpCall(self, rid, tool, args or {}, version,
                        token if _mcp_valid_id(token) else None, reply)
        with self.lock:
            if _mcp_id_key(rid) in self.calls:
                raise _McpRpcError(MCP_INVALID_REQUEST, "Invalid Request: id %s is already "
                                   "in use by a request in flight" % json.dumps(rid))
            self.calls[_mcp_id_key(rid)] = call
            self.threads = [t for t in self.threads if t.is_alive()]
        thread = threading.Thread(target=call.work, name="mcp-%s" % tool.name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def finish(self, call: _McpCall, response: Dict[str, Any]) -> None:
        with self.lock:
            self.calls.pop(_mcp_id_key(call.rid), None)
            call.done = True
            cancelled = call.cancelled
        call.reply(None if cancelled else response)

    def take_notice(self, session: Any) -> str:
        with self.lock:
            return self.notices.pop(session, "") if isinstance(session, str) else ""

    def shutdown(self, grace: float = 3.0) -> None:
        """End of input: cancel what is in flight, give it a moment, send nothing
        more (with ``finish``: answer it all first)."""
        with self.lock:
            calls: List[_McpCall] = [] if self.answer_all else list(self.calls.values())
            for call in calls:
                call.cancelled = True
            threads = list(self.threads)
        if self.answer_all:
            for thread in threads:
                thread.join()
        for call in calls:
            call.cancel.set()
        deadline = time.monotonic() + grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if calls:
            self.log("input closed: cancelled %d request(s) in flight" % len(calls))


def serve_mcp(engine: "Engine", stdin: "IO[Any]", stdout: "IO[Any]",
              allow_foreign: bool = False, read_only: bool = False, page_size: int = 100,
              hosts: Sequence[str] = (), finish: bool = False, host_name: str = "") -> int:
    """Serve MCP on ``stdin``/``stdout`` (binary or text streams) until end of input.

    Requests are answered concurrently (a thread per tools/call); replies are
    written whole, one line each. Returns 0 once input ends (with ``finish``,
    once every request is answered). ``hosts``: the other machines its tools
    reach (``host``); ``host_name``: what its client calls this machine.
    """
    server = _McpServer(engine, stdin, stdout, allow_foreign, read_only, max(1, page_size),
                        hosts, finish)
    server.host_name = host_name
    return server.serve()


MCP_HELP = ("Serve tmuxsess as an MCP server on stdin/stdout (JSON-RPC 2.0, one message a "
            "line) until stdin closes.")




# ---------------------------------------------------------------------------
# Front end: the command line
# ---------------------------------------------------------------------------

# Exit codes per subcommand for each kind of failure; "lock" is 75 everywhere.
EXIT_CODES: Dict[str, Dict[str, int]] = {
    "create-session": {"usage": 1, "taken": 2, "tmux": 3, "no-server": 3,
                       "not-ready": 3, "file": 3, "registry": 4},
    "safe-send": {"send": 1, "tmux": 1, "file": 1, "timeout": 2, "unhealthy": 3,
                  "missing": 3, "usage": 4, "target": 4, "registry": 4, "no-server": 3},
    "pane-health": {},
    "kill-session": {"usage": 3, "target": 2, "missing": 2, "tmux": 2, "registry": 2},
    "run": {"dead": 125, "busy": 126, "usage": 126, "target": 126, "missing": 126,
            "unhealthy": 126,
            "registry": 126, "tmux": 126, "send": 126, "file": 126, "no-server": 125},
}
# The program waits for input (a question, an unfinished statement, a debugger).
RUN_WAITING, SEND_WAITING, WAIT_WAITING = 123, 5, 2
# The --not pattern appeared: the wait failed early.
SEND_REFUSED, WAIT_REFUSED = 6, 3

OVERVIEW = """\
usage: tmuxsess.py COMMAND [options]   (tmuxsess.py COMMAND --help for more)

Drive interactive terminal programs in tmux, exactly.

pre-check   list-sessions (list, ls)    registered sessions and their status
            find-sessions (find)        tmux sessions on a socket, registered or not
create      create-session (create)     start a shell, Python, gdb, node, psql, sqlite...
active use  run                         send code, print exactly its output
            safe-send (send)            send text or keys; -w waits for output
            wait-for-text (wait)        wait for a pattern in new output
            capture                     read the pane (or --transcript: everything)
            attach                      watch it live in tmux
health      pane-health (health)        healthy, dead, missing, zombie, no server
cleanup     kill-session (kill)         kill one session and deregister it
            cleanup-sessions (cleanup)  remove dead (or old, idle, all) sessions
recovery    repair                      rebuild a corrupt registry from tmux
for agents  skill                       print (or --write) a SKILL.md for this tool
            mcp                         serve the tool over MCP (stdio)

Example:  tmuxsess.py create -n calc --python && tmuxsess.py run -s calc -c '6*7'
"""

# What each subcommand does, in the command line's words, and examples.
CLI_HELP: Dict[str, Tuple[str, str]] = {
    "create-session": (
        "Start a program in a new detached tmux session and register it; returns once it "
        "shows its first prompt.",
        "  tmuxsess.py create -n calc --python\n"
        "  tmuxsess.py create -n build --shell -c ~/src/app -e CI=1\n"
        "  tmuxsess.py create -n db --kind psql --cmd 'psql -h /run/pg mydb'\n"),
    "list-sessions": (
        "List registered sessions with their status (one tmux query per socket).",
        "  tmuxsess.py list\n  tmuxsess.py ls --json | jq '.sessions[].name'\n"),
    "safe-send": (
        "Send text exactly as given (or keys with -k), optionally waiting for a pattern in "
        "the output that follows.",
        "  tmuxsess.py send -s calc -c 'x = 41;' -w '>>>'\n"
        "  tmuxsess.py send -s calc -k C-c\n"
        "  tmuxsess.py send -s calc -m --file block.py -w '>>> $' -T 60\n"),
    "wait-for-text": (
        "Wait for a pattern in the output since the last send (or in the whole pane); "
        "returns early if the program exits or waits for input.",
        "  tmuxsess.py wait -s calc -p '^>>> ' -T 15\n"
        "  tmuxsess.py wait -s build -F -p 'BUILD OK' -T 600\n"),
    "pane-health": (
        "Report whether a session's pane is healthy; the exit code says which.",
        "  tmuxsess.py health -s calc --format text\n"
        "  tmuxsess.py health -s calc && tmuxsess.py run -s calc -c 'go()'\n"),
    "kill-session": (
        "Kill a session's tmux session and remove its registry entry.",
        "  tmuxsess.py kill -s calc\n  tmuxsess.py kill -s calc --dry-run\n"),
    "cleanup-sessions": (
        "Remove dead, missing and zombie sessions from the registry; --all, --older-than "
        "and --idle widen the selection (alive ones are killed).",
        "  tmuxsess.py cleanup --dry-run\n  tmuxsess.py cleanup --idle 2h\n"
        "  tmuxsess.py cleanup --all\n"),
    "find-sessions": (
        "List tmux sessions on a server, registered or not.",
        "  tmuxsess.py find --all\n  tmuxsess.py find -S /tmp/my.sock -q data\n"),
    "run": (
        "Send code, wait for the prompt, print exactly the output; exit with the unit's "
        "status (shell: the command's; Python, node, psql, sqlite: 1 if it failed), 123 "
        "waiting for input, 124 timeout, 125 pane died, 126 could not run.",
        "  tmuxsess.py run -s calc -c 'sum(range(10))'\n"
        "  tmuxsess.py run -s sh -c 'make test'; echo $?\n"
        "  tmuxsess.py run -s calc --file analysis.py -T 300 --json\n"),
    "capture": (
        "Print the pane's text (works on a dead pane), or with --transcript everything the "
        "program wrote since create.",
        "  tmuxsess.py capture -s calc -n 50\n"
        "  tmuxsess.py capture -s calc --transcript > calc.log\n"),
    "repair": (
        "Move a corrupt registry aside and rebuild it from the live tmux sessions in the "
        "socket dir; a good registry is left untouched.",
        "  tmuxsess.py repair\n  tmuxsess.py repair --json\n"
        "  tmuxsess.py list || tmuxsess.py repair    # list names a corrupt file\n"),
    "attach": (
        "Attach to a session in tmux (prints the command when not on a terminal).",
        "  tmuxsess.py attach -s calc\n"
        "  tmuxsess.py attach -S /tmp/my.sock -t work    # a session it did not create\n"),
    "skill": (
        "Print a SKILL.md that teaches an agent to use this tool (or write it into a skill "
        "directory).",
        "  tmuxsess.py skill\n  tmuxsess.py skill --write ~/.claude/skills/tmux\n"
        "  tmuxsess.py skill --tool ./tools/tmuxsess.py --write .claude/skills/tmux\n"),
    "mcp": (
        "Serve tmuxsess as an MCP server on stdin/stdout (JSON-RPC 2.0, one message a line) "
        "until stdin closes.", ""),
}

# The command line's own commands, beside the operations.
SKILL_PARAMS = (
    Param("write", "path", "write DIR/SKILL.md instead of printing", ("--write",), "DIR"),
    Param("tool", "path", "how SKILL.md names the tool (default: this file's absolute "
          "path)", ("--tool",), "PATH"),
    Param("force", "flag", "replace a SKILL.md that differs", ("--force",)),
)
MCP_PARAMS = (
    Param("state_dir", "path", "registry, lock and transcripts (default: "
          "$TMUXSESS_STATE_DIR or ~/.local/state/claude-tmux)", ("--state-dir",), "DIR"),
    Param("socket_dir", "path", "tmux sockets (default: $CLAUDE_TMUX_SOCKET_DIR or "
          "$TMPDIR/claude-tmux-UID)", ("--socket-dir",), "DIR"),
    Param("allow_foreign", "flag", "also act on tmux servers outside the socket dir "
          "(socket, socket_name and target arguments)", ("--allow-foreign",)),
    Param("read_only", "flag", "offer only the tools that change nothing: list_sessions, "
          "session_health, capture, wait_for_text", ("--read-only",)),
    Param("hosts", "list", "a machine its tools reach through ssh, as --host names one "
          "(repeat): each tool then takes host", ("--host",), "HOST"),
    Param("finish", "flag", "at the end of input, answer every request first (for input "
          "that is all there: a script, or --host HOST mcp --finish)", ("--finish",)),
    Param("host_name", "text", "what the client calls this machine: the tool calls its "
          "hints suggest name it as host", ("--host-name",), "HOST"),
)


def _mcp_epilog() -> str:
    me = os.path.abspath(__file__)
    return """\
  tmuxsess.py mcp                     # its own registry and socket dir only
  tmuxsess.py mcp --read-only         # list, health, capture, wait only
  tmuxsess.py mcp --host box --host ci  # tools also take host: box or ci, through ssh
  tmuxsess.py mcp --state-dir ~/.local/state/agent --socket-dir /tmp/agent-tmux

tools: %(tools)s
protocol versions: %(versions)s
  (the initialize handshake, or 2026-07-28's per-request _meta and server/discover)

Claude Code:
  claude mcp add tmuxsess -- python3 %(me)s mcp

Claude Desktop (claude_desktop_config.json):
  {"mcpServers": {"tmuxsess": {"command": "python3",
                               "args": ["%(me)s", "mcp"]}}}

Cursor (.cursor/mcp.json in the project, or ~/.cursor/mcp.json):
  {"mcpServers": {"tmuxsess": {"command": "python3",
                               "args": ["%(me)s", "mcp"]}}}

Safety: without --allow-foreign it acts only on sessions in its own registry whose
tmux server lives in its socket dir, and refuses socket/target arguments.
Sessions outlive the server: list_sessions and the command line see them.
""" % {"me": me, "tools": ", ".join(t.name for t in MCP_TOOLS),
       "versions": ", ".join(MCP_HANDSHAKE_VERSIONS + MCP_MODERN_VERSIONS)}




SKILL_MD = """\
---
name: tmuxsess
description: Drive interactive terminal programs (Python REPL, IPython and pdb, gdb, bash, \
zsh, fish, node, psql, sqlite3, git add -p) in tmux sessions that persist between commands, \
here or on another machine. Use it when work \
needs state kept across steps (a REPL holding data, a debugger stopped at a breakpoint), \
a program that asks questions, or a long job the user wants to watch.
---

# tmuxsess: interactive programs in tmux, exactly

The tool is `{tool}`: one Python file that needs tmux and Python 3.8 or newer.
Every subcommand explains itself with `--help`.

## Rules

1. **Check before you create.** `{tool} list` shows the registered sessions and
   their health. Reuse a live session for the same work; give new work a new,
   descriptive name (`data-analysis-2026-11`, not `test`). `{tool} find --all`
   shows tmux sessions the registry does not know.
2. **Tell the user how to watch.** `create` prints `To watch it: tmux -S ...
   attach -t NAME` on stderr. Pass that line on, so the user can see what you do.
3. **Prefer `run`.** `{tool} run -s NAME -c CODE` types the code, waits until the
   program is back at its prompt and prints exactly its output: no echo, no
   prompt. Its exit status is the shell command's own, 1 if Python, node, psql or
   sqlite reported an error, 123 if the program now waits for input (an unfinished
   statement, or a debugger took over: the error says which), 124 on timeout
   (raise `-T SEC`), 125 if the program died, 126 if nothing was typed (the error
   says why). Multi-line code runs as one unit; long code goes in a file:
   `--file PATH`. Runs on one session queue up, so parallel work needs one
   session per task.
4. **Pick the profile.** `create -n NAME --kind KIND` with `shell` (default),
   `zsh`, `fish`, `python`, `ipython`, `gdb`, `node`, `psql`, `sqlite`; add
   `--cmd 'COMMAND LINE'` to run your own command under it (`--kind psql --cmd
   'psql -h HOST mydb'`). In a
   Python session `breakpoint()` stops `run` with 123 at `(Pdb)`: then
   `run -c 'p x'` inspects, `run -c c` continues.
5. **Text is literal; keys go through `-k`.** `-c` text arrives byte for byte:
   `Enter`, `C-c`, a trailing `;` or a leading `-` are just text. To press keys:
   `{tool} send -s NAME -k C-c` (interrupt), `-k Escape`, `-k Up Enter`.
   Text a terminal cannot take as data is refused (nothing typed), never mangled.
6. **A program that asks is waiting, not running.** When `run` exits 123 the
   error (and `--json`'s `question`, `echo_off`) says what it waits for:
   answer with `{tool} run -s NAME --answer TEXT`, which prints the rest of
   that command's output and exits with its status, or abandon it with
   `send -k C-c`. For a program that asks many questions (`git add -p`), use
   `{tool} send -s NAME -c ANSWER -w PATTERN` (it exits 5 at once if the program
   waits again without printing PATTERN) and read `{tool} capture -s NAME`.
7. **Never type into a busy program.** When `run` times out (124) the program is
   still working: wait for it with `{tool} wait -s NAME -p PATTERN -T SEC`, or
   interrupt it with `{tool} send -s NAME -k C-c`. After `exec bash`, `ssh` or
   `su` the prompt is not the tool's any more: give `run --prompt REGEX`.
8. **Read before you clean up.** `{tool} health -s NAME --format text` says
   healthy, dead, missing or zombie. `{tool} capture -s NAME -n 50` works on a
   dead pane, and `{tool} capture -s NAME --transcript` has everything the
   program wrote since create: save what explains a crash first.
9. **Clean up.** `{tool} kill -s NAME` when the work is done; `{tool} cleanup`
   removes dead sessions. Leave running only what the user asked to keep.
10. **Full-screen programs get keys; wait on their screen.** In a program in the
   alternate screen (vim, less, top, htop; `{tool} health -s NAME` says
   `"alternate_screen": true`) `-c TEXT` is typed as keys, so
   `send -c ':wq'` saves and quits vim; in the main screen (shells, REPLs, agent
   TUIs drawn inline) it is pasted. `--type` / `--paste` force either. `send -w`
   and `wait -p` on a full-screen program match what its screen shows now.
   `{tool} wait -s NAME --stable 3s` returns once the screen has held still
   (a TUI or agent done spinning and streaming); `--not PATTERN` fails at once
   on an error (wait exits 3, send 6). `{tool} capture -s NAME --json` adds
   `alternate_screen`, the cursor and `current_command`.

On another machine, put `--host HOST` (ssh) or `--via 'docker exec -i NAME'`
before the subcommand: the same commands run there, with the same exit codes;
69 means the machine could not be reached (the error says why).

An MCP client can use the same operations as tools instead of this command
line: `{tool} mcp` serves them on stdio (`{tool} mcp --help` has the setup for
Claude Code, Claude Desktop and Cursor).

## Example

```sh
{tool} list
{tool} create -n calc --python
{tool} run -s calc -c 'import math; print(math.factorial(20))'
{tool} run -s calc -c 'squares = [i * i for i in range(5)]
print(sum(squares))'
{tool} create -n build --shell
{tool} run -s build -c 'test -d /tmp && echo ok'
{tool} kill -s calc
{tool} kill -s build
```

## Driving an agent TUI (Claude Code, or any TUI)

A pasted prompt is submitted exactly once: Enter goes in once the text shows,
and again if the TUI swallowed it. Wait until it has settled, then read the
answer from its screen:

```sh
{tool} create -n helper --cmd 'claude'
{tool} send -s helper -c 'Explain what tmux send-keys -l does, in one line.'
{tool} wait -s helper --stable 3s -T 300 --not 'API Error'
{tool} capture -s helper -n 40
{tool} kill -s helper
```
"""


def skill(tool: Optional[str] = None) -> str:
    """A SKILL.md for an agent's skill directory, naming the tool by ``tool``.

    By default the tool is this file's absolute path: where it was vendored.
    """
    path = tool or os.path.abspath(__file__)
    return SKILL_MD.replace("{tool}", _quote(path))





def _spell(name: str, op: Optional[Operation]) -> str:
    """How the command line spells a parameter: its first flag (or switch)."""
    for where in ([op] if op is not None else []) + list(OPERATIONS):
        param = where.param(name)
        if param is not None and (param.flags or param.switches):
            return param.flags[0] if param.flags else param.switches[0][0][0]
    return name


def _words(text: str, op: Optional[Operation]) -> str:
    """Text with its {parameter} names spelled as flags."""
    return re.sub(r"\{(\w+)\}", lambda m: _spell(m.group(1), op), text)


def _command_line(action: Action, where: Dict[str, str]) -> str:
    """An action as the command to type: ``tmuxsess.py send -s calc -k C-c``."""
    op = operation(action.op)
    words = [_me(), op.short]
    args = dict(where if action.on_target else {}, **action.args)
    for name, value in args.items():
        param = op.param(name)
        if param is None:
            continue
        switch = next((s[0][-1] for s in param.switches if s[1] == value), None)
        if switch is not None:
            words.append(switch)
        elif value is True:
            words.append(max(param.flags, key=len))
        elif isinstance(value, list):
            words += [param.flags[0]] + [_quote(v) for v in value]
        elif value is not False and value is not None:
            words += [param.flags[0], str(value) if re.fullmatch("[A-Z]+", str(value))
                      else _quote(str(value))]
    return " ".join(words)


def _error(e: TmuxsessError, op: Optional[Operation] = None) -> None:
    """An error as the command line says it: one line, and a hint with commands."""
    hint = "; ".join(filter(None, [_words(e.hint, op)] + [
        "%s: %s" % (action.why, _command_line(action, e.target)) for action in e.actions]))
    print("tmuxsess: error: " + _words(e.message, op), file=sys.stderr)
    if hint:
        print("hint: " + hint, file=sys.stderr)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False,
                     default=lambda record: record.as_dict()))


def _when(text: str) -> str:
    t = _parse_time(text)
    return _ago(time.time() - t) + " ago" if t is not None else "-"


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _attach_line(argv: List[str]) -> str:
    """The command a person runs to watch a pane: tmux's, and on a far side
    (--host, --via), with what runs a terminal program there in front of it."""
    there = os.environ.get("TMUXSESS_THERE", "")
    return (there + " " if there else "") + " ".join(_quote(x) for x in argv)


def _me() -> str:
    """How the user calls the tool, for hints (on the far side: as they call it here)."""
    return os.environ.get("TMUXSESS_ME") or (
        _quote(sys.argv[0]) if sys.argv and sys.argv[0] else "tmuxsess.py")


def _where(a: argparse.Namespace) -> Dict[str, str]:
    """The target the command line named, as the engine takes it."""
    return {p.name: getattr(a, p.name) for p in TARGET_PARAMS
            if getattr(a, p.name, None) is not None}


def _engine_args(op: Operation, a: argparse.Namespace) -> Dict[str, Any]:
    """The parsed command line as the Engine method's keywords."""
    args: Dict[str, Any] = {}
    for param in op.all_params:
        value = getattr(a, param.name, None)
        if not param.engine or value is None:
            continue
        if param.kind == "duration" and isinstance(value, str):
            value = parse_duration(value)
        elif param.kind == "env":
            value = _env_pairs(value)
        args[param.name] = value
    for param in op.params:
        if param.from_file and getattr(a, "file", None) is not None:
            if args.get(param.name) is not None:
                raise UsageError("give {%s} or --file PATH, not both" % param.name)
            args[param.name] = _read_file(a.file)
    return args


def _env_pairs(pairs: List[str]) -> Dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError("{env} wants KEY=VALUE, not %r" % pair)
        env[key] = value
    return env


def _read_file(path: str) -> str:
    try:
        if path == "-":
            if sys.stdin is None:  # started with <&-
                raise UsageError("standard input is closed: nothing to read for --file -")
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as e:
        raise UsageError("cannot read %s: %s" % (path, e.strerror))
    return data.decode("utf-8", "surrogateescape")


def cmd_create(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    record = engine.create_session(**args)
    _print_json({k: getattr(record, k) for k in (
        "name", "socket", "target", "pane_id", "type", "kind", "pid", "registered",
        "created_at", "transcript")})
    socket = _quote(record.socket)
    how = "-s %s" % record.name if record.registered else "-S %s -t %s" % (socket, record.name)
    print("To watch it:  " + _attach_line(["tmux", "-S", record.socket, "attach", "-t",
                                           record.name]), file=sys.stderr)
    print("To read it:   %s capture %s" % (_me(), how), file=sys.stderr)
    return 0


def cmd_list(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    rows = engine.list_sessions()
    alive = sum(1 for r in rows if r.status == "alive")
    if a.json:
        _print_json({"sessions": [dict(r.as_dict(), socket_basename=os.path.basename(r.socket))
                                  for r in rows],
                     "total": len(rows), "alive": alive, "dead": len(rows) - alive})
        return 0
    if not rows:
        print("No sessions registered.")
    else:
        _table([("NAME", "SOCKET", "TARGET", "STATUS", "PID", "CREATED", "LAST-ACTIVE")]
               + [(r.name, r.socket, r.target, r.status, str(r.pid or "-"),
                   _when(r.created_at), _when(r.last_active)) for r in rows])
    print("Total: %d | Alive: %d | Dead: %d" % (len(rows), alive, len(rows) - alive))
    return 0


def cmd_health(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    try:
        health = engine.pane_health(**args)
        label = a.session or a.target or ""
        if not label:  # the only registered session
            label = engine.targets.registered(None).name
    except TargetError:
        if a.target is None:
            raise
        health, label = Health("missing", server_running=True), a.target
    if a.format == "text":
        print(health.sentence(label))
    else:
        _print_json(health.as_dict())
    return HEALTH_EXIT[health.status]


def cmd_kill(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    r = engine.kill_session(**args)
    verb = "would be" if r.dry_run else "was"
    done = [w for w, ok in (("killed", r.killed), ("deregistered", r.deregistered)) if ok]
    if done:
        print("%s %s %s" % (r.name, verb, " and ".join(done)))
    if a.verbose:
        print("%s: status %s, socket %s, killed=%s, deregistered=%s" % (
            r.name, r.status, r.socket, r.killed, r.deregistered), file=sys.stderr)
    problem = nothing_killed(r)
    if problem is not None:
        _error(problem)
        return 2
    # A session that was never registered is done once killed; a dry run
    # exits as the real kill would.
    return 0 if len(done) == 2 or not r.registered else 1


def cmd_cleanup(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    removed = engine.cleanup_sessions(**args)
    if a.json:
        _print_json({"removed": removed, "dry_run": a.dry_run})
        return 0
    for item in removed:
        print("%s %s: %s%s" % ("would remove" if a.dry_run else "removed", item.name,
                               item.reason, "" if not item.killed else
                               " (would be killed)" if a.dry_run else " (killed)"))
    if not removed:
        print("Nothing to clean up.")
    return 0


def cmd_find(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    found = engine.find_sessions(**args)
    if a.json:
        _print_json(found)
    elif found:
        _table([("NAME", "SOCKET", "STATUS", "REGISTERED", "TYPE", "WINDOWS", "CREATED")]
               + [(f.name, f.socket, f.status, "yes" if f.registered else "no",
                   f.kind or f.type or "-", str(f.windows), _when(f.created_at))
                  for f in found])
    else:
        print("No tmux sessions found.", file=sys.stderr)
    return 0 if found else 1


def cmd_capture(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    if a.source == "transcript":
        for chunk in engine.read_transcript(raw=a.raw or a.ansi, **_where(a)):
            sys.stdout.write(chunk)
        return 0
    _at_least(a.lines, 1, "lines")
    shot = engine.capture_screen(**args)
    if a.json:
        _print_json(shot)
    else:
        sys.stdout.write(shot.text)
    return 0


def cmd_repair(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    r = engine.repair()
    if a.json:
        _print_json(r)
    elif not r.corrupt and not r.missing:
        print("registry is fine (%d session(s)); nothing changed" % len(r.sessions))
    elif r.missing and not r.sessions:
        print("%s and no registered tmux session to rebuild it from; nothing changed"
              % r.problem)
    else:
        print("%s\n%srebuilt from tmux with %d session(s): %s" % (
            r.problem, "moved it to %s; " % r.moved_to if r.moved_to else "",
            len(r.sessions), " ".join(r.sessions) or "-"))
    return 0


def cmd_attach(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    argv = engine.attach_command(**args)
    if os.environ.get("TMUXSESS_THERE"):  # run here for a person on another machine
        print(_attach_line(argv))
        print("tmuxsess: run the command above in a terminal to attach", file=sys.stderr)
        return 0
    # Started with <&- (or >&-), a stream is None: not a terminal either.
    if not all(f is not None and f.isatty() for f in (sys.stdin, sys.stdout)):
        print(" ".join(_quote(x) for x in argv))
        print("tmuxsess: not on a terminal; run the command above to attach",
              file=sys.stderr)
        return 0
    engine.host.attach(argv)


def cmd_send(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    if a.verbose:
        args["on_retry"] = lambda why: print("tmuxsess: retrying after: %s" % why,
                                             file=sys.stderr)
    r = engine.send(**args)
    if a.json:
        _print_json(r)
    elif a.verbose:
        print("sent %d bytes%s to %s" % (r.bytes, " and keys " + " ".join(r.keys)
                                         if r.keys else "", r.session or r.pane_id),
              file=sys.stderr)
    problem = r.wait and unfound(engine, r.wait, a.wait, args.get("stable", 0.0), a.timeout,
                                 _where(a))
    if not r.wait or not problem:
        return 0
    _error(problem, operation("send"))
    return {"timeout": 2, "input": SEND_WAITING, "prompt": SEND_WAITING,
            "refused": SEND_REFUSED}.get(r.wait.reason, 3)


def cmd_wait(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    r = engine.wait_for_text(**args)
    if a.json:
        _print_json(r)
    problem = unfound(engine, r, a.pattern, args.get("stable", 0.0), a.timeout, _where(a))
    if problem is None:
        return 0
    if not a.json:
        _error(problem, operation("wait"))
    return {"input": WAIT_WAITING, "prompt": WAIT_WAITING,
            "refused": WAIT_REFUSED}.get(r.reason, 1)


def cmd_run(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    if args.get("code") is None and args.get("answer") is None:
        raise UsageError("give {code}, --file PATH or {answer}")
    r = engine.run(**args)
    if a.json:
        _print_json(r)
    else:
        sys.stdout.write(r.output)
        sys.stdout.flush()
    problem = unfinished_run(engine, r, a.timeout, _where(a))
    if problem is not None and not a.json:
        _error(problem, operation("run"))
    if r.timed_out:
        return 124
    if r.pane_died:
        return 125
    if r.waiting_for_input:
        return RUN_WAITING
    return r.exit_status or 0


def cmd_skill(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    text = skill(a.tool)
    if a.write is None:
        sys.stdout.write(text)
        return 0
    path = os.path.join(a.write, "SKILL.md")
    if os.path.exists(a.write) and not os.path.isdir(a.write):
        raise UsageError("%s is not a directory" % a.write,
                         "--write takes the skill's directory; SKILL.md goes inside it")
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8") as f:
            if f.read() != text and not a.force:
                raise UsageError("%s exists and differs; not overwriting it" % path,
                                 "add --force to replace it")
    try:
        os.makedirs(a.write, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UsageError("cannot write %s: %s" % (path, e.strerror))
    print("wrote %s" % path, file=sys.stderr)
    return 0


def cmd_mcp(engine: Engine, a: argparse.Namespace, args: Dict[str, Any]) -> int:
    if sys.stdin is None:
        raise UsageError("standard input is closed: an MCP client speaks to this server "
                         "through it", "see: tmuxsess.py mcp --help")
    # A pipe that closes (a client that hung up) is an error to handle, not a
    # signal that ends the server unseen.
    with contextlib.suppress(AttributeError, ValueError):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    engine = Engine(state_dir=a.state_dir, socket_dir=a.socket_dir)
    saved = sys.stdout
    sys.stdout = sys.stderr  # a stray print must never corrupt the protocol stream
    try:
        return serve_mcp(engine, sys.stdin.buffer, saved.buffer, allow_foreign=a.allow_foreign,
                         read_only=a.read_only, hosts=a.hosts, finish=a.finish,
                         host_name=a.host_name or "")
    finally:
        sys.stdout = saved


if TYPE_CHECKING:
    Handler = Callable[[Engine, "argparse.Namespace", Dict[str, Any]], int]
HANDLERS: Dict[str, "Handler"] = {
    "create-session": cmd_create, "list-sessions": cmd_list, "pane-health": cmd_health,
    "kill-session": cmd_kill, "cleanup-sessions": cmd_cleanup, "find-sessions": cmd_find,
    "run": cmd_run, "safe-send": cmd_send, "wait-for-text": cmd_wait, "capture": cmd_capture,
    "repair": cmd_repair, "attach": cmd_attach, "skill": cmd_skill, "mcp": cmd_mcp}
# The command line's own commands: names and parameters, as the operations have.
COMMANDS = OPERATIONS + (Operation("skill", (), "", "", SKILL_PARAMS),
                         Operation("mcp", (), "", "", MCP_PARAMS))


def _parser_class() -> Type[argparse.ArgumentParser]:
    """argparse, but a bad command line gets the same one-line error as the rest.

    Made when the command line is parsed: the API does not import argparse.
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            said = "%s: %s" % (self.prog, message)
            print("tmuxsess: error: %s\nhint: see: %s --help" % (said, self.prog),
                  file=sys.stderr)
            raise _BadArguments(said, "see: %s --help" % self.prog)
    return Parser


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter at the terminal's width. (argparse asks shutil for it
    each time an option is added: 2 ms of every command's start.)"""
    import argparse
    try:
        width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
    except (ValueError, OSError):
        width = 80
    return argparse.RawDescriptionHelpFormatter(prog, width=max(width - 2, 40))


class _BadArguments(SystemExit):
    """argparse's refusal, with what it said."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(2)
        self.message, self.hint = message, hint


def _add_params(p: argparse.ArgumentParser, op: Operation) -> None:
    """The options of one subcommand, from its row of the table."""
    defaults = op.defaults()
    if op.targets:
        g = p.add_argument_group("target (highest first: -S/-L with -t, then -s, then the "
                                 "only registered session)")
        for param in TARGET_PARAMS:
            g.add_argument(*param.flags, dest=param.name, metavar=param.metavar,
                           help=param.help)
    for param in op.params:
        _add_param(p, param, defaults.get(param.name))


# How argparse takes each kind of parameter (text and paths as they are).
_ARGPARSE_KINDS: Dict[str, Dict[str, Any]] = {
    "flag": {"action": "store_true"}, "int": {"type": int}, "seconds": {"type": float},
    "keys": {"nargs": "+"}, "env": {"action": "append"}, "list": {"action": "append"}}


def _add_param(p: argparse.ArgumentParser, param: Param, default: Any) -> None:
    group: Any = p.add_mutually_exclusive_group() if param.switches else p
    shown = " (default %s)" % ("%g" % default if param.kind == "seconds" else default) if (
        param.kind in ("int", "seconds") and default is not None) else ""
    if param.flags:
        how = dict(_ARGPARSE_KINDS.get(param.kind, {}))
        if param.kind == "choice":
            how["choices"] = param.choices
        if param.kind != "flag":
            how["metavar"] = param.metavar or param.name.upper()
        help = param.help + (": %s" % ", ".join(param.choices) if param.kind == "text"
                             and param.choices else "")
        group.add_argument(*param.flags, dest=param.name, required=param.required,
                           help=help + shown, **how)
    for flags, value, help in param.switches:
        group.add_argument(*flags, dest=param.name, action="store_const", const=value,
                           help=help)
    if param.from_file:
        p.add_argument("--file", metavar="PATH", help="read it from a file (- = stdin)")
    if param.kind not in ("flag", "keys", "env") or param.switches:
        p.set_defaults(**{param.name: default})


def build_parser(only: str = "") -> argparse.ArgumentParser:
    """The command line: one subcommand per row of ``COMMANDS`` (with ``only``,
    just the one of that name or alias, when there is one: the rest cost time)."""
    chosen = [c for c in COMMANDS if only in (c.name,) + c.aliases] or COMMANDS
    parser = _parser_class()(prog="tmuxsess.py", formatter_class=_formatter,
                             description=(__doc__ or "").split("\n\n")[0].split("\n")[-1])
    parser.add_argument("--version", action="version", version="tmuxsess " + __version__)
    # Taken before parsing (relay_options): here to be shown.
    parser.add_argument("--host", metavar="HOST", help="run the command on HOST through ssh: "
                        "[ssh://][USER@]HOST[:PORT] (also $TMUXSESS_HOST)")
    parser.add_argument("--via", metavar="PREFIX", help="run the command through a command "
                        "that runs its arguments elsewhere: 'docker exec -i NAME' (also "
                        "$TMUXSESS_VIA)")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    for c in chosen:
        help, examples = CLI_HELP[c.name]
        p = sub.add_parser(c.name, aliases=c.aliases, help=help, description=help,
                           epilog=_mcp_epilog() if c.name == "mcp" else
                           "examples:\n" + examples, formatter_class=_formatter)
        p.set_defaults(op=c, parser_=p)
        _add_params(p, c)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: run one subcommand, here or on the far side; its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    host, via, words = relay_options(argv)
    name = next((x for x in words if not x.startswith("-")), "")
    if sys.stderr is None:  # started with 2>&-: the user wants no diagnostics
        sys.stderr = open(os.devnull, "w")
    if sys.stdout is None:  # started with >&-: nowhere to print results, so do nothing
        _error(UsageError("standard output is closed; nothing was done",
                          "discard it instead: >/dev/null"))
        return _usage_code(name)
    if not words:
        sys.stdout.write(OVERVIEW)
        return 0
    parser = build_parser(name)
    try:
        words, held = _dash_values(parser, words)
        a, extra = parser.parse_known_args(words)
        if extra:  # argparse would blame the top parser: point at the subcommand's help
            getattr(a, "parser_", parser).error("unrecognized arguments: " + " ".join(extra))
        _restore_values(a, held)
    except SystemExit as e:
        if e.code == 0:
            return 0
        if "--json" in argv or "--format=json" in argv:
            _json_error(UsageError(getattr(e, "message", "bad arguments"),
                                   getattr(e, "hint", "")), _usage_code(name))
        return _usage_code(name)
    if not getattr(a, "op", None):
        sys.stdout.write(OVERVIEW)
        return 1
    a.far, a.via = host or via, via
    return _dispatch(a, argv)


def _dispatch(a: argparse.Namespace, argv: List[str]) -> int:
    op: Operation = a.op
    try:
        # A server for a client runs here (it reaches a --host through its
        # tools); every other command runs there, with what it reads here.
        if a.far and (op.name != "mcp" or a.finish):
            reads = op.name == "mcp" or getattr(a, "file", None) == "-"
            with open(__file__, "rb") as f:
                source = f.read()
            return relay_main(argv, source, _read_file("-").encode("utf-8", "surrogateescape")
                              if reads else b"")
        if op.name == "mcp":
            if a.via:
                raise UsageError("an MCP server reaches other machines by ssh host: mcp "
                                 "--host NAME", "--via runs one command there: --via PREFIX "
                                 "mcp --finish")
            a.hosts = list(dict.fromkeys(([a.far] if a.far else []) + (a.hosts or [])))
            for host in a.hosts:
                try:
                    ssh_host(host)
                except RelayError as e:
                    raise UsageError("--host: " + e.message, e.hint)
        return HANDLERS[op.name](Engine(), a, _engine_args(op, a))
    except TmuxsessError as e:
        _error(e, op)
        code = 75 if e.kind == "lock" else EXIT_CODES.get(op.name, {}).get(e.kind, 1)
        if getattr(a, "json", False) or getattr(a, "format", "") == "json":
            _json_error(e, code, op)
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _json_error(e: TmuxsessError, code: int, op: Optional[Operation] = None) -> None:
    """With --json, a failure is JSON on stdout too: a caller parsing it gets an
    answer, worded as the command line words it, and the failure as data."""
    data = {"error": _words(e.message, op), "hint": "; ".join(filter(None, [
        _words(e.hint, op)] + ["%s: %s" % (x.why, _command_line(x, e.target))
                               for x in e.actions])), "exit_code": code,
            "failure": e.as_dict()}
    with contextlib.suppress(OSError, ValueError):
        _print_json(data)


def _dash_values(parser: argparse.ArgumentParser, argv: List[str]
                 ) -> Tuple[List[str], Dict[str, str]]:
    """Let an option's value start with "-": ``-c -1;`` sends the text ``-1;``.

    argparse would read such a value as another option (and drops a value of
    ``--``); people and agents pass whatever text they have, so the word after
    a value-taking option is its value. Text values travel as placeholders
    (argv cannot hold NUL, so none collides) put back by ``_restore_values``.
    """
    import argparse
    commands: Dict[str, argparse.ArgumentParser] = {}
    for sub in parser._actions:
        if isinstance(sub, argparse._SubParsersAction):
            commands = sub.choices
    name = next((x for x in argv if not x.startswith("-")), "")
    if name not in commands:
        return argv, {}
    options = commands[name]._option_string_actions
    out: List[str] = []
    held: Dict[str, str] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        action = options.get(word)
        if (action is not None and action.nargs is None and action.option_strings
                and i + 1 < len(argv) and argv[i + 1].startswith("-")):
            value = argv[i + 1]
            if action.type is None:
                held["\0%d" % len(held)] = value
                value = "\0%d" % (len(held) - 1)
            out.append("%s=%s" % (max(action.option_strings, key=len), value))
            i += 2
            continue
        out.append(word)
        i += 1
    return out, held


def _restore_values(a: argparse.Namespace, held: Dict[str, str]) -> None:
    for key, value in vars(a).items():
        if isinstance(value, str) and value in held:
            setattr(a, key, held[value])
        elif isinstance(value, list):  # a repeated option
            setattr(a, key, [held.get(v, v) if isinstance(v, str) else v for v in value])


def _usage_code(name: str) -> int:
    aliases = {"create": "create-session", "send": "safe-send", "kill": "kill-session"}
    name = aliases.get(name, name)
    return {"create-session": 1, "safe-send": 4, "kill-session": 3, "run": 126}.get(name, 1)


def script() -> NoReturn:
    """The command line as a program: SIGPIPE ends it (``| head``), Ctrl-C
    interrupts it (exit 130, quietly)."""
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outside a command, e.g. while parsing arguments
        sys.exit(130)


#: remote
# ---------------------------------------------------------------------------
# Sessions on other machines: the tool runs itself where tmux is
# ---------------------------------------------------------------------------
# ``--host HOST`` (through ssh) and ``--via PREFIX`` (docker exec -i C, kubectl
# exec -i POD --, sudo -u USER) run the command with this same file on the far
# side, where tmux, /proc and the transcripts are local, so every promise holds
# there as here. One ssh call per command: python3 there reads a bootstrap on
# its stdin (nothing of the user's is on any command line), which runs the copy
# of this file kept in the far side's cache under its sha256, or asks for it.
#
# This section is all a remote command loads here: _boot takes it alone, before
# the module (whose load would cost a local run's time again). So it imports
# only modules built into the interpreter, and uses nothing above it.

RELAY_EXIT = 69  # the far side could not be used (sysexits' EX_UNAVAILABLE)
RELAY_GRACE = 5.0  # after a Ctrl-C, how long the far side has to end the command
RELAY_PERSIST = 300  # how long our shared ssh connection outlives its last use

# The far side's command line: read a length, then that much Python, and run
# it. No quote, backslash, "$" or "!": it reads the same to every login shell.
RELAY_STAGE1 = "import sys;i=sys.stdin.buffer;exec(i.read(int(i.readline())))"

# What it runs (Python 3.4 syntax until the version check, so that an old
# python3 can say what it is). Lines it prints start with the call's nonce: a
# login shell's own chatter before them is dropped. After its bootstrap it
# reads the command's standard input (for --file -), and the file when it has
# no copy of this version; after that, any byte from us is Ctrl-C, and the end
# of its input means we are gone: either way the command is interrupted.
RELAY_BOOTSTRAP = r'''
import os, sys

def _write(fd, data):
    while data:
        data = data[os.write(fd, data):]

def _sha(data):
    for name in ("_sha256", "_sha2", "hashlib"):
        try:
            return __import__(name).sha256(data).hexdigest()
        except ImportError:
            pass

def _tmux_missing(args):
    if "--help" in args or "-h" in args or "--version" in args or "skill" in args[:1]:
        return ""
    tmux = os.environ.get("TMUXSESS_TMUX") or "tmux"
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    if any(os.access(os.path.join(d, tmux), os.X_OK) for d in path):
        return ""
    return "%s (PATH=%s)" % (tmux, os.pathsep.join(path))

def _cached(sha, say):
    """This version's copy from the private cache, checked; else from us."""
    import stat
    env = os.environ
    cache = os.path.abspath(env.get("TMUXSESS_CACHE_DIR") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tmuxsess"))
    path = os.path.join(cache, "tmuxsess-%s.py" % sha)
    try:
        os.makedirs(cache, 0o700, exist_ok=True)
        st = os.lstat(cache)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return say("cache %s is not a private dir of this user's" % cache)
        with open(path, "rb") as f:
            source = f.read()
        if _sha(source) == sha:
            if os.stat(path).st_mtime < __import__("time").time() - 86400:
                os.utime(path)  # in use: the pruning below keeps it
            return path, source  # checked, and these very bytes run
    except OSError as e:
        if not isinstance(e, FileNotFoundError):
            return say("cache %s: %s" % (cache, e.strerror))
    say("miss")
    source = i.read(int(i.readline()))
    if _sha(source) != sha:
        return say("badcopy")
    tmp = "%s.%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write(fd, source)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        for name in os.listdir(cache):  # copies of other versions unused for 30 days go
            old = os.path.join(cache, name)
            if name.startswith("tmuxsess-") and old != path and os.lstat(
                    old).st_mtime < __import__("time").time() - 30 * 86400:
                os.unlink(old)
    except OSError as e:
        return say("cache %s: %s" % (cache, e.strerror))
    return path, source

def _command(path, source, args, me, there, data):
    """In the forked child: the command, as ./tmuxsess.py ARGS runs it here."""
    import io, signal
    code = 1
    try:
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for name in ("TMUXSESS_HOST", "TMUXSESS_VIA"):  # never a hop further
                os.environ.pop(name, None)
            os.environ["TMUXSESS_ME"] = me  # how the user calls it, for hints
            os.environ["TMUXSESS_THERE"] = there  # how they run a terminal program here
            null = os.open(os.devnull, os.O_RDONLY)  # our input is not the command's
            os.dup2(null, 0)
            sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
            sys.argv = ["-c", path] + args
            scope = {"__name__": "__main__", "sys": sys}
            exec(compile(source[source.rindex(b"#: boot\n"):], path, "exec"), scope)
            scope["_boot"](source)
        finally:  # the command is over: a late Ctrl-C changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    except KeyboardInterrupt:
        code = 130
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = 120
    os._exit(code & 0xFF)

def _relayed(nonce, sha, args, me, there):
    tag = b"\0tmuxsess " + nonce.encode()
    say = lambda word: _write(1, tag + b" " + word.encode("utf-8", "replace") + b"\n")
    _write(2, tag + b"\n")  # what ssh or a login shell said came before this
    if sys.version_info < (3, 8):
        return say("python " + sys.version.split()[0])
    data = i.read(int(i.readline()))
    missing = _tmux_missing(args)
    if missing:
        return say("notmux " + missing)
    found = _cached(sha, say)
    if not found:
        return
    say("ok")
    import signal, threading, time
    pid = os.fork()
    if pid == 0:
        _command(found[0], found[1], args, me, there, data)
    ended, sent = [], []

    def interrupt(sig):
        """Each signal once (a Ctrl-C may come both as a byte and as a signal)."""
        if not ended and sig not in sent:
            sent.append(sig)
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def watch():
        i.read(1)  # a byte: Ctrl-C; nothing: we are gone
        for sig, grace in ((signal.SIGINT, 3.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 0)):
            interrupt(sig)
            time.sleep(grace)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, f: interrupt(n))
    threading.Thread(target=watch, daemon=True).start()
    while True:
        try:
            status = os.waitpid(pid, 0)[1]
            break
        except InterruptedError:
            pass
    ended.append(True)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    say("exit %d" % code)
    os._exit(code)
'''


class RelayError(Exception):
    """The far side could not be used. ``kind``: usage (a bad --host or
    --via, nothing tried), unreachable (nothing ran there), far-side
    (python3, tmux or the cache missing there; nothing ran), lost (the
    connection ended while the command ran: it may have done its work)."""

    def __init__(self, message: str, hint: str = "", kind: str = "unreachable") -> None:
        super().__init__(message)
        self.message, self.hint, self.kind = message, hint, kind


def relay_main(argv: "List[str]", source: bytes, data: bytes = b"") -> int:
    """``tmuxsess.py (--host HOST | --via PREFIX) COMMAND ...``: the command
    run on the far side with ``source`` (this file); its exit status. ``data``
    is its standard input (what ``--file -`` reads here)."""
    host, via, args = relay_options(argv)
    try:
        if host and via:
            raise RelayError("give --host or --via, not both", "", "usage")
        if via:
            words = _split_words(via, "--via")
            me = "%s --via %s" % (_quote(sys.argv[0]), _quote(via))
            # How a person runs a terminal program there: the prefix (with -t, say).
            there, check = via, "check the --via command: %s true" % via
        else:
            ssh = _split_words(os.environ.get("TMUXSESS_SSH") or "ssh", "TMUXSESS_SSH")
            dest = ssh_host(host)
            words = ssh + _sharing(ssh, dest) + ["-T"] + dest
            me = "%s --host %s" % (_quote(sys.argv[0]), _quote(host))
            there = " ".join(_quote(w) for w in ssh + ["-t"] + dest)
            check = "see what ssh says: %s true" % " ".join(_quote(w) for w in ssh + dest)
        relayed = _Relayed(via or host, not via, there, check)
        return relayed.run(words, args, source, data, me)
    except BrokenPipeError:  # our stdout closed (| head): end as the tool would
        import _signal  # type: ignore[import-not-found,unused-ignore]
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGPIPE)
        return 141
    except RelayError as e:
        code = 1 if e.kind == "usage" else RELAY_EXIT
        sys.stderr.write("tmuxsess: error: %s\n%s" % (e.message, "hint: %s\n" % e.hint
                                                       if e.hint else ""))
        if "--json" in args or "--format=json" in args:  # as the tool's own failures
            import json
            failure = {"kind": e.kind, "message": e.message, "hint": e.hint}
            sys.stdout.write(json.dumps({"error": e.message, "hint": e.hint,
                                         "exit_code": code, "failure": failure}, indent=2)
                             + "\n")
        return code


def relay_options(argv: "List[str]") -> "Tuple[str, str, List[str]]":
    """The host (--host, or $TMUXSESS_HOST), the prefix (--via, or
    $TMUXSESS_VIA) and the command's own words. The options come before the
    command and override the environment (``--host ''``: this machine)."""
    given, args = {}, list(argv)
    while args and args[0].split("=")[0] in ("--host", "--via"):
        name, eq, value = args.pop(0).partition("=")
        given[name] = value if eq else args.pop(0) if args else ""
    if not given:
        given = {"--host": os.environ.get("TMUXSESS_HOST", "")}
        given["--via"] = "" if given["--host"] else os.environ.get("TMUXSESS_VIA", "")
    return given.get("--host", ""), given.get("--via", ""), args


def relay_at_once(argv: "List[str]") -> bool:
    """Whether the command goes to the far side without the module loaded here:
    every one but those the command line's own parser answers (``--help``,
    ``--version``) or reads the standard input for here first (``--file``,
    ``mcp``)."""
    host, via, args = relay_options(argv)
    return bool(host or via) and not any(
        w in ("mcp", "--file", "--help", "-h", "--version") or w.startswith("--file=")
        for w in args)


def ssh_command(host: str) -> "List[str]":
    """The ssh command that reaches ``[ssh://][USER@]HOST[:PORT]``: $TMUXSESS_SSH
    (split as a shell would, like GIT_SSH_COMMAND; default ssh), options that
    share one connection across calls unless the user's config shares one
    already, and the host. The user's config, agent, keys and known hosts apply."""
    ssh = _split_words(os.environ.get("TMUXSESS_SSH") or "ssh", "TMUXSESS_SSH")
    dest = ssh_host(host)
    return ssh + _sharing(ssh, dest) + ["-T"] + dest


def ssh_host(host: str) -> "List[str]":
    """ssh's words for ``[ssh://][USER@]HOST[:PORT]``; nothing ssh could take
    for an option."""
    spec = host[6:].rstrip("/") if host[:6].lower() == "ssh://" else host
    user, at, spec = spec.rpartition("@")
    name, port = spec, ""
    if spec.startswith("[") and "]" in spec:  # [IPv6] or [IPv6]:PORT
        name, _, port = spec[1:].partition("]")
        if port and not port.startswith(":"):
            name = ""
        port = port[1:]
    elif spec.count(":") == 1:
        name, _, port = spec.partition(":")
    if (not name or name[0] == "-" or any(not (c.isalnum() or c in "_.:%-") for c in name)
            or at and (not user or user[0] == "-" or not user.isprintable() or " " in user)
            or port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise RelayError("bad host %r" % host, "write [ssh://][USER@]HOST[:PORT]", "usage")
    return (["-p", port] if port else []) + (["-l", user] if at else []) + [name]


def _sharing(words: "List[str]", where: "List[str]") -> "List[str]":
    """Options for one shared connection of ours (its socket in a private dir
    beside the tool's tmux sockets), or none when the user's config shares one
    (``ssh -G`` shows a ControlPath) or the command is no OpenSSH."""
    base = os.environ.get("CLAUDE_TMUX_SOCKET_DIR") or os.path.join(
        os.environ.get("TMPDIR") or "/tmp", "claude-tmux-%d" % os.geteuid())
    sockets = os.path.join(base, "ssh")
    for path in (base, sockets):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            st = os.lstat(path)
            if not os.path.isdir(path) or st.st_uid != os.geteuid() or st.st_mode & 0o077 or (
                    os.path.islink(path)):
                raise RelayError("refusing %s for ssh's sockets: not a private dir of this "
                                 "user's" % path, "remove it, or set CLAUDE_TMUX_SOCKET_DIR",
                                 "usage")
    # Short: a socket's path holds about 104 bytes, and ssh adds 17 to it.
    socket = os.path.join(sockets, _sha256_hex(repr((words, where)).encode())[:16])
    ours = ["-o", "ControlMaster=auto", "-o", "ControlPath=" + socket,
            "-o", "ControlPersist=%d" % RELAY_PERSIST]
    if os.path.exists(socket):
        return ours  # ours is up: asked before
    status, said = _spawned(words + ["-G"] + where)
    config = dict(line.partition(" ")[::2] for line in said.decode(errors="replace").split("\n"))
    if status != 0 or (config.get("controlpath", "none") != "none"
                       and config.get("controlmaster") not in ("false", "no")):
        return []
    # A master of ours: it notices a dead peer, and gives up connecting in time.
    if config.get("connecttimeout", "none") == "none":
        ours += ["-o", "ConnectTimeout=15"]
    if config.get("serveraliveinterval", "0") == "0":
        ours += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"]
    return ours


class _Relayed:
    """One relayed command, as its output comes: the bootstrap's word first (a
    login shell's chatter before it is dropped), then the command's output,
    passed on but for the bootstrap's last line, which says how it ended.
    On stderr, what ssh said before the bootstrap's mark is kept for an error.
    ``there``: how a person runs a terminal program there (for attach);
    ``check``: how to see why the far side cannot be reached."""

    def __init__(self, where: str, shell: bool, there: str, check: str) -> None:
        self.where, self.shell, self.there, self.check = where, shell, there, check
        self.tag, self.source, self.to_far = b"", b"", -1
        self.status, self.head, self.trailer = "", b"", b""
        self.said: "Optional[bytes]" = b""  # None once the bootstrap's mark came
        self.signals: "List[int]" = []

    def run(self, words: "List[str]", args: "List[str]", source: bytes, data: bytes,
            me: str) -> int:
        """Run the bootstrap through ``words``; pass the command's output on; its status."""
        import _signal  # type: ignore[import-not-found,unused-ignore]  # signal: 5 ms
        nonce = os.urandom(16).hex()
        self.tag, self.source = b"\0tmuxsess " + nonce.encode(), source
        stage2 = (RELAY_BOOTSTRAP + "\nsys.exit(_relayed(%s, %s, %s, %s, %s))\n" % (
            ascii(nonce), ascii(_sha256_hex(source)), ascii(args), ascii(me),
            ascii(self.there))).encode()
        python = [os.environ.get("TMUXSESS_REMOTE_PYTHON") or "python3", "-I", "-S", "-c",
                  RELAY_STAGE1]
        command = words + (["exec " + " ".join(_quote(w) for w in python)] if self.shell
                           else python)
        handlers = {s: _signal.signal(s, lambda n, f: self.signals.append(n))
                    for s in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)}
        handlers[_signal.SIGPIPE] = _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        old_wake = _signal.set_wakeup_fd(wake_w)
        pid, self.to_far, out, err = _spawn(command, self.where, self.shell)
        try:
            self.send(b"%d\n%s%d\n%s" % (len(stage2), stage2, len(data), data))
            self.follow(pid, out, err, wake_r)
            code = _exit_status(os.waitpid(pid, 0)[1])
            pid = 0
        finally:
            _signal.set_wakeup_fd(old_wake)
            for sig, handler in handlers.items():
                _signal.signal(sig, handler)
            if pid:  # left early: nothing of ours runs on
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
            for fd in (wake_r, wake_w, self.to_far, out, err):
                os.close(fd)
        return self.status_or_raise(code)

    def send(self, data: bytes) -> None:
        """To the far side; one that stopped reading has ended (its status says why)."""
        try:
            _write_all(self.to_far, data)
        except OSError:
            pass

    def follow(self, pid: int, out: int, err: int, wake: int) -> None:
        import select
        import time
        streams, deadline, seen = [out, err], None, 0
        while streams:
            if len(self.signals) > seen:  # Ctrl-C: the far side interrupts the command
                seen = len(self.signals)
                self.send(b"I")
                grace = RELAY_GRACE if seen == 1 and self.status else 0
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, 9)  # our end closes: the command ends there too
                deadline = None
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            for fd in select.select(streams + [wake], [], [], wait)[0]:
                chunk = os.read(fd, 65536)
                if fd != wake and not chunk:
                    streams.remove(fd)
                elif fd == err:
                    self.stderr(chunk)
                elif fd == out:
                    self.stdout(chunk)

    def stderr(self, chunk: bytes) -> None:
        if self.said is None:
            _write_all(2, chunk)
            return
        self.said += chunk
        if self.tag + b"\n" in self.said:  # what came before it is ssh's: shown as is,
            before, _, after = self.said.partition(self.tag + b"\n")
            _write_all(2, b"".join(  # but for its note on our own shared connection
                line for line in before.splitlines(True)
                if b"disabling multiplexing" not in line) + after)
            self.said = None

    def stdout(self, chunk: bytes) -> None:
        end = self.tag + b" exit "
        if self.status == "ok":
            self.trailer = _pass_on(self.trailer + chunk, end)
            return
        self.head += chunk
        while self.tag + b" " in self.head and b"\n" in self.head.split(self.tag + b" ", 1)[1]:
            word, _, self.head = self.head.split(self.tag + b" ", 1)[1].partition(b"\n")
            self.status = word.decode(errors="replace")
            if self.status == "miss":  # no copy of this version there: it gets one
                self.send(b"%d\n%s" % (len(self.source), self.source))
        if self.status == "ok":
            self.trailer = _pass_on(self.head, end)
            if self.signals:  # a Ctrl-C before it started
                self.send(b"I")

    def status_or_raise(self, code: int) -> int:
        """The command's exit status, as the far side said; else why it has none.
        Ended by a signal here, the tool ends as it would here: 130 for a Ctrl-C,
        128 + N for another."""
        end = self.tag + b" exit "
        if self.signals and self.signals[0] != 2:  # SIGTERM, SIGHUP
            return 128 + self.signals[0]
        if self.trailer.startswith(end) and self.trailer.endswith(b"\n"):
            return int(self.trailer[len(end):-1])
        _write_all(1, self.trailer)
        if self.signals:
            return 130
        raise self.refused(code)

    def refused(self, code: int) -> RelayError:
        """Why the far side ran nothing (or was lost), in one line."""
        where, (word, _, rest) = self.where, self.status.partition(" ")
        last = (self.said or b"").decode(errors="replace").strip().split("\n")[-1].strip()
        if word == "ok":
            return RelayError("lost the connection to %s while the command ran: it may "
                              "have done its work" % where, self.check, "lost")
        if word == "python":
            return RelayError("%s has Python %s: tmuxsess needs python3 3.8 or newer" % (
                where, rest), "set TMUXSESS_REMOTE_PYTHON to a newer one", "far-side")
        if word == "notmux":
            return RelayError("tmux not found on %s: looked for %s" % (where, rest),
                              "install tmux 3.0 or newer there, or set TMUXSESS_TMUX there",
                              "far-side")
        if word in ("cache", "badcopy"):
            return RelayError("cannot keep tmuxsess on %s: %s" % (
                where, rest or "the copy arrived damaged"),
                "set TMUXSESS_CACHE_DIR there to a private dir", "far-side")
        if code == 127 and not word:
            return RelayError("python3 not found on %s (%s)" % (where, last or "exit status "
                                                                "127"),
                              "install python3 (3.8 or newer) there, or set "
                              "TMUXSESS_REMOTE_PYTHON to one", "far-side")
        if self.shell and code == 255:
            return RelayError("cannot reach %s: %s" % (where, last or "ssh failed"),
                              "nothing was run there; " + self.check, "unreachable")
        return RelayError("could not start tmuxsess on %s (exit status %d)%s" % (
            where, code, ": " + last if last else ""), "nothing was run there; " + self.check,
            "unreachable")


def _pass_on(data: bytes, end: bytes) -> bytes:
    """Write ``data`` to stdout but what may be the start of the bootstrap's
    last line (``end``, then the status); return what is held back."""
    at = data.find(end)
    if at < 0:  # the longest tail that could still become ``end``
        at = next((len(data) - n for n in range(min(len(end), len(data)), 0, -1)
                   if end.startswith(data[-n:])), len(data))
    _write_all(1, data[:at])
    return data[at:]


def _spawn(argv: "List[str]", where: str, shell: bool = True
           ) -> "Tuple[int, int, int, int]":
    """Start ``argv`` on three pipes (pid, and our ends: its stdin, stdout,
    stderr), with SIGINT ignored: ssh keeps a SIGINT it finds ignored, so a
    Ctrl-C reaches the far side as a byte from us, and the command there ends
    as it would here. posix_spawn: subprocess costs 12 ms of imports."""
    import _signal
    pipes = [os.pipe() for _ in range(3)]
    previous = _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, pipes[0][0], 0), (os.POSIX_SPAWN_DUP2, pipes[1][1], 1),
            (os.POSIX_SPAWN_DUP2, pipes[2][1], 2)])
    except OSError as e:
        raise RelayError("cannot run %s (%s): %s" % (
            argv[0], "for %s" % where if shell else "--via %r" % where, e.strerror),
            "set TMUXSESS_SSH to an ssh command" if shell else "check the --via command",
            "unreachable")
    finally:
        _signal.signal(_signal.SIGINT, previous)
        for fd in (pipes[0][0], pipes[1][1], pipes[2][1]):
            os.close(fd)
    return pid, pipes[0][1], pipes[1][0], pipes[2][0]


def _spawned(argv: "List[str]") -> "Tuple[int, bytes]":
    """Run ``argv`` to its end: its exit status and (short) stdout."""
    try:
        pid, to, out, err = _spawn(argv, argv[0])
    except RelayError:
        return 127, b""
    os.close(to)
    said = [b"", b""]
    for n, fd in enumerate((out, err)):
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            said[n] += chunk
        os.close(fd)
    return _exit_status(os.waitpid(pid, 0)[1]), said[0]


def _exit_status(raw: int) -> int:
    """A wait status as a shell shows it (os.waitstatus_to_exitcode is 3.9+)."""
    return os.WEXITSTATUS(raw) if os.WIFEXITED(raw) else 128 + os.WTERMSIG(raw)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _split_words(text: str, what: str) -> "List[str]":
    """Words as a shell splits them (quotes, backslashes; no expansions)."""
    words = text.split()
    if any(c in text for c in "'\"\\"):
        import shlex
        try:
            words = shlex.split(text)
        except ValueError as e:
            raise RelayError("cannot split %s %r: %s" % (what, text, e), "", "usage")
    if not words:
        raise RelayError("%s is empty" % what, "", "usage")
    return words


def _quote(word: str) -> str:
    """A word for a POSIX shell, quoted only if it must be (``shlex.quote``,
    without its 6 ms of imports)."""
    if word and all(c.isascii() and (c.isalnum() or c in "@%+=:,./_-") for c in word):
        return word
    return "'%s'" % word.replace("'", "'\"'\"'")


# Started as ./tmuxsess.py, /bin/sh runs the docstring's first line: Python reads
# this file and runs only what follows the mark below. It runs the module from
# bytecode kept under the file's sha256, so an edited file runs at once and an
# unchanged one is not compiled again (about 50 ms of every start). The cache
# is a private dir of the user's ($TMUXSESS_CACHE_DIR, else ~/.cache/tmuxsess);
# where there can be none, the file is compiled in memory, as a script is.
#: boot
def _sha256_hex(data: bytes) -> str:
    """hashlib.sha256(data).hexdigest(), from the built-in module where there is
    one (_sha2 from 3.12, _sha256 before): hashlib loads OpenSSL, ~3 ms of a start."""
    try:
        module = __import__("_sha2" if sys.version_info >= (3, 12) else "_sha256")
    except ImportError:  # a Python built without it
        module = __import__("hashlib")
    return str(module.sha256(data).hexdigest())


def _boot(source: bytes) -> None:
    import os
    sys.argv.pop(0)  # "-c": argv[0] is now the path the tool was started by
    import _signal  # type: ignore[import-not-found,unused-ignore]  # signal: 5 ms of imports
    _signal.signal(_signal.SIGINT, lambda *_: os._exit(130))
    tool = os.path.realpath(sys.argv[0])
    if os.environ.get("TMUXSESS_HOST") or os.environ.get("TMUXSESS_VIA") or any(
            w.startswith(("--host", "--via")) for w in sys.argv[1:]):
        # A command for another machine needs only the section that relays it.
        start, end = source.index(b"\n#: remote\n"), source.rindex(b"\n#: boot\n")
        relay: "Dict[str, Any]" = {"os": os, "sys": sys, "_sha256_hex": _sha256_hex}
        exec(_compiled(b"\n" * source.count(b"\n", 0, start) + source[start:end], tool),
             relay)
        if relay["relay_at_once"](sys.argv[1:]):
            sys.exit(relay["relay_main"](sys.argv[1:], source))
    module = type(sys)("tmuxsess")
    module.__file__ = tool
    sys.modules["tmuxsess"] = module
    exec(_compiled(source, tool), module.__dict__)
    module.script()


def _compiled(source: bytes, path: str) -> "Any":
    """The code of ``source``, from bytecode kept under its sha256 (compiled
    and kept the first time)."""
    import marshal
    import os
    cache = os.path.abspath(os.environ.get("TMUXSESS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tmuxsess"))
    digest = _sha256_hex(source + sys.version.encode())
    cached = os.path.join(cache, "tmuxsess-%s.pyc" % digest[:32])
    try:
        with open(cached, "rb") as f:
            return marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        code = compile(source, path, "exec", dont_inherit=True)
    try:
        os.makedirs(cache, 0o700, exist_ok=True)
        st = os.lstat(cache)
        if os.path.isdir(cache) and st.st_uid == os.geteuid() and not st.st_mode & 0o022:
            tmp = "%s.%d" % (cached, os.getpid())
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(marshal.dumps(code))
            os.replace(tmp, cached)
            for name in os.listdir(cache):  # other versions' files unused for 30 days
                old = os.path.join(cache, name)
                if name.startswith("tmuxsess-") and os.lstat(old).st_atime < (
                        os.path.getmtime(cached) - 30 * 86400):
                    os.unlink(old)
    except OSError:
        pass  # not cached: compiled again next time
    return code


if __name__ == "__main__" and "__file__" in globals():  # python3 tmuxsess.py
    script()
