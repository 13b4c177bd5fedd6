#!/usr/bin/env bash
# Install (once) promtool, which the runtime tests use to lint /metrics (`promtool check metrics`), into
# $CACHE/promtool-<version>/ and print its path. Nothing is installed system-wide and no daemon is set up.
#
# Why Debian: the machines that build and test this project reach only PyPI, Debian and npm. Debian's
# `prometheus` package carries promtool; we download the .deb with apt (private state, no root needed)
# and extract just that binary. bookworm ships 2.42.0 (security updates keep the upstream version).
# Usage: hack/install-promtool.sh            -> prints /…/promtool-2.42.0/promtool
#        export VIF_PROMTOOL="$(hack/install-promtool.sh)"
source "$(dirname "$0")/lib.sh"

PROMTOOL_VERSION="2.42.0"
PROMTOOL_DIR="$CACHE/promtool-$PROMTOOL_VERSION"
PROMTOOL_BIN="$PROMTOOL_DIR/promtool"

# `promtool --version` says e.g. "promtool, version 2.42.0+ds (branch: ...)"; keep the upstream part.
installed_version() { "$1" --version 2>/dev/null | awk 'NR == 1 { sub(/\+.*/, "", $3); print $3 }'; }

if [ -x "$PROMTOOL_BIN" ] && [ "$(installed_version "$PROMTOOL_BIN")" = "$PROMTOOL_VERSION" ]; then
  echo "$PROMTOOL_BIN"
  exit 0
fi

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || { log "install-promtool: '$tool' is required (a Debian-based machine)"; exit 1; }
done

W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/root"
private_apt "$W"
log "fetching promtool $PROMTOOL_VERSION from Debian's prometheus package"
apt-get "${APT[@]}" update -qq
(cd "$W" && apt-get "${APT[@]}" download -qq prometheus)
dpkg-deb -x "$W"/prometheus_*.deb "$W/root"

got="$(installed_version "$W/root/usr/bin/promtool")"
if [ "$got" != "$PROMTOOL_VERSION" ]; then
  log "install-promtool: expected promtool $PROMTOOL_VERSION, the package carries '$got'"
  exit 1
fi
mkdir -p "$PROMTOOL_DIR"
install -m 0755 "$W/root/usr/bin/promtool" "$PROMTOOL_BIN.tmp"
mv "$PROMTOOL_BIN.tmp" "$PROMTOOL_BIN"
log "promtool $got installed in $PROMTOOL_DIR"
echo "$PROMTOOL_BIN"
