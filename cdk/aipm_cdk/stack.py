"""The one stack: composes network, storage, configuration, console, API and its firewall, agent host,
dispatch, monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.agent_host import AgentHost
from cdk.aipm_cdk.api import Api
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.console import Console
from cdk.aipm_cdk.dispatch import Dispatch
from cdk.aipm_cdk.firewall import NO_WAF_REASON, ApiFirewall
from cdk.aipm_cdk.functions import powertools_layer_arn
from cdk.aipm_cdk.monitoring import Monitoring
from cdk.aipm_cdk.nag import acknowledge
from cdk.aipm_cdk.network import Network
from cdk.aipm_cdk.reconcile import Reconcile
from cdk.aipm_cdk.shared_api import SharedApiRoutes
from cdk.aipm_cdk.storage import Storage

PORT_FORWARD = (
    "aws ssm start-session --region {region} --target {target} "
    "--document-name AWS-StartPortForwardingSessionToRemoteHost "
    "--parameters host={host},portNumber={port},localPortNumber={port}"
)


class AipmStack(Stack):
    """AIPM code delegation: API Gateway + Lambda, DynamoDB, the EC2 agent host(s), dispatch, alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description="AIPM code delegation (cdk/README.md)", **kwargs)
        self.monitoring = Monitoring(self, "Monitoring", config=config)
        self.network = Network(self, "Network", config=config)
        self.storage = Storage(self, "Storage", config=config)
        self.configuration = Configuration(self, "Configuration", config=config)
        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "PowertoolsLayer", powertools_layer_arn(self, config)
        )
        self.console = Console(self, "Console", config=config) if config.console else None
        self.api = Api(
            self,
            "Api",
            config=config,
            storage=self.storage,
            configuration=self.configuration,
            layer=layer,
            allowed_origins=cors_origins(config, self.console),
        )
        stage = self.api.rest_api.deployment_stage
        self.firewall: ApiFirewall | None = None
        if config.api_waf:
            self.firewall = ApiFirewall(self, "ApiFirewall", config=config, stage=stage)
        else:
            acknowledge(stage, "APIG3", NO_WAF_REASON)
        if self.console is not None:
            self.console.publish(
                self.api.rest_api.url,
                auth={
                    "domain": self.api.sign_in_url,
                    "issuer": self.api.issuer,
                    "clientId": self.api.user_pool_client.user_pool_client_id,
                },
            )
        if config.aipm_rest_api_id:
            self.shared_api = SharedApiRoutes(self, "AipmApiRoutes", config=config, api=self.api)
            self._output(
                "AipmDelegateUrl",
                f"https://{config.aipm_rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/"
                f"{config.aipm_rest_api_stage}/{c.API_PREFIX}/personal-delegate",
                "The delegate route on the AIPM REST API (one base URL for the AIPM frontend)",
            )
        self.reconcile = Reconcile(
            self,
            "Reconcile",
            config=config,
            storage=self.storage,
            configuration=self.configuration,
            layer=layer,
        )
        self.agent = AgentHost(
            self,
            "Agent",
            config=config,
            network=self.network,
            storage=self.storage,
            configuration=self.configuration,
            alarm_topic=self.monitoring.topic,
            console_origin=self.console.origin if self.console is not None else None,
        )
        self.configuration.add_endpoint_parameter(self.agent.endpoint_value)
        self.dispatch = Dispatch(
            self,
            "Dispatch",
            config=config,
            network=self.network,
            storage=self.storage,
            configuration=self.configuration,
            layer=layer,
        )
        self.monitoring.watch_jobs(self.storage, self.agent)
        self.monitoring.watch_api(self.api, self.dispatch, self.reconcile)
        self._outputs(config)

    def _output(self, name: str, value: str, description: str) -> None:
        CfnOutput(self, name, value=value, description=description)

    def _outputs(self, config: AipmConfig) -> None:
        region = Aws.REGION
        self._output(c.OUT_API_URL, self.api.rest_api.url, "Base URL of the API stage (routes under api/)")
        self._output(
            "DelegateUrl", f"{self.api.rest_api.url}{c.API_PREFIX}/personal-delegate", "The delegate route"
        )
        self._output(c.OUT_USER_POOL, self.api.user_pool.user_pool_id, "Cognito user pool of the frontend")
        self._output(
            c.OUT_SIGN_IN_DOMAIN, self.api.sign_in_url, "Cognito managed login (aipm login --domain ...)"
        )
        self._output(
            c.OUT_USER_POOL_CLIENT,
            self.api.user_pool_client.user_pool_client_id,
            "Cognito app client (no secret)",
        )
        if self.console is not None:
            self._output(c.OUT_CONSOLE_URL, self.console.url, "The web console (CloudFront)")
        self._output("GitHubSecretArn", self.configuration.github_secret.secret_arn, "GitHub token secret")
        self._output(
            "SetGitHubTokenCommand",
            f"aws secretsmanager put-secret-value --region {region} --secret-id "
            f"{self.configuration.github_secret.secret_arn} --secret-string "
            '\'{"token":"<github-token>"}\'',
            "Store the GitHub token (once after the first deploy, and on rotation)",
        )
        self._output(
            "GitHubWebhookUrl",
            f"{self.api.rest_api.url}{c.API_PREFIX}/{'/'.join(c.WEBHOOK_PATH)}",
            "Payload URL of the GitHub webhook (content type application/json; README: GitHub webhook)",
        )
        self._output(
            "GetGitHubWebhookSecretCommand",
            f"aws secretsmanager get-secret-value --region {region} --secret-id "
            f"{self.configuration.webhook_secret.secret_arn} --query SecretString --output text",
            "The webhook secret to give GitHub (the value of its 'secret' field)",
        )
        self._output(
            c.OUT_AGENT_TOKEN_SECRET, self.configuration.agent_token.secret_arn, "Agent API token secret"
        )
        self._output(
            "SetKiroApiKeyCommand",
            f"aws secretsmanager put-secret-value --region {region} --secret-id "
            f"{self.configuration.kiro_api_key.secret_arn} --secret-string "
            '\'{"apiKey":"<kiro-api-key>"}\'',
            "Store the Kiro CLI's API key (headless/ACP profiles); hosts read it at every boot",
        )
        self._output("AlarmTopicArn", self.monitoring.topic.topic_arn, "Subscribe to get the alarms")
        self._output(
            "DashboardUrl",
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards:name={c.PROJECT}-{config.stage}",
            "CloudWatch dashboard",
        )
        for key, port, what in (
            (c.OUT_POOL_PORT, c.POOL_PORT, "pool API"),
            (c.OUT_PROCESSOR_PORT, c.PROCESSOR_PORT, "PR processor"),
            (c.OUT_ATTACH_PORT, c.ATTACH_PORT, "attach WebSocket"),
        ):
            self._output(key, str(port), f"The agent's {what} port (on its private IP)")
        self._output(
            c.OUT_LOG_GROUP,
            self.agent.log_group.log_group_name,
            "The agent hosts' log group: streams <instance-id>/agent and <instance-id>/boot",
        )
        instance = self.agent.instance
        if instance is not None:
            target, host = instance.instance_id, instance.instance_private_ip
            self._output(c.OUT_INSTANCE, target, "The agent host")
            self._output("AgentPrivateIp", host, "Private IP the agent binds to")
        else:
            group = self.agent.group
            assert group is not None
            target, host = "<instance-id>", "<private-ip>"
            self._output(c.OUT_GROUP, group.auto_scaling_group_name, "The agent hosts' Auto Scaling group")
            self._output(
                "ListAgentHostsCommand",
                f"aws ec2 describe-instances --region {region} --filters "
                f"Name=tag:aws:autoscaling:groupName,Values={group.auto_scaling_group_name} "
                "Name=instance-state-name,Values=running "
                "--query 'Reservations[].Instances[].[InstanceId,PrivateIpAddress]' --output text",
                "Instance ids and private IPs to put in the commands below",
            )
        self._output(
            "SsmShellCommand",
            f"aws ssm start-session --region {region} --target {target}",
            "Shell on the agent host (Session Manager; no SSH)",
        )
        for port in c.AGENT_PORTS:
            self._output(
                f"SsmPortForward{port}",
                PORT_FORWARD.format(region=region, target=target, host=host, port=port),
                f"Forward localhost:{port} to the agent's port {port}",
            )


def cors_origins(config: AipmConfig, console: Console | None) -> list[str]:
    """The browser origins of the API (CORS, sign-in callbacks): the console's CloudFront origin and every
    `frontendOrigins` entry; a placeholder when there is none (no browser client is deployed)."""
    origins = ([console.origin] if console is not None else []) + list(config.frontend_origins)
    return origins or [c.FALLBACK_ORIGIN]
