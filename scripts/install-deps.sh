#!/bin/sh
# Installs everything hutch needs to build, run and test, from Debian's
# archive only. Safe to run again; does nothing that is already done.
#
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also the real peers the test suite uses
set -eu

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root (apt-get needs it)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive

build_pkgs="build-essential cmake pkg-config git
	libltdl-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
	libssl-dev libnghttp2-dev libllhttp-dev libsqlite3-dev
	libnl-3-dev libnl-route-3-dev libnftables-dev nftables iproute2
	libfuse3-dev fuse3 libcurl4-openssl-dev libarchive-dev libjansson-dev
	busybox-static ca-certificates
	debootstrap debian-archive-keyring gpgv"

test_pkgs="clang libclang-rt-14-dev valgrind
	python3 python3-grpcio python3-protobuf protobuf-compiler
	python3-pytest python3-jwt python3-cryptography python3-pip python3-setuptools
	dnsmasq docker-registry skopeo umoci wireguard-tools
	curl nghttp2-client wrk nginx-light haproxy"

# runsc: Debian 12 ships 20221219, whose sentry rejects statx(AT_NO_AUTOMOUNT)
# and so breaks `ls -l` in Debian root filesystems. Debian 13 ships a static
# binary that works; take only that package from trixie, pinned.
# wireguard-go (net-wireguard's userspace WireGuard): Debian 13's
# 0.0.20231211 has the TUN offloads (IFF_VNET_HDR, GSO/GRO) and moved
# 1.4-1.6 Gb/s between two namespaces on a 2-vCPU machine where Debian 12's
# 0.0.20220316 moved 0.3-0.4; it is a Go binary that needs only libc 2.34,
# and runs on Debian 12. Pinned the same way.
trixie_src=/etc/apt/sources.list.d/hutch-trixie.sources
trixie_pin=/etc/apt/preferences.d/hutch-trixie
trixie_only="runsc wireguard-go"
if [ ! -f "$trixie_src" ]; then
	cat >"$trixie_src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	need_update=1
fi
pin=$(cat <<PIN
# Added by hutch's install-deps.sh: nothing comes from trixie except
# $trixie_only.
Package: *
Pin: release n=trixie
Pin-Priority: 1

Package: $trixie_only
Pin: release n=trixie
Pin-Priority: 990
PIN
)
if [ "$(cat "$trixie_pin" 2>/dev/null)" != "$pin" ]; then
	printf '%s\n' "$pin" >"$trixie_pin"
	need_update=1
fi

pkgs="$build_pkgs"
[ "$want_test" -eq 1 ] && pkgs="$pkgs $test_pkgs"

missing=""
for p in $pkgs $trixie_only; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done

if [ -n "$missing" ] || [ "${need_update:-0}" -eq 1 ]; then
	apt-get update -qq
fi
if [ -n "$missing" ]; then
	echo "install-deps: installing$missing"
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The trixie runsc and wireguard-go must be the ones installed, not
# bookworm's (installed before the pin, or by hand).
case "$(dpkg-query -W -f='${Version}' runsc)" in
	0.0~2022*) apt-get install -y -qq -t trixie runsc >/dev/null ;;
esac
case "$(dpkg-query -W -f='${Version}' wireguard-go)" in
	0.0.2022*) apt-get install -y -qq -t trixie wireguard-go >/dev/null ;;
esac
echo "install-deps: done (runsc $(dpkg-query -W -f='${Version}' runsc)," \
	"wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go))"
