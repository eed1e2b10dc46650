"""The export and seed bucket preflight: a bucket of another account on moto's server (a second
account through STS credentials), and the checks against the real S3 service model with botocore's
Stubber (every request and answer validated), including what moto cannot answer: a caller without
ListAllMyBuckets, an object that cannot be read."""

from __future__ import annotations

import json
from typing import Any

import uuid

import boto3
import pytest
from botocore.stub import Stubber

from s3_support import assume_account

from snaptool.cloud.bucket import CANONICAL_ID, EXPORT_PERMISSIONS, check_bucket, service_principal
from snaptool.cloud.elasticache import ElastiCacheError

MINE = "a" * 64
BUCKET = "dr-exports"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("s3", region_name="us-east-1", endpoint_url="https://s3.us-east-1.amazonaws.com")


def test_an_export_bucket_of_another_account_is_refused(s3_env: str) -> None:
    other = boto3.client("s3", **assume_account(s3_env, "222222222222"))
    theirs, mine = (f"acct-{uuid.uuid4().hex[:12]}" for _ in range(2))
    other.create_bucket(Bucket=theirs)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=mine)
    s3.create_bucket(Bucket=f"{theirs}-mine")  # a name of mine that starts like theirs changes nothing
    check = check_bucket(s3, theirs, "us-east-1", "export")
    assert check.problems[0] == ("the bucket belongs to another account, and ElastiCache exports only into a bucket "
                                 "of the cluster's account: export into one of its buckets, then `snaptool copy`")
    assert not any("another account" in p for p in check_bucket(s3, mine, "us-east-1", "export").problems)
    assert not any("another account" in p for p in check_bucket(s3, theirs, "us-east-1", "seed").problems)


def _acl(owner: str, *grants: tuple[str, str]) -> dict[str, Any]:
    return {"Owner": {"ID": owner},
            "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": who}, "Permission": p} for who, p in grants]}


def test_an_export_check_reads_region_ownership_and_acl(s3: Any) -> None:
    granted = _acl(MINE, (MINE, "FULL_CONTROL"), *((CANONICAL_ID, p) for p in EXPORT_PERMISSIONS[:2]))
    stub = Stubber(s3)
    stub.add_response("get_bucket_location", {"LocationConstraint": "eu-west-1"}, {"Bucket": BUCKET})
    stub.add_response("list_buckets", {"Buckets": [{"Name": BUCKET}], "Owner": {"ID": MINE}}, {"Prefix": BUCKET})
    preferred = {"OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}}
    stub.add_response("get_bucket_ownership_controls", preferred, {"Bucket": BUCKET})
    stub.add_response("get_bucket_acl", granted, {"Bucket": BUCKET})
    with stub:
        check = check_bucket(s3, BUCKET, "eu-west-1", "export")
    stub.assert_no_pending_responses()
    assert check.problems == [f"the bucket ACL does not grant ElastiCache ({CANONICAL_ID[:12]}…) READ_ACP, WRITE_ACP"]


def test_an_opt_in_region_without_list_buckets_checks_the_policy_only(s3: Any) -> None:
    region = "ap-east-1"
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": [service_principal(region)]},
        "Action": ["s3:PutObject", "s3:GetObject", "s3:ListBucket"], "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}
    stub = Stubber(s3)
    stub.add_response("get_bucket_location", {"LocationConstraint": region}, {"Bucket": BUCKET})
    stub.add_client_error("list_buckets", "AccessDenied", "Access Denied", 403, expected_params={"Prefix": BUCKET})
    stub.add_response("get_bucket_policy", {"Policy": json.dumps(policy)}, {"Bucket": BUCKET})
    with stub:
        check = check_bucket(s3, BUCKET, region, "export")
    stub.assert_no_pending_responses()
    assert check.grant_via == "policy"
    assert check.problems == [f"the bucket policy does not allow {service_principal(region)} s3:GetBucketAcl, "
                              "s3:ListMultipartUploadParts, s3:ListBucketMultipartUploads"]


def test_a_seed_bucket_lists_every_object_elasticache_cannot_read(s3: Any) -> None:
    keys = ["dr/a.shard-0001.rdb", "dr/a.shard-0002.rdb", "dr/a.shard-0003.rdb"]
    stub = Stubber(s3)
    stub.add_response("get_bucket_location", {}, {"Bucket": BUCKET})  # us-east-1: no constraint
    stub.add_client_error("get_bucket_ownership_controls", "OwnershipControlsNotFoundError", "none", 404,
                          expected_params={"Bucket": BUCKET})
    stub.add_response("get_object_acl", _acl(MINE, (CANONICAL_ID, "READ")), {"Bucket": BUCKET, "Key": keys[0]})
    stub.add_response("get_object_acl", _acl(MINE, (MINE, "FULL_CONTROL")), {"Bucket": BUCKET, "Key": keys[1]})
    stub.add_client_error("get_object_acl", "NoSuchKey", "The specified key does not exist.", 404,
                          expected_params={"Bucket": BUCKET, "Key": keys[2]})
    with stub:
        check = check_bucket(s3, BUCKET, "us-east-1", "seed", keys)
    stub.assert_no_pending_responses()
    assert check.problems == [f"s3://{BUCKET}/{keys[1]} does not grant ElastiCache READ",
                              f"s3://{BUCKET}/{keys[2]}: NoSuchKey: The specified key does not exist."]


def test_a_bucket_that_cannot_be_read_is_one_line(s3: Any) -> None:
    stub = Stubber(s3)
    stub.add_response("get_bucket_location", {"LocationConstraint": "us-west-2"}, {"Bucket": BUCKET})
    stub.add_response("list_buckets", {"Buckets": [{"Name": BUCKET}]}, {"Prefix": BUCKET})
    stub.add_response("get_bucket_ownership_controls",
                      {"OwnershipControls": {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}}, {"Bucket": BUCKET})
    stub.add_client_error("get_bucket_acl", "AccessDenied", "Access Denied", 403, expected_params={"Bucket": BUCKET})
    with stub, pytest.raises(ElastiCacheError) as info:
        check_bucket(s3, BUCKET, "us-west-2", "export")
    assert str(info.value) == f"s3://{BUCKET}: checking it for ElastiCache failed: AccessDenied: Access Denied"
