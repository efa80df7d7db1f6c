"""`az webapp remote-connection cp` end to end (issue 21): files to and from a container without sshd
through the exec channel, with the real az and the sandbox. Byte-exact both ways (64 MiB of random
bytes, SHA-256 compared in the container too), a directory tree both ways with --recursive, nothing
partial left behind by a failure, a progress bar only on a terminal, and a clear error for every bad
path. Run again with the portable
engine by `make test-portable`."""
import hashlib
import os
import signal
import subprocess
import time

import pexpect
import pytest

from tests.fixtures_command import AZ

pytestmark = pytest.mark.root

BIG = 64 * 1024 * 1024


@pytest.fixture
def exec_sandbox(sandbox):
    if sandbox.containers_unavailable_reason:
        pytest.skip(f'no containers for the exec channel: {sandbox.containers_unavailable_reason}')
    return sandbox


def az_cp(webapp_az, *args, timeout=300):
    return webapp_az.run('webapp', 'remote-connection', 'cp', '-g', 'sandbox-rg', *args, timeout=timeout)


def remote(webapp_az, command, app='exec-app'):
    result = webapp_az.run('webapp', 'remote-connection', 'exec', '-g', 'sandbox-rg', '-n', app, '--', command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def test_64_mib_of_random_bytes_both_ways_byte_exact(webapp_az, exec_sandbox, tmp_path):
    source = tmp_path / 'random.bin'
    source.write_bytes(os.urandom(BIG))
    expected = sha256_of(source)
    up = az_cp(webapp_az, '-n', 'exec-app', str(source), ':/tmp/')     # a directory: the file's own name
    assert up.returncode == 0, up.stderr
    assert up.stderr == ''                  # no progress bar without a terminal
    there = remote(webapp_az, 'sha256sum < /tmp/random.bin; stat -c %s /tmp/random.bin; '
                              'ls -a /tmp | grep -c azx || true')
    assert there.split() == [expected, '-', str(BIG), '0']
    back = tmp_path / 'back.bin'
    down = az_cp(webapp_az, 'exec-app:/tmp/random.bin', str(back))    # APP:/path names the app
    assert down.returncode == 0, down.stderr
    assert sha256_of(back) == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.azx')] == []


def test_into_an_existing_directory_and_over_an_existing_file(webapp_az, exec_sandbox, tmp_path):
    local = tmp_path / 'notes.txt'
    local.write_bytes(b'first\n')
    assert az_cp(webapp_az, '-n', 'exec-app', str(local), ':/tmp/notes.txt').returncode == 0
    remote(webapp_az, 'chmod 640 /tmp/notes.txt')
    local.write_bytes(b'second\n')
    assert az_cp(webapp_az, '-n', 'exec-app', str(local), ':/tmp/notes.txt').returncode == 0
    assert remote(webapp_az, 'cat /tmp/notes.txt; stat -c %a /tmp/notes.txt') == 'second\n640\n'
    folder = tmp_path / 'down'
    folder.mkdir()
    assert az_cp(webapp_az, '-n', 'exec-app', ':/tmp/notes.txt', str(folder)).returncode == 0
    assert (folder / 'notes.txt').read_bytes() == b'second\n'


def test_a_directory_tree_both_ways_with_recursive(webapp_az, exec_sandbox, tmp_path):
    from tests.test_unit_copy import make_tree, tree_of
    source = make_tree(tmp_path / 'site')
    remote(webapp_az, 'rm -rf /tmp/rtree && mkdir -p /tmp/rtree/site && echo kept > /tmp/rtree/site/kept.txt')
    up = az_cp(webapp_az, '-n', 'exec-app', '--recursive', str(source), ':/tmp/rtree/new')   # a new name
    assert up.returncode == 0, up.stderr
    up = az_cp(webapp_az, '-n', 'exec-app', '-r', str(source), ':/tmp/rtree')            # over site/ there
    assert up.returncode == 0, up.stderr
    listing = remote(webapp_az, 'cd /tmp/rtree && find . | sort && readlink new/link && ls -a | grep -c azx || true')
    below = [f'./{top}/{path}' for top in ('new', 'site') for path in tree_of(source)]
    names = sorted(['.', './new', './site', './site/kept.txt'] + below)
    assert listing.split('\n')[:-3] == names and listing.split('\n')[-3:-1] == ['a.txt', '0']
    down = tmp_path / 'down'
    down.mkdir()
    result = az_cp(webapp_az, '-n', 'exec-app', '-r', ':/tmp/rtree/new/', str(down))       # into a directory
    assert result.returncode == 0, result.stderr
    assert tree_of(down / 'new') == tree_of(source)
    result = az_cp(webapp_az, '-n', 'exec-app', '-r', ':/tmp/rtree/site', str(tmp_path / 'renamed'))
    assert result.returncode == 0, result.stderr
    merged = tree_of(tmp_path / 'renamed')
    assert merged.pop('kept.txt') == ('file', b'kept\n') and merged == tree_of(source)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.azx')] == []


def test_a_full_disk_leaves_nothing_behind(webapp_az, exec_sandbox, tmp_path):
    source = tmp_path / 'big.bin'
    source.write_bytes(os.urandom(1024 * 1024))        # /mnt/full holds 64 KiB
    result = az_cp(webapp_az, '-n', 'exec-app', str(source), ':/mnt/full/big.bin')
    assert result.returncode == 1
    assert 'Could not write /mnt/full/big.bin' in result.stderr and 'No space left on device' in result.stderr
    assert 'Nothing was replaced' in result.stderr
    assert remote(webapp_az, 'ls -A /mnt/full | wc -l').strip() == '0'


def test_bad_paths_are_clear_errors(webapp_az, exec_sandbox, tmp_path):
    cases = [
        (('-n', 'exec-app', ':/no/such/file', str(tmp_path / 'x')), 3, '/no/such/file does not exist in the container'),
        (('-n', 'exec-app', ':/tmp', str(tmp_path / 'x')), 1, '/tmp is a directory in the container'),
        (('-n', 'exec-app', str(tmp_path / 'missing'), ':/tmp/'), 1, 'Cannot read'),
        (('-n', 'exec-app', str(tmp_path), ':/tmp/'), 1, 'is a directory: add --recursive'),
        (('-n', 'exec-app', '-r', str(tmp_path), ':/etc/hostname'), 1, '/etc/hostname is a file in the container'),
        (('-n', 'exec-app', '-r', ':/', str(tmp_path)), 1, "root directory cannot be copied"),
        (('-n', 'exec-app', ':/etc/hostname', str(tmp_path / 'no' / 'dir' / 'x')), 1, 'does not exist'),
        (('-n', 'exec-app', str(tmp_path / 'missing'), ':/no/dir/x'), 1, 'Cannot read'),
        (('-n', 'exec-app', './a', './b'), 1, 'Neither is a path in the container'),
        (('-n', 'exec-app', ':/a', ':/b'), 1, 'Both are a path in the container'),
        (('-n', 'exec-app', ':relative', './b'), 1, 'is not an absolute path in the container'),
        (('-n', 'exec-app', 'linux-app:/etc/hostname', './b'), 1, "names the app 'linux-app' but --name"),
        (('-n', 'exec-app', ':/etc/hostname'), 1, 'cp takes two paths'),
        (('-n', 'exec-app', '--instance', 'all', ':/etc/hostname', './b'), 1, 'cp copies to or from one instance'),
        (('-n', 'noexec-app', ':/etc/hostname', str(tmp_path / 'x')), 1, 'refused the exec channel (HTTP 403)'),
        (('-n', 'windows-app', ':/etc/hostname', str(tmp_path / 'x')), 1, 'Windows App Service plan'),
    ]
    for args, status, words in cases:
        result = az_cp(webapp_az, *args, timeout=120)
        assert (result.returncode, words in result.stderr) == (status, True), (args, result.stderr)
        assert 'Traceback' not in result.stderr
    readonly = tmp_path / 'readonly'
    readonly.mkdir(mode=0o500)
    if os.geteuid() != 0:       # root writes anywhere: the case needs an ordinary user
        result = az_cp(webapp_az, '-n', 'exec-app', ':/etc/hostname', str(readonly / 'x'))
        assert result.returncode == 1 and 'Cannot write in' in result.stderr
    result = az_cp(webapp_az, '-n', 'exec-app', str(tmp_path / 'missing'), ':/tmp/x')
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.azx')]


def test_a_progress_bar_on_a_terminal(webapp_az, exec_sandbox, tmp_path):
    source = tmp_path / 'eight.bin'
    source.write_bytes(os.urandom(8 * 1024 * 1024))
    child = pexpect.spawn(AZ, ['webapp', 'remote-connection', 'cp', '-g', 'sandbox-rg', '-n', 'exec-app', str(source),
                               ':/tmp/eight.bin'], env=webapp_az.env, cwd=webapp_az.cwd, timeout=120,
                          encoding='utf-8')
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert 'eight.bin  100%' in child.before and 'of 8.0 MiB' in child.before and 'MB/s' in child.before


def test_ctrl_c_during_a_copy_leaves_no_partial_file(webapp_az, exec_sandbox, tmp_path):
    source = tmp_path / 'slow.bin'
    source.write_bytes(os.urandom(BIG))
    proc = subprocess.Popen([AZ, 'webapp', 'remote-connection', 'cp', '-g', 'sandbox-rg', '-n', 'exec-app',
                             str(source), ':/tmp/interrupted.bin'], env=webapp_az.env, cwd=webapp_az.cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while 'azx' not in remote(webapp_az, 'ls -a /tmp') and time.monotonic() < deadline:
            time.sleep(0.2)                 # the copy is under way: its temporary file is there
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert b'Stopped (Ctrl+C): nothing was copied' in err
    time.sleep(1)
    assert remote(webapp_az, 'ls -a /tmp | grep -c -e azx -e interrupted.bin || true').strip() == '0'
