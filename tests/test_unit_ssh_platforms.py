"""Fast tier: `ssh` on the OpenSSH each platform ships (Windows: ssh.exe under System32\\OpenSSH,
macOS: /usr/bin/ssh) -- the askpass helper that runs there, finding ssh, and what older clients
are told. Platforms are simulated; the helpers are really run."""
import os
import subprocess
import sys

import pytest

from azext_webapp import ssh


def _answer(argv, prompt):
    proc = subprocess.run(argv + [prompt], capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout


def test_windows_askpass_is_a_cmd_that_hands_the_prompt_to_python(tmp_path):
    path = ssh.write_askpass(str(tmp_path), windows=True)
    assert path.endswith('askpass.cmd')
    cmd = (tmp_path / 'askpass.cmd').read_bytes()
    assert cmd.endswith(b'%*\r\n') and f'"{sys.executable}" -I "'.encode() in cmd
    assert b'Docker!' not in cmd                     # the password lives only in the private script
    script = [sys.executable, '-I', str(tmp_path / 'askpass.py')]   # what cmd.exe runs
    assert _answer(script, "(root@127.0.0.1) Password: ") == (0, 'Docker!\n')
    assert _answer(script, "root@127.0.0.1's password: ") == (0, 'Docker!\n')
    assert _answer(script, "Enter passphrase for key 'id_ed25519': ")[0] == 1


@pytest.mark.skipif(os.name == 'nt', reason='the POSIX helper is a /bin/sh script')
def test_posix_askpass_answers_only_the_password_prompt(tmp_path):
    path = ssh.write_askpass(str(tmp_path), windows=False)
    assert open(path, encoding='utf-8').readline() == '#!/bin/sh\n'
    assert _answer([path], "root@127.0.0.1's password: ") == (0, 'Docker!\n')
    assert _answer([path], "Are you sure you want to continue connecting (yes/no)? ")[0] == 1


@pytest.mark.parametrize('text,version', [
    ('OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2', (8, 1)),
    ('OpenSSH_for_Windows_9.5p1, LibreSSL 3.8.2', (9, 5)),
    ('OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024', (9, 2)),
    ('OpenSSH_9.8p1, LibreSSL 3.3.6', (9, 8)),          # macOS 15's /usr/bin/ssh
    ('ssh: unknown', None),
])
def test_openssh_version_of_each_platform(text, version):
    assert ssh.parse_openssh_version(text) == version


def test_older_openssh_is_told_plainly_which_version_is_needed():
    message = ssh.askpass_unsupported_message((8, 1))
    assert 'OpenSSH 8.4 or later' in message and 'Docker!' in message and '(8.1)' in message
    assert ssh.askpass_unsupported_message((8, 4)) is None
    assert ssh.askpass_unsupported_message(None) is None


def test_the_real_ssh_reports_a_version():
    path = ssh.find_ssh()
    if not path:
        pytest.skip('no OpenSSH client here')
    assert ssh.openssh_version(path) >= (7, 0)


def test_windows_finds_ssh_exe_in_system32_when_path_lacks_it(tmp_path, monkeypatch):
    system32 = tmp_path / 'System32' / 'OpenSSH'
    system32.mkdir(parents=True)
    (system32 / 'ssh.exe').write_bytes(b'MZ')
    monkeypatch.setattr(ssh.shutil, 'which', lambda name: None)
    monkeypatch.setenv('SystemRoot', str(tmp_path))
    assert ssh.find_ssh(windows=True) == str(system32 / 'ssh.exe')
    assert ssh.find_ssh(windows=False) is None


@pytest.mark.parametrize('platform,words', [('win32', 'OpenSSH Client'), ('darwin', '/usr/bin/ssh'),
                                            ('linux', 'apt-get install openssh-client')])
def test_install_hint_per_platform(platform, words):
    assert words in ssh.install_hint(platform)
