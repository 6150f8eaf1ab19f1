#!/usr/bin/env bash
# Set up .venv from nothing (cached) and run the whole test suite. Extra arguments go to pytest.
# The viewer's browser test (tests/test_viewer_browser.py) drives Debian's Chromium through chromedriver: when they
# are missing, this installs chromium and chromium-driver with apt-get (as root; NO_BROWSER=1 skips the install).
# Without them that test skips, and the summary says why (-rs: every skip's reason is listed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
has_browser() { ./.venv/bin/python -c 'from smart.evaluation.viewer import find_browser; raise SystemExit(not find_browser())'; }
if [ "${NO_BROWSER:-0}" != "1" ] && ! has_browser; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium and chromium-driver (apt-get) for tests/test_viewer_browser.py"
    packages=(chromium chromium-driver)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${packages[@]}" \
      || { apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}"; } \
      || echo "test.sh: could not install chromium and chromium-driver: the browser test will skip" >&2
  else
    echo "test.sh: no chromium and chromedriver, and no root apt-get to install them: the browser test will skip" >&2
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec ./.venv/bin/python -m pytest -q -rs "$@"
