#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install everything the
# project needs: PyTorch + torchvision, this package (editable, with the test extras: pytest,
# scikit-image, ruff) and Detectron2. Idempotent: when nothing changed, a second run takes seconds.
#
#   bash scripts/install.sh            # venv in ./.venv
#   HOI_VENV=/path/to/venv bash scripts/install.sh
#
# Environment knobs:
#   HOI_VENV          where the venv lives (default: <repo>/.venv)
#   HOI_PYTHON        interpreter used to create it (default: python3)
#   HOI_TORCH         pip requirement(s) for torch/torchvision (default: pinned per arch,
#                     see the README's set-up section; GPU users may pass the build for their CUDA)
#   HOI_DETECTRON2    auto (default: upstream git, else the PyPI route) | upstream | pypi | skip
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${HOI_VENV:-$ROOT/.venv}
PYTHON=${HOI_PYTHON:-python3}
D2_MODE=${HOI_DETECTRON2:-auto}

case "$(uname -m)" in
  aarch64|arm64) DEFAULT_TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *)             DEFAULT_TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac
TORCH_SPEC=${HOI_TORCH:-$DEFAULT_TORCH}

log() { printf '[install] %s\n' "$*"; }

# Everything that decides what gets installed goes into the stamp; if it is unchanged
# and the imports work, there is nothing to do.
STAMP_FILE=$VENV/.hoi-install-stamp
want_stamp=$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/install.sh" | sha256sum | cut -d' ' -f1)
want_stamp="$want_stamp $TORCH_SPEC $D2_MODE"
if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$want_stamp" ] \
   && "$VENV/bin/python" -c "import hoi, torch, torchvision" 2>/dev/null; then
  log "environment in $VENV is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
# pip 26 refuses to even download pb1-detectron2 (an optional extra declares a direct URL
# dependency); 25.2 is the newest release known to take the PyPI route below.
"${PIP[@]}" install -q 'pip==25.2'

# setuptools<81: detectron2's model_zoo imports pkg_resources; >=77 for torch 2.14.
log "installing build tools"
"${PIP[@]}" install -q 'setuptools>=77,<81' wheel

log "installing $TORCH_SPEC"
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC

log "installing the project (editable, with test extras)"
"${PIP[@]}" install -q --no-build-isolation -e "$ROOT[test]"

install_detectron2_upstream() {
  log "detectron2: trying upstream (git)"
  timeout 900 "${PIP[@]}" install -q --no-build-isolation \
    'git+https://github.com/facebookresearch/detectron2.git'
}

install_detectron2_pypi() {
  # pb1-detectron2==0.6 is a byte-identical copy of upstream v0.6's Python code without
  # the C++ sources: build it with no extension and ship the model-zoo configs
  # (see ../shared/notes/detectron2.md and hoi/detectron2_compat.py for the import fixes).
  log "detectron2: installing pb1-detectron2==0.6 from PyPI (pure Python, no C++ ops)"
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: \
    -d "$tmp" pb1-detectron2==0.6
  tar -xzf "$tmp"/pb1[-_]detectron2-0.6.tar.gz -C "$tmp"
  local src
  src=$(find "$tmp" -maxdepth 1 -mindepth 1 -type d | head -n 1)
  "$VENV/bin/python" - "$src/setup.py" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
new, n = re.subn(r"ext_modules\s*=\s*get_extensions\(\)", "ext_modules=[]", text)
if n != 1:
    sys.exit(f"{path}: expected one 'ext_modules=get_extensions()' to disable, found {n}")
open(path, "w").write(new)
PY
  rm -rf "$src/configs"
  cp -r "$src/detectron2/model_zoo/configs" "$src/configs"
  "${PIP[@]}" install -q --no-build-isolation "$src"
}

if "$VENV/bin/python" -c "import detectron2" 2>/dev/null; then
  log "detectron2 already installed"
else
  case "$D2_MODE" in
    skip) log "detectron2: skipped (HOI_DETECTRON2=skip); detection stages will not run" ;;
    upstream) install_detectron2_upstream ;;
    pypi) install_detectron2_pypi ;;
    auto)
      if ! install_detectron2_upstream 2>/dev/null; then
        log "detectron2: upstream unreachable, falling back to the PyPI route"
        install_detectron2_pypi
      fi ;;
    *) echo "HOI_DETECTRON2 must be auto, upstream, pypi or skip (got '$D2_MODE')" >&2; exit 2 ;;
  esac
fi

"$VENV/bin/python" -c "import hoi, torch, torchvision; print('[install] torch', torch.__version__, 'torchvision', torchvision.__version__)"
echo "$want_stamp" > "$STAMP_FILE"
log "done: activate with 'source $VENV/bin/activate'"
