"""Issue 9: one universal wheel that `az extension add --name webapp` accepts, carrying a stable-ABI
engine with libwebsockets linked in, loaded only on the platform it was built for."""
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from azext_webapp import _native
from tests.fixtures_command import ROOT, build_index

TAG = _native.platform_tag()
ENGINE_IN_WHEEL = f'azext_webapp/_native/{TAG}/{_native.FILENAME}'
INPLACE_ENGINE = os.path.join(ROOT, 'azext_webapp', '_native', TAG, _native.FILENAME)


@pytest.fixture(scope='module')
def unpacked_wheel(webapp_wheel, tmp_path_factory):
    out = tmp_path_factory.mktemp('unpacked')
    with zipfile.ZipFile(webapp_wheel) as wheel:
        wheel.extractall(out)
    return str(out)


def _wheel_text(wheel_path, suffix):
    with zipfile.ZipFile(wheel_path) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(suffix))
        return wheel.read(name).decode()


# -- the wheel -----------------------------------------------------------------------------------

def test_wheel_is_universal_and_carries_the_engine_for_this_platform(webapp_wheel):
    assert os.path.basename(webapp_wheel).endswith('-py3-none-any.whl')
    assert 'Tag: py3-none-any' in _wheel_text(webapp_wheel, '.dist-info/WHEEL').splitlines()
    with zipfile.ZipFile(webapp_wheel) as wheel:
        names = wheel.namelist()
    binaries = [n for n in names if n.endswith('.so') or '.so.' in n]
    assert binaries == [ENGINE_IN_WHEEL]
    assert not [n for n in names if n.endswith(('.c', '.h', '.o'))]
    assert 'azext_webapp/_native/__init__.py' in names
    # the portable engine reads the shared limits from it (Windows and macOS run from the wheel alone)
    assert 'azext_webapp/engine_limits.json' in names
    # the portable engine reads the reason table where no native engine runs
    assert 'azext_webapp/_reasons.def' in names


def test_wheel_declares_no_dependency(webapp_wheel):
    metadata = _wheel_text(webapp_wheel, '.dist-info/METADATA')
    headers = metadata.split('\n\n', 1)[0].splitlines()
    assert not [h for h in headers if h.startswith(('Requires-Dist:', 'Requires-External:'))], headers
    assert 'Requires-Python: >=3.10' in headers


