#!/usr/bin/env python3
"""chatwarden load benchmark: the gateway and its peers side by side, in one run.

Started by benches/load/run (which installs the tools and builds the binaries);
see benches/load/README.md. Standard library only. Everything listens on
127.0.0.1 and every child process is stopped on exit, however the run ends.
"""

import argparse
import atexit
import concurrent.futures
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LOAD_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(LOAD_DIR))
ISSUER = "https://idp.bench.invalid/"
PATH = "/api/v1/accounts/1/conversations/42"
# The list mix: a realistic 12 KB page of 25 conversations, row-filtered by
# chatwarden (an agent keeps the ones assigned to them).
LIST_PATH = "/api/v1/accounts/1/conversations"
# Mix (g): the same list at a second path, where chatwarden only redacts.
REDACT_PATH = "/api/v1/accounts/1/conversations/filter"
# The large export for memory: the same rows repeated to about 8 MB.
EXPORT_PATH = "/api/v1/accounts/1/exports/conversations"
EXPORT_ROWS = 16_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

CHILDREN = []  # Popen objects we started; each leads its own process group


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def cleanup():
    for p in reversed(CHILDREN):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in reversed(CHILDREN):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    CHILDREN.clear()


def on_signal(signum, _frame):
    log(f"load bench: signal {signum}, stopping")
    sys.exit(128 + signum)


def start(name, argv, workdir, cpu, stdout=None):
    """Start a long-running peer in its own process group, pinned to `cpu`."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    err = open(os.path.join(workdir, f"{name}.stderr"), "wb")
    out = stdout if stdout is not None else err
    p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                         start_new_session=True, cwd=workdir)
    CHILDREN.append(p)
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_tree(pid):
    """pid and all its descendants."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = [pid], [pid]
    while frontier:
        kids = [c for c, pp in parents.items() if pp in frontier]
        tree += kids
        frontier = kids
    return tree


