"""Fast tier: the exec channel's programs in a container whose userland is BusyBox alone, as in
Alpine-based images: a root of BusyBox and its applets, entered with a user namespace (no root
needed), its ash behind a local pseudo-terminal. The whole marker protocol runs there as in a
container (the bootstrap line, stty, base64, the program's /bin/sh): here the copies both ways,
files and trees; test_unit_exec.py runs its command tests in the same root too."""
import hashlib
import io
import os
import pathlib
import sys

import pytest

from azext_webapp import _copy
from azext_webapp import _exec_marker as marker
from azext_webapp._exec_run import ProgramRun, base64_stream
from tests.test_unit_copy import make_tree, packed, tree_of

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='a POSIX container')


@pytest.fixture(scope='module')
def busybox_root(tmp_path_factory):
    from tests.pty_shell import busybox_root as make_root
    root, why = make_root(str(tmp_path_factory.mktemp('busybox') / 'root'))
    if root is None:
        pytest.skip(why)
    return pathlib.Path(root)


@pytest.fixture
def container(busybox_root):
    """A factory of BusyBox shells behind terminals, one per run."""
    from tests.pty_shell import busybox_shell
    made = []

    def make():
        made.append(busybox_shell(busybox_root))
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