def test_index_lists_the_real_wheel_with_its_digest(webapp_wheel, tmp_path):
    shutil.copy(webapp_wheel, tmp_path)
    build_index.write_index(str(tmp_path), 'http://127.0.0.1:1/ext/')
    with open(tmp_path / 'index.json', encoding='utf-8') as handle:
        (entry,) = json.load(handle)['extensions']['webapp']
    name = os.path.basename(webapp_wheel)
    with open(webapp_wheel, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert entry['filename'] == name
    assert entry['downloadUrl'] == 'http://127.0.0.1:1/ext/' + name
    assert entry['sha256Digest'] == digest
    assert entry['metadata']['azext.minCliCoreVersion']


# -- the binary: libwebsockets linked in, system OpenSSL and libcurl, stable ABI ------------------

@pytest.fixture(params=['in-place', 'wheel'])
def engine_file(request, unpacked_wheel):
    if request.param == 'in-place':
        assert os.path.isfile(INPLACE_ENGINE), 'run `make build` first'
        return INPLACE_ENGINE
    return os.path.join(unpacked_wheel, ENGINE_IN_WHEEL)


def _needed(path):
    out = subprocess.run(['readelf', '-dW', path], capture_output=True, text=True, check=True).stdout
    return re.findall(r'\(NEEDED\)\s+Shared library: \[([^\]]+)\]', out), out


def test_libwebsockets_is_linked_in_not_a_runtime_dependency(engine_file):
    ldd = subprocess.run(['ldd', engine_file], capture_output=True, text=True, check=True).stdout
    print(ldd)
    assert 'libwebsockets' not in ldd
    assert 'not found' not in ldd
    needed, dynamic = _needed(engine_file)
    assert 'libssl.so.3' in needed and 'libcrypto.so.3' in needed and 'libcurl.so.4' in needed
    assert not [lib for lib in needed if 'websockets' in lib or 'python' in lib], needed
    assert 'TEXTREL' not in dynamic  # position-independent: no text relocations
    # Only the module's init function is exported: libwebsockets' own symbols stay private, so a
    # libwebsockets.so loaded by something else in the process cannot clash with them.
    exported = subprocess.run(['nm', '-D', '--defined-only', engine_file], capture_output=True, text=True,
                              check=True).stdout.split()[2::3]
    assert exported == ['PyInit__tunnel']


STABLE_ABI_PRIVATE = {'_Py_Dealloc', '_Py_NoneStruct', '_Py_TrueStruct', '_Py_FalseStruct',
                      '_Py_NotImplementedStruct', '_Py_EllipsisObject', '_PyArg_ParseTuple_SizeT',
                      '_PyArg_ParseTupleAndKeywords_SizeT', '_Py_BuildValue_SizeT', '_PyArg_VaParse_SizeT',
                      '_PyArg_VaParseTupleAndKeywords_SizeT', '_Py_VaBuildValue_SizeT', '_Py_IncRef', '_Py_DecRef',
                      '_PyObject_CallMethod_SizeT'}


def test_only_stable_abi_symbols_are_used(engine_file):
    undefined = subprocess.run(['nm', '-D', '--undefined-only', engine_file], capture_output=True, text=True,
                               check=True).stdout.split()[1::2]
    private = sorted(s for s in undefined if s.startswith('_Py') and s not in STABLE_ABI_PRIVATE)
    assert not private, f'symbols outside the stable ABI: {private}'


def _other_cpythons():
    """Every CPython >= 3.10 on this machine other than the running one: (version, path)."""
    candidates = []
    for minor in range(10, 30):
        name = f'python3.{minor}'
        candidates += [shutil.which(name), f'/usr/bin/{name}', f'/usr/local/bin/{name}']
    pyenv_root = os.environ.get('PYENV_ROOT', os.path.expanduser('~/.pyenv'))
    candidates += glob.glob(os.path.join(pyenv_root, 'versions', '*', 'bin', 'python3.*[0-9]'))
    found = {}
    for path in candidates:
        if not path or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run([path, '-I', '-c', 'import platform, sys; print(platform.python_implementation(),'
                                  ' "%d.%d" % sys.version_info[:2])'], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        impl, _, version = out.stdout.strip().partition(' ')
        if impl != 'CPython' or not version:
            continue
        major, minor = map(int, version.split('.'))
        if (major, minor) >= (3, 10) and (major, minor) != sys.version_info[:2]:
            found.setdefault(version, path)
    return sorted(found.items(), key=lambda item: tuple(map(int, item[0].split('.'))))


LOAD_SNIPPET = '''
import importlib.util, sys
spec = importlib.util.spec_from_file_location("webapp_native", sys.argv[1] + "/_native/__init__.py")
native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native)
engine = native.load_engine(sys.argv[1])
assert engine.__name__ == "azext_webapp._tunnel" and issubclass(engine.Error, Exception), engine
assert callable(engine.Engine) and callable(engine.http_get)
print(engine.__file__)
'''


def test_engine_imports_under_every_other_cpython(unpacked_wheel):
    others = _other_cpythons()
    if not others:
        pytest.skip('no other CPython >= 3.10 on this machine (looked for python3.X on PATH, in /usr/bin, '
                    '/usr/local/bin and pyenv versions); Debian bookworm packages only 3.11')
    package = os.path.join(unpacked_wheel, 'azext_webapp')
    for version, path in others:
        proc = subprocess.run([path, '-I', '-c', LOAD_SNIPPET, package], capture_output=True, text=True,
                              timeout=60, cwd=unpacked_wheel)
        print(f'CPython {version} ({path}): {proc.stdout.strip() or proc.stderr.strip()}')
        assert proc.returncode == 0, f'CPython {version} ({path}):\n{proc.stderr}'
        assert proc.stdout.strip() == os.path.join(package, '_native', TAG, _native.FILENAME)


# -- the loader ------------------------------------------------------------------------------------

def test_platform_tag_names_os_machine_and_libc():
    assert TAG == f'linux_{os.uname().machine}_gnu' or not sys.platform.startswith('linux')
    assert _native.platform_tag('linux', 'aarch64', 'musl') == 'linux_aarch64_musl'
    assert _native.platform_tag('linux', 'AMD64', 'gnu') == 'linux_x86_64_gnu'
    assert _native.platform_tag('linux', 'x86_64', 'gnu', pointer_bits=32) == 'linux_i686_gnu'
    assert _native.platform_tag('darwin', 'arm64') == 'macos_aarch64'
    assert _native.platform_tag('win32', 'AMD64') == 'windows_x86_64'


def test_no_build_message_is_one_line_naming_platform_and_remedy():
    message = _native.no_build_message('linux_aarch64_musl', ['linux_x86_64_gnu'])
    assert '\n' not in message
    assert message.startswith("webapp's tunnel engine has no build for this platform (linux_aarch64_musl); "
                              'builds are included for: linux_x86_64_gnu. ')
    # only what works: the portable engine, or the repository's own build of the native one
    assert 'portable engine' in message and 'make build' in message
    assert 'build_index' not in message and 'az extension add --source' not in message


def _run_loader(package_dir, tag=None):
    code = ('import importlib.util, sys\n'
            'spec = importlib.util.spec_from_file_location("n", sys.argv[1] + "/_native/__init__.py")\n'
            'n = importlib.util.module_from_spec(spec); spec.loader.exec_module(n)\n'
            'try:\n    n.load_engine(sys.argv[1], tag=sys.argv[2] or None)\n'
            'except n.EngineUnavailableError as err:\n    print(err); sys.exit(3)\n')
    return subprocess.run([sys.executable, '-I', '-c', code, package_dir, tag or ''], capture_output=True,
                          text=True, timeout=60)


def test_foreign_platform_gets_one_clear_line(unpacked_wheel):
    proc = _run_loader(os.path.join(unpacked_wheel, 'azext_webapp'), tag='linux_aarch64_musl')
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == [_native.no_build_message('linux_aarch64_musl', [TAG])]


def test_missing_system_library_gets_one_clear_line(tmp_path):
    """A build whose shared library dependency is absent (as libcurl.so.4 would be): dlopen fails,
    and the loader names the library instead of raising a bare ImportError."""
    if not shutil.which('gcc'):
        pytest.skip('gcc is not installed')
    lib_dir = tmp_path / 'lib'
    lib_dir.mkdir()
    (tmp_path / 'gone.c').write_text('int webapp_gone(void) { return 1; }\n')
    (tmp_path / 'mod.c').write_text('int webapp_gone(void);\nint PyInit__tunnel(void) { return webapp_gone(); }\n')
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', str(lib_dir / 'libwebappgone.so.1'), str(tmp_path / 'gone.c'),
                    '-Wl,-soname,libwebappgone.so.1'], check=True)
    package = tmp_path / 'pkg' / 'azext_webapp'
    (package / '_native' / TAG).mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, 'azext_webapp', '_native', '__init__.py'), package / '_native')
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', str(package / '_native' / TAG / _native.FILENAME),
                    str(tmp_path / 'mod.c'), str(lib_dir / 'libwebappgone.so.1')], check=True)
    (lib_dir / 'libwebappgone.so.1').unlink()
    proc = _run_loader(str(package))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"webapp's tunnel engine ({TAG}) needs the system library libwebappgone.so.1, which is not installed on "
        'this machine; install it and run the command again.']
    assert _native.load_failure_message(TAG, 'libcurl.so.4: cannot open shared object file: No such file') \
        .endswith('libcurl.so.4, which is not installed on this machine; install it (Debian/Ubuntu: '
                  'apt-get install libcurl4) and run the command again.')


