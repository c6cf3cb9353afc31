#!/usr/bin/env python3
"""Checks of the code's shape that the style guide promises (docs/testing.md).

  check_layout.py function-length ROOT DIR... [--max N]
      every function defined in the C files under DIR (relative to ROOT) is
      at most N lines long (default 120), counted from its opening brace to
      its closing one.
  check_layout.py no-wire-format ROOT DIR...
      no file under DIR includes a generated protobuf header (hutch/v1/...)
      or names a generated type: the wire format stays in the service layer.

Exits 1 and names each offender (file:line: function, length) when a check
fails, so a failure says where to look.
"""
import os
import re
import sys

SIG = re.compile(r"^[A-Za-z_][\w \*\(\),\[\]]*\(")


def c_files(root, dirs):
    for d in dirs:
        for base, _, names in os.walk(os.path.join(root, d)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    yield os.path.join(base, n)


def functions(path):
    """(name, first line, length) of each top-level function body.

    House style puts a function's opening brace alone in column 0 and its
    closing one likewise, so the body is the lines between them."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    sig = None
    start = None
    for i, line in enumerate(lines, 1):
        if start is None:
            if SIG.match(line):
                sig = line
            if line.startswith("{") and sig is not None:
                start = i
        elif line.startswith("}"):
            name = sig.split("(")[0].split()[-1].lstrip("*") if sig else "?"
            yield name, start, i - start - 1
            start = sig = None


def function_length(root, dirs, limit):
    bad = []
    for path in c_files(root, dirs):
        if not path.endswith(".c"):
            continue
        for name, line, n in functions(path):
            if n > limit:
                bad.append(f"{os.path.relpath(path, root)}:{line}: {name}() is {n} lines (limit {limit})")
    return bad


def no_wire_format(root, dirs):
    bad = []
    pat = re.compile(r'#include\s+"hutch/v1/|Hutch__V1__|HUTCH__V1__')
    for path in c_files(root, dirs):
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, 1):
                if pat.search(line):
                    bad.append(f"{os.path.relpath(path, root)}:{i}: {line.strip()}")
    return bad


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    check, root, rest = argv[0], argv[1], argv[2:]
    limit = 120
    if "--max" in rest:
        k = rest.index("--max")
        limit = int(rest[k + 1])
        rest = rest[:k] + rest[k + 2:]
    if check == "function-length":
        bad = function_length(root, rest, limit)
    elif check == "no-wire-format":
        bad = no_wire_format(root, rest)
    else:
        print(f"check_layout: unknown check {check!r}", file=sys.stderr)
        return 2
    for b in bad:
        print(b)
    print(f"{check}: {len(bad)} offender(s) in {', '.join(rest)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
