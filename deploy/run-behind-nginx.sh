#!/usr/bin/env bash
# Usage: deploy/run-behind-nginx.sh PORT UPSTREAM_PORT
#
# Runs nginx (Debian's /usr/sbin/nginx, or $NGINX) in the foreground on 127.0.0.1:PORT as the
# buffering proxy of deploy/nginx.conf, in front of a gunicorn already listening on
# 127.0.0.1:UPSTREAM_PORT, e.g.
#
#   PORT=8001 BIND_HOST=127.0.0.1 gunicorn serve:app &
#   deploy/run-behind-nginx.sh 8080 8001
#
# Everything nginx writes (pid file, temporary files) goes to a fresh temporary folder, its
# logs to standard output and error: no root and no system paths needed. SIGTERM or SIGINT
# stops nginx gracefully (requests in flight are finished), removes the folder and exits 0.
set -euo pipefail

if [ "$#" -ne 2 ] || ! [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 PORT UPSTREAM_PORT" >&2
    exit 2
fi
port="$1"
upstream_port="$2"
nginx="${NGINX:-/usr/sbin/nginx}"
if ! [ -x "$nginx" ]; then
    echo "$0: $nginx not found: install nginx (Debian: apt-get install nginx) or set NGINX" >&2
    exit 1
fi
template="$(cd "$(dirname "$0")" && pwd)/nginx.conf"

runtime="$(mktemp -d "${TMPDIR:-/tmp}/nginx-mnist-XXXXXXXX")"
trap 'rm -rf "$runtime"' EXIT
# When started as root, nginx's workers run as nobody: they must reach their temp folders.
chmod 0711 "$runtime"
# The placeholders are filled in outside comments only (the template's comments name them).
sed -e "/^[[:space:]]*#/!s|@LISTEN@|127.0.0.1:$port|g" \
    -e "/^[[:space:]]*#/!s|@UPSTREAM@|127.0.0.1:$upstream_port|g" \
    -e "/^[[:space:]]*#/!s|@RUNTIME_DIR@|$runtime|g" \
    "$template" >"$runtime/nginx.conf"
"$nginx" -t -q -p "$runtime" -e stderr -c "$runtime/nginx.conf"

nginx_pid=""
stopping=0
# shellcheck disable=SC2329  # Invoked by the trap.
stop() {
    stopping=1
    # SIGQUIT: nginx's graceful shutdown (stop accepting, finish what is in flight).
    if [ -n "$nginx_pid" ]; then kill -QUIT "$nginx_pid" 2>/dev/null || true; fi
}
trap stop TERM INT

"$nginx" -p "$runtime" -e stderr -c "$runtime/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
if [ "$stopping" -eq 1 ]; then stop; fi  # A signal that came while nginx was starting.

# `wait` returns early when a trapped signal arrives: wait again until nginx has exited.
while :; do
    status=0
    wait "$nginx_pid" || status=$?
    kill -0 "$nginx_pid" 2>/dev/null || break
done
exit "$status"
