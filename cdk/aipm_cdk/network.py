"""Network: the VPC (new, or an existing one by id), flow logs, VPC endpoints and the two security groups.

Default shape, chosen so no NAT gateway is forced on every deployment: public subnets for the agent host
(public IPv4 for egress to GitHub/PyPI, a security group with no inbound rule from anywhere but the
dispatcher) and private isolated subnets for the dispatcher Lambda, which reaches SSM and Secrets
Manager through interface endpoints and the agent through the security-group rule.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.nag import acknowledge

# What the dispatcher calls (its endpoint parameter, the agent token): needed when its subnets have no NAT.
DISPATCHER_ENDPOINTS = {
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
}
# Session Manager and log shipping from the host: it reaches them over its own egress; `all` keeps that
# traffic inside the VPC.
HOST_ENDPOINTS = {
    "SsmMessages": ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES,
    "Ec2Messages": ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
}


def interface_endpoints(config: AipmConfig) -> dict[str, ec2.InterfaceVpcEndpointAwsService]:
    """The interface endpoints a configuration gets (each costs per hour per AZ, see docs/cost.md)."""
    if config.vpc_endpoints == "all":
        return {**DISPATCHER_ENDPOINTS, **HOST_ENDPOINTS}
    isolated = not config.vpc_id and config.nat_gateways == 0
    if config.vpc_endpoints == "needed" and isolated:
        return dict(DISPATCHER_ENDPOINTS)
    return {}


class Network(Construct):
    """VPC, endpoints, and the agent/dispatcher security groups (agent ports open only to the dispatcher)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig) -> None:
        super().__init__(scope, construct_id)
        if config.vpc_id:
            self.vpc: ec2.IVpc = ec2.Vpc.from_lookup(self, "Vpc", vpc_id=config.vpc_id)
            private_type = ec2.SubnetType.PRIVATE_WITH_EGRESS
        else:
            private_type = (
                ec2.SubnetType.PRIVATE_WITH_EGRESS if config.nat_gateways else ec2.SubnetType.PRIVATE_ISOLATED
            )
            self.vpc = self._new_vpc(config, private_type)
        self.private_subnets = ec2.SubnetSelection(subnet_type=private_type)
        self.agent_subnets = ec2.SubnetSelection(
            subnet_type=ec2.SubnetType.PUBLIC if config.agent_subnet == "public" else private_type
        )
        self.agent_public_ip = config.agent_subnet == "public"

        self.dispatcher_sg = ec2.SecurityGroup(
            self,
            "DispatcherSg",
            vpc=self.vpc,
            description="AIPM dispatcher Lambda: HTTPS to AWS endpoints, agent ports to the agent only",
            allow_all_outbound=False,
        )
        self.agent_sg = ec2.SecurityGroup(
            self,
            "AgentSg",
            vpc=self.vpc,
            description="AIPM agent host: no inbound except the agent ports from the dispatcher",
            allow_all_outbound=False,
        )
        # Egress: HTTPS only (GitHub, PyPI, the Kiro CLI, the AL2023 repositories, AWS APIs). DNS, NTP and
        # instance metadata are link-local services that security groups do not filter.
        self.agent_sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS: GitHub, PyPI, AWS APIs")
        for port in c.DISPATCH_PORTS:
            self.agent_sg.add_ingress_rule(self.dispatcher_sg, ec2.Port.tcp(port), f"agent port {port}")
            self.dispatcher_sg.add_egress_rule(self.agent_sg, ec2.Port.tcp(port), f"agent port {port}")
        self.endpoints = interface_endpoints(config)
        if self.endpoints:
            self._endpoints(config)
        else:  # SSM and Secrets Manager through the VPC's own NAT gateway or endpoints
            self.dispatcher_sg.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS: SSM, Secrets Manager"
            )

    def _new_vpc(self, config: AipmConfig, private_type: ec2.SubnetType) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=config.max_azs,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=private_type, cidr_mask=24),
            ],
            restrict_default_security_group=True,
        )
        flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        return vpc

    def _endpoints(self, config: AipmConfig) -> None:
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
        self._dispatcher_to_dynamodb(config)
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        endpoint_sg = ec2.SecurityGroup(
            self,
            "EndpointSg",
            vpc=self.vpc,
            description="AIPM interface endpoints: HTTPS from the agent and the dispatcher",
            allow_all_outbound=False,
        )
        for peer, name in ((self.agent_sg, "agent"), (self.dispatcher_sg, "dispatcher")):
            endpoint_sg.add_ingress_rule(peer, ec2.Port.tcp(443), f"HTTPS from the {name}")
        self.dispatcher_sg.add_egress_rule(endpoint_sg, ec2.Port.tcp(443), "HTTPS to the VPC endpoints")
        # In `endpointAzs` AZs (1 by default): the endpoint's private DNS answers from every AZ of the VPC;
        # one AZ halves the hourly cost at the price of cross-AZ traffic and no endpoint during an AZ outage.
        subnets = self.vpc.select_subnets(
            subnet_type=self.private_subnets.subnet_type, one_per_az=True
        ).subnets[: config.endpoint_azs]
        for name, service in self.endpoints.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=ec2.SubnetSelection(subnets=subnets),
                security_groups=[endpoint_sg],
                open=False,
                private_dns_enabled=True,
            )

    def _dispatcher_to_dynamodb(self, config: AipmConfig) -> None:
        """Egress from the dispatcher to DynamoDB (heartbeats) through the gateway endpoint: HTTPS to the
        region's AWS-managed `com.amazonaws.<region>.dynamodb` prefix list, whose id only the EC2 API knows
        (looked up at deploy time, so synthesis stays offline)."""
        name = f"com.amazonaws.{Stack.of(self).region}.dynamodb"
        call = cr.AwsSdkCall(
            service="EC2",
            action="describeManagedPrefixLists",
            parameters={"Filters": [{"Name": "prefix-list-name", "Values": [name]}]},
            physical_resource_id=cr.PhysicalResourceId.of(name),
            output_paths=["PrefixLists.0.PrefixListId"],
        )
        lookup = cr.AwsCustomResource(
            self,
            "DynamoDbPrefixList",
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["ec2:DescribeManagedPrefixLists"], resources=["*"])]
            ),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self,
                "PrefixListLookupLogs",
                retention=config.log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            ),
        )
        provider = Stack.of(self).node.try_find_child(
            "AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", "")
        )
        assert provider is not None  # CDK's singleton handler of every AwsCustomResource in the stack
        acknowledge(
            provider,
            "IAM4",
            "AWSLambdaBasicExecutionRole on the role of CDK's AwsCustomResource handler (a singleton CDK "
            "generates): the AWS-maintained log-writing policy, not configurable on that construct.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        acknowledge(
            lookup,
            "IAM5",
            "ec2:DescribeManagedPrefixLists does not support resource-level permissions (AWS documents "
            "Resource '*' for it); it is the only action of this deploy-time lookup.",
            "Resource::*",
        )
        self.dispatcher_sg.add_egress_rule(
            ec2.Peer.prefix_list(lookup.get_response_field("PrefixLists.0.PrefixListId")),
            ec2.Port.tcp(443),
            "HTTPS to DynamoDB (gateway endpoint): the agents' heartbeats",
        )
