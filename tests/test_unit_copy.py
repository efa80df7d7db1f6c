"""Fast tier: `cp --recursive` without az or a container (_copy.py). The archive packed and unpacked on
this side (what stays inside is all that is written, merged over a directory already there), and the
container's side: its shell programs run by this machine's /bin/sh with a stand-in for the marker
function, so the same lines a container runs are run here."""
import base64
import hashlib
import io
import os
import subprocess
import sys
import tarfile

import pytest
from azure.cli.core.azclierror import FileOperationError, ValidationError

from azext_webapp import _copy
from azext_webapp import _exec_marker as marker

POSIX = pytest.mark.skipif(sys.platform == 'win32', reason='the container side is a POSIX shell')


def make_tree(root):
    (root / 'sub' / 'deeper').mkdir(parents=True)
    (root / 'empty').mkdir()
    (root / 'a.txt').write_bytes(b'alpha\n')
    (root / 'sub' / 'with space.bin').write_bytes(os.urandom(70000))
    (root / 'sub' / 'deeper' / 'z').write_bytes(b'')
    os.symlink('a.txt', root / 'link')
    return root


def tree_of(root):
    """Every path below root with what it is: its bytes, a link's target, or a directory."""
    found = {}
    for folder, directories, files in os.walk(root):
        for name in directories + files:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, root).replace(os.sep, '/')
            if os.path.islink(path):
                found[key] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                found[key] = ('dir',)
            else:
                with open(path, 'rb') as handle:
                    found[key] = ('file', handle.read())
    return found


def packed(root, name):
    archive = io.BytesIO()
    _copy.pack(str(root), name, archive)
    return archive.getvalue()


def test_a_tree_packed_and_unpacked_under_a_new_name_is_the_same(tmp_path):
    source = make_tree(tmp_path / 'site')
    archive = tmp_path / 'site.tar'
    archive.write_bytes(packed(source, 'site'))
    with tarfile.open(archive) as tar:
        assert {m.uid for m in tar.getmembers()} == {0} and {m.uname for m in tar.getmembers()} == {''}
    written = _copy.unpack(str(archive), 'site', str(tmp_path / 'copy'))
    assert written == str(tmp_path / 'copy')
    assert tree_of(tmp_path / 'copy') == tree_of(source)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.azx')] == []


def test_into_a_directory_that_exists_it_goes_under_its_name_and_merges(tmp_path):
    source = make_tree(tmp_path / 'site')
    archive = tmp_path / 'site.tar'
    archive.write_bytes(packed(source, 'site'))
    into = tmp_path / 'into'
    (into / 'site').mkdir(parents=True)
    (into / 'site' / 'a.txt').write_bytes(b'old\n')
    (into / 'site' / 'kept.txt').write_bytes(b'kept\n')
    assert _copy.unpack(str(archive), 'site', str(into)) == str(into / 'site')
    merged = tree_of(into / 'site')
    assert merged.pop('kept.txt') == ('file', b'kept\n')
    assert merged == tree_of(source)


def test_a_file_in_the_way_is_an_error(tmp_path):
    archive = tmp_path / 'site.tar'
    archive.write_bytes(packed(make_tree(tmp_path / 'site'), 'site'))
    (tmp_path / 'into').mkdir()
    (tmp_path / 'into' / 'site').write_bytes(b'a file')
    with pytest.raises(FileOperationError, match='a file of that name is there'):
        _copy.unpack(str(archive), 'site', str(tmp_path / 'into'))


def hostile_archive(path, member_name, **fields):
    with tarfile.open(path, 'w') as tar:
        top = tarfile.TarInfo('site')
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        inside = tarfile.TarInfo('site/ok.txt')
        inside.size = 2
        tar.addfile(inside, io.BytesIO(b'ok'))
        member = tarfile.TarInfo(member_name)
        for key, value in fields.items():
            setattr(member, key, value)
        tar.addfile(member, io.BytesIO(b'x' * member.size) if member.isreg() else None)


