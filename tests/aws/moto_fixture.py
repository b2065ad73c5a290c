#!/usr/bin/env python3
"""moto-backed AWS IAM fixture for nhi-assure's Rust tests.

    python3 tests/aws/moto_fixture.py SCENARIO.json [--proxy-fail-all CODE]
        [--proxy-throttle-first N] [--proxy-fail-action Action=CODE[:ErrorCode] ...]
        [--proxy-gaad-roles-first] [--proxy-last-accessed-in-progress N]
        [--verbose]

Starts moto in-process plus a counting / fault-injecting HTTP proxy in front of
it, seeds the scenario, back-dates timestamps through moto's in-process backend,
prints ONE line of JSON on stdout and then serves until stdin reaches EOF (or
SIGTERM/SIGINT). See README.md next to this file for the protocol and the
scenario format.

stdout carries only the ready line; everything else goes to stderr, and stderr
stays quiet unless --verbose: a test that pipes stderr without reading it must
not be able to deadlock the servers once a pipe buffer fills up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROCESS_START = time.monotonic()  # start-up time is reported from here, imports included

ACCOUNT_ID = "123456789012"  # moto's DEFAULT_ACCOUNT_ID: what "testing" credentials map to
REGION = "us-east-1"
PARTITION = "aws"

# Set before moto/boto3 are imported so both read a hermetic environment: no profile,
# config file or endpoint override of the developer's or CI's can leak into seeding.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IAM",
             "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
})
# Without MOTO_ACCOUNT_ID moto resolves the account per request via
# iam.models.get_account_id_from, which instantiates the IAM backend of every partition
# (aws-cn, aws-us-gov, ...); with AWS managed policies loaded that costs ~1 s on the
# first request. Pinning is also what the credentials "testing" resolve to anyway.
# A scenario with "accounts" unpins it again (see run()).
os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT_ID

import boto3  # noqa: E402
import botocore.config  # noqa: E402


def log(msg: str) -> None:
    print(f"[moto_fixture] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Scenario validation
# ---------------------------------------------------------------------------

class ScenarioError(ValueError):
    pass


# A typo such as "create_days_ago" would otherwise be silently ignored and the test
# would assert against data that was never seeded, so unknown fields are rejected.
ALLOWED_FIELDS = {
    "scenario": {"users", "groups", "roles", "policies", "bulk_users", "root_access_key",
                 "aws_managed_policies", "description", "principals", "accounts",
                 "oidc_providers", "service_linked_roles", "service_specific_credentials",
                 "credential_report", "service_last_accessed", "organization"},
    # Another account's IAM: the same sections as the scenario's own.
    "account": {"users", "groups", "roles", "policies", "aws_managed_policies",
                "oidc_providers", "service_linked_roles", "service_last_accessed", "bulk_users"},
    "service_linked_role": {"service", "created_days_ago"},
    "oidc_provider": {"url", "client_ids"},
    "user": {"name", "path", "tags", "login_profile", "mfa", "groups", "managed_policies",
             "inline_policies", "keys", "ssh_keys", "signing_certificates", "created_days_ago"},
    "key": {"name", "status", "created_days_ago", "last_used"},
    "last_used": {"days_ago", "service", "region"},
    "role_last_used": {"days_ago", "region"},
    "login_profile": {"password_last_used_days_ago", "password_reset_required"},
    "ssh_key": {"status", "uploaded_days_ago"},
    "certificate": {"status", "uploaded_days_ago"},
    "group": {"name", "path", "managed_policies", "inline_policies"},
    "role": {"name", "path", "description", "trust", "managed_policies", "inline_policies",
             "tags", "created_days_ago", "last_used", "permissions_boundary",
             "instance_profiles"},
    "policy": {"name", "path", "description", "document"},
    "bulk_users": {"count", "prefix", "keys_per_user", "path", "tags"},
    "service_credential": {"name", "user", "service", "status", "created_days_ago"},
    "root_access_key": {"created_days_ago", "last_used"},
    # An organisation whose management account is the scenario's own.
    "organization": {"role_name", "ous", "accounts"},
    "org_ou": {"name", "parent"},
    "org_account": {"id", "name", "ou", "tags", "state", "assumable"},
}


def check_fields(kind: str, obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - ALLOWED_FIELDS[kind]
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}; "
                            f"allowed: {sorted(ALLOWED_FIELDS[kind])}")
    if "name" in ALLOWED_FIELDS[kind] and not obj.get("name"):
        raise ScenarioError(f"{where}: 'name' is required")
    return obj


def count_or_list(value: Any, kind: str, where: str) -> list[dict]:
    """ssh_keys / signing_certificates: a count of default (Active, uploaded now) items, or
    a list of item specs."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise ScenarioError(f"{where}: expected a count or a list")
    if isinstance(value, int):
        return [{} for _ in range(value)]
    return [check_fields(kind, item, f"{where}[{i}]") for i, item in enumerate(value)]


# ---------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------

def json_doc(doc: Any) -> str:
    return doc if isinstance(doc, str) else json.dumps(doc)


def tag_list(tags: dict | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in (tags or {}).items()]


