#!/usr/bin/env bash
# System packages the tests use: a real browser and CJK fonts (without them Chinese renders
# as boxes in screenshots). Skipped when already present.
set -euo pipefail
packages=(chromium fonts-noto-cjk fonts-noto-color-emoji)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
