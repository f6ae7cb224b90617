"""The one stack: composes network, storage, configuration, API, agent host, dispatch and monitoring."""

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
from cdk.aipm_cdk.dispatch import Dispatch
from cdk.aipm_cdk.functions import powertools_layer_arn
from cdk.aipm_cdk.monitoring import Monitoring
from cdk.aipm_cdk.network import Network
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
        self.api = Api(
            self, "Api", config=config, storage=self.storage, configuration=self.configuration, layer=layer
        )
        self.agent = AgentHost(
            self,
            "Agent",
            config=config,
            network=self.network,
            storage=self.storage,
            configuration=self.configuration,
            alarm_topic=self.monitoring.topic,
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
        self.monitoring.watch_api(self.api, self.dispatch)
        self._outputs(config)

    def _output(self, name: str, value: str, description: str) -> None:
        CfnOutput(self, name, value=value, description=description)

    def _outputs(self, config: AipmConfig) -> None:
        region = Aws.REGION
        self._output("ApiUrl", self.api.rest_api.url, "Base URL of the API stage (routes under api/)")
        self._output(
            "DelegateUrl", f"{self.api.rest_api.url}{c.API_PREFIX}/personal-delegate", "The delegate route"
        )
        self._output("UserPoolId", self.api.user_pool.user_pool_id, "Cognito user pool of the frontend")
        self._output(
            "UserPoolClientId",
            self.api.user_pool_client.user_pool_client_id,
            "Cognito app client (no secret)",
        )
        self._output("GitHubSecretArn", self.configuration.github_secret.secret_arn, "GitHub token secret")
        self._output(
            "SetGitHubTokenCommand",
            f"aws secretsmanager put-secret-value --region {region} --secret-id "
            f"{self.configuration.github_secret.secret_arn} --secret-string "
            '\'{"token":"<github-token>"}\'',
            "Store the GitHub token (once after the first deploy, and on rotation)",
        )
        self._output("AgentTokenSecretArn", self.configuration.agent_token.secret_arn, "Agent API token")
        self._output("AlarmTopicArn", self.monitoring.topic.topic_arn, "Subscribe to get the alarms")
        self._output(
            "DashboardUrl",
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards:name={c.PROJECT}-{config.stage}",
            "CloudWatch dashboard",
        )
        instance = self.agent.instance
        if instance is not None:
            target, host = instance.instance_id, instance.instance_private_ip
            self._output("InstanceId", target, "The agent host")
            self._output("AgentPrivateIp", host, "Private IP the agent binds to")
        else:
            group = self.agent.group
            assert group is not None
            target, host = "<instance-id>", "<private-ip>"
            self._output("AgentAutoScalingGroup", group.auto_scaling_group_name, "The agent hosts")
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