def openssh_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    # moto does not parse SSH keys, but a real key body keeps the data honest should
    # anything downstream (or a future moto) look at it.
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def x509_certificate(common_name: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    # UploadSigningCertificate in moto rejects anything x509.load_pem_x509_certificate
    # cannot parse, so a real (self-signed) certificate is required.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class Seeder:
    """Creates the scenario through the IAM API (so moto's own validation applies), then
    adjusts what the API cannot set (timestamps, last-used data, root) on the shared
    in-process backend objects."""

    def __init__(self, scenario: dict, endpoint: str, account: str = ACCOUNT_ID):
        self.account = account
        self.scenario = check_fields("scenario" if account == ACCOUNT_ID else "account", scenario,
                                     "scenario" if account == ACCOUNT_ID else f"accounts.{account}")
        self.iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name=REGION,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        if account != ACCOUNT_ID:
            # moto's per-request account override (honoured once MOTO_ACCOUNT_ID is unset).
            def to_account(request: Any, **_: Any) -> None:
                request.headers["x-moto-account-id"] = account
            self.iam.meta.events.register("before-sign.iam.*", to_account)
        # Timestamps are whole seconds, as AWS returns them, and naive UTC, as moto stores
        # them (moto.core.utils.utcnow()). "N days ago" is measured from this instant.
        self.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
        self.keys: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.roles: dict[str, str] = {}
        self.policy_arns: dict[str, str] = {}
        # What has been back-dated, re-read through the API at the end as a self-check.
        self.expect_keys: list[tuple[str, str, dict]] = []
        self.expect_users: dict[str, dict] = {}
        self.expect_roles: dict[str, dict] = {}
        # Served by the proxy (moto does not implement ListServiceSpecificCredentials);
        # None: not in the scenario, the request goes to moto (an HTML 500).
        self.service_credentials: list[dict] | None = None
        # Service last-accessed data, served by the proxy (moto lacks the API).
        self.last_accessed: dict[str, dict[str, dt.datetime | None]] = {}
        self.other_last_accessed: dict[str, dict[str, dict[str, dt.datetime | None]]] = {}

    @property
    def backend(self) -> Any:
        from moto.iam.models import iam_backends

        # IAM is global: moto keys its backends by partition, not by region.
        return iam_backends[self.account][PARTITION]

    def days_ago(self, days: float | None) -> dt.datetime | None:
        return None if days is None else self.now - dt.timedelta(days=days)

    def resolve_policy(self, ref: str) -> str:
        if ref.startswith("custom:"):
            name = ref[len("custom:"):]
            if name not in self.policy_arns:
                raise ScenarioError(f"{ref}: no policy named {name!r} in 'policies'")
            return self.policy_arns[name]
        return ref

    def add_key_name(self, logical: str, key_id: str) -> None:
        if logical in self.keys:
            raise ScenarioError(f"duplicate logical key name {logical!r}")
        self.keys[logical] = key_id

    # -- entry point --------------------------------------------------------

    def seed(self) -> None:
        s = self.scenario
        self.load_aws_managed_policies(s.get("aws_managed_policies", "all"))
        for i, policy in enumerate(s.get("policies") or []):
            self.seed_policy(check_fields("policy", policy, f"policies[{i}]"))
        for i, group in enumerate(s.get("groups") or []):
            self.seed_group(check_fields("group", group, f"groups[{i}]"))
        for i, user in enumerate(s.get("users") or []):
            self.seed_user(check_fields("user", user, f"users[{i}]"))
        for i, provider in enumerate(s.get("oidc_providers") or []):
            self.seed_oidc_provider(check_fields("oidc_provider", provider,
                                                 f"oidc_providers[{i}]"))
        for i, role in enumerate(s.get("roles") or []):
            self.seed_role(check_fields("role", role, f"roles[{i}]"))
        for i, slr in enumerate(s.get("service_linked_roles") or []):
            self.seed_service_linked_role(check_fields("service_linked_role", slr,
                                                       f"service_linked_roles[{i}]"))
        if s.get("bulk_users"):
            self.seed_bulk(check_fields("bulk_users", s["bulk_users"], "bulk_users"))
        if "root_access_key" in s:
            self.seed_root(s["root_access_key"])
        if "service_specific_credentials" in s:
            self.seed_service_credentials(s["service_specific_credentials"])
        report = s.get("credential_report", "moto")
        if report not in ("moto", "aws"):
            raise ScenarioError(f"credential_report: expected 'moto' or 'aws', got {report!r}")
        if report == "aws":
            self.fill_report_key_usage()
        self.last_accessed = self.check_last_accessed(s.get("service_last_accessed") or {})
        self.verify()
        # Other accounts, each through its own backend; logical key names stay unique
        # across all of them.
        for account, sub in (s.get("accounts") or {}).items():
            if not (isinstance(account, str) and len(account) == 12 and account.isdigit()) \
                    or account == ACCOUNT_ID:
                raise ScenarioError(f"accounts: {account!r} is not another 12-digit account id")
            sub = dict(check_fields("account", sub, f"accounts.{account}"))
            sub.setdefault("aws_managed_policies", s.get("aws_managed_policies", "all"))
            other = Seeder(sub, self.iam.meta.endpoint_url, account)
            other.seed()
            self.other_last_accessed[account] = other.last_accessed
            for logical, key_id in other.keys.items():
                self.add_key_name(logical, key_id)

    def check_last_accessed(self, spec: Any) -> dict[str, dict[str, dt.datetime | None]]:
        """{principal name: {service namespace: days ago | null}} -> the same with
        instants (None: listed, never accessed in the tracking period)."""
        if not isinstance(spec, dict):
            raise ScenarioError("service_last_accessed: expected an object")
        known = {u["name"] for u in self.scenario.get("users") or []} | \
                {r["name"] for r in self.scenario.get("roles") or []}
        out: dict[str, dict[str, dt.datetime | None]] = {}
        for name, services in spec.items():
            if name not in known:
                raise ScenarioError(f"service_last_accessed: no user or role named {name!r}")
            if not isinstance(services, dict):
                raise ScenarioError(f"service_last_accessed.{name}: expected an object")
            for ns, days in services.items():
                if days is not None and not isinstance(days, (int, float)):
                    raise ScenarioError(f"service_last_accessed.{name}.{ns}: days ago or null")
            out[name] = {ns: self.days_ago(days) for ns, days in services.items()}
        return out

    # -- AWS managed policies -----------------------------------------------

    def load_aws_managed_policies(self, mode: str) -> None:
        # moto only preloads its ~1,500 AWS managed policies when
        # MOTO_IAM_LOAD_MANAGED_POLICIES=true (read when the backend is first built, which
        # is here). "referenced" loads just the ones the scenario names, the same way moto
        # does: an unfiltered GetAccountAuthorizationDetails then answers in milliseconds
        # instead of ~1.3 s and 5 MB, and ListPolicies(Scope=AWS) stays small.
        if mode not in ("all", "referenced"):
            raise ScenarioError("aws_managed_policies: expected 'all' or 'referenced'")
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true" if mode == "all" else "false"
        backend = self.backend
        if mode == "all":
            return

        from moto.iam.aws_managed_policies import aws_managed_policies_data
        from moto.iam.models import AWSManagedPolicy

        wanted = {ref for ref in self.all_policy_refs() if ref.startswith("arn:aws:iam::aws:policy/")}
        for name, data in json.loads(aws_managed_policies_data).items():
            arn = f"arn:aws:iam::aws:policy{data.get('Path') or '/'}{name}"  # AWSManagedPolicy.arn
            if arn in wanted:
                policy = AWSManagedPolicy.from_data(name, self.account, REGION, data)
                backend.aws_managed_policies.append(policy)
                backend.managed_policies[policy.arn] = policy
                wanted.discard(arn)
        if wanted:
            raise ScenarioError(f"unknown AWS managed policies: {sorted(wanted)}")

    def all_policy_refs(self) -> list[str]:
        s = self.scenario
        holders = list(s.get("users") or []) + list(s.get("groups") or []) + list(s.get("roles") or [])
        return [ref for h in holders if isinstance(h, dict) for ref in h.get("managed_policies") or []]

    # -- policies, groups ---------------------------------------------------

    def seed_policy(self, p: dict) -> None:
        if "document" not in p:
            raise ScenarioError(f"policy {p['name']}: 'document' is required")
        args = {"PolicyName": p["name"], "PolicyDocument": json_doc(p["document"])}
        if p.get("path"):
            args["Path"] = p["path"]
        if p.get("description"):
            args["Description"] = p["description"]
        self.policy_arns[p["name"]] = self.iam.create_policy(**args)["Policy"]["Arn"]

    def seed_group(self, g: dict) -> None:
        name = g["name"]
        self.iam.create_group(GroupName=name, **({"Path": g["path"]} if g.get("path") else {}))
        for ref in g.get("managed_policies") or []:
            self.iam.attach_group_policy(GroupName=name, PolicyArn=self.resolve_policy(ref))
        for pname, doc in (g.get("inline_policies") or {}).items():
            self.iam.put_group_policy(GroupName=name, PolicyName=pname, PolicyDocument=json_doc(doc))

    # -- users --------------------------------------------------------------

    def seed_user(self, u: dict) -> None:
        name = u["name"]
        args: dict[str, Any] = {"UserName": name, "Tags": tag_list(u.get("tags"))}
        if u.get("path"):
            args["Path"] = u["path"]
        self.users[name] = self.iam.create_user(**args)["User"]["Arn"]
        moto_user = self.backend.users[name]

        login = u.get("login_profile", False)
        if login is not None and login is not False:  # {} means "a login profile, defaults"
            login = {} if login is True else check_fields("login_profile", login, f"user {name}: login_profile")
            self.iam.create_login_profile(
                UserName=name, Password="Fixture-Passw0rd!",
                PasswordResetRequired=bool(login.get("password_reset_required", False)))
            # Surfaces as PasswordLastUsed in GetUser/ListUsers and password_last_used in
            # the credential report (moto documents this attribute as public API).
            moto_user.password_last_used = self.days_ago(login.get("password_last_used_days_ago"))

        if u.get("mfa"):
            serial = self.iam.create_virtual_mfa_device(
                VirtualMFADeviceName=f"{name}-mfa")["VirtualMFADevice"]["SerialNumber"]
            self.iam.enable_mfa_device(UserName=name, SerialNumber=serial,
                                       AuthenticationCode1="123456", AuthenticationCode2="654321")

        for group in u.get("groups") or []:
            self.iam.add_user_to_group(GroupName=group, UserName=name)
        for ref in u.get("managed_policies") or []:
            self.iam.attach_user_policy(UserName=name, PolicyArn=self.resolve_policy(ref))
        for pname, doc in (u.get("inline_policies") or {}).items():
            self.iam.put_user_policy(UserName=name, PolicyName=pname, PolicyDocument=json_doc(doc))

        for i, key in enumerate(u.get("keys") or []):
            self.seed_key(name, check_fields("key", key, f"user {name}: keys[{i}]"))

        for spec in count_or_list(u.get("ssh_keys"), "ssh_key", f"user {name}: ssh_keys"):
            key_id = self.iam.upload_ssh_public_key(
                UserName=name, SSHPublicKeyBody=openssh_public_key())["SSHPublicKey"]["SSHPublicKeyId"]
            if spec.get("status", "Active") != "Active":
                self.iam.update_ssh_public_key(UserName=name, SSHPublicKeyId=key_id, Status=spec["status"])
            if spec.get("uploaded_days_ago") is not None:
                moto_user.get_ssh_public_key(key_id).upload_date = self.days_ago(spec["uploaded_days_ago"])

        certs = count_or_list(u.get("signing_certificates"), "certificate", f"user {name}: signing_certificates")
        for spec in certs:
            cert_id = self.iam.upload_signing_certificate(
                UserName=name, CertificateBody=x509_certificate(name))["Certificate"]["CertificateId"]
            if spec.get("status", "Active") != "Active":
                self.iam.update_signing_certificate(UserName=name, CertificateId=cert_id, Status=spec["status"])
            if spec.get("uploaded_days_ago") is not None:
                moto_user.signing_certificates[cert_id].upload_date = self.days_ago(spec["uploaded_days_ago"])

        # Last, so nothing above can overwrite it. GetLoginProfile's CreateDate is this
        # value too: moto keeps no separate login-profile date.
        if u.get("created_days_ago") is not None:
            moto_user.create_date = self.days_ago(u["created_days_ago"])
            self.expect_users[name] = {"create": moto_user.create_date}

    def seed_key(self, user_name: str, k: dict) -> None:
        from moto.iam.models import AccessKeyLastUsed

        key_id = self.iam.create_access_key(UserName=user_name)["AccessKey"]["AccessKeyId"]
        self.add_key_name(k["name"], key_id)
        status = k.get("status", "Active")
        if status != "Active":
            self.iam.update_access_key(UserName=user_name, AccessKeyId=key_id, Status=status)

        # The same AccessKey object sits in user.access_keys and backend.access_keys, so
        # one assignment is seen by ListAccessKeys, GetAccessKeyLastUsed and the
        # credential report alike.
        key = self.backend.users[user_name].get_access_key_by_id(key_id)
        if k.get("created_days_ago") is not None:
            key.create_date = self.days_ago(k["created_days_ago"])
        last = k.get("last_used")
        if last is not None:
            last = check_fields("last_used", last, f"key {k['name']}: last_used")
            # AccessKeyLastUsed, not a bare datetime: GetAccessKeyLastUsed reads
            # .timestamp/.service/.region and the credential report calls .strftime().
            key.last_used = AccessKeyLastUsed(
                timestamp=self.days_ago(last.get("days_ago", 0)),
                service=last.get("service", "iam"), region=last.get("region", REGION))
        self.expect_keys.append((user_name, key_id, {
            "create": key.create_date, "status": status,
            "last_used": key.last_used.timestamp if key.last_used else None}))

    # -- roles --------------------------------------------------------------

    def seed_oidc_provider(self, p: dict) -> None:
        # Roles trusting it name its ARN, arn:aws:iam::<account>:oidc-provider/<host/path>.
        self.iam.create_open_id_connect_provider(
            Url=p["url"], ClientIDList=p.get("client_ids") or ["sts.amazonaws.com"],
            ThumbprintList=["6938fd4d98bab03faadb97b34396831e3780aea1"])

    def seed_role(self, r: dict) -> None:
        name = r["name"]
        trust = r.get("trust") or {"Version": "2012-10-17", "Statement": []}
        args: dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": json_doc(trust),
                                "Tags": tag_list(r.get("tags"))}
        if r.get("path"):
            args["Path"] = r["path"]
        if r.get("description"):
            args["Description"] = r["description"]
        if r.get("permissions_boundary"):
            args["PermissionsBoundary"] = self.resolve_policy(r["permissions_boundary"])
        role = self.iam.create_role(**args)["Role"]
        self.roles[name] = role["Arn"]
        for ref in r.get("managed_policies") or []:
            self.iam.attach_role_policy(RoleName=name, PolicyArn=self.resolve_policy(ref))
        for pname, doc in (r.get("inline_policies") or {}).items():
            self.iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=json_doc(doc))
        # Instance profiles by name: the role is what EC2 instances launched with them wear.
        for profile in r.get("instance_profiles") or []:
            self.iam.create_instance_profile(InstanceProfileName=profile)
            self.iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=name)

        # moto keys roles by RoleId, not by name.
        moto_role = self.backend.roles[role["RoleId"]]
        if r.get("created_days_ago") is not None:
            moto_role.create_date = self.days_ago(r["created_days_ago"])
        last = r.get("last_used")
        if last is not None:
            last = check_fields("role_last_used", last, f"role {name}: last_used")
            # Role.last_used / last_used_region are documented by moto as public API
            # (getmoto/moto#6859); GetRole reports them as RoleLastUsed.
            moto_role.last_used = self.days_ago(last.get("days_ago", 0))
            moto_role.last_used_region = last.get("region", REGION)
        self.expect_roles[name] = {"create": moto_role.create_date, "last_used": moto_role.last_used}

    def seed_service_linked_role(self, r: dict) -> None:
        # CreateServiceLinkedRole, as the service itself would: AWS names the role
        # (AWSServiceRoleFor...) and puts it under /aws-service-role/<service>/.
        role = self.iam.create_service_linked_role(AWSServiceName=r["service"])["Role"]
        self.roles[role["RoleName"]] = role["Arn"]
        moto_role = self.backend.roles[role["RoleId"]]
        if r.get("created_days_ago") is not None:
            moto_role.create_date = self.days_ago(r["created_days_ago"])
        self.expect_roles[role["RoleName"]] = {"create": moto_role.create_date,
                                               "last_used": moto_role.last_used}

    # -- bulk users -----------------------------------------------------------

    def seed_bulk(self, b: dict) -> None:
        count = int(b.get("count", 0))
        prefix = b.get("prefix", "svc-bulk-")
        per_user = int(b.get("keys_per_user", 1))
        path = b.get("path") or "/"
        tags = tag_list(b.get("tags"))
        backend = self.backend
        # Straight into the backend: ~20x faster than one HTTP round trip per call. These
        # are the exact calls moto's CreateUser/CreateAccessKey handlers make (with the
        # request region), so the objects are indistinguishable from API-created ones,
        # including the 2-keys-per-user limit.
        for i in range(count):
            name = f"{prefix}{i}"
            user = backend.create_user(REGION, user_name=name, path=path, tags=tags)
            self.users[name] = user.arn
            for j in range(per_user):
                self.add_key_name(f"{name}-key-{j}", backend.create_access_key(name).access_key_id)

    # -- service-specific credentials ----------------------------------------

    def seed_service_credentials(self, specs: Any) -> None:
        import random
        import string

        if not isinstance(specs, list):
            raise ScenarioError("service_specific_credentials: expected a list")
        out = []
        for i, spec in enumerate(specs):
            spec = check_fields("service_credential", spec, f"service_specific_credentials[{i}]")
            if spec.get("user") not in self.users:
                raise ScenarioError(f"service_specific_credentials[{i}]: no user {spec.get('user')!r}")
            cred_id = "ACCA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=17))
            self.add_key_name(spec["name"], cred_id)
            service = spec.get("service", "codecommit.amazonaws.com")
            out.append({"id": cred_id, "user": spec["user"], "service": service,
                        "status": spec.get("status", "Active"),
                        "created": self.days_ago(spec.get("created_days_ago", 0)),
                        "service_user_name": f"{spec['user']}-at-{self.account}"})
        self.service_credentials = out

    # -- credential report: key usage as AWS writes it -------------------------

    def fill_report_key_usage(self) -> None:
        # moto writes not_supported in access_key_N_last_used_region / _service; AWS
        # writes the key's last region and service, or N/A when never used. With
        # credential_report "aws" the report carries them, from the same AccessKeyLastUsed
        # GetAccessKeyLastUsed reads.
        import csv
        import io

        backend = self.backend
        inner = backend.get_credential_report

        def report_with_key_usage() -> str:
            rows = list(csv.reader(io.StringIO(inner())))
            header = rows[0]
            for row in rows[1:]:
                user = backend.users.get(row[header.index("user")])
                if user is None:  # <root_account>: filled by seed_root
                    continue
                for slot, key in zip(("access_key_1", "access_key_2"), user.access_keys[:2]):
                    last = key.last_used
                    row[header.index(f"{slot}_last_used_region")] = last.region if last else "N/A"
                    row[header.index(f"{slot}_last_used_service")] = last.service if last else "N/A"
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            return out.getvalue()

        backend.get_credential_report = report_with_key_usage

    # -- root -----------------------------------------------------------------

    def seed_root(self, spec: Any) -> None:
        # moto models no root credentials: its credential report lists only IAM users
        # (no <root_account> row) and GetAccountSummary hard-codes
        # AccountAccessKeysPresent=0 with no API to change it. When the scenario sets
        # root_access_key, the fixture supplies both as AWS would: it sets the summary
        # flag on moto's AccountSummary and prepends a <root_account> row to the report.
        if isinstance(spec, bool):
            active, spec = spec, {}
        else:
            active, spec = True, check_fields("root_access_key", spec, "root_access_key")
        backend = self.backend
        backend.account_summary._account_access_keys_present = 1 if active else 0

        fmt = "%Y-%m-%dT%H:%M:%S+00:00"  # the credential report's format, as moto writes it
        created = self.days_ago(1000)  # account creation time: arbitrary but fixed
        if active:
            rotated = self.days_ago(spec.get("created_days_ago", 0))
            last = spec.get("last_used")
            if last is not None:
                last = check_fields("last_used", last, "root_access_key: last_used")
                key1 = ["true", rotated.strftime(fmt), self.days_ago(last.get("days_ago", 0)).strftime(fmt),
                        last.get("region", REGION), last.get("service", "iam")]
            else:
                key1 = ["true", rotated.strftime(fmt), "N/A", "N/A", "N/A"]
        else:
            key1 = ["false", "N/A", "N/A", "N/A", "N/A"]
        row = ",".join(["<root_account>", f"arn:aws:iam::{self.account}:root", created.strftime(fmt),
                        "not_supported", "no_information", "not_supported", "not_supported", "false",
                        *key1, "false", "N/A", "N/A", "N/A", "N/A", "false", "N/A", "false", "N/A"])

        moto_report = backend.get_credential_report

        def report_with_root_row() -> str:
            report = moto_report()  # raises ReportNotPresent before GenerateCredentialReport
            header, _, users = report.partition("\n")
            return f"{header}\n{row}\n{users}"

        # An instance attribute shadows the method; moto's handler calls
        # self.backend.get_credential_report().
        backend.get_credential_report = report_with_root_row

    # -- self-check -------------------------------------------------------------

    def verify(self) -> None:
        """Read back-dated values through the API: if a moto upgrade changes the models,
        fail here (exit 1) rather than hand the Rust tests silently wrong data."""
        def utc(value: dt.datetime | None) -> dt.datetime | None:
            return value.replace(tzinfo=dt.timezone.utc) if value else None

        def expect(what: str, got: Any, want: Any) -> None:
            if got != want:
                raise RuntimeError(f"back-dating did not take: {what}: API returned {got!r}, expected {want!r}")

        listed: dict[str, dict] = {}
        for user_name, key_id, want in self.expect_keys:
            if user_name not in listed:
                listed[user_name] = {m["AccessKeyId"]: m for m in
                                     self.iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]}
            meta = listed[user_name][key_id]
            expect(f"{key_id} CreateDate", meta["CreateDate"], utc(want["create"]))
            expect(f"{key_id} Status", meta["Status"], want["status"])
            last = self.iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
            expect(f"{key_id} LastUsedDate", last.get("LastUsedDate"), utc(want["last_used"]))
        for name, want in self.expect_users.items():
            expect(f"user {name} CreateDate", self.iam.get_user(UserName=name)["User"]["CreateDate"],
                   utc(want["create"]))
        for name, want in self.expect_roles.items():
            role = self.iam.get_role(RoleName=name)["Role"]
            expect(f"role {name} CreateDate", role["CreateDate"], utc(want["create"]))
            expect(f"role {name} RoleLastUsed", role.get("RoleLastUsed", {}).get("LastUsedDate"),
                   utc(want["last_used"]))


