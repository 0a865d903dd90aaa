"""Tests for tmuxsess.py against a real tmux.

Every test gets its own state dir and socket dir in a temp dir (through
TMUXSESS_STATE_DIR and CLAUDE_TMUX_SOCKET_DIR) and kills every tmux server
whose socket lies under that temp dir, even when it fails.

Run:  python3 -m unittest -v test_tmuxsess
"""

import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
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

class TranscriptEchoTest(TmuxTestCase):
    def test_transcript_shows_a_pasted_command_as_the_screen_does(self):
        # bash redraws pasted text as "\r", cursor-forward over the prompt, text;
        # dropping the move showed "echo hi-$((6*7))))" here, without the prompt.
        tmuxsess.create_session("sh")
        self.assertEqual(tmuxsess.run("echo hi-$((6*7))", session="sh").output, "hi-42\n")
        r = self.ok("capture", "-s", "sh", "--transcript")
        self.assertRegex(r.stdout, r"(?m)^[#$] echo hi-\$\(\(6\*7\)\)\nhi-42$")
        self.assertEqual(tmuxsess.render("50%\r100%\r\n"), "100%\n")
        self.assertEqual(tmuxsess.render("abc\rX\x1b[Kq\x1b[2Cz\r\n"), "Xq  z\n")

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
        # 64 workers each create -> send -> run -> kill their own session (every 8th
        # keeps it, so survivors are checked too), each step a CLI process, 16 at a
        # time: all 64 at once overload 2 cores so far that creates queue for the
        # registry lock beyond its 10 s. Once the pool is in full swing, 16 racers
        # create one shared name at the same instant.
        workers, racers, pool = 64, 16, 16
        kept = {"w%d" % i for i in range(0, workers, 8)}
        jobs = queue.Queue()
        for i in range(workers):
            jobs.put(i)
        swing, barrier = threading.Event(), threading.Barrier(racers)
        results = {}

        def cli(key, *args):
            r = self.cli(*args, timeout=170)
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
                if i == pool:
                    swing.set()
                lifecycle(i)

        def racer(i):
            swing.wait(170)
            barrier.wait(170)
            cli("racer%d" % i, "create", "-n", "shared")

        began = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(pool)]
        threads += [threading.Thread(target=racer, args=(i,)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        elapsed = time.monotonic() - began
        self.assertFalse(any(t.is_alive() for t in threads), "workers still running")

        everything = [r for rs in results.values() for r in rs]
        for r in everything:
            self.assertNotIn("Traceback", r.stderr, r.args)
        for i in range(workers):
            name = "w%d" % i
            rs = results.get(name, [])
            for r in rs:
                self.assertEqual(r.returncode, 0, "%s: %s" % (r.args[2:], r.stderr))
            self.assertEqual(len(rs), 3 if name in kept else 4, name)
            self.assertEqual(rs[2].stdout, "ran-%s\n" % name)
        codes = sorted(results["racer%d" % i][0].returncode for i in range(racers))
        self.assertEqual(codes, [0] + [2] * (racers - 1))
        winner = next(json.loads(results["racer%d" % i][0].stdout) for i in range(racers)
                      if results["racer%d" % i][0].returncode == 0)

        # The registry: valid, each name once, exactly the survivors, each alive.
        pairs = []
        with open(os.path.join(self.state, ".sessions.json")) as f:
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
                            doc["sessions"][name] = {"socket": "", "target": name + ":0.0",
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
        # Killed between creating its temp file and os.replace: litter, never the
        # registry. Some kills must have landed there, or the test proved little.
        interrupted = len([n for n in os.listdir(self.state) if ".tmp-" in n])
        self.assertGreater(interrupted, 0)
        # The CLI reads what the killed writers left like any registry.
        r = self.cli("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(json.loads(r.stdout)["total"], len(committed))
        _figure("%d SIGKILLs, %d entries committed and all kept, %d kills left a "
                "temp file (killed mid-write), %.1f s" % (
                    rounds, len(committed), interrupted, time.monotonic() - began))

    def peak(self, *args):
        path = os.path.join(self.tmp, "stdout-%d" % len(os.listdir(self.tmp)))
        t0 = time.monotonic()
        rc, err, kib = _peak_run([sys.executable, TOOL] + [str(a) for a in args],
                                 self.env, path)
        self.assertNotIn("Traceback", err)
        return rc, path, err, kib, time.monotonic() - t0

    def test_50mb_of_output_neither_hangs_nor_grows_the_tool(self):
        tmuxsess.create_session("sh")
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
        tmuxsess.create_session("py", kind="python-repl")
        began = time.monotonic()
        wrong = []
        for i in range(1000):
            r = tmuxsess.run("print(%d)" % i, session="py", timeout=30)
            if (r.output, r.exit_status) != ("%d\n" % i, 0):
                wrong.append((i, r.output, r.exit_status, r.timed_out))
        self.assertEqual(wrong, [])
        _figure("1000 runs, 0 mismatches, %.1f s" % (time.monotonic() - began))


if __name__ == "__main__":
    unittest.main()
