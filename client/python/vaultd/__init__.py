"""vaultd: the Python client of the vaultd personal-data vault.

    import vaultd
    with vaultd.Client() as vault:              # VAULT_ADDR, VAULT_TOKEN_FILE, ...
        vault.put("alice@example.com", {"age": "41", "device": "mobile"})
        df = vault.features("training", "propensity-v1").to_pandas()

See docs/python.md in the vaultd repository.
"""
from vaultd.client import (Attributes, Client, ConsentRevocation,
                           ConsentState, DeletionEvent, PutResult, Settings,
                           new_request_id)
from vaultd.errors import (Cancelled, Conflict, InvalidArgument, NotFound,
                           PartialDeletion, PermissionDenied,
                           ReceiptInvalid, ServerError,
                           Unauthenticated, Unavailable, VaultError)
from vaultd.features import (AttributeSpec, FeatureBatch, FeatureSpec,
                             FeatureStream)
from vaultd.purge import PurgeReport, purge_files, purge_frame
from vaultd.receipts import Receipt, verify_receipt

__version__ = "0.1.0"
__all__ = [
    "Attributes", "AttributeSpec", "Cancelled", "Client", "Conflict",
    "ConsentRevocation", "ConsentState", "DeletionEvent", "FeatureBatch", "FeatureSpec",
    "FeatureStream", "InvalidArgument", "NotFound", "PartialDeletion",
    "PermissionDenied",
    "PurgeReport", "PutResult", "Receipt", "ReceiptInvalid", "ServerError",
    "Settings", "Unauthenticated", "Unavailable", "VaultError",
    "new_request_id", "purge_files", "purge_frame", "verify_receipt",
]
