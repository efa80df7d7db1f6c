"""The doctor's "exec channel" hop: whether the SCM site's exec channel gets a shell in an instance
(``az webapp remote-connection exec`` and ``cp``, no sshd needed). It opens the channel and runs an
empty program through the marker protocol, so "works" means a shell answered with what commands
need. Reported whatever the SSH hops found: it is the other way in, not a step of that one, so
its problems are warnings (they never fail the doctor)."""

from azure.cli.core.azclierror import AzCLIError, ForbiddenError, ResourceNotFoundError, UnauthorizedError
from knack.log import get_logger

from azext_webapp._errors import exec_failure, first_line

logger = get_logger(__name__)

OK, WARN = 'ok', 'warning'
EMPTY_PROGRAM = 'm S\nm E0\nm Z\n'


def check(walk, instance):
    """(status, detail, fix) for one instance; walk: the doctor's, past the credentials hop."""
    from azext_webapp._exec_channel import open_channel
    from azext_webapp._exec_run import ExecFailure, ProgramRun
    target = walk.target
    slot = f' --slot {target.slot}' if target.slot else ''
    ssh_instead = (f'Use `az webapp remote-connection ssh -g {target.resource_group} -n {target.name}{slot}` where '
                   'the container runs sshd.')
    try:
        with open_channel(walk, instance, shell='/bin/sh') as channel:
            ProgramRun(channel.sock, EMPTY_PROGRAM, lambda data: None).run()
    except ResourceNotFoundError as err:        # its words name the way that works instead
        return WARN, f'not offered: {first_line(err)}', ''
    except (ForbiddenError, UnauthorizedError) as err:
        return WARN, f'refused: {first_line(err)}', ''
    except ExecFailure as failure:
        return WARN, first_line(exec_failure(failure.reason, failure.said, target, instance)), ssh_instead
    except AzCLIError as err:
        return WARN, first_line(err), ssh_instead
    except Exception as err:  # pylint: disable=broad-except
        logger.debug('The exec channel check failed unexpectedly', exc_info=True)
        return WARN, f'unexpected {type(err).__name__}: {first_line(err)}', \
            'Run the command again with --debug to see where; report it if it persists.'
    return OK, (f'a shell answered through {walk.scm_url}/exec/shell: `az webapp remote-connection exec` and `cp` '
                'work here without sshd'), ''
