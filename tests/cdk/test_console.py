"""Web console: private bucket behind CloudFront (OAC, HTTPS only, security headers), aipm/web + config.json
deployed by BucketDeployment, and the CORS origin rule of the API."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.console import Console
from cdk.aipm_cdk.stack import cors_origins
from tests.cdk.builders import bare_stack, resources
from tests.cdk.conftest import Synthesized

API_URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"
AUTH = {
    "domain": "https://aipm-prod-123456789012.auth.eu-west-1.amazoncognito.com",
    "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
    "clientId": "client123",
}


@functools.cache
def console_template() -> tuple[Template, Path, dict[str, str]]:
    """The Console construct, published with a literal API URL, in a bare stack (no cdk-nag)."""
    stack = bare_stack()
    console = Console(stack, "Console", config=AipmConfig())
    console.publish(API_URL, auth=AUTH)
    app = stack.node.root
    assert isinstance(app, App)
    assembly = app.synth()
    ids = {
        "site": stack.resolve(console.bucket.bucket_name)["Ref"],
        "logs": stack.resolve(console.log_bucket.bucket_name)["Ref"],
        "distribution": stack.resolve(console.distribution.distribution_id)["Ref"],
        "headers": stack.resolve(console.headers.response_headers_policy_id)["Ref"],
    }
    return Template.from_stack(stack), Path(assembly.directory), ids


def distribution_config(template: Template) -> dict[str, Any]:
    found = resources(template, "AWS::CloudFront::Distribution")
    assert len(found) == 1
    return dict(next(iter(found.values()))["Properties"]["DistributionConfig"])


def bucket_policy(template: Template, bucket: str) -> list[dict[str, Any]]:
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": bucket}:
            return list(policy["Properties"]["PolicyDocument"]["Statement"])
    raise AssertionError(f"no policy on {bucket}")


def test_buckets_are_private_encrypted_and_tls_only() -> None:
    template, _, ids = console_template()
    buckets = resources(template, "AWS::S3::Bucket")
    assert set(buckets) == {ids["site"], ids["logs"]}
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert "WebsiteConfiguration" not in props
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        denies = [
            s
            for s in bucket_policy(template, logical_id)
            if s["Effect"] == "Deny" and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert denies, logical_id
    site = buckets[ids["site"]]["Properties"]
    assert site["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": ids["logs"]}
    assert site["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_only_cloudfront_through_oac_reads_the_site_bucket() -> None:
    template, _, ids = console_template()
    template.has_resource_properties(
        "AWS::CloudFront::OriginAccessControl",
        {"OriginAccessControlConfig": {"OriginAccessControlOriginType": "s3", "SigningBehavior": "always"}},
    )
    template.resource_count_is("AWS::CloudFront::CloudFrontOriginAccessIdentity", 0)
    (origin,) = distribution_config(template)["Origins"]
    assert "OriginAccessControlId" in origin
    assert origin["S3OriginConfig"].get("OriginAccessIdentity", "") == ""
    allows = [s for s in bucket_policy(template, ids["site"]) if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    assert ids["distribution"] in json.dumps(allow["Condition"]["StringEquals"]["AWS:SourceArn"])


def test_distribution_is_https_only_with_security_headers_and_index_html() -> None:
    template, _, ids = console_template()
    config = distribution_config(template)
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] in ("redirect-to-https", "https-only")
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert behavior["ResponseHeadersPolicyId"] == {"Ref": ids["headers"]}
    assert config["DefaultRootObject"] == "index.html"
    assert config["Logging"]["Bucket"] == {"Fn::GetAtt": [ids["logs"], "RegionalDomainName"]}
    headers = resources(template, "AWS::CloudFront::ResponseHeadersPolicy")[ids["headers"]]
    security = headers["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 365 * 24 * 3600
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert "ContentTypeOptions" in security
    csp = json.dumps(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    for directive in (
        "script-src 'self'",
        "frame-ancestors 'none'",
        "connect-src 'self' https://*.execute-api.",
    ):
        assert directive in csp, directive


def test_deployment_uploads_the_web_files_and_config_json() -> None:
    template, outdir, ids = console_template()
    (deployment,) = resources(template, "Custom::CDKBucketDeployment").values()
    props = deployment["Properties"]
    assert props["DestinationBucketName"] == {"Ref": ids["site"]}
    assert props["Prune"] is True and props["RetainOnDelete"] is False
    assert props["SystemMetadata"] == {"cache-control": "no-cache"}
    assert len(props["SourceObjectKeys"]) == 3
    staged = [outdir / f"asset.{key.removesuffix('.zip')}" for key in props["SourceObjectKeys"]]
    files = {p.name: p for directory in staged for p in directory.iterdir()}
    assert {"index.html", "app.js", "styles.css", "terminal.html", "terminal.js", c.CONSOLE_CONFIG} <= set(
        files
    )
    assert files[c.CONSOLE_README].read_text() == c.README.read_text()  # the footer's link
    assert not any(name.startswith(".") for name in files)  # no make marker (vendor/.xterm-<version>)
    assert json.loads(files[c.CONSOLE_CONFIG].read_text()) == {"apiUrl": API_URL, "auth": AUTH}
    assert not any(name.endswith(".py") for name in files)


def test_only_the_terminal_page_allows_inline_styles_and_loopback_websockets() -> None:
    """xterm.js sets inline styles (xtermjs/xterm.js#4445); its WebSocket is the agent's attach port forwarded
    to loopback by `aipm ops tunnel`. Every other path keeps the console's policy."""
    template, _, ids = console_template()
    config = distribution_config(template)
    (terminal,) = config["CacheBehaviors"]
    assert terminal["PathPattern"] == c.CONSOLE_TERMINAL_PATH
    assert terminal["ViewerProtocolPolicy"] == config["DefaultCacheBehavior"]["ViewerProtocolPolicy"]
    assert terminal["AllowedMethods"] == ["GET", "HEAD"]
    policies = resources(template, "AWS::CloudFront::ResponseHeadersPolicy")
    policy_id = terminal["ResponseHeadersPolicyId"]["Ref"]
    assert policy_id != ids["headers"]

    def csp(logical_id: str) -> str:
        security = policies[logical_id]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
        assert security["FrameOptions"]["FrameOption"] == "DENY"
        return json.dumps(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])

    assert "style-src 'self' 'unsafe-inline';" in csp(policy_id)
    assert "connect-src 'self' ws://127.0.0.1:* ws://localhost:*;" in csp(policy_id)
    assert "script-src 'self';" in csp(policy_id)
    assert "style-src 'self';" in csp(ids["headers"]) and "ws:" not in csp(ids["headers"])


