"""JSON sealed with the SHA-256 of its own bytes: every flipped byte is caught."""

from __future__ import annotations

import json

from latentrl.sealed_json import DIGEST_KEY, is_intact, seal

DATA = {"b": [1, 2.5], "a": {"name": "θ", "ok": True}, "n": None}


def test_a_sealed_file_reads_back_intact_and_unsealed_files_pass() -> None:
    raw = seal(DATA)
    data = json.loads(raw)
    assert {k: v for k, v in data.items() if k != DIGEST_KEY} == DATA
    assert len(data[DIGEST_KEY]) == 64 and is_intact(raw, data)
    assert seal(data) == raw  # sealing again gives the same bytes
    plain = json.dumps(DATA).encode()
    assert is_intact(plain, json.loads(plain))


def test_every_flip_of_every_byte_is_caught() -> None:
    """Each position XOR-ed with each of 8 masks: the file no longer parses, or lost its digest
    key (a reader rejects the unknown key), or is not intact."""
    raw = seal(DATA)
    caught = 0
    for position in range(len(raw)):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x29, 0x80):
            flipped = bytearray(raw)
            flipped[position] ^= mask
            try:
                data = json.loads(bytes(flipped))
            except (json.JSONDecodeError, UnicodeDecodeError):
                caught += 1
                continue
            lost_key = not isinstance(data, dict) or DIGEST_KEY not in data
            caught += lost_key or not is_intact(bytes(flipped), data)
    assert caught == 8 * len(raw)
