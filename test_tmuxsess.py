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


if __name__ == "__main__":
    unittest.main()
