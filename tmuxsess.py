#!/usr/bin/env python3
"""tmuxsess: drive interactive terminal programs inside tmux, exactly.

Create a session, send it input, know when the program has answered, read
exactly what it said, check its health, clean it up::

    tmuxsess.py create -n calc --python          # returns once ">>>" is shown
    tmuxsess.py run -s calc -c 'import math; math.factorial(20)'
    2432902008176640000
    tmuxsess.py send -s calc -c 'import time; time.sleep(2)' -w '>>>'
    tmuxsess.py capture -s calc -n 20
    tmuxsess.py attach -s calc                   # watch it yourself
    tmuxsess.py kill -s calc

The same operations are plain functions for programs that ``import tmuxsess``::

    s = tmuxsess.create_session("calc", kind="python-repl")
    r = tmuxsess.run("x = 6 * 7\\nprint(x)", session="calc")
    assert r.output == "42\\n" and r.exit_status == 0
    tmuxsess.kill_session(session="calc")

How it stays exact where shell snippets guess:

* Text goes in through a paste buffer private to each call, so no byte of it is
  read as a tmux key name, flag or command separator.
* Every session this tool creates writes a *transcript*: ``pipe-pane`` copies all
  the program's output to a private file, so "output after this send" is a byte
  offset, never a guess from the screen, and nothing scrolls away.
* Its shells, Python REPLs and gdbs print invisible OSC 133 prompt marks (with
  the shell's ``$?``, or whether Python raised, and a per-session token so that
  marks printed by anything else do not count), so the tool knows when the
  program is back at its prompt and how the command ended.
* Runs on one session queue up behind a lock; sends never wait, so ``-k C-c``
  always gets through.

Requires tmux 3.0 or newer and Python 3.8 or newer; standard library only.
"""

import argparse
import codecs
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import (Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence,
                    Tuple, Union)

__version__ = "1.0.0"

if __name__ == "__main__":
    # Ctrl-C while this file is still loading: exit 130 quietly, as later on.
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

SESSION_TYPES = ("shell", "python-repl", "debugger", "command")
REGISTRY_VERSION = "1.0"
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")
PANE_WIDTH, PANE_HEIGHT = 200, 50
DEFAULT_LOCK_TIMEOUT = 10.0


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

class TmuxsessError(Exception):
    """An expected failure: a one-line message, an optional hint, and a kind.

    The kind says what went wrong (``usage``, ``taken``, ``target``, ``tmux``,
    ``no-server``, ``not-ready``, ``registry``, ``lock``, ``unhealthy``, ``dead``,
    ``timeout``); each subcommand maps kinds to its documented exit codes.
    """

    transient = False  # a tmux failure worth retrying
    corrupt = False    # the registry file is damaged (repair can rebuild it)

    def __init__(self, message: str, kind: str = "usage", hint: str = "") -> None:
        super().__init__(message)
        self.message, self.kind, self.hint = message, kind, hint


def _fail(message: str, kind: str = "usage", hint: str = "") -> "TmuxsessError":
    return TmuxsessError(message, kind, hint)


# ---------------------------------------------------------------------------
# Public data
# ---------------------------------------------------------------------------

@dataclass
class Session:
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
    extra: Dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("socket", "target", "pane_id", "type", "pid", "created_at",
              "last_active", "transcript", "prompt")

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
        s = cls(name=name, **known)
        s.extra = extra
        return s

    def to_json(self) -> Dict[str, Any]:
        entry = dict(self.extra)
        for k in self._KNOWN:
            value = getattr(self, k)
            if value or k in ("socket", "target", "type", "pid", "created_at",
                              "last_active"):
                entry[k] = value
        return entry


@dataclass
class Health:
    """What ``pane-health`` reports; ``status`` is one of the names below."""

    status: str  # healthy, dead, missing, zombie, server_not_running
    server_running: bool = False
    session_exists: bool = False
    pane_exists: bool = False
    pane_dead: bool = False
    pid: Optional[int] = None
    process_running: bool = False
    exit_status: Optional[int] = None
    exit_signal: Optional[int] = None  # the signal that killed a dead pane's program

    @property
    def short(self) -> str:
        """The one-word status used in listings."""
        return {"healthy": "alive", "server_not_running": "server"}.get(
            self.status, self.status)

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
        if self.status == "healthy":
            return "Session %s is healthy: pid %s is running." % (name, self.pid)
        if self.status == "dead":
            return "Session %s is dead: its program %s." % (name, self.ended)
        if self.status == "zombie":
            return "Session %s is a zombie: the pane exists but pid %s is not running." % (
                name, self.pid)
        if self.status == "missing":
            return "Session %s is missing: the tmux server runs but has no such pane." % name
        return "Session %s has no tmux server running." % name


HEALTH_EXIT = {"healthy": 0, "dead": 1, "missing": 2, "zombie": 3,
               "server_not_running": 4}


def _said(health: Health, name: str, then: str) -> str:
    """The health sentence as an error line: "session x is dead: ...; THEN"."""
    said = health.sentence(name)
    return said[0].lower() + said[1:-1] + "; " + then


@dataclass
class Pane:
    """A resolved target: the server, the pane, and what the tool knows of it."""

    server: "Server"
    pane_id: str
    target: str
    session: str
    type: str = ""
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

    @property
    def label(self) -> str:
        return self.session or self.target


@dataclass
class SessionStatus:
    """A row of ``list-sessions``."""

    name: str
    socket: str
    target: str
    status: str
    pid: int
    created_at: str
    last_active: str
    type: str = ""


@dataclass
class RunResult:
    """What ``run`` returns: exactly the program's output and how it ended."""

    output: str
    exit_status: Optional[int]
    timed_out: bool = False
    elapsed: float = 0.0
    pane_died: bool = False
    truncated: bool = False
    server_gone: bool = False  # the tmux server went away (so did the program)


@dataclass
class WaitResult:
    """What a wait found: the match, or why it stopped without one."""

    found: bool
    match: str = ""
    reason: str = ""  # "", timeout, dead, server
    exit_status: Optional[int] = None
    tail: str = ""
    elapsed: float = 0.0


@dataclass
class FoundSession:
    """A tmux session seen on a socket, registered or not."""

    name: str
    socket: str
    windows: int
    attached: bool
    created_at: str
    status: str
    registered: bool
    type: str = ""


# ---------------------------------------------------------------------------
# Places
# ---------------------------------------------------------------------------

def state_dir() -> str:
    """Where the registry, its lock and the transcripts live."""
    override = os.environ.get("TMUXSESS_STATE_DIR")
    if override:
        return os.path.abspath(override)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "claude-tmux")


def socket_dir() -> str:
    """The tool's own directory of tmux sockets."""
    override = os.environ.get("CLAUDE_TMUX_SOCKET_DIR")
    if override:
        return os.path.abspath(override)
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, "claude-tmux-%d" % os.geteuid())


def default_socket() -> str:
    return os.path.join(socket_dir(), "claude.sock")


def registry_path() -> str:
    return os.path.join(state_dir(), ".sessions.json")


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
        raise _fail("cannot create %s %s: %s" % (what, path, e.strerror), "registry")
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
        raise _fail("refusing %s %s: it %s" % (what, path, problem), "registry",
                    "remove it, or point %s at a private directory" % (
                        "CLAUDE_TMUX_SOCKET_DIR" if what == "socket dir"
                        else "TMUXSESS_STATE_DIR"))
    return path


def _state_subdir(name: str) -> str:
    """A private directory in the (private) state dir: transcripts, locks, ..."""
    return private_dir(os.path.join(private_dir(state_dir(), "state dir"), name),
                       "state dir")


def _checked_socket(path: str) -> str:
    """A socket in the tool's own socket dir is used only while that dir is private.

    Otherwise someone else could have swapped in a server of their own. Sockets
    elsewhere (``-S``, recorded in the registry) are used as given.
    """
    directory = socket_dir()
    if (path and os.path.dirname(os.path.abspath(path)) == directory
            and os.path.lexists(directory)):
        private_dir(directory, "socket dir")
    return path


