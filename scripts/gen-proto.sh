#!/usr/bin/env bash
# Regenerates src/proto from proto/ with protoc (Debian's protobuf-compiler) and ts-proto.
# 64-bit integers become bigint because raft member IDs use all 64 bits.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler" >&2; exit 1; }
out="${1:-src/proto}"
rm -rf "$out" && mkdir -p "$out"
protoc --plugin=protoc-gen-ts_proto=./node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,env=node,importSuffix=.js,forceLong=bigint,useDate=true \
  -I proto proto/shoal/v1/*.proto
