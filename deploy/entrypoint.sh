#!/bin/sh
# The image's one entrypoint: the first argument is the role, the rest go to afterimage.
# Roles: up, receiver, worker, poller, simulate, and every other `afterimage` command.
set -eu
role="${1:-up}"
[ $# -gt 0 ] && shift
case "$role" in
  receiver|worker|poller|up|simulate|callback-url|track|submit|status|tasks|replay)
    exec afterimage "$role" "$@" ;;
  *)
    echo "afterimage-entrypoint: unknown role '$role'" \
         "(receiver, worker, poller, up, simulate, or an afterimage command)" >&2
    exit 2 ;;
esac
