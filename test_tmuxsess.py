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


# ==== talk tests ====
# send / wait / run: the six faults, a corpus of hostile texts received
# byte-exact, run on every kind of program, waits, and panes the tool did not make.

import shlex  # noqa: E402
import threading  # noqa: E402

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
    return text.encode("utf-8", "surrogateescape")


class TalkCase(TmuxTestCase):
    """Helpers: sessions made through the API (no interpreter start-up), recorders."""

    def make(self, name, kind="shell", **kw):
        return tmuxsess.create_session(name, kind=kind, **kw)

    def script(self, name, text):
        path = os.path.join(self.tmp, name)
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(text)
        return path

    def recorder(self, name):
        """A --cmd session whose program appends every byte it reads to a file."""
        out = os.path.join(self.tmp, name + ".rec")
        open(out, "wb").close()
        cmd = " ".join(shlex.quote(x) for x in (
            sys.executable, self.script("recorder.py", RECORDER), out))
        self.make(name, "command", command=cmd, prompt=r"REC> $")
        return out

    def assertReceived(self, path, expected, timeout=20):
        def read():
            with open(path, "rb") as f:
                return f.read()
        try:
            wait_until(lambda: len(read()) >= len(expected), timeout, "recorded bytes")
        except AssertionError:
            pass  # the comparison below says what is missing
        got = read()
        if got != expected:
            i = next((k for k in range(min(len(got), len(expected)))
                      if got[k] != expected[k]), min(len(got), len(expected)))
            self.fail("received bytes differ at %d of %d (got %d):\n sent %r\n  got %r" % (
                i, len(expected), len(got), expected[max(0, i - 40):i + 40],
                got[max(0, i - 40):i + 40]))

    def screen(self, name):
        return tmuxsess.capture(session=name, lines=60)

    def popen(self, *args, env=None):
        p = subprocess.Popen([sys.executable, TOOL] + [str(a) for a in args],
                             env=env or self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
        self.addCleanup(p.kill)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.stderr.close)
        return p


