"""The edge routes exactly as the design brief lists, and is hardened."""

from __future__ import annotations

import re
from typing import Any

from tests.infra.assembly import Synthesized


def _listeners(synth: Synthesized) -> dict[int, dict[str, Any]]:
    return {
        r["Properties"]["Port"]: r
        for r in synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    }


def _target_group_of(synth: Synthesized, ref: dict[str, str]) -> str:
    (logical_id,) = [
        lid
        for lid in synth.resources("AWS::ElasticLoadBalancingV2::TargetGroup")
        if lid == ref["Ref"]
    ]
    return "agent" if logical_id.startswith("EdgeAgent") else "binder"


def _conditions(props: dict[str, Any]) -> tuple[list[str], list[str] | None]:
    """(path patterns, HTTP methods or None for any): the only condition fields we use."""
    conditions = {c["Field"]: c for c in props["Conditions"]}
    assert set(conditions) <= {"path-pattern", "http-request-method"}, conditions
    paths = conditions["path-pattern"]["PathPatternConfig"]["Values"]
    method = conditions.get("http-request-method")
    return paths, method["HttpRequestMethodConfig"]["Values"] if method else None


def _routes(synth: Synthesized) -> dict[int, tuple[list[str], list[str] | None, bool, str]]:
    routes = {}
    for rule in synth.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values():
        props = rule["Properties"]
        paths, methods = _conditions(props)
        actions = sorted(props["Actions"], key=lambda a: a.get("Order", 0))
        authenticated = actions[0]["Type"] == "authenticate-cognito"
        forward = actions[-1]
        assert forward["Type"] == "forward"
        routes[props["Priority"]] = (
            paths,
            methods,
            authenticated,
            _target_group_of(synth, forward["TargetGroupArn"]),
        )
    return routes


