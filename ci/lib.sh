# shellcheck shell=bash
# Shared settings for the scripts under ci/ and the ./infoat launcher.
# Everything cached lives outside the clone so a fresh clone reuses it, yet nothing here
# requires the cache to exist: each script installs what is missing.

INFOAT_CI="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFOAT_TORCH_VERSION="2.11.0"
INFOAT_CACHE="${INFOAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/infoat}"
INFOAT_VENV="${INFOAT_VENV:-$INFOAT_CACHE/torch-$INFOAT_TORCH_VERSION}"
INFOAT_DATA="${INFOAT_DATA:-$INFOAT_CACHE/data}"
# One cargo target per clone path: compile-time paths (env!("CARGO_MANIFEST_DIR") in tests)
# would otherwise go stale when a second clone elsewhere reuses binaries cargo deems fresh.
INFOAT_CLONE_KEY="$(printf '%s' "$(cd "$INFOAT_CI/.." && pwd -P)" | sha256sum | cut -c1-12)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$INFOAT_CACHE/target-$INFOAT_CLONE_KEY}"

infoat_log() { printf '[infoat] %s\n' "$*" >&2; }

# Puts rustup's cargo on PATH when it is installed but not on PATH; fails with advice otherwise.
infoat_need_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || { infoat_log "no Rust toolchain (cargo) found: install one with rustup, then retry"; return 1; }
}

# Exports what building and running against the cached libtorch needs.
infoat_torch_env() {
  local lib
  lib="$("$INFOAT_CI/bootstrap-torch")" || return 1
  export LIBTORCH_USE_PYTORCH=1
  export PATH="$INFOAT_VENV/bin:$PATH"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export INFOAT_TORCH_LIB="$lib"
}
