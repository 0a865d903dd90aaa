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


# ==== docs tests ====

def fenced_blocks(markdown, language="sh"):
    """(heading of the enclosing "## " section, code) for each fenced block."""
    section, blocks, code, fence = "", [], [], None
    for line in markdown.split("\n"):
        if fence is not None:
            if line.startswith("```"):
                if fence == language:
                    blocks.append((section, "\n".join(code) + "\n"))
                fence, code = None, []
            else:
                code.append(line)
        elif line.startswith("```"):
            fence = line[3:].strip()
        elif line.startswith("## "):
            section = line[3:].strip()
    return blocks


class DocsTestCase(TmuxTestCase):
    def run_script(self, code, cwd, env):
        """Run shell example code as a user would paste it; stop at the first failure."""
        return subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", code], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=120)

    def sandbox(self, name):
        """A fresh directory holding a copy of the tool, with its own state and sockets."""
        root = os.path.join(self.tmp, name)
        os.mkdir(root)
        shutil.copy(TOOL, os.path.join(root, "tmuxsess.py"))
        env = dict(self.env, TMUXSESS_STATE_DIR=os.path.join(root, "state"),
                   CLAUDE_TMUX_SOCKET_DIR=os.path.join(root, "sock"), TMPDIR=root,
                   PATH=os.environ.get("PATH", "/usr/bin:/bin"))
        return root, env


class ReadmeExamplesTest(DocsTestCase):
    """Every ```sh block of README.md runs and succeeds, so the docs cannot rot.

    Blocks run in order, one bash script per "## " section (later blocks of a
    section use the sessions earlier ones created), each section in a fresh
    directory with its own state and socket dirs. A section must clean up
    after itself: no registered session may be left.
    """

    def test_readme_examples(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            blocks = fenced_blocks(f.read())
        sections = {}
        for section, code in blocks:
            sections.setdefault(section, []).append(code)
        self.assertGreaterEqual(len(blocks), 15)
        self.assertIn("make test\n", blocks[0][1], "README starts with the test command")
        with open(os.path.join(HERE, "Makefile")) as f:
            self.assertIn("unittest -v test_tmuxsess", f.read())
        for i, (section, codes) in enumerate(sections.items()):
            # `make test` is this very suite: it is checked above, not run again.
            code = "".join(codes).replace("make test\n", "")
            with self.subTest(section=section or "(top)"):
                root, env = self.sandbox("readme-%d" % i)
                r = self.run_script(code, root, env)
                self.assertEqual(r.returncode, 0, "section %r failed:\n%s" % (section, r.stdout))
                self.assertNotRegex(r.stdout, r'File ".*tmuxsess\.py"', "a tool traceback")
                left = subprocess.run([sys.executable, TOOL, "list", "--json"], env=env,
                                      stdout=subprocess.PIPE, universal_newlines=True)
                self.assertEqual(json.loads(left.stdout)["total"], 0,
                                 "section %r left sessions behind" % section)


class SkillTest(DocsTestCase):
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
        root, env = self.sandbox("skill")
        text = self.ok("skill", "--tool", os.path.join(root, "tmuxsess.py")).stdout
        blocks = fenced_blocks(text)
        self.assertTrue(blocks)
        for _section, code in blocks:
            r = self.run_script(code, root, env)
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

if __name__ == "__main__":
    unittest.main()
