"""Every docs page the documentation and the API's .proto files point at
exists: a link a reader follows must not end nowhere."""
import glob
import os
import re

from hutchtest import SOURCE_DIR


def _sources():
    pats = ["README.md", "docs/*.md", "sdk/python/README.md", "core/api/hutch/v1/*.proto",
            "sdk/include/hutch/*.h", "sdk/c/*.h"]
    for p in pats:
        yield from glob.glob(os.path.join(SOURCE_DIR, p))


def test_docs_references_resolve():
    dead = []
    for f in _sources():
        text = open(f, encoding="utf-8").read()
        here = os.path.dirname(f)
        # Markdown links to local files, and "docs/NAME.md" in prose and comments.
        refs = [m.group(1) for m in re.finditer(r"\]\(([^)#\s]+)", text)
                if "://" not in m.group(1) and not m.group(1).startswith("mailto:")]
        refs += [m.group(0) for m in re.finditer(r"(?<![\w/.-])docs/[\w.-]+\.md", text)]
        for ref in refs:
            candidates = [os.path.join(here, ref), os.path.join(SOURCE_DIR, ref)]
            if not any(os.path.exists(c) for c in candidates):
                dead.append("%s: %s" % (os.path.relpath(f, SOURCE_DIR), ref))
    assert not dead, "dead docs references:\n" + "\n".join(dead)


def test_config_doc_names_every_section_and_key():
    """docs/config.md shows every section and key `hutchd --describe daemon`
    knows (a key missing from the doc is one nobody finds)."""
    import subprocess
    from hutchtest import HUTCHD
    out = subprocess.run([HUTCHD, "--describe", "daemon"], capture_output=True, text=True,
                         check=True).stdout
    doc = open(os.path.join(SOURCE_DIR, "docs", "config.md"), encoding="utf-8").read()
    missing, section = [], None
    for line in out.splitlines():
        m = re.match(r"^(\[\[?[\w.]+\]\]?)$", line)
        if m:
            section = m.group(1)
            if not re.search(r"^%s" % re.escape(section), doc, re.M):
                missing.append(section)
            continue
        m = re.match(r"^  (\w+)\s", line)
        if m and section and not re.search(r"^%s\s*=" % m.group(1), doc, re.M):
            missing.append("%s %s" % (section, m.group(1)))
    assert section, "hutchd --describe daemon printed its sections"
    assert not missing, "docs/config.md lacks: " + ", ".join(missing)
