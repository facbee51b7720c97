"""Device-supplied text (file names, format hints, header values) made safe to put in a log line.

A device controls these strings: logged verbatim they let it plant any text (a patient id, a value,
a fake field) in the logs, and flood them with long ones. `device_text` keeps printable ASCII,
escapes everything else the way `repr` does, and cuts the result short.
"""

LIMIT = 64
CUT = "..."


def device_text(value: object, limit: int = LIMIT) -> str:
    """`value` as printable ASCII (other characters as \\n, \\x00, \\u00e9 escapes), at most `limit` chars.

    A cut result ends with "..."; a backslash is doubled so an escape in the output is always ours.
    """
    pieces: list[str] = []
    size = 0
    for ch in str(value)[: limit + 1]:  # each character yields at least one: no need to look further
        pieces.append(_escape(ch))
        size += len(pieces[-1])
        if size > limit:
            return _cut(pieces, limit)
    return "".join(pieces)


def _escape(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if " " <= ch <= "~":
        return ch
    return ch.encode("unicode_escape").decode("ascii")


def _cut(pieces: list[str], limit: int) -> str:
    """Whole escapes only, then the cut mark, within `limit`."""
    kept: list[str] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - len(CUT):
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + CUT
