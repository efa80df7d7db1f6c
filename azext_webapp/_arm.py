"""Azure Resource Manager (Microsoft.Web) through the SDK client az ships: the app, its SCM URL,
its instances and the SCM site's credential (the calls; what they mean for the way in is _hops.py's)."""

import base64
import time
from typing import Any, Callable, List, NamedTuple, Optional, Tuple, TypeVar
from urllib.parse import quote

from azure.cli.core.azclierror import AzureConnectionError, ResourceNotFoundError

from azext_webapp._errors import arm_error, describe_action, describe, first_line

T = TypeVar('T')

# The SDK's client and its models (azure-mgmt-web), and az's CLI context: untyped here.
Client = Any
CliContext = Any


class Target(NamedTuple):
    """What a command works on: the app (and slot) as named on the command line."""
    resource_group: str
    name: str
    slot: Optional[str]


AUTH_BASIC = 'Basic'


AUTH_BEARER = 'Bearer'


ENTRA_SHORTEST_LIFETIME = 3600.0


def web_client(cli_ctx: CliContext) -> Client:
    from azure.cli.command_modules.appservice._client_factory import web_client_factory
    return web_client_factory(cli_ctx)


def site_op(client: Client, operation: str, target: Target, **kwargs: Any) -> Callable[[], Any]:
    """A call of ``client.web_apps.<operation>`` (or its ``_slot`` form) for the target."""
    if target.slot:
        method = getattr(client.web_apps, operation + '_slot')
        return lambda: method(target.resource_group, target.name, target.slot, **kwargs)
    method = getattr(client.web_apps, operation)
    return lambda: method(target.resource_group, target.name, **kwargs)


def arm_call(target: Target, action: Optional[str], call: Callable[[], T]) -> T:
    """Run an ARM call; turn its failures into one line that says what to do.

    action: what the call does, completed by the target ("read the configuration of"); None for
    reading the site itself."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    try:
        return call()
    except HttpResponseError as err:
        raise arm_error(err, target, action) from None
    except ServiceRequestError as err:
        raise AzureConnectionError(
            f'Cannot reach Azure Resource Manager to {describe_action(action, target)}: {first_line(err)}. '
            'Check your network connection and proxy settings (HTTPS_PROXY).') from None


def scm_url_of(site: Any, target: Target) -> str:
    """The SCM (Kudu) host as ARM names it, never a suffix of our own: the Repository host-name state,
    else the enabled host name whose second label is ``scm`` (``<app>.scm.azurewebsites.us`` in Azure
    Government, ``<app>.scm.chinacloudsites.cn`` in Azure China, ``<app>.scm.<ase>.appserviceenvironment.net``
    in an App Service Environment). Right for slots, App Service Environments and every cloud."""
    for state in site.host_name_ssl_states or []:
        if (state.host_type or '').lower() == 'repository' and state.name:
            return 'https://' + state.name
    for name in site.enabled_host_names or []:
        labels = name.lower().split('.')
        if len(labels) > 2 and labels[1] == 'scm':
            return 'https://' + name
    raise ResourceNotFoundError(
        f'{describe(target, True)} has no SCM (Repository) host name, so it cannot be reached for a remote '
        'connection. Check the app in the Azure portal.')


WEBSSH_PATH = '/webssh/host'


def webssh_url(scm_url: str, instance: Optional[str] = None) -> str:
    """The SCM site's browser SSH page; ?instance= picks the container of a scaled-out app."""
    url = scm_url.rstrip('/') + WEBSSH_PATH
    return url + '?instance=' + quote(instance, safe='') if instance else url


def instance_names(client: Client, target: Target) -> List[str]:
    """The names of the app's instances (``az webapp list-instances``), in ARM's order."""
    instances = arm_call(target, 'list the instances of', site_op(client, 'list_instance_identifiers', target))
    return [item.name for item in instances]


class Credential:  # pylint: disable=too-few-public-methods
    """The SCM site's Authorization value and its kind; for Bearer, when it expires and how to get a
    fresh one (``renew() -> (authorization, expires_on)``). ``repr`` never shows the value."""

    def __init__(self, authorization: str, kind: str, expires_on: Optional[float] = None,
                 renew: Optional[Callable[[], Tuple[str, float]]] = None) -> None:
        self.authorization = authorization
        self.kind = kind
        self.expires_on = expires_on
        self.renew = renew

    def __repr__(self) -> str:
        return f'<Credential {self.kind}>'


def scm_credential(cli_ctx: CliContext, client: Client, target: Target) -> Credential:
    """The credential for the SCM site, chosen as the reference chooses it."""
    policy = scm_basic_policy(client, target)
    if policy:
        # logging_enable=False: az's --debug trace would print the response body, which holds the
        # publishing password.
        list_credentials = site_op(client, 'begin_list_publishing_credentials', target, logging_enable=False)
        user_password = arm_call(target, 'read the publishing credentials of', lambda: list_credentials().result())
        raw = f'{user_password.publishing_user_name}:{user_password.publishing_password}'.encode('utf-8')
        return Credential('Basic ' + base64.b64encode(raw).decode('ascii'), AUTH_BASIC)

    def bearer() -> Tuple[str, float]:
        token, expires_on = entra_token(cli_ctx)
        return 'Bearer ' + token, expires_on

    authorization, expires_on = bearer()
    return Credential(authorization, AUTH_BEARER, expires_on, renew=bearer)


def scm_basic_policy(client: Client, target: Target) -> bool:
    from azure.core.exceptions import ResourceNotFoundError as SdkNotFound

    def allowed() -> bool:
        try:
            return bool(site_op(client, 'get_scm_allowed', target)().allow)
        except SdkNotFound:
            return True  # no policy resource (older stamps): SCM accepts Basic auth

    return arm_call(target, 'read the SCM basic-auth policy of', allowed)


def entra_token(cli_ctx: CliContext) -> Tuple[str, float]:
    """(access token, expiry as epoch seconds) from az's credential (MSAL's cache when still valid)."""
    from azure.cli.core._profile import Profile
    from azure.cli.core.commands.client_factory import get_subscription_id
    (_, token, entry), _, _ = Profile(cli_ctx=cli_ctx).get_raw_token(subscription=get_subscription_id(cli_ctx))
    expires_on = entry.get('expires_on') if isinstance(entry, dict) else None
    # Without an expiry (a credential that does not say), assume the shortest Entra lifetime.
    return token, float(expires_on) if expires_on else time.time() + ENTRA_SHORTEST_LIFETIME


# Read-only ARM look-ups that the SDK az ships has no model for (Microsoft.Authorization), or whose
# answer is only needed as it is: the JSON, through the web client's own pipeline (sign-in, cloud).
WEB_API = '2024-11-01'
POLICY_API = '2023-04-01'
PERMISSIONS_API = '2022-04-01'


def arm_get(client: Client, path: str, api_version: str, query: str = '') -> Any:
    """GET {resource manager}{path}?{query} (a list's every page): the JSON. HttpResponseError on
    failure, which arm_call words."""
    from azure.core.rest import HttpRequest
    items: List[Any] = []
    url: Optional[str] = f'{path}?{query + "&" if query else ""}api-version={api_version}'
    doc: Any = None
    while url:
        response = client.send_request(HttpRequest('GET', url))
        response.raise_for_status()
        doc = response.json()
        if not isinstance(doc, dict) or 'value' not in doc:
            return doc
        items += doc.get('value') or []
        url = doc.get('nextLink')
    return {'value': items}
