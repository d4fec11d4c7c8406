# Sourced by the scripts: installs the Debian packages the build needs when missing.
# chromium: the status page's browser check (tools/statuspage/check.py, StatusPageTests).
APT_PACKAGES=(libsodium-dev libsecp256k1-dev libcurl4-openssl-dev pkg-config libsqlite3-dev python3 python3-venv
    chromium)

ensure_system_packages() {
    local missing=() pkg SUDO=""
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing system packages: ${missing[*]}" >&2
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq || { echo "apt-get update failed" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null ||
        { echo "apt-get install ${missing[*]} failed" >&2; return 1; }
}

# The repository's Python environment (.venv) for the offline regtest chain and the
# interop tests: created once, reinstalled when tools/regtest/requirements.txt changes.
ensure_python_venv() {
    local stamp=.venv/.requirements
    if [ -x .venv/bin/python ] && cmp -s tools/regtest/requirements.txt "$stamp"; then return 0; fi
    echo "==> setting up .venv (pip install -r tools/regtest/requirements.txt)" >&2
    [ -x .venv/bin/python ] || python3 -m venv .venv || { echo "python3 -m venv failed" >&2; return 1; }
    .venv/bin/pip install -q --disable-pip-version-check -r tools/regtest/requirements.txt ||
        { echo "pip install failed (PyPI reachable?)" >&2; return 1; }
    cp tools/regtest/requirements.txt "$stamp"
}
