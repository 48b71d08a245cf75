"""socktool ui: the main screens at 80x24 and 160x48, compared with the SVGs stored in tests/snapshots/.

Each test runs the app headless with real sessions and real peers on
loopback, brings it to a known state (a TCP server with two clients and some
traffic, a UDP socket beside it), and takes the screen as an SVG (Textual's
export_screenshot) three times: the text view, the hex view with client #2
chosen, and the new-session prompt. Each SVG must equal the stored one.

What changes from run to run is made fixed before the comparison, never
ignored: the clock the log shows and the "for" column are fixed (the
formatting functions are replaced for the test); the ports the system
picks (the listeners' and the clients') are replaced in the SVG by fixed
ports of the same width (ephemeral ports are 5 digits, so the layout is
the one drawn); the cursor does not blink; the id that rich puts in an
SVG's CSS classes (a hash of the content) is dropped.

A mismatch fails the test with the rows of text that differ, and the SVG
drawn is written beside the test's tmp_path for a look in a browser.

Updating the snapshots after a change to the screen (look at them before
committing: README.md shows one of them):

    SOCKTOOL_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_ui_snapshots.py

pytest-textual-snapshot is not used: its 1.1.0 pins syrupy 4.8.0, which
requires pytest < 9 (it would take the project's pytest 9 back to 8.4), and
it compares the SVG as drawn, with no way to fix ports a test cannot choose.
"""

from __future__ import annotations

import difflib
import html
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("textual")

from textual.widgets import Input

from test_ui import Peer, SocktoolApp, accepted_peer, choose_client, drive_closing, listening_port, type_and_send, until

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("SOCKTOOL_UPDATE_SNAPSHOTS") == "1"
SCREENS = ("server", "hex", "prompt")

pytestmark = pytest.mark.timeout(60)


def normalised(svg: str, ports: dict[int, str]) -> str:
    """The SVG with the system's ports replaced by fixed ones of the same width, and rich's id dropped."""
    for port, fixed in ports.items():
        assert len(str(port)) == len(fixed), f"port {port} is not 5 digits: the layout would differ"
        svg = re.sub(rf"(?<=:){port}(?!\d)", fixed, svg)  # HOST:PORT, wherever it is drawn
        assert not re.search(rf":{port}(?!\d)", svg)
    return re.sub(r"\bterminal-\d+-", "terminal-", svg)


def rows(svg: str) -> list[str]:
    """The screen's rows of text, as drawn in the SVG (for a readable diff): each text at its column."""
    cell = float(re.search(r"\.terminal-matrix \{[^}]*?font-size: ([\d.]+)px", svg, re.S).group(1)) * 0.61
    found: dict[int, list[str]] = {}
    pattern = r'<text [^>]*?x="([\d.]+)"[^>]*clip-path="url\(#terminal-(?:\d+-)?line-(\d+)\)">([^<]*)</text>'
    for x, line, text in re.findall(pattern, svg):
        row = found.setdefault(int(line), [])
        column = round(float(x) / cell)
        row += [" "] * (column - len(row))
        row[column : column + len(text)] = html.unescape(text).replace("\xa0", " ")
    return ["".join(found.get(line, [])).rstrip() for line in range(max(found, default=-1) + 1)]


def compare(name: str, svg: str, drawn_dir: Path) -> str | None:
    """None when `svg` is the stored snapshot `name` (or was stored, when updating); else what differs."""
    stored = SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        stored.write_text(svg)
        return None
    drawn = drawn_dir / f"{name}.svg"
    drawn.write_text(svg)
    if not stored.exists():
        return f"{name}: no stored snapshot {stored} (drawn: {drawn}; SOCKTOOL_UPDATE_SNAPSHOTS=1 stores it)"
    expected = stored.read_text()
    if expected == svg:
        return None
    diff = "\n".join(difflib.unified_diff(rows(expected), rows(svg), "stored", "drawn", lineterm="", n=1))
    return f"{name}: differs from {stored} (drawn: {drawn})\n" + (diff or "(same text: colours or styles differ)")