# ---------------------------------------------------------------------------
# Proxy
# ---------------------------------------------------------------------------

class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.total = 0
            self.actions: dict[str, int] = {}
            self.fault_total = 0
            self.fault_actions: dict[str, int] = {}

    def record(self, action: str, fault: bool) -> None:
        with self.lock:
            self.total += 1
            self.actions[action] = self.actions.get(action, 0) + 1
            if fault:
                self.fault_total += 1
                self.fault_actions[action] = self.fault_actions.get(action, 0) + 1

    def snapshot(self) -> dict:
        with self.lock:
            return {"total": self.total, "actions": dict(self.actions),
                    "faults": {"total": self.fault_total, "actions": dict(self.fault_actions)}}


# Error codes for injected statuses that have no code of their own on the command line.
DEFAULT_ERROR_CODES = {400: "InvalidInput", 401: "InvalidClientTokenId", 403: "AccessDenied",
                       404: "NoSuchEntity", 409: "EntityAlreadyExists", 429: "Throttling"}


def parse_fault(spec: str, default_5xx: str) -> tuple[int, str]:
    """'503' or '403:AccessDenied' -> (status, IAM error code)."""
    status_text, _, code = spec.partition(":")
    status = int(status_text)
    if not 400 <= status <= 599:
        raise argparse.ArgumentTypeError(f"fault status must be 4xx or 5xx, got {status}")
    return status, code or (default_5xx if status >= 500 else DEFAULT_ERROR_CODES.get(status, "InvalidInput"))


