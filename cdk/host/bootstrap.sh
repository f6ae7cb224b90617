#!/usr/bin/env bash
# Installs the AIPM agent on an Amazon Linux 2023 host and starts it under systemd. EC2 user-data runs
# it as root after writing /etc/aipm/agent.env (the agent's AIPM_* settings) and /etc/aipm/bootstrap.env
# (the variables below) from stack values. Re-running it is safe: it rebuilds the venv and restarts.
#
# Settings (environment):
#   BOOTSTRAP_SOURCE             agent source: s3://bucket/key.zip, a local .zip or a local directory
#   BOOTSTRAP_REGION             AWS region for the aws CLI (default: from instance metadata)
#   BOOTSTRAP_KIRO_INSTALL_COMMAND  shell command run as the service user to install the Kiro CLI;
#                                empty skips it (then install it by hand, see cdk/README.md)
#   BOOTSTRAP_ENDPOINT_PARAM     SSM parameter to publish http://<private-ip>:<port> in (scale-out);
#                                empty skips it (a single host's endpoint is set by the stack)
#   BOOTSTRAP_PROCESSOR_PORT     port published in that endpoint (8082)
#   BOOTSTRAP_CLOUDWATCH_CONFIG  CloudWatch agent JSON config file to start it with; empty skips it
# Stubs for tests (defaults are the production behaviour):
#   BOOTSTRAP_ROOT               prefix of every path written, e.g. a scratch directory (default: none)
#   BOOTSTRAP_PACKAGES           dnf packages to install; empty skips dnf
#   BOOTSTRAP_PYTHON             interpreter the venv is made with (python3.11)
#   BOOTSTRAP_PIP_ARGS           extra `pip install` arguments, e.g. --no-deps
#   BOOTSTRAP_USER               the unprivileged service user (aipm)
#   BOOTSTRAP_CREATE_USER        1 creates that user; 0 expects it to exist
#   BOOTSTRAP_START              1 enables and starts the unit; 0 installs it only
#   BOOTSTRAP_INSTANCE_ID, BOOTSTRAP_PRIVATE_IP  host facts; read from IMDSv2 when unset
set -euo pipefail

log() { printf 'aipm-bootstrap: %s\n' "$*" >&2; }

imds() {
    local token
    token="$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
        http://169.254.169.254/latest/api/token)"
    curl -fsS -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/meta-data/$1"
}

HOST_FILES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${BOOTSTRAP_ROOT:-}"
ROOT="${ROOT%/}"
SOURCE="${BOOTSTRAP_SOURCE:?BOOTSTRAP_SOURCE is required}"
PACKAGES="${BOOTSTRAP_PACKAGES-python3.11 python3.11-pip git logrotate amazon-cloudwatch-agent}"
PYTHON="${BOOTSTRAP_PYTHON:-python3.11}"
SERVICE_USER="${BOOTSTRAP_USER:-aipm}"
CREATE_USER="${BOOTSTRAP_CREATE_USER:-1}"
START="${BOOTSTRAP_START:-1}"
KIRO_INSTALL_COMMAND="${BOOTSTRAP_KIRO_INSTALL_COMMAND:-}"
ENDPOINT_PARAM="${BOOTSTRAP_ENDPOINT_PARAM:-}"
PROCESSOR_PORT="${BOOTSTRAP_PROCESSOR_PORT:-8082}"
CLOUDWATCH_CONFIG="${BOOTSTRAP_CLOUDWATCH_CONFIG:-}"
read -r -a PIP_ARGS <<<"${BOOTSTRAP_PIP_ARGS:-}"

HOME_DIR="/var/lib/aipm"
VENV="${ROOT}/opt/aipm/venv"
SRC="${ROOT}/opt/aipm/src"
AGENT_ENV="${ROOT}/etc/aipm/agent.env"
UNIT_DIR="${ROOT}/etc/systemd/system"

if [[ -n "${PACKAGES}" ]]; then
    log "installing packages: ${PACKAGES}"
    read -r -a package_list <<<"${PACKAGES}"
    dnf install -y --quiet "${package_list[@]}"
fi

