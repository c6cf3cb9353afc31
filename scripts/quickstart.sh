#!/bin/sh
# README command 1: install what hutch needs, build it, start hutchd on its
# built-in defaults (state in /var/lib/hutch, API on /run/hutch/hutchd.sock)
# and run a command in a gVisor sandbox.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

sock=/run/hutch/hutchd.sock
if ! build/bin/hutch --socket "$sock" status >/dev/null 2>&1; then
	echo "quickstart: starting hutchd (log: /var/log/hutchd.log)"
	mkdir -p /var/log
	nohup build/bin/hutchd >>/var/log/hutchd.log 2>&1 &
	i=0
	until build/bin/hutch --socket "$sock" status >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then
			echo "quickstart: hutchd did not come up; see /var/log/hutchd.log" >&2
			tail -n 20 /var/log/hutchd.log >&2
			exit 1
		fi
		sleep 0.1
	done
fi
build/bin/hutch --socket "$sock" status
echo
echo "\$ hutch run -- sh -c 'echo hello from a sandbox; uname -sr; id'"
build/bin/hutch --socket "$sock" run -- sh -c 'echo hello from a sandbox; uname -sr; id'
echo
echo "hutchd keeps running (pid $(pgrep -x hutchd | head -n1)); try build/bin/hutch --help."
