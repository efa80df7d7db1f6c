"""An install that cannot be swapped (issue 17): the public extension index lists Microsoft's old
`webapp` preview (versions up to 0.4.0, module azext_webapp too). This release is versioned above it,
so `az extension update --name webapp` against an index that offers the preview keeps this one.
The real az, two indexes served by the sandbox: "ours" (this wheel) and "public" (a 0.4.0 stand-in)."""
import os
import shutil

from tests.fixtures_command import AzRunner, build_index

PREVIEW_VERSION = '0.4.0'  # the newest version of Microsoft's preview in the public index


def _version_key(version):
    return tuple(int(part) for part in version.split('.'))


def _index(sandbox, name, wheels):
    directory = os.path.join(sandbox.extension_dir, name)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for wheel in wheels:
        shutil.copy(wheel, directory)
    build_index.write_index(directory, sandbox.extension_url(f'{name}/'))
    return sandbox.extension_url(f'{name}/index.json')


def test_version_is_above_the_preview_and_update_from_a_preview_index_keeps_it(sandbox, webapp_wheel, tmp_path,
                                                                               az_home):
    version = build_index._wheel_version(os.path.basename(webapp_wheel))
    assert _version_key(version) >= (1, 0, 0) > _version_key(PREVIEW_VERSION)
    preview = build_index.build_wheel(str(tmp_path / 'preview'), PREVIEW_VERSION, native=False)
    ours_url = _index(sandbox, 'ours', [webapp_wheel])
    public_url = _index(sandbox, 'public', [preview])

    config = str(tmp_path / 'az')
    sandbox.az_login(config)
    env = sandbox.az_env(config)
    env.pop('AZURE_EXTENSION_INDEX_URL')  # as a user: extension.index_url in az's configuration
    env['AZURE_EXTENSION_DIR'] = str(tmp_path / 'cliextensions')
    env.pop('PYTHONPATH', None)
    az = AzRunner(env, az_home)
    az.run('config', 'set', f'extension.index_url={ours_url}', check=True)
    az.run('extension', 'add', '--name', 'webapp', '--yes', check=True, timeout=300)

    az.run('config', 'set', f'extension.index_url={public_url}', check=True)
    update = az.run('extension', 'update', '--name', 'webapp', timeout=300)
    installed = az.run('extension', 'list', '--query', "[?name=='webapp'].version | [0]", '-o', 'tsv',
                       check=True).stdout.strip()
    assert installed == version, update.stderr  # not swapped for the preview
    assert "Latest version of 'webapp' is already installed" in update.stderr, update.stderr
    assert 'Traceback' not in update.stderr
