"""Workload identity (identity-oidc): every sandbox's token, verified by an
independent verifier (PyJWT's PyJWKClient against hutchd's JWKS URL) and
by hutchd; what hutchd's verification refuses; key rotation; renewal of
the token file; the metadata endpoint; token exchange and its audit; and
that a sandbox only ever gets its own identity."""
import base64
import glob
import hashlib
import json
import os
import socket
import stat
import time
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hutchtest import Daemon, daemon

GITHUB_CANARY = "ghs_canary_7d41e0a9c2b35f86"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def identity_config(extra="", ttl="10m", rules=None):
    port = free_port()
    issuer = "http://127.0.0.1:%d" % port
    text = """
[plugins]
identity = "identity-oidc"
[http]
listen = "127.0.0.1:%d"
[plugin.identity-oidc]
issuer = "%s"
token_ttl = "%s"
""" % (port, issuer, ttl)
    if rules:
        text += 'exchange_rules = "%s"\n' % rules
    return text + extra, issuer


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parts(token):
    h, p, s = token.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p)), s


def token_file(d, sid):
    return d.cli("exec", sid, "--", "cat", "/run/hutch/identity/token").stdout.decode().strip()


def metadata(d, sid, path, headers=("Metadata-Flavor: hutch",), post=None):
    """wget inside the sandbox: (ok, body or error line)."""
    cmd = ["wget", "-q", "-O", "-"]
    for h in headers:
        cmd += ["--header", h]
    if post is not None:
        cmd += ["--header", "Content-Type: application/x-www-form-urlencoded",
                "--post-data", post]
    r = d.cli("exec", sid, "--", *cmd, "http://169.254.169.254" + path, check=False)
    return r.returncode == 0, (r.stdout if r.returncode == 0 else r.stderr).decode().strip()


def hutch_verify(d, token, audience=None):
    args = ["identity", "verify"] + (["--audience", audience] if audience else []) + ["-"]
    r = d.cli(*args, input=token.encode(), check=False)
    return r.returncode == 0, (r.stdout + r.stderr).decode()


def signing_keys(d):
    """The issuer's private keys, from its state dir (the test runs as
    root, like hutchd); newest last."""
    files = sorted(glob.glob(os.path.join(d.state, "plugins", "identity-oidc", "keys", "*.pem")))
    out = []
    for f in files:
        with open(f, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), None)
        kid = os.path.basename(f)[:-4].split("-", 1)[1]
        out.append((kid, key, f))
    return out


def forge(key, kid, claims, alg="ES256"):
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


def good_claims(issuer, **over):
    now = int(time.time())
    c = {"iss": issuer, "sub": "sandbox:default/sb-forged", "aud": "hutch", "iat": now,
         "nbf": now, "exp": now + 300, "jti": "x", "tenant": "default",
         "sandbox_id": "sb-forged"}
    c.update(over)
    return c


