"""Fast tier: the SCM host comes from ARM in every cloud (Azure Government, Azure China, an App Service
Environment), never from a suffix of our own; and the Entra token for the SCM site is asked for the
audience az's own SCM calls use in the sovereign clouds."""
from types import SimpleNamespace

import pytest
from azure.cli.core.azclierror import ResourceNotFoundError
from azure.cli.core.cloud import AZURE_CHINA_CLOUD, AZURE_PUBLIC_CLOUD, AZURE_US_GOV_CLOUD

from azext_webapp import _arm, _hops, ssh
from azext_webapp._arm import Target

APP = Target('rg', 'app', None)


def site(states=(), enabled=()):
    return SimpleNamespace(host_name_ssl_states=[SimpleNamespace(name=name, host_type=kind) for name, kind in states],
                           enabled_host_names=list(enabled))


@pytest.mark.parametrize('scm_host', [
    'app.scm.azurewebsites.net',                        # the public cloud
    'app.scm.azurewebsites.us',                         # Azure Government
    'app.scm.chinacloudsites.cn',                       # Azure China (21Vianet)
    'app-staging.scm.azurewebsites.us',                 # a slot
    'app.scm.my-ase.appserviceenvironment.net',         # an App Service Environment
])
def test_the_scm_host_is_the_repository_entry(scm_host):
    default = scm_host.replace('.scm.', '.', 1)
    found = _arm.scm_url_of(site([(default, 'Standard'), (scm_host, 'Repository')], [default, scm_host]), APP)
    assert found == f'https://{scm_host}'


@pytest.mark.parametrize('enabled, scm_host', [
    (['app.azurewebsites.us', 'app.scm.azurewebsites.us'], 'app.scm.azurewebsites.us'),
    (['app.chinacloudsites.cn', 'APP.SCM.chinacloudsites.cn'], 'APP.SCM.chinacloudsites.cn'),
    (['www.contoso.com', 'app.scm.my-ase.appserviceenvironment.net'], 'app.scm.my-ase.appserviceenvironment.net'),
])
def test_without_a_repository_entry_the_enabled_scm_name(enabled, scm_host):
    assert _arm.scm_url_of(site([(name, 'Standard') for name in enabled], enabled), APP) == f'https://{scm_host}'


def test_no_scm_host_at_all_is_a_clear_error():
    with pytest.raises(ResourceNotFoundError, match="App 'app' has no SCM"):
        _arm.scm_url_of(site([('app.azurewebsites.us', 'Standard')], ['app.azurewebsites.us', 'scm.example']), APP)


def test_what_is_derived_from_the_scm_host_keeps_its_cloud():
    scm_url = 'https://app.scm.chinacloudsites.cn'
    assert ssh.host_key_alias(scm_url, 'i0') == 'i0.app.scm.chinacloudsites.cn'
    assert _arm.webssh_url(scm_url) == 'https://app.scm.chinacloudsites.cn/webssh/host'
    assert _hops.browser_ssh(scm_url) == ('SSH in the portal, https://app.scm.chinacloudsites.cn/webssh/host, '
                                          '`az webapp remote-connection browse`')
    assert 'azurewebsites.net' not in _hops.browser_ssh()


def test_sovereign_clouds_take_the_arm_audience_for_scm():
    """entra_token asks az's Profile for a token without naming a resource: the cloud's ARM audience
    (active_directory_resource_id). In Azure Government and Azure China that is exactly the audience
    az's own SCM calls (`az webapp exec`, `az webapp log tail`) ask for, app_service_resource_id (az:
    "App Service Audience is currently not available"). In the public cloud az asks for
    https://appservice.azure.com; the SCM site takes ARM tokens there too (as Visual Studio Code's tunnel
    sends them)."""
    for cloud in (AZURE_US_GOV_CLOUD, AZURE_CHINA_CLOUD):
        assert cloud.endpoints.app_service_resource_id == cloud.endpoints.active_directory_resource_id
    assert AZURE_PUBLIC_CLOUD.endpoints.app_service_resource_id == 'https://appservice.azure.com'


def test_entra_token_names_no_resource(monkeypatch):
    asked = {}

    class Profile:  # pylint: disable=too-few-public-methods
        def __init__(self, cli_ctx):
            pass

        def get_raw_token(self, **kwargs):
            asked.update(kwargs)
            return ('Bearer', 'token', {'expires_on': 1700000000}), 'sub', 'tenant'

    import azure.cli.core._profile as profile
    import azure.cli.core.commands.client_factory as client_factory
    monkeypatch.setattr(profile, 'Profile', Profile)
    monkeypatch.setattr(client_factory, 'get_subscription_id', lambda cli_ctx: 'sub')
    assert _arm.entra_token(object()) == ('token', 1700000000.0)
    assert asked == {'subscription': 'sub'}  # no resource: the cloud's own ARM audience
