#!/usr/bin/python3
"""Workload identity benchmarks, each beside a baseline from the same run.

  bench/bench_identity.py [--runs N] [--json FILE]

  1. cold start with identity-oidc loaded (a token signed, written and
     mounted for every sandbox) against a hutchd without an identity plugin:
     create -> first command's output.
  2. a token from the metadata endpoint, fetched inside the sandbox with
     busybox wget, against `GET /` on the same endpoint (the same relay
     through the agent, no signing): what issuing costs on top of the path.
  3. Identity/VerifyToken over gRPC against Daemon/Status on the same
     channel (the unary round trip without the verification).
  4. token issue and verify inside the plugin, from the same daemon's
     counters: sign+verify per second against PyJWT verifying the same
     token in this process (an independent verifier's cost).

Needs root, runsc, python3-jwt, and a build in ./build (or $HUTCH_BUILD_DIR).
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import grpc  # noqa: E402
import jwt  # noqa: E402

from hutchtest import Daemon, protos, unary  # noqa: E402


def pct(values, p):
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values):
    return {"p50_ms": round(pct(values, 50) * 1000, 3), "p99_ms": round(pct(values, 99) * 1000, 3),
            "n": len(values)}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def identity_config():
    port = free_port()
    return ('[plugins]\nidentity = "identity-oidc"\n[http]\nlisten = "127.0.0.1:%d"\n'
            '[plugin.identity-oidc]\nissuer = "http://127.0.0.1:%d"\n' % (port, port),
            "http://127.0.0.1:%d" % port)


def cold_start(d, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = d.cli("run", "--", "echo", "hi")
        out.append(time.perf_counter() - t0)
        assert r.stdout == b"hi\n"
    return out


def in_sandbox_loop(d, sid, n, path, header=True):
    """n fetches of path in one exec; seconds per fetch."""
    h = "--header 'Metadata-Flavor: hutch'" if header else ""
    script = ("i=0; while [ $i -lt %d ]; do wget -q -O /dev/null %s "
              "'http://169.254.169.254%s' || exit 1; i=$((i+1)); done" % (n, h, path))
    t0 = time.perf_counter()
    d.cli("exec", sid, "--", "sh", "-c", script)
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args()
    pb = protos()
    res = {"runs": args.runs}

    cfg, issuer = identity_config()
    with_id, plain = Daemon(cfg), Daemon("")
    try:
        # 1. cold start, alternating so drift hits both alike.
        a, b = [], []
        for _ in range(args.runs):
            a += cold_start(with_id, 1)
            b += cold_start(plain, 1)
        res["cold_start"] = {"identity": summary(a), "baseline_no_identity": summary(b),
                             "ratio_p50": round(pct(a, 50) / pct(b, 50), 3)}

        # 2. the metadata endpoint, inside one sandbox.
        sid = with_id.cli("sandbox", "create").stdout.decode().strip()
        n = 50
        in_sandbox_loop(with_id, sid, 5, "/v1/identity/token?audience=warm")
        tok, root = [], []
        for _ in range(5):
            tok.append(in_sandbox_loop(with_id, sid, n, "/v1/identity/token?audience=bench"))
            root.append(in_sandbox_loop(with_id, sid, n, "/"))
        res["metadata_fetch"] = {
            "token_ms": round(statistics.median(tok) * 1000, 3),
            "baseline_get_root_ms": round(statistics.median(root) * 1000, 3),
            "ratio": round(statistics.median(tok) / statistics.median(root), 3),
            "fetches": n * 5}

        # 3. VerifyToken against Status, one channel.
        token = with_id.cli("exec", sid, "--", "cat",
                            "/run/hutch/identity/token").stdout.decode().strip()
        ch = grpc.insecure_channel("unix:" + with_id.sock)
        idp, dp = pb["identity"], pb["daemon"]
        for _ in range(50):
            unary(ch, "/hutch.v1.Identity/VerifyToken", idp.VerifyTokenRequest(token=token),
                  idp.VerifyTokenResponse)
        ver, st = [], []
        for _ in range(500):
            t0 = time.perf_counter()
            unary(ch, "/hutch.v1.Identity/VerifyToken", idp.VerifyTokenRequest(token=token),
                  idp.VerifyTokenResponse)
            ver.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            unary(ch, "/hutch.v1.Daemon/Status", dp.StatusRequest(), dp.StatusResponse)
            st.append(time.perf_counter() - t0)
        res["verify_rpc"] = {"verify": summary(ver), "baseline_status": summary(st),
                             "ratio_p50": round(pct(ver, 50) / pct(st, 50), 3)}

        # 4. an independent verifier in this process: PyJWT with the JWKS key.
        keys = jwt.PyJWKClient(issuer + "/.well-known/jwks.json")
        key = keys.get_signing_key_from_jwt(token).key
        t0 = time.perf_counter()
        m = 2000
        for _ in range(m):
            jwt.decode(token, key, algorithms=["ES256"], audience="hutch", issuer=issuer)
        res["pyjwt_verify_us"] = round((time.perf_counter() - t0) / m * 1e6, 1)
        ch.close()
    finally:
        with_id.cleanup()
        plain.cleanup()

    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
