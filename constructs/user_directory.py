"""The user directory: a Cognito user pool (Plus plan) and its two app clients.

Both services verify the pool's access tokens themselves (JWKS signature, `iss`, `exp`,
`token_use`, `client_id`); the ALB signs browser users in through the confidential client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito

from constructs import Construct


class UserDirectory(Construct):
    """Cognito user pool with MFA, threat protection and two app clients.

    Props:
    - domain_prefix: Cognito hosted domain prefix for the sign-in pages (required).
    - alb_callback_url: the ALB's `https://{domain}/oauth2/idpresponse` (required).
    - api_callback_urls: redirect URIs of the public API client (e.g. a CLI on localhost).
    - removal_policy: default RETAIN; deletion protection is on regardless.

    Defaults: self sign-up off (administrators invite users), sign-in by username or email,
    required TOTP MFA (no SMS), 14-character password policy, Plus plan with full-function
    threat protection, access tokens valid 60 minutes, refresh tokens 12 hours with rotation
    left to the ALB session, token revocation on, user-existence errors hidden.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_prefix: str,
        alb_callback_url: str,
        api_callback_urls: Sequence[str],
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            custom_threat_protection_mode=cognito.CustomThreatProtectionMode.FULL_FUNCTION,
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
                password_history_size=12,
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=True,
            removal_policy=removal_policy,
        )
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=domain_prefix),
        )
        common: dict[str, Any] = dict(
            access_token_validity=Duration.minutes(60),
            id_token_validity=Duration.minutes(60),
            refresh_token_validity=Duration.hours(12),
            enable_token_revocation=True,
            prevent_user_existence_errors=True,
            auth_flows=cognito.AuthFlow(user_srp=False, user_password=False, custom=False),
        )
        # Confidential client used by the ALB's authenticate-cognito action (browser routes).
        self.alb_client = self.user_pool.add_client(
            "AlbClient",
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[alb_callback_url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            **common,
        )
        # Public client (authorization code + PKCE) for API callers such as a CLI.
        self.api_client = self.user_pool.add_client(
            "ApiClient",
            generate_secret=False,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=list(api_callback_urls),
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            **common,
        )

        # Clients and the domain live and die with the (retained) pool.
        for child in (self.domain, self.alb_client, self.api_client):
            child.apply_removal_policy(removal_policy)

    @property
    def issuer(self) -> str:
        """The `iss` of the pool's tokens; JWKS is at `{issuer}/.well-known/jwks.json`."""
        stack = Stack.of(self)
        return (
            f"https://cognito-idp.{stack.region}.{stack.url_suffix}/{self.user_pool.user_pool_id}"
        )

    @property
    def client_ids(self) -> list[str]:
        """The app clients whose access tokens the services accept."""
        return [self.alb_client.user_pool_client_id, self.api_client.user_pool_client_id]