class Faults:
    def __init__(self, fail_all: tuple[int, str] | None, throttle_first: int,
                 per_action: dict[str, tuple[int, str]], gaad_roles_first: bool = False):
        self.fail_all = fail_all
        self.throttle_left = throttle_first
        self.per_action = per_action
        self.gaad_roles_first = gaad_roles_first
        self.lock = threading.Lock()

    def decide(self, action: str, params: dict[str, list[str]] | None = None) -> tuple[int, str, str] | None:
        """(status, code, message) to answer with instead of forwarding, or None. A rule
        for "Action/Param" applies only to requests of Action that carry Param."""
        if self.fail_all:
            return (*self.fail_all, "injected")
        with self.lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                return 400, "Throttling", "Rate exceeded"
        for param in params or {}:
            if f"{action}/{param}" in self.per_action:
                return (*self.per_action[f"{action}/{param}"], "injected")
        if action in self.per_action:
            return (*self.per_action[action], "injected")
        return None


def error_body(status: int, code: str, message: str) -> bytes:
    kind = "Receiver" if status >= 500 else "Sender"
    return (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>x</RequestId></ErrorResponse>").encode()


HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "host",
              "content-length", "server", "date"}


def request_params(query: str, body: bytes, content_type: str) -> dict[str, list[str]]:
    params = urllib.parse.parse_qs(query)
    if "Action" not in params and body and (not content_type or "x-www-form-urlencoded" in content_type):
        params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return params


