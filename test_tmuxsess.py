"""Tests for tmuxsess.py against a real tmux.

Every test gets its own state dir and socket dir in a temp dir (through
TMUXSESS_STATE_DIR and CLAUDE_TMUX_SOCKET_DIR) and kills every tmux server
whose socket lies under that temp dir, even when it fails.

Run:  python3 -m unittest -v test_tmuxsess
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "tmuxsess.py")
sys.path.insert(0, HERE)
import tmuxsess  # noqa: E402,F401  (tests call its functions too)


def wait_until(predicate, timeout=10.0, what="condition"):
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


class TmuxTestCase(unittest.TestCase):
    """Isolated dirs per test; every server started under them is killed."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tmuxsess-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(self.kill_servers)
        self.state = os.path.join(self.tmp, "state")
        self.sockets = os.path.join(self.tmp, "sock")
        self.socket = os.path.join(self.sockets, "claude.sock")
        # TMUX_TMPDIR keeps tmux's default server and -L sockets in here too.
        self.env = dict(os.environ, TMUXSESS_STATE_DIR=self.state,
                        CLAUDE_TMUX_SOCKET_DIR=self.sockets,
                        TMUX_TMPDIR=os.path.join(self.tmp, "tmux-default"))
        for name in ("TMUX", "TMUX_PANE", "TMUXSESS_TMUX", "TMUXSESS_LOCK_TIMEOUT"):
            self.env.pop(name, None)
        os.mkdir(self.env["TMUX_TMPDIR"], 0o700)
        patcher = mock.patch.dict(os.environ, self.env, clear=True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def kill_servers(self):
        for root, _dirs, files in os.walk(self.tmp):
            for name in files:
                path = os.path.join(root, name)
                try:
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        subprocess.run(["tmux", "-S", path, "kill-server"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                except OSError:
                    pass

    # -- helpers ----------------------------------------------------------
    def cli(self, *args, input=None, env=None, timeout=60):
        """Run the tool as a user would; returns CompletedProcess with text."""
        return subprocess.run([sys.executable, TOOL] + [str(a) for a in args],
                              input=input, env=env or self.env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)

    def ok(self, *args, **kw):
        r = self.cli(*args, **kw)
        self.assertEqual(r.returncode, 0, "%s failed:\n%s%s" % (args, r.stdout, r.stderr))
        return r

    def create(self, name, *flags):
        r = self.ok("create", "-n", name, *flags)
        return json.loads(r.stdout)

    def registry(self):
        with open(os.path.join(self.state, ".sessions.json")) as f:
            return json.load(f)

    def tmux(self, *args, socket=None):
        return subprocess.run(["tmux", "-S", socket or self.socket] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)

    def assertNoTraceback(self, r):
        self.assertNotIn("Traceback", r.stderr)


class SmokeTest(TmuxTestCase):
    def test_python_session_round_trip(self):
        rec = self.create("py", "--python")
        self.assertEqual(rec["type"], "python-repl")
        r = self.ok("run", "-s", "py", "-c", "print(6*7)")
        self.assertEqual(r.stdout, "42\n")
        self.ok("kill", "-s", "py")
        self.assertEqual(self.registry()["sessions"], {})


# ==== robust tests ====
# Issue 5's promises at a scale that fits the normal suite: a corrupt registry
# and repair, hostile names, filesystem attacks, faults during a call, modest
# concurrency and SIGKILLed writers. (The long versions are the stress class.)

import contextlib  # noqa: E402  (here, not at the top: keeps branch merges simple)
import fcntl  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import uuid  # noqa: E402


def in_process(*args):
    """The CLI (tmuxsess.main) without an interpreter start: (code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tmuxsess.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def is_private_regular(path):
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


class RobustCase(TmuxTestCase):
    """Helpers shared by the robust tests."""

    def setUp(self):
        super().setUp()
        self.reg_path = os.path.join(self.state, ".sessions.json")
        self.lock_path = os.path.join(self.state, ".sessions.lock")

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

    def api_create(self, name, kind="shell", **kw):
        return tmuxsess.create_session(name, kind, ready_timeout=30, **kw)

    def read_bytes(self, path):
        with open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path, data):
        with open(path, "wb") as f:
            f.write(data)

    def alive(self, name, socket=None):
        return self.tmux("has-session", "-t", "=" + name, socket=socket).returncode == 0

    def tmux_sessions(self, socket=None):
        r = self.tmux("list-sessions", "-F", "#{session_name}", socket=socket)
        return set(r.stdout.split()) if r.returncode == 0 else set()

    def logging_tmux(self):
        """A tmux wrapper that logs every call; returns (wrapper path, log path)."""
        log = os.path.join(self.tmp, "tmux-calls.log")
        wrapper = os.path.join(self.tmp, "logging-tmux")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\necho "$*" >> %s\nexec %s "$@"\n' % (
                shlex.quote(log), shlex.quote(shutil.which("tmux"))))
        os.chmod(wrapper, 0o755)
        return wrapper, log

    def calls(self, log):
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return f.read().splitlines()

    def state_files(self):
        """Every file under the state dir, as paths relative to it."""
        found = []
        for root, _dirs, files in os.walk(self.state):
            for name in files:
                found.append(os.path.relpath(os.path.join(root, name), self.state))
        return sorted(found)

    def popen(self, *args, **kw):
        p = subprocess.Popen([sys.executable, TOOL] + [str(a) for a in args], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, **kw)
        self.addCleanup(self._reap, p)
        return p

    def _reap(self, p):
        if p.poll() is None:
            p.kill()
        p.communicate()

    def has_open(self, pid, path):
        """Whether process ``pid`` has ``path`` open (the follower is waiting on it)."""
        fd_dir = "/proc/%d/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(os.path.join(fd_dir, fd)) == path:
                        return True
        except OSError:
            pass
        return False


CORRUPTIONS = [
    # (label, bytes, what the error must say)
    ("empty", b"", "the file is empty"),
    ("truncated", b'{"version": "1.0", "sessions": {"a": {"socket": "/tm', "invalid JSON"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\xff\xfe garbage \x80\x81", "not UTF-8"),
    ("sessions-list", b'{"version": "1.0", "sessions": []}\n', '"sessions" is a list'),
    ("entry-not-object", b'{"version": "1.0", "sessions": {"a": 5}}\n',
     "session 'a' is a int"),
    ("unknown-version", b'{"version": "2.0", "sessions": {}}\n', "unknown version '2.0'"),
    ("top-level-list", b"[]\n", "top level is a list"),
]

# Every command that reads the registry, with its documented exit code.
REGISTRY_READERS = [
    (("list",), 1), (("list", "--json"), 1), (("create", "-n", "b"), 4),
    (("send", "-s", "a", "-c", "x"), 4), (("send", "-c", "x"), 4),
    (("run", "-s", "a", "-c", "true"), 126), (("kill", "-s", "a"), 2),
    (("cleanup",), 1), (("cleanup", "--all"), 1), (("health", "-s", "a"), 1),
    (("capture", "-s", "a"), 1), (("capture", "--transcript", "-s", "a"), 1),
    (("wait", "-s", "a", "-p", "x", "-T", "1"), 1), (("attach", "-s", "a"), 1),
]


class CorruptRegistryTest(RobustCase):
    def setUp(self):
        super().setUp()
        self.rec = self.api_create("a")

    def test_every_reader_names_file_and_problem_and_never_writes(self):
        for label, data, problem in CORRUPTIONS:
            self.write_bytes(self.reg_path, data)
            for args, code in REGISTRY_READERS:
                with self.subTest(corruption=label, args=args):
                    rc, _out, err = in_process(*args)
                    self.assertEqual(rc, code, err)
                    self.assertOneLineError(err, "registry %s is corrupt" % self.reg_path,
                                            problem)
                    self.assertIn("repair", err)
                    self.assertEqual(self.read_bytes(self.reg_path), data)
            # The real executable says the same.
            r = self.cli("list")
            self.assertEqual(r.returncode, 1)
            self.assertOneLineError(r.stderr, self.reg_path, problem)
            self.assertEqual(self.read_bytes(self.reg_path), data)
        # kill and cleanup --all refused: the session was never touched.
        self.assertTrue(self.alive("a"))
        self.assertEqual(sorted(os.listdir(self.state)),
                         [".sessions.json", ".sessions.lock", "init", "transcripts"])

    def test_repair_moves_each_kind_aside_and_rebuilds(self):
        for label, data, _problem in CORRUPTIONS:
            with self.subTest(corruption=label):
                self.write_bytes(self.reg_path, data)
                r = tmuxsess.repair()
                self.assertTrue(r["corrupt"])
                self.assertEqual(self.read_bytes(r["moved_to"]), data)
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
        self.write_bytes(self.reg_path, garbage)

        r = self.ok("repair")
        self.assertIn("moved it to", r.stdout)
        moved = [n for n in os.listdir(self.state) if n.startswith(".sessions.json.corrupt-")]
        self.assertEqual(len(moved), 1)
        self.assertRegex(moved[0], r"^\.sessions\.json\.corrupt-\d{8}T\d{6}Z$")
        self.assertEqual(self.read_bytes(os.path.join(self.state, moved[0])), garbage)
        self.assertTrue(is_private_regular(self.reg_path))
        after = self.registry()["sessions"]
        # Registered sessions come back; foreign and --no-register ones do not.
        self.assertEqual(sorted(after), ["a", "other", "py"])
        for name in after:
            for key in ("socket", "pane_id", "type", "transcript", "created_at", "pid"):
                self.assertEqual(after[name][key], before[name][key], (name, key))
        self.assertEqual(after["other"]["socket"], other["socket"])
        self.assertEqual(after["py"]["type"], py["type"])
        # The rebuilt entries work by name.
        self.assertEqual(self.ok("run", "-s", "py", "-c", "print(6*7)").stdout, "42\n")
        self.assertEqual(tmuxsess.run("echo $((6*7))", session="other", timeout=20).output,
                         "42\n")
        self.ok("kill", "-s", "a")
        self.assertFalse(self.alive("a"))
        self.assertNotIn("a", self.registry()["sessions"])

    def test_repair_of_a_healthy_registry_changes_nothing(self):
        self.api_create("loose", register=False)   # a naive repair would adopt it
        before = os.stat(self.reg_path)
        data = self.read_bytes(self.reg_path)
        r = self.ok("repair")
        self.assertIn("nothing changed", r.stdout)
        after = os.stat(self.reg_path)
        self.assertEqual(self.read_bytes(self.reg_path), data)
        self.assertEqual((after.st_mtime_ns, after.st_ino), (before.st_mtime_ns, before.st_ino))
        self.assertEqual([n for n in os.listdir(self.state) if "corrupt" in n], [])

    def test_repair_without_a_registry(self):
        os.unlink(self.reg_path)
        r = tmuxsess.repair()
        self.assertTrue(r["missing"])
        self.assertEqual(r["sessions"], ["a"])   # a lost cache is rebuilt from tmux
        self.assertEqual(self.registry()["sessions"]["a"]["pane_id"], self.rec["pane_id"])
        self.ok("kill", "-s", "a")
        os.unlink(self.reg_path)
        r = self.ok("repair")                   # nothing to adopt: nothing written
        self.assertIn("nothing changed", r.stdout)
        self.assertFalse(os.path.exists(self.reg_path))

    def test_repair_with_tmux_missing_moves_nothing(self):
        self.write_bytes(self.reg_path, b"{")
        os.environ["TMUXSESS_TMUX"] = os.path.join(self.tmp, "no-such-tmux")
        rc, _out, err = in_process("repair")
        self.assertEqual(rc, 1)
        self.assertOneLineError(err, "tmux not found")
        self.assertEqual(self.read_bytes(self.reg_path), b"{")
        self.assertEqual([n for n in os.listdir(self.state) if "corrupt" in n], [])


HOSTILE_NAMES = [
    ":", ".", "a:b", "a.b", "a b", " a", "a\nb", "a\tb", "-a", "-", "--", "x" * 65, "..",
    "/", "a/b", "café", "\U0001F600", "$(x)", "`x`", ";", "a;", "#{x}", "", "*", "%1",
    "=x", "~", "a'b", 'a"b', "\\", "{}", "!", "@x", "a\rb", "\x1b[31m",
]


class HostileNameTest(RobustCase):
    def setUp(self):
        super().setUp()
        self.api_create("ok")
        self.wrapper, self.log = self.logging_tmux()
        os.environ["TMUXSESS_TMUX"] = self.wrapper

    def test_control_the_wrapper_sees_tmux_calls(self):
        rc, _out, err = in_process("health", "-s", "ok")
        self.assertEqual(rc, 0, err)
        self.assertTrue(self.calls(self.log))

    def test_create_refuses_before_any_tmux_call(self):
        data = self.read_bytes(self.reg_path)
        transcripts = sorted(os.listdir(os.path.join(self.state, "transcripts")))
        for name in HOSTILE_NAMES + ["a\x00b", "\x00"]:
            with self.subTest(name=name):
                with self.assertRaises(tmuxsess.TmuxsessError) as cm:
                    tmuxsess.create_session(name)
                self.assertEqual(cm.exception.kind, "usage")
                self.assertIn("invalid session name", cm.exception.message)
                if "\x00" not in name:
                    rc, _out, err = in_process("create", "-n", name)
                    self.assertEqual(rc, 1, err)
                    self.assertOneLineError(err, "invalid session name")
        r = self.cli("create", "-n", "a\nb")
        self.assertEqual(r.returncode, 1)
        self.assertOneLineError(r.stderr, "invalid session name")
        self.assertEqual(self.calls(self.log), [])
        self.assertEqual(self.read_bytes(self.reg_path), data)
        self.assertEqual(sorted(os.listdir(os.path.join(self.state, "transcripts"))),
                         transcripts)
        self.assertEqual(self.tmux_sessions(), {"ok"})

    def test_session_flag_refuses_before_any_tmux_call(self):
        # Register every hostile name (as a hand-edited or old registry might), all
        # pointing at a live pane: skipping the check would reach tmux.
        doc = self.registry()
        entry = doc["sessions"]["ok"]
        for name in HOSTILE_NAMES:
            doc["sessions"][name] = dict(entry)
        self.write_bytes(self.reg_path, json.dumps(doc).encode())
        data = self.read_bytes(self.reg_path)
        commands = [(("run", "-c", "echo pwned"), 126), (("send", "-c", "echo pwned"), 4),
                    (("kill",), 3), (("health",), 1), (("capture",), 1),
                    (("wait", "-p", "x", "-T", "1"), 1), (("attach",), 1),
                    (("send", "-S", self.socket, "-c", "x"), 4),
                    (("health", "-S", self.socket, "-t", "ok"), 1)]
        for name in HOSTILE_NAMES:
            for args, code in commands:
                with self.subTest(name=name, args=args):
                    rc, _out, err = in_process(*(args + ("-s", name)))
                    self.assertEqual(rc, code, err)
                    self.assertOneLineError(err, "invalid session name")
        for fn in (lambda n: tmuxsess.run("echo pwned", session=n),
                   lambda n: tmuxsess.send("echo pwned", session=n),
                   lambda n: tmuxsess.kill_session(session=n),
                   lambda n: tmuxsess.pane_health(session=n),
                   lambda n: tmuxsess.wait_for_text("x", session=n, timeout=1),
                   lambda n: tmuxsess.capture(session=n)):
            with self.assertRaises(tmuxsess.TmuxsessError) as cm:
                fn("ok\x00")
            self.assertIn("invalid session name", cm.exception.message)
        r = self.cli("kill", "-s", "-ok")
        self.assertEqual(r.returncode, 3)
        self.assertOneLineError(r.stderr, "invalid session name")
        self.assertEqual(self.calls(self.log), [])
        self.assertEqual(self.read_bytes(self.reg_path), data)
        self.assertTrue(self.alive("ok"))
        self.assertNotIn("pwned", tmuxsess.capture(session="ok"))


class FilesystemAttackTest(RobustCase):
    def victim(self, data=b"victim\n"):
        path = os.path.join(self.tmp, "victim")
        self.write_bytes(path, data)
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
                    rc, _out, err = in_process(*args)
                    self.assertEqual(rc, 1)
                    self.assertOneLineError(err, "refusing socket dir")
                self.assertEqual(os.listdir(self.sockets), [])
                os.rmdir(self.sockets)
        self.assertFalse(os.path.exists(self.reg_path))

    def test_socket_dir_made_writable_later_is_not_used(self):
        self.api_create("a")
        os.chmod(self.sockets, 0o777)   # someone could now swap in their own server
        wrapper, log = self.logging_tmux()
        os.environ["TMUXSESS_TMUX"] = wrapper
        for args, code in ((("run", "-s", "a", "-c", "echo pwned"), 126),
                           (("send", "-s", "a", "-c", "echo pwned"), 4),
                           (("list",), 1), (("repair",), 0)):
            rc, _out, err = in_process(*args)
            self.assertEqual(rc, code, err)
            if code:
                self.assertOneLineError(err, "refusing socket dir")
        self.assertEqual(self.calls(log), [])

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
        rc, _out, err = in_process("list")
        self.assertEqual(rc, 1)
        self.assertOneLineError(err, "refusing state dir", "owned by uid 12345")
        self.assertEqual(os.listdir(self.state), [])
        self.assertEqual(self.tmux_sessions(), set())

    def test_planted_registry_in_open_state_dir_is_not_used(self):
        # Someone else's server and a registry pointing at it, in a state dir
        # anyone may write to: nothing must be typed into that server.
        evil_sock = os.path.join(self.tmp, "evil.sock")
        marker = os.path.join(self.tmp, "pwned")
        self.assertEqual(self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "evil",
                                   socket=evil_sock).returncode, 0)
        wrapper, log = self.logging_tmux()
        os.environ["TMUXSESS_TMUX"] = wrapper
        os.mkdir(self.state)
        os.chmod(self.state, 0o777)
        self.write_bytes(self.reg_path, json.dumps({"version": "1.0", "sessions": {"evil": {
            "socket": evil_sock, "target": "evil:0.0", "type": "shell"}}}).encode())
        for args, code in ((("run", "-s", "evil", "-c", "touch " + marker), 126),
                           (("send", "-c", "touch " + marker), 4), (("list",), 1),
                           (("create", "-n", "a"), 4)):
            rc, _out, err = in_process(*args)
            self.assertEqual(rc, code, err)
            self.assertOneLineError(err, "refusing state dir", "writable")
        self.assertEqual(self.calls(log), [])   # so nothing can have been typed there
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
        rc, _out, err = in_process("list")
        self.assertEqual(rc, 1)
        self.assertOneLineError(err, "is a symlink")
        self.assertEqual(os.listdir(target), [])
        os.unlink(self.state)
        # The transcripts dir inside it too.
        os.makedirs(self.state, 0o700)
        os.symlink(target, os.path.join(self.state, "transcripts"))
        self.assertRefused(self.cli("create", "-n", "a"), 4, "transcripts", "is a symlink")
        self.assertEqual(os.listdir(target), [])
        self.assertEqual(self.tmux_sessions(), set())

    def test_symlink_at_registry_path_is_never_followed(self):
        good = json.dumps({"version": "1.0", "sessions": {}}).encode()
        victim = self.victim(good)
        os.makedirs(self.state, 0o700)
        os.symlink(victim, self.reg_path)
        for args, code in ((("create", "-n", "a"), 4), (("list",), 1)):
            rc, _out, err = in_process(*args)
            self.assertEqual(rc, code, err)
            self.assertOneLineError(err, self.reg_path, "is a symlink")
        self.assertEqual(self.tmux_sessions(), set())
        r = tmuxsess.repair()
        self.assertTrue(os.path.islink(r["moved_to"]))
        self.assertTrue(is_private_regular(self.reg_path))
        self.ok("create", "-n", "a")
        self.assertEqual(self.read_bytes(victim), good)
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
        self.assertEqual(self.read_bytes(victim), b"victim\n")
        self.assertFalse(os.path.exists(victim + "-missing"))
        self.assertEqual(self.tmux_sessions(), set())
        self.assertFalse(os.path.exists(self.reg_path))

    def test_symlink_at_transcript_path_is_never_followed(self):
        victim = self.victim()
        fixed = uuid.UUID(int=0xABCDEF)
        transcripts = os.path.join(self.state, "transcripts")
        os.makedirs(transcripts, 0o700)
        os.symlink(victim, os.path.join(transcripts, "a.%s.log" % fixed.hex[:12]))
        with mock.patch.object(tmuxsess.uuid, "uuid4", return_value=fixed):
            with self.assertRaises(tmuxsess.TmuxsessError) as cm:
                tmuxsess.create_session("a")
        self.assertIn("cannot create transcript", cm.exception.message)
        self.assertEqual(self.tmux_sessions(), set())
        self.assertFalse(os.path.exists(self.reg_path))
        # A live session's transcript swapped for a link: kill removes the link only.
        rec = self.api_create("b")
        os.unlink(rec["transcript"])
        os.symlink(victim, rec["transcript"])
        self.ok("kill", "-s", "b")
        self.assertFalse(os.path.lexists(rec["transcript"]))
        self.assertEqual(self.read_bytes(victim), b"victim\n")

    def test_registry_mode_is_fixed_to_0600(self):
        self.api_create("a")
        os.chmod(self.reg_path, 0o644)
        rc, out, err = in_process("list")
        self.assertEqual(rc, 0, err)
        self.assertIn("a ", out)
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
                r = self.cli("list", timeout=20)   # a FIFO must not hang it
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


class FaultTest(RobustCase):
    def test_tmux_missing_is_a_clear_error_and_changes_nothing(self):
        self.api_create("a")
        data = self.read_bytes(self.reg_path)
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
                        rc, _out, err = in_process(*args)
                        self.assertEqual(rc, code, err)
                        self.assertOneLineError(err, "tmux not found")
        r = self.cli("kill", "-s", "a", env=dict(self.env, PATH=no_tmux))
        self.assertEqual(r.returncode, 2)
        self.assertOneLineError(r.stderr, "tmux not found")
        # Nothing was deregistered or killed for want of tmux.
        self.assertEqual(self.read_bytes(self.reg_path), data)
        self.assertTrue(self.alive("a"))

    def _kill_server_during(self, name, args, code, expect):
        sock = os.path.join(self.sockets, name + ".sock")
        rec = self.api_create(name, socket=sock)
        if args[0] == "wait":
            tmuxsess.send("sleep 60", session=name)
        p = self.popen(*args)
        wait_until(lambda: self.has_open(p.pid, rec["transcript"]), 20,
                   "%s to follow the transcript" % args[0])
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
        p = self.popen(*args)
        wait_until(lambda: self.has_open(p.pid, rec["transcript"]), 20, "the follower")
        wait_until(lambda: "started" in tmuxsess.capture(session=name), 20, "started")
        self.assertEqual(self.tmux("send-keys", "-t", rec["pane_id"], "Enter").returncode, 0)
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
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys, time\n"
             "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n",
             self.lock_path], stdout=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(self._reap, holder)
        self.assertEqual(holder.stdout.readline(), "held\n")
        return holder

    def test_lock_held_by_a_stuck_process(self):
        self.api_create("a")
        data = self.read_bytes(self.reg_path)
        self.hold_lock()
        os.environ["TMUXSESS_LOCK_TIMEOUT"] = "0.5"
        for args in (("create", "-n", "b"), ("kill", "-s", "a"), ("cleanup", "--all"),
                     ("repair",)):
            with self.subTest(args=args):
                began = time.monotonic()
                rc, _out, err = in_process(*args)
                took = time.monotonic() - began
                self.assertEqual(rc, 75, err)
                self.assertOneLineError(err, self.lock_path, "gave up after 0.5s")
                self.assertGreaterEqual(took, 0.5)
                self.assertLess(took, 5)
        r = self.cli("kill", "-s", "a", env=dict(self.env, TMUXSESS_LOCK_TIMEOUT="0.5"))
        self.assertEqual(r.returncode, 75)
        # A busy lock changed nothing: a is alive and registered, b was never made.
        self.assertTrue(self.alive("a"))
        self.assertEqual(self.tmux_sessions(), {"a"})
        self.assertEqual(self.read_bytes(self.reg_path), data)
        # Reading and talking do not wait behind it (the activity time is a courtesy).
        os.environ["TMUXSESS_LOCK_TIMEOUT"] = "30"
        began = time.monotonic()
        self.assertEqual(tmuxsess.run("echo hi", session="a", timeout=20).output, "hi\n")
        self.assertEqual(in_process("list")[0], 0)
        self.assertLess(time.monotonic() - began, 5, "run waited for the stuck lock")
        os.environ["TMUXSESS_LOCK_TIMEOUT"] = "soon"
        rc, _out, err = in_process("create", "-n", "c")
        self.assertEqual(rc, 1)
        self.assertOneLineError(err, "TMUXSESS_LOCK_TIMEOUT")

    def test_ctrl_c_exits_130_quietly_and_leaves_nothing_half_done(self):
        rec = self.api_create("a")
        tmuxsess.send("sleep 60", session="a")
        cases = [("wait", "-s", "a", "-p", "never", "-T", "60"),
                 ("send", "-s", "a", "-c", "sleep 60", "-w", "never", "-T", "60"),
                 ("run", "-s", "a", "-c", "sleep 60", "-T", "60")]
        for args in cases:
            with self.subTest(args=args[0]):
                tmuxsess.send(keys=["C-c"], session="a")
                wait_until(lambda: tmuxsess.run("true", session="a", timeout=20).exit_status
                           == 0, 20, "the shell to be back")
                p = self.popen(*args, start_new_session=True)
                wait_until(lambda pid=p.pid: self.has_open(pid, rec["transcript"]), 20,
                           "the follower")
                os.killpg(p.pid, signal.SIGINT)   # as Ctrl-C in a terminal does
                out, err = p.communicate(timeout=30)
                self.assertEqual(p.returncode, 130, err)
                self.assertEqual(err, "")
                self.assertEqual(out, "")
        self.assertEqual(list(self.registry()["sessions"]), ["a"])
        self.assertEqual(self.state_files(), sorted([
            ".sessions.json", ".sessions.lock", "init/bashrc",
            os.path.relpath(rec["transcript"], self.state)]))
        self.assertEqual(self.tmux("list-buffers").stdout, "")


class ConcurrencyTest(RobustCase):
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
    assert k["killed"] and k["deregistered"], k
print("done", name)
"""

    def test_own_names_in_parallel_while_six_race_for_one(self):
        workers = {}
        for i in range(12):
            name = "w%02d" % i
            workers[name] = subprocess.Popen(
                [sys.executable, "-c", self.WORKER, HERE, name, "keep" if i % 2 else "kill"],
                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                universal_newlines=True)
            self.addCleanup(self._reap, workers[name])
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
        self.assertEqual(self.tmux_sessions(), kept)   # no orphans, no killed ones
        statuses = {s.name: s.status for s in tmuxsess.list_sessions()}
        self.assertEqual(statuses, dict.fromkeys(kept, "alive"))
        self.assertEqual(len({s["pane_id"] for s in sessions.values()}), len(kept))


class CrashSafetyTest(RobustCase):
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
            p = subprocess.Popen([sys.executable, "-c", self.WRITER, HERE, "r%d" % round_],
                                 env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True)
            self.addCleanup(self._reap, p)
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



if __name__ == "__main__":
    unittest.main()
