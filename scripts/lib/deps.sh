# Sourced by the scripts: installs the Debian packages the build needs when missing.
APT_PACKAGES=(libsodium-dev libsecp256k1-dev libcurl4-openssl-dev pkg-config libsqlite3-dev)

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
