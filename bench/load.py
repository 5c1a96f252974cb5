"""Load and concurrency run (issue 6): N users, two binder processes, one moto server, and the
fault-injecting fake OAuth provider with rotating refresh tokens, all on 127.0.0.1, bounded in
count (users x requests, at most MAX_ATTEMPTS attempts each) and in time (per-request timeouts,
per-stage budgets scaled to the host, and a hard cap). moto runs with its requests serialized
(devstack/moto_server.py explains why).

Phases:

0. consent: every user runs the whole consent flow over HTTP, as the agent and the browser
   would: token request -> `consent_required` -> the binder's `/oauth2/authorize/{id}` -> the
   provider's `/authorize` (with `login_hint=<user>@fake`) -> the binder's callback -> stored.
   Token requests go to binder `i % 2` and authorization links are opened on binder
   `(i // 2) % 2`, so half of the flows start on one process and finish on the other (state lives
   in DynamoDB, as on ECS behind the ALB). The flow runs in two waves so that every first token is
   issued within a short window: wave A takes every user up to the redirect to the provider,
   wave B gives consent and completes the callbacks. First tokens live `expires_in` seconds.
1. `requests_per_user` parallel token requests per user, spread over both binders, while every
   first token still has more than REFRESH_SKEW_SECONDS left (no refresh is due).
2. The run waits until every first token is within the skew, then repeats phase 1: each user's
   token crosses expiry exactly once, while up to `requests_per_user` requests of that user race
   on the two binders. Tokens issued from then on live an hour (no second crossing).

Overload: a 503 with a Retry-After header is the services' documented way to shed load, so the
client behaves as the agent and a browser would: it waits Retry-After (at most
MAX_RETRY_AFTER_S) and repeats the same request, at most MAX_ATTEMPTS times in all. Such answers
are counted as degradation (`degraded_503`), apart from errors: 500, any other 5xx or a 503
without Retry-After (`five_xx`), and transport errors, by exception type (a request gets
CLIENT_TIMEOUT_S to answer, the ALB's default idle timeout). What a repeated request answered
when it was not the expected status (for example 409 `used_session` after a 503 on the
authorization link: the 503 was not safe to retry) is listed under `answers.after_retry`.

Timing scales to the host instead of a fixed deadline: a short calibration round measures
moto's and the binders' latency, wave A's budget follows the time the host took to create the
Cognito users, and every later stage's budget follows the throughput (seconds per request) the
host showed in the stage before, times STAGE_SAFETY (never under STAGE_FLOOR_S). The first
tokens' lifetime follows wave A's time the same way. A stage that overruns its budget stops the
run, which reports what it measured and where it stopped (`timing`); `time_limit_s`, when
given, is a hard cap over everything.

Invariants, checked afterwards (all must hold for "pass"): every flow completes; every token
request of phases 1 and 2 answers 200 (after Retry-After waits); no 5xx error and no transport
error anywhere; the provider saw exactly one refresh per user (`refreshes_by_subject`) and no
replayed refresh token; every access token returned maps, through the provider's `/userinfo`,
to the user who asked for it; the vault holds exactly one secret per user, parsing as the
binder's `TokenRecord` JSON, active, holding the newest access token that user received and a
refresh token the provider still accepts (probed last, after the counters are read), and no
other secret. A user whose consent flow failed is reported as not connected, not as a lost
entry.

Run: python bench/load.py --users 200 (prints the JSON report; exit status 1 if it fails).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "services" / "binder"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from binder.vault import ACTIVE, TokenRecord  # noqa: E402
from devstack import aws, procs, services  # noqa: E402

PROVIDER = "fake"
PROVIDER_CLIENT = ("binder-client", "fake-secret")
SCOPES = ["read"]
VAULT_PREFIX = services.VAULT_PREFIX
REFRESH_SKEW_SECONDS = 5
TOKEN_CACHE_SECONDS = 2
MIN_EXPIRES_IN = 20  # first tokens: at least this, more if the consent waves are slow
EXPIRY_PAD_SECONDS = 5  # first tokens: added to the lifetime derived from wave A
EXPIRY_SAFETY = 1.2  # first tokens: margin over the expected wave B + phase 1
AFTER_EXPIRES_IN = 3600  # tokens issued once the consent waves are done
EXPIRY_MARGIN_SECONDS = 0.5  # phase 2 starts this long after the last first token is due
# Per request: the ALB's default idle timeout (past it the ALB would answer 504 itself).
CLIENT_TIMEOUT_S = 60.0
# The agent's binder client gives up after this long (services/agent/agent/binder_client.py):
# token requests slower than that are counted, as the agent would have failed them.
AGENT_TIMEOUT_S = 10.0
# Idle keep-alive connections are dropped before uvicorn's 5 s keep-alive timeout closes them
# server-side, so a request never goes out on a connection the server is closing (that race
# shows up as ReadError or RemoteProtocolError on a slow host, and it is the client's own doing).
KEEPALIVE_EXPIRY_S = 2.0
MAX_ATTEMPTS = 4  # per request, when the answers are 503 (or 429) with Retry-After
MAX_RETRY_AFTER_S = 30.0  # a longer Retry-After is waited this long
# Stage budgets: STAGE_SAFETY x (requests of the stage) x (seconds per request the host showed
# in the stage before) x the stage's relative cost below, and never under STAGE_FLOOR_S. The
# relative costs are what a 2-core host showed from idle to about 6 times slower (CPU hogs,
# a slowed moto): wave B and phase 1 took at most 1x and 0.45x wave A's time per request,
# phase 2 at most 2.8x phase 1's, the vault check less than the Cognito setup per user, and
# wave A at most 5x the Cognito setup.
STAGE_SAFETY = 4.0
STAGE_FLOOR_S = 60.0
WAVE_A_COST_PER_SETUP_USER = 5.0  # wave A, per user, against the Cognito setup per user
DEFAULT_HARD_CAP_S = 1800.0  # when no time limit is given: a safety net, not the expectation
CALIBRATION_ROUNDS = 16
# What each step answers when all is well (every other step: 200).
EXPECTED_STATUS = {"consent_token_request": 403, "authorize": 302, "provider_authorize": 302}
RECORD_FIELDS = {
    "provider",
    "access_token",
    "token_type",
    "refresh_token",
    "expires_at",
    "scopes",
    "obtained_at",
    "status",
}


@dataclass
class Binder:
    child: procs.Child
    public: str
    internal: str


@dataclass
class User:
    index: int
    name: str
    cognito_token: str
    user_hash: str
    subject: str  # the provider's subject: the login hint given at consent
    to_provider: str | None = None
    connected: bool = False
    # phase -> (access token, expires_at) of every 200 answer
    issued: dict[int, list[tuple[str, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )


@dataclass
class Tally:
    """Everything measured so far; a run that hits its time limit reports what is here."""

    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: Counter[str] = field(default_factory=Counter)
    latencies_ms: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    seconds: dict[str, float] = field(default_factory=dict)
    five_xx: int = 0  # errors: 500, other 5xx, 503 without Retry-After
    degraded_503: int = 0  # 503 with Retry-After: load shed as documented, retried
    transport_errors: int = 0
    # step -> class ("500", "502", "503_without_retry_after", ...) -> count
    five_xx_by_step: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    degraded_by_step: Counter[str] = field(default_factory=Counter)
    transport_by_step: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    retries: int = 0
    recovered_after_retry: int = 0
    gave_up_after_retries: int = 0
    after_retry: Counter[str] = field(default_factory=Counter)  # "step:status" not expected
    over_agent_timeout: int = 0
    answers_by_stage: Counter[str] = field(default_factory=Counter)
    budgets_s: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    expires_in: int = MIN_EXPIRES_IN
    phase1_margin_s: float | None = None
    counters_after_phase1: dict[str, Any] = field(default_factory=dict)
    counters_after_phase2: dict[str, Any] = field(default_factory=dict)
    token_subjects: dict[str, str | None] = field(default_factory=dict)
    vault: dict[str, Any] = field(default_factory=dict)
    stage: str = "setup"


def _retry_after(response: httpx2.Response) -> float | None:
    """Seconds to wait before repeating the request: only for a 503 or 429 that says so (a
    whole number of seconds, RFC 9110; the services never send the date form)."""
    if response.status_code not in (503, 429):
        return None
    value = response.headers.get("retry-after", "").strip()
    if not value.isdigit():
        return None
    return min(float(value), MAX_RETRY_AFTER_S)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 2)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _user_hash(cognito_token: str) -> str:
    claims = _claims(cognito_token)
    return hashlib.sha256(f"{claims['iss']}|{claims['sub']}".encode()).hexdigest()


def _create_users(local: aws.LocalAws, count: int) -> list[User]:
    """Cognito users in moto, each signed in (a few threads: moto answers them in parallel)."""
    cognito = aws.client("cognito-idp", local.endpoint)

    def make(index: int) -> User:
        name = f"load-user-{index:04d}"
        password = f"Load-{index:04d}-Passw0rd!"
        cognito.admin_create_user(
            UserPoolId=local.user_pool_id,
            Username=name,
            MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": f"{name}@example.com"}],
        )
        cognito.admin_set_user_password(
            UserPoolId=local.user_pool_id, Username=name, Password=password, Permanent=True
        )
        token = aws.sign_in(local, name, password)
        return User(
            index=index,
            name=name,
            cognito_token=token,
            user_hash=_user_hash(token),
            subject=f"{name}@fake",
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(make, range(count)))


class Driver:
    """The HTTP side of the run: one asyncio httpx2 client, at most `concurrency` requests in
    flight."""

    def __init__(
        self,
        *,
        users: list[User],
        binders: list[Binder],
        provider: str,
        tally: Tally,
        requests_per_user: int,
        concurrency: int,
    ) -> None:
        self.users = users
        self.binders = binders
        self.provider = provider
        self.tally = tally
        self.requests_per_user = requests_per_user
        self.limit = asyncio.Semaphore(concurrency)
        self.http = httpx2.AsyncClient(
            timeout=CLIENT_TIMEOUT_S,
            follow_redirects=False,
            limits=httpx2.Limits(
                max_connections=concurrency * 2,
                max_keepalive_connections=concurrency * 2,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
        )

    async def call(
        self,
        step: str,
        method: str,
        url: str,
        *,
        latencies: list[float] | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx2.Response | None:
        """One request; a 503 (or 429) with Retry-After is repeated after that wait, at most
        MAX_ATTEMPTS times in all (the wait does not hold a concurrency slot). Returns the last
        answer, or None after a transport error (counted by type, never retried: the request
        may have been applied)."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            async with self.limit:
                start = time.perf_counter()
                try:
                    response = await self.http.request(method, url, **kwargs)
                except httpx2.HTTPError as exc:
                    kind = type(exc).__name__
                    self.tally.transport_errors += 1
                    self.tally.transport_by_step[step][kind] += 1
                    self.tally.failures[f"{step}:{kind}"] += 1
                    self.tally.answers_by_stage[self.tally.stage] += 1
                    return None
                elapsed_ms = (time.perf_counter() - start) * 1000
            self._count(step, response, elapsed_ms)
            wait = _retry_after(response)
            if wait is None or not retry:
                break
            if attempt == MAX_ATTEMPTS:
                self.tally.gave_up_after_retries += 1
                break
            self.tally.retries += 1
            await asyncio.sleep(wait)
        if attempt > 1:
            if response.status_code == EXPECTED_STATUS.get(step, 200):
                self.tally.recovered_after_retry += 1
            else:
                self.tally.after_retry[f"{step}:{response.status_code}"] += 1
        if latencies is not None:
            latencies.append(elapsed_ms)
        return response

    def _count(self, step: str, response: httpx2.Response, elapsed_ms: float) -> None:
        tally = self.tally
        status = response.status_code
        tally.statuses[step][status] += 1
        tally.answers_by_stage[tally.stage] += 1
        if (
            step.startswith(("token_phase", "consent_token"))
            and elapsed_ms > AGENT_TIMEOUT_S * 1000
        ):
            tally.over_agent_timeout += 1
        if status < 500:
            return
        if status == 503 and _retry_after(response) is not None:
            tally.degraded_503 += 1
            tally.degraded_by_step[step] += 1
            return
        tally.five_xx += 1
        kind = "503_without_retry_after" if status == 503 else str(status)
        tally.five_xx_by_step[step][kind] += 1

    def fail(self, step: str, why: str) -> None:
        self.tally.failures[f"{step}:{why}"] += 1

    async def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if body is None:
            response = await self.http.get(f"{self.provider}/_control/{path}")
        else:
            response = await self.http.post(f"{self.provider}/_control/{path}", json=body)
        response.raise_for_status()
        return dict(response.json())

    async def token_request(
        self, step: str, user: User, binder: Binder, latencies: list[float] | None = None
    ) -> httpx2.Response | None:
        return await self.call(
            step,
            "POST",
            f"{binder.internal}/internal/tokens",
            json={"provider": PROVIDER, "scopes": SCOPES},
            headers={"authorization": f"Bearer {user.cognito_token}"},
            latencies=latencies,
        )

    # -- phase 0: consent ------------------------------------------------------------------

    async def wave_a(self, user: User) -> None:
        """Token request (consent_required), then the authorization link, on the other binder
        for half of the users: up to the redirect to the provider."""
        asked = self.binders[user.index % 2]
        opened = self.binders[(user.index // 2) % 2]
        response = await self.token_request("consent_token_request", user, asked)
        if response is None:
            return
        if response.status_code != 403:
            return self.fail("consent_token_request", f"status_{response.status_code}")
        body = response.json()
        if body.get("error") != "consent_required" or body.get("reason") != "no_connection":
            return self.fail("consent_token_request", "not_consent_required")
        link = str(body["authorization_url"])
        if not link.startswith(f"{asked.public}/oauth2/authorize/"):
            return self.fail("consent_token_request", "foreign_authorization_url")
        # The ALB may send the browser to any binder task: the session is in DynamoDB.
        link = opened.public + urlsplit(link).path
        browser = {"x-amzn-oidc-accesstoken": user.cognito_token}
        response = await self.call("authorize", "GET", link, headers=browser)
        if response is None:
            return
        location = response.headers.get("location", "")
        if response.status_code != 302 or not location.startswith(f"{self.provider}/authorize?"):
            return self.fail("authorize", f"status_{response.status_code}")
        user.to_provider = location

    async def wave_b(self, user: User) -> None:
        """Consent at the provider as `<user>@fake`, then the binder's callback: stored."""
        if user.to_provider is None:
            return
        opened = self.binders[(user.index // 2) % 2]
        consent = user.to_provider + "&" + urlencode({"login_hint": user.subject})
        response = await self.call("provider_authorize", "GET", consent)
        if response is None:
            return
        callback = response.headers.get("location", "")
        if response.status_code != 302 or not callback.startswith(
            f"{opened.public}/oauth2/callback/{PROVIDER}?"
        ):
            return self.fail("provider_authorize", f"status_{response.status_code}")
        browser = {"x-amzn-oidc-accesstoken": user.cognito_token}
        response = await self.call("callback", "GET", callback, headers=browser)
        if response is None:
            return
        if response.status_code != 200:
            return self.fail("callback", f"status_{response.status_code}")
        user.connected = True

    # -- phases 1 and 2: token requests ----------------------------------------------------------

    async def token_phase(self, phase: int) -> None:
        """Every user's requests are queued together, alternating binders, so that a user's
        requests are in flight on both processes at once."""
        latencies = self.tally.latencies_ms[phase]
        step = f"token_phase{phase}"

        async def one(user: User, k: int) -> None:
            binder = self.binders[(user.index + k) % 2]
            response = await self.token_request(step, user, binder, latencies)
            if response is None:
                return
            if response.status_code != 200:
                return self.fail(step, f"status_{response.status_code}")
            body = response.json()
            expires_at = body.get("expires_at")
            user.issued[phase].append(
                (str(body["access_token"]), int(expires_at) if expires_at is not None else None)
            )

        await asyncio.gather(
            *(one(user, k) for user in self.users for k in range(self.requests_per_user))
        )

    async def check_subjects(self, phase: int) -> None:
        """Map every distinct access token of the phase to its subject at the provider."""

        async def whose(token: str) -> None:
            response = await self.call(
                "userinfo",
                "GET",
                f"{self.provider}/userinfo",
                headers={"authorization": f"Bearer {token}"},
            )
            if response is not None and response.status_code == 200:
                self.tally.token_subjects[token] = str(response.json().get("sub"))
            else:
                self.tally.token_subjects[token] = None

        tokens = {t for user in self.users for t, _ in user.issued[phase]}
        await asyncio.gather(*(whose(t) for t in tokens - set(self.tally.token_subjects)))

    async def refresh_token_live(self, refresh_token: str) -> bool | None:
        """Whether the provider still accepts this refresh token (a real refresh grant); None
        when the provider gave no answer (not evidence of a lost entry, and never retried: the
        grant may have been applied)."""
        response = await self.call(
            "refresh_probe",
            "POST",
            f"{self.provider}/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=PROVIDER_CLIENT,
            retry=False,
        )
        if response is None:
            return None
        return response.status_code == 200

    async def calibrate(self, local: aws.LocalAws) -> dict[str, Any]:
        """A short round that says how fast this host is right now: sequential `/healthz` on
        each binder (event loop and HTTP), DynamoDB GetItem and Secrets Manager GetSecretValue
        on moto (one call at a time, as the binders make them), and the provider's discovery
        document. Milliseconds, median and max."""

        async def http_ms(url: str) -> list[float]:
            times = []
            for _ in range(CALIBRATION_ROUNDS):
                start = time.perf_counter()
                response = await self.http.get(url)
                response.raise_for_status()
                times.append((time.perf_counter() - start) * 1000)
            return times

        def aws_ms() -> tuple[list[float], list[float]]:
            dynamodb = aws.client("dynamodb", local.endpoint)
            secrets = aws.client("secretsmanager", local.endpoint)
            secret_arn = local.provider_secrets[PROVIDER]
            reads: list[float] = []
            secret_reads: list[float] = []
            for i in range(CALIBRATION_ROUNDS):
                start = time.perf_counter()
                dynamodb.get_item(
                    TableName=local.table,
                    Key={"pk": {"S": f"calibration#{i}"}},
                    ConsistentRead=True,
                )
                reads.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                secrets.get_secret_value(SecretId=secret_arn)
                secret_reads.append((time.perf_counter() - start) * 1000)
            return reads, secret_reads

        def summary(values: list[float]) -> dict[str, float | None]:
            return {"p50": _percentile(values, 50), "max": _percentile(values, 100)}

        start = time.perf_counter()
        binder_ms = [await http_ms(f"{b.internal}/healthz") for b in self.binders]
        provider_ms = await http_ms(f"{self.provider}/.well-known/openid-configuration")
        get_item, get_secret = await asyncio.to_thread(aws_ms)
        return {
            "binder_healthz_ms": summary([t for times in binder_ms for t in times]),
            "provider_discovery_ms": summary(provider_ms),
            "moto_get_item_ms": summary(get_item),
            "moto_get_secret_value_ms": summary(get_secret),
            "seconds": round(time.perf_counter() - start, 2),
        }


def _read_vault(local: aws.LocalAws) -> dict[str, str]:
    """Every secret under the vault prefix: name -> value."""
    secrets = aws.client("secretsmanager", local.endpoint)
    names: list[str] = []
    kwargs: dict[str, Any] = {"MaxResults": 100}
    while True:
        page = secrets.list_secrets(**kwargs)
        names += [
            str(s["Name"])
            for s in page.get("SecretList", [])
            if str(s["Name"]).startswith(f"{VAULT_PREFIX}/")
        ]
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]

    def value(name: str) -> tuple[str, str]:
        return name, str(secrets.get_secret_value(SecretId=name)["SecretString"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(value, names))


async def _check_vault(driver: Driver, local: aws.LocalAws) -> None:
    """Exactly one entry per connected user: a TokenRecord, active, with the newest access token
    the user received and a refresh token the provider still accepts; no other entry. A user
    whose consent flow failed and who has no entry is counted as not connected (the flow
    failure is reported where it happened), not as a lost entry."""
    values = await asyncio.to_thread(_read_vault, local)
    problems: Counter[str] = Counter()
    bad_users = 0
    not_connected = 0
    probes: list[tuple[User, str]] = []
    expected = set()
    for user in driver.users:
        name = f"{VAULT_PREFIX}/{PROVIDER}/{user.user_hash}"
        expected.add(name)
        if name not in values and not user.connected:
            not_connected += 1
            continue
        issued = [pair for phase in (1, 2) for pair in user.issued[phase]]
        latest = max(issued, key=lambda pair: pair[1] or 0)[0] if issued else None
        why = _record_problem(values.get(name), latest)
        if why is None:
            probes.append((user, _refresh_token(values[name])))
        else:
            problems[why] += 1
            bad_users += 1
    live = await asyncio.gather(*(driver.refresh_token_live(token) for _, token in probes))
    dead = live.count(False)
    problems["refresh_token_not_accepted"] += dead
    problems["refresh_token_unverified"] += live.count(None)
    extra = sorted(set(values) - expected)
    problems["unexpected_entries"] += len(extra)
    driver.tally.vault = {
        "entries": len(values),
        "lost_or_corrupted": bad_users + dead + len(extra),
        "not_connected": not_connected,
        "unverified": live.count(None),
        "problems": {k: v for k, v in sorted(problems.items()) if v},
    }


def _refresh_token(value: str) -> str:
    return str(TokenRecord.from_json(value).refresh_token)


def _record_problem(value: str | None, latest: str | None) -> str | None:
    if value is None:
        return "missing"
    try:
        if set(json.loads(value)) != RECORD_FIELDS:
            return "unexpected_fields"
        record = TokenRecord.from_json(value)
    except (ValueError, TypeError, KeyError):
        return "unparseable"
    if record.provider != PROVIDER:
        return "wrong_provider"
    if record.status != ACTIVE:
        return f"status_{record.status}"
    if latest is None or record.access_token != latest:
        return "not_the_latest_access_token"
    if not record.refresh_token:
        return "no_refresh_token"
    return None


def _budget(requests: int, seconds_per_request: float, cost: float) -> float:
    return round(max(STAGE_FLOOR_S, STAGE_SAFETY * cost * requests * seconds_per_request), 1)


async def _drive(
    driver: Driver, local: aws.LocalAws, *, setup_s_per_user: float, hard_deadline: float
) -> None:
    tally = driver.tally
    n = len(driver.users)
    per_user = driver.requests_per_user

    async def timed(stage: str, work: Awaitable[Any], budget: float) -> float:
        """Run one stage within its budget (and the hard cap); its duration in seconds."""
        tally.stage = stage
        tally.budgets_s[stage] = budget
        start = time.perf_counter()
        left = hard_deadline - start
        try:
            await asyncio.wait_for(work, min(budget, left))
        except TimeoutError:
            tally.stop_reason = "stage_budget" if budget < left else "time_limit"
            raise
        tally.seconds[stage] = round(time.perf_counter() - start, 2)
        return time.perf_counter() - start

    tally.stage = "calibration"
    tally.calibration = await driver.calibrate(local)
    await driver.control("faults", {"rotate_refresh_tokens": True})
    wave_a = await timed(
        "consent_wave_a",
        asyncio.gather(*(driver.wave_a(u) for u in driver.users)),
        _budget(n, setup_s_per_user, WAVE_A_COST_PER_SETUP_USER),
    )
    wave_a_spr = wave_a / (2 * n)
    # First tokens must outlive wave B and phase 1 by more than the refresh skew. On the hosts
    # measured, wave B took at most wave A's time and phase 1 at most 0.45x wave A's time per
    # request (phase 1 makes requests_per_user / 2 times as many; together at most 2.5x wave
    # A): the lifetime follows wave A's time with a margin (a slow host gets longer-lived first
    # tokens, never a refresh in phase 1; the margin left is reported as phase1_margin_s).
    lifetime = wave_a * EXPIRY_SAFETY * (1 + per_user / 4)
    tally.expires_in = max(
        MIN_EXPIRES_IN, REFRESH_SKEW_SECONDS + EXPIRY_PAD_SECONDS + math.ceil(lifetime)
    )
    await driver.control("faults", {"expires_in": tally.expires_in})
    await timed(
        "consent_wave_b",
        asyncio.gather(*(driver.wave_b(u) for u in driver.users)),
        _budget(2 * n, wave_a_spr, 1.0),
    )
    # Whatever is issued from now on (the one refresh per user) outlives the run.
    await driver.control("faults", {"expires_in": AFTER_EXPIRES_IN})

    phase1 = await timed("phase1", driver.token_phase(1), _budget(n * per_user, wave_a_spr, 0.45))
    phase1_end = time.time()
    tally.counters_after_phase1 = await driver.control("counters")
    first = [exp for u in driver.users for _, exp in u.issued[1] if exp is not None]
    if first:
        tally.phase1_margin_s = round(min(first) - REFRESH_SKEW_SECONDS - phase1_end, 2)
    await timed("userinfo_phase1", driver.check_subjects(1), _budget(n, wave_a_spr, 0.25))

    due = max(first, default=0) - REFRESH_SKEW_SECONDS + EXPIRY_MARGIN_SECONDS
    pause = max(0.0, due - time.time())
    await timed("wait_for_expiry", asyncio.sleep(pause), round(pause + STAGE_FLOOR_S, 1))
    await timed(
        "phase2", driver.token_phase(2), _budget(n * per_user, phase1 / (n * per_user), 2.8)
    )
    tally.counters_after_phase2 = await driver.control("counters")
    await timed("userinfo_phase2", driver.check_subjects(2), _budget(n, wave_a_spr, 0.25))
    await timed("vault_check", _check_vault(driver, local), _budget(2 * n, setup_s_per_user, 1.0))
    tally.stage = "done"


def _report(
    *,
    users: list[User],
    n_users: int,
    requests_per_user: int,
    concurrency: int,
    time_limit_s: float,
    tally: Tally,
    timed_out: bool,
    wall: float,
    host: dict[str, Any],
) -> dict[str, Any]:
    counters = tally.counters_after_phase2
    by_subject: dict[str, int] = dict(counters.get("refreshes_by_subject", {}))
    subjects = {u.subject for u in users}
    per_user = Counter(by_subject.get(u.subject, 0) for u in users)
    unexpected_subjects = sorted(set(by_subject) - subjects)
    cross_user = 0
    unverified = 0
    for user in users:
        for token in {t for phase in (1, 2) for t, _ in user.issued[phase]}:
            sub = tally.token_subjects.get(token)
            if sub is None:
                unverified += 1
            elif sub != user.subject:
                cross_user += 1
    old_after_expiry = sum(
        1
        for user in users
        for token, _ in user.issued[2]
        if token in {t for t, _ in user.issued[1]}
    )
    token_requests = sum(len(tally.latencies_ms[p]) for p in (1, 2))
    expected_requests = 2 * n_users * requests_per_user
    ok_tokens = sum(len(u.issued[p]) for u in users for p in (1, 2))
    all_latencies = tally.latencies_ms[1] + tally.latencies_ms[2]
    flows = sum(1 for u in users if u.connected)
    replayed = int(counters.get("replayed_refresh_tokens", -1))
    lost = int(tally.vault.get("lost_or_corrupted", -1))
    refreshes_ok = (
        len(users) == n_users and per_user == Counter({1: n_users}) and not unexpected_subjects
    )
    report: dict[str, Any] = {
        "name": "load",
        "description": (
            "N users, consent flows over HTTP, two binders sharing one moto server, parallel "
            "token requests across both, every token crossing expiry once"
        ),
        "users": n_users,
        "requests_per_user": requests_per_user,
        "concurrency": concurrency,
        "binders": 2,
        "expires_in_s": tally.expires_in,
        "refresh_skew_s": REFRESH_SKEW_SECONDS,
        "token_cache_s": TOKEN_CACHE_SECONDS,
        "flows_completed": flows,
        "token_requests": token_requests,
        "token_requests_ok": ok_tokens,
        "status_counts": {
            step: {str(code): n for code, n in sorted(counts.items())}
            for step, counts in sorted(tally.statuses.items())
        },
        "failures": dict(sorted(tally.failures.items())),
        "five_xx": tally.five_xx,
        "transport_errors": tally.transport_errors,
        "degraded_503": tally.degraded_503,
        "answers": {
            "degraded_503_with_retry_after": dict(sorted(tally.degraded_by_step.items())),
            "five_xx_errors": {
                step: dict(sorted(kinds.items()))
                for step, kinds in sorted(tally.five_xx_by_step.items())
            },
            "transport_errors": {
                step: dict(sorted(kinds.items()))
                for step, kinds in sorted(tally.transport_by_step.items())
            },
            "retries": tally.retries,
            "recovered_after_retry": tally.recovered_after_retry,
            "gave_up_after_retries": tally.gave_up_after_retries,
            "after_retry": dict(sorted(tally.after_retry.items())),
            "token_requests_over_agent_timeout": tally.over_agent_timeout,
            "agent_timeout_s": AGENT_TIMEOUT_S,
            "client_timeout_s": CLIENT_TIMEOUT_S,
        },
        "expiries_crossed_per_user": 1,
        "upstream_refreshes": int(counters.get("refreshes", -1)),
        "upstream_refreshes_per_user": {str(k): v for k, v in sorted(per_user.items())},
        "refreshes_for_unknown_subjects": len(unexpected_subjects),
        "refreshes_during_phase1": int(tally.counters_after_phase1.get("refreshes", -1)),
        "phase1_margin_s": tally.phase1_margin_s,
        "replayed_refresh_tokens": replayed,
        "tokens_checked": len(tally.token_subjects),
        "tokens_unverified": unverified,
        "cross_user_tokens": cross_user,
        "pre_expiry_tokens_served_after_expiry": old_after_expiry,
        "vault_entries": tally.vault.get("entries"),
        "vault_problems": tally.vault.get("problems", {}),
        "lost_or_corrupted_vault_entries": lost,
        "vault_users_not_connected": tally.vault.get("not_connected"),
        "latency_ms": {
            "p50": _percentile(all_latencies, 50),
            "p99": _percentile(all_latencies, 99),
            "phase1": {
                "p50": _percentile(tally.latencies_ms[1], 50),
                "p99": _percentile(tally.latencies_ms[1], 99),
            },
            "phase2": {
                "p50": _percentile(tally.latencies_ms[2], 50),
                "p99": _percentile(tally.latencies_ms[2], 99),
                "max": _percentile(tally.latencies_ms[2], 100),
            },
        },
        "seconds": tally.seconds,
        "wall_seconds": round(wall, 2),
        "time_limit_s": time_limit_s,
        "timed_out": timed_out,
        "stopped_in": None if tally.stage == "done" else tally.stage,
        "timing": {
            "stop_reason": tally.stop_reason,
            "budgets_s": tally.budgets_s,
            "answers_per_second": {
                stage: round(tally.answers_by_stage[stage] / seconds, 1)
                for stage, seconds in tally.seconds.items()
                if seconds > 0 and tally.answers_by_stage[stage]
            },
            "calibration": tally.calibration,
            "host": host,
        },
    }
    report["pass"] = (
        not timed_out
        and tally.stage == "done"
        and flows == n_users
        and token_requests == expected_requests
        and ok_tokens == expected_requests
        and tally.five_xx == 0
        and tally.transport_errors == 0
        and refreshes_ok
        and replayed == 0
        and cross_user == 0
        and unverified == 0
        and lost == 0
    )
    return report


def run(
    *,
    users: int = 200,
    requests_per_user: int = 8,
    concurrency: int = 32,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """`time_limit_s`: a hard cap over the whole run; without it every stage gets a budget
    scaled to the host (see the module's docstring) and DEFAULT_HARD_CAP_S is the safety net."""
    hard_cap = DEFAULT_HARD_CAP_S if time_limit_s is None else time_limit_s
    if users < 1 or requests_per_user < 1 or concurrency < 1 or hard_cap <= 0:
        raise ValueError("users, requests_per_user, concurrency and time_limit_s must be > 0")
    started = time.perf_counter()
    deadline = started + hard_cap
    host: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average_at_start": _load_average()}
    tally = Tally()
    people: list[User] = []
    timed_out = False
    children: list[procs.Child] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    keep = os.environ.get("BENCH_LOAD_LOGS")  # a directory to keep the processes' logs in
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        logs = Path(keep) if keep else Path(tmp)
        try:
            moto_port = procs.free_port()
            moto = procs.start(
                "moto",
                [
                    sys.executable,
                    "-m",
                    "devstack.moto_server",
                    "-H",
                    procs.LOOPBACK,
                    "-p",
                    str(moto_port),
                ],
                env=env,
                log_dir=logs,
                cwd=ROOT,
            )
            children.append(moto)
            provider_port = procs.free_port()
            fake = procs.start(
                "fake-provider",
                [
                    sys.executable,
                    "-m",
                    "tests.fakes.provider",
                    "--port",
                    str(provider_port),
                    "--client-id",
                    PROVIDER_CLIENT[0],
                    "--client-secret",
                    PROVIDER_CLIENT[1],
                ],
                env=env,
                log_dir=logs,
                cwd=ROOT,
            )
            children.append(fake)
            moto_url = f"http://{procs.LOOPBACK}:{moto_port}"
            provider_url = f"http://{procs.LOOPBACK}:{provider_port}"
            procs.wait_http(moto, f"{moto_url}/moto-api/")
            procs.wait_http(fake, f"{provider_url}/.well-known/openid-configuration")

            local = aws.bootstrap(moto_url, users={}, providers={PROVIDER: PROVIDER_CLIENT})
            setup_start = time.perf_counter()
            people = _create_users(local, users)
            tally.seconds["cognito_users"] = round(time.perf_counter() - setup_start, 2)
            entry: dict[str, object] = {
                "name": PROVIDER,
                "kind": "oidc",
                "client_id": PROVIDER_CLIENT[0],
                "issuer": provider_url,
                "secret_arn": local.provider_secrets[PROVIDER],
            }
            binders: list[Binder] = []
            for name in ("binder-a", "binder-b"):
                public, internal = procs.free_port(), procs.free_port()
                child = procs.start(
                    name,
                    [sys.executable, "-m", "binder"],
                    env=services.binder_env(
                        local,
                        [entry],
                        public_port=public,
                        internal_port=internal,
                        REFRESH_SKEW_SECONDS=str(REFRESH_SKEW_SECONDS),
                        TOKEN_CACHE_SECONDS=str(TOKEN_CACHE_SECONDS),
                    ),
                    log_dir=logs,
                    cwd=ROOT,
                )
                children.append(child)
                binders.append(
                    Binder(
                        child=child,
                        public=f"http://{procs.LOOPBACK}:{public}",
                        internal=f"http://{procs.LOOPBACK}:{internal}",
                    )
                )
            for binder in binders:
                procs.wait_http(binder.child, f"{binder.internal}/healthz")
            tally.seconds["setup"] = round(time.perf_counter() - started, 2)

            async def main() -> None:
                driver = Driver(
                    users=people,
                    binders=binders,
                    provider=provider_url,
                    tally=tally,
                    requests_per_user=requests_per_user,
                    concurrency=concurrency,
                )
                try:
                    await asyncio.wait_for(
                        _drive(
                            driver,
                            local,
                            setup_s_per_user=tally.seconds["cognito_users"] / users,
                            hard_deadline=deadline,
                        ),
                        deadline - time.perf_counter(),
                    )
                except TimeoutError:
                    tally.stop_reason = tally.stop_reason or "time_limit"
                    raise
                finally:
                    await driver.http.aclose()

            if time.perf_counter() >= deadline:
                tally.stop_reason = "time_limit"
                raise TimeoutError
            asyncio.run(main())
        except TimeoutError:
            timed_out = True
        finally:
            wall = time.perf_counter() - started
            host["load_average_at_end"] = _load_average()
            report = _report(
                users=people,
                n_users=users,
                requests_per_user=requests_per_user,
                concurrency=concurrency,
                time_limit_s=hard_cap,
                tally=tally,
                timed_out=timed_out,
                wall=wall,
                host=host,
            )
            if not report["pass"]:
                report["log_tails"] = {c.name: c.log_tail(8) for c in children}
            for child in reversed(children):
                child.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--requests-per-user", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help=(
            "hard cap in seconds over the whole run (default: stage budgets scaled to the "
            f"host, and {DEFAULT_HARD_CAP_S:.0f} s as a safety net)"
        ),
    )
    args = parser.parse_args(argv)
    report = run(
        users=args.users,
        requests_per_user=args.requests_per_user,
        concurrency=args.concurrency,
        time_limit_s=args.time_limit,
    )
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
