"""The agent host: Amazon Linux 2023 EC2 (one instance, or an Auto Scaling group of N on the same queue)."""

from __future__ import annotations

from typing import Any

from aws_cdk import (
    ArnFormat,
    CfnCreationPolicy,
    CfnResourceSignal,
    Duration,
    IgnoreMode,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk import host
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.configuration import Configuration
from cdk.aipm_cdk.nag import acknowledge, asset_bucket_objects, logical_id
from cdk.aipm_cdk.network import Network
from cdk.aipm_cdk.storage import Storage

# Until a scale-out host boots and publishes its own address, the endpoint points nowhere (the agents'
# sweep still takes every job; the nudge is an optimisation).
UNPUBLISHED_ENDPOINT = f"http://agent-not-booted.invalid:{c.PROCESSOR_PORT}"
DRAIN_HOOK = "aipm-drain"


class AgentHost(Construct):
    """EC2 host(s) running the agent under systemd; IMDSv2, encrypted EBS, no key pair, SSM access only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AipmConfig,
        network: Network,
        storage: Storage,
        configuration: Configuration,
        alarm_topic: sns.ITopic,
        console_origin: str | None = None,
    ) -> None:
        """`console_origin`: the web console's browser origin, the only one the attach WebSocket accepts
        (its terminal page reaches the port through `aipm ops tunnel`); None: no browser may attach."""
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._signal_resource = ""
        self.group_name = f"{c.PROJECT}-{config.stage}-agents"
        self.log_group = logs.LogGroup(
            self, "Logs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.role = self._role(storage, configuration)
        self.source = s3_assets.Asset(
            self,
            "AgentSource",
            path=str(c.REPO_ROOT),
            exclude=list(c.AGENT_SOURCE_EXCLUDE),
            ignore_mode=IgnoreMode.DOCKER,
        )
        self.source.grant_read(self.role)
        for finding in (
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            asset_bucket_objects(self),
        ):
            acknowledge(
                self.role,
                "IAM5",
                "CDK's read grant on the agent source asset: read-only actions on the CDK bootstrap asset "
                "bucket of this account/region; the zip's key is content-addressed, known only at publish.",
                finding,
            )

        agent_env = {
            "AIPM_RECORDS_TABLE": storage.records.table_name,
            "AIPM_GITHUB_SECRET_ID": configuration.github_secret.secret_arn,
            "AIPM_GITHUB_API_URL": config.github_api_url,
            "AIPM_GIT_BASE_URL": config.github_base_url,
            "AIPM_AGENT_TOKEN_SECRET_ID": configuration.agent_token.secret_arn,
            "AIPM_POOL_PORT": str(c.POOL_PORT),
            "AIPM_PROCESSOR_PORT": str(c.PROCESSOR_PORT),
            "AIPM_ATTACH_PORT": str(c.ATTACH_PORT),
            "AIPM_ALLOWED_OWNERS": ",".join(config.github_owners),
            "AIPM_POOL_SIZE": str(config.pool_size),
            "AIPM_CLI_PROFILE": config.cli_profile,
            "AIPM_WORK_DIR": c.AGENT_WORK_DIR,
            "AIPM_JOB_TIMEOUT_S": str(config.job_timeout_s),
            "AIPM_HEARTBEAT_INTERVAL_S": str(c.HEARTBEAT_INTERVAL_S),
            # The CLI's egress on the host goes through the allow-list proxy (cliDomains).
            "AIPM_CLI_PROXY": f"http://127.0.0.1:{c.CLI_PROXY_PORT}",
            "AWS_REGION": stack.region,
            "AWS_DEFAULT_REGION": stack.region,
        }
        if console_origin:
            agent_env["AIPM_CONSOLE_ORIGIN"] = console_origin
        bootstrap_env = {
            "BOOTSTRAP_SOURCE": self.source.s3_object_url,
            "BOOTSTRAP_REGION": stack.region,
            "BOOTSTRAP_KIRO_INSTALL": "1" if config.kiro_install else "0",
            "BOOTSTRAP_KIRO_VERSION": config.kiro_version,
            "BOOTSTRAP_CLI_DOMAINS": " ".join(config.cli_domains),
            "BOOTSTRAP_AGENT_TOKEN_SECRET": configuration.agent_token.secret_arn,
            "BOOTSTRAP_KIRO_KEY_SECRET": configuration.kiro_api_key.secret_arn,
            "BOOTSTRAP_POOL_PORT": str(c.POOL_PORT),
            "BOOTSTRAP_SIGNAL_STACK": stack.stack_name,
            # The resource CloudFormation waits on (the instance, or the group), known once it exists.
            "BOOTSTRAP_SIGNAL_RESOURCE": "",  # set below, once the resource exists
            "BOOTSTRAP_DRAIN_HOOK": DRAIN_HOOK if config.agent_auto_scaling else "",
            "BOOTSTRAP_GROUP_NAME": self.group_name if config.agent_auto_scaling else "",
            "BOOTSTRAP_ENDPOINT_PARAM": configuration.parameter_names["endpoint"]
            if config.agent_auto_scaling
            else "",
            "BOOTSTRAP_PROCESSOR_PORT": str(c.PROCESSOR_PORT),
            "BOOTSTRAP_CLOUDWATCH_CONFIG": host.CLOUDWATCH_CONFIG,
        }
        self.shell_user_data = ec2.UserData.for_linux()  # its commands are added once the host exists
        user_data = ec2.MultipartUserData()
        user_data.add_part(
            ec2.MultipartBody.from_raw_body(
                content_type='text/cloud-config; charset="utf-8"', body=host.CLOUD_CONFIG_EVERY_BOOT
            )
        )
        user_data.add_part(ec2.MultipartBody.from_user_data(self.shell_user_data))

        instance_type = ec2.InstanceType(config.instance_type)
        arm = instance_type.architecture == ec2.InstanceArchitecture.ARM_64
        # Latest AL2023 from the public SSM parameter, resolved at each deploy (a new AMI replaces the host:
        # it is rebuilt from user-data). pinAmi=true looks it up once and keeps it in cdk.context.json.
        image = ec2.MachineImage.latest_amazon_linux2023(
            cpu_type=ec2.AmazonLinuxCpuType.ARM_64 if arm else ec2.AmazonLinuxCpuType.X86_64,
            cached_in_context=config.pin_ami,
        )
        block_devices = [
            ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(
                    c.AGENT_ROOT_VOLUME_GB,
                    encrypted=True,
                    volume_type=ec2.EbsDeviceVolumeType.GP3,
                    delete_on_termination=True,
                ),
            )
        ]
        # Shared by the instance and the launch template (IMDSv2 is set on each: the enum types differ).
        launch: dict[str, Any] = {
            "instance_type": instance_type,
            "machine_image": image,
            "user_data": user_data,
            "role": self.role,
            "security_group": network.agent_sg,
            "http_endpoint": True,
            "http_put_response_hop_limit": 1,
            "block_devices": block_devices,
            "detailed_monitoring": True,
            "associate_public_ip_address": network.agent_public_ip,
        }
        self.instance: ec2.Instance | None = None
        self.group: autoscaling.AutoScalingGroup | None = None
        signal_timeout = Duration.minutes(c.SIGNAL_TIMEOUT_MINUTES)
        if config.agent_auto_scaling:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["ssm:PutParameter"], resources=[configuration.endpoint_parameter_arn()]
                )
            )
            # The drain on scale-in and replacement: the host completes its own termination hook once the
            # agent has stopped (and handed its jobs back). By name, so the policy needs no reference to
            # the group (which would make the group wait for its own policy).
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=["autoscaling:CompleteLifecycleAction"],
                    resources=[
                        stack.format_arn(
                            service="autoscaling",
                            resource="autoScalingGroup",
                            resource_name=f"*:autoScalingGroupName/{self.group_name}",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    ],
                )
            )
            acknowledge(
                self.role,
                "IAM5",
                "autoscaling:CompleteLifecycleAction on this stack's agent group by its fixed name: the "
                "group's id part of the ARN is generated, hence the '*' before autoScalingGroupName.",
                "Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:"
                f"*:autoScalingGroupName/{self.group_name}",
            )
            template = ec2.LaunchTemplate(
                self, "LaunchTemplate", http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED, **launch
            )
            self.group = autoscaling.AutoScalingGroup(
                self,
                "Group",
                vpc=network.vpc,
                vpc_subnets=network.agent_subnets,
                launch_template=template,
                auto_scaling_group_name=self.group_name,
                min_capacity=config.agent_host_count,
                # One more than the hosts: a rolling update adds the new host before it removes an old one.
                max_capacity=config.agent_host_count + 1,
                cooldown=Duration.seconds(c.ASG_COOLDOWN_S),
                health_checks=autoscaling.HealthChecks.ec2(grace_period=Duration.minutes(10)),
                notifications=[autoscaling.NotificationConfiguration(topic=alarm_topic)],
                # Each new host signals success only after the agent's health check; the update replaces one
                # host at a time, keeps every host in service meanwhile, and rolls back on a failure signal.
                signals=autoscaling.Signals.wait_for_all(timeout=signal_timeout),
                update_policy=autoscaling.UpdatePolicy.rolling_update(
                    max_batch_size=1,
                    min_instances_in_service=config.agent_host_count,
                    wait_on_resource_signals=True,
                    pause_time=signal_timeout,
                    suspend_processes=[
                        autoscaling.ScalingProcess.HEALTH_CHECK,
                        autoscaling.ScalingProcess.REPLACE_UNHEALTHY,
                        autoscaling.ScalingProcess.AZ_REBALANCE,
                        autoscaling.ScalingProcess.ALARM_NOTIFICATION,
                        autoscaling.ScalingProcess.SCHEDULED_ACTIONS,
                    ],
                ),
            )
            self.group.add_lifecycle_hook(
                "Drain",
                lifecycle_hook_name=DRAIN_HOOK,
                lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
                heartbeat_timeout=Duration.seconds(c.DRAIN_HOOK_TIMEOUT_S),
                default_result=autoscaling.DefaultResult.CONTINUE,
            )
            self._signal_resource = stack.get_logical_id(
                self.group.node.default_child  # type: ignore[arg-type]
            )
            self.endpoint_value = UNPUBLISHED_ENDPOINT
        else:
            self.instance = ec2.Instance(
                self,
                "Instance",
                vpc=network.vpc,
                vpc_subnets=network.agent_subnets,
                user_data_causes_replacement=False,
                http_tokens=ec2.HttpTokens.REQUIRED,
                **launch,
            )
            acknowledge(
                self.instance,
                "EC29",
                "The host is rebuilt from user-data on every boot and holds no data (the queue is in "
                "DynamoDB); termination protection would block stack updates that replace it and "
                "`cdk destroy`. Scale-out mode runs it in an Auto Scaling group instead.",
            )
            self.endpoint_value = f"http://{self.instance.instance_private_ip}:{c.PROCESSOR_PORT}"
            # CloudFormation reports the host created only once its agent answers /health (bootstrap.sh
            # signals; a failed step signals failure with its name). An update that changes user-data
            # stops and starts the instance, which CloudFormation does not wait on: the boot log and the
            # HeartbeatMissing alarm tell.
            self.instance.instance.cfn_options.creation_policy = CfnCreationPolicy(
                resource_signal=CfnResourceSignal(count=1, timeout=f"PT{c.SIGNAL_TIMEOUT_MINUTES}M")
            )
            self._signal_resource = stack.get_logical_id(self.instance.instance)

        # User-data is rendered at synthesis, so its commands can name the resource that waits for the signal.
        bootstrap_env["BOOTSTRAP_SIGNAL_RESOURCE"] = self._signal_resource
        self.shell_user_data.add_commands(
            *host.user_data_commands(
                agent_env, bootstrap_env, host.cloudwatch_agent_config(self.log_group.log_group_name)
            )
        )

    def _role(self, storage: Storage, configuration: Configuration) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="AIPM agent host: SSM Session Manager, the records table, its two secrets, its logs",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        acknowledge(
            role,
            "IAM4",
            "AmazonSSMManagedInstanceCore is the AWS-maintained minimum for Session Manager (shell and port "
            "forwarding are the only way in: no SSH, no key pair, no inbound rule).",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore",
        )
        storage.grant_records_to_agent(role)
        acknowledge(
            role,
            "IAM5",
            "Queries on the records table's own GSIs (status-index, repo-index, kind-index): "
            "the '/index/*' suffix is scoped to this one table.",
            f"Resource::<{logical_id(storage.records)}.Arn>/index/*",
        )
        configuration.github_secret.grant_read(role)
        configuration.agent_token.grant_read(role)
        configuration.kiro_api_key.grant_read(role)
        self.log_group.grant_write(role)
        role.add_to_policy(
            iam.PolicyStatement(actions=["logs:DescribeLogStreams"], resources=[self.log_group.log_group_arn])
        )
        return role