def request_action(query: str, body: bytes, content_type: str) -> str:
    return request_params(query, body, content_type).get("Action", ["Unknown"])[0]


GAAD_SECOND_PAGE = "users-page"


def gaad_page(data: bytes, marker: str | None) -> bytes:
    """--proxy-gaad-roles-first: moto answers GetAccountAuthorizationDetails in one
    page; AWS pages it and guarantees no order across pages. Page 1 carries everything
    but the users (roles first), page 2 (Marker users-page) only the users."""
    import re

    text = data.decode("utf-8")
    if marker == GAAD_SECOND_PAGE:
        for tag in ("RoleDetailList", "GroupDetailList", "Policies"):
            text = re.sub(rf"<{tag}>.*?</{tag}>", f"<{tag}></{tag}>", text, flags=re.S)
        return text.encode()
    text = re.sub(r"<UserDetailList>.*?</UserDetailList>", "<UserDetailList></UserDetailList>", text, flags=re.S)
    text = re.sub(r"<IsTruncated>\s*false\s*</IsTruncated>",
                  f"<IsTruncated>true</IsTruncated><Marker>{GAAD_SECOND_PAGE}</Marker>", text)
    return text.encode()


def service_credentials_page(creds: list[dict], params: dict[str, list[str]]) -> bytes:
    """ListServiceSpecificCredentials as the IAM API reference documents it (its
    example response, with Marker / IsTruncated): one user's credentials (UserName),
    or every user's (AllUsers=true), MaxItems at a time (default 100) from an index
    Marker."""
    from xml.sax.saxutils import escape

    def one(name: str) -> str:
        return params.get(name, [""])[0]

    if one("AllUsers").lower() == "true":
        chosen = creds
    else:
        chosen = [c for c in creds if c["user"] == one("UserName")]
    if one("ServiceName"):
        chosen = [c for c in chosen if c["service"] == one("ServiceName")]
    start = int(one("Marker") or 0)
    size = int(one("MaxItems") or 100)
    page = chosen[start:start + size]
    members = "".join(
        "<member>"
        f"<ServiceName>{escape(c['service'])}</ServiceName>"
        f"<UserName>{escape(c['user'])}</UserName>"
        f"<CreateDate>{c['created'].strftime('%Y-%m-%dT%H:%M:%SZ')}</CreateDate>"
        f"<ServiceUserName>{escape(c['service_user_name'])}</ServiceUserName>"
        f"<ServiceSpecificCredentialId>{c['id']}</ServiceSpecificCredentialId>"
        f"<Status>{c['status']}</Status>"
        "</member>" for c in page)
    more = start + size < len(chosen)
    tail = f"<IsTruncated>true</IsTruncated><Marker>{start + size}</Marker>" if more \
        else "<IsTruncated>false</IsTruncated>"
    return ('<ListServiceSpecificCredentialsResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            f"<ListServiceSpecificCredentialsResult><ServiceSpecificCredentials>{members}"
            f"</ServiceSpecificCredentials>{tail}</ListServiceSpecificCredentialsResult>"
            "<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>"
            "</ListServiceSpecificCredentialsResponse>").encode()


