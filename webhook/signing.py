"""Re-export of realtime.signing, the one webhook signature implementation (kept for one release)."""
from realtime.signing import (DEFAULT_TOLERANCE, MAX_SIGNATURE_HEADER, SCHEME, SIGNATURE_HEADER,  # noqa: F401
                              TIMESTAMP_HEADER, SignatureError, sign, signed_headers, verify)