@pytest.mark.parametrize('member_name, fields, words', [
    ('site/../../evil', {'size': 1}, 'cannot be written safely'),
    ('/etc/evil', {'size': 1}, 'outside one directory'),
    ('elsewhere/evil', {'size': 1}, 'outside one directory'),
    ('site/out', {'type': tarfile.SYMTYPE, 'linkname': '../../../etc/passwd'}, 'cannot be written safely'),
    ('site/dev', {'type': tarfile.CHRTYPE, 'devmajor': 1, 'devminor': 3}, 'cannot be written safely'),
])
def test_an_archive_that_reaches_outside_writes_nothing(tmp_path, member_name, fields, words):
    archive = tmp_path / 'hostile.tar'
    hostile_archive(archive, member_name, **fields)
    (tmp_path / 'here').mkdir()
    with pytest.raises(FileOperationError, match=words):
        _copy.unpack(str(archive), 'site', str(tmp_path / 'here' / 'site'))
    assert os.listdir(tmp_path / 'here') == []
    assert not (tmp_path / 'evil').exists()


def test_without_the_data_filter_links_are_left_out_and_the_rest_checked(tmp_path, monkeypatch):
    """Pythons before the data filter (3.11.4): plain files and directories only."""
    monkeypatch.delattr(tarfile, 'data_filter')
    archive = tmp_path / 'site.tar'
    archive.write_bytes(packed(make_tree(tmp_path / 'site'), 'site'))
    _copy.unpack(str(archive), 'site', str(tmp_path / 'copy'))
    expected = tree_of(tmp_path / 'site')
    del expected['link']
    assert tree_of(tmp_path / 'copy') == expected
    hostile_archive(tmp_path / 'hostile.tar', 'site/../../evil', size=1)
    with pytest.raises(FileOperationError, match='cannot be written safely'):
        _copy.unpack(str(tmp_path / 'hostile.tar'), 'site', str(tmp_path / 'other'))


def test_the_root_directory_is_not_a_name():
    with pytest.raises(ValidationError, match="root directory cannot be copied"):
        _copy.local_destination('.', '/')


# -- the container's side, run by this machine's shell -------------------------------------------------

def run_program(program, data=b''):
    """The program as the container runs it, with the marker protocol's own prologue and reader: its
    input the base64 lines; the markers it printed, and the bytes before its E marker."""
    session = marker.Session()
    proc = subprocess.run(['/bin/sh', '-c', session.script(program)], input=base64.encodebytes(data),
                          capture_output=True, timeout=60, check=False)
    events = session.feed(proc.stdout)
    markers = [letter + text for letter, text in events if letter not in ('out', 'err')]
    return markers, b''.join(text for letter, text in events if letter == 'out')


@POSIX
@pytest.mark.parametrize('exists', [False, True])
def test_the_container_unpacks_an_uploaded_tree(tmp_path, exists):
    source = make_tree(tmp_path / 'site')
    data = packed(source, 'site')
    remote = tmp_path / 'remote'
    remote.mkdir()
    if exists:      # a directory there: it goes under its own name, over what is there
        (remote / 'site').mkdir()
        (remote / 'site' / 'kept.txt').write_bytes(b'kept\n')
        destination, final = remote, remote / 'site'
    else:           # a new name: the tree becomes it
        destination, final = remote / 'renamed', remote / 'renamed'
    program = _copy.upload_tree_program(str(destination), len(data), hashlib.sha256(data).hexdigest(), 'site')
    markers, _ = run_program(program, data)
    assert markers == ['S', f'E0 sha256 {final}', 'Z']
    found = tree_of(final)
    if exists:
        assert found.pop('kept.txt') == ('file', b'kept\n')
    assert found == tree_of(source)
    assert [p.name for p in remote.iterdir() if p.name.startswith('.azx')] == []


