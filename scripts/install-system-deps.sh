#!/usr/bin/env bash
# System packages some tests need: Chromium (the real-browser widget test), redis-server and
# redis-tools (the Redis backend tests; redis-cli joins the cluster ones) and a font with Hangul
# (Korean labels in plots).  Installs them with apt-get when running as root; otherwise says what
# is missing — those tests then skip with a clear reason.  Playwright drives Debian's Chromium:
# `playwright install` is never run.
set -u
need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# redis-cli joins the test cluster (redis-cli --cluster create); Debian's redis-server depends on
# redis-tools, which ships it, but a redis-server from elsewhere may come without it
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
fc-list 2>/dev/null | grep -qi "nanum" || need+=(fonts-nanum)
command -v fc-list >/dev/null 2>&1 || need+=(fontconfig)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${need[*]} (not root or no apt-get): the tests that need them will skip" >&2
  exit 0
fi
echo "install-system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || {
  echo "install-system-deps: apt-get install failed; the tests that need ${need[*]} will skip" >&2
}
exit 0
