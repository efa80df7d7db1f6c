"""Fast tier: the exec channel's programs in a container whose userland is BusyBox alone, as in
Alpine-based images: a root of BusyBox and its applets, entered with a user namespace (no root
needed), its ash behind a local pseudo-terminal. The whole marker protocol runs there as in a
container (the bootstrap line, stty, base64, the program's /bin/sh), with a command, its input, and
the copies both ways, files and trees."""
import hashlib
import io
import os
import shutil
import subprocess
import sys

import pytest

from azext_webapp import _copy
from azext_webapp import _exec_marker as marker
from azext_webapp._exec_run import ProgramRun, base64_stream
from tests.test_unit_copy import make_tree, packed, tree_of

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='a POSIX container')


def _libraries(binary):
    """The shared objects a dynamically linked binary loads, as ldd names them."""
    listing = subprocess.run(['ldd', binary], capture_output=True, text=True, check=False).stdout
    return [word for line in listing.splitlines() for word in line.split() if word.startswith('/')]


@pytest.fixture(scope='module')
def busybox_root(tmp_path_factory):
    busybox, unshare = shutil.which('busybox'), shutil.which('unshare')
    if not busybox or not unshare:
        pytest.skip('needs busybox and unshare (make deps installs them)')
    if subprocess.run([unshare, '--user', '--map-root-user', '--mount', 'true'], check=False,
                      capture_output=True).returncode != 0:
        pytest.skip('user namespaces are not available here')
    root = tmp_path_factory.mktemp('busybox-root')
    for folder in ('bin', 'tmp', 'dev'):
        (root / folder).mkdir()
    os.chmod(root / 'tmp', 0o1777)
    (root / 'dev' / 'null').touch()             # a bind mount of the real one goes over it
    shutil.copy2(busybox, root / 'bin' / 'busybox')
    applets = subprocess.run([busybox, '--list'], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != 'busybox':
            os.symlink('busybox', root / 'bin' / applet)
    for library in _libraries(busybox):
        (root / library.lstrip('/')).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, root / library.lstrip('/'))
    return root


@pytest.fixture
def container(busybox_root):
    """A factory of BusyBox shells behind terminals, one per run."""
    from tests.pty_shell import PtyShell
    made = []
    enter = ('mount --bind /dev/null "$1/dev/null" && exec chroot "$1" /bin/sh -i')

    def make():
        argv = [shutil.which('unshare'), '--user', '--map-root-user', '--mount', '--', '/bin/sh', '-c', enter,
                'enter', str(busybox_root)]
        made.append(PtyShell(argv=argv, env={'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'PS1': '$ ', 'HOME': '/tmp',
                                             'TERM': 'xterm'}))
        return made[-1]
    yield make
    for shell in made:
        shell.close()


def run(container, program, source=None, on_marker=None):
    out, err = bytearray(), bytearray()
    ended = ProgramRun(container().sock, program, out.extend, err.extend, source=source, on_marker=on_marker).run()
    return ended, bytes(out), bytes(err)


def test_it_is_busybox(container):
    ended, out, _ = run(container, marker.command_program('readlink /bin/sh; ls /bin | wc -l'))
    assert ended == '0' and out.split()[0] == b'busybox' and int(out.split()[1]) > 100


def test_a_command_gives_its_output_error_and_status(container):
    ended, out, err = run(container, marker.command_program('printf "a\\000b\\377"; echo to-err >&2; exit 7'))
    assert (ended, out, err) == ('7', b'a\x00b\xff', b'to-err\n')


def test_a_command_reads_the_input_it_is_given(container):
    data = os.urandom(100_000) + b'\x03\x04\n'
    ended, out, _ = run(container, marker.command_program('sha256sum | cut -c1-64', with_input=True),
                        source=io.BytesIO(data))
    assert (ended, out.strip().decode()) == ('0', hashlib.sha256(data).hexdigest())


def test_a_file_both_ways(container, busybox_root):
    data = os.urandom(300_000)
    program = _copy.upload_program('/tmp/', len(data), hashlib.sha256(data).hexdigest(), 'up.bin')
    ended, _, _ = run(container, program, source=io.BytesIO(data))
    assert ended == '0 sha256 /tmp/up.bin' and (busybox_root / 'tmp' / 'up.bin').read_bytes() == data
    got, decode = bytearray(), base64_stream()
    ProgramRun(container().sock, _copy.download_program('/tmp/up.bin'), lambda text: got.extend(decode(text))).run()
    assert bytes(got) == data


def test_a_tree_both_ways(container, busybox_root, tmp_path):
    source = make_tree(tmp_path / 'site')
    data = packed(source, 'site')
    program = _copy.upload_tree_program('/tmp/tree', len(data), hashlib.sha256(data).hexdigest(), 'site')
    ended, _, _ = run(container, program, source=io.BytesIO(data))
    assert ended == '0 sha256 /tmp/tree'
    assert tree_of(busybox_root / 'tmp' / 'tree') == tree_of(source)
    decode, got, said = base64_stream(), bytearray(), []
    ProgramRun(container().sock, _copy.download_program('/tmp/tree', recursive=True),
               lambda text: got.extend(decode(text)), on_marker=lambda letter, text: said.append(letter + text)).run()
    assert said[1] == f'S{len(got)} tar'
    (tmp_path / 'got.tar').write_bytes(bytes(got))
    _copy.unpack(str(tmp_path / 'got.tar'), 'tree', str(tmp_path / 'back'))
    assert tree_of(tmp_path / 'back') == tree_of(source)


def test_ctrl_c_interrupts_the_command_which_still_reports(container):
    import signal
    import threading
    import time
    from azext_webapp._termination import terminate_on
    marks = []
    program = marker.command_program('echo started; sleep 30; echo never')
    runner = ProgramRun(container().sock, program, bytearray().extend,
                        on_marker=lambda letter, text: marks.append((letter, text)))
    with terminate_on('SIGINT'):
        threading.Timer(1.5, os.kill, args=(os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            runner.run()
    assert ('E', '130') in marks and ('Z', '') in marks
    assert time.monotonic() - started < 8