@POSIX
def test_the_container_refuses_a_damaged_archive_and_a_file_in_the_way(tmp_path):
    data = packed(make_tree(tmp_path / 'site'), 'site')
    remote = tmp_path / 'remote'
    remote.mkdir()
    program = _copy.upload_tree_program(str(remote / 'new'), len(data), '0' * 64, 'site')
    assert run_program(program, data)[0] == ['S', 'Fchecksum']
    (remote / 'file').write_bytes(b'x')
    program = _copy.upload_tree_program(str(remote / 'file'), len(data), hashlib.sha256(data).hexdigest(), 'site')
    assert run_program(program, data)[0] == ['Fnotdir']
    assert sorted(p.name for p in remote.iterdir()) == ['file']


@POSIX
def test_the_container_packs_a_tree_for_a_download(tmp_path):
    source = make_tree(tmp_path / 'site')
    markers, body = run_program(_copy.download_program(str(source) + '/', recursive=True))
    data = base64.decodebytes(body)
    assert markers == [f'S{len(data)} tar', f'E0 {hashlib.sha256(data).hexdigest()}', 'Z']
    (tmp_path / 'got.tar').write_bytes(data)
    _copy.unpack(str(tmp_path / 'got.tar'), 'site', str(tmp_path / 'copy'))
    assert tree_of(tmp_path / 'copy') == tree_of(source)
    markers, body = run_program(_copy.download_program(str(source / 'a.txt'), recursive=True))
    assert markers[0] == 'S6' and base64.decodebytes(body) == b'alpha\n'      # a file stays a file
    assert run_program(_copy.download_program(str(source), recursive=False))[0] == ['Fisdir']


def test_no_program_touches_the_marker_halves():
    """`a` and `b` hold the marker's halves (Session.script): a program that sets either breaks every
    marker after it."""
    import re
    programs = [_copy.upload_program('/x', 1, '0' * 64, 'x'), _copy.upload_tree_program('/x', 1, '0' * 64, 'x'),
                _copy.download_program('/x'), _copy.download_program('/x', recursive=True),
                marker.command_program('true'), marker.command_program('true', with_input=True)]
    for program in programs:
        assert not re.search(r'(^|[\s;({])(a|b)=', program), program


@pytest.mark.parametrize('step', ['pack', 'hash', 'unpack'])
def test_ctrl_c_ends_the_local_work_between_files(tmp_path, monkeypatch, step):
    """Packing, hashing and unpacking answer a recorded signal (the waits' rule), however big the tree."""
    import signal
    from azext_webapp import _termination
    source = make_tree(tmp_path / 'site')
    archive = tmp_path / 'site.tar'
    archive.write_bytes(packed(source, 'site'))
    monkeypatch.setattr(_termination._record, 'signum', signal.SIGINT)  # pylint: disable=protected-access
    with pytest.raises(KeyboardInterrupt):
        if step == 'pack':
            _copy.pack(str(source), 'site', io.BytesIO())
        elif step == 'hash':
            _copy.file_sha256(str(archive))
        else:
            _copy.unpack(str(archive), 'site', str(tmp_path / 'copy'))
    assert not (tmp_path / 'copy').exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.azx')] == []


@POSIX
def test_a_link_to_a_directory_copies_its_tree_both_ways(tmp_path):
    """As cp -r and scp -r do with a link named on the command line (links inside stay links)."""
    source = make_tree(tmp_path / 'real-site')
    os.symlink('real-site', tmp_path / 'site')
    with tarfile.open(fileobj=io.BytesIO(packed(tmp_path / 'site', 'site'))) as tar:
        assert tar.getmembers()[0].isdir() and tar.getmembers()[0].name == 'site'
    markers, body = run_program(_copy.download_program(str(tmp_path / 'site'), recursive=True))
    assert markers[0].endswith(' tar')
    (tmp_path / 'got.tar').write_bytes(base64.decodebytes(body))
    assert _copy.unpack(str(tmp_path / 'got.tar'), 'site', str(tmp_path / 'copy')) == str(tmp_path / 'copy')
    assert tree_of(tmp_path / 'copy') == tree_of(source)
    (tmp_path / 'into').mkdir()
    assert _copy.unpack(str(tmp_path / 'got.tar'), 'site', str(tmp_path / 'into')) == str(tmp_path / 'into' / 'site')
    assert tree_of(tmp_path / 'into' / 'site') == tree_of(source)
