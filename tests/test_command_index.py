"""`az extension add --name webapp` and `az extension update --name webapp` from the extension
index that tools/build_index.py writes and the sandbox serves (as in the seed document): the one
universal wheel, listed under its real name with its digest, and a working tunnel after each --
also on a platform the wheel has no native build for, where the portable engine serves."""
import hashlib
import json
import os
import shutil

from azext_webapp._native import FILENAME, platform_tag
from tests.fixtures_command import AzRunner, build_index, ssh


def _bump(version):
    parts = version.split('.')
    return '.'.join(parts[:-1] + [str(int(parts[-1]) + 1)])


def _installed_version(az):
    return az.run('extension', 'list', '--query', "[?name=='webapp'].version | [0]", '-o', 'tsv',
                  check=True).stdout.strip()


def _check_index(index_dir, base_url, versions):
    """index.json lists exactly these versions, each under its wheel's real (universal) file name,
    with that file's URL and sha256 digest."""
    with open(os.path.join(index_dir, 'index.json'), encoding='utf-8') as handle:
        entries = json.load(handle)['extensions']['webapp']
    assert [entry['metadata']['version'] for entry in entries] == versions
    for entry in entries:
        filename = f"webapp-{entry['metadata']['version']}-py3-none-any.whl"
        assert entry['filename'] == filename
        assert entry['downloadUrl'] == base_url + filename
        with open(os.path.join(index_dir, filename), 'rb') as handle:
            assert entry['sha256Digest'] == hashlib.sha256(handle.read()).hexdigest()


def _check_installed_engine(ext_dir):
    """The installed extension carries the engine for this platform only, where the loader looks."""
    package = os.path.join(ext_dir, 'webapp', 'azext_webapp')
    found = [os.path.relpath(os.path.join(top, name), package)
             for top, _, names in os.walk(package) for name in names if name.endswith('.so')]
    assert found == [os.path.join('_native', platform_tag(), FILENAME)]


def _tunnel_works(az, sandbox, ssh_env, *extra):
    with az.tunnel('-g', sandbox.resource_group, '-n', 'linux-app', *extra) as run:
        result = ssh(run.port, 'hostname', env=ssh_env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'linux-app-i0'
    assert 'Traceback' not in run.stderr
    return run


def _foreign_platform_works(az, ext_dir, tmp_path, sandbox, ssh_env):
    """The same installed extension on a platform it has no native build for (the build relabelled,
    as tests/test_packaging.py does): the portable engine serves, and --verbose says so and why."""
    foreign = str(tmp_path / 'cliextensions-foreign')
    shutil.copytree(ext_dir, foreign, symlinks=True)
    native_dir = os.path.join(foreign, 'webapp', 'azext_webapp', '_native')
    os.rename(os.path.join(native_dir, platform_tag()), os.path.join(native_dir, 'linux_aarch64_musl'))
    env = dict(az.env, AZURE_EXTENSION_DIR=foreign)
    env.pop('WEBAPP_ENGINE', None)
    run = _tunnel_works(AzRunner(env, az.cwd), sandbox, ssh_env, '--verbose')
    assert f'Tunnel engine: portable (no native build for this platform ({platform_tag()}))' in run.stderr, \
        run.stderr
    shutil.rmtree(foreign)


def test_add_then_update_from_the_index(sandbox, webapp_wheel, tmp_path, az_home, ssh_client_env):
    index_dir = sandbox.extension_dir
    base_url = sandbox.extension_url('')
    assert webapp_wheel.endswith('-py3-none-any.whl')
    first_version = build_index._wheel_version(os.path.basename(webapp_wheel))
    for stale in os.listdir(index_dir):  # e.g. a demo run's wheels
        if stale.startswith('webapp-') and stale.endswith('.whl'):
            os.remove(os.path.join(index_dir, stale))
    shutil.copy(webapp_wheel, index_dir)
    build_index.write_index(index_dir, base_url)
    _check_index(index_dir, base_url, [first_version])

    config = str(tmp_path / 'az')
    sandbox.az_login(config)  # seeds the config, registers the sandbox cloud, signs in
    env = sandbox.az_env(config)
    env['AZURE_EXTENSION_DIR'] = str(tmp_path / 'cliextensions')
    env.pop('PYTHONPATH', None)
    az = AzRunner(env, az_home)
    # The sandbox's environment sets AZURE_EXTENSION_INDEX_URL; set the config too, as a user would.
    az.run('config', 'set', f'extension.index_url={sandbox.extension_index_url}', check=True)
    env.pop('AZURE_EXTENSION_INDEX_URL')

    az.run('extension', 'add', '--name', 'webapp', '--yes', check=True, timeout=300)
    assert _installed_version(az) == first_version
    _check_installed_engine(env['AZURE_EXTENSION_DIR'])
    _tunnel_works(az, sandbox, ssh_client_env)
    _foreign_platform_works(az, env['AZURE_EXTENSION_DIR'], tmp_path, sandbox, ssh_client_env)

    second_version = _bump(first_version)
    build_index.build_wheel(index_dir, second_version, reuse_objects=True)
    build_index.write_index(index_dir, base_url)
    _check_index(index_dir, base_url, [first_version, second_version])
    az.run('extension', 'update', '--name', 'webapp', check=True, timeout=300)
    assert _installed_version(az) == second_version
    _check_installed_engine(env['AZURE_EXTENSION_DIR'])
    _tunnel_works(az, sandbox, ssh_client_env)

    proc = az.run('webapp', 'remote-connection', 'create', '--help', check=True)
    assert 'Examples' in proc.stdout
