"""``az webapp remote-connection exec ... -- CMD``: a command through the exec channel, with its
standard output as it streams, its standard error, and its exit status (the marker protocol,
``_exec_marker``), on one instance or on several at once (``_fanout.FanOut``).

One instance: the command's standard output goes to ours as it comes, its standard error to ours
once it has ended, and az exits with its status. Its standard input is ours when ours is a pipe or
a file, else /dev/null (never the terminal's keys). Several: at most ``MAX_PARALLEL`` channels at
once, output lines prefixed with the instance (or one record each with --output), the worst status;
an instance that cannot be reached is a record with status 255; standard input is /dev/null.
"""

import os
import stat

from knack.log import get_logger

from azext_webapp import _fanout
from azext_webapp._exec_channel import open_channel
from azext_webapp._exec_marker import command_program
from azext_webapp._exec_run import ExecFailure, ProgramRun

logger = get_logger(__name__)

MAX_PARALLEL = 8            # channels open at once; more instances wait for a free slot
DEFAULT_SHELL = '/bin/sh'   # every Linux image has one (bash is not in every image)
COMMAND_SIZE = (200, 50)    # the terminal size the command's shell is told (its output is a pipe)


def command_line(words):
    """The remote command from the words after `--`, joined as ssh joins them (the remote shell
    splits them again, so quote what must stay one word)."""
    return ' '.join(words)


def local_input(fd=0):
    """Our standard input as a binary file when it is a pipe, a file or a socket (its bytes are the
    command's input), else None (a terminal, /dev/null, nothing)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    if os.isatty(fd) or not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)):
        return None
    # unbuffered: a thread still blocked in a buffered reader's read when az exits makes Python
    # abort at shutdown (the reader's lock); a raw read holds no lock
    return os.fdopen(fd, 'rb', buffering=0, closefd=False)


def exit_status(text):
    """The E marker's text as an exit status (255 when it is not one)."""
    text = (text or '').strip()
    return int(text) if text.isdigit() and int(text) <= 255 else 255


def run_one(endpoint, instance, kudu, shell, command, out, err, source=None):
    """The command on one instance; returns its exit status (raises the az error when it could not
    run, the recorded signal once it was interrupted). out/err: callables for its standard output
    and error bytes."""
    from azext_webapp._errors import exec_failure
    with open_channel(endpoint, instance, kudu, shell or DEFAULT_SHELL, COMMAND_SIZE) as channel:
        run = ProgramRun(channel.sock, command_program(command, shell or DEFAULT_SHELL, source is not None),
                         out, err, source=source)
        try:
            ended = run.run()
        except ExecFailure as failure:
            raise exec_failure(failure.reason, failure.said, endpoint.target, instance) from None
        if run.input_error is not None:
            logger.warning('Standard input was not delivered completely: %s', run.input_error)
    return exit_status(ended)


class ExecFanOut(_fanout.FanOut):
    """The command on each instance through a channel of its own (see the module docstring)."""

    max_parallel = MAX_PARALLEL

    def __init__(self, endpoint, names, kudu, shell, command, stream):
        super().__init__(names, stream)
        self.endpoint, self.kudu, self.shell, self.command = endpoint, kudu, shell, command
        self.structured = not stream

    def _run(self, name, result):
        kept = {'stdout': [], 'stderr': []}
        lines = {stream: _fanout.Lines(lambda data, stream=stream: self.line(name, stream, data))
                 for stream in kept}

        def sink(stream):
            def write(data):
                if self.structured:     # a record needs it all; streamed lines are not kept
                    kept[stream].append(data)
                lines[stream].write(data)
            return write
        try:
            code = run_one(self.endpoint, name, self.kudu, self.shell, self.command, sink('stdout'), sink('stderr'))
        finally:
            for each in lines.values():
                each.close()
        text = {stream: b''.join(parts).decode('utf-8', 'replace') for stream, parts in kept.items()}
        return code, text['stdout'], text['stderr']
