"""Unit tier for the exec channel's client side (issue 21): the marker protocol, run against a real
/bin/sh (and bash) behind a local pseudo-terminal; the interactive terminal on each platform
(Windows simulated); the UTF-8 stream split across frames; cp's path syntax; the refusal's message.
No sandbox, no engine, no root."""
import io
import os
import signal
import sys
import threading
import time

import pytest

from azext_webapp import _exec_marker as marker
from azext_webapp._exec_run import ExecFailure, ProgramRun, base64_stream

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")


# -- the marker protocol, pure ------------------------------------------------------------------

def _events(session, data, step):
    got = []
    for i in range(0, len(data), step):
        got += session.feed(data[i:i + step])
    return got


def _joined(events):
    out, err, marks = b"", b"", []
    for kind, value in events:
        if kind == "out":
            out += value
        elif kind == "err":
            err += value
        else:
            marks.append((kind, value))
    return out, err, marks


def test_the_typed_bootstrap_never_holds_the_marker():
    session = marker.Session()
    line = session.bootstrap()
    assert session.marker not in line and line.endswith(b"\n") and line.count(b"\n") == 1
    program = session.program("echo hi\n")
    assert session.marker not in program and program.endswith(marker.END_OF_INPUT)
    assert marker.Session().nonce != session.nonce


@pytest.mark.parametrize("step", [1, 2, 7, 26, 27, 28, 4096])
def test_output_is_read_back_in_any_split(step):
    session = marker.Session("0123456789abcdef01234567")
    m = session.marker
    stdout = b"line\n" + b"AZX" + b"ffffffffffffffffffffffff" + b"E0\n" + b"AZX0123456789" + b"tail\x00\xff"
    stream = (b"$ typed echo " + m[:10] + b"\r\n" + m + b"R\n" + m + b"S\n" + stdout + m + b"E3\n"
              + b"oops\n" + m + b"Z\n" + b"after")
    out, err, marks = _joined(_events(session, stream, step))
    assert out == stdout            # a marker of another nonce, and a marker's beginning, are data
    assert err == b"oops\n"
    assert marks == [("R", ""), ("S", ""), ("E", "3"), ("Z", "")]
    assert session.phase == "done"


def test_a_partial_marker_is_held_back_only_while_it_may_be_one():
    session = marker.Session("0123456789abcdef01234567")
    session.feed(session.marker + b"S\n")
    assert session.feed(b"progress AZX0123") == [("out", b"progress ")]
    assert session.feed(b"x\n") == [("out", b"AZX0123x\n")]


def test_a_marker_line_without_end_is_a_protocol_error():
    session = marker.Session()
    with pytest.raises(marker.ProtocolError):
        session.feed(session.marker + b"S" + b"x" * (marker.MARKER_LINE_MAX + 10))


def test_the_shells_words_before_the_program_are_kept_readably():
    session = marker.Session()
    session.feed(b"\x1b[?2004h$ sh: 1: base64: not found\r\n" + session.marker + b"F\n")
    assert "base64: not found" in session.said() and "\x1b" not in session.said()


def test_input_lines_fit_the_terminals_line_limit_and_decode_back():
    data = os.urandom(100_000)
    lines = marker.input_lines(data)
    assert max(len(line) for line in lines.split(b"\n")) <= 4095
    decode = base64_stream()
    assert b"".join(decode(lines[i:i + 333]) for i in range(0, len(lines), 333)) == data


# -- the marker protocol against a real shell behind a terminal ------------------------------------

@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    """A root of BusyBox alone (tests/pty_shell.py): an Alpine-style container."""
    from tests.pty_shell import busybox_root
    root, why = busybox_root(str(tmp_path_factory.mktemp("busybox") / "root"))
    if root is None:
        pytest.skip(why)
    return root


@pytest.fixture(params=["/bin/sh", "/bin/bash", "busybox"])
def shell(request):
    """A factory of shells behind terminals (a program's end ends its shell): one per run. "busybox":
    its ash, in a root of BusyBox alone, through namespaces of its own."""
    from tests.pty_shell import PtyShell, busybox_shell
    if request.param == "busybox":
        root = request.getfixturevalue("busybox")
        start = lambda: busybox_shell(root)  # noqa: E731
    elif os.path.exists(request.param):
        start = lambda: PtyShell(request.param)  # noqa: E731
    else:
        pytest.skip(f"no {request.param}")
    made = []

    def make():
        made.append(start())
        return made[-1]
    yield make
    for pty_shell in made:
        pty_shell.close()


def _run(shell, command, source=None):
    out, err = bytearray(), bytearray()
    run = ProgramRun(shell().sock, marker.command_program(command, with_input=source is not None),
                     out.extend, err.extend, source=source)
    return run.run(), bytes(out), bytes(err), run


