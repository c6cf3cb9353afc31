#!/bin/sh
# README command 1: install what hutch needs, build it, start hutchd on its
# built-in defaults (state in /var/lib/hutch, API on /run/hutch/hutchd.sock;
# every sandbox gets a network with open egress and an identity token) and
# run a command in a gVisor sandbox that shows both.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

sock=/run/hutch/hutchd.sock
log=/var/log/hutchd.log
if ! build/bin/hutch --socket "$sock" status >/dev/null 2>&1; then
	echo "quickstart: starting hutchd (log: $log)"
	mkdir -p "$(dirname "$log")"
	start=$(wc -l <"$log" 2>/dev/null || echo 0)
	HUTCH_CONFIG='' nohup build/bin/hutchd >>"$log" 2>&1 &
	pid=$!
	i=0
	until build/bin/hutch --socket "$sock" status >/dev/null 2>&1; do
		i=$((i + 1))
		if ! kill -0 "$pid" 2>/dev/null || [ "$i" -gt 300 ]; then
			echo "quickstart: hutchd did not come up:" >&2
			tail -n "+$((start + 1))" "$log" | tail -n 20 >&2
			exit 1
		fi
		sleep 0.1
	done
fi
build/bin/hutch --socket "$sock" status

# The Debian mirror this machine installs from (the first http:// one in
# its APT sources): what the sandbox fetches, over its own network.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
	awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^http:\/\//) { print $i, $(i + 1); exit } }')
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
		/^[ \t]*$/ { if (uri != "" && deb) { print uri, suite; exit } uri = ""; suite = ""; deb = 0 }
		tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
		tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i ~ /^http:\/\//) { uri = $i; break } }
		tolower($1) == "suites:" { suite = $2 }
		END { if (uri != "" && deb) print uri, suite }' | head -n 1)
fi
url=""
if [ -n "$mirror" ]; then
	set -- $mirror
	url="${1%/}/dists/$2/Release"
else
	echo "quickstart: no http:// Debian mirror in /etc/apt/sources.list(.d); skipping the fetch"
fi

# In the sandbox: the identity token's subject (decoded from the JWT's
# payload with busybox), then the first lines of the mirror's Release file.
script='
p=$(cut -d. -f2 "$HUTCH_IDENTITY_TOKEN_FILE" | tr "_-" "/+")
while [ $(( ${#p} % 4 )) -ne 0 ]; do p="$p="; done
echo "identity: $(echo "$p" | base64 -d | sed "s/.*\"sub\":\"\([^\"]*\)\".*/\1/")"
[ -z "$1" ] && exit 0
echo "fetching $1"
timeout 60 wget -q -O /tmp/Release "$1" && head -n 4 /tmp/Release
'
echo
echo "\$ hutch run -- sh -c '<the sub of \$HUTCH_IDENTITY_TOKEN_FILE; wget ${url:-(no mirror)}>'"
build/bin/hutch --socket "$sock" run -- sh -c "$script" sh "$url"
echo
echo "hutchd keeps running (pid $(head -n 1 /var/lib/hutch/hutchd.lock)); try build/bin/hutch --help."
