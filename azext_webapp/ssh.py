"""OpenSSH glue for ``az webapp remote-connection ssh`` and ``ssh-config``: argv, host-key pinning,
the askpass helper and the ssh_config block. Pure functions where possible, so tests can assert the
exact argv and text (as azure-cli-extensions' ``src/ssh`` does).

Host keys are never ignored. Each app (each instance, with --instance) has a ``HostKeyAlias``
derived from its SCM host name, and its keys live in one known_hosts file under the az config
directory (``<config dir>/webapp/known_hosts``): the first connection records the key
(``StrictHostKeyChecking accept-new``), a changed key is refused. The alias makes the pin
independent of the local port, which changes every time.
"""

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.parse

SSH_USER = 'root'
# The built-in images' sshd password (seed document); well known, but still never put in an argv.
SSH_PASSWORD = 'Docker!'
SSH_PORT = 2222         # the container's sshd, as the built-in images and the documentation set it up
LOOPBACK = '127.0.0.1'

# OpenSSH's options that take a value (ssh.c getopt string); everything else is a flag.
_OPTIONS_WITH_VALUE = set('BbcDEeFIiJLlmOoPpQRSWw')

# Answers only the container's password prompt ("root@host's password:", "(root@host) Password:");
# any other prompt (a key's passphrase, a confirmation) is declined, so ssh falls back to the terminal
# or the next method. printf is a shell built-in: the password is in no process's argv.
_ASKPASS_SCRIPT = """#!/bin/sh
# az webapp remote-connection ssh: supplies the App Service container's SSH password.
case "$1" in
  *[Pp]assword:*) printf '%s\\n' '{password}' ;;
  *) exit 1 ;;
esac
"""

# Containers configured as the documentation says offer only CBC ciphers (`Ciphers aes128-cbc,
# 3des-cbc,aes256-cbc`), which OpenSSH 7.x and later leave out by default. '+' appends them to the
# client's defaults, so the defaults still win wherever the container offers them.
ALGORITHM_OPTIONS = (('Ciphers', '+aes128-cbc,aes256-cbc'),)

BLOCK_BEGIN = '# BEGIN az webapp remote-connection: {host}'
BLOCK_END = '# END az webapp remote-connection: {host}'


def known_hosts_path(config_dir):
    """``<config dir>/webapp/known_hosts``, whether or not it exists."""
    return os.path.join(config_dir, 'webapp', 'known_hosts')


def known_hosts_file(config_dir):
    """:func:`known_hosts_path`, its directory created private."""
    path = known_hosts_path(config_dir)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return path


def known_host(known_hosts, alias):
    """Whether known_hosts pins a key for alias (plain or hashed entries; no ssh-keygen needed)."""
    try:
        with open(known_hosts, encoding='utf-8', errors='replace') as handle:
            lines = handle.readlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith('#'):
            if any(_host_pattern_matches(pattern, alias) for pattern in fields[0].split(',')):
                return True
    return False