def cpu_seconds(pid):
    """utime + stime of pid and its descendants (all threads)."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def rss_mib(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.wait(0.25):
            self.peak = max(self.peak, rss_mib(self.pid))


def http_get(port, path, token=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def wait_ready(name, port, token, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"load bench: {name} exited with {proc.returncode}; see its .stderr")
        try:
            if http_get(port, PATH, token, timeout=2) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"load bench: {name} not answering 200 on port {port} after {seconds}s")


def render(template, out, **values):
    with open(os.path.join(LOAD_DIR, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@@{k}@@", str(v))
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise SystemExit(f"load bench: {template}: unfilled {left}")
    with open(out, "w") as f:
        f.write(text)
    return out


def run_out(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


# ------------------------------------------------------------------ tokens


def mint(chatwarden, key, sub, role="agent", account="1"):
    # uid: the agent id the row filter compares with each row's assignee.
    return run_out([chatwarden, "token", "--key", key, "--kid", "bench", "--iss", ISSUER,
                    "--aud", "chatwarden", "--sub", sub, "--role", role,
                    "--claim", f'account_ids=["{account}"]', "--claim", "uid=3",
                    "--ttl", "3h"]).strip()


def write_export(path):
    """An export-sized conversation list: the 12 KB page's rows, repeated
    with fresh ids, about 8 MB."""
    with open(os.path.join(LOAD_DIR, "conversations.json")) as f:
        page = json.load(f)
    rows = page["data"]["payload"]
    out = []
    for i in range(EXPORT_ROWS):
        row = dict(rows[i % len(rows)])
        row["id"] = 100_000 + i
        out.append(row)
    body = {"data": {"meta": {"all_count": EXPORT_ROWS}, "payload": out}}
    with open(path, "w") as f:
        json.dump(body, f, separators=(",", ":"))
    os.chmod(path, 0o644)
    return os.path.getsize(path)


def export_load(port, token, seconds, clients=4):
    """`clients` threads download the export back to back for `seconds`;
    returns (downloads, bytes received, failures)."""
    stop = time.time() + seconds
    counts = []

    def one():
        n = got = bad = 0
        while time.time() < stop:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("GET", EXPORT_PATH, headers={"Authorization": f"Bearer {token}"})
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200:
                    n, got = n + 1, got + len(body)
                else:
                    bad += 1
            except OSError:
                bad += 1
        counts.append((n, got, bad))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tuple(sum(x) for x in zip(*counts))


# ------------------------------------------------------------------- peers


class Peer:
    def __init__(self, key, label, what, proc, port, enforces):
        self.key, self.label, self.what = key, label, what
        self.proc, self.port, self.enforces = proc, port, enforces
        self.rss_idle = None
        self.checks = {}

    @property
    def pid(self):
        return self.proc.pid


def verify(peer, tokens):
    """What each peer claims to enforce, checked before anything is measured."""
    forged = tokens["good"][:-4] + ("AAAA" if not tokens["good"].endswith("AAAA") else "BBBB")
    cases = [("token -> 200", PATH, tokens["good"], 200)]
    if peer.enforces:
        cases += [
            ("no token -> 401", PATH, None, 401),
            ("forged signature -> 401", PATH, forged, 401),
            ("expired -> 401", PATH, tokens["expired"], 401),
            ("role guest -> 403", PATH, tokens["guest"], 403),
            ("other account -> 403", "/api/v1/accounts/2/conversations/42", tokens["good"], 403),
        ]
    ok = True
    for name, path, token, want in cases:
        got = http_get(peer.port, path, token)
        peer.checks[name] = got
        if got != want:
            ok = False
            log(f"  !! {peer.label}: {name}: got {got}")
    return ok


def wrk(args, port, tokens_file, seconds, connections, cpu, path=PATH):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", os.path.join(LOAD_DIR, "wrk.lua"), f"http://127.0.0.1:{port}",
            "--", tokens_file, path]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"load bench: wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    return json.loads(lines[-1])


def measure(peer, tokens_file, a, path=PATH, seconds=None):
    sampler = RssSampler(peer.pid)
    sampler.start()
    cpu0 = cpu_seconds(peer.pid)
    w = wrk(a, peer.port, tokens_file, seconds or a.duration, a.connections, a.load_cpu, path)
    cpu1 = cpu_seconds(peer.pid)
    sampler.stop.set()
    sampler.join()
    n = max(1, w["requests"])
    return {
        "rps": n / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "cpu10k": (cpu1 - cpu0) / n * 1e4,
        "errors": w["status_errors"] + w["connect"] + w["read"] + w["write"] + w["timeout"],
        "requests": w["requests"],
        "rss_peak": sampler.peak,
    }


def hold_connections(port, token, count):
    """Open `count` keep-alive connections, one request each, and keep them."""
    socks = []
    req = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        need = int(m.group(1)) if m else 0
        while len(body) < need:
            body += s.recv(65536)
        socks.append(s)
    return socks


# ----------------------------------------------------------------- report


def keepalive_requests(port, path, tokens, n, conns=4):
    """n sequential GETs over a few keep-alive connections; returns how many got 200."""
    cs = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(conns)]
    ok = 0
    try:
        for i in range(n):
            c = cs[i % conns]
            c.request("GET", path, headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"})
            r = c.getresponse()
            r.read()
            ok += r.status == 200
    finally:
        for c in cs:
            c.close()
    return ok


def instructions_per_request(name, argv, port, workdir, path, tokens, n):
    """Start argv under callgrind, warm it up, count the instructions of n requests.

    Only user space is counted (the kernel's share, the same syscalls for every
    pingora peer, is not), and valgrind's CPU lacks SHA-NI, so SHA-256 (token
    digests, the audit hash chain) costs several times what it does natively.
    """
    out = os.path.join(workdir, f"callgrind.{name}")
    proc = start(f"callgrind-{name}", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                       "--dump-instr=no"] + argv, workdir, None)
    wait_ready(f"{name} under callgrind", port, tokens[0], proc, seconds=180)
    keepalive_requests(port, path, tokens, 300)
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
    ok = keepalive_requests(port, path, tokens, n)
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    proc.terminate()
    proc.wait(timeout=60)
    with open(out + ".1") as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("totals:"))
    if ok != n:
        log(f"load bench: {name} under callgrind answered {ok} of {n} requests with 200")
    return total / n


def source_revision():
    """The commit the binaries were built from, marked when source edits not yet
    committed were built (and so measured) too."""
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    changed = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                              "--", ".", ":(exclude)benches/load/results.md"],
                             capture_output=True, text=True).stdout.strip()
    if changed:
        rev += " with uncommitted changes"
    return rev


def fmt_ratio(v, base):
    return f"{v / base:.2f}" if base else "–"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def version(argv, pattern=r"(\d+\.\d+(\.\d+)?)"):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        m = re.search(pattern, out.stdout + out.stderr)
        return m.group(1) if m else "?"
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chatwarden", required=True)
    ap.add_argument("--bare-proxy", required=True)
    ap.add_argument("--envoy", default="")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per peer per round")
    ap.add_argument("--warmup", type=int, default=3, help="seconds per peer, once, not recorded")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=3000, help="distinct tokens for the fresh mixes")
    ap.add_argument("--idle-connections", type=int, default=10000)
    ap.add_argument("--export-seconds", type=int, default=5,
                    help="seconds of back-to-back large exports per proxy for memory (0: skip)")
    ap.add_argument("--pairs", type=int, default=10,
                    help="back-to-back (b, f cached token) pairs judging the 85%% and p99 targets")
    ap.add_argument("--pair-duration", type=int, default=3, help="seconds per side of a pair")
    ap.add_argument("--only", default="", help="comma-separated mix keys, e.g. b,f-hit")
    ap.add_argument("--out", default=os.path.join(LOAD_DIR, "results.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--instructions", type=int, default=0, metavar="N",
                    help="also count user-space instructions per request under callgrind "
                         "(N requests per peer; needs valgrind): a figure a busy machine cannot skew")
    a = ap.parse_args()
    # What was built, read now: an edit made while the run goes on was not
    # measured and must not mark it.
    rev = source_revision()
    a.chatwarden, a.bare_proxy = os.path.abspath(a.chatwarden), os.path.abspath(a.bare_proxy)
    a.envoy = os.path.abspath(a.envoy) if a.envoy else ""

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(cleanup)
    workdir = tempfile.mkdtemp(prefix="chatwarden-load-")
    if not a.keep:
        atexit.register(shutil.rmtree, workdir, True)
    log(f"load bench: work directory {workdir}")

    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    a.peer_cpu, a.load_cpu = (1, 0) if pin else (None, None)

    # Keys and tokens: ES256 (P-256) for every peer; HAProxy 2.6 has no EdDSA.
    key = os.path.join(workdir, "key.pem")
    pub = os.path.join(workdir, "pub.pem")
    run_out(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", key])
    run_out(["openssl", "pkey", "-in", key, "-pubout", "-out", pub])
    jwks = run_out([a.chatwarden, "token", "--key", key, "--kid", "bench", "--jwks"]).strip()
    cw = a.chatwarden
    tokens = {
        "good": mint(cw, key, "agent-0"),
        "guest": mint(cw, key, "guest-0", role="guest"),
    }
    hour_ago = int(time.time()) - 3600  # well past any verifier's leeway
    tokens["expired"] = run_out([cw, "token", "--key", key, "--kid", "bench", "--iss", ISSUER,
                                 "--aud", "chatwarden", "--sub", "agent-x", "--role", "agent",
                                 "--claim", 'account_ids=["1"]', "--claim", f"exp={hour_ago}",
                                 "--claim", f"iat={hour_ago - 60}"]).strip()
    log(f"load bench: minting {a.tokens} tokens for the fresh-token mixes")
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        fresh = list(ex.map(lambda i: mint(cw, key, f"agent-{i}"), range(1, a.tokens + 1)))
    one_file = os.path.join(workdir, "token-one.txt")
    fresh_file = os.path.join(workdir, "tokens-fresh.txt")
    with open(one_file, "w") as f:
        f.write(tokens["good"] + "\n")
    with open(fresh_file, "w") as f:
        f.write("\n".join(fresh) + "\n")

    # nginx's workers (not root) read the export: they may traverse the
    # work directory (0711, not list it) and read the export's own folder.
    os.chmod(workdir, 0o711)
    export_dir = os.path.join(workdir, "export")
    os.makedirs(export_dir, mode=0o755, exist_ok=True)
    os.chmod(export_dir, 0o755)
    export_bytes = write_export(os.path.join(export_dir, "export.json"))

    # The fast upstream: nginx, one worker, on the load generator's CPU.
    ports = {k: free_port() for k in ("up", "a", "b", "c", "d", "e", "f")}
    up = f"127.0.0.1:{ports['up']}"
    for name in ("upstream", "direct", "nginx-proxy"):
        os.makedirs(os.path.join(workdir, f"tmp-{name}"), exist_ok=True)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    conf = lambda n: os.path.join(workdir, n)  # noqa: E731
    up_proc = start("upstream", [nginx, "-e", conf("upstream.error.log"), "-c", render(
        "upstream.nginx.conf", conf("upstream.conf"), DIR=workdir, NAME="upstream",
        PORT=ports["up"], LOADDIR=LOAD_DIR, EXPORTDIR=export_dir)], workdir, a.load_cpu)
    wait_ready("upstream", ports["up"], None, up_proc)

    peers = {}
    peer_cpu = a.peer_cpu
    p = start("direct", [nginx, "-e", conf("direct.error.log"), "-c", render(
        "upstream.nginx.conf", conf("direct.conf"), DIR=workdir, NAME="direct",
        PORT=ports["a"], LOADDIR=LOAD_DIR, EXPORTDIR=export_dir)], workdir, peer_cpu)
    peers["a"] = Peer("a", "(a) upstream direct", "the nginx upstream itself, no proxy", p,
                      ports["a"], False)
    p = start("bare", [a.bare_proxy, "--serve", f"127.0.0.1:{ports['b']}", "--upstream", up],
              workdir, peer_cpu)
    peers["b"] = Peer("b", "(b) bare pingora", "pass-through ProxyHttp, 1 thread", p,
                      ports["b"], False)
    p = start("nginx-proxy", [nginx, "-e", conf("nginx-proxy.error.log"), "-c", render(
        "nginx-proxy.conf", conf("nginx-proxy.conf"), DIR=workdir, NAME="nginx-proxy",
        PORT=ports["c"], UPSTREAM=up)], workdir, peer_cpu)
    peers["c"] = Peer("c", "(c) nginx proxy", "plain reverse proxy, 1 worker, no checks", p,
                      ports["c"], False)
    hlog = open(conf("haproxy.log"), "wb")
    p = start("haproxy", [haproxy, "-db", "-f", render(
        "haproxy.cfg", conf("haproxy.cfg"), PORT=ports["d"], UPSTREAM=up, PUBKEY=pub)],
        workdir, peer_cpu, stdout=hlog)
    peers["d"] = Peer("d", "(d) HAProxy", "jwt_verify ES256 + IP/role/scope ACLs + stick table"
                      " + log file, nbthread 1", p, ports["d"], True)
    if a.envoy:
        p = start("envoy", [a.envoy, "-c", render(
            "envoy.yaml", conf("envoy.yaml"), PORT=ports["e"], UPSTREAM_PORT=ports["up"],
            DIR=workdir, JWKS=jwks), "--concurrency", "1", "--disable-hot-restart",
            "--log-level", "warn"], workdir, peer_cpu)
        peers["e"] = Peer("e", "(e) Envoy", "jwt_authn (cache on) + RBAC + local_ratelimit"
                          " + access log file, --concurrency 1", p, ports["e"], True)
    audit = conf("audit.jsonl")
    p = start("chatwarden", [a.chatwarden, "run", "-c", render(
        "chatwarden.yaml", conf("chatwarden.yaml"), ADDR=f"127.0.0.1:{ports['f']}",
        UPSTREAM=up, PUBKEY=pub, AUDIT=audit), "--threads", "1"], workdir, peer_cpu)
    peers["f"] = Peer("f", "(f) chatwarden", "JWT + roles + IP + time window + scope"
                      " + hash-chained audit file, 1 thread", p, ports["f"], True)

    for peer in peers.values():
        wait_ready(peer.label, peer.port, tokens["good"], peer.proc)
    log("load bench: every peer answers; checking what each enforces")
    enforcing = {k: verify(peer, tokens) for k, peer in peers.items()}
    time.sleep(1)
    for peer in peers.values():
        peer.rss_idle = rss_mib(peer.pid)

    load_before = open("/proc/loadavg").read().split()[:3]
    mixes = [("a", "a", one_file, "(a) upstream direct"),
             ("b", "b", one_file, "(b) bare pingora"),
             ("c", "c", one_file, "(c) nginx proxy"),
             ("d", "d", one_file, "(d) HAProxy JWT+ACLs")]
    if "e" in peers:
        mixes += [("e-hit", "e", one_file, "(e) Envoy, cached token"),
                  ("e-fresh", "e", fresh_file, "(e) Envoy, new token each request")]
    mixes += [("f-hit", "f", one_file, "(f) chatwarden, cached token"),
              ("f-fresh", "f", fresh_file, "(f) chatwarden, new token each request"),
              ("b-rows", "b", one_file, "(b) bare pingora, 12 KB list"),
              ("f-rows", "f", one_file, "(f) chatwarden, 12 KB list, row filter + redaction"),
              ("g", "f", one_file, "(g) chatwarden, 12 KB list, redaction")]
    mix_path = {"b-rows": LIST_PATH, "f-rows": LIST_PATH, "g": REDACT_PATH}
    if a.only:
        wanted = set(a.only.split(",")) | {"b"}
        if "f-rows" in wanted or "g" in wanted:
            wanted.add("b-rows")
        mixes = [m for m in mixes if m[0] in wanted]

    log(f"load bench: warm-up {a.warmup}s per mix")
    for key_, pk, tf, _ in mixes:
        wrk(a, peers[pk].port, tf, a.warmup, a.connections, a.load_cpu, mix_path.get(key_, PATH))
    results = {m[0]: [] for m in mixes}
    for r in range(a.rounds):
        order = mixes[r % len(mixes):] + mixes[:r % len(mixes)]
        for key_, pk, tf, label in order:
            m = measure(peers[pk], tf, a, mix_path.get(key_, PATH))
            results[key_].append(m)
            log(f"  round {r + 1}/{a.rounds} {label:42s} {m['rps']:9.0f} req/s  "
                f"p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms  "
                f"{m['cpu10k']:.3f} CPU-s/10k  errors {m['errors']}")

    # Pairs: the cached-token mix and the bare proxy back to back, the order
    # flipped each pair. A shared VM's speed drifts by tens of percent within
    # minutes, more than the rounds above (minutes apart for one peer) can
    # average out; two runs seconds apart see the same machine, so the ratio
    # of each pair is what the 85 % and p99 targets are judged on.
    pairs = []
    if a.pairs and "f-hit" in results:
        log(f"load bench: {a.pairs} back-to-back pairs of (b) and (f) cached token, "
            f"{a.pair_duration}s each")
        for i in range(a.pairs):
            sides = [("b", peers["b"]), ("f", peers["f"])]
            if i % 2:
                sides.reverse()
            got = {k: measure(peer, one_file, a, seconds=a.pair_duration) for k, peer in sides}
            b_, f_ = got["b"], got["f"]
            pairs.append({"rps": f_["rps"] / b_["rps"], "p99": f_["p99_ms"] / b_["p99_ms"],
                          "cpu": f_["cpu10k"] / b_["cpu10k"], "b_rps": b_["rps"]})
            log(f"  pair {i + 1}/{a.pairs}: bare {b_['rps']:8.0f} req/s, chatwarden "
                f"{pairs[-1]['rps']:.2f}× req/s, p99 {pairs[-1]['p99']:.2f}×, "
                f"CPU/req {pairs[-1]['cpu']:.2f}×")

    load_after = open("/proc/loadavg").read().split()[:3]
    med = {k: {f: statistics.median(x[f] for x in v)
               for f in ("rps", "p50_ms", "p99_ms", "cpu10k", "rss_peak")}
           for k, v in results.items()}
    errors = {k: sum(x["errors"] for x in v) for k, v in results.items()}

    # Memory with many idle keep-alive connections (b and f).
    held = {}
    if a.idle_connections:
        for pk in ("b", "f"):
            try:
                socks = hold_connections(peers[pk].port, tokens["good"], a.idle_connections)
                time.sleep(1)
                held[pk] = rss_mib(peers[pk].pid)
                for s in socks:
                    s.close()
            except OSError as e:
                held[pk] = f"failed: {e}"
            time.sleep(1)

    # Memory during a large redacted export (b streams it through; f
    # buffers each body under its 16 MiB cap, filters and masks it, and
    # sends it).
    exports = {}
    if a.export_seconds:
        for pk in ("b", "f"):
            sampler = RssSampler(peers[pk].pid)
            sampler.start()
            n, got, bad = export_load(peers[pk].port, tokens["good"], a.export_seconds)
            sampler.stop.set()
            sampler.join()
            exports[pk] = (sampler.peak, n, got, bad)
            time.sleep(1)

    # The audit really was written, and its chain holds.
    time.sleep(1)
    with open(audit, "rb") as f:
        audit_lines = sum(1 for _ in f)
    verify_out = subprocess.run([a.chatwarden, "audit", "verify", audit], capture_output=True,
                                text=True)
    audit_note = (f"{audit_lines:,} audit records written by (f) during the run; "
                  f"`chatwarden audit verify`: "
                  f"{'ok' if verify_out.returncode == 0 else 'FAILED: ' + verify_out.stdout + verify_out.stderr}")

    # Instructions per request under callgrind (opt-in, slow: valgrind runs
    # the peer about 50 times slower). Fresh peers on new ports, so the
    # measured ones above are untouched.
    instr = []
    if a.instructions:
        log(f"load bench: counting instructions for {a.instructions} requests per peer (callgrind)")
        ib, ifp = free_port(), free_port()
        bare_ir = instructions_per_request(
            "bare", [a.bare_proxy, "--serve", f"127.0.0.1:{ib}", "--upstream", up], ib, workdir,
            PATH, [tokens["good"]], a.instructions)
        cw_argv = [a.chatwarden, "run", "-c", render(
            "chatwarden.yaml", conf("chatwarden-callgrind.yaml"), ADDR=f"127.0.0.1:{ifp}",
            UPSTREAM=up, PUBKEY=pub, AUDIT=conf("audit-callgrind.jsonl")), "--threads", "1"]
        hit_ir = instructions_per_request("chatwarden-hit", cw_argv, ifp, workdir, PATH,
                                          [tokens["good"]], a.instructions)
        fresh_ir = instructions_per_request("chatwarden-fresh", cw_argv, ifp, workdir, PATH,
                                            fresh, a.instructions)
        # The 12 KB list with redaction, against bare pingora passing the same body.
        ib = free_port()
        bare_list_ir = instructions_per_request(
            "bare-list", [a.bare_proxy, "--serve", f"127.0.0.1:{ib}", "--upstream", up], ib,
            workdir, REDACT_PATH, [tokens["good"]], a.instructions)
        redact_ir = instructions_per_request("chatwarden-redact", cw_argv, ifp, workdir,
                                             REDACT_PATH, [tokens["good"]], a.instructions)
        instr = [
            "| peer | instructions per request (user space) | ×bare |",
            "|---|---:|---:|",
            f"| (b) bare pingora | {bare_ir:,.0f} | 1.00 |",
            f"| (f) chatwarden, cached token | {hit_ir:,.0f} | {hit_ir / bare_ir:.2f} |",
            f"| (f) chatwarden, new token each request | {fresh_ir:,.0f} | {fresh_ir / bare_ir:.2f} |",
            f"| (b) bare pingora, 12 KB list | {bare_list_ir:,.0f} | 1.00 |",
            f"| (g) chatwarden, 12 KB list, redaction | {redact_ir:,.0f} "
            f"| {redact_ir / bare_list_ir:.2f} |",
            "",
            f"callgrind, {a.instructions:,} requests per peer after 300 to warm up, all threads; "
            "the 12 KB list rows are a ratio to bare pingora passing the same list. "
            "Kernel work (the same syscalls for every pingora peer) is not counted, and "
            "valgrind's CPU has no SHA-NI, so SHA-256 (token digests, the audit hash chain) "
            "counts several times what it costs natively. With `--keep`, the callgrind files "
            "stay in the work directory for `callgrind_files.py` (see the README).",
        ]

    # ------------------------------------------------------------ the table
    base = med["b"]
    rows = ["| mix | req/s (×b) | p50 ms (×b) | p99 ms (×b) | CPU-s per 10k req (×b) "
            "| µs CPU/req | RSS idle → load MiB | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key_, pk, _, label in mixes:
        m = med[key_]
        flag = "" if enforcing[pk] else " ⚠ checks failed"
        rows.append(
            f"| {label}{flag} | {m['rps']:,.0f} ({fmt_ratio(m['rps'], base['rps'])}) "
            f"| {m['p50_ms']:.2f} ({fmt_ratio(m['p50_ms'], base['p50_ms'])}) "
            f"| {m['p99_ms']:.2f} ({fmt_ratio(m['p99_ms'], base['p99_ms'])}) "
            f"| {m['cpu10k']:.3f} ({fmt_ratio(m['cpu10k'], base['cpu10k'])}) "
            f"| {m['cpu10k'] * 100:.1f} "
            f"| {peers[pk].rss_idle:.1f} → {m['rss_peak']:.1f} "
            f"| {errors[key_]}{' ⚠' if errors[key_] else ''} |")
    table = "\n".join(rows)

    # Issue 5's targets, judged on these medians. "Per core" = requests per
    # CPU-second of the peer's own processes (1 / CPU per request).
    def per_core(k):
        return 1e4 / med[k]["cpu10k"] if k in med and med[k]["cpu10k"] else None

    targets = []

    def target(text, ok, detail):
        if ok is None:
            targets.append(f"- n/a: {text} ({detail})")
        else:
            targets.append(f"- {'met' if ok else '**missed**'}: {text} — {detail}")

    def spread(key, fmt):
        v = sorted(p[key] for p in pairs)
        return statistics.median(v), f"{fmt(v[0])}–{fmt(v[-1])}"

    if "f-hit" in med:
        f, b = med["f-hit"], med["b"]
        if pairs:
            rps, rps_range = spread("rps", lambda x: f"{x:.0%}")
            p99, p99_range = spread("p99", lambda x: f"{x:.2f}×")
            cpu = statistics.median(p["cpu"] for p in pairs)
            n = len(pairs)
            target("cached token: ≥ 85% of bare pingora's throughput", rps >= 0.85,
                   f"{rps:.0%} of req/s, median of {n} back-to-back pairs (range {rps_range}); "
                   f"per core {1 / cpu:.0%}; the table's medians: {f['rps'] / b['rps']:.0%}")
            target("cached token: p99 within 1.2× bare pingora", p99 <= 1.2,
                   f"{p99:.2f}×, median of {n} pairs (range {p99_range}); the table's medians: "
                   f"{f['p99_ms'] / b['p99_ms']:.2f}×")
        else:
            target("cached token: ≥ 85% of bare pingora's throughput", f["rps"] >= 0.85 * b["rps"],
                   f"{f['rps'] / b['rps']:.0%} of req/s; per core "
                   f"{per_core('f-hit') / per_core('b'):.0%}")
            target("cached token: p99 within 1.2× bare pingora", f["p99_ms"] <= 1.2 * b["p99_ms"],
                   f"{f['p99_ms'] / b['p99_ms']:.2f}×")
        for k, factor, name in (("e-hit", 1.5, "Envoy with its token cache"), ("d", 3.0, "HAProxy")):
            if k in med:
                ratio = per_core("f-hit") / per_core(k)
                target(f"cached token: per core ≥ {factor}× {name}", ratio >= factor,
                       f"{ratio:.2f}× (req/s {f['rps'] / med[k]['rps']:.2f}×)")
        if "c" in med:
            ratio = per_core("f-hit") / per_core("c")
            target("≥ half of nginx's throughput (per core)", ratio >= 0.5,
                   f"{ratio:.2f}× per core, {f['rps'] / med['c']['rps']:.2f}× req/s "
                   "(req/s on this box is capped by the load generator's core for fast peers)")
    if "f-fresh" in med:
        for k, name in (("e-hit", "Envoy (token cache on)"), ("e-fresh", "Envoy on the same fresh tokens"),
                        ("d", "HAProxy")):
            if k in med:
                ratio = per_core("f-fresh") / per_core(k)
                target(f"new token every request: beats {name} per core", ratio > 1.0,
                       f"{ratio:.2f}×")
    target("redaction ≥ half the speed of a plain serde_json parse+serialize", None,
           "a micro-benchmark target: `cargo bench --bench rewrite` prints rewrite/round-trip "
           "time ratios (≤ 2 meets it)")
    for k, what in (("g", "redaction"), ("f-rows", "row filter + redaction")):
        if k in med and "b-rows" in med:
            f, b = med[k], med["b-rows"]
            targets.append(
                f"- {what} on the 12 KB list (no target of its own): chatwarden "
                f"{f['rps'] / b['rps']:.2f}× bare pingora's req/s on the same body, "
                f"CPU per request {f['cpu10k'] / b['cpu10k']:.2f}×")

    mem = [f"- (f) chatwarden RSS: idle {peers['f'].rss_idle:.1f} MiB, under load "
           f"(c={a.connections}) {med['f-hit']['rss_peak'] if 'f-hit' in med else float('nan'):.1f} MiB"]
    for pk, v in held.items():
        what = f"{v:.1f} MiB" if isinstance(v, float) else v
        mem.append(f"- {peers[pk].label} with {a.idle_connections:,} idle keep-alive connections: {what}")
    for pk, (peak, n, got, bad) in exports.items():
        mem.append(f"- {peers[pk].label} during a large export ({export_bytes / 1e6:.1f} MB list, "
                   f"4 clients, {a.export_seconds}s{', row filter + redaction' if pk == 'f' else ''}): "
                   f"peak {peak:.1f} MiB, {n} downloads, "
                   f"{n * export_bytes / 1e6 / a.export_seconds:.0f} MB/s of upstream body handled, "
                   f"{got / 1e6 / a.export_seconds:.0f} MB/s sent"
                   f"{f', {bad} failed' if bad else ''}")
    if not exports:
        mem.append("- during a large export: not run (--export-seconds 0)")

    checks = []
    for k, peer in peers.items():
        got = ", ".join(f"{n}: {s}" for n, s in peer.checks.items())
        checks.append(f"- {peer.label}{'' if enforcing[k] else ' **FAILED**'}: {got}")

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    envoy_v = version([a.envoy, "--version"], r"version: [0-9a-f]+/(\d+\.\d+\.\d+)") if a.envoy else "not run"
    setup = (
        f"{now} · {machine()} · chatwarden {rev}\n\n"
        f"nginx {version([nginx, '-v'])}, HAProxy {version([haproxy, '-v'])}, Envoy {envoy_v}, "
        f"wrk {version(['wrk', '-v'])}, pingora 0.9. "
        f"ES256 tokens for every peer. wrk: 1 thread, {a.connections} connections, "
        f"{a.duration} s per mix per round, {a.rounds} interleaved rounds (order rotated each "
        f"round) after a {a.warmup} s warm-up; medians shown. "
        + (f"Then {len(pairs)} back-to-back pairs of (b) and (f) cached token, {a.pair_duration} s "
           "each, order flipped each pair: the 85 % and p99 targets are judged on the median of "
           "the pairs' ratios, since the machine's speed drifts between rounds minutes apart "
           f"(bare pingora read {min(p['b_rps'] for p in pairs):,.0f}–"
           f"{max(p['b_rps'] for p in pairs):,.0f} req/s across the pairs). " if pairs else "")
        + ("Peers pinned to CPU 1, wrk and the upstream (nginx, 1 worker) to CPU 0. "
           if pin else "No CPU pinning (taskset missing or one CPU). ")
        + "CPU = utime+stime of the peer's processes (all threads) from /proc; per core = "
        "requests per CPU-second of the peer. Fresh-token mixes cycle through "
        f"{a.tokens:,} pre-minted tokens (caches hold 100), so practically every request pays "
        "a full signature check. "
        f"Load average (1/5/15 min) before the rounds {' '.join(load_before)}, after "
        f"{' '.join(load_after)}: anything else running on the machine shows up in the numbers."
    )
    doc = "\n".join([
        "# Load benchmark results", "", setup, "", table, "",
        "## Issue 5 targets", "", *targets, "", "## Memory", "", *mem, "",
        *(["## Instructions per request", "", *instr, ""] if instr else []),
        "## Enforcement checked before measuring", "", *checks, "", f"- {audit_note}", "",
        "## What each peer does", "",
        *[f"- {p.label}: {p.what}" for p in peers.values()], "",
        "Reproduce: `benches/load/run` (see benches/load/README.md).", ""])
    print(doc)
    with open(a.out, "w") as f:
        f.write(doc)
    log(f"load bench: written to {a.out}")
    bad = [k for k, v in errors.items() if v] + [k for k, ok in enforcing.items() if not ok]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
