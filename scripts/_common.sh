# Shared helpers for scripts/*: locate the repository, a Python 3.13 and the project venv.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

find_python313() {
  local candidate
  for candidate in "${PYTHON313:-}" python3.13 /root/.pyenv/versions/3.13.0/bin/python3.13 \
      "$HOME/.pyenv/versions/3.13.0/bin/python3.13" /usr/local/bin/python3.13 /usr/bin/python3.13; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3.13; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

# Runs scripts/setup unless the venv already matches requirements_test.txt.
ensure_setup() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(sha256sum "$ROOT/requirements_test.txt" | cut -d' ' -f1)
  if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    bash "$ROOT/scripts/setup"
  fi
}
