#!/bin/sh
# Generates the Python stubs of the sockbroker contract into OUTDIR (default ./gen), from the
# .proto files alone: Debian's protoc (protobuf-compiler) with its gRPC plugin
# (protobuf-compiler-grpc), and the well-known types python3-grpc-tools ships. python3-grpc-tools'
# own protoc (3.5) predates proto3 `optional`, which the contract uses.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto="$here/../../proto"
out=${1:-"$here/gen"}
wkt=$(/usr/bin/python3 -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
mkdir -p "$out"
cd "$proto"
protoc -I. -I"$wkt" --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin \
  sockbroker/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto
