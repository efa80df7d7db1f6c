"""``az webapp remote-connection cp``: a file to or from the container through the exec channel, no
sshd needed.

Paths: the remote side is ``:/abs/path`` (the app named by -n/--ids) or ``APP:/abs/path``; anything
else is local. An app name has at least two characters, so ``C:\\x`` and ``C:/x`` stay local paths
on Windows; a local path that starts with a colon is written ``./:name``.

The bytes travel as base64 lines through the shell's terminal (the marker protocol,
``_exec_marker``), so they arrive byte for byte whatever the terminal and the server do to text.
Upload: the local file's size and SHA-256 are known before it goes; the container writes it to a
temporary file beside the destination, checks size and checksum (sha256sum where it has one, else
the size alone), and only then renames it into place, so a failed or interrupted copy leaves no
partial file. Download: the container says the size first and the checksum after the data; the
local side writes a temporary file beside the destination and renames it into place once both
match. A progress bar goes to standard error when it is a terminal.

``--recursive``: a directory travels as one tar archive (GNU format, owners left out, checked as a
file is), so the container needs tar too. Upload: the archive is unpacked into a temporary directory
beside the destination and renamed into place, or, where the directory is already there, unpacked
over it (files replaced, the rest kept: what ``cp -r`` and ``scp -r`` do). Download: the container
packs the directory into a temporary file and sends it as a file; the local side unpacks only what
stays inside the destination (tarfile's ``data`` filter: no absolute paths, no ``..``, no links out,
no devices) into a temporary directory, then renames or merges it into place.
"""

import hashlib
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time

from azure.cli.core.azclierror import FileOperationError, ValidationError
from knack.log import get_logger

from azext_webapp._exec_channel import open_channel
from azext_webapp._termination import raise_if_signalled
from azext_webapp._exec_run import ExecFailure, ProgramRun, base64_stream

logger = get_logger(__name__)

REMOTE = re.compile(r'^(?P<app>[A-Za-z0-9][A-Za-z0-9-]+)?:(?P<path>.*)$', re.DOTALL)
SHELL = '/bin/sh'
EXEC_REASONS = ('prepare', 'start-timeout', 'ended', 'input', 'mktemp')    # the channel's, not the copy's
HASH_CHUNK = 1 << 20


class Remote:  # pylint: disable=too-few-public-methods
    """A remote path: ``app`` (None: the one named by -n) and ``path`` (absolute)."""

    def __init__(self, app, path):
        self.app, self.path = app, path

    def __repr__(self):
        return f'{self.app or ""}:{self.path}'


def parse_location(text):
    """A Remote for ``:/path`` or ``APP:/path``, else None (a local path)."""
    match = REMOTE.match(text)
    if not match:
        return None
    app, path = match.group('app'), match.group('path')
    if app is not None and not path.startswith('/'):
        return None             # name:thing is a local file of that name
    return Remote(app, path)


# A signal ends a program through its EXIT trap (which removes its temporary files).
_TRAPS = ["trap 'exit 129' HUP", "trap 'exit 143' TERM", "trap 'exit 130' INT"]
# After S: the base64 lines into "$t", then its size ($n) and, where sha256sum is, its SHA-256 ($h)
# checked; $v says which check it passed.
_RECEIVE_CHECKED = [
    'm S',
    'e=$(base64 -d 2>&1 >"$t") || { m "Fwrite $(printf %s "$e" | head -n 1)"; exit 1; }',
    'got=$(wc -c <"$t" | tr -d " ")',
    '[ "$got" = "$n" ] || { m "Fsize $got"; exit 1; }',
    'v=size',
    'if command -v sha256sum >/dev/null 2>&1; then',
    '  [ "$(sha256sum <"$t" | cut -c1-64)" = "$h" ] || { m Fchecksum; exit 1; }',
    '  v=sha256',
    'fi']


def upload_program(path, size, sha256, name):
    """Write what arrives to a temporary file beside path (into path when it is a directory, under
    ``name``), check it, rename it into place."""
    return '\n'.join([
        f'dst={shlex.quote(path)} n={size} h={sha256} base={shlex.quote(name)}',
        '[ -d "$dst" ] && dst="${dst%/}/$base"',
        'case $dst in */) m Fnodir; exit 1;; esac',
        'dir=$(dirname "$dst")',
        '[ -d "$dir" ] || { m Fnodir; exit 1; }',
        '[ -d "$dst" ] && { m Fisdir; exit 1; }',
        't=$(mktemp "$dir/.azx.XXXXXX" 2>/dev/null) || { m Fdenied; exit 1; }',
        "trap 'rm -f \"$t\"' EXIT",
        *_TRAPS,
        'mode=$(stat -c %a "$dst" 2>/dev/null) || mode=$(printf %o $(( 0666 & ~0$(umask) )))',
        *_RECEIVE_CHECKED,
        'chmod "$mode" "$t" 2>/dev/null',
        'e=$(mv -f "$t" "$dst" 2>&1) || { m "Fmove $(printf %s "$e" | head -n 1)"; exit 1; }',
        "trap - EXIT",
        'm "E0 $v $dst"',
        'm Z', ''])


def upload_tree_program(path, size, sha256, name):
    """Write the archive to a temporary file beside the destination, check it, unpack it: into a
    temporary directory then renamed into place, or over the directory already there."""
    return '\n'.join([
        f'dst={shlex.quote(path)} n={size} h={sha256} base={shlex.quote(name)}',
        'if [ -d "$dst" ]; then f="${dst%/}/$base"; else f="${dst%/}"; fi',
        'dir=$(dirname "$f")',
        '[ -d "$dir" ] || { m Fnodir; exit 1; }',
        '[ -e "$f" ] && [ ! -d "$f" ] && { m Fnotdir; exit 1; }',
        'command -v tar >/dev/null 2>&1 || { m Fnotar; exit 1; }',
        't=$(mktemp "$dir/.azx.XXXXXX" 2>/dev/null) || { m Fdenied; exit 1; }',
        'x=$(mktemp -d "$dir/.azx.XXXXXX" 2>/dev/null) || { rm -f "$t"; m Fdenied; exit 1; }',
        "trap 'rm -rf \"$t\" \"$x\"' EXIT",
        *_TRAPS,
        *_RECEIVE_CHECKED,
        'if [ -d "$f" ]; then',
        '  e=$(tar -xof "$t" -C "$x" 2>&1 && cd "$x/$base" && tar -cf - . | tar -xof - -C "$f" 2>&1) '
        '|| { m "Fwrite $(printf %s "$e" | head -n 1)"; exit 1; }',
        'else',
        '  e=$(tar -xof "$t" -C "$x" 2>&1 && mv "$x/$base" "$f" 2>&1) '
        '|| { m "Fwrite $(printf %s "$e" | head -n 1)"; exit 1; }',
        'fi',
        'm "E0 $v $f"',
        'm Z', ''])


def download_program(path, recursive=False):
    """The file's size (S), its bytes as base64, then its checksum (E) when sha256sum is there.
    recursive: a directory is packed into a tar archive first and sent as that file (S says "tar")."""
    if recursive:
        directory = [
            'if [ -d "$src" ]; then',
            '  command -v tar >/dev/null 2>&1 || { m Fnotar; exit 1; }',
            '  t=$(mktemp 2>/dev/null) || { m Fdenied; exit 1; }',
            "  trap 'rm -f \"$t\"' EXIT",
            *_TRAPS,
            '  real=$(cd "$src" && pwd -P) || { m Fdenied; exit 1; }',
            '  up=$(dirname "$real") top=$(basename "$real")',
            '  e=$(cd "$up" && tar -cf "$t" "$top" 2>&1) || { m "Fpack $(printf %s "$e" | head -n 1)"; exit 1; }',
            '  src=$t k=" tar"',
            'fi']
    else:
        directory = ['[ -d "$src" ] && { m Fisdir; exit 1; }']
    return '\n'.join([
        f'src={shlex.quote(path)} k=',
        '[ -e "$src" ] || { m Fnofile; exit 1; }',
        '[ -r "$src" ] || { m Fdenied; exit 1; }',
        *directory,
        'n=$(wc -c <"$src" | tr -d " ")',
        'm "S$n$k"',
        'base64 <"$src" || { m Fread; exit 1; }',
        'h=$(sha256sum <"$src" 2>/dev/null | cut -c1-64)',
        'm "E0 $h"',
        'm Z', ''])


class Progress:
    """A one-line progress bar on a terminal (nothing elsewhere), at most ten updates a second."""

    def __init__(self, label, total, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.label, self.total, self.clock = label, total, clock
        self.shown = self.stream.isatty() if hasattr(self.stream, 'isatty') else False
        self.started = self.last = self.moved = clock()
        self.done = 0

    def update(self, done):
        now = self.clock()
        if done != self.done:
            self.done, self.moved = done, now
        if self.shown and now - self.last >= 0.1:
            self.last = now
            self._draw()

    def _draw(self):
        rate = self.done / max(self.moved - self.started, 1e-3) / 1e6
        percent = 100 * self.done // self.total if self.total else 100
        self.stream.write(f'\r{self.label}  {percent:3d}%  {self.done / 1048576:8.1f} of '
                          f'{self.total / 1048576:.1f} MiB  {rate:6.1f} MB/s ')
        self.stream.flush()

    def finish(self):
        if self.shown:
            self._draw()
            self.stream.write('\n')
            self.stream.flush()


def file_sha256(path):
    with open(path, 'rb') as source:
        return _sha256(source)


def _sha256(source):
    """Of what source holds from where it stands; Ctrl+C ends it between blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: source.read(HASH_CHUNK), b''):
        raise_if_signalled()
        digest.update(block)
    return digest.hexdigest()


def _run(endpoint, instance, remote_path, program, **options):
    """One side of a copy through a channel of its own: its E marker's text. The channel's or the
    shell's failure is said as exec's, the copy's own as cp's."""
    from azext_webapp._errors import copy_error, exec_failure
    with open_channel(endpoint, instance, shell=SHELL) as channel:
        try:
            return ProgramRun(channel.sock, program, **options).run()
        except ExecFailure as failure:
            if failure.reason in EXEC_REASONS:
                raise exec_failure(failure.reason, failure.said, endpoint.target, instance) from None
            raise copy_error(failure.reason, remote_path, endpoint.target, instance) from None


def upload(endpoint, instance, local, remote_path, recursive=False):
    """Returns the container path written."""
    if os.path.isdir(local):
        if not recursive:
            raise ValidationError(f'{local} is a directory: add --recursive to copy it with all it holds.')
        return _upload_tree(endpoint, instance, local, remote_path)
    try:
        size, sha256 = os.path.getsize(local), file_sha256(local)
        source = open(local, 'rb')  # pylint: disable=consider-using-with
    except OSError as err:
        raise FileOperationError(f'Cannot read {local}: {err.strerror or err}.') from None
    program = upload_program(remote_path, size, sha256, os.path.basename(local))
    with source:
        return _send(endpoint, instance, remote_path, program, source, os.path.basename(local), size)


def _upload_tree(endpoint, instance, local, remote_path):
    name = os.path.basename(os.path.normpath(os.path.abspath(local)))
    with tempfile.TemporaryFile() as archive:
        pack(local, name, archive)
        size = archive.tell()
        archive.seek(0)
        sha256 = _sha256(archive)
        archive.seek(0)
        program = upload_tree_program(remote_path, size, sha256, name)
        return _send(endpoint, instance, remote_path, program, archive, f'{name}/', size)


def _send(endpoint, instance, remote_path, program, source, label, size):
    progress = Progress(label, size)
    ended = _run(endpoint, instance, remote_path, program, out=lambda data: None, source=source,
                 sent=progress.update)
    progress.finish()
    _, _, written = (ended or '').partition(' ')
    how, _, where = written.partition(' ')
    logger.info('Copied %d bytes to %s (checked: %s)', size, where, how)
    return where or remote_path


def pack(local, name, archive):
    """The directory local as a tar archive whose top is name: regular files, directories and links,
    without their owners (the container's user owns what it unpacks)."""
    def plain(member):
        raise_if_signalled()
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            logger.warning('Left out %s: only files, directories and links are copied.', member.name)
            return None
        member.uid = member.gid = 0
        member.uname = member.gname = ''
        return member
    try:
        with tarfile.open(fileobj=archive, mode='w', format=tarfile.GNU_FORMAT) as tar:
            tar.add(os.path.realpath(local), arcname=name, filter=plain)  # a link to a directory: its tree
    except OSError as err:
        raise FileOperationError(f'Cannot read {getattr(err, "filename", None) or local}: '
                                 f'{err.strerror or err}.') from None


def download(endpoint, instance, remote_path, local, recursive=False):
    """Returns the local path written."""
    destination = local_destination(local, remote_path)
    folder = os.path.dirname(os.path.abspath(destination))
    try:
        handle, temporary = tempfile.mkstemp(prefix='.azx-', dir=folder)
    except OSError as err:
        raise FileOperationError(f'Cannot write in {folder}: {err.strerror or err}.') from None
    state = {'size': None, 'got': 0, 'digest': hashlib.sha256(), 'tar': False}
    decode = base64_stream()
    progress = Progress(os.path.basename(destination), 0)
    try:
        with os.fdopen(handle, 'wb') as sink:
            def out(text):
                data = decode(text)
                sink.write(data)
                state['digest'].update(data)
                state['got'] += len(data)
                progress.update(state['got'])

            def on_marker(letter, text):
                if letter == 'S':
                    size, _, kind = text.partition(' ')
                    state['size'] = int(size) if size.isdigit() else None
                    state['tar'] = kind == 'tar'
                    progress.total = state['size'] or 0

            program = download_program(remote_path, recursive)
            ended = _run(endpoint, instance, remote_path, program, out=out, on_marker=on_marker)
        progress.finish()
        _check_download(state, ended, remote_path)
        if state['tar']:
            return unpack(temporary, _remote_name(remote_path), local)
        if os.path.isdir(destination):
            raise FileOperationError(f'Cannot write {destination}: it is a directory.')
        os.chmod(temporary, _mode_for(destination))
        os.replace(temporary, destination)
        temporary = None
    finally:
        if temporary is not None:
            os.unlink(temporary)
    return destination


def unpack(archive_path, name, local):
    """A downloaded directory, one directory at the archive's top (the container names it as it is
    on its disk: a link's target), into local: under name when local is a directory already, else
    as local. Returns the path written. Only what stays inside that top directory is unpacked."""
    final = os.path.join(local, name) if os.path.isdir(local) else local
    if os.path.exists(final) and not os.path.isdir(final):
        raise FileOperationError(f'Cannot write the directory {final}: a file of that name is there.')
    parent = os.path.dirname(os.path.abspath(final))
    staging = tempfile.mkdtemp(prefix='.azx-', dir=parent)
    try:
        with tarfile.open(archive_path) as tar:
            members = tar.getmembers()
            top = members[0].name.split('/', 1)[0] if members else ''
            outside = [m.name for m in members if m.name != top and not m.name.startswith(top + '/')]
            if not members or not members[0].isdir() or top in ('', '.', '..') or outside:
                shown = outside[0] if outside else top
                raise FileOperationError(f'The archive of {name} holds {shown!r}, outside one directory; nothing '
                                         'was written.')
            _extract(tar, members, staging, name)
        unpacked = os.path.join(staging, top)
        if os.path.isdir(final):
            _merge(unpacked, final)
        else:
            os.replace(unpacked, final)
    except OSError as err:
        raise FileOperationError(f'Cannot write {getattr(err, "filename", None) or final}: '
                                 f'{err.strerror or err}.') from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _extract(tar, members, staging, name):
    """tarfile's data filter where this Python has it (3.11.4 and later, and the fixed releases of
    3.8 to 3.10); before that, only files and directories with plain relative names, links left out."""
    def checked(member, path):
        raise_if_signalled()
        return tarfile.data_filter(member, path)
    if hasattr(tarfile, 'data_filter'):
        try:
            tar.extractall(staging, members=members, filter=checked)
        except tarfile.FilterError as err:
            raise FileOperationError(f'The copy of {name} holds what cannot be written safely ({err}); nothing '
                                     'was written.') from None
        return
    plain = []
    for member in members:
        raise_if_signalled()
        if member.issym() or member.islnk():
            logger.warning('Left out the link %s: this Python cannot unpack links safely.', member.name)
        elif (member.isreg() or member.isdir()) and '..' not in member.name.split('/'):
            plain.append(member)
        else:
            raise FileOperationError(f'The copy of {name} holds {member.name!r}, which cannot be written safely; '
                                     'nothing was written.')
    tar.extractall(staging, members=plain)  # nosec: plain relative names only, checked above


def _merge(source, destination):
    """source's tree over destination's: files replaced, directories made, the rest kept."""
    for folder, directories, files in os.walk(source):
        target = os.path.join(destination, os.path.relpath(folder, source))
        os.makedirs(target, exist_ok=True)
        for entry in files + [d for d in directories if os.path.islink(os.path.join(folder, d))]:
            raise_if_signalled()
            os.replace(os.path.join(folder, entry), os.path.join(target, entry))


def _check_download(state, ended, remote_path):
    _, _, remote_hash = (ended or '').partition(' ')
    if state['size'] is None or state['got'] != state['size']:
        raise FileOperationError(f'The copy of {remote_path} arrived incomplete ({state["got"]} of '
                                 f'{state["size"]} bytes); nothing was written. Run the command again.')
    if remote_hash and remote_hash != state['digest'].hexdigest():
        raise FileOperationError(f'The copy of {remote_path} arrived damaged (its SHA-256 differs); nothing was '
                                 'written. Run the command again (did the file change meanwhile?).')


def _mode_for(path):
    """The replaced file's mode, or what the umask gives a new file (mkstemp's is 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def _remote_name(remote_path):
    return remote_path.rstrip('/').rsplit('/', 1)[-1]


def local_destination(local, remote_path):
    """Where a download goes: into local when it is a directory (under the remote file's name)."""
    name = _remote_name(remote_path)
    if not name:
        raise ValidationError('The container\'s root directory cannot be copied: name a directory below it.')
    if os.path.isdir(local):
        return os.path.join(local, name)
    folder = os.path.dirname(os.path.abspath(local))
    if not os.path.isdir(folder):
        raise FileOperationError(f'Cannot write {local}: the directory {folder} does not exist.')
    return local
