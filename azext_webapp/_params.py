"""Arguments of ``az webapp remote-connection create``."""

from azure.cli.core.commands.parameters import resource_group_name_type


def load_arguments(self, _):
    with self.argument_context('webapp remote-connection create') as c:
        c.argument('resource_group_name', resource_group_name_type)
        c.argument('name', options_list=['--name', '-n'], id_part='name',
                   help='Name of the web app.')
        c.argument('slot', options_list=['--slot', '-s'],
                   help='Name of the deployment slot. Default: the production slot.')
        c.argument('port', options_list=['--port', '-p'], type=int,
                   help='Local port to listen on. Default: a free port chosen by the system.')
        c.argument('instance', options_list=['--instance', '-i'],
                   help='Instance of a scaled-out app to connect to (see `az webapp list-instances`). '
                        'Default: the instance the front end picks.')
        c.argument('timeout', options_list=['--timeout', '-t'], type=int,
                   help='Close the tunnel after this many seconds. Default: run until Ctrl+C.')
        c.argument('bind', options_list=['--bind'],
                   help='Local address to listen on. Anything other than a loopback '
                        'address lets other machines reach the container through this tunnel.')
        c.argument('target_port', options_list=['--target-port'], type=int,
                   help="Port in the app's container to connect to. Default: 2222 (SSH), or the "
                        "remote debugger's port when remote debugging is enabled.")
