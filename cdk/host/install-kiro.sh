#!/usr/bin/env bash
# Installs the Kiro CLI for the service user with the official installer, non-interactively
# (KIRO_CLI_SKIP_SETUP=1: no shell integration), checks that the version is the pinned KIRO_VERSION, and
# turns auto-update off (a host changes only by a deploy). Run by bootstrap.sh as that user in its home.
set -euo pipefail
installer="$(mktemp)"
trap 'rm -f "${installer}"' EXIT
curl -fsSL --retry 3 https://cli.kiro.dev/install -o "${installer}"
KIRO_CLI_SKIP_SETUP=1 bash "${installer}"
installed="$("${HOME}/.local/bin/kiro-cli" --version)"
if [[ "${installed}" != *"${KIRO_VERSION}"* ]]; then
    echo "install-kiro: installed '${installed}', pinned ${KIRO_VERSION}" >&2
    rm -f "${HOME}/.local/bin/kiro-cli" # not kept as "installed" by the next boot
    exit 1
fi
"${HOME}/.local/bin/kiro-cli" settings app.disableAutoupdates true
