#!/usr/bin/env bash
# Build the documentation site (guides + API reference from docstrings) into site/, offline.
# Warnings are errors (mkdocs --strict): a broken cross-reference or a missing page fails the build.
#   scripts/build_docs.sh            # uses .venv/bin/python when present, else python3
#   PYTHON=/path/to/python scripts/build_docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
if ! "$PYTHON" -c "import mkdocs, mkdocstrings_handlers.python" 2>/dev/null; then
  echo "mkdocs / mkdocstrings[python] are not installed: $PYTHON -m pip install -r docs/requirements-docs.txt" >&2
  exit 2
fi
# The installed package maps flowsteer.integrations -> integrations/ and flowsteer.training -> training/
# (pyproject package-dir); griffe reads source files, so give it that layout as a tree of symlinks.
SRC=build/docs-src/flowsteer
rm -rf build/docs-src && mkdir -p "$SRC"
for entry in flowsteer/*; do ln -s "$PWD/$entry" "$SRC/$(basename "$entry")"; done
ln -s "$PWD/integrations" "$SRC/integrations"
ln -s "$PWD/training" "$SRC/training"
export HF_HUB_OFFLINE=1 NO_MKDOCS_2_WARNING=1
exec "$PYTHON" -m mkdocs build --strict --clean --site-dir site "$@"
