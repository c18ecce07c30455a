#!/usr/bin/env bash
# The Python package's checks (clients/python): ruff, mypy --strict, pytest against a real
# `belfry serve` (target/debug/belfry, built here; CI_CARGO_PROFILE picks another profile),
# and an sdist + wheel built with `python -m build`.
#
# The virtualenv lives outside the repo, in ~/.cache/belfry/python-venv-<checkout's hash>
# (BELFRY_PYTHON_VENV), and is reinstalled only when clients/python/pyproject.toml changes
# (`--install-only`: only that).
# Extra arguments go to pytest.
# pytest runs on SQLite, then again on PostgreSQL when BELFRY_TEST_DATABASE_URL names a server
# (each test server gets a fresh database there, dropped afterwards; needs the `psql` client).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
package="$repo/clients/python"
# One per checkout (the package is installed editable, from this checkout's source).
venv=${BELFRY_PYTHON_VENV:-$HOME/.cache/belfry/python-venv-$(printf %s "$repo" | sha256sum | cut -c1-12)}

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
      python=$candidate
      break
    fi
  done
fi
[ -n "$python" ] || { echo "python-tests: needs Python >= 3.10" >&2; exit 1; }

stamp="$venv/.belfry-pyproject.sha256"
want=$(sha256sum "$package/pyproject.toml" | cut -d' ' -f1)
if ! [ -x "$venv/bin/python" ] || ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "python-tests: installing the package and its test dependencies into $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" ||
    { echo "python-tests: cannot create a venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$package[test]"
  echo "$want" >"$stamp"
fi
# `--install-only`: just the virtualenv (scripts/install-deps.sh makes it with the other installs).
[ "${1:-}" = --install-only ] && exit 0

# CI_CARGO_PROFILE (default dev; test.sh sets ci): the cargo profile belfry is built with.
profile=${CI_CARGO_PROFILE:-dev}
profile_dir=$profile
[ "$profile" = dev ] && profile_dir=debug
cargo build --locked --profile "$profile" --bin belfry
BELFRY_BIN=$(realpath -m "${CARGO_TARGET_DIR:-target}")/$profile_dir/belfry
export BELFRY_BIN

cd "$package"
echo "python-tests: ruff"
"$venv/bin/ruff" check src tests
"$venv/bin/ruff" format --check src tests
echo "python-tests: mypy --strict"
"$venv/bin/mypy"
run_pytest() {
  local status=0
  "$venv/bin/python" -m pytest -q "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "python-tests: pytest collected no tests" >&2
    exit 1
  fi
  [ "$status" -eq 0 ] || exit "$status"
}
postgres=${BELFRY_TEST_DATABASE_URL:-}
echo "python-tests: pytest on SQLite"
BELFRY_TEST_DATABASE_URL='' run_pytest "$@"
if [ -n "$postgres" ]; then
  echo "python-tests: pytest on PostgreSQL ($postgres)"
  BELFRY_TEST_DATABASE_URL=$postgres run_pytest "$@"
fi
echo "python-tests: python -m build"
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
"$venv/bin/python" -m build --sdist --wheel --outdir "$dist" . >"$dist/build.log" 2>&1 ||
  { cat "$dist/build.log" >&2; exit 1; }
ls "$dist"/belfry-*.tar.gz "$dist"/belfry-*-py3-none-any.whl
