"""What an S3 bucket needs before ElastiCache can export into it or seed a cluster from it.

ElastiCache reaches the bucket in one of two documented ways: in regions launched before 2019 an
ACL grant to its canonical user id; in opt-in regions a bucket policy naming the service principal
``<region>.elasticache-snapshot.amazonaws.com``. The bucket must be in the snapshot's region, have
a DNS-compliant name and, for an export, belong to the cluster's account. :func:`check_bucket`
lists every missing piece in one go, before any snapshot is started; :func:`grant_elasticache`
adds the grant (keeping what is there).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .elasticache import ElastiCacheError
from ..storage.s3 import describe_error, error_code, is_boto_error

#: ElastiCache's canonical user id for ACL grants (AWS commercial regions; GovCloud has its own).
CANONICAL_ID = "540804c33a284a299d2547575ce1010f2312ef3da9b3a053c8bc45bf233e4353"
GOVCLOUD_CANONICAL_ID = "40fa568277ad703bd160f66ae4f83fc9dfdfd06c2f1b5060ca22442ac3ef8be6"
#: Regions launched from 2019 on (opt-in): access through a bucket policy, not an ACL grant.
OPT_IN_REGIONS = frozenset({
    "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
    "ap-southeast-6", "ap-southeast-7", "ca-west-1", "eu-central-2", "eu-south-1", "eu-south-2", "il-central-1",
    "me-central-1", "me-south-1", "mx-central-1"})
#: Export: list and write objects, read and write the bucket ACL.
EXPORT_PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP")
EXPORT_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:GetBucketAcl",
                  "s3:ListMultipartUploadParts", "s3:ListBucketMultipartUploads")
SEED_ACTIONS = ("s3:GetObject", "s3:ListBucket", "s3:GetBucketAcl")
PURPOSES = ("export", "seed")


@dataclass
class BucketCheck:
    bucket: str
    region: str  # where ElastiCache works (the snapshot's, or the new cluster's)
    purpose: str  # "export" or "seed"
    bucket_region: str | None = None
    grant_via: str = "acl"  # "acl" or "policy"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return f"s3://{self.bucket} is ready for ElastiCache to {self.purpose} ({self.grant_via} grant)"
        return f"s3://{self.bucket} is not ready for ElastiCache to {self.purpose}: " + "; ".join(self.problems)


def canonical_id(region: str) -> str:
    return GOVCLOUD_CANONICAL_ID if region.startswith("us-gov-") else CANONICAL_ID


def service_principal(region: str) -> str:
    return f"{region}.elasticache-snapshot.amazonaws.com"


def name_problems(bucket: str) -> list[str]:
    """Why ``bucket`` is not a DNS-compliant name (ElastiCache cannot reach other names)."""
    problems = []
    if not 3 <= len(bucket) <= 63:
        problems.append("the name must be 3 to 63 characters")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", bucket or "-"):
        problems.append("the name must be lowercase letters, digits, dots and hyphens, starting and ending "
                        "with a letter or digit")
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        problems.append("the name may not have '..', '.-' or '-.'")
    try:
        ipaddress.ip_address(bucket)
        problems.append("the name may not look like an IP address")
    except ValueError:
        pass
    return [f"bucket {bucket!r}: {p} (ElastiCache needs a DNS-compliant name)" for p in problems]


def bucket_region(s3: Any, bucket: str) -> str:
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except Exception as exc:  # noqa: BLE001
        raise ElastiCacheError(f"s3://{bucket}: cannot read its region: {describe_error(exc)}") from None
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def check_bucket(s3: Any, bucket: str, region: str, purpose: str = "export", keys: Iterable[str] = ()) -> BucketCheck:
    """Everything missing for ElastiCache in ``region`` to ``purpose`` with ``bucket`` (and ``keys``)."""
    with _s3_errors(bucket, "checking it for ElastiCache"):
        return _check(s3, bucket, region, purpose, list(keys))


def _check(s3: Any, bucket: str, region: str, purpose: str, keys: list[str]) -> BucketCheck:
    if purpose not in PURPOSES:
        raise ElastiCacheError(f"purpose must be export or seed, not {purpose!r}")
    check = BucketCheck(bucket, region, purpose, grant_via="policy" if region in OPT_IN_REGIONS else "acl")
    check.problems.extend(name_problems(bucket))
    try:
        check.bucket_region = bucket_region(s3, bucket)
    except ElastiCacheError as exc:
        check.problems.append(str(exc))
        return check
    if check.bucket_region != region:
        check.problems.append(f"the bucket is in {check.bucket_region}, ElastiCache works in {region}"
                              + (": export to a bucket in the snapshot's region, then `snaptool copy`"
                                 if purpose == "export" else ": seed from a bucket in the cluster's region"))
    if purpose == "export":
        check.problems.extend(_owner_problems(s3, bucket))
    if check.grant_via == "policy":
        missing = _policy_missing(s3, bucket, region, EXPORT_ACTIONS if purpose == "export" else SEED_ACTIONS)
        if missing:
            check.problems.append(f"the bucket policy does not allow {service_principal(region)} "
                                  f"{', '.join(missing)}")
        return check
    if _acls_disabled(s3, bucket):
        check.problems.append("ACLs are disabled on the bucket (Object Ownership: bucket owner enforced), and "
                              f"ElastiCache in {region} is reached through an ACL grant: set Object Ownership "
                              "to BucketOwnerPreferred or ObjectWriter")
        return check
    who = canonical_id(region)
    if purpose == "export":
        missing = _missing(s3.get_bucket_acl(Bucket=bucket).get("Grants", []), who, EXPORT_PERMISSIONS)
        if missing:
            check.problems.append(f"the bucket ACL does not grant ElastiCache ({who[:12]}…) {', '.join(missing)}")
    for key in keys:
        try:
            grants = s3.get_object_acl(Bucket=bucket, Key=key).get("Grants", [])
        except Exception as exc:  # noqa: BLE001
            check.problems.append(f"s3://{bucket}/{key}: {describe_error(exc)}")
            continue
        if _missing(grants, who, ("READ",)):
            check.problems.append(f"s3://{bucket}/{key} does not grant ElastiCache READ")
    return check


def grant_elasticache(s3: Any, bucket: str, region: str, purpose: str = "export", keys: Iterable[str] = ()) -> str:
    """Give ElastiCache in ``region`` what it needs on ``bucket`` (and on ``keys`` for seeding),
    keeping the existing grants and statements; returns what was done."""
    with _s3_errors(bucket, "granting ElastiCache access"):
        return _grant(s3, bucket, region, purpose, list(keys))


def _grant(s3: Any, bucket: str, region: str, purpose: str, keys: list[str]) -> str:
    if region in OPT_IN_REGIONS:
        actions = EXPORT_ACTIONS if purpose == "export" else SEED_ACTIONS
        _add_policy_statement(s3, bucket, region, actions)
        return f"bucket policy statement for {service_principal(region)}: {', '.join(actions)}"
    who = canonical_id(region)
    if purpose == "export":
        acl = s3.get_bucket_acl(Bucket=bucket)
        grants = _with_grants(acl.get("Grants", []), who, EXPORT_PERMISSIONS)
        s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": acl["Owner"], "Grants": grants})
        return f"bucket ACL grant to ElastiCache ({who[:12]}…): {', '.join(EXPORT_PERMISSIONS)}"
    for key in keys:  # the ACL as grant headers: every existing grant kept, READ for ElastiCache added
        grants = _with_grants(s3.get_object_acl(Bucket=bucket, Key=key).get("Grants", []), who, ("READ",))
        s3.put_object_acl(Bucket=bucket, Key=key, **_grant_headers(grants))
    return f"object ACL READ grant to ElastiCache ({who[:12]}…) on {len(keys)} object(s)"


# --------------------------------------------------------------------------- internals

def _missing(grants: list[dict[str, Any]], who: str, permissions: Iterable[str]) -> list[str]:
    """Which of ``permissions`` the ACL ``grants`` does not give ``who`` (FULL_CONTROL gives all)."""
    have = {g.get("Permission", "") for g in grants if (g.get("Grantee") or {}).get("ID") == who}
    return [] if "FULL_CONTROL" in have else [p for p in permissions if p not in have]


def _with_grants(grants: list[dict[str, Any]], who: str, permissions: Iterable[str]) -> list[dict[str, Any]]:
    return list(grants) + [{"Grantee": {"Type": "CanonicalUser", "ID": who}, "Permission": p}
                           for p in _missing(grants, who, permissions)]


def _owner_problems(s3: Any, bucket: str) -> list[str]:
    """ElastiCache exports only into a bucket of the cluster's own account: the bucket must be one of
    the caller's (ListBuckets). Without s3:ListAllMyBuckets nothing is said."""
    try:
        names = {b.get("Name") for b in s3.list_buckets(Prefix=bucket).get("Buckets", [])}
    except Exception as exc:  # noqa: BLE001
        if is_boto_error(exc):
            return []
        raise
    if bucket in names:
        return []
    return ["the bucket belongs to another account, and ElastiCache exports only into a bucket of the "
            "cluster's account: export into one of its buckets, then `snaptool copy`"]