# Display names for the namespaces tests use; others are shown as their namespace.
SERVICE_NAMES = {"s3": "Amazon Simple Storage Service", "dynamodb": "Amazon DynamoDB",
                 "sqs": "Amazon Simple Queue Service", "sns": "Amazon Simple Notification Service",
                 "iam": "AWS Identity and Access Management", "ec2": "Amazon EC2",
                 "lambda": "AWS Lambda", "sts": "AWS Security Token Service"}
LAST_ACCESSED_ACTIONS = ("GenerateServiceLastAccessedDetails", "GetServiceLastAccessedDetails")
IAM_XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class LastAccessed:
    """Service last-accessed jobs, which moto does not implement, answered from the
    scenario in the shapes of the IAM API reference's examples: Generate returns a
    JobId; Get returns the job (IN_PROGRESS for the first N gets of each job with
    --proxy-last-accessed-in-progress N, then COMPLETED) with one ServicesLastAccessed
    member per service listed for the principal, sorted by namespace, paged by
    MaxItems / Marker."""

    def __init__(self, data: dict[str, dict[str, dict[str, dt.datetime | None]]],
                 in_progress: int):
        self.data = data  # account -> principal name -> namespace -> instant or None
        self.in_progress = in_progress
        self.jobs: dict[str, dict] = {}
        self.lock = threading.Lock()

    @staticmethod
    def wrap(action: str, result: str) -> bytes:
        return (f'<{action}Response xmlns="{IAM_XMLNS}"><{action}Result>{result}</{action}Result>'
                f"<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></{action}Response>").encode()

    def answer(self, action: str, params: dict[str, list[str]]) -> tuple[int, bytes]:
        one = lambda k: params.get(k, [""])[0]  # noqa: E731
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        if action == "GenerateServiceLastAccessedDetails":
            arn = one("Arn")
            parts = arn.split(":")
            if len(parts) < 6 or parts[2] != "iam":
                return 400, error_body(400, "InvalidInput", f"invalid ARN {arn}")
            account, name = parts[4], parts[5].rsplit("/", 1)[-1]
            with self.lock:
                job_id = f"examplef-{len(self.jobs):04d}-c245-eba4-71fe298bcda7"
                self.jobs[job_id] = {"account": account, "name": name, "arn": arn,
                                     "created": now, "gets": 0}
            return 200, self.wrap(action, f"<JobId>{job_id}</JobId>")
        with self.lock:
            job = self.jobs.get(one("JobId"))
            if job is None:
                return 404, error_body(404, "NoSuchEntity", f"no job {one('JobId')}")
            job["gets"] += 1
            running = job["gets"] <= self.in_progress
        head = f"<JobType>SERVICE_LEVEL</JobType><JobCreationDate>{iso(job['created'])}</JobCreationDate>"
        if running:
            return 200, self.wrap(action, f"{head}<JobStatus>IN_PROGRESS</JobStatus>"
                                          "<ServicesLastAccessed></ServicesLastAccessed>")
        services = sorted(self.data.get(job["account"], {}).get(job["name"], {}).items())
        start = int(one("Marker") or 0)
        size = int(one("MaxItems") or 100)
        page = services[start:start + size]
        members = []
        for ns, at in page:
            m = ""
            if at is not None:
                m += (f"<LastAuthenticated>{iso(at)}</LastAuthenticated>"
                      f"<LastAuthenticatedEntity>{job['arn']}</LastAuthenticatedEntity>"
                      f"<LastAuthenticatedRegion>{REGION}</LastAuthenticatedRegion>")
            m += (f"<TotalAuthenticatedEntities>{0 if at is None else 1}</TotalAuthenticatedEntities>"
                  f"<ServiceName>{SERVICE_NAMES.get(ns, ns)}</ServiceName>"
                  f"<ServiceNamespace>{ns}</ServiceNamespace>")
            members.append(f"<member>{m}</member>")
        more = start + size < len(services)
        tail = f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"
        if more:
            tail += f"<Marker>{start + size}</Marker>"
        return 200, self.wrap(action, f"{head}<ServicesLastAccessed>{''.join(members)}</ServicesLastAccessed>"
                                      f"<JobStatus>COMPLETED</JobStatus>"
                                      f"<JobCompletionDate>{iso(now)}</JobCompletionDate>{tail}")


def signing_service(authorization: str) -> str | None:
    # SigV4: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/iam/aws4_request, ..."
    marker = "Credential="
    start = authorization.find(marker)
    if start < 0:
        return None
    scope = authorization[start + len(marker):].split(",", 1)[0].split("/")
    return scope[3] if len(scope) >= 5 else None


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], faults: Faults, verbose: bool):
        self.upstream = upstream
        self.faults = faults
        self.stats = Stats()
        self.verbose = verbose
        self.service_credentials: list[dict] | None = None
        self.last_accessed: LastAccessed | None = None  # set once the scenario is seeded
        # Member roles whose trust does not admit the caller (moto evaluates no trust).
        self.refused_roles: set[str] = set()
        # STS AssumeRole requests as sent (parameters only: no secret is in them), for
        # tests to assert what moto does not enforce (session policy, SourceIdentity, tags).
        self.sts_requests: list[dict[str, list[str]]] = []
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback straight to stderr (bypassing logging) when a
        # client hangs up mid-request, e.g. an SDK timing out; see the module docstring.
        if self.verbose:
            super().handle_error(request, client_address)


class ProxyHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so SDK clients can keep connections alive; every response therefore
    # carries an exact Content-Length.
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.verbose:
            log("proxy: " + format % args)

    def do_GET(self) -> None:
        self.handle_any()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            # The client hung up mid-request: nothing to answer, and a truncated body
            # must neither be counted nor forwarded.
            raise ConnectionAbortedError("request body truncated")
        return body

    def reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            body = self.read_body()
        except (ConnectionError, ValueError):  # hung up, or a malformed chunk size
            self.close_connection = True
            return

        if path == "/_stats" and self.command == "GET":
            return self.reply(200, json.dumps(self.server.stats.snapshot()).encode(),
                              [("Content-Type", "application/json")])
        if path in ("/_assume/refuse", "/_assume/admit") and self.command == "POST":
            # A member role's trust stops (or starts again) admitting the caller.
            role = body.decode("utf-8", "replace").strip()
            if path.endswith("refuse"):
                self.server.refused_roles.add(role)
            else:
                self.server.refused_roles.discard(role)
            return self.reply(200, json.dumps(sorted(self.server.refused_roles)).encode(),
                              [("Content-Type", "application/json")])
        if path == "/_requests/AssumeRole" and self.command == "GET":
            return self.reply(200, json.dumps(self.server.sts_requests).encode(),
                              [("Content-Type", "application/json")])
        if path == "/_stats/reset" and self.command == "POST":
            self.server.stats.reset()
            return self.reply(200, json.dumps(self.server.stats.snapshot()).encode(),
                              [("Content-Type", "application/json")])

        fault = None
        action = ""
        params: dict[str, list[str]] = {}
        self.gaad_marker: str | None = None
        params: dict[str, list[str]] = {}
        action = ""
        if not path.startswith("/moto-api"):  # moto's own control API: neither counted nor faulted
            params = request_params(query, body, self.headers.get("Content-Type", ""))
            # Query protocol (IAM, STS): Action=; JSON protocol (Organizations):
            # X-Amz-Target: AWSOrganizationsV20161128.ListAccounts.
            target = self.headers.get("X-Amz-Target", "")
            action = params.get("Action", [target.rpartition(".")[2] or "Unknown"])[0]
            if action == "GetAccountAuthorizationDetails" and self.server.faults.gaad_roles_first:
                self.gaad_marker = params.get("Marker", [""])[0]
            # Faults target IAM only: an STS call sharing the endpoint (e.g.
            # GetCallerIdentity) is counted but always forwarded.
            if signing_service(self.headers.get("Authorization", "")) in (None, "iam"):
                fault = self.server.faults.decide(action, params)
            elif action == "AssumeRole" and params.get("RoleArn", [""])[0] in self.server.refused_roles:
                # What STS answers when the role's trust policy does not admit the caller.
                fault = (403, "AccessDenied",
                         f"User: arn:aws:iam::{ACCOUNT_ID}:user/testing is not authorized to perform: "
                         f"sts:AssumeRole on resource: {params['RoleArn'][0]}")
            self.server.stats.record(action, fault is not None)
            if action == "AssumeRole" and len(self.server.sts_requests) < 10_000:
                self.server.sts_requests.append(params)
        if fault:
            status, code, message = fault
            return self.reply(status, error_body(status, code, message),
                              [("Content-Type", "text/xml"), ("x-amzn-RequestId", "x")])
        if action == "ListServiceSpecificCredentials" and self.server.service_credentials is not None:
            return self.reply(200, service_credentials_page(self.server.service_credentials, params),
                              [("Content-Type", "text/xml"), ("x-amzn-RequestId", "x")])
        if action in LAST_ACCESSED_ACTIONS and self.server.last_accessed is not None:
            status, data = self.server.last_accessed.answer(action, params)
            return self.reply(status, data, [("Content-Type", "text/xml"), ("x-amzn-RequestId", "x")])
        self.forward(body)

    def forward(self, body: bytes) -> None:
        host, port = self.server.upstream
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = f"{host}:{port}"
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        except OSError as exc:
            return self.reply(502, f"moto_fixture proxy: upstream error: {exc}".encode(),
                              [("Content-Type", "text/plain")])
        finally:
            conn.close()
        if self.gaad_marker is not None and resp.status == 200:
            data = gaad_page(data, self.gaad_marker)
        self.reply(resp.status, data, out)


