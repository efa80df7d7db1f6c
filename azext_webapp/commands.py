"""Command table: ``az webapp remote-connection``."""

from azure.cli.core.commands import CliCommandType

from azext_webapp._validators import (validate_remote_connection_browse, validate_remote_connection_close,
                                      validate_remote_connection_cp, validate_remote_connection_create,
                                      validate_remote_connection_doctor, validate_remote_connection_exec,
                                      validate_remote_connection_ssh, validate_remote_connection_ssh_config)


def load_command_table(self, _):
    with self.command_group('webapp remote-connection') as g:
        g.custom_command('create', 'create_remote_connection', validator=validate_remote_connection_create)
        g.custom_command('close', 'close_remote_connection', validator=validate_remote_connection_close)
        g.custom_command('ssh', 'ssh_remote_connection', validator=validate_remote_connection_ssh)
        g.custom_command('ssh-config', 'ssh_config_remote_connection',
                         validator=validate_remote_connection_ssh_config)
        g.custom_command('browse', 'browse_remote_connection', validator=validate_remote_connection_browse)
        g.custom_command('exec', 'exec_remote_connection', validator=validate_remote_connection_exec)
        g.custom_command('cp', 'cp_remote_connection', validator=validate_remote_connection_cp)
        g.custom_command('doctor', 'doctor_remote_connection', validator=validate_remote_connection_doctor,
                         custom_command_type=CliCommandType(operations_tmpl='azext_webapp._doctor#{}'))
