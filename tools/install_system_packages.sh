#!/usr/bin/env bash
# Install the Debian packages the course uses, when they are missing and we are root with apt.
set -euo pipefail
needed=()
[ -d /usr/share/datasets/fashion-mnist ] || needed+=(dataset-fashion-mnist)
command -v chromium >/dev/null || needed+=(chromium)
command -v npm >/dev/null || needed+=(npm)
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian packages: ${needed[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${needed[@]}" >/dev/null
else
  echo "Not root or no apt: skipping ${needed[*]}. Data then comes from D2L_DATA_DIR, ../shared/data or a download;"
  echo "the site tests need Chromium (e.g. sudo apt-get install chromium)."
fi
