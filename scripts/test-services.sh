#!/usr/bin/env bash
# What the test suite needs besides Python packages: Redis answering on 127.0.0.1:6379 (the one
# there, else a redis-server started on loopback), the redis-server binary (some tests start
# their own), Debian's Chromium (the playground's browser test) and nginx (the load balancer
# test). Missing packages are installed with apt-get when we are root; otherwise it says what
# is missing and the tests that need it fail with their own clear message.
set -euo pipefail

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
  if ! can_install; then
    echo "test-services: missing $* (install it, or run as root to have it installed)" >&2
    return 0
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  # install without letting the packages start their own daemons (redis on 6379, nginx on 80)
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  if [ -n "$own_policy" ]; then rm -f "$policy"; fi
}

redis_answers() {
  (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && read -r -t 2 line <&3 \
    && [[ "$line" == +PONG* ]]) 2>/dev/null
}

command -v redis-server >/dev/null || apt_install redis-server
if ! redis_answers && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
fi
redis_answers || echo "test-services: no Redis answers on 127.0.0.1:6379" >&2

[ -x /usr/bin/chromium ] || apt_install chromium
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
