"""Configuration: the secrets (GitHub credentials, agent token, Kiro API key) and the agent's parameters."""

from __future__ import annotations

from aws_cdk import ArnFormat, SecretValue, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.nag import acknowledge

# Generated secrets are JSON objects with one generated key, "token".
_EMPTY_OBJECT = "{}"


class Configuration(Construct):
    """Secrets Manager secrets (JSON `{"token": ...}`; the webhook secret `{"secret": ...}`) and
    `/aipm/<stage>/agent/*` parameters."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig) -> None:
        super().__init__(scope, construct_id)
        self.parameter_names = c.ssm_parameter_names(config.stage)
        self.github_secret = secretsmanager.Secret(
            self,
            "GitHubToken",
            description='AIPM: GitHub token for branches, commits, PRs and pushes. JSON {"token": "..."}; '
            "the generated value is a placeholder: put the real token after the first deploy.",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=_EMPTY_OBJECT, generate_string_key="token", exclude_punctuation=True
            ),
        )
        acknowledge(
            self.github_secret,
            "SMG4",
            "A GitHub token is issued and rotated at GitHub (fine-grained token expiry), not by a Secrets "
            "Manager rotation Lambda; ops put the new value with put-secret-value (cdk/README.md).",
        )
        self.agent_token = secretsmanager.Secret(
            self,
            "AgentToken",
            description="AIPM: bearer token the agent's HTTP API requires (dispatcher and ops). "
            'JSON {"token": "..."}.',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=_EMPTY_OBJECT,
                generate_string_key="token",
                exclude_punctuation=True,
                password_length=48,
            ),
        )
        acknowledge(
            self.agent_token,
            "SMG4",
            "Shared bearer token between the dispatcher and the agent, generated at deploy time; rotating it "
            "means re-reading it on both sides, documented as a manual step (cdk/README.md) until the agent "
            "supports reloading it.",
        )
        # GitHub signs every webhook delivery with this (X-Hub-Signature-256); ops paste the value into the
        # webhook's or GitHub App's settings (README: GitHub webhook).
        self.webhook_secret = secretsmanager.Secret(
            self,
            "GitHubWebhookSecret",
            description="AIPM: the secret GitHub signs webhook deliveries with (X-Hub-Signature-256). "
            'JSON {"secret": "..."}; give the same value to the GitHub webhook or App.',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=_EMPTY_OBJECT,
                generate_string_key="secret",
                exclude_punctuation=True,
                password_length=48,
            ),
        )
        acknowledge(
            self.webhook_secret,
            "SMG4",
            "The webhook secret is shared with GitHub's webhook settings, which no rotation Lambda can "
            "update; ops rotate it at both ends together with put-secret-value (README: GitHub webhook).",
        )
        # The Kiro CLI's API key (headless and ACP profiles): the hosts write it into /etc/aipm/kiro.env at
        # every boot, so a replaced host needs no login. Empty (`{}`) until ops put one.
        self.kiro_api_key = secretsmanager.Secret(
            self,
            "KiroApiKey",
            description='AIPM: the Kiro CLI API key for the agent hosts. JSON {"apiKey": "..."}; '
            "empty until set (the hosts then rely on a `kiro-cli login` on each host).",
            secret_string_value=SecretValue.unsafe_plain_text(_EMPTY_OBJECT),
        )
        acknowledge(
            self.kiro_api_key,
            "SMG4",
            "The Kiro API key is issued and rotated in Kiro's account settings, not by a Secrets Manager "
            "rotation Lambda; ops put the new value with put-secret-value and reboot the hosts "
            "(cdk/README.md).",
        )
        self.port_parameters = [
            ssm.StringParameter(
                self,
                f"{name.title().replace('-', '')}Parameter",
                parameter_name=self.parameter_names[name],
                string_value=str(port),
                description=f"AIPM agent {name}",
            )
            for name, port in (
                ("pool-port", c.POOL_PORT),
                ("processor-port", c.PROCESSOR_PORT),
                ("attach-port", c.ATTACH_PORT),
            )
        ]

    def add_endpoint_parameter(self, value: str) -> ssm.StringParameter:
        """The `/aipm/<stage>/agent/endpoint` parameter the dispatcher reads (made once the host exists)."""
        self.endpoint_parameter = ssm.StringParameter(
            self,
            "EndpointParameter",
            parameter_name=self.parameter_names["endpoint"],
            string_value=value,
            description="AIPM agent processor endpoint (http://<private-ip>:port) for the dispatcher",
        )
        return self.endpoint_parameter

    def endpoint_parameter_arn(self) -> str:
        """ARN of the endpoint parameter, known before the parameter itself is created."""
        return Stack.of(self).format_arn(
            service="ssm",
            resource="parameter",
            resource_name=self.parameter_names["endpoint"].lstrip("/"),
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def grant_read_agent_parameters(self, grantee: iam.IGrantable) -> None:
        """Let grantee read the endpoint and port parameters."""
        self.endpoint_parameter.grant_read(grantee)
        for parameter in self.port_parameters:
            parameter.grant_read(grantee)