def test_tokens_verify_with_pyjwt_and_hutchd():
    cfg, issuer = identity_config()
    with daemon(cfg) as d:
        a = d.cli("sandbox", "create", "--name", "agent-a").stdout.decode().strip()
        b = d.cli("sandbox", "create", "--identity-audience", "https://svc.example").stdout.decode().strip()
        # Discovery at the issuer URL, as any verifier would find it.
        disco = json.load(urllib.request.urlopen(issuer + "/.well-known/openid-configuration"))
        assert disco["issuer"] == issuer
        assert disco["id_token_signing_alg_values_supported"] == ["ES256"]
        client = jwt.PyJWKClient(disco["jwks_uri"])

        ta, tb = token_file(d, a), token_file(d, b)
        assert ta != tb
        env = d.cli("exec", a, "--", "env").stdout.decode()
        assert "HUTCH_IDENTITY_TOKEN_FILE=/run/hutch/identity/token" in env
        for sid, tok, aud, name in ((a, ta, "hutch", "agent-a"), (b, tb, "https://svc.example", None)):
            header, _, _ = parts(tok)
            assert header["alg"] == "ES256" and header["typ"] == "JWT" and header["kid"]
            key = client.get_signing_key_from_jwt(tok)
            c = jwt.decode(tok, key.key, algorithms=["ES256"], audience=aud, issuer=issuer,
                           options={"require": ["exp", "iat", "nbf", "jti", "sub"]})
            assert c["sub"] == "sandbox:default/" + sid
            assert c["tenant"] == "default" and c["sandbox_id"] == sid
            assert c.get("sandbox_name") == name
            assert 0 < c["exp"] - c["iat"] <= 15 * 60
            assert c["nbf"] <= time.time() + 1
            # The wrong audience fails in PyJWT too: the check is real.
            with pytest.raises(jwt.InvalidAudienceError):
                jwt.decode(tok, key.key, algorithms=["ES256"], audience="someone-else")
            ok, out = hutch_verify(d, tok, aud)
            assert ok and sid in out, out

        # The metadata endpoint: a fresh token for the asked audience, and
        # only with the header.
        ok, t = metadata(d, a, "/v1/identity/token?audience=https%3A%2F%2Fdb.example")
        assert ok, t
        c = jwt.decode(t, client.get_signing_key_from_jwt(t).key, algorithms=["ES256"],
                       audience="https://db.example", issuer=issuer)
        assert c["sandbox_id"] == a and c["jti"] != parts(ta)[1]["jti"]
        ok, t = metadata(d, b, "/v1/identity/token")
        assert ok and parts(t)[1]["aud"] == "https://svc.example"   # the sandbox's own default
        ok, err = metadata(d, a, "/v1/identity/token", headers=())
        assert not ok and "403" in err
        ok, err = metadata(d, a, "/v1/identity/token",
                           headers=("Metadata-Flavor: hutch", "X-Forwarded-For: 10.0.0.1"))
        assert not ok and "403" in err
        ok, err = metadata(d, a, "/v1/identity/token", headers=("Metadata-Flavor: Google",))
        assert not ok and "403" in err
        # Garbage on the endpoint gets a 400 and hurts nothing.
        r = d.cli("exec", a, "--", "sh", "-c",
                  "printf 'NOT HTTP\\r\\n\\r\\n' | nc 169.254.169.254 80", check=False)
        assert b"400" in r.stdout
        ok, _ = metadata(d, a, "/v1/identity/token")
        assert ok

        # Private keys: 0600 files in a 0700 directory.
        keys = signing_keys(d)
        assert len(keys) == 1
        assert stat.S_IMODE(os.stat(keys[0][2]).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(keys[0][2])).st_mode) == 0o700
        # Tokens are not in inspect output, listings or the log.
        seen = d.cli("--json", "sandbox", "inspect", a).stdout.decode()
        seen += d.cli("--json", "sandbox", "ls", "-a").stdout.decode() + d.log()
        assert ta not in seen and ta.split(".")[2] not in seen


