"""Arguments of ``az webapp remote-connection``'s commands."""

from azure.cli.core.commands.parameters import get_enum_type, get_three_state_flag, resource_group_name_type


def load_arguments(self, _):
    with self.argument_context('webapp remote-connection') as c:
        # No id_part: az's own --ids would then demand a slot in every ID (a production app's has none).
        # Every command takes one --ids of an app or a slot instead, resolved by _validators.py.
        c.argument('resource_group_name', resource_group_name_type, required=False, arg_group='Resource Id')
        c.argument('name', options_list=['--name', '-n'], required=False, arg_group='Resource Id',
                   help='Name of the web app.')
        c.argument('slot', options_list=['--slot', '-s'], arg_group='Resource Id',
                   help='Name of the deployment slot. Default: the production slot.')
        c.argument('ids', options_list=['--ids'], nargs='+', arg_group='Resource Id',
                   help="Resource ID of the app or slot (as `az webapp show --query id` prints it), instead of "
                        "--resource-group, --name and --slot; its subscription is used.")
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Instance of a scaled-out app to connect to (see `az webapp list-instances`). '
                        'Default: the instance the front end picks.')

    with self.argument_context('webapp remote-connection create') as c:
        c.argument('port', options_list=['--port', '-p'], type=int,
                   help='Local port to listen on. Default: a free port chosen by the system.')
        c.argument('timeout', options_list=['--timeout', '-t'], type=int,
                   help='Close the tunnel after this many seconds, ending the sessions still open through it '
                        '(ssh, scp, a debugger): it is a limit on the whole tunnel, not an idle time-out. '
                        'Default: run until Ctrl+C.')
        c.argument('bind', options_list=['--bind'],
                   help='Local address to listen on. Anything other than a loopback '
                        'address lets other machines reach the container through this tunnel.')
        c.argument('target_port', options_list=['--target-port'], type=int,
                   help="Port in the app's container to connect to. Default: 2222 (SSH), or the "
                        "remote debugger's port when remote debugging is enabled.")
        c.argument('stdio', options_list=['--stdio'], arg_type=get_three_state_flag(),
                   help="Relay standard input and output through one WebSocket instead of listening on a port: "
                        "for OpenSSH's ProxyCommand (see `az webapp remote-connection ssh-config`). Only tunnel "
                        "bytes go to standard output; warnings and errors go to standard error.")
        c.argument('background', options_list=['--background'], arg_type=get_three_state_flag(),
                   help='Run the tunnel in a process of its own, detached from this terminal, and return once its '
                        'port is open: prints the port, the process id and the log file its output goes to '
                        '(-o json: as a record). End it with `az webapp remote-connection close --port N`.')
        c.argument('ready_file', options_list=['--ready-file'],
                   help='Once the port is open, write a JSON record of the tunnel (port, pid, app, ...) to this '
                        'file, atomically, and remove it when the tunnel ends: for scripts that start '
                        '`create` with `&` and wait for the file. `az webapp remote-connection close --port N` '
                        'ends it (on POSIX).')

    with self.argument_context('webapp remote-connection close') as c:
        c.argument('port', options_list=['--port', '-p'], type=int,
                   help='Local port of the background tunnel to close.')
        c.argument('pid', options_list=['--pid'], type=int,
                   help='Process id of the background tunnel to close (as `create --background` printed it).')
        c.argument('close_all', options_list=['--all'], arg_type=get_three_state_flag(),
                   help='Close every background tunnel started with this az configuration.')

    with self.argument_context('webapp remote-connection ssh') as c:
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Instance of a scaled-out app to connect to (see `az webapp list-instances`); with a '
                        'command after `--`, also `all` or several names separated by commas: the command runs '
                        'on each at once, its output lines prefixed with the instance name (one record per '
                        'instance with --output json), and the exit status is the worst instance\'s. '
                        'Default: the instance the front end picks.')
        c.positional('ssh_args', nargs='*',
                     help='Arguments for ssh after `--`: options such as -L or -v, then a remote command.')

    with self.argument_context('webapp remote-connection browse') as c:
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Instance of a scaled-out app whose container the page opens a shell in (see '
                        '`az webapp list-instances`). Default: the instance the SCM site picks.')

    with self.argument_context('webapp remote-connection doctor') as c:
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Check only this instance of a scaled-out app (see `az webapp list-instances`). '
                        'Default: every instance, each on its own.')

    with self.argument_context('webapp remote-connection ssh-config') as c:
        c.argument('host', options_list=['--host'],
                   help='Name for the Host block (what you type after `ssh`). Default: the app name, '
                        'or APP-SLOT for a slot.')
        c.argument('file', options_list=['--file', '-f'],
                   help='ssh_config file to add the block to (replaced in place when it is already there), '
                        'e.g. ~/.ssh/config. Default: print the block.')

    with self.argument_context('webapp remote-connection exec') as c:
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Instance of a scaled-out app (see `az webapp list-instances`); with a command after `--`, '
                        'also `all` or several names separated by commas: the command runs on each (8 at a time), '
                        'its output lines prefixed with the instance name (one record per instance with --output '
                        'json), and the exit status is the worst instance\'s. Default: the instance the front end '
                        'picks.')
        c.argument('target', options_list=['--target'], arg_type=get_enum_type(['app', 'kudu']),
                   help="Whose container: the app's, or the SCM (Kudu) site's own.")
        c.argument('container', options_list=['--container'],
                   help="One of the app's site containers (a sidecar; see `az webapp sitecontainers list`) to run "
                        'in instead of the main container, where the SCM site lets you choose one.')
        c.argument('shell', options_list=['--shell'],
                   help='Absolute path of the shell in the container. An interactive session runs it (default: '
                        "the SCM site's, /bin/bash); a command is run by it with -c (default: /bin/sh).")
        c.positional('command_args', nargs='*',
                     help='The command to run after `--`, with its arguments; joined with spaces and run by the '
                          'shell, as ssh runs a command. Without one: an interactive shell.')

    with self.argument_context('webapp remote-connection cp') as c:
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Instance of a scaled-out app to copy to or from (see `az webapp list-instances`). '
                        'Default: the instance the front end picks.')
        c.argument('container', options_list=['--container'],
                   help="One of the app's site containers (a sidecar) to copy to or from instead of the main "
                        'container, where the SCM site lets you choose one.')
        c.argument('recursive', options_list=['--recursive', '-r'], action='store_true',
                   help='Copy a directory with everything it holds (as one tar archive: the container needs tar). '
                        'Into a directory that exists it goes under its own name, over what is there.')
        c.positional('paths', nargs='+', metavar='SOURCE DESTINATION',
                     help='What to copy, then where to. One is in the container, as `:/path` (the app named by '
                          '--name) or `APP:/path`; the other is local. A directory as the destination takes the '
                          'file under its own name.')
