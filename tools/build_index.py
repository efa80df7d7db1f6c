"""Build the extension wheel and write an Azure CLI extension index (``index.json``) beside it.

    python tools/build_index.py --out DIR [--version X.Y.Z] [--base-url http://host:port/]

The wheel is built by ``setup.py`` into DIR: one universal wheel, ``webapp-<version>-py3-none-any.whl``
(the only kind the Azure CLI's index resolver and ``az extension add --name`` accept), carrying the
native engine built on this machine under ``azext_webapp/_native/<platform>/`` (loaded only on a
matching platform; see azext_webapp/_native/__init__.py). DIR/index.json lists every wheel in DIR
in the format ``az extension add --name`` reads (``extension.index_url``): ``{"extensions":
{"webapp": [{"downloadUrl", "sha256Digest", "filename", "metadata"}]}}``, ``filename`` being the
wheel's real name. Building a higher ``--version`` into the same DIR adds it to the index, which is
what ``az extension update --name webapp`` picks up.
"""
import argparse
import contextlib
import email.parser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTENSION = 'webapp'
PACKAGE = 'azext_webapp'
UNIVERSAL_SUFFIX = '-py3-none-any.whl'


def build_wheel(out_dir, version=None, native=True, quiet=True, reuse_objects=False):
    """Build the wheel into out_dir; returns its path.

    reuse_objects: keep the previous build's compiled module (setuptools only compares the .c files'
    times, not the headers', so only reuse within one run over an unchanged tree)."""
    env = dict(os.environ)
    if version:
        env['WEBAPP_VERSION'] = version
    if not native:
        env['WEBAPP_NO_NATIVE'] = '1'
    # A private build tree: object files are reused between builds, the repository stays clean and
    # an in-place build_ext running at the same time is not disturbed. Builds from two test runs at
    # once take turns in it.
    work = os.path.join(ROOT, '.build-wheel')
    with _exclusive(os.path.join(ROOT, '.build-lock', 'wheel')):
        return _build_wheel(out_dir, env, work, version, quiet, reuse_objects)


@contextlib.contextmanager
def _exclusive(lock_path):
    """Hold an exclusive lock on lock_path (released when the holder exits, however it ends)."""
    try:
        import fcntl
    except ImportError:  # Windows: nothing builds wheels concurrently there
        yield
        return
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    with open(lock_path, 'w') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build_wheel(out_dir, env, work, version, quiet, reuse_objects):
    if not reuse_objects:
        shutil.rmtree(work, ignore_errors=True)
    before = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
    os.makedirs(out_dir, exist_ok=True)
    argv = [sys.executable, 'setup.py'] + (['-q'] if quiet else []) + [
        'egg_info', '--egg-base', work,
        'build', '--build-base', os.path.join(work, 'build'),
        'bdist_wheel', '--bdist-dir', os.path.join(work, 'bdist'), '--dist-dir', out_dir]
    os.makedirs(work, exist_ok=True)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=quiet, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'error: building the wheel failed ({proc.returncode}):\n'
                         f'{proc.stdout or ""}{proc.stderr or ""}')
    shutil.rmtree(os.path.join(work, 'bdist'), ignore_errors=True)
    built = [name for name in os.listdir(out_dir) if name.endswith('.whl') and name not in before]
    if not built:  # the same version rebuilt: the file name did not change
        expected = version or _setup_version()
        built = [name for name in os.listdir(out_dir)
                 if name.endswith('.whl') and _wheel_version(name) == expected]
    if len(built) != 1:
        raise SystemExit(f'error: expected one new wheel in {out_dir}, found {built}')
    if not built[0].endswith(UNIVERSAL_SUFFIX):
        raise SystemExit(f'error: {built[0]} is not a universal wheel (*{UNIVERSAL_SUFFIX}); '
                         'az extension add --name would never pick it')
    return os.path.join(out_dir, built[0])


def index_entry(wheel_path, base_url=None):
    """One index entry for a wheel: download URL, sha256 digest, file name, metadata."""
    name = os.path.basename(wheel_path)
    with open(wheel_path, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with zipfile.ZipFile(wheel_path) as wheel:
        azext = json.loads(wheel.read(f'{PACKAGE}/azext_metadata.json'))
        dist_info = next(n for n in wheel.namelist() if n.endswith('.dist-info/METADATA'))
        dist = email.parser.Parser().parsestr(wheel.read(dist_info).decode('utf-8'))
    version = dist['Version']
    metadata = dict(azext)
    metadata.update({
        'name': EXTENSION,
        'version': version,
        'summary': dist['Summary'],
        'license': dist['License'],
        'metadata_version': dist['Metadata-Version'],
        'classifiers': dist.get_all('Classifier') or [],
    })
    if base_url:
        download_url = base_url.rstrip('/') + '/' + name
    else:
        download_url = os.path.abspath(wheel_path)
    return {
        'downloadUrl': download_url,
        'sha256Digest': digest,
        'filename': name,
        'metadata': metadata,
    }


def write_index(out_dir, base_url=None):
    """Write out_dir/index.json listing every webapp wheel in out_dir, oldest first."""
    wheels = sorted((n for n in os.listdir(out_dir)
                     if n.startswith(EXTENSION + '-') and n.endswith(UNIVERSAL_SUFFIX)),
                    key=lambda n: _version_key(_wheel_version(n)))
    entries = [index_entry(os.path.join(out_dir, n), base_url) for n in wheels]
    index = {'formatVersion': '1', 'extensions': {EXTENSION: entries}}
    path = os.path.join(out_dir, 'index.json')
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as handle:
        json.dump(index, handle, indent=2)
        handle.write('\n')
    os.replace(tmp, path)
    return path


def _wheel_version(filename):
    return filename.split('-')[1]


def _version_key(version):
    return tuple(int(part) if part.isdigit() else 0 for part in version.split('.'))


def _setup_version():
    out = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=ROOT, check=True, capture_output=True,
                         text=True, env=dict(os.environ, WEBAPP_NO_NATIVE='1')).stdout
    return out.strip().splitlines()[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--out', required=True, help='directory for the wheels and index.json')
    parser.add_argument('--version', help="version to build (default: setup.py's; sets WEBAPP_VERSION)")
    parser.add_argument('--base-url', help='URL the directory is served at (default: local file paths)')
    parser.add_argument('--no-native', action='store_true', help='build without the native module (tests only)')
    parser.add_argument('--reuse-objects', action='store_true',
                        help="reuse the previous build's compiled module (same tree, new version only)")
    parser.add_argument('--index-only', action='store_true', help='only rewrite index.json')
    args = parser.parse_args(argv)
    if not args.index_only:
        wheel = build_wheel(args.out, args.version, native=not args.no_native,
                            reuse_objects=args.reuse_objects)
        print(wheel)
    print(write_index(args.out, args.base_url))


if __name__ == '__main__':
    main()
