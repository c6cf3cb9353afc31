#!/bin/sh
# Generates the Python SDK's protobuf modules (sdk/python/hutch/_proto/*_pb2.py)
# from core/api/hutch/v1/*.proto with protoc --python_out.
#
#   scripts/gen_python_proto.sh            regenerate in place
#   scripts/gen_python_proto.sh --check    exit 1 if the committed modules are stale
#   scripts/gen_python_proto.sh --out DIR  write into DIR instead
#
# The modules are flat in hutch/_proto; protoc's cross-file imports
# ("from hutch.v1 import x_pb2") become relative ("from . import x_pb2"), so
# the package works wherever it is installed. The descriptors keep their
# names ("hutch/v1/sandbox.proto"), which is what the wire format needs.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
api="$root/core/api"
dest="$root/sdk/python/hutch/_proto"
mode=write
while [ $# -gt 0 ]; do
	case "$1" in
	--check) mode=check ;;
	--out) shift; dest="$1" ;;
	*) echo "usage: $0 [--check] [--out DIR]" >&2; exit 2 ;;
	esac
	shift
done

PROTOC=${PROTOC:-protoc}
command -v "$PROTOC" >/dev/null 2>&1 || { echo "$0: protoc not found (apt install protobuf-compiler)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
(cd "$api" && "$PROTOC" --proto_path=. --python_out="$tmp" hutch/v1/*.proto)

mkdir -p "$tmp/out"
{
	echo '"""Generated from core/api/hutch/v1/*.proto by scripts/gen_python_proto.sh.'
	echo 'Do not edit; run the script after changing a .proto file."""'
} >"$tmp/out/__init__.py"
for f in "$tmp"/hutch/v1/*_pb2.py; do
	name=$(basename "$f")
	sed -E -e 's/^from hutch\.v1 import ([a-z0-9_]+_pb2)/from . import \1/' \
		-e "s/'hutch\.v1\.([a-z0-9_]+_pb2)'/'hutch._proto.\1'/" "$f" >"$tmp/out/$name"
done
( cd "$tmp/out" && ls ) | LC_ALL=C sort >"$tmp/want.list"

if [ "$mode" = check ]; then
	stale=0
	[ -d "$dest" ] || { echo "$dest: missing" >&2; exit 1; }
	( cd "$dest" && ls | grep -E '(^__init__\.py$|_pb2\.py$)' ) | LC_ALL=C sort >"$tmp/have.list"
	if ! cmp -s "$tmp/want.list" "$tmp/have.list"; then
		echo "modules differ from the .proto files:" >&2
		diff "$tmp/want.list" "$tmp/have.list" >&2 || true
		stale=1
	fi
	for f in $(cat "$tmp/want.list"); do
		if [ -f "$dest/$f" ] && ! cmp -s "$tmp/out/$f" "$dest/$f"; then
			echo "$dest/$f is out of date" >&2
			stale=1
		fi
	done
	[ $stale = 0 ] || { echo "run scripts/gen_python_proto.sh" >&2; exit 1; }
	exit 0
fi

mkdir -p "$dest"
rm -f "$dest"/*_pb2.py
cp "$tmp"/out/*.py "$dest"/
echo "wrote $(wc -l <"$tmp/want.list") modules to $dest"
