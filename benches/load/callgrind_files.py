#!/usr/bin/env python3
"""Instructions per request by source file, from two callgrind files: where one
peer spends more than the other, inlined code included.

The production profile (fat LTO, one codegen unit) inlines pingora's proxy loop
and the gateway's hooks into a few huge functions, so callgrind's per-function
view puts a third of a chatwarden request in `__rust_begin_short_backtrace`.
Built with line tables, callgrind still knows which source file each inlined
instruction came from (its `fi=`/`fe=` records); this sums self cost per file
(per crate file for dependencies) and prints the files whose cost differs most:

    CARGO_TARGET_DIR=target/prof CARGO_PROFILE_PRODUCTION_DEBUG=line-tables-only \\
        cargo build --profile production --bin chatwarden        # and the bare_proxy bench
    python3 benches/load/bench.py ... --only b,f-hit --pairs 0 --instructions 2000 --keep
    python3 benches/load/callgrind_files.py WORKDIR/callgrind.bare.1 \\
        WORKDIR/callgrind.chatwarden-hit.1 --requests 2000

Standard library only. Reads callgrind's format as written with `--dump-instr=no`
(the default line-level positions, compressed names).
"""

import argparse
import collections
import os
import re

NAMED = re.compile(r"\((\d+)\)\s*(.*)")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Names:
    """callgrind's name compression: `(id) name` once, `(id)` after."""

    def __init__(self):
        self.by_id = {}

    def read(self, value):
        m = NAMED.match(value)
        if not m:
            return value
        ident, name = m.groups()
        if name:
            self.by_id[ident] = name
        return self.by_id.get(ident, "?")


def self_cost_by_file(path):
    """Self instructions per source file: the cost lines of every function,
    each under the file its instructions came from (`fi=`/`fe=` for inlined
    code), not the cost of the calls it makes."""
    files, functions = Names(), Names()
    cost = collections.Counter()
    function_file = current = "?"
    call_cost_next = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line[0].isdigit() or line[0] in "+-*":
                if call_cost_next:
                    # The inclusive cost of the call on the line before.
                    call_cost_next = False
                    continue
                fields = line.split()
                if len(fields) >= 2:
                    cost[current] += int(fields[1])
                continue
            key, _, value = line.partition("=")
            if key == "fl":
                function_file = current = files.read(value)
            elif key in ("fi", "fe"):
                current = files.read(value)
            elif key == "fn":
                functions.read(value)
                current = function_file
            elif key in ("cfi", "cfl"):
                files.read(value)
            elif key == "cfn":
                functions.read(value)
            elif key == "calls":
                call_cost_next = True
    return cost


def label(path):
    """A short name: crate/file for dependencies, std/… for the standard
    library, libc/… for the C library, the repository path for the gateway's
    own code."""
    m = re.search(r"/target/[^/]+(?:/[^/]+)?/build/([a-z0-9_-]+?)-[0-9a-f]{16}/", path)
    if m:
        return f"{m.group(1)} (C)"
    if path.startswith(REPO + "/"):
        return os.path.relpath(path, REPO)
    if "/sysdeps/" in path:
        return f"libc/{os.path.basename(path)}"
    m = re.search(r"/registry/src/[^/]+/([^/]+?)-\d[^/]*/(.*)", path)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    m = re.search(r"/rustc/[0-9a-f]+/library/(.*)", path)
    if m:
        return f"std/{m.group(1)}"
    return path


def by_label(cost):
    out = collections.Counter()
    for path, n in cost.items():
        out[label(path)] += n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="callgrind file of the baseline (e.g. callgrind.bare.1)")
    ap.add_argument("other", help="callgrind file to compare (e.g. callgrind.chatwarden-hit.1)")
    ap.add_argument("--requests", type=int, default=1, help="requests counted in each file")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    base = by_label(self_cost_by_file(a.base))
    other = by_label(self_cost_by_file(a.other))
    n = a.requests
    rows = sorted(set(base) | set(other), key=lambda k: base[k] - other[k])
    width = min(80, max(len(k) for k in rows))
    print(f"{'source file':{width}} {'base':>9} {'other':>9} {'diff':>9}   (instructions per request)")
    for k in rows[: a.top]:
        print(f"{k[:width]:{width}} {base[k] / n:9.0f} {other[k] / n:9.0f} {(other[k] - base[k]) / n:+9.0f}")
    total_b, total_o = sum(base.values()) / n, sum(other.values()) / n
    print(f"{'total':{width}} {total_b:9.0f} {total_o:9.0f} {total_o - total_b:+9.0f}")


if __name__ == "__main__":
    main()
