"""``az webapp remote-connection doctor``: every hop between this machine and the container's sshd,
checked in order (the hops of _hops.py, which the commands walk too); each works (OK), works with a
warning (WARN: e.g. no sftp subsystem, so sftp fails and scp needs -O), or is broken (FAIL), and
then the rest of that instance's hops are not checked. Only a broken hop makes the exit status 1.
Whatever those found, each instance's exec channel is checked after them (``_exec_doctor``: the
other way in, without sshd; its problems are warnings).
"""

import shutil
import sys
from types import SimpleNamespace

from knack.log import get_logger

from azext_webapp import _hops
from azext_webapp._errors import HOP_TITLES, describe

logger = get_logger(__name__)

OK, FAIL, WARN, NOT_CHECKED = _hops.OK, _hops.FAIL, _hops.WARN, _hops.NOT_CHECKED


class Report:
    """The checks so far, in order: dicts with hop, title, instance, status, detail, fix."""

    def __init__(self):
        self.checks = []

    def add(self, hop, status, detail, fix='', instance=None):
        self.checks.append({'hop': hop, 'title': HOP_TITLES[hop], 'instance': instance, 'status': status,
                            'detail': detail, 'fix': fix or None})

    def rest_not_checked(self, hops, instance=None):
        for hop in hops:
            self.add(hop, NOT_CHECKED, 'not checked: an earlier hop failed', instance=instance)

    @property
    def verdict(self):
        """fail when any hop is broken, warning when one works with a warning, else ok."""
        found = {check['status'] for check in self.checks}
        return FAIL if FAIL in found else WARN if WARN in found else OK

    @property
    def failed(self):
        return self.verdict == FAIL

    def as_dict(self, target, instance):
        return {'app': target.name, 'slot': target.slot, 'resourceGroup': target.resource_group,
                'instance': instance, 'healthy': not self.failed, 'verdict': self.verdict, 'checks': self.checks}


def diagnose(cmd, target, instance=None):
    """Walk every hop (the instance hops once per instance); a :class:`Report`."""
    report = Report()
    walk = _hops.Walk(cmd, target, instance, thorough=True)
    if not _hops.walk(walk, until='credentials', report=report):
        return report
    from azext_webapp import _exec_doctor
    for name in walk.instances if instance is None and walk.instances else [instance]:
        one = walk.for_instance(name)
        try:
            _hops.walk(one, start='status', report=report)
        finally:
            if one.transport is not None:
                one.transport.close()
            if one.engine is not None:
                one.engine.stop()
        report.add('exec', *_exec_doctor.check(one, name), instance=name)
    return report


# ---------------------------------------------------------------------------------------------
# Output


_MARKS = {OK: 'OK', FAIL: 'FAIL', WARN: 'WARN', NOT_CHECKED: '--'}


def render(result, width=100):
    """The readable table: one line per hop, then what failed and how to fix it."""
    import textwrap
    target = SimpleNamespace(name=result['app'], slot=result['slot'], resource_group=result['resourceGroup'])
    lines = [f"Checking the way in to {describe(target)} (resource group '{target.resource_group}'):", '']
    instances = [c['instance'] for c in result['checks'] if c['instance']]
    several = len(set(instances)) > 1
    for check in result['checks']:
        where = f" [{check['instance']}]" if several and check['instance'] else ''
        lines.append(f"  {_MARKS[check['status']]:<4}  {check['title']}{where}")
        if check['status'] in (OK, FAIL, WARN) and check['detail']:
            lines += textwrap.wrap(check['detail'], width, initial_indent=' ' * 8, subsequent_indent=' ' * 8,
                                   break_on_hyphens=False, break_long_words=False)
        if check['fix']:
            lines += textwrap.wrap('Fix: ' + check['fix'], width, initial_indent=' ' * 8, subsequent_indent=' ' * 13,
                                   break_on_hyphens=False, break_long_words=False)
    lines.append('')
    failed = [c for c in result['checks'] if c['status'] == FAIL]
    warned = [c for c in result['checks'] if c['status'] == WARN]
    if failed:
        lines.append(f"{len(failed)} hop{'s' if len(failed) > 1 else ''} failed: {_titles(failed)}.")
    elif warned:
        lines.append(f"Every hop works; {len(warned)} with a warning: {_titles(warned)}.")
    else:
        lines.append('Every hop works.')
    return '\n'.join(lines)


def _titles(checks):
    return '; '.join(c['title'] + (f" ({c['instance']})" if c['instance'] else '') for c in checks)


# ---------------------------------------------------------------------------------------------
# The command


def doctor_remote_connection(cmd, resource_group_name=None, name=None, slot=None, instance=None,
                             ids=None):  # pylint: disable=unused-argument
    """`az webapp remote-connection doctor`: the readable table unless --output asks for a format;
    exit status 1 when a hop is broken (a warning alone exits 0)."""
    from azext_webapp._arm import Target
    target = Target(resource_group_name, name, slot)
    report = diagnose(cmd, target, instance)
    result = report.as_dict(target, instance)
    fmt = cmd.cli_ctx.invocation.data.get('output') or 'json'
    if _output_given(cmd) and fmt != 'table':
        # az formats the record (and applies --query); the exit status is set once it is printed.
        if report.failed:
            from knack.events import EVENT_CLI_SUCCESSFUL_EXECUTE

            def fail(cli_ctx, **kwargs):  # pylint: disable=unused-argument
                sys.exit(1)
            cmd.cli_ctx.register_event(EVENT_CLI_SUCCESSFUL_EXECUTE, fail)
        return result
    print(render(result, width=_width()), flush=True)
    if report.failed:
        sys.exit(1)
    return None


def _output_given(cmd):
    """Whether --output/-o was on the command line (az's default format is json either way)."""
    return any(param in ('-o', '--output') for param in cmd.cli_ctx.data.get('safe_params') or [])


def _width():
    return max(60, min(120, shutil.get_terminal_size((100, 24)).columns - 2))