def test_hutchd_refuses_bad_tokens():
    cfg, issuer = identity_config()
    with daemon(cfg) as d:
        kid, key, _ = signing_keys(d)[0]
        pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        # The control: a token signed by the real key with good claims passes,
        # so every refusal below is for the one thing changed.
        ok, out = hutch_verify(d, forge(key, kid, good_claims(issuer)))
        assert ok, out
        # Within the clock skew (30 s) an expired token still passes...
        ok, out = hutch_verify(d, forge(key, kid, good_claims(issuer, exp=int(time.time()) - 5)))
        assert ok, out

        def refused(token, why):
            ok, out = hutch_verify(d, token)
            assert not ok, "accepted: " + why
            assert "token rejected" in out, out
            return out

        c = good_claims(issuer)
        payload = b64(json.dumps(c).encode())
        # alg none, with and without a signature part.
        none_hdr = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        refused(none_hdr + "." + payload + ".", "alg none")
        refused(none_hdr + "." + payload, "alg none, two parts")
        # HS256 keyed with the public key (the classic confusion).
        hs_hdr = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        mac = hmac.HMAC(pub_pem, hashes.SHA256())
        mac.update((hs_hdr + "." + payload).encode())
        refused(hs_hdr + "." + payload + "." + b64(mac.finalize()), "HS256 with the public key")
        # Wrong audience, wrong issuer, expired beyond the skew, not yet valid.
        assert "audience" in refused(forge(key, kid, good_claims(issuer, aud="other")), "aud")
        refused(forge(key, kid, good_claims(issuer, aud=["x", "y"])), "aud list without ours")
        assert "issuer" in refused(forge(key, kid, good_claims("http://evil.example")), "iss")
        assert "expired" in refused(
            forge(key, kid, good_claims(issuer, exp=int(time.time()) - 120)), "expired")
        refused(forge(key, kid, good_claims(issuer, nbf=int(time.time()) + 600)), "nbf")
        # Unknown kid; and a foreign key claiming the real kid.
        other = ec.generate_private_key(ec.SECP256R1())
        assert "kid" in refused(forge(other, "nope", c), "unknown kid")
        refused(forge(other, kid, c), "foreign key, real kid")
        # A tampered payload under a real signature.
        real = forge(key, kid, c)
        h, p, s = real.split(".")
        tampered = dict(c, sandbox_id="sb-someone-else")
        refused(h + "." + b64(json.dumps(tampered).encode()) + "." + s, "tampered payload")
        # ECDSA signatures with r or s zero, or r = n.
        sig = unb64(s)
        n = ec.SECP256R1().key_size and 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        for bad in (bytes(32) + sig[32:], sig[:32] + bytes(32), bytes(64),
                    n.to_bytes(32, "big") + sig[32:]):
            assert "range" in refused(h + "." + p + "." + b64(bad), "r/s out of range")
        # A DER signature (what OpenSSL makes) is not the JWS form.
        der = key.sign((h + "." + p).encode(), ec.ECDSA(hashes.SHA256()))
        refused(h + "." + p + "." + b64(der), "DER signature")
        # Duplicate claims: two "aud" members are refused, not guessed at.
        dup = ('{"iss":"%s","aud":"other","aud":"hutch","exp":%d}' % (issuer, time.time() + 300))
        raw = (b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": kid}).encode()) + "." +
               b64(dup.encode()))
        r_, s_ = decode_dss_signature(key.sign(raw.encode(), ec.ECDSA(hashes.SHA256())))
        refused(raw + "." + b64(r_.to_bytes(32, "big") + s_.to_bytes(32, "big")), "duplicate aud")
        # Garbage.
        for junk in ("", "a.b.c", "....", "x" * 20000):
            ok, _ = hutch_verify(d, junk or " ")
            assert not ok


def test_rotation_keeps_old_tokens_valid():
    cfg, issuer = identity_config()
    d = Daemon(cfg)
    try:
        sid = d.cli("sandbox", "create").stdout.decode().strip()
        old = token_file(d, sid)
        old_kid = parts(old)[0]["kid"]
        d.cli("identity", "rotate")
        jwks = json.load(urllib.request.urlopen(issuer + "/.well-known/jwks.json"))
        kids = [k["kid"] for k in jwks["keys"]]
        assert len(kids) == 2 and old_kid in kids
        ok, new = metadata(d, sid, "/v1/identity/token")
        assert ok and parts(new)[0]["kid"] != old_kid and parts(new)[0]["kid"] in kids
        for tok in (old, new):
            client = jwt.PyJWKClient(issuer + "/.well-known/jwks.json")
            jwt.decode(tok, client.get_signing_key_from_jwt(tok).key, algorithms=["ES256"],
                       audience="hutch", issuer=issuer)
            assert hutch_verify(d, tok)[0]
        # The keys survive a restart: both tokens still verify after it.
        d.stop()
        d.start()
        for tok in (old, new):
            assert hutch_verify(d, tok)[0]
        assert len(json.load(urllib.request.urlopen(issuer + "/.well-known/jwks.json"))["keys"]) == 2
        # Rotation is the operator's: not for API keys over TCP (none here),
        # and a second rotation leaves three keys, all 0600.
        d.cli("identity", "rotate")
        keys = signing_keys(d)
        assert len(keys) == 3
        assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for _, _, f in keys)
    finally:
        d.cleanup()