class TalkFaultTest(TalkCase):
    """The issue's faults 1-6, each as a user meets it."""

    def test_1_wait_ignores_old_prompt_and_echo(self):
        # Both the old ">>>" and the echoed ">>> import time..." are on screen
        # at once; only the prompt *after* the sleep may end the wait.
        self.make("a", "python-repl")
        self.make("b", "python-repl")
        began = time.monotonic()
        one = self.popen("send", "-s", "a", "-c", "import time; time.sleep(2)",
                         "-w", ">>>", "-T", "30")
        r = self.ok("send", "-s", "b", "-c", "import time; time.sleep(2)")
        self.assertEqual(r.stdout, "")
        two = self.ok("wait", "-s", "b", "-p", ">>>", "-T", "30")
        self.assertEqual(one.wait(60), 0, one.stderr.read())
        for name in ("a", "b"):
            # Returned only once the REPL was back: a fresh prompt below the echo.
            lines = self.screen(name).rstrip("\n").split("\n")
            self.assertEqual(lines[-2:], [">>> import time; time.sleep(2)", ">>>"], name)
        self.assertGreaterEqual(time.monotonic() - began, 1.9)
        self.assertEqual(two.stderr, "")

    def test_2_text_is_never_a_key_flag_or_separator(self):
        out = self.recorder("rec")
        texts = ["x = 41;", "-1", "Enter", "Up", "C-c", "--", "\\;"]
        for text in texts:
            r = self.ok("send", "-s", "rec", "-c", text)
            self.assertNoTraceback(r)
        self.assertReceived(out, b"".join(enc(t) + b"\r" for t in texts))
        # And in a real REPL: the semicolon and the minus survive.
        self.make("py", "python-repl")
        tmuxsess.run("x = 41;", session="py")
        self.assertEqual(tmuxsess.run("x", session="py").output, "41\n")
        self.assertEqual(self.ok("run", "-s", "py", "-c", "-1").stdout, "-1\n")
        # A TAB is text too, not readline's completion key; nor is ^A "go to start".
        tmuxsess.send('u = "a\tb"', wait=r"^>>> $", timeout=30, session="py")
        self.assertEqual(tmuxsess.run("len(u), u", session="py").output, "(3, 'a\\tb')\n")
        r = self.ok("run", "-s", "py", "-c", 'v = "\tc\x01d"; len(v), v')
        self.assertEqual(r.stdout, "(4, '\\tc\\x01d')\n")

    def test_3_blank_lines_and_big_blocks_run_as_one_unit(self):
        self.make("py", "python-repl")
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
        self.assertTrue(res["found"], res)
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
            p = subprocess.Popen([sys.executable, TOOL, "send", "-s", name, "-m",
                                  "--file", "-"], env=self.env, stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.addCleanup(p.kill)
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
            with open(path, "rb") as f:
                got = f.read()
            self.assertIn(got, (one + two, two + one), "blocks mixed in " + path)
        after = self.tmux("list-buffers", "-F", "#{buffer_name}=#{buffer_sample}").stdout
        self.assertEqual(after, before)

    def test_5_crash_ends_the_wait_at_once(self):
        # run, wait after a send, and send -w, each on a program that dies
        # in its first second; all three at once, each with a 30 s timeout.
        self.make("a", "python-repl")
        self.make("b", "python-repl")
        self.make("c")
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
        self.make("a")
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
        self.make("first")
        self.tmux("set-option", "-g", "history-limit", "10")
        self.make("tiny")  # a new pane: history-limit applies to new panes only
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


class TalkCorpusTest(TalkCase):
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
                r = self.cli("send", "-s", "r%d" % i, "-c", text)
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


class TalkRunTest(TalkCase):
    """run prints exactly the output; the exit status says how it ended."""

    def test_shell(self):
        self.make("sh")
        r = self.ok("run", "-s", "sh", "-c", "echo hi; printf 'a\\tb  \\n'")
        self.assertEqual(r.stdout, "hi\na\tb  \n")  # no echo, no prompt
        self.assertEqual(self.cli("run", "-s", "sh", "-c", "(exit 3)").returncode, 3)
        r = self.cli("run", "-s", "sh", "-c", "false")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (1, "", ""))
        r = tmuxsess.run("cd /tmp && pwd\necho two", session="sh")
        self.assertEqual((r.output, r.exit_status), ("/tmp\ntwo\n", 0))

    def test_python(self):
        self.make("py", "python-repl")
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

    def test_gdb(self):
        self.make("gdb", "debugger")
        r = self.ok("run", "-s", "gdb", "-c", "print 1+2")
        self.assertEqual(r.stdout, "$1 = 3\n")
        self.assertEqual(tmuxsess.run("print 40+2", session="gdb").output, "$2 = 42\n")

    def test_command_with_prompt(self):
        loop = shlex.quote(sys.executable) + " " + shlex.quote(self.script("db.py", DB_LOOP))
        self.make("db", "command", command=loop, prompt=r"^db> $")
        r = self.ok("run", "-s", "db", "-c", "select 1; -- x")
        self.assertEqual(r.stdout, "got 'select 1; -- x'\n")
        r = self.ok("run", "-s", "db", "-c", "a\nb")
        self.assertEqual(r.stdout, "got 'a'\ngot 'b'\n")
        # A --cmd session created without --prompt: give it to run.
        self.make("db2", "command", command=loop)
        r = self.ok("run", "-s", "db2", "--prompt", "db> $", "-c", "Enter")
        self.assertEqual(r.stdout, "got 'Enter'\n")
        r = self.cli("run", "-s", "db2", "-c", "x")
        self.assertEqual(r.returncode, 126)
        self.assertIn("--prompt", r.stderr)

    def test_timeout_gives_partial_output_then_session_recovers(self):
        self.make("sh")
        began = time.monotonic()
        r = self.cli("run", "-s", "sh", "-T", "1", "-c", "echo first; sleep 30")
        self.assertEqual(r.returncode, 124)
        self.assertEqual(r.stdout, "first\n")
        self.assertIn("tmuxsess: error: no prompt within 1s", r.stderr)
        self.assertLess(time.monotonic() - began, 15)
        self.ok("send", "-s", "sh", "-k", "C-c")
        self.assertEqual(self.ok("run", "-s", "sh", "-c", "echo back").stdout, "back\n")

    def test_max_output_keeps_the_newest_bytes(self):
        self.make("sh")
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


class TalkWaitTest(TalkCase):
    def test_fixed_regex_whole_pane_and_json(self):
        self.make("sh")
        self.ok("run", "-s", "sh", "-c", "echo OLDTOKEN")
        self.ok("send", "-s", "sh", "-c", "echo axxb; echo 'a.c'")
        doc = json.loads(self.ok("wait", "-s", "sh", "-p", "ax+b", "--json").stdout)
        self.assertEqual((doc["found"], doc["match"]), (True, "axxb"))
        self.assertLessEqual({"found", "match", "reason", "elapsed"}, set(doc))
        self.assertEqual(self.ok("wait", "-s", "sh", "-F", "-p", "a.c", "--json"
                                 ).stdout.count('"match": "a.c"'), 1)
        self.assertTrue(tmuxsess.wait_for_text("^a.c$", timeout=10, session="sh").found)
        # The echo "echo 'a.c'" is not output: a line that is exactly a.c is.
        r = self.cli("wait", "-s", "sh", "-F", "-p", "ax+b", "-T", "0.5", "--json")
        self.assertEqual(r.returncode, 1)
        doc = json.loads(r.stdout)
        self.assertEqual((doc["found"], doc["reason"]), (False, "timeout"))
        # Old output does not count, unless --whole-pane asks for the old behaviour.
        began = time.monotonic()
        r = self.cli("wait", "-s", "sh", "-p", "OLDTOKEN$", "-T", "0.5")
        self.assertEqual(r.returncode, 1)
        self.assertGreaterEqual(time.monotonic() - began, 0.45)
        self.assertIn("not seen within 0.5s", r.stderr)
        self.assertIn("axxb", r.stderr)  # the last lines, to see what happened
        self.ok("wait", "-s", "sh", "--whole-pane", "-p", "^OLDTOKEN$", "-T", "1")

    def test_echo_of_the_text_is_not_output(self):
        self.make("py", "python-repl")
        tmuxsess.send("import time; time.sleep(0.5); print('-'.join(['DONE'] * 2))",
                      session="py")
        res = tmuxsess.wait_for_text("DONE", timeout=30, session="py")
        self.assertTrue(res.found, res)
        self.assertIn("DONE-DONE", self.screen("py").split("\n"))