def test_the_agent_accepts_the_consoles_origin_and_owners_for_attach(full_stack: Synthesized) -> None:
    hosts = {
        name: json.dumps(r["Properties"])
        for name, r in full_stack.json["Resources"].items()
        if r["Type"] in ("AWS::EC2::Instance", "AWS::EC2::LaunchTemplate")
    }
    (user_data,) = [u for u in hosts.values() if "AIPM_ATTACH_PORT" in u]
    assert "AIPM_CONSOLE_ORIGIN" in user_data and "AIPM_ALLOWED_OWNERS" in user_data
    distribution = next(
        name
        for name, r in full_stack.json["Resources"].items()
        if r["Type"] == "AWS::CloudFront::Distribution"
    )
    assert f'"Fn::GetAtt": ["{distribution}", "DomainName"]' in user_data  # https://<its domain>


def test_full_stack_config_json_points_at_the_stacks_api(full_stack: Synthesized) -> None:
    (deployment,) = resources(full_stack.template, "Custom::CDKBucketDeployment").values()
    markers = deployment["Properties"]["SourceMarkers"]
    values = {marker: value for m in markers for marker, value in m.items()}
    config_assets = [
        full_stack.outdir / f"asset.{key.removesuffix('.zip')}" / c.CONSOLE_CONFIG
        for key in deployment["Properties"]["SourceObjectKeys"]
    ]
    (config,) = [p for p in config_assets if p.exists()]
    text = config.read_text()
    for marker in values:  # markers stand unquoted where the deploy-time strings go
        text = text.replace(marker, json.dumps(marker))
    config = json.loads(text)

    def value(text: str) -> str:
        """The deploy-time value (a CloudFormation expression) behind the markers in `text`."""
        return json.dumps([values[m] for m in values if m in text])

    # Each deploy-time value: the API's URL and the sign-in domain, issuer and app client.
    assert "ApiRestApi" in value(config["apiUrl"]) and ".execute-api." in value(config["apiUrl"])
    assert set(config["auth"]) == {"domain", "issuer", "clientId"}
    assert "SignIn" in value(config["auth"]["domain"])
    assert "cognito-idp" in value(config["auth"]["issuer"])
    assert "ApiUsersFrontend" in value(config["auth"]["clientId"])


def allowed_origin(stack: Synthesized) -> tuple[Any, Any, Any]:
    """ALLOWED_ORIGINS of the API Lambda, the preflight's and a gateway response's Allow-Origin."""
    functions = resources(stack.template, "AWS::Lambda::Function").values()
    env = next(
        f["Properties"]["Environment"]["Variables"]
        for f in functions
        if f["Properties"].get("Handler") == c.API_HANDLER
    )
    preflight = next(
        m["Properties"]["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        for m in resources(stack.template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    )
    gateway = next(iter(resources(stack.template, "AWS::ApiGateway::GatewayResponse").values()))
    return (
        env["ALLOWED_ORIGINS"],
        preflight["method.response.header.Access-Control-Allow-Origin"],
        gateway["Properties"]["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"],
    )


def test_cors_origin_is_the_consoles_cloudfront_origin_by_default(full_stack: Synthesized) -> None:
    lambda_origin, preflight, gateway = allowed_origin(full_stack)
    (distribution,) = resources(full_stack.template, "AWS::CloudFront::Distribution")
    domain = {"Fn::GetAtt": [distribution, "DomainName"]}
    assert lambda_origin == {"Fn::Join": ["", ["https://", domain]]}
    assert preflight == gateway == {"Fn::Join": ["", ["'https://", domain, "'"]]}
    console_url = full_stack.json["Outputs"][c.OUT_CONSOLE_URL]["Value"]
    assert console_url == {"Fn::Join": ["", ["https://", domain, "/"]]}


def test_cors_origins_rule() -> None:
    """The console's origin and every frontendOrigins entry; the fallback only when there is none."""
    stack = bare_stack()
    console = Console(stack, "Console", config=AipmConfig())
    explicit = AipmConfig(frontend_origins=("https://aipm.example.com", "http://localhost:3000"))
    assert cors_origins(explicit, console) == [
        console.origin,
        "https://aipm.example.com",
        "http://localhost:3000",
    ]
    assert cors_origins(explicit, None) == ["https://aipm.example.com", "http://localhost:3000"]
    assert cors_origins(AipmConfig(), console) == [console.origin]
    assert "DomainName" in json.dumps(stack.resolve(console.origin))
    assert cors_origins(AipmConfig(), None) == [c.FALLBACK_ORIGIN]