def _host_pattern_matches(pattern, alias):
    if pattern.startswith('|1|'):  # HashKnownHosts: |1|base64(salt)|base64(HMAC-SHA1(salt, name))
        import base64
        import hashlib
        import hmac
        try:
            _, _, salt, digest = pattern.split('|')
            expected = hmac.new(base64.b64decode(salt), alias.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(expected, base64.b64decode(digest))
        except ValueError:
            return False
    return pattern == alias


def host_key_alias(scm_url, instance=None):
    """The name a container's host key is pinned under: the SCM host (with a non-default port, as
    ``host.port``), prefixed by the instance name when one instance is chosen."""
    parts = urllib.parse.urlsplit(scm_url)
    alias = parts.hostname or scm_url
    if parts.port and parts.port != 443:
        alias += f'.{parts.port}'
    return f'{instance}.{alias}' if instance else alias


def split_ssh_args(args):
    """(options, command): OpenSSH options as given, then the remote command (from the first word
    that is not an option, or after ``--``)."""
    args = list(args or [])
    options = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == '--':
            return options, args[i + 1:]
        if not arg.startswith('-') or arg == '-':
            break
        options.append(arg)
        for pos, letter in enumerate(arg[1:], start=1):
            if letter in _OPTIONS_WITH_VALUE:
                if pos == len(arg) - 1 and i + 1 < len(args):  # the value is the next word
                    i += 1
                    options.append(args[i])
                break
        i += 1
    return options, args[i:]


def option_values(options):
    """[(letter, value)] of the options that take a value, e.g. ('o', 'User=bob'), ('i', 'key'),
    ('L', '8080:h:80') from -vL 8080:h:80."""
    values = []
    i = 0
    while i < len(options):
        arg = options[i]
        for pos, letter in enumerate(arg[1:], start=1):
            if letter in _OPTIONS_WITH_VALUE:
                rest = arg[pos + 1:]
                if not rest and i + 1 < len(options):
                    i += 1
                    rest = options[i]
                values.append((letter, rest))
                break
        i += 1
    return values


def config_keys(options):
    """Lower-case keywords given with -o (``-o User=bob`` and ``-o "User bob"``)."""
    keys = set()
    for letter, value in option_values(options):
        if letter == 'o':
            keys.add(value.replace('=', ' ').strip().split(' ')[0].lower())
    return keys


def has_own_identity(options):
    """True when the user chose an identity (-i, -o IdentityFile=...): no askpass then."""
    return (any(letter == 'i' for letter, _ in option_values(options))
            or 'identityfile' in config_keys(options))


def pinning_options(alias, known_hosts):
    """The host-key options shared by ``ssh`` and the ssh_config block, as (keyword, value)."""
    return [('HostKeyAlias', alias), ('UserKnownHostsFile', known_hosts),
            ('StrictHostKeyChecking', 'accept-new')]


def ssh_argv(ssh_path, port, alias, known_hosts, ssh_args=None):
    """The argv of the ssh child. Ours come first: OpenSSH keeps the first value it reads, so the
    user's options cannot turn host-key checking off; the algorithm options come after the user's,
    so a user's -c or -o Ciphers= wins."""
    options, command = split_ssh_args(ssh_args)
    argv = [ssh_path]
    for keyword, value in pinning_options(alias, known_hosts):
        argv += ['-o', f'{keyword}={value}']
    argv += ['-p', str(port)]
    own_user = any(letter == 'l' for letter, _ in option_values(options)) or 'user' in config_keys(options)
    destination = LOOPBACK if own_user else f'{SSH_USER}@{LOOPBACK}'
    algorithms = [word for keyword, value in ALGORITHM_OPTIONS for word in ('-o', f'{keyword}={value}')]
    return argv + options + algorithms + [destination] + command


# Windows has no /bin/sh: OpenSSH for Windows starts the helper with CreateProcess, which runs a .cmd
# through cmd.exe; the .cmd hands the prompt to the Python that runs az (isolated mode), and that
# answers only the password prompt, like the shell script.
_ASKPASS_PY = """# az webapp remote-connection ssh: supplies the App Service container's SSH password.
import sys
if 'password:' not in ' '.join(sys.argv[1:]).lower():
    sys.exit(1)
print({password!r})
"""
_ASKPASS_CMD = '@"{python}" -I "{script}" %*\r\n'

# SSH_ASKPASS_REQUIRE=force, which makes ssh use the helper although it has a terminal.
ASKPASS_MIN_OPENSSH = (8, 4)


def write_askpass(directory, windows=None):
    """The askpass helper in ``directory`` (private); returns the path to give SSH_ASKPASS."""
    windows = os.name == 'nt' if windows is None else windows
    if not windows:
        return _write_private(os.path.join(directory, 'askpass'),
                              _ASKPASS_SCRIPT.format(password=SSH_PASSWORD))
    script = _write_private(os.path.join(directory, 'askpass.py'), _ASKPASS_PY.format(password=SSH_PASSWORD))
    return _write_private(os.path.join(directory, 'askpass.cmd'),
                          _ASKPASS_CMD.format(python=sys.executable, script=script))


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, 'w', encoding='utf-8', newline='') as handle:
        handle.write(text)
    return path


