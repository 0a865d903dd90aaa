"""Tests for tmuxsess.py against a real tmux.

Sections, in order: the harness; lifecycle (create, list, health, kill,
cleanup, find, capture, attach, targets, races, the seed's workflows);
talking (send, wait, run, hostile texts, foreign panes, transcripts);
robustness (corruption and repair, hostile names, planted paths, faults,
concurrency, crash safety); documentation (README, skill, help); stress.

Every test gets its own temp dir holding its state dir, socket dir,
TMUX_TMPDIR and HOME, and kills every tmux server whose socket lies under
it, even when it fails. ``cli()`` runs the command line in-process (fast);
``exe()`` runs the real file where the process itself matters.

Run:  python3 test_tmuxsess.py --jobs 4        (make test: classes in 4 processes)
      python3 -m unittest -v test_tmuxsess      (all in one process)
      TMUXSESS_STRESS=1 python3 -m unittest -v test_tmuxsess.StressTest
"""

import ast
import atexit
import collections
import concurrent.futures
import contextlib
import copy
import fcntl
import glob
import io
import json
import math
import os
import pwd
import queue
import random
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "tmuxsess.py")
sys.path.insert(0, HERE)
import tmuxsess  # noqa: E402


# ===========================================================================
# Harness: each test has its own state dir, socket dir and tmux servers, all
# removed afterwards; the command line runs in-process or as the real file.
# ===========================================================================


def needs(program):
    return unittest.skipUnless(shutil.which(program), "%s is not installed" % program)


def wait_until(predicate, timeout=20.0, what="condition"):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def kill_servers(top):
    """Kill every tmux server whose socket lies under ``top``."""
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            try:
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    continue
                subprocess.run(["tmux", "-S", path, "kill-server"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except OSError:
                pass


def proc_stat(pid):
    """/proc/PID/stat from field 3 (state) on, as bytes; [] for no such process."""
    try:
        return read_bytes("/proc/%d/stat" % pid).rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_runs(pid):
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    return proc_stat(pid)[:1] not in ([], [b"Z"], [b"X"])


def children_of(pid):
    """The pids of the processes whose parent is ``pid``."""
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and proc_stat(int(e))[1:2] == [b"%d" % pid]]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def is_private_regular(path):
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


# Runs a command and writes its peak RSS (KiB) to a file. A process started by
# fork+exec from this big test process would report this process's size as
# its own peak (Linux keeps the pre-exec high-water mark), so a small wrapper
# starts it and reads RUSAGE_CHILDREN.
RSS_WRAPPER = """\
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc if rc >= 0 else 128 - rc)
"""

# What peak() measured: exit code, path of the stdout file, stderr, peak RSS in
# KiB, seconds.
Peak = collections.namedtuple("Peak", "rc path err kib seconds")


# A program whose main thread ends while the process lives on: a zombie leader.
ZOMBIE_PY = """\
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(600,)).start()
print("zombie-leader", flush=True)
ctypes.CDLL(None).pthread_exit(None)  # the main thread ends; the process lives on
"""

# A program that records every byte it reads from its terminal. Raw mode, so the
# line discipline transforms nothing (no CR->LF, no 4 KB line limit, no ^C signal,
# no echo): the file holds exactly the bytes tmux wrote into the pane.
RECORDER = r'''
import os, sys, tty
tty.setraw(0)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
os.write(1, b"REC> ")
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    os.write(fd, data)
'''


_SHARED_CACHE = []  # this process's cache dir for the tool's bytecode


def shared_cache():
    """A cache dir for every test of the run: the tool is compiled once, as for
    a user who runs it again and again. The process that made it (the runner
    of ``make test``, or a lone unittest process) removes it when it exits; the
    class processes of a run get it in TMUXSESS_TEST_CACHE."""
    if not _SHARED_CACHE:
        cache = os.environ.get("TMUXSESS_TEST_CACHE", "")
        if not cache:
            cache = tempfile.mkdtemp(prefix="tmuxsess-cache-")
            os.environ["TMUXSESS_TEST_CACHE"] = cache
            atexit.register(shutil.rmtree, cache, True)
        _SHARED_CACHE.append(cache)
    return _SHARED_CACHE[0]


def tool_argv(args, env):
    """(argv, env) for subprocess: ``./tmuxsess.py ARGS`` as a user runs it, with
    this interpreter and the run's bytecode cache."""
    env = dict(os.environ if env is None else env)
    env.setdefault("TMUXSESS_PYTHON", sys.executable)
    env.setdefault("TMUXSESS_CACHE_DIR", shared_cache())
    return [TOOL] + [str(a) for a in args], env


class TmuxTestCase(unittest.TestCase):
    """Isolated dirs per test; every server started under them is killed."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tmuxsess-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(kill_servers, self.tmp)
        self.state = os.path.join(self.tmp, "state")
        self.sockets = os.path.join(self.tmp, "sock")
        self.socket = os.path.join(self.sockets, "claude.sock")
        self.reg_path = os.path.join(self.state, ".sessions.json")
        self.lock_path = os.path.join(self.state, ".sessions.lock")
        # TMUX_TMPDIR keeps tmux's default server and -L sockets in here too. An
        # empty HOME: shells and tmux servers the tests start themselves read no
        # user startup files (a ~/.bashrc may take seconds, or hang on a lock a
        # killed shell left) and write no histories into the user's home.
        self.env = dict(os.environ, TMUXSESS_STATE_DIR=self.state,
                        CLAUDE_TMUX_SOCKET_DIR=self.sockets,
                        TMUX_TMPDIR=os.path.join(self.tmp, "tmux-default"),
                        HOME=os.path.join(self.tmp, "home"))
        for name in ("TMUX", "TMUX_PANE", "TMUXSESS_TMUX", "TMUXSESS_LOCK_TIMEOUT",
                     "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            self.env.pop(name, None)
        os.mkdir(self.env["TMUX_TMPDIR"], 0o700)
        os.mkdir(self.env["HOME"], 0o700)
        patcher = mock.patch.dict(os.environ, self.env, clear=True)
        patcher.start()
        self.addCleanup(patcher.stop)
        # The module's functions use a default engine built from the environment
        # the first time; each test builds its own from the test's environment.
        engine = mock.patch.object(tmuxsess, "_default", None)
        engine.start()
        self.addCleanup(engine.stop)

    # -- the command line --------------------------------------------------
    def cli(self, *args, input="", env=None):
        """The command line, run by ``tmuxsess.main`` in this process.

        Same parsing, output and exit code as the executable, without its
        0.15 s of interpreter start-up; output is decoded as a child's would
        be. It swaps sys.std* and os.environ, so it runs on the main thread
        only: ``exe`` runs the real file (threads, signals, argv bytes, hangs).
        """
        self.assertIs(threading.current_thread(), threading.main_thread(), "use exe()")
        argv = [str(a) for a in args]
        stdin = io.TextIOWrapper(io.BytesIO((input or "").encode()), encoding="utf-8")
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        with mock.patch.dict(os.environ, env or {}, clear=env is not None), \
                mock.patch.multiple(sys, argv=[TOOL] + argv, stdin=stdin, stdout=out,
                                    stderr=err):
            code = tmuxsess.main(argv)
        texts = []
        for stream in (out, err):
            stream.flush()  # decoded as universal_newlines=True decodes a child's
            texts.append(io.TextIOWrapper(io.BytesIO(stream.buffer.getvalue()),
                                          encoding="utf-8").read())
        return subprocess.CompletedProcess(["tmuxsess.py"] + argv, code, *texts)

    def exe(self, *args, input="", env=None, timeout=60):
        """The real executable, run as a user would (in the test's os.environ unless
        ``env`` is given); returns CompletedProcess with text."""
        argv, env = tool_argv(args, env)
        return subprocess.run(argv, input=input, env=env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)

    def ok(self, *args, exe=False, **kw):
        r = (self.exe if exe else self.cli)(*args, **kw)
        self.assertEqual(r.returncode, 0, "%s failed:\n%s%s" % (args, r.stdout, r.stderr))
        return r

    def fails(self, code, *args, error=True, exe=False, **kw):
        """Expect exit ``code`` and (with ``error``) the one-line error, no traceback."""
        r = (self.exe if exe else self.cli)(*args, **kw)
        self.assertEqual(r.returncode, code, "%s:\n%s%s" % (args, r.stdout, r.stderr))
        self.assertNoTraceback(r)
        if error:
            self.assertOneLineError(r.stderr)
        return r

    def spawn(self, argv, **kw):
        """A background process, killed and reaped at cleanup even if the test fails."""
        p = subprocess.Popen(argv, **kw)
        self.addCleanup(self._reap, p)
        return p

    def _reap(self, p):
        if p.poll() is None:
            p.kill()
        p.communicate()

    def popen(self, *args, **kw):
        """The executable in the background; text pipes unless ``kw`` says otherwise."""
        for key, value in (("stdout", subprocess.PIPE), ("stderr", subprocess.PIPE),
                           ("universal_newlines", True)):
            kw.setdefault(key, value)
        argv, kw["env"] = tool_argv(args, kw.get("env"))
        return self.spawn(argv, **kw)

    def has_open(self, pid, path):
        """Whether process ``pid`` has ``path`` open (a follower is reading it)."""
        fd_dir = "/proc/%d/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(os.path.join(fd_dir, fd)) == path:
                        return True
        except OSError:
            pass
        return False

    def follower(self, transcript, *args, **kw):
        """``popen(*args)`` of a command that follows ``transcript``, once it does."""
        p = self.popen(*args, **kw)  # sh execs Python: the process that reads it
        wait_until(lambda: self.has_open(p.pid, transcript), 20,
                   "%s to follow the transcript" % args[0])
        return p

    def peak(self, *args):
        """Run the executable with stdout into a file and measure its peak RSS."""
        path = os.path.join(self.tmp, "stdout-%d" % len(os.listdir(self.tmp)))
        began = time.monotonic()
        with open(path, "wb") as out, tempfile.TemporaryFile() as err:
            argv = [sys.executable, TOOL] + [str(a) for a in args]
            p = self.spawn([sys.executable, "-S", "-c", RSS_WRAPPER, path + ".rss"] + argv,
                           stdout=out, stderr=err, start_new_session=True)
            try:
                p.wait(120)
            finally:
                if p.returncode is None:  # a hang must not hang the suite
                    with contextlib.suppress(OSError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        self.assertNotIn("Traceback", stderr)
        with open(path + ".rss") as f:
            return Peak(p.returncode, path, stderr, int(f.read()), time.monotonic() - began)

    def create(self, name, *flags):
        """create-session through the command line; returns its JSON record."""
        return json.loads(self.ok("create", "-n", name, *flags).stdout)

    def assertNoTraceback(self, r):
        self.assertNotIn("Traceback", r.stderr)

    def assertOneLineError(self, err, *needles):
        """``tmuxsess: error: ...`` plus at most a hint line, and no traceback."""
        self.assertNotIn("Traceback", err)
        lines = err.rstrip("\n").split("\n")
        self.assertTrue(lines[0].startswith("tmuxsess: error: "), err)
        self.assertLessEqual(len(lines), 2, err)
        if len(lines) == 2:
            self.assertTrue(lines[1].startswith("hint: "), err)
        for needle in needles:
            self.assertIn(needle, lines[0])

    # -- sessions through the API ------------------------------------------
    def api_create(self, name, kind="shell", **kw):
        kw.setdefault("ready_timeout", 30)  # generous: other tests load the machine
        return tmuxsess.create_session(name, kind, **kw)

    def health(self, name):
        return tmuxsess.pane_health(session=name)

    def wait_status(self, name, status, timeout=20.0):
        return wait_until(lambda: self.health(name).status == status and self.health(name),
                          timeout, "%s to be %s" % (name, status))

    def make_dead(self, name, code=7):
        """A Python REPL whose program exited with ``code``."""
        self.api_create(name, "python-repl")
        tmuxsess.send("raise SystemExit(%d)" % code, session=name)
        return self.wait_status(name, "dead")

    def make_zombie(self, name):
        """A pane whose program's main thread is a zombie while the pane lives."""
        script = self.script("zombie.py", ZOMBIE_PY)
        self.api_create(name, "command", command="exec %s %s" % (sys.executable, script),
                        wait=False)
        return self.wait_status(name, "zombie")

    def script(self, name, text):
        """A file ``name`` in the temp dir holding ``text``; returns its path."""
        path = os.path.join(self.tmp, name)
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(text)
        return path

    def screen(self, name):
        return tmuxsess.capture(session=name, lines=60)

    def recorder(self, name):
        """A --cmd session whose program appends every byte it reads to a file."""
        out = os.path.join(self.tmp, name + ".rec")
        open(out, "wb").close()
        cmd = " ".join(shlex.quote(x) for x in (
            sys.executable, self.script("recorder.py", RECORDER), out))
        self.api_create(name, "command", command=cmd, prompt=r"REC> $")
        return out

    def assertReceived(self, path, expected, timeout=20):
        """The recorder at ``path`` got exactly ``expected`` (waits for that many bytes)."""
        try:
            wait_until(lambda: os.path.getsize(path) >= len(expected), timeout,
                       "recorded bytes")
        except AssertionError:
            pass  # the comparison below says what is missing
        got = read_bytes(path)
        if got != expected:
            i = next((k for k in range(min(len(got), len(expected)))
                      if got[k] != expected[k]), min(len(got), len(expected)))
            self.fail("received bytes differ at %d of %d (got %d):\n sent %r\n  got %r" % (
                i, len(expected), len(got), expected[max(0, i - 40):i + 40],
                got[max(0, i - 40):i + 40]))

    # -- what is on disk and in tmux ---------------------------------------
    def registry(self):
        with open(self.reg_path) as f:
            return json.load(f)

    def registry_bytes(self):
        """The registry file's bytes, None when there is none."""
        try:
            return read_bytes(self.reg_path)
        except FileNotFoundError:
            return None

    def edit_registry(self, change):
        doc = self.registry()
        change(doc)
        write_bytes(self.reg_path, json.dumps(doc).encode())

    def transcripts(self):
        try:
            return sorted(os.listdir(os.path.join(self.state, "transcripts")))
        except FileNotFoundError:
            return []

    def state_files(self):
        """Every file under the state dir, as paths relative to it."""
        found = []
        for root, _dirs, files in os.walk(self.state):
            for name in files:
                found.append(os.path.relpath(os.path.join(root, name), self.state))
        return sorted(found)

    def tmux(self, *args, socket=None):
        return subprocess.run(["tmux", "-S", socket or self.socket] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)

    def tmux_sessions(self, socket=None):
        """Names of the sessions on a server, sorted; [] when it is not running."""
        r = self.tmux("list-sessions", "-F", "#{session_name}", socket=socket)
        return sorted(r.stdout.split()) if r.returncode == 0 else []

    def alive(self, name, socket=None):
        return self.tmux("has-session", "-t", "=" + name, socket=socket).returncode == 0

    def logging_tmux(self):
        """A tmux that logs its arguments: (env with TMUXSESS_TMUX set, calls())."""
        log = os.path.join(self.tmp, "tmux-calls.log")
        wrapper = self.script("logging-tmux", '#!/bin/sh\necho "$*" >> %s\nexec %s "$@"\n' % (
            shlex.quote(log), shlex.quote(shutil.which("tmux"))))
        os.chmod(wrapper, 0o755)

        def calls():
            if not os.path.exists(log):
                return []
            with open(log) as f:
                lines = f.read().splitlines()
            # Every client asks for UTF-8 (see test_a_caller_in_the_c_locale...).
            for line in lines:
                self.assertTrue(line.startswith("-u "), line)
            return [line[3:] for line in lines]
        return dict(self.env, TMUXSESS_TMUX=wrapper), calls


class HarnessTest(TmuxTestCase):
    def test_python_session_round_trip_through_the_executable(self):
        rec = self.create("py", "--python")
        self.assertEqual(rec["type"], "python-repl")
        r = self.ok("run", "-s", "py", "-c", "print(6*7)", exe=True)
        self.assertEqual(r.stdout, "42\n")
        self.ok("kill", "-s", "py", exe=True)
        self.assertEqual(self.registry()["sessions"], {})

    def test_no_process_of_the_tool_outlives_its_command(self):
        tools = os.path.join(self.tmp, "tools")
        os.mkdir(tools)
        copy = os.path.join(tools, "tmuxsess.py")
        shutil.copy(TOOL, copy)
        env = dict(self.env, TMUXSESS_PYTHON=sys.executable, TMUXSESS_CACHE_DIR=shared_cache())
        for args in (["create", "-n", "py", "--python"], ["run", "-s", "py", "-c", "print(1)"],
                     ["send", "-s", "py", "-c", "x = 2", "-w", ">>>"],
                     ["wait", "-s", "py", "-p", ">>>", "--whole-pane"], ["list"],
                     ["health", "-s", "py"], ["capture", "-s", "py"], ["kill", "-s", "py"]):
            r = subprocess.run([copy] + args, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
            self.assertEqual(r.returncode, 0, (args, r.stderr))
            self.assertEqual(processes_mentioning(tools), [], args)

    def test_in_process_cli_says_what_the_executable_says(self):
        self.api_create("sh")
        # Nothing here depends on the clock (list's table shows ages); run waits
        # for the prompt, so the screen capture sees is the same for both.
        for args in (["--version"], ["list", "--json"], ["health", "-s", "sh"],
                     ["health", "-s", "x"], ["create", "-n", "a:b"],
                     ["send", "-s", "sh", "-c", "-1;", "-T", "x"],
                     ["send", "-s", "sh", "--file", "-", "-w", "^from-stdin$"],
                     ["run", "-s", "sh", "-c", "printf 'a\\r\\nb\\n'; (exit 3)"],
                     ["capture", "-s", "sh", "-n", "3"]):
            with self.subTest(args=args):
                want = self.exe(*args, input="echo from-stdin\n")
                got = self.cli(*args, input="echo from-stdin\n")
                self.assertEqual((got.returncode, got.stdout, got.stderr),
                                 (want.returncode, want.stdout, want.stderr))

    def test_logging_tmux_sees_every_call(self):
        env, calls = self.logging_tmux()
        self.api_create("sh")
        self.assertEqual(calls(), [])
        self.ok("health", "-s", "sh", env=env)
        seen = len(calls())
        self.assertGreater(seen, 0)
        # Set in os.environ, it reaches new engines, cli() and exe() alike; the
        # default engine read the environment once, when api_create used it.
        os.environ.update(env)
        tmuxsess.pane_health(session="sh")
        self.assertEqual(len(calls()), seen)
        tmuxsess.Engine().pane_health(session="sh")
        self.assertGreater(len(calls()), seen)
        seen = len(calls())
        self.ok("health", "-s", "sh")
        self.assertGreater(len(calls()), seen)
        seen = len(calls())
        self.ok("health", "-s", "sh", exe=True)
        self.assertGreater(len(calls()), seen)
        for call in calls():
            self.assertTrue(call.startswith("-S %s " % self.socket), call)


# ===========================================================================
# The fast layer: pure functions, no tmux (python3 -m unittest test_tmuxsess.PureTest...)
# ===========================================================================


def marked(kind, token="t0k", extra=""):
    """A prompt mark as a session's program prints it."""
    return ("\x1b]133;%s%s;tmuxsess=%s\x07" % (kind, extra, token)).encode()


class PureTest(unittest.TestCase):
    """Durations, names, the terminal's line editing, Python units, prompt marks."""

    def test_durations_and_names(self):
        self.assertEqual([tmuxsess.parse_duration(t) for t in ("30s", "15m", "2h", "1d", "2.5")],
                         [30, 900, 7200, 86400, 2.5])
        for bad in ("", "5x", "-1", "1e3", "soon"):
            with self.assertRaises(tmuxsess.UsageError):
                tmuxsess.parse_duration(bad)
        self.assertEqual(tmuxsess.validate_name("a-B_9"), "a-B_9")
        for bad in ("-a", "", "a b", "a.b", "x" * 65, "é"):
            with self.assertRaises(tmuxsess.UsageError):
                tmuxsess.validate_name(bad)

    def terminal(self, **flags):
        chars = {"VEOF": 4, "VEOL": 0, "VEOL2": 0, "VLNEXT": 22, "VERASE": 127, "VKILL": 21,
                 "VWERASE": 23, "VINTR": 3, "VQUIT": 28, "VSUSP": 26, "VREPRINT": 18,
                 "VDISCARD": 15, "VSTART": 17, "VSTOP": 19}
        base = {"ICANON": True, "ECHO": True, "IEXTEN": True, "ISIG": True, "ICRNL": True,
                "IXON": True}
        base.update(flags)
        return tmuxsess.Terminal(None, True, True, base, chars, "")

    def test_canonical_stream_quotes_what_the_line_discipline_acts_on(self):
        term = self.terminal()
        self.assertEqual(tmuxsess.canonical_stream(b"plain\n", term), b"plain\n")
        self.assertEqual(tmuxsess.canonical_stream(b"a\x03b\x15c\x7f\n", term),
                         b"a\x16\x03b\x16\x15c\x16\x7f\n")
        line = b"x" * 5000
        self.assertEqual(tmuxsess.canonical_stream(line + b"\n", term),
                         line[:4095] + b"\x04" + line[4095:] + b"\n")
        with self.assertRaisesRegex(tmuxsess.UsageError, "VLNEXT is off"):
            tmuxsess.canonical_stream(b"a\x03\n", self.terminal(IEXTEN=False))

    def test_a_python_unit_runs_a_block_with_blank_lines_as_one(self):
        import contextlib
        out = io.StringIO()
        code = "def f():\n    x = 1\n\n    return x + 1\n\nf()"
        line = tmuxsess.python_unit(code)
        self.assertNotIn("\n", line)
        with contextlib.redirect_stdout(out):
            exec(line, {})
        self.assertEqual(out.getvalue(), "2\n")  # an expression's value is shown, as the REPL does

    def test_prompt_marks(self):
        prompt = marked("D", extra=";0") + marked("A") + b"$ " + marked("B")
        self.assertEqual(tmuxsess.prompt_at_end(b"out\n" + prompt, "t0k"), "")
        self.assertEqual(tmuxsess.prompt_at_end(b"out\n" + marked("A", extra=";k=c") + b"> ",
                                                "t0k"), "c")
        self.assertIsNone(tmuxsess.prompt_at_end(prompt + b"running\n", "t0k"))
        # Another token's marks (a nested shell's, a stray print) are not the session's.
        self.assertIsNone(tmuxsess.prompt_at_end(b"out\n" + marked("A", "other"), "t0k"))
        self.assertEqual(tmuxsess.prompt_under_output(prompt + b"[1]+ Done\n", "t0k"), "")
        self.assertEqual(tmuxsess._unsent_text(prompt + b"echo hal", "t0k"), "echo hal")


class RenderTest(unittest.TestCase):
    """What the renderer makes of terminal output: what the screen shows."""

    def r(self, text, want, colours=False):
        self.assertEqual(tmuxsess.render(text, colours), want, repr(text))

    def test_carriage_returns_colours_and_escapes(self):
        self.r("10%\r50%\r100%\n", "100%\n")
        self.r("\x1b[31mred\x1b[0m\x1b]0;title\x07\n", "red\n")
        self.r("\x1b[31mred\n", "\x1b[31mred\x1b[0m\n", colours=True)
        self.r("\x1b[31mred\x1b[0m plain\n", "\x1b[31mred\x1b[0m plain\x1b[0m\n", colours=True)
        self.r("abc\b\bX\n", "aXc\n")
        self.r("$ ech\r\x1b[2Cecho hi\r\n", "$ echo hi\n")  # readline's redraw

    def test_the_cursor_moves_within_and_across_lines(self):
        self.r("abcdef\x1b[3Dxy\n", "abcxyf\n")  # printf "abcdef\e[3Dxy\n"
        progress = "step 1/3\nfile a\n" + "".join(
            "\x1b[1A\x1b[2K\x1b[1A\x1b[2Kstep %d/3\nfile %s\n" % (i, f) for i, f in ((2, "b"),
                                                                                  (3, "c")))
        self.r(progress, "step 3/3\nfile c\n")  # no stale lines
        self.r("ab\x1b[3Cx\n", "ab   x\n")
        self.r("tab\tX\x1b[?2004l\r", "tab\tX")  # a return at a line's end moves over nothing
        self.r("abcdef\x1b[3GX\n", "abXdef\n")
        self.r("one\ntwo\n\x1b[2Fzz\n", "zze\ntwo")  # the cursor ends on "two"
        self.r("abcdef\x1b[3D\x1b[1K\n", "    ef\n")
        self.r("one\ntwo\nthree\x1b[2A\x1b[2D\x1b[J\n", "one\n")
        self.r("abcdef\x1b[3D\x1b[2@XY\n", "abcXYdef\n")
        self.r("abcdef\x1b[4D\x1b[2P\n", "abef\n")
        self.r("\x1b[3;5Hx\n", "\n\n    x\n")
        self.r("x\x1b[5A\x1b[1K", "x")  # above the text's first line: nothing shows
        self.r("a\tb\tc\n", "a\tb\tc\n")  # a line nothing moves over keeps its tabs
        self.r("ab\tc\rX\n", "Xb      c\n")
        self.r("日本語\x1b[2Dx\n", "日本x\n")  # a wide character is two cells

    def test_plain_output_is_returned_as_it_is_and_fast(self):
        text = "line of plain text, a tab\there\n" * 40000
        self.assertIs(tmuxsess.render(text), text)
        began = time.perf_counter()
        tmuxsess.render("".join("\r%3d%%" % p for p in range(0, 101, 5)) * 3000 + "\n")
        self.assertLess(time.perf_counter() - began, 5)  # a megabyte of progress, loosely


class RenderScreenTest(unittest.TestCase):
    """render() gives what tmux shows for the same bytes: a corpus of what
    programs print, and random output (a fixed seed) as a run's output is: a
    fragment of a stream, begun anywhere on the screen. Tabs on lines nothing
    moves over stay tabs: they are compared expanded. Each is shown after a
    line of its own, as a run's output follows the line that ran it; one that
    moves to an absolute row, at the screen's top, as after a clear."""

    CORPUS = [
        "abcdef\x1b[3Dxy\n", "10%\r20%\r100%\n", "downloading 100%\rdone\n",
        "50%\r\x1b[Kdone\n", "".join("\r%3d%%|%-10s|" % (i * 10, "#" * i) for i in range(11)),
        "abc\x1b[10DX\n", "line1\nline2\nline3\x1b[2AX\x1b[1BY\n", "abcdef\x1b[5`X\n",
        "abc\x1b[Exyz\n", "abcdef\x1b[3D\x1b[0Kz\n", "abcdef\x1b[3D\x1b[2Kx\n",
        "x\na\nb\n\x1b[2A\x1b[Jc\nd\ne\n", "one\ntwo\nthree\x1b[1A\x1b[1J\n",
        "one\ntwo\n\x1b[H\x1b[Jthree\n", "one\ntwo\n\x1b[H\x1b[2Jthree\n",
        "out\n\x1b[H\x1b[2J\x1b[3;2Hx\x1b[1;1Hy\n", "\x1b[2;3fx\n", "\x1b[2dab\x1b[1dc\n",
        "a\tb\tc\n12345678\tX\n1234567\tY\n", "abcdefghijkl\r\tX\n", "\b\bab\nab\b\b\bX\n",
        "a\r\nb\n\rc\r\r\nd\n", "abcdef\x1b[4D\x1b[2X\n", "ab日本\r\x1b[3Cx\n", "a日b\rxyz\n",
        "e\u0301te\x1b[2DX\n", "abc\x1bDdef\x1bEghi\n", "one\ntwo\x1bMX\n",
        "\r\x1b[2K⠋ Installing\r\x1b[2K⠙ Installing\r\x1b[2K✔ Installed\n",
        "\x1b]133;A;tok\x07$ \x1b]133;B\x07echo\n", "x" * 250 + "\n" + "y" * 230 + "\x1b[5Dzz\n",
        "".join("\x1b[%dA\x1b[J" % 3 * (i > 0) + "a %d\nb %d\nc %d\n" % (i, i, i)
                for i in range(5)),
    ]
    WORDS = ["a", "bc", "hello", "x y", "12345", "日本", "é", "-", " "]

    @classmethod
    def fragment(cls, rng):
        """Random output without absolute moves (a run's output has none)."""
        text = ""
        for _ in range(rng.randint(3, 30)):
            k = rng.random()
            n = rng.choice(["", "1", "2", "3"])
            text += (rng.choice(cls.WORDS) if k < 0.35 else
                     rng.choice(["\n", "\r", "\b", "\r\n", "\t"]) if k < 0.5 else
                     "\x1b[%s%s" % (n, rng.choice("CDGK`@PX")) if k < 0.8 else
                     "\x1b[%s%s" % (n, rng.choice("BE")) if k < 0.9 else
                     rng.choice(["\x1b[1K", "\x1b[2K", "\x1b[J", "\x1b]133;A\x07"]))
        return text

    def test_the_same_as_the_screen(self):
        if not shutil.which("tmux"):
            self.skipTest("tmux is not installed")
        rng = random.Random(7)
        texts = self.CORPUS + [self.fragment(rng) for _ in range(100)]
        tmp = tempfile.mkdtemp(prefix="tmuxsess-render-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.addCleanup(kill_servers, tmp)
        sock = os.path.join(tmp, "sock")
        for i, text in enumerate(texts):
            write_bytes(os.path.join(tmp, "case%d" % i), (self.before(text) + text).encode())
            # The title is set after the text: once tmux shows it, it drew the text.
            subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x",
                            "200", "-y", "50", "-s", "c%d" % i, "cat case%d; printf "
                            "'\\033]2;shown\\033\\\\'; exec cat" % i], cwd=tmp, check=True)
        wait_until(lambda: subprocess.run(
            ["tmux", "-S", sock, "list-panes", "-a", "-F", "#{pane_title}"],
            stdout=subprocess.PIPE, universal_newlines=True).stdout.split().count("shown")
            == len(texts), 30, "tmux to show every case")

        def lines(text):  # as capture gives them: no trailing blanks
            out = [line.rstrip(" ") for line in text.split("\n")]
            while out and not out[-1]:
                out.pop()
            return out
        for i, text in enumerate(texts):
            shown = subprocess.run(["tmux", "-S", sock, "capture-pane", "-p", "-J", "-S", "-",
                                    "-t", "c%d" % i], stdout=subprocess.PIPE,
                                   universal_newlines=True).stdout
            self.assertEqual(lines(tmuxsess.render(text).expandtabs()),
                             lines(shown)[self.before(text).count("\n"):], repr(text))

    @staticmethod
    def before(text):
        return "" if re.search(r"\x1b\[[0-9;]*[Hfd]", text) else "$ run\n"


class ArgumentsTest(unittest.TestCase):
    """The command line's parsing, from the table of operations (no command runs)."""

    def parse(self, *argv):
        parser = tmuxsess.build_parser(argv[0])
        words, held = tmuxsess._dash_values(parser, list(argv))
        a, extra = parser.parse_known_args(words)
        tmuxsess._restore_values(a, held)
        self.assertEqual(extra, [])
        return a

    def test_values_that_look_like_options_are_values(self):
        a = self.parse("send", "-s", "x", "-c", "-1;", "-w", "--")
        self.assertEqual((a.session, a.text, a.wait), ("x", "-1;", "--"))
        a = self.parse("run", "-c", "--version")
        self.assertEqual(a.code, "--version")

    def test_switches_and_defaults_come_from_the_table(self):
        a = self.parse("create", "-n", "x", "--python", "--no-wait", "-e", "A=1", "-e", "B=2")
        self.assertEqual((a.kind, a.wait, a.env), ("python", False, ["A=1", "B=2"]))
        self.assertEqual(self.parse("create", "-n", "x").ready_timeout, tmuxsess.READY_TIMEOUT)
        a = self.parse("send", "-l", "--type", "-k", "C-c", "Enter")
        self.assertEqual((a.enter, a.delivery, a.keys), (False, "type", ["C-c", "Enter"]))
        self.assertEqual(self.parse("send").delivery, "auto")
        self.assertEqual(self.parse("capture", "--transcript").source, "transcript")
        self.assertEqual(self.parse("run").timeout, tmuxsess.RUN_TIMEOUT)

    def test_errors_are_worded_by_each_front_end(self):
        e = tmuxsess.BusyError("py is busy; {timeout} ran out", "raise {timeout}",
                               [tmuxsess.Action("send", "interrupt it", {"keys": ["C-c"]}),
                                tmuxsess.Action("run", "answer it", {"answer": "TEXT"})],
                               {"session": "py"})
        self.assertEqual(str(e), "py is busy; timeout ran out")
        err = io.StringIO()
        with mock.patch.object(sys, "stderr", err), mock.patch.object(sys, "argv", ["t.py"]):
            tmuxsess._error(e, tmuxsess.operation("run"))
        self.assertEqual(err.getvalue(), "tmuxsess: error: py is busy; -T ran out\n"
                         "hint: raise -T; interrupt it: t.py send -s py -k C-c; "
                         "answer it: t.py run -s py --answer TEXT\n")
        self.assertEqual(tmuxsess._mcp_error_text(e), "tmuxsess: error: py is busy; the timeout "
                         'argument ran out\nhint: raise the timeout argument; interrupt it: '
                         'send {"session": "py", "keys": ["C-c"]}; answer it: run {"session": '
                         '"py", "answer": "TEXT"}')
        # From a server on another machine, the calls name it.
        self.assertIn('send {"host": "box", "session": "py", "keys": ["C-c"]}',
                      tmuxsess._mcp_error_text(e, "box"))


class OperationTableTest(unittest.TestCase):
    """Each operation is declared once: the Engine method, the module function, the
    command line and the MCP schema all come from, or agree with, one row."""

    def test_the_table_names_every_keyword_of_its_method(self):
        import inspect
        own = {"self", "cancel", "on_output", "on_retry"}  # callers' hooks, not parameters
        for op in tmuxsess.OPERATIONS:
            method = getattr(tmuxsess.Engine, op.method)
            keywords = set(inspect.signature(method).parameters) - own
            table = {p.name for p in op.all_params if p.engine}
            self.assertEqual(table, keywords, op.name)

    def test_module_functions_repeat_the_engine_methods(self):
        import inspect
        for op in tmuxsess.OPERATIONS:
            function = getattr(tmuxsess, op.method)
            method = inspect.signature(getattr(tmuxsess.Engine, op.method))
            self.assertEqual(list(inspect.signature(function).parameters.values()),
                             list(method.parameters.values())[1:], op.method)
            self.assertTrue(function.__doc__, op.method)

    def test_the_command_line_and_mcp_are_built_from_it(self):
        for op in tmuxsess.OPERATIONS:
            parser = tmuxsess.build_parser(op.name)
            sub = next(a for a in parser._actions if a.dest == "cmd").choices[op.name]
            flags = set(sub._option_string_actions)
            for param in op.all_params:
                self.assertTrue(set(param.flags) <= flags, (op.name, param.name))
            if op.tool:
                tool = next(t for t in tmuxsess.MCP_TOOLS if t.name == op.tool)
                self.assertEqual(set(tool.properties(True, ["box"])),
                                 {p.name for p in op.all_params if p.mcp}, op.tool)
                self.assertNotIn("host", tool.properties(True))  # only with hosts to reach
        # A default is written once, and both say it.
        run = next(t for t in tmuxsess.MCP_TOOLS if t.name == "run")
        self.assertIn("(default 30)", run.properties(False)["timeout"]["description"])
        text = tmuxsess.build_parser("run")._subparsers._group_actions[0].choices[
            "run"].format_help()
        self.assertIn("(default 30)", " ".join(text.split()))


class McpFramingTest(unittest.TestCase):
    """JSON-RPC framing on a server fed lines in memory (no tool is called)."""

    def serve(self, *lines):
        out = io.BytesIO()
        places = tempfile.mkdtemp(prefix="tmuxsess-framing-")
        self.addCleanup(shutil.rmtree, places, True)
        engine = tmuxsess.Engine(state_dir=places + "/st", socket_dir=places + "/so")
        with contextlib.redirect_stderr(io.StringIO()):
            tmuxsess.serve_mcp(engine, io.BytesIO("".join(
                line + "\n" for line in lines).encode()), out)
        return [json.loads(line) for line in out.getvalue().decode().splitlines()]

    def test_one_message_a_line_each_answered(self):
        init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}})
        replies = self.serve(init, "{not json", json.dumps({"jsonrpc": "2.0", "id": 2,
                                                            "method": "ping"}),
                             json.dumps({"jsonrpc": "2.0", "id": 3, "method": "nope"}),
                             json.dumps([{"jsonrpc": "2.0", "id": 4, "method": "ping"}]))
        self.assertEqual(replies[0]["result"]["protocolVersion"], "2025-06-18")
        self.assertEqual(replies[1]["error"]["code"], -32700)
        self.assertEqual(replies[2], {"jsonrpc": "2.0", "id": 2, "result": {}})
        self.assertEqual(replies[3]["error"]["code"], -32601)
        self.assertEqual(replies[4]["error"]["code"], -32600)  # no batches in 2025-06-18


# ===========================================================================
# Lifecycle: create, list, health, kill, cleanup, find, capture, attach and
# target picking do what the spec says, also under races and on servers the
# tool did not start; the seed guide's workflows work as written.
# ===========================================================================


class EngineTest(TmuxTestCase):
    """The engine holds its settings: engines side by side, no environment needed."""

    def test_two_engines_side_by_side_from_two_threads(self):
        # The environment points elsewhere; each engine is given its own places.
        os.environ["TMUXSESS_STATE_DIR"] = os.path.join(self.tmp, "env-state")
        os.environ["CLAUDE_TMUX_SOCKET_DIR"] = os.path.join(self.tmp, "env-sock")
        places = [(os.path.join(self.tmp, "state%d" % i), os.path.join(self.tmp, "sock%d" % i))
                  for i in (1, 2)]
        engines = [tmuxsess.Engine(state_dir=st, socket_dir=so) for st, so in places]
        start = threading.Barrier(2)

        def work(i):
            engine = engines[i]
            start.wait()
            # The same session name in both: two registries, two servers.
            engine.create_session("calc", kind="python", ready_timeout=30)
            r = engine.run("print(%d * 7)" % (i + 1), session="calc")
            listed = [(s.name, s.socket) for s in engine.list_sessions()]
            killed = engine.kill_session(session="calc")
            return r.output, r.exit_status, listed, killed.killed

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(work, range(2)))
        for i, (output, status, listed, killed) in enumerate(results):
            self.assertEqual((output, status, killed), ("%d\n" % ((i + 1) * 7), 0, True))
            self.assertEqual(listed, [("calc", os.path.join(places[i][1], "claude.sock"))])
            self.assertEqual(json.loads(read_bytes(os.path.join(
                places[i][0], ".sessions.json")))["sessions"], {})
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "env-state")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "env-sock")))

    def test_settings_come_from_the_environment_once(self):
        settings = tmuxsess.Settings.from_environment(
            {"TMUXSESS_STATE_DIR": "/x/st", "CLAUDE_TMUX_SOCKET_DIR": "/x/so",
             "TMUXSESS_TMUX": "/opt/tmux", "TMUXSESS_LOCK_TIMEOUT": "2.5"})
        self.assertEqual(settings, tmuxsess.Settings("/x/st", "/x/so", "/opt/tmux", 2.5))
        self.assertEqual(tmuxsess.Engine(settings=settings).registry.path,
                         "/x/st/.sessions.json")
        overridden = tmuxsess.Settings.from_environment({"TMUXSESS_STATE_DIR": "/x/st"},
                                                        state_dir="/y", lock_timeout=0)
        self.assertEqual((overridden.state_dir, overridden.lock_timeout), ("/y", 0))
        with self.assertRaises(tmuxsess.UsageError):
            tmuxsess.Settings.from_environment({"TMUXSESS_LOCK_TIMEOUT": "soon"})


class CodeShapeTest(unittest.TestCase):
    """What keeps the file readable: small functions and classes, one home per job."""

    # What makes a process or signals one, by module and name (a module alone: all of it).
    SPAWNING = {"subprocess", "pty", "multiprocessing", "os.system", "os.popen", "os.fork",
                "os.forkpty", "os.kill", "os.killpg", "os.posix_spawn", "os.posix_spawnp",
                "os.execv", "os.execve", "os.execvp", "os.execvpe", "os.execl", "os.execle",
                "os.execlp", "os.execlpe", "os.spawnv", "os.spawnve", "os.spawnvp",
                "os.spawnvpe", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe"}

    def setUp(self):
        with open(TOOL, encoding="utf-8") as f:
            self.source = f.read()
        self.tree = ast.parse(self.source)

    def top(self, name):
        return next(n for n in self.tree.body if isinstance(n, ast.ClassDef) and n.name == name)

    def test_no_function_over_80_lines_and_no_class_over_600(self):
        long = ["%s (%d lines)" % (node.name, node.end_lineno - node.lineno + 1)
                for node in ast.walk(self.tree)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.end_lineno - node.lineno + 1 > 80]
        long += ["class %s (%d lines)" % (node.name, node.end_lineno - node.lineno + 1)
                 for node in self.tree.body if isinstance(node, ast.ClassDef)
                 and node.end_lineno - node.lineno + 1 > 600]
        self.assertEqual(long, [])

    def spawning_uses(self, tree):
        """Where ``tree`` makes or signals a process, under whatever name it imported
        the means: (line, what) pairs."""
        names = {}  # a name in the code -> the module or function it is
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    names[(alias.asname or alias.name).split(".")[0]] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    names[alias.asname or alias.name] = node.module + "." + alias.name
        found = []
        for node in ast.walk(tree):
            what = ""
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                base = names.get(node.value.id, "")
                what = base + "." + node.attr if base else ""
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                what = names.get(node.id, "")
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(
                    node.func, "attr", "")) in ("__import__", "import_module") and node.args
                    and isinstance(node.args[0], ast.Constant)):
                what = str(node.args[0].value)
            if what and (what in self.SPAWNING or what.split(".")[0] in self.SPAWNING):
                found.append((node.lineno, what))
        return found

    def test_processes_only_in_the_transport(self):
        host = self.top("Host")
        # The transports: this machine's (Host), and the section that takes a
        # command to another one (it runs alone, before the module loads).
        lines = self.source.split("\n")
        relay = range(lines.index("#: remote") + 1, lines.index("#: boot") + 1)
        inside = set(range(host.lineno, host.end_lineno + 1)) | set(relay)
        outside = [(line, what) for line, what in self.spawning_uses(self.tree)
                   if line not in inside and not isinstance(next(
                       (n for n in self.tree.body if n.lineno <= line <= n.end_lineno), None),
                       (ast.Import, ast.ImportFrom))]
        self.assertEqual(outside, [])
        # The check sees other names too.
        sneaky = ast.parse("import subprocess as sp\nfrom os import kill as k\n"
                           "def f():\n    sp.run(['x'])\n    k(1, 0)\n"
                           "    __import__('pty').spawn('x')\n")
        self.assertEqual(sorted({w for _, w in self.spawning_uses(sneaky)}),
                         ["os.kill", "pty", "subprocess", "subprocess.run"])

    def test_the_engine_is_a_thin_front(self):
        for node in self.top("Engine").body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(
                    n.value, ast.Constant))]  # the docstring
                self.assertEqual(len(body), 1, node.name)
                self.assertIsInstance(body[0], ast.Return, node.name)

    def test_public_surface_is_all(self):
        for name in tmuxsess.__all__:
            self.assertTrue(hasattr(tmuxsess, name), name)
        self.assertNotIn("cmd_run", tmuxsess.__all__)


TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z"


class CreateTest(TmuxTestCase):
    def test_create_prints_record_registers_and_waits_for_the_prompt(self):
        r = self.ok("create", "-n", "calc", "--python")
        rec = json.loads(r.stdout)
        # Returned only once ">>>" is up: the pane shows it right now.
        self.assertEqual(tmuxsess.capture(session="calc").rstrip("\n").splitlines()[-1],
                         ">>>")
        info = self.tmux("display-message", "-p", "-t", "=calc:", "#{session_name}:"
                         "#{window_index}.#{pane_index} #{pane_id} #{pane_pid} "
                         "#{pane_width}x#{pane_height} #{window_name} "
                         "#{remain-on-exit}").stdout.split()
        self.assertEqual(rec["name"], "calc")
        self.assertEqual(rec["socket"], self.socket)
        self.assertEqual([rec["target"], rec["pane_id"], str(rec["pid"])], info[:3])
        self.assertEqual(info[3:], ["200x50", "shell", "on"])
        self.assertEqual(rec["type"], "python-repl")
        self.assertIs(rec["registered"], True)
        # stderr: how a person watches and reads it.
        self.assertIn("tmux -S %s attach -t calc" % self.socket, r.stderr)
        self.assertRegex(r.stderr, r"tmuxsess\.py capture -s calc")
        # The registry: the spec's shape, private files and dirs.
        doc = self.registry()
        self.assertEqual(doc["version"], "1.0")
        entry = doc["sessions"]["calc"]
        for key in ("socket", "target", "pane_id", "type", "pid"):
            self.assertEqual(entry[key], rec[key], key)
        self.assertRegex(entry["created_at"], TIME_RE)
        self.assertRegex(entry["last_active"], TIME_RE)
        for path, mode in ((self.state, 0o700), (self.sockets, 0o700),
                           (self.reg_path, 0o600), (rec["transcript"], 0o600)):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), mode, path)

    def test_flags_cwd_env_window_socket_no_register(self):
        cwd = os.path.join(self.tmp, "a dir")
        os.mkdir(cwd)
        custom = os.path.join(self.tmp, "custom.sock")
        r = self.ok("create", "-n", "job", "-c", cwd, "-e", "GREETING=hello there",
                    "-e", "EQ=a=b", "-w", "work", "-S", custom, "--no-register")
        rec = json.loads(r.stdout)
        self.assertIs(rec["registered"], False)
        self.assertEqual(rec["socket"], custom)
        self.assertIn("capture -S %s -t job" % custom, r.stderr)
        self.assertIsNone(self.registry_bytes())  # nothing registered, no file made
        self.assertEqual(self.tmux("display-message", "-p", "-t", "=job:", "#{window_name}",
                                   socket=custom).stdout, "work\n")
        out = tmuxsess.run('pwd; echo "[$GREETING|$EQ]"', socket=custom, target="job")
        self.assertEqual(out.output, "%s\n[hello there|a=b]\n" % cwd)

    def test_no_wait_and_ready_timeout(self):
        never = ["--cmd", "sleep 60", "--prompt", "^NEVER> $"]
        start = time.monotonic()
        self.ok("create", "-n", "nowait", "--no-wait", *never)
        self.assertLess(time.monotonic() - start, 8, "--no-wait waited for the prompt")
        self.assertEqual(self.health("nowait").status, "healthy")
        # Not ready in time: exit 3 soon after the timeout, nothing left behind.
        before = self.transcripts()
        start = time.monotonic()
        r = self.fails(3, "create", "-n", "late", "--ready-timeout", "0.5", *never)
        self.assertLess(time.monotonic() - start, 8)
        self.assertIn("did not show its prompt within 0.5s", r.stderr)
        # A --cmd without --prompt is ready once its output settles; output that
        # never stops is not ready.
        r = self.fails(3, "create", "-n", "chatty", "--ready-timeout", "0.5", "--cmd",
                       "while :; do echo tick; sleep 0.05; done")
        self.assertIn("tick", r.stderr)
        self.assertEqual(self.tmux_sessions(), ["nowait"])
        self.assertEqual(sorted(self.registry()["sessions"]), ["nowait"])
        self.assertEqual(self.transcripts(), before)
        self.ok("create", "-n", "settles", "--cmd", "echo hello-settled; sleep 60")
        wait_until(lambda: "hello-settled" in tmuxsess.capture(session="settles"),
                   what="the quiet program's output")

    def test_cmd_without_prompt_is_ready_after_its_first_output(self):
        self.ok("create", "-n", "banner", "--cmd", "sleep 0.5; echo late-banner; cat")
        self.assertIn("late-banner", tmuxsess.capture(session="banner"))
        # A program that prints nothing is ready after a second, not at --ready-timeout.
        began = time.monotonic()
        self.ok("create", "-n", "silent", "--cmd", "cat", "--ready-timeout", "60")
        self.assertLess(time.monotonic() - began, 20)

    def test_a_program_that_ends_before_its_prompt_says_how(self):
        r = self.fails(3, "create", "-n", "quits", "--cmd", "echo going-away; exit 7")
        self.assertIn("the program in quits exited with status 7 before it was ready",
                      r.stderr)
        self.assertIn("going-away", r.stderr)
        # A marked program killed while it starts: the signal, not a bare "exited".
        suicide = self.script("suicide.py", "import os, signal\n"
                              "os.kill(os.getpid(), signal.SIGKILL)\n")
        r = self.fails(3, "create", "-n", "killed", "--python",
                       env=dict(os.environ, TMUXSESS_PYTHONSTARTUP=suicide))
        self.assertIn("the program in killed was killed by signal 9 (SIGKILL) before it "
                      "was ready", r.stderr)
        self.assertEqual(self.tmux_sessions(), [])
        self.assertEqual(self.registry()["sessions"], {})
        # A server that goes (crashes, is killed) takes the program along: said so.
        crash = self.script("crash.py", "import os, signal\n"
                            "os.kill(os.getppid(), signal.SIGKILL)\n")  # the tmux server
        r = self.fails(3, "create", "-n", "crashed", "--python",
                       env=dict(os.environ, TMUXSESS_PYTHONSTARTUP=crash))
        self.assertRegex(r.stderr, r"the tmux server of crashed \(pid \d+\) went away "
                                   r"before the program was ready")
        self.assertEqual(self.registry()["sessions"], {})

    def test_a_server_exiting_as_create_reaches_it_is_replaced(self):
        # tmux says "server exited unexpectedly" when a new-session reaches a server
        # whose last session just ended (1 in ~200 here); nothing was made there.
        count = os.path.join(self.tmp, "new-sessions")
        wrapper = self.script("exiting-tmux", """#!/bin/sh
case "$*" in *new-session*)
  n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}
  if [ $n -le 2 ]; then echo 'server exited unexpectedly' >&2; exit 1; fi;;
esac
exec {tmux} "$@"
""".format(count=shlex.quote(count), tmux=shlex.quote(shutil.which("tmux"))))
        os.chmod(wrapper, 0o755)
        rec = json.loads(self.ok("create", "-n", "again", "--cmd", "sleep 60", "--no-wait",
                                 env=dict(self.env, TMUXSESS_TMUX=wrapper)).stdout)
        self.assertEqual(read_bytes(count), b"3\n")
        self.assertEqual(self.tmux_sessions(), ["again"])
        self.assertEqual(self.health("again").pid, rec["pid"])

    def test_gdb_has_pagination_and_confirm_off(self):
        if not shutil.which("gdb"):
            self.skipTest("gdb is not installed")
        self.assertEqual(self.create("dbg", "--gdb")["type"], "debugger")
        self.assertEqual(tmuxsess.run("show pagination", session="dbg").output,
                         "State of pagination is off.\n")
        self.assertIn("is off.", tmuxsess.run("show confirm", session="dbg").output)

    def test_exit_codes(self):
        self.create("taken")
        before = self.registry_bytes()
        # 1: bad arguments, refused before tmux is called.
        self.fails(1, "create", "--python")
        r = self.fails(1, "create", "-n", "x", "-c", os.path.join(self.tmp, "nowhere"))
        self.assertOneLineError(r.stderr, "nowhere does not exist")
        r = self.fails(1, "create", "-n", "x", "-c", self.script("a-file", ""))
        self.assertOneLineError(r.stderr, "a-file is not a directory")
        self.fails(1, "create", "-n", "x", "-e", "NOEQUALS")
        self.fails(1, "create", "-n", "x", "-S", os.path.join(self.tmp, "nowhere", "s.sock"))
        for bad in ("a:b", "a.b", "", "-x", "a" * 65, "a b", "a\nb"):
            r = self.fails(1, "create", "-n", bad)
            self.assertIn("invalid session name", r.stderr)
        self.assertEqual(self.registry_bytes(), before)
        self.assertEqual(self.tmux_sessions(), ["taken"])
        # 2: the name is taken, in the registry or only in tmux.
        self.fails(2, "create", "-n", "taken")
        self.tmux("new-session", "-d", "-s", "bytmux")
        r = self.fails(2, "create", "-n", "bytmux")
        self.assertIn("already exists", r.stderr)
        # 3: tmux failed.
        env = dict(self.env, TMUXSESS_TMUX=os.path.join(self.tmp, "no-tmux-here"))
        self.fails(3, "create", "-n", "x", env=env)
        # 4: the registry failed (a corrupt one is reported and left alone).
        write_bytes(self.reg_path, b"{not json")
        r = self.fails(4, "create", "-n", "x")
        self.assertIn(".sessions.json", r.stderr)
        self.assertEqual(self.registry_bytes(), b"{not json")
        self.assertEqual(self.tmux_sessions(), ["bytmux", "taken"])
        self.assertEqual(len(self.transcripts()), 1)  # taken's only


class RegistryFormatTest(TmuxTestCase):
    def test_unknown_fields_survive_rewrites(self):
        self.api_create("one", "command", command="sleep 60", wait=False)

        def add(doc):
            doc["written_by"] = "a newer tmuxsess"
            doc["sessions"]["one"]["color"] = {"fg": "red"}
        self.edit_registry(add)
        self.api_create("two", "command", command="sleep 60", wait=False)
        tmuxsess.kill_session(session="two")
        doc = self.registry()
        self.assertEqual(doc["written_by"], "a newer tmuxsess")
        self.assertEqual(doc["sessions"]["one"]["color"], {"fg": "red"})
        self.assertEqual(sorted(doc["sessions"]), ["one"])
        self.assertEqual(stat.S_IMODE(os.stat(self.reg_path).st_mode), 0o600)

    def test_entry_of_the_old_bash_scripts_is_used(self):
        # The old scripts' servers read the user's config and stored "NAME:0.0".
        os.makedirs(self.sockets, 0o700)
        self.tmux("new-session", "-d", "-s", "legacy", "-x", "120", "-y", "20")
        self.tmux("new-session", "-d", "-s", "oldish", "-x", "120", "-y", "20")
        os.makedirs(self.state, 0o700, exist_ok=True)
        with open(self.reg_path, "w") as f:
            json.dump({"version": "1.0", "sessions": {
                name: {"socket": self.socket, "target": name + ":0.0", "type": "shell",
                       "pid": pid, "created_at": "2026-01-01T00:00:00Z",
                       "last_active": "2026-01-01T00:00:00Z"}
                for name, pid in (("legacy", "0"), ("old", None))}}, f)
        rows = {s.name: s.status for s in tmuxsess.list_sessions()}
        self.assertEqual(rows, {"legacy": "alive", "old": "missing"})
        # A pid written as a string of digits (jq --arg), or null, is read as a number.
        self.assertEqual([type(s["pid"]) for s in json.loads(
            self.ok("list", "--json").stdout)["sessions"]], [int, int])
        self.assertEqual(self.cli("health", "-s", "legacy").returncode, 0)
        self.tmux("send-keys", "-t", "legacy", "echo legacy-$((6*7))", "Enter")
        wait_until(lambda: "legacy-42" in tmuxsess.capture(session="legacy"),
                   what="echo in the legacy pane")
        # "old:0.0" must not reach "oldish" through tmux's prefix matching.
        self.assertEqual(self.cli("health", "-s", "old").returncode, 2)
        self.assertEqual(self.fails(1, "kill", "-s", "old", error=False).stdout,
                         "old was deregistered\n")
        self.ok("kill", "-s", "legacy")
        self.assertEqual(self.tmux_sessions(), ["oldish"])
        self.assertEqual(self.registry()["sessions"], {})


class SpeedTest(TmuxTestCase):
    """What a run costs: one tmux call, no registry rewrite, cached bytecode, and
    only the imports it needs."""

    def test_ready_run_is_one_tmux_call_and_leaves_the_registry_alone(self):
        self.api_create("py", "python-repl")
        env, calls = self.logging_tmux()
        before = os.stat(self.reg_path)
        r = self.ok("run", "-s", "py", "-c", "print(6 * 7)", env=env)
        self.assertEqual(r.stdout, "42\n")
        self.assertEqual(len(calls()), 1, calls())
        after = os.stat(self.reg_path)
        self.assertEqual((before.st_ino, before.st_mtime_ns), (after.st_ino, after.st_mtime_ns))

    def test_last_active_is_exact_and_shown_by_list_and_cleanup_idle(self):
        self.api_create("py", "python-repl")
        with open(self.reg_path) as f:
            doc = json.load(f)
        doc["sessions"]["py"]["created_at"] = "2001-01-01T00:00:00Z"
        doc["sessions"]["py"]["last_active"] = "2001-01-01T00:00:00Z"
        write_bytes(self.reg_path, json.dumps(doc).encode())
        t0 = time.time()
        self.assertEqual(tmuxsess.run("print(1)", session="py").output, "1\n")
        listed = json.loads(self.ok("list", "--json").stdout)["sessions"][0]
        active = tmuxsess._parse_time(listed["last_active"])
        self.assertLessEqual(abs(active - int(t0)), 2, listed)
        self.assertIn("s ago", self.ok("list").stdout.splitlines()[1].split("2001")[-1])
        self.assertEqual(json.loads(self.ok("cleanup", "--idle", "1h", "--dry-run",
                                            "--json").stdout)["removed"], [])
        with open(self.reg_path) as f:  # kept in tmux, not written to the registry
            self.assertEqual(json.load(f)["sessions"]["py"]["last_active"],
                             "2001-01-01T00:00:00Z")
        tmuxsess.send("x = 1", session="py")  # a send counts as activity too
        self.assertTrue(self.tmux("show-options", "-p", "-t", "=py:", "-v",
                                  "@tmuxsess-active").stdout.strip())

    def test_a_registry_that_no_longer_holds_types_nothing_and_asks_tmux(self):
        self.api_create("py", "python-repl")
        with open(self.reg_path) as f:
            doc = json.load(f)
        doc["sessions"]["py"]["token"] = "0123456789abcdef"  # not the pane's
        write_bytes(self.reg_path, json.dumps(doc).encode())
        env, calls = self.logging_tmux()
        r = self.ok("run", "-s", "py", "-c", "print('once')", env=env)
        self.assertEqual(r.stdout, "once\n")
        self.assertGreater(len(calls()), 1)
        self.assertEqual(self.tmux("list-buffers").stdout, "")  # no buffer left behind
        transcript = doc["sessions"]["py"]["transcript"]
        self.assertEqual(read_bytes(transcript).count(b"print('once')"), 1)

    def test_started_as_a_program_it_runs_from_a_private_bytecode_cache(self):
        tools = os.path.join(self.tmp, "tools")
        os.mkdir(tools)
        copy = os.path.join(tools, "tmuxsess.py")
        shutil.copy(TOOL, copy)
        os.chmod(copy, 0o555)
        os.chmod(tools, 0o555)  # a read-only tool dir
        self.addCleanup(os.chmod, tools, 0o755)
        cache = os.path.join(self.tmp, "cache")
        env = dict(self.env, TMUXSESS_CACHE_DIR=cache, PYTHONDONTWRITEBYTECODE="1",
                   TMUXSESS_PYTHON=sys.executable)
        for _ in range(2):
            r = subprocess.run([copy, "--version"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True)
            self.assertEqual((r.returncode, r.stdout.strip(), r.stderr),
                             (0, "tmuxsess " + tmuxsess.__version__, ""))
        self.assertEqual([f for f in os.listdir(cache) if f.startswith("tmuxsess-")],
                         [f for f in os.listdir(cache)])
        self.assertEqual(len(os.listdir(cache)), 1, os.listdir(cache))
        self.assertEqual(stat.S_IMODE(os.stat(cache).st_mode), 0o700)
        self.assertFalse(os.path.exists(os.path.join(tools, "__pycache__")))
        # A cache dir others may write to is not used: the tool still runs.
        shared = os.path.join(self.tmp, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        r = subprocess.run([copy, "--version"], env=dict(env, TMUXSESS_CACHE_DIR=shared),
                           stdout=subprocess.PIPE, universal_newlines=True)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(os.listdir(shared), [])

    def test_an_edit_runs_at_once_even_one_of_the_same_size_in_the_same_second(self):
        copy = os.path.join(self.tmp, "tmuxsess.py")
        shutil.copy(TOOL, copy)
        env = dict(self.env, TMUXSESS_CACHE_DIR=os.path.join(self.tmp, "cache"),
                   TMUXSESS_PYTHON=sys.executable)
        before = os.stat(copy)
        for version in (tmuxsess.__version__, "9.9.9"[:len(tmuxsess.__version__)], "8.8.8"):
            with open(copy, encoding="utf-8") as f:
                text = f.read()
            with open(copy, "w", encoding="utf-8") as f:
                f.write(re.sub(r'__version__ = "[^"]*"', '__version__ = "%s"' % version, text))
            os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))  # size and mtime kept
            self.assertEqual(os.stat(copy).st_size, before.st_size)
            r = subprocess.run([copy, "--version"], env=env, stdout=subprocess.PIPE,
                               universal_newlines=True)
            self.assertEqual(r.stdout.strip(), "tmuxsess " + version)

    def test_a_run_imports_only_what_it_uses(self):
        self.api_create("py", "python-repl")
        probe = ("import sys, tmuxsess\n"
                 "assert tmuxsess.run('print(5)', session='py').output == '5\\n'\n"
                 "api = set(sys.modules)\n"
                 "assert tmuxsess.main(['run', '-s', 'py', '-c', 'print(6)']) == 0\n"
                 "print(' '.join(sorted(api)))\n"
                 "print(' '.join(sorted(sys.modules)))\n")
        r = subprocess.run([sys.executable, "-c", probe], cwd=HERE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        api, cli = set(lines[-2].split()), set(lines[-1].split())
        for name in ("argparse", "hashlib", "traceback", "datetime", "shlex"):
            self.assertNotIn(name, api)
        for name in ("hashlib", "traceback", "datetime", "shlex"):
            self.assertNotIn(name, cli)


class ListHealthTest(TmuxTestCase):
    def make_every_status(self):
        """Sessions alive, dead, missing, zombie and server (their server is gone)."""
        other = os.path.join(self.tmp, "other.sock")
        self.api_create("a-alive")
        self.make_dead("b-dead", 7)
        self.api_create("c-missing", "command", command="sleep 60", wait=False)
        self.tmux("kill-session", "-t", "=c-missing")
        self.make_zombie("d-zombie")
        self.api_create("e-server", "command", command="sleep 60", socket=other, wait=False)
        self.tmux("kill-server", socket=other)

    def test_list_table_json_and_statuses(self):
        self.assertEqual(self.ok("list").stdout.splitlines()[-1],
                         "Total: 0 | Alive: 0 | Dead: 0")
        self.make_every_status()
        lines = self.ok("ls").stdout.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "SOCKET", "TARGET", "STATUS", "PID",
                                            "CREATED", "LAST-ACTIVE"])
        rows = {line.split()[0]: line.split() for line in lines[1:-1]}
        self.assertEqual({name: row[3] for name, row in rows.items()},
                         {"a-alive": "alive", "b-dead": "dead", "c-missing": "missing",
                          "d-zombie": "zombie", "e-server": "server"})
        self.assertEqual(rows["a-alive"][1:3], [self.socket, "a-alive:0.0"])
        self.assertEqual(rows["a-alive"][4], str(self.health("a-alive").pid))
        self.assertRegex(lines[1], r"\d+[smhd] ago +\d+[smhd] ago$")
        self.assertEqual(lines[-1], "Total: 5 | Alive: 1 | Dead: 4")
        doc = json.loads(self.ok("list-sessions", "--json").stdout)
        self.assertEqual((doc["total"], doc["alive"], doc["dead"]), (5, 1, 4))
        byname = {s["name"]: s for s in doc["sessions"]}
        self.assertEqual(byname["e-server"]["status"], "server")
        self.assertEqual(byname["b-dead"]["status"], "dead")
        for key in ("name", "socket", "target", "status", "pid", "created_at",
                    "last_active"):
            self.assertIn(key, byname["a-alive"])
        self.assertRegex(byname["a-alive"]["created_at"], TIME_RE)

    def test_health_exit_codes_json_and_text(self):
        self.make_every_status()
        want = {"a-alive": (0, "healthy"), "b-dead": (1, "dead"),
                "c-missing": (2, "missing"), "d-zombie": (3, "zombie"),
                "e-server": (4, "server_not_running")}
        for name, (code, status) in want.items():
            r = self.cli("health", "-s", name)
            self.assertEqual(r.returncode, code, name + r.stderr)
            h = json.loads(r.stdout)
            self.assertEqual(h["status"], status)
            self.assertEqual(sorted(h), sorted([
                "status", "server_running", "session_exists", "pane_exists", "pane_dead",
                "pid", "process_running", "exit_status", "exit_signal",
                "alternate_screen", "cursor_x", "cursor_y", "current_command"]))
            text = self.cli("pane-health", "-s", name, "--format", "text")
            self.assertEqual(text.returncode, code)
            self.assertEqual(len(text.stdout.splitlines()), 1)
            self.assertTrue(text.stdout.startswith("Session %s " % name), text.stdout)
        alive = json.loads(self.cli("health", "-s", "a-alive").stdout)
        self.assertEqual((alive["server_running"], alive["pane_exists"],
                          alive["process_running"], alive["pane_dead"]),
                         (True, True, True, False))
        dead = json.loads(self.cli("health", "-s", "b-dead").stdout)
        self.assertEqual((dead["pane_dead"], dead["exit_status"]), (True, 7))
        self.assertIn("exited with status 7",
                      self.cli("health", "-s", "b-dead", "--format", "text").stdout)
        # 1 also for bad arguments and unknown names (candidates listed).
        self.fails(1, "health", "-s", "a:b")
        self.fails(1, "health", "-s", "a-alive", "--format", "xml")
        r = self.fails(1, "health", "-s", "nope")
        self.assertIn("a-alive, b-dead, c-missing, d-zombie, e-server", r.stderr)

    def test_errors_say_what_is_wrong_in_words(self):
        self.make_every_status()
        zombie_pid = self.health("d-zombie").pid
        said = {"b-dead": "is dead: its program exited with status 7",
                "c-missing": "is missing: the tmux server runs but has no such pane",
                "d-zombie": "is a zombie: the pane exists but pid %d is not running"
                            % zombie_pid,
                "e-server": "has no tmux server running"}
        for name, words in said.items():
            for args, then in ((("capture",), "nothing to capture"),
                               (("attach",), "nothing to attach to"),
                               (("send", "-c", "x"), "nothing was sent"),
                               (("run", "-c", "x"), "nothing was run")):
                if args[0] in ("capture", "attach") and name in ("b-dead", "d-zombie"):
                    continue  # a dead pane can be read and watched
                with self.subTest(session=name, args=args):
                    r = self.cli(*args, "-s", name)
                    self.assertNotEqual(r.returncode, 0)
                    self.assertOneLineError(r.stderr, "session %s %s; %s" % (name, words, then))
        self.assertIn("would remove e-server: no server\n",
                      self.ok("cleanup", "--dry-run").stdout)

    def test_health_of_a_program_killed_by_a_signal(self):
        self.api_create("sig", "python-repl")
        tmuxsess.send("import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
                      session="sig")
        h = self.wait_status("sig", "dead")
        self.assertEqual((h.exit_status, h.exit_signal), (None, 9))
        text = self.cli("health", "-s", "sig", "--format", "text")
        self.assertEqual(text.stdout, "Session sig is dead: its program was killed by "
                                      "signal 9 (SIGKILL).\n")

    def test_list_agrees_with_health_after_a_server_restart(self):
        self.api_create("a", "command", command="sleep 60", wait=False)
        self.tmux("kill-server")
        # A new server numbers its panes from %0 again: a's old id is b's now.
        wait_until(lambda: self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "b")
                   .returncode == 0, what="a new server")
        self.assertEqual([(s.name, s.status) for s in tmuxsess.list_sessions()],
                         [("a", "missing")])
        self.assertEqual(self.cli("health", "-s", "a").returncode, 2)
        self.assertEqual(self.ok("cleanup").stdout, "removed a: missing\n")
        self.assertEqual(self.tmux_sessions(), ["b"])

    def test_list_reports_a_corrupt_registry(self):
        os.makedirs(self.state, 0o700)
        write_bytes(self.reg_path, b'{"version": "1.0", "sessions": [')
        for args in (["list"], ["list", "--json"]):
            r = self.fails(1, *args)
            self.assertIn(self.reg_path, r.stderr)
        self.assertEqual(self.registry_bytes(), b'{"version": "1.0", "sessions": [')

    def test_list_of_30_sessions_asks_tmux_once_per_socket(self):
        other = os.path.join(self.sockets, "second.sock")
        os.makedirs(self.sockets, 0o700)
        for i in range(30):
            self.api_create("s%02d" % i, "command", command="sleep 60", wait=False,
                            socket=other if i % 3 == 0 else None)
        env, calls = self.logging_tmux()
        r = self.ok("list", env=env)
        self.assertEqual(r.stdout.splitlines()[-1], "Total: 30 | Alive: 30 | Dead: 0")
        self.assertEqual(len(calls()), 2, calls())
        self.assertEqual(sorted(c.split()[1] for c in calls()), sorted([self.socket, other]))


class KillCleanupTest(TmuxTestCase):
    def test_kill_exit_codes_and_dry_run(self):
        rec = self.api_create("k1", "command", command="sleep 60", wait=False)
        self.api_create("k2", "command", command="sleep 60", wait=False)
        before = self.registry_bytes()
        r = self.ok("kill", "-s", "k1", "--dry-run")
        self.assertEqual(r.stdout, "k1 would be killed and deregistered\n")
        self.assertEqual(self.registry_bytes(), before)
        self.assertEqual(self.tmux_sessions(), ["k1", "k2"])
        # 0: killed and deregistered (its transcript goes too).
        self.assertEqual(self.ok("kill-session", "-s", "k1").stdout,
                         "k1 was killed and deregistered\n")
        self.assertEqual(self.tmux_sessions(), ["k2"])
        self.assertEqual(sorted(self.registry()["sessions"]), ["k2"])
        self.assertFalse(os.path.exists(rec.transcript))
        # 1: one of the two (its tmux session was already gone).
        self.tmux("kill-session", "-t", "=k2")
        self.assertEqual(self.fails(1, "kill", "-s", "k2", error=False).stdout,
                         "k2 was deregistered\n")
        # 2: neither / not found.
        self.fails(2, "kill", "-s", "k2")
        self.fails(2, "kill", "-S", self.socket, "-t", "nothing-here")
        # 3: bad arguments.
        self.fails(3, "kill", "-s", "a:b")
        self.fails(3, "kill", "--bogus")
        # An unregistered session is done once killed.
        self.tmux("new-session", "-d", "-s", "loose")
        self.tmux("new-session", "-d", "-s", "keep")
        self.assertEqual(self.ok("kill", "-S", self.socket, "-t", "loose").stdout,
                         "loose was killed\n")
        self.assertEqual(self.tmux_sessions(), ["keep"])

    def test_cleanup_removes_unhealthy_only_by_default(self):
        self.api_create("alive", "command", command="sleep 60", wait=False)
        self.make_dead("dead", 3)
        self.api_create("gone", "command", command="sleep 60", wait=False)
        self.tmux("kill-session", "-t", "=gone")
        before = self.registry_bytes()
        r = self.ok("cleanup", "--dry-run")
        self.assertEqual(r.stdout, "would remove dead: dead\nwould remove gone: missing\n")
        self.assertEqual(self.registry_bytes(), before)
        self.assertEqual(self.tmux_sessions(), ["alive", "dead"])
        r = self.ok("cleanup-sessions")
        self.assertEqual(r.stdout, "removed dead: dead\nremoved gone: missing\n")
        self.assertEqual(sorted(self.registry()["sessions"]), ["alive"])
        self.assertEqual(self.tmux_sessions(), ["alive"])  # the dead pane is gone too
        self.assertEqual(len(self.transcripts()), 1)
        self.assertEqual(self.ok("cleanup").stdout, "Nothing to clean up.\n")

    def test_cleanup_older_than_idle_all_json(self):
        for name in ("old", "idle"):
            self.api_create(name, "command", command="sleep 60", wait=False)
        # A program that prints is active, whenever the tool last sent it anything.
        self.api_create("chatty", "command", command="while :; do echo tick; sleep 0.2; done",
                        wait=False)

        def age(doc):
            doc["sessions"]["old"]["created_at"] = "2020-01-01T00:00:00Z"
            doc["sessions"]["chatty"]["last_active"] = "2020-01-01T00:00:00Z"
        self.edit_registry(age)
        r = self.ok("cleanup", "--older-than", "2h", "--dry-run")
        self.assertRegex(r.stdout, r"\Awould remove old: created \d+d ago "
                                   r"\(would be killed\)\n\Z")
        self.api_create("fresh", "command", command="sleep 60", wait=False)
        before = self.registry_bytes()

        def idle():
            # tmux keeps output times in whole seconds: a program printing every
            # 0.2 s was active less than 2 s ago, always.
            doc = json.loads(self.ok("cleanup", "--idle", "2", "--dry-run", "--json").stdout)
            names = [(i["name"], i["status"], i["killed"]) for i in doc["removed"]]
            return doc if ("idle", "alive", True) in names else None
        doc = wait_until(idle, 20, "the silent session to be idle for 2 s")
        self.assertIs(doc["dry_run"], True)
        self.assertNotIn("chatty", [i["name"] for i in doc["removed"]])
        self.assertRegex(next(i["reason"] for i in doc["removed"] if i["name"] == "idle"),
                         r"^idle for \d+s$")
        self.assertEqual(self.registry_bytes(), before)
        self.assertEqual(self.tmux_sessions(), ["chatty", "fresh", "idle", "old"])
        # Selected sessions that are alive are killed, not left running untracked.
        r = self.ok("cleanup", "--older-than", "1h", "--idle", "3600")
        self.assertRegex(r.stdout, r"\Aremoved old: created \d+d ago \(killed\)\n\Z")
        self.assertEqual(self.tmux_sessions(), ["chatty", "fresh", "idle"])
        self.assertEqual(sorted(self.registry()["sessions"]), ["chatty", "fresh", "idle"])
        r = self.ok("cleanup", "--all", "--json")
        self.assertEqual([(i["name"], i["reason"], i["killed"], i["removed"])
                          for i in json.loads(r.stdout)["removed"]],
                         [(n, "--all", True, True) for n in ("chatty", "fresh", "idle")])
        self.assertEqual(self.tmux_sessions(), [])
        self.assertEqual(self.registry()["sessions"], {})
        self.fails(1, "cleanup", "--older-than", "2x")
        self.fails(1, "cleanup", "--idle")


class FindTest(TmuxTestCase):
    def test_find_registered_unregistered_and_sockets(self):
        self.fails(1, "find", error=False)  # no server yet
        self.api_create("reg", "command", command="sleep 60", wait=False)
        self.api_create("unreg", "command", command="sleep 60", wait=False, register=False)
        in_dir = os.path.join(self.sockets, "mine.sock")
        outside = os.path.join(self.tmp, "outside.sock")
        self.tmux("new-session", "-d", "-s", "indir", socket=in_dir)
        self.tmux("new-session", "-d", "-s", "far", socket=outside)
        subprocess.run(["tmux", "-L", "named", "new-session", "-d", "-s", "bylabel"],
                       env=self.env, check=True)
        r = self.ok("find")
        rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
        self.assertEqual(r.stdout.split()[:4], ["NAME", "SOCKET", "STATUS", "REGISTERED"])
        self.assertEqual(sorted(rows), ["reg", "unreg"])
        self.assertEqual((rows["reg"][3], rows["unreg"][3]), ("yes", "no"))
        found = json.loads(self.ok("find", "-A", "--json").stdout)
        self.assertEqual(sorted((f["name"], f["socket"]) for f in found),
                         [("indir", in_dir), ("reg", self.socket), ("unreg", self.socket)])
        self.assertEqual({f["name"]: f["registered"] for f in found},
                         {"indir": False, "reg": True, "unreg": False})
        self.assertEqual(sorted(found[0]), sorted(["name", "socket", "windows", "attached",
                                                   "kind",
                                                   "created_at", "status", "registered",
                                                   "type"]))
        self.assertEqual([f["name"] for f in json.loads(
            self.ok("find", "-S", outside, "--json").stdout)], ["far"])
        self.assertEqual([f["name"] for f in json.loads(
            self.ok("find", "-L", "named", "--json").stdout)], ["bylabel"])
        self.assertEqual([f["name"] for f in json.loads(
            self.ok("find", "--all", "-q", "REG", "--json").stdout)], ["reg", "unreg"])
        r = self.fails(1, "find", "-A", "-q", "zzz", error=False)
        self.assertEqual(r.stdout, "")
        self.assertIn("No tmux sessions found", r.stderr)
        self.fails(1, "find", "-L", "nobody-runs-this", error=False)
        self.fails(1, "find", "-L", "x", "-S", outside)

    def test_find_all_covers_the_sockets_the_registry_names(self):
        custom = os.path.join(self.tmp, "custom.sock")   # create -S: outside the socket dir
        self.api_create("mine", "command", command="sleep 60", socket=custom, wait=False)
        self.tmux("new-session", "-d", "-s", "beside", socket=custom)
        self.tmux("new-session", "-d", "-s", "far", socket=os.path.join(self.tmp, "far.sock"))
        found = json.loads(self.ok("find", "-A", "--json").stdout)
        self.assertEqual(sorted((f["name"], f["socket"], f["registered"]) for f in found),
                         [("beside", custom, False), ("mine", custom, True)])


class CaptureTest(TmuxTestCase):
    def test_joined_lines_trailing_blanks_lines_all_ansi(self):
        self.api_create("cap")
        tmuxsess.run("printf '%0450d\\n' 0; printf '\\033[31mRED\\033[0m\\n'; "
                     "seq -f 'row%g' 1 300; echo; echo", session="cap")
        text = self.ok("capture", "-s", "cap", "--all").stdout
        lines = text.split("\n")
        self.assertIn("0" * 450, lines)  # wider than the pane, back as one line
        self.assertIn("row1", lines)
        self.assertTrue(text.endswith("row300\n\n\n#\n") or text.endswith("row300\n\n\n$\n"),
                        text[-40:])  # blank output lines kept, trailing blanks dropped
        self.assertNotIn("\x1b", text)
        default = self.ok("capture", "-s", "cap").stdout.split("\n")
        self.assertEqual(len(default), 201)  # 200 lines and the final newline
        self.assertNotIn("row1", default)
        self.assertEqual(self.ok("capture", "-s", "cap", "-n", "4").stdout.split("\n")[:2],
                         ["row300", ""])
        ansi = self.ok("capture", "-s", "cap", "--ansi", "--all").stdout
        self.assertIn("\x1b[31mRED", ansi)
        for line in ansi.splitlines():  # colours never bleed into the next line
            if "\x1b[" in line:
                self.assertTrue(line.endswith("\x1b[0m"), repr(line))
        self.fails(1, "capture", "-s", "cap", "-n", "0")

    def test_crashed_python_traceback_is_readable_after_death(self):
        self.api_create("crash", "python-repl")
        tmuxsess.run("def f():\n    raise ValueError('boom-42')", session="crash")
        self.assertEqual(tmuxsess.run("f()", session="crash").exit_status, 1)
        tmuxsess.send("import os; os._exit(3)", session="crash")
        self.assertEqual(self.wait_status("crash", "dead").exit_status, 3)
        for args in (["-n", "20"], []):
            text = self.ok("capture", "-s", "crash", *args).stdout
            self.assertIn("Traceback (most recent call last):\n", text)
            self.assertIn("ValueError: boom-42\n>>> import os; os._exit(3)\n", text)
        # A script that dies of its exception: the traceback stays in the pane.
        script = os.path.join(self.tmp, "crash.py")
        with open(script, "w") as f:
            f.write("def main():\n    raise KeyError('lost-key')\n\nmain()\n")
        self.api_create("script")
        tmuxsess.send("exec %s %s" % (sys.executable, script), session="script")
        self.assertEqual(self.wait_status("script", "dead").exit_status, 1)
        text = self.ok("capture", "-s", "script", "-n", "20").stdout
        self.assertIn("KeyError: 'lost-key'", text)
        self.assertIn('line 2, in main', text)
        self.fails(1, "capture", "-s", "nope")


class AttachTest(TmuxTestCase):
    def test_attach_prints_the_command_when_not_on_a_terminal(self):
        self.api_create("watch", "command", command="sleep 60", wait=False)
        r = self.ok("attach", "-s", "watch")  # stdin is not a terminal
        argv = shlex.split(r.stdout)
        self.assertEqual(argv, ["tmux", "-S", self.socket, "attach", "-t", "=watch"])
        self.assertIn("not on a terminal", r.stderr)
        # The printed command names the right server and session.
        check = argv[:argv.index("attach")] + ["has-session", "-t", argv[-1]]
        self.assertEqual(subprocess.run(check, env=self.env).returncode, 0)
        # Started with its standard input closed (<&-), as a CI job may be.
        closed = subprocess.run([sys.executable, TOOL, "attach", "-s", "watch"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                preexec_fn=lambda: os.close(0), timeout=60)
        self.assertEqual((closed.returncode, closed.stdout), (0, r.stdout), closed.stderr)
        self.assertNoTraceback(closed)
        self.tmux("kill-session", "-t", "=watch")
        self.fails(1, "attach", "-s", "watch")


class TargetTest(TmuxTestCase):
    def test_target_precedence_and_errors(self):
        for cmd in (["capture"], ["health"], ["kill"], ["attach"]):
            r = self.cli(*cmd)
            self.assertIn("no session is registered", r.stderr)
            self.assertEqual(r.returncode, {"kill": 2}.get(cmd[0], 1), cmd)
        a = self.api_create("a", "command", command="sleep 60", wait=False)
        # The single registered session is the default.
        self.assertEqual(json.loads(self.ok("health").stdout)["pid"], a.pid)
        b = self.api_create("b", "command", command="sleep 60", wait=False)
        for cmd, code in (("capture", 1), ("health", 1), ("kill", 2), ("attach", 1)):
            r = self.fails(code, cmd)
            self.assertIn("2 sessions are registered", r.stderr)
            self.assertIn("(a, b)", r.stderr)
            r = self.fails(code, cmd, "-s", "c")
            self.assertIn("'c' is not registered (registered: a, b)", r.stderr)
        # -s picks; -S/-L with -t beats -s.
        self.assertEqual(json.loads(self.ok("health", "-s", "b").stdout)["pid"], b.pid)
        self.assertEqual(json.loads(self.ok("health", "-s", "b", "-S", self.socket,
                                            "-t", "a").stdout)["pid"], a.pid)
        subprocess.run(["tmux", "-L", "lbl", "new-session", "-d", "-s", "c"],
                       env=self.env, check=True)
        subprocess.run(["tmux", "new-session", "-d", "-s", "d"], env=self.env, check=True)
        pid = subprocess.run(["tmux", "-L", "lbl", "display-message", "-p", "-t", "c",
                              "#{pane_pid}"], env=self.env, stdout=subprocess.PIPE,
                             universal_newlines=True).stdout.strip()
        self.assertEqual(str(json.loads(self.ok("health", "-s", "a", "-L", "lbl",
                                                "-t", "c").stdout)["pid"]), pid)
        # -t alone is tmux's default server, as with tmux itself.
        self.assertEqual(self.cli("health", "-t", "d").returncode, 0)
        self.assertEqual(self.cli("health", "-t", "c").returncode, 2)

    def test_server_with_base_index_1(self):
        conf = os.path.join(self.tmp, "base1.conf")
        with open(conf, "w") as f:
            f.write("set -g base-index 1\nset -g pane-base-index 1\n")
        sock = os.path.join(self.tmp, "base1.sock")
        subprocess.run(["tmux", "-f", conf, "-S", sock, "new-session", "-d", "-s", "mine",
                        "-x", "100", "-y", "20"], env=self.env, check=True)
        self.tmux("split-window", "-t", "mine", socket=sock)
        rec = self.create("onb1", "-S", sock)
        panes = self.tmux("list-panes", "-a", "-F", "#{session_name} #{session_name}:"
                          "#{window_index}.#{pane_index} #{pane_id}", socket=sock).stdout
        self.assertIn("onb1 onb1:1.1 %s\n" % rec["pane_id"], panes)
        self.assertEqual(rec["target"], "onb1:1.1")
        self.assertEqual(self.registry()["sessions"]["onb1"]["target"], "onb1:1.1")
        self.assertEqual(tmuxsess.run("echo on-base-1", session="onb1").output, "on-base-1\n")
        self.assertEqual([s.status for s in tmuxsess.list_sessions()], ["alive"])
        # A pane the tool did not make, by target and by pane id.
        self.tmux("send-keys", "-t", "mine:1.2", "echo second-$((40+2))", "Enter", socket=sock)
        wait_until(lambda: "second-42" in tmuxsess.capture(socket=sock, target="mine:1.2"),
                   what="the second pane's echo")
        pane2 = self.tmux("display-message", "-p", "-t", "mine:1.2", "#{pane_id}",
                          socket=sock).stdout.strip()
        self.assertIn("second-42", self.ok("capture", "-S", sock, "-t", pane2).stdout)
        self.assertEqual(json.loads(self.ok("health", "-S", sock, "-t", pane2).stdout)[
            "status"], "healthy")
        self.ok("kill", "-s", "onb1")
        self.assertEqual(self.tmux_sessions(sock), ["mine"])

    def test_a_wrong_target_is_refused_never_redirected(self):
        # A user's server, base-index 1, two panes that record what they are sent;
        # the second is the current one, where tmux's display-message falls back.
        conf = self.script("base1.conf", "set -g base-index 1\nset -g pane-base-index 1\n")
        sock = os.path.join(self.tmp, "user.sock")
        recs = [os.path.join(self.tmp, "pane%d.rec" % i) for i in (1, 2)]
        progs = [" ".join(shlex.quote(x) for x in (
            sys.executable, self.script("recorder.py", RECORDER), rec)) for rec in recs]
        subprocess.run(["tmux", "-f", conf, "-S", sock, "new-session", "-d", "-s", "work",
                        "-x", "100", "-y", "20", progs[0]], env=self.env, check=True)
        self.tmux("split-window", "-t", "work", progs[1], socket=sock)
        pids = self.tmux("list-panes", "-t", "work", "-F", "#{pane_pid}",
                         socket=sock).stdout.split()
        for bad in ("work:1.9", "work:3.1", "work:3", "%99", "nosuch", "work:0.0"):
            with self.subTest(target=bad):
                where = ("-S", sock, "-t", bad)
                r = self.fails(3, "send", *where, "-c", "echo x")  # the seed's: not ready
                self.assertOneLineError(r.stderr, "no pane %r on %s" % (bad, sock))
                self.fails(126, "run", *where, "-c", "echo x", "--prompt", "REC> $")
                self.fails(1, "capture", *where)
                self.fails(2, "kill", *where)
                self.fails(1, "wait", *where, "-p", "x", "-T", "30")
                r = self.cli("health", *where)
                self.assertEqual((r.returncode, json.loads(r.stdout)["status"]),
                                 (2, "missing"))
        self.assertEqual(self.tmux_sessions(sock), ["work"])
        wait_until(lambda: all("REC>" in tmuxsess.capture(socket=sock, target=t)
                               for t in ("work:1.1", "work:1.2")), what="the recorders")
        # Good targets still resolve, to their own pane; nothing else arrived.
        for i, target in ((0, "work:1.1"), (1, "work:1.2"), (1, "work")):
            self.assertEqual(tmuxsess.pane_health(socket=sock, target=target).pid,
                             int(pids[i]))
            tmuxsess.send(target[-1], socket=sock, target=target, enter=False)
        self.assertReceived(recs[0], b"1")
        self.assertReceived(recs[1], b"2k")


class CreateRaceTest(TmuxTestCase):
    def parallel(self, argv_list):
        """Start all at once; return (exit code, stdout, stderr) of each."""
        procs = [self.popen(*argv) for argv in argv_list]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            results.append((p.returncode, out, err))
        return results

    def test_20_parallel_creates(self):
        results = self.parallel([["create", "-n", "par%02d" % i, "--ready-timeout", "60"]
                                 for i in range(20)])
        self.assertEqual([r[0] for r in results], [0] * 20, [r[2] for r in results if r[0]])
        doc = self.registry()  # valid JSON, the spec's shape
        self.assertEqual(sorted(doc["sessions"]), ["par%02d" % i for i in range(20)])
        self.assertEqual(len({e["pane_id"] for e in doc["sessions"].values()}), 20)
        statuses = tmuxsess.list_sessions()
        self.assertEqual([s.status for s in statuses], ["alive"] * 20)
        self.assertEqual(self.tmux_sessions(), sorted(doc["sessions"]))
        self.assertEqual(len(self.transcripts()), 20)

    def test_10_parallel_creates_of_one_name(self):
        custom = os.path.join(self.tmp, "nr.sock")
        for extra, server in (([], self.socket), (["--no-register", "-S", custom], custom)):
            results = self.parallel([["create", "-n", "same", "--cmd", "sleep 60", "--no-wait"]
                                     + extra
                                     for _ in range(10)])
            codes = sorted(r[0] for r in results)
            self.assertEqual(codes, [0] + [2] * 9, [r[2] for r in results])
            for code, _out, err in results:
                if code:
                    self.assertIn("already exists", err)
                    self.assertNotIn("Traceback", err)
            winner = json.loads(next(r[1] for r in results if r[0] == 0))
            # Nothing half-made: one tmux session, one transcript, one entry at most.
            self.assertEqual(self.tmux_sessions(server), ["same"])
            self.assertEqual(self.tmux("display-message", "-p", "-t", "=same:", "#{pane_id}",
                                       socket=server).stdout.strip(), winner["pane_id"])
            self.assertEqual(self.transcripts(), [os.path.basename(winner["transcript"])])
            self.assertEqual({n: e["pane_id"] for n, e in self.registry()["sessions"].items()},
                             {"same": winner["pane_id"]} if not extra else {})
            tmuxsess.kill_session(socket=server, target="same")
            self.assertEqual(self.transcripts(), [])


class SeedWorkflowTest(TmuxTestCase):
    """The seed guide's four workflows, done with this tool."""

    def socket_of(self, name):
        # SOCKET=$(jq -r '.sessions["NAME"].socket' .sessions.json)
        with open(self.reg_path) as f:
            return json.load(f)["sessions"][name]["socket"]

    def test_ephemeral_calculation(self):
        self.assertIn("Total: 0", self.ok("list-sessions").stdout)
        self.ok("create-session", "-n", "quick-calc", "--python")
        self.ok("safe-send", "-s", "quick-calc", "-c",
                "import math; print(math.factorial(100))", "-w", ">>>", "-T", "10")
        sock = self.socket_of("quick-calc")
        out = self.tmux("capture-pane", "-p", "-t", "quick-calc:0.0", "-S", "-10",
                        socket=sock).stdout
        self.assertIn(str(math.factorial(100))[:60], out)
        self.tmux("kill-session", "-t", "quick-calc", socket=sock)
        # Its server went with its last session.
        self.assertEqual(self.ok("cleanup-sessions").stdout,
                         "removed quick-calc: no server\n")
        self.assertEqual(self.registry()["sessions"], {})
        self.assertEqual(self.transcripts(), [])

    def test_long_running_session(self):
        name = "data-analysis-2025-11"
        self.ok("create-session", "-n", name, "--python")
        self.ok("safe-send", "-s", name, "-c", "data = list(range(10))", "-w", ">>>")
        self.ok("safe-send", "-s", name, "-c", "print(sum(data) * 3)", "-w", "^135$")
        self.assertEqual(self.cli("pane-health", "-s", name).returncode, 0)
        self.assertIn(" alive ", self.ok("list-sessions").stdout)
        self.assertEqual(self.ok("run", "-s", name, "-c", "len(data)").stdout, "10\n")
        self.tmux("kill-session", "-t", name, socket=self.socket_of(name))
        self.ok("cleanup-sessions")
        self.assertEqual(self.registry()["sessions"], {})

    def test_crash_recovery(self):
        self.ok("create-session", "-n", "crashed-session", "--python")
        self.ok("safe-send", "-s", "crashed-session", "-c",
                "import os; print('last words'); os._exit(2)")
        wait_until(lambda: " dead " in self.ok("list-sessions").stdout, 15, "dead status")
        r = self.cli("pane-health", "-s", "crashed-session", "--format", "text")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "Session crashed-session is dead: its program "
                                   "exited with status 2.\n")
        sock = self.socket_of("crashed-session")
        out = self.tmux("capture-pane", "-p", "-t", "crashed-session:0.0", "-S", "-200",
                        socket=sock).stdout
        self.assertIn("last words", out)
        self.assertIn("last words", self.ok("capture", "-s", "crashed-session").stdout)
        self.assertEqual(self.ok("cleanup-sessions").stdout,
                         "removed crashed-session: dead\n")
        self.ok("create-session", "-n", "crashed-session-recovery", "--python")
        self.ok("safe-send", "-s", "crashed-session-recovery", "-c",
                "# Resuming from crash...", "-w", ">>>")
        self.assertEqual(sorted(self.registry()["sessions"]), ["crashed-session-recovery"])
        self.assertEqual(self.tmux_sessions(), ["crashed-session-recovery"])

    def test_multi_session_workspace(self):
        names = ["loader-session", "analysis-session", "monitor-session"]
        procs = [self.popen("create-session", "-n", n, "--python") for n in names]
        self.assertEqual([p.wait(timeout=60) for p in procs], [0, 0, 0])
        sends = [self.popen("safe-send", "-s", n, "-c",
                            "import time; time.sleep(0.3); print('done-' + %r)" % n,
                            "-w", "^done-", "-T", "30") for n in names]
        self.assertEqual([p.wait(timeout=60) for p in sends], [0, 0, 0])
        out = self.ok("list-sessions").stdout
        self.assertEqual(out.splitlines()[-1], "Total: 3 | Alive: 3 | Dead: 0")
        for n in names:
            self.assertIn("done-" + n, tmuxsess.capture(session=n))
        r = self.ok("cleanup-sessions", "--all")
        self.assertEqual(sorted(r.stdout.splitlines()),
                         sorted("removed %s: --all (killed)" % n for n in names))
        self.assertEqual(self.tmux_sessions(), [])
        self.assertEqual(self.registry()["sessions"], {})


# ===========================================================================
# Talking: what send types arrives byte for byte; send -w, wait and run end
# at the program's answer (not at old output, not at the echo, at once when
# the program or server dies), also on panes the tool did not make; run
# prints exactly the output; transcripts keep what tmux's history drops, and
# big output keeps the tool small.
# ===========================================================================


# A REPL-like program with its own prompt, for run --prompt.
DB_LOOP = r'''
import sys
while True:
    try:
        line = input("db> ")
    except EOFError:
        break
    print("got %r" % line)
    sys.stdout.flush()
'''


# The seed's multi-line example: methods separated by a blank line.
SEED_CLASS = '''class Counter:
    def __init__(self):
        self.n = 40

    def inc(self):
        self.n += 1
        return self.n

c = Counter()
c.inc()
'''


def hostile_texts(marker):
    """At least 30 texts that naive senders mangle; each must arrive byte-exact."""
    return [
        "x = 41;", "a;b;", ";", "\\;", "ends with \\;",           # tmux separators
        "-1", "-c", "--", "--json", "-k C-c", "-", "-l -m",       # flags
        "Enter", "Up", "C-c", "Escape", "Space", "BSpace", "M-x", "F1",
        "Enter Enter C-d",                                         # key names
        "'single' \"double\" `back` ' \"",                          # quotes
        "back\\slash \\n \\t \\\\ \\", "\\",                       # backslashes
        "$(touch %s) ${HOME} $HOME `id`" % marker,                 # shell syntax
        "#{session_name} #{pane_id} #{?pane_dead,1,0}",            # tmux formats
        "#(touch %s)" % marker, "100% %s %d %% %1",                # format jobs, %
        "tab\there\t\t", "emoji \U0001F600\U0001F389 \U0001F469\u200d\U0001F4BB",
        "wide \u4e2d\u6587\u5b57 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
        "combining e\u0301 a\u0308 n\u0303", "zero\u200bwidth \u202eRTL",
        "crlf\r\nnext", "lone\rcr", "trailing spaces   ", "   leading",
        "", "{}[]()<>|&!~^*?", "\x1b[31mESC bytes\x1b[0m", "multi\nline\n",
        "invalid utf-8 \udcff\udcfe",                              # surrogateescape
    ]


def enc(text):
    """The bytes a text is made of (the invalid UTF-8 one included)."""
    return text.encode("utf-8", "surrogateescape")


class SendTest(TmuxTestCase):
    def test_ctrl_c_interrupts_a_shell_command(self):
        self.api_create("sh")
        self.ok("send", "-s", "sh", "-c", "sleep 100")
        wait_until(lambda: self.tmux("display-message", "-p", "-t", "sh",
                                     "#{pane_current_command}").stdout.strip() == "sleep",
                   20, "sleep to start")
        self.ok("send", "-s", "sh", "-k", "C-c")
        r = self.ok("run", "-s", "sh", "-T", "20", "-c", "echo back")
        self.assertEqual(r.stdout, "back\n")

    def test_key_names_are_checked_before_tmux_is_called(self):
        out = self.recorder("rec")
        env, calls = self.logging_tmux()
        # tmux would type an unknown name as text: a typo'd key would run as a command.
        for bad, guess in (("Ctrl-C", "C-c"), ("NoSuchKey", ""), ("alt+x", "M-x"),
                           ("Esc", "Escape"), ("S-Tab", "BTab"), ("S-a", ""), ("", "")):
            with self.subTest(key=bad):
                r = self.fails(4, "send", "-s", "rec", "-k", "C-c", bad, env=env)
                self.assertOneLineError(r.stderr, "not a tmux key name")
                self.assertIn(bad or '""', r.stderr.splitlines()[0])
                if guess:
                    self.assertIn("did you mean %s?" % guess, r.stderr)
                self.assertIn("hint: text goes in with -c", r.stderr)
        self.assertEqual(calls(), [])
        # Names as tmux spells them, in any case it accepts, arrive as those keys.
        self.ok("send", "-s", "rec", "-k", "C-c", "M-x", "C-M-a", "Escape", "y", "q",
                "enter", "^d", "S-Up", "F12")
        self.assertReceived(out, b"\x03\x1bx\x1b\x01\x1byq\r\x04\x1b[1;2A\x1b[24~")

    def test_nul_is_refused_and_nothing_is_sent(self):
        out = self.recorder("rec")
        path = os.path.join(self.tmp, "nul.bin")
        with open(path, "wb") as f:
            f.write(b"before\0after")
        for args, stdin in ((["--file", path], None), (["--file", "-"], "a\0b")):
            r = self.cli("send", "-s", "rec", *args, input=stdin)
            self.assertEqual(r.returncode, 4, r.stderr)
            self.assertTrue(r.stderr.startswith("tmuxsess: error: "), r.stderr)
            self.assertIn("NUL", r.stderr)
            self.assertLessEqual(len(r.stderr.strip().split("\n")), 2)
        self.ok("send", "-s", "rec", "-c", "after")
        self.assertReceived(out, b"after\r")

    def test_unhealthy_pane_exits_3_without_sending(self):
        self.api_create("gone", "command", command="exit 0", wait=False)
        wait_until(lambda: tmuxsess.pane_health(session="gone").status == "dead", 20,
                   "the pane to die")
        env, calls = self.logging_tmux()
        r = self.cli("send", "-s", "gone", "-c", "hello", "-w", "x", env=env)
        self.assertEqual(r.returncode, 3)
        self.assertIn("session gone is dead: its program exited with status 0; nothing was "
                      "sent", r.stderr)
        self.assertNoTraceback(r)
        # One look at the pane, and nothing typed: no buffer, no keys.
        self.assertEqual(len(calls()), 1, calls())
        self.assertNotRegex(calls()[0], r"load-buffer|paste-buffer|send-keys -t \S+ [^;]")

    def test_a_program_killed_while_waiting_is_named_with_its_signal(self):
        kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
        self.api_create("py", "python-repl")
        r = self.fails(3, "send", "-s", "py", "-c", kill, "-w", "never", "-T", "30",
                       error=False)  # the hint holds the pane's last lines
        self.assertEqual(r.stderr.splitlines()[0], "tmuxsess: error: the program was killed "
                                                   "by signal 15 (SIGTERM) while waiting")
        self.api_create("py2", "python-repl")
        r = self.fails(125, "run", "-s", "py2", "-c", kill, "-T", "30")
        self.assertOneLineError(r.stderr, "the program was killed by signal 15 (SIGTERM) "
                                          "while waiting")

    def test_wait_timeout_exits_2_with_last_lines(self):
        self.api_create("sh")
        r = self.cli("send", "-s", "sh", "-c", "echo some-output-$((1+1)); sleep 30", "-w",
                     "never", "-T", "0.5")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("tmuxsess: error: pattern 'never' not seen"))
        self.assertIn("some-output-2", r.stderr)
        self.ok("send", "-s", "sh", "-k", "C-c")

    def test_wait_after_keys_skips_the_recalled_line(self):
        self.api_create("sh")
        tmuxsess.run("echo RECALL-$((6*7))", session="sh")
        r = self.ok("send", "-s", "sh", "-k", "Up", "Enter", "-w", r"RECALL\S*", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "RECALL-42")

    def flaky_tmux(self, fails, message):
        """A tmux that fails its first ``fails`` deliveries with ``message``.

        Looking a pane up (send-keys without keys, then display-message) is no delivery.
        """
        n = len([f for f in os.listdir(self.tmp) if f.startswith("flaky-tmux")])
        count = os.path.join(self.tmp, "deliveries-%d" % n)
        wrapper = self.script("flaky-tmux-%d" % n, """#!/bin/sh
case "$*" in *display-message*) ;; *paste-buffer*|*send-keys*)
  n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}
  if [ $n -le {fails} ]; then echo {message} >&2; exit 1; fi;;
esac
exec {tmux} "$@"
""".format(count=shlex.quote(count), fails=fails, message=shlex.quote(message),
           tmux=shlex.quote(shutil.which("tmux"))))
        os.chmod(wrapper, 0o755)
        return dict(self.env, TMUXSESS_TMUX=wrapper), lambda: int(read_bytes(count))

    def test_transient_failures_are_retried_with_backoff_others_are_not(self):
        self.api_create("sh")
        env, deliveries = self.flaky_tmux(2, "lost server")
        r = self.cli("send", "-s", "sh", "-c", "echo ok-$((1+1))", "-w", "^ok-2$",
                     "-r", "3", "-i", "0.01", "-v", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("retrying after: tmux: lost server"), 2, r.stderr)
        self.assertEqual(deliveries(), 3)
        screen = self.ok("capture", "-s", "sh").stdout
        self.assertEqual(screen.count("echo ok-$((1+1))"), 1, screen)  # typed once

        env, deliveries = self.flaky_tmux(9, "lost server")
        r = self.cli("send", "-s", "sh", "-c", "echo never", "-r", "2", "-i", "0.01",
                     env=env)
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "lost server", "after 2 retries")
        self.assertEqual(deliveries(), 3)

        env, deliveries = self.flaky_tmux(1, "unknown command: paste-buffer")
        r = self.cli("send", "-s", "sh", "-c", "echo never", "-r", "3", "-i", "0.01",
                     env=env)
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "unknown command")
        self.assertEqual(deliveries(), 1)  # not transient: no retry
        self.assertNotIn("never", self.ok("capture", "-s", "sh").stdout)

    def test_json(self):
        self.api_create("sh")
        r = self.ok("send", "-s", "sh", "-c", "echo j-$((2*3))", "-w", "j-\\d", "--json")
        doc = json.loads(r.stdout)
        self.assertEqual((doc["sent"], doc["found"], doc["match"], doc["bytes"]),
                         (True, True, "j-6", len("echo j-$((2*3))")))


class WaitTest(TmuxTestCase):
    def test_a_pattern_at_the_end_of_a_line_longer_than_the_lookback_is_seen(self):
        # A wait searches the last 64 KiB; a line longer than that kept nothing of
        # itself once its newline came, so the word at its end was never seen and
        # the wait ended "back at its prompt".
        self.api_create("sh")
        for width in (70000, 200000):
            with self.subTest(width=width):
                self.ok("send", "-s", "sh", "-c", "printf '%%0%dd' 0; echo sto''red" % width,
                        "-w", "stored", "-T", "20")
                self.ok("wait", "-s", "sh", "-p", "0stored$", "-T", "5")

    def test_fixed_regex_whole_pane_and_json(self):
        self.api_create("sh")
        self.ok("run", "-s", "sh", "-c", "echo OLDTOKEN")
        self.ok("send", "-s", "sh", "-c", "echo axxb; echo 'a.c'")
        doc = json.loads(self.ok("wait", "-s", "sh", "-p", "ax+b", "--json").stdout)
        self.assertEqual((doc["found"], doc["match"]), (True, "axxb"))
        self.assertLessEqual({"found", "match", "reason", "elapsed"}, set(doc))
        self.assertEqual(self.ok("wait", "-s", "sh", "-F", "-p", "a.c", "--json"
                                 ).stdout.count('"match": "a.c"'), 1)
        self.assertTrue(tmuxsess.wait_for_text("^a.c$", timeout=10, session="sh").found)
        # The echo "echo 'a.c'" is not output: a line that is exactly a.c is. The
        # shell is back at its prompt, so the wait says so at once.
        r = self.cli("wait", "-s", "sh", "-F", "-p", "ax+b", "-T", "30", "--json")
        self.assertEqual(r.returncode, 2)
        doc = json.loads(r.stdout)
        self.assertEqual((doc["found"], doc["reason"]), (False, "prompt"))
        # Old output does not count, unless --whole-pane asks for the old behaviour.
        r = self.cli("wait", "-s", "sh", "-p", "OLDTOKEN$", "-T", "30")
        self.assertEqual(r.returncode, 2)  # at once: the shell is back at its prompt
        self.assertIn("not seen; the program is back at its prompt", r.stderr)
        self.assertIn("axxb", r.stderr)  # the last lines, to see what happened
        self.ok("wait", "-s", "sh", "--whole-pane", "-p", "^OLDTOKEN$", "-T", "1")

    def test_echo_of_the_text_is_not_output(self):
        self.api_create("py", "python-repl")
        tmuxsess.send("import time; time.sleep(0.5); print('-'.join(['DONE'] * 2))",
                      session="py")
        res = tmuxsess.wait_for_text("DONE", timeout=30, session="py")
        self.assertTrue(res.found, res)
        self.assertIn("DONE-DONE", self.screen("py").split("\n"))


    def test_text_sent_without_enter_is_not_output(self):
        # send -l, then wait: the echo of the unterminated text is not output...
        self.api_create("py", "python-repl")
        self.ok("send", "-s", "py", "-l", "-c", 'print("QQ" * 2)')
        wait_until(lambda: self.screen("py").endswith('print("QQ" * 2)\n'), 20, "the echo")
        r = self.cli("wait", "-s", "py", "-p", "QQ", "-T", "0.3", "--json")
        # Not found: a timeout, or (0.3 s is about when the kernel has said so
        # twice) the program waiting for the rest of its line.
        self.assertIn((r.returncode, json.loads(r.stdout)["reason"]),
                      [(1, "timeout"), (2, "input")])
        # ... what Enter makes the program print is.
        self.ok("send", "-s", "py", "-k", "Enter")
        doc = json.loads(self.ok("wait", "-s", "py", "-p", "Q+", "--json").stdout)
        self.assertEqual(doc["match"], "QQQQ")
        # bash shows pasted text highlighted: send -l -w skips that echo too.
        self.api_create("sh")
        r = self.cli("send", "-s", "sh", "-l", "-c", "echo ZZ", "-w", "ZZ", "-T", "0.3")
        self.assertIn(r.returncode, (2, 5), r.stderr)  # not seen: a timeout, or waiting
        r = self.ok("send", "-s", "sh", "-c", "", "-w", "^ZZ$", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "ZZ")


def inotify_fds(pid="self"):
    """How many inotify instances a process holds."""
    fd_dir = "/proc/%s/fd" % pid
    count = 0
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            count += os.readlink(os.path.join(fd_dir, fd)) == "anon_inode:inotify"
    return count


@unittest.skipUnless(sys.platform.startswith("linux"), "inotify is Linux's")
class WakeTest(TmuxTestCase):
    """A wait is woken by the transcript growing (inotify), not by a poll: its
    instances are reused, never leaked, and where there is none it polls."""

    def test_a_watch_wakes_on_a_write_not_at_its_timeout(self):
        path = os.path.join(self.tmp, "file")
        write_bytes(path, b"")
        watch = tmuxsess.Host().watch_transcript(path)
        self.addCleanup(watch.close)
        self.assertTrue(watch.wakes)
        timer = threading.Timer(0.2, write_bytes, (path, b"x"))
        timer.start()
        self.addCleanup(timer.cancel)
        began = time.monotonic()
        watch.wait(30)
        self.assertLess(time.monotonic() - began, 15)  # woken, not timed out
        watch.close()
        watch.close()  # twice is harmless

    def test_runs_reuse_their_instances_and_a_long_wait_returns_with_the_prompt(self):
        self.api_create("py", "python-repl")
        before = inotify_fds()
        for i in range(20):  # each waits long enough to set up its watch
            r = tmuxsess.run("import time; time.sleep(0.06); print(%d)" % i, session="py")
            self.assertEqual((r.output, r.exit_status), ("%d\n" % i, 0))
        self.assertLessEqual(inotify_fds() - before, 1)
        # Two runs at once on two sessions: each has its own instance.
        self.api_create("sh")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            outs = list(pool.map(lambda a: tmuxsess.run(a[1], session=a[0]).output,
                                 [("py", "import time; time.sleep(0.3); print('p')"),
                                  ("sh", "sleep 0.3; echo s")]))
        self.assertEqual(outs, ["p\n", "s\n"])
        self.assertLessEqual(inotify_fds() - before, 2)

    def test_without_inotify_a_wait_polls(self):
        self.api_create("sh")
        with mock.patch.object(tmuxsess._Inotify, "looked", True), \
                mock.patch.object(tmuxsess._Inotify, "libc", None):
            watch = tmuxsess.Host().watch_transcript(os.path.join(self.tmp, "nothing"))
            self.assertFalse(watch.wakes)
            r = tmuxsess.run("sleep 0.2; echo polled", session="sh")
        self.assertEqual((r.output, r.exit_status), ("polled\n", 0))


class RunTest(TmuxTestCase):
    """run prints exactly the output; the exit status says how it ended."""

    def test_shell(self):
        self.api_create("sh")
        r = self.ok("run", "-s", "sh", "-c", "echo hi; printf 'a\\tb  \\n'")
        self.assertEqual(r.stdout, "hi\na\tb  \n")  # no echo, no prompt
        self.assertEqual(self.cli("run", "-s", "sh", "-c", "(exit 3)").returncode, 3)
        r = self.cli("run", "-s", "sh", "-c", "false")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (1, "", ""))
        r = tmuxsess.run("cd /tmp && pwd\necho two", session="sh")
        self.assertEqual((r.output, r.exit_status), ("/tmp\ntwo\n", 0))
        # Lines on which no command runs: bash prints no C mark, only the D mark.
        r = tmuxsess.run("fi", session="sh")
        self.assertEqual((r.output, r.exit_status), (
            "bash: syntax error near unexpected token `fi'\n", 2))
        self.assertEqual(tmuxsess.run("", session="sh").output, "")

    def test_bang_is_text_and_nothing_waits_in_a_pager(self):
        # History expansion would fail on "a!b" before bash printed a prompt mark.
        self.api_create("sh")
        r = tmuxsess.run('echo "a!b" !!', session="sh", timeout=10)
        self.assertEqual((r.output, r.exit_status, r.timed_out), ("a!b !!\n", 0, False))
        self.assertEqual(tmuxsess.run("echo next", session="sh", timeout=10).output, "next\n")
        # Pagers print and return: PAGER and GIT_PAGER are cat, unless -e says otherwise.
        self.assertEqual(tmuxsess.run('echo "$PAGER $GIT_PAGER"', session="sh").output,
                         "cat cat\n")
        self.api_create("py", "python-repl", env={"GIT_PAGER": "less -R"})
        r = tmuxsess.run("import os; os.environ['PAGER'], os.environ['GIT_PAGER']",
                         session="py")
        self.assertEqual(r.output, "('cat', 'less -R')\n")
        r = tmuxsess.run("help(len)", session="py", timeout=10)
        self.assertIn("Return the number of items in a container.", r.output)
        self.assertEqual((r.exit_status, r.timed_out), (0, False))

    def test_python(self):
        self.api_create("py", "python-repl")
        self.assertEqual(self.ok("run", "-s", "py", "-c", "6*7").stdout, "42\n")
        r = self.cli("run", "-s", "py", "-c", "1/0")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stdout.startswith("Traceback (most recent call last):\n"), r.stdout)
        self.assertTrue(r.stdout.endswith("ZeroDivisionError: division by zero\n"))
        self.assertEqual(self.cli("run", "-s", "py", "-c", "y = 1").returncode, 0)
        path = self.script("code.py", "def g():\n    return 7\n\n\nprint(g() * y)\n")
        r = self.ok("run", "-s", "py", "--file", path, "--json")
        doc = json.loads(r.stdout)
        self.assertEqual((doc["output"], doc["exit_status"], doc["timed_out"]),
                         ("7\n", 0, False))
        self.assertIsInstance(doc["elapsed"], float)
        self.assertLessEqual({"output", "exit_status", "timed_out", "elapsed"}, set(doc))
        r = self.cli("run", "-s", "py", "--file", "-", input="for i in range(2):\n"
                     "    print(i)\n\n    print(-i)\nraise SystemError('x')\n")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stdout.startswith("0\n0\n1\n-1\nTraceback"), r.stdout)

    @unittest.skipUnless(shutil.which("gdb"), "gdb is not installed")
    def test_gdb(self):
        self.api_create("gdb", "debugger")
        r = self.ok("run", "-s", "gdb", "-c", "print 1+2")
        self.assertEqual(r.stdout, "$1 = 3\n")
        self.assertEqual(tmuxsess.run("print 40+2", session="gdb").output, "$2 = 42\n")
        # gdb reports no status: an error is not "0", it is unknown (null; the CLI exits 0).
        r = tmuxsess.run("print nosuchsymbol", session="gdb")
        self.assertEqual((r.output, r.exit_status), (
            'No symbol table is loaded.  Use the "file" command.\n', None))
        doc = json.loads(self.ok("run", "-s", "gdb", "--json", "-c", "print 2").stdout)
        self.assertEqual((doc["output"], doc["exit_status"]), ("$3 = 2\n", None))
        # A prompt mark gdb prints (without the session's token) is output, not a prompt.
        r = tmuxsess.run(r"echo \033]133;A\007printed\n", session="gdb")
        self.assertEqual(r.output, "printed\n")
        # Blocks (define, python ... end) run as one command, not line by line at
        # gdb's ">" prompt; the file that carries them is gone afterwards.
        r = tmuxsess.run("define hi\necho hello\\n\nend", session="gdb", timeout=10)
        self.assertEqual((r.output, r.timed_out), ("", False))
        self.assertEqual(self.ok("run", "-s", "gdb", "-c", "hi").stdout, "hello\n")
        r = self.ok("run", "-s", "gdb", "-c", "python\nx = 6 * 7\nprint(x)\nend\nhi\n")
        self.assertEqual(r.stdout, "42\nhello\n")
        self.assertEqual([f for f in self.state_files() if f.endswith(".gdb")], [])

    def test_printed_prompt_marks_do_not_end_a_run(self):
        # The tool's marks carry a per-session token: OSC 133 marks that a program
        # prints (a stray print, a nested shell or ssh with shell integration)
        # neither end a run nor set its status.
        self.api_create("py", "python-repl")
        r = tmuxsess.run(r"print('a\x1b]133;D;0\x07b'); print('c\x1b]133;A\x07d')",
                         session="py")
        self.assertEqual((r.output, r.exit_status), ("ab\ncd\n", 0))
        self.api_create("sh")
        r = tmuxsess.run(r"printf '\e]133;D;7\a'; echo visible", session="sh")
        self.assertEqual((r.output, r.exit_status), ("visible\n", 0))
        nested = ("PROMPT_COMMAND='printf \"\\033]133;D;%s\\007\\033]133;A\\007\" $?' "
                  "bash --norc -i < <(printf 'echo inner\\nexit 3\\n'); echo \"outer-$?\"")
        r = tmuxsess.run(nested, session="sh", timeout=20)
        self.assertIn("\ninner\n", r.output)
        self.assertTrue(r.output.endswith("\nouter-3\n"), r.output)
        self.assertEqual(r.exit_status, 0)
        # A session made before marks had tokens takes every mark, as it did then.
        self.tmux("set-option", "-u", "-t", "sh", "@tmuxsess-token")
        r = tmuxsess.run("echo old; (exit 4)", session="sh")
        self.assertEqual((r.output, r.exit_status), ("old\n", 4))

    def test_command_with_prompt(self):
        loop = shlex.quote(sys.executable) + " " + shlex.quote(self.script("db.py", DB_LOOP))
        self.api_create("db", "command", command=loop, prompt=r"^db> $")
        r = self.ok("run", "-s", "db", "-c", "select 1; -- x")
        self.assertEqual(r.stdout, "got 'select 1; -- x'\n")
        r = self.ok("run", "-s", "db", "-c", "a\nb")
        self.assertEqual(r.stdout, "got 'a'\ngot 'b'\n")
        # A prompt regex says nothing of how the line ended: the status is unknown.
        self.assertIsNone(tmuxsess.run("c", session="db").exit_status)
        # A --cmd session created without --prompt: give it to run.
        self.api_create("db2", "command", command=loop)
        r = self.ok("run", "-s", "db2", "--prompt", "db> $", "-c", "Enter")
        self.assertEqual(r.stdout, "got 'Enter'\n")
        r = self.cli("run", "-s", "db2", "-c", "x")
        self.assertEqual(r.returncode, 126)
        self.assertIn("--prompt", r.stderr)

    def test_timeout_gives_partial_output_then_session_recovers(self):
        self.api_create("sh")
        began = time.monotonic()
        r = self.cli("run", "-s", "sh", "-T", "1", "-c", "echo first; sleep 30")
        self.assertEqual(r.returncode, 124)
        self.assertEqual(r.stdout, "first\n")
        self.assertIn("tmuxsess: error: no prompt within 1s", r.stderr)
        self.assertIn("send -s sh -k C-c", r.stderr)
        self.assertLess(time.monotonic() - began, 15)
        self.ok("send", "-s", "sh", "-k", "C-c")
        self.assertEqual(self.ok("run", "-s", "sh", "-c", "echo back").stdout, "back\n")
        # A shell without the tool's marks (exec bash, ssh, su) waits for input at a
        # prompt the tool does not know: said at once, and the hint says --prompt.
        r = self.cli("run", "-s", "sh", "-T", "30", "-c", "exec env PS1='plain$ ' bash --norc")
        self.assertEqual((r.returncode, r.stdout), (123, "plain$ "))
        self.assertOneLineError(r.stderr, "waits for input at 'plain$'")
        self.assertRegex(r.stderr.split("\n")[1], r"'plain\$'.* --prompt ")
        r = self.ok("run", "-s", "sh", "--prompt", r"^plain\$ $", "-c", "echo plain")
        self.assertEqual(r.stdout, "plain\n")

    def test_busy_program_or_unsent_text_runs_nothing(self):
        # A program that is busy, or has text typed on its prompt line: run fails
        # (126) with nothing typed and nothing on stdout, and says what to do.
        self.api_create("py", "python-repl")
        self.ok("send", "-s", "py", "-c", "import time; time.sleep(60)")
        began = time.monotonic()
        r = self.fails(126, "run", "-s", "py", "-T", "0.5", "-c", "print('never')")
        self.assertLess(time.monotonic() - began, 15)
        self.assertEqual(r.stdout, "")
        self.assertOneLineError(r.stderr, "py is not at its prompt (busy, or waiting for "
                                          "input); nothing was sent")
        self.assertIn("-k C-c", r.stderr)
        self.assertIn("give --prompt", r.stderr)
        self.ok("send", "-s", "py", "-k", "C-c")
        self.ok("wait", "-s", "py", "-p", "^>>> $", "-T", "20")
        self.ok("send", "-s", "py", "-l", "-c", "abc = ")
        wait_until(lambda: self.screen("py").endswith("\n>>> abc =\n"), 20, "the echo")
        r = self.fails(126, "run", "-s", "py", "-c", "print(1)")
        self.assertEqual(r.stdout, "")
        self.assertOneLineError(r.stderr, "unsent text", "'abc ='", "nothing was sent")
        self.assertIn("send -s py -k C-u", r.stderr)
        self.ok("send", "-s", "py", "-k", "C-u")
        self.assertEqual(tmuxsess.run("'abc' in dir()", session="py").output, "False\n")
        self.assertNotIn("never", tmuxsess.capture(session="py", all=True))
        # The same in a shell, whose readline redraws the line as it edits.
        self.api_create("sh")
        tmuxsess.send("echo PARTIAL", enter=False, session="sh")
        wait_until(lambda: self.screen("sh").endswith(" echo PARTIAL\n"), 20, "the echo")
        with self.assertRaises(tmuxsess.TmuxsessError) as caught:
            tmuxsess.run("echo hi", session="sh")
        self.assertEqual(caught.exception.kind, "busy")
        self.assertIn("'echo PARTIAL'", caught.exception.message)
        tmuxsess.send(keys=["C-u"], session="sh")
        self.assertEqual(tmuxsess.run("echo hi", session="sh").output, "hi\n")

    def test_a_dead_pane_runs_nothing(self):
        self.api_create("py", "python-repl")
        r = self.cli("run", "-s", "py", "-c", "import os; os._exit(7)")
        self.assertEqual(r.returncode, 125)
        self.assertIn("exited with status 7 while waiting", r.stderr)
        r = self.cli("run", "-s", "py", "-c", "print('never')")
        self.assertEqual((r.returncode, r.stdout), (125, ""))
        self.assertOneLineError(r.stderr, "session py is dead: its program exited with "
                                          "status 7; nothing was run")
        self.assertNotIn(b"never", read_bytes(os.path.join(self.state, "transcripts",
                                                           self.transcripts()[0])))
        with self.assertRaises(tmuxsess.TmuxsessError) as caught:
            tmuxsess.run("1", session="py")
        self.assertEqual(caught.exception.kind, "dead")

    def test_max_output_keeps_the_newest_bytes(self):
        self.api_create("sh")
        r = self.ok("run", "-s", "sh", "--max-output", "1000", "-c", "seq 1 20000")
        note, _, rest = r.stdout.partition("\n")
        self.assertIn("omitted", note)
        self.assertLessEqual(len(rest), 1000)
        self.assertTrue(rest.endswith("\n19999\n20000\n"), rest[-30:])
        self.assertTrue(rest.split("\n")[0].isdigit() and int(rest.split("\n")[0]) > 19000)
        doc = json.loads(self.ok("run", "-s", "sh", "--max-output", "0", "--json", "-c",
                                 "seq 1 20000").stdout)
        self.assertEqual(doc["output"], "".join("%d\n" % i for i in range(1, 20001)))
        self.assertFalse(doc["truncated"])


# ===========================================================================
# Program profiles: node, psql (a real server), sqlite3, pdb inside Python
# ===========================================================================


class PostgresServer:
    """A throwaway PostgreSQL server: a Unix socket in a temp dir, no TCP; run as
    the ``postgres`` user when the suite runs as root (postgres refuses root)."""

    USER, DB = "postgres", "tmuxsess"

    def __init__(self):
        self.bindir = next((d for d in [os.path.dirname(os.path.realpath(
            shutil.which("initdb") or "/nonexistent"))] + sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
            if os.access(os.path.join(d, "initdb"), os.X_OK)), None)
        self.dir = None

    def skip_reason(self):
        if not self.bindir:
            return "PostgreSQL's initdb is not installed"
        if not shutil.which("psql"):
            return "psql is not installed"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(self.USER)
            except KeyError:
                return "running as root and there is no user %r to run postgres" % self.USER
        return None

    def _run(self, *argv, **env):
        """A PostgreSQL program, as its user when we are root."""
        preexec = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.USER)

            def preexec():
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        subprocess.run([os.path.join(self.bindir, argv[0])] + list(argv[1:]), check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, preexec_fn=preexec, cwd=self.dir,
                       env=dict(os.environ, LC_ALL="C", PGTZ="UTC", **env), timeout=60)

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="tmuxsess-pg-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-D", data, "-U", self.USER, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self._run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "30",
                  "-o", "-k %s -c listen_addresses='' -c fsync=off -c full_page_writes=off"
                  " -c synchronous_commit=off -c shared_buffers=16MB" % self.dir, "start")
        self._run("createdb", "-h", self.dir, "-U", self.USER, self.DB)
        return "psql -h %s -U %s %s" % (self.dir, self.USER, self.DB)

    def stop(self):
        if self.dir is None:
            return
        data = os.path.join(self.dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


class SshServer:
    """A real OpenSSH server on 127.0.0.1 for the tests, all in one private temp
    dir: a host key and client keys made with ssh-keygen (one locked with a
    passphrase), sshd_config, ssh_config, known_hosts, sshd's log, and the far
    side's own places (home, state dir, socket dir, TMUX_TMPDIR, cache), so it
    never touches a real user's sessions. It listens on three free ports, one
    far side each, named in ssh_config:

        far           python3 and tmux on the usual PATH
        far-notmux    PATH holds python3 only
        far-nopython  PATH holds tmux only

    and two that fail: far-down (a port nobody listens on) and far-badkey (the
    real server, but known_hosts holds another key for it). The far side's places
    reach it through the client (SetEnv in ssh_config, AcceptEnv in sshd_config);
    HOME and PATH are set by the server (a client may not). ``config(where)`` and
    ``command(config)`` log a pane in to a remote shell whose prompt is ``remote$ ``.
    stop() ends every process it started, or whose command line names its dir
    (ssh ControlMaster processes, the far side's tmux servers), then removes it.
    """

    HOST_KEY_ALIAS = "tmuxsess-test-far"
    PROMPT = r"remote\$ $"  # the remote shell's prompt, as a regex for run --prompt

    def __init__(self):
        self.dir = ""
        self.proc = None
        self.sshd = os.environ.get("SSHD") or "/usr/sbin/sshd"
        usual = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self.python3 = shutil.which("python3", path=usual) or sys.executable
        self.tmux = shutil.which("tmux", path=usual) or shutil.which("tmux") or "tmux"

    @classmethod
    def running(cls, add_cleanup):
        """A started server that ``add_cleanup`` stops; SkipTest where there is no sshd."""
        server = cls()
        reason = server.skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        add_cleanup(server.stop)
        server.start()
        server.started_in = server.dir
        return server

    def skip_reason(self):
        for program in (self.sshd, "ssh", "ssh-keygen"):
            if not shutil.which(program):
                return "%s is not installed" % program
        return None

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def ssh_config(self):
        return self.path("ssh_config")

    @property
    def far(self):
        """The far side's places, as its environment names them."""
        return {"HOME": self.path("far", "home"),
                "TMUXSESS_STATE_DIR": self.path("far", "state"),
                "CLAUDE_TMUX_SOCKET_DIR": self.path("far", "sock"),
                "TMUX_TMPDIR": self.path("far", "tmux"),
                "TMUXSESS_CACHE_DIR": self.path("far", "cache")}

    def local_env(self, **extra):
        """The local side's environment: this server's ssh config, and local places
        (where the shared connection's socket goes) in the temp dir."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TMUXSESS_", "TMUX"))}
        env.update(TMUXSESS_SSH="ssh -F %s" % self.ssh_config,
                   CLAUDE_TMUX_SOCKET_DIR=self.path("local", "sock"),
                   TMUXSESS_STATE_DIR=self.path("local", "state"),
                   TMUXSESS_CACHE_DIR=self.path("local", "cache"),
                   TMUX_TMPDIR=self.path("local", "tmux"), TMUXSESS_PYTHON=sys.executable)
        env.update(extra)
        return env

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="tmuxsess-sshd-")
        try:
            self._setup()
            self._launch()
        except BaseException:
            self.stop()
            raise

    def _setup(self):
        os.chmod(self.dir, 0o755)  # a normal user's client reads its own copy of a key
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        for d in ["far", "local", "bin-notmux", "bin-nopython"] + [
                os.path.relpath(p, self.dir) for p in self.far.values()] + [
                "local/sock", "local/state", "local/cache", "local/tmux"]:
            os.mkdir(self.path(d), 0o700)
        os.symlink(self.python3, self.path("bin-notmux", "python3"))
        os.symlink(self.tmux, self.path("bin-nopython", "tmux"))
        for key in ("host", "client", "locked", "other"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-C", "tmuxsess-test-" + key,
                            "-N", "passphrase-42" if key == "locked" else "",
                            "-f", self.path(key)], check=True, stdin=subprocess.DEVNULL)
        with open(self.path("authorized_keys"), "w") as f:
            f.write("".join(read_bytes(self.path(k + ".pub")).decode()
                            for k in ("client", "locked")))
        with open(self.path("known_hosts"), "w") as f:
            for alias, key in ((self.HOST_KEY_ALIAS, "host"),
                               (self.HOST_KEY_ALIAS + "-other", "other")):
                f.write("%s %s\n" % (alias, " ".join(
                    read_bytes(self.path(key + ".pub")).decode().split()[:2])))
        with open(self.path("remote-shell"), "w") as f:
            f.write("#!/bin/sh\nexport PS1='remote$ ' HISTFILE=/dev/null\n"
                    "exec bash --norc --noprofile -i\n")
        os.chmod(self.path("remote-shell"), 0o755)
        with socket.socket() as a, socket.socket() as b, socket.socket() as c, \
                socket.socket() as d:
            for s in (a, b, c, d):
                s.bind(("127.0.0.1", 0))
            self.ports = {"far": a.getsockname()[1], "far-notmux": b.getsockname()[1],
                          "far-nopython": c.getsockname()[1], "far-down": d.getsockname()[1]}
        home = "HOME=%s" % self.far["HOME"]
        with open(self.path("sshd_config"), "w") as f:
            f.write("\n".join(["ListenAddress 127.0.0.1"] + [
                "Port %d" % self.ports[n] for n in ("far", "far-notmux", "far-nopython")] + [
                "HostKey %s" % self.path("host"), "PidFile %s" % self.path("sshd.pid"),
                "AuthorizedKeysFile %s" % self.path("authorized_keys"),
                "AuthenticationMethods publickey", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no",
                "StrictModes no",  # the keys live under /tmp (1777), which it refuses
                "PermitRootLogin prohibit-password", "AllowUsers %s" % self.user,
                "X11Forwarding no", "AllowTcpForwarding no", "PrintMotd no",
                "PrintLastLog no", "UseDNS no", "MaxSessions 64", "MaxStartups 64:30:128",
                "LogLevel INFO",  # a login says "Accepted publickey": connections are counted
                "AcceptEnv TMUXSESS_* CLAUDE_TMUX_SOCKET_DIR TMUX_TMPDIR XDG_* LANG LC_*",
                "SetEnv %s" % home,
                "Match LocalPort %d" % self.ports["far-notmux"],
                "  SetEnv %s PATH=%s" % (home, self.path("bin-notmux")),
                "Match LocalPort %d" % self.ports["far-nopython"],
                "  SetEnv %s PATH=%s" % (home, self.path("bin-nopython")), ""]))
        common = ["  HostName 127.0.0.1", "  User %s" % self.user,
                  "  IdentityFile %s" % self.path("client"), "  IdentitiesOnly yes",
                  "  IdentityAgent none", "  UserKnownHostsFile %s" % self.path("known_hosts"),
                  "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes",
                  "  UpdateHostKeys no", "  BatchMode yes", "  ConnectTimeout 5",
                  "  SetEnv %s" % " ".join("%s=%s" % kv for kv in self.far.items()
                                           if kv[0] != "HOME")]
        blocks = []
        for alias, port in sorted(self.ports.items()):
            blocks += ["Host %s" % alias, "  Port %d" % port,
                       "  HostKeyAlias %s" % self.HOST_KEY_ALIAS] + common
        blocks += ["Host far-badkey", "  Port %d" % self.ports["far"],
                   "  HostKeyAlias %s-other" % self.HOST_KEY_ALIAS] + common
        with open(self.ssh_config, "w") as f:
            f.write("\n".join(blocks) + "\n")

    def _launch(self):
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", 0o755, exist_ok=True)  # its privilege separation dir
        with open(self.path("sshd.log"), "ab") as log:
            self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", self.path("sshd_config")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        def answers(port):
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: %s" % read_bytes(
                    self.path("sshd.log"))[-2000:].decode("utf-8", "replace"))
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", port), 1) as s:
                return s.recv(64).startswith(b"SSH-2.0-")
            return False
        for name in ("far", "far-notmux", "far-nopython"):
            wait_until(lambda port=self.ports[name]: answers(port), 20, "sshd to listen")

    def config(self, where, owner=None):
        """An ssh_config in ``where`` whose host ``remote`` logs in to this
        server, with copies of the keys there (owned by ``owner``)."""
        for key in ("client", "locked", "known_hosts"):
            shutil.copy(self.path(key), os.path.join(where, key))
            os.chmod(os.path.join(where, key), 0o600)
            if owner is not None:
                os.chown(os.path.join(where, key), owner, -1)
        path = os.path.join(where, "ssh_config")
        with open(path, "w") as f:
            f.write("\n".join([
                "Host remote", "  HostName 127.0.0.1", "  Port %d" % self.ports["far"],
                "  HostKeyAlias %s" % self.HOST_KEY_ALIAS, "  User %s" % self.user,
                "  IdentityFile %s/client" % where, "  IdentitiesOnly yes", "  BatchMode yes",
                "  UserKnownHostsFile %s/known_hosts" % where,
                "  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes",
                "  RequestTTY force", ""]))
        return path

    def command(self, config, locked=False):
        """The ssh command line that logs a pane in to the remote shell."""
        extra = (" -o BatchMode=no -o IdentityFile=%s" % shlex.quote(
            os.path.join(os.path.dirname(config), "locked"))) if locked else ""
        return "ssh -F %s%s remote %s" % (shlex.quote(config), extra,
                                          shlex.quote(self.path("remote-shell")))

    def log(self):
        return read_bytes(self.path("sshd.log")).decode("utf-8", "replace")

    def far_processes(self, needle):
        """The far side's processes (sshd's descendants) whose command line holds
        ``needle``."""
        return [pid for pid in descendants(self.proc.pid) if needle in read_cmdline(pid)] \
            if self.proc is not None else []

    def stop(self):
        """Stop everything of its own, then remove its dir. Safe to call twice."""
        if not self.dir:
            return
        kill_servers(self.dir)
        victims = set(descendants(self.proc.pid)) | {self.proc.pid} if self.proc else set()
        victims |= {int(p) for p in os.listdir("/proc") if p.isdigit()
                    and int(p) != os.getpid() and self.dir.encode() in read_cmdline(int(p))}
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = ""


def read_cmdline(pid):
    try:
        return read_bytes("/proc/%d/cmdline" % pid)
    except OSError:
        return b""


def descendants(pid):
    """Every process under ``pid``, found through /proc."""
    kids = {}
    for name in os.listdir("/proc"):
        stat = proc_stat(int(name)) if name.isdigit() else []
        if len(stat) > 1:
            kids.setdefault(int(stat[1]), []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


class ProfileTestCase(TmuxTestCase):
    """Runs through the command line, as a user would."""

    def run_ok(self, name, code, output, status=0):
        """``run`` gives exactly ``output`` and exits ``status``."""
        r = self.cli("run", "-s", name, "-c", code)
        self.assertNoTraceback(r)
        self.assertEqual((r.stdout, r.returncode), (output, status), r.stderr)
        return r

    def run_json(self, name, code, exit_code):
        r = self.cli("run", "-s", name, "-c", code, "--json")
        self.assertEqual(r.returncode, exit_code, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def assert_unfinished(self, name, code):
        """Unfinished input is reported at once, not as success, and then refused."""
        began = time.monotonic()
        j = self.run_json(name, code, 123)
        self.assertLess(time.monotonic() - began, 5)
        self.assertEqual((j["waiting_for_input"], j["prompt"], j["exit_status"],
                          j["timed_out"]), (True, "continuation", None, False))
        r = self.fails(126, "run", "-s", name, "-c", "1")
        self.assertIn("continuation prompt", r.stderr)


@unittest.skipUnless(shutil.which("node"), "node is not installed")
class NodeProfileTest(ProfileTestCase):
    def test_values_errors_and_blocks_with_blank_lines(self):
        rec = self.create("js", "--kind", "node")
        self.assertEqual((rec["kind"], rec["type"]), ("node", "command"))
        self.run_ok("js", "1 + 1", "2\n")
        self.run_ok("js", "console.log('a;b'); 'x'", "a;b\n'x'\n")
        r = self.run_ok("js", "throw new Error('boom')", "Uncaught Error: boom\n", 1)
        self.run_ok("js", "class A {\n\n  m() { return 42 }\n}\n\nconst a = new A()\n\na.m()",
                    "42\n")
        self.run_ok("js", "a.m() + 1", "43\n")  # declarations of a block stay
        r = self.cli("run", "-s", "js", "-c", "await Promise.reject(new Error('rej'))")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stdout.startswith("Uncaught Error: rej\n"), r.stdout)
        self.run_ok("js", "\tlet t = 'tab\there'; t.length", "8\n")  # a tab is no completion
        self.ok("kill", "-s", "js")

    def test_unfinished_block_is_reported(self):
        self.create("js", "--kind", "node")
        self.assert_unfinished("js", "function f() {")
        self.assertEqual(self.ok("run", "-s", "js", "--answer", "return 3 }").stdout, "")
        self.run_ok("js", "typeof f", "'function'\n")


@unittest.skipUnless(shutil.which("sqlite3"), "sqlite3 is not installed")
class SqliteProfileTest(ProfileTestCase):
    def test_statements_errors_and_blocks(self):
        db = os.path.join(self.tmp, "app.db")
        rec = self.create("db", "--kind", "sqlite", "--cmd", "sqlite3 " + shlex.quote(db))
        self.assertEqual(rec["kind"], "sqlite")
        self.run_ok("db", "create table t(x); insert into t values (1), (2);", "")
        self.run_ok("db", "select sum(x) from t;", "3\n")
        self.run_ok("db", "select * from nope;", "Parse error: no such table: nope\n", 1)
        self.run_ok("db", ".mode csv\nselect 1, 'a;b';\n\nselect x\n\nfrom t\norder by x;",
                    "1,a;b\n1\n2\n")
        r = self.cli("run", "-s", "db", "-c", "select 7;\nselect * from nope;\nselect 8;")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "7\nParse error near line 2: no such table: nope\n8\n")
        self.ok("kill", "-s", "db")
        self.assertTrue(os.path.exists(db))

    def test_unfinished_statement_is_reported(self):
        self.create("db", "--kind", "sqlite")
        self.assert_unfinished("db", "select 1 +")
        self.ok("send", "-s", "db", "-c", "2;", "-w", "^3$")
        self.run_ok("db", "select 'after';", "after\n")


class PsqlProfileTest(ProfileTestCase):
    """psql against a real PostgreSQL server this class starts (and stops)."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        reason = cls.pg.skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        cls.addClassCleanup(cls.pg.stop)
        cls.psql = cls.pg.start()

    def test_statements_statuses_and_transactions(self):
        rec = self.create("pg", "--kind", "psql", "--cmd", self.psql)
        self.assertEqual(rec["kind"], "psql")
        self.run_ok("pg", "create table t(x int);", "CREATE TABLE\n")
        self.run_ok("pg", "insert into t values (1), (2);", "INSERT 0 2\n")
        self.run_ok("pg", "select sum(x) from t;", " sum \n-----\n   3\n(1 row)\n\n")
        self.run_ok("pg", "select 1/0;", "ERROR:  division by zero\n", 1)
        self.run_ok("pg", "\\echo after", "after\n")  # a meta-command: ERROR is not stale
        self.run_ok("pg", "begin;", "BEGIN\n")  # at =*# now
        self.run_ok("pg", "select 1/0;", "ERROR:  division by zero\n", 1)  # at =!#
        self.run_ok("pg", "select 1;", "ERROR:  current transaction is aborted, commands "
                    "ignored until end of transaction block\n", 1)
        self.run_ok("pg", "rollback;", "ROLLBACK\n")
        self.ok("kill", "-s", "pg")

    def test_blocks_with_meta_commands_and_blank_lines(self):
        self.create("pg", "--kind", "psql", "--cmd", self.psql)
        self.run_ok("pg", "select\n  2 as two\n\n;\n\\echo hi\nselect 'a;b' as s;",
                    " two \n-----\n   2\n(1 row)\n\nhi\n  s  \n-----\n a;b\n(1 row)\n\n")
        # The first statement of a block failed, the last did not: still a failure.
        r = self.cli("run", "-s", "pg", "-c", "select 1/0;\nselect 7 as seven;")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stdout, r"\Apsql:\S+:1: ERROR:  division by zero\n seven")

    def test_unfinished_statement_and_string_are_reported(self):
        self.create("pg", "--kind", "psql", "--cmd", self.psql)
        self.assert_unfinished("pg", "select 1 +")
        self.ok("send", "-s", "pg", "-c", "2;", "-w", "row")
        self.assert_unfinished("pg", "select 'abc")
        self.ok("send", "-s", "pg", "-c", "';", "-w", "row")
        self.run_ok("pg", "select 5 as five;", " five \n------\n    5\n(1 row)\n\n")


class PdbProfileTest(ProfileTestCase):
    def test_breakpoint_stops_at_pdb_and_continue_returns_to_python(self):
        self.create("py", "--python")
        self.run_ok("py", "import sys; 'pdb' in sys.modules", "False\n")  # not at startup
        self.run_ok("py", "def f(k):\n    breakpoint()\n    return k * 2", "")
        j = self.run_json("py", "f(21)", 123)
        self.assertEqual((j["waiting_for_input"], j["prompt"]), (True, "pdb"))
        self.assertEqual(j["output"], "> <stdin>(3)f()\n")
        # At pdb's prompt a run says where it is, and claims no status: 123, "pdb".
        for code, output in (("p k", "21\n"), ("p k +", "*** SyntaxError: invalid syntax\n"),
                             ("1/0", "*** ZeroDivisionError: division by zero\n"),
                             ("total = 0\nfor i in range(4):\n\n    total += i\n\nprint(total)",
                              "6\n")):  # a block is one statement in the frame
            j = self.run_json("py", code, 123)
            self.assertEqual((j["output"], j["exit_status"], j["prompt"]), (output, None, "pdb"))
        self.run_ok("py", "c", "42\n")
        self.run_ok("py", "1 + 1", "2\n")
        # pdb.set_trace() reaches the marked prompt too; q ends in BdbQuit: status 1.
        j = self.run_json("py", "import pdb; pdb.set_trace()", 123)
        self.assertEqual(j["prompt"], "pdb")
        r = self.cli("run", "-s", "py", "-c", "q")
        self.assertEqual(r.returncode, 1)
        self.assertIn("BdbQuit", r.stdout)
        self.run_ok("py", "'back'", "'back'\n")


class KindTest(TmuxTestCase):
    def test_kind_names_a_profile(self):
        r = self.fails(1, "create", "-n", "x", "--kind", "cobol")
        for kind in ("shell", "zsh", "fish", "python", "ipython", "gdb", "node", "psql",
                     "sqlite", "command"):
            self.assertIn(kind, r.stderr)
        self.fails(1, "create", "-n", "x", "--kind", "shell", "--cmd", "bash")
        self.fails(1, "create", "-n", "x", "--kind", "node", "--python", error=False)
        rec = self.create("py", "--kind", "python", "--cmd", "python3 -q -X dev")
        self.assertEqual((rec["kind"], rec["type"]), ("python", "python-repl"))
        self.assertEqual(self.ok("run", "-s", "py", "-c", "import sys; sys.flags.dev_mode")
                         .stdout, "True\n")
        self.assertEqual(self.registry()["sessions"]["py"]["kind"], "python")
        listed = json.loads(self.ok("list", "--json").stdout)["sessions"]
        self.assertEqual([(s["kind"], s["socket_basename"]) for s in listed],
                         [("python", "claude.sock")])

    def test_entries_of_older_versions_keep_their_profile_by_type(self):
        self.create("py", "--python")
        reg = self.registry()
        del reg["sessions"]["py"]["kind"]
        write_bytes(self.reg_path, json.dumps(reg).encode())
        self.assertEqual(self.ok("run", "-s", "py", "-c", "6 * 7").stdout, "42\n")


# ===========================================================================
# More kinds: zsh, fish and IPython with the user's own startup files;
# sqlite3's status from its error log; node says what it logs
# ===========================================================================

# IPython may live in the virtualenv whose Python runs the suite.
IPYTHON = shutil.which("ipython") or next(
    (p for p in [os.path.join(os.path.dirname(sys.executable), "ipython")]
     if os.access(p, os.X_OK)), None)
# Where the programs the README drives are found: PATH, and IPython's venv.
PROGRAMS_PATH = os.pathsep.join(([os.path.dirname(IPYTHON)] if IPYTHON else [])
                                + [os.environ.get("PATH", "/usr/bin:/bin")])
OWN_MARK_RE = rb"\x1b\]133;([A-D])((?:;[^;\x07\x1b]*)*?);tmuxsess=[0-9a-f]+\x07"


class KindsCase(ProfileTestCase):
    """A HOME of the test's own, which the programs' startup files live in."""

    def setUp(self):
        super().setUp()
        self.home = os.environ["HOME"]
        for name in ("ZDOTDIR", "PYTHONSTARTUP", "IPYTHONDIR", "XDG_DATA_HOME"):
            os.environ.pop(name, None)
        os.environ["PATH"] = PROGRAMS_PATH

    def answer(self, name, text, rc=0):
        r = self.cli("run", "-s", name, "--json", "--answer", text)
        self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def assert_waits(self, name, code, prompt="input"):
        """The run is reported waiting at once, not as a timeout or a status."""
        began = time.monotonic()
        j = self.run_json(name, code, 123)
        self.assertLess(time.monotonic() - began, 8)
        self.assertEqual((j["waiting_for_input"], j["prompt"], j["exit_status"],
                          j["timed_out"]), (True, prompt, None, False), j)
        return j

    def write(self, relative, text):
        path = os.path.join(self.home, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def transcript(self, name):
        return read_bytes(self.registry()["sessions"][name]["transcript"])

    def marks(self, name):
        """The session's own marks, in order: b"A", b"A;k=c", b"D;0", ..."""
        return [m.group(1) + m.group(2)
                for m in re.finditer(OWN_MARK_RE, self.transcript(name))]

    def home_files(self):
        return sorted(os.path.relpath(os.path.join(root, f), self.home)
                      for root, _dirs, files in os.walk(self.home) for f in files)

    def screen(self, name, lines=5):
        return self.ok("capture", "-s", name, "-n", lines).stdout


ZSH_THEME = r"""
# Like oh-my-zsh or powerlevel10k: hooks added after ours remake the prompt;
# two lines and a right prompt.
setopt PROMPT_SUBST
autoload -Uz add-zsh-hook
_theme_precmd() {
    local s=$?
    PROMPT=$'%F{blue}%n@%m %~%f\n${theme_char} '
    theme_char="%(?.%F{green}.%F{red})❯%f"
    RPROMPT="%F{yellow}[last $s]%f"
}
add-zsh-hook precmd _theme_precmd
# The user's own hooks print what is no command's output.
precmd() { print -n "user-precmd-text" }
preexec() { print -n "user-preexec-text" }
_user_line_init() { print -n "user-line-init-text" }
zle -N zle-line-init _user_line_init
# A clock that redraws the prompt every second.
TMOUT=1
TRAPALRM() { zle reset-prompt }
HISTFILE=~/.zsh_history
SAVEHIST=100
setopt INC_APPEND_HISTORY
THEME_LOADED=yes
"""


@unittest.skipUnless(shutil.which("zsh"), "zsh is not installed")
class ZshKindTest(KindsCase):
    def test_output_and_the_commands_own_exit_status(self):
        rec = self.create("z", "--kind", "zsh")
        self.assertEqual((rec["kind"], rec["type"]), ("zsh", "shell"))
        self.run_ok("z", "echo hi; (exit 3)", "hi\n", 3)
        self.run_ok("z", "printf abc", "abc")  # no newline added, no PROMPT_SP padding
        self.run_ok("z", "fi", "zsh: parse error near `fi'\n", 1)  # nothing ran: zsh's $?
        self.run_ok("z", "false", "", 1)
        self.run_ok("z", "ech", "zsh: command not found: ech\n", 127)
        self.run_ok("z", "", "", 127)  # an empty line: $? stays
        self.run_ok("z", 'echo "a!b" $((6*7))', "a!b 42\n")  # no history expansion

    def test_multi_line_blocks_run_whole(self):
        self.create("z", "--kind", "zsh")
        self.run_ok("z", "for i in 1 2; do\n  echo \"n $i\"\n\ndone\n"
                         "cat <<EOF\nhere doc\n\tand a tab\nEOF\n"
                         "# a comment line\n"
                         "f() {\n  echo in f\n\n  return 4\n}\nf",
                    "n 1\nn 2\nhere doc\n\tand a tab\nin f\n", 4)
        self.run_ok("z", "f; echo $?", "in f\n4\n")  # the function was kept

    def test_read_waits_and_is_answered(self):
        self.create("z", "--kind", "zsh")
        j = self.assert_waits("z", 'read "x?Name? "; echo "got $x"')
        self.assertEqual((j["output"], j["question"]), ("Name? ", "Name?"))
        j = self.answer("z", "Bob")
        self.assertEqual((j["output"], j["exit_status"]), ("got Bob\n", 0))
        j = self.assert_waits("z", 'read -s pw; echo "${#pw} chars"')
        self.assertTrue(j["echo_off"])
        j = self.answer("z", "secret")
        self.assertEqual((j["output"], j["exit_status"]), ("6 chars\n", 0))

    def test_unfinished_block_waits_at_the_continuation_prompt(self):
        self.create("z", "--kind", "zsh")
        self.assert_unfinished("z", "for i in 1 2; do")
        j = self.answer("z", 'echo "i=$i"; done')
        self.assertEqual((j["output"], j["exit_status"]), ("i=1\ni=2\n", 0))

    def test_a_theme_that_rewrites_both_prompts_and_redraws(self):
        self.write(".zshrc", ZSH_THEME)
        self.create("z", "--kind", "zsh")
        self.run_ok("z", "echo $THEME_LOADED; (exit 5)", "yes\n", 5)
        self.redrawn("z")
        self.run_ok("z", "printf 'x\\ny'", "x\ny")
        self.run_ok("z", "for i in 1 2; do\n\n  echo $i\ndone", "1\n2\n")
        self.redrawn("z")
        self.run_ok("z", "print -r -- $RPROMPT", "%F{yellow}[last 0]%f\n")
        marks = self.marks("z")
        # One D per prompt, however often it was redrawn; A and B once each,
        # after the user's zle-line-init.
        prompts = marks.count(b"A")
        self.assertEqual(sum(m.startswith(b"D;") for m in marks), prompts, marks)
        self.assertEqual(marks.count(b"B"), prompts, marks)
        self.assertEqual(marks.count(b"C"), 4, marks)
        data = self.transcript("z")
        self.assertGreater(data.count(b"user-line-init-text"), prompts - 1)
        self.assertIn(b"user-precmd-text", data)  # the user's hooks ran, not as output
        self.assertIn(b"user-preexec-text", data)

    def redrawn(self, name):
        """Wait until the theme's clock redrew the prompt at least once."""
        size = len(self.transcript(name))
        wait_until(lambda: len(self.transcript(name)) > size, 10, "a redraw")

    def test_hooks_that_run_after_ours_and_unusual_options(self):
        # A precmd hook after ours replaces zle-line-init (without calling the
        # one before) and PROMPT_EOL_MARK at every prompt; options the marks'
        # code must not trip on; no PROMPT_SP (the D mark then comes from precmd).
        self.write(".zshrc", "setopt KSH_ARRAYS SH_WORD_SPLIT NO_UNSET\n"
                             "late() { PROMPT_EOL_MARK=X; w() { : }; zle -N zle-line-init w;"
                             " PROMPT='[%?]%# ' }\nprecmd_functions+=(late)\n")
        self.create("z", "--kind", "zsh")
        self.run_ok("z", "echo one; (exit 2)", "one\n", 2)
        self.run_ok("z", "printf abc", "abc")
        self.assertIn("[2]# printf abc", self.screen("z"))
        self.run_ok("z", "unsetopt PROMPT_SP", "")
        self.run_ok("z", "printf abc; false", "abc", 1)
        self.run_ok("z", "echo two", "two\n")

    def test_norc_reads_no_rc_file(self):
        self.write(".zshrc", ZSH_THEME)
        self.create("z", "--kind", "zsh", "--norc")
        self.run_ok("z", "echo ${THEME_LOADED:-none} ${TMOUT:-none}", "none none\n")

    def test_no_history_file_and_no_new_user_wizard(self):
        self.create("z", "--kind", "zsh")  # an empty HOME: zsh-newuser-install would ask
        self.run_ok("z", "echo ${HISTFILE:-unset}", "unset\n")
        self.assertEqual(self.home_files(), [])
        self.write(".zshrc", "HISTFILE=~/.zsh_history\nSAVEHIST=100\nsetopt INC_APPEND_HISTORY\n")
        self.create("z2", "--kind", "zsh")
        self.run_ok("z2", "echo one", "one\n")
        self.ok("kill", "-s", "z2")
        self.assertEqual(self.home_files(), [".zshrc"])

    def test_users_zdotdir_is_honoured(self):
        self.write("zconf/.zshenv", "ZSHENV_LOADED=1\n")
        self.write("zconf/.zshrc", "ZSHRC_LOADED=1\nPROMPT='zd%# '\n")
        os.environ["ZDOTDIR"] = os.path.join(self.home, "zconf")
        self.create("z", "--kind", "zsh")
        self.run_ok("z", 'echo $ZSHENV_LOADED $ZSHRC_LOADED "$ZDOTDIR"',
                    "1 1 %s\n" % os.environ["ZDOTDIR"])


FISH_THEME = r"""
set -g fish_greeting "Welcome GREETING-TEXT"
set -g fish_history myhistory
function fish_prompt
    set -l s $status
    printf '%s %s\n[%s] ❯ ' (prompt_hostname) (prompt_pwd) $s
end
function fish_right_prompt
    printf '(right %s)' $status
end
function fish_mode_prompt
    printf '[mode] '
end
function theme_event --on-event fish_prompt
    printf '\e]0;a title\a'
end
set -g THEME_LOADED yes
"""


@unittest.skipUnless(shutil.which("fish"), "fish is not installed")
class FishKindTest(KindsCase):
    def setUp(self):
        super().setUp()
        # fish's first start in a HOME makes completions from man pages in the
        # background for seconds: it ran here before, as for any fish user.
        self.write(".config/fish/fish_variables", "SETUVAR __fish_initialized:3400\n")
        os.makedirs(os.path.join(self.home, ".local/share/fish/generated_completions"))

    def test_output_and_the_commands_own_exit_status(self):
        rec = self.create("f", "--kind", "fish")
        self.assertEqual((rec["kind"], rec["type"]), ("fish", "shell"))
        self.run_ok("f", "echo hi; false", "hi\n", 1)
        self.run_ok("f", "printf abc", "abc")
        self.run_ok("f", "echo $status", "0\n")
        self.run_ok("f", "nosuch", "fish: Unknown command: nosuch\n", 127)
        self.run_ok("f", "", "", 127)  # an empty line: $status stays

    def test_multi_line_blocks_run_whole(self):
        self.create("f", "--kind", "fish")
        self.run_ok("f", "for i in 1 2\n  echo \"n $i\"\n\nend\n"
                         "function g\n    echo in g\n\n    return 4\nend\ng",
                    "n 1\nn 2\nin g\n", 4)
        self.run_ok("f", "g; echo $status", "in g\n4\n")

    def test_syntax_error_ends_the_run_with_fishs_status(self):
        self.create("f", "--kind", "fish")
        j = self.run_json("f", "end", 123)  # fish's 123, not "waiting": the JSON says
        self.assertEqual((j["exit_status"], j["waiting_for_input"]), (123, False))
        self.assertTrue(j["output"].startswith("fish: 'end' outside of a block\n"), j)
        self.run_ok("f", "echo next", "next\n")  # the line did not stay behind

    def test_read_waits_and_is_answered(self):
        self.create("f", "--kind", "fish")
        j = self.assert_waits("f", 'read -P "Name? " x; echo "got $x"')
        self.assertEqual(j["question"], "Name?")
        j = self.answer("f", "Bob")
        self.assertEqual((j["output"], j["exit_status"]), ("got Bob\n", 0))

    def test_unfinished_block_waits_at_the_continuation(self):
        self.create("f", "--kind", "fish")
        self.assert_waits("f", "for i in 1 2", "continuation")
        j = self.answer("f", 'echo "i=$i"; end')
        self.assertEqual((j["output"], j["exit_status"]), ("i=1\ni=2\n", 0))
        self.run_ok("f", "echo after", "after\n")

    def test_a_theme_with_its_own_prompts(self):
        self.write(".config/fish/config.fish", FISH_THEME)
        self.create("f", "--kind", "fish")
        self.run_ok("f", "echo $THEME_LOADED; false", "yes\n", 1)
        # The theme's prompt still sees the last status; the screen shows it.
        self.run_ok("f", "echo x", "x\n")
        screen = self.screen("f", 10)
        self.assertIn("[1] ❯ echo x", screen)
        self.assertIn("(right 1)", screen)
        self.assertIn("[mode] ", screen)
        # A prompt defined later (a theme switched in the session) is marked too.
        self.run_ok("f", "function fish_prompt\n    printf 'NEW> '\nend", "")
        self.run_ok("f", "echo after; false", "after\n", 1)
        self.assertIn("NEW> echo after", self.screen("f"))
        self.assertNotIn(b"GREETING-TEXT", self.transcript("f"))
        self.ok("kill", "-s", "f")
        self.assertEqual([p for p in self.home_files() if "history" in p], [])

    def test_an_autoloaded_prompt_function(self):
        self.write(".config/fish/functions/fish_prompt.fish",
                   "function fish_prompt\n    printf 'auto> '\nend\n")
        self.create("f", "--kind", "fish")
        self.run_ok("f", "echo x", "x\n")
        self.assertIn("auto> echo x", self.screen("f"))

    def test_norc_reads_no_config(self):
        self.write(".config/fish/config.fish", FISH_THEME)
        self.create("f", "--kind", "fish", "--norc")
        self.run_ok("f", 'echo "[$THEME_LOADED]"', "[]\n")


IPYTHON_CONFIG = r"""
from IPython.terminal.prompts import Prompts
from pygments.token import Token


class MyPrompts(Prompts):
    def in_prompt_tokens(self):
        return [(Token.Prompt, "mine[%d]>>> " % self.shell.execution_count)]


c = get_config()
c.TerminalInteractiveShell.prompts_class = MyPrompts
c.TerminalInteractiveShell.simple_prompt = False
c.InteractiveShell.colors = "linux"
c.InteractiveShellApp.exec_lines = ["FROM_EXEC_LINES = 2"]
"""


@unittest.skipUnless(IPYTHON, "ipython is not installed")
class IPythonKindTest(KindsCase):
    def test_values_prints_and_raises(self):
        rec = self.create("ip", "--kind", "ipython")
        self.assertEqual((rec["kind"], rec["type"]), ("ipython", "python-repl"))
        self.run_ok("ip", "6*7", "Out[1]: 42\n")
        self.run_ok("ip", "print(42)", "42\n")
        j = self.run_json("ip", "1/0", 1)
        self.assertTrue(j["output"].rstrip().endswith("ZeroDivisionError: division by zero"), j)
        self.assertNotIn("In [", j["output"])
        self.assertIn("NameError", self.run_json("ip", "undefined_name", 1)["output"])
        self.run_ok("ip", "x = 1", "")
        self.run_ok("ip", "", "")  # nothing ran: no separator line, no status
        # Typed, IPython would wait for more; as a file it says what is wrong.
        self.assertIn("SyntaxError", self.run_json("ip", "def f(:", 1)["output"])

    def test_a_block_with_blank_lines_is_one_cell(self):
        self.create("ip", "--kind", "ipython")
        self.run_ok("ip", "def f(x):\n    y = x + 1\n\n    return y * 2\n\n"
                          "for i in range(2):\n\n    print(i)\n\nf(3)", "0\n1\nOut[1]: 8\n")
        self.run_ok("ip", "len(In)", "Out[2]: 3\n")  # one cell each
        self.run_ok("ip", "import sys\n\nprint(sys.version_info[0])", "3\n")
        self.run_ok("ip", "if True:\n    print('one line unit')", "one line unit\n")
        self.run_ok("ip", "if True: print('compound line')", "compound line\n")

    def test_magics_shell_and_help(self):
        self.create("ip", "--kind", "ipython")
        self.assertIn("per loop", self.run_json("ip", "%timeit -n1 -r1 pass", 0)["output"])
        self.run_ok("ip", "!echo from a shell", "from a shell\n")
        self.run_ok("ip", "w = 1\n%alias_magic -l t timeit\n\nprint(w + 1)",
                    "Created `%t` as an alias for `%timeit`.\n2\n")
        j = self.run_json("ip", "v = 5\nv?", 0)
        self.assertIn("Type:", j["output"])
        self.assertIn("int", j["output"])

    def test_input_waits_and_is_answered(self):
        self.create("ip", "--kind", "ipython")
        j = self.assert_waits("ip", "name = input('Name? ')\nprint('hi', name)")
        self.assertEqual((j["output"], j["question"]), ("Name? ", "Name?"))
        j = self.answer("ip", "Ann")
        self.assertEqual((j["output"], j["exit_status"]), ("hi Ann\n", 0))

    def test_breakpoint_and_debug_stop_at_the_debugger(self):
        self.create("ip", "--kind", "ipython")
        j = self.assert_waits(
            "ip", "def g():\n    a = 41\n    breakpoint()\n    return a + 1\n\ng()", "pdb")
        self.assertIn("-> return a + 1", j["output"])
        self.assertEqual(self.run_json("ip", "p a", 123)["output"], "41\n")
        self.run_ok("ip", "c", "Out[1]: 42\n")
        self.run_json("ip", "def h():\n    return 1 / 0\n\nh()", 1)
        self.assertIn("1 / 0", self.assert_waits("ip", "%debug", "pdb")["output"])
        self.run_ok("ip", "q", "")
        self.run_ok("ip", "print('after')", "after\n")

    def test_users_config_and_startup_files(self):
        self.write(".ipython/profile_default/ipython_config.py", IPYTHON_CONFIG)
        self.write(".ipython/profile_default/startup/00-mine.py",
                   "FROM_STARTUP = 7\nprint('startup ran')\n")
        os.environ["PYTHONSTARTUP"] = self.write("pythonstartup.py", "FROM_PYTHONSTARTUP = 3\n")
        self.create("ip", "--kind", "ipython")
        self.run_ok("ip", "FROM_STARTUP, FROM_EXEC_LINES, FROM_PYTHONSTARTUP",
                    "Out[1]: (7, 2, 3)\n")
        j = self.run_json("ip", "raise ValueError('v')", 1)
        self.assertNotIn("\x1b[", j["output"])  # no colours, whatever the config says
        self.assertIn("mine[3]>>>", self.screen("ip", 3))
        # A cell that sets new prompts: the next prompt has marks as well.
        self.run_ok("ip", "from IPython.terminal.prompts import ClassicPrompts\n"
                          "get_ipython().prompts = ClassicPrompts(get_ipython())", "")
        self.run_ok("ip", "print('classic')", "classic\n")
        self.assertIn(">>> print('classic')", self.screen("ip", 4))
        self.ok("kill", "-s", "ip")
        self.assertEqual([p for p in self.home_files() if "history" in p], [])

    def test_norc_reads_no_config_nor_startup_file(self):
        self.write(".ipython/profile_default/startup/00-mine.py", "FROM_STARTUP = 7\n")
        self.create("ip", "--kind", "ipython", "--norc")
        self.run_ok("ip", "print('FROM_STARTUP' in dir())", "False\n")


@unittest.skipUnless(shutil.which("sqlite3"), "sqlite3 is not installed")
class SqliteStatusTest(KindsCase):
    def test_status_comes_from_sqlite_not_from_text(self):
        db = os.path.join(self.tmp, "app.db")
        self.create("db", "--kind", "sqlite", "--cmd", "sqlite3 " + shlex.quote(db))
        self.run_ok("db", "select 'Error: only data';", "Error: only data\n")
        self.run_ok("db", "select 'Parse error: only data';", "Parse error: only data\n")
        self.run_ok("db", "select * from nope;", "Parse error: no such table: nope\n", 1)
        self.run_ok("db", "create table t(a primary key); insert into t values (1);", "")
        self.run_ok("db", "insert into t values (1);",
                    "Runtime error: UNIQUE constraint failed: t.a (19)\n", 1)
        # An automatic index is a warning sqlite logs, not an error.
        self.run_ok("db", "create table u(x); create table v(y);\n"
                          "select * from u, v where u.x = v.y;", "")
        csv = os.path.join(self.tmp, "x.csv")
        with open(csv, "w") as f:
            f.write("a,b\n1,2\n")
        # .import asks whether the table exists (a logged error) before it makes it.
        self.run_ok("db", ".import --csv %s newt\nselect count(*) from newt;" % csv, "1\n")
        self.assertEqual(self.run_json("db", ".import --csv /nonexistent.csv t", 1)
                         ["exit_status"], 1)
        self.ok("kill", "-s", "db")
        self.assertEqual(os.listdir(os.path.join(self.state, "transcripts")), [])


@unittest.skipUnless(shutil.which("node"), "node is not installed")
class NodeValuesTest(KindsCase):
    def test_console_log_says_only_what_it_logs(self):
        self.create("js", "--kind", "node")
        self.run_ok("js", "console.log(42)", "42\n")
        self.run_ok("js", "const a = 1\n\nconsole.log(a + 1)", "2\n")
        self.run_ok("js", "6 * 7", "42\n")
        self.run_ok("js", "null", "null\n")


# ===========================================================================
# Sessions on other machines: --host over a real sshd on 127.0.0.1, --via
# ===========================================================================

RELAY_EXIT = tmuxsess.RELAY_EXIT
STAGE1 = tmuxsess.RELAY_STAGE1.encode()


def processes_naming(needle):
    """Pids (not ours) whose command line holds ``needle``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
            and needle in read_cmdline(int(p))]


class RemoteCase(TmuxTestCase):
    """A real sshd on 127.0.0.1 with a far side of its own (SshServer). The tool
    runs as a user runs it: the executable, with the server's ssh config."""

    def setUp(self):
        super().setUp()
        self.addCleanup(self.nothing_left)  # last: once the server has stopped
        self.server = SshServer.running(self.addCleanup)
        self.far_env = self.server.local_env()

    def nothing_left(self):
        top = self.server.started_in if hasattr(self, "server") else ""
        if not top:
            return
        self.assertFalse(os.path.exists(top), "temp dir left behind")
        self.assertEqual(processes_naming(top.encode()), [], "processes left behind")

    def argv(self, *args, host="far", via=""):
        where = ["--via", via] if via else ["--host", host] if host else []
        return [TOOL] + where + [str(a) for a in args]

    def far(self, *args, host="far", via="", input=b"", env=None, timeout=60):
        return subprocess.run(self.argv(*args, host=host, via=via), input=input,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env or self.far_env, timeout=timeout)

    def far_ok(self, *args, **kw):
        r = self.far(*args, **kw)
        self.assertEqual(r.returncode, 0, r)
        return r

    def far_registry(self):
        path = os.path.join(self.server.far["TMUXSESS_STATE_DIR"], ".sessions.json")
        return json.loads(read_bytes(path))["sessions"]

    def one_error_line(self, r, *words):
        err = r.stderr.decode()
        lines = err.splitlines()
        self.assertNotIn("Traceback", err)
        self.assertTrue(lines and lines[0].startswith("tmuxsess: error: "), err)
        self.assertTrue(len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")),
                        err)
        for word in words:
            self.assertIn(word, lines[0])
        return lines[0]

    def via_far(self):
        """A --via prefix that runs its arguments with the far side's places."""
        return "env %s sh -c 'exec \"$@\"' sh" % " ".join(
            "%s=%s" % kv for kv in self.server.far.items())


class FarSideTest(RemoteCase):
    def test_create_run_list_kill_cleanup_there_and_only_there(self):
        made = json.loads(self.far_ok("create", "-n", "py", "--python").stdout)
        self.assertTrue(made["socket"].startswith(self.server.far["CLAUDE_TMUX_SOCKET_DIR"]))
        self.assertEqual(self.far_ok("run", "-s", "py", "-c", "print(6*7)").stdout, b"42\n")
        self.far_ok("create", "-n", "sh")
        listed = json.loads(self.far_ok("list", "--json").stdout)
        self.assertEqual(sorted(s["name"] for s in listed["sessions"]), ["py", "sh"])
        self.assertEqual(self.ok("list", "--json", exe=True).stdout.count('"name"'), 0)
        self.far_ok("kill", "-s", "py")
        self.assertEqual(list(self.far_registry()), ["sh"])
        self.far_ok("cleanup", "--all")
        self.assertEqual(self.far_registry(), {})
        # The far side's home got nothing: the tool keeps to its own places there.
        self.assertEqual(os.listdir(self.server.far["HOME"]), [])

    def test_exit_statuses_output_and_errors_pass_through_exactly(self):
        self.far_ok("create", "-n", "sh")
        for status in (0, 1, 3, 69, 124, 255):
            r = self.far("run", "-s", "sh", "-c", "(exit %d)" % status)
            self.assertEqual((r.returncode, r.stderr), (status, b""), r)
        text = "tab\there 'q' \"dq\" \\back $HOME é ✓ 日本\nline 2"
        r = self.far_ok("run", "-s", "sh", "-c", "printf '%%s\\n' %s" % shlex.quote(text))
        self.assertEqual(r.stdout.decode(), text + "\n")
        r = self.far_ok("run", "-s", "sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo")
        self.assertEqual(r.stdout, b"x" * 300000 + b"\n")
        r = self.far("run", "-s", "nosuch", "-c", "1", "--json")  # the tool's own error there
        self.assertEqual(r.returncode, 126)
        self.one_error_line(r, "nosuch")
        self.assertIn("--host far list", r.stderr.decode())  # its hints say how to get there
        self.assertEqual(json.loads(r.stdout)["failure"]["kind"], "target")

    def test_waiting_for_input_and_the_answer(self):
        self.far_ok("create", "-n", "py", "--python")
        r = self.far("run", "-s", "py", "--json", "-c", "print('hi ' + input('name? '))")
        self.assertEqual(r.returncode, 123, r)
        self.assertEqual(json.loads(r.stdout)["question"], "name?")
        self.assertEqual(self.far_ok("run", "-s", "py", "--answer", "Bob").stdout, b"hi Bob\n")

    def test_file_dash_is_the_local_stdin_and_nothing_else_reads_it(self):
        self.far_ok("create", "-n", "py", "--python")
        code = "s = %r\nfor i in range(3):\n    print(i, len(s))\n" % ("é✓" * 30000)
        r = self.far_ok("run", "-s", "py", "--file", "-", input=code.encode())
        self.assertEqual(r.stdout, b"0 60000\n1 60000\n2 60000\n")
        r = self.far_ok("run", "-s", "py", "--file=-", input=b"print('eq form')\n")
        self.assertEqual(r.stdout, b"eq form\n")
        read, write = os.pipe()  # a call in a `while read` loop leaves the loop's input
        os.write(write, b"still here\n")
        os.close(write)
        try:
            r = subprocess.run(self.argv("run", "-s", "py", "-c", "1"), stdin=read,
                               stdout=subprocess.PIPE, env=self.far_env, timeout=60)
            self.assertEqual((r.stdout, os.read(read, 100)), (b"1\n", b"still here\n"))
        finally:
            os.close(read)
        r = subprocess.run(self.argv("run", "-s", "py", "--file", "-"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.far_env,
                           timeout=60, preexec_fn=lambda: os.close(0))
        self.assertNotEqual(r.returncode, RELAY_EXIT, r)
        self.assertIn(b"standard input is closed", r.stderr)

    def test_the_host_from_the_environment_and_as_a_url(self):
        r = self.far("list", "--json", host="", env=dict(self.far_env, TMUXSESS_HOST="far"))
        self.assertEqual((r.returncode, json.loads(r.stdout)["total"]), (0, 0), r)
        url = "ssh://%s@far:%d" % (self.server.user, self.server.ports["far"])
        self.assertEqual(self.far("list", host=url).returncode, 0)

    def test_what_is_answered_here_and_what_is_refused_before_ssh(self):
        for args in (["--help"], ["run", "--help"], ["--version"]):  # no need to go there
            r = self.far(*args, host="far-down")
            self.assertEqual(r.returncode, 0, r)
        r = subprocess.run(self.argv("--via", "false", "list"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.far_env, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.one_error_line(r, "not both")

    def test_attach_says_how_to_watch_from_here_and_a_closed_pipe_ends_quietly(self):
        made = self.far_ok("create", "-n", "sh")
        self.assertIn(b"To watch it:  ssh -F ", made.stderr)
        r = self.far_ok("attach", "-s", "sh")
        line = r.stdout.decode().strip()
        self.assertTrue(line.startswith("ssh -F ") and " -t " in line and " far tmux -S "
                        in line, line)
        p = subprocess.Popen(self.argv("run", "-s", "sh", "-c", "seq 1 200000"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.far_env)
        self.addCleanup(self._reap, p)
        p.stdout.read(10)
        p.stdout.close()  # as `| head -1` does
        self.assertEqual(p.wait(30), -signal.SIGPIPE)
        self.assertEqual(p.stderr.read(), b"")

    def test_no_secret_on_any_command_line(self):
        self.far_ok("create", "-n", "sh")
        secret = "SECRET-%s" % os.urandom(4).hex()
        p = subprocess.Popen(self.argv("run", "-s", "sh", "-c", "sleep 2 # " + secret),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.far_env)
        self.addCleanup(self._reap, p)
        wait_until(lambda: len(self.server.far_processes(STAGE1)) >= 2, 20, "the far side")
        # Only the command the user typed holds it: not ssh, nor anything there.
        seen = set()
        while p.poll() is None:
            seen.update(processes_naming(secret.encode()))
        self.assertEqual(seen - {p.pid}, set())
        self.assertEqual(p.returncode, 0)


class FarCopyTest(RemoteCase):
    def copies(self):
        cache = self.server.far["TMUXSESS_CACHE_DIR"]
        return sorted(n for n in os.listdir(cache) if n.endswith(".py"))

    NOTHING = b"No sessions registered.\n"

    def test_copied_once_by_sha256_private_and_checked_before_it_runs(self):
        self.assertTrue(self.far_ok("list").stdout.startswith(self.NOTHING))
        sha = tmuxsess._sha256_hex(read_bytes(TOOL))
        self.assertEqual(self.copies(), ["tmuxsess-%s.py" % sha])
        cache = self.server.far["TMUXSESS_CACHE_DIR"]
        path = os.path.join(cache, self.copies()[0])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(cache).st_mode), 0o700)
        mtime = os.stat(path).st_mtime_ns
        self.far_ok("list")
        self.assertEqual(os.stat(path).st_mtime_ns, mtime)  # not sent again
        # A copy changed there never runs: this version is sent again in its place.
        good = read_bytes(path)
        write_bytes(path, good.replace(self.NOTHING[:-1], b"TAMPERED"))
        self.assertTrue(self.far_ok("list").stdout.startswith(self.NOTHING))
        self.assertEqual(read_bytes(path), good)
        self.assertEqual([n for n in os.listdir(cache) if ".py." in n], [])  # no temp files

    def test_a_changed_local_file_reaches_the_far_side_on_its_next_call(self):
        self.far_ok("list")
        changed = os.path.join(self.tmp, "tmuxsess.py")
        write_bytes(changed, read_bytes(TOOL).replace(self.NOTHING[:-1], b"Nothing here."))
        os.chmod(changed, 0o755)
        r = subprocess.run([changed, "--host", "far", "list"], stdout=subprocess.PIPE,
                           env=self.far_env, timeout=60)
        self.assertTrue(r.stdout.startswith(b"Nothing here.\n"), r.stdout)
        self.assertEqual(len(self.copies()), 2)


class FarFailureTest(RemoteCase):
    def test_an_unreachable_host_is_one_line_and_its_own_code(self):
        began = time.monotonic()
        r = self.far("list", host="far-down")
        self.assertLess(time.monotonic() - began, 5.0)  # the config's ConnectTimeout
        self.assertEqual((r.returncode, r.stdout), (RELAY_EXIT, b""), r)
        self.assertIn("Connection refused", self.one_error_line(r, "cannot reach far-down"))
        failure = json.loads(self.far("list", "--json", host="far-down").stdout)["failure"]
        self.assertEqual(failure["kind"], "unreachable")

    def test_host_keys_stay_checked_as_the_user_set_it(self):
        r = self.far("list", host="far-badkey")
        self.assertEqual(r.returncode, RELAY_EXIT, r)
        self.one_error_line(r, "far-badkey", "Host key verification failed")

    def test_a_far_side_without_tmux_or_python3(self):
        r = self.far("list", host="far-notmux")
        self.assertEqual(r.returncode, RELAY_EXIT, r)
        self.one_error_line(r, "tmux not found on far-notmux")
        self.assertEqual(os.listdir(self.server.far["TMUXSESS_CACHE_DIR"]), [])  # nothing sent
        r = self.far("list", host="far-nopython")
        self.assertEqual(r.returncode, RELAY_EXIT, r)
        self.one_error_line(r, "python3 not found on far-nopython")

    def test_bad_hosts_are_refused_before_ssh_runs(self):
        for spec in ("-oProxyCommand=touch /tmp/x", "box:0", "box:99999", "box:abc",
                     "me @box", "a b", "[::1]x"):
            r = self.far("list", host=spec)
            self.assertEqual(r.returncode, 1, (spec, r))
            self.one_error_line(r, "bad host")

    def test_a_login_shell_that_prints_does_not_touch_the_output(self):
        write_bytes(os.path.join(self.server.far["HOME"], ".bashrc"), b"echo NOISE\n")
        self.assertEqual(json.loads(self.far_ok("list", "--json").stdout)["total"], 0)


class FarConnectionTest(RemoteCase):
    def test_one_shared_connection_in_a_private_dir(self):
        for _ in range(4):
            self.far_ok("list")
        self.assertEqual(self.server.log().count("Accepted publickey"), 1)
        sockets = os.path.join(self.server.path("local", "sock"), "ssh")
        self.assertEqual(stat.S_IMODE(os.stat(sockets).st_mode), 0o700)
        self.assertEqual(len([n for n in os.listdir(sockets)
                              if stat.S_ISSOCK(os.stat(os.path.join(sockets, n)).st_mode)]), 1)

    def test_a_config_that_shares_connections_is_used_as_it_is(self):
        mine = self.server.path("local", "cm-%C")
        config = read_bytes(self.server.ssh_config).decode()
        write_bytes(self.server.ssh_config, ("Host far\n  ControlMaster auto\n  ControlPath %s\n"
                                             "  ControlPersist 60\n%s" % (mine, config)).encode())
        self.far_ok("list")
        self.far_ok("list")
        self.assertEqual(self.server.log().count("Accepted publickey"), 1)
        self.assertTrue([n for n in os.listdir(self.server.path("local")) if n.startswith("cm-")])
        self.assertEqual(os.listdir(os.path.join(self.server.path("local", "sock"), "ssh")), [])


class FarViaTest(RemoteCase):
    def test_via_a_prefix_that_runs_its_arguments(self):
        via = self.via_far()
        self.far_ok("create", "-n", "py", "--python", via=via)
        self.assertEqual(self.far_ok("run", "-s", "py", "--file", "-", via=via,
                                     input=b"print(6*7)\n").stdout, b"42\n")
        self.assertEqual(self.far("run", "-s", "py", "-c", "1/0", via=via).returncode, 1)
        self.assertEqual(list(self.far_registry()), ["py"])
        r = self.far("list", via="false")
        self.assertEqual(r.returncode, RELAY_EXIT, r)
        self.one_error_line(r, "could not start tmuxsess on false")

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_via_another_user_with_places_of_its_own(self):
        base = self.server.path("nobody")
        os.mkdir(base, 0o711)
        os.chmod(self.server.dir, 0o711)  # nobody may pass through to its own dir
        places = {}
        for name in ("home", "state", "sock", "tmux", "cache"):
            places[name] = os.path.join(base, name)
            os.mkdir(places[name], 0o700)
            os.chown(places[name], 65534, 65534)
        via = ("setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin "
               "HOME={home} TMUXSESS_STATE_DIR={state} CLAUDE_TMUX_SOCKET_DIR={sock} "
               "TMUX_TMPDIR={tmux} TMUXSESS_CACHE_DIR={cache}").format(**places)
        self.far_ok("create", "-n", "sh", via=via)
        self.assertEqual(self.far_ok("run", "-s", "sh", "-c", "id -u", via=via).stdout,
                         b"65534\n")
        self.assertEqual(os.stat(os.path.join(places["state"], ".sessions.json")).st_uid, 65534)
        self.far_ok("kill", "-s", "sh", via=via)


class FarInterruptTest(RemoteCase):
    """Ctrl-C is SIGINT to the terminal's whole foreground group: the tool's and ssh's."""

    def long_run(self, via="", env=None):
        self.far_ok("create", "-n", "py", "--python", via=via, env=env)
        p = subprocess.Popen(self.argv("run", "-s", "py", "-T", "60", "-c",
                                       "import time; time.sleep(30)", via=via),
                             env=env or self.far_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(self._reap, p)
        wait_until(lambda: len(self.running(via)) >= 2, 20, "the bootstrap and the tool there")
        wait_until(lambda: b"time.sleep(30)" in self.screen(via, env), 10, "the run to start")
        return p

    def running(self, via):
        """The bootstrap and the tool under it, there: sshd's children, or (via a
        prefix, which other tests may run at the same time) those whose
        environment names this server's places."""
        if not via:
            return self.server.far_processes(STAGE1)
        mine = []
        for pid in processes_naming(STAGE1):
            with contextlib.suppress(OSError):
                if self.server.dir.encode() in read_bytes("/proc/%d/environ" % pid):
                    mine.append(pid)
        return mine

    def screen(self, via, env):
        return self.far("capture", "-s", "py", via=via, env=env).stdout

    def ends_and_the_session_lives_on(self, p, via="", env=None, signal_=signal.SIGINT):
        if signal_ == signal.SIGINT:
            os.killpg(p.pid, signal.SIGINT)
            out, err = p.communicate(timeout=10)
            self.assertEqual(p.returncode, 130, err)
            self.assertNotIn(b"Traceback", err)
        else:
            os.kill(p.pid, signal_)  # only us: ssh sees its input end
            p.communicate(timeout=10)
        wait_until(lambda: not self.running(via), 5, "nothing left running there")
        self.far_ok("send", "-s", "py", "-k", "C-c", via=via, env=env)
        wait_until(lambda: self.far("run", "-s", "py", "-c", "print('after')", via=via,
                                    env=env).stdout == b"after\n", 10, "the session back")

    def test_ctrl_c_on_the_shared_connection(self):
        self.ends_and_the_session_lives_on(self.long_run())

    def test_ctrl_c_on_a_connection_of_its_own(self):
        env = dict(self.far_env, TMUXSESS_SSH=self.far_env["TMUXSESS_SSH"]
                   + " -o ControlMaster=no -o ControlPath=none")
        self.ends_and_the_session_lives_on(self.long_run(env=env), env=env)

    def test_ctrl_c_via_a_prefix(self):
        via = self.via_far()
        self.ends_and_the_session_lives_on(self.long_run(via=via), via=via)

    def test_a_killed_local_side_leaves_nothing_running_there(self):
        self.ends_and_the_session_lives_on(self.long_run(), signal_=signal.SIGKILL)

    def test_a_terminated_local_side_ends_as_the_tool_would(self):
        p = self.long_run()
        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(10), 128 + signal.SIGTERM)
        wait_until(lambda: not self.running(""), 5, "nothing left running there")


class FarMcpTest(RemoteCase):
    def server_for(self, *hosts):
        argv = [TOOL, "mcp"] + [w for h in hosts for w in ("--host", h)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.far_env)
        self.addCleanup(McpTestCase._stop, self, proc)
        client = Client(proc)
        client.rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "test", "version": "0"}})
        client.notify("notifications/initialized")
        return client

    def text(self, result):
        return "\n".join(item["text"] for item in result["content"])

    def test_tools_take_the_hosts_it_was_started_for(self):
        client = self.server_for("far", "far-down")
        run = next(t for t in client.rpc("tools/list")["result"]["tools"] if t["name"] == "run")
        self.assertEqual(run["inputSchema"]["properties"]["host"]["enum"], ["far", "far-down"])
        made = client.call("create_session", {"name": "py", "kind": "python", "host": "far"})
        self.assertFalse(made["isError"], made)
        self.assertEqual(list(self.far_registry()), ["py"])
        r = client.call("run", {"session": "py", "code": "print(6*7)", "host": "far"})
        self.assertEqual(r["structuredContent"]["output"], "42\n")
        r = client.call("run", {"session": "py", "code": "input('n? ')", "host": "far"})
        self.assertTrue(r["isError"])
        self.assertIn('run {"host": "far", "session": "py", "answer": "TEXT"}', self.text(r))
        r = client.call("list_sessions", {"host": "far-down"})
        self.assertTrue(r["isError"])
        self.assertIn("cannot reach far-down", self.text(r))
        r = client.call("list_sessions", {"host": "elsewhere"})
        self.assertTrue(r["isError"])
        self.assertIn("far, far-down", self.text(r))
        # Without host: this machine's sessions (none here).
        self.assertEqual(client.call("list_sessions")["structuredContent"]["total"], 0)

    def test_a_slow_call_on_one_host_holds_up_none_on_another(self):
        client = self.server_for("far")
        client.call("create_session", {"name": "py", "kind": "python", "host": "far"})
        slow = client.request("tools/call", {"name": "run", "arguments": {
            "session": "py", "code": "import time; time.sleep(3)", "host": "far"}})
        began = time.monotonic()
        self.assertFalse(client.call("list_sessions")["isError"])
        self.assertLess(time.monotonic() - began, 2.5)
        self.assertFalse(client.has_response(slow))
        self.assertFalse(client.response(slow)["result"]["isError"])

    def test_hosts_are_checked_when_it_starts_and_named_in_its_instructions(self):
        for bad in ("-oProxyCommand=x", "bad host"):
            r = subprocess.run([TOOL, "mcp", "--host", bad], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=self.far_env, timeout=30)
            self.assertEqual(r.returncode, 1, r)
            self.one_error_line(r, "bad host")
        proc = subprocess.Popen([TOOL, "mcp", "--host", "far"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.far_env)
        self.addCleanup(McpTestCase._stop, self, proc)
        r = Client(proc).rpc("initialize", {"protocolVersion": "2025-06-18",
                                            "capabilities": {}, "clientInfo": {
                                                "name": "test", "version": "0"}})
        self.assertIn("Every tool takes host: far", r["result"]["instructions"])

    def test_a_server_without_hosts_refuses_host(self):
        client = self.server_for()
        run = next(t for t in client.rpc("tools/list")["result"]["tools"] if t["name"] == "run")
        self.assertNotIn("host", run["inputSchema"]["properties"])
        r = client.call("list_sessions", {"host": "far"})
        self.assertTrue(r["isError"])
        self.assertIn("reaches no other machine", self.text(r))


class RelayPureTest(unittest.TestCase):
    """The relay's pure parts, without ssh."""

    def test_options_before_the_command_and_from_the_environment(self):
        with mock.patch.dict(os.environ, {"TMUXSESS_HOST": "", "TMUXSESS_VIA": ""}):
            self.assertEqual(tmuxsess.relay_options(["--host", "a", "run", "--host", "x"]),
                             ("a", "", ["run", "--host", "x"]))
            self.assertEqual(tmuxsess.relay_options(["--via=docker exec -i c", "list"]),
                             ("", "docker exec -i c", ["list"]))
            self.assertTrue(tmuxsess.relay_at_once(["--host", "a", "run", "-c", "1"]))
            self.assertFalse(tmuxsess.relay_at_once(["--host", "a", "run", "--file", "-"]))
            self.assertFalse(tmuxsess.relay_at_once(["run", "-c", "1"]))
        with mock.patch.dict(os.environ, {"TMUXSESS_HOST": "env-box"}):
            self.assertEqual(tmuxsess.relay_options(["list"]), ("env-box", "", ["list"]))

    def test_the_last_line_is_held_back_across_chunks(self):
        end = b"\0tmuxsess abc exit "
        data = b"out\0tmu" + b"x\n" + end + b"7\n"
        out = io.BytesIO()
        with mock.patch.object(tmuxsess, "_write_all", lambda fd, b: out.write(b)):
            held = b""
            for i in range(0, len(data), 3):
                held = tmuxsess._pass_on(held + data[i:i + 3], end)
        self.assertEqual((out.getvalue(), held), (b"out\0tmux\n", end + b"7\n"))


# ===========================================================================
# Off the happy path: programs that ask, terminals that edit lines, output
# after the prompt, the caller's environment, the user's own tmux
# ===========================================================================


def as_nobody():
    """preexec_fn that turns a child into the user nobody (the suite runs as root)."""
    pw = pwd.getpwnam("nobody")

    def become():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return become


class WaitingForInputTest(ProfileTestCase):
    """A program that waits for input is reported at once, and answering it
    continues the same command."""

    def waiting(self, name, code, question, exit_code=123, **kw):
        began = time.monotonic()
        j = self.run_json(name, code, exit_code, **kw)
        self.assertLess(time.monotonic() - began, 10, "reported long before -T 30")
        self.assertEqual((j["waiting_for_input"], j["prompt"], j["question"],
                          j["timed_out"]), (True, "input", question, False))
        return j

    def run_json(self, name, code, exit_code, args=()):
        r = self.cli("run", "-s", name, "-c", code, "--json", "-T", "30", *args)
        self.assertEqual(r.returncode, exit_code, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def test_questions_a_screen_shows_otherwise_than_their_bytes_are_seen(self):
        # The screen drops a byte that is not UTF-8, or shows a question drawn
        # over older text, redrawn every second: the transcript's bytes read
        # otherwise, and the kernel alone says the program waits.
        self.create("sh")
        for code, asks in (("printf 'caf\\351? '; read x", "caf\ufffd?"),
                           ("printf 'abcdefgh\\033[8DSure? '; read x", None),
                           ("n=30; while [ $n -gt 0 ]; do printf '\\033[1GSure? [%d]' $n; "
                            "read -t 1 x && break; n=$((n-1)); done", None)):
            r = self.cli("run", "-s", "sh", "-c", code, "--json", "-T", "4")
            self.assertEqual(r.returncode, 123, code + r.stdout + r.stderr)
            if asks is not None:
                self.assertEqual(json.loads(r.stdout)["question"], asks)
            self.ok("send", "-s", "sh", "-k", "C-c")
            self.ok("run", "-s", "sh", "-c", "true")

    def test_a_question_in_a_shell_is_answered_and_the_command_goes_on(self):
        self.create("sh")
        j = self.waiting("sh", "read -p 'Continue? ' a; echo \"got $a\"; (exit 3)",
                         "Continue?")
        self.assertEqual((j["output"], j["echo_off"]), ("Continue? ", False))
        r = self.cli("run", "-s", "sh", "--answer", "y;-1 Enter")
        self.assertEqual((r.stdout, r.returncode), ("got y;-1 Enter\n", 3), r.stderr)
        self.run_ok("sh", "echo next", "next\n")  # back at the prompt, marks exact
        # The hint says how to answer and how to abandon.
        r = self.cli("run", "-s", "sh", "-c", "read -p 'Name: ' n")
        self.assertEqual(r.returncode, 123)
        self.assertOneLineError(r.stderr, "waits for input: 'Name:'")
        self.assertIn("--answer TEXT", r.stderr)
        self.assertIn("-k C-c", r.stderr)
        r = self.fails(126, "run", "-s", "sh", "-c", "echo typed into a question")
        self.assertIn("not at its prompt", r.stderr)
        self.ok("send", "-s", "sh", "-k", "C-c")
        wait_until(lambda: self.cli("run", "-s", "sh", "-c", "true").returncode == 0, 10,
                   "the shell to be back")

    def test_python_input_and_a_password_that_is_never_written_down(self):
        self.create("py", "--python")
        self.waiting("py", "name = input('name? ')", "name?")
        self.assertEqual(self.ok("run", "-s", "py", "--answer", "Ada").stdout, "")
        self.run_ok("py", "name", "'Ada'\n")
        j = self.waiting("py", "import getpass; pw = getpass.getpass('Password: ')",
                         "Password:")
        self.assertIs(j["echo_off"], True)
        self.ok("run", "-s", "py", "--answer", "hunter2-secret")
        self.run_ok("py", "len(pw)", "14\n")
        for root, _dirs, files in os.walk(self.state):
            for name in files:
                self.assertNotIn(b"hunter2-secret", read_bytes(os.path.join(root, name)),
                                 name)

    def test_a_pager_and_an_unfinished_quote_are_waiting_not_running(self):
        self.create("sh")
        path = self.script("lines.txt", "".join("line %d\n" % i for i in range(300)))
        self.waiting("sh", "less " + shlex.quote(path), question=mock.ANY) \
            if shutil.which("less") else None
        if shutil.which("less"):
            self.ok("send", "-s", "sh", "-k", "q")
            wait_until(lambda: self.cli("run", "-s", "sh", "-c", "true").returncode == 0,
                       10, "less to quit")
        self.assert_unfinished("sh", "echo 'abc")
        r = self.cli("run", "-s", "sh", "--answer", "def'")
        self.assertEqual((r.stdout, r.returncode), ("abc\ndef\n", 0), r.stderr)

    def test_sleeping_computing_or_reading_a_pipe_is_not_waiting(self):
        self.create("sh")
        for code in ("sleep 1.5", "sleep 1.5 | cat", "python3 -c 'import time\n"
                     "t = time.time()\nwhile time.time() - t < 1.5: pass'",
                     "(sleep 1.5; echo piped) | python3 -c 'import sys; "
                     "print(sys.stdin.read().strip())'"):
            with self.subTest(code=code):
                r = self.cli("run", "-s", "sh", "-c", code, "-T", "30")
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_send_and_wait_return_at_once_with_their_own_codes(self):
        self.create("sh")
        r = self.fails(5, "send", "-s", "sh", "-c", "read -p 'Sure? ' x", "-w", "never",
                       "-T", "30")
        self.assertIn("waits for input: 'Sure?'", r.stderr)
        r = self.cli("wait", "-s", "sh", "-p", "never", "-T", "30", "--json")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual((j["reason"], j["waiting_for_input"], j["question"]),
                         ("input", True, "Sure?"))
        # Back at its prompt without the pattern: said at once too.
        self.ok("run", "-s", "sh", "--answer", "n")
        r = self.fails(5, "send", "-s", "sh", "-c", "echo done", "-w", "never", "-T", "30",
                       error=False)  # the hint holds the last lines
        self.assertIn("back at its prompt", r.stderr.split("\n")[0])

    def test_a_reader_that_does_not_echo_shows_its_first_line(self):
        self.create("sh")
        self.ok("send", "-s", "sh", "-c", 'read -s pw; echo "len=${#pw}"')
        wait_until(lambda: self.cli("wait", "-s", "sh", "-p", "never", "-T", "5")
                   .returncode == 2, 10, "the shell to wait in read -s")
        r = self.ok("send", "-s", "sh", "-c", "hunter2", "-w", "len=\\d+", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "len=7")

    def test_without_proc_a_quiet_password_prompt_is_still_seen(self):
        self.create("py", "--python")
        env = dict(os.environ, TMUXSESS_NO_PROC="1")
        r = self.cli("run", "-s", "py", "-c", "import getpass; p = getpass.getpass('PIN: ')",
                     "--json", env=env)
        self.assertEqual(r.returncode, 123, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["echo_off"], True)
        self.ok("run", "-s", "py", "--answer", "1234", env=env)
        # A program that merely sleeps in a cooked terminal is not taken to wait.
        r = self.cli("run", "-s", "py", "-c", "import time; time.sleep(1.5); p", env=env)
        self.assertEqual((r.returncode, r.stdout), (0, "'1234'\n"))

    def test_as_a_normal_user(self):
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("nobody")
            except KeyError:
                self.skipTest("running as root and there is no user nobody")
            preexec = as_nobody()
            home = os.path.join(self.tmp, "nobody")
            os.mkdir(home, 0o700)
            os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
            os.chmod(self.tmp, 0o711)  # nobody may pass through to its own home
        else:
            preexec, home = None, os.path.join(self.tmp, "home")
        env = dict(self.env, HOME=home, TMUXSESS_STATE_DIR=os.path.join(home, "state"),
                   CLAUDE_TMUX_SOCKET_DIR=os.path.join(home, "sock"), TMUX_TMPDIR=home)

        # The system's Python: a user's own (pyenv under /root) is not everyone's.
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

        # A copy it can read: the checkout may be private to its owner.
        tool_copy = os.path.join(home, "tmuxsess.py")
        shutil.copy(TOOL, tool_copy)
        os.chmod(tool_copy, 0o644)

        def tool(*args):
            return subprocess.run([python, tool_copy] + list(args), env=env, cwd=home,
                                  preexec_fn=preexec, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True,
                                  timeout=60)
        self.addCleanup(kill_servers, home)
        self.assertEqual(tool("create", "-n", "sh").returncode, 0)
        r = tool("run", "-s", "sh", "-c", "read -p 'Go? ' g; echo \"$g!\"", "--json")
        self.assertEqual(r.returncode, 123, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["question"], "Go?")
        r = tool("run", "-s", "sh", "--answer", "yes")
        self.assertEqual((r.returncode, r.stdout), (0, "yes!\n"), r.stderr)
        self.assertEqual(tool("kill", "-s", "sh").returncode, 0)


class ExactOrRefusedTest(ProfileTestCase):
    """Nothing is typed into a busy program; a run claims no status it cannot know;
    an answer to a full-screen program goes in as keys; lossy output says so."""

    def test_a_program_still_busy_after_ctrl_c_gets_nothing_typed(self):
        self.create("py", "--python")
        busy = ("import signal, time\nsignal.signal(signal.SIGINT, lambda *a: print('on'))"
                "\nwhile True: time.sleep(0.05)")
        self.fails(124, "run", "-s", "py", "-T", "1", "-c", busy, error=False)
        self.ok("send", "-s", "py", "-k", "C-c")
        self.ok("wait", "-s", "py", "-p", "on$", "-T", "20")  # its handler carried on
        r = self.fails(126, "run", "-s", "py", "-T", "1", "-c", "print('second')")
        self.assertIn("not at its prompt", r.stderr)
        self.assertNotIn(b"print('second')", read_bytes(self.registry()["sessions"]["py"][
            "transcript"]))

    def test_a_prompt_known_by_regex_claims_no_status(self):
        self.create("sh")
        r = self.cli("run", "-s", "sh", "-c", "PS1='nest$ ' bash --norc --noprofile")
        self.assertEqual(r.returncode, 123, r.stderr)  # a shell without the tool's marks
        for code in ("false", "true"):
            j = json.loads(self.ok("run", "-s", "sh", "--prompt", r"^nest\$ $", "-c", code,
                                   "--json").stdout)
            self.assertEqual((j["output"], j["exit_status"]), ("", None))
        # Without --prompt, a run is refused with the way to name that prompt.
        r = self.fails(126, "run", "-s", "sh", "-c", "true")
        self.assertIn("'nest$' looks like a prompt", r.stderr)
        self.assertIn("--prompt", r.stderr)
        self.ok("send", "-s", "sh", "-c", "exit")
        self.run_ok("sh", "false", "", 1)  # the tool's own shell again: its own status

    @needs("vim")
    @needs("git")
    def test_an_editor_asks_and_takes_its_answer_as_keys(self):
        repo = os.path.join(self.tmp, "repo")
        subprocess.run(["git", "init", "-q", repo], check=True)
        self.create("sh", "-c", repo, "-e", "GIT_EDITOR=vim -u NONE -i NONE", "-e",
                    "GIT_AUTHOR_NAME=t", "-e", "GIT_AUTHOR_EMAIL=t@t", "-e",
                    "GIT_COMMITTER_NAME=t", "-e", "GIT_COMMITTER_EMAIL=t@t")
        r = self.cli("run", "-s", "sh", "-c", "git commit -q --allow-empty -e -m hello",
                     "--json", "-T", "30")
        self.assertEqual(r.returncode, 123, r.stdout + r.stderr)
        j = json.loads(r.stdout)
        self.assertLess(len(j["question"]), 200, j["question"])  # vim's last row, not padding
        self.assertTrue(j["output"].startswith("hello\n"), j["output"][:300])
        self.assertLess(len(j["output"]), 60 * 201)
        r = self.cli("run", "-s", "sh", "--answer", ":wq")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        log = subprocess.run(["git", "-C", repo, "log", "--format=%s"], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
        self.assertEqual(log, "hello\n")  # ":wq" went to vim, not into the message

    def test_output_that_is_not_utf8_says_so(self):
        self.create("sh")
        j = json.loads(self.ok("run", "-s", "sh", "-c", "printf 'ok\\377\\n'", "--json").stdout)
        self.assertEqual((j["output"], j["lossy"]), ("ok\ufffd\n", True))
        j = json.loads(self.ok("run", "-s", "sh", "-c", "echo caf\u00e9", "--json").stdout)
        self.assertEqual((j["output"], j["lossy"]), ("caf\u00e9\n", False))

    def test_the_seeds_exit_codes_for_a_missing_pane_and_a_server_without_target(self):
        self.create("sh")
        self.fails(3, "send", "-S", self.socket, "-t", "missing:0.0", "-c", "echo x")
        self.fails(3, "kill", "-S", self.socket)  # bad arguments


# ===========================================================================
# Waiting is not running: relays (ssh, script), event loops (node, asyncio,
# prompt_toolkit), readers in sessions of their own (setsid, su -c, psql's
# password under su), plain readers, with and without /proc, as root and as a
# normal user; and the pieces (who reads a terminal, what asks) on their own.
# ===========================================================================

NO_PROC = {"TMUXSESS_NO_PROC": "1"}
REMOTE = SshServer.PROMPT  # the remote shell's prompt, for run --prompt
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class PasswordPostgres(PostgresServer):
    """A throwaway PostgreSQL server whose users log in with a password."""

    PASSWORD = "pg-secret-42"

    def _run(self, *argv):
        if argv[0] == "initdb":
            pwfile = os.path.join(self.dir, "pwfile")
            with open(pwfile, "w") as f:
                f.write(self.PASSWORD + "\n")
            if os.geteuid() == 0:
                os.chown(pwfile, pwd.getpwnam(self.USER).pw_uid, -1)
            argv = tuple(a if a != "trust" else "scram-sha-256" for a in argv) + (
                "--pwfile", pwfile)
        super()._run(*argv, PGPASSWORD=self.PASSWORD)


class WaitingCase(TmuxTestCase):
    """``run`` through the command line, in process, timed."""

    def run_json(self, name, code=None, timeout=20, env=None, answer=None, prompt=None):
        args = ["run", "-s", name, "--json", "-T", str(timeout)]
        args += ["--answer", answer] if answer is not None else ["-c", code]
        args += ["--prompt", prompt] if prompt else []
        began = time.monotonic()
        r = self.cli(*args, env=dict(os.environ, **env) if env else None)
        self.assertNoTraceback(r)
        try:
            j = json.loads(r.stdout)
        except ValueError:
            self.fail("not JSON: %r %r" % (r.stdout, r.stderr))
        j["rc"], j["took"] = r.returncode, time.monotonic() - began
        return j

    def assertWaits(self, j, question, echo_off=False, within=5.0):
        """Reported as waiting for input, well before the timeout."""
        self.assertEqual((j["rc"], j["waiting_for_input"], j["timed_out"]), (123, True, False),
                         j)
        self.assertLess(j["took"], within, j)
        if question is not None:
            self.assertEqual(j["question"], question, j)
        self.assertIs(j["echo_off"], echo_off, j)

    def assertRan(self, j, output, took_at_least=0.0):
        """Ran to its end: all of its output, not called waiting."""
        self.assertEqual((j.get("rc"), j.get("waiting_for_input"), j.get("timed_out")),
                         (0, False, False), j)
        self.assertEqual(j["output"], output, j)
        self.assertGreaterEqual(j["took"], took_at_least, j)

    def assertTimesOut(self, j, output):
        """Waited out -T: what holds where nothing says that it asks."""
        self.assertEqual((j["rc"], j["waiting_for_input"], j["timed_out"]), (124, False, True),
                         j)
        self.assertEqual(j["output"], output, j)

    def interrupt(self, name):
        self.ok("send", "-s", name, "-k", "C-c")
        wait_until(lambda: self.cli("run", "-s", name, "-c", "true", "-T", "2")
                        .returncode == 0, 15, "the shell to be back at its prompt")


# ---------------------------------------------------------------------------
# Relays: ssh, script. They always read the terminal (and a socket or a pty).
# ---------------------------------------------------------------------------

class RelayTest(WaitingCase):
    @classmethod
    def setUpClass(cls):
        cls.sshd = SshServer.running(cls.addClassCleanup)

    def login(self, name, env=None):
        """A shell session logged in to the remote shell over ssh."""
        self.create(name)
        config = self.sshd.config(self.tmp)
        self.ok("send", "-s", name, "-c", self.sshd.command(config))
        wait_until(lambda: "remote$" in self.cli("capture", "-s", name).stdout, 20,
                        "the remote prompt")
        return config

    def test_ssh_relaying_a_quiet_command_is_not_waiting_a_remote_question_is(self):
        self.login("far")
        # Quiet for 3 s, and for 1.5 s between two lines: ssh polls the terminal
        # and its socket all along, which is not waiting.
        self.assertRan(self.run_json("far", "sleep 3; echo done", prompt=REMOTE),
                       "done\n", 2.9)
        self.assertRan(self.run_json("far", "echo hi; sleep 1.5; echo bye", prompt=REMOTE),
                       "hi\nbye\n", 1.4)
        # A remote question: the line asks.
        j = self.run_json("far", "read -p 'Name? ' x; echo \"got $x\"", prompt=REMOTE)
        self.assertWaits(j, "Name?")
        self.assertRan(self.run_json("far", answer="bob", prompt=REMOTE), "got bob\n")
        # A remote password prompt: the local terminal is raw (ssh's), the line asks.
        j = self.run_json("far", "read -s -p 'Password: ' pw; echo; echo ${#pw}",
                          prompt=REMOTE)
        self.assertWaits(j, "Password:")
        # The local terminal is ssh's raw one: the answer's line is taken for its
        # echo, and the remote's own newline (echo was off there) with it.
        self.assertRan(self.run_json("far", answer="hunter2", prompt=REMOTE), "7\n")
        # Remote output that ends its line and goes quiet is not a question.
        self.assertRan(self.run_json("far", "echo 'Results:'; sleep 2; echo end",
                                     prompt=REMOTE), "Results:\nend\n", 1.9)
        # A remote pager: the alternate screen says it waits for keys.
        if shutil.which("less"):
            self.assertWaits(self.run_json("far", "less /etc/passwd", prompt=REMOTE), None)
            self.ok("send", "-s", "far", "-k", "q")
            self.assertRan(self.run_json("far", "echo back", prompt=REMOTE), "back\n")

    def test_ssh_asking_for_a_key_passphrase_is_waiting(self):
        # ssh itself asks, on /dev/tty, echo off: a plain read, then the relay.
        self.create("sh")
        config = self.sshd.config(self.tmp)
        j = self.run_json("sh", self.sshd.command(config, locked=True))
        self.assertWaits(j, None, echo_off=True)
        self.assertIn("passphrase", j["question"])
        j = self.run_json("sh", answer="passphrase-42", prompt=REMOTE)
        self.assertEqual((j["rc"], j["waiting_for_input"], j["timed_out"]), (0, False, False),
                         j)
        self.assertRan(self.run_json("sh", "sleep 1.5; echo there", prompt=REMOTE),
                       "there\n", 1.4)

    def test_script_relaying_a_quiet_command_is_not_waiting_a_question_is(self):
        self.create("sh")
        j = self.run_json("sh", "script -qec 'sleep 2; echo done' /dev/null")
        self.assertRan(j, "done\r\n" if j["output"].endswith("\r\n") else "done\n", 1.9)
        j = self.run_json("sh", "script -qec 'read -p \"Sure? [y/N] \" a; echo \"a=$a\"' "
                          "/dev/null")
        self.assertWaits(j, "Sure? [y/N]")
        j = self.run_json("sh", answer="y")
        self.assertEqual((j["rc"], j["output"].strip()), (0, "a=y"), j)

    def test_without_proc_a_relay_is_waiting_only_when_the_line_asks(self):
        self.login("far")
        self.assertRan(self.run_json("far", "sleep 2; echo done", prompt=REMOTE, env=NO_PROC),
                       "done\n", 1.9)
        j = self.run_json("far", "read -p 'Name? ' x; echo \"got $x\"", prompt=REMOTE,
                          env=NO_PROC)
        self.assertWaits(j, "Name?")
        self.assertRan(self.run_json("far", answer="bob", prompt=REMOTE, env=NO_PROC),
                       "got bob\n")


# ---------------------------------------------------------------------------
# Event loops: node, asyncio, prompt_toolkit. They wait on the terminal and on
# timers, pipes, eventfds, sockets at once.
# ---------------------------------------------------------------------------

PT_SHAPE = r'''
import asyncio, sys
async def main(ask, wait):
    loop = asyncio.get_running_loop()
    line = loop.create_future()
    loop.add_reader(0, lambda: line.done() or line.set_result(sys.stdin.readline()))
    if ask:
        print("Name? ", end="", flush=True)
    nap = asyncio.ensure_future(asyncio.sleep(wait))
    done, _ = await asyncio.wait([line, nap], return_when=asyncio.FIRST_COMPLETED)
    print("got " + line.result().strip() if line in done else "slept")
asyncio.run(main(sys.argv[1] == "ask", float(sys.argv[2])))
'''


# docker exec -it and kubectl exec -it (Go): one thread reads the terminal
# (a plain read), another relays the connection. Here the far side is a child
# that says WORDS after SECONDS on a socket.
THREADED_RELAY = r'''
import os, socket, subprocess, sys, threading
a, b = socket.socketpair()
far = subprocess.Popen([sys.executable, "-c", "import os, sys, time\n"
                        "time.sleep(float(sys.argv[1]))\n"
                        "os.write(int(sys.argv[3]), sys.argv[2].encode())\n"
                        "time.sleep(float(sys.argv[4]))\n",
                        sys.argv[1], sys.argv[2], str(b.fileno()), sys.argv[3]],
                       pass_fds=[b.fileno()])
b.close()
def relay():
    while True:
        data = a.recv(1024)
        if not data:
            os._exit(0)
        os.write(1, data)
threading.Thread(target=relay, daemon=True).start()
line = os.read(0, 1024)
far.kill()
os.write(1, b"got " + line)
os._exit(0)
'''


@unittest.skipUnless(shutil.which("node"), "node is not installed")
class NodeTest(WaitingCase):
    def test_a_pending_promise_is_not_waiting_a_question_is(self):
        self.create("js", "--kind", "node")
        j = self.run_json("js", "await new Promise(r => setTimeout(() => r(42), 1500))")
        self.assertRan(j, "42\n", 1.4)
        self.assertRan(self.run_json("js", "1 + 1"), "2\n")  # not refused as busy
        j = self.run_json("js", "setTimeout(() => console.log('tick'), 300); "
                          "await new Promise(r => setTimeout(r, 2000)); 'after'")
        self.assertRan(j, "tick\n'after'\n", 1.9)
        # readline's question, from a script in a shell: node's event loop, and
        # the line asks.
        self.create("sh")
        script = self.script("ask.js", "require('readline').createInterface({input: "
                             "process.stdin, output: process.stdout}).question('Name? ', "
                             "a => { console.log('got ' + a); process.exit(0) })\n")
        self.assertWaits(self.run_json("sh", "node " + script), "Name?")
        self.assertRan(self.run_json("sh", answer="ada"), "got ada\n")
        self.assertRan(self.run_json("sh", "node -e 'setTimeout(() => console.log(1), 1500)'"),
                       "1\n", 1.4)

    def test_without_proc_a_pending_promise_is_not_waiting(self):
        self.create("js", "--kind", "node")
        j = self.run_json("js", "await new Promise(r => setTimeout(() => r(7), 1500))",
                          env=NO_PROC)
        self.assertRan(j, "7\n", 1.4)


class EventLoopTest(WaitingCase):
    def test_asyncio_sleeping_or_watching_the_terminal_is_not_waiting_a_question_is(self):
        self.create("sh")
        # An event loop that does not watch the terminal: never reading it.
        j = self.run_json("sh", "python3 -c 'import asyncio; asyncio.run(asyncio.sleep(2)); "
                          "print(\"awake\")'")
        self.assertRan(j, "awake\n", 1.9)
        # prompt_toolkit's shape without prompt_toolkit: an asyncio loop with the
        # terminal in its selector and its self-pipe, a timer running.
        script = self.script("pt_shape.py", PT_SHAPE)
        j = self.run_json("sh", "python3 %s quiet 2" % script)
        self.assertRan(j, "slept\n", 1.9)
        self.assertWaits(self.run_json("sh", "python3 %s ask 30" % script), "Name?")
        self.assertRan(self.run_json("sh", answer="bob"), "got bob\n")

    def test_a_relay_reading_the_terminal_in_one_thread_waits_only_when_it_asks(self):
        self.create("sh")
        script = self.script("threaded_relay.py", THREADED_RELAY)
        j = self.run_json("sh", "python3 %s 2 $'done\\n' 0" % script)
        self.assertRan(j, "done\n", 1.9)
        self.assertWaits(self.run_json("sh", "python3 %s 0 'Name? ' 30" % script), "Name?")
        self.assertRan(self.run_json("sh", answer="bob"), "got bob\n")

    def test_prompt_toolkit_and_ipython_ask_with_their_own_prompt(self):
        has_pt = subprocess.run([sys.executable, "-c", "import prompt_toolkit"],
                                stderr=subprocess.DEVNULL).returncode == 0
        if not has_pt:
            self.skipTest("prompt_toolkit is not installed for %s" % sys.executable)
        self.create("sh")
        py = shlex.quote(sys.executable)
        j = self.run_json("sh", "%s -c 'from prompt_toolkit import prompt; "
                          "print(\"got\", prompt(\"Name? \"))'" % py)
        self.assertWaits(j, "Name?")
        j = self.run_json("sh", answer="ada")
        self.assertEqual((j["rc"], j["output"].strip().rsplit("\n", 1)[-1]), (0, "got ada"), j)
        # IPython (prompt_toolkit): code that sleeps is not waiting; back at
        # its own prompt (drawn, not marked) it waits, and the screen says so.
        ipython = shutil.which("ipython3") or shutil.which("ipython")
        if ipython is None:
            return
        self.ok("send", "-s", "sh", "-c", "exec %s --no-banner --no-confirm-exit "
                "--colors=NoColor" % shlex.quote(ipython))
        wait_until(lambda: "In [1]:" in self.cli("capture", "-s", "sh").stdout, 30,
                        "IPython's prompt")
        began = time.monotonic()
        r = self.cli("send", "-s", "sh", "-c", "import time; time.sleep(2); 6 * 7",
                     "-w", r"Out\[1\]: 42", "-T", "20")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertGreater(time.monotonic() - began, 1.9)
        began = time.monotonic()
        r = self.cli("wait", "-s", "sh", "-p", "never", "-T", "20", "--json")
        j = json.loads(r.stdout)
        self.assertEqual((r.returncode, j["reason"], j["question"]), (2, "input", "In [2]:"),
                         j)
        self.assertLess(time.monotonic() - began, 5)


# ---------------------------------------------------------------------------
# Readers in a session of their own: setsid, su -c (util-linux su calls setsid)
# ---------------------------------------------------------------------------

class OtherSessionTest(WaitingCase):
    def test_setsid_readers_are_waiting_and_answered(self):
        self.create("sh")
        j = self.run_json("sh", "setsid -w bash -c 'read -p \"Name? \" x; echo \"got $x\"'")
        self.assertWaits(j, "Name?")
        self.assertRan(self.run_json("sh", answer="bob"), "got bob\n")
        # No question on the line: the kernel's plain read is enough.
        self.assertWaits(self.run_json("sh", "setsid -w cat"), "")
        self.ok("send", "-s", "sh", "-k", "C-d")  # cat sees the end of its input
        wait_until(lambda: self.cli("run", "-s", "sh", "-c", "true").returncode == 0, 15,
                        "cat to end")
        # A background job of the terminal's own session that polls it cannot
        # read it (SIGTTIN): it does not make a quiet command a question.
        self.cli("run", "-s", "sh", "-c", "python3 -c 'import select\n"
                 "while True: select.select([0], [], [])' &")
        self.assertRan(self.run_json("sh", "sleep 2; echo ok"), "ok\n", 1.9)
        self.cli("run", "-s", "sh", "-c", "kill %1; wait")

    @unittest.skipUnless(os.geteuid() == 0, "su to another user needs root")
    def test_su_c_readers_are_waiting_and_answered(self):
        self.create("sh")
        j = self.run_json("sh", "su nobody -s /bin/bash -c 'read -p \"Name? \" x; "
                          "echo \"got $x\"'")
        self.assertWaits(j, "Name?")
        self.assertRan(self.run_json("sh", answer="bob"), "got bob\n")
        j = self.run_json("sh", "su nobody -s /bin/bash -c 'read -s -p \"PIN: \" x; echo; "
                          "echo ${#x}'")
        self.assertWaits(j, "PIN:", echo_off=True)
        self.assertRan(self.run_json("sh", answer="1234"), "\n4\n")


class PsqlPasswordTest(WaitingCase):
    """psql under ``su postgres`` asks for a password: another session, another
    user, echo off."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("su postgres needs root")
        cls.pg = PasswordPostgres()
        reason = cls.pg.skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        cls.addClassCleanup(cls.pg.stop)
        cls.pg.start()

    def test_psql_password_prompt_under_su_postgres(self):
        self.create("sh")
        os.chmod(self.pg.dir, 0o755)
        psql = "psql -X -h %s -U postgres -d tmuxsess -At -c 'select 6 * 7'" % self.pg.dir
        j = self.run_json("sh", "su postgres -c %s" % shlex.quote(psql))
        self.assertWaits(j, "Password for user postgres:", echo_off=True)
        # psql ends the password's line itself (echo was off).
        self.assertRan(self.run_json("sh", answer=PasswordPostgres.PASSWORD), "\n42\n")
        for root, _dirs, files in os.walk(self.state):
            for name in files:
                self.assertNotIn(PasswordPostgres.PASSWORD.encode(),
                                 read_bytes(os.path.join(root, name)), name)


# ---------------------------------------------------------------------------
# Plain readers: what the kernel alone settles (with /proc), and what holds
# without /proc.
# ---------------------------------------------------------------------------

class PlainReaderTest(WaitingCase):
    def test_plain_readers_wait_with_proc_and_by_their_line_without(self):
        self.create("sh")
        # With /proc: the kernel's plain read settles it, a line or none.
        self.assertWaits(self.run_json("sh", "read -p 'Continue? ' a; echo \"a=$a\""),
                         "Continue?")
        self.assertRan(self.run_json("sh", answer="y"), "a=y\n")
        self.assertWaits(self.run_json("sh", "read -s -p 'Password: ' p; echo; echo ${#p}"),
                         "Password:", echo_off=True)
        self.assertRan(self.run_json("sh", answer="hunter2"), "\n7\n")
        self.assertWaits(self.run_json("sh", "python3 -c 'print(\"got\", input(\"n? \"))'"),
                         "n?")
        self.assertRan(self.run_json("sh", answer="5"), "got 5\n")
        # cat with no prompt at all: the kernel's plain read says it.
        self.assertWaits(self.run_json("sh", "cat"), "")
        self.interrupt("sh")
        if shutil.which("less"):
            path = self.script("lines.txt", "".join("line %d\n" % i for i in range(300)))
            self.assertWaits(self.run_json("sh", "less " + shlex.quote(path)), None)
            self.ok("send", "-s", "sh", "-k", "q")
            wait_until(lambda: self.cli("run", "-s", "sh", "-c", "true").returncode == 0,
                            10, "less to quit")
        # Without /proc: the line that asks, or the terminal's modes (echo off, the
        # alternate screen), say it; a silent reader waits out -T.
        j = self.run_json("sh", "read -p 'Continue? ' a; echo \"a=$a\"", env=NO_PROC)
        self.assertWaits(j, "Continue?")
        self.assertRan(self.run_json("sh", answer="y", env=NO_PROC), "a=y\n")
        j = self.run_json("sh", "read -s -p 'Password: ' p; echo; echo ${#p}", env=NO_PROC)
        self.assertWaits(j, "Password:", echo_off=True)
        self.assertRan(self.run_json("sh", answer="hunter2", env=NO_PROC), "\n7\n")
        j = self.run_json("sh", "read -s p; echo ${#p}", env=NO_PROC)  # no line: echo off
        self.assertWaits(j, "", echo_off=True)
        self.assertRan(self.run_json("sh", answer="abc", env=NO_PROC), "3\n")
        self.assertWaits(self.run_json("sh", "python3 -c 'print(\"got\", input(\"n? \"))'",
                                       env=NO_PROC), "n?")
        self.assertRan(self.run_json("sh", answer="5", env=NO_PROC), "got 5\n")
        # Without /proc nothing tells a silent reader from a silent worker.
        self.assertTimesOut(self.run_json("sh", "cat", timeout=3, env=NO_PROC), "")
        self.interrupt("sh")
        self.assertRan(self.run_json("sh", "sleep 2; echo ok", env=NO_PROC), "ok\n", 1.9)
        if shutil.which("less"):
            path = self.script("lines.txt", "".join("line %d\n" % i for i in range(300)))
            self.assertWaits(self.run_json("sh", "less " + shlex.quote(path), env=NO_PROC),
                             None)
            self.ok("send", "-s", "sh", "-k", "q")
            wait_until(lambda: self.cli("run", "-s", "sh", "-c", "true").returncode == 0,
                            10, "less to quit")


# ---------------------------------------------------------------------------
# As a normal user: the tool, tmux and the programs run as nobody.
# ---------------------------------------------------------------------------

class NormalUserCase(WaitingCase):
    """The tool run as nobody (as root), or as the user who runs the tests."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.preexec, self.home = None, os.path.join(self.tmp, "home")
            return
        try:
            self.pw = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("running as root and there is no user nobody")
        self.preexec = as_nobody()
        self.home = os.path.join(self.tmp, "nobody")
        os.mkdir(self.home, 0o700)
        os.chown(self.home, self.pw.pw_uid, -1)
        os.chmod(self.tmp, 0o711)
        self.addCleanup(kill_servers, self.home)

    def tool(self, *args, env=None):
        env = dict(self.env, HOME=self.home, TMUXSESS_STATE_DIR=os.path.join(self.home, "state"),
                   CLAUDE_TMUX_SOCKET_DIR=os.path.join(self.home, "sock"),
                   TMUX_TMPDIR=self.home, **(env or {}))
        began = time.monotonic()
        r = subprocess.run([SYSTEM_PYTHON, TOOL] + [str(a) for a in args], env=env,
                           cwd=self.home, preexec_fn=self.preexec, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=90)
        self.assertNotIn("Traceback", r.stderr)
        return r, time.monotonic() - began

    def run_as(self, *args, env=None):
        r, took = self.tool("run", "-s", "sh", "--json", "-T", "20", *args, env=env)
        j = json.loads(r.stdout)
        j["rc"], j["took"] = r.returncode, took
        return j


class NormalUserTest(NormalUserCase):
    def test_as_a_normal_user(self):
        self.assertEqual(self.tool("create", "-n", "sh")[0].returncode, 0)
        self.assertWaits(self.run_as("-c", "setsid -w bash -c 'read -p \"Name? \" x; "
                                     "echo \"got $x\"'"), "Name?")
        self.assertRan(self.run_as("--answer", "bob"), "got bob\n")
        self.assertWaits(self.run_as("-c", "read -p 'Go? ' g; echo \"$g!\""), "Go?")
        self.assertRan(self.run_as("--answer", "yes"), "yes!\n")
        if shutil.which("node"):
            j = self.run_as("-c", "node -e 'process.stdin.on(\"data\", () => {}); "
                            "setTimeout(() => process.exit(0), 1500)'")
            self.assertRan(j, "", 1.4)
        if os.geteuid() == 0:
            # su asks for root's password: su is root's, so /proc hides what it
            # does from nobody; echo off and the line say it asks.
            j = self.run_as("-c", "su root -c true")
            self.assertWaits(j, "Password:", echo_off=True)
            self.assertEqual(self.tool("send", "-s", "sh", "-k", "C-c")[0].returncode, 0)


class NormalUserSshTest(NormalUserCase):
    @classmethod
    def setUpClass(cls):
        cls.sshd = SshServer.running(cls.addClassCleanup)

    def test_ssh_relay_as_a_normal_user(self):
        config = self.sshd.config(self.home, owner=self.pw.pw_uid if self.preexec else None)
        self.assertEqual(self.tool("create", "-n", "sh")[0].returncode, 0)
        self.tool("send", "-s", "sh", "-c", self.sshd.command(config))
        wait_until(lambda: "remote$" in self.tool("capture", "-s", "sh")[0].stdout, 20,
                        "the remote prompt")
        self.assertRan(self.run_as("--prompt", REMOTE, "-c", "sleep 2; echo done"),
                       "done\n", 1.9)
        self.assertWaits(self.run_as("--prompt", REMOTE, "-c",
                                     "read -p 'Name? ' x; echo \"got $x\""), "Name?")
        self.assertRan(self.run_as("--prompt", REMOTE, "--answer", "bob"), "got bob\n")


# ---------------------------------------------------------------------------
# The pieces: the readers' verdicts on a pty of the test's own (no tmux), also
# where Yama would hide the call (wchan and the open fds decide), and the
# screen's evidence.
# ---------------------------------------------------------------------------

SELECT_TTY_AND_SOCKET = (
    "import select, socket, sys\n"
    "a, b = socket.socketpair()\n"
    "select.select([0, a], [], [])\n")
EPOLL_TTY_AND_SOCKET = (
    "import asyncio\n"
    "async def m():\n"
    "    asyncio.get_running_loop().add_reader(0, print)\n"
    "    await asyncio.sleep(60)\n"
    "asyncio.run(m())\n")
POLL_TTY_ALONE = "import select\np = select.poll()\np.register(0, select.POLLIN)\np.poll()\n"


class ReadersTest(unittest.TestCase):
    def program(self, argv, session=False):
        """``argv`` on a pty of its own (its controlling terminal with ``session``):
        (pid, tty), once it sleeps."""
        import fcntl
        import termios
        master, slave = os.openpty()
        tty = os.ttyname(slave)

        def leader():
            os.setsid()
            if session:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                             preexec_fn=leader)
        os.close(slave)
        self.addCleanup(os.close, master)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        wait_until(lambda: proc_stat(p.pid)[:1] == [b"S"] and
                        tmuxsess._terminal_readers(p.pid, tty)[0] != "none"
                        or self.seconds(p) > 1.5, 10, "the program to sleep")
        return p.pid, tty

    started = {}

    def seconds(self, p):
        return time.monotonic() - self.started.setdefault(p.pid, time.monotonic())

    def verdicts(self, hide_calls=False, hide_sets=False):
        """{name: verdict} for the programs, as the kernel shows them (or hides
        the call, as Yama's ptrace_scope does; or hides the sets in memory)."""
        from unittest import mock
        real = tmuxsess._proc_read

        def proc_read(path):
            return None if hide_calls and path.endswith("/syscall") else real(path)
        programs = {"cat": ["cat"],
                    "select tty+socket": [sys.executable, "-c", SELECT_TTY_AND_SOCKET],
                    "epoll tty+socket": [sys.executable, "-c", EPOLL_TTY_AND_SOCKET],
                    "poll tty": [sys.executable, "-c", POLL_TTY_ALONE],
                    "sleep": ["sleep", "60"]}
        ptys = {name: self.program(argv) for name, argv in programs.items()}
        with mock.patch.object(tmuxsess, "_proc_read", proc_read):
            with mock.patch.object(tmuxsess._Reader, "_waited",
                                   lambda *a: None) if hide_sets else contextlib.nullcontext():
                return {name: tmuxsess._terminal_readers(pid, tty)[0]
                        for name, (pid, tty) in ptys.items()}

    def test_verdicts_from_the_call(self):
        self.assertEqual(self.verdicts(), {
            "cat": "plain", "select tty+socket": "multiplexed",
            "epoll tty+socket": "multiplexed", "poll tty": "plain", "sleep": "none"})

    def test_verdicts_when_the_call_is_hidden(self):
        # Yama (ptrace_scope 1) hides /proc/PID/syscall and mem from a normal
        # user, not wchan, fd or fdinfo: a read or poll with only the terminal
        # open is plain; with a socket open too, the set it waits on is
        # unknown; an epoll's set is in its fdinfo.
        self.assertEqual(self.verdicts(hide_calls=True), {
            "cat": "plain", "select tty+socket": "unknown",
            "epoll tty+socket": "multiplexed", "poll tty": "plain", "sleep": "none"})

    def test_verdicts_when_the_sets_in_memory_are_hidden(self):
        self.assertEqual(self.verdicts(hide_sets=True), {
            "cat": "plain", "select tty+socket": "unknown",
            "epoll tty+socket": "unknown", "poll tty": "plain", "sleep": "none"})

    def test_another_users_reader_is_unknown_to_a_normal_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run a reader as another user")
        pid, tty = self.program(["setpriv", "--reuid", "nobody", "--regid", "nogroup",
                                 "--clear-groups", "cat"])
        os.chmod(tty, 0o666)
        r = subprocess.run(["setpriv", "--reuid", "daemon", "--regid", "daemon",
                            "--clear-groups", SYSTEM_PYTHON, "-c",
                            "import sys; sys.path.insert(0, %r); import tmuxsess; "
                            "print(tmuxsess._terminal_readers(%d, %r)[0])"
                            % (os.path.dirname(TOOL), pid, tty)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=30)
        self.assertEqual(r.stdout.strip(), "unknown", r.stderr)
        self.assertEqual(tmuxsess._terminal_readers(pid, tty)[0], "plain")  # root sees


class AsksTest(unittest.TestCase):
    COOKED = tmuxsess.Terminal("multiplexed", True, True, {}, {}, "")
    RAW = tmuxsess.Terminal("multiplexed", False, False, {}, {}, "")
    PASSWORD = tmuxsess.Terminal("unknown", True, False, {}, {}, "")

    def test_what_asks_and_what_does_not(self):
        asking = [b"Name? ", b"Password for user postgres: ", b"Sure? [y/N] ",
                  b"Overwrite (yes/no) ", b"remote$ ", b"In [2]: ", b"--More--(45%)",
                  b"Continue?\r\n", b"\x1b[?1049h\x1b[Hline 1\r\n:",
                  b"Enter passphrase for key '/k': ", b"Press any key to continue"]
        not_asking = [b"", b"hi\r\n", b"Results:\r\n", b"Downloading 45%",
                      b"Password changed\r\n", b"\x1b[?1049h\x1b[?1049l", b"42\n"]
        for tail in asking:
            self.assertTrue(tmuxsess.asks(tail, self.RAW)[0], tail)
        for tail in not_asking:
            self.assertFalse(tmuxsess.asks(tail, self.RAW)[0], tail)
        self.assertTrue(tmuxsess.asks(b"", self.PASSWORD)[0])  # echo off, line editing
        self.assertFalse(tmuxsess.asks(b"", self.COOKED)[0])
        self.assertTrue(tmuxsess.asks(b"", self.RAW, alternate=True)[0])
        self.assertEqual(tmuxsess.asks(b"Name? ", self.RAW)[1], "Name?")


class CanonicalDeliveryTest(TmuxTestCase):
    """Text reaches a line-editing reader exactly, or nothing is typed."""

    def reader(self, name, size):
        """``head -c`` reading the data and the Enter after it, in canonical mode."""
        out = os.path.join(self.tmp, name + ".out")
        self.create(name)
        self.ok("send", "-s", name, "-c", "head -c %d > %s; echo stored" % (
            size + 1, shlex.quote(out)))
        wait_until(lambda: self.cli("wait", "-s", name, "-p", "never", "-T", "5")
                   .returncode == 2, 10, "head to wait for input")
        return out

    def test_one_megabyte_as_a_single_line(self):
        data = bytes(random.Random(7).choice(b"abcdefghij0123456789 ;-") for _ in range(1 << 20))
        out = self.reader("big", len(data))
        path = self.script("big.txt", data.decode())
        self.ok("send", "-s", "big", "--file", path, "-w", "stored", "-T", "60")
        self.assertEqual(read_bytes(out), data + b"\n")

    def test_every_control_byte_arrives_as_data(self):
        data = bytes(range(1, 0x20)) + b"\x7f" + b"abc\x15def\x17ghi\x03\x04\x1a"
        out = self.reader("ctl", len(data))
        self.ok("send", "-s", "ctl", "--file", self.script("ctl.bin", data.decode()),
                "-w", "stored", "-T", "30")
        self.assertEqual(read_bytes(out), data + b"\n")

    def test_the_same_bytes_into_a_raw_mode_recorder(self):
        out = self.recorder("rec")
        data = bytes(range(1, 0x20)) + b"\x7f" + b"x" * 5000
        self.ok("send", "-s", "rec", "--file", self.script("raw.bin", data.decode()), "-l")
        self.assertReceived(out, data)

    def test_what_cannot_be_data_is_refused_before_typing(self):
        self.create("sh")
        self.ok("send", "-s", "sh", "-c", "stty -iexten; head -c 3 >/dev/null; echo read")
        wait_until(lambda: self.cli("wait", "-s", "sh", "-p", "never", "-T", "5")
                   .returncode == 2, 10, "head to wait for input")
        env, calls = self.logging_tmux()
        r = self.fails(4, "send", "-s", "sh", "-c", "a\x15b", env=env)
        self.assertIn("byte 0x15", r.stderr)
        self.assertNotRegex("\n".join(calls()), r"load-buffer|paste-buffer")


class OutputAfterThePromptTest(TmuxTestCase):
    """Output a program prints after its prompt is not text typed on it."""

    def test_a_job_notice_does_not_jam_the_shell(self):
        self.create("sh")
        self.assertEqual(self.ok("run", "-s", "sh", "-c", "sleep 0.2 &").returncode, 0)
        wait_until(lambda: self.ok("run", "-s", "sh", "-c", "jobs -r").stdout == "", 10,
                   "the job to end")
        for _ in range(3):
            self.assertEqual(self.ok("run", "-s", "sh", "-c", "echo hi").stdout, "hi\n")

    def test_a_thread_printing_after_the_prompt_does_not_jam_python(self):
        self.create("py", "--python")
        self.ok("run", "-s", "py", "-c", "import threading\n"
                "threading.Timer(0.2, lambda: print('from a thread')).start()")
        transcript = self.registry()["sessions"]["py"]["transcript"]
        wait_until(lambda: b"from a thread" in read_bytes(transcript), 10, "the thread's line")
        self.assertEqual(self.ok("run", "-s", "py", "-c", "6 * 7").stdout, "42\n",
                         read_bytes(transcript)[-600:])
        # Text the tool typed without Enter still counts as unsent.
        self.ok("send", "-s", "py", "-c", "abc", "-l")
        r = self.fails(126, "run", "-s", "py", "-c", "1")
        self.assertIn("unsent text", r.stderr)


class CallerEnvironmentTest(TmuxTestCase):
    """Statuses and environments as the user has them."""

    def test_a_running_server_still_gives_the_callers_environment(self):
        self.create("first")  # the server starts now, with this environment
        env = dict(os.environ, DATABASE_URL="postgres://db/x", VIRTUAL_ENV="/opt/venv")
        self.ok("create", "-n", "second", env=env)
        self.assertEqual(self.ok("run", "-s", "second", "-c",
                                 'echo "$DATABASE_URL $VIRTUAL_ENV $PAGER"').stdout,
                         "postgres://db/x /opt/venv cat\n")

    def test_the_environment_never_stands_in_the_servers_command_line(self):
        # A tmux server keeps the command line that started it, for anyone to read.
        env = dict(os.environ, SECRET_TOKEN="s3cr3t-value-1")
        self.ok("create", "-n", "first", env=env)
        self.ok("create", "-n", "second", env=dict(env, SECRET_TOKEN="s3cr3t-value-2"))
        pid = int(self.tmux("display-message", "-p", "#{pid}").stdout)
        self.assertNotIn(b"s3cr3t", read_bytes("/proc/%d/cmdline" % pid))
        for name, value in (("first", "1"), ("second", "2")):
            self.assertEqual(self.ok("run", "-s", name, "-c", 'echo "$SECRET_TOKEN"').stdout,
                             "s3cr3t-value-%s\n" % value)

    def test_a_caller_in_the_c_locale_reads_tabs_and_utf8_exactly(self):
        # LC_ALL=C (cron, CI, many scripts): tmux writes "_" for every tab and
        # non-ASCII byte to a client it thinks cannot take UTF-8, which would
        # leave no pane row to parse and no exact output.
        env = dict(os.environ, LC_ALL="C")
        self.ok("create", "-n", "c", exe=True, env=env)
        self.ok("create", "-n", "py", "--python", exe=True, env=env)
        listed = json.loads(self.ok("list", "--json", exe=True, env=env).stdout)
        self.assertEqual({s["name"]: s["status"] for s in listed["sessions"]},
                         {"c": "alive", "py": "alive"})
        ran = self.ok("run", "-s", "c", "-c", r"printf 'caf\303\251\tend\n'", exe=True,
                      env=env)
        self.assertEqual(ran.stdout, "caf\u00e9\tend\n")
        ran = self.ok("run", "-s", "py", "-c", "print('d\\u00e9j\\u00e0')", exe=True,
                      env=env)
        self.assertEqual(ran.stdout, "d\u00e9j\u00e0\n")
        shown = self.ok("capture", "-s", "py", exe=True, env=env).stdout
        self.assertIn("d\u00e9j\u00e0", shown)
        self.assertEqual(self.ok("health", "-s", "py", exe=True, env=env).returncode, 0)

    def test_a_custom_excepthook_still_gives_status_1(self):
        self.create("py", "--python")
        self.ok("run", "-s", "py", "-c", "import sys, traceback\n"
                "sys.excepthook = lambda *e: traceback.print_exception(*e)")
        r = self.cli("run", "-s", "py", "-c", "1 / 0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("ZeroDivisionError", r.stdout)
        self.assertEqual(self.cli("run", "-s", "py", "-c", "2").returncode, 0)

    def test_the_users_pythonstartup_runs_and_create_returns_at_the_prompt(self):
        startup = self.script("startup.py", "GREETING = 'hi'\nimport sys\nsys.ps1 = 'py> '\n")
        for how, env in (("environment", dict(os.environ, PYTHONSTARTUP=startup)),
                         ("-e", None)):
            with self.subTest(how=how):
                name = "py" + str(len(how))
                args = ["create", "-n", name, "--python", "--ready-timeout", "10"]
                began = time.monotonic()
                self.ok(*(args + (["-e", "PYTHONSTARTUP=" + startup] if env is None else [])),
                        env=env)
                self.assertLess(time.monotonic() - began, 8)
                self.assertEqual(self.ok("run", "-s", name, "-c", "GREETING").stdout, "'hi'\n")
                self.assertIn("py> ", self.ok("capture", "-s", name).stdout)

    def test_the_shell_reads_bashrc_unless_norc(self):
        with open(os.path.join(self.env["HOME"], ".bashrc"), "w") as f:
            f.write("export FROMRC=yes\nPROMPT_COMMAND='echo -n'\nPS1='fancy> '\n")
        self.create("rc")
        r = self.cli("run", "-s", "rc", "-c", 'echo "$FROMRC"; (exit 4)')
        self.assertEqual((r.stdout, r.returncode), ("yes\n", 4))
        self.create("plain", "--norc")
        self.assertEqual(self.ok("run", "-s", "plain", "-c", 'echo "[$FROMRC]"').stdout,
                         "[]\n")


class UsersOwnTmuxTest(TmuxTestCase):
    """Nothing of the user's is killed, typed into or adopted by mistake."""

    def test_t_without_a_server_is_refused_where_it_would_change_things(self):
        # The user's own session on tmux's default server.
        subprocess.run(["tmux", "-f", "/dev/null", "new-session", "-d", "-s", "work"],
                       check=True)
        self.create("work")  # ours, of the same name, on our own server
        self.fails(3, "kill", "-t", "work")
        self.fails(4, "send", "-t", "work", "-c", "echo hi")
        self.fails(126, "run", "-t", "work", "-c", "echo hi")
        self.assertEqual(subprocess.run(["tmux", "has-session", "-t", "=work"]).returncode, 0)
        # -s with -t: a pane on that session's server.
        pane = self.registry()["sessions"]["work"]["pane_id"]
        self.assertEqual(self.ok("run", "-s", "work", "-t", pane, "-c", "echo ours",
                                 "--prompt", r"[$#] $").stdout, "ours\n")
        self.fails(4, "send", "-S", self.socket, "-L", "x", "-t", pane, "-c", "x")
        subprocess.run(["tmux", "kill-server"])

    def test_repair_adopts_only_its_own_registry(self):
        self.create("mine")
        other = dict(os.environ, TMUXSESS_STATE_DIR=os.path.join(self.tmp, "other-state"))
        self.ok("create", "-n", "theirs", env=other)
        os.unlink(self.reg_path)
        self.ok("repair")
        self.assertEqual(sorted(self.registry()["sessions"]), ["mine"])


class SmallPromisesTest(TmuxTestCase):
    def test_json_failures_answer_in_json(self):
        for args in (["run", "-s", "nope", "-c", "1"], ["send", "-s", "nope", "-c", "x"],
                     ["wait", "-s", "nope", "-p", "x"], ["list"], ["find", "-S", "/nope"],
                     ["cleanup", "--idle", "soon"], ["run", "--bogus"]):
            with self.subTest(args=args):
                r = self.cli(*args, "--json")
                if args == ["list"] or args[0] == "find":
                    json.loads(r.stdout)
                    continue
                self.assertNotEqual(r.returncode, 0)
                doc = json.loads(r.stdout)
                self.assertTrue(doc["error"], doc)
                self.assertEqual(doc["exit_code"], r.returncode)

    def test_a_stuck_lock_waits_once(self):
        fd = os.open(self.lock_path if os.path.isdir(self.state) else self.script(
            "x", ""), os.O_RDWR | os.O_CREAT)
        os.makedirs(self.state, 0o700, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        env = dict(os.environ, TMUXSESS_LOCK_TIMEOUT="1")
        began = time.monotonic()
        self.fails(75, "create", "-n", "locked", env=env)
        self.assertLess(time.monotonic() - began, 1.9)
        self.assertEqual(self.tmux_sessions(), [])

    def test_m_closes_a_block_in_a_python_the_tool_did_not_start(self):
        os.makedirs(self.sockets, 0o700)
        subprocess.run(["tmux", "-f", "/dev/null", "-S", self.socket, "new-session", "-d",
                        "-s", "own", "-x", "200", "-y", "50", "python3", "-q"], check=True)
        wait_until(lambda: ">>>" in self.tmux("capture-pane", "-p", "-t", "own").stdout, 20,
                   "python's prompt")
        self.ok("send", "-S", self.socket, "-t", "own", "-m", "-c",
                "def f():\n\n    return 40 + 2\n\nprint(f())", "-w", "^42$")


class SixFaultsTest(TmuxTestCase):
    """The issue's faults 1-6, each as a user meets it."""

    def test_1_wait_ignores_old_prompt_and_echo(self):
        # Both the old ">>>" and the echoed ">>> import time..." are on screen
        # at once; only the prompt *after* the sleep may end the wait.
        # a: send -w (the executable, on a thread); b: send, then wait (at the same time).
        self.api_create("a", "python-repl")
        self.api_create("b", "python-repl")
        code = "import time; time.sleep(1)"
        ended = {}

        def send_and_wait_a():
            r = self.exe("send", "-s", "a", "-c", code, "-w", ">>>", "-T", "30")
            ended["a"] = (r, time.monotonic(), self.screen("a"))
        began = time.monotonic()
        thread = threading.Thread(target=send_and_wait_a)
        thread.start()
        r = self.ok("send", "-s", "b", "-c", code)
        self.assertEqual(r.stdout, "")
        r = self.cli("wait", "-s", "b", "-p", ">>>", "-T", "30")
        ended["b"] = (r, time.monotonic(), self.screen("b"))
        thread.join(60)
        self.assertEqual(sorted(ended), ["a", "b"])
        for name, (r, when, screen) in sorted(ended.items()):
            self.assertEqual((r.returncode, r.stderr), (0, ""), name)
            # Returned only once the REPL was back: after the sleep, a fresh prompt
            # below the echo on the screen at that moment.
            self.assertGreaterEqual(when - began, 0.95, name)
            self.assertEqual(screen.rstrip("\n").split("\n")[-2:], [">>> " + code, ">>>"], name)

    def test_2_text_is_never_a_key_flag_or_separator(self):
        out = self.recorder("rec")
        texts = ["x = 41;", "-1", "Enter", "Up", "C-c", "--", "\\;"]
        for text in texts:
            r = self.ok("send", "-s", "rec", "-c", text)
            self.assertNoTraceback(r)
        self.assertReceived(out, b"".join(enc(t) + b"\r" for t in texts))
        # And in a real REPL: the semicolon and the minus survive.
        self.api_create("py", "python-repl")
        tmuxsess.run("x = 41;", session="py")
        self.assertEqual(tmuxsess.run("x", session="py").output, "41\n")
        self.assertEqual(self.ok("run", "-s", "py", "-c", "-1").stdout, "-1\n")
        # A TAB is text too, not readline's completion key; nor is ^A "go to start".
        tmuxsess.send('u = "a\tb"', wait=r"^>>> $", timeout=30, session="py")
        self.assertEqual(tmuxsess.run("len(u), u", session="py").output, "(3, 'a\\tb')\n")
        r = self.ok("run", "-s", "py", "-c", 'v = "\tc\x01d"; len(v), v')
        self.assertEqual(r.stdout, "(4, '\\tc\\x01d')\n")

    def test_3_blank_lines_and_big_blocks_run_as_one_unit(self):
        self.api_create("py", "python-repl")
        path = self.script("seed.py", SEED_CLASS)
        r = self.ok("send", "-s", "py", "-m", "--file", path, "-w", "^>>> $", "-T", "30")
        self.assertEqual(r.stderr, "")
        self.assertEqual(self.ok("run", "-s", "py", "-c", "c.inc()").stdout, "42\n")
        r = self.ok("run", "-s", "py", "-c", SEED_CLASS)
        self.assertEqual(r.stdout, "41\n")
        self.assertNotIn("Error", tmuxsess.capture(session="py", all=True))
        # A 40 KB block with blank lines inside functions, through run and send -m.
        n = 1000
        body = "".join("def f%d(x):\n    y = x + %d\n\n    return y\n\n" % (i, i)
                       for i in range(n))
        block = body + "print(sum(globals()['f%d' % i](1) for i in range(n)))\n"
        self.assertGreater(len(block), 40000)
        tmuxsess.run("n = %d" % n, session="py")
        r = tmuxsess.run(block, session="py", timeout=30)
        total = "%d\n" % (n + (n - 1) * n // 2)
        self.assertEqual((r.output, r.exit_status), (total, 0))
        res = tmuxsess.send(block.replace("print(", "total = ("), multiline=True,
                            wait=r"^>>> $", timeout=30, session="py")
        self.assertTrue(res.wait.found, res)
        self.assertEqual(tmuxsess.run("total", session="py").output, total)

    def test_4_concurrent_pastes_never_mix_and_user_buffers_survive(self):
        a, b = self.recorder("ra"), self.recorder("rb")
        self.tmux("set-buffer", "-b", "mine", "USER-DATA;")
        self.tmux("set-buffer", "top of stack")
        before = self.tmux("list-buffers", "-F", "#{buffer_name}=#{buffer_sample}").stdout
        blocks = {}
        for tag in "ABCD":
            blocks[tag] = "".join("%s%06d \u4e2d;\\; Enter -1\n" % (tag, i)
                                  for i in range(8000)).encode()
        procs = []
        for tag, name in (("A", "ra"), ("B", "rb"), ("C", "ra"), ("D", "rb")):
            p = self.popen("send", "-s", name, "-m", "--file", "-", stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, universal_newlines=False)
            procs.append((p, blocks[tag]))
        threads = [threading.Thread(target=p.communicate, args=(data,)) for p, data in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([p.returncode for p, _ in procs], [0, 0, 0, 0])
        # Two sends into one pane: each block arrives whole, in either order.
        for path, (x, y) in ((a, "AC"), (b, "BD")):
            one, two = blocks[x] + b"\r", blocks[y] + b"\r"
            size = len(one + two)
            wait_until(lambda p=path, n=size: os.path.getsize(p) >= n, 30, "both blocks")
            self.assertIn(read_bytes(path), (one + two, two + one), "blocks mixed in " + path)
        after = self.tmux("list-buffers", "-F", "#{buffer_name}=#{buffer_sample}").stdout
        self.assertEqual(after, before)

    def test_5_crash_ends_the_wait_at_once(self):
        # run, wait after a send, and send -w, each on a program that dies
        # in its first second; all three at once, each with a 30 s timeout.
        self.api_create("a", "python-repl")
        self.api_create("b", "python-repl")
        self.api_create("c")
        tmuxsess.send("import os, time; time.sleep(0.3); os._exit(4)", session="b")
        began = time.monotonic()
        run = self.popen("run", "-s", "a", "-T", "30", "-c",
                         "import os, time; print('bye'); time.sleep(0.3); os._exit(3)")
        wait = self.popen("wait", "-s", "b", "-p", "never", "-T", "30")
        send = self.popen("send", "-s", "c", "-c", "sleep 0.3; exit 5", "-w", "never",
                          "-T", "30")
        self.assertEqual(run.wait(60), 125)
        self.assertEqual(wait.wait(60), 1)
        self.assertEqual(send.wait(60), 3)
        self.assertLess(time.monotonic() - began, 15)
        self.assertEqual(run.stdout.read(), "bye\n")
        for p in (run, wait, send):
            err = p.stderr.read()
            self.assertTrue(err.startswith("tmuxsess: error: the program exited"), err)
            self.assertNotIn("Traceback", err)

    def test_5_server_gone_ends_the_wait_at_once(self):
        self.api_create("a")
        self.ok("send", "-s", "a", "-c", "sleep 100")
        began = time.monotonic()
        p = self.popen("wait", "-s", "a", "-p", "never", "-T", "30")
        self.tmux("kill-server")
        self.assertEqual(p.wait(30), 1)
        self.assertLess(time.monotonic() - began, 15)
        err = p.stderr.read()
        self.assertIn("server", err)
        self.assertNotIn("Traceback", err)

    def test_6_output_beyond_history_limit_is_not_lost(self):
        self.api_create("first")
        self.tmux("set-option", "-g", "history-limit", "10")
        self.api_create("tiny")  # a new pane: history-limit applies to new panes only
        limit = self.tmux("display-message", "-p", "-t", "tiny", "#{history_limit}").stdout
        self.assertEqual(limit.strip(), "10")
        r = self.ok("run", "-s", "tiny", "-c", "echo NEEDLE-$((6*7)); seq 1 3000")
        self.assertEqual(r.stdout, "NEEDLE-42\n" + "".join("%d\n" % i for i in range(1, 3001)))
        # A wait after a separate send finds text that has left tmux's history.
        self.ok("send", "-s", "tiny", "-c", "echo FOUND-$((6*7)); seq 1 3000")
        r = self.ok("wait", "-s", "tiny", "-p", "^FOUND-42$", "-T", "30")
        r = self.ok("wait", "-s", "tiny", "-p", "^3000$", "-T", "30")
        history = self.tmux("capture-pane", "-p", "-t", "tiny", "-S", "-").stdout
        self.assertNotIn("FOUND-42", history)  # tmux itself has lost it
        r = self.ok("capture", "-s", "tiny", "--transcript")
        self.assertIn("\nNEEDLE-42\n1\n2\n3\n", r.stdout)
        self.assertIn("\nFOUND-42\n1\n2\n", r.stdout)
        self.assertEqual(r.stdout.count("\n2999\n3000\n"), 2)


class CorpusTest(TmuxTestCase):
    """Hostile texts arrive byte-exact in the program's terminal input.

    The promise: the bytes of the text, then CR for Enter, are what tmux writes
    to the pane's terminal. The recorder reads its terminal in raw mode, so it
    sees exactly those bytes; a program in cooked mode would see the line
    discipline's view of them (CR turned into LF, ^C raising SIGINT, lines cut
    at 4 KB), which is the terminal's doing, not the sender's.
    """

    def test_corpus_through_the_command_line(self):
        marker = os.path.join(self.tmp, "expanded")
        texts = hostile_texts(marker)
        self.assertGreaterEqual(len(texts), 30)
        outs = [self.recorder("r0"), self.recorder("r1")]
        errors = []

        def feed(i):
            for text in texts[i::2]:
                r = self.exe("send", "-s", "r%d" % i, "-c", text)
                if r.returncode or r.stderr:
                    errors.append((text, r.returncode, r.stderr))
        threads = [threading.Thread(target=feed, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        for i in (0, 1):
            self.assertReceived(outs[i], b"".join(enc(t) + b"\r" for t in texts[i::2]))
        self.assertFalse(os.path.exists(marker), "something expanded $(...) or #(...)")

    def test_corpus_through_the_api_and_one_megabyte(self):
        marker = os.path.join(self.tmp, "expanded")
        texts = hostile_texts(marker)
        out = self.recorder("rec")
        for text in texts:
            tmuxsess.send(text, session="rec")
        tmuxsess.send("no enter;", enter=False, session="rec")
        expected = b"".join(enc(t) + b"\r" for t in texts) + b"no enter;"
        self.assertReceived(out, expected)
        # 1 MB through the CLI's stdin with -m: one paste, byte-exact.
        big = b"".join(enc(texts[i % len(texts)]).replace(b"\r", b"") + b"\n"
                       for i in range(40000))
        big = (big * (1 + (1 << 20) // len(big)))[:1 << 20]
        r = subprocess.run([sys.executable, TOOL, "send", "-s", "rec", "-m", "--file", "-"],
                           input=big, env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        self.assertReceived(out, expected + big + b"\r", timeout=60)
        self.assertFalse(os.path.exists(marker))

    def test_keys_literal_and_empty(self):
        out = self.recorder("rec")
        self.ok("send", "-s", "rec", "-c", "")                  # just Enter
        self.ok("send", "-s", "rec", "-l", "-c", "Enter")       # the word, no Enter
        self.ok("send", "-s", "rec", "-k", "C-c")
        self.ok("send", "-s", "rec", "-k", "Up", "Enter", "Escape")
        path = self.script("payload", "from a file; -1\n")
        self.ok("send", "-s", "rec", "--file", path)
        self.ok("send", "-s", "rec", "--file", "-", "-l", input="from stdin \\;")
        self.assertReceived(out, b"\r" + b"Enter" + b"\x03" + b"\x1b[A\r\x1b"
                            + b"from a file; -1\n\r" + b"from stdin \\;")


class PidNamespaceTest(TmuxTestCase):
    """The tool in a pid namespace of its own (a container, a sandbox) with the
    tmux server outside it: no pid tmux names is one its kernel knows, or names
    the same process. tmux's word decides whether the program and server run."""

    # A normal user gets a pid namespace inside a user namespace of its own.
    UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"] + (["-r"] if os.geteuid() else [])

    def setUp(self):
        super().setUp()
        try:
            r = subprocess.run(self.UNSHARE + ["true"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.skipTest("no unshare: %s" % e)
        if r.returncode != 0:  # not root, or no user namespaces
            self.skipTest("unshare --pid: %s" % r.stderr.decode().strip())

    def inside(self, *args):
        return subprocess.run(self.UNSHARE + [sys.executable, TOOL] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60)

    def test_create_run_health_and_an_exit_seen_through_tmux(self):
        self.api_create("outside")  # the server runs out here
        r = self.inside("create", "-n", "py", "--python")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.inside("run", "-s", "py", "-c", "6 * 7")
        self.assertEqual((r.returncode, r.stdout), (0, "42\n"), r.stderr)
        r = self.inside("health", "-s", "py")
        self.assertEqual((r.returncode, json.loads(r.stdout)["status"]), (0, "healthy"))
        began = time.monotonic()
        r = self.inside("run", "-s", "py", "-c", "import os; os._exit(4)")
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertOneLineError(r.stderr, "the program exited with status 4 while waiting")
        self.assertLess(time.monotonic() - began, 10)
        # The status comes from tmux alone here (no /proc of its processes), and
        # tmux 3.3a built with utempter often misses the SIGCHLD of a program
        # whose pane just closed (1 in 3 here) until reminded.
        for code in (5, 6, 7):
            self.inside("create", "-n", "py%d" % code, "--python")
            r = self.inside("run", "-s", "py%d" % code, "-c", "import os; os._exit(%d)" % code)
            self.assertIn("exited with status %d" % code, r.stderr)
        # A run of two units: what the first learnt (only tmux can tell) holds for
        # the second, whose program exits.
        self.inside("create", "-n", "lines", "--cmd", "python3 -q", "--prompt", "^>>> $")
        began = time.monotonic()
        r = self.inside("run", "-s", "lines", "-T", "30", "-c",
                        "import time; time.sleep(1.5); 1 + 1\nimport os; os._exit(8)")
        self.assertEqual((r.returncode, r.stdout), (125, "2\n"), r.stderr)
        self.assertLess(time.monotonic() - began, 10)
        # A quiet line editor is taken to wait, as where there is no /proc.
        self.inside("create", "-n", "py2", "--python")
        r = self.inside("run", "-s", "py2", "-c", "input('name? ')", "-T", "20")
        self.assertIn("the program waits for input: 'name?'", r.stderr)


class ForeignPaneTest(TmuxTestCase):
    """A server and pane the tool did not create, addressed with -S/-t."""

    def setUp(self):
        super().setUp()
        self.own = os.path.join(self.tmp, "own.sock")
        subprocess.run(["tmux", "-S", self.own, "-f", "/dev/null", "new-session", "-d",
                        "-s", "own", "-x", "120", "-y", "30", "env", "PS1=own$ ",
                        "bash", "--norc", "--noprofile"], check=True)
        wait_until(lambda: "own$" in self.pane(), 20, "the foreign prompt")
        # Old output that every pattern below would match, and a wrapped line.
        self.tmux("send-keys", "-t", "own", "echo OLD-TOKEN; printf 'W%.0s' {1..300}; echo",
                  "Enter", socket=self.own)
        wait_until(lambda: self.pane().count("own$") >= 2, 20, "old output")

    def pane(self):
        return self.tmux("capture-pane", "-p", "-J", "-t", "own", socket=self.own).stdout

    def test_send_wait_and_run(self):
        target = ["-S", self.own, "-t", "own"]
        r = self.ok("send", *target, "-c", "sleep 0.3; echo NEW-TOKEN", "-w", "TOKEN")
        self.assertIn("NEW-TOKEN", self.pane().split("\n"))
        # A send, then a separate wait: only output after the send counts.
        self.ok("send", *target, "-c", "sleep 0.3; echo TOKEN2-$((40+2))")
        r = self.ok("wait", *target, "-p", r"TOKEN\S*", "-T", "30", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "TOKEN2-42")
        r = self.ok("run", *target, "--prompt", r"own\$ $", "-c", "echo hi; echo there")
        self.assertEqual(r.stdout, "hi\nthere\n")
        pipe = self.tmux("display-message", "-p", "-t", "own", "#{pane_pipe}", socket=self.own)
        self.assertEqual(pipe.stdout.strip(), "0")  # the temporary transcript is gone

    def test_send_wait_on_a_pane_that_pipes_elsewhere(self):
        # The user's own pipe-pane stays; waits then read the screen, by the same rule.
        self.tmux("pipe-pane", "-t", "own", "cat >/dev/null", socket=self.own)
        target = ["-S", self.own, "-t", "own"]
        r = self.ok("send", *target, "-c", "sleep 0.3; echo PIPED-$((40+2))", "-T", "10",
                    "-w", r"TOKEN|PIPED\S*", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "PIPED-42")
        self.ok("send", *target, "-c", "sleep 0.3; echo TOKEN3-$((40+2))")
        r = self.ok("wait", *target, "-p", r"TOKEN\S*", "-T", "30", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "TOKEN3-42")
        pipe = self.tmux("display-message", "-p", "-t", "own", "#{pane_pipe}", socket=self.own)
        self.assertEqual(pipe.stdout.strip(), "1")

    def test_wait_when_tmux_drops_history_lines(self):
        # A long-lived pane's history is full: each scrolled line makes tmux drop
        # old ones, so rows move up while the wait looks for the send's output.
        self.tmux("set-option", "-g", "history-limit", "20", socket=self.own)
        self.tmux("new-window", "-d", "-t", "own:", "-n", "full", "env", "PS1=full$ ",
                  "bash", "--norc", "--noprofile", socket=self.own)
        self.tmux("send-keys", "-t", "own:full", "echo HIST-OLD; seq 1 100", "Enter",
                  socket=self.own)
        wait_until(lambda: "\n100\n" in self.tmux("capture-pane", "-p", "-t", "own:full",
                                                   socket=self.own).stdout, 20, "history")
        target = ["-S", self.own, "-t", "own:full"]
        self.ok("send", *target, "-c", "sleep 0.3; echo HIST-$((40+2)); seq 1 8")
        r = self.ok("wait", *target, "-p", r"HIST\S*", "-T", "10", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "HIST-42")


class TranscriptTest(TmuxTestCase):
    def test_transcript_strips_ansi_unless_raw(self):
        self.api_create("sh")
        self.ok("run", "-s", "sh", "-c", "printf '\\033[1;31mRED\\033[0m plain\\n'")
        r = self.ok("capture", "-s", "sh", "--transcript")
        self.assertIn("\nRED plain\n", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        r = self.ok("capture", "-s", "sh", "--transcript", "--raw")
        self.assertIn("\x1b[1;31mRED\x1b[0m plain", r.stdout)

    def test_transcript_shows_a_pasted_command_as_the_screen_does(self):
        # bash redraws pasted text as "\r", cursor-forward over the prompt, text;
        # dropping the move showed "echo hi-$((6*7))))" here, without the prompt.
        self.api_create("sh")
        self.assertEqual(tmuxsess.run("echo hi-$((6*7))", session="sh").output, "hi-42\n")
        r = self.ok("capture", "-s", "sh", "--transcript")
        self.assertRegex(r.stdout, r"(?m)^[#$] echo hi-\$\(\(6\*7\)\)\nhi-42$")
        self.assertEqual(tmuxsess.render("50%\r100%\r\n"), "100%\n")
        self.assertEqual(tmuxsess.render("abc\rX\x1b[Kq\x1b[2Cz\r\n"), "Xq  z\n")

    def test_waiting_on_a_transcript_starts_no_tmux_per_poll(self):
        self.api_create("sh")
        env, calls = self.logging_tmux()
        began = time.monotonic()
        r = self.cli("send", "-s", "sh", "-c", "sleep 1.5; echo done-$((6*7))",
                     "-w", "^done-42", "-T", "30", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        # 1.5 s of waiting: a tmux call per poll would be dozens.
        self.assertGreaterEqual(time.monotonic() - began, 1.4)
        self.assertLessEqual(len(calls()), 4, calls())


# ===========================================================================
# Full-screen programs and agent TUIs: keys where keys are meant, waits on the
# screen a person sees, a prompt submitted exactly once.
# ===========================================================================

# A top/htop-like program: the alternate screen, redrawn 30 times a second by
# cursor positioning; "Load average" has a cursor move where its space is, so
# only the screen (never the transcript read as lines) says it. q quits.
TOPLIKE = r'''
import os, select, sys, tty
tty.setraw(0)
out = sys.stdout
out.write("\x1b[?1049h\x1b[?25l\x1b[2J")
n = 0
try:
    while True:
        n += 1
        frame = ["\x1b[1;1Htasks %5d\x1b[K" % n,
                 "\x1b[2;3HLoad\x1b[1Caverage: %d.%02d" % (n % 7, n % 100)]
        for row in range(3, 20):
            frame.append("\x1b[%d;1H%4d %s\x1b[K" % (row, (n * row) % 9973, "x" * (n % 30)))
        out.write("".join(frame))
        out.flush()
        ready, _, _ = select.select([0], [], [], 0.03)
        if ready and b"q" in os.read(0, 100):
            break
finally:
    out.write("\x1b[?25h\x1b[?1049l")
    out.flush()
'''

# An agent TUI stand-in, drawn in the main screen as Claude Code's is: raw
# mode, bracketed paste, an input box redrawn in place (cursor up, erase). An
# Enter within SWALLOW seconds of a paste's end is lost, as such TUIs lose it;
# a later one submits: the input is logged (one JSON line each), a spinner
# turns for 0.4 s, then the answer (the input reversed) is printed.
STANDIN = r'''
import json, os, sys, time, tty
log, swallow = sys.argv[1], float(sys.argv[2])
tty.setraw(0)
out = sys.stdout
BORDER = "-" * 40


def draw(buf, first=False):
    out.write(("" if first else "\x1b[1A\r\x1b[2K") + BORDER + "\r\n\x1b[2K> "
              + buf.decode("utf-8", "replace").replace("\n", " "))
    out.flush()


def answer(buf):
    text = buf.decode("utf-8", "replace")
    with open(log, "a") as f:
        f.write(json.dumps(text) + "\n")
    out.write("\r\n")
    for i in range(8):
        out.write("\r\x1b[2K  thinking %s" % "|/-\\"[i % 4])
        out.flush()
        time.sleep(0.05)
    out.write("\r\x1b[2K  answer: %s\r\n\r\n" % text[::-1])
    draw(b"", first=True)


out.write("\x1b[?2004hstand-in agent; an Enter within %gs of a paste is lost\r\n" % swallow)
draw(b"", first=True)
buf, data, pasting, paste_end = bytearray(), b"", False, 0.0
while True:
    chunk = os.read(0, 4096)
    if not chunk:
        break
    data += chunk
    while data:
        if data.startswith(b"\x1b[200~"):
            pasting, data = True, data[6:]
        elif data.startswith(b"\x1b[201~"):
            pasting, paste_end, data = False, time.monotonic(), data[6:]
            draw(buf)
        elif data[:1] == b"\x1b" and len(data) < 6:
            break  # the rest of a bracket comes with the next read
        elif pasting:
            buf, data = buf + data[:1], data[1:]
        else:
            ch, data = data[:1], data[1:]
            if ch == b"\r" and time.monotonic() - paste_end >= swallow:
                answer(buf)
                buf = bytearray()
            elif ch == b"\x03":
                sys.exit(0)
            elif ch != b"\r":
                buf += ch
                draw(buf)
'''

# The recorder, in the alternate screen: a full-screen program's view of keys.
ALT_RECORDER = RECORDER.replace('os.write(1, b"REC> ")', 'os.write(1, b"\\x1b[?1049hREC> ")')


class FullScreenTest(TmuxTestCase):
    def shell(self, name="sh"):
        self.api_create(name, "shell", cwd=self.tmp)
        return name

    def standin(self, name, swallow):
        log = os.path.join(self.tmp, name + ".log")
        cmd = " ".join(shlex.quote(x) for x in (
            sys.executable, self.script("standin.py", STANDIN), log, str(swallow)))
        self.api_create(name, "command", command=cmd)
        wait_until(lambda: "stand-in agent" in self.screen(name), 20, "the stand-in")
        return log

    @needs("vim")
    def test_vim_takes_colon_wq_and_saves(self):
        self.shell()
        vim = "vim -u NONE -N -i NONE f.txt"
        self.ok("send", "-s", "sh", "-c", vim, "-w", "f.txt", "-T", "20")
        h = json.loads(self.ok("health", "-s", "sh").stdout)
        self.assertEqual((h["alternate_screen"], h["current_command"]), (True, "vim"))
        r = json.loads(self.ok("send", "-s", "sh", "-l", "-c", "ihello -x;", "--json").stdout)
        self.assertTrue(r["typed"])
        self.ok("send", "-s", "sh", "-k", "Escape")
        self.ok("send", "-s", "sh", "-c", ":wq", "-w", "[$#] $", "-T", "20")
        self.assertEqual(read_bytes(os.path.join(self.tmp, "f.txt")), b"hello -x;\n")
        # Keys, then a wait for the shell's prompt once vim has left the screen.
        self.ok("send", "-s", "sh", "-c", vim, "-w", "hello", "-T", "20")
        self.ok("send", "-s", "sh", "-k", ":", "q", "Enter", "-w", "[$#] $", "-T", "20")
        h = json.loads(self.ok("health", "-s", "sh").stdout)
        self.assertEqual((h["alternate_screen"], h["current_command"]), (False, "bash"))
        # --paste forces a paste, --type keys; -m with --type is refused.
        r = json.loads(self.ok("send", "-s", "sh", "--type", "-c", "true", "--json").stdout)
        self.assertTrue(r["typed"])
        self.fails(4, "send", "-s", "sh", "--type", "-m", "-c", "x")

    def test_hostile_texts_are_typed_exactly_in_the_alternate_screen(self):
        marker = os.path.join(self.tmp, "expanded")
        texts = hostile_texts(marker)
        out = os.path.join(self.tmp, "alt.rec")
        open(out, "wb").close()
        self.api_create("rec", "command", command=" ".join(shlex.quote(x) for x in (
            sys.executable, self.script("alt-recorder.py", ALT_RECORDER), out)),
            prompt=r"REC> $")
        self.assertTrue(self.health("rec").alternate_screen)
        for text in texts:
            self.assertTrue(tmuxsess.send(text, session="rec").typed, text)
        flags = ["-1;", "--", "-c", "-k C-c", "a;b;", ";", "\\;"]
        for text in flags:  # through the command line too: values that look like flags
            self.ok("send", "-s", "rec", "-c", text)
        big = "".join(texts[i % len(texts)] for i in range(3000))  # over 100 KB: in pieces
        tmuxsess.send(big, enter=False, session="rec")
        self.assertReceived(out, b"".join(enc(t) + b"\r" for t in texts + flags) + enc(big),
                            timeout=60)
        self.assertFalse(os.path.exists(marker))

    def test_screen_drawn_text_is_found_20_of_20(self):
        self.shell()
        prog = self.script("toplike.py", TOPLIKE)
        for i in range(20):
            r = tmuxsess.send("%s %s" % (sys.executable, prog), wait=r"Load average: \d",
                              timeout=20, session="sh")
            self.assertTrue(r.wait.found, (i, r))
            r = tmuxsess.send(keys=["q"], wait=r"[$#] $", timeout=20, session="sh")
            self.assertTrue(r.wait.found, (i, r))
        # A separate wait on a running full-screen program counts what it drew.
        tmuxsess.send("%s %s" % (sys.executable, prog), session="sh")
        r = self.ok("wait", "-s", "sh", "-p", r"Load average: \d", "-T", "20", "--json")
        self.assertTrue(json.loads(r.stdout)["found"])
        tmuxsess.send(keys=["q"], wait=r"[$#] $", timeout=20, session="sh")

    @needs("top")
    def test_real_top_is_matched_20_of_20(self):
        self.shell()
        for i in range(20):
            r = tmuxsess.send("top -d 0.3", wait=r"load average: \d", timeout=20,
                              session="sh")
            self.assertTrue(r.wait.found, (i, r))
            r = tmuxsess.send(keys=["q"], wait=r"[$#] $", timeout=20, session="sh")
            self.assertTrue(r.wait.found, (i, r))

    def test_a_prompt_is_submitted_exactly_once_20_of_20(self):
        for swallow, name in ((0.15, "swallows"), (0.0, "takes")):
            log = self.standin(name, swallow)
            prompts = ["prompt %d: %s" % (i, "x" * (i * 7)) for i in range(20)]
            presses = []
            for i, prompt in enumerate(prompts):
                r = tmuxsess.send(prompt, session=name)
                presses.append(r.enter_presses)
                w = tmuxsess.wait_for_text("answer: " + prompt[::-1], fixed=True,
                                           timeout=20, session=name)
                self.assertTrue(w.found, (name, i, w))
            with open(log) as f:
                got = [json.loads(line) for line in f]
            self.assertEqual(got, prompts, name)
            self.assertTrue(all(p is not None and 1 <= p <= 4 for p in presses), presses)
            if not swallow:
                self.assertEqual(set(presses), {1}, presses)

    def test_wait_stable_and_not(self):
        log = self.standin("agent", 0.0)
        tmuxsess.send("hello there", session="agent")
        r = json.loads(self.ok("wait", "-s", "agent", "--stable", "0.5s", "-T", "20",
                               "--json").stdout)
        self.assertTrue(r["found"], r)
        self.assertIn("answer: ereht olleh", self.screen("agent"))  # settled: answered
        with open(log) as f:
            self.assertEqual(f.read(), '"hello there"\n')
        # A pattern, then stillness; --not ends a wait at once, with its own code.
        self.ok("send", "-s", "agent", "-c", "second", "-w", "answer: dnoces",
                "--stable", "0.3", "-T", "20")
        r = self.fails(3, "wait", "-s", "agent", "-p", "never", "--not", "answer: dnoces",
                       "--whole-pane", "-T", "20", error=False)
        self.assertIn("appeared (--not)", r.stderr)
        self.shell()
        began = time.monotonic()
        r = self.fails(6, "send", "-s", "sh", "-c", "echo ERR''OR: boom; sleep 30",
                       "-w", "never", "--not", r"ERROR: \w+", "-T", "20", error=False)
        self.assertIn("'ERROR: boom' appeared (--not)", r.stderr)
        self.assertLess(time.monotonic() - began, 15)
        self.ok("send", "-s", "sh", "-k", "C-c")
        self.fails(1, "wait", "-s", "sh")  # neither -p nor --stable

    def test_capture_health_and_list_say_what_the_screen_is(self):
        self.shell()
        tmuxsess.send("%s %s" % (sys.executable, self.script("toplike.py", TOPLIKE)),
                      wait="Load average", timeout=20, session="sh")
        shot = json.loads(self.ok("capture", "-s", "sh", "--json").stdout)
        self.assertEqual((shot["alternate_screen"], shot["current_command"]),
                         (True, os.path.basename(sys.executable)))
        self.assertIn("Load average:", shot["text"])
        self.assertGreaterEqual(shot["cursor_y"], 1)
        listed = json.loads(self.ok("list", "--json").stdout)["sessions"][0]
        self.assertTrue(listed["alternate_screen"])
        tmuxsess.send(keys=["q"], wait=r"[$#] $", timeout=20, session="sh")
        h = json.loads(self.ok("health", "-s", "sh").stdout)
        self.assertEqual((h["alternate_screen"], h["current_command"]), (False, "bash"))

    def test_capture_and_run_keep_colours_with_ansi(self):
        self.shell()
        code = "printf '\\033[31mred\\033[0m plain\\n'"
        r = self.ok("run", "-s", "sh", "--ansi", "-c", code)
        self.assertEqual(r.stdout, "\x1b[31mred\x1b[0m plain\x1b[0m\n")
        self.assertEqual(self.ok("run", "-s", "sh", "-c", code).stdout, "red plain\n")
        self.assertIn("\x1b[31mred", self.ok("capture", "-s", "sh", "--ansi").stdout)

    def test_readme_and_skill_drive_an_agent_tui(self):
        # The recipes name `claude`; here the stand-in plays it, command for command.
        agent = " ".join(shlex.quote(x) for x in (
            sys.executable, self.script("standin.py", STANDIN),
            os.path.join(self.tmp, "agent.log"), "0.15"))
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            readme = [c for _s, c, needs in fenced_blocks(f.read()) if "claude" in needs]
        root, env = sandbox(self.tmp, "agent")
        skill = self.ok("skill", "--tool", os.path.join(root, "tmuxsess.py")).stdout
        recipes = readme + [c for _s, c, _n in fenced_blocks(skill) if "'claude'" in c]
        self.assertEqual(len(recipes), 2)
        for code in recipes:
            r = run_script(code.replace("'claude'", shlex.quote(agent)), root, env)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertIn("answer: ", r.stdout)
            left = self.cli("list", "--json", env=env)
            self.assertEqual(json.loads(left.stdout)["total"], 0)
        with open(os.path.join(self.tmp, "agent.log")) as f:
            self.assertEqual(len(f.read().splitlines()), 2)  # each prompt exactly once


class OutputBoundsTest(TmuxTestCase):
    """Big output: run honours --max-output exactly; wait and capture stay small."""

    def test_run_keeps_at_most_max_output_bytes_from_a_line_start(self):
        self.api_create("sh")
        full = "".join("%d\n" % i for i in range(1, 100001))
        r = self.cli("run", "-s", "sh", "--max-output", "1000", "-c", "seq 1 100000")
        self.assertEqual(r.returncode, 0, r.stderr)
        notice, _, rest = r.stdout.partition("\n")
        self.assertRegex(notice, r"^\[tmuxsess: \d+ earlier bytes of output omitted; "
                                 r"all of it is in 'capture --transcript'\]$")
        self.assertLessEqual(len(rest.encode()), 1000)
        self.assertGreater(rest.count("\n"), 100)  # the cap is used, not undershot
        self.assertTrue(full.endswith(rest) and full[-len(rest) - 1] == "\n",
                        "not a run of whole last lines: %r" % rest[:40])
        r = self.cli("run", "-s", "sh", "--max-output", "0", "-c", "seq 1 100000")
        self.assertEqual((r.returncode, r.stdout), (0, full))

    def test_a_slow_prompt_command_after_big_output_stays_out_of_it(self):
        # The end mark comes, then the user's PROMPT_COMMAND takes its time, then
        # the prompt: the output kept meanwhile is trimmed to its cap, and where
        # it ends moves with it (it once pointed past the prompt).
        self.ok("create", "-n", "sh", "-e", "PROMPT_COMMAND=sleep 0.3")
        for cap in ("1000", "200000"):
            r = self.cli("run", "-s", "sh", "--max-output", cap, "-c", "seq 1 300000")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.endswith("\n299999\n300000\n"), r.stdout[-80:])

    def test_wait_on_30mb_of_output_keeps_memory_small(self):
        self.api_create("sh")
        small = self.peak("send", "-s", "sh", "-c", "echo END-$((6*7))", "-w", "END-42")
        self.assertEqual(small.rc, 0, small.err)
        big = self.peak(
            "send", "-s", "sh", "-T", "60", "-w", "END-42", "-c",
            "head -c 30000000 /dev/zero | tr '\\0' x | fold -w 100; echo END-$((6*7))")
        self.assertEqual(big.rc, 0, big.err)
        # Holding the output would cost 30 MB and more; the look-back window is 64 KiB
        # (plus one 1 MiB read and its rendering).
        grew = big.kib - small.kib
        self.assertLess(grew, 12 * 1024, "send -w grew by %d KiB" % grew)

    def test_transcript_streams_a_20mb_line_without_newline(self):
        self.api_create("sh")
        r = tmuxsess.run("head -c 20000000 /dev/zero | tr '\\0' y; echo", session="sh",
                         timeout=60)
        self.assertEqual(r.exit_status, 0)
        small = self.peak("health", "-s", "sh")
        self.assertEqual(small.rc, 0, small.err)
        big = self.peak("capture", "-s", "sh", "--transcript")
        self.assertEqual(big.rc, 0, big.err)
        out = read_bytes(big.path)
        self.assertEqual(out.count(b"y"), 20000000 + out.count(b"tr '\\0' y"))
        grew = big.kib - small.kib
        self.assertLess(grew, 48 * 1024, "capture grew by %d KiB" % grew)


# ===========================================================================
# Robustness: a corrupt registry is named and never replaced, and repair
# rebuilds it; hostile names never reach tmux; planted paths are never
# followed; faults during a call end it at once with one clear line;
# concurrent and SIGKILLed writers never break the registry.
# ===========================================================================


CORRUPTIONS = [
    # (label, bytes, what the error must say)
    ("empty", b"", "the file is empty"),
    ("truncated", b'{"version": "1.0", "sessions": {"a": {"socket": "/tm', "invalid JSON"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\xff\xfe garbage \x80\x81", "not UTF-8"),
    ("sessions-list", b'{"version": "1.0", "sessions": []}\n', '"sessions" is a list'),
    ("entry-not-object", b'{"version": "1.0", "sessions": {"a": 5}}\n',
     "session 'a' is a number"),
    ("unknown-version", b'{"version": "2.0", "sessions": {}}\n', "unknown version '2.0'"),
    ("top-level-list", b"[]\n", "top level is a list"),
]
# Entries a hand edit broke: each known field must have its JSON type.
for _label, _entry, _problem in [
        ("no-socket", {"target": "a:0.0"}, '"socket" is missing'),
        ("no-target", {"socket": "/tmp/x.sock"}, '"target" is missing'),
        ("socket-number", {"socket": 5, "target": "a:0.0"}, '"socket" is a number'),
        ("socket-list", {"socket": ["/x"], "target": "a:0.0"}, '"socket" is a list'),
        ("target-number", {"socket": "/x", "target": 3}, '"target" is a number'),
        ("pane-id-number", {"socket": "/x", "target": "a", "pane_id": 3},
         '"pane_id" is a number, not a string'),
        ("prompt-number", {"socket": "/x", "target": "a", "prompt": 5}, '"prompt" is a number'),
        ("pid-word", {"socket": "/x", "target": "a", "pid": "abc"},
         '"pid" is "abc", not a process id')]:
    CORRUPTIONS.append((_label, json.dumps({"version": "1.0", "sessions": {"a": _entry}}).encode(),
                        "session 'a': " + _problem))


# Every command that reads the registry, with its documented exit code.
REGISTRY_READERS = [
    (("list",), 1), (("list", "--json"), 1), (("create", "-n", "b"), 4),
    (("send", "-s", "a", "-c", "x"), 4), (("send", "-c", "x"), 4),
    (("run", "-s", "a", "-c", "true"), 126), (("kill", "-s", "a"), 2),
    (("cleanup",), 1), (("cleanup", "--all"), 1), (("health", "-s", "a"), 1),
    (("capture", "-s", "a"), 1), (("capture", "--transcript", "-s", "a"), 1),
    (("wait", "-s", "a", "-p", "x", "-T", "1"), 1), (("attach", "-s", "a"), 1),
]


class CorruptRegistryTest(TmuxTestCase):
    def setUp(self):
        super().setUp()
        self.rec = self.api_create("a")

    def test_every_reader_names_file_and_problem_and_never_writes(self):
        for label, data, problem in CORRUPTIONS:
            write_bytes(self.reg_path, data)
            for args, code in REGISTRY_READERS:
                with self.subTest(corruption=label, args=args):
                    r = self.cli(*args)
                    self.assertEqual(r.returncode, code, r.stderr)
                    self.assertOneLineError(r.stderr, "registry %s is corrupt" % self.reg_path,
                                            problem)
                    self.assertIn("repair", r.stderr)
                    self.assertEqual(read_bytes(self.reg_path), data)
            # The real executable says the same.
            r = self.exe("list")
            self.assertEqual(r.returncode, 1)
            self.assertOneLineError(r.stderr, self.reg_path, problem)
            self.assertEqual(read_bytes(self.reg_path), data)
        # kill and cleanup --all refused: the session was never touched.
        self.assertTrue(self.alive("a"))
        self.assertEqual(sorted(os.listdir(self.state)),
                         [".sessions.json", ".sessions.lock", "init", "transcripts"])

    def test_repair_moves_each_kind_aside_and_rebuilds(self):
        for label, data, _problem in CORRUPTIONS:
            with self.subTest(corruption=label):
                write_bytes(self.reg_path, data)
                r = tmuxsess.repair()
                self.assertTrue(r.corrupt)
                self.assertEqual(read_bytes(r.moved_to), data)
                self.assertEqual(list(self.registry()["sessions"]), ["a"])
        moved = [n for n in os.listdir(self.state) if ".corrupt-" in n]
        self.assertEqual(len(moved), len(CORRUPTIONS))

    def test_repair_rebuilds_working_entries_from_tmux(self):
        py = self.api_create("py", "python-repl")
        other_sock = os.path.join(self.sockets, "other.sock")
        other = self.api_create("other", socket=other_sock)
        self.api_create("loose", register=False)                 # --no-register
        self.assertEqual(self.tmux("new-session", "-d", "-s", "foreign").returncode, 0)
        before = self.registry()["sessions"]
        garbage = b"\x00\x01 not json \xff" * 10
        write_bytes(self.reg_path, garbage)

        r = self.ok("repair")
        self.assertIn("moved it to", r.stdout)
        moved = [n for n in os.listdir(self.state) if n.startswith(".sessions.json.corrupt-")]
        self.assertEqual(len(moved), 1)
        self.assertRegex(moved[0], r"^\.sessions\.json\.corrupt-\d{8}T\d{6}Z$")
        self.assertEqual(read_bytes(os.path.join(self.state, moved[0])), garbage)
        self.assertTrue(is_private_regular(self.reg_path))
        after = self.registry()["sessions"]
        # Registered sessions come back; foreign and --no-register ones do not.
        self.assertEqual(sorted(after), ["a", "other", "py"])
        for name in after:
            for key in ("socket", "pane_id", "type", "transcript", "created_at", "pid"):
                self.assertEqual(after[name][key], before[name][key], (name, key))
        self.assertEqual(after["other"]["socket"], other.socket)
        self.assertEqual(after["py"]["type"], py.type)
        # The rebuilt entries work by name.
        self.assertEqual(self.ok("run", "-s", "py", "-c", "print(6*7)").stdout, "42\n")
        self.assertEqual(tmuxsess.run("echo $((6*7))", session="other", timeout=20).output,
                         "42\n")
        self.ok("kill", "-s", "a")
        self.assertFalse(self.alive("a"))
        self.assertNotIn("a", self.registry()["sessions"])

    def test_repair_asks_the_sockets_a_damaged_registry_still_names(self):
        custom = os.path.join(self.tmp, "custom.sock")   # create -S: outside the socket dir
        far = self.api_create("far", "command", command="sleep 60", socket=custom, wait=False)
        self.tmux("new-session", "-d", "-s", "foreign", socket=custom)
        data = read_bytes(self.reg_path)
        write_bytes(self.reg_path, data[:-5])  # cut short: not JSON, but far's socket is there
        r = tmuxsess.repair()
        self.assertEqual(r.sessions, ["a", "far"])
        self.assertEqual(self.registry()["sessions"]["far"]["pane_id"], far.pane_id)
        self.assertEqual(self.ok("health", "-s", "far").returncode, 0)

    def test_repair_of_a_healthy_registry_changes_nothing(self):
        self.api_create("loose", register=False)   # a naive repair would adopt it
        before = os.stat(self.reg_path)
        data = read_bytes(self.reg_path)
        r = self.ok("repair")
        self.assertIn("nothing changed", r.stdout)
        after = os.stat(self.reg_path)
        self.assertEqual(read_bytes(self.reg_path), data)
        self.assertEqual((after.st_mtime_ns, after.st_ino), (before.st_mtime_ns, before.st_ino))
        self.assertEqual([n for n in os.listdir(self.state) if "corrupt" in n], [])

    def test_repair_without_a_registry(self):
        os.unlink(self.reg_path)
        r = tmuxsess.repair()
        self.assertTrue(r.missing)
        self.assertEqual(r.sessions, ["a"])   # a lost cache is rebuilt from tmux
        self.assertEqual(self.registry()["sessions"]["a"]["pane_id"], self.rec.pane_id)
        self.ok("kill", "-s", "a")
        os.unlink(self.reg_path)
        r = self.ok("repair")                   # nothing to adopt: nothing written
        self.assertIn("nothing changed", r.stdout)
        self.assertFalse(os.path.exists(self.reg_path))

    def test_repair_with_tmux_missing_moves_nothing(self):
        write_bytes(self.reg_path, b"{")
        os.environ["TMUXSESS_TMUX"] = os.path.join(self.tmp, "no-such-tmux")
        r = self.cli("repair")
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "tmux not found")
        self.assertEqual(read_bytes(self.reg_path), b"{")
        self.assertEqual([n for n in os.listdir(self.state) if "corrupt" in n], [])


HOSTILE_NAMES = [
    ":", ".", "a:b", "a.b", "a b", " a", "a\nb", "a\tb", "-a", "-", "--", "x" * 65, "..",
    "/", "a/b", "café", "\U0001F600", "$(x)", "`x`", ";", "a;", "#{x}", "", "*", "%1",
    "=x", "~", "a'b", 'a"b', "\\", "{}", "!", "@x", "a\rb", "\x1b[31m",
]


class HostileNameTest(TmuxTestCase):
    def setUp(self):
        super().setUp()
        self.api_create("ok")
        env, self.calls = self.logging_tmux()
        os.environ.update(env)  # every call below, in-process or not, logs its tmux calls

    def test_create_refuses_before_any_tmux_call(self):
        data = read_bytes(self.reg_path)
        transcripts = sorted(os.listdir(os.path.join(self.state, "transcripts")))
        for name in HOSTILE_NAMES + ["a\x00b", "\x00"]:
            with self.subTest(name=name):
                with self.assertRaises(tmuxsess.TmuxsessError) as cm:
                    tmuxsess.create_session(name)
                self.assertEqual(cm.exception.kind, "usage")
                self.assertIn("invalid session name", cm.exception.message)
                if "\x00" not in name:
                    r = self.cli("create", "-n", name)
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertOneLineError(r.stderr, "invalid session name")
        r = self.exe("create", "-n", "a\nb")
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "invalid session name")
        self.assertEqual(self.calls(), [])
        self.assertEqual(read_bytes(self.reg_path), data)
        self.assertEqual(sorted(os.listdir(os.path.join(self.state, "transcripts"))),
                         transcripts)
        self.assertEqual(self.tmux_sessions(), ["ok"])

    def test_session_flag_refuses_before_any_tmux_call(self):
        # Register every hostile name (as a hand-edited or old registry might), all
        # pointing at a live pane: skipping the check would reach tmux.
        doc = self.registry()
        entry = doc["sessions"]["ok"]
        for name in HOSTILE_NAMES:
            doc["sessions"][name] = dict(entry)
        write_bytes(self.reg_path, json.dumps(doc).encode())
        data = read_bytes(self.reg_path)
        commands = [(("run", "-c", "echo pwned"), 126), (("send", "-c", "echo pwned"), 4),
                    (("kill",), 3), (("health",), 1), (("capture",), 1),
                    (("wait", "-p", "x", "-T", "1"), 1), (("attach",), 1),
                    (("send", "-S", self.socket, "-c", "x"), 4),
                    (("health", "-S", self.socket, "-t", "ok"), 1)]
        for name in HOSTILE_NAMES:
            for args, code in commands:
                with self.subTest(name=name, args=args):
                    r = self.cli(*(args + ("-s", name)))
                    self.assertEqual(r.returncode, code, r.stderr)
                    self.assertOneLineError(r.stderr, "invalid session name")
        for fn in (lambda n: tmuxsess.run("echo pwned", session=n),
                   lambda n: tmuxsess.send("echo pwned", session=n),
                   lambda n: tmuxsess.kill_session(session=n),
                   lambda n: tmuxsess.pane_health(session=n),
                   lambda n: tmuxsess.wait_for_text("x", session=n, timeout=1),
                   lambda n: tmuxsess.capture(session=n)):
            with self.assertRaises(tmuxsess.TmuxsessError) as cm:
                fn("ok\x00")
            self.assertIn("invalid session name", cm.exception.message)
        r = self.exe("kill", "-s", "-ok")
        self.assertEqual(r.returncode, 3)
        self.assertOneLineError(r.stderr, "invalid session name")
        self.assertEqual(self.calls(), [])
        self.assertEqual(read_bytes(self.reg_path), data)
        self.assertTrue(self.alive("ok"))
        self.assertNotIn("pwned", tmuxsess.capture(session="ok"))


class FilesystemAttackTest(TmuxTestCase):
    def victim(self, data=b"victim\n"):
        path = os.path.join(self.tmp, "victim")
        write_bytes(path, data)
        return path

    def assertRefused(self, r, code, *needles):
        self.assertEqual(r.returncode, code, r.stdout + r.stderr)
        self.assertOneLineError(r.stderr, "refusing", *needles)

    def test_socket_dir_writable_by_others_is_refused(self):
        for mode in (0o777, 0o770, 0o1777):
            with self.subTest(mode=oct(mode)):
                os.mkdir(self.sockets)
                os.chmod(self.sockets, mode)
                self.assertRefused(self.cli("create", "-n", "a"), 4, self.sockets, "writable")
                for args in (("find",), ("find", "-A")):
                    r = self.cli(*args)
                    self.assertEqual(r.returncode, 1)
                    self.assertOneLineError(r.stderr, "refusing socket dir")
                self.assertEqual(os.listdir(self.sockets), [])
                os.rmdir(self.sockets)
        self.assertFalse(os.path.exists(self.reg_path))

    def test_socket_dir_made_writable_later_is_not_used(self):
        self.api_create("a")
        os.chmod(self.sockets, 0o777)   # someone could now swap in their own server
        env, calls = self.logging_tmux()
        os.environ.update(env)
        for args, code in ((("run", "-s", "a", "-c", "echo pwned"), 126),
                           (("send", "-s", "a", "-c", "echo pwned"), 4),
                           (("list",), 1), (("repair",), 0)):
            r = self.cli(*args)
            self.assertEqual(r.returncode, code, r.stderr)
            if code:
                self.assertOneLineError(r.stderr, "refusing socket dir")
        self.assertEqual(calls(), [])

    @unittest.skipUnless(os.geteuid() == 0, "needs root to chown to another user")
    def test_dirs_owned_by_another_user_are_refused(self):
        os.mkdir(self.sockets, 0o700)
        os.chown(self.sockets, 12345, 12345)
        self.assertRefused(self.cli("create", "-n", "a"), 4, "owned by uid 12345")
        self.assertEqual(os.listdir(self.sockets), [])
        os.rmdir(self.sockets)
        os.mkdir(self.state, 0o700)
        os.chown(self.state, 12345, 12345)
        self.assertRefused(self.cli("create", "-n", "a"), 4, self.state, "owned by uid 12345")
        r = self.cli("list")
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "refusing state dir", "owned by uid 12345")
        self.assertEqual(os.listdir(self.state), [])
        self.assertEqual(self.tmux_sessions(), [])

    def test_planted_registry_in_open_state_dir_is_not_used(self):
        # Someone else's server and a registry pointing at it, in a state dir
        # anyone may write to: nothing must be typed into that server.
        evil_sock = os.path.join(self.tmp, "evil.sock")
        marker = os.path.join(self.tmp, "pwned")
        self.assertEqual(self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "evil",
                                   socket=evil_sock).returncode, 0)
        env, calls = self.logging_tmux()
        os.environ.update(env)
        os.mkdir(self.state)
        os.chmod(self.state, 0o777)
        write_bytes(self.reg_path, json.dumps({"version": "1.0", "sessions": {"evil": {
            "socket": evil_sock, "target": "evil:0.0", "type": "shell"}}}).encode())
        for args, code in ((("run", "-s", "evil", "-c", "touch " + marker), 126),
                           (("send", "-c", "touch " + marker), 4), (("list",), 1),
                           (("create", "-n", "a"), 4)):
            r = self.cli(*args)
            self.assertEqual(r.returncode, code, r.stderr)
            self.assertOneLineError(r.stderr, "refusing state dir", "writable")
        self.assertEqual(calls(), [])   # so nothing can have been typed there
        self.assertFalse(os.path.exists(marker))

    def test_symlinked_socket_dir_is_refused_not_followed(self):
        target = os.path.join(self.tmp, "elsewhere")
        os.mkdir(target, 0o700)
        for dangling in (False, True):
            with self.subTest(dangling=dangling):
                os.symlink(target + ("-missing" if dangling else ""), self.sockets)
                self.assertRefused(self.cli("create", "-n", "a"), 4, "is a symlink")
                self.assertEqual(os.listdir(target), [])
                self.assertFalse(os.path.exists(target + "-missing"))
                os.unlink(self.sockets)

    def test_symlinked_state_dirs_are_refused_not_followed(self):
        target = os.path.join(self.tmp, "elsewhere")
        os.mkdir(target, 0o700)
        os.symlink(target, self.state)
        self.assertRefused(self.cli("create", "-n", "a"), 4, self.state, "is a symlink")
        r = self.cli("list")
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "is a symlink")
        self.assertEqual(os.listdir(target), [])
        os.unlink(self.state)
        # The transcripts dir inside it too.
        os.makedirs(self.state, 0o700)
        os.symlink(target, os.path.join(self.state, "transcripts"))
        self.assertRefused(self.cli("create", "-n", "a"), 4, "transcripts", "is a symlink")
        self.assertEqual(os.listdir(target), [])
        self.assertEqual(self.tmux_sessions(), [])

    def test_symlink_at_registry_path_is_never_followed(self):
        good = json.dumps({"version": "1.0", "sessions": {}}).encode()
        victim = self.victim(good)
        os.makedirs(self.state, 0o700)
        os.symlink(victim, self.reg_path)
        for args, code in ((("create", "-n", "a"), 4), (("list",), 1)):
            r = self.cli(*args)
            self.assertEqual(r.returncode, code, r.stderr)
            self.assertOneLineError(r.stderr, self.reg_path, "is a symlink")
        self.assertEqual(self.tmux_sessions(), [])
        r = tmuxsess.repair()
        self.assertTrue(os.path.islink(r.moved_to))
        self.assertTrue(is_private_regular(self.reg_path))
        self.ok("create", "-n", "a")
        self.assertEqual(read_bytes(victim), good)
        self.assertEqual(stat.S_IMODE(os.stat(victim).st_mode), 0o644)

    def test_symlink_at_lock_path_is_never_followed(self):
        victim = self.victim()
        os.makedirs(self.state, 0o700)
        for target in (victim, victim + "-missing"):
            with self.subTest(target=target):
                os.symlink(target, self.lock_path)
                r = self.cli("create", "-n", "a")
                self.assertEqual(r.returncode, 4)
                self.assertOneLineError(r.stderr, self.lock_path, "is a symlink")
                os.unlink(self.lock_path)
        self.assertEqual(read_bytes(victim), b"victim\n")
        self.assertFalse(os.path.exists(victim + "-missing"))
        self.assertEqual(self.tmux_sessions(), [])
        self.assertFalse(os.path.exists(self.reg_path))

    def test_symlink_at_transcript_path_is_never_followed(self):
        victim = self.victim()
        transcripts = os.path.join(self.state, "transcripts")
        os.makedirs(transcripts, 0o700)
        # The transcript's random name made predictable: the attacker guessed it.
        os.symlink(victim, os.path.join(transcripts, "a.%s.log" % ("ab" * 6)))
        with mock.patch.object(tmuxsess.os, "urandom", lambda n: b"\xab" * n):
            with self.assertRaises(tmuxsess.TmuxsessError) as cm:
                tmuxsess.create_session("a")
        self.assertIn("cannot create transcript", cm.exception.message)
        self.assertEqual(self.tmux_sessions(), [])
        self.assertFalse(os.path.exists(self.reg_path))
        # A live session's transcript swapped for a link: kill removes the link only.
        rec = self.api_create("b")
        os.unlink(rec.transcript)
        os.symlink(victim, rec.transcript)
        self.ok("kill", "-s", "b")
        self.assertFalse(os.path.lexists(rec.transcript))
        self.assertEqual(read_bytes(victim), b"victim\n")

    def test_registry_mode_is_fixed_to_0600(self):
        self.api_create("a")
        os.chmod(self.reg_path, 0o644)
        r = self.cli("list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("a ", r.stdout)
        self.assertEqual(stat.S_IMODE(os.stat(self.reg_path).st_mode), 0o600)
        os.chmod(self.reg_path, 0o666)
        self.api_create("b")
        self.assertEqual(stat.S_IMODE(os.stat(self.reg_path).st_mode), 0o600)
        for path in (self.state, self.sockets, os.path.join(self.state, "transcripts")):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700, path)
        for path in [self.lock_path] + [s["transcript"]
                                         for s in self.registry()["sessions"].values()]:
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

    def test_fifo_or_directory_at_registry_path(self):
        os.makedirs(self.state, 0o700)
        for make in (os.mkfifo, os.mkdir):
            with self.subTest(kind=make.__name__):
                make(self.reg_path)
                r = self.exe("list", timeout=20)   # a FIFO must not hang it
                self.assertEqual(r.returncode, 1)
                self.assertOneLineError(r.stderr, self.reg_path, "not a regular file")
                (os.rmdir if make is os.mkdir else os.unlink)(self.reg_path)

    def test_explicit_socket_is_used_as_given(self):
        shared = os.path.join(self.tmp, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        sock = os.path.join(shared, "team.sock")
        rec = self.create("team", "-S", sock)
        self.assertEqual(rec["socket"], sock)
        self.assertEqual(self.ok("run", "-s", "team", "-c", "echo ok").stdout, "ok\n")
        self.ok("kill", "-s", "team")
        self.assertFalse(self.alive("team", socket=sock))


class FaultTest(TmuxTestCase):
    def piping(self, pipe):
        """An engine whose transcripts are written by ``pipe(the usual command)``."""
        class Piping(tmuxsess.Host):
            def pipe_command(self, path):
                return pipe(super().pipe_command(path))

        return tmuxsess.Engine(state_dir=self.state, socket_dir=self.sockets,
                               host=Piping("tmux"))

    def test_a_transcript_that_lags_the_screen_is_waited_for(self):
        # tmux starts the pipe that writes the transcript along with the program;
        # on a busy machine the program can show its prompt and sleep reading
        # its terminal before the pipe's cat has written a byte. The kernel says
        # it waits; the screen shows text, the transcript none yet: it is late,
        # and the first prompt is waited for there.
        engine = self.piping(lambda command: "sleep 1.5; " + command)
        began = time.monotonic()
        made = engine.create_session("py", kind="python", ready_timeout=20)
        self.assertGreaterEqual(time.monotonic() - began, 1.5)
        self.assertIn(b">>> ", read_bytes(made.transcript))
        self.assertEqual(engine.run("print(6 * 7)", session="py").output, "42\n")
        # A --prompt program in the alternate screen, and one that asks first.
        made = engine.create_session(
            "alt", "command", "sh -c 'printf \"\\033[?1049hready> \"; read x'",
            prompt="ready> $", ready_timeout=20)
        self.assertIn(b"ready> ", read_bytes(made.transcript))
        with self.assertRaises(tmuxsess.NotReadyError) as caught:
            engine.create_session("ask", "command", "sh -c 'printf \"token? \"; read t'",
                                  prompt="^ready> $", ready_timeout=20)
        self.assertEqual(caught.exception.message,
                         "ask waits for input before its first prompt: 'token?'")

    def test_a_transcript_that_receives_nothing_is_said_to(self):
        # A pipe that never writes: the screen shows the prompt, the transcript
        # nothing; at the ready timeout the error says so, not "exited" or "asks".
        engine = self.piping(lambda command: "exec cat >/dev/null")
        with self.assertRaises(tmuxsess.NotReadyError) as caught:
            engine.create_session("py", kind="python", ready_timeout=2)
        self.assertIn("has not received what its screen shows", caught.exception.message)
        self.assertIn(">>>", caught.exception.hint)
        self.assertEqual(self.registry()["sessions"], {})

    def test_a_question_before_the_first_prompt_is_reported_at_once(self):
        # Waiting is not running: a program that asks before its first prompt
        # fails create at once with its question, never a timeout or "exited".
        began = time.monotonic()
        r = self.fails(3, "create", "-n", "ask", "--prompt", r"^ready> $", "--cmd",
                       "sh -c 'printf \"token? \"; read t; PS1=\"ready> \" exec sh'",
                       "--ready-timeout", "30")
        self.assertLess(time.monotonic() - began, 10)
        self.assertIn("waits for input before its first prompt", r.stderr)
        self.assertIn("token?", r.stderr)
        self.assertNotIn("ask", self.registry()["sessions"])

    def test_a_pid_the_kernel_does_not_know_is_dead_only_when_tmux_says_so(self):
        # tmux, the pane's parent, has the last word on whether its program ended.
        # A wait told a pid the kernel has no process for, while tmux shows the
        # pane running another: for a new session's first prompt (nothing typed
        # yet) the one that runs is followed; for a run or a wait, what it typed
        # went to a program that is gone. Either ends as soon as tmux shows the
        # pane dead.
        self.api_create("py", "python")
        engine = tmuxsess.default_engine()
        pane = engine.targets.resolve(tmuxsess.Where(session="py"))[0]
        gone = subprocess.Popen(["true"])
        gone.wait()
        watch = tmuxsess._Watch("pattern", pattern=re.compile("late-word"), probe=False)

        def follow(adopt):
            told = copy.copy(pane)
            told.pid = gone.pid
            offset = os.path.getsize(pane.transcript)
            with tmuxsess._Follower(engine.host, told, offset, watch, adopt=adopt) as f:
                return f.follow(20), told.pid
        tmuxsess.send("import time; time.sleep(1.5); print('late' + '-word')", session="py")
        began = time.monotonic()
        self.assertEqual(follow(adopt=False), ("dead", gone.pid))
        self.assertLess(time.monotonic() - began, 1.0)
        self.assertEqual(follow(adopt=True), ("done", pane.pid))
        tmuxsess.send("import os; os._exit(3)", session="py")
        began = time.monotonic()
        self.assertEqual(follow(adopt=True)[0], "dead")
        self.assertLess(time.monotonic() - began, 3.0)

    def test_tmux_missing_is_a_clear_error_and_changes_nothing(self):
        self.api_create("a")
        data = read_bytes(self.reg_path)
        commands = [(("create", "-n", "b"), 3), (("list",), 1),
                    (("run", "-s", "a", "-c", "true"), 126),
                    (("send", "-s", "a", "-c", "true"), 1), (("kill", "-s", "a"), 2),
                    (("health", "-s", "a"), 1), (("health", "-t", "a"), 1),
                    (("wait", "-s", "a", "-p", "x", "-T", "1"), 1),
                    (("capture", "-s", "a"), 1), (("find", "-A"), 1), (("cleanup",), 1),
                    (("cleanup", "--all"), 1)]
        no_tmux = os.path.join(self.tmp, "empty-bin")
        os.mkdir(no_tmux)
        for how, env in (("TMUXSESS_TMUX", {"TMUXSESS_TMUX": no_tmux + "/tmux"}),
                         ("PATH", {"PATH": no_tmux})):
            with mock.patch.dict(os.environ, env):
                for args, code in commands:
                    with self.subTest(how=how, args=args):
                        r = self.cli(*args)
                        self.assertEqual(r.returncode, code, r.stderr)
                        self.assertOneLineError(r.stderr, "tmux not found")
        r = self.exe("kill", "-s", "a", env=dict(self.env, PATH=no_tmux))
        self.assertEqual(r.returncode, 2)
        self.assertOneLineError(r.stderr, "tmux not found")
        # Nothing was deregistered or killed for want of tmux.
        self.assertEqual(read_bytes(self.reg_path), data)
        self.assertTrue(self.alive("a"))

    def test_closed_standard_streams_are_one_line_errors(self):
        self.api_create("sh")

        def closed(redirect, *args):  # the executable with one of its streams closed
            return subprocess.run(["sh", "-c", 'exec "$@" ' + redirect, "sh", sys.executable,
                                   TOOL] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        ran = os.path.join(self.tmp, "ran")
        r = closed(">&-", "run", "-s", "sh", "-c", "touch " + ran)
        self.assertEqual(r.returncode, 126)
        self.assertOneLineError(r.stderr, "standard output is closed; nothing was done")
        self.assertFalse(os.path.exists(ran))
        # Without stderr the results are still all that is on stdout.
        r = closed("2>&-", "create", "-n", "quiet", "--cmd", "sleep 60", "--no-wait")
        self.assertEqual((r.returncode, json.loads(r.stdout)["name"]), (0, "quiet"))
        r = closed("<&-", "send", "-s", "sh", "--file", "-")
        self.assertEqual(r.returncode, 4)
        self.assertOneLineError(r.stderr, "standard input is closed")

    def _kill_server_during(self, name, args, code, expect):
        sock = os.path.join(self.sockets, name + ".sock")
        rec = self.api_create(name, socket=sock)
        if args[0] == "wait":
            tmuxsess.send("sleep 60", session=name)
        p = self.follower(rec.transcript, *args)
        # The command is in the program by now (a ready run reads the transcript
        # before it types): the server dies while the tool waits for output.
        wait_until(lambda: b"sleep 60\r\n" in read_bytes(rec.transcript), 20, "the echo")
        self.assertEqual(self.tmux("kill-server", socket=sock).returncode, 0)
        killed = time.monotonic()
        _out, err = p.communicate(timeout=30)
        took = time.monotonic() - killed
        self.assertEqual(p.returncode, code, err)
        self.assertIn(expect, err)
        self.assertNotIn("Traceback", err)
        return took

    def test_server_killed_during_run_wait_send(self):
        took = {
            "run": self._kill_server_during("r", ("run", "-s", "r", "-c", "sleep 60",
                                                  "-T", "60"), 125, "server went away"),
            "wait": self._kill_server_during("w", ("wait", "-s", "w", "-p", "never",
                                                   "-T", "60"), 1, "server went away"),
            "send -w": self._kill_server_during("s", ("send", "-s", "s", "-c", "sleep 60",
                                                      "-w", "never", "-T", "60"), 3,
                                                "server went away"),
        }
        for what, seconds in took.items():
            # the promise: back within 1 s (typically 0.05 s), not after -T 60
            self.assertLess(seconds, 1.0, "%s took %.2fs after the kill" % (what, seconds))

    def _program_exits_during(self, name, kind, args, code, status, last):
        rec = self.api_create(name, kind)
        if args[0] == "wait":
            tmuxsess.send("echo started; read x; echo %s; exit %d" % (last, status),
                          session=name)
        p = self.follower(rec.transcript, *args)
        wait_until(lambda: "started" in tmuxsess.capture(session=name), 20, "started")
        self.assertEqual(self.tmux("send-keys", "-t", rec.pane_id, "Enter").returncode, 0)
        pressed = time.monotonic()
        out, err = p.communicate(timeout=30)
        took = time.monotonic() - pressed
        self.assertEqual(p.returncode, code, err)
        self.assertIn("exited with status %d" % status, err)
        self.assertIn(last, out + err)
        self.assertNotIn("Traceback", err)
        return took

    def test_program_exiting_during_run_and_wait(self):
        took = {
            "run shell": self._program_exits_during(
                "sh", "shell", ("run", "-s", "sh", "-T", "60", "-c",
                                "echo started; read x; echo last words; exit 7"),
                125, 7, "last words"),
            "run python": self._program_exits_during(
                "py", "python-repl", ("run", "-s", "py", "-T", "60", "-c",
                                      "print('started'); input(); print('bye now');"
                                      " import os; os._exit(3)"), 125, 3, "bye now"),
            "wait": self._program_exits_during(
                "w", "shell", ("wait", "-s", "w", "-p", "never", "-T", "60"), 1, 4,
                "final output"),
        }
        for what, seconds in took.items():
            self.assertLess(seconds, 1.0, "%s took %.2fs after the exit" % (what, seconds))

    def hold_lock(self):
        os.makedirs(self.state, 0o700, exist_ok=True)
        holder = self.spawn(
            [sys.executable, "-c", "import fcntl, os, sys, time\n"
             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n",
             self.lock_path], stdout=subprocess.PIPE, universal_newlines=True)
        self.assertEqual(holder.stdout.readline(), "held\n")
        return holder

    def test_lock_held_by_a_stuck_process(self):
        self.api_create("a")
        data = read_bytes(self.reg_path)
        self.hold_lock()
        os.environ["TMUXSESS_LOCK_TIMEOUT"] = "0.2"
        for args in (("create", "-n", "b"), ("kill", "-s", "a"), ("cleanup", "--all"),
                     ("repair",)):
            with self.subTest(args=args):
                began = time.monotonic()
                r = self.cli(*args)
                took = time.monotonic() - began
                self.assertEqual(r.returncode, 75, r.stderr)
                self.assertOneLineError(r.stderr, self.lock_path, "gave up after 0.2s")
                self.assertGreaterEqual(took, 0.2)
                self.assertLess(took, 5)
        r = self.exe("kill", "-s", "a", env=dict(self.env, TMUXSESS_LOCK_TIMEOUT="0.2"))
        self.assertEqual(r.returncode, 75)
        # A busy lock changed nothing: a is alive and registered, b was never made.
        self.assertTrue(self.alive("a"))
        self.assertEqual(self.tmux_sessions(), ["a"])
        self.assertEqual(read_bytes(self.reg_path), data)
        # Reading and talking do not wait behind it (the activity time is a courtesy).
        os.environ["TMUXSESS_LOCK_TIMEOUT"] = "30"
        began = time.monotonic()
        self.assertEqual(tmuxsess.run("echo hi", session="a", timeout=20).output, "hi\n")
        self.assertEqual(self.cli("list").returncode, 0)
        self.assertLess(time.monotonic() - began, 5, "run waited for the stuck lock")
        os.environ["TMUXSESS_LOCK_TIMEOUT"] = "soon"
        r = self.cli("create", "-n", "c")
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "TMUXSESS_LOCK_TIMEOUT")

    def test_a_lock_waiter_takes_the_lock_when_freed_and_one_that_gave_up_never(self):
        registry = tmuxsess.Registry(self.state, 0.2)
        holder = self.hold_lock()
        for _ in range(3):  # each leaves a waiting thread behind in this process
            with self.assertRaises(tmuxsess.LockTimeoutError):
                with registry.lock():
                    self.fail("locked while another process holds the lock")
        # A waiter with time left gets the lock once the holder ends ...
        taken = threading.Event()

        def waiter():
            with tmuxsess.Registry(self.state, 30).lock():
                taken.set()
        thread = threading.Thread(target=waiter)
        thread.start()
        holder.kill()
        holder.wait()
        thread.join(30)
        self.assertTrue(taken.is_set())
        # ... and the three that gave up keep nothing: a process takes it at once.
        probe = subprocess.run(
            [sys.executable, "-c", "import fcntl, os, sys, time\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "end = time.monotonic() + 10\n"
             "while True:\n"
             "    try:\n"
             "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); break\n"
             "    except BlockingIOError:\n"
             "        if time.monotonic() > end: sys.exit(3)\n"
             "        time.sleep(0.01)\n", self.lock_path], timeout=30)
        self.assertEqual(probe.returncode, 0, "a waiter that gave up kept the lock")

    def test_a_lock_wait_goes_on_while_the_lock_changes_hands(self):
        # Each holder marks the lock file as it takes its turn. Turns every 0.1 s
        # for 1.5 s (one process stands in for 15 holders in a row) outlast a 1 s
        # wait, which goes on: a queue that moves is waited on. A holder that
        # marks nothing is stuck (test_lock_held_by_a_stuck_process).
        os.makedirs(self.state, 0o700, exist_ok=True)
        holders = self.spawn(
            [sys.executable, "-c", "import fcntl, os, sys, time\n"
             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\n"
             "for turn in range(15):\n"
             "    time.sleep(0.1)\n"
             "    os.utime(fd)\n", self.lock_path],
            stdout=subprocess.PIPE, universal_newlines=True)
        self.assertEqual(holders.stdout.readline(), "held\n")
        began = time.monotonic()
        with tmuxsess.Registry(self.state, 1.0).lock():
            waited = time.monotonic() - began
        self.assertGreater(waited, 1.3)  # the 15 turns took 1.5 s from "held"
        self.assertEqual(holders.wait(10), 0)

    def test_ctrl_c_exits_130_quietly_and_leaves_nothing_half_done(self):
        rec = self.api_create("a")
        tmuxsess.send("sleep 60", session="a")
        cases = [("wait", "-s", "a", "-p", "never", "-T", "60"),
                 ("send", "-s", "a", "-c", "sleep 60", "-w", "never", "-T", "60"),
                 ("run", "-s", "a", "-c", "sleep 60", "-T", "60")]

        def back_at_prompt():
            # C-c until the shell is back: under load, a C-c can come before bash
            # has read the "sleep 60" typed last, which then runs after it.
            tmuxsess.send(keys=["C-c"], session="a")
            with contextlib.suppress(tmuxsess.TmuxsessError):
                return tmuxsess.run("true", session="a", timeout=2).exit_status == 0
            return False

        for args in cases:
            with self.subTest(args=args[0]):
                wait_until(back_at_prompt, 30, "the shell to be back")
                p = self.follower(rec.transcript, *args, start_new_session=True)
                os.killpg(p.pid, signal.SIGINT)   # as Ctrl-C in a terminal does
                out, err = p.communicate(timeout=30)
                self.assertEqual(p.returncode, 130, err)
                self.assertEqual(err, "")
                self.assertEqual(out, "")
        self.assertEqual(list(self.registry()["sessions"]), ["a"])
        files = self.state_files()
        locks = [f for f in files if f.startswith("locks/")]
        # Runs on the pane queue up on its lock; beside it, where the last line began.
        self.assertEqual(sorted(f.rsplit(".", 1)[1] for f in locks), ["lock", "sent"], files)
        # How the screen looked at the last send that went in: whole, for a later wait.
        looks = [f for f in files if f.startswith("screens/")]
        self.assertLessEqual(len(looks), 1, files)
        self.assertEqual([f for f in files if f not in locks + looks], sorted([
            ".sessions.json", ".sessions.lock", "init/bashrc",
            os.path.relpath(rec.transcript, self.state)]))
        self.assertEqual(self.tmux("list-buffers").stdout, "")


class ConcurrencyTest(TmuxTestCase):
    WORKER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import tmuxsess
name, keep = sys.argv[2], sys.argv[3] == "keep"
tmuxsess.create_session(name, ready_timeout=60)
r = tmuxsess.run("echo I am " + name, session=name, timeout=60)
assert r.output == "I am %s\n" % name and r.exit_status == 0, r
if not keep:
    k = tmuxsess.kill_session(session=name)
    assert k.killed and k.deregistered, k
print("done", name)
"""

    def test_own_names_in_parallel_while_six_race_for_one(self):
        workers = {}
        for i in range(12):
            name = "w%02d" % i
            workers[name] = self.spawn(
                [sys.executable, "-c", self.WORKER, HERE, name, "keep" if i % 2 else "kill"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        racers = [self.popen("create", "-n", "shared") for _ in range(6)]
        results = {n: p.communicate(timeout=120) + (p.returncode,)
                   for n, p in list(workers.items()) + list(enumerate(racers))}
        for key, (_out, err, _code) in results.items():
            self.assertNotIn("Traceback", err, key)
        for name in workers:
            out, err, code = results[name]
            self.assertEqual((code, out), (0, "done %s\n" % name), err)
        codes = sorted(results[i][2] for i in range(len(racers)))
        self.assertEqual(codes, [0, 2, 2, 2, 2, 2], [results[i][1] for i in range(6)])
        for i in range(len(racers)):
            if results[i][2] == 2:
                self.assertOneLineError(results[i][1], "'shared' already exists")
        kept = {n for i, n in enumerate(sorted(workers)) if i % 2} | {"shared"}
        sessions = self.registry()["sessions"]   # valid JSON, or this raises
        self.assertEqual(set(sessions), kept)
        self.assertEqual(self.tmux_sessions(), sorted(kept))   # no orphans, no killed ones
        statuses = {s.name: s.status for s in tmuxsess.list_sessions()}
        self.assertEqual(statuses, dict.fromkeys(kept, "alive"))
        self.assertEqual(len({s["pane_id"] for s in sessions.values()}), len(kept))


    def test_runs_on_one_pane_queue_up_and_send_still_gets_through(self):
        rec = self.api_create("calc", "python-repl")
        results = {}

        def one(i):
            results[i] = self.exe("run", "-s", "calc", "-T", "60", "-c",
                                  "import time; time.sleep(0.1); print('R%d')" % i)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for i in range(4):
            self.assertEqual((results[i].returncode, results[i].stdout, results[i].stderr),
                             (0, "R%d\n" % i, ""), i)
        # A run that cannot have the pane within its -T types nothing (126)...
        go = os.path.join(self.tmp, "go")
        holder = self.follower(rec.transcript, "run", "-s", "calc", "-T", "60", "-c",
                               "import os, time\nwhile not os.path.exists(%r):\n"
                               "    time.sleep(0.02)\nx = input('name? ')\nprint('hi ' + x)"
                               % go)
        wait_until(lambda: self.has_open(holder.pid, rec.transcript), 20, "the holder")
        r = self.fails(126, "run", "-s", "calc", "-T", "0.3", "-c", "print('queued')")
        self.assertEqual(r.stdout, "")
        self.assertOneLineError(r.stderr, "another run on calc is still going; nothing was run")
        # ... while send takes no lock: typed ahead, it answers the input() to come,
        self.ok("send", "-s", "calc", "-c", "bob")
        open(go, "w").close()
        out, err = holder.communicate(timeout=30)
        self.assertEqual((holder.returncode, err), (0, ""))
        self.assertTrue(out.endswith("\nhi bob\n"), out)
        # and interrupts a run with C-c.
        holder = self.follower(rec.transcript, "run", "-s", "calc", "-T", "60", "-c",
                               "import time; time.sleep(60)")
        wait_until(lambda: self.screen("calc").endswith("time.sleep(60)\n"), 20, "the sleep")
        self.ok("send", "-s", "calc", "-k", "C-c")
        out, err = holder.communicate(timeout=30)
        self.assertEqual(holder.returncode, 1, err)
        self.assertIn("KeyboardInterrupt", out)
        self.assertNotIn("queued", tmuxsess.capture(session="calc", all=True))
        # The lock file is private, and goes with the session.
        locks = os.path.join(self.state, "locks")
        self.assertEqual(stat.S_IMODE(os.stat(locks).st_mode), 0o700)
        self.assertTrue(all(is_private_regular(os.path.join(locks, f))
                            for f in os.listdir(locks)))
        # The run lock, and (after text, not after keys alone) where it began.
        self.assertIn(sorted(f.rsplit(".", 1)[1] for f in os.listdir(locks)),
                      (["lock"], ["lock", "sent"]))
        self.ok("kill", "-s", "calc")
        self.assertEqual(os.listdir(locks), [])
        self.api_create("sh")
        self.assertEqual(tmuxsess.run("echo ok", session="sh").output, "ok\n")
        self.assertEqual(len(os.listdir(locks)), 2)
        self.ok("cleanup", "--all")
        self.assertEqual(os.listdir(locks), [])


class CrashSafetyTest(TmuxTestCase):
    WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import tmuxsess
reg, prefix = tmuxsess.Registry(), sys.argv[2]
pad = "x" * 2000   # bigger writes: more moments to be killed in
for i in range(100000):
    with reg.transaction() as doc:
        doc["sessions"]["%s-%d" % (prefix, i)] = {"socket": "/nowhere", "target": "t",
                                                  "type": "shell", "pad": pad}
        if i >= 20:   # keep the file small
            doc["sessions"].pop("%s-%d" % (prefix, i - 20), None)
    print("%s-%d" % (prefix, i), flush=True)
"""

    def test_sigkilled_writer_never_corrupts_or_holds_the_lock(self):
        rng = random.Random(5)
        kept = []   # entries committed and not deleted by a later commit
        rounds = 6
        for round_ in range(rounds):
            p = self.spawn([sys.executable, "-c", self.WRITER, HERE, "r%d" % round_],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
            first = p.stdout.readline()
            if not first.startswith("r%d-" % round_):
                self.fail("the writer failed: " + p.communicate()[1])
            time.sleep(rng.uniform(0.0, 0.15))   # a random moment mid-loop
            p.send_signal(signal.SIGKILL)
            out, _err = p.communicate()
            self.assertEqual(p.returncode, -signal.SIGKILL)
            printed = [first.strip()] + out.split()
            # An unreported commit after the last print may have dropped one more.
            kept.extend(printed[-19:])
            # Valid JSON (or registry() raises) with every entry committed since.
            sessions = self.registry()["sessions"]
            self.assertEqual(set(kept) - set(sessions), set())
            # The flock died with its holder: a fresh open of the lock takes it at once.
            fd = os.open(self.lock_path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        self.assertEqual(set(kept) - set(self.registry()["sessions"]), set())
        # The next ordinary write sweeps up temp files a killed writer left.
        with tmuxsess.Registry().transaction() as doc:
            doc["sessions"]["final"] = {"socket": "/nowhere", "target": "t"}
        self.assertEqual(sorted(n for n in os.listdir(self.state) if n.startswith(".")),
                         [".sessions.json", ".sessions.lock"])


# ===========================================================================
# Documentation: the README's examples and the skill's commands run as
# written; every command's help has examples.
# ===========================================================================


def fenced_blocks(markdown, language="sh"):
    """(enclosing "## " section, code, programs it needs) for each fenced block.

    A block that needs a program beyond Python, tmux and bash says so on the
    line before its fence: ``<!-- needs: gdb -->`` (invisible on the page).
    """
    section, blocks, code, fence, needs, previous = "", [], [], None, (), ""
    for line in markdown.split("\n"):
        if fence is not None:
            if line.startswith("```"):
                if fence == language:
                    blocks.append((section, "\n".join(code) + "\n", needs))
                fence, code = None, []
            else:
                code.append(line)
        elif line.startswith("```"):
            fence = line[3:].strip()
            m = re.fullmatch(r"<!-- needs: ([\w ]+) -->", previous.strip())
            needs = tuple(m.group(1).split()) if m else ()
        elif line.startswith("## "):
            section = line[3:].strip()
        previous = line
    return blocks


def run_script(code, cwd, env):
    """Run shell example code as a user would paste it; stop at the first failure."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", code], cwd=cwd,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)


def sandbox(parent, name):
    """A fresh directory holding a copy of the tool, with its own state, sockets and
    tmux servers; returns (dir, env)."""
    root = os.path.join(parent, name)
    os.mkdir(root)
    shutil.copy(TOOL, os.path.join(root, "tmuxsess.py"))
    env = dict(os.environ, TMUXSESS_STATE_DIR=os.path.join(root, "state"),
               CLAUDE_TMUX_SOCKET_DIR=os.path.join(root, "sock"), TMPDIR=root,
               TMUX_TMPDIR=root, PATH=PROGRAMS_PATH)
    return root, env


class ReadmeExamplesTest(TmuxTestCase):
    """Every ```sh block of README.md runs and succeeds, so the docs cannot rot.

    Blocks run in order, one bash script per "## " section (later blocks of a
    section use the sessions earlier ones created), each section in a fresh
    sandbox. A section must clean up after itself: no registered session may
    be left. Sandboxes share nothing, so the sections run at the same time.
    """

    def test_readme_examples(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            blocks = fenced_blocks(f.read())
        sections = {}
        for section, code, needs in blocks:
            missing = [n for n in needs if not shutil.which(n, path=PROGRAMS_PATH)]
            if missing:  # a recipe for a program this machine lacks
                with self.subTest(section=section, needs=missing):
                    self.skipTest("%s not installed" % " ".join(missing))
                continue
            sections.setdefault(section, []).append(code)
        self.assertGreaterEqual(len(blocks), 15)
        self.assertIn("make test\n", blocks[0][1], "README starts with the test command")
        with open(os.path.join(HERE, "Makefile")) as f:
            self.assertIn("test_tmuxsess.py", f.read())
        runs = []
        for i, (section, codes) in enumerate(sections.items()):
            # `make test` is this very suite: it is checked above, not run again.
            code = "".join(codes).replace("make test\n", "")
            root, env = sandbox(self.tmp, "readme-%d" % i)
            runs.append((section, code, root, env))

        def run(section_code_root_env):
            _section, code, root, env = section_code_root_env
            try:
                return run_script(code, root, env)
            except subprocess.TimeoutExpired as e:
                return subprocess.CompletedProcess(e.cmd, "timed out", e.output or "")
        with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
            results = list(pool.map(run, runs))
        for (section, _code, _root, env), r in zip(runs, results):
            with self.subTest(section=section or "(top)"):
                self.assertEqual(r.returncode, 0, "section %r failed:\n%s" % (section, r.stdout))
                self.assertNotRegex(r.stdout, r'File ".*tmuxsess\.py"', "a tool traceback")
                left = self.cli("list", "--json", env=env)
                self.assertEqual(json.loads(left.stdout)["total"], 0,
                                 "section %r left sessions behind" % section)

    def test_guarantees_name_tests_that_exist(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            text = f.read()
        guarantees = text[text.index("## Guarantees"):].split("\n## ", 1)[0]
        named = re.findall(r"`(\w+Test)\.(\w+|\*)(\*?)`", guarantees)
        self.assertGreaterEqual(len(named), 20)
        for cls, method, star in named:
            tests = [m for m in dir(globals().get(cls, object)) if m.startswith("test_")]
            if method == "*":
                self.assertTrue(tests, cls)
            elif star:
                self.assertTrue([m for m in tests if m.startswith(method)], cls + "." + method)
            else:
                self.assertIn(method, tests, cls)


class SkillTest(TmuxTestCase):
    """`tmuxsess.py skill` is a valid SKILL.md whose commands all run."""

    def parse(self, text):
        self.assertTrue(text.startswith("---\n"), "front matter first")
        head, sep, body = text[4:].partition("\n---\n")
        self.assertTrue(sep, "front matter is closed")
        meta = {}
        for line in head.split("\n"):
            key, colon, value = line.partition(":")
            self.assertTrue(colon and key.strip().isidentifier(), "bad front matter %r" % line)
            meta[key.strip()] = value.strip()
        return meta, body

    def test_front_matter_and_rules(self):
        r = self.ok("skill")
        meta, body = self.parse(r.stdout)
        self.assertEqual(meta["name"], "tmuxsess")
        self.assertIn("Use it when", meta["description"])
        self.assertGreater(len(meta["description"]), 80)
        self.assertIn(TOOL, body, "names the tool by its vendored path")
        for rule in ("list", "attach", " run ", "-k C-c", "kill -s"):
            self.assertIn(rule, body)

    def test_every_command_runs(self):
        root, env = sandbox(self.tmp, "skill")
        text = self.ok("skill", "--tool", os.path.join(root, "tmuxsess.py")).stdout
        blocks = fenced_blocks(text)
        self.assertTrue(blocks)
        for _section, code, _needs in blocks:
            if "'claude'" in code:  # FullScreenTest runs it on the stand-in TUI
                continue
            r = run_script(code, root, env)
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertIn("2432902008176640000", r.stdout)
            self.assertIn("30\n", r.stdout)

    def test_write_creates_skill_md_and_keeps_edits(self):
        target = os.path.join(self.tmp, "skills", "tmux")
        self.ok("skill", "--write", target)
        path = os.path.join(target, "SKILL.md")
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), self.ok("skill").stdout)
        self.ok("skill", "--write", target)  # unchanged: rewriting is fine
        with open(path, "a", encoding="utf-8") as f:
            f.write("my own notes\n")
        r = self.cli("skill", "--write", target)
        self.assertEqual(r.returncode, 1)
        self.assertIn("tmuxsess: error:", r.stderr)
        self.assertIn("--force", r.stderr)
        self.ok("skill", "--write", target, "--force")
        with open(path, encoding="utf-8") as f:
            self.assertNotIn("my own notes", f.read())
        r = self.fails(1, "skill", "--write", path)  # a file where the directory goes
        self.assertOneLineError(r.stderr, "%s is not a directory" % path)


class HelpTest(TmuxTestCase):
    def test_overview_version_and_examples(self):
        overview = self.ok().stdout
        for stage in ("pre-check", "create", "active use", "health", "cleanup"):
            self.assertIn(stage, overview)
        self.assertRegex(self.ok("--version").stdout, r"^tmuxsess \d+\.\d+\.\d+\n$")
        for command in ("create-session", "list-sessions", "safe-send", "wait-for-text",
                        "pane-health", "kill-session", "cleanup-sessions", "find-sessions",
                        "run", "capture", "repair", "attach", "skill"):
            self.assertIn(command, overview)
            text = self.ok(command, "--help").stdout
            examples = text.split("examples:\n", 1)[-1]
            self.assertGreaterEqual(examples.count("tmuxsess.py " ), 2, command)

    def test_every_numeric_option_shows_its_default(self):
        for sub in tmuxsess.build_parser()._subparsers._group_actions[0].choices.values():
            text = self.ok(*sub.prog.split()[1:], "--help").stdout
            for action in sub._actions:
                if action.type in (int, float):
                    # The option's lines in --help, up to the next option.
                    flags = ", ".join("%s %s" % (o, action.metavar or action.dest.upper())
                                      for o in action.option_strings)
                    block = text[text.index("\n  " + flags) + 1:].split("\n  -", 1)[0]
                    self.assertIn("default", block, (sub.prog, flags))
                    self.assertNotIn("e+", block, "a default as a person writes it")

    def test_bad_arguments_are_one_line_errors_before_tmux_is_called(self):
        env, calls = self.logging_tmux()
        for args, code, needle in [
                (("create", "-n", "x", "--ready-timeout", "-1"), 1, "--ready-timeout must be"),
                (("create", "-n", "x", "--ready-timeout", "0"), 1, "--ready-timeout must be"),
                (("create", "-n", "x", "--ready-timeout", "nan"), 1, "not nan"),
                (("send", "-c", "x", "-T", "nan"), 4, "-T must be a positive number"),
                (("send", "-c", "x", "-i", "0"), 4, "-i must be"),
                (("send", "-c", "x", "-r", "-1"), 4, "-r must be at least 0"),
                (("wait", "-p", "x", "-T", "nan"), 1, "-T must be"),
                (("wait", "-p", "x", "-l", "-5"), 1, "-l must be at least 1"),
                (("run", "-c", "x", "-T", "nan"), 126, "-T must be"),
                (("run", "-c", "x", "--max-output", "-1"), 126, "--max-output must be"),
                (("cleanup", "--older-than", ""), 1, "bad duration ''"),
                (("cleanup", "--idle", ""), 1, "bad duration ''"),
                (("run", "-c", "x", "--bogus"), 126, "run: unrecognized arguments: --bogus"),
                (("send", "--bogus", "-c", "x"), 4, "unrecognized arguments: --bogus")]:
            with self.subTest(args=args):
                r = self.fails(code, *args, env=env)
                self.assertOneLineError(r.stderr, needle)
                if "--bogus" in args:  # the subcommand's help, not the overview's
                    self.assertIn("hint: see: tmuxsess.py %s --help" % (
                        "run" if args[0] == "run" else "safe-send"), r.stderr)
        self.assertEqual(calls(), [])


# ===========================================================================
# Stress (make stress; skipped unless TMUXSESS_STRESS=1): the promises that
# take minutes: many concurrent lifecycles, hundreds of SIGKILLed writers,
# 50 MB of output, a thousand runs.
# ===========================================================================


# ===========================================================================
# The MCP server: raw JSON-RPC to `tmuxsess.py mcp` in a subprocess
# ===========================================================================

MCP_TOOLS = {"create_session", "list_sessions", "session_health", "run", "send",
             "wait_for_text", "capture", "kill_session", "cleanup_sessions"}
MCP_READ_ONLY_TOOLS = {"list_sessions", "session_health", "capture", "wait_for_text"}


def live_servers(top):
    """Sockets under ``top`` with a tmux server answering on them."""
    found = []
    for root, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            if stat.S_ISSOCK(os.lstat(path).st_mode) and subprocess.run(
                    ["tmux", "-S", path, "list-sessions"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode == 0:
                found.append(path)
    return found


def processes_mentioning(text):
    """Pids of processes whose command line or working directory mentions ``text``."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        if text in cmdline or cwd.startswith(text):
            pids.append(int(pid))
    return pids


class Client:
    """The client side of one server process: raw JSON-RPC lines."""

    def __init__(self, proc):
        self.proc = proc
        self.messages = []  # everything the server wrote, parsed, in order
        self.raw = []
        self.err = []
        self.cond = threading.Condition()
        self.next_id = 100
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.raw.append(line.decode("utf-8", "replace"))
                self.messages.append(json.loads(line))  # every line must be JSON
                self.cond.notify_all()
        with self.cond:
            self.messages.append(None)  # end of output
            self.cond.notify_all()

    def _read_err(self):
        for line in self.proc.stderr:
            self.err.append(line.decode("utf-8", "replace"))

    def line(self, text):
        self.proc.stdin.write(text.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def send(self, msg):
        self.line(json.dumps(msg))

    def request(self, method, params=None, rid=None):
        if rid is None:
            self.next_id += 1
            rid = self.next_id
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def wait_for(self, predicate, timeout=30.0, what="message"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if m is not None and predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.messages and self.messages[-1] is None):
                    raise AssertionError("no %s from the server; it wrote:\n%s\nstderr:\n%s"
                                         % (what, "".join(self.raw)[-3000:],
                                            "".join(self.err)[-3000:]))
                self.cond.wait(left)

    def message_after(self, count, timeout=30.0):
        """The first message the server wrote after its first ``count``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) <= count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no message after %d; stderr:\n%s"
                                         % (count, "".join(self.err)[-3000:]))
                self.cond.wait(left)
            return self.messages[count]

    def response(self, rid, timeout=30.0):
        return self.wait_for(lambda m: m.get("id") == rid and ("result" in m or "error" in m),
                             timeout, "response to %r" % (rid,))

    def has_response(self, rid):
        with self.cond:
            return any(m is not None and m.get("id") == rid and "method" not in m
                       for m in self.messages)

    def rpc(self, method, params=None, timeout=30.0):
        return self.response(self.request(method, params), timeout)

    def call(self, name, arguments=None, timeout=60.0, **params):
        params = dict(params, name=name, arguments=arguments or {})
        r = self.rpc("tools/call", params, timeout)
        assert "result" in r, r
        return r["result"]


class McpTestCase(unittest.TestCase):
    """Isolated dirs per test; every server started under them is killed."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tmuxsess-mcp-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(kill_servers, self.tmp)
        self.state = os.path.join(self.tmp, "state")
        self.sockets = os.path.join(self.tmp, "sock")
        # Only the flags name the state and socket dirs; TMPDIR and HOME keep the
        # defaults in here too, should a flag ever be ignored.
        self.env = dict(os.environ, TMUX_TMPDIR=os.path.join(self.tmp, "tmux-default"),
                        HOME=os.path.join(self.tmp, "home"), TMPDIR=os.path.join(self.tmp, "t"))
        for name in ("TMUX", "TMUX_PANE", "TMUXSESS_TMUX", "TMUXSESS_LOCK_TIMEOUT",
                     "XDG_CONFIG_HOME", "XDG_STATE_HOME", "TMUXSESS_STATE_DIR",
                     "CLAUDE_TMUX_SOCKET_DIR"):
            self.env.pop(name, None)
        for key in ("TMUX_TMPDIR", "HOME", "TMPDIR"):
            os.mkdir(self.env[key], 0o700)

    def start(self, *flags, version="2025-06-18", init=True):
        """A server process (and its client), initialized unless ``init`` is false."""
        argv = [sys.executable, TOOL, "mcp", "--state-dir", self.state,
                "--socket-dir", self.sockets] + list(flags)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env, cwd=self.tmp)
        self.addCleanup(self._stop, proc)
        client = Client(proc)
        if init:
            r = client.rpc("initialize", {"protocolVersion": version, "capabilities": {},
                                          "clientInfo": {"name": "test", "version": "0"}})
            self.assertEqual(r["result"]["protocolVersion"], version)
            client.notify("notifications/initialized")
        return client

    def _stop(self, proc):
        if proc.poll() is None:
            with_suppressed(proc.stdin.close)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with_suppressed(stream.close)

    def exchange(self, *messages, flags=()):
        """Send whole lines, close stdin, return every message the server wrote."""
        data = "".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages)
        r = subprocess.run([sys.executable, TOOL, "mcp", "--state-dir", self.state,
                            "--socket-dir", self.sockets] + list(flags),
                           input=data.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(line) for line in r.stdout.splitlines()]

    def python(self, client, name="py"):
        result = client.call("create_session", {"name": name, "kind": "python"})
        self.assertFalse(result["isError"], result)
        return result

    def text(self, result):
        return "\n".join(item["text"] for item in result["content"])


def with_suppressed(fn):
    try:
        fn()
    except OSError:
        pass


def init_msg(version, rid=1):
    return {"jsonrpc": "2.0", "id": rid, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "test", "version": "0"}}}


MODERN_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
               "io.modelcontextprotocol/clientCapabilities": {},
               "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"}}


class McpHandshakeTest(McpTestCase):

    def test_versions_are_negotiated(self):
        for asked, given in (("2024-11-05", "2024-11-05"), ("2025-03-26", "2025-03-26"),
                             ("2025-06-18", "2025-06-18"), ("2025-11-25", "2025-11-25"),
                             ("2026-07-28", "2025-11-25"), ("1999-01-01", "2025-11-25")):
            with self.subTest(asked=asked):
                (r,) = self.exchange(init_msg(asked))
                self.assertEqual(r["id"], 1)
                result = r["result"]
                self.assertEqual(result["protocolVersion"], given)
                self.assertEqual(result["serverInfo"]["name"], "tmuxsess")
                self.assertIn("tools", result["capabilities"])
                self.assertIn("create_session", result["instructions"])

    def test_initialize_needs_a_version_and_happens_once(self):
        bad, first, again = self.exchange(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
            init_msg("2025-06-18", 2), init_msg("2025-06-18", 3))
        self.assertEqual(bad["error"]["code"], -32602)
        self.assertIn("result", first)
        self.assertEqual(again["error"]["code"], -32600)

    def test_tools_need_initialize_or_modern_meta(self):
        (r,) = self.exchange({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        self.assertEqual(r["error"]["code"], -32600)
        self.assertIn("initialize", r["error"]["message"])

    def test_ping(self):
        (r,) = self.exchange({"jsonrpc": "2.0", "id": "p", "method": "ping"})
        self.assertEqual(r, {"jsonrpc": "2.0", "id": "p", "result": {}})

    def test_modern_requests_carry_their_version(self):
        discover, listed, wrong, incomplete = self.exchange(
            {"jsonrpc": "2.0", "id": 1, "method": "server/discover",
             "params": {"_meta": MODERN_META}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": MODERN_META}},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": dict(
                MODERN_META, **{"io.modelcontextprotocol/protocolVersion": "2099-01-01"})}},
            {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
        d = discover["result"]
        self.assertEqual(d["resultType"], "complete")
        self.assertIn("2026-07-28", d["supportedVersions"])
        self.assertIn("2024-11-05", d["supportedVersions"])
        self.assertEqual(d["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "tmuxsess")
        self.assertIn("ttlMs", d)
        t = listed["result"]
        self.assertEqual(t["resultType"], "complete")
        self.assertEqual({x["name"] for x in t["tools"]}, MCP_TOOLS)
        self.assertEqual(t["cacheScope"], "private")
        self.assertEqual(wrong["error"]["code"], -32022)
        self.assertEqual(wrong["error"]["data"]["requested"], "2099-01-01")
        self.assertIn("2026-07-28", wrong["error"]["data"]["supported"])
        self.assertEqual(incomplete["error"]["code"], -32602)


class McpToolsListTest(McpTestCase):

    def test_every_tool_is_described(self):
        init, r = self.exchange(init_msg("2025-11-25"),
                                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        tools = r["result"]["tools"]
        self.assertNotIn("nextCursor", r["result"])
        self.assertEqual({t["name"] for t in tools}, MCP_TOOLS)
        for t in tools:
            with self.subTest(tool=t["name"]):
                self.assertGreater(len(t["description"]), 60)
                self.assertEqual(t["inputSchema"]["type"], "object")
                self.assertFalse(t["inputSchema"]["additionalProperties"])
                self.assertEqual(t["outputSchema"]["type"], "object")
                hints = t["annotations"]
                for hint in ("readOnlyHint", "destructiveHint", "idempotentHint",
                             "openWorldHint"):
                    self.assertIsInstance(hints[hint], bool)
                self.assertEqual(hints["readOnlyHint"], t["name"] in MCP_READ_ONLY_TOOLS)
                self.assertNotIn("socket", t["inputSchema"]["properties"])

    def test_older_versions_get_older_tool_shapes(self):
        _, old, _, mid = self.exchange(
            init_msg("2024-11-05"), {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})[:2] + \
            self.exchange(init_msg("2025-03-26"), {"jsonrpc": "2.0", "id": 2,
                                                   "method": "tools/list"})
        for t in old["result"]["tools"]:
            self.assertEqual(set(t), {"name", "description", "inputSchema"})
        for t in mid["result"]["tools"]:
            self.assertEqual(set(t), {"name", "description", "inputSchema", "annotations"})

    def test_read_only_offers_only_tools_that_change_nothing(self):
        _, r, call = self.exchange(
            init_msg("2025-06-18"), {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "create_session", "arguments": {"name": "x"}}},
            flags=["--read-only"])
        self.assertEqual({t["name"] for t in r["result"]["tools"]}, MCP_READ_ONLY_TOOLS)
        self.assertEqual(call["error"]["code"], -32602)
        self.assertIn("--read-only", call["error"]["message"])

    def test_allow_foreign_offers_socket_and_target(self):
        _, r = self.exchange(init_msg("2025-06-18"),
                             {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                             flags=["--allow-foreign"])
        health = next(t for t in r["result"]["tools"] if t["name"] == "session_health")
        self.assertLessEqual({"socket", "socket_name", "target"},
                             set(health["inputSchema"]["properties"]))
        self.assertNotIn("required", health["inputSchema"])

    def test_cursor_pagination(self):
        engine = tmuxsess.Engine(state_dir=self.state, socket_dir=self.sockets)
        names, cursor, pages = [], None, 0
        while True:
            lines = [init_msg("2025-06-18"),
                     {"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                      "params": {} if cursor is None else {"cursor": cursor}}]
            out = io.BytesIO()
            stdin = io.BytesIO("".join(json.dumps(m) + "\n" for m in lines).encode())
            with contextlib.redirect_stderr(io.StringIO()):
                self.assertEqual(tmuxsess.serve_mcp(engine, stdin, out, page_size=4), 0)
            result = json.loads(out.getvalue().splitlines()[1])["result"]
            names += [t["name"] for t in result["tools"]]
            pages += 1
            cursor = result.get("nextCursor")
            if cursor is None:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(len(names), len(MCP_TOOLS))
        self.assertEqual(set(names), MCP_TOOLS)
        _, bad = self.exchange(init_msg("2025-06-18"),
                               {"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                                "params": {"cursor": "nonsense"}})
        self.assertEqual(bad["error"]["code"], -32602)


class McpLifecycleTest(McpTestCase):

    def test_create_run_kill(self):
        c = self.start()
        created = self.python(c)
        s = created["structuredContent"]
        self.assertEqual(s["name"], "py")
        self.assertEqual(s["type"], "python-repl")
        self.assertTrue(s["socket"].startswith(self.sockets + os.sep))
        self.assertIn("attach -t py", s["attach"])
        self.assertTrue(os.path.exists(os.path.join(self.state, ".sessions.json")))
        self.assertEqual(json.loads(created["content"][0]["text"]), s)

        run = c.call("run", {"session": "py", "code": "print(6*7)"})
        self.assertFalse(run["isError"], run)
        self.assertEqual(run["structuredContent"]["output"], "42\n")
        self.assertEqual(run["structuredContent"]["exit_status"], 0)
        self.assertFalse(run["structuredContent"]["timed_out"])

        raised = c.call("run", {"session": "py", "code": "1/0"})
        self.assertEqual(raised["structuredContent"]["exit_status"], 1)
        self.assertIn("ZeroDivisionError", raised["structuredContent"]["output"])

        listed = c.call("list_sessions")["structuredContent"]
        self.assertEqual([r["name"] for r in listed["sessions"]], ["py"])
        self.assertEqual(listed["alive"], 1)
        health = c.call("session_health", {"session": "py"})["structuredContent"]
        self.assertEqual(health["status"], "healthy")
        screen = c.call("capture", {"session": "py", "lines": 20})["structuredContent"]
        self.assertIn("42", screen["text"])
        log = c.call("capture", {"session": "py", "source": "transcript"})["structuredContent"]
        self.assertIn("ZeroDivisionError", log["text"])

        killed = c.call("kill_session", {"session": "py"})
        self.assertFalse(killed["isError"], killed)
        self.assertTrue(killed["structuredContent"]["killed"])
        self.assertTrue(killed["structuredContent"]["deregistered"])
        self.assertEqual(c.call("list_sessions")["structuredContent"]["total"], 0)

    def test_send_and_wait(self):
        c = self.start()
        c.call("create_session", {"name": "sh"})
        sent = c.call("send", {"session": "sh", "text": "echo hi-$((40+2))",
                               "wait": "hi-42"})
        self.assertFalse(sent["isError"], sent)
        self.assertTrue(sent["structuredContent"]["found"])
        c.call("send", {"session": "sh", "text": "sleep 0.3; echo later-done"})
        waited = c.call("wait_for_text", {"session": "sh", "pattern": "later-done",
                                          "fixed": True, "timeout": 10})
        self.assertTrue(waited["structuredContent"]["found"], waited)
        # The shell is back at its prompt: said at once, not as a timeout.
        missed = c.call("wait_for_text", {"session": "sh", "pattern": "never-said",
                                          "timeout": 30})
        self.assertTrue(missed["isError"])
        self.assertEqual(missed["structuredContent"]["reason"], "prompt")
        self.assertIn("tmuxsess: error: pattern 'never-said' not seen; the program is back "
                      "at its prompt", self.text(missed))
        c.call("send", {"session": "sh", "text": "sleep 5"})
        missed = c.call("wait_for_text", {"session": "sh", "pattern": "never-said",
                                          "timeout": 0.5})
        self.assertIn("tmuxsess: error: pattern 'never-said' not seen within 0.5s",
                      self.text(missed))
        c.call("send", {"session": "sh", "keys": ["C-c"]})
        cleaned = c.call("cleanup_sessions", {"all": True})["structuredContent"]
        self.assertEqual([r["name"] for r in cleaned["removed"]], ["sh"])

    def test_older_version_results_have_no_structured_content(self):
        c = self.start(version="2025-03-26")
        r = c.call("list_sessions")
        self.assertNotIn("structuredContent", r)
        self.assertEqual(json.loads(r["content"][0]["text"])["total"], 0)


FLAG_RE = r"(?<![\w-])(-[A-Za-z]\b|--[a-z][a-z-]+)|tmuxsess\.py"


class McpWordsTest(McpTestCase):
    """The MCP server words every failure in its own terms: tools and arguments,
    never the command line's flags; and takes what it is given as MCP would."""

    def test_a_timeout_an_unknown_session_and_a_waiting_program(self):
        c = self.start()
        said = [c.call("run", {"session": "nope", "code": "1"})]
        c.call("create_session", {"name": "sh"})
        said.append(c.call("run", {"session": "sh", "code": "sleep 5", "timeout": 0.5}))
        said.append(c.call("run", {"session": "sh", "code": "echo busy", "timeout": 0.5}))
        c.call("send", {"session": "sh", "keys": ["C-c"]})
        said.append(c.call("run", {"session": "sh", "code": "read -p 'Name? ' n; echo hi $n"}))
        said.append(c.call("run", {"session": "sh", "code": "echo again"}))  # it waits
        said.append(c.call("wait_for_text", {"session": "sh", "pattern": "x", "timeout": 30}))
        answered = c.call("run", {"session": "sh", "answer": "Ann"})
        self.assertEqual((answered["structuredContent"]["output"],
                          answered["structuredContent"]["exit_status"]), ("hi Ann\n", 0))
        for r in said:
            self.assertTrue(r["isError"], r)
            text = self.text(r)
            self.assertIn("tmuxsess: error: ", text)
            self.assertIsNone(re.search(FLAG_RE, text.split("tmuxsess: error: ", 1)[1]), text)
        self.assertIn('send {"session": "sh", "keys": ["C-c"]}', self.text(said[1]))
        self.assertIn('run {"session": "sh", "answer": "TEXT"}', self.text(said[3]))
        self.assertIn("list_sessions {}", self.text(said[0]))

    def test_a_command_without_a_kind_runs_as_any_program(self):
        c = self.start()
        made = c.call("create_session", {"name": "calc", "command": "%s -q -i" % sys.executable,
                                         "prompt": r"^>>> $"})
        self.assertFalse(made["isError"], made)
        self.assertEqual(made["structuredContent"]["kind"], "command")
        r = c.call("run", {"session": "calc", "code": "print(6 * 7)"})
        self.assertEqual(r["structuredContent"]["output"], "42\n", r)
        self.assertIsNone(r["structuredContent"]["exit_status"])  # a regex prompt says none

    def test_numbers_out_of_range_and_lone_surrogates_are_tool_errors(self):
        c = self.start()
        for args, words in (({"session": "x", "code": "1", "timeout": 10 ** 400}, "a number"),
                            ({"session": "x", "code": "1", "timeout": 1e308 * 10}, "a number"),
                            ({"session": "x", "code": "\ud800"}, "not Unicode")):
            r = c.call("run", args)
            self.assertTrue(r["isError"], r)
            self.assertIn(words, self.text(r))
        # sent as raw JSON: a lone surrogate escape, and an integer no float holds
        c.line('{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "send",'
               ' "arguments": {"session": "x", "text": "a\\udc80b"}}}')
        c.line('{"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "run",'
               ' "arguments": {"session": "x", "code": "1", "timeout": 1%s}}}' % ("0" * 400))
        for rid in (7, 8):
            r = c.response(rid)
            self.assertTrue(r["result"]["isError"], r)
        self.assertFalse(any("Traceback" in line for line in c.err), c.err)


class McpErrorTest(McpTestCase):

    def test_tool_errors_are_results_in_the_words_of_mcp(self):
        c = self.start()
        r = c.call("run", {"session": "nope", "code": "1"})
        self.assertTrue(r["isError"])
        self.assertNotIn("structuredContent", r)
        cli = subprocess.run([sys.executable, TOOL, "run", "-s", "nope", "-c", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True,
                             env=dict(self.env, TMUXSESS_STATE_DIR=self.state,
                                      CLAUDE_TMUX_SOCKET_DIR=self.sockets))
        self.assertNotEqual(cli.returncode, 0)
        # The same error, each in its own words: commands there, tool calls here.
        said, hint = self.text(r).split("\n")
        self.assertEqual(said, cli.stderr.split("\n")[0])
        self.assertTrue(said.startswith("tmuxsess: error: session 'nope' is not registered"))
        self.assertEqual(hint, "hint: see the registered ones: list_sessions {}")
        self.assertIn("tmuxsess.py list", cli.stderr)

    def test_bad_arguments_are_tool_errors(self):
        c = self.start()
        cases = [("run", {"session": "x"}, "give code, or answer"),
                 ("run", {"session": "x", "code": 5}, "code must be a string"),
                 ("run", {"session": "x", "code": "1", "timeout": 0}, "more than 0"),
                 ("create_session", {"name": "x", "kind": "cobol"}, "must be one of"),
                 ("capture", {"session": "x", "lines": 0}, "at least 1"),
                 ("list_sessions", {"bogus": 1}, "unknown argument 'bogus'"),
                 ("session_health", {"session": "x", "socket": "/tmp/s"}, "refused"),
                 ("create_session", {"name": "bad name!"}, "name"),
                 ("send", {"session": "x"}, "nothing to send")]
        for tool, args, words in cases:
            with self.subTest(tool=tool, args=args):
                r = c.call(tool, args)
                self.assertTrue(r["isError"], r)
                self.assertTrue(self.text(r).startswith("tmuxsess: error: "), r)
                self.assertIn(words, self.text(r))

    def test_protocol_errors_and_the_server_keeps_serving(self):
        c = self.start()
        c.line("{this is not json")
        r = c.wait_for(lambda m: m.get("error", {}).get("code") == -32700)
        self.assertIsNone(r["id"])
        before = len(c.messages)
        c.proc.stdin.write(b'\xff\xfe{"not": "utf-8"}\n')  # not UTF-8: a parse error too
        c.proc.stdin.flush()
        self.assertEqual(c.message_after(before)["error"]["code"], -32700)
        self.assertEqual(c.rpc("ping")["result"], {})
        for line, code in (("[]", -32600), ("5", -32600), ('"x"', -32600),
                           ('{"jsonrpc":"2.0","id":7}', -32600),
                           ('{"jsonrpc":"1.0","id":8,"method":"ping"}', -32600),
                           ('{"jsonrpc":"2.0","id":null,"method":"ping"}', -32600),
                           ('{"jsonrpc":"2.0","id":9,"method":"no/such"}', -32601),
                           ('{"jsonrpc":"2.0","id":10,"method":"tools/list","params":[1]}',
                            -32602),
                           ('{"jsonrpc":"2.0","id":11,"method":"tools/call",'
                            '"params":{"name":"nope"}}', -32602),
                           ('{"jsonrpc":"2.0","id":12,"method":"tools/call",'
                            '"params":{"name":"run","arguments":[1]}}', -32602),
                           ('[1]', -32600)):
            with self.subTest(line=line):
                before = len(c.messages)
                c.line(line)
                r = c.message_after(before)
                self.assertEqual(r["error"]["code"], code, r)
        c.notify("notifications/unknown", {"x": 1})  # ignored
        c.send({"jsonrpc": "2.0", "id": 999, "result": {}})  # a stray response: ignored
        self.assertEqual(c.rpc("ping")["result"], {})
        self.assertIsNone(c.proc.poll())

    def test_batches_only_where_the_version_has_them(self):
        c = self.start(version="2025-03-26")
        c.line(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           {"jsonrpc": "2.0", "method": "notifications/initialized"},
                           {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                            "params": {"name": "list_sessions"}},
                           {"jsonrpc": "2.0", "id": 3, "method": "nope"}]))
        batch = c.wait_for(lambda m: isinstance(m, list), what="batch response")
        self.assertEqual(sorted(m["id"] for m in batch), [1, 2, 3])
        self.assertEqual(next(m for m in batch if m["id"] == 3)["error"]["code"], -32601)
        c2 = self.start(version="2025-06-18")
        c2.line(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]))
        r = c2.wait_for(lambda m: isinstance(m, dict) and "error" in m)
        self.assertEqual(r["error"]["code"], -32600)
        self.assertIn("batch", r["error"]["message"])

    def test_foreign_sessions_need_allow_foreign(self):
        other = os.path.join(self.tmp, "other.sock")
        env = dict(self.env, TMUXSESS_STATE_DIR=self.state, CLAUDE_TMUX_SOCKET_DIR=self.sockets)
        made = subprocess.run([sys.executable, TOOL, "create", "-n", "far", "-S", other],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(made.returncode, 0, made.stderr)
        c = self.start()
        r = c.call("session_health", {"session": "far"})
        self.assertTrue(r["isError"])
        self.assertIn("outside this server's socket dir", self.text(r))
        self.assertIn("hint: ", self.text(r))
        c2 = self.start("--allow-foreign")
        ok = c2.call("session_health", {"session": "far"})
        self.assertEqual(ok["structuredContent"]["status"], "healthy", ok)
        by_target = c2.call("session_health", {"socket": other, "target": "far"})
        self.assertEqual(by_target["structuredContent"]["status"], "healthy", by_target)


class McpConcurrencyTest(McpTestCase):

    def test_a_long_run_holds_up_nothing(self):
        c = self.start()
        self.python(c)
        began = time.monotonic()
        long_run = c.request("tools/call", {"name": "run", "arguments": {
            "session": "py", "code": "import time; time.sleep(5)"}})
        time.sleep(0.3)
        listed = c.rpc("tools/call", {"name": "list_sessions", "arguments": {}}, timeout=3)
        self.assertLess(time.monotonic() - began, 2.5)
        self.assertFalse(c.has_response(long_run))
        self.assertEqual(listed["result"]["structuredContent"]["total"], 1)
        interrupted = c.rpc("tools/call", {"name": "send", "arguments": {
            "session": "py", "keys": ["C-c"]}}, timeout=3)
        self.assertFalse(interrupted["result"]["isError"], interrupted)
        # (The run may answer before the send's own answer is read: it wakes
        # as soon as the KeyboardInterrupt reaches the transcript.)
        r = c.response(long_run, timeout=10)["result"]["structuredContent"]
        self.assertLess(time.monotonic() - began, 4.5)  # C-c ended it early
        self.assertIn("KeyboardInterrupt", r["output"])
        self.assertEqual(r["exit_status"], 1)

    def test_cancelled_run_gets_no_reply_and_the_session_lives_on(self):
        c = self.start()
        self.python(c)
        rid = c.request("tools/call", {"name": "run", "arguments": {
            "session": "py", "code": "import time; time.sleep(30)"}})
        time.sleep(0.5)
        c.notify("notifications/cancelled", {"requestId": rid, "reason": "test"})
        c.notify("notifications/cancelled", {"requestId": 123456})  # unknown: ignored
        c.notify("notifications/cancelled", {})  # malformed: ignored
        self.assertEqual(c.rpc("ping", timeout=3)["result"], {})
        wait_until(lambda: any("was cancelled while" in line for line in c.err), 10,
                   "the cancelled run to end")
        # What became of the program reaches the next call on the session, once.
        sent = c.call("send", {"session": "py", "keys": ["C-c"]}, timeout=5)
        self.assertFalse(sent["isError"], sent)
        self.assertIn("notice: a run on py was cancelled", self.text(sent))
        after = c.call("run", {"session": "py", "code": "print('still here')"}, timeout=20)
        self.assertEqual(after["structuredContent"]["output"], "still here\n", after)
        self.assertNotIn("notice:", self.text(after))
        time.sleep(0.3)
        self.assertFalse(c.has_response(rid))
        self.assertTrue(any("cancelled" in line for line in c.err), c.err)

    def test_progress_notifications_carry_output_so_far(self):
        c = self.start()
        self.python(c)
        rid = c.request("tools/call", {
            "name": "run", "_meta": {"progressToken": "tok-1"},
            "arguments": {"session": "py", "code": "import time\nfor i in range(4):\n"
                          "    print('step', i, flush=True); time.sleep(0.6)\n"}})
        r = c.response(rid)["result"]["structuredContent"]
        self.assertEqual(r["output"], "".join("step %d\n" % i for i in range(4)))
        with c.cond:
            order = [m for m in c.messages if m is not None]
        notes = [m for m in order if m.get("method") == "notifications/progress"]
        self.assertGreaterEqual(len(notes), 2, c.raw)
        self.assertTrue(all(n["params"]["progressToken"] == "tok-1" for n in notes))
        values = [n["params"]["progress"] for n in notes]
        self.assertEqual(values, sorted(set(values)))
        self.assertTrue(any("step 0" in n["params"]["message"] for n in notes))
        last_note = max(order.index(n) for n in notes)
        self.assertLess(last_note, order.index(next(m for m in order if m.get("id") == rid)))

    def test_eof_ends_the_server_cleanly(self):
        c = self.start()
        self.python(c, "gone")
        c.call("kill_session", {"session": "gone"})
        self.python(c, "stays")
        in_flight = [
            c.request("tools/call", {"name": "wait_for_text", "arguments": {
                "session": "stays", "pattern": "never", "timeout": 60}}),
            c.request("tools/call", {"name": "run", "arguments": {
                "session": "stays", "code": "import time; time.sleep(60)"}})]
        time.sleep(0.5)
        began = time.monotonic()
        c.proc.stdin.close()
        self.assertEqual(c.proc.wait(10), 0)
        self.assertLess(time.monotonic() - began, 5)
        with c.cond:
            c.cond.wait_for(lambda: c.messages and c.messages[-1] is None, 5)
        self.assertIsNone(c.messages[-1])  # stdout closed
        for rid in in_flight:  # cancelled by the end of input: no reply
            self.assertFalse(c.has_response(rid), c.raw)
        # Sessions outlive the server by design (the CLI and the next server see them).
        env = dict(self.env, TMUXSESS_STATE_DIR=self.state, CLAUDE_TMUX_SOCKET_DIR=self.sockets)
        listed = subprocess.run([sys.executable, TOOL, "list", "--json"], env=env,
                                stdout=subprocess.PIPE, universal_newlines=True)
        self.assertEqual([s["name"] for s in json.loads(listed.stdout)["sessions"]], ["stays"])
        subprocess.run([sys.executable, TOOL, "kill", "-s", "stays"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while (live_servers(self.tmp) or processes_mentioning(self.tmp)) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(live_servers(self.tmp), [])
        self.assertEqual(processes_mentioning(self.tmp), [])


class McpHelpTest(McpTestCase):

    def test_help_has_client_configurations(self):
        r = subprocess.run([sys.executable, TOOL, "mcp", "--help"], stdout=subprocess.PIPE,
                           universal_newlines=True, env=self.env)
        self.assertEqual(r.returncode, 0)
        for words in ("claude mcp add tmuxsess -- python3 ", "claude_desktop_config.json",
                      '"mcpServers"', ".cursor/mcp.json", "--allow-foreign", "--read-only",
                      "--state-dir", "--socket-dir", "2024-11-05", "2026-07-28"):
            self.assertIn(words, r.stdout)


class McpSdkTest(McpTestCase):
    """The official MCP Python SDK's client, as a new user's MCP client would drive
    the server (a development dependency: .ci/run installs it in a venv)."""

    def setUp(self):
        super().setUp()
        try:
            import mcp  # noqa: F401
        except ImportError:
            self.skipTest("the official MCP SDK is not installed (pip install mcp)")

    def test_sdk_client_lists_tools_and_runs_python_exactly(self):
        import asyncio
        for mode, version in (("auto", "2026-07-28"), ("legacy", "2025-11-25")):
            with self.subTest(mode=mode):
                got = asyncio.run(self._round(mode))
                self.assertEqual(got, version)

    async def _round(self, mode):
        from mcp import Client, StdioServerParameters
        tmp = tempfile.mkdtemp(dir=self.tmp)
        # The server runs on a plain interpreter: it needs no packages.
        python = getattr(sys, "_base_executable", None) or sys.executable
        params = StdioServerParameters(
            command=python, args=[TOOL, "mcp", "--state-dir", os.path.join(tmp, "state"),
                                  "--socket-dir", os.path.join(tmp, "sock")], env=self.env)
        async with Client(params, mode=mode, read_timeout_seconds=60) as client:
            self.assertIsNotNone(client.server_capabilities.tools)
            listed = await client.list_tools()
            self.assertEqual({t.name for t in listed.tools}, MCP_TOOLS)
            self.assertTrue(all(t.output_schema for t in listed.tools))
            created = await client.call_tool("create_session", {"name": "calc",
                                                                "kind": "python"})
            self.assertFalse(created.is_error, created.content)
            self.assertEqual(created.structured_content["kind"], "python")
            ran = await client.call_tool("run", {"session": "calc",
                                                 "code": "x = 6\n\nprint(x * 7)"})
            self.assertFalse(ran.is_error, ran.content)
            self.assertEqual((ran.structured_content["output"],
                              ran.structured_content["exit_status"]), ("42\n", 0))
            bad = await client.call_tool("run", {"session": "nope", "code": "1"})
            self.assertTrue(bad.is_error)
            self.assertTrue(bad.content[0].text.startswith("tmuxsess: error: "))
            killed = await client.call_tool("kill_session", {"session": "calc"})
            self.assertTrue(killed.structured_content["killed"])
            left = await client.call_tool("list_sessions", {})
            self.assertEqual(left.structured_content["total"], 0)
            return client.protocol_version


def _kill_quietly(pid):
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _figure(text):
    """Measured figures go to stderr, so CI logs keep them."""
    sys.stderr.write("\n  [stress] %s " % text)
    sys.stderr.flush()


@unittest.skipUnless(os.environ.get("TMUXSESS_STRESS") == "1",
                     "slow; run with make stress (TMUXSESS_STRESS=1)")
class StressTest(TmuxTestCase):
    """The promises that take too long for make test: make stress runs them in CI."""

    def test_concurrent_lifecycles_and_a_race_for_one_name(self):
        # 64 workers, all at once, each create -> send -> run -> kill their own
        # session (every 8th keeps it, so survivors are checked too), each step a
        # CLI process. Once 40 of them have started, 16 racers create one shared
        # name at the same instant.
        workers, racers, pool, swing_at = 64, 16, 64, 40
        kept = {"w%d" % i for i in range(0, workers, 8)}
        jobs = queue.Queue()
        for i in range(workers):
            jobs.put(i)
        swing, barrier = threading.Event(), threading.Barrier(racers)
        results = {}

        def cli(key, *args):
            r = self.exe(*args, timeout=170)
            results.setdefault(key, []).append(r)
            return r

        def lifecycle(i):
            name = "w%d" % i
            python = i % 2 == 1
            say = (lambda w: 'print("%s-%s")' % (w, name)) if python else (
                lambda w: "echo %s-%s" % (w, name))
            steps = [("create", "-n", name) + (("--python",) if python else ()),
                     ("send", "-s", name, "-c", say("sent"), "-F", "-w", "sent-" + name,
                      "-T", "120"),
                     ("run", "-s", name, "-T", "120", "-c", say("ran"))]
            if name not in kept:
                steps.append(("kill", "-s", name))
            for step in steps:
                if cli(name, *step).returncode != 0:
                    return

        def worker():
            while True:
                try:
                    i = jobs.get_nowait()
                except queue.Empty:
                    return
                if i == swing_at:
                    swing.set()
                lifecycle(i)

        def racer(i):
            swing.wait(170)
            barrier.wait(170)
            cli("racer%d" % i, "create", "-n", "shared")

        server_pids, over = set(), threading.Event()

        def watch_server():
            while not over.wait(0.2):
                r = self.tmux("display-message", "-p", "#{pid}")
                if r.returncode == 0:
                    server_pids.add(r.stdout.strip())

        began = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(pool)]
        threads += [threading.Thread(target=racer, args=(i,)) for i in range(racers)]
        watcher = threading.Thread(target=watch_server)
        for t in threads + [watcher]:
            t.start()
        for t in threads:
            t.join(180)
        over.set()
        watcher.join(10)
        elapsed = time.monotonic() - began
        self.assertFalse(any(t.is_alive() for t in threads), "workers still running")

        everything = [r for rs in results.values() for r in rs]
        for r in everything:
            self.assertNotIn("Traceback", r.stderr, r.args)
        # Every failed step at once, and whether the server was the same throughout
        # (one that crashed or exited would take every session along).
        failed = ["%s: %s" % (r.args[2:], r.stderr.strip())
                  for i in range(workers) for r in results.get("w%d" % i, [])
                  if r.returncode != 0]
        self.assertFalse(failed, "%d steps failed; tmux server pids seen: %s:\n%s" % (
            len(failed), sorted(server_pids), "\n".join(failed)))
        for i in range(workers):
            name = "w%d" % i
            rs = results.get(name, [])
            self.assertEqual(len(rs), 3 if name in kept else 4, name)
            self.assertEqual(rs[2].stdout, "ran-%s\n" % name)
        codes = sorted(results["racer%d" % i][0].returncode for i in range(racers))
        self.assertEqual(codes, [0] + [2] * (racers - 1))
        winner = next(json.loads(results["racer%d" % i][0].stdout) for i in range(racers)
                      if results["racer%d" % i][0].returncode == 0)

        # The registry: valid, each name once, exactly the survivors, each alive.
        pairs = []
        with open(self.reg_path) as f:
            doc = json.load(f, object_pairs_hook=lambda kv: pairs.append(kv) or dict(kv))
        for kv in pairs:
            keys = [k for k, _ in kv]
            self.assertEqual(len(keys), len(set(keys)), "a key appears twice")
        survivors = kept | {"shared"}
        self.assertEqual(set(doc["sessions"]), survivors)
        self.assertEqual(doc["sessions"]["shared"]["pane_id"], winner["pane_id"])
        panes = self.tmux("list-panes", "-a", "-F",
                          "#{session_name} #{pane_id} #{pane_dead}").stdout.split()
        live = {(panes[i], panes[i + 1]) for i in range(0, len(panes), 3)
                if panes[i + 2] == "0"}
        self.assertEqual(live, {(n, doc["sessions"][n]["pane_id"]) for n in survivors})
        for name in survivors:
            self.assertEqual(tmuxsess.pane_health(session=name).status, "healthy", name)
        left = os.listdir(os.path.join(self.state, "transcripts"))
        self.assertEqual(len(left), len(survivors), left)  # killed ones took theirs along
        self.assertEqual([n for n in os.listdir(self.state) if ".tmp-" in n], [])
        _figure("%d CLI processes (%d workers x create/send/run[/kill], %d at a time, "
                "+ %d racers) in %.1f s; 1 winner, %d registered, 0 tracebacks" % (
                    len(everything), workers, pool, racers, elapsed, len(survivors)))

    def test_sigkilled_writer_never_breaks_the_registry_or_the_lock(self):
        # A forked writer commits entries through the API in a loop and prints each
        # name once its transaction returned; we SIGKILL it at a random moment.
        reg = tmuxsess.Registry()
        path = reg.path
        rng = random.Random(5)
        committed, rounds, interrupted = set(), 200, 0
        began = time.monotonic()
        for round_ in range(rounds):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the writer: never returns into unittest
                try:
                    os.close(read_end)
                    i = 0
                    while True:
                        name = "r%d-%d" % (round_, i)
                        with reg.transaction() as doc:
                            doc["sessions"][name] = {"socket": "/nowhere.sock",
                                                     "target": name + ":0.0",
                                                     "type": "shell", "pid": i}
                        os.write(write_end, name.encode() + b"\n")
                        i += 1
                finally:
                    os._exit(1)
            os.close(write_end)
            self.addCleanup(_kill_quietly, pid)
            time.sleep(rng.uniform(0, 0.025))  # the random kill point is the point
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            # Killed between creating its temp file and os.replace: litter (the
            # next writer sweeps it), never the registry.
            interrupted += any(".tmp-" in n for n in os.listdir(self.state))
            with os.fdopen(read_end, "rb") as f:
                printed = f.read().decode().split()
            committed.update(printed)
            if not committed:
                continue
            with open(path, "rb") as f:
                raw = f.read()
            try:
                doc = json.loads(raw.decode("utf-8"))  # valid JSON, always
            except ValueError as e:
                self.fail("round %d: registry is not valid JSON (%s): %r" % (
                    round_, e, raw[:200]))
            self.assertEqual(set(doc), {"version", "sessions"})
            missing = committed - set(doc["sessions"])
            self.assertEqual(missing, set(), "round %d lost committed entries" % round_)
            # The lock died with its holder: a fresh open takes it without waiting.
            t0 = time.monotonic()
            with reg.lock(timeout=0):
                pass
            self.assertLess(time.monotonic() - t0, 1.0)
        self.assertGreater(len(committed), 20)  # the writer got to write (load varies)
        # Some kills must have landed mid-write, or the test proved little.
        self.assertGreater(interrupted, 0)
        # The CLI reads what the killed writers left like any registry; its next
        # write sweeps the litter.
        r = self.cli("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(json.loads(r.stdout)["total"], len(committed))
        with reg.transaction() as doc:
            doc["sessions"]["swept"] = {"socket": "/nowhere.sock", "target": "swept:0.0"}
        self.assertEqual([n for n in os.listdir(self.state) if ".tmp-" in n], [])
        _figure("%d SIGKILLs, %d entries committed and all kept, %d kills left a "
                "temp file (killed mid-write), %.1f s" % (
                    rounds, len(committed), interrupted, time.monotonic() - began))

    def test_50mb_of_output_neither_hangs_nor_grows_the_tool(self):
        self.api_create("sh")
        # The final echo ends the last line: a prompt would share it otherwise.
        big = "head -c 50000000 /dev/zero | tr '\\0' x | fold -w 100; echo"
        line = b"x" * 100
        rc, _, err, small, _ = self.peak("run", "-s", "sh", "-c", "echo hi")
        self.assertEqual(rc, 0, err)

        rc, out, err, run_kib, run_s = self.peak("run", "-s", "sh", "-T", "120", "-c", big)
        self.assertEqual(rc, 0, err)
        self.assertLess(run_s, 60)
        with open(out, "rb") as f:
            notice = f.readline()
            rest = f.read()
        m = re.match(rb"\[tmuxsess: (\d+) earlier bytes of output omitted; all of it is "
                     rb"in 'capture --transcript'\]\n\Z", notice)
        self.assertTrue(m, notice[:200])
        self.assertGreater(int(m.group(1)), 48000000)
        self.assertLessEqual(len(rest), 1 << 20)  # the default cap, 1 MiB
        self.assertGreater(len(rest), 1 << 19)
        self.assertEqual(set(rest.split(b"\n")), {line, b""})  # whole lines, the last ones
        self.assertTrue(rest.endswith(line + b"\n"))
        self.assertLess(run_kib - small, 16 * 1024, "run grew by %d KiB" % (run_kib - small))

        rc, out, err, wait_kib, wait_s = self.peak(
            "send", "-s", "sh", "-T", "120", "-w", "END-42", "-c", big + "; echo END-$((6*7))")
        self.assertEqual(rc, 0, err)
        self.assertLess(wait_kib - small, 16 * 1024, "send -w grew by %d KiB" % (
            wait_kib - small))

        rc, out, err, cap_kib, cap_s = self.peak("capture", "-s", "sh", "--transcript")
        self.assertEqual(rc, 0, err)
        lines = 0
        with open(out, "rb") as f:
            for row in f:
                lines += row == line + b"\n"
        self.assertEqual(lines, 2 * 500000)  # both 50 MB outputs, every line
        self.assertLess(cap_kib - small, 16 * 1024, "capture grew by %d KiB" % (
            cap_kib - small))

        # --max-output overrides the cap: 0 keeps everything, exactly.
        full = "".join("%d\n" % i for i in range(1, 300001))
        r = self.cli("run", "-s", "sh", "-c", "seq 1 300000")
        self.assertTrue(r.stdout.startswith("[tmuxsess: "), r.stdout[:80])
        self.assertTrue(full.endswith(r.stdout.split("\n", 1)[1]))
        r = self.cli("run", "-s", "sh", "--max-output", "0", "-c", "seq 1 300000")
        self.assertEqual((r.returncode, r.stdout), (0, full))
        _figure("50 MB: run %.1f s, peak RSS %d KiB; send -w %.1f s, %d KiB; capture "
                "--transcript (100 MB) %.1f s, %d KiB; tiny run %d KiB" % (
                    run_s, run_kib, wait_s, wait_kib, cap_s, cap_kib, small))

    def test_a_thousand_sequential_runs_return_exactly_their_own_output(self):
        self.api_create("py", "python-repl")
        began = time.monotonic()
        wrong = []
        for i in range(1000):
            r = tmuxsess.run("print(%d)" % i, session="py", timeout=30)
            if (r.output, r.exit_status) != ("%d\n" % i, 0):
                wrong.append((i, r.output, r.exit_status, r.timed_out))
        self.assertEqual(wrong, [])
        _figure("1000 runs, 0 mismatches, %.1f s" % (time.monotonic() - began))


# ===========================================================================
# Running the suite: the classes are spread over a few processes (most of the
# time goes to waiting on tmux and programs, not to the CPU)
# ===========================================================================


# Classes whose tests each drive programs for seconds: one process per test.
SLOW_CLASSES = ("FullScreenTest", "WaitingForInputTest", "ReadmeExamplesTest",
                "McpConcurrencyTest", "CorpusTest", "CanonicalDeliveryTest", "ConcurrencyTest",
                "RelayTest", "NodeTest", "EventLoopTest", "OtherSessionTest", "ExactOrRefusedTest",
                "ZshKindTest", "FishKindTest", "IPythonKindTest", "FarSideTest", "FarCopyTest",
                "FarFailureTest", "FarConnectionTest", "FarViaTest", "FarInterruptTest",
                "FarMcpTest")
# The longest of them (20-40 s each) start first, so that none is left to run alone.
FIRST_CLASSES = ("ReadmeExamplesTest", "CorpusTest", "FullScreenTest")


def _test_classes(names=None):
    """This module's TestCase classes (with tests), or those named."""
    found = [obj for obj in globals().values()
             if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
             and unittest.defaultTestLoader.getTestCaseNames(obj)]
    return [c for c in found if names is None or c.__name__ in names]


CLASS_PROCESS = ("import sys; sys.pycache_prefix, sys.dont_write_bytecode = sys.argv.pop(1), "
                 "False; import unittest; unittest.main(module=None)")


def _run_class(name):
    """One class in its own process: (name, exit code, output, tests, skips with
    their reasons, failures, seconds)."""
    began = time.monotonic()
    # The class's process compiles this file and the tool once for the run (a
    # machine may turn bytecode writing off); its children are as the machine has them.
    r = subprocess.run([sys.executable, "-c", CLASS_PROCESS, os.path.join(shared_cache(), "pyc"),
                        "-v", "test_tmuxsess." + name],
                       cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    ran = re.search(r"^Ran (\d+) tests?", r.stdout, re.M)
    # "test_x (test_tmuxsess.Class.test_x) ... skipped 'why'", or a whole class's
    # (a subtest's line is indented and names its parameters).
    skips = re.findall(r"^ *(\w+) \(test_tmuxsess\.([\w.]+)\)( \(.*\))? \.\.\. "
                       r"skipped '(.*)'$", r.stdout, re.M)
    skips = ["%s%s: %s" % (where.rsplit(".", 1)[0] + "." + test if test.startswith("test")
                           else where, params, why) for test, where, params, why in skips]
    bad = re.search(r"FAILED \((?:failures=(\d+))?(?:, )?(?:errors=(\d+))?", r.stdout)
    failed = sum(int(x or 0) for x in bad.groups()) if bad else (0 if r.returncode == 0 else 1)
    return (name, r.returncode, r.stdout, int(ran.group(1)) if ran else 0, skips, failed,
            time.monotonic() - began)


def main(argv):
    """``test_tmuxsess.py [-j N] [-v] [Class ...]``: the suite, N processes at once."""
    import argparse
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("TEST_JOBS") or 3))
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("classes", nargs="*")
    a = p.parse_args(argv)
    # Longest first: the slowest classes test by test, then the rest by size.
    classes = sorted(_test_classes(a.classes or None), key=lambda c: -len(
        unittest.defaultTestLoader.getTestCaseNames(c)))
    classes.sort(key=lambda c: c.__name__ not in FIRST_CLASSES)  # stable: sizes kept
    jobs = ["%s.%s" % (c.__name__, m) for c in classes if c.__name__ in SLOW_CLASSES
            for m in unittest.defaultTestLoader.getTestCaseNames(c)]
    jobs += [c.__name__ for c in classes if c.__name__ not in SLOW_CLASSES]
    began = time.monotonic()
    shared_cache()  # one for every class process
    totals, skipped = [0, 0], []
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as pool:
        for name, code, out, ran, skips, failed, took in pool.map(_run_class, jobs):
            if a.verbose or code:
                sys.stdout.write(out)
            print("%-60s %3d tests %6.1fs%s" % (name, ran, took, "" if not code else
                                                "  FAILED"), flush=True)
            totals = [totals[0] + ran, totals[1] + failed]
            skipped += skips
    print("\nRan %d tests in %.1fs with %d processes" % (totals[0], time.monotonic() - began,
                                                       a.jobs))
    totals.append(len(skipped))
    for line in sorted(skipped):
        print("skipped " + line)
    print("%d passed, %d failed, %d skipped" % (totals[0] - totals[1] - totals[2], totals[1],
                                               totals[2]))
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
