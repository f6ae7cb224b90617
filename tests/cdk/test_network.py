"""Network: no world-open ingress, agent ports only from the dispatcher, endpoints, flow logs, VPC choice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import Environment, Stack
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig, ConfigError
from cdk.aipm_cdk.network import Network
from tests.cdk.builders import bare_stack, resources

WORLD = {"0.0.0.0/0", "::/0"}
ENV = Environment(account="123456789012", region="eu-west-1")
VPC_ID = "vpc-0123456789abcdef0"
# What `cdk deploy` would cache in cdk.context.json for `-c vpcId=...` (the lookup needs credentials).
LOOKUP_KEY = (
    f"vpc-provider:account=123456789012:filter.vpc-id={VPC_ID}:region=eu-west-1:returnAsymmetricSubnets=true"
)
VPC_LOOKUP = {
    LOOKUP_KEY: {
        "vpcId": VPC_ID,
        "vpcCidrBlock": "10.20.0.0/16",
        "availabilityZones": [],
        "subnetGroups": [
            {
                "name": name,
                "type": kind,
                "subnets": [
                    {
                        "subnetId": f"subnet-0{kind.lower()[:3]}{az}0000000000",
                        "cidr": f"10.20.{offset + i}.0/24",
                        "availabilityZone": f"eu-west-1{az}",
                        "routeTableId": f"rtb-0{kind.lower()[:3]}{az}0000000000",
                    }
                    for i, az in enumerate("ab")
                ],
            }
            for name, kind, offset in (("Public", "Public", 0), ("Private", "Private", 10))
        ],
    }
}


def network_template(config: AipmConfig | None = None) -> tuple[Network, Template]:
    stack = bare_stack(env=ENV, **VPC_LOOKUP) if config and config.vpc_id else bare_stack()
    network = Network(stack, "Network", config=config or AipmConfig())
    return network, Template.from_stack(stack)


def ingress_rules(template: Template) -> list[dict[str, Any]]:
    """Every ingress rule: inline in security groups and standalone SecurityGroupIngress resources."""
    rules = [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()]
    for group in resources(template, "AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupIngress", [])
    return rules


def logical_id(network: Network, construct: Any) -> str:
    return str(Stack.of(network).resolve(construct.security_group_id)["Fn::GetAtt"][0])


def test_no_ingress_from_the_world() -> None:
    _, template = network_template()
    for rule in ingress_rules(template):
        assert rule.get("CidrIp") not in WORLD and rule.get("CidrIpv6") not in WORLD, rule


def test_agent_ports_only_from_the_dispatcher() -> None:
    network, template = network_template()
    agent_sg, dispatcher_sg = (
        logical_id(network, network.agent_sg),
        logical_id(network, network.dispatcher_sg),
    )
    agent_ingress = [
        r for r in ingress_rules(template) if r["GroupId"] == {"Fn::GetAtt": [agent_sg, "GroupId"]}
    ]
    assert sorted(r["FromPort"] for r in agent_ingress) == sorted(c.DISPATCH_PORTS)
    for rule in agent_ingress:
        assert rule["FromPort"] == rule["ToPort"]
        assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [dispatcher_sg, "GroupId"]}
        assert "CidrIp" not in rule
    assert c.ATTACH_PORT not in [r["FromPort"] for r in agent_ingress]  # SSM port forwarding only


def test_dispatcher_egress_is_limited_to_agent_ports_and_endpoints() -> None:
    network, template = network_template()
    dispatcher_sg = logical_id(network, network.dispatcher_sg)
    egress = [
        r["Properties"]
        for r in resources(template, "AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [dispatcher_sg, "GroupId"]}
    ]
    assert sorted(r["FromPort"] for r in egress) == sorted([*c.DISPATCH_PORTS, 443, 443])
    to_groups = [r for r in egress if "DestinationSecurityGroupId" in r]
    to_prefix_lists = [r for r in egress if "DestinationPrefixListId" in r]
    assert len(to_groups) == 3 and len(to_prefix_lists) == 1
    assert not any("CidrIp" in r or "CidrIpv6" in r for r in egress)
    # DynamoDB (the heartbeats) through its gateway endpoint: the region's prefix list, looked up at deploy.
    (dynamodb,) = to_prefix_lists
    assert dynamodb["ToPort"] == 443
    lookup_id, attribute = dynamodb["DestinationPrefixListId"]["Fn::GetAtt"]
    assert attribute == "PrefixLists.0.PrefixListId"
    lookup = template.to_json()["Resources"][lookup_id]
    assert lookup["Type"] == "Custom::AWS"
    call = json.dumps(lookup["Properties"]["Create"])
    assert "describeManagedPrefixLists" in call and ".dynamodb" in call


def test_agent_egress_is_https_only() -> None:
    network, template = network_template()
    agent = template.to_json()["Resources"][logical_id(network, network.agent_sg)]["Properties"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in agent["SecurityGroupEgress"]] == [
        ("tcp", 443, 443)
    ]


def interface_endpoints(template: Any) -> dict[str, dict[str, Any]]:
    """Service name (the part after the region) → properties of each interface endpoint."""
    found = {}
    for endpoint in resources(template, "AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        if props.get("VpcEndpointType") == "Interface":
            found[json.dumps(props["ServiceName"]).split(".")[-1].strip('"]}')] = props
    return found


def test_new_vpc_without_nat_gets_only_the_endpoints_the_dispatcher_needs_in_one_az() -> None:
    """Default network: the dispatcher (isolated subnets) needs SSM and Secrets Manager; the host reaches
    the rest over its own egress. One AZ by default (issue 12: five endpoints in two AZs cost more than the
    instance)."""
    _, template = network_template()
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::Subnet", 4)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    endpoints = [r["Properties"] for r in resources(template, "AWS::EC2::VPCEndpoint").values()]
    assert len([e for e in endpoints if e.get("VpcEndpointType") == "Gateway"]) == 2
    interface = interface_endpoints(template)
    assert sorted(interface) == ["secretsmanager", "ssm"]
    assert all(e["PrivateDnsEnabled"] and len(e["SubnetIds"]) == 1 for e in interface.values())


@pytest.mark.parametrize(
    ("config", "expected", "azs"),
    [
        (AipmConfig(vpc_endpoints="all"), ["ec2messages", "logs", "secretsmanager", "ssm", "ssmmessages"], 1),
        (
            AipmConfig(vpc_endpoints="all", endpoint_azs=2),
            ["ec2messages", "logs", "secretsmanager", "ssm", "ssmmessages"],
            2,
        ),
        (AipmConfig(nat_gateways=1, agent_subnet="private"), [], 0),
    ],
)
def test_endpoints_follow_the_configuration(config: AipmConfig, expected: list[str], azs: int) -> None:
    _, template = network_template(config)
    interface = interface_endpoints(template)
    assert sorted(interface) == expected
    assert all(len(e["SubnetIds"]) == azs for e in interface.values())


def test_no_endpoints_without_nat_is_refused() -> None:
    with pytest.raises(ConfigError, match="vpcEndpoints=none needs natGateways"):
        AipmConfig(vpc_endpoints="none")


def test_nat_gateway_and_no_endpoints_when_asked() -> None:
    network, template = network_template(
        AipmConfig(nat_gateways=1, vpc_endpoints="none", agent_subnet="private")
    )
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.resource_count_is("AWS::EC2::VPCEndpoint", 0)
    dispatcher = template.to_json()["Resources"][logical_id(network, network.dispatcher_sg)]["Properties"]
    assert [(r["CidrIp"], r["FromPort"]) for r in dispatcher["SecurityGroupEgress"]] == [("0.0.0.0/0", 443)]


def test_existing_vpc_by_id_is_looked_up_not_created() -> None:
    network, template = network_template(AipmConfig(vpc_id=VPC_ID))
    template.resource_count_is("AWS::EC2::VPC", 0)
    template.resource_count_is("AWS::EC2::FlowLog", 0)  # the VPC's owner manages its flow logs
    template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": VPC_ID})
    assert network.vpc.vpc_id == VPC_ID
