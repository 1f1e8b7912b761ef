"""JSON files that carry the SHA-256 of their own bytes, so that any flipped byte is detected.

The digest sits in the object under :data:`DIGEST_KEY`. It is the SHA-256 of the file's exact
bytes with the digest's 64 hex digits replaced by zeros: a flip anywhere, whitespace and the
digest itself included, changes what is hashed or what is compared. A file without the key
(written before the digest existed, or edited by hand with the key removed) is accepted as
it is; a caller that knows its keys rejects a flipped key name as an unknown key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

DIGEST_KEY = "sha256_of_this_file"
_PLACEHOLDER = b"0" * 64
_DIGEST = re.compile(rb'"' + DIGEST_KEY.encode() + rb'": "([0-9a-f]{64})"')


def seal(data: Mapping[str, Any]) -> bytes:
    """``data`` as indented JSON (UTF-8) with sorted keys and its digest under
    :data:`DIGEST_KEY`."""
    unsealed = {key: value for key, value in data.items() if key != DIGEST_KEY}
    text = json.dumps({**unsealed, DIGEST_KEY: _PLACEHOLDER.decode()}, indent=2, sort_keys=True)
    raw = (text + "\n").encode()
    match = _DIGEST.search(raw)
    assert match is not None
    digest = hashlib.sha256(raw).hexdigest().encode()
    return raw[: match.start(1)] + digest + raw[match.end(1) :]


def is_intact(raw: bytes, data: Mapping[str, Any]) -> bool:
    """Whether ``raw``, the bytes ``data`` was parsed from, are still the bytes they were
    sealed as; True for a file without a digest."""
    if DIGEST_KEY not in data:
        return True
    match = _DIGEST.search(raw)
    if match is None or match.group(1).decode() != data[DIGEST_KEY]:
        return False
    unsealed = raw[: match.start(1)] + _PLACEHOLDER + raw[match.end(1) :]
    return hashlib.sha256(unsealed).hexdigest() == data[DIGEST_KEY]