def seed_organization(spec: Any, endpoint: str) -> tuple[dict, set[str]]:
    """Creates an organisation through the Organizations API, managed by the scenario's
    own account: OUs (parents by name, "Root" for the root), member accounts with the
    scenario's ids (CreateAccount draws them at random; the draw is pinned per call), each
    with the member role CreateAccount makes (RoleName), moved to its OU, tagged, closed
    when its state says so. Returns the ids for the ready line and the member-role ARNs
    the proxy refuses to let anyone assume ("assumable": false)."""
    from unittest import mock
    from moto.organizations import utils as org_utils

    spec = check_fields("organization", spec, "organization")
    org = boto3.client(
        "organizations", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    described = org.create_organization(FeatureSet="ALL")["Organization"]
    root = org.list_roots()["Roots"][0]["Id"]
    ous: dict[str, str] = {"Root": root}
    for i, ou in enumerate(spec.get("ous") or []):
        ou = check_fields("org_ou", ou, f"organization.ous[{i}]")
        parent = ou.get("parent", "Root")
        if parent not in ous:
            raise ScenarioError(f"organization.ous[{i}]: parent {parent!r} is not declared before it")
        ous[ou["name"]] = org.create_organizational_unit(
            ParentId=ous[parent], Name=ou["name"])["OrganizationalUnit"]["Id"]
    role_name = spec.get("role_name", "OrganizationAccountAccessRole")
    accounts: dict[str, str] = {}
    refused: set[str] = set()
    for i, acc in enumerate(spec.get("accounts") or []):
        acc = check_fields("org_account", acc, f"organization.accounts[{i}]")
        aid = acc["id"]
        if not (isinstance(aid, str) and len(aid) == 12 and aid.isdigit()) or aid == ACCOUNT_ID:
            raise ScenarioError(f"organization.accounts[{i}]: {aid!r} is not another 12-digit account id")
        with mock.patch.object(org_utils, "make_random_account_id", return_value=aid):
            org.create_account(AccountName=acc["name"], Email=f"{acc['name']}@example.com",
                               RoleName=role_name, Tags=tag_list(acc.get("tags")))
        ou = acc.get("ou", "Root")
        if ou not in ous:
            raise ScenarioError(f"organization.accounts[{i}]: ou {ou!r} is not declared")
        if ou != "Root":
            org.move_account(AccountId=aid, SourceParentId=root, DestinationParentId=ous[ou])
        state = acc.get("state", "ACTIVE")
        if state == "SUSPENDED":
            org.close_account(AccountId=aid)
        elif state != "ACTIVE":
            raise ScenarioError(f"organization.accounts[{i}]: state {state!r} is not ACTIVE or SUSPENDED")
        if acc.get("assumable", True) is False:
            refused.add(f"arn:aws:iam::{aid}:role/{role_name}")
        accounts[acc["name"]] = aid
    return {"id": described["Id"], "root": root, "ous": ous, "accounts": accounts,
            "role_name": role_name}, refused


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", help="scenario JSON file (see README.md)")
    p.add_argument("--proxy-fail-all", metavar="CODE[:ErrorCode]", type=lambda s: parse_fault(s, "ServiceUnavailable"),
                   help="answer every IAM request with this status (default code ServiceUnavailable for 5xx)")
    p.add_argument("--proxy-throttle-first", metavar="N", type=int, default=0,
                   help="answer the first N IAM requests with 400 Throttling, then forward")
    p.add_argument("--proxy-fail-action", metavar="Action=CODE[:ErrorCode]", action="append", default=[],
                   help="answer every request for Action with this status (default code InternalFailure "
                        "for 5xx); Action/Param: only the requests of Action carrying Param; repeatable")
    p.add_argument("--proxy-gaad-roles-first", action="store_true",
                   help="answer GetAccountAuthorizationDetails in two pages: roles, groups and "
                        "policies first, users second")
    p.add_argument("--proxy-last-accessed-in-progress", metavar="N", type=int, default=0,
                   help="answer the first N GetServiceLastAccessedDetails of each job IN_PROGRESS")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    p.add_argument("--enforce-iam-auth", action="store_true",
                   help="after seeding, authenticate every request and enforce the caller's IAM policies")
    args = p.parse_args(argv)
    per_action = {}
    for spec in args.proxy_fail_action:
        action, sep, fault = spec.partition("=")
        if not sep or not action:
            p.error(f"--proxy-fail-action expects Action=CODE, got {spec!r}")
        try:
            per_action[action] = parse_fault(fault, "InternalFailure")
        except (ValueError, argparse.ArgumentTypeError) as exc:
            p.error(f"--proxy-fail-action {spec!r}: {exc}")
    args.per_action = per_action
    return args


class Fixture:
    """Owns both servers so that every exit path (ready and EOF, seeding error, SIGTERM,
    Ctrl-C) shuts them down the same way."""

    def __init__(self, args: argparse.Namespace, ready_out: Any):
        from moto.server import ThreadedMotoServer

        self.args = args
        self.ready_out = ready_out
        # Port 0: the OS picks a free loopback port at bind time, which avoids the race
        # between probing a port and binding it; the bound port is read back afterwards.
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.proxy: ProxyServer | None = None

    def run(self) -> int:
        self.moto.start()
        moto_host, moto_port = self.moto.get_host_and_port()
        endpoint = f"http://{moto_host}:{moto_port}"
        faults = Faults(self.args.proxy_fail_all, self.args.proxy_throttle_first, self.args.per_action,
                        self.args.proxy_gaad_roles_first)
        self.proxy = ProxyServer((moto_host, moto_port), faults, self.args.verbose)
        threading.Thread(target=self.proxy.serve_forever, kwargs={"poll_interval": 0.05},
                         name="proxy", daemon=True).start()

        try:
            with open(self.args.scenario, encoding="utf-8") as f:
                scenario = json.load(f)
            organization: dict | None = None
            if scenario.get("accounts") or scenario.get("organization"):
                # Several accounts: moto must pick the account per request (from the
                # access key, e.g. one STS issued for a role in another account) instead
                # of the pinned default.
                os.environ.pop("MOTO_ACCOUNT_ID", None)
            if scenario.get("organization"):
                # Before the accounts' IAM: CreateAccount makes each member role.
                organization, self.proxy.refused_roles = seed_organization(
                    scenario["organization"], endpoint)
            seeder = Seeder(scenario, endpoint)
            seeder.seed()
            self.proxy.service_credentials = seeder.service_credentials
            self.proxy.last_accessed = LastAccessed(
                {ACCOUNT_ID: seeder.last_accessed, **seeder.other_last_accessed},
                self.args.proxy_last_accessed_in_progress)
        except Exception:  # any seeding failure: traceback, no ready line, exit 1
            traceback.print_exc(file=sys.stderr)
            return 1

        # Principals the test signs as (authorization tests): a key whose secret goes to
        # the test on the ready line. Only these; seeded keys' secrets never leave moto.
        principals = {}
        for name in scenario.get("principals") or []:
            key = seeder.backend.create_access_key(name)
            principals[name] = {"access_key_id": key.access_key_id,
                                "secret_access_key": key.secret_access_key}
        if self.args.enforce_iam_auth:
            # From here on moto authenticates every request and evaluates the caller's
            # IAM policies (moto.settings is read per request; we share its process).
            from moto import settings
            settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

        ready = {"endpoint": endpoint, "proxy": f"http://127.0.0.1:{self.proxy.server_address[1]}",
                 "account": ACCOUNT_ID, "keys": seeder.keys, "users": seeder.users, "roles": seeder.roles,
                 "principals": principals}
        if organization is not None:
            ready["organization"] = organization
        self.ready_out.write(json.dumps(ready, separators=(",", ":")) + "\n")
        self.ready_out.flush()
        log(f"ready in {time.monotonic() - PROCESS_START:.2f}s: moto {endpoint}, proxy {ready['proxy']}, "
            f"{len(seeder.users)} users, {len(seeder.keys)} keys, {len(seeder.roles)} roles")

        # Serve until the parent closes our stdin (the Rust test's handle is dropped).
        while os.read(sys.stdin.fileno(), 65536):
            pass
        return 0

    def shutdown(self, code: int) -> None:
        # A stuck in-flight request must not keep the process alive past the parent's
        # patience: the watchdog exits with the code we were going to return anyway.
        watchdog = threading.Timer(3.0, os._exit, args=(code,))
        watchdog.daemon = True
        watchdog.start()
        # moto's serve_forever polls every 0.5 s; stopping it alongside the proxy keeps
        # exit under a second.
        stopper = None
        if self.moto._thread is not None:  # stop() assumes start() ran
            stopper = threading.Thread(target=self.moto.stop, daemon=True)
            stopper.start()
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
        if stopper is not None:
            stopper.join()
        watchdog.cancel()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # stdout is the protocol channel: route every stray print (ours or a library's) to
    # stderr and keep the real stream for the single ready line.
    ready_out, sys.stdout = sys.stdout, sys.stderr
    if not args.verbose:
        # werkzeug logs each request and flask each handler traceback (moto answers
        # unimplemented actions with 500 + traceback); see the module docstring.
        logging.disable(logging.CRITICAL)

    def terminate(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    fixture = Fixture(args, ready_out)
    code = 0
    try:
        code = fixture.run()
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C / SIGTERM: a requested, clean stop
        code = 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        fixture.shutdown(code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
