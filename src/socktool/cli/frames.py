"""--frame, --max-frame and --checksum: the options, and what they make of the sink and the sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

from socktool import values
from socktool.cli import options as opt

if TYPE_CHECKING:  # pragma: no cover
    from socktool import frames
    from socktool.net import events as ev

# Start-up time: socktool/frames.py is imported only when --frame, --max-frame or --checksum is given.


def _parse_frame(text: str) -> frames.Framing:
    from socktool import frames

    return frames.parse_frame(text)


def _parse_size(text: str) -> int:
    from socktool import frames

    return frames.parse_size(text)


def _checksum(text: str) -> object:
    from socktool import frames

    return frames.checksum_bytes(text, b"")


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """A parser that validates the text (ValueError: exit 2) and keeps it."""

    def parse(text: str) -> str:
        check(text)
        return text

    return parse


Frame = Annotated[
    str | None,
    typer.Option(
        "--frame",
        metavar="FRAMING",
        parser=opt.value_parser(_checked(_parse_frame)),
        help=f"Messages on the stream: {values.FRAME_KINDS.replace('|', ', ')}. The view and JSON show one record per message; "
        "--send and console messages get the framing added.",
        rich_help_panel=opt.IO,
    ),
]
MaxFrame = Annotated[
    int | None,
    typer.Option(
        "--max-frame",
        metavar="SIZE",
        parser=opt.value_parser(_parse_size),
        help="With --frame: a larger message is an error for its connection (default 16MiB).",
        rich_help_panel=opt.IO,
        show_default=False,
    ),
]
Checksum = Annotated[
    str | None,
    typer.Option(
        "--checksum",
        metavar="NAME",  # the names are in the help: a long metavar narrows every row's help at 60 columns
        parser=opt.value_parser(_checked(_checksum)),
        help=f"Append this checksum ({', '.join(values.CHECKSUMS)}) to each message sent (--send, console lines).",
        rich_help_panel=opt.IO,
    ),
]


class FrameOptions(NamedTuple):
    framing: frames.Framing | None = None
    max_frame: int = values.DEFAULT_MAX_FRAME
    checksum: str | None = None

    @property
    def active(self) -> bool:
        return self.framing is not None or self.checksum is not None

    def encode(self, message: bytes) -> bytes:
        """A message to send: checksum appended, then framed."""
        if not self.active:
            return message
        from socktool import frames

        return frames.message_encoder(self.framing, self.checksum)(message)

    def sink(
        self, sink: ev.Sink, on_error: Callable[[int], None] | None = None, *, keeps_going: bool = False
    ) -> ev.Sink:
        if self.framing is None:
            return sink
        from socktool.view.frames import FramedSink

        return FramedSink(self.framing, sink, max_frame=self.max_frame, on_error=on_error, keeps_going=keeps_going)


def frame_options(frame: str | None, max_frame: int | None, checksum: str | None, *, crlf: bool) -> FrameOptions:
    if max_frame is not None and frame is None:
        raise typer.BadParameter("only with --frame", param_hint="'--max-frame'")
    if crlf and (frame is not None or checksum is not None):
        raise typer.BadParameter(
            "--crlf adds line ends to a stream; with messages use --frame crlf", param_hint="'--crlf'"
        )
    framing = _parse_frame(frame) if frame is not None else None
    return FrameOptions(framing, max_frame or values.DEFAULT_MAX_FRAME, checksum)
