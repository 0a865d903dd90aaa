"""Tests for tmuxsess.py against a real tmux.

Every test gets its own state dir and socket dir in a temp dir (through
TMUXSESS_STATE_DIR and CLAUDE_TMUX_SOCKET_DIR) and kills every tmux server
whose socket lies under that temp dir, even when it fails.

Run:  python3 -m unittest -v test_tmuxsess
"""

import contextlib
import json
import os
import shutil
import signal
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


# ==== stress tests ====

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


def _peak_run(argv, env, stdout_path, timeout=120.0):
    """Run ``argv`` with stdout into a file; return (exit code, stderr, peak RSS in KiB)."""
    rss_path = stdout_path + ".rss"
    with open(stdout_path, "wb") as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-S", "-c", RSS_WRAPPER, rss_path] + argv,
                                stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            proc.wait(timeout)
        finally:
            if proc.returncode is None:  # a hang must not hang the suite
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err.seek(0)
        with open(rss_path) as f:
            return proc.returncode, err.read().decode("utf-8", "replace"), int(f.read())


class OutputBoundsTest(TmuxTestCase):
    """Big output: run honours --max-output exactly; wait and capture stay small."""

    def peak(self, *args):
        path = os.path.join(self.tmp, "stdout-%d" % len(os.listdir(self.tmp)))
        rc, err, kib = _peak_run([sys.executable, TOOL] + [str(a) for a in args],
                                 self.env, path)
        with open(path, "rb") as f:
            return rc, f.read(), err, kib

    def test_run_keeps_at_most_max_output_bytes_from_a_line_start(self):
        tmuxsess.create_session("sh")
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
        r = self.cli("run", "-s", "sh", "--max-output", "7", "-c", "printf '%s' ééééé")
        self.assertEqual(r.stdout.split("\n", 1)[1], "ééé")  # never half a character

    def test_wait_on_30mb_of_output_keeps_memory_small(self):
        tmuxsess.create_session("sh")
        rc, _, err, small = self.peak("send", "-s", "sh", "-c", "echo END-$((6*7))",
                                      "-w", "END-42")
        self.assertEqual(rc, 0, err)
        rc, _, err, big = self.peak(
            "send", "-s", "sh", "-T", "60", "-w", "END-42", "-c",
            "head -c 30000000 /dev/zero | tr '\\0' x | fold -w 100; echo END-$((6*7))")
        self.assertEqual(rc, 0, err)
        self.assertNoTraceback(subprocess.CompletedProcess([], rc, "", err))
        # Holding the output would cost 30 MB and more; the look-back window is 64 KiB
        # (plus one 1 MiB read and its rendering).
        self.assertLess(big - small, 12 * 1024, "send -w grew by %d KiB" % (big - small))

    def test_transcript_streams_a_20mb_line_without_newline(self):
        tmuxsess.create_session("sh")
        r = tmuxsess.run("head -c 20000000 /dev/zero | tr '\\0' y; echo", session="sh",
                         timeout=60)
        self.assertEqual(r.exit_status, 0)
        rc, _, err, small = self.peak("health", "-s", "sh")
        self.assertEqual(rc, 0, err)
        rc, out, err, big = self.peak("capture", "-s", "sh", "--transcript")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count(b"y"), 20000000 + out.count(b"tr '\\0' y"))
        self.assertLess(big - small, 48 * 1024, "capture grew by %d KiB" % (big - small))

if __name__ == "__main__":
    unittest.main()
