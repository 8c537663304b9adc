#!/usr/bin/env bash
# Installs what the VM test bed needs from Debian (qemu, a Debian kernel with modules, a static
# busybox for the initramfs, can-utils for candump/cansend), idempotently: nothing happens, not
# even `apt-get update`, when it is all there. Then builds the cached initramfs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
installed linux-image-amd64 && compgen -G '/boot/vmlinuz-*' >/dev/null || need+=(linux-image-amd64)
installed busybox-static || need+=(busybox-static)
command -v cansend >/dev/null && command -v candump >/dev/null || need+=(can-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "vm setup: missing ${need[*]}; run as root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "vm setup: installing ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash "$here/build-initramfs.sh" >/dev/null
