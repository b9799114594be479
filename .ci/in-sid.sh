#!/usr/bin/env bash
# Run a command inside the sid chroot, with the checkout bind-mounted at its own path.
# Usage: .ci/in-sid.sh CHROOT_DIR COMMAND...   (mounts /proc, /dev, /dev/pts, /dev/shm and the checkout)
set -euo pipefail
root=${1:?usage: in-sid.sh CHROOT_DIR COMMAND...}
shift
checkout=$(cd "$(dirname "$0")/.." && pwd)

mounted() { mountpoint -q "$1"; }
mkdir -p "$root/proc" "$root/dev" "$root$checkout" "$root/tmp"
mounted "$root/proc" || mount -t proc proc "$root/proc"
mounted "$root/dev" || mount --rbind /dev "$root/dev"
mounted "$root$checkout" || mount --bind "$checkout" "$root$checkout"
chmod 1777 "$root/tmp"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
exec chroot "$root" /usr/bin/env -u PIP_FIND_LINKS PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  TERM="${TERM:-xterm-256color}" LANG=C.UTF-8 /bin/bash -c "cd '$checkout' && $*"
