#!/usr/bin/env bash
# Installs what the tests need from Debian, idempotently: nothing happens when it is all there.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
command -v unshare >/dev/null || need+=(util-linux)
command -v ss >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
[ -e /etc/services ] && [ -e /etc/protocols ] || need+=(netbase)
# Deployment: the units are checked with systemd-analyze and run with systemd-socket-activate
# (no systemd needs to be running); the pack test clones the checkout.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v systemd-socket-activate >/dev/null || need+=(systemd)
command -v git >/dev/null || need+=(git)
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
# Capture: libpcap compiles filters (loaded by soname through ffi-rs); tcpdump and tshark read
# back what `sockbroker capture` writes and are the benchmark's baseline.
installed libpcap0.8 || need+=(libpcap0.8)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v tshark >/dev/null || need+=(tshark)
# Operations: promtool parses the metrics exposition; the Python example client runs on
# Debian's grpcio (for /usr/bin/python3) with stubs generated at test time.
command -v promtool >/dev/null || need+=(prometheus)
installed python3-grpcio || need+=(python3-grpcio)
installed python3-grpc-tools || need+=(python3-grpc-tools)
installed python3-protobuf || need+=(python3-protobuf)
# python3-grpc-tools' protoc (3.5) predates proto3 `optional`: the stubs come from Debian's protoc.
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -x /usr/bin/grpc_python_plugin ] || need+=(protobuf-compiler-grpc)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need[*]}; run as root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash "$(dirname "${BASH_SOURCE[0]}")/vm/setup.sh"
