"""Build steps and the network, with the real net-egress plugin (the world
of namespaces, dnsmasq and web server of test_egress.py) and the session's
debian_slim base: a step that needs the network gets it through the build
policies ([images] build_network_policies), bound like any sandbox's; a
step that does not need it has none."""
import os

from imagetest import build, import_debian_base, run_in, write_image
from test_egress import EgressDaemon, World, config
from test_images_debian import wheel


def test_build_steps_reach_the_network_only_as_the_build_policy_allows(tmp_path):
    w = World()
    try:
        # A PEP 503 index with one wheel, served by the world's web server
        # (every name of the test zone reaches it).
        fname, data = wheel("hutchnet", "2.0", "WHERE = 'from the index'\n")
        www = os.path.join(w.dir, "www")
        os.makedirs(os.path.join(www, "simple", "hutchnet"))
        with open(os.path.join(www, fname), "wb") as f:
            f.write(data)
        with open(os.path.join(www, "simple", "hutchnet", "index.html"), "w") as f:
            f.write('<a href="../../%s">%s</a>\n' % (fname, fname))
        d = EgressDaemon(w, config(identity=False, extra='[images]\nbuild_network_policies = ["build"]\n'))
        try:
            import_debian_base(d)
            def spec(host, name):
                # pip gives up on a dropped connection after 3 s, not minutes.
                return write_image(str(tmp_path), (
                    'name = "%s"\n[base]\ndebian_slim = { python = "3.11" }\n'
                    '[[steps]]\nenv = { PIP_RETRIES = "0", PIP_TIMEOUT = "3" }\n'
                    '[[steps]]\npip_install = { packages = ["hutchnet==2.0"], '
                    'index_url = "http://%s/simple" }\n' % (name, host)), name=name + ".toml")
            # Without the build policy in the tenant: a clear error first.
            b = build(d, spec("allowed.test", "net"), check=False)
            assert b.returncode == 1 and "network policy `build`" in b.err, b
            d.cli("policy", "create", "build", "--allow-host", "allowed.test")
            b = build(d, spec("allowed.test", "net"))
            assert b.ran() == [3], b
            assert run_in(d, "net", "python3 -c 'import hutchnet; print(hutchnet.WHERE)'") == \
                "from the index\n"
            # A name the policy does not allow: the step cannot reach it.
            b = build(d, spec("denied.test", "denied"), check=False)
            assert b.returncode == 1 and b.final()[3] == "FAILED", b
            assert b"denied" not in d.cli("image", "ls").stdout
            # run_commands never gets the network.
            p = write_image(str(tmp_path), 'name = "offline"\n[base]\ndebian_slim = { python = "3.11" }\n'
                            '[[steps]]\nrun_commands = "python3 -c \\"import urllib.request as u; '
                            'u.urlopen(\'http://allowed.test/\', timeout=5)\\""\n', name="offline.toml")
            b = build(d, p, check=False)
            assert b.returncode == 1 and b.final()[2] == "FAILED", b
        finally:
            d.cleanup()
    finally:
        w.close()
