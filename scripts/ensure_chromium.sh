#!/usr/bin/env bash
# make test's first step: the browser tests (tests/web) drive the distribution's Chromium through
# Playwright (its own browser downloads do not work offline). Install Debian's package when it is
# missing and we may; otherwise stop before the tests with one line saying what to run.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0

packages="chromium fonts-dejavu-core"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make test: Chromium is missing and this is not a Debian-like system: install your distribution's chromium package (the browser tests drive /usr/bin/chromium), then run make test again" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
else
    echo "make test: Chromium is missing and installing it needs root: run 'sudo apt-get install -y $packages', then make test again" >&2
    exit 1
fi
echo "make test: installing Debian's Chromium for the browser tests (apt-get install $packages)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "make test: apt-get ran but no chromium is on PATH" >&2; exit 1; }
