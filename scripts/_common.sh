# Shared helpers for scripts/*: locate the repository, a Python >= 3.14.2 and the project venv.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# `scripts/setup min` makes .venv-min from requirements_min.txt: the oldest supported Home Assistant.
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/requirements_test.txt"
if [ "${SMA_VICTRON_BRIDGE_LEG:-}" = min ]; then
  VENV="$ROOT/.venv-min"
  REQUIREMENTS="$ROOT/requirements_min.txt"
fi
# The project's interpreter. Where the machine has no Python 3.14, it is a launcher that runs the
# venv's Python inside a Debian sid chroot (scripts/setup builds both; see scripts/_chroot.sh).
PY="$VENV/bin/python"

# Prints a Python >= 3.14.2 found on this machine (PYTHON314, PATH, pyenv), or fails.
find_python314() {
  local candidate
  for candidate in "${PYTHON314:-}" python3.14 python3 /usr/local/bin/python3.14 /usr/bin/python3.14 \
      "$HOME"/.pyenv/versions/3.14*/bin/python3.14; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 14, 2))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# The fingerprint of what the venv was installed from.
requirements_hash() {
  cat "$REQUIREMENTS" "$ROOT/requirements_tools.txt" | sha256sum | cut -d' ' -f1
}

# Runs scripts/setup unless the venv already matches its requirements.
ensure_setup() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(requirements_hash)
  if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$PY" -c '' 2>/dev/null; then
    bash "$ROOT/scripts/setup"
  fi
}
