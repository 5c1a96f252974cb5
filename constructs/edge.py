"""The edge: internet-facing ALB, WAF, access logs and the listener rules of the design brief.

Routing (HTTPS listener; port 80 only redirects to HTTPS):

    GET /oauth2/client-metadata/*.json -> binder, no ALB auth (that pattern and method only)
    /oauth2/*                          -> binder, behind authenticate-cognito
    /  and  /app/*                     -> agent,  behind authenticate-cognito
    /api/*                             -> agent,  no ALB auth (callers send a bearer token)
    anything else                      -> fixed 404

The client metadata documents are the binder's OAuth client identities at MCP authorization
servers, one per mcp provider at `/oauth2/client-metadata/{name}.json` (that URL is the
provider's `client_id`; one shared document would let one server's client be used at another's,
a mix-up). An authorization server fetches its document without a session, so these are the
only `/oauth2/` requests without sign-in. An ALB path pattern cannot spell the provider name
grammar and its `*` also matches `/`, so the rule is as narrow as a pattern gets (case-sensitive
prefix, `.json` suffix), GET only (HEAD, POST and the rest fall to the signed-in rule), and
first by priority; the binder answers there only `{name}.json` of its own mcp providers, static
JSON, and 404 to anything else under the prefix. WAF covers it like every other rule.

`/internal/*` has no rule, so it falls to the 404 default; the binder also serves its internal
API on a separate port that only the agent's security group can reach, so no ALB rule could
expose it by mistake.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_wafv2 as wafv2

from constructs import Construct
from constructs.hardened_service import HardenedFargateService
from constructs.nag import acknowledge
from constructs.user_directory import UserDirectory

# Paths whose first request signs the browser in through Cognito.
BROWSER_AGENT_PATHS = ("/", "/app/*")
BINDER_PATHS = ("/oauth2/*",)
# The binder's Client ID Metadata Documents, one per mcp provider at `{prefix}{name}.json`
# (binder.providers.mcp.CLIENT_METADATA_PREFIX; a test keeps the two equal): served without
# sign-in, to GET only.
CLIENT_METADATA_PREFIX = "/oauth2/client-metadata/"
CLIENT_METADATA_PATTERN = CLIENT_METADATA_PREFIX + "*.json"
CLIENT_METADATA_METHODS = ("GET",)
API_PATHS = ("/api/*",)

# Security headers on every HTTPS response, the ALB's own included (its fixed 404, the
# authenticate-cognito redirects, its 5xx pages): the values both services send
# (services/common/svc_common/middleware.py, SecurityHeaders). The ALB sets these headers on
# forwarded responses too, so they must stay equal to the services' values.
# Not here, on purpose:
# - Content-Security-Policy: the agent and the binder send different page policies (the chat
#   page loads its own script; binder pages have an inline style block), and the ALB would put
#   one value on both. The ALB's own responses are a plain-text 404 (with nosniff) and bodiless
#   redirects; X-Frame-Options covers framing for all of them.
# - Referrer-Policy and Cache-Control: the ALB has no attribute for them.
HTTPS_RESPONSE_HEADERS = {
    "routing.http.response.strict_transport_security.header_value": (
        "max-age=31536000; includeSubDomains"
    ),
    "routing.http.response.x_content_type_options.header_value": "nosniff",
    "routing.http.response.x_frame_options.header_value": "DENY",
    # No "Server: awselb/2.0" banner.
    "routing.http.response.server.enabled": "false",
}
# Port 80 only redirects. Browsers ignore HSTS received over plain HTTP (RFC 6797, 8.1), so the
# redirect carries the rest.
HTTP_RESPONSE_HEADERS = {
    key: value for key, value in HTTPS_RESPONSE_HEADERS.items() if "strict_transport" not in key
}


class Edge(Construct):
    """ALB + WAF + rules.

    Props:
    - vpc: the VPC whose public subnets hold the ALB (required).
    - certificate: ACM certificate for the HTTPS listener (required).
    - directory: the `UserDirectory` for authenticate-cognito (required).
    - agent / binder: the two `HardenedFargateService`s to route to (required).
    - waf_log_group: where WAF logs go; its name must start with aws-waf-logs- (required;
      created by `EncryptedLogs.waf_log_group` in the stateful stack so it outlives this one).
    - logs_key: the KMS key that encrypts the S3 server access logs of the ALB log bucket
      (required; `EncryptedLogs.key`, whose policy lets S3 log delivery use it for this
      account only).
    - log_retention_days: lifetime of ALB access log objects (default 365).
    - access_log_lock_days: S3 Object Lock retention (governance mode) of each ALB access log
      object: nobody without `s3:BypassGovernanceRetention` can delete or overwrite it before
      then (default 90; at most `log_retention_days`).
    - waf_rate_limit: requests per 5 minutes per client IP before WAF blocks (default 1000).
    - session_timeout: ALB authentication session lifetime (default 8 hours).
    - ssl_policy: TLS policy of the HTTPS listener (default TLS 1.3 and 1.2 only).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        certificate: acm.ICertificate,
        directory: UserDirectory,
        agent: HardenedFargateService,
        binder: HardenedFargateService,
        waf_log_group: logs.ILogGroup,
        logs_key: kms.IKey,
        log_retention_days: int = 365,
        access_log_lock_days: int = 90,
        waf_rate_limit: int = 1000,
        session_timeout: Duration | None = None,
        ssl_policy: elbv2.SslPolicy = elbv2.SslPolicy.RECOMMENDED_TLS,
    ) -> None:
        super().__init__(scope, construct_id)

        if not 1 <= access_log_lock_days <= log_retention_days:
            raise ValueError("access_log_lock_days must be between 1 and log_retention_days")
        self.access_logs_bucket = self._log_bucket(
            log_retention_days, access_log_lock_days, logs_key
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Public ALB: HTTPS (and HTTP, redirected) from the internet",
            allow_all_outbound=False,
        )
        for port in (443, 80):
            self.security_group.add_ingress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(port), f"Public web entry point ({port})"
            )
        acknowledge(
            self.security_group,
            ("AwsSolutions::AwsSolutions-EC23",),
            "This is the internet-facing load balancer of a public web application: ports 443 "
            "and 80 (redirect only) must accept any client address; WAF filters the traffic.",
        )

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=self.security_group,
            drop_invalid_header_fields=True,
            desync_mitigation_mode=elbv2.DesyncMitigationMode.STRICTEST,
            deletion_protection=True,
            http2_enabled=True,
            idle_timeout=Duration.seconds(60),
        )
        self.load_balancer.log_access_logs(self.access_logs_bucket, prefix="alb")

        self.http_listener = self.load_balancer.add_listener(
            "Http",
            port=80,
            protocol=elbv2.ApplicationProtocol.HTTP,
            default_action=elbv2.ListenerAction.redirect(
                protocol="HTTPS", port="443", permanent=True
            ),
        )
        acknowledge(
            self.http_listener,
            (
                "NIST.800.53.R5::NIST.800.53.R5-ELBv2ACMCertificateRequired",
                "HIPAA.Security::HIPAA.Security-ELBv2ACMCertificateRequired",
                "PCI.DSS.321::PCI.DSS.321-ELBv2ACMCertificateRequired",
            ),
            "The port 80 listener only answers with a permanent redirect to HTTPS: it serves no "
            "content and an HTTP listener cannot hold a certificate. Port 443 uses ACM.",
        )
        for key, value in HTTP_RESPONSE_HEADERS.items():
            self.http_listener.set_attribute(key, value)
        self.https_listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_certificate_manager(certificate)],
            ssl_policy=ssl_policy,
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="text/plain", message_body="Not found"
            ),
        )
        for key, value in HTTPS_RESPONSE_HEADERS.items():
            self.https_listener.set_attribute(key, value)

        self.agent_target_group = agent.new_target_group(self, "AgentTargets")
        self.binder_target_group = binder.new_target_group(self, "BinderTargets")

        def signed_in(target_group: elbv2.ApplicationTargetGroup) -> elbv2.ListenerAction:
            return elbv2_actions.AuthenticateCognitoAction(
                user_pool=directory.user_pool,
                user_pool_client=directory.alb_client,
                user_pool_domain=directory.domain,
                scope="openid email",
                session_timeout=session_timeout or Duration.hours(8),
                on_unauthenticated_request=elbv2.UnauthenticatedAction.AUTHENTICATE,
                next=elbv2.ListenerAction.forward([target_group]),
            )

        # Ranks before the signed-in /oauth2/* rule; path and method must both match.
        self.https_listener.add_action(
            "BinderClientMetadata",
            priority=5,
            conditions=[
                elbv2.ListenerCondition.path_patterns([CLIENT_METADATA_PATTERN]),
                elbv2.ListenerCondition.http_request_methods(list(CLIENT_METADATA_METHODS)),
            ],
            action=elbv2.ListenerAction.forward([self.binder_target_group]),
        )
        self.https_listener.add_action(
            "Binder",
            priority=10,
            conditions=[elbv2.ListenerCondition.path_patterns(list(BINDER_PATHS))],
            action=signed_in(self.binder_target_group),
        )
        self.https_listener.add_action(
            "AgentBrowser",
            priority=20,
            conditions=[elbv2.ListenerCondition.path_patterns(list(BROWSER_AGENT_PATHS))],
            action=signed_in(self.agent_target_group),
        )
        self.https_listener.add_action(
            "AgentApi",
            priority=30,
            conditions=[elbv2.ListenerCondition.path_patterns(list(API_PATHS))],
            action=elbv2.ListenerAction.forward([self.agent_target_group]),
        )
        # Targets accept the ALB on their HTTP port only.
        for service in (agent, binder):
            service.security_group.add_ingress_rule(
                self.security_group, ec2.Port.tcp(service.container_port), "From the ALB"
            )
            self.security_group.add_egress_rule(
                service.security_group, ec2.Port.tcp(service.container_port), "To the service"
            )
        agent.scale_on_requests(self.agent_target_group)
        binder.scale_on_requests(self.binder_target_group)

        self.web_acl = self._web_acl(waf_rate_limit, waf_log_group)

    def _log_bucket(self, retention_days: int, lock_days: int, logs_key: kms.IKey) -> s3.Bucket:
        common: dict[str, Any] = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(retention_days),
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
        server_access_logs = s3.Bucket(
            self,
            "ServerAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            **common,
        )
        # SSE-KMS with the logs key, set on the L1 bucket: given an L2 `encryption_key`, CDK
        # would also grant logging.s3.amazonaws.com the key with no condition at all. The key
        # policy's own statement (EncryptedLogs) binds S3 log delivery to this account.
        cfn_server_access_logs = server_access_logs.node.default_child
        if not isinstance(cfn_server_access_logs, s3.CfnBucket):
            raise TypeError(f"{server_access_logs.node.path} has no CfnBucket to encrypt")
        cfn_server_access_logs.bucket_encryption = s3.CfnBucket.BucketEncryptionProperty(
            server_side_encryption_configuration=[
                s3.CfnBucket.ServerSideEncryptionRuleProperty(
                    bucket_key_enabled=True,
                    server_side_encryption_by_default=(
                        s3.CfnBucket.ServerSideEncryptionByDefaultProperty(
                            sse_algorithm="aws:kms", kms_master_key_id=logs_key.key_arn
                        )
                    ),
                )
            ]
        )
        acknowledge(
            server_access_logs,
            (
                "NIST.800.53.R5::NIST.800.53.R5-S3BucketReplicationEnabled",
                "HIPAA.Security::HIPAA.Security-S3BucketReplicationEnabled",
                "PCI.DSS.321::PCI.DSS.321-S3BucketReplicationEnabled",
            ),
            "S3 server access logs of the ALB log bucket, kept in this region: versioned, "
            "TLS-only, encrypted with the logs KMS key and expired by lifecycle. S3 delivers "
            "server access logs only to buckets without Object Lock, and replication to a "
            "second region is the log-archive account's job in a multi-account landing zone "
            "(docs/deployment.md), not this single-region stack's.",
        )
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            # ALB access log delivery supports SSE-S3 only, not SSE-KMS.
            encryption=s3.BucketEncryption.S3_MANAGED,
            server_access_logs_bucket=server_access_logs,
            server_access_logs_prefix="alb-access-logs/",
            object_lock_default_retention=s3.ObjectLockRetention.governance(
                Duration.days(lock_days)
            ),
            **common,
        )
        acknowledge(
            bucket,
            (
                "NIST.800.53.R5::NIST.800.53.R5-S3DefaultEncryptionKMS",
                "HIPAA.Security::HIPAA.Security-S3DefaultEncryptionKMS",
                "PCI.DSS.321::PCI.DSS.321-S3DefaultEncryptionKMS",
            ),
            "Elastic Load Balancing delivers access logs only to buckets encrypted with SSE-S3 "
            "(AES-256); SSE-KMS is not supported for ALB access logs.",
        )
        acknowledge(
            bucket,
            (
                "NIST.800.53.R5::NIST.800.53.R5-S3BucketReplicationEnabled",
                "HIPAA.Security::HIPAA.Security-S3BucketReplicationEnabled",
                "PCI.DSS.321::PCI.DSS.321-S3BucketReplicationEnabled",
            ),
            "The control is S3 Object Lock: every ALB access log object is under governance "
            "retention (access_log_lock_days) in a versioned, TLS-only bucket, so it cannot be "
            "deleted or overwritten early. Replication to a second region is the log-archive "
            "account's job in a multi-account landing zone (docs/deployment.md), not this "
            "single-region stack's.",
        )
        return bucket

    def _web_acl(self, rate_limit: int, waf_log_group: logs.ILogGroup) -> wafv2.CfnWebACL:
        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        def managed(name: str, priority: int, **overrides: Any) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=name, **overrides
                    )
                ),
                visibility_config=visibility(name),
            )

        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("secure-agents-web-acl"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=rate_limit, aggregate_key_type="IP"
                        )
                    ),
                    visibility_config=visibility("RateLimitPerIp"),
                ),
                managed("AWSManagedRulesAmazonIpReputationList", 1),
                managed(
                    "AWSManagedRulesCommonRuleSet",
                    2,
                    # Chat requests carry a bounded transcript larger than the rule's 8 KB;
                    # the agent enforces its own body limit (413).
                    rule_action_overrides=[
                        wafv2.CfnWebACL.RuleActionOverrideProperty(
                            name="SizeRestrictions_BODY",
                            action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                        )
                    ],
                ),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.load_balancer.load_balancer_arn,
            web_acl_arn=acl.attr_arn,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            # WAF wants the log group ARN without the trailing ":*" of `log_group_arn`.
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=waf_log_group.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            # Bearer tokens, session cookies, OAuth codes and states never reach the logs.
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(
                    single_header={"Name": "authorization"}
                ),
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(
                    single_header={"Name": "cookie"}
                ),
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(query_string={}),
            ],
        )
        return acl