@posix_only
def test_a_command_gives_its_output_error_and_status(shell):
    ended, out, err, _ = _run(shell, 'printf "a\\000b\\377"; echo to-err >&2; echo AZX$((1+1)); exit 7')
    assert (ended, out, err) == ("7", b"a\x00b\xff" + b"AZX2\n", b"to-err\n")


@posix_only
def test_ps_and_echoes_never_show_the_marker(shell):
    ended, out, _, run = _run(shell, "ps -ef 2>/dev/null || ps; cat /proc/$PPID/cmdline")
    assert ended == "0" and run.session.marker not in out and len(out) > 20


@posix_only
def test_a_command_that_reads_input_gets_none_unless_given(shell):
    ended, out, _, _ = _run(shell, "cat; echo end")
    assert (ended, out) == ("0", b"end\n")
    data = os.urandom(200_000) + b"\x03\x04\n"
    ended, out, _, _ = _run(shell, "sha256sum | cut -c1-64", source=io.BytesIO(data))
    import hashlib
    assert (ended, out.strip().decode()) == ("0", hashlib.sha256(data).hexdigest())


@posix_only
def test_a_command_that_ends_before_its_input_does_not_wait_for_it(shell):
    read_end, write_end = os.pipe()         # input that never ends: nobody closes write_end
    try:
        started = time.monotonic()
        ended, out, _, _ = _run(shell, "echo quick", source=os.fdopen(read_end, "rb", buffering=0))
        assert (ended, out) == ("0", b"quick\n") and time.monotonic() - started < 10
    finally:
        os.close(write_end)


