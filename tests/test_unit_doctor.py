"""Units of the doctor and the KEXINIT probe, without az or a sandbox: a fake SSH server on loopback,
the algorithm verdicts, and this machine's OpenSSH as Linux, macOS and Windows report it."""
import ast
import os
import socket
import struct
import threading
import types

import pytest

from azext_webapp import _doctor, _kexinit


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
    client = _doctor.local_openssh(ssh_path='/nonexistent/ssh')  # no answers: OpenSSH's documented defaults
    assert client.ciphers == _kexinit.OPENSSH_DEFAULT_CIPHERS
    verdict = _doctor.algorithms(offer('chacha20-poly1305@openssh.com,aes256-gcm@openssh.com',
                                       'hmac-sha2-256-etm@openssh.com'), client)
    assert verdict[0] == _doctor.WARN and "the portal's browser SSH does not" in verdict[1]
    assert 'hmac-sha1 to MACs' in verdict[2]
    assert 'needs -o Ciphers=+aes128-cbc' in _doctor.algorithms(offer('aes128-cbc', 'hmac-sha1'), client)
    with pytest.raises(_doctor._Failed):
        _doctor.algorithms(offer('blowfish-cbc', 'hmac-sha1'), client)
    assert 'works with its defaults' in _doctor.algorithms(offer('aes128-ctr', 'hmac-sha1'), None)


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
    verdict = _doctor.algorithms(offer('aes128-ctr,aes128-cbc', 'hmac-sha1', kex, host_keys), None)
    if words is None:
        assert "the portal's browser SSH too" in verdict
        return
    assert verdict[0] == _doctor.WARN and "the portal's browser SSH does not" in verdict[1]
    for word in words:
        assert word in verdict[1] + verdict[2]
    assert 'az webapp remote-connection browse' in verdict[2]


@pytest.mark.parametrize('platform, devnull, ssh_path', [
    ('linux', '/dev/null', '/usr/bin/ssh'),
    ('darwin', '/dev/null', '/usr/bin/ssh'),
    ('win32', 'nul', r'C:\Windows\System32\OpenSSH\ssh.exe'),
])
def test_local_openssh_on_each_platform(monkeypatch, platform, devnull, ssh_path):
    """The same calls everywhere: ssh -G with the platform's null device as its config, ssh -Q; only
    the paths differ (simulated: Windows' OpenSSH is ssh.exe, its null device nul)."""
    monkeypatch.setattr(os, 'devnull', devnull)
    monkeypatch.setattr(_doctor.shutil, 'which', lambda name: ssh_path if name == 'ssh' else None)
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        assert kwargs['stdin'] is not None and 'preexec_fn' not in kwargs and 'start_new_session' not in kwargs
        out = {'-G': 'user me\nciphers aes128-ctr,aes256-gcm@openssh.com\nmacs hmac-sha2-256\n',
               '-Q': 'aes128-cbc\naes128-ctr\n' if argv[-1] == 'cipher' else 'hmac-sha1\nhmac-sha2-256\n'}
        return types.SimpleNamespace(returncode=0, stdout=out[argv[1]])
    client = _doctor.local_openssh(run=run)
    assert calls[0] == [ssh_path, '-G', '-F', devnull, 'doctor.invalid']
    assert client.ciphers == ('aes128-ctr', 'aes256-gcm@openssh.com') and client.macs == ('hmac-sha2-256',)
    assert client.supported_ciphers == ('aes128-cbc', 'aes128-ctr')
    # a container that offers only CBC and hmac-sha1: the CBC cipher and the MAC are appended
    verdict = _doctor.algorithms(offer('aes128-cbc', 'hmac-sha1'), client)
    assert 'needs -o Ciphers=+aes128-cbc -o MACs=+hmac-sha1' in verdict
    monkeypatch.setattr(_doctor.shutil, 'which', lambda name: None)
    assert _doctor.local_openssh() is None   # no OpenSSH client: the documented defaults are assumed


def test_no_posix_only_module_in_the_doctor_or_the_probe():
    posix_only = {'fcntl', 'termios', 'pwd', 'grp', 'resource', 'pty', 'tty', 'posix'}
    for module in (_doctor, _kexinit):
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
    assert _doctor._login(serve_once(b'SSH-2.0-x\r\n')) is None


def test_an_unexpected_error_is_a_failed_hop_not_a_traceback():
    report = _doctor.Report()

    def broken():
        raise KeyError('surprise')
    with pytest.raises(_doctor._Stop):
        _doctor._run(report, 'banner', broken, 'i0')
    assert report.checks[0]['status'] == 'fail' and report.checks[0]['detail'] == "unexpected KeyError: 'surprise'"
