"""Units of the doctor, its hop pipeline and the KEXINIT probe, without az or a sandbox: a fake SSH
server on loopback, the algorithm verdicts, this machine's OpenSSH as Linux, macOS and Windows report
it, and the three verdicts (ok, warning, fail) with their exit statuses."""
import ast
import os
import socket
import struct
import threading
import types

import pytest

from azext_webapp import _doctor, _errors, _hops, _kexinit


def kexinit_packet(ciphers, macs, kex='curve25519-sha256', host_keys='ssh-ed25519'):
    def name_list(text):
        return struct.pack('>I', len(text)) + text.encode()
    payload = (bytes([20]) + b'\x00' * 16 + name_list(kex) + name_list(host_keys) + name_list(ciphers)
               + name_list(ciphers) + name_list(macs) + name_list(macs) + name_list('none') * 2
               + name_list('') * 2 + b'\x00' + b'\x00' * 4)
    padding = 8 - (len(payload) + 5) % 8 + 8
    return struct.pack('>IB', len(payload) + padding + 1, padding) + payload + b'\x00' * padding


def serve_once(data):
    """A loopback server that sends data to its first connection and closes; returns the port."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)

    def run():
        conn, _ = server.accept()
        with conn:
            if data:
                conn.sendall(data)
            try:
                conn.recv(100)
            except OSError:
                pass
        server.close()
    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def test_probe_reads_banner_and_kexinit_split_anywhere():
    data = (b'a pre-banner line\r\nSSH-2.0-OpenSSH_9.2p1 Debian\r\n'
            + kexinit_packet('aes128-cbc,3des-cbc,aes256-cbc', 'hmac-sha1,hmac-sha1-96'))
    offer = _kexinit.probe(serve_once(data), timeout=5)
    assert offer.banner == 'SSH-2.0-OpenSSH_9.2p1 Debian'
    assert offer.ciphers == ('aes128-cbc', '3des-cbc', 'aes256-cbc')
    assert offer.macs == ('hmac-sha1', 'hmac-sha1-96')
    assert offer.kex == ('curve25519-sha256',) and offer.host_keys == ('ssh-ed25519',)


def test_probe_tells_silence_from_something_else():
    with pytest.raises(_kexinit.ProbeError) as silent:
        _kexinit.probe(serve_once(b''), timeout=5)
    assert silent.value.kind == 'silent'
    with pytest.raises(_kexinit.ProbeError) as other:
        _kexinit.probe(serve_once(b'Sandbox debugger for debug-app-i0\r\n'), timeout=5)
    assert other.value.kind == 'not-ssh'


def offer(ciphers, macs, kex='', host_keys=''):
    return _kexinit.Offer('SSH-2.0-x', tuple(filter(None, kex.split(','))), tuple(filter(None, host_keys.split(','))),
                          tuple(ciphers.split(',')), tuple(macs.split(',')))


def test_extra_options_append_only_what_is_needed():
    assert _kexinit.extra_options(offer('aes128-cbc,3des-cbc,aes256-cbc', 'hmac-sha1,hmac-sha1-96')) == [
        ('Ciphers', '+aes128-cbc')]
    assert _kexinit.extra_options(offer('aes256-ctr,aes128-cbc', 'hmac-sha1')) == []
    assert _kexinit.extra_options(offer('3des-cbc', 'hmac-sha1-96')) == [
        ('Ciphers', '+3des-cbc'), ('MACs', '+hmac-sha1-96')]
    assert _kexinit.extra_options(offer('chacha20-poly1305@openssh.com', 'hmac-md5')) == []  # AEAD: no MAC
    assert _kexinit.extra_options(offer('blowfish-cbc', 'hmac-sha1')) is None


def test_algorithms_verdicts():
    client = _hops.local_openssh(ssh_path='/nonexistent/ssh')  # no answers: OpenSSH's documented defaults
    assert client.ciphers == _kexinit.OPENSSH_DEFAULT_CIPHERS
    verdict = _hops.algorithms(offer('chacha20-poly1305@openssh.com,aes256-gcm@openssh.com',
                                     'hmac-sha2-256-etm@openssh.com'), client)
    assert verdict.status == _hops.WARN and "the portal's browser SSH does not" in verdict.detail
    assert 'hmac-sha1 to MACs' in verdict.fix
    assert 'needs -o Ciphers=+aes128-cbc' in _hops.algorithms(offer('aes128-cbc', 'hmac-sha1'), client)
    with pytest.raises(_hops.HopFailed):
        _hops.algorithms(offer('blowfish-cbc', 'hmac-sha1'), client)
    assert 'works with its defaults' in _hops.algorithms(offer('aes128-ctr', 'hmac-sha1'), None)


# What OpenSSH 9.2's sshd sends with an Ed25519, an ECDSA and an RSA host key.
OPENSSH_KEX = 'sntrup761x25519-sha512@openssh.com,curve25519-sha256,ecdh-sha2-nistp256,ext-info-s'
OPENSSH_HOST_KEYS = 'rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519'


@pytest.mark.parametrize('kex, host_keys, words', [
    (OPENSSH_KEX, OPENSSH_HOST_KEYS, None),
    (OPENSSH_KEX, 'ssh-rsa', None),  # an old sshd that still signs with SHA-1
    ('curve25519-sha256,sntrup761x25519-sha512@openssh.com,ext-info-s', OPENSSH_HOST_KEYS,
     ["key exchanges (curve25519-sha256,", 'ecdh-sha2-nistp256 to KexAlgorithms']),
    (OPENSSH_KEX, 'ssh-ed25519', ['host keys (ssh-ed25519)', 'ECDSA host key']),
    (OPENSSH_KEX, 'rsa-sha2-512,rsa-sha2-256,ssh-ed25519', ['host keys (rsa-sha2-512', 'ssh-keygen -A']),
])
def test_portal_needs_its_key_exchange_and_host_key_types_too(kex, host_keys, words):
    verdict = _hops.algorithms(offer('aes128-ctr,aes128-cbc', 'hmac-sha1', kex, host_keys), None)
    if words is None:
        assert "the portal's browser SSH too" in verdict
        return
    assert verdict.status == _hops.WARN and "the portal's browser SSH does not" in verdict.detail
    for word in words:
        assert word in verdict.detail + verdict.fix
    assert 'az webapp remote-connection browse' in verdict.fix


@pytest.mark.parametrize('platform, devnull, ssh_path', [
    ('linux', '/dev/null', '/usr/bin/ssh'),
    ('darwin', '/dev/null', '/usr/bin/ssh'),
    ('win32', 'nul', r'C:\Windows\System32\OpenSSH\ssh.exe'),
])
def test_local_openssh_on_each_platform(monkeypatch, platform, devnull, ssh_path):
    """The same calls everywhere: ssh -G with the platform's null device as its config, ssh -Q; only
    the paths differ (simulated: Windows' OpenSSH is ssh.exe, its null device nul)."""
    monkeypatch.setattr(os, 'devnull', devnull)
    monkeypatch.setattr(_hops.shutil, 'which', lambda name: ssh_path if name == 'ssh' else None)
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        assert kwargs['stdin'] is not None and 'preexec_fn' not in kwargs and 'start_new_session' not in kwargs
        out = {'-G': 'user me\nciphers aes128-ctr,aes256-gcm@openssh.com\nmacs hmac-sha2-256\n',
               '-Q': 'aes128-cbc\naes128-ctr\n' if argv[-1] == 'cipher' else 'hmac-sha1\nhmac-sha2-256\n'}
        return types.SimpleNamespace(returncode=0, stdout=out[argv[1]])
    client = _hops.local_openssh(run=run)
    assert calls[0] == [ssh_path, '-G', '-F', devnull, 'doctor.invalid']
    assert client.ciphers == ('aes128-ctr', 'aes256-gcm@openssh.com') and client.macs == ('hmac-sha2-256',)
    assert client.supported_ciphers == ('aes128-cbc', 'aes128-ctr')
    # a container that offers only CBC and hmac-sha1: the CBC cipher and the MAC are appended
    verdict = _hops.algorithms(offer('aes128-cbc', 'hmac-sha1'), client)
    assert 'needs -o Ciphers=+aes128-cbc -o MACs=+hmac-sha1' in verdict
    monkeypatch.setattr(_hops.shutil, 'which', lambda name: None)
    assert _hops.local_openssh() is None   # no OpenSSH client: the documented defaults are assumed


def test_no_posix_only_module_in_the_doctor_or_the_probe():
    posix_only = {'fcntl', 'termios', 'pwd', 'grp', 'resource', 'pty', 'tty', 'posix'}
    for module in (_doctor, _hops, _kexinit):
        tree = ast.parse(open(module.__file__, encoding='utf-8').read())
        names = {alias.name.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split('.')[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module}
        assert not names & posix_only, (module.__name__, names & posix_only)
        source = open(module.__file__, encoding='utf-8').read()
        for call in ('os.fork', 'os.setsid', 'os.killpg', 'signal.SIGHUP', 'os.geteuid', 'select.poll'):
            assert call not in source, (module.__name__, call)


def test_login_when_only_paramiko_cannot_negotiate(monkeypatch):
    import paramiko

    class Transport:
        def __init__(self, sock):
            self.sock = sock

        def start_client(self, timeout):
            raise paramiko.IncompatiblePeer('Incompatible ssh peer (no acceptable ciphers)')

        def close(self):
            self.sock.close()
    monkeypatch.setattr(paramiko, 'Transport', Transport)
    assert _hops._login(serve_once(b'SSH-2.0-x\r\n')) is None


def _walk_with(monkeypatch, checks):
    """A walk over the real pipeline whose hop functions are replaced by `checks` (name -> function)."""
    pipeline = tuple(hop._replace(check=checks.get(hop.name, lambda w: 'fine')) for hop in _hops.PIPELINE)
    monkeypatch.setattr(_hops, 'PIPELINE', pipeline)
    walk = types.SimpleNamespace(instance='i0')
    return walk


def test_an_unexpected_error_is_a_failed_hop_not_a_traceback(monkeypatch):
    report = _doctor.Report()

    def broken(walk):
        raise KeyError('surprise')
    walk = _walk_with(monkeypatch, {'banner': broken})
    assert _hops.walk(walk, start='banner', report=report) is False
    assert report.checks[0]['status'] == 'fail' and report.checks[0]['detail'] == "unexpected KeyError: 'surprise'"
    assert [c['status'] for c in report.checks[1:]] == ['not checked'] * 3
    assert report.verdict == 'fail'


def test_the_pipeline_is_the_doctors_table_in_its_order():
    assert [hop.name for hop in _hops.PIPELINE] == [name for name, _ in _errors.HOPS]
    # the commands walk these; the doctor all of them
    commands = [hop.name for hop in _hops.PIPELINE if not hop.doctor_only]
    assert commands == ['arm', 'app', 'credentials', 'status', 'websocket']


def test_a_command_stops_at_the_first_broken_hop_with_its_typed_error(monkeypatch):
    from azure.cli.core.azclierror import ValidationError
    seen = []

    def check(name, error=None):
        def run(walk):
            seen.append(name)
            if error:
                raise _hops.HopFailed(error, 'doctor detail', 'doctor fix')
            return _hops.Outcome(_hops.WARN, 'a warning') if name == 'credentials' else 'fine'
        return run
    refusal = ValidationError('the app is stopped')
    walk = _walk_with(monkeypatch, {name: check(name, refusal if name == 'status' else None)
                                    for name, _ in _errors.HOPS})
    with pytest.raises(ValidationError) as info:
        _hops.walk(walk)
    assert info.value is refusal
    assert seen == ['arm', 'app', 'credentials', 'status']      # no doctor-only hop; nothing after the failure
    seen.clear()
    assert _hops.walk(walk, until='credentials') and seen == ['arm', 'app', 'credentials']


@pytest.mark.parametrize('sftp_outcome, verdict, code, last_line', [
    ('fine', 'ok', 0, 'Every hop works.'),
    (_hops.Outcome(_hops.WARN, 'no sftp subsystem', 'use scp -O'), 'warning', 0,
     'Every hop works; 1 with a warning: sftp subsystem (sftp, scp) (i0).'),
    (_hops.HopFailed(ValueError('x'), 'broken', 'fix it'), 'fail', 1,
     '1 hop failed: sftp subsystem (sftp, scp) (i0).'),
])
def test_three_verdicts_and_only_a_broken_hop_exits_1(monkeypatch, capsys, sftp_outcome, verdict, code, last_line):
    """flutter doctor's three marks: works, works with a warning (exit 0), broken (exit 1)."""
    def sftp(walk):
        if isinstance(sftp_outcome, Exception):
            raise sftp_outcome
        return sftp_outcome
    walk = _walk_with(monkeypatch, {'sftp': sftp})
    monkeypatch.setattr(_hops, 'Walk', lambda *args, **kwargs: walk)
    from azext_webapp import _exec_doctor     # the exec channel, after the hops: here it works
    monkeypatch.setattr(_exec_doctor, 'check', lambda walk, name: (_hops.OK, 'a shell answered', ''))
    walk.instances = ['i0']
    walk.for_instance = lambda name: walk
    walk.transport = walk.engine = None
    cmd = types.SimpleNamespace(cli_ctx=types.SimpleNamespace(invocation=types.SimpleNamespace(data={}),
                                                              data={'safe_params': []}))
    exited = []
    monkeypatch.setattr(_doctor.sys, 'exit', exited.append)
    _doctor.doctor_remote_connection(cmd, 'rg', 'app')
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == last_line
    assert exited == ([code] if code else [])
    report = _doctor.diagnose(cmd, types.SimpleNamespace(name='app', slot=None, resource_group='rg'))
    assert report.verdict == verdict and report.as_dict(types.SimpleNamespace(
        name='app', slot=None, resource_group='rg'), None)['healthy'] == (code == 0)
