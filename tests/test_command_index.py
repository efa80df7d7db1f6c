"""`az extension add --name webapp` and `az extension update --name webapp` from the extension
index that tools/build_index.py writes and the sandbox serves (as in the seed document)."""
import os
import shutil

from tests.fixtures_command import AzRunner, build_index


def _bump(version):
    parts = version.split('.')
    return '.'.join(parts[:-1] + [str(int(parts[-1]) + 1)])


def _installed_version(az):
    return az.run('extension', 'list', '--query', "[?name=='webapp'].version | [0]", '-o', 'tsv',
                  check=True).stdout.strip()


def test_add_then_update_from_the_index(sandbox, webapp_wheel, tmp_path, az_home):
    index_dir = sandbox.extension_dir
    base_url = sandbox.extension_url('')
    first_version = build_index._wheel_version(os.path.basename(webapp_wheel))
    shutil.copy(webapp_wheel, index_dir)
    build_index.write_index(index_dir, base_url)

    config = str(tmp_path / 'az')
    os.makedirs(config)
    from sandbox import seed_az_config
    seed_az_config(config)
    env = sandbox.az_env(config)
    env['AZURE_EXTENSION_DIR'] = str(tmp_path / 'cliextensions')
    az = AzRunner(env, az_home)
    # The sandbox's environment sets AZURE_EXTENSION_INDEX_URL; set the config too, as a user would.
    az.run('config', 'set', f'extension.index_url={sandbox.extension_index_url}', check=True)
    env.pop('AZURE_EXTENSION_INDEX_URL')

    az.run('extension', 'add', '--name', 'webapp', '--yes', check=True, timeout=300)
    assert _installed_version(az) == first_version

    second_version = _bump(first_version)
    build_index.build_wheel(index_dir, second_version, reuse_objects=True)
    build_index.write_index(index_dir, base_url)
    az.run('extension', 'update', '--name', 'webapp', check=True, timeout=300)
    assert _installed_version(az) == second_version

    installed = os.path.join(env['AZURE_EXTENSION_DIR'], 'webapp', 'azext_webapp')
    assert any(name.startswith('_tunnel') and name.endswith('.so') for name in os.listdir(installed))
    proc = az.run('webapp', 'remote-connection', 'create', '--help', check=True)
    assert 'Examples' in proc.stdout
