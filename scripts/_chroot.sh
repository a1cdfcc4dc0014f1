# A Debian sid chroot that brings Python 3.14 to a machine whose own Python is older (Debian 12).
# shellcheck shell=bash
#
# Current Home Assistant needs Python >= 3.14.2. Debian 12 has 3.11 and only binary packages can be
# fetched here, so scripts/setup builds a minimal sid root with python3.14 once (about a minute,
# ~630 MB) and caches it in $CHROOT for every checkout on the machine. The project's venv lives in the
# checkout (.venv/py), created by the chroot's Python; .venv/bin/python is a launcher that enters the
# chroot with the checkout bind-mounted at the same path, so paths, PTYs and sockets look the same
# from both sides. Each launch gets a private mount namespace: the mounts disappear with the process,
# whatever way it ends, and parallel launches never share or unmount each other's mounts.
CHROOT=${SMA_VICTRON_BRIDGE_CHROOT:-/var/cache/sma_victron_bridge/sid-python3.14}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
_CHROOT_SH=$(readlink -f "${BASH_SOURCE[0]}")

# What the chroot has besides a minimal sid: Python 3.14, and a compiler with Python's headers for
# the few pinned libraries that have no wheel for 3.14 yet (pymicro-vad, pyspeex-noise), and
# libturbojpeg, which Home Assistant's camera component loads at start. `.ready` records this list,
# so a cached chroot made with an older list is completed rather than rebuilt.
CHROOT_PACKAGES="python3.14 python3.14-venv python3.14-dev g++ ca-certificates libturbojpeg0"

chroot_ready() {
  [ -x "$CHROOT/usr/bin/python3.14" ] && [ "$(cat "$CHROOT/.ready" 2>/dev/null)" = "$CHROOT_PACKAGES" ]
}

# Installs CHROOT_PACKAGES into chroot $1 with its own apt (also refreshes the CA certificates).
_chroot_install() {
  (chroot_run "$1" "" /usr/bin/env CHROOT_PACKAGES="$CHROOT_PACKAGES" /bin/sh -c '
      set -e
      apt-get update -qq
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $CHROOT_PACKAGES >/dev/null
      update-ca-certificates >/dev/null 2>&1
      apt-get clean')
}

# Mounts what a process in the chroot needs, below root $1; used inside `unshare --mount` only.
_chroot_mounts() {
  local root=$1 checkout=$2
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --bind /dev "$root/dev"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  mount --bind /tmp "$root/tmp"
  if [ -n "$checkout" ]; then
    mkdir -p "$root$checkout"
    mount --bind "$checkout" "$root$checkout"
    # The makers' documents and captures beside the checkout (../shared), which tests read.
    local shared
    shared=$(dirname "$checkout")/shared
    if [ -d "$shared" ] && [ "$shared" != /tmp/shared ]; then
      mkdir -p "$root$shared"
      mount --bind "$shared" "$root$shared"
    fi
  fi
}

# Runs a command in chroot $1 with checkout $2 visible at its own path; cwd is kept when it is
# inside the checkout (or /tmp), else the checkout.
chroot_run() {
  local root=$1 checkout=$2
  shift 2
  local cwd=$PWD
  [ -n "$checkout" ] || cwd=/
  case "$cwd/" in
    / ) ;;
    "$checkout"/* | /tmp/*) ;;
    *) cwd=$checkout ;;
  esac
  local -a keep=()
  local name
  # The host's environment passes through, except what would point the chroot's Python or pip at
  # the host's files (PYTHONHOME, pip's index and certificate settings, virtualenv markers).
  while IFS='=' read -r name _; do
    case "$name" in
      PATH | HOME | PYTHONHOME | PYTHONSTARTUP | VIRTUAL_ENV | PIP_* | UV_* | PYENV* | LD_* \
        | SSL_CERT_* | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE | _ | SHLVL | PWD | OLDPWD) ;;
      *) [ -n "$name" ] && keep+=("$name=${!name}") ;;
    esac
  done < <(env -0 | tr '\0' '\n' | grep -E '^[A-Za-z_][A-Za-z0-9_]*=' || true)
  local path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  # A venv's Python first on PATH, as an activated venv would have it.
  case "${1:-}" in
    */bin/python) path="$(dirname "$1"):$path" ;;
  esac
  exec unshare --mount --propagation private -- /bin/bash -c '
    set -e
    lib=$1 root=$2 checkout=$3 cwd=$4
    shift 4
    source "$lib"
    _chroot_mounts "$root" "$checkout"
    exec chroot "$root" /bin/sh -c '"'"'cd "$1" && shift && exec "$@"'"'"' sh "$cwd" "$@"
  ' chroot_run "$_CHROOT_SH" "$root" "$checkout" "$cwd" env -i "${keep[@]}" PATH="$path" HOME=/root \
    LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"
}

# Builds the chroot at $CHROOT unless it is ready. Built in a temporary folder next to it and moved
# into place only when complete, so a failed or interrupted build leaves nothing half-made.
build_chroot() {
  chroot_ready && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: building the Python 3.14 chroot needs root (or install Python >= 3.14.2)" >&2
    return 1
  fi
  local parent
  parent=$(dirname "$CHROOT")
  mkdir -p "$parent"
  exec 9>"$parent/.build.lock"
  flock 9
  chroot_ready && return 0
  if [ -x "$CHROOT/usr/bin/python3.14" ] && [ -f "$CHROOT/.ready" ]; then
    echo "setup: adding packages to the cached chroot in $CHROOT"
    _chroot_install "$CHROOT" >/dev/null 2>&1 || {
      echo "setup: could not add packages to $CHROOT" >&2
      return 1
    }
    echo "$CHROOT_PACKAGES" >"$CHROOT/.ready"
    return 0
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "setup: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  fi
  local tmp
  tmp=$(mktemp -d "$parent/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf --one-file-system '$tmp'" EXIT
  echo "setup: building a Debian sid root with Python 3.14 in $CHROOT (about a minute)"
  debootstrap --variant=minbase sid "$tmp" "$DEBIAN_MIRROR" >"$tmp.log" 2>&1 || {
    tail -20 "$tmp.log" >&2
    return 1
  }
  # The mirror's sid Release file can be past its Valid-Until; debootstrap does not check, apt does.
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99no-check-valid-until"
  # Trust the same extra certificate authorities as the host (pip and apt go through them here).
  mkdir -p "$tmp/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$tmp/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  _chroot_install "$tmp" >>"$tmp.log" 2>&1 || {
    tail -20 "$tmp.log" >&2
    return 1
  }
  rm -f "$tmp.log"
  echo "$CHROOT_PACKAGES" >"$tmp/.ready"
  rm -rf --one-file-system "$CHROOT"
  mv "$tmp" "$CHROOT"
  trap - EXIT
  echo "setup: chroot ready ($(chroot_run "$CHROOT" "" /usr/bin/python3.14 --version))"
}
