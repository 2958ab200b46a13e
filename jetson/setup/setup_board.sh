#!/usr/bin/env bash
# Prepare a Jetson for edgeprune's profiling agent: Python packages, power mode, clocks, the systemd service.
#
#   sudo jetson/setup/setup_board.sh [--power-mode MAXN|ID|keep] [--no-clocks] [--no-pip] [--no-service]
#                                    [--host 0.0.0.0] [--port 8765] [--user NAME] [--state-dir DIR]
#
# Run it from a checkout of edgeprune on the board (the agent runs from that checkout; `jetson` is never
# installed, because NVIDIA's jetson-inference owns `import jetson`). Idempotent: every step checks before it
# changes anything, so running it again after a JetPack upgrade or to change the power mode is safe.
# JetPack 4.6 (TX2, Nano, Xavier: Python 3.6, TensorRT 8.2), 5.1 (Python 3.8, TensorRT 8.5) and 6.x (Python 3.10,
# TensorRT 8.6 / 10.3) are handled; TensorRT's Python bindings come with JetPack (python3-libnvinfer).
set -euo pipefail

POWER_MODE="MAXN"
CLOCKS=1
PIP=1
SERVICE=1
HOST="0.0.0.0"
PORT=8765
RUN_AS="${SUDO_USER:-$(id -un)}"
STATE_DIR=""
CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
UNIT=/etc/systemd/system/edgeprune-agent.service
ENV_FILE=/etc/edgeprune-agent.env

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --power-mode) POWER_MODE="$2"; shift ;;
    --no-clocks) CLOCKS=0 ;;
    --no-pip) PIP=0 ;;
    --no-service) SERVICE=0 ;;
    --host) HOST="$2"; shift ;;
    --port) PORT="$2"; shift ;;
    --user) RUN_AS="$2"; shift ;;
    --state-dir) STATE_DIR="$2"; shift ;;
    -h|--help) usage 0 ;;
    *) warn "unknown option $1"; usage 2 ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0 $*"
[ -f "$CHECKOUT/jetson/agent.py" ] || die "$CHECKOUT is not an edgeprune checkout (no jetson/agent.py)"
id "$RUN_AS" >/dev/null 2>&1 || die "no user $RUN_AS (pass --user)"
RUN_HOME="$(getent passwd "$RUN_AS" | cut -d: -f6)"
STATE_DIR="${STATE_DIR:-$RUN_HOME/.edgeprune-agent}"
JETSON=1
[ -f /etc/nv_tegra_release ] || { JETSON=0; warn "/etc/nv_tegra_release is missing: not a Jetson, so power mode and clocks are skipped"; }
PY="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
say "checkout $CHECKOUT, agent user $RUN_AS, Python $PY, $(head -n1 /etc/nv_tegra_release 2>/dev/null || echo 'no L4T')"

as_user() { sudo -u "$RUN_AS" -H "$@"; }
importable() { as_user python3 -c "import $1" >/dev/null 2>&1; }