def test_token_file_renewed_atomically_and_stops_with_sandbox():
    cfg, issuer = identity_config(ttl="1m")
    with daemon(cfg) as d:
        sid = d.cli("sandbox", "create", "--name", "renew-me").stdout.decode().strip()
        first = token_file(d, sid)
        # Read the file over and over while it is renewed (at 2/3 of 60 s):
        # every read is a whole token.
        script = ("i=0; while [ $i -lt 300 ]; do t=$(cat /run/hutch/identity/token); "
                  "echo \"$t\" | grep -qE '^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{86}$' "
                  "|| echo BAD; [ \"$t\" != \"%s\" ] && { echo RENEWED; break; }; "
                  "sleep 0.2; i=$((i+1)); done" % first)
        out = d.cli("exec", sid, "--", "sh", "-c", script, timeout=120).stdout.decode()
        assert "BAD" not in out and "RENEWED" in out, out
        second = token_file(d, sid)
        assert parts(second)[1]["exp"] > parts(first)[1]["exp"]
        assert hutch_verify(d, second)[0]
        d.cli("sandbox", "stop", sid)
        # Stopped: no renewal happens (its directory is gone) and the
        # metadata endpoint is gone with it.
        assert not os.path.exists(os.path.join(d.run, "sandboxes", sid))


EXCHANGE_RULES = """
[[upstream]]
name = "github"
type = "static"
credential_file = "%s"
ttl = "5m"
tenants = ["default"]
sandbox_names = ["agent-*"]

[[upstream]]
name = "billing"
type = "jwt"
audience = "https://billing.internal"
ttl = "2m"
"""


def exchange_form(token, resource):
    return urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "resource": resource,
    })


def test_token_exchange_policy_and_audit(tmp_path):
    cred = tmp_path / "github.token"
    cred.write_text(GITHUB_CANARY + "\n")
    os.chmod(cred, 0o600)
    rules = tmp_path / "rules.toml"
    rules.write_text(EXCHANGE_RULES % cred)
    cfg, issuer = identity_config(rules=str(rules))
    with daemon(cfg) as d:
        agent = d.cli("sandbox", "create", "--name", "agent-7").stdout.decode().strip()
        other = d.cli("sandbox", "create", "--name", "batch-1").stdout.decode().strip()
        ta, to = token_file(d, agent), token_file(d, other)
        # From inside the sandbox, through its metadata endpoint.
        ok, body = metadata(d, agent, "/v1/token", post=exchange_form(ta, "github"))
        assert ok, body
        r = json.loads(body)
        assert r["access_token"] == GITHUB_CANARY and r["token_type"] == "Bearer"
        assert 0 < r["expires_in"] <= 300
        # The policy: batch-1 may not have it; nobody gets an unknown one.
        ok, err = metadata(d, other, "/v1/token", post=exchange_form(to, "github"))
        assert not ok and "400" in err
        ok, err = metadata(d, agent, "/v1/token", post=exchange_form(ta, "nope"))
        assert not ok and "400" in err
        # At the issuer's token endpoint from the host, with RFC 8693 errors.
        req = urllib.request.Request(issuer + "/v1/token", data=exchange_form(ta, "billing").encode())
        r = json.load(urllib.request.urlopen(req))
        billing = r["access_token"]
        client = jwt.PyJWKClient(issuer + "/.well-known/jwks.json")
        c = jwt.decode(billing, client.get_signing_key_from_jwt(billing).key, algorithms=["ES256"],
                       audience="https://billing.internal", issuer=issuer)
        assert c["sandbox_id"] == agent and c["act"]["sub"] == "sandbox:default/" + agent
        assert c["exp"] - c["iat"] <= 120
        for form, code in ((exchange_form(to, "github"), "invalid_target"),
                           (exchange_form("not-a-token", "github"), "invalid_grant"),
                           (exchange_form(ta, "github").replace("token-exchange", "password"),
                            "unsupported_grant_type")):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(urllib.request.Request(issuer + "/v1/token", data=form.encode()))
            assert e.value.code == 400
            body = e.value.read().decode()
            assert json.loads(body)["error"] == code
            assert GITHUB_CANARY not in body
        # A stopped sandbox's token buys nothing more, even before it expires.
        d.cli("sandbox", "stop", agent)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(
                issuer + "/v1/token", data=exchange_form(ta, "billing").encode()))
        # One audit line per exchange, without the credential.
        with open(os.path.join(d.state, "audit.jsonl")) as f:
            lines = [json.loads(l) for l in f if "identity.exchange" in l]
        verdicts = [(l.get("resource"), l.get("verdict"), l.get("sandbox")) for l in lines]
        assert ("github", "allow", agent) in verdicts
        assert ("github", "deny", other) in verdicts
        assert ("billing", "allow", agent) in verdicts
        assert ("nope", "deny", agent) in verdicts
        assert sum(1 for v in verdicts if v[1] == "deny" and v[2] == agent) >= 2
        assert len(lines) == 7, verdicts
        with open(os.path.join(d.state, "audit.jsonl")) as f:
            audit = f.read()
        assert GITHUB_CANARY not in audit and GITHUB_CANARY not in d.log()


