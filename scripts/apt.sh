# Sourced by scripts/services.sh and scripts/image.sh: `apt_install PACKAGE...` installs the
# Debian packages that are missing (one `apt-get update` per run), saying so through the
# caller's `log`. Waits for the dpkg lock, since services.sh and image.sh may run at once.
apt_updated=0
apt_install() { # packages...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null; apt_updated=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
}
