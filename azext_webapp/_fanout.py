"""``az webapp remote-connection ssh --instance all -- CMD`` (or ``--instance NAME,NAME``): CMD on
every chosen instance at once, one tunnel and one ssh each, and every instance's outcome back;
``exec --instance ...`` runs through the same ``FanOut`` (``_exec_command.ExecFanOut``).

Each instance is an ordinary single-instance run (``_connection.open_tunnel`` with that instance,
ssh with that instance's own HostKeyAlias); an instance that cannot be reached is a result with
its reason, never an abort of the others. Output: each line as it arrives, prefixed with the
instance name (stdout to stdout, stderr to stderr), or with an explicit ``--output`` one record
per instance. The exit status is the worst (highest) instance's; an instance that could not be
reached counts as 255, ssh's own status for a connection that failed.
"""

import concurrent.futures
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from azure.cli.core.azclierror import AzCLIError, InvalidArgumentValueError, ValidationError
from knack.log import get_logger

from azext_webapp import ssh
from azext_webapp._arm import instance_names, web_client
from azext_webapp._connection import open_tunnel
from azext_webapp._errors import describe, first_line
from azext_webapp._termination import SLICE, raise_if_signalled

logger = get_logger(__name__)

ALL = 'all'
UNREACHABLE = 255       # what ssh itself exits with when the connection fails
MAX_PARALLEL = 16       # tunnels opened at once; more instances wait for a free slot


def wanted_instances(value):
    """The instance names of ``--instance`` for a fan-out, ``[ALL]``, or None for one instance."""
    if value is None:
        return None
    if value.strip().lower() == ALL:
        return [ALL]
    if ',' not in value:
        return None
    names = [part.strip() for part in value.split(',')]
    if any(not name for name in names):
        raise InvalidArgumentValueError(
            f'--instance {value!r} has an empty name. Give instance names separated by commas, such as '
            '--instance NAME1,NAME2, or --instance all (list them with `az webapp list-instances`).')
    return list(dict.fromkeys(names))  # each once, in the order given


# ssh options that forward ports: one local port cannot serve every instance.
FORWARDING = set('LRDW')
FORWARDING_KEYWORDS = {'localforward', 'remoteforward', 'dynamicforward'}


def check_command(value, options, command):
    forwarding = sorted({f'-{letter}' for letter, _ in ssh.option_values(options) if letter in FORWARDING}
                        | {f'-o {key}' for key in ssh.config_keys(options) & FORWARDING_KEYWORDS})
    if forwarding:
        raise ValidationError(
            f'--instance {value} runs one command on several instances, so it cannot forward ports '
            f'({", ".join(forwarding)}): each instance would need the same local port. Forward ports to one '
            'instance at a time with --instance NAME.')
    if not command:
        raise ValidationError(
            f'--instance {value} runs one command on several instances, so it needs the command after `--` '
            f'(for example `--instance {value} -- uptime`). An interactive session reaches one instance: '
            'name it with --instance NAME (list them with `az webapp list-instances`), or leave --instance out.')


def choose_instances(cmd, target, wanted):
    known = instance_names(web_client(cmd.cli_ctx), target)
    if wanted == [ALL]:
        if not known:
            raise ValidationError(f'{describe(target, True)} has no running instances (`az webapp list-instances`).')
        return known
    unknown = [name for name in wanted if name not in known]
    if unknown:
        verb = 'is not an instance' if len(unknown) == 1 else 'are not instances'
        raise InvalidArgumentValueError(
            f"{', '.join(repr(name) for name in unknown)} {verb} of {describe(target)} "
            f"(instances: {', '.join(known) or 'none'}). Instance names are case-sensitive; list them with "
            '`az webapp list-instances`.')
    return wanted


class _Sink:
    """Prefixed lines, whole lines at a time, from several threads."""

    def __init__(self):
        self.lock = threading.Lock()

    def line(self, name, stream, data):
        out = sys.stdout if stream == 'stdout' else sys.stderr
        prefix = f'{name}: '.encode('utf-8')
        with self.lock:
            out.flush()
            target = getattr(out, 'buffer', None)
            if target is not None:
                target.write(prefix + data if data.endswith(b'\n') else prefix + data + b'\n')
                target.flush()
            else:  # a text-only stream (tests replacing sys.stdout)
                out.write((prefix + data).decode('utf-8', 'replace').rstrip('\n') + '\n')
                out.flush()


class Lines:
    """Bytes that arrive in pieces, handed on a whole line at a time (the last one at close())."""

    def __init__(self, emit):
        self.emit = emit
        self.pending = b''

    def write(self, data):
        data = self.pending + data
        end = data.rfind(b'\n') + 1
        for line in data[:end].splitlines(keepends=True):
            self.emit(line)
        self.pending = data[end:]

    def close(self):
        if self.pending:
            self.emit(self.pending)
            self.pending = b''


