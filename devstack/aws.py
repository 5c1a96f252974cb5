"""Create, in moto, the same AWS shapes the CDK app creates (identity stack)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

REGION = "us-east-1"


@dataclass(frozen=True)
class LocalAws:
    endpoint: str
    key_arn: str
    table: str
    user_pool_id: str
    client_id: str
    provider_secrets: dict[str, str]

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/{self.user_pool_id}/.well-known/jwks.json"


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto's placeholder credentials
    )


def bootstrap(
    endpoint: str,
    *,
    users: dict[str, str],
    providers: dict[str, tuple[str, str]],
    table: str = "binder-sessions",
) -> LocalAws:
    """users: name -> password; providers: name -> (client_id, client_secret)."""
    kms = client("kms", endpoint)
    key_arn = kms.create_key(Description="token vault (local)")["KeyMetadata"]["Arn"]
    dynamodb = client("dynamodb", endpoint)
    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
    )
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    cognito = client("cognito-idp", endpoint)
    pool_id = cognito.create_user_pool(PoolName="secure-agents-local")["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="local-edge",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    for name, password in users.items():
        cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=name,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": f"{name}@example.com"}],
        )
        cognito.admin_set_user_password(
            UserPoolId=pool_id, Username=name, Password=password, Permanent=True
        )
    secrets = client("secretsmanager", endpoint)
    provider_secrets = {
        name: secrets.create_secret(
            Name=f"provider-credentials/{name}",
            KmsKeyId=key_arn,
            SecretString=json.dumps({"client_id": cid, "client_secret": secret}),
        )["ARN"]
        for name, (cid, secret) in providers.items()
    }
    return LocalAws(
        endpoint=endpoint,
        key_arn=key_arn,
        table=table,
        user_pool_id=pool_id,
        client_id=client_id,
        provider_secrets=provider_secrets,
    )


def sign_in(local: LocalAws, username: str, password: str) -> str:
    """A Cognito access token for the user (USER_PASSWORD_AUTH)."""
    result = client("cognito-idp", local.endpoint).initiate_auth(
        ClientId=local.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return str(result["AuthenticationResult"]["AccessToken"])
