"""The ``llm-embedder`` command.  Thin by design: it builds the parser from the command modules
(:mod:`llm_embedder.commands`, each a parser next to its handler) and runs the command chosen."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence

from llm_embedder.commands import (
    adapt,
    data,
    demo,
    encode,
    evaluate,
    index,
    merge,
    mine,
    reembed,
    run,
    score,
    search,
    serve,
    train,
)
from llm_embedder.errors import InputError

log = logging.getLogger("llm_embedder")

COMMANDS = (encode, index, search, mine, score, train, evaluate, merge, data, run, serve, adapt, reembed, demo)
"""The command modules, in the order ``--help`` lists them; each has ``register(subparsers)``."""


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, naming the option, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"llm-embedder: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from llm_embedder import __version__

    parser = _Parser(
        prog="llm-embedder",
        description="Train, evaluate and serve one embedding model for every retrieval need of an LLM.",
    )
    parser.add_argument("--version", action="version", version=f"llm-embedder {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from llm_embedder import outputs

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, see _Parser), --help or --version
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    failed = True
    try:
        # Every output is checked against every input before the command reads or loads anything.
        spec = getattr(args, "io", None)
        if spec is None:
            raise RuntimeError(f"`llm-embedder {args.command}` declares no inputs and outputs (io=Spec): a bug")
        outputs.declare(spec, args)
        code = func(args)
        failed = code != 0
        return code
    except (InputError, ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"llm-embedder: error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llm-embedder: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: the checks above should have caught it
        if args.debug:
            raise
        print(
            f"llm-embedder: unexpected error: {type(exc).__name__}: {_first_line(exc)} "
            "(run again with --debug to see the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        outputs.release(failed)


_OS_ERRORS = {
    errno.ENOENT: "not found",
    errno.EACCES: "permission denied; choose a path you may use, or change its permissions",
    errno.EPERM: "operation not permitted; choose a path you may use, or change its permissions",
    errno.ENOSPC: "no space left on the device; free some space or choose another path",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another path",
    errno.EROFS: "on a read-only file system; choose another path",
    errno.EISDIR: "is a folder where a file was expected; give a file path",
    errno.ENOTDIR: "a part of the path is a file where a folder was expected",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter path",
    errno.EEXIST: "already exists; choose another path",
    errno.ENOTEMPTY: "is a folder that is not empty; choose another path",
}


def _message(exc: BaseException) -> str:
    """One line for the user: the file, and what went wrong and what to do; for a system error the
    errno in words, never ``[Errno 28] ...``."""
    if isinstance(exc, OSError) and exc.errno is not None:
        standard = exc.strerror == os.strerror(exc.errno)  # the C library's words, not ours
        what = (_OS_ERRORS.get(exc.errno) or str(exc.strerror).lower()) if standard else str(exc.strerror)
        return _first_line(OSError(f"{exc.filename}: {what}" if exc.filename is not None else what))
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
