"""The ``webapp`` Azure CLI extension: ``az webapp remote-connection``."""

from azure.cli.core import AzCommandsLoader

from azext_webapp._help import helps  # noqa: F401  # pylint: disable=unused-import  # registers the help


class WebappCommandsLoader(AzCommandsLoader):

    def __init__(self, cli_ctx=None):
        from azure.cli.core.commands import CliCommandType
        webapp_custom = CliCommandType(operations_tmpl='azext_webapp.custom#{}')
        super().__init__(cli_ctx=cli_ctx, custom_command_type=webapp_custom)

    def load_command_table(self, args):
        from knack.events import EVENT_INVOKER_PRE_PARSE_ARGS
        from azext_webapp._validators import hint_ssh_options
        from azext_webapp.commands import load_command_table
        load_command_table(self, args)
        if self.cli_ctx is not None:
            self.cli_ctx.register_event(EVENT_INVOKER_PRE_PARSE_ARGS, hint_ssh_options)
        return self.command_table

    def load_arguments(self, command):
        from azext_webapp._params import load_arguments
        load_arguments(self, command)


COMMAND_LOADER_CLS = WebappCommandsLoader