async def settled(app: SocktoolApp, pilot) -> str:
    """The screen once it stops changing (three looks a tick apart and more, all equal)."""
    for box in app.query(Input):
        box.cursor_blink = False
    previous = ""
    same = 0
    for _ in range(100):
        await pilot.pause(0.15)
        shot = app.export_screenshot()
        same = same + 1 if shot == previous else 0
        if same == 2:
            return shot
        previous = shot
    raise AssertionError("the screen kept changing")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screens_match_the_stored_snapshots(tmp_path, monkeypatch, size):
    monkeypatch.delenv("NO_COLOR", raising=False)  # the snapshots are in colour (test_ui's tmux test does the greys)
    monkeypatch.setattr("socktool.ui.trafficlog.clock", lambda ts: "12:34:56.789")
    monkeypatch.setattr("socktool.ui.app.format_duration", lambda seconds: "3s")
    peers: list[Peer] = []
    shots: dict[str, str] = {}
    ports: dict[int, str] = {}

    async def scenario(app: SocktoolApp, pilot) -> None:
        port = await listening_port(app, pilot, 0)
        ports[port] = "40001"
        ports[await listening_port(app, pilot, 1)] = "40002"
        app.select(app.sessions[0])
        session = app.sessions[0]
        for count in (1, 2):
            peer = await accepted_peer(app, pilot, peers, port, f"{count} client(s) in the list")
            ports[peer.local_port()] = f"5000{count}"
        peers[0].sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        await until(pilot, lambda: session.bytes_in == 18, "the request")
        await type_and_send(pilot, "hello")
        await until(pilot, lambda: all(len(peer.received) == 6 for peer in peers), "the line to both clients")
        peers[1].sock.sendall(b"\x00\x01\x02binary\xff\r\n")
        await until(pilot, lambda: session.bytes_in == 30, "the second client's bytes")
        counted = [(1, 18, 6), (2, 12, 6)]
        await until(
            pilot,
            lambda: (
                [(row.number, row.received, row.sent) for row in session.clients] == counted
                and app._rows_drawn is session.clients
            ),
            "the client list's counters drawn",
        )
        shots["server"] = await settled(app, pilot)
        await pilot.press("ctrl+x")
        await choose_client(app, pilot, 2)
        shots["hex"] = await settled(app, pilot)
        await pilot.press("ctrl+n")
        shots["prompt"] = await settled(app, pilot)
        await pilot.press("escape")

    drive_closing(peers, ["tcp-listen", "127.0.0.1:0", "udp-listen", "127.0.0.1:0"], scenario, size=size)
    width, height = size
    problems = [
        problem
        for screen in SCREENS
        if (problem := compare(f"ui-{screen}-{width}x{height}", normalised(shots[screen], ports), tmp_path))
    ]
    assert not problems, "\n\n".join(problems)


def test_a_changed_screen_fails_the_comparison_with_the_rows_that_differ(tmp_path):
    """The comparison itself: a stored snapshot with one word changed is reported, row by row."""
    if UPDATE:
        pytest.skip("snapshots are being stored")
    stored = (SNAPSHOTS / "ui-server-80x24.svg").read_text()
    changed = stored.replace("Sessions", "Sessionz", 1)
    problem = compare("ui-server-80x24", changed, tmp_path)
    assert problem is not None and "-Sessions" in problem and "+Sessionz" in problem
    assert compare("ui-server-80x24", stored, tmp_path) is None
    assert (tmp_path / "ui-server-80x24.svg").read_text() == stored


def test_ports_are_fixed_at_their_width_and_only_after_a_colon():
    svg = "<text>127.0.0.1:43521&#160;port&#160;43521</text><text>[::1]:43521</text> terminal-123456-r1"
    assert normalised(svg, {43521: "40001"}) == (
        "<text>127.0.0.1:40001&#160;port&#160;43521</text><text>[::1]:40001</text> terminal-r1"
    )
    with pytest.raises(AssertionError, match="not 5 digits"):
        normalised(svg, {4352: "40001"})