@contextlib.contextmanager
def _s3_errors(bucket: str, doing: str) -> Iterator[None]:
    """An S3 call that fails becomes one line naming the bucket and what was being done."""
    try:
        yield
    except ElastiCacheError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types
        if is_boto_error(exc):
            raise ElastiCacheError(f"s3://{bucket}: {doing} failed: {describe_error(exc)}") from None
        raise


_HEADER = {"FULL_CONTROL": "GrantFullControl", "READ": "GrantRead", "WRITE": "GrantWrite",
           "READ_ACP": "GrantReadACP", "WRITE_ACP": "GrantWriteACP"}


def _grant_headers(grants: list[dict[str, Any]]) -> dict[str, str]:
    """Grants as PutObjectAcl's x-amz-grant-* arguments: ``id="…"``, ``uri="…"``, ``emailAddress="…"``."""
    out: dict[str, list[str]] = {}
    for grant in grants:
        grantee = grant.get("Grantee") or {}
        if grantee.get("ID"):
            who = f'id="{grantee["ID"]}"'
        elif grantee.get("URI"):
            who = f'uri="{grantee["URI"]}"'
        elif grantee.get("EmailAddress"):
            who = f'emailAddress="{grantee["EmailAddress"]}"'
        else:
            continue
        out.setdefault(_HEADER[grant["Permission"]], []).append(who)
    return {name: ", ".join(values) for name, values in out.items()}