# -- the real az on a platform the installed wheel has no build for ------------------------------

def _foreign_extension_dir(extension_dir, tmp_path):
    """The installed extension with its only build relabelled as another platform's: what a user on
    linux_aarch64_musl (say) would have. No test hook in the product: the files are simply moved."""
    foreign_dir = tmp_path / 'cliextensions'
    shutil.copytree(extension_dir, foreign_dir, symlinks=True)
    native_dir = foreign_dir / 'webapp' / 'azext_webapp' / '_native'
    os.rename(native_dir / TAG, native_dir / 'linux_aarch64_musl')
    return foreign_dir


def test_az_on_a_foreign_platform_gets_a_working_tunnel(sandbox, extension_dir, webapp_az, ssh_client_env,
                                                        tmp_path, monkeypatch):
    """Where no native build loads, the portable engine serves: a real SSH session through the tunnel,
    and --verbose says which engine runs and why."""
    from tests.fixtures_command import AzRunner, ssh
    monkeypatch.delenv('WEBAPP_ENGINE', raising=False)
    env = dict(webapp_az.env, AZURE_EXTENSION_DIR=str(_foreign_extension_dir(extension_dir, tmp_path)))
    env.pop('WEBAPP_ENGINE', None)
    az = AzRunner(env, webapp_az.cwd)
    with az.tunnel('-g', sandbox.resource_group, '-n', 'linux-app', '--verbose') as run:
        result = ssh(run.port, 'hostname', env=ssh_client_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'linux-app-i0'
    assert f'Tunnel engine: portable (no native build for this platform ({TAG}))' in run.stderr, \
        run.stderr
    assert "has no build for this platform" not in run.stderr and 'Traceback' not in run.stderr


def test_forcing_the_native_engine_on_a_foreign_platform_fails_with_one_line(sandbox, extension_dir, webapp_az,
                                                                             tmp_path):
    env = dict(webapp_az.env, AZURE_EXTENSION_DIR=str(_foreign_extension_dir(extension_dir, tmp_path)),
               WEBAPP_ENGINE='native')
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'az'), 'webapp', 'remote-connection', 'create',
                           '-g', sandbox.resource_group, '-n', 'linux-app', '-p', '0'], env=env, cwd=webapp_az.cwd,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ['ERROR: ' + _native.no_build_message(TAG, ['linux_aarch64_musl'])], proc.stderr
    assert 'portable engine' in lines[0]
    assert proc.stdout == ''