class TalkSendTest(TalkCase):
    def test_ctrl_c_interrupts_a_shell_command(self):
        self.make("sh")
        self.ok("send", "-s", "sh", "-c", "sleep 100")
        wait_until(lambda: self.tmux("display-message", "-p", "-t", "sh",
                                     "#{pane_current_command}").stdout.strip() == "sleep",
                   20, "sleep to start")
        self.ok("send", "-s", "sh", "-k", "C-c")
        r = self.ok("run", "-s", "sh", "-T", "20", "-c", "echo back")
        self.assertEqual(r.stdout, "back\n")

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
        self.make("gone", "command", command="exit 0", wait=False)
        wait_until(lambda: tmuxsess.pane_health(session="gone").status == "dead", 20,
                   "the pane to die")
        transcript = self.registry()["sessions"]["gone"]["transcript"]
        size = os.path.getsize(transcript)
        r = self.cli("send", "-s", "gone", "-c", "hello", "-w", "x")
        self.assertEqual(r.returncode, 3)
        self.assertIn("not healthy", r.stderr)
        self.assertNoTraceback(r)
        self.assertEqual(os.path.getsize(transcript), size)

    def test_wait_timeout_exits_2_with_last_lines(self):
        self.make("sh")
        r = self.cli("send", "-s", "sh", "-c", "echo some-output-$((1+1))", "-w", "never",
                     "-T", "0.5")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith("tmuxsess: error: pattern 'never' not seen"))
        self.assertIn("some-output-2", r.stderr)

    def test_wait_after_keys_skips_the_recalled_line(self):
        self.make("sh")
        tmuxsess.run("echo RECALL-$((6*7))", session="sh")
        r = self.ok("send", "-s", "sh", "-k", "Up", "Enter", "-w", r"RECALL\S*", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "RECALL-42")

    def test_json(self):
        self.make("sh")
        r = self.ok("send", "-s", "sh", "-c", "echo j-$((2*3))", "-w", "j-\\d", "--json")
        doc = json.loads(r.stdout)
        self.assertEqual((doc["sent"], doc["found"], doc["match"], doc["bytes"]),
                         (True, True, "j-6", len("echo j-$((2*3))")))


class TalkForeignPaneTest(TalkCase):
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
        r = self.ok("send", *target, "-c", "sleep 0.5; echo NEW-TOKEN", "-w", "TOKEN")
        self.assertIn("NEW-TOKEN", self.pane().split("\n"))
        # A send, then a separate wait: only output after the send counts.
        self.ok("send", *target, "-c", "sleep 0.5; echo TOKEN2-$((40+2))")
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
        r = self.ok("send", *target, "-c", "sleep 0.5; echo PIPED-$((40+2))", "-T", "10",
                    "-w", r"TOKEN|PIPED\S*", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "PIPED-42")
        self.ok("send", *target, "-c", "sleep 0.5; echo TOKEN3-$((40+2))")
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
        self.ok("send", *target, "-c", "sleep 0.5; echo HIST-$((40+2)); seq 1 8")
        r = self.ok("wait", *target, "-p", r"HIST\S*", "-T", "10", "--json")
        self.assertEqual(json.loads(r.stdout)["match"], "HIST-42")


class TalkTranscriptTest(TalkCase):
    def test_transcript_strips_ansi_unless_raw(self):
        self.make("sh")
        self.ok("run", "-s", "sh", "-c", "printf '\\033[1;31mRED\\033[0m plain\\n'")
        r = self.ok("capture", "-s", "sh", "--transcript")
        self.assertIn("\nRED plain\n", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        r = self.ok("capture", "-s", "sh", "--transcript", "--raw")
        self.assertIn("\x1b[1;31mRED\x1b[0m plain", r.stdout)


class TalkPollTest(TalkCase):
    def test_waiting_on_a_transcript_starts_no_tmux_per_poll(self):
        self.make("sh")
        log = os.path.join(self.tmp, "tmux-calls.log")
        wrapper = os.path.join(self.tmp, "tmux-wrapper")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n" % (
                shlex.quote(log), shlex.quote(shutil.which("tmux"))))
        os.chmod(wrapper, 0o755)
        env = dict(self.env, TMUXSESS_TMUX=wrapper)
        began = time.monotonic()
        r = self.cli("send", "-s", "sh", "-c", "sleep 3; echo done-$((6*7))",
                     "-w", "^done-42", "-T", "30", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(time.monotonic() - began, 2.9)
        with open(log) as f:
            calls = f.read().splitlines()
        self.assertLessEqual(len(calls), 4, calls)


if __name__ == "__main__":
    unittest.main()
