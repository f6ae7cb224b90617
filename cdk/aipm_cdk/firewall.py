"""The API's AWS WAF web ACL (REGIONAL) on the REST API's stage, and its logging to CloudWatch Logs.

Sources (AWS WAF Developer Guide unless named otherwise):
- "Baseline rule groups" (aws-managed-rule-groups-baseline.html): `AWSManagedRulesCommonRuleSet`, whose
  `SizeRestrictions_BODY` matches any body over 8 KB (8,192 bytes; the threshold is fixed) and labels it
  `awswaf:managed:aws:core-rule-set:SizeRestrictions_Body`, and `AWSManagedRulesKnownBadInputsRuleSet`;
  "IP reputation rule groups" (aws-managed-rule-groups-ip-rep.html): `AWSManagedRulesAmazonIpReputationList`.
- "Managing body inspection size limits" (web-acl-setting-body-inspection-limit.html) and the CloudFormation
  reference of `AWS::WAFv2::WebACL RequestBodyAssociatedResourceTypeConfig`: API Gateway forwards the first
  16 KB of a body by default, up to 64 KB (`KB_64`) when the web ACL's `AssociationConfig` says so; a body
  over the limit gets the statement's `OversizeHandling` (`MATCH`: the statement matches).
- "Rate-based rule high-level settings" (waf-rule-statement-type-rate-based-high-level-settings.html): the
  limit counts requests per aggregation key (here the source IP) over the evaluation window (300 s by
  default); the lowest limit allowed is 10.
- CloudFormation `AWS::WAFv2::WebACLAssociation`: an API Gateway REST API stage is named by
  `arn:<partition>:apigateway:<region>::/restapis/<api-id>/stages/<stage-name>`.
- CloudFormation `AWS::WAFv2::LoggingConfiguration` / WAF API `LoggingConfiguration`: one destination per web
  ACL, whose name must start with `aws-waf-logs-`; for a log group WAF adds the log group's resource policy
  itself when logging is turned on; `RedactedFields` keeps header values out of the log records.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from cdk.aipm_cdk import constants as c
from cdk.aipm_cdk.config import AipmConfig

# Body rules of the managed rule groups that match ordinary coding-task and review text (HTML, <script>,
# URLs, ../ paths, the metadata address, ${jndi:…}): they count instead of block. Task text is data to the
# API, quoted in TASK.md and the PR. SizeRestrictions_BODY counts too: its fixed 8 KB is below what the API
# accepts (BODY_LIMIT_BYTES) and far below GitHub's deliveries; BodyOverApiLimit takes its place.
COMMON_BODY_RULES = (
    "SizeRestrictions_BODY",
    "CrossSiteScripting_BODY",
    "GenericRFI_BODY",
    "GenericLFI_BODY",
    "EC2MetaDataSSRF_BODY",
)
KNOWN_BAD_INPUTS_BODY_RULES = ("JavaDeserializationRCE_BODY", "Log4JRCE_BODY")
# The managed rule groups in evaluation order, each with the rules that count instead of block.
MANAGED_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AWSManagedRulesAmazonIpReputationList", ()),
    ("AWSManagedRulesCommonRuleSet", COMMON_BODY_RULES),
    ("AWSManagedRulesKnownBadInputsRuleSet", KNOWN_BAD_INPUTS_BODY_RULES),
)
# The largest body the API Lambda accepts on every route but the webhook (lambda_src/handler.py
# MAX_BODY_BYTES); larger ones are refused at the edge. API Gateway forwards this much to WAF (KB_64).
BODY_LIMIT_BYTES = 64 * 1024
BODY_INSPECTION_LIMIT = "KB_64"
# Headers whose values never reach the WAF log: the Cognito ID token, and GitHub's HMAC of the delivery.
REDACTED_HEADERS = ("authorization", "x-hub-signature-256")
LOG_GROUP_PREFIX = "aws-waf-logs-"
NO_WAF_REASON = (
    "WAF turned off by the operator (context apiWaf=false), for accounts where an organisation-wide WAF "
    "policy (Firewall Manager) attaches its own web ACL; every route but health, the OpenAPI document and "
    "the signature-checked GitHub webhook still needs a Cognito token, and the stage is throttled."
)


def webhook_paths(stage_name: str) -> tuple[str, ...]:
    """The URI paths a GitHub delivery can arrive on, as WAF sees them: `/<stage>/api/github/webhook` on the
    execute-api endpoint, `/api/github/webhook` through a custom domain mapped at its root."""
    path = "/" + "/".join((c.API_PREFIX, *c.WEBHOOK_PATH))
    return (f"/{stage_name}{path}", path)


class ApiFirewall(Construct):
    """Web ACL on the API stage: IP reputation, the common and known-bad-inputs rule groups (body rules
    counting), bodies over the API's 64 KB refused except on the GitHub webhook, a per-IP rate limit
    (`wafRateLimitPer5Min`), and logging to `aws-waf-logs-aipm-<stage>` with the secret headers redacted."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AipmConfig, stage: apigw.Stage
    ) -> None:
        super().__init__(scope, construct_id)
        self.webhook_paths = webhook_paths(config.stage)
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            # WAF allows letters, digits, spaces and = : # @ / - , . + in a description.
            description=f"AIPM API {config.stage}: managed rules, body limit outside the GitHub webhook, "
            "rate limit per IP",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{c.PROJECT}-{config.stage}-api"),
            association_config=wafv2.CfnWebACL.AssociationConfigProperty(
                request_body={
                    "API_GATEWAY": wafv2.CfnWebACL.RequestBodyAssociatedResourceTypeConfigProperty(
                        default_size_inspection_limit=BODY_INSPECTION_LIMIT
                    )
                }
            ),
            rules=[
                *(_managed(i, name, counted) for i, (name, counted) in enumerate(MANAGED_GROUPS)),
                self._body_limit(len(MANAGED_GROUPS)),
                _rate_limit(len(MANAGED_GROUPS) + 1, config.waf_rate_limit_per_5_min),
            ],
        )
        self.association = wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn
        )
        self._logging(config)

    def _body_limit(self, priority: int) -> wafv2.CfnWebACL.RuleProperty:
        """Block a body over BODY_LIMIT_BYTES unless the path is the GitHub webhook's: GitHub's deliveries
        run to 25 MB (API Gateway takes up to 10 MB; the Lambda reads up to 1 MB and answers 413 above)."""
        webhook = [
            wafv2.CfnWebACL.StatementProperty(
                byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                    field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                    positional_constraint="EXACTLY",
                    search_string=path,
                    text_transformations=[
                        wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                    ],
                )
            )
            for path in self.webhook_paths
        ]
        return wafv2.CfnWebACL.RuleProperty(
            name="BodyOverApiLimit",
            priority=priority,
            action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                and_statement=wafv2.CfnWebACL.AndStatementProperty(
                    statements=[
                        wafv2.CfnWebACL.StatementProperty(
                            size_constraint_statement=wafv2.CfnWebACL.SizeConstraintStatementProperty(
                                field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                                    body=wafv2.CfnWebACL.BodyProperty(oversize_handling="MATCH")
                                ),
                                comparison_operator="GT",
                                size=BODY_LIMIT_BYTES,
                                text_transformations=[
                                    wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                                ],
                            )
                        ),
                        wafv2.CfnWebACL.StatementProperty(
                            not_statement=wafv2.CfnWebACL.NotStatementProperty(
                                statement=wafv2.CfnWebACL.StatementProperty(
                                    or_statement=wafv2.CfnWebACL.OrStatementProperty(statements=webhook)
                                )
                            )
                        ),
                    ]
                )
            ),
            visibility_config=_visibility("BodyOverApiLimit"),
        )

    def _logging(self, config: AipmConfig) -> None:
        name = f"{LOG_GROUP_PREFIX}{c.PROJECT}-{config.stage}"
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=name,
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The log group's ARN without the trailing `:*` that LogGroup.log_group_arn carries.
        destination = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name=name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.logging = wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[destination],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(
                    single_header={"Name": header}  # a JSON property: CDK passes it through as written
                )
                for header in REDACTED_HEADERS
            ],
        )
        self.logging.node.add_dependency(self.log_group)


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def _managed(priority: int, name: str, count_rules: tuple[str, ...]) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=name,
                rule_action_overrides=[
                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                    )
                    for rule in count_rules
                ]
                or None,
            )
        ),
        visibility_config=_visibility(name),
    )


def _rate_limit(priority: int, limit: int) -> wafv2.CfnWebACL.RuleProperty:
    """Block a source IP past `limit` requests in the last 5 minutes (GitHub's deliveries included: they
    come from GitHub's few hook addresses, so a busy organisation may need a higher limit)."""
    return wafv2.CfnWebACL.RuleProperty(
        name="RateLimitPerIp",
        priority=priority,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                limit=limit, aggregate_key_type="IP", evaluation_window_sec=c.WAF_RATE_WINDOW_S
            )
        ),
        visibility_config=_visibility("RateLimitPerIp"),
    )
