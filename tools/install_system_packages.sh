#!/usr/bin/env bash
# Install the Debian packages the course uses, when they are missing and we are root with apt:
# the Fashion-MNIST data, Chromium and a CJK font for the site tests (Chinese terms in the screenshots), npm for MathJax.
# Not being root, it only says what is missing; `sudo bash tools/install_system_packages.sh` installs it then.
set -euo pipefail
needed=()
[ -d /usr/share/datasets/fashion-mnist ] || needed+=(dataset-fashion-mnist)
command -v chromium >/dev/null || needed+=(chromium)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || needed+=(fonts-noto-cjk)
command -v npm >/dev/null || needed+=(npm)
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian packages: ${needed[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
else
  echo "Not root or no apt: skipping ${needed[*]} (sudo bash tools/install_system_packages.sh installs them)."
  echo "Fashion-MNIST then comes from D2L_DATA_DIR, ~/.cache/d2l_support or a download; the site tests need Chromium."
fi