def _random_id(digits: int) -> str:
    """Random hex digits for names no one else picks (temp files, buffers, tokens)."""
    return os.urandom((digits + 1) // 2).hex()[:digits]


def _utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> Optional[float]:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``2h``, ``1d`` or bare seconds, as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise _fail("bad duration %r: use 30s, 15m, 2h, 1d or seconds" % text)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _seconds(value: float, flag: str) -> float:
    """A timeout or interval: a positive, finite number of seconds (nan never ends)."""
    if not 0 < value < float("inf"):
        raise _fail("%s must be a positive number of seconds, not %g" % (flag, value))
    return value


def _at_least(value: int, least: int, flag: str) -> int:
    if value < least:
        raise _fail("%s must be at least %d, not %d" % (flag, least, value))
    return value


def validate_name(name: str) -> str:
    """Session names: 1-64 of ``A-Z a-z 0-9 _ -``, not starting with ``-``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail("invalid session name %r" % (name,), "usage",
                    "use 1-64 characters of A-Z a-z 0-9 _ -, not starting with -")
    return name


# ---------------------------------------------------------------------------
# The tmux runner
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Server:
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


TRANSIENT_TMUX = re.compile(r"lost server|server exited unexpectedly|"
                            r"resource temporarily unavailable|interrupted", re.I)
NO_SERVER = re.compile(r"no server running|error connecting to|"
                       r"server exited unexpectedly", re.I)


def _tmux_binary() -> str:
    return os.environ.get("TMUXSESS_TMUX") or "tmux"


def _escape_arg(arg: str) -> str:
    # tmux splits command sequences at an argument that ends in ";" and turns a
    # final "\;" into ";"; this keeps every argument exactly as given.
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def tmux(server: Server, *commands: Sequence[str], stdin: Optional[bytes] = None,
         config: bool = False) -> str:
    """Run one tmux client with one or more commands; return its stdout.

    Commands are argument lists, joined into one command sequence so a whole
    step costs one process. ``config=True`` adds ``-f /dev/null`` so a server
    started by this call reads no user configuration.
    """
    argv = [_tmux_binary()] + (["-f", "/dev/null"] if config else []) + server.args()
    for i, command in enumerate(commands):
        if i:
            argv.append(";")
        argv.extend(_escape_arg(a) for a in command)
    try:
        proc = subprocess.run(argv, input=stdin if stdin is not None else b"",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise _fail("tmux not found (looked for %r)" % argv[0], "tmux",
                    "install tmux 3.0 or newer, or set TMUXSESS_TMUX to its path")
    except OSError as e:
        raise _fail("cannot run tmux: %s" % e.strerror, "tmux")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        message = err[-1] if err else "tmux exited with status %d" % proc.returncode
        kind = "no-server" if NO_SERVER.search(message) else "tmux"
        failure = _fail("tmux: %s (%s)" % (message, server.label), kind)
        failure.transient = bool(TRANSIENT_TMUX.search(message)) or proc.returncode < 0
        raise failure
    return proc.stdout.decode("utf-8", "replace")


def _rows(output: str, fields: int) -> List[List[str]]:
    rows = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == fields:
            rows.append(parts)
    return rows


def _process_state(pid: int) -> str:
    """``running``, ``zombie`` or ``gone`` for a process id."""
    if pid <= 0:
        return "gone"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "running"
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return "zombie" if state in (b"Z", b"X") else "running"
    except (OSError, IndexError):
        return "running"


def _zombie_exit(pid: int) -> Tuple[Optional[int], Optional[int]]:
    """(exit status, signal) of an exited, not yet reaped process; Nones if unknown.

    tmux marks a pane dead when its pty closes, which can be well before it
    reaps the program (seconds on a busy server, or until another child exits
    when it missed the SIGCHLD); until then it reports neither. The zombie
    still holds its wait status in /proc (Linux).
    """
    if pid <= 0:
        return None, None
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        if fields[0] != b"Z" or len(fields) < 50:
            return None, None
        code = int(fields[49])  # field 52, exit_code, in waitpid(2) form
    except (OSError, IndexError, ValueError):
        return None, None
    if os.WIFEXITED(code):
        return os.WEXITSTATUS(code), None
    if os.WIFSIGNALED(code):
        return None, os.WTERMSIG(code)
    return None, None


# Pane fields asked for in one query; see _pane_from_row.
PANE_FORMAT = "\t".join([
    "#{session_name}", "#{window_index}", "#{pane_index}", "#{pane_id}",
    "#{pane_pid}", "#{pane_dead}", "#{pane_dead_status}", "#{@tmuxsess-type}",
    "#{@tmuxsess-transcript}", "#{@tmuxsess-prompt}", "#{@tmuxsess-sent}",
    "#{@tmuxsess-created}", "#{session_created}", "#{session_windows}",
    "#{session_attached}", "#{pid}", "#{pane_pipe}", "#{history_size}", "#{cursor_y}",
    "#{pane_dead_signal}", "#{@tmuxsess-token}",
])
PANE_FIELDS = PANE_FORMAT.count("\t") + 1


def _list_panes(server: Server) -> Optional[List[List[str]]]:
    """Every pane on a server in one call, or None when no server runs there."""
    try:
        return _rows(tmux(server, ["list-panes", "-a", "-F", PANE_FORMAT]), PANE_FIELDS)
    except TmuxsessError as e:
        if e.kind == "no-server":
            return None
        raise


def _health_from_row(row: Optional[List[str]], server_up: bool, session_up: bool) -> Health:
    if not server_up:
        return Health("server_not_running")
    if row is None:
        return Health("missing", server_running=True, session_exists=session_up)
    pid = int(row[4] or 0)
    if row[5] == "1":
        status, sig = _dead_exit(row, pid)
        return Health("dead", True, True, True, pane_dead=True, pid=pid or None,
                      exit_status=status, exit_signal=sig)
    state = _process_state(pid)
    if state == "running":
        return Health("healthy", True, True, True, pid=pid, process_running=True)
    return Health("zombie", True, True, True, pid=pid)


def _dead_exit(row: List[str], pid: int) -> Tuple[Optional[int], Optional[int]]:
    """How a dead pane's program ended: (exit status, signal); None if unknown."""
    if row[6].lstrip("-").isdigit():
        return int(row[6]), None
    if row[19].isdigit() and int(row[19]):
        return None, int(row[19])
    return _zombie_exit(pid)


def _find_row(rows: List[List[str]], session: Session) -> Tuple[Optional[List[str]], bool]:
    """The pane row of a registered session, and whether its session exists."""
    by_session = [r for r in rows if r[0] == session.name]
    if session.pane_id:
        # Only in its own session: pane ids start again at %0 on a new server.
        for r in by_session:
            if r[3] == session.pane_id:
                return r, True
        return None, bool(by_session)
    # Entries written by the older bash scripts know only "NAME:W.P".
    m = re.fullmatch(r"(.*):(\d+)\.(\d+)", session.target or "")
    for r in by_session:
        if not m or (r[1], r[2]) == (m.group(2), m.group(3)):
            return r, True
    return None, bool(by_session)


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

class Registry:
    """The JSON file of registered sessions, changed only under an flock.

    Readers never lock: every write replaces the file atomically, so a reader
    sees the old or the new version, never a mix. The lock dies with the
    process that holds it, so a killed writer never leaves it stuck.
    """

    def __init__(self, directory: Optional[str] = None) -> None:
        self.dir = directory or state_dir()
        self.path = os.path.join(self.dir, ".sessions.json")
        self.lock_path = os.path.join(self.dir, ".sessions.lock")

    def load(self) -> Dict[str, Any]:
        """The whole document; an empty one when no file exists yet."""
        if os.path.lexists(self.dir):  # a registry others could plant is not read
            private_dir(self.dir, "state dir")
        try:
            # O_NONBLOCK: a FIFO planted here must not hang every command.
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return {"version": REGISTRY_VERSION, "sessions": {}}
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._corrupt("it is a symlink")
            raise _fail("cannot read registry %s: %s" % (self.path, e.strerror), "registry")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise self._corrupt("it is not a regular file")
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.fchmod(f.fileno(), 0o600)  # others must not read session details
            try:
                raw = f.read()
            except OSError as e:
                raise _fail("cannot read registry %s: %s" % (self.path, e.strerror),
                            "registry")
        if not raw.strip():
            raise self._corrupt("the file is empty")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise self._corrupt("it is not UTF-8 text")
        except ValueError as e:
            raise self._corrupt("invalid JSON: %s" % e)
        if not isinstance(doc, dict):
            raise self._corrupt("the top level is %s, not an object" % _json_kind(doc))
        version = doc.setdefault("version", REGISTRY_VERSION)
        if not isinstance(version, str) or version.split(".")[0] != "1":
            raise self._corrupt("unknown version %r (this tool reads 1.x)" % (version,))
        sessions = doc.setdefault("sessions", {})
        if not isinstance(sessions, dict):
            raise self._corrupt('"sessions" is %s, not an object' % _json_kind(sessions))
        for name, entry in sessions.items():
            if not isinstance(entry, dict):
                raise self._corrupt('session %r is %s, not an object' % (
                    name, _json_kind(entry)))
            problem = _entry_problem(entry)
            if problem:
                raise self._corrupt("session %r: %s" % (name, problem))
        return doc

    def _corrupt(self, problem: str) -> TmuxsessError:
        e = _fail("registry %s is corrupt: %s" % (self.path, problem), "registry",
                     "it was left untouched; run 'tmuxsess.py repair' to move it "
                     "aside and rebuild it from tmux")
        e.corrupt = True
        return e

    def sessions(self) -> Dict[str, Session]:
        return {name: Session.from_json(name, entry)
                for name, entry in self.load()["sessions"].items()}

    @contextlib.contextmanager
    def lock(self, timeout: Optional[float] = None) -> Iterator[None]:
        """Hold the registry lock; wait at most ``timeout`` seconds for it."""
        private_dir(self.dir, "state dir")
        wait = _lock_timeout() if timeout is None else timeout
        with _flock(self.lock_path, time.monotonic() + wait, lambda: _fail(
                "registry lock %s is held by another process; gave up after %gs"
                % (self.lock_path, wait), "lock",
                "another tmuxsess is stuck? see: fuser %s" % self.lock_path)):
            yield

    @contextlib.contextmanager
    def transaction(self, timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Lock, load, let the caller change ``doc["sessions"]``, write if changed."""
        with self.lock(timeout):
            doc = self.load()
            before = json.dumps(doc, sort_keys=True)
            yield doc
            if json.dumps(doc, sort_keys=True) != before:
                self._write(doc)

    def _write(self, doc: Dict[str, Any]) -> None:
        data = (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode("utf-8")
        tmp = "%s.tmp-%d-%s" % (self.path, os.getpid(), _random_id(8))
        # Under the lock every temp file is a leftover of a writer that was killed.
        prefix = os.path.basename(self.path) + ".tmp-"
        with contextlib.suppress(OSError):
            for name in os.listdir(self.dir):
                if name.startswith(prefix):
                    os.unlink(os.path.join(self.dir, name))
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
            raise _fail("cannot write registry %s: %s" % (self.path, e.strerror), "registry")


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
        elif isinstance(value, bool) or not (
                (isinstance(value, int) and value >= 0) or value is None
                # digits in a string too (jq --arg writes strings); "" or null: unknown
                or (isinstance(value, str) and re.fullmatch(r"[0-9]{0,18}", value))):
            shown = json.dumps(value)[:40] if isinstance(value, (int, float, str)) else (
                _json_kind(value))
            return '"pid" is %s, not a process id' % shown
    return ""


def _json_kind(value: Any) -> str:
    """What a JSON value is, as a person would say it."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list"}.get(type(value), "an object")


@contextlib.contextmanager
def _flock(path: str, deadline: float, busy: Callable[[], TmuxsessError]) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (made 0600, never through a symlink).

    Waits with a short backoff until ``deadline`` (monotonic), then raises
    ``busy()``. The lock dies with its process: a killed holder never leaves
    it stuck, so there is no stale lock to clean up.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        problem = "it is a symlink" if e.errno == errno.ELOOP else e.strerror
        raise _fail("cannot open lock %s: %s" % (path, problem), "registry")
    try:
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise busy()
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _lock_timeout() -> float:
    """How long to wait for the registry lock: TMUXSESS_LOCK_TIMEOUT, else 10 s."""
    text = os.environ.get("TMUXSESS_LOCK_TIMEOUT") or ""
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    with contextlib.suppress(ValueError):
        if float(text) >= 0:  # also refuses nan
            return float(text)
    raise _fail("TMUXSESS_LOCK_TIMEOUT must be a number of seconds, not %r" % text)


def _touch(session: str) -> None:
    """Record activity; skipped when the entry was touched this second already."""
    reg = Registry()
    now = _utcnow()
    try:
        current = reg.load()["sessions"].get(session)
        if not current or current.get("last_active") == now:
            return
        # A courtesy: never hold up a send or run for long behind a busy lock.
        with reg.transaction(timeout=min(_lock_timeout(), 1.0)) as doc:
            entry = doc["sessions"].get(session)
            if entry is not None:
                entry["last_active"] = now
    except TmuxsessError:
        pass  # activity time is a courtesy; never fail a send over it


# ---------------------------------------------------------------------------
# Picking the pane
# ---------------------------------------------------------------------------

def _candidates(sessions: Dict[str, Session]) -> str:
    return ", ".join(sorted(sessions)) or "none"


def resolve(session: Optional[str] = None, socket: Optional[str] = None,
            socket_name: Optional[str] = None, target: Optional[str] = None
            ) -> Tuple[Pane, Health]:
    """Find the pane a command acts on, and its health, with one tmux query.

    Highest first: ``socket``/``socket_name`` with ``target``; then the
    registered ``session``; then the only registered session.
    """
    if session is not None:
        validate_name(session)  # even where -t wins: a bad name is refused, not ignored
    if target is not None or socket or socket_name:
        server = Server(socket or "", socket_name or "")
        if target is None:
            if not session:
                raise _fail("-S/-L needs -t TARGET (or -s NAME)", "target",
                            "example: -S %s -t mysession" % default_socket())
            target = "=%s:" % validate_name(session)
        return _query_pane(server, target, Session(name="", socket=server.socket,
                                                    target=target))
    sessions = Registry().sessions()
    if session is not None:
        if session not in sessions:
            raise _fail("session %r is not registered (registered: %s)" % (
                session, _candidates(sessions)), "target",
                "see 'tmuxsess.py list', or 'tmuxsess.py find --all' for unregistered ones")
        entry = sessions[session]
    elif len(sessions) == 1:
        entry = next(iter(sessions.values()))
    elif not sessions:
        raise _fail("no session is registered", "target",
                    "create one: tmuxsess.py create -n NAME --python")
    else:
        raise _fail("%d sessions are registered; say which with -s NAME (%s)" % (
            len(sessions), _candidates(sessions)), "target")
    server = Server(_checked_socket(entry.socket))
    return _query_pane(server, entry.pane_id or entry.target, entry)


# How tmux says a target names no pane.
BAD_TARGET = re.compile(r"can't find|no current|no marked")


def _query_pane(server: Server, target: str, entry: Session) -> Tuple[Pane, Health]:
    rows: Optional[List[List[str]]]
    try:
        # display-message falls back to the current pane when its target names
        # none; send-keys without keys sends nothing and fails on a bad target,
        # so a wrong -t never reaches another pane.
        rows = _rows(tmux(server, ["send-keys", "-t", target],
                          ["display-message", "-p", "-t", target, "-F", PANE_FORMAT]),
                     PANE_FIELDS)
    except TmuxsessError as e:
        if e.kind == "no-server":
            rows = None
        elif not BAD_TARGET.search(e.message):
            # tmux missing or failing is not a missing pane: saying so would let
            # kill and cleanup deregister sessions that are still running.
            raise
        else:  # no such pane (below: missing if registered, else an error)
            rows = []
    registered = bool(entry.name)
    if rows and entry.name and rows[0][0] != entry.name:
        # The pane id now belongs to another session, or an old "NAME:0.0" target
        # matched another session by prefix (tmux's rule): ours is gone.
        rows = []
    if rows is None:
        health = Health("server_not_running")
        row = None
    elif not rows or not rows[0][3]:
        if not registered:
            raise _fail("no pane %r on %s" % (target, server.label), "target",
                        "see: tmuxsess.py find %s" % (
                            "-S " + server.socket if server.socket else "-A"))
        row = None
        session_up = False
        with contextlib.suppress(TmuxsessError):
            tmux(server, ["has-session", "-t", "=" + entry.name])
            session_up = True
        health = Health("missing", server_running=True, session_exists=session_up)
    else:
        row = rows[0]
        health = _health_from_row(row, True, True)
    if row is not None:
        name = row[0]
        pane = Pane(server=server, pane_id=row[3], target="%s:%s.%s" % tuple(row[:3]),
                    session=name, type=row[7] or entry.type, transcript=row[8],
                    prompt=row[9] or entry.prompt, registered=registered,
                    pid=int(row[4] or 0), dead=row[5] == "1",
                    dead_status=health.exit_status, sent=row[10],
                    server_pid=int(row[15] or 0), piped=row[16] == "1",
                    line=int(row[17] or 0) + int(row[18] or 0), token=row[20])
        if not registered:
            regs = {s.pane_id: s for s in _safe_sessions().values()
                    if s.socket == server.socket}
            pane.registered = pane.pane_id in regs
    else:
        pane = Pane(server=server, pane_id=entry.pane_id, target=entry.target,
                    session=entry.name, type=entry.type, transcript=entry.transcript,
                    prompt=entry.prompt, registered=registered)
    return pane, health


def _safe_sessions() -> Dict[str, Session]:
    try:
        return Registry().sessions()
    except TmuxsessError:
        return {}


# ---------------------------------------------------------------------------
# Lifecycle: create, list, health, kill, cleanup, find
# ---------------------------------------------------------------------------

BASH_RC = r"""# Written by tmuxsess: invisible OSC 133 marks around every prompt and command:
# A prompt starts, B prompt ends (typing starts), C command runs, D;$? it ended.
# No history expansion: "a!b" would fail before any mark is printed, jamming runs.
set +H
# Each mark carries the session's token: marks that programs print are not ours.
__tmuxsess_id=";tmuxsess=$TMUXSESS_TOKEN"
unset TMUXSESS_TOKEN
PS1='\$ \[\e]133;B'"$__tmuxsess_id"'\a\]'
PS0='\e]133;C'"$__tmuxsess_id"'\a'
PROMPT_COMMAND='printf "\033]133;D;%s%s\007\033]133;A%s\007" "$?" "$__tmuxsess_id" "$__tmuxsess_id"'
unset HISTFILE
"""

PYTHON_STARTUP = r'''# Written by tmuxsess: invisible OSC 133 prompt marks for the Python REPL.
def _tmuxsess_prompts():
    import os
    import sys
    # Each mark carries the session's token: marks that programs print are not ours.
    tag = ";tmuxsess=" + os.environ.pop("TMUXSESS_TOKEN", "")
    counts = [0, 0]  # exceptions shown, exceptions already reported
    shown = sys.excepthook

    def excepthook(*args):
        counts[0] += 1
        shown(*args)

    class Prompt(object):
        def __init__(self, text, primary):
            self.text, self.primary = text, primary

        def __str__(self):
            if not self.primary:
                return "\001\033]133;A;k=s%s\007\002%s" % (tag, self.text)
            failed = int(counts[0] != counts[1])
            counts[1] = counts[0]
            return "\001\033]133;D;%d%s\007\033]133;A%s\007\002%s\001\033]133;B%s\007\002" % (
                failed, tag, tag, self.text, tag)

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

    sys.excepthook = excepthook
    sys.__interactivehook__ = interactivehook
    sys.ps1, sys.ps2 = Prompt(">>> ", True), Prompt("... ", False)


_tmuxsess_prompts()
del _tmuxsess_prompts
'''

GDB_PROMPT = ("set prompt \\001\\033]133;A;tmuxsess={token}\\007\\002(gdb) "
              "\\001\\033]133;B;tmuxsess={token}\\007\\002")


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
        raise _fail("cannot write %s: %s" % (path, e.strerror), "registry")
    return path


def _new_private_file(path: str) -> None:
    """Create an empty 0600 file; never through a symlink, never over a file."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError as e:
        raise _fail("cannot create transcript %s: %s" % (path, e.strerror), "registry")


def _program(kind: str, command: Optional[str], env: Dict[str, str], token: str = ""
             ) -> List[str]:
    """The argument list the pane runs (always several words: tmux then skips sh -c)."""
    init = _state_subdir("init")
    # Pagers wait for a key nobody presses: agents read output, not screens.
    env = dict({"PAGER": "cat", "GIT_PAGER": "cat"}, **env)
    envs = ["%s=%s" % kv for kv in env.items()]
    if kind == "shell":
        rc = _write_private(os.path.join(init, "bashrc"), BASH_RC)
        return (["env", "TMUXSESS_TOKEN=" + token] + envs
                + ["bash", "--noprofile", "--rcfile", rc, "-i"])
    if kind == "python-repl":
        startup = _write_private(os.path.join(init, "python_startup.py"), PYTHON_STARTUP)
        return (["env", "PYTHON_BASIC_REPL=1", "PYTHONSTARTUP=" + startup,
                 "TMUXSESS_TOKEN=" + token] + envs + ["python3", "-q"])
    if kind == "debugger":
        return ["env"] + envs + ["gdb", "-q", "-nx", "-iex", "set pagination off",
                                 "-iex", "set confirm off", "-iex", "set width 0",
                                 "-iex", GDB_PROMPT.replace("{token}", token)]
    shell = os.environ.get("SHELL") or "/bin/sh"
    return ["env"] + envs + [shell, "-c", command or ""]


def create_session(name: str, kind: str = "shell", command: Optional[str] = None,
                   socket: Optional[str] = None, window: str = "shell",
                   cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                   register: bool = True, wait: bool = True, ready_timeout: float = 15.0,
                   prompt: Optional[str] = None) -> Dict[str, Any]:
    """Start a program in a new detached session; return its record.

    Returns once the program shows its first prompt (unless ``wait`` is false),
    so input sent right after is never typed into a program still starting.
    """
    validate_name(name)
    if kind not in SESSION_TYPES:
        raise _fail("unknown session type %r (one of %s)" % (kind, ", ".join(SESSION_TYPES)))
    if kind == "command" and not command:
        raise _fail("--cmd needs a command")
    if not window or "\n" in window or window.endswith(";"):
        raise _fail("invalid window name %r" % window)
    if cwd is not None and not os.path.isdir(cwd):
        raise _fail("working directory %s %s" % (
            cwd, "is not a directory" if os.path.exists(cwd) else "does not exist"))
    env = dict(env or {})
    for key in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise _fail("invalid environment variable name %r" % key)
    if prompt:
        _compile_prompt(prompt)
    if wait:
        _seconds(ready_timeout, "--ready-timeout")
    if socket:
        socket = os.path.abspath(socket)
        if os.path.dirname(socket) == socket_dir():
            private_dir(socket_dir(), "socket dir")
        elif not os.path.isdir(os.path.dirname(socket)):
            # tmux would only print "error creating" and still exit 0
            raise _fail("the directory of socket %s does not exist" % socket)
    else:
        private_dir(socket_dir(), "socket dir")
        socket = default_socket()
    server = Server(socket)
    registry = Registry()
    if register and name in registry.sessions():  # fail fast, before tmux
        raise _taken_in_registry(name)
    transcript = os.path.join(_state_subdir("transcripts"), "%s.%s.log" % (name, _random_id(12)))
    _new_private_file(transcript)
    token = _random_id(16)  # in the prompt marks; see _marks
    program = _program(kind, command, env, token)
    created = _utcnow()
    target = "=%s:" % name
    steps: List[List[str]] = [
        ["new-session", "-d", "-s", name, "-n", window, "-x", str(PANE_WIDTH),
         "-y", str(PANE_HEIGHT), "-P", "-F", PANE_FORMAT]
        + (["-c", os.path.abspath(cwd)] if cwd else []) + ["--"] + program,
        ["set-option", "-t", target, "@tmuxsess-transcript", transcript],
        ["set-option", "-w", "-t", target, "remain-on-exit", "on"],
        ["pipe-pane", "-O", "-t", target, "exec cat >> " + shlex.quote(transcript)],
        ["set-option", "-t", target, "@tmuxsess-type", kind],
        ["set-option", "-t", target, "@tmuxsess-created", created],
        ["set-option", "-t", target, "@tmuxsess-token", token],
    ]
    if prompt:
        steps.append(["set-option", "-t", target, "@tmuxsess-prompt", prompt])
    if register:  # repair adopts only sessions that were registered
        steps.append(["set-option", "-t", target, "@tmuxsess-registered", "1"])
    # tmux makes the session outside the registry lock (a busy server must not
    # hold up every other command); tmux itself refuses a duplicate name on
    # one server, and the registry, under its lock, across servers.
    try:
        for attempt in range(3):
            try:
                out = tmux(server, *steps, config=True)
                break
            except TmuxsessError as e:
                # Our client reached a server that was exiting (its last session
                # had just ended): nothing was made there; the next try starts one.
                if attempt == 2 or "server exited unexpectedly" not in e.message:
                    raise
                time.sleep(0.05)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(transcript)
        if isinstance(e, TmuxsessError) and "duplicate session" in e.message:
            raise _fail("session %r already exists on %s" % (name, socket), "taken",
                        "pick another name, or: tmuxsess.py kill -S %s -t %s" % (
                            socket, name))
        _undo_create(server, target, transcript)  # a later step failed: take it down
        raise
    rows = _rows(out, PANE_FIELDS)
    if not rows:
        _undo_create(server, target, transcript)
        raise _fail("tmux did not report the new pane", "tmux")
    row = rows[0]
    record = Session(name=name, socket=socket, target="%s:%s.%s" % tuple(row[:3]),
                     pane_id=row[3], type=kind, pid=int(row[4] or 0), created_at=created,
                     last_active=created, transcript=transcript,
                     prompt=prompt or "").to_json()
    pane = Pane(server=server, pane_id=row[3], target=record["target"], session=name,
                type=kind, transcript=transcript, prompt=prompt or "",
                registered=register, pid=record["pid"], token=token)
    try:
        if register:
            with registry.transaction() as doc:
                if name in doc["sessions"]:  # registered meanwhile, on another server
                    raise _taken_in_registry(name)
                doc["sessions"][name] = record
        if wait:
            _wait_ready(pane, ready_timeout)
    except BaseException:
        _destroy(pane, deregister=register)
        raise
    result: Dict[str, Any] = {"name": name}
    result.update(record)
    result["registered"] = register
    return result


def _taken_in_registry(name: str) -> TmuxsessError:
    return _fail("session %r already exists in the registry" % name, "taken",
                 "pick another name, or remove it: tmuxsess.py kill -s %s" % name)


def _undo_create(server: Server, target: str, transcript: str) -> None:
    """Kill a session this create made, recognised by its transcript, not by name."""
    with contextlib.suppress(TmuxsessError):
        mine = tmux(server, ["show-options", "-v", "-t", target, "@tmuxsess-transcript"])
        if mine.strip() == transcript:
            tmux(server, ["kill-session", "-t", target])


@contextlib.contextmanager
def _no_transaction() -> Iterator[Dict[str, Any]]:
    yield {"sessions": {}}


def _destroy(pane: Pane, deregister: bool) -> None:
    """Undo a create that did not become ready (or lost the registry race)."""
    with contextlib.suppress(TmuxsessError):
        tmux(pane.server, ["kill-session", "-t", pane.pane_id])
    if deregister:
        with contextlib.suppress(TmuxsessError):
            with Registry().transaction() as doc:
                entry = doc["sessions"].get(pane.session)
                if entry is not None and (entry.get("pane_id"), entry.get("socket")) == (
                        pane.pane_id, pane.server.socket):
                    del doc["sessions"][pane.session]
    with contextlib.suppress(OSError):
        os.unlink(pane.transcript)


def pane_health(session: Optional[str] = None, socket: Optional[str] = None,
                socket_name: Optional[str] = None, target: Optional[str] = None) -> Health:
    """The health of one pane: healthy, dead, missing, zombie or server_not_running."""
    return resolve(session, socket, socket_name, target)[1]


def list_sessions() -> List[SessionStatus]:
    """Every registered session with its status: one tmux query per socket."""
    return [SessionStatus(s.name, s.socket, s.target, health.short, health.pid or s.pid,
                          s.created_at, s.last_active, s.type)
            for s, health in _registered_health(Registry().sessions())]


def _registered_health(sessions: Dict[str, Session]) -> List[Tuple[Session, Health]]:
    """Registered sessions by name, each with its health: one tmux query per socket."""
    panes_by_socket: Dict[str, Optional[List[List[str]]]] = {}
    result = []
    for s in sorted(sessions.values(), key=lambda s: s.name):
        if s.socket not in panes_by_socket:
            panes_by_socket[s.socket] = _list_panes(Server(_checked_socket(s.socket)))
        rows = panes_by_socket[s.socket]
        if rows is None:
            health = Health("server_not_running")
        else:
            row, session_up = _find_row(rows, s)
            health = _health_from_row(row, True, session_up)
        result.append((s, health))
    return result


def kill_session(session: Optional[str] = None, socket: Optional[str] = None,
                 socket_name: Optional[str] = None, target: Optional[str] = None,
                 dry_run: bool = False) -> Dict[str, Any]:
    """Kill the tmux session and remove its registry entry as one operation.

    Returns ``{"name", "killed", "deregistered", "registered", "dry_run", ...}``.
    """
    pane, health = resolve(session, socket, socket_name, target)
    name = pane.session
    registered_as = ""
    if pane.registered:
        regs = Registry().sessions()
        registered_as = name if name in regs else next(
            (n for n, s in regs.items() if s.pane_id == pane.pane_id
             and s.socket == pane.server.socket), "")
    alive = health.status not in ("missing", "server_not_running")
    result = {"name": pane.label, "killed": False, "deregistered": False,
              "registered": bool(registered_as), "dry_run": dry_run,
              "socket": pane.server.label, "status": health.short}
    if dry_run:
        result["killed"], result["deregistered"] = alive, bool(registered_as)
        return result
    # Lock before killing: a busy registry (exit 75) then leaves the session
    # running and registered, never killed but still listed.
    with (Registry().transaction() if registered_as else _no_transaction()) as doc:
        if alive:
            try:
                # By pane id: the name may belong to a new session by now.
                tmux(pane.server, ["kill-session", "-t", pane.pane_id or "=" + name])
                result["killed"] = True
            except TmuxsessError as e:
                if e.kind not in ("no-server", "tmux"):
                    raise
        if registered_as and doc["sessions"].pop(registered_as, None) is not None:
            result["deregistered"] = True
    if pane.transcript and (result["killed"] or result["deregistered"]):
        _remove_transcript(pane.transcript)
    if result["killed"] or result["deregistered"]:
        _remove_run_lock(pane.server, pane.pane_id)
    return result


def _remove_transcript(path: str) -> None:
    # Only files in our own transcripts dir: a registry entry must not make us
    # delete anything else.
    if os.path.dirname(os.path.abspath(path)) == os.path.join(state_dir(), "transcripts"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def cleanup_sessions(all: bool = False, older_than: Optional[float] = None,
                     idle: Optional[float] = None, dry_run: bool = False
                     ) -> List[Dict[str, Any]]:
    """Remove unhealthy sessions (and, widened, old or idle ones) from the registry.

    Selected sessions that are still alive are killed too, so nothing is left
    running untracked. Returns one ``{"name", "reason", "killed", ...}`` per removal.
    """
    now = time.time()
    chosen: List[Tuple[str, Session, Health]] = []
    for s, health in _registered_health(Registry().sessions()):
        reasons = []
        if health.status != "healthy":
            reasons.append("no server" if health.short == "server" else health.short)
        if all:
            reasons.append("--all")
        created = _parse_time(s.created_at)
        if older_than is not None and created is not None and now - created > older_than:
            reasons.append("created %s ago" % _ago(now - created))
        active = _parse_time(s.last_active) or created
        if idle is not None and active is not None and now - active > idle:
            reasons.append("idle for %s" % _ago(now - active))
        if reasons:
            chosen.append((", ".join(reasons), s, health))
    removed = []
    # Lock before killing, as kill does: a busy registry changes nothing.
    with (Registry().transaction() if chosen and not dry_run else _no_transaction()) as doc:
        for reason, s, health in chosen:
            item = {"name": s.name, "reason": reason, "status": health.short,
                    "killed": health.status == "healthy", "removed": True,
                    "dry_run": dry_run}
            removed.append(item)
            if dry_run:
                continue
            current = doc["sessions"].get(s.name)
            if current is None or Session.from_json(s.name, current).identity != s.identity:
                item["killed"] = item["removed"] = False  # changed since we looked
                continue
            if health.status in ("healthy", "dead", "zombie"):
                with contextlib.suppress(TmuxsessError):
                    # By pane id: the name may belong to a new session by now.
                    tmux(Server(s.socket), ["kill-session", "-t", s.pane_id or "=" + s.name])
            del doc["sessions"][s.name]
            if s.transcript:
                _remove_transcript(s.transcript)
            _remove_run_lock(Server(s.socket), s.pane_id)
    return removed


def find_sessions(socket: Optional[str] = None, socket_name: Optional[str] = None,
                  all_sockets: bool = False, query: Optional[str] = None
                  ) -> List[FoundSession]:
    """tmux sessions on one server, or on every socket in the socket dir (and
    every socket the registry names).

    Sessions are listed whether registered or not: this is how to find what a
    lost registry no longer knows.
    """
    servers: List[Server] = []
    regs = _safe_sessions()
    if all_sockets:
        servers = [Server(path) for path in _known_sockets(
            [s.socket for s in regs.values()])]
    elif socket or socket_name:
        servers.append(Server(os.path.abspath(socket) if socket else "", socket_name or ""))
    else:
        servers.append(Server(_checked_socket(default_socket())))
    found: List[FoundSession] = []
    for server in servers:
        rows = _list_panes(server)
        for row in rows or []:
            name = row[0]
            if query and query.lower() not in name.lower():
                continue
            if any(f.name == name and f.socket == server.label for f in found):
                continue  # one row per session, from its first pane
            health = _health_from_row(row, True, True)
            reg = regs.get(name)
            created = row[12]
            found.append(FoundSession(
                name=name, socket=server.label, windows=int(row[13] or 0),
                attached=row[14] not in ("", "0"),
                created_at=datetime.fromtimestamp(int(created), timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ") if created.isdigit() else "",
                status=health.short, type=row[7],
                registered=bool(reg and reg.socket == server.socket)))
    return found


def repair() -> Dict[str, Any]:
    """Rebuild a corrupt (or lost) registry from the live tmux sessions in the socket
    dir, and on the sockets the corrupt file still names.

    The bad file is moved aside as ``.sessions.json.corrupt-<UTC time>``, never
    deleted. Sessions are recognised by the metadata create-session stores on
    them (``@tmuxsess-type`` and friends): tmux is the source of truth, the
    registry a cache. A registry that reads fine is left exactly as it is.
    """
    reg = Registry()
    with reg.lock():
        existed = os.path.lexists(reg.path)
        try:
            doc = reg.load()
            if existed:
                return {"corrupt": False, "missing": False, "moved_to": "",
                        "sessions": sorted(doc["sessions"])}
            problem = "there is no registry %s" % reg.path
        except TmuxsessError as e:
            if not e.corrupt:
                raise
            problem = e.message
        # Ask tmux first: when that fails, the bad file has not been moved yet.
        # Sessions created with -S elsewhere are found through the sockets the
        # damaged file still names; tmux's own marks decide what is adopted.
        sessions = _registered_in_tmux(_sockets_named_in(reg.path) if existed else ())
        moved = ""
        if existed:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            moved = "%s.corrupt-%s" % (reg.path, stamp)
            n = 1
            while os.path.lexists(moved):
                n += 1
                moved = "%s.corrupt-%s-%d" % (reg.path, stamp, n)
            try:
                os.rename(reg.path, moved)
            except OSError as e:
                raise _fail("cannot move %s aside: %s" % (reg.path, e.strerror), "registry")
        if existed or sessions:
            reg._write({"version": REGISTRY_VERSION, "sessions": sessions})
    return {"corrupt": existed, "missing": not existed, "problem": problem,
            "moved_to": moved, "sessions": sorted(sessions)}


def _known_sockets(named: Sequence[str]) -> List[str]:
    """The sockets in the socket dir, then those of ``named`` (from the registry,
    which -S may have put anywhere) that exist; each once."""
    _checked_socket(default_socket())  # never scan a dir others can plant sockets in
    sockets: List[str] = []
    with contextlib.suppress(OSError):
        for item in sorted(os.scandir(socket_dir()), key=lambda e: e.name):
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(item.stat(follow_symlinks=False).st_mode):
                    sockets.append(item.path)
    for path in sorted({os.path.normpath(p) for p in named if os.path.isabs(p)}):
        with contextlib.suppress(OSError, ValueError):
            if path not in sockets and stat.S_ISSOCK(os.stat(path).st_mode):
                sockets.append(_checked_socket(path))
    return sockets


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


def _registered_in_tmux(named: Sequence[str] = ()) -> Dict[str, Any]:
    """Registry entries for the sessions create-session registered, from tmux itself:
    on the sockets in the socket dir and on those ``named``."""
    sockets = _known_sockets(named)
    sessions: Dict[str, Any] = {}
    for socket in sockets:
        try:
            out = tmux(Server(socket), ["list-panes", "-a", "-F",
                                        PANE_FORMAT + "\t#{@tmuxsess-registered}"])
        except TmuxsessError as e:
            if e.kind == "no-server":
                continue  # a stale socket
            raise
        for row in _rows(out, PANE_FIELDS + 1):
            name, kind = row[0], row[7]
            # Only what the tool registered: not foreign sessions, not --no-register.
            if (row[-1] != "1" or kind not in SESSION_TYPES or not NAME_RE.match(name)
                    or name in sessions):
                continue
            created = row[11] or _utcnow()
            sessions[name] = Session(
                name=name, socket=socket, target="%s:%s.%s" % tuple(row[:3]),
                pane_id=row[3], type=kind, pid=int(row[4] or 0), created_at=created,
                last_active=created, transcript=row[8], prompt=row[9]).to_json()
    return sessions


def capture(session: Optional[str] = None, socket: Optional[str] = None,
            socket_name: Optional[str] = None, target: Optional[str] = None,
            lines: int = 200, all: bool = False, ansi: bool = False) -> str:
    """The pane's text, wrapped lines joined, trailing blank lines dropped.

    Works on a dead pane, so a crash can be read after the program died.
    """
    pane, health = resolve(session, socket, socket_name, target)
    if health.status in ("missing", "server_not_running"):
        raise _fail(_said(health, pane.label, "nothing to capture"), "target",
                    _transcript_hint(pane))
    return _capture_pane(pane, None if all else lines, ansi)


def _transcript_hint(pane: Pane) -> str:
    if pane.transcript and os.path.exists(pane.transcript):
        return "its transcript survives: tmuxsess.py capture --transcript -s %s" % pane.session
    return ""


def _capture_pane(pane: Pane, lines: Optional[int], ansi: bool = False) -> str:
    start = "-" if lines is None else str(-max(lines, 1))
    args = ["capture-pane", "-p", "-J", "-t", pane.pane_id or pane.target, "-S", start]
    if ansi:
        args.insert(2, "-e")
    text = tmux(pane.server, args)
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


def read_transcript(session: Optional[str] = None, socket: Optional[str] = None,
                    socket_name: Optional[str] = None, target: Optional[str] = None,
                    raw: bool = False) -> Iterator[str]:
    """Everything the pane's program wrote since create, in chunks, streamed.

    ANSI sequences and prompt marks are removed unless ``raw``; carriage
    returns are resolved the way a terminal shows them.
    """
    pane, _ = resolve(session, socket, socket_name, target)
    if not pane.transcript:
        raise _fail("session %s has no transcript (it was not created by tmuxsess)"
                    % pane.label, "target", "use: tmuxsess.py capture --all")
    try:
        f = open(pane.transcript, "rb")
    except OSError as e:
        raise _fail("cannot read transcript %s: %s" % (pane.transcript, e.strerror), "target")
    with f:
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


def attach_command(session: Optional[str] = None, socket: Optional[str] = None,
                   socket_name: Optional[str] = None, target: Optional[str] = None
                   ) -> List[str]:
    """The ``tmux attach`` command line for a session."""
    pane, health = resolve(session, socket, socket_name, target)
    if health.status in ("missing", "server_not_running"):
        raise _fail(_said(health, pane.label, "nothing to attach to"), "target")
    return [_tmux_binary()] + pane.server.args() + ["attach", "-t", "=" + pane.session]


SKILL_MD = """\
---
name: tmuxsess
description: Drive interactive terminal programs (Python REPL, gdb, bash, psql, \
sqlite3, git add -p) in tmux sessions that persist between commands. Use it when work \
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
   prompt. Its exit status is the shell command's own, 1 if Python raised, 124 on
   timeout (raise `-T SEC`), 125 if the program died, 126 if nothing was typed
   (the error says why). Multi-line Python runs as one unit; long code goes in a
   file: `--file PATH`. Runs on one session queue up, so parallel work needs
   one session per task.
4. **Text is literal; keys go through `-k`.** `-c` text arrives byte for byte:
   `Enter`, `C-c`, a trailing `;` or a leading `-` are just text. To press keys:
   `{tool} send -s NAME -k C-c` (interrupt), `-k Escape`, `-k Up Enter`. For a
   program that asks questions (`git add -p`, an installer), answer with
   `{tool} send -s NAME -c ANSWER -w PATTERN`, which waits for PATTERN in the
   output that follows, and read the screen with `{tool} capture -s NAME`.
5. **Never type into a busy program.** When `run` times out (124) the program is
   still working: wait for it with `{tool} wait -s NAME -p PATTERN -T SEC`, or
   interrupt it with `{tool} send -s NAME -k C-c`. After `exec bash`, `ssh` or
   `su` the prompt is not the tool's any more: give `run --prompt REGEX`.
6. **Read before you clean up.** `{tool} health -s NAME --format text` says
   healthy, dead, missing or zombie. `{tool} capture -s NAME -n 50` works on a
   dead pane, and `{tool} capture -s NAME --transcript` has everything the
   program wrote since create: save what explains a crash first.
7. **Clean up.** `{tool} kill -s NAME` when the work is done; `{tool} cleanup`
   removes dead sessions. Leave running only what the user asked to keep.

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
"""


def skill(tool: Optional[str] = None) -> str:
    """A SKILL.md for an agent's skill directory, naming the tool by ``tool``.

    By default the tool is this file's absolute path: where it was vendored.
    """
    path = tool or os.path.abspath(__file__)
    return SKILL_MD.replace("{tool}", shlex.quote(path))


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


# ---------------------------------------------------------------------------
# Reading output: transcripts, prompt marks, rendering
# ---------------------------------------------------------------------------

ESCAPE_RE = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"    # OSC, prompt marks among them
    r"|\x1b\[[0-?]*[ -/]*[@-~]"             # CSI: colours, cursor moves
    r"|\x1b[PX^_][^\x1b]*\x1b\\"            # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"                     # two-byte escapes, charsets
    r"|\x1b"                                # a lone escape
    r"|[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")  # other controls
MARK_RE = re.compile(rb"\x1b\]133;([A-D])([^\x07\x1b]*)(?:\x07|\x1b\\)")


def _strip_ansi(text: str) -> str:
    return ESCAPE_RE.sub("", text)


def render(text: str) -> str:
    """Terminal output as a person reads it: escapes removed, ``\\r`` resolved."""
    text = text.replace("\r\n", "\n")  # a terminal's line end: nothing to overlay
    if "\r" not in text and "\b" not in text:
        return _strip_ansi(text)
    return "\n".join(_overlay(line) for line in text.split("\n"))


CURSOR_RE = re.compile(r"\x1b\[(\d*)([CK])")  # cursor forward, erase to end of line


def _overlay(line: str) -> str:
    line = line.rstrip("\r")
    if "\r" not in line and "\b" not in line:
        return _strip_ansi(line)
    # Escapes are dropped, but moves are kept: readline redraws a line as "\r",
    # a cursor-forward over the prompt, then the text.
    cells: List[str] = []
    col = i = 0
    while i < len(line):
        ch = line[i]
        m = ESCAPE_RE.match(line, i) if ch < " " or ch == "\x7f" else None
        if ch == "\r":
            col = 0
        elif ch == "\b":
            col = max(0, col - 1)
        elif m:
            move = CURSOR_RE.fullmatch(m.group(0))
            if move and move.group(2) == "C":
                col += int(move.group(1) or 1)
            elif move and move.group(1) in ("", "0"):
                del cells[col:]
            i = m.end()
            continue
        else:
            if col < len(cells):
                cells[col] = ch
            else:
                cells.extend(" " * (col - len(cells)) + ch)
            col += 1
        i += 1
    return "".join(cells)


def _compile_prompt(prompt: str) -> "re.Pattern[str]":
    try:
        return re.compile(prompt)
    except re.error as e:
        raise _fail("bad prompt regex %r: %s" % (prompt, e))


def _compile_pattern(pattern: str, fixed: bool) -> "re.Pattern[str]":
    if fixed:
        return re.compile(re.escape(pattern))
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise _fail("bad pattern %r: %s" % (pattern, e))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _tail_bytes(path: str, size: int = 65536) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, _size(path) - size))
            return f.read()
    except OSError:
        return b""


def _prompt_mode(pane: Pane, prompt: Optional[str] = None) -> str:
    """How to tell the program is back at its prompt: marks, or a regex."""
    if prompt or pane.prompt:
        return "regex"
    if pane.transcript and pane.type in ("shell", "python-repl"):
        return "marks"
    if pane.transcript and pane.type == "debugger":
        return "prompt-mark"
    return ""


Mark = Tuple[bytes, List[bytes], "re.Match[bytes]"]  # kind, arguments, where


def _own_mark(m: "re.Match[bytes]", token: str) -> Optional[Mark]:
    """A prompt mark as (kind, arguments, match) if the session printed it.

    The tool's sessions put their token in every mark; a mark without it was
    printed by something else (a nested shell with its own marks, ssh, a
    stray print) and is not theirs. A session without a token (made by an
    older version) owns every mark, as it did then.
    """
    args = m.group(2).split(b";")[1:]
    if token and b"tmuxsess=" + token.encode() not in args:
        return None
    return m.group(1), [a for a in args if not a.startswith(b"tmuxsess=")], m


def _marks(data: Union[bytes, bytearray], token: str, pos: int = 0) -> Iterator[Mark]:
    """The session's own prompt marks in ``data`` from ``pos`` on, in order."""
    for m in MARK_RE.finditer(data, pos):
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
        m = MARK_RE.match(data, at)
        mark = _own_mark(m, token) if m is not None else None
        if mark is not None:
            yield mark


def _at_prompt(tail: bytes, mode: str, prompt_re: Optional["re.Pattern[str]"],
               token: str = "") -> bool:
    """Whether a transcript ends with the program waiting at its main prompt."""
    if mode == "regex":
        last = render(tail.decode("utf-8", "replace")).rsplit("\n", 1)[-1]
        return bool(prompt_re and prompt_re.search(last))
    marks = _last_marks(tail, token)
    mark = next(marks, None)
    if mark is not None and mark[0] == b"B":  # the end of the prompt: the prompt is the A
        mark = next(marks, mark)
    if mark is None:
        return False
    kind, args, m = mark
    return kind == b"A" and not args and b"\n" not in tail[m.end():]


def _unsent_text(tail: bytes, token: str) -> str:
    """Text typed on the prompt line but not entered (after the prompt's B mark).

    "" when there is none, or when the prompt has no B mark to tell by (a PS1
    the user changed, a session made by an older version).
    """
    later: List[Mark] = []  # marks after the last main prompt, last first
    for mark in _last_marks(tail, token):
        if mark[0] == b"A" and not mark[1]:
            prompt = mark[2]
            break
        later.append(mark)
    else:
        return ""
    end = next((m for kind, _args, m in reversed(later) if kind == b"B"), None)
    if end is None:
        return ""
    # Rendered from the line's start: readline redraws a line with "\r" and
    # moves over the prompt, which covers the columns of the prompt itself.
    begin = tail.rfind(b"\n", 0, prompt.start()) + 1
    shown = render(tail[begin:end.start()].decode("utf-8", "replace"))
    line = render(tail[begin:].decode("utf-8", "replace"))
    return line[len(shown):].strip()


@dataclass
class _Watch:
    """What to wait for after a send, and how to find where the output starts."""

    mode: str                       # marks, prompt-mark, regex, pattern, settle
    skip_lines: int = 0             # echo lines to skip (programs without a C mark)
    cmark: bool = False             # output starts after the shell's C mark
    partial: bytes = b""            # the end of text sent without Enter (its echo's end)
    partial_len: int = 0            # the length of that text
    pattern: Optional["re.Pattern[str]"] = None
    max_output: int = 0             # 0: keep everything


class _Follower:
    """Follows a transcript from an offset and decides when the exchange is done.

    Polls the file (no tmux process per poll) with an interval that starts at
    a millisecond and backs off; checks by pid whether the program or the
    server died meanwhile.
    """

    LOOKBACK = 65536

    def __init__(self, pane: Pane, offset: int, watch: _Watch) -> None:
        self.pane, self.watch = pane, watch
        self.file = open(pane.transcript, "rb")
        self.file.seek(offset)
        self.buf = bytearray()
        self.start: Optional[int] = None    # where output begins in buf
        self.end: Optional[int] = None      # where output ends (prompt) in buf
        self.status: Optional[int] = None
        self.match = ""
        self.dropped = 0
        self.scanned = 0
        self.seen = ""  # rendered output already scanned (pattern mode)
        self.began = time.monotonic()

    def close(self) -> None:
        self.file.close()

    def _feed(self) -> bool:
        chunk = self.file.read(1 << 20)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _find_start(self) -> None:
        w, buf = self.watch, self.buf
        if w.cmark:
            for kind, _args, m in _marks(buf, self.pane.token):
                if kind == b"C":
                    self.start = m.end()
                    return
                if kind == b"D":  # nothing ran: an empty line, a comment, a syntax error
                    # bash (5.1+) ends bracketed paste as it takes the line; what
                    # follows is what it said about the line.
                    taken = buf.find(b"\x1b[?2004l", 0, m.start())
                    self.start = taken + 8 if taken >= 0 else m.start()
                    return
            return
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

    def _check(self) -> bool:
        if self.start is None:
            self._find_start()
            if self.start is None:
                return False
            self.scanned = self.start
        w, buf = self.watch, self.buf
        if w.mode in ("marks", "prompt-mark"):
            from_ = max(self.start, self.scanned - 256)  # a mark cut by a read
            for kind, args, m in _marks(buf, self.pane.token, from_):
                if w.mode == "marks" and kind == b"D" and self.end is None:
                    self.end = m.start()
                    value = args[0] if args else b""
                    self.status = int(value) if value.lstrip(b"-").isdigit() else None
                elif kind == b"A" and not args and (w.mode == "prompt-mark"
                                                    or self.end is not None):
                    if self.end is None:
                        self.end = m.start()
                    self.scanned = len(buf)
                    return True
            self.scanned = len(buf)
            self._trim()
            return False
        if w.mode == "regex":
            nl = buf.rfind(b"\n", self.start)
            last = render(bytes(buf[nl + 1 if nl >= 0 else self.start:]).decode(
                "utf-8", "replace"))
            if w.pattern is not None and w.pattern.search(last):
                self.end = nl + 1 if nl >= 0 else self.start
                return True
            self._trim()
            return False
        if w.mode == "pattern":
            # Render each whole line once; search the last LOOKBACK characters of
            # them plus the line still being written.
            done = buf.rfind(b"\n", self.scanned) + 1
            if done > self.scanned:
                seen = self.seen + render(bytes(buf[self.scanned:done]).decode(
                    "utf-8", "replace"))
                if len(seen) > self.LOOKBACK:
                    seen = seen[seen.find("\n", len(seen) - self.LOOKBACK) + 1:]
                self.seen, self.scanned = seen, done
            text = self.seen + render(bytes(buf[self.scanned:]).decode("utf-8", "replace"))
            found = w.pattern.search(text) if w.pattern is not None else None
            if found:
                self.match = found.group(0)
                return True
            self._trim()
            return False
        return False

    def follow(self, timeout: float, interval: float = 0.05,
               settle: float = 0.0, silence: float = 0.0) -> str:
        """Wait; return ``done``, ``timeout``, ``dead`` or ``server``.

        With ``settle``, done means no new output for that long once some
        came, or none at all for ``silence`` (if longer).
        """
        deadline = self.began + timeout
        delay, quiet_since = 0.001, time.monotonic()
        while True:
            if self._feed():
                quiet_since = time.monotonic()
                delay = 0.001
                if not settle and self._check():
                    return "done"
                continue
            if not settle and self.start is None and self._check():
                return "done"  # a partial echo that never came
            now = time.monotonic()
            if settle and now - quiet_since >= (settle if self.buf else max(settle, silence)):
                return "done"
            reason = self._gone()
            if reason:
                time.sleep(0.02)  # the pipe may still carry the last output
                while self._feed():
                    pass
                if not settle and self._check():
                    return "done"
                # A killed server takes its panes along: by now it is gone too.
                return self._gone() or reason
            if now >= deadline:
                return "timeout"
            time.sleep(min(delay, max(deadline - now, 0.0005)))
            delay = min(delay * 2, interval)

    def _gone(self) -> str:
        if self.pane.server_pid and _process_state(self.pane.server_pid) != "running":
            return "server"
        if self.pane.pid and _process_state(self.pane.pid) != "running":
            return "dead"
        return ""

    def output(self) -> str:
        """The output between the echo and the prompt, as a person reads it."""
        if self.start is None:
            return ""
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
        text = render(data.decode("utf-8", "replace"))
        if dropped:
            text = ("[tmuxsess: %d earlier bytes of output omitted; all of it is in "
                    "'capture --transcript']\n" % dropped) + text
        return text

    def tail(self, lines: int = 10) -> str:
        text = render(bytes(self.buf[-self.LOOKBACK:]).decode("utf-8", "replace"))
        return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def _wait_ready(pane: Pane, timeout: float) -> None:
    """Block until a new session's program shows its first prompt."""
    mode = _prompt_mode(pane)
    if mode == "regex":
        watch = _Watch("regex", pattern=_compile_prompt(pane.prompt))
    elif mode:
        watch = _Watch("prompt-mark")
    else:
        watch = _Watch("settle")
    f = _Follower(pane, 0, watch)
    try:
        # No prompt to know: ready once the first output has settled, or after
        # a second without any (a silent program like cat would wait forever).
        settle = 0.25 if watch.mode == "settle" else 0.0
        reason = f.follow(timeout, settle=settle, silence=min(1.0, timeout))
        if reason == "done" and settle and f._gone():
            reason = "dead"
    finally:
        f.close()
    if reason == "done":
        return
    tail = f.tail()
    if reason == "timeout":
        raise _fail("%s did not show its prompt within %gs" % (pane.session, timeout),
                    "not-ready", ("last output: " + tail.replace("\n", " | "))[:500]
                    if tail else "it printed nothing; raise --ready-timeout, or --no-wait")
    raise _fail("the program in %s exited before it was ready" % pane.session, "not-ready",
                ("last output: " + tail.replace("\n", " | "))[:500] if tail else "")


# ---------------------------------------------------------------------------
# Talking to sessions: send, wait, run
# ---------------------------------------------------------------------------

def python_unit(code: str) -> str:
    """One REPL line that runs a whole block the way the REPL would, as one unit.

    Blank lines inside indented code cannot end a block early, and values of
    expression statements are still shown.
    """
    return ("exec(compile(__import__('ast').Interactive(compile(%r,'<stdin>','exec',1024)"
            ".body),'<stdin>','single'))" % code)


def _python_line_is_complete(code: str) -> bool:
    import codeop
    import warnings
    if "\n" in code:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return codeop.compile_command(code, "<stdin>", "single") is not None
        except (SyntaxError, ValueError, OverflowError):
            return True  # let the REPL show the error itself


PARTIAL_TAIL = 32  # bytes of text sent without Enter that a send records for wait


def _deliver(pane: Pane, payload: Optional[bytes], keys: Sequence[str], enter: bool,
             record: str, retries: int, interval: float, verbose: bool = False) -> None:
    """Put text (via a private paste buffer) and keys into the pane: one tmux call."""
    target = pane.pane_id or pane.target
    buffer = "tmuxsess-%d-%s" % (os.getpid(), _random_id(12))
    steps: List[List[str]] = []
    if payload:
        # -r: newlines go in as typed (LF), not rewritten; -p: bracketed paste
        # when the program asked for it; -d: the buffer is gone afterwards.
        steps += [["load-buffer", "-b", buffer, "-"],
                  ["paste-buffer", "-d", "-r", "-p", "-b", buffer, "-t", target]]
    if enter:
        steps.append(["send-keys", "-t", target, "Enter"])
    if keys:
        steps.append(["send-keys", "-t", target] + list(keys))
    if record and pane.pane_id:
        # A pane option (a session can hold panes the tool did not make); -F
        # lets the record name the cursor's line at the moment of sending.
        steps.append(["set-option", "-p", "-F", "-t", pane.pane_id, "@tmuxsess-sent", record])
    if not steps:
        return
    attempt = 0
    while True:
        try:
            tmux(pane.server, *steps, stdin=payload)
            return
        except KeyboardInterrupt:
            # Ctrl-C mid-call: our private buffer must not outlive us.
            if payload:
                with contextlib.suppress(TmuxsessError):
                    tmux(pane.server, ["delete-buffer", "-b", buffer])
            raise
        except TmuxsessError as e:
            if payload:
                with contextlib.suppress(TmuxsessError):
                    tmux(pane.server, ["delete-buffer", "-b", buffer])
            if not e.transient or attempt >= retries:
                if attempt:
                    e.message += " (after %d retries)" % attempt
                e.kind = "send" if e.kind == "tmux" else e.kind
                raise
            if verbose:
                print("tmuxsess: retrying after: %s" % e.message, file=sys.stderr)
            time.sleep(interval * (2 ** attempt))
            attempt += 1


@contextlib.contextmanager
def _transcript_for(pane: Pane) -> Iterator[bool]:
    """Give a pane without a transcript a temporary one for this exchange."""
    if pane.transcript:
        yield True
        return
    if pane.piped:
        yield False  # someone else's pipe-pane: we must not replace it
        return
    path = os.path.join(_state_subdir("transcripts"), "temp.%s.log" % _random_id(12))
    _new_private_file(path)
    try:
        tmux(pane.server, ["pipe-pane", "-O", "-t", pane.pane_id,
                           "exec cat >> " + shlex.quote(path)])
        pane.transcript = path
        try:
            yield True
        finally:
            with contextlib.suppress(TmuxsessError):
                tmux(pane.server, ["pipe-pane", "-t", pane.pane_id])
            pane.transcript = ""
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


# tmux's key names (man tmux, KEY BINDINGS), matched without regard to case;
# SHIFTED are the ones tmux 3.3 also knows with S- (S-Tab or S-a it would type).
SHIFTED = (["F%d" % i for i in range(1, 13)] + "IC Insert DC Delete Home End NPage "
           "PageDown PgDn PPage PageUp PgUp Up Down Left Right".split())
KEY_NAMES = {k.lower(): k for k in SHIFTED + "Tab BTab Space BSpace Enter Escape "
             "KPEnter".split() + ["KP" + c for c in "/*-+.0123456789"]}
# What people call keys that tmux names otherwise.
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
            raise _fail("%s: not a tmux key name%s" % (
                json.dumps(key, ensure_ascii=False) if not key.isprintable() or not key
                else key, "; did you mean %s?" % guess if guess else ""), "usage",
                "text goes in with -c; keys are named as in tmux: C-c M-x S-Up Enter "
                "Escape Tab BSpace Up F1..F12 (man tmux, KEY BINDINGS)")
        named.append(name)
    return named


def _check_text(text: str) -> bytes:
    if "\0" in text:
        raise _fail("the text contains a NUL byte, which a terminal cannot carry",
                    "usage", "remove it, or send binary data through a file")
    return text.encode("utf-8", "surrogateescape")


def send(text: Optional[str] = None, keys: Sequence[str] = (), *, enter: bool = True,
         multiline: bool = False, wait: Optional[str] = None, fixed: bool = False,
         timeout: float = 30.0, retries: int = 3, interval: float = 0.5,
         verbose: bool = False, session: Optional[str] = None,
         socket: Optional[str] = None, socket_name: Optional[str] = None,
         target: Optional[str] = None) -> Dict[str, Any]:
    """Send text exactly as given (and/or keys); optionally wait for a pattern.

    ``text`` is literal, always: no word in it is a key name. Enter follows it
    unless ``enter`` is false or ``keys`` are given. With ``multiline`` the
    text is pasted as one block (for a Python REPL: run as one unit). ``wait``
    is matched only in output that appears after this send, never in what was
    on screen before nor in the echo of the text.
    """
    if text is None and not keys:
        raise _fail("nothing to send: give -c TEXT, --file PATH or -k KEY")
    keys = _check_keys(keys)
    _seconds(timeout, "-T")
    _seconds(interval, "-i")
    _at_least(retries, 0, "-r")
    pattern = _compile_pattern(wait, fixed) if wait is not None else None
    pane, health = resolve(session, socket, socket_name, target)
    if health.status != "healthy":
        raise _fail(_said(health, pane.label, "nothing was sent"), "unhealthy",
                    _transcript_hint(pane))
    payload = b""
    enter = enter and not keys
    if text is not None:
        if multiline and pane.type == "python-repl" and text.strip():
            text = python_unit(text)
            enter = True
        elif multiline and pane.type == "python-repl":
            text = ""
        payload = _check_text(text)
    started = time.monotonic()
    result: Dict[str, Any] = {"session": pane.session, "pane_id": pane.pane_id,
                              "sent": True, "bytes": len(payload), "keys": list(keys)}
    with contextlib.ExitStack() as stack:
        own = bool(pane.transcript)  # not a temporary one for this call
        following = pattern is not None and stack.enter_context(_transcript_for(pane))
        mode = _prompt_mode(pane)
        offset = _size(pane.transcript) if pane.transcript else 0
        # Enter pressed through -k (say "-k Up Enter") ends an echoed line too.
        presses = int(enter) + sum(k in ("Enter", "C-m", "KPEnter") for k in keys)
        cmark = bool(presses and mode == "marks" and pane.type == "shell"
                     and _at_prompt(_tail_bytes(pane.transcript), mode, None, pane.token))
        lines = payload.count(b"\n") + presses
        partial = b"" if enter or keys or text is None else payload.rsplit(b"\n", 1)[-1]
        if own:
            record = "%d %d %d" % (offset, lines, int(cmark))
            if partial:  # so that a later wait skips its echo too (hex: one word)
                record += " %d %s" % (len(partial), partial[-PARTIAL_TAIL:].hex())
        else:
            # No transcript to hold an offset: a later wait reads the screen from
            # the cursor's row as it is when the text goes in (tmux fills it in),
            # found again by the echo's end once tmux drops old history lines.
            record = "line #{history_size} #{cursor_y} %d %s" % (
                lines, _echo_anchor(text).replace("#", "##"))
        baseline = pane.line
        _deliver(pane, payload, keys, enter, record, retries, interval, verbose)
        if pane.registered:
            _touch(pane.session)
        if pattern is None:
            return result
        if following:
            watch = _Watch("pattern", skip_lines=lines, cmark=cmark,
                           partial=partial[-PARTIAL_TAIL:], partial_len=len(partial),
                           pattern=pattern)
            f = _Follower(pane, offset, watch)
            try:
                reason = f.follow(timeout)
                found = WaitResult(reason == "done", f.match, "" if reason == "done"
                                   else reason, tail=f.tail())
            finally:
                f.close()
        else:
            found = _wait_on_screen(pane, pattern, timeout, None, baseline, skip=lines,
                                    anchor=_echo_anchor(text))
    found.elapsed = round(time.monotonic() - started, 3)
    if found.reason == "dead":
        found.exit_status = _dead_status(pane)
    result.update({"found": found.found, "match": found.match, "reason": found.reason,
                   "elapsed": found.elapsed, "exit_status": found.exit_status,
                   "tail": found.tail})
    return result


def _dead_status(pane: Pane) -> Optional[int]:
    """The exit status of a pane's program that has just exited.

    tmux may not know it yet (see _zombie_exit): give it a second at most.
    """
    deadline = time.monotonic() + 1.0
    while True:
        try:
            rows = _rows(tmux(pane.server, ["display-message", "-p", "-t", pane.pane_id,
                                            "-F", PANE_FORMAT]), PANE_FIELDS)
        except TmuxsessError:
            return None
        if rows and rows[0][5] == "1":
            status, signum = _dead_exit(rows[0], int(rows[0][4] or 0) or pane.pid)
            if status is not None or signum:
                return status  # killed by a signal: no exit status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _echo_anchor(text: Optional[str]) -> str:
    """The end of the first line sent, to recognise its echo on the screen."""
    first = (text or "").split("\n", 1)[0].rstrip()[-40:]
    return first if first.isprintable() else ""


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


def _wait_on_screen(pane: Pane, pattern: "re.Pattern[str]", timeout: float,
                    lines: Optional[int], from_line: Optional[int] = None,
                    interval: float = 0.2, skip: int = 0, anchor: str = "") -> WaitResult:
    """Poll the screen (one tmux call per look) for panes without a transcript.

    ``from_line`` is an absolute row (history size + cursor row) where text was
    sent (``anchor``: the end of its first line): only text from there on,
    after ``skip`` more lines (the echo), counts; otherwise the last ``lines``
    lines do.
    """
    began = time.monotonic()
    delay = 0.01
    target = pane.pane_id or pane.target
    text = ""
    while True:
        state = ("#{pane_dead}\t#{pane_dead_status}\t#{history_size}\t#{pane_height}"
                 "\t#{history_limit}")
        if from_line is None:
            captures = [["capture-pane", "-p", "-J", "-t", target, "-S",
                         str(-(lines or 1000))]]
        else:
            # Rows as they are (-N) and with wrapped rows joined (-J), taken in
            # the same instant: the rows say where an absolute row begins in the
            # joined text, which is what patterns are matched against.
            captures = [["capture-pane", "-p", "-N", "-t", target, "-S", "-"],
                        ["capture-pane", "-p", "-J", "-t", target, "-S", "-"]]
        try:
            out = tmux(pane.server, ["display-message", "-p", "-t", target, state],
                       *captures)
        except TmuxsessError as e:
            return WaitResult(False, reason="server" if e.kind == "no-server" else "dead",
                              tail=text, elapsed=time.monotonic() - began)
        head, _, text = out.partition("\n")
        dead, status, size, height, limit = (head.split("\t") + [""] * 5)[:5]
        if from_line is not None:
            count = int(size or 0) + int(height or 0)
            rows = text.split("\n")
            text = _new_screen_text(rows[:count], "\n".join(rows[count:]), from_line,
                                    skip, int(size or 0), int(limit or 0), anchor)
        m = pattern.search(text)
        tail = "\n".join(text.rstrip("\n").split("\n")[-10:])
        if m:
            return WaitResult(True, m.group(0), tail=tail,
                              elapsed=time.monotonic() - began)
        if dead == "1":
            return WaitResult(False, reason="dead", tail=tail,
                              exit_status=int(status) if status.lstrip("-").isdigit()
                              else None, elapsed=time.monotonic() - began)
        if time.monotonic() - began >= timeout:
            return WaitResult(False, reason="timeout", tail=tail,
                              elapsed=time.monotonic() - began)
        time.sleep(delay)
        delay = min(delay * 2, interval)


def wait_for_text(pattern: str, *, fixed: bool = False, timeout: float = 15.0,
                  interval: Optional[float] = None, lines: int = 1000,
                  whole_pane: bool = False, session: Optional[str] = None,
                  socket: Optional[str] = None, socket_name: Optional[str] = None,
                  target: Optional[str] = None) -> WaitResult:
    """Wait until ``pattern`` appears in the pane's output.

    On a session with a send recorded by this tool only output after that
    send counts; ``whole_pane`` searches the last ``lines`` lines instead.
    Returns early when the program exits or the server goes away.
    """
    regex = _compile_pattern(pattern, fixed)
    _seconds(timeout, "-T")
    if interval is not None:
        _seconds(interval, "-i")
    _at_least(lines, 1, "-l")
    pane, health = resolve(session, socket, socket_name, target)
    if health.status in ("missing", "server_not_running"):
        return WaitResult(False, reason="server" if health.status == "server_not_running"
                          else "missing")
    sent = pane.sent.split()  # OFFSET LINES CMARK [LENGTH END-IN-HEX]: see send
    if not whole_pane and pane.transcript and len(sent) in (3, 5) and all(
            p.isdigit() for p in sent[:4]):
        partial = b""
        with contextlib.suppress(ValueError, IndexError):
            partial = bytes.fromhex(sent[4])
        watch = _Watch("pattern", skip_lines=int(sent[1]), cmark=sent[2] == "1",
                       partial=partial, partial_len=int(sent[3]) if partial else 0,
                       pattern=regex)
        f = _Follower(pane, int(sent[0]), watch)
        try:
            reason = f.follow(timeout, interval or 0.05)
            result = WaitResult(reason == "done", f.match,
                                "" if reason == "done" else reason, tail=f.tail(),
                                elapsed=round(time.monotonic() - f.began, 3))
        finally:
            f.close()
        if result.reason == "dead":
            result.exit_status = _dead_status(pane)
        return result
    screen = pane.sent.split(" ", 4)  # "line HISTORY CURSOR SKIP ANCHOR": no transcript
    if not whole_pane and len(screen) == 5 and screen[0] == "line" and all(
            p.isdigit() for p in screen[1:4]):
        return _wait_on_screen(pane, regex, timeout, lines, int(screen[1]) + int(screen[2]),
                               interval or 0.2, skip=int(screen[3]), anchor=screen[4])
    return _wait_on_screen(pane, regex, timeout, lines, None, interval or 0.2)


def run(code: str, *, timeout: float = 30.0, prompt: Optional[str] = None,
        max_output: int = 1 << 20, session: Optional[str] = None,
        socket: Optional[str] = None, socket_name: Optional[str] = None,
        target: Optional[str] = None) -> RunResult:
    """Send code, wait until the program is back at its prompt, return its output.

    ``output`` is exactly what the program printed: no echo, no prompt.
    ``exit_status`` is the shell command's own, 1 if Python raised (else 0),
    None when the program does not say (gdb, ``--prompt`` programs);
    ``timed_out`` and ``pane_died`` say why a run ended early (with the output
    so far). A run that cannot start (busy program, text left on the prompt
    line, another run going) raises TmuxsessError of kind ``busy``, having
    typed nothing.
    """
    began = time.monotonic()
    _seconds(timeout, "-T")
    _at_least(max_output, 0, "--max-output")
    pane, health = resolve(session, socket, socket_name, target)
    if health.status == "dead":
        raise _fail(_said(health, pane.label, "nothing was run"), "dead",
                    _transcript_hint(pane) or "read its screen: tmuxsess.py capture")
    if health.status != "healthy":
        raise _fail(_said(health, pane.label, "nothing was run"), "unhealthy")
    _check_text(code)  # refuse NUL before anything is typed
    prompt_re = _compile_prompt(prompt) if prompt else (
        _compile_prompt(pane.prompt) if pane.prompt else None)
    mode = _prompt_mode(pane, prompt)
    if not mode:
        raise _fail("tmuxsess does not know the prompt of %s" % pane.label, "usage",
                    "pass --prompt REGEX matching the program's prompt line")
    with _run_lock(pane, began + timeout), _transcript_for(pane) as following, \
            _gdb_block(pane, code) as block:
        if not following:
            raise _fail("%s already pipes its output elsewhere (pipe-pane); run cannot "
                        "follow it" % pane.label, "unhealthy", "use send -w, or capture")
        # Never type into a program that is still busy with something else, nor
        # after text someone left on its prompt line.
        if mode != "regex" or pane.transcript == "" or _size(pane.transcript):
            tail = _tail_bytes(pane.transcript)
            if not _at_prompt(tail, mode, prompt_re, pane.token):
                ready = _await_prompt(pane, mode, prompt_re,
                                      timeout - (time.monotonic() - began))
                if ready == "timeout":
                    raise _fail("%s is not at its prompt (busy, or waiting for input); "
                                "nothing was sent" % pane.label, "busy",
                                "let it finish (tmuxsess.py wait %s -p PATTERN), interrupt "
                                "it (tmuxsess.py send %s -k C-c), or if its prompt changed, "
                                "pass --prompt REGEX" % ((_target_flags(pane),) * 2))
                if ready != "done":
                    return _early(pane, ready, began)
                tail = _tail_bytes(pane.transcript)  # the prompt it waited for
            unsent = "" if mode == "regex" else _unsent_text(tail, pane.token)
            if unsent:
                raise _fail("%s has unsent text on its prompt line: %r; nothing was sent"
                            % (pane.label, unsent[-40:]), "busy",
                            "clear it: tmuxsess.py send %s -k C-u, or finish it: "
                            "tmuxsess.py send %s -c REST" % ((_target_flags(pane),) * 2))
        if block:
            units = ["source " + block]
        elif pane.type == "python-repl" and not prompt:
            # Typed as is only when it is one complete line with nothing that
            # readline takes for an editing key (tabs, control characters).
            typed = code.isprintable() and _python_line_is_complete(code)
            units = [code if typed else python_unit(code)]
        elif mode == "marks":
            units = [code[:-1] if code.endswith("\n") else code]
        else:
            units = code.split("\n")
            if len(units) > 1 and units[-1] == "":
                units.pop()
        outputs, status, reason = [], None, "done"
        for unit in units:
            remaining = timeout - (time.monotonic() - began)
            result = _exchange(pane, unit, mode, prompt_re, remaining, max_output)
            outputs.append(result[0])
            status, reason = result[1], result[2]
            if reason != "done":
                break
        if pane.registered:
            _touch(pane.session)
    output = "".join(outputs)
    elapsed = round(time.monotonic() - began, 3)
    if reason == "done":
        return RunResult(output, status, elapsed=elapsed,
                         truncated=output.startswith("[tmuxsess: "))
    if reason == "timeout":
        return RunResult(output, None, timed_out=True, elapsed=elapsed)
    return RunResult(output, _dead_status(pane), pane_died=True, elapsed=elapsed,
                     server_gone=reason == "server")


def _early(pane: Pane, reason: str, began: float) -> RunResult:
    elapsed = round(time.monotonic() - began, 3)
    return RunResult("", _dead_status(pane), pane_died=True, elapsed=elapsed,
                     server_gone=reason == "server")


@contextlib.contextmanager
def _gdb_block(pane: Pane, code: str) -> Iterator[str]:
    """Several lines for gdb as a private file, for one ``source FILE``; else "".

    Typed line by line, a block (define, python, commands ... end) is read at
    gdb's ">" prompt, which has no mark, and gdb stays in it if a line fails.
    """
    if pane.type != "debugger" or "\n" not in code.rstrip("\n"):
        yield ""
        return
    path = os.path.join(_state_subdir("tmp"), "block.%s.gdb" % _random_id(12))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(code.encode("utf-8", "surrogateescape"))
    except OSError as e:
        raise _fail("cannot write %s: %s" % (path, e.strerror), "registry")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _run_lock_path(server: Server, pane_id: str) -> str:
    """The file whose flock queues the runs on one pane, on any server."""
    where = os.path.abspath(server.socket) if server.socket else server.label
    key = hashlib.sha256(("%s\0%s" % (where, pane_id)).encode()).hexdigest()[:24]
    return os.path.join(state_dir(), "locks", key + ".lock")


@contextlib.contextmanager
def _run_lock(pane: Pane, deadline: float) -> Iterator[None]:
    """Hold the pane's run lock for a whole exchange; wait for it until ``deadline``.

    Two runs typing into one program at once would read each other's output.
    send takes no lock: C-c, or an answer to an input() a run waits on, must
    always get through.
    """
    _state_subdir("locks")
    with _flock(_run_lock_path(pane.server, pane.pane_id), deadline, lambda: _fail(
            "another run on %s is still going; nothing was run" % pane.label, "busy",
            "raise -T to queue up behind it, or interrupt it: tmuxsess.py send %s -k C-c"
            % _target_flags(pane))):
        yield


def _remove_run_lock(server: Server, pane_id: str) -> None:
    if pane_id:
        with contextlib.suppress(OSError):
            os.unlink(_run_lock_path(server, pane_id))


def _target_flags(pane: Pane) -> str:
    """How a command line names this pane, for hints."""
    if pane.registered and NAME_RE.match(pane.session):
        return "-s " + pane.session
    return " ".join(shlex.quote(a) for a in pane.server.args() + [
        "-t", pane.pane_id or pane.target])


def _await_prompt(pane: Pane, mode: str, prompt_re: Optional["re.Pattern[str]"],
                  timeout: float) -> str:
    began = time.monotonic()
    delay = 0.001
    while True:
        if _at_prompt(_tail_bytes(pane.transcript), mode, prompt_re, pane.token):
            return "done"
        if pane.server_pid and _process_state(pane.server_pid) != "running":
            return "server"
        if pane.pid and _process_state(pane.pid) != "running":
            return "dead"
        if time.monotonic() - began >= timeout:
            return "timeout"
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _exchange(pane: Pane, unit: str, mode: str, prompt_re: Optional["re.Pattern[str]"],
              timeout: float, max_output: int) -> Tuple[str, Optional[int], str]:
    """One line (or pasted block) in, its output out: (output, status, reason)."""
    payload = _check_text(unit)
    offset = _size(pane.transcript)
    cmark = pane.type == "shell" and mode == "marks"
    lines = 1 if cmark else payload.count(b"\n") + 1
    watch = _Watch("regex" if mode == "regex" else mode, skip_lines=lines, cmark=cmark,
                   pattern=prompt_re, max_output=max_output)
    f = _Follower(pane, offset, watch)
    try:
        record = "%d %d %d" % (offset, lines, int(cmark))
        _deliver(pane, payload, (), True, record if pane.type else "", 0, 0.1)
        reason = f.follow(max(timeout, 0.001))
        return f.output(), f.status, reason
    finally:
        f.close()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

# Exit codes per subcommand for each kind of failure; "lock" is 75 everywhere.
EXIT_CODES: Dict[str, Dict[str, int]] = {
    "create-session": {"usage": 1, "taken": 2, "tmux": 3, "no-server": 3,
                       "not-ready": 3, "registry": 4},
    "safe-send": {"send": 1, "tmux": 1, "timeout": 2, "unhealthy": 3, "usage": 4,
                  "target": 4, "registry": 4, "no-server": 3},
    "pane-health": {},
    "kill-session": {"usage": 3, "target": 2, "tmux": 2, "registry": 2},
    "run": {"dead": 125, "busy": 126, "usage": 126, "target": 126, "unhealthy": 126,
            "registry": 126, "tmux": 126, "send": 126, "no-server": 125},
}

OVERVIEW = """\
usage: tmuxsess.py COMMAND [options]   (tmuxsess.py COMMAND --help for more)

Drive interactive terminal programs in tmux, exactly.

pre-check   list-sessions (list, ls)    registered sessions and their status
            find-sessions (find)        tmux sessions on a socket, registered or not
create      create-session (create)     start a shell, Python, gdb or command
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

Example:  tmuxsess.py create -n calc --python && tmuxsess.py run -s calc -c '6*7'
"""


def _add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (highest first: -S/-L with -t, then -s, then "
                             "the only registered session)")
    g.add_argument("-S", "--socket", metavar="PATH", help="tmux socket path")
    g.add_argument("-L", "--socket-name", metavar="NAME", help="tmux socket name")
    g.add_argument("-t", "--target", metavar="TARGET", help="tmux target pane")
    g.add_argument("-s", "--session", metavar="NAME", help="registered session name")


def _target(a: argparse.Namespace) -> Dict[str, Any]:
    return {"session": a.session, "socket": a.socket, "socket_name": a.socket_name,
            "target": a.target}


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _when(text: str) -> str:
    t = _parse_time(text)
    return _ago(time.time() - t) + " ago" if t is not None else "-"


def _read_text(a: argparse.Namespace) -> Optional[str]:
    if getattr(a, "file", None) is not None:
        if a.command is not None:
            raise _fail("give -c TEXT or --file PATH, not both")
        try:
            if a.file == "-":
                if sys.stdin is None:  # started with <&-
                    raise _fail("standard input is closed: nothing to read for --file -")
                data = sys.stdin.buffer.read()
            else:
                with open(a.file, "rb") as f:
                    data = f.read()
        except OSError as e:
            raise _fail("cannot read %s: %s" % (a.file, e.strerror))
        return data.decode("utf-8", "surrogateescape")
    command: Optional[str] = a.command
    return command


def cmd_create(a: argparse.Namespace) -> int:
    kind, command = "shell", None
    if a.python:
        kind = "python-repl"
    elif a.gdb:
        kind = "debugger"
    elif a.cmd is not None:
        kind, command = "command", a.cmd
    env = {}
    for pair in a.env or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise _fail("--env wants KEY=VALUE, got %r" % pair)
        env[key] = value
    record = create_session(a.name, kind, command, socket=a.socket, window=a.window,
                            cwd=a.cwd, env=env, register=not a.no_register,
                            wait=not a.no_wait, ready_timeout=a.ready_timeout,
                            prompt=a.prompt)
    shown = {k: record.get(k) for k in ("name", "socket", "target", "pane_id", "type",
                                        "pid", "registered", "created_at", "transcript")}
    _print_json(shown)
    how = "-s %s" % a.name if record["registered"] else "-S %s -t %s" % (
        shlex.quote(record["socket"]), a.name)
    print("To watch it:  tmux -S %s attach -t %s" % (shlex.quote(record["socket"]), a.name),
          file=sys.stderr)
    print("To read it:   %s capture %s" % (_me(), how), file=sys.stderr)
    return 0


def _me() -> str:
    return shlex.quote(sys.argv[0]) if sys.argv and sys.argv[0] else "tmuxsess.py"


def cmd_list(a: argparse.Namespace) -> int:
    rows = list_sessions()
    alive = sum(1 for r in rows if r.status == "alive")
    if a.json:
        _print_json({"sessions": [asdict(r) for r in rows], "total": len(rows),
                     "alive": alive, "dead": len(rows) - alive})
        return 0
    if not rows:
        print("No sessions registered.")
    else:
        table = [("NAME", "SOCKET", "TARGET", "STATUS", "PID", "CREATED", "LAST-ACTIVE")]
        table += [(r.name, r.socket, r.target, r.status, str(r.pid or "-"),
                   _when(r.created_at), _when(r.last_active)) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print("Total: %d | Alive: %d | Dead: %d" % (len(rows), alive, len(rows) - alive))
    return 0


def cmd_health(a: argparse.Namespace) -> int:
    try:
        pane, health = resolve(**_target(a))
        label = pane.label
    except TmuxsessError as e:
        if e.kind != "target" or a.target is None:
            raise
        health, label = Health("missing", server_running=True), a.target
    if a.format == "text":
        print(health.sentence(label))
    else:
        _print_json(asdict(health))
    return HEALTH_EXIT[health.status]


def cmd_kill(a: argparse.Namespace) -> int:
    r = kill_session(dry_run=a.dry_run, **_target(a))
    verb = "would be" if a.dry_run else "was"
    done = [w for w, ok in (("killed", r["killed"]), ("deregistered", r["deregistered"]))
            if ok]
    if done:
        print("%s %s %s" % (r["name"], verb, " and ".join(done)))
    if a.verbose:
        print("%s: status %s, socket %s, killed=%s, deregistered=%s" % (
            r["name"], r["status"], r["socket"], r["killed"], r["deregistered"]),
            file=sys.stderr)
    if not done:
        why = {"server": "no tmux server runs on %s" % r["socket"],
               "missing": "tmux has no such session"}.get(r["status"], "tmux could not kill it")
        _error("nothing to kill: %s is not registered and %s" % (r["name"], why))
        return 2
    # A session that was never registered is done once killed; a dry run
    # exits as the real kill would.
    return 0 if len(done) == 2 or not r["registered"] else 1


def cmd_cleanup(a: argparse.Namespace) -> int:
    older = parse_duration(a.older_than) if a.older_than is not None else None
    idle = parse_duration(a.idle) if a.idle is not None else None
    removed = cleanup_sessions(all=a.all, older_than=older, idle=idle, dry_run=a.dry_run)
    if a.json:
        _print_json({"removed": removed, "dry_run": a.dry_run})
        return 0
    for item in removed:
        print("%s %s: %s%s" % ("would remove" if a.dry_run else "removed", item["name"],
                               item["reason"], "" if not item["killed"] else
                               " (would be killed)" if a.dry_run else " (killed)"))
    if not removed:
        print("Nothing to clean up.")
    return 0


def cmd_find(a: argparse.Namespace) -> int:
    found = find_sessions(a.socket, a.socket_name, a.all, a.query)
    if a.json:
        _print_json([asdict(f) for f in found])
    elif found:
        table = [("NAME", "SOCKET", "STATUS", "REGISTERED", "TYPE", "WINDOWS", "CREATED")]
        table += [(f.name, f.socket, f.status, "yes" if f.registered else "no",
                   f.type or "-", str(f.windows), _when(f.created_at)) for f in found]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    else:
        print("No tmux sessions found.", file=sys.stderr)
    return 0 if found else 1


def cmd_capture(a: argparse.Namespace) -> int:
    if a.transcript:
        for chunk in read_transcript(raw=a.raw or a.ansi, **_target(a)):
            sys.stdout.write(chunk)
        return 0
    if a.lines < 1:
        raise _fail("-n must be at least 1")
    sys.stdout.write(capture(lines=a.lines, all=a.all, ansi=a.ansi, **_target(a)))
    return 0


def cmd_repair(a: argparse.Namespace) -> int:
    r = repair()
    if a.json:
        _print_json(r)
    elif not r["corrupt"] and not r["missing"]:
        print("registry is fine (%d session(s)); nothing changed" % len(r["sessions"]))
    elif r["missing"] and not r["sessions"]:
        print("%s and no registered tmux session to rebuild it from; nothing changed"
              % r["problem"])
    else:
        print("%s\n%srebuilt from tmux with %d session(s): %s" % (
            r["problem"], "moved it to %s; " % r["moved_to"] if r["moved_to"] else "",
            len(r["sessions"]), " ".join(r["sessions"]) or "-"))
    return 0


def cmd_attach(a: argparse.Namespace) -> int:
    argv = attach_command(**_target(a))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(" ".join(shlex.quote(x) for x in argv))
        print("tmuxsess: not on a terminal; run the command above to attach",
              file=sys.stderr)
        return 0
    env = dict(os.environ)
    env.pop("TMUX", None)  # attaching from inside tmux nests, which works
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def cmd_skill(a: argparse.Namespace) -> int:
    text = skill(a.tool)
    if a.write is None:
        sys.stdout.write(text)
        return 0
    path = os.path.join(a.write, "SKILL.md")
    if os.path.exists(a.write) and not os.path.isdir(a.write):
        raise _fail("%s is not a directory" % a.write, "usage",
                    "--write takes the skill's directory; SKILL.md goes inside it")
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8") as f:
            if f.read() != text and not a.force:
                raise _fail("%s exists and differs; not overwriting it" % path, "usage",
                            "add --force to replace it")
    try:
        os.makedirs(a.write, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise _fail("cannot write %s: %s" % (path, e.strerror))
    print("wrote %s" % path, file=sys.stderr)
    return 0


def cmd_send(a: argparse.Namespace) -> int:
    text = _read_text(a)
    r = send(text, a.keys or (), enter=not a.literal, multiline=a.multiline,
             wait=a.wait, fixed=a.fixed, timeout=a.timeout, retries=a.retries,
             interval=a.interval, verbose=a.verbose, **_target(a))
    if a.json:
        _print_json(r)
    elif a.verbose:
        print("sent %d bytes%s to %s" % (r["bytes"], " and keys " + " ".join(r["keys"])
                                         if r["keys"] else "", r["session"] or r["pane_id"]),
              file=sys.stderr)
    if a.wait is None or r.get("found"):
        return 0
    if r["reason"] == "timeout":
        _error("pattern %r not seen within %gs" % (a.wait, a.timeout),
               _tail_hint(r.get("tail", "")))
        return 2
    _error(_gone_message(r["reason"], r.get("exit_status"), a), _tail_hint(r.get("tail", "")))
    return 3


def _gone_message(reason: str, status: Optional[int],
                  a: Optional[argparse.Namespace] = None) -> str:
    if reason == "dead":
        with contextlib.suppress(TmuxsessError):
            if a is not None and status is None:  # killed by a signal? health names it
                health = pane_health(**_target(a))
                if health.status == "dead":
                    return "the program %s while waiting" % health.ended
        return "the program exited%s while waiting" % (
            "" if status is None else " with status %d" % status)
    if reason == "server":
        return "the tmux server went away while waiting"
    return "the pane is %s" % reason


def _timeout_hint(output: str) -> str:
    """Why a run saw no prompt: a program still busy, or a prompt without marks.

    After exec bash, ssh, su or a new PROMPT_COMMAND the shell's prompt no
    longer carries the tool's marks, and every run waits out -T.
    """
    last = output.rsplit("\n", 1)[-1].rstrip()
    if 0 < len(last) <= 80 and last[-1] in "$#%>":
        return ("%r looks like a prompt without tmuxsess's marks (exec, ssh, su, a new "
                "PROMPT_COMMAND): pass --prompt REGEX matching it; if the program is "
                "still running instead, send -k C-c interrupts it" % last)
    return ("the program is still running: send -k C-c to interrupt it; or, if it "
            "shows a prompt of its own (exec, ssh, su), pass --prompt REGEX matching it")


def _tail_hint(tail: str) -> str:
    return "last lines:\n" + tail if tail.strip() else ""


def cmd_wait(a: argparse.Namespace) -> int:
    r = wait_for_text(a.pattern, fixed=a.fixed, timeout=a.timeout, interval=a.interval,
                      lines=a.lines, whole_pane=a.whole_pane, **_target(a))
    if a.json:
        _print_json(asdict(r))
    if r.found:
        return 0
    if not a.json:
        if r.reason == "timeout":
            _error("pattern %r not seen within %gs" % (a.pattern, a.timeout),
                   _tail_hint(r.tail))
        else:
            _error(_gone_message(r.reason, r.exit_status, a), _tail_hint(r.tail))
    return 1


def cmd_run(a: argparse.Namespace) -> int:
    code = _read_text(a)
    if code is None:
        raise _fail("give -c CODE or --file PATH")
    r = run(code, timeout=a.timeout, prompt=a.prompt, max_output=a.max_output,
            **_target(a))
    if a.json:
        _print_json({"output": r.output, "exit_status": r.exit_status,
                     "timed_out": r.timed_out, "elapsed": r.elapsed,
                     "pane_died": r.pane_died, "truncated": r.truncated,
                     "server_gone": r.server_gone})
    else:
        sys.stdout.write(r.output)
        sys.stdout.flush()
    if r.timed_out:
        if not a.json:
            _error("no prompt within %gs; output so far is above" % a.timeout,
                   _timeout_hint(r.output))
        return 124
    if r.pane_died:
        if not a.json:
            _error(_gone_message("server" if r.server_gone else "dead", r.exit_status, a))
        return 125
    return r.exit_status or 0


def _error(message: str, hint: str = "") -> None:
    print("tmuxsess: error: " + message, file=sys.stderr)
    if hint:
        print("hint: " + hint, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets the same one-line error as the rest."""

    def error(self, message: str) -> "NoReturn":
        _error("%s: %s" % (self.prog, message), "see: %s --help" % self.prog)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="tmuxsess.py", formatter_class=fmt,
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version="tmuxsess " + __version__)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")

    def command(name: str, aliases: List[str], func: Callable[[argparse.Namespace], int],
                help: str, examples: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, aliases=aliases, help=help, description=help,
                           epilog="examples:\n" + examples, formatter_class=fmt)
        p.set_defaults(func=func, name_=name, parser_=p)
        return p

    p = command("create-session", ["create"], cmd_create,
                "Start a program in a new detached tmux session and register it; "
                "returns once it shows its first prompt.",
                "  tmuxsess.py create -n calc --python\n"
                "  tmuxsess.py create -n build --shell -c ~/src/app -e CI=1\n"
                "  tmuxsess.py create -n db --cmd 'psql mydb' --prompt '=[#>] $'\n")
    p.add_argument("-n", "--name", required=True, help="session name (A-Z a-z 0-9 _ -)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--shell", action="store_true", help="bash (the default)")
    kind.add_argument("--python", action="store_true", help="Python REPL (python3 -q)")
    kind.add_argument("--gdb", action="store_true", help="gdb, quiet, no pagination")
    kind.add_argument("--cmd", metavar="COMMAND", help="any command, run by $SHELL -c")
    p.add_argument("--prompt", metavar="REGEX",
                   help="the program's prompt line (for --cmd): readiness and run use it")
    p.add_argument("-S", "--socket", metavar="PATH", help="tmux socket (default: %s)"
                   % "<socket dir>/claude.sock")
    p.add_argument("-w", "--window", default="shell", help="window name (default: shell)")
    p.add_argument("-c", "--cwd", metavar="DIR", help="working directory")
    p.add_argument("-e", "--env", action="append", metavar="K=V", help="environment (repeat)")
    p.add_argument("--no-register", action="store_true", help="do not add it to the registry")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for a prompt")
    p.add_argument("--ready-timeout", type=float, default=15.0, metavar="SEC",
                   help="how long to wait for the first prompt (default 15)")

    p = command("list-sessions", ["list", "ls"], cmd_list,
                "List registered sessions with their status (one tmux query per socket).",
                "  tmuxsess.py list\n  tmuxsess.py ls --json | jq '.sessions[].name'\n")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("safe-send", ["send"], cmd_send,
                "Send text exactly as given (or keys with -k), optionally waiting for "
                "a pattern in the output that follows.",
                "  tmuxsess.py send -s calc -c 'x = 41;' -w '>>>'\n"
                "  tmuxsess.py send -s calc -k C-c\n"
                "  tmuxsess.py send -s calc -m --file block.py -w '>>> $' -T 60\n")
    _add_target(p)
    p.add_argument("-c", "--command", metavar="TEXT", help="literal text; Enter follows")
    p.add_argument("--file", metavar="PATH", help="read the text from a file (- = stdin)")
    p.add_argument("-k", "--keys", nargs="+", metavar="KEY", help="tmux key names: C-c Up Enter")
    p.add_argument("-l", "--literal", action="store_true", help="do not press Enter after")
    p.add_argument("-m", "--multiline", action="store_true",
                   help="paste as one block (Python: run as one unit)")
    p.add_argument("-w", "--wait", metavar="PATTERN", help="wait for this in new output")
    p.add_argument("-F", "--fixed", action="store_true", help="PATTERN is a fixed string")
    p.add_argument("-T", "--timeout", type=float, default=30.0, metavar="SEC",
                   help="how long -w waits (default 30)")
    p.add_argument("-r", "--retries", type=int, default=3, metavar="N",
                   help="retries of a failed delivery (default 3)")
    p.add_argument("-i", "--interval", type=float, default=0.5, metavar="SEC",
                   help="retry backoff base (default 0.5)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--json", action="store_true")

    p = command("wait-for-text", ["wait"], cmd_wait,
                "Wait for a pattern in the output since the last send (or in the whole "
                "pane); returns early if the program exits.",
                "  tmuxsess.py wait -s calc -p '^>>> ' -T 15\n"
                "  tmuxsess.py wait -s build -F -p 'BUILD OK' -T 600\n")
    _add_target(p)
    p.add_argument("-p", "--pattern", required=True, help="Python regex (multiline)")
    p.add_argument("-F", "--fixed", action="store_true", help="fixed string, not a regex")
    p.add_argument("-T", "--timeout", type=float, default=15.0, metavar="SEC",
                   help="how long to wait (default 15)")
    p.add_argument("-i", "--interval", type=float, metavar="SEC", help="longest poll "
                   "interval (default 0.05 on a transcript, 0.2 on the screen)")
    p.add_argument("-l", "--lines", type=int, default=1000, help="pane lines searched "
                   "with --whole-pane (default 1000)")
    p.add_argument("--whole-pane", action="store_true", help="search the whole pane, "
                   "old output included")
    p.add_argument("--json", action="store_true")

    p = command("pane-health", ["health"], cmd_health,
                "Report whether a session's pane is healthy; the exit code says which.",
                "  tmuxsess.py health -s calc --format text\n"
                "  tmuxsess.py health -s calc && tmuxsess.py run -s calc -c 'go()'\n")
    _add_target(p)
    p.add_argument("--format", choices=("json", "text"), default="json")

    p = command("kill-session", ["kill"], cmd_kill,
                "Kill a session's tmux session and remove its registry entry.",
                "  tmuxsess.py kill -s calc\n  tmuxsess.py kill -s calc --dry-run\n")
    _add_target(p)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")

    p = command("cleanup-sessions", ["cleanup"], cmd_cleanup,
                "Remove dead, missing and zombie sessions from the registry; --all, "
                "--older-than and --idle widen the selection (alive ones are killed).",
                "  tmuxsess.py cleanup --dry-run\n  tmuxsess.py cleanup --idle 2h\n"
                "  tmuxsess.py cleanup --all\n")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--all", action="store_true")
    p.add_argument("--older-than", metavar="DUR", help="created longer ago (30s 15m 2h 1d)")
    p.add_argument("--idle", metavar="DUR", help="no activity for longer")
    p.add_argument("--json", action="store_true")

    p = command("find-sessions", ["find"], cmd_find,
                "List tmux sessions on a server, registered or not.",
                "  tmuxsess.py find --all\n  tmuxsess.py find -S /tmp/my.sock -q data\n")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-L", "--socket-name", metavar="NAME")
    g.add_argument("-S", "--socket", metavar="PATH")
    g.add_argument("-A", "--all", action="store_true", help="every socket in the socket dir")
    p.add_argument("-q", "--query", metavar="TEXT", help="names containing TEXT")
    p.add_argument("--json", action="store_true")

    p = command("run", [], cmd_run,
                "Send code, wait for the prompt, print exactly the output; exit with the "
                "command's status (shell), 1 if Python raised, 124 timeout, 125 pane died, "
                "126 could not run.",
                "  tmuxsess.py run -s calc -c 'sum(range(10))'\n"
                "  tmuxsess.py run -s sh -c 'make test'; echo $?\n"
                "  tmuxsess.py run -s calc --file analysis.py -T 300 --json\n")
    _add_target(p)
    p.add_argument("-c", "--command", metavar="CODE")
    p.add_argument("--file", metavar="PATH", help="read the code from a file (- = stdin)")
    p.add_argument("-T", "--timeout", type=float, default=30.0, metavar="SEC",
                   help="how long to wait for the prompt (default 30)")
    p.add_argument("--prompt", metavar="REGEX", help="the program's prompt line")
    p.add_argument("--max-output", type=int, default=1 << 20, metavar="BYTES",
                   help="keep at most this much output (default 1 MiB; 0: all)")
    p.add_argument("--json", action="store_true")

    p = command("capture", [], cmd_capture,
                "Print the pane's text (works on a dead pane), or with --transcript "
                "everything the program wrote since create.",
                "  tmuxsess.py capture -s calc -n 50\n"
                "  tmuxsess.py capture -s calc --transcript > calc.log\n")
    _add_target(p)
    p.add_argument("-n", "--lines", type=int, default=200, help="last N lines (default 200)")
    p.add_argument("--all", action="store_true", help="all history")
    p.add_argument("--ansi", action="store_true", help="keep colours and attributes")
    p.add_argument("--transcript", action="store_true", help="everything since create")
    p.add_argument("--raw", action="store_true", help="with --transcript: bytes as written")

    p = command("repair", [], cmd_repair,
                "Move a corrupt registry aside and rebuild it from the live tmux "
                "sessions in the socket dir; a good registry is left untouched.",
                "  tmuxsess.py repair\n  tmuxsess.py repair --json\n"
                "  tmuxsess.py list || tmuxsess.py repair    # list names a corrupt file\n")
    p.add_argument("--json", action="store_true")

    p = command("attach", [], cmd_attach,
                "Attach to a session in tmux (prints the command when not on a terminal).",
                "  tmuxsess.py attach -s calc\n"
                "  tmuxsess.py attach -S /tmp/my.sock -t work    # a session it did not create\n")
    _add_target(p)

    p = command("skill", [], cmd_skill,
                "Print a SKILL.md that teaches an agent to use this tool (or write it "
                "into a skill directory).",
                "  tmuxsess.py skill\n"
                "  tmuxsess.py skill --write ~/.claude/skills/tmux\n"
                "  tmuxsess.py skill --tool ./tools/tmuxsess.py --write .claude/skills/tmux\n")
    p.add_argument("--write", metavar="DIR", help="write DIR/SKILL.md instead of printing")
    p.add_argument("--tool", metavar="PATH",
                   help="how SKILL.md names the tool (default: this file's absolute path)")
    p.add_argument("--force", action="store_true", help="replace a SKILL.md that differs")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = next((x for x in argv if not x.startswith("-")), "")
    if sys.stderr is None:  # started with 2>&-: the user wants no diagnostics
        sys.stderr = open(os.devnull, "w")
    if sys.stdout is None:  # started with >&-: nowhere to print results, so do nothing
        _error("standard output is closed; nothing was done", "discard it instead: >/dev/null")
        return _usage_code(name)
    if not argv:
        sys.stdout.write(OVERVIEW)
        return 0
    parser = build_parser()
    try:
        words, held = _dash_values(parser, argv)
        a, extra = parser.parse_known_args(words)
        if extra:  # argparse would blame the top parser: point at the subcommand's help
            getattr(a, "parser_", parser).error("unrecognized arguments: " + " ".join(extra))
        _restore_values(a, held)
    except SystemExit as e:
        if e.code == 0:
            return 0
        return _usage_code(name)
    if not getattr(a, "func", None):
        sys.stdout.write(OVERVIEW)
        return 1
    try:
        status: int = a.func(a)
        return status
    except TmuxsessError as e:
        _error(e.message, e.hint)
        if e.kind == "lock":
            return 75
        return EXIT_CODES.get(a.name_, {}).get(e.kind, 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dash_values(parser: argparse.ArgumentParser, argv: List[str]
                 ) -> Tuple[List[str], Dict[str, str]]:
    """Let an option's value start with "-": ``-c -1;`` sends the text ``-1;``.

    argparse would read such a value as another option (and drops a value of
    ``--``); people and agents pass whatever text they have, so the word after
    a value-taking option is its value. Text values travel as placeholders
    (argv cannot hold NUL, so none collides) put back by ``_restore_values``.
    """
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


def _usage_code(name: str) -> int:
    aliases = {"create": "create-session", "send": "safe-send", "kill": "kill-session"}
    name = aliases.get(name, name)
    return {"create-session": 1, "safe-send": 4, "kill-session": 3, "run": 126}.get(name, 1)


if __name__ == "__main__":
    with contextlib.suppress(AttributeError):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outside a command, e.g. while parsing arguments
        sys.exit(130)