def test_a_sandbox_only_gets_its_own_identity():
    cfg, issuer = identity_config()
    with daemon(cfg) as d:
        a = d.cli("sandbox", "create", "--name", "agent-a").stdout.decode().strip()
        b = d.cli("sandbox", "create", "--name", "agent-b").stdout.decode().strip()
        ta = token_file(d, a)
        # Whatever B asks its endpoint, the subject is B.
        for q in ("", "?audience=hutch", "?sandbox=" + a, "?audience=x&sub=" + a):
            ok, t = metadata(d, b, "/v1/identity/token" + q)
            assert ok, t
            assert parts(t)[1]["sandbox_id"] == b, q
        # A's token is nowhere B can read.
        sig = ta.split(".")[2]
        out = d.cli("exec", b, "--", "sh", "-c",
                    "cat /run/hutch/identity/token; cat /proc/*/environ 2>/dev/null; "
                    "grep -rs . /run 2>/dev/null | head -c 100000", check=False).stdout.decode()
        assert sig not in out
        # The metadata address is the sandbox's own: B's is not A's.
        ok, t = metadata(d, a, "/v1/identity/token")
        assert parts(t)[1]["sandbox_id"] == a


def test_refuses_bad_identity_config(tmp_path):
    # A private key readable by others: hutchd will not start with it.
    cfg, _ = identity_config()
    d = Daemon(cfg)
    try:
        keys = signing_keys(d)
        d.stop()
        os.chmod(keys[0][2], 0o644)
        with pytest.raises(RuntimeError) as e:
            d.start()
        assert "readable by others" in str(e.value) and keys[0][2] in str(e.value)
        os.chmod(keys[0][2], 0o600)
        d.start()
    finally:
        d.cleanup()
    for extra, msg in (('issuer = "ftp://x"\n', "issuer must be"),
                       ('token_ttl = "1h"\n', "token_ttl must be")):
        bad = Daemon('[plugins]\nidentity = "identity-oidc"\n[http]\nlisten = "127.0.0.1:%d"\n'
                     '[plugin.identity-oidc]\n%s' % (free_port(), extra), start=False)
        try:
            with pytest.raises(RuntimeError) as e:
                bad.start()
            assert msg in str(e.value)
        finally:
            bad.cleanup()
    rules = tmp_path / "rules.toml"
    rules.write_text('[[upstream]]\nname = "x"\ntype = "static"\ncredential_file = "/x"\ncolour = 1\n')
    cfg, _ = identity_config(rules=str(rules))
    bad = Daemon(cfg, start=False)
    try:
        with pytest.raises(RuntimeError) as e:
            bad.start()
        assert "rules.toml:5:" in str(e.value) and "colour" in str(e.value)
    finally:
        bad.cleanup()
    # A credential file other users can read is refused too.
    cred = tmp_path / "cred"
    cred.write_text("s3cr3t-value\n")
    os.chmod(cred, 0o644)
    rules.write_text('[[upstream]]\nname = "x"\ntype = "static"\ncredential_file = "%s"\n' % cred)
    bad = Daemon(cfg, start=False)
    try:
        with pytest.raises(RuntimeError) as e:
            bad.start()
        assert "readable by others" in str(e.value) and "s3cr3t" not in str(e.value)
    finally:
        bad.cleanup()