def _path_matches(pattern: str, path: str) -> bool:
    """The ALB's path-pattern rule: case-sensitive, `*` any run of characters, `?` exactly
    one, everything else literal (`.` included), against the path without its query."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path, re.S) is not None


def _route(synth: Synthesized, method: str, url: str) -> tuple[bool, str] | None:
    """Where the HTTPS listener sends a request: (signed in first?, service) of the first rule
    by priority whose every condition matches, or None for the default 404."""
    path = url.split("?", 1)[0]
    for _, (paths, methods, authenticated, target) in sorted(_routes(synth).items()):
        if any(_path_matches(p, path) for p in paths) and (methods is None or method in methods):
            return authenticated, target
    return None


# The binder's documents, one per mcp provider: `{CLIENT_METADATA_PREFIX}{name}.json`.
CLIENT_METADATA_PREFIX = "/oauth2/client-metadata/"


def test_listener_rules_route_exactly_as_the_design_brief(synth: Synthesized) -> None:
    assert _routes(synth) == {
        5: (["/oauth2/client-metadata/*.json"], ["GET"], False, "binder"),
        10: (["/oauth2/*"], None, True, "binder"),
        20: (["/", "/app/*"], None, True, "agent"),
        30: (["/api/*"], None, False, "agent"),
    }


def test_only_the_client_metadata_document_is_served_without_sign_in(
    synth: Synthesized,
) -> None:
    """An MCP authorization server fetches its provider's client metadata document with no
    session; every other /oauth2/ request, the old shared document's path and lookalikes
    included, still signs in first (and never reaches the binder unauthenticated)."""
    for url in [
        "/oauth2/client-metadata/atlassian-mcp.json",
        "/oauth2/client-metadata/a.json",
        "/oauth2/client-metadata/crm-tools.json?x=1",
    ]:
        assert _route(synth, "GET", url) == (False, "binder"), url
    for method, url in [
        ("GET", "/oauth2/client-metadata.json"),
        ("GET", "/oauth2/client-metadataX/a.json"),
        ("GET", "/oauth2/client-metadata-x/a.json"),
        ("GET", "/oauth2/client-metadata"),
        ("GET", "/oauth2/client-metadata/"),
        ("GET", "/oauth2/client-metadata/a"),
        ("GET", "/oauth2/client-metadata/a.jsonx"),
        ("GET", "/oauth2/client-metadata/a.json/x"),
        ("GET", "/oauth2/client-metadata/a.JSON"),
        ("GET", "/oauth2/Client-Metadata/a.json"),
        ("GET", "/oauth2/client-metadata/a.json.bak"),
        ("POST", "/oauth2/client-metadata/a.json"),
        ("PUT", "/oauth2/client-metadata/a.json"),
        ("PATCH", "/oauth2/client-metadata/a.json"),
        ("DELETE", "/oauth2/client-metadata/a.json"),
        ("HEAD", "/oauth2/client-metadata/a.json"),
        ("OPTIONS", "/oauth2/client-metadata/a.json"),
        ("GET", "/oauth2/authorize/abc"),
        ("GET", "/oauth2/callback/x"),
        ("GET", "/oauth2/callback/atlassian-mcp"),
        ("GET", "/oauth2/connections"),
        ("POST", "/oauth2/actions/abc/approve"),
    ]:
        assert _route(synth, method, url) == (True, "binder"), (method, url)
    # The exception adds nothing outside /oauth2/: the rest routes as before.
    assert _route(synth, "GET", "/client-metadata/a.json") is None
    assert _route(synth, "GET", "/oauth2client-metadata/a.json") is None
    assert _route(synth, "GET", "/internal/tokens") is None
    assert _route(synth, "GET", "/app/chat") == (True, "agent")


def test_the_only_rule_without_sign_in_for_the_binder_is_the_documents(
    synth: Synthesized,
) -> None:
    """Ranked before the signed-in /oauth2/* rule (else it would never apply), GET only, and
    the construct's constant is the pattern on the listener."""
    from constructs.edge import CLIENT_METADATA_METHODS, CLIENT_METADATA_PATTERN
    from constructs.edge import CLIENT_METADATA_PREFIX as EDGE_PREFIX

    assert EDGE_PREFIX == CLIENT_METADATA_PREFIX
    assert CLIENT_METADATA_PATTERN == CLIENT_METADATA_PREFIX + "*.json"
    routes = _routes(synth)
    unauthenticated = {
        priority: (paths, methods)
        for priority, (paths, methods, authenticated, target) in routes.items()
        if not authenticated and target == "binder"
    }
    assert unauthenticated == {5: ([CLIENT_METADATA_PATTERN], list(CLIENT_METADATA_METHODS))}
    assert CLIENT_METADATA_METHODS == ("GET",)
    (signed_in_binder,) = [p for p, (paths, _, _, _) in routes.items() if paths == ["/oauth2/*"]]
    assert min(routes) == 5 < signed_in_binder


def test_the_edge_path_is_the_binders() -> None:
    """The exception is the prefix the binder serves its documents under, and nothing else.
    Fails until the binder has `binder.providers.mcp.CLIENT_METADATA_PREFIX`."""
    from binder.providers import mcp

    binder_prefix = getattr(mcp, "CLIENT_METADATA_PREFIX", None)
    assert binder_prefix == CLIENT_METADATA_PREFIX, (
        "binder.providers.mcp.CLIENT_METADATA_PREFIX must be the edge's prefix"
    )


def test_everything_else_is_a_404_and_internal_is_never_routed(synth: Synthesized) -> None:
    https = _listeners(synth)[443]["Properties"]
    (default,) = https["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "404"
    patterns = [p for paths, _, _, _ in _routes(synth).values() for p in paths]
    assert not any(p.startswith("/internal") or p in ("*", "/*") for p in patterns)


def test_binder_internal_port_is_not_behind_the_load_balancer(synth: Synthesized) -> None:
    ports = {
        tg["Properties"]["Port"]
        for tg in synth.resources("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    }
    assert ports == {8080}
    ingress = synth.resources("AWS::EC2::SecurityGroupIngress", "Services")
    internal = [r["Properties"] for r in ingress.values() if r["Properties"]["FromPort"] == 8081]
    assert len(internal) == 1
    assert internal[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith("AgentSecurityGroup")


def test_http_only_redirects_to_https(synth: Synthesized) -> None:
    http = _listeners(synth)[80]["Properties"]
    (action,) = http["DefaultActions"]
    assert action["Type"] == "redirect"
    assert action["RedirectConfig"] == {
        "Port": "443",
        "Protocol": "HTTPS",
        "StatusCode": "HTTP_301",
    }


def test_https_listener_uses_tls_1_2_or_newer(synth: Synthesized) -> None:
    https = _listeners(synth)[443]["Properties"]
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["Certificates"][0]["CertificateArn"].startswith("arn:aws:acm:")


def test_load_balancer_attributes(synth: Synthesized) -> None:
    (alb,) = synth.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    attributes = {a["Key"]: a["Value"] for a in alb["Properties"]["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["routing.http.desync_mitigation_mode"] == "strictest"
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["deletion_protection.enabled"] == "true"


def test_access_log_bucket_is_encrypted_tls_only_and_versioned(synth: Synthesized) -> None:
    buckets = synth.resources("AWS::S3::Bucket", "Services")
    logs_bucket = buckets[next(b for b in buckets if b.startswith("EdgeAccessLogs"))]["Properties"]
    assert logs_bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert logs_bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert logs_bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    for policy in synth.resources("AWS::S3::BucketPolicy", "Services").values():
        denies = [
            s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
        ]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_waf_protects_the_load_balancer_and_redacts_credentials(synth: Synthesized) -> None:
    (acl,) = synth.resources("AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    } <= set(rules)
    (association,) = synth.resources("AWS::WAFv2::WebACLAssociation").values()
    assert association["Properties"]["ResourceArn"]["Ref"].startswith("EdgeLoadBalancer")
    (logging,) = synth.resources("AWS::WAFv2::LoggingConfiguration").values()
    redacted = logging["Properties"]["RedactedFields"]
    headers = {f["SingleHeader"]["Name"] for f in redacted if "SingleHeader" in f}
    assert headers == {"authorization", "cookie"}
    assert {"QueryString": {}} in redacted, "OAuth codes and states travel in the query string"


def test_waf_logs_go_to_the_retained_group_in_the_stateful_stack(synth: Synthesized) -> None:
    (logging,) = synth.resources("AWS::WAFv2::LoggingConfiguration").values()
    (destination,) = logging["Properties"]["LogDestinationConfigs"]
    parts = destination["Fn::Join"][1]
    assert "GetStackOutput" in str(parts)
    assert "WafLogs" in str(parts)
    waf_logs = synth.stack("Identity")["Resources"]["WafLogs"]
    assert waf_logs["Properties"]["LogGroupName"].startswith("aws-waf-logs-")


def test_alarms_can_publish_to_their_encrypted_topic(synth: Synthesized) -> None:
    (policy,) = synth.resources("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    # CloudWatch alarms here; the vault alarm rules' statement: tests/infra/test_vault_key.py.
    (allow,) = [
        s
        for s in statements
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert allow["Action"] == "sns:Publish"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": "111111111111"}
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 9  # 4 of them on the audit trail: tests/infra/test_operations.py
    assert all(a["Properties"]["AlarmActions"] for a in alarms.values())
    (key,) = synth.resources("AWS::KMS::Key", "Services").values()
    key_statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in key_statements
    )
