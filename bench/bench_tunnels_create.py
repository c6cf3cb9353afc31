#!/usr/bin/python3
"""What joining a tunnel adds to a whole sandbox create, end to end.

  bench/bench_tunnels_create.py [--runs N] [--json FILE]

hutchd with net-egress and net-wireguard in test_egress's namespaces (its
World: nothing reaches the machine's own network), real runsc sandboxes
created through the CLI, alternately without and with `--tunnel` (one
member already in the tunnel, so each join updates a peer), each stopped
right after: the baseline is the create without a tunnel, in the same run.
Needs root, runsc, wireguard-go and a build in ./build (or
$HUTCH_BUILD_DIR).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from test_egress import EgressDaemon, World  # noqa: E402
from test_tunnels import config, wg_pids  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    w = World()
    prefix = "c%04x" % (os.getpid() & 0xffff)
    d = EgressDaemon(w, config(prefix))
    try:
        first = d.cli("sandbox", "create", "--tunnel", "bench").stdout.decode().strip()
        plain, joined = [], []
        for i in range(args.runs):
            for extra, out in (([], plain), (["--tunnel", "bench"], joined)):
                t0 = time.monotonic()
                sid = d.cli("sandbox", "create", *extra).stdout.decode().strip()
                out.append((time.monotonic() - t0) * 1000)
                d.cli("sandbox", "stop", sid)
        d.cli("sandbox", "stop", first)
        res = {
            "runs": args.runs,
            "create_ms": {"p50": pct(plain, 50), "p95": pct(plain, 95)},
            "create_with_tunnel_ms": {"p50": pct(joined, 50), "p95": pct(joined, 95)},
        }
        res["added_ms"] = {k: res["create_with_tunnel_ms"][k] - res["create_ms"][k]
                           for k in ("p50", "p95")}
        print("sandbox create, p50 / p95: %.1f / %.1f ms; with --tunnel: %.1f / %.1f ms; "
              "added: %.1f / %.1f ms" % (res["create_ms"]["p50"], res["create_ms"]["p95"],
                                         res["create_with_tunnel_ms"]["p50"],
                                         res["create_with_tunnel_ms"]["p95"],
                                         res["added_ms"]["p50"], res["added_ms"]["p95"]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
        assert wg_pids(prefix) == []
    finally:
        d.cleanup()
        w.close()


if __name__ == "__main__":
    main()
