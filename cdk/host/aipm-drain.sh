#!/usr/bin/env bash
# Drains this host before its Auto Scaling group terminates it (scale-in, a rolling update's replacement):
# polls the instance's target lifecycle state (instance metadata), and when it turns "Terminated" stops the
# agent — which stops claiming and hands its running jobs back without using their attempts — then
# completes the group's termination hook so the instance may go. The hook's heartbeat timeout bounds it.
# Usage: aipm-drain.sh <hook name> <group name> <region>
set -euo pipefail
hook="$1" group="$2" region="$3"
imds() {
    local token
    token="$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
        http://169.254.169.254/latest/api/token)"
    curl -fsS -H "X-aws-ec2-metadata-token: ${token}" "http://169.254.169.254/latest/meta-data/$1"
}
while [[ "$(imds autoscaling/target-lifecycle-state 2>/dev/null || true)" != "Terminated" ]]; do
    sleep "${AIPM_DRAIN_POLL_S:-5}"
done
echo "aipm-drain: the group is terminating this host: stopping the agent" >&2
systemctl stop aipm-agent.service
aws autoscaling complete-lifecycle-action --region "${region}" --lifecycle-hook-name "${hook}" \
    --auto-scaling-group-name "${group}" --instance-id "$(imds instance-id)" \
    --lifecycle-action-result CONTINUE
echo "aipm-drain: drained; the termination may proceed" >&2