def _acls_disabled(s3: Any, bucket: str) -> bool:
    try:
        rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "OwnershipControlsNotFoundError":
            return False
        raise ElastiCacheError(f"s3://{bucket}: cannot read its ownership controls: {describe_error(exc)}") from None
    return any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules)


def _policy(s3: Any, bucket: str) -> dict[str, Any]:
    try:
        return json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "NoSuchBucketPolicy":
            return {"Version": "2012-10-17", "Statement": []}
        raise ElastiCacheError(f"s3://{bucket}: cannot read its bucket policy: {describe_error(exc)}") from None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _policy_missing(s3: Any, bucket: str, region: str, actions: Iterable[str]) -> list[str]:
    allowed: set[str] = set()
    for statement in _as_list(_policy(s3, bucket).get("Statement")):
        principal = statement.get("Principal") or {}
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
        if statement.get("Effect") == "Allow" and service_principal(region) in services:
            allowed.update(a.lower() for a in _as_list(statement.get("Action")))
    if "*" in allowed or "s3:*" in allowed:
        return []
    return [a for a in actions if a.lower() not in allowed]


def _add_policy_statement(s3: Any, bucket: str, region: str, actions: Iterable[str]) -> None:
    policy = _policy(s3, bucket)
    statements = [s for s in _as_list(policy.get("Statement")) if s.get("Sid") != "snaptool-elasticache"]
    statements.append({
        "Sid": "snaptool-elasticache", "Effect": "Allow",
        "Principal": {"Service": ["elasticache.amazonaws.com", service_principal(region)]},
        "Action": list(actions),
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]})
    policy["Statement"] = statements
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