def openssh_version(ssh_path):
    """(major, minor) of the OpenSSH client at ssh_path ("OpenSSH_9.2p1", "OpenSSH_for_Windows_8.1p1"),
    or None when it cannot tell."""
    try:
        proc = subprocess.run([ssh_path, '-V'], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_openssh_version(proc.stderr + proc.stdout)


def parse_openssh_version(text):
    match = re.search(r'OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)', text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def askpass_unsupported_message(version):
    """None when this OpenSSH takes the password from our helper; else the one line to show."""
    if version is None or version >= ASKPASS_MIN_OPENSSH:
        return None
    return (f'This OpenSSH client ({version[0]}.{version[1]}) cannot take the password from az: that needs '
            f'OpenSSH {ASKPASS_MIN_OPENSSH[0]}.{ASKPASS_MIN_OPENSSH[1]} or later (on Windows, update the '
            "\"OpenSSH Client\" optional feature or install Win32-OpenSSH). Type the password "
            f'{SSH_PASSWORD} when ssh asks for it.')


def find_ssh(name='ssh', windows=None):
    """The OpenSSH client program: on PATH, else where Windows installs its own."""
    path = shutil.which(name)
    if path:
        return path
    windows = os.name == 'nt' if windows is None else windows
    if windows:
        system = os.path.join(os.environ.get('SystemRoot', r'C:\Windows'), 'System32', 'OpenSSH', name + '.exe')
        if os.path.isfile(system):
            return system
    return None


def install_hint(platform=None):
    """How to get the OpenSSH client on this platform."""
    platform = platform or sys.platform
    if platform.startswith('win'):
        return ('add the "OpenSSH Client" optional feature (Settings > System > Optional features), which puts '
                'ssh.exe under System32\\OpenSSH')
    if platform == 'darwin':
        return 'macOS ships it as /usr/bin/ssh; make sure /usr/bin is on PATH'
    return 'Debian/Ubuntu: `apt-get install openssh-client`; Alpine: `apk add openssh-client`'


def ssh_env(askpass_path, base=None):
    """The ssh child's environment: askpass forced (OpenSSH >= 8.4) when a helper is given."""
    env = dict(os.environ if base is None else base)
    if askpass_path:
        env['SSH_ASKPASS'] = askpass_path
        env['SSH_ASKPASS_REQUIRE'] = 'force'
    return env


class AskpassDir:
    """A private temporary directory holding the askpass helper; removed on exit."""

    def __init__(self, wanted):
        self.wanted = wanted
        self.path = None
        self._dir = None

    def __enter__(self):
        if self.wanted:
            self._dir = tempfile.mkdtemp(prefix='az-webapp-ssh-')
            self.path = write_askpass(self._dir)
        return self

    def __exit__(self, *exc):
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def stored_keys(alias, known_hosts):
    """{(type, base64)} pinned for alias (hashed entries too, through ssh-keygen -F)."""
    if not os.path.exists(known_hosts):
        return set()
    proc = subprocess.run(['ssh-keygen', '-F', alias, '-f', known_hosts], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    return _key_set(proc.stdout)


def offered_keys(port, key_types, timeout=10):
    """{(type, base64)} the server behind the local port offers, for the given types."""
    proc = subprocess.run(['ssh-keyscan', '-T', str(timeout), '-t', ','.join(sorted(key_types)), '-p',
                           str(port), LOOPBACK], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False, timeout=timeout * 3)
    return _key_set(proc.stdout)


def _key_set(text):
    keys = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith('#'):
            keys.add((fields[1], fields[2]))
    return keys


def host_key_changed(port, alias, known_hosts):
    """True when a key is pinned for alias and the server now offers none of the pinned ones."""
    stored = stored_keys(alias, known_hosts)
    if not stored:
        return False
    offered = offered_keys(port, {kind for kind, _ in stored})
    return bool(offered) and not offered & stored


# ---------------------------------------------------------------------------------------------
# ssh_config


def az_invocation():
    """How a ProxyCommand runs this az from any directory: its Python with -P (3.11+; -I before),
    so that the working directory is never put first on sys.path (a source tree there would shadow
    the installed extension)."""
    flag = '-P' if sys.version_info >= (3, 11) else '-I'
    return [sys.executable, flag, '-m', 'azure.cli']


def _config_quote(word):
    """A word for a ProxyCommand line: quoted for sh, with % doubled (ssh's token escape)."""
    return shlex.quote(word).replace('%', '%%')


def proxy_command(resource_group, name, slot=None, instance=None, subscription=None, config_dir=None,
                  windows=None):
    """The ProxyCommand line: this az, for this subscription and (when not the default) this az
    config directory, so ssh run from any shell reaches the same app with the same sign-in."""
    windows = os.name == 'nt' if windows is None else windows
    argv = ['webapp', 'remote-connection', 'create', '-g', resource_group, '-n', name]
    if slot:
        argv += ['--slot', slot]
    if instance:
        argv += ['--instance', instance]
    if subscription:
        argv += ['--subscription', subscription]
    argv.append('--stdio')
    if config_dir and not _same_path(config_dir, default_config_dir()):
        if windows:  # no `env` there: the Python that runs az sets the variable itself
            flag = az_invocation()[1]
            setter = (f'import os,runpy;os.environ["AZURE_CONFIG_DIR"]={config_dir!r};'
                      'runpy.run_module("azure.cli",run_name="__main__",alter_sys=True)')
            return _windows_command_line([sys.executable, flag, '-c', setter] + argv)
        argv = ['env', f'AZURE_CONFIG_DIR={config_dir}'] + az_invocation() + argv
    else:
        argv = az_invocation() + argv
    if windows:
        return _windows_command_line(argv)
    return ' '.join(_config_quote(word) for word in argv)


def _windows_command_line(argv):
    """Quoted as Windows programs read their command line (Win32-OpenSSH starts it with
    CreateProcess), % doubled for ssh's tokens."""
    return subprocess.list2cmdline(argv).replace('%', '%%')


def default_config_dir():
    """az's default configuration directory (AZURE_CONFIG_DIR unset)."""
    return os.path.expanduser(os.path.join('~', '.azure'))


def _same_path(one, other):
    return os.path.normcase(os.path.realpath(one)) == os.path.normcase(os.path.realpath(other))


def _config_value(value):
    return f'"{value}"' if any(c.isspace() for c in value) else value


def config_block(host, resource_group, name, alias, known_hosts, slot=None, instance=None, subscription=None,
                 config_dir=None):
    """The ``Host`` block (with BEGIN/END markers, so that it can be replaced in place)."""
    what = f"slot '{slot}' of app '{name}'" if slot else f"app '{name}'"
    lines = [BLOCK_BEGIN.format(host=host),
             f"# {what} in resource group '{resource_group}'"
             + (f", instance '{instance}'" if instance else '') + '.',
             f"# Password: {SSH_PASSWORD} (built-in images), or add an IdentityFile whose public key is in the "
             "container's authorized_keys.",
             f'Host {host}',
             f'    HostName {host}',
             f'    User {SSH_USER}',
             f'    ProxyCommand {proxy_command(resource_group, name, slot, instance, subscription, config_dir)}']
    lines += [f'    {keyword} {_config_value(value)}' for keyword, value in pinning_options(alias, known_hosts)]
    lines += [f'    {keyword} {value}' for keyword, value in ALGORITHM_OPTIONS]
    lines.append(BLOCK_END.format(host=host))
    return '\n'.join(lines) + '\n'


def merge_block(existing, block, host):
    """existing ssh_config text with the block for host replaced in place, or appended."""
    begin, end = BLOCK_BEGIN.format(host=host), BLOCK_END.format(host=host)
    lines = existing.splitlines(keepends=True)
    stripped = [line.rstrip('\r\n') for line in lines]
    if begin in stripped and end in stripped[stripped.index(begin):]:
        first = stripped.index(begin)
        last = stripped.index(end, first)
        return ''.join(lines[:first]) + block + ''.join(lines[last + 1:])
    if existing and not existing.endswith('\n'):
        existing += '\n'
    return existing + ('\n' if existing.strip() else '') + block


def remove_block(existing, host):
    """existing without the marked block for host (and one blank line before it)."""
    if BLOCK_BEGIN.format(host=host) not in existing:
        return existing
    merged = merge_block(existing, '\0', host)
    before, after = merged.split('\0', 1)
    if before.endswith('\n\n'):
        before = before[:-1]
    return before + after


# The file of ours that the user's config includes first: OpenSSH keeps the first value it reads for
# each option, so our blocks must come before the user's `Host *` and `Match` blocks, and before
# options outside any block (an Include at the top returns to the top level after the file).
OURS_HEADER = ('# Host blocks written by `az webapp remote-connection ssh-config`; included from the top of {config}.\n'
               '# Each block is replaced in place when the command runs again; blocks you add here are kept.\n')
INCLUDE_BEGIN = '# BEGIN az webapp remote-connection: the Host blocks it writes (first, so that they take effect)'
INCLUDE_END = '# END az webapp remote-connection'


class ConfigFileError(Exception):
    """The ssh_config file cannot be written as asked; str() says what to do."""


def ours_path(path):
    """The file of ours beside the user's config: ``<config>.az-webapp``."""
    return path + '.az-webapp'


def include_lines(ours, windows=None):
    windows = os.name == 'nt' if windows is None else windows
    target = ours.replace('\\', '/') if windows else ours  # OpenSSH for Windows reads / in paths
    quoted = f'"{target}"' if any(c.isspace() for c in target) else target
    return f'{INCLUDE_BEGIN}\nInclude {quoted}\n{INCLUDE_END}\n'


def foreign_host_line(text, host, ignore_ours=True):
    """The line number (1-based) of a ``Host`` line naming host exactly, outside our marked blocks,
    or None."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith('# BEGIN az webapp remote-connection: '):
            inside = ignore_ours
        elif line.startswith('# END az webapp remote-connection'):
            inside = False
        elif not inside:
            words = line.replace('=', ' ', 1).split()
            if len(words) >= 2 and words[0].lower() == 'host' and host in words[1:]:
                return number
    return None


def _read(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(path, text, existing):
    write_atomically(path, text, stat.S_IMODE(os.stat(path).st_mode) if existing is not None else 0o600)


def write_atomically(path, text, mode=0o600):
    """A reader sees the whole old file or the whole new one, never half."""
    temp = f'{path}.az-{os.getpid()}.tmp'
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.replace(temp, path)


def update_config_file(path, block, host):
    """Put the block for host into the file of ours (``<path>.az-webapp``), included from the top of
    path; returns (outcome, path of ours), outcome 'added', 'updated' or 'unchanged'. Raises
    ConfigFileError, changing nothing, when the directory is missing or a Host block for host that
    this command did not write is in either file."""
    path = os.path.realpath(os.path.expanduser(path))  # a symlinked config stays a symlink
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigFileError(
            f'The directory {directory} does not exist, so {path} cannot be written. Create it first '
            f'(`mkdir -m 700 {directory}`), or choose another file with --file.')
    ours = ours_path(path)
    existing, existing_ours = _read(path), _read(ours)
    if existing_ours is not None and not existing_ours.startswith(OURS_HEADER.split('{', 1)[0]):
        raise ConfigFileError(
            f'{ours} exists but was not written by this command, so it is left alone. Move it away, or choose '
            'another file with --file.')
    for text, where in ((existing or '', path), (existing_ours or '', ours)):
        line = foreign_host_line(text, host)
        if line:
            raise ConfigFileError(
                f"{where} already has a Host block for '{host}' (line {line}) that this command did not write; "
                'it is left as it is. Choose another name with --host, or remove that block and run the command '
                'again.')
    # Blocks of ours that an older version appended to the user's file move to the file of ours.
    moved = BLOCK_BEGIN.format(host=host) in (existing or '')
    base = existing_ours if existing_ours is not None else OURS_HEADER.format(config=path)
    merged_ours = merge_block(base, block, host)
    merged = remove_block(existing or '', host)
    if INCLUDE_BEGIN not in merged:
        merged = include_lines(ours) + ('\n' + merged if merged.strip() else '')
    if existing_ours == merged_ours and existing == merged:
        return 'unchanged', ours
    _write(ours, merged_ours, existing_ours)
    if existing != merged:
        _write(path, merged, existing)
    was_there = moved or (existing_ours is not None and BLOCK_BEGIN.format(host=host) in existing_ours)
    return ('updated' if was_there else 'added'), ours