class FanOut:
    """Runs one command on each instance; ``results`` holds one dict per instance, in the order
    given. A subclass runs it on one instance (``_run(name) -> (exit status, stdout, stderr)``,
    output lines handed to ``self.line(name, stream, data)`` as they come) and ends them all on
    Ctrl+C (``_cancel()``)."""

    max_parallel = MAX_PARALLEL

    def __init__(self, names, stream):
        self.names = names
        self.sink = _Sink() if stream else None
        self.cancelled = threading.Event()

    def line(self, name, stream, data):
        if self.sink is not None:
            self.sink.line(name, stream, data)

    def run(self):
        with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(self.names)),
                                thread_name_prefix='webapp-instance') as pool:
            futures = [pool.submit(self._one, name) for name in self.names]
            try:
                # in slices: a recorded signal is raised here (_termination.py), and in the
                # threads' own waits, which then end their tunnels
                while concurrent.futures.wait(futures, SLICE).not_done:
                    raise_if_signalled()
                return [future.result() for future in futures]
            except BaseException:  # Ctrl+C, SIGTERM: end every instance's command
                self.cancelled.set()
                self._cancel()
                raise

    def _one(self, name):
        started = time.monotonic()
        result = {'instance': name, 'exitStatus': UNREACHABLE, 'stdout': '', 'stderr': '', 'seconds': 0.0,
                  'error': None}
        try:
            if self.cancelled.is_set():
                raise ValidationError('cancelled')
            code, out, err = self._run(name, result)
            result.update(exitStatus=code, stdout=out, stderr=err)
        except AzCLIError as error:
            result['error'] = first_line(error) + '.'
        except Exception as error:  # pylint: disable=broad-except
            logger.debug('Instance %s failed', name, exc_info=True)
            result['error'] = f'{type(error).__name__}: {first_line(error)}.'
        result['seconds'] = round(time.monotonic() - started, 3)
        if result['error']:
            self.line(name, 'stderr', f'ERROR: {result["error"]}'.encode('utf-8'))
        return result

    def _run(self, name, result):
        raise NotImplementedError

    def _cancel(self):
        pass


class SshFanOut(FanOut):
    """One tunnel and one ssh per instance, with that instance's own HostKeyAlias."""

    def __init__(self, endpoint, names, ssh_path, ssh_args, known_hosts, stream, askpass_path):
        super().__init__(names, stream)
        self.endpoint = endpoint
        self.ssh_path = ssh_path
        self.ssh_args = ssh_args
        self.known_hosts = known_hosts
        self.askpass_path = askpass_path
        self.children = []
        self.lock = threading.Lock()

    def _cancel(self):
        with self.lock:
            for child in self.children:
                if child.poll() is None:
                    child.terminate()

    def _run(self, name, result):
        endpoint = self.endpoint.for_instance(name)
        with open_tunnel(endpoint) as (engine, _):
            alias = ssh.host_key_alias(endpoint.scm_url, name)
            argv = ssh.ssh_argv(self.ssh_path, engine.port, alias, self.known_hosts, self.ssh_args)
            code, out, err = self._ssh(name, argv)
            if code == UNREACHABLE and ssh.host_key_changed(engine.port, alias, self.known_hosts):
                result['error'] = (
                    f'Refused: the SSH host key of instance {name} is not the one recorded in '
                    f'{self.known_hosts} (as {alias}). If you know why it changed, remove the old key with '
                    f'`ssh-keygen -R {alias} -f {self.known_hosts}` and run the command again.')
        return code, out, err

    def _ssh(self, name, argv):
        logger.info('Running on %s: %s', name, ' '.join(argv))
        child = subprocess.Popen(argv, env=ssh.ssh_env(self.askpass_path),  # pylint: disable=consider-using-with
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with self.lock:
            self.children.append(child)
        chunks = {'stdout': [], 'stderr': []}
        readers = [threading.Thread(target=self._read, args=(name, stream, getattr(child, stream), chunks[stream]),
                                    daemon=True) for stream in chunks]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        code = child.wait()
        code = 128 - code if code < 0 else code
        text = {stream: b''.join(parts).decode('utf-8', 'replace') for stream, parts in chunks.items()}
        return code, text['stdout'], text['stderr']

    def _read(self, name, stream, pipe, parts):
        for line in iter(pipe.readline, b''):
            parts.append(line)
            self.line(name, stream, line)
        pipe.close()


def run(endpoint, names, ssh_path, ssh_args, known_hosts, structured):
    """Returns (results, worst exit status)."""
    options, _ = ssh.split_ssh_args(ssh_args)
    with ssh.AskpassDir(wanted=not ssh.has_own_identity(options)) as askpass:
        results = SshFanOut(endpoint, names, ssh_path, ssh_args, known_hosts, not structured, askpass.path).run()
    return results, worst(results)


def worst(results):
    return max(result['exitStatus'] for result in results)
