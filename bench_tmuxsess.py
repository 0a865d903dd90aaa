#!/usr/bin/env python3
"""Benchmark of tmuxsess's round trip, against the floor it cannot beat.

Measured side by side, interleaved (one sample of each per round, in a
rotating order) so machine noise hits every row alike:

  a  CLI run      ``./tmuxsess.py run -c 'print(i)'`` on a Python session (a new
                  process each time, as an agent calls it), with the system
                  Python (TMUXSESS_PYTHON=/usr/bin/python3), which loads the
                  module from cached bytecode and runs it itself
  c  floor        ``/usr/bin/python3 -c pass`` (with site, as the CLI runs) plus
                  one bare ``tmux display -p`` on the same server: what any CLI
                  built on tmux pays at least
  A, C           the same two with the ``python3`` on PATH (a pyenv shim, say)
  P  CLI run      ``python3 tmuxsess.py run ...``: named on the command line, the
                  file is compiled on every start (no bytecode cache)
  b  API run      ``tmuxsess.run('print(i)')`` in this process
  t  tmux call    one bare ``tmux display -p``, started from this process
  n  noticing     an API run that sleeps, prints time.time() and returns to its
                  prompt: the caller's time.time() on return minus the printed one
  w  waiting      an API run of ``input('go? ')``: how long until it says the
                  program waits for input (then answered with run --answer)
  m  MCP run      a ``run`` tool call to one ``tmuxsess.py mcp`` process, as
                  an MCP client makes it, from request to reply
  also           ``python3 -S -c pass``, ``python3 -c pass`` and
                  ``./tmuxsess.py --version`` (start-up plus import)
  l1, l30        ``tmuxsess.py list`` with 1 and with 30 registered sessions
                  (one tmux call per socket, so about the same)
  r  remote run   ``./tmuxsess.py --host far run -c 'print(i)'`` against a real
                  sshd on 127.0.0.1 (the test suite's SshServer), on the shared
                  connection the tool keeps
  s  ssh          one bare ``ssh far true`` with the same options, on that
                  same connection: with ``a``, the floor a remote run builds on

Then 1,000 sequential API runs in one session, each of which must return
exactly its own output. Everything lives in a
temp dir (state, sockets, TMUX_TMPDIR) that is removed at the end, the server
killed, even on Ctrl-C.

Run:  make bench     (or: python3 bench_tmuxsess.py [-n ROUNDS] [--runs N])
"""

