# Shell helpers shared by benches/load.sh and benches/instructions.sh (sourced; WORK must be set).

# An nginx config in $WORK/DIR: one worker, no access log, keep-alive without limits, and the
# blocks inside `http { }` from stdin.
nginx_conf() { # dir
  mkdir -p "$WORK/$1"
  {
    cat <<EOF
worker_processes 1;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
EOF
    cat
    echo "}"
  } >"$WORK/$1/nginx.conf"
}

# Wait until 127.0.0.1:PORT accepts connections, for at most SECONDS (default 10).
wait_port() { # port [seconds]
  local tries=$((${2:-10} * 20))
  for _ in $(seq "$tries"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  exit 1
}
