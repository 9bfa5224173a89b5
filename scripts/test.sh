#!/usr/bin/env bash
# README command 2: set up on a fresh machine and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
scripts/browser.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# CI must run the browser tests: without chromium they fail instead of being skipped
export LELP_REQUIRE_BROWSER=1
# pytest exits 5 when it collects no test: that counts as a failure here, as any non-zero code.
exec python -m pytest -q -p no:cacheprovider "$@"
