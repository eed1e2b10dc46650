"""`snaptool key …`: age identities for encrypted backups.

The identity (private key) belongs on the hosts that restore; the backup host gets only the
recipient (public key) that ``generate`` prints. Files use age's own layout, so ``age -d -i`` and
``age-keygen -y`` work with them.
"""

from __future__ import annotations

from typing import Any

import click

from .repo import repo_options


@click.group("key")
def key_group() -> None:
    """age identities: make one, show its recipient, or recover the one behind a KMS snapshot."""


@key_group.command("generate")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the identity to this file (created with mode 0600, never overwritten); "
              "without it the identity goes to stdout and the recipient to stderr.")
def generate_command(output: str | None) -> None:
    """Make a new age X25519 identity and print its recipient (the public key for
    `backup --encrypt age --recipient`).

    \b
    Examples:
      snaptool key generate -o backup-key.txt          # prints age1…
      snaptool backup redis://10.0.0.5:6379 --encrypt age --recipient "$(snaptool key recipient -i backup-key.txt)"
    """
    from ..crypto import X25519Identity, write_identity_file
    from ..crypto.keyfiles import identity_file_text

    identity = X25519Identity.generate()
    if output is None:
        click.echo(identity_file_text(identity), nl=False)
        click.echo(f"Public key: {identity.recipient}", err=True)
        return
    write_identity_file(output, identity)
    click.echo(str(identity.recipient))
    click.echo(f"wrote the identity to {output} (mode 0600); keep it off the backup host", err=True)


@key_group.command("recipient")
@click.option("-i", "--identity", "identity_file", required=True, type=click.Path(dir_okay=False),
              help="An age identity file.")
def recipient_command(identity_file: str) -> None:
    """Print the recipient (public key) of each identity in a file, like `age-keygen -y`."""
    from ..crypto import load_identities

    for identity in load_identities(identity_file):
        click.echo(str(identity.recipient))


@key_group.command("kms-identity")
@click.argument("snapshot")
@repo_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Write the identity here (mode 0600, never overwritten).")
def kms_identity_command(snapshot: str, repo: Any, output: str) -> None:
    """Unwrap a KMS-encrypted snapshot's data key (KMS Decrypt) and write the age identity it
    stands for, so its stored files open with `age -d -i FILE` without snaptool.
    """
    from ..crypto import CryptoError, DecryptionKeys, write_identity_file
    from ..storage.catalog import Catalog

    manifest = Catalog(repo).resolve(snapshot)
    if not manifest.encryption or manifest.encryption.get("scheme") != "kms":
        raise CryptoError(f"snapshot {manifest.id} is not encrypted with KMS")
    unsealed = DecryptionKeys().unseal(manifest.encryption, manifest.id)
    write_identity_file(output, unsealed.identities[0])  # type: ignore[arg-type]
    click.echo(f"wrote the identity of snapshot {manifest.id} ({unsealed.via}) to {output}", err=True)


COMMANDS = (key_group,)
