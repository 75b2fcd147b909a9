#!/usr/bin/env bash
# Regenerates docket_runtime/options_pb2.py and .pyi from protos/docket_runtime/options.proto.
#
# The module is generated with the oldest protoc whose protobuf runtime Docket
# supports (grpcio-tools 1.76.0 bundles protoc 31.1, gencode 6.31.1): newer
# gencode refuses to import on older protobuf runtimes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q grpcio-tools==1.76.0 mypy-protobuf==5.1.0
PATH="$venv/bin:$PATH" "$venv/bin/python" -m grpc_tools.protoc \
  -Iprotos --python_out=. --mypy_out=quiet:. protos/docket_runtime/options.proto
echo "regenerated docket_runtime/options_pb2.py and docket_runtime/options_pb2.pyi"
