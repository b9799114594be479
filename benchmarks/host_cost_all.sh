#!/usr/bin/env bash
# Every figure of issue 10 on Python 3.11, 3.12, 3.13, 3.14 and 3.15, one after another:
# benchmarks/host_cost.py run with each, then each goal's line per version in one summary.
#
# Usage: bash benchmarks/host_cost_all.sh [host_cost.py options, e.g. --quick --only churn]
# 3.11-3.13 are found under pyenv (taskscope's client runs on the first of them that has
# its dependencies: this venv's python by default, $TASKSCOPE_BENCH_PYTHON to choose); 3.14
# and 3.15 run inside the Debian sid chroot that CI makes (.ci/sid-chroot.sh; root needed),
# each in a venv of its own there (.bench-venvs/, made on first use).
set -uo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
chroot_dir=${TASKSCOPE_SID_CHROOT:-/var/cache/taskscope-ci/sid}
client=${TASKSCOPE_BENCH_PYTHON:-$(command -v python)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for version in 3.11 3.12 3.13 3.14 3.15; do
  log="$out/$version.txt"
  case $version in
    3.14|3.15)
      if [ ! -x "$chroot_dir/usr/bin/python$version" ]; then
        echo "Python $version: no sid chroot at $chroot_dir (make it with .ci/sid-chroot.sh)" | tee "$log"
        continue
      fi
      venv=".bench-venvs/$version"
      # The service section's target needs aiohttp and aiomonitor (and wrk in the chroot).
      .ci/in-sid.sh "$chroot_dir" "[ -x $venv/bin/python ] || { python$version -m venv $venv && $venv/bin/pip install -q -e . 2>&1 | grep -v '^WARNING: Location'; }; case '$*' in *service*) $venv/bin/python -c 'import aiohttp, aiomonitor' 2>/dev/null || $venv/bin/pip install -q aiohttp aiomonitor 2>&1 | grep -v '^WARNING: Location';; esac; $venv/bin/python benchmarks/host_cost.py $*" 2>&1 | tee "$log"
      ;;
    *)
      target=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | tail -1)
      if [ -z "$target" ]; then
        echo "Python $version: not found under pyenv" | tee "$log"
        continue
      fi
      # The service section's server needs aiohttp and aiomonitor, its clients taskscope's
      # own dependencies: a venv of this version with them (.bench-venvs/, made on first use).
      case "$*" in
        *service*)
          venv="$checkout/.bench-venvs/$version"
          if ! "$venv/bin/python" -c 'import aiohttp, aiomonitor, psutil' 2>/dev/null; then
            "$target" -m venv "$venv" && "$venv/bin/pip" install -q -e . aiohttp aiomonitor 2>&1 | grep -v '^WARNING: Location'
          fi
          target="$venv/bin/python"
          ;;
      esac
      "$client" benchmarks/host_cost.py --python "$target" "$@" 2>&1 | tee "$log"
      ;;
  esac
done

echo
echo "== each goal, per version =="
for version in 3.11 3.12 3.13 3.14 3.15; do
  [ -f "$out/$version.txt" ] || continue
  grep -iE "goal|^Python" "$out/$version.txt" | sed "s/^/$version  /"
done
echo "($checkout)"