if [[ "${CREATE_USER}" == 1 ]] && ! id -u "${SERVICE_USER}" >/dev/null 2>&1; then
    log "creating user ${SERVICE_USER}"
    useradd --system --create-home --home-dir "${HOME_DIR}" --shell /sbin/nologin "${SERVICE_USER}"
fi
install -d -m 0750 -o "${SERVICE_USER}" -g "${SERVICE_USER}" \
    "${ROOT}${HOME_DIR}" "${ROOT}${HOME_DIR}/work" "${ROOT}/var/log/aipm"

log "fetching the agent source from ${SOURCE}"
rm -rf "${SRC}"
install -d -m 0755 "${SRC}"
case "${SOURCE}" in
s3://*)
    aws s3 cp --only-show-errors ${BOOTSTRAP_REGION:+--region "${BOOTSTRAP_REGION}"} \
        "${SOURCE}" "${SRC}.zip"
    "${PYTHON}" -m zipfile -e "${SRC}.zip" "${SRC}"
    rm -f "${SRC}.zip"
    ;;
*.zip) "${PYTHON}" -m zipfile -e "${SOURCE}" "${SRC}" ;;
*) cp -R "${SOURCE}/." "${SRC}/" ;;
esac

log "installing the agent into ${VENV}"
rm -rf "${VENV}"
"${PYTHON}" -m venv "${VENV}"
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_ARGS[@]}" "${SRC}[agent]"
test -x "${VENV}/bin/aipm-agent"

# Host facts the stack cannot know, (re)written into the agent's environment file.
AGENT_ID="${BOOTSTRAP_INSTANCE_ID:-}"
BIND_HOST="${BOOTSTRAP_PRIVATE_IP:-}"
[[ -n "${AGENT_ID}" ]] || AGENT_ID="$(imds instance-id)"
[[ -n "${BIND_HOST}" ]] || BIND_HOST="$(imds local-ipv4)"
install -d -m 0755 "${ROOT}/etc/aipm"
touch "${AGENT_ENV}"
sed -i -e '/^AIPM_AGENT_ID=/d' -e '/^AIPM_BIND_HOST=/d' "${AGENT_ENV}"
printf "AIPM_AGENT_ID='%s'\nAIPM_BIND_HOST='%s'\n" "${AGENT_ID}" "${BIND_HOST}" >>"${AGENT_ENV}"
chown "root:${SERVICE_USER}" "${AGENT_ENV}"
chmod 0640 "${AGENT_ENV}"

if [[ -x "${ROOT}${HOME_DIR}/.local/bin/kiro-cli" ]]; then
    log "the Kiro CLI is already installed (its login is kept)"
elif [[ -n "${KIRO_INSTALL_COMMAND}" ]]; then
    log "installing the Kiro CLI for ${SERVICE_USER}"
    (cd "${ROOT}${HOME_DIR}" && runuser -u "${SERVICE_USER}" -- env HOME="${ROOT}${HOME_DIR}" \
        bash -c "${KIRO_INSTALL_COMMAND}")
fi

log "installing systemd units"
install -d -m 0755 "${UNIT_DIR}" "${ROOT}/etc/logrotate.d"
install -m 0644 "${HOST_FILES}/aipm-agent.service" "${UNIT_DIR}/aipm-agent.service"
install -m 0644 "${HOST_FILES}/aipm-agent.logrotate" "${ROOT}/etc/logrotate.d/aipm-agent"

if [[ -n "${ENDPOINT_PARAM}" ]]; then
    log "publishing http://${BIND_HOST}:${PROCESSOR_PORT} in ${ENDPOINT_PARAM}"
    aws ssm put-parameter ${BOOTSTRAP_REGION:+--region "${BOOTSTRAP_REGION}"} --overwrite \
        --name "${ENDPOINT_PARAM}" --type String --value "http://${BIND_HOST}:${PROCESSOR_PORT}" >/dev/null
fi

if [[ -n "${CLOUDWATCH_CONFIG}" ]]; then
    log "starting the CloudWatch agent"
    /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
        -c "file:${CLOUDWATCH_CONFIG}"
fi

if [[ "${START}" == 1 ]]; then
    log "starting aipm-agent"
    systemctl daemon-reload
    systemctl enable aipm-agent.service
    systemctl restart aipm-agent.service
fi
log "done"