@posix_only
def test_ctrl_c_interrupts_the_command_which_still_reports_before_the_signal_is_raised(shell):
    from azext_webapp._termination import terminate_on
    marks = []
    run = ProgramRun(shell().sock, marker.command_program("echo started; sleep 30; echo never"), bytearray().extend,
                     on_marker=lambda letter, text: marks.append((letter, text)))
    with terminate_on("SIGINT"):
        threading.Timer(1.5, os.kill, args=(os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run.run()
    assert ("E", "130") in marks and ("Z", "") in marks      # the command was interrupted and reported
    assert time.monotonic() - started < 8


@posix_only
def test_a_shell_that_cannot_prepare_says_so():
    from tests.pty_shell import PtyShell
    pty_shell = PtyShell("/bin/sh", env={"PATH": "/nonexistent", "PS1": "$ "})   # no base64, no stty
    try:
        with pytest.raises(ExecFailure) as caught:
            _run(lambda: pty_shell, "true")
        assert caught.value.reason == "prepare"
    finally:
        pty_shell.close()


# -- the interactive terminal ------------------------------------------------------------------------

def test_the_platform_is_chosen_once_by_name():
    from azext_webapp import _exec_terminal
    assert _exec_terminal.for_platform("Windows") is _exec_terminal.WindowsTerminal
    assert _exec_terminal.for_platform("Linux") is _exec_terminal.PosixTerminal
    assert _exec_terminal.for_platform("Darwin") is _exec_terminal.PosixTerminal


@posix_only
def test_posix_raw_mode_is_restored_on_every_way_out():
    import termios
    from azext_webapp._exec_terminal import PosixTerminal
    parent, child = os.openpty()
    try:
        before, handler = termios.tcgetattr(child), signal.getsignal(signal.SIGWINCH)
        with pytest.raises(RuntimeError):
            with PosixTerminal(child, child) as terminal:
                raw = termios.tcgetattr(child)
                assert not raw[3] & (termios.ECHO | termios.ICANON | termios.ISIG)
                os.write(parent, b"\x03")
                assert terminal.keys(2) == b"\x03"          # Ctrl+C is a key, not a signal
                raise RuntimeError("boom")
        assert termios.tcgetattr(child) == before
        assert signal.getsignal(signal.SIGWINCH) == handler
    finally:
        os.close(parent)
        os.close(child)


@posix_only
def test_posix_resize_is_seen_through_sigwinch():
    from azext_webapp._exec_terminal import PosixTerminal
    parent, child = os.openpty()
    try:
        with PosixTerminal(child, child) as terminal:
            assert not terminal.resized()
            os.kill(os.getpid(), signal.SIGWINCH)
            assert terminal.resized() and not terminal.resized()
    finally:
        os.close(parent)
        os.close(child)


def test_posix_without_a_terminal_is_refused():
    from azext_webapp._exec_terminal import NoTerminalError, PosixTerminal
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(NoTerminalError):
            with PosixTerminal(read_end, write_end):
                pass
    finally:
        os.close(read_end)
        os.close(write_end)


class _Kernel32:
    """GetStdHandle/GetConsoleMode/SetConsoleMode of a simulated console."""

    def __init__(self, console=True):
        self.modes = {-10: 0x1F7, -11: 0x3} if console else {}
        self.calls = []

    def GetStdHandle(self, which):  # pylint: disable=invalid-name
        return which

    def GetConsoleMode(self, handle, ref):  # pylint: disable=invalid-name
        if handle not in self.modes:
            return 0
        ref._obj.value = self.modes[handle]  # pylint: disable=protected-access
        return 1

    def SetConsoleMode(self, handle, mode):  # pylint: disable=invalid-name
        self.calls.append((handle, mode))
        self.modes[handle] = mode
        return 1


class _Msvcrt:
    def __init__(self, chars):
        self.chars = list(chars)

    def kbhit(self):
        return bool(self.chars)

    def getwch(self):
        return self.chars.pop(0)


def test_windows_console_modes_are_set_and_restored():
    from azext_webapp._exec_terminal import WindowsTerminal
    kernel32 = _Kernel32()
    with WindowsTerminal(kernel32, _Msvcrt([]), stdout=io.StringIO()):
        assert not kernel32.modes[-10] & 0x0001        # processed input off: Ctrl+C is a key
        assert kernel32.modes[-11] & 0x0004            # VT processing on
    assert kernel32.modes == {-10: 0x1F7, -11: 0x3}


def test_windows_without_a_console_is_refused():
    from azext_webapp._exec_terminal import NoTerminalError, WindowsTerminal
    with pytest.raises(NoTerminalError):
        with WindowsTerminal(_Kernel32(console=False), _Msvcrt([]), stdout=io.StringIO()):
            pass


def test_windows_keys_become_what_a_unix_shell_expects():
    from azext_webapp._exec_terminal import WindowsTerminal
    keys = ["l", "s", "\x08", "\xe0", chr(72), "\x00", chr(59), "\x03", "\ud83d", "\ude00", "\u00e9"]
    terminal = WindowsTerminal(_Kernel32(), _Msvcrt(keys), stdout=io.StringIO(), sleep=lambda s: None)
    assert terminal.keys(0.1) == b"ls\x7f\x1b[A\x1bOP\x03" + "\U0001F600\u00e9".encode()


def test_windows_output_is_one_utf8_stream_across_frames():
    from azext_webapp._exec_terminal import WindowsTerminal
    shown = io.StringIO()
    terminal = WindowsTerminal(_Kernel32(), _Msvcrt([]), stdout=shown)
    data = "caf\u00e9 \u2713 \U0001F600\n".encode()
    for i in range(len(data)):          # one byte per frame: every character split somewhere
        terminal.write(data[i:i + 1])
    assert shown.getvalue() == "caf\u00e9 \u2713 \U0001F600\n"


def test_windows_resize_is_polled():
    from azext_webapp._exec_terminal import WindowsTerminal
    now = [0.0]
    terminal = WindowsTerminal(_Kernel32(), _Msvcrt([]), stdout=io.StringIO(), clock=lambda: now[0])
    sizes = iter([(80, 24), (80, 24), (100, 30)])
    terminal.size = lambda: next(sizes)
    with terminal:
        now[0] = 0.5
        assert not terminal.resized()       # not yet time to look
        now[0] = 1.2
        assert not terminal.resized()       # same size
        now[0] = 2.4
        assert terminal.resized()


def test_the_escape_leaves_only_at_a_lines_start():
    from azext_webapp._exec_shell import Escape
    escape = Escape()
    assert escape.filter(b"a~.b\r") == (b"a~.b\r", False)
    assert escape.filter(b"~~x\r") == (b"~x\r", False)
    assert escape.filter(b"~") == (b"", False)
    assert escape.filter(b"y") == (b"~y", False)
    assert escape.filter(b"\r~.") == (b"\r", True)


# -- cp's paths, the refusal's message, the fan-out's lines -----------------------------------------

@pytest.mark.parametrize("text, remote", [
    (":/home/f", (None, "/home/f")), ("myapp:/home/f", ("myapp", "/home/f")), (":rel", (None, "rel")),
    ("C:\\x\\y", None), ("C:/x", None), ("./:f", None), ("name:thing", None), ("f", None), ("/tmp/f", None),
])
def test_cp_tells_container_paths_from_local_ones(text, remote):
    from azext_webapp._copy import parse_location
    found = parse_location(text)
    assert (None if found is None else (found.app, found.path)) == remote


def test_fan_out_lines_are_whole():
    from azext_webapp._fanout import Lines
    got = []
    lines = Lines(got.append)
    for piece in (b"a", b"b\nc", b"d\n\ne", b""):
        lines.write(piece)
    lines.close()
    assert got == [b"ab\n", b"cd\n", b"\n", b"e"]


def test_exit_status_text():
    from azext_webapp._exec_command import exit_status
    assert [exit_status(t) for t in ("0", "130", " 7 ", "", None, "x", "999")] == [0, 130, 7, 255, 255, 255, 255]


# -- opening the channel while the app restarts ---------------------------------------------------

class _RefusingTunnels:
    """A tunnel module whose Channel is refused with these HTTP statuses, one per attempt, then opens."""

    from azext_webapp.tunnel import TunnelError

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.attempts = self.closed = 0
        tunnels = self

        class Channel:
            def __init__(self, scm_url, authorization, path, instance=None):
                self.path = path

            def open(self, first_text=None, timeout=30.0):
                tunnels.attempts += 1
                if tunnels.statuses:
                    raise tunnels.TunnelError('http_status', {'host': 'scm.example', 'status': tunnels.statuses.pop(0)})
                return self

            def close(self):
                tunnels.closed += 1

        self.Channel = Channel


def _endpoint(tunnels):
    from types import SimpleNamespace
    from azext_webapp._arm import Target
    return SimpleNamespace(tunnel=tunnels, scm_url='https://app.scm.example', target=Target('rg', 'app', None),
                           credential=SimpleNamespace(authorization='Basic x'))


def test_the_channel_waits_while_the_front_end_answers_the_restarts_503(monkeypatch):
    from azext_webapp import _exec_channel, _hops
    monkeypatch.setattr(_hops, 'STARTING_POLL_INTERVAL', 0.01)
    tunnels = _RefusingTunnels([503, 502, 503])
    with _exec_channel.open_channel(_endpoint(tunnels)) as channel:
        assert channel.path == '/exec/shell'
    assert tunnels.attempts == 4 and tunnels.closed == 4       # each refused channel closed, then the open one


@pytest.mark.parametrize('status', [403, 404, 500])
def test_other_refusals_are_not_retried(monkeypatch, status):
    from azure.cli.core.azclierror import AzCLIError
    from azext_webapp import _exec_channel, _hops
    monkeypatch.setattr(_hops, 'STARTING_POLL_INTERVAL', 0.01)
    tunnels = _RefusingTunnels([status])
    with pytest.raises(AzCLIError) as raised:
        with _exec_channel.open_channel(_endpoint(tunnels)):
            pass
    assert tunnels.attempts == 1 and f'HTTP {status}' in str(raised.value)


def test_a_restart_that_never_ends_is_given_up_with_what_503_means(monkeypatch):
    from azure.cli.core.azclierror import AzCLIError
    from azext_webapp import _exec_channel, _hops
    monkeypatch.setattr(_hops, 'STARTING_POLL_INTERVAL', 0.01)
    monkeypatch.setattr(_hops, 'STARTING_MAX_WAIT', 0.2)
    tunnels = _RefusingTunnels([503] * 1000)
    with pytest.raises(AzCLIError) as raised:
        with _exec_channel.open_channel(_endpoint(tunnels)):
            pass
    assert 1 < tunnels.attempts < 1000
    assert "HTTP 503" in str(raised.value) and "while the app restarts" in str(raised.value)


def test_a_status_probe_that_never_gets_past_the_front_end_says_what_it_answered(monkeypatch):
    """A 503 that lasts the whole wait is the front end's answer, said with what it means, not "the app
    is still starting" (which a STARTING GetStatus would say)."""
    from types import SimpleNamespace
    from azext_webapp import _hops, tunnel
    from azext_webapp._arm import Target
    monkeypatch.setattr(_hops, 'STARTING_POLL_INTERVAL', 0.01)
    monkeypatch.setattr(_hops, 'STARTING_MAX_WAIT', 0.2)
    asked = []

    def get_status(*args, **kwargs):
        asked.append(1)
        raise tunnel.TunnelError('http_status', {'host': 'app.scm.example', 'status': 503})
    w = SimpleNamespace(tunnel=SimpleNamespace(get_status=get_status, TunnelError=tunnel.TunnelError),
                        scm_url='https://app.scm.example', authorization='Basic x', instance=None, timeout=5.0,
                        thorough=False, target=Target('rg', 'app', None), target_port=None, access=None,
                        auth_kind='Basic', rights=None)
    with pytest.raises(_hops.HopFailed) as raised:
        _hops.status(w)
    said = str(raised.value.error)
    assert len(asked) > 1 and 'HTTP 503' in said and 'while the app restarts' in said and 'start' in said
