#!/bin/sh
# generate.sh [-install] [OUTDIR]: regenerates the Go code for the plugin
# protocol from plugins/proto/*.proto into OUTDIR (default plugins/proto),
# with pinned generators in bin/tools. -install first installs whatever is
# missing or at another version (idempotent): protoc from Debian (as root),
# protoc-gen-go and protoc-gen-go-grpc with go install. The staleness test
# (proto_test.go) runs this without -install into a temporary directory.
set -eu

PROTOC_VERSION=3.21.12
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=$root/bin/tools
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

install=0
if [ "${1:-}" = "-install" ]; then install=1; shift; fi
out=${1:-$here}

has() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "$2" ]; }

if [ $install = 1 ]; then
	if [ "$(protoc --version 2>/dev/null)" != "libprotoc $PROTOC_VERSION" ]; then
		if [ "$(id -u)" != 0 ]; then
			echo "generate.sh: need protoc $PROTOC_VERSION (apt-get install protobuf-compiler, as root)" >&2
			exit 1
		fi
		# Wait for another apt or dpkg process rather than fail.
		apt-get -o DPkg::Lock::Timeout=300 update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq protobuf-compiler >/dev/null
	fi
	has "$tools/protoc-gen-go" "protoc-gen-go $PROTOC_GEN_GO_VERSION" ||
		GOBIN=$tools "$GO" install google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION
	has "$tools/protoc-gen-go-grpc" "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}" ||
		GOBIN=$tools "$GO" install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION
fi

# Exit status 3 means "a pinned tool is missing" (the test skips on it).
if [ "$(protoc --version 2>/dev/null)" != "libprotoc $PROTOC_VERSION" ]; then
	echo "generate.sh: protoc $PROTOC_VERSION not on PATH (run: make proto)" >&2
	exit 3
fi
has "$tools/protoc-gen-go" "protoc-gen-go $PROTOC_GEN_GO_VERSION" || {
	echo "generate.sh: $tools/protoc-gen-go is not $PROTOC_GEN_GO_VERSION (run: make proto)" >&2
	exit 3
}
has "$tools/protoc-gen-go-grpc" "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}" || {
	echo "generate.sh: $tools/protoc-gen-go-grpc is not $PROTOC_GEN_GO_GRPC_VERSION (run: make proto)" >&2
	exit 3
}

mkdir -p "$out"
cd "$here"
protoc -I . \
	--plugin=protoc-gen-go="$tools/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	common.proto healthcheck.proto configsource.proto announce.proto
