#!/usr/bin/env bash
# Make (or reuse) a Debian sid chroot with Python 3.14 and 3.15, for the tests on those versions.
# Usage: .ci/sid-chroot.sh DIR. The mirror is read from apt's own sources: no host name here.
set -euo pipefail
dir=${1:?usage: sid-chroot.sh DIR}
packages=python3.14,python3.14-venv,python3.15,python3.15-venv,gdb,tmux,procps,ca-certificates,openssh-server,openssh-client

if [ -x "$dir/usr/bin/python3.14" ] && [ -x "$dir/usr/bin/python3.15" ] && [ -f "$dir/.taskscope-ready" ]; then
  echo "ci: reusing the sid chroot at $dir"
  exit 0
fi

mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb)\s+\S+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
          /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1)
  [ -n "$uri" ] || { echo "ci: no Debian mirror in apt's sources" >&2; return 1; }
  echo "$uri"
}

export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "ci: installing debootstrap"
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
url=$(mirror)
echo "ci: making the sid chroot at $dir (takes a few minutes, once)"
# Never remove a tree with something mounted in it (in-sid.sh binds /dev and /proc there).
if [ -d "$dir" ] && awk -v d="$dir/" 'index($2 "/", d) == 1 {found=1} END {exit !found}' /proc/mounts; then
  echo "ci: $dir has mounts inside: unmount them (umount -R $dir/dev $dir/proc) first" >&2
  exit 1
fi
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
tmp="$dir.partial"
rm -rf "$tmp"
debootstrap --variant=minbase --include="$packages" sid "$tmp" "$url" >"$tmp.log" 2>&1 || {
  echo "ci: debootstrap failed; the end of its log:" >&2; tail -n 20 "$tmp.log" >&2; exit 1; }
touch "$tmp/.taskscope-ready"
mv "$tmp" "$dir"
rm -f "$tmp.log"
echo "ci: sid chroot ready"
