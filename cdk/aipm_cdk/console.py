"""The web console (aipm/web/): a private S3 bucket behind CloudFront (origin access control, HTTPS only).

`Console` creates the buckets and the distribution first, so the API can take the console's origin for CORS;
`publish` then uploads the static files and a generated `config.json` (`{"apiUrl": <the API URL>}`).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig
from cdk.aipm_cdk.nag import acknowledge, asset_bucket_objects, logical_id


class Console(Construct):
    """Site bucket (private, SSE-S3, TLS only), access-log bucket, CloudFront distribution with OAC."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AipmConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # CloudFront standard logs need ACLs enabled (CloudFront grants its log-delivery account access).
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(config.log_retention_days))],
            # Access logs outlive the stack (an audit trail); the bucket is emptied and deleted by hand.
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.log_bucket,
            "S1",
            "This is the access-log bucket of the console (S3 server access logs of the site bucket and "
            "CloudFront standard logs); logging it into itself would loop and another bucket would only "
            "move the finding.",
        )
        self.bucket = s3.Bucket(
            self,
            "Site",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3/",
            # Only generated files: the deployment below empties it when the stack is deleted.
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.headers = self._headers_policy(
            "SecurityHeaders",
            f"AIPM console ({config.stage}): HSTS, CSP, nosniff, no framing, no referrer",
            c.CONSOLE_CSP,
        )
        # The attach terminal's page: xterm.js sets inline styles (xtermjs/xterm.js#4445), and it talks to the
        # agent's attach port forwarded to loopback by `aipm ops tunnel` — on this one path only.
        self.terminal_headers = self._headers_policy(
            "TerminalSecurityHeaders",
            f"AIPM console ({config.stage}) attach terminal: as the console, inline styles and loopback ws",
            c.CONSOLE_TERMINAL_CSP,
        )
        site_origin = origins.S3BucketOrigin.with_origin_access_control(
            self.bucket, origin_access_levels=[cloudfront.AccessLevel.READ]
        )
        cache_policy = self._cache_policy()

        def behavior(headers: cloudfront.IResponseHeadersPolicy) -> cloudfront.BehaviorOptions:
            return cloudfront.BehaviorOptions(
                origin=site_origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                cache_policy=cache_policy,
                response_headers_policy=headers,
                compress=True,
            )

        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"AIPM web console ({config.stage})",
            default_root_object=c.CONSOLE_INDEX,
            default_behavior=behavior(self.headers),
            additional_behaviors={c.CONSOLE_TERMINAL_PATH: behavior(self.terminal_headers)},
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
        )
        acknowledge(
            self.distribution,
            "CFR4",
            "The console uses the default *.cloudfront.net certificate, for which CloudFront fixes the "
            "security policy itself (MinimumProtocolVersion can only be set with a custom ACM certificate); "
            "viewers are redirected to HTTPS and modern browsers negotiate TLS 1.2 or 1.3.",
        )
        acknowledge(
            self.distribution,
            "CFR1",
            "No geo restriction: the console is a few static files with no data (every API call needs a "
            "Cognito token), used from wherever the organisation's people work.",
        )
        acknowledge(
            self.distribution,
            "CFR2",
            "No WAF on the static console: it serves three public files and a config.json holding only "
            "the API URL; a CloudFront web ACL must live in us-east-1 (this stack is regional); the API it "
            "calls has its own regional web ACL, Cognito and throttling.",
        )
        self.origin = f"https://{self.distribution.distribution_domain_name}"
        self.url = f"{self.origin}/"

    def _headers_policy(self, construct_id: str, comment: str, csp: str) -> cloudfront.ResponseHeadersPolicy:
        """HSTS, the CSP `csp`, nosniff, no framing, no referrer, Permissions-Policy, COOP."""
        stack = Stack.of(self)
        return cloudfront.ResponseHeadersPolicy(
            self,
            construct_id,
            comment=comment,
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(c.CONSOLE_HSTS_DAYS),
                    include_subdomains=True,
                    override=True,
                ),
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=csp.format(region=stack.region, url_suffix=stack.url_suffix),
                    override=True,
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
                xss_protection=cloudfront.ResponseHeadersXSSProtection(protection=False, override=True),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(
                        header="Permissions-Policy", value=c.CONSOLE_PERMISSIONS_POLICY, override=True
                    ),
                    cloudfront.ResponseCustomHeader(
                        header="Cross-Origin-Opener-Policy", value="same-origin", override=True
                    ),
                ]
            ),
        )

    def _cache_policy(self) -> cloudfront.CachePolicy:
        """Compressed, keyed on the path only; min TTL 0, so the objects' `no-cache` makes CloudFront
        revalidate with S3 (a deploy shows at once, no invalidation needed)."""
        return cloudfront.CachePolicy(
            self,
            "CachePolicy",
            comment="AIPM console: path-only key, gzip/brotli, honours Cache-Control no-cache",
            min_ttl=Duration.seconds(0),
            default_ttl=Duration.minutes(5),
            max_ttl=Duration.days(1),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            header_behavior=cloudfront.CacheHeaderBehavior.none(),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.none(),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )

    def publish(self, api_url: str, *, auth: Mapping[str, str]) -> s3deploy.BucketDeployment:
        """Upload aipm/web/ and config.json (`{"apiUrl": api_url, "auth": {"domain", "issuer", "clientId"}}`:
        the API and the Cognito managed login the console signs in with)."""
        deployment = s3deploy.BucketDeployment(
            self,
            "Deployment",
            sources=[
                s3deploy.Source.asset(str(c.WEB_DIR), exclude=list(c.CONSOLE_EXCLUDE)),
                s3deploy.Source.json_data(c.CONSOLE_CONFIG, {"apiUrl": api_url, "auth": dict(auth)}),
                # The footer's README link, as .txt so that S3 serves it as text/plain (a browser shows it).
                s3deploy.Source.data(c.CONSOLE_README, c.README.read_text(encoding="utf-8")),
            ],
            destination_bucket=self.bucket,
            # Unversioned file names: browsers and CloudFront revalidate (ETag) on every request, so a deploy
            # is visible at once without an invalidation (and without cloudfront:* on "*" for the handler).
            cache_control=[s3deploy.CacheControl.no_cache()],
            prune=True,
            retain_on_delete=False,
            memory_limit=256,
            log_group=logs.LogGroup(
                self,
                "DeploymentLogs",
                retention=self.config.log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            ),
        )
        self._acknowledge_deployment(deployment)
        return deployment

    def _acknowledge_deployment(self, deployment: s3deploy.BucketDeployment) -> None:
        """cdk-nag findings on the handler CDK's BucketDeployment generates (a singleton Lambda and its role,
        outside this construct's subtree): acknowledged on exactly those two resources."""
        role = deployment.handler_role
        handler = role.node.scope
        assert handler is not None
        acknowledge(
            handler,
            "L1",
            "The runtime of CDK's BucketDeployment upload handler is chosen by aws-cdk-lib together with the "
            "AWS CLI layer it bundles; it is not configurable and moves with aws-cdk-lib upgrades.",
        )
        acknowledge(
            role,
            "IAM4",
            "AWSLambdaBasicExecutionRole on the role CDK's BucketDeployment generates for its upload "
            "handler: the AWS-maintained log-writing policy, not configurable on that construct.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        )
        grant = "CDK's BucketDeployment grant to its upload handler"
        for finding, reason in (
            (
                "Action::s3:GetBucket*",
                f"{grant}: read-only bucket metadata of the CDK asset bucket and of the site bucket only.",
            ),
            (
                "Action::s3:GetObject*",
                f"{grant}: read the console's source zip in the CDK asset bucket and objects of the site "
                "bucket only.",
            ),
            (
                "Action::s3:List*",
                f"{grant}: list the CDK asset bucket and the site bucket (to prune files no longer in "
                "aipm/web/).",
            ),
            (
                "Action::s3:DeleteObject*",
                f"{grant}: prune stale files, and empty the site bucket on stack deletion; this site "
                "bucket only.",
            ),
            (
                "Action::s3:Abort*",
                f"{grant}: abort its own failed multipart uploads into this site bucket only.",
            ),
            (
                f"Resource::<{logical_id(self.bucket)}.Arn>/*",
                f"{grant}: the objects of this one site bucket, whose keys are the console's file names.",
            ),
            (
                asset_bucket_objects(self),
                f"{grant}: objects of the CDK bootstrap asset bucket of this account/region; the source "
                "zip's key is content-addressed, known only when the asset is published.",
            ),
        ):
            acknowledge(role, "IAM5", reason, finding)
