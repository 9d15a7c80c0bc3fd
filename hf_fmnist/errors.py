"""The one exception type that means "the user can fix this".

The CLI prints these as a single ``error: ...`` line and exits with status 2; anything else is a bug and keeps
its traceback.
"""


class HfFmnistError(Exception):
    """A problem with the user's input or environment; the message says what, where, and how to fix it."""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control and format characters shown as escapes, never interpreted.

    File names and server messages come from strangers: a name holding ``\\n`` could forge an output line, and
    ``\\x1b[...`` could recolour or rewrite the terminal. Bytes of a non-UTF-8 name (which Python keeps as lone
    surrogates) print as ``\\xNN``; backslashes are doubled so that every escape is unambiguous.

    >>> printable("a.png\\nforged.png: Bag 100.0%\\x1b[31m")
    'a.png\\\\nforged.png: Bag 100.0%\\\\x1b[31m'
    >>> printable("caf\\udce9.png")
    'caf\\\\xe9.png'
    """
    import unicodedata

    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(repr(ch)[1:-1] if code > 0x7F or ch in "\n\r\t" else f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message for an error line: on one line, escaped, cut short (it may quote a file's contents).

    >>> one_line(ValueError("bad\\n  value \\x1b[2J"))
    'bad value \\\\x1b[2J'
    """
    return printable(" ".join(str(error).split()))[:limit]


# Every user-facing line is bounded, whatever it quotes: a stranger's file can hold 10⁶ class names or tensor keys,
# and a message listing them all was 59 MB on one line. Lists show their first few items and say how many there are
# (:func:`listing`); a whole line is cut at :data:`MAX_LINE` characters (:func:`error_line`).
MAX_LINE = 480  # under the 500 a terminal, a log line or a CI annotation shows whole
LIST_SHOWN = 5
ITEM_CHARS = 40


def listing(items, shown: int = LIST_SHOWN, *, item_chars: int = ITEM_CHARS, quote: bool = False) -> str:
    """``items`` for a message: the first ``shown``, each escaped and cut to ``item_chars``, then how many more.

    >>> listing([f"g{i}" for i in range(120_000)])
    'g0, g1, g2, g3, g4 … and 119,995 more'
    >>> listing(["a\\nb", "c"], quote=True)
    "'a\\\\nb', 'c'"
    """
    items = list(items) if not isinstance(items, (list, tuple)) else items
    head = []
    for item in items[:shown]:
        text = printable(str(item))
        text = text if len(text) <= item_chars else text[: item_chars - 1] + "…"
        head.append(f"'{text}'" if quote else text)
    more = len(items) - len(head)
    return ", ".join(head) + (f" … and {more:,} more" if more > 0 else "")


def error_line(error: BaseException | str, prefix: str = "error: ") -> str:
    """The line a command prints for ``error``: escaped (:func:`printable`), on one line, at most :data:`MAX_LINE`
    characters with the prefix; a longer message is cut and says how much was left out.

    >>> len(error_line("x" * 10_000)) <= MAX_LINE
    True
    >>> error_line("bad\\nname")
    'error: bad\\\\nname'
    """
    text = printable(str(error))
    limit = MAX_LINE - len(prefix)
    if len(text) > limit:
        kept = limit - 40  # the note below is shorter than 40 characters
        text = f"{text[:kept]} … ({len(text) - kept:,} more characters)"
    return prefix + text
