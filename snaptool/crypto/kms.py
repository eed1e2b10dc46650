"""Per-snapshot data keys from AWS KMS: GenerateDataKey under one key, Encrypt under the others.

Each KMS key wraps the same 32-byte data key, so any one of them (another region, another account)
can open the snapshot. The wrapped keys go into the manifest; the plaintext data key stays in
memory. Calls go to the key's own region (taken from its ARN) and honour the standard AWS
environment (credentials, AWS_REGION, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_KMS). Every call binds
the snapshot id as encryption context, so a wrapped key cannot be moved to another snapshot.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from .errors import CryptoError

DATA_KEY_SIZE = 32


@dataclass(frozen=True)
class WrappedKey:
    key_arn: str
    wrapped_key: str  # base64 of the CiphertextBlob

    @property
    def region(self) -> str | None:
        return region_of(self.key_arn)

    def to_json(self) -> dict[str, Any]:
        return {"key_arn": self.key_arn, "region": self.region, "wrapped_key": self.wrapped_key}


def region_of(key_id: str) -> str | None:
    """The region named in a key or alias ARN (``arn:aws:kms:REGION:ACCOUNT:key/…``), else None."""
    parts = key_id.split(":")
    return parts[3] or None if key_id.startswith("arn:") and len(parts) >= 6 else None


def default_region() -> str | None:
    """AWS_REGION / AWS_DEFAULT_REGION / the profile's region, as for S3 repositories."""
    import boto3  # imported here: snapshots without KMS never pay for botocore

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or boto3.session.Session().region_name


def _call(key_id: str, what: str, **kwargs: Any) -> dict[str, Any]:
    """One KMS call (``what``, e.g. GenerateDataKey) in the key's region; a failure becomes one
    line naming the key."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    method = {"GenerateDataKey": "generate_data_key", "Encrypt": "encrypt", "Decrypt": "decrypt"}[what]
    try:
        client = boto3.session.Session().client("kms", region_name=region_of(key_id) or default_region())
        return getattr(client, method)(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = error.get("Message") or ""
        raise CryptoError(f"KMS key {key_id}: {what} refused: {error.get('Code', 'error')}"
                          f"{': ' + message if message else ''}") from None
    except BotoCoreError as exc:
        raise CryptoError(f"KMS key {key_id}: {what} failed: {type(exc).__name__}: {exc}") from None


def generate(key_ids: list[str], context: dict[str, str]) -> tuple[bytes, list[WrappedKey]]:
    """A fresh data key and its wrappings, one per KMS key (the first key generates it)."""
    if not key_ids:
        raise CryptoError("no KMS key given (--kms-key-id)")
    first, *others = list(dict.fromkeys(key_ids))
    made = _call(first, "GenerateDataKey", KeyId=first, KeySpec="AES_256", EncryptionContext=context)
    data_key = made["Plaintext"]
    if len(data_key) != DATA_KEY_SIZE:
        raise CryptoError(f"KMS key {first}: GenerateDataKey returned {len(data_key)} bytes, not {DATA_KEY_SIZE}")
    wrapped = [WrappedKey(made["KeyId"], base64.b64encode(made["CiphertextBlob"]).decode())]
    for key_id in others:
        out = _call(key_id, "Encrypt", KeyId=key_id, Plaintext=data_key, EncryptionContext=context)
        wrapped.append(WrappedKey(out["KeyId"], base64.b64encode(out["CiphertextBlob"]).decode()))
    return data_key, wrapped


def unwrap(wrapped: list[WrappedKey], context: dict[str, str]) -> tuple[bytes, str]:
    """(data key, ARN of the key that opened it). Keys in the current region are tried first;
    a key that is refused or unreachable is skipped; when none works, every reason is given."""
    here = default_region()
    ordered = sorted(wrapped, key=lambda w: w.region != here)
    failures = []
    for entry in ordered:
        try:
            blob = base64.b64decode(entry.wrapped_key, validate=True)
            out = _call(entry.key_arn, "Decrypt", CiphertextBlob=blob, KeyId=entry.key_arn, EncryptionContext=context)
        except CryptoError as exc:
            failures.append(str(exc))
            continue
        except ValueError:
            failures.append(f"KMS key {entry.key_arn}: the wrapped key in the manifest is not base64")
            continue
        if len(out["Plaintext"]) == DATA_KEY_SIZE:
            return out["Plaintext"], entry.key_arn
        failures.append(f"KMS key {entry.key_arn}: Decrypt returned {len(out['Plaintext'])} bytes")
    if not failures:
        raise CryptoError("the manifest holds no wrapped data key")
    raise CryptoError("no KMS key could unwrap the data key: " + "; ".join(failures))