install_apt() {
  local missing=() p
  for p in python3-pip python3-numpy; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "apt: python3-pip and python3-numpy already installed"; return; fi
  say "apt: installing ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

pip_user() { as_user python3 -m pip install --user "$@"; }

install_pip() {
  if [ "$PY" = "3.6" ]; then
    # JetPack 4.6: pip 9 cannot read manylinux2014 wheels; 21.3 is the last pip for Python 3.6.
    pip_user "pip<22"
    importable onnx || pip_user "onnx==1.11.0" "protobuf<3.20" || \
      warn "onnx did not install: the agent checks models with its protobuf fallback instead"
    importable pycuda || PATH="/usr/local/cuda/bin:$PATH" CPATH="/usr/local/cuda/include" pip_user pycuda || \
      warn "pycuda did not build: the trt backend needs it on JetPack 4.6 (trtexec still works)"
    importable onnxruntime || warn "no onnxruntime for Python 3.6 on PyPI: download an onnxruntime_gpu wheel" \
      "for JetPack 4.6 / cp36 from the Jetson Zoo (NVIDIA's wiki of Jetson wheels) and" \
      "pip3 install --user it; until then the agent's onnxruntime backend is off"
    return
  fi
  importable onnx || pip_user onnx || warn "onnx did not install: models are checked by the protobuf fallback"
  importable onnxruntime || pip_user onnxruntime || \
    warn "no onnxruntime wheel for this Python: the onnxruntime backend stays off (see the Jetson Zoo)"
  local cuda
  cuda="$(python3 -c 'import json; v=json.load(open("/usr/local/cuda/version.json"))["cuda"]["version"]; print(".".join(v.split(".")[:2]))' 2>/dev/null || true)"
  if ! importable "cuda.cudart" && [ -n "$cuda" ]; then
    pip_user "cuda-python==${cuda}.*" || pip_user "cuda-python>=${cuda%%.*},<$(( ${cuda%%.*} + 1 ))" || \
      warn "cuda-python $cuda did not install: the trt backend needs it (trtexec still works)"
  fi
  importable polygraphy || pip_user polygraphy || warn "polygraphy did not install (INT8 builds fall back to pycuda)"
}

# Mode ids and names differ by board and release: read them, never hard-code them.
power_modes() {
  local conf
  conf="$(nvpmodel -q --verbose 2>&1 | sed -n 's/.*Config file: *\([^ ]*\).*/\1/p' | head -n1)"
  { nvpmodel -q --verbose 2>&1 || true; cat "${conf:-/etc/nvpmodel.conf}" 2>/dev/null || true; } |
    grep -oE 'ID=[0-9]+ +NAME=[A-Za-z0-9_]+' | sed -E 's/ID=([0-9]+) +NAME=/\1 /' | sort -un
}

set_power_mode() {
  [ "$POWER_MODE" = "keep" ] && { say "power mode: kept ($(nvpmodel -q 2>/dev/null | grep 'Power Mode' || true))"; return; }
  local modes want current
  modes="$(power_modes)"
  [ -n "$modes" ] || { warn "could not read the power modes from nvpmodel -q --verbose or nvpmodel.conf"; return; }
  if [[ "$POWER_MODE" =~ ^[0-9]+$ ]]; then
    want="$(awk -v id="$POWER_MODE" '$1 == id {print $1}' <<<"$modes")"
  else
    want="$(awk -v n="$POWER_MODE" '$2 == n {print $1; exit}' <<<"$modes")"
    [ -n "$want" ] || want="$(awk -v n="$POWER_MODE" 'index($2, n) == 1 {print $1; exit}' <<<"$modes")"
  fi
  [ -n "$want" ] || { warn "no power mode $POWER_MODE on this board; modes are:"; echo "$modes" >&2; return; }
  current="$(nvpmodel -q 2>/dev/null | grep -E '^[0-9]+$' | head -n1 || true)"
  if [ "$current" = "$want" ]; then say "power mode: already $(awk -v id="$want" '$1 == id {print $2}' <<<"$modes") ($want)"; return; fi
  say "power mode: $current -> $want ($(awk -v id="$want" '$1 == id {print $2}' <<<"$modes"))"
  # Some modes on Orin need a reboot; nvpmodel asks on stdin: answer NO and say so.
  local out
  out="$(nvpmodel -m "$want" <<<"NO" 2>&1 || true)"
  [ -z "$out" ] || echo "$out"
  if grep -qi reboot <<<"$out"; then warn "reboot the board to apply the power mode"; fi
}

pin_clocks() {
  command -v jetson_clocks >/dev/null || { warn "jetson_clocks not found"; return; }
  say "clocks: jetson_clocks (the service pins them again at every start; a reboot resets them)"
  jetson_clocks
  jetson_clocks --show 2>/dev/null | grep -E '^(GPU|EMC)' || true
}

install_service() {
  if [ ! -f "$ENV_FILE" ]; then
    say "token: new one in $ENV_FILE (readable by root only)"
    umask 077
    printf 'EDGEPRUNE_AGENT_TOKEN=%s\n' "$(python3 -c 'import secrets; print(secrets.token_hex(24))')" >"$ENV_FILE"
    umask 022
  else
    say "token: keeping $ENV_FILE"
  fi
  getent group video >/dev/null && usermod -aG video "$RUN_AS"  # /dev/nvhost-* for CUDA and TensorRT
  as_user mkdir -p "$STATE_DIR"
  local clocks_line="ExecStartPre=+/usr/bin/jetson_clocks"
  [ "$CLOCKS" = 1 ] && [ "$JETSON" = 1 ] || clocks_line="# ExecStartPre=+/usr/bin/jetson_clocks  (disabled by setup_board.sh --no-clocks)"
  sed -e "s|@CHECKOUT@|$CHECKOUT|g" -e "s|@USER@|$RUN_AS|g" -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" \
      -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@ENV_FILE@|$ENV_FILE|g" -e "s|^ExecStartPre=.*jetson_clocks.*|$clocks_line|" \
      "$CHECKOUT/jetson/setup/edgeprune-agent.service" >"$UNIT.tmp"
  if cmp -s "$UNIT.tmp" "$UNIT"; then rm -f "$UNIT.tmp"; say "systemd: $UNIT unchanged"; else mv "$UNIT.tmp" "$UNIT"; say "systemd: wrote $UNIT"; fi
  systemctl daemon-reload
  systemctl enable edgeprune-agent >/dev/null
  systemctl restart edgeprune-agent
  sleep 2
  systemctl --no-pager --lines=5 status edgeprune-agent || warn "the agent did not start: journalctl -u edgeprune-agent"
  say "check it from the host: curl -H \"X-Edgeprune-Token: \$TOKEN\" http://$(hostname):$PORT/v1/device"
  say "the token: sudo grep TOKEN $ENV_FILE"
}

install_apt
[ "$PIP" = 1 ] && install_pip
if [ "$JETSON" = 1 ]; then
  set_power_mode
  [ "$CLOCKS" = 1 ] && pin_clocks
fi
[ "$SERVICE" = 1 ] && install_service
say "done"
