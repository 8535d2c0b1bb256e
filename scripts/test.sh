#!/usr/bin/env bash
# The test suite, including the tests against the real embedded model and the
# PostgreSQL-backed multi-worker compile (a private PostgreSQL cluster on loopback is
# started by the tests themselves when Debian's postgresql is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True
if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; the PostgreSQL test will be skipped"
fi
python -m pytest -q "$@"
