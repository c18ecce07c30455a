#!/usr/bin/env bash
# The FastAPI blog example, in one command: builds what is missing, then runs Belfry and the blog
# together until Ctrl-C.
#
#   examples/fastapi-blog/run.sh          → http://127.0.0.1:8000 (sign in as alice, bob, carol)
#   examples/fastapi-blog/run.sh setup    build and install only
#
# BLOG_PORT (8000), BLOG_BELFRY_PORT (8081), BLOG_DATA (examples/fastapi-blog/.data: the blog's and
# Belfry's SQLite files and the generated secrets), BELFRY_BIN (default: target/debug/belfry, built
# here). The virtualenv is ~/.cache/belfry/fastapi-blog-venv-<checkout's hash>: one per checkout,
# since it installs this checkout's clients/python in editable mode.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv=${BLOG_VENV:-$HOME/.cache/belfry/fastapi-blog-venv-$(printf %s "$repo" | sha256sum | cut -c1-12)}
python=${PYTHON:-python3}

setup() {
  if [ -z "${BELFRY_BIN:-}" ]; then
    (cd "$repo" && cargo build --locked --quiet --bin belfry)
  fi
  local stamp="$venv/.requirements.sha256" want
  want=$(cat "$here/requirements.txt" "$repo/clients/python/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$here/requirements.txt" -e "$repo/clients/python"
    echo "$want" >"$stamp"
  fi
  (cd "$here/web" && { [ -d node_modules ] || npm ci --silent --no-audit --no-fund; } && npm run --silent build >/dev/null)
}

setup
[ "${1:-}" = setup ] && exit 0

bin=${BELFRY_BIN:-$repo/target/debug/belfry}
data=${BLOG_DATA:-$here/.data}
blog_port=${BLOG_PORT:-8000}
belfry_port=${BLOG_BELFRY_PORT:-8081}
mkdir -p "$data"
if ! [ -f "$data/secrets.env" ]; then
  "$venv/bin/python" - >"$data/secrets.env" <<'PY'
import secrets
print(f"BELFRY_API_KEY=bk_{secrets.token_urlsafe(24)}")
print(f"BELFRY_JWT_SECRET={secrets.token_urlsafe(32)}")
print(f"BLOG_SESSION_SECRET={secrets.token_urlsafe(32)}")
PY
  chmod 600 "$data/secrets.env"
fi
set -a
# shellcheck disable=SC1091
. "$data/secrets.env"
set +a
export BELFRY_URL="http://127.0.0.1:$belfry_port"
export BLOG_DATABASE_URL="sqlite:///$data/blog.db"
cat >"$data/belfry.toml" <<TOML
listen = "127.0.0.1:$belfry_port"
database_url = "sqlite://$data/belfry.db"

[auth]
api_keys = ["$BELFRY_API_KEY"]
jwt_secret = "$BELFRY_JWT_SECRET"
TOML

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 0' INT TERM

# The server ignores the client's BELFRY_URL / BELFRY_API_KEY / BELFRY_JWT_SECRET, but reads every
# other BELFRY_* variable as a setting: it starts with a clean environment and the file's settings.
env -i PATH="$PATH" HOME="$HOME" "$bin" --config "$data/belfry.toml" serve &
pids+=($!)
for _ in $(seq 200); do
  curl -fsS "$BELFRY_URL/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$BELFRY_URL/readyz" >/dev/null || { echo "run.sh: Belfry did not start" >&2; exit 1; }

cd "$here"
"$venv/bin/python" -m uvicorn blog.main:app --host 127.0.0.1 --port "$blog_port" --log-level warning &
pids+=($!)
echo "run.sh: the blog is at http://127.0.0.1:$blog_port (Belfry at $BELFRY_URL); Ctrl-C stops both"
wait "${pids[1]}"