import argparse
import ast
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "tmuxsess.py")
PY = sys.executable
SYSTEM_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PY
PATH_PY = shutil.which("python3") or PY
SshServer = None  # the test suite's, imported in main()


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def timed(argv, env):
    """Seconds one process takes from start to exit, and its stdout."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (argv, proc.returncode,
                                                    proc.stderr.decode(errors="replace")))
    return elapsed, proc.stdout.decode("utf-8", "replace")


def machine_line():
    tmux = subprocess.run(["tmux", "-V"], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()
    load = ""
    if hasattr(os, "getloadavg"):
        load = " | load %.2f %.2f %.2f" % os.getloadavg()
    return "python %s | %s | nproc %d | %s %s%s" % (
        platform.python_version(), tmux, os.cpu_count() or 0, platform.system(),
        platform.machine(), load)


def bench(rounds, runs, far):
    import tmuxsess

    env = dict(os.environ)
    socket = tmuxsess.default_engine().settings.default_socket
    print(machine_line())
    print("setup: one python-repl session on %s; %d interleaved rounds" % (socket, rounds))
    tmuxsess.create_session("bench", kind="python-repl")
    # A second registry of 30 sessions (own state and socket dirs), for list.
    root = os.path.dirname(tmuxsess.default_engine().settings.state_dir)
    env30 = dict(env, TMUXSESS_STATE_DIR=os.path.join(root, "state30"),
                 CLAUDE_TMUX_SOCKET_DIR=os.path.join(root, "sock30"))
    for n in range(30):
        timed([PY, TOOL, "create", "-n", "s%d" % n, "--cmd", "sleep 600", "--no-wait"], env30)
    sys.stdout.flush()

    mismatches = {"a": 0, "b": 0, "w": 0, "m": 0}
    sys_env = dict(env, TMUXSESS_PYTHON=SYSTEM_PY)
    path_env = dict(env)
    path_env.pop("TMUXSESS_PYTHON", None)

    def cli(argv, run_env):
        def sample(i):
            elapsed, out = timed(argv + ["run", "-s", "bench", "-c", "print(%d)" % i],
                                 run_env)
            mismatches["a"] += out != "%d\n" % i
            return elapsed
        return sample

    def floor_of(python):
        return lambda i: (timed([python, "-c", "pass"], env)[0]
                          + timed(["tmux", "-S", socket, "display", "-p", "#{pid}"], env)[0])

    def noticing_on(engine):
        def sample(i):
            r = engine.run("import time; time.sleep(0.02); print(repr(time.time()))",
                           session="bench")
            back = time.time()
            return back - ast.literal_eval(r.output.strip())
        return sample

    def waiting_on(engine):
        def sample(i):
            t0 = time.perf_counter()
            r = engine.run("x = input('go? ')", session="bench")
            elapsed = time.perf_counter() - t0
            mismatches["w"] += not r.waiting_for_input or r.question != "go?"
            engine.run(answer="y", session="bench")
            return elapsed
        return sample

    mcp = McpClient(env)

    def mcp_run(i):
        t0 = time.perf_counter()
        out = mcp.call("run", {"session": "bench", "code": "print(%d)" % i})
        elapsed = time.perf_counter() - t0
        mismatches["m"] += out.get("output") != "%d\n" % i
        return elapsed

    def api_run_on(engine, key):
        def sample(i):
            t0 = time.perf_counter()
            r = engine.run("print(%d)" % i, session="bench")
            elapsed = time.perf_counter() - t0
            mismatches[key] += r.output != "%d\n" % i or r.exit_status != 0
            return elapsed
        return sample

    far_env = dict(far.local_env(), TMUXSESS_PYTHON=SYSTEM_PY) if far else {}

    def remote_run(i):
        elapsed, out = timed([TOOL, "--host", "far", "run", "-s", "bench", "-c",
                              "print(%d)" % i], far_env)
        mismatches["r"] += out != "%d\n" % i
        return elapsed
    if far:
        timed([TOOL, "--host", "far", "create", "-n", "bench", "--python"], far_env)
        with_env = dict(os.environ)
        os.environ.update(far_env)
        try:  # the very ssh words and shared connection the tool uses
            ssh = tmuxsess.ssh_command("far") + ["true"]
        finally:
            os.environ.clear()
            os.environ.update(with_env)
    mismatches["r"] = 0

    samples = {
        "a": ("CLI ./tmuxsess.py run, system python", cli([TOOL], sys_env)),
        "c": ("floor: system python -c pass + tmux", floor_of(SYSTEM_PY)),
        "A": ("CLI ./tmuxsess.py run, python3 on PATH", cli([TOOL], path_env)),
        "C": ("floor: PATH python3 -c pass + tmux", floor_of(PATH_PY)),
        "P": ("CLI python3 tmuxsess.py run (no cache)", cli([SYSTEM_PY, TOOL], env)),
        "b": ("API tmuxsess.run()", api_run_on(tmuxsess.default_engine(), "b")),
        "t": ("one bare tmux display -p (subprocess)",
              lambda i: timed(["tmux", "-S", socket, "display", "-p", "#{pid}"], env)[0]),
        "n": ("noticing: prompt printed -> run returns", noticing_on(
            tmuxsess.default_engine())),
        "w": ("run reports a program waiting for input", waiting_on(
            tmuxsess.default_engine())),
        "m": ("MCP run tool call, round trip", mcp_run),
        "S": ("system python -S -c pass", lambda i: timed([SYSTEM_PY, "-S", "-c", "pass"],
                                                          env)[0]),
        "p": ("system python -c pass", lambda i: timed([SYSTEM_PY, "-c", "pass"], env)[0]),
        "v": ("./tmuxsess.py --version", lambda i: timed([TOOL, "--version"], sys_env)[0]),
        "l1": ("tmuxsess.py list, 1 session", lambda i: timed([TOOL, "list"], sys_env)[0]),
        "l30": ("tmuxsess.py list, 30 sessions",
                lambda i: timed([TOOL, "list"], dict(env30, TMUXSESS_PYTHON=SYSTEM_PY))[0]),
    }
    if far:
        samples["r"] = ("remote ./tmuxsess.py --host far run", remote_run)
        samples["s"] = ("one bare ssh far true, shared connection",
                        lambda i: timed(ssh, far_env)[0])
    times = {k: [] for k in samples}
    keys = list(samples)
    for k in keys:  # warm up caches once; not counted
        samples[k][1](0)
    rng = random.Random(4)
    for i in range(1, rounds + 1):
        order = keys[:]
        rng.shuffle(order)
        for k in order:
            times[k].append(samples[k][1](i))

    med = {k: median(v) for k, v in times.items()}
    print()
    print("ratio a/c (CLI run / floor, system python):  %.2f   (goal <= 3.0)"
          % (med["a"] / med["c"]))
    print("ratio A/C (CLI run / floor, PATH python3):   %.2f" % (med["A"] / med["C"]))
    print("ratio b/t (API run / one tmux exec):         %.2f   (goal <= 1.5)"
          % (med["b"] / med["t"]))
    print("noticing latency, median:                    %.2f ms (goal <= 2 ms)"
          % (med["n"] * 1000))
    print("ratio l30/l1 (list, 30 / 1 sessions):        %.2f" % (med["l30"] / med["l1"]))
    print("ratio m/a (MCP run tool call / CLI run):     %.2f" % (med["m"] / med["a"]))
    if far:
        print("ratio r/(s+a) (remote run / ssh + CLI run):   %.2f   (goal <= 1.5)"
              % (med["r"] / (med["s"] + med["a"])))
    else:
        print("remote run: not measured (%s)" % SshServer().skip_reason())
    print("waiting for input reported after, median:    %.0f ms" % (med["w"] * 1000))
    print("output mismatches: CLI %d, API %d, MCP %d, waiting %d, remote %d"
          % (mismatches["a"], mismatches["b"], mismatches["m"], mismatches["w"],
             mismatches["r"]))
    print()
    print("%-3s %-44s %8s %8s %8s %8s" % ("", "ms over %d rounds" % rounds, "min",
                                          "median", "p90", "max"))
    for k in keys:
        ms = [t * 1000 for t in times[k]]
        print("%-3s %-44s %8.2f %8.2f %8.2f %8.2f" % (
            k, samples[k][0], min(ms), median(ms), percentile(ms, 0.9), max(ms)))

    print()
    wrong = sequential(tmuxsess.default_engine(), runs)
    tmuxsess.kill_session(session="bench")
    mcp.close()
    return 0 if wrong == 0 and not any(mismatches.values()) else 1


class McpClient:
    """``tmuxsess.py mcp`` in a subprocess, spoken to in raw JSON-RPC lines."""

    def __init__(self, env):
        self.proc = subprocess.Popen([SYSTEM_PY, TOOL, "mcp"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     universal_newlines=True, bufsize=1)
        self.next_id = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message):
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def request(self, method, params):
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads(self.proc.stdout.readline())
            if message.get("id") == self.next_id:
                return message

    def call(self, tool, arguments):
        reply = self.request("tools/call", {"name": tool, "arguments": arguments})
        return reply.get("result", {}).get("structuredContent", {})

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)


def sequential(engine, runs):
    """``runs`` API runs one after another; how many did not return their own output."""
    print("%d sequential API runs in one session ..." % runs)
    sys.stdout.flush()
    per_run, wrong = [], 0
    t_all = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter()
        r = engine.run("print(%d)" % i, session="bench")
        per_run.append(time.perf_counter() - t0)
        if r.output != "%d\n" % i or r.exit_status != 0:
            wrong += 1
            if wrong <= 5:
                print("  run %d returned %r (status %r)" % (i, r.output, r.exit_status))
    total = time.perf_counter() - t_all
    ms = [t * 1000 for t in per_run]
    print("%d runs: total %.2f s; per run median %.2f ms, p90 %.2f ms, max %.2f ms; "
          "mismatches %d" % (runs, total, median(ms), percentile(ms, 0.9), max(ms), wrong))
    return wrong


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--rounds", type=int, default=40,
                        help="interleaved rounds for the side-by-side table (default 40)")
    parser.add_argument("--runs", type=int, default=1000,
                        help="sequential API runs in one session (default 1000)")
    a = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tmuxsess-bench-")
    # Our own state, sockets and tmux default dir: nothing of the user's is touched.
    os.environ.update(TMUXSESS_STATE_DIR=os.path.join(tmp, "state"),
                      CLAUDE_TMUX_SOCKET_DIR=os.path.join(tmp, "sock"),
                      TMUX_TMPDIR=os.path.join(tmp, "tmux"),
                      TMUXSESS_CACHE_DIR=os.path.join(tmp, "cache"))
    for name in ("TMUX", "TMUX_PANE", "TMUXSESS_TMUX", "TMUXSESS_PYTHON"):
        os.environ.pop(name, None)
    os.mkdir(os.environ["TMUX_TMPDIR"], 0o700)
    sys.path.insert(0, HERE)
    global SshServer
    # The suite's cleanup (every server under tmp) and its sshd on 127.0.0.1.
    from test_tmuxsess import SshServer, kill_servers
    far = SshServer()

    def terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)
    try:
        if not far.skip_reason():
            far.start()
        return bench(a.rounds, a.runs, far if far.dir else None)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        # Ctrl-C during cleanup must not leave a server behind either.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        far.stop()
        kill_servers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
