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
