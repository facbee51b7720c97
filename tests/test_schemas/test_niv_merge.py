"""schemas/niv.merged: two parts of one night merge into the same dict, keys in the same order, in every
process (a set's order depends on the process's string hashing, and the merged night is stored as JSON)."""

from schemas.niv import merged


def test_merged_keys_keep_the_older_part_s_order_then_the_newer_part_s_own() -> None:
    old = {f"field_{i:02d}": float(i) for i in range(20)} | {"basis": "day_summary"}
    new = {f"extra_{i:02d}": float(i) for i in range(5)} | {"field_03": 9.0, "basis": "sessions"}
    out = merged(old, new)
    assert list(out) == [*old, *(k for k in new if k not in old)]
    assert out["basis"] == "day_summary" and out["extra_04"] == 4.0
